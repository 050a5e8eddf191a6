"""PR-reducing inflationary flows on parameters near a line and near a curve.

Three parameters lie close to a one-dimensional set, s ~ U(-1, 1):

- line:  theta = (s, 2 s, -s)            + 0.02 eps,
- curve: theta = (s, s^2, sin 2 s)       + 0.02 eps,

observed through x = s + 0.3 eta. For latent_dim = 1 and 2 a PR-reducing flow
(``schedule="prr"``) is trained; held-out pairs are encoded, the compressed latent
coordinates are set to zero, and the pairs decoded. The reconstruction error is
compared with the parameter noise and with linear PCA truncated to the same number
of directions (the best a linear map can do). Reported too: the variance of each
latent coordinate relative to the kept scale, and the fraction of the parameters'
variance each principal direction explains.

    cd docs/benchmarks
    python iflow_manifold.py [num_simulations]   # writes iflow_manifold.md / .png
    python iflow_manifold.py 5000 5e-4 15        # the paper's gamma0 and T:
                                                 # iflow_manifold_gamma0_5e-4.md / .png
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib.pyplot as plt
import torch

from sbi_allinone import InflationaryFlow
from sbi_allinone.tracking import NullTracker

NOISE, NUM_HELD_OUT = 0.02, 1000
LATENT_DIMS = (1, 2)
HERE = Path(__file__).parent


def line(s: torch.Tensor) -> torch.Tensor:
    return torch.cat([s, 2 * s, -s], dim=-1)


def curve(s: torch.Tensor) -> torch.Tensor:
    return torch.cat([s, s**2, torch.sin(2 * s)], dim=-1)


PROBLEMS = {"line": line, "curve": curve}


def simulate(manifold, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    s = 2 * torch.rand(n, 1) - 1
    theta = manifold(s) + NOISE * torch.randn(n, 3)
    return theta, s + 0.3 * torch.randn(n, 1)


def pca_truncation_error(theta, held_theta, latent_dim: int) -> float:
    """Mean error of projecting onto the top principal directions (standardized)."""
    mean, std = theta.mean(0), theta.std(0)
    _, _, vh = torch.linalg.svd((theta - mean) / std, full_matrices=False)
    top = vh[:latent_dim].T
    standardized = (held_theta - mean) / std
    back = standardized @ top @ top.T * std + mean
    return (back - held_theta).norm(dim=-1).mean().item()


def study(name: str, num_simulations: int, schedule_kwargs: dict) -> dict:
    torch.manual_seed(7)
    theta, x = simulate(PROBLEMS[name], num_simulations)
    held_theta, held_x = simulate(PROBLEMS[name], NUM_HELD_OUT)
    standardized = (theta - theta.mean(0)) / theta.std(0)
    eigenvalues = torch.linalg.eigvalsh(torch.cov(standardized.T)).flip(0)
    result = {"explained": (eigenvalues / eigenvalues.sum()).tolist()}
    for latent_dim in LATENT_DIMS:
        torch.manual_seed(1)
        flow = InflationaryFlow(
            schedule="prr", latent_dim=latent_dim, tracker=NullTracker(),
            show_progress_bars=False, **schedule_kwargs,
        )  # fmt: skip
        estimator = flow.append_simulations(theta, x).train()
        z = estimator.inverse_transform(held_theta, held_x)
        kept_scale = estimator.schedule.latent_variance()[0]
        dropped = z.clone()
        dropped[:, latent_dim:] = 0.0
        back = estimator.transform(dropped, held_x)
        result[latent_dim] = {
            "flow_error": (back - held_theta).norm(dim=-1).mean().item(),
            "pca_error": pca_truncation_error(theta, held_theta, latent_dim),
            "latent_variance": (z.var(0) / kept_scale).tolist(),
        }
        print(name, latent_dim, result[latent_dim], file=sys.stderr, flush=True)
    return result


def write(results: dict, num_simulations: int, output: str) -> None:
    noise = NOISE * 3**0.5
    lines = [
        f"{num_simulations} simulations, {NUM_HELD_OUT} held-out pairs; parameter "
        f"noise (mean norm) {noise:.3f}.\n",
        "| problem | PCA: variance explained per direction | latent_dim | flow "
        "reconstruction error | PCA truncation error | latent variance / kept scale |",
        "|---|---|---|---|---|---|",
    ]
    for name, result in results.items():
        explained = " ".join(f"{v:.3f}" for v in result["explained"])
        for latent_dim in LATENT_DIMS:
            r = result[latent_dim]
            variances = " ".join(f"{v:.1e}" for v in r["latent_variance"])
            lines.append(
                f"| {name} | {explained} | {latent_dim} | {r['flow_error']:.3f} "
                f"| {r['pca_error']:.3f} | {variances} |"
            )
    (HERE / f"{output}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def plot(results: dict, output: str) -> None:
    fig, axes = plt.subplots(1, len(results), figsize=(5 * len(results), 3.8))
    width = 0.35
    for ax, (name, result) in zip(axes, results.items(), strict=True):
        positions = torch.arange(len(LATENT_DIMS)).float()
        flow = [result[d]["flow_error"] for d in LATENT_DIMS]
        pca = [result[d]["pca_error"] for d in LATENT_DIMS]
        ax.bar(positions - width / 2, flow, width, label="PR-R flow")
        ax.bar(positions + width / 2, pca, width, label="linear PCA")
        ax.axhline(NOISE * 3**0.5, color="k", ls="--", label="parameter noise")
        ax.set(
            xticks=positions.tolist(),
            xticklabels=[str(d) for d in LATENT_DIMS],
            xlabel="latent dimensions kept",
            ylabel="mean reconstruction error",
            title=f"parameters near a {name}",
            yscale="log",
        )
        ax.legend()
    fig.tight_layout()
    fig.savefig(HERE / f"{output}.png", dpi=100)


def main(arguments: list[str]) -> None:
    num_simulations = int(arguments[0]) if arguments else 5000
    schedule_kwargs, output = {}, "iflow_manifold"
    if len(arguments) == 3:
        schedule_kwargs = {"gamma0": float(arguments[1]), "t_max": float(arguments[2])}
        output = f"iflow_manifold_gamma0_{arguments[1]}"
    results = {
        problem: study(problem, num_simulations, schedule_kwargs)
        for problem in PROBLEMS
    }
    write(results, num_simulations, output)
    plot(results, output)


if __name__ == "__main__":
    main(sys.argv[1:])
