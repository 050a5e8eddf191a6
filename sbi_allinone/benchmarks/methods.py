"""Method registry: name -> how to train on ``(theta, x)`` and return a posterior.

Ships with sbi's own estimators (NPE with MAF and NSF, NLE with MCMC, NPSE, FMPE) at
sbi's default settings; the estimators of this package register themselves here too.

A method is a plain module-level function
``train(theta, x, prior, show_progress_bars) -> TrainedPosterior``, so a
:class:`Method` pickles by reference and runs in worker processes or on a cluster.
Methods registered with ``needs_task=True`` also get ``task=<task name>`` (the
Simformer's graph variants use it to look up the task's dependency graph).

A method name may carry options for its training function, e.g.
``simformer[num_steps=10000,ode_solver=heun]`` or ``iflow[steps=256]``: values are
Python literals (numbers, ``True``, ``None``) or else strings. The options a
method accepts are its training function's keyword arguments; others are an error
before anything runs.
"""

from __future__ import annotations

import ast
import inspect
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from sbi.inference.posteriors.base_posterior import NeuralPosterior
from torch import Tensor
from torch.distributions import Distribution

from sbi_allinone.benchmarks.graphs import task_graph
from sbi_allinone.inflationary.trainer import InflationaryFlow
from sbi_allinone.inn.trainer import INN
from sbi_allinone.npe_plugin import keywords_set, split_keywords
from sbi_allinone.simformer.trainer import Simformer
from sbi_allinone.tracking import NullTracker

__all__ = [
    "IFLOW_TRAINING_OPTIONS",
    "Method",
    "TrainedPosterior",
    "available_methods",
    "get_method",
    "parse_method_spec",
    "register_method",
]


@dataclass(frozen=True)
class TrainedPosterior:
    """What a method's training returns.

    Args:
        posterior: An sbi posterior with ``sample((n,), x=x_o)``.
        epochs: Number of training epochs run (early stopping included).
        likelihood: The method's likelihood ``p(x | theta)``, if it has one: any
            object with ``sample((n,), x=theta, show_progress_bars=False)`` (a
            Simformer conditional, a :class:`LikelihoodSampler`).
    """

    posterior: NeuralPosterior
    epochs: int
    likelihood: Any = None


TrainFn = Callable[[Tensor, Tensor, Distribution, bool], TrainedPosterior]


@dataclass(frozen=True)
class Method:
    """A registered inference method.

    Args:
        name: Registry name, as used on the command line.
        train: ``train(theta, x, prior, show_progress_bars) -> TrainedPosterior``;
            ``theta`` is ``(num_simulations, dim_parameters)``, ``x`` is
            ``(num_simulations, dim_data)`` and may contain NaN rows.
        description: One line for listings.
        normalized_log_prob: Whether ``posterior.log_prob`` is normalized (it is not
            for MCMC posteriors built from a likelihood).
        needs_task: Whether ``train`` takes the keyword argument ``task`` (the task's
            name).
    """

    name: str
    train: TrainFn
    description: str
    normalized_log_prob: bool = True
    needs_task: bool = False

    def fit(
        self,
        theta: Tensor,
        x: Tensor,
        prior: Distribution,
        show_progress_bars: bool = False,
        task: str | None = None,
    ) -> TrainedPosterior:
        """Train on ``(theta, x)``; ``task`` is passed on when the method needs it."""
        if not self.needs_task:
            return self.train(theta, x, prior, show_progress_bars)
        if task is None:
            raise ValueError(f"Method {self.name!r} needs the `task` name.")
        return self.train(theta, x, prior, show_progress_bars, task=task)


_REGISTRY: dict[str, Method] = {}


def register_method(
    name: str,
    train: TrainFn,
    description: str,
    normalized_log_prob: bool = True,
    replace: bool = False,
    needs_task: bool = False,
) -> Method:
    """Add a method to the registry.

    Args:
        name: Registry name (lower case, no commas).
        train: Module-level training function (see :class:`Method`); module level so
            that it pickles for ``--jobs`` and cluster engines.
        description: One line for listings.
        normalized_log_prob: Whether the posterior's ``log_prob`` is normalized.
        replace: Allow replacing an existing entry of the same name.
        needs_task: Whether ``train`` takes the keyword argument ``task``.

    Returns:
        The registered method.
    """
    if not name or "," in name or name != name.strip():
        raise ValueError(
            f"`name` must be a non-empty word without commas, got {name!r}."
        )
    if name in _REGISTRY and not replace:
        raise ValueError(f"Method {name!r} is already registered; pass replace=True.")
    method = Method(name, train, description, normalized_log_prob, needs_task)
    _REGISTRY[name] = method
    return method


def parse_method_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """Split ``"name[key=value,...]"`` into the name and its options.

    Args:
        spec: A registered name, optionally with options in brackets.

    Returns:
        The name and a dict of options (values as Python literals where they
        parse as one, else strings).
    """
    match = re.fullmatch(r"\s*([\w-]+)\s*(?:\[(.*)\])?\s*", spec)
    if match is None:
        raise ValueError(
            f"A method must be 'name' or 'name[key=value,...]', got {spec!r}."
        )
    options: dict[str, Any] = {}
    for item in (match.group(2) or "").split(","):
        if not item.strip():
            continue
        key, sep, value = (part.strip() for part in item.partition("="))
        if not sep or not key.isidentifier():
            raise ValueError(f"Options of {spec!r} must be key=value, got {item!r}.")
        options[key] = _literal(value)
    return match.group(1), options


def _literal(text: str) -> Any:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def get_method(name: str) -> Method:
    """The registered method called ``name``, with its options applied.

    Args:
        name: A registered name, or ``"name[key=value,...]"``: the options are
            passed to the method's training function as keyword arguments.

    Raises:
        ValueError: For an unknown name (the message lists the registered ones) or
            options the training function does not take.
    """
    base_name, options = parse_method_spec(name)
    try:
        method = _REGISTRY[base_name]
    except KeyError:
        raise ValueError(
            f"Unknown method {base_name!r}; registered: "
            f"{', '.join(available_methods())}."
        ) from None
    if not options:
        return method
    signature = inspect.signature(method.train)
    try:
        signature.bind(None, None, None, False, **options)
    except TypeError:
        accepted = [
            p.name
            for p in list(signature.parameters.values())[4:]
            if p.kind is not inspect.Parameter.VAR_KEYWORD and p.name != "task"
        ]
        raise ValueError(
            f"Method {base_name!r} takes the options {accepted or 'none'}; got "
            f"{sorted(options)}."
        ) from None
    spec = base_name + "[" + ",".join(f"{k}={v}" for k, v in options.items()) + "]"
    return Method(
        spec,
        partial(method.train, **options),
        f"{method.description}; {spec}",
        method.normalized_log_prob,
        method.needs_task,
    )


def available_methods() -> list[str]:
    """Names of all registered methods, in registration order."""
    return list(_REGISTRY)


def _epochs(inference) -> int:
    return int(inference.summary["epochs_trained"][-1])


def _train_default(trainer, theta, x, prior, show_progress_bars, **kwargs):
    """Train an sbi-style trainer class at its defaults; return its posterior."""
    inference = trainer(
        prior, tracker=NullTracker(), show_progress_bars=show_progress_bars, **kwargs
    )
    inference.append_simulations(theta, x).train()
    return TrainedPosterior(inference.build_posterior(), _epochs(inference))


def train_simformer(
    theta: Tensor,
    x: Tensor,
    prior: Distribution,
    show_progress_bars: bool = False,
    task: str | None = None,
    attention: str | None = None,
    sde: str | None = None,
    num_steps: int | None = None,
    training_batch_size: int | None = None,
    stop_after_epochs: int | None = None,
    sample_with: str | None = None,
    steps: int | None = None,
    ode_solver: str | None = None,
    x_per_token: int | None = None,
    matmul_dtype: str | None = None,
) -> TrainedPosterior:
    """The Simformer: ``Simformer(prior).train()`` at its defaults (EDM noise levels,
    :func:`~sbi_allinone.simformer.schedule.default_num_steps`, the default ODE
    sampler) unless options say otherwise (``simformer[num_steps=10000]``,
    ``simformer[stop_after_epochs=200]`` to train all the steps); graph
    masks from the task's dependency graph; ``simformer[x_per_token=10]`` groups
    the data values by ten per token; ``simformer[matmul_dtype=bfloat16]`` trains
    and samples with bfloat16 matrix products. Options left ``None`` take the
    Simformer's own defaults, so that they are defined in one place."""
    inference = Simformer(
        prior,
        graph=None if attention in (None, "dense") else task_graph(task),
        tracker=NullTracker(),
        show_progress_bars=show_progress_bars,
        net_kwargs=keywords_set(matmul_dtype=matmul_dtype),
        **keywords_set(sde=sde, attention=attention, x_per_token=x_per_token),
    )
    inference.append_simulations(theta, x).train(
        **keywords_set(
            num_steps=num_steps,
            training_batch_size=training_batch_size,
            stop_after_epochs=stop_after_epochs,
        )
    )
    sampler = {"sample_with": sample_with, "steps": steps}
    return TrainedPosterior(
        inference.build_posterior(**sampler, ode_solver=ode_solver),
        _epochs(inference),
        likelihood=inference.build_likelihood(**sampler),
    )


def train_inn(
    theta: Tensor,
    x: Tensor,
    prior: Distribution,
    show_progress_bars: bool = False,
    mode: str = "ml",
) -> TrainedPosterior:
    """The INN (:class:`sbi_allinone.INN`) at its defaults, trained like sbi's NPE."""
    return _train_default(INN, theta, x, prior, show_progress_bars, mode=mode)


#: The options of ``iflow[...]`` that go to ``InflationaryFlow.train``; the others
#: go to :func:`~sbi_allinone.inflationary.builder.inflationary_flow_nn`.
IFLOW_TRAINING_OPTIONS: tuple[str, ...] = (
    "training_batch_size",
    "learning_rate",
    "stop_after_epochs",
    "max_num_epochs",
    "num_steps",
    "lr_decay",
)


def train_inflationary_flow(
    theta: Tensor,
    x: Tensor,
    prior: Distribution,
    show_progress_bars: bool = False,
    **options: Any,
) -> TrainedPosterior:
    """The inflationary flow at its defaults (PR-preserving, multistep sampling, the
    trainer's step budget) unless options say otherwise: the training options,
    :data:`IFLOW_TRAINING_OPTIONS`, go to ``InflationaryFlow.train``
    (``iflow[num_steps=10000]``, ``iflow[lr_decay=constant]``; ``None`` keeps the
    trainer's default), the others to
    :func:`~sbi_allinone.inflationary.builder.inflationary_flow_nn`
    (``iflow[steps=256]``, ``iflow[ema_decay=None]``)."""
    training, flow_kwargs = split_keywords(options, IFLOW_TRAINING_OPTIONS)
    inference = InflationaryFlow(
        prior,
        tracker=NullTracker(),
        show_progress_bars=show_progress_bars,
        **flow_kwargs,
    )
    # Only what is set: the trainer derives its defaults (the patience from the
    # number of simulations and the batch size) from what is absent.
    inference.append_simulations(theta, x).train(**keywords_set(**training))
    return TrainedPosterior(inference.build_posterior(), _epochs(inference))


# sbi's estimators (baselines.py) build on the helpers above, so they are imported
# here, and registered first.
from sbi_allinone.benchmarks.baselines import (  # noqa: E402
    train_fmpe,
    train_nle,
    train_npe_maf,
    train_npe_nsf,
    train_npe_sbibm,
    train_npse,
)

register_method("npe", train_npe_maf, "sbi NPE, masked autoregressive flow")
register_method("npe_nsf", train_npe_nsf, "sbi NPE, neural spline flow")
register_method(
    "npe_sbibm",
    train_npe_sbibm,
    "NPE with sbibm's settings (NSF, 50 hidden, batches of 10 000): the sbibm "
    "paper's NPE",
)
register_method(
    "nle", train_nle, "sbi NLE (MAF) + slice MCMC", normalized_log_prob=False
)
register_method("npse", train_npse, "sbi NPSE, score matching (VE SDE)")
register_method("fmpe", train_fmpe, "sbi FMPE, flow matching")
register_method("simformer", train_simformer, "Simformer, dense attention (EDM)")
register_method(
    "iflow",
    train_inflationary_flow,
    "Inflationary flow, PR-preserving (pfODE, multistep sampling)",
)
register_method(
    "iflow_prr",
    partial(train_inflationary_flow, schedule="prr", latent_dim=0.99),
    "Inflationary flow, PR-reducing to the principal directions that explain 99% "
    "of the parameters' variance (PR-preserving, with a warning, where that is all "
    "of them)",
)
register_method("inn", train_inn, "INN, maximum likelihood (conditional INN)")
register_method(
    "inn_mmd",
    partial(train_inn, mode="mmd"),
    "INN, bidirectional MMD training (Ardizzone et al. 2019)",
    normalized_log_prob=False,
)
register_method(
    "inn_hybrid",
    partial(train_inn, mode="hybrid"),
    "INN, maximum likelihood plus MMD terms",
)
# The Simformer's graph variants: attention masks from the task's dependency graph.
_GRAPH_ATTENTION = {
    "undirected": "Simformer, moralized task graph as attention mask",
    "directed": "Simformer, directed attention (faithful inversion of the task graph)",
}
for _attention, _description in _GRAPH_ATTENTION.items():
    register_method(
        f"simformer_{_attention}",
        # partial of a module-level function: still pickles for worker processes.
        partial(train_simformer, attention=_attention),
        _description,
        needs_task=True,
    )
