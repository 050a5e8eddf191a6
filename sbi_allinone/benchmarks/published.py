"""sbibm's published C2ST, per task, budget, algorithm and observation.

``data/sbibm_c2st.csv`` holds the numbers of the sbibm paper (Lueckmann et al.,
AISTATS 2021) from the public ``sbi-benchmark/results`` repository
(``benchmarking_sbi/results/main_paper.csv``; columns reduced to task, budget,
observation, algorithm, C2ST), with gaussian_mixture replaced by the sbibm authors'
re-run after its reference posterior was corrected. They were scored by sbibm's MLP
C2ST (like ``--classifier mlp`` here, but trained without early stopping), 10 000
against 10 000 samples, observations 1–10, budgets 1 000, 10 000 and 100 000.

The paper's algorithms: ``NPE``, ``NLE``, ``NRE`` (one round) and ``SNPE``, ``SNLE``,
``SNRE`` (ten rounds), ``REJ-ABC``, ``SMC-ABC``. ``NPE`` is sbibm's NPE, registered
here as the method ``npe_sbibm``.
"""

from __future__ import annotations

import csv
import statistics
from collections import defaultdict
from functools import cache
from pathlib import Path

__all__ = ["PUBLISHED_ALGORITHMS", "REPRODUCES", "published_c2st", "published_summary"]

PUBLISHED_ALGORITHMS = (
    "NPE", "SNPE", "NLE", "SNLE", "NRE", "SNRE", "REJ-ABC", "SMC-ABC",
)  # fmt: skip
# Our methods that run a published algorithm with its published settings.
REPRODUCES = {"npe_sbibm": "NPE"}
_FILE = Path(__file__).parent / "data" / "sbibm_c2st.csv"


@cache
def published_c2st() -> tuple[dict, ...]:
    """Every published row: ``task``, ``budget``, ``observation``, ``algorithm``,
    ``c2st``."""
    with _FILE.open(newline="") as f:
        return tuple(
            {
                "task": row["task"],
                "budget": int(row["num_simulations"]),
                "observation": int(row["num_observation"]),
                "algorithm": row["algorithm"],
                "c2st": float(row["C2ST"]),
            }
            for row in csv.DictReader(f)
        )


def published_summary(
    algorithms: tuple[str, ...] = PUBLISHED_ALGORITHMS,
    observations: tuple[int, ...] | None = None,
) -> dict[tuple[str, int, str], dict]:
    """Mean and standard deviation over observations of the published C2ST.

    Args:
        algorithms: Which of :data:`PUBLISHED_ALGORITHMS`.
        observations: Only these observation numbers (default: all ten).

    Returns:
        ``{(task, budget, algorithm): {"mean", "sd", "n", "values"}}``, ``values``
        by observation number.
    """
    unknown = set(algorithms) - set(PUBLISHED_ALGORITHMS)
    if unknown:
        raise ValueError(
            f"Unknown published algorithms {sorted(unknown)}; sbibm's are "
            f"{', '.join(PUBLISHED_ALGORITHMS)}."
        )
    groups: dict[tuple, dict[int, float]] = defaultdict(dict)
    for row in published_c2st():
        if row["algorithm"] in algorithms and (
            observations is None or row["observation"] in observations
        ):
            key = (row["task"], row["budget"], row["algorithm"])
            groups[key][row["observation"]] = row["c2st"]
    return {
        key: {
            "mean": statistics.fmean(values.values()),
            "sd": statistics.stdev(values.values()) if len(values) > 1 else 0.0,
            "n": len(values),
            "values": values,
        }
        for key, values in groups.items()
    }
