"""A tracker that records nothing, for trainers that should not write logs."""

from __future__ import annotations

from typing import Any

__all__ = ["NullTracker"]


class NullTracker:
    """Satisfies sbi's ``Tracker`` protocol and discards everything.

    sbi's trainers create a TensorBoard writer under ``./sbi-logs/`` when no tracker
    is given; benchmark sweeps and tests pass this one instead.
    """

    log_dir: str | None = None

    def log_metric(self, name: str, value: float, step: int | None = None) -> None:
        """Discard one metric."""

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        """Discard several metrics."""

    def log_params(self, params: dict[str, Any]) -> None:
        """Discard hyper-parameters."""

    def add_figure(self, name: str, figure: Any, step: int | None = None) -> None:
        """Discard a figure."""

    def flush(self) -> None:
        """Nothing to flush."""
