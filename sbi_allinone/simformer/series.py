"""Conditionals of a Simformer trained on :class:`~.tokens.Variables` with series.

The observation decides the tokens: each call arranges the given values and
metadata as tokens (:func:`~.tokens.arrange`), so an observation may have any number
of points, at any times, and a series parameter may be queried at any times. Which
token is what:

- a fixed-size variable that is given is conditioned on (NaN entries: missing); one
  that is not given is sampled;
- a series token with a finite value is conditioned on; one with a NaN value and
  finite metadata is sampled (e.g. the prey at an unobserved time, or a
  function-valued parameter at a query time); one with NaN metadata is padding.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch.distributions import Distribution

from sbi_allinone.simformer.estimator import SimformerEstimator
from sbi_allinone.simformer.posterior import DEFAULT_ODE_SOLVER, DEFAULT_STEPS
from sbi_allinone.simformer.sampling import ode_log_prob, sample_ode
from sbi_allinone.simformer.support import sample_in_support
from sbi_allinone.simformer.tokens import Layout, Variables, arrange

__all__ = ["SeriesPosterior"]

#: Rows per network call when sampling: bounds memory for long series.
CHUNK_ROWS = 4096


class SeriesPosterior:
    """Any conditional of a Simformer trained with ``variables``.

    Args:
        estimator: The trained denoiser.
        variables: The variables it was trained on.
        channels: Its metadata channels, in training order.
        steps: Steps of the probability-flow ODE sampler.
        ode_solver: ``"multistep"`` or ``"heun"``.
        device: Device of sampling.
        prior: Prior of the fixed-size parameters: posterior samples outside its
            support are rejected, as in sbi; ``None``: no rejection.
    """

    def __init__(
        self,
        estimator: SimformerEstimator,
        variables: Variables,
        channels: tuple[str, ...],
        steps: int,
        ode_solver: str,
        device: str = "cpu",
        prior: Distribution | None = None,
    ) -> None:
        self.estimator = estimator.eval()
        self.variables, self.channels = variables, channels
        self.steps, self.ode_solver, self.device = steps, ode_solver, device
        self.prior = prior

    @classmethod
    def build(
        cls,
        estimator: SimformerEstimator,
        variables: Variables,
        channels: tuple[str, ...],
        sample_with: str | None = None,
        steps: int | None = None,
        ode_solver: str | None = None,
        device: str = "cpu",
        prior: Distribution | None = None,
        **unsupported: object,
    ) -> SeriesPosterior:
        """The posterior with the Simformer's default sampler settings; raises for
        options it does not support (other samplers, guidance)."""
        if sample_with not in (None, "ode") or unsupported:
            raise ValueError(
                "A Simformer with `variables` samples by the ODE, without guidance: "
                f"got sample_with={sample_with!r} and {sorted(unsupported)}."
            )
        return cls(
            estimator, variables, channels, steps or DEFAULT_STEPS["ode"],
            ode_solver or DEFAULT_ODE_SOLVER, device, prior,
        )  # fmt: skip

    def sample(
        self,
        sample_shape: tuple[int, ...] = (),
        x: Tensor | dict[str, Tensor] | None = None,
        metadata: dict[str, dict[str, Tensor]] | None = None,
        theta: Tensor | dict[str, Tensor] | None = None,
        show_progress_bars: bool = False,
        reject_outside_prior: bool = True,
        max_sampling_time: float | None = None,
    ) -> Tensor | dict[str, Tensor]:
        """Samples of everything not given, conditioned on everything given.

        Args:
            sample_shape: Number of samples, e.g. ``(1000,)``.
            x: One observation: ``(1, num_x)`` for fixed-size data, else a dict of
                each variable's ``(1, size)`` or ``(1, K)`` values (series: any
                ``K``; NaN with finite metadata = sample this point).
            metadata: Channel name to series name to ``(1, K)`` metadata (e.g.
                the times of the observed points, or of the points to sample).
            theta: Given parameters (e.g. for the likelihood or the posterior
                predictive), as ``x``.
            show_progress_bars: Show the progress of prior-support rejection.
            reject_outside_prior: Reject parameter samples outside the prior's
                support (as sbi); stops with an error when none lands there.
            max_sampling_time: Seconds the rejection may take (as sbi).

        Returns:
            With only fixed-size parameters sampled: ``(*sample_shape,
            num_theta)``, as sbi's posteriors (inside the prior's support, if
            there is a prior). Otherwise a dict of each variable with sampled
            tokens to ``(*sample_shape, width)`` (given entries as given,
            padding NaN).
        """
        layout = self._observation(
            arrange(self.variables, theta, x, metadata, self.channels)
        )
        given = _names(theta, self.variables.theta) | _names(x, self.variables.x)
        latent = self._latent(layout, given)
        num_samples = int(torch.Size(sample_shape).numel())
        if self._samples_theta(layout, latent, theta is None):
            prior = self.prior if reject_outside_prior else None
            samples = sample_in_support(
                lambda k: self._draws(layout, latent, k)[:, None, latent],
                prior, num_samples, 1, CHUNK_ROWS, show_progress_bars,
                max_sampling_time,
            )[:, 0]  # fmt: skip
            return samples.reshape(*sample_shape, -1)
        samples = self._draws(layout, latent, num_samples).reshape(*sample_shape, -1)
        sampled = [
            name for name, columns in layout.columns.items() if latent[columns].any()
        ]
        return {name: samples[..., layout.columns[name]] for name in sampled}

    def sample_batched(
        self,
        sample_shape: tuple[int, ...],
        x: Tensor | dict[str, Tensor],
        metadata: dict[str, dict[str, Tensor]] | None = None,
        theta: Tensor | dict[str, Tensor] | None = None,
    ) -> Tensor | dict[str, Tensor]:
        """:meth:`sample` for each of a batch of observations (one sampler run
        each: observations may differ in their numbers of points).

        Args:
            sample_shape: Samples per observation.
            x: ``batch`` observations, as in :meth:`sample` with ``batch`` rows
                (series NaN-padded to a common ``K``).
            metadata: As in :meth:`sample`, with ``batch`` rows or one shared row.
            theta: As ``x``, or ``None``.

        Returns:
            As :meth:`sample`, with a ``batch`` dimension after ``sample_shape``.
        """
        inputs = (x, metadata, theta)
        batch = max(_rows_of(inputs), default=1)
        rows = [
            self.sample(sample_shape, *_row(inputs, index, batch))
            for index in range(batch)
        ]
        dim = len(torch.Size(sample_shape))
        if isinstance(rows[0], dict):
            return {key: torch.stack([r[key] for r in rows], dim) for key in rows[0]}
        return torch.stack(rows, dim)

    def log_prob(
        self,
        theta: Tensor,
        x: Tensor | dict[str, Tensor],
        metadata: dict[str, dict[str, Tensor]] | None = None,
        steps: int = 64,
    ) -> Tensor:
        """Log-density of fixed-size parameters given one observation, by the
        probability-flow ODE (exact divergence up to 10 parameters).

        Args:
            theta: Parameter rows ``(batch, num_theta)``.
            x: One observation, as in :meth:`sample`; its NaN values are
                marginalized.
            metadata: Its metadata, as in :meth:`sample`.
            steps: ODE steps.

        Returns:
            ``(batch,)`` log-densities in original units.
        """
        if any(size == "series" for size in self.variables.theta.values()):
            raise ValueError(
                "`log_prob` needs fixed-size parameters; a series parameter has no "
                "density over a fixed set of values here."
            )
        layout = self._observation(
            arrange(self.variables, None, x, metadata, self.channels)
        )
        latent = layout.is_theta.to(self.device)
        theta = torch.as_tensor(theta, dtype=torch.float32, device=self.device)
        if theta.ndim != 2 or theta.shape[1] != int(latent.sum()):
            raise ValueError(
                f"`theta` must have shape (batch, {int(latent.sum())}), got "
                f"{tuple(theta.shape)}."
            )
        return torch.cat(
            [
                self._log_prob_rows(layout, latent, rows, steps)
                for rows in theta.split(CHUNK_ROWS)
            ]
        ).cpu()

    def _log_prob_rows(
        self, layout: Layout, latent: Tensor, theta: Tensor, steps: int
    ) -> Tensor:
        tokens = layout.tokens.to(self.device)
        values = layout.values.to(self.device).expand(len(theta), -1).clone()
        values[:, latent] = theta
        missing = torch.isnan(values) & ~latent
        standardized = torch.nan_to_num(self.estimator.standardize(values, tokens))
        log_prob = ode_log_prob(
            self.estimator, standardized, ~(latent | missing), missing, steps,
            tokens=tokens,
        )  # fmt: skip
        # Change of variables from standardized to original units.
        _, std = self.estimator.statistics(tokens)
        return log_prob - std.expand_as(values)[0, latent].log().sum()

    @staticmethod
    def _observation(layout: Layout) -> Layout:
        if layout.values.shape[0] != 1:
            raise ValueError(
                f"Pass one observation (batch 1), got {layout.values.shape[0]}."
            )
        return layout

    def _latent(self, layout: Layout, given: set[str]) -> Tensor:
        """``(n,)``, ``True`` for the tokens to sample."""
        latent = torch.zeros(layout.values.shape[1], dtype=torch.bool)
        unknown = torch.isnan(layout.values[0])
        metadata = layout.tokens.metadata
        has_metadata = (
            torch.zeros_like(latent)
            if metadata is None
            else torch.isfinite(metadata[0]).any(-1)
        )
        for name, size in (*self.variables.theta.items(), *self.variables.x.items()):
            columns = layout.columns[name]
            if size == "series":
                latent[columns] = unknown[columns] & has_metadata[columns]
            elif name not in given:
                latent[columns] = True
        if not latent.any():
            raise ValueError("Nothing to sample: every variable is given.")
        return latent

    def _draw(self, layout: Layout, latent: Tensor, rows: int) -> Tensor:
        """``(rows, n)`` samples in original units."""
        device = self.device
        tokens = layout.tokens.to(device)
        values = layout.values.to(device)
        missing = (torch.isnan(values) & ~latent.to(device)).expand(rows, -1)
        standardized = torch.nan_to_num(self.estimator.standardize(values, tokens))
        condition = ~(latent.to(device) | missing)
        out = sample_ode(
            self.estimator,
            standardized.expand(rows, -1),
            condition,
            missing,
            self.steps,
            self.ode_solver,
            tokens=tokens,
        )
        out = self.estimator.unstandardize(out, tokens)
        return torch.where(latent.to(device), out, values).cpu()

    def _samples_theta(
        self, layout: Layout, latent: Tensor, no_theta_given: bool
    ) -> bool:
        """Whether exactly the fixed-size parameters are sampled (sbi's case)."""
        fixed_theta = all(s != "series" for s in self.variables.theta.values())
        return fixed_theta and no_theta_given and torch.equal(latent, layout.is_theta)

    def _draws(self, layout: Layout, latent: Tensor, num_samples: int) -> Tensor:
        """``(num_samples, n)`` samples, in chunks of :data:`CHUNK_ROWS`."""
        return torch.cat(
            [self._draw(layout, latent, rows) for rows in _chunks(num_samples)]
        )


def _names(
    given: Tensor | dict[str, Tensor] | None, variables: dict[str, int | str]
) -> set[str]:
    """Names of the given variables (a flat tensor gives all of them)."""
    if given is None:
        return set()
    return set(given) if isinstance(given, dict) else set(variables)


def _chunks(total: int, size: int = CHUNK_ROWS) -> list[int]:
    return [min(size, total - start) for start in range(0, total, size)]


def _rows_of(value: Any) -> list[int]:
    """Row counts of all tensors in nested tuples and dicts."""
    if isinstance(value, Tensor):
        return [value.shape[0]] if value.ndim else []
    if isinstance(value, dict):
        value = tuple(value.values())
    if not isinstance(value, tuple):
        return []
    return [rows for item in value for rows in _rows_of(item)]


def _row(value: Any, index: int, batch: int) -> Any:
    """Row ``index`` of every tensor with ``batch`` rows (others as they are)."""
    if isinstance(value, Tensor):
        return value[index : index + 1] if value.ndim and len(value) == batch else value
    if isinstance(value, dict):
        return {key: _row(item, index, batch) for key, item in value.items()}
    if isinstance(value, tuple):
        return tuple(_row(item, index, batch) for item in value)
    return value
