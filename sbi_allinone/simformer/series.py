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

import torch
from torch import Tensor

from sbi_allinone.simformer.estimator import SimformerEstimator
from sbi_allinone.simformer.posterior import DEFAULT_ODE_SOLVER, DEFAULT_STEPS
from sbi_allinone.simformer.sampling import ode_log_prob, sample_ode
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
    """

    def __init__(
        self,
        estimator: SimformerEstimator,
        variables: Variables,
        channels: tuple[str, ...],
        steps: int,
        ode_solver: str,
        device: str = "cpu",
    ) -> None:
        self.estimator = estimator.eval()
        self.variables, self.channels = variables, channels
        self.steps, self.ode_solver, self.device = steps, ode_solver, device

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
            ode_solver or DEFAULT_ODE_SOLVER, device,
        )  # fmt: skip

    def sample(
        self,
        sample_shape: tuple[int, ...] = (),
        x: Tensor | dict[str, Tensor] | None = None,
        metadata: dict[str, dict[str, Tensor]] | None = None,
        theta: Tensor | dict[str, Tensor] | None = None,
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

        Returns:
            With only fixed-size parameters sampled: ``(*sample_shape,
            num_theta)``, as sbi's posteriors. Otherwise a dict of each variable
            with sampled tokens to ``(*sample_shape, width)`` (given entries as
            given, padding NaN).
        """
        layout = arrange(self.variables, theta, x, metadata, self.channels)
        self._observation(layout)
        given = _names(theta, self.variables.theta) | _names(x, self.variables.x)
        latent = self._latent(layout, given)
        num_samples = int(torch.Size(sample_shape).numel())
        draws = torch.cat(
            [
                self._draw(layout, latent, rows)
                for rows in _chunks(num_samples, CHUNK_ROWS)
            ]
        )
        samples = draws.reshape(*sample_shape, -1)
        return self._by_variable(layout, latent, samples, theta is None)

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
        ones = torch.ones_like(values[:1])
        std = self.estimator.unstandardize(ones, tokens) - self.estimator.unstandardize(
            torch.zeros_like(ones), tokens
        )
        return log_prob - std[0, latent].log().sum()

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

    def _by_variable(
        self, layout: Layout, latent: Tensor, samples: Tensor, no_theta_given: bool
    ) -> Tensor | dict[str, Tensor]:
        fixed_theta = all(s != "series" for s in self.variables.theta.values())
        sampled = [
            name for name, columns in layout.columns.items() if latent[columns].any()
        ]
        if fixed_theta and no_theta_given and sampled == list(self.variables.theta):
            return samples[..., layout.is_theta]
        return {name: samples[..., layout.columns[name]] for name in sampled}


def _names(
    given: Tensor | dict[str, Tensor] | None, variables: dict[str, int | str]
) -> set[str]:
    """Names of the given variables (a flat tensor gives all of them)."""
    if given is None:
        return set()
    return set(given) if isinstance(given, dict) else set(variables)


def _chunks(total: int, size: int) -> list[int]:
    return [min(size, total - start) for start in range(0, total, size)]
