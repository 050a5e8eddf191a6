"""Tokens with variable kinds and metadata: identifiers by kind, metadata embedding,
any number of tokens, padding never attended to and never a target."""

import pytest
import torch

from sbi_allinone.diffusion.noise import LogNormalNoise
from sbi_allinone.simformer.estimator import SimformerEstimator
from sbi_allinone.simformer.network import MetadataEmbedding, SimformerNet
from sbi_allinone.simformer.tokens import Tokens

# Kinds: 0 = a scalar parameter, 1 = a series ("prey"), 2 = another series.
MEAN, STD = torch.tensor([0.5, 2.0, -1.0]), torch.tensor([1.5, 3.0, 0.5])


def _net(metadata=True, num_layers=2):
    statistics = (torch.tensor([5.0]), torch.tensor([2.0])) if metadata else None
    return SimformerNet(3, num_layers=num_layers, metadata_statistics=statistics)


def _estimator(**kwargs):
    return SimformerEstimator(
        _net(**kwargs), LogNormalNoise(), 1, MEAN, STD, ema_decay=None
    ).double()


def _series(times_1, times_2):
    """Tokens for [parameter, series 1 at times_1, series 2 at times_2]."""
    ids = [0] + [1] * len(times_1) + [2] * len(times_2)
    time = [float("nan"), *times_1, *times_2]
    metadata = torch.tensor(time, dtype=torch.float64).reshape(1, -1, 1)
    return Tokens(torch.tensor(ids), metadata)


def test_default_tokens_are_one_identifier_per_position():
    net = SimformerNet(4, num_layers=1)
    values, c_noise = torch.randn(3, 4), torch.randn(3, 1)
    condition = torch.tensor([True, False, True, False]).expand(3, 4)
    default = net(values, c_noise, condition, None)
    explicit = net(values, c_noise, condition, None, Tokens(torch.arange(4)))
    assert torch.equal(default, explicit)


def test_any_number_of_tokens_from_one_network():
    estimator = _estimator()
    for times in ([1.0], [0.0, 2.0, 4.0, 7.5, 9.0, 12.0]):
        tokens = _series(times, times[:2])
        n = tokens.node_ids.numel()
        values = torch.randn(2, n, dtype=torch.float64)
        condition = torch.zeros(2, n, dtype=torch.bool)
        out = estimator.denoise(
            values, torch.ones(2, 1).double(), condition, None, tokens
        )
        assert out.shape == (2, n) and torch.isfinite(out).all()


def test_tokens_of_one_kind_differ_only_by_metadata():
    # Swapping two tokens of one kind together with their metadata swaps their
    # outputs: nothing but identifier and metadata says which token is which.
    net = _net().double()
    tokens = _series([1.0, 3.0], [2.0])
    values = torch.randn(2, 4, dtype=torch.float64)
    condition = torch.zeros(2, 4, dtype=torch.bool)
    c_noise = torch.zeros(2, 1, dtype=torch.float64)
    out = net(values, c_noise, condition, None, tokens)
    order = torch.tensor([0, 2, 1, 3])
    swapped_tokens = Tokens(tokens.node_ids[order], tokens.metadata[:, order])
    swapped = net(values[:, order], c_noise, condition, None, swapped_tokens)
    assert torch.allclose(swapped, out[:, order], atol=1e-12)
    # The same value at another time is another token.
    moved = tokens.metadata.clone()
    moved[0, 1, 0] = 8.0
    other = net(values, c_noise, condition, None, Tokens(tokens.node_ids, moved))
    assert not torch.allclose(other[:, 1], out[:, 1])


def test_tokens_without_metadata_get_nothing_from_it():
    embedding = MetadataEmbedding(torch.zeros(2), torch.ones(2), 8)
    metadata = torch.tensor([[[float("nan"), float("nan")], [0.3, float("nan")]]])
    added = embedding(metadata)
    assert torch.allclose(added[0, 0], embedding.project.bias)
    half = embedding(torch.tensor([[[0.3, 0.0]]]))
    assert not torch.allclose(added[0, 1], half[0, 0])


def test_padding_is_never_attended_to():
    # Extra padded tokens (missing, any value and time) leave the other outputs
    # unchanged.
    estimator = _estimator()
    tokens = _series([1.0, 3.0], [2.0])
    padded = _series([1.0, 3.0, 5.0], [2.0, 6.0])
    order = [0, 1, 2, 4]  # the unpadded tokens inside `padded`
    values = torch.randn(3, 4, dtype=torch.float64)
    long = torch.randn(3, 6, dtype=torch.float64)
    long[:, order] = values
    missing = torch.zeros(3, 6, dtype=torch.bool)
    missing[:, [3, 5]] = True
    sigma = torch.full((3, 1), 0.7, dtype=torch.float64)
    condition = torch.zeros(3, 4, dtype=torch.bool)
    condition[:, 0] = True
    long_condition = torch.zeros(3, 6, dtype=torch.bool)
    long_condition[:, 0] = True
    short = estimator.denoise(values, sigma, condition, None, tokens)
    full = estimator.denoise(long, sigma, long_condition, missing, padded)
    assert torch.allclose(full[:, order], short, atol=1e-12)
    assert torch.equal(full[:, [3, 5]], long[:, [3, 5]])


def test_padding_is_never_a_target():
    estimator = _estimator()
    short_tokens, padded = _series([1.0], [2.0]), _series([1.0, 4.0], [2.0])
    values = torch.randn(5, 3, dtype=torch.float64)
    long = torch.cat(
        [values[:, :2], torch.full((5, 1), float("nan")), values[:, 2:]], 1
    )
    long = long.double()
    sigma = torch.full((5, 1), 0.3, dtype=torch.float64)
    noise = torch.randn(5, 3, dtype=torch.float64)
    long_noise = torch.cat([noise[:, :2], torch.randn(5, 1).double(), noise[:, 2:]], 1)
    short = estimator.loss(
        values, torch.zeros(5, 3).bool(), fixed=(sigma, noise), tokens=short_tokens
    )
    full = estimator.loss(
        long, torch.zeros(5, 4).bool(), fixed=(sigma, long_noise), tokens=padded
    )
    assert torch.allclose(short, full, atol=1e-12)


def test_standardization_is_per_kind():
    estimator = _estimator()
    tokens = _series([1.0, 3.0], [2.0])
    values = torch.tensor([[0.5, 2.0, 5.0, -1.0]], dtype=torch.float64)
    expected = torch.tensor([[0.0, 0.0, 1.0, 0.0]], dtype=torch.float64)
    assert torch.allclose(estimator.standardize(values, tokens), expected)
    assert torch.allclose(estimator.unstandardize(expected, tokens), values)


def test_clear_errors():
    net = _net(metadata=False)
    values, c_noise = torch.randn(2, 4), torch.zeros(2, 1)
    condition = torch.zeros(2, 4, dtype=torch.bool)
    with pytest.raises(ValueError, match="`metadata` must be given exactly"):
        net(
            values,
            c_noise,
            condition,
            None,
            Tokens(torch.tensor([0, 1, 1, 2]), torch.zeros(1, 4, 1)),
        )
    with pytest.raises(ValueError, match="pass `tokens`"):
        net(values, c_noise, condition, None)
    with pytest.raises(ValueError, match="channel"):
        MetadataEmbedding(torch.zeros(2), torch.ones(2), 8)(torch.zeros(1, 3, 1))
    with pytest.raises(ValueError, match="integers"):
        Tokens(torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="num_channels"):
        Tokens(torch.tensor([0, 1]), torch.zeros(1, 3, 1))
    graph = torch.zeros(3, 3, dtype=torch.bool)
    estimator = SimformerEstimator(
        _net(), LogNormalNoise(), 1, MEAN, STD, graph=graph, attention="undirected"
    )
    with pytest.raises(ValueError, match="need 'dense'"):
        estimator.attention_mask(
            condition[:, :3], condition[:, :3], _series([1.0], [2.0])
        )


# --- Variables and arrange -------------------------------------------------------

from sbi_allinone.simformer.tokens import Variables, arrange  # noqa: E402

NAN = float("nan")
SPEC = Variables(theta={"a": 1, "rate": "series"}, x={"y": 2, "prey": "series"})


def test_arrange_puts_parameters_first_with_one_identifier_per_series():
    theta = {"a": torch.tensor([[1.0], [2.0]]), "rate": torch.tensor([[0.1, 0.2]] * 2)}
    x = {
        "y": torch.ones(2, 2),
        "prey": torch.tensor([[5.0, 6.0, 7.0], [8.0, NAN, NAN]]),
    }
    times = {
        "rate": torch.tensor([[0.0, 1.0]]),
        "prey": torch.tensor([[0.5, 1.5, 2.5], [3.0, NAN, NAN]]),
    }
    layout = arrange(SPEC, theta, x, {"time": times}, ("time",))
    assert layout.values.shape == (2, 8)
    assert layout.tokens.node_ids.tolist() == [0, 1, 1, 2, 3, 4, 4, 4]
    assert layout.is_theta.tolist() == [True] * 3 + [False] * 5
    assert layout.columns["prey"] == slice(5, 8)
    assert torch.isnan(layout.values[1, 6:]).all()
    meta = layout.tokens.metadata
    assert meta.shape == (2, 8, 1)
    assert torch.isnan(meta[:, [0, 3, 4], 0]).all()  # fixed-size variables: none
    assert meta[1, 5, 0] == 3.0 and meta[0, 2, 0] == 1.0
    assert SPEC.num_kinds == 5


def test_unknown_parameters_are_nan_and_series_take_their_size_from_metadata():
    x = {"y": torch.ones(1, 2), "prey": torch.tensor([[5.0]])}
    query = {
        "rate": torch.linspace(0, 1, 7).reshape(1, 7),
        "prey": torch.tensor([[2.0]]),
    }
    layout = arrange(SPEC, None, x, {"time": query}, ("time",))
    assert layout.values.shape == (1, 11)
    assert torch.isnan(layout.values[0, :8]).all()  # a and the 7 rate tokens
    assert layout.is_theta.sum() == 8


def test_fixed_size_variables_take_flat_tensors():
    spec = Variables(theta={"a": 1, "b": 2}, x={"y": 3})
    layout = arrange(spec, torch.randn(4, 3), torch.randn(4, 3), None, ())
    assert layout.tokens.node_ids.tolist() == list(range(6))
    assert layout.tokens.metadata is None


def test_bad_variables_and_inputs_name_the_argument():
    with pytest.raises(ValueError, match="positive int or 'series'"):
        Variables(theta={"a": 0}, x={"y": 1})
    with pytest.raises(ValueError, match="both"):
        Variables(theta={"a": 1}, x={"a": 1})
    with pytest.raises(ValueError, match="pass a dict"):
        arrange(SPEC, torch.ones(1, 3), None, None, ("time",))
    with pytest.raises(ValueError, match=r"`y` must be \(batch, 2\)"):
        arrange(
            SPEC,
            None,
            {"y": torch.ones(1, 3), "prey": torch.ones(1, 1)},
            {"time": {"rate": torch.ones(1, 1)}},
            ("time",),
        )
    with pytest.raises(ValueError, match="neither values nor metadata"):
        arrange(
            SPEC,
            None,
            {"y": torch.ones(1, 2)},
            {"time": {"rate": torch.ones(1, 1)}},
            ("time",),
        )
    with pytest.raises(ValueError, match="not\\s+trained with"):
        arrange(SPEC, None, None, {"depth": {}}, ("time",))
    with pytest.raises(ValueError, match="like its values"):
        x = {"y": torch.ones(1, 2), "prey": torch.ones(1, 3)}
        arrange(
            SPEC,
            None,
            x,
            {"time": {"rate": torch.ones(1, 1), "prey": torch.ones(1, 2)}},
            ("time",),
        )
