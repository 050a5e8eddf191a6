"""What each token of the Simformer is: its variable kind and its metadata.

With fixed-size vectors the token of column ``i`` has identifier ``i`` and no
metadata, and nothing here is needed. For series observed at irregular times, or
parameters that are functions, several tokens share one variable kind (one
identifier, one standardization) and differ by their metadata (e.g. a time), so that
their number can differ between simulations and between training and inference.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["Tokens"]


@dataclass(frozen=True)
class Tokens:
    """The variable kind and the metadata of every token.

    Args:
        node_ids: Variable kind of each token, ``(n,)`` or ``(batch, n)`` integers
            (an index into the network's identifiers and the standardization).
        metadata: Per-token metadata ``(batch, n, num_channels)`` (a batch of 1 is
            shared by all rows), NaN where a token has none; ``None`` without
            metadata.
    """

    node_ids: Tensor
    metadata: Tensor | None = None

    def __post_init__(self) -> None:
        if self.node_ids.dtype not in (torch.int32, torch.int64):
            raise ValueError(
                f"`node_ids` must be integers, got dtype {self.node_ids.dtype}."
            )
        n = self.node_ids.shape[-1]
        if self.metadata is not None and (
            self.metadata.ndim != 3 or self.metadata.shape[1] != n
        ):
            raise ValueError(
                f"`metadata` must be (batch, {n}, num_channels) for {n} tokens, got "
                f"{tuple(self.metadata.shape)}."
            )

    def to(self, device: torch.device | str) -> Tokens:
        """The tokens on ``device``."""
        metadata = None if self.metadata is None else self.metadata.to(device)
        return Tokens(self.node_ids.to(device), metadata)

    def rows(self, index: Tensor | slice) -> Tokens:
        """The tokens of some batch rows (per-row ``node_ids`` and ``metadata``
        are indexed, shared ones kept)."""
        node_ids = self.node_ids if self.node_ids.ndim == 1 else self.node_ids[index]
        metadata = self.metadata
        if metadata is not None and metadata.shape[0] > 1:
            metadata = metadata[index]
        return Tokens(node_ids, metadata)


SERIES = "series"


@dataclass(frozen=True)
class Variables:
    """Names and shapes of the parameters and data, for data that are not one
    fixed-size vector.

    A variable is either fixed-size (an ``int``: that many scalars, one token and one
    identifier each) or a ``"series"``: any number of values per simulation, each a
    token with the variable's one identifier and its own metadata (e.g. the time it
    was observed at). A parameter that is a function of time (``"series"`` in
    ``theta``) is learned from its values at the times given with each simulation
    and can be queried at any times after training.

    Args:
        theta: Parameter names to sizes or ``"series"``, in the order of ``theta``.
        x: Data names to sizes or ``"series"``, in the order of ``x``.

    Example:
        >>> spec = Variables(theta={"alpha": 1, "beta": 2}, x={"prey": "series"})
        >>> spec.num_kinds, spec.has_series
        (4, True)
    """

    theta: dict[str, int | str]
    x: dict[str, int | str]

    def __post_init__(self) -> None:
        for role in ("theta", "x"):
            variables = getattr(self, role)
            if not variables:
                raise ValueError(f"`{role}` must name at least one variable.")
            for name, size in variables.items():
                if size != SERIES and not (isinstance(size, int) and size >= 1):
                    raise ValueError(
                        f"`{role}[{name!r}]` must be a positive int or 'series', "
                        f"got {size!r}."
                    )
        shared = set(self.theta) & set(self.x)
        if shared:
            raise ValueError(f"Names used in both `theta` and `x`: {sorted(shared)}.")

    @property
    def has_series(self) -> bool:
        """Whether any variable is a series."""
        return SERIES in (*self.theta.values(), *self.x.values())

    @property
    def num_kinds(self) -> int:
        """Number of identifiers: one per scalar of a fixed-size variable, one per
        series."""
        sizes = (*self.theta.values(), *self.x.values())
        return sum(1 if size == SERIES else size for size in sizes)

    def kind_ids(self) -> dict[str, int]:
        """The first identifier of each variable (a fixed-size variable of size
        ``k`` has ``k`` consecutive ones)."""
        ids, start = {}, 0
        for name, size in (*self.theta.items(), *self.x.items()):
            ids[name], start = start, start + (1 if size == SERIES else size)
        return ids


@dataclass(frozen=True)
class Layout:
    """Simulations (or an observation) arranged as tokens.

    Args:
        values: ``(batch, n)`` values of all tokens, parameters first; NaN = missing
            or padding (also for parameters not given, e.g. at inference).
        tokens: Kind and metadata of each token.
        is_theta: ``(n,)``, ``True`` for parameter tokens.
        columns: Each variable's token columns.
    """

    values: Tensor
    tokens: Tokens
    is_theta: Tensor
    columns: dict[str, slice]


def arrange(
    spec: Variables,
    theta: Tensor | dict[str, Tensor] | None,
    x: Tensor | dict[str, Tensor] | None,
    metadata: dict[str, dict[str, Tensor]] | None,
    channels: tuple[str, ...],
) -> Layout:
    """Arrange parameters and data as tokens.

    Args:
        spec: The variables.
        theta: ``(batch, num_theta)`` for fixed-size parameters only, else a dict
            of each parameter's ``(batch, size)`` or ``(batch, K)`` values (a
            series: NaN-padded); ``None`` where unknown (a series parameter then
            takes its number of tokens from ``metadata``).
        x: As ``theta``, for the data (``None``: unknown).
        metadata: Channel name to variable name to ``(batch, K)`` (or ``(1, K)``)
            metadata of each series' tokens; NaN where padded.
        channels: The metadata channels, in the network's order.

    Returns:
        The layout (``batch`` from the given tensors; 1 if none is given).
    """
    theta = _by_name(spec.theta, theta, "theta")
    x = _by_name(spec.x, x, "x")
    metadata = metadata or {}
    _check_channels(metadata, channels)
    given = {**theta, **x}
    batch = max((t.shape[0] for t in (*given.values(), *_tensors(metadata))), default=1)
    kinds, values, metas, ids, columns = spec.kind_ids(), [], [], [], {}
    for name, size in (*spec.theta.items(), *spec.x.items()):
        meta = [metadata.get(c, {}).get(name) for c in channels]
        value = _variable_values(name, size, given.get(name), meta, batch)
        width, start = value.shape[1], sum(v.shape[1] for v in values)
        values.append(value)
        metas.append(_variable_metadata(name, size, meta, value))
        offsets = torch.zeros(width) if size == SERIES else torch.arange(width)
        ids.append(kinds[name] + offsets.long())
        columns[name] = slice(start, start + width)
    node_ids = torch.cat(ids)
    is_theta = node_ids < sum(1 if s == SERIES else s for s in spec.theta.values())
    meta_tensor = torch.cat(metas, dim=1) if channels else None
    return Layout(
        torch.cat(values, dim=1), Tokens(node_ids, meta_tensor), is_theta, columns
    )


def _by_name(
    variables: dict[str, int | str], given: Tensor | dict[str, Tensor] | None, role: str
) -> dict[str, Tensor]:
    """The given values of each variable, from a dict or a flat tensor."""
    if given is None:
        return {}
    if isinstance(given, dict):
        unknown = set(given) - set(variables)
        if unknown:
            raise ValueError(f"`{role}` has unknown variables {sorted(unknown)}.")
        return {name: torch.as_tensor(v).float() for name, v in given.items()}
    if SERIES in variables.values():
        raise ValueError(
            f"`{role}` has series ({[n for n, s in variables.items() if s == SERIES]}"
            "): pass a dict of each variable's values."
        )
    flat = torch.as_tensor(given).float()
    expected = sum(variables.values())
    if flat.ndim != 2 or flat.shape[1] != expected:
        raise ValueError(
            f"`{role}` must be (batch, {expected}), got {tuple(flat.shape)}."
        )
    split = flat.split(list(variables.values()), dim=1)
    return dict(zip(variables, split, strict=True))


def _tensors(metadata: dict[str, dict[str, Tensor]]) -> list[Tensor]:
    return [
        torch.as_tensor(t) for channel in metadata.values() for t in channel.values()
    ]


def _check_channels(metadata: dict[str, dict[str, Tensor]], channels) -> None:  # noqa: ANN001
    unknown = set(metadata) - set(channels)
    if unknown:
        raise ValueError(
            f"`metadata` has channels {sorted(unknown)} the Simformer was not "
            f"trained with (it knows {list(channels)})."
        )


def _variable_values(
    name: str, size: int | str, value: Tensor | None, meta: list, batch: int
) -> Tensor:
    """``(batch, width)`` values of one variable; NaN where unknown."""
    if size != SERIES:
        if value is None:
            return torch.full((batch, size), torch.nan)
        if value.ndim != 2 or value.shape[1] != size:
            raise ValueError(
                f"`{name}` must be (batch, {size}), got {tuple(value.shape)}."
            )
        return value.expand(batch, -1)
    if value is None:
        known = [m for m in meta if m is not None]
        if not known:
            raise ValueError(
                f"Series `{name}` has neither values nor metadata: give its "
                "metadata (e.g. the times to query it at)."
            )
        return torch.full((batch, known[0].shape[-1]), torch.nan)
    if value.ndim != 2:
        raise ValueError(
            f"Series `{name}` must be (batch, K), got {tuple(value.shape)}."
        )
    return value.expand(batch, -1)


def _variable_metadata(name: str, size: int | str, meta: list, value: Tensor) -> Tensor:
    """``(batch or 1, width, num_channels)`` metadata of one variable."""
    width = value.shape[1]
    if size != SERIES:
        if any(m is not None for m in meta):
            raise ValueError(
                f"`metadata` is for series only; `{name}` has size {size}."
            )
        return torch.full((1, width, len(meta)), torch.nan).expand(
            value.shape[0], -1, -1
        )
    channels = []
    for m in meta:
        if m is None:
            channels.append(torch.full((1, width), torch.nan))
            continue
        m = torch.as_tensor(m).float()
        if m.ndim != 2 or m.shape[1] != width:
            raise ValueError(
                f"`metadata` of `{name}` must be (batch, {width}) like its values, "
                f"got {tuple(m.shape)}."
            )
        channels.append(m)
    stacked = torch.stack(torch.broadcast_tensors(*channels), dim=-1)
    return stacked.expand(value.shape[0], -1, -1)
