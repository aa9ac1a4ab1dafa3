"""How far each attack pushes each rule: ``python -m experiments.attack_table [--plot out.png]``.

The fixed synthetic setting (every flag has this as its default):
n = 25 workers, f = 5 Byzantine, h = 20 honest gradients g_i ~ N(m 1_d, I_d) i.i.d. with
d = 500 and m = 0.3 (the SGD regime: per-worker noise larger than the mean gradient), float64,
honest draws from ``torch.Generator().manual_seed(trial)`` for trial = 0..trials-1 (3).
Each cell is the mean over trials of ``||rule([honest; byzantine]) - mean(honest)||_2``;
"none" lets the f Byzantine workers send honest draws of their own. Rules: Mean,
CoordinateMedian, Krum(f), MultiKrum(f) (m = n - f), TrimmedMean(f), Bulyan(f), DnC(f),
MoNNA(f) (pivot: worker 0, honest), Meamed(f), CGE(f) (the mean of the kept vectors), CAF(f),
SignGuard(f), ClippedClustering, FLAME, FoolsGold (a fresh one per cell: one round) and FLTrust
(its server gradient an honest draw of its own) from robustagg. MDA and SMEA are left out:
exact searches over C(25, 5) = 53,130 subsets per call, which the rule-tailored rows call
hundreds of times (``--rules`` picks columns). The backdoors (backdoor, model_replacement,
dba, neurotoxin) poison data, not gradients, and are measured by training runs
(``+study=backdoors``).
Attacks use their defaults (seed 0) except where the row label says otherwise; the
rule-tailored optimal_alie and optimal_ipm get the column's rule, fang_krum always targets
Krum(f) (its own default), and the other attacks ignore the rule.
"""
from __future__ import annotations

import argparse
import math
import sys

import torch

import attacks
import robustagg as ra

# (row label, registry name, constructor arguments)
ROWS = [
    ("none", "none", {}),
    ("gaussian (std 200)", "gaussian", {}),
    ("sign_flip", "sign_flip", {}),
    ("inf", "inf", {}),
    ("nan", "nan", {}),
    ("mimic", "mimic", {}),
    ("alie (paper z)", "alie", {}),
    ("ipm (eps 0.1)", "ipm", {"epsilon": 0.1}),
    ("ipm (eps 100)", "ipm", {"epsilon": 100.0}),
    ("min_max (unit_vec)", "min_max", {"direction": "unit_vec"}),
    ("min_max (std)", "min_max", {"direction": "std"}),
    ("min_sum (unit_vec)", "min_sum", {"direction": "unit_vec"}),
    ("min_sum (std)", "min_sum", {"direction": "std"}),
    ("fang_krum", "fang_krum", {}),
    ("fang_trimmed_mean", "fang_trimmed_mean", {}),
    ("optimal_alie", "optimal_alie", {}),
    ("optimal_ipm", "optimal_ipm", {}),
    ("adaptive_signguard", "adaptive_signguard", {}),
    ("adaptive_clipped_clustering", "adaptive_clipped_clustering", {}),
]


class RootedFLTrust(ra.FLTrust):
    """FLTrust handed the same server gradient before every call (the attacks' trial
    aggregations included)."""

    def __init__(self, f: int, server_grad: torch.Tensor):
        super().__init__(f)
        self.root = server_grad

    def __call__(self, grads, weights=None):
        self.server_grad = self.root.to(grads.dtype)
        return super().__call__(grads)


def rules(f: int, server_grad: torch.Tensor | None = None) -> dict:
    """The columns; FLTrust only when a ``server_grad`` is given."""
    out = {"Mean": ra.Mean(), "Median": ra.CoordinateMedian(), "Krum": ra.Krum(f=f),
           "MultiKrum": ra.MultiKrum(f=f), "TrimmedMean": ra.TrimmedMean(f=f),
           "Bulyan": ra.Bulyan(f=f), "DnC": ra.DnC(f=f), "MoNNA": ra.MoNNA(f=f),
           "Meamed": ra.Meamed(f=f), "CGE": ra.CGE(f=f, average=True), "CAF": ra.CAF(f=f),
           "SignGuard": ra.SignGuard(f=f), "ClippedClustering": ra.ClippedClustering(),
           "FLAME": ra.FLAME(), "FoolsGold": ra.FoolsGold()}
    if server_grad is not None:
        out["FLTrust"] = RootedFLTrust(f, server_grad)
    return out


def byzantine_rows(name: str, kw: dict, honest: torch.Tensor, f: int, rule, gen,
                   m: float) -> torch.Tensor:
    """The f rows the Byzantine workers send; for "none", honest draws of their own."""
    if name == "none":
        return torch.randn(f, honest.shape[1], generator=gen, dtype=honest.dtype) + m
    atk = attacks.attack(name, **kw)
    return atk(honest, f, rule=rule if "rule" in atk.needs and name != "fang_krum" else None)


def table(n: int = 25, f: int = 5, d: int = 500, m: float = 0.3, trials: int = 3,
          progress: bool = True, rows=ROWS, columns=None):
    """``{row label: {rule name: mean distance}}`` for the setting above (``rows``: a subset
    of ``ROWS``; ``columns``: of the rules' names, default all)."""
    from tqdm import tqdm

    h = n - f
    cols = [c for c in rules(f, torch.zeros(1)) if columns is None or c in columns]
    out = {label: {c: 0.0 for c in cols} for label, _, _ in rows}
    for label, name, kw in tqdm(rows, desc="attacks", disable=not progress, file=sys.stderr):
        for trial in range(trials):
            gen = torch.Generator().manual_seed(trial)
            honest = torch.randn(h, d, generator=gen, dtype=torch.float64) + m
            # FLTrust's server gradient: an honest draw from a generator of its own (the other
            # cells' draws stay those of the generator above)
            root = torch.randn(d, generator=torch.Generator().manual_seed(10_000 + trial),
                               dtype=torch.float64) + m
            mu = honest.mean(dim=0)
            for col, rule in rules(f, root).items():
                if col not in cols:
                    continue
                byz = byzantine_rows(name, kw, honest, f, rule, gen, m)
                agg = rule(torch.cat([honest, byz]))
                out[label][col] += float((agg - mu).norm()) / trials
    return out


def markdown(result: dict) -> str:
    cols = list(next(iter(result.values())))
    lines = ["| attack | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for label, row in result.items():
        cells = [f"{v:.3g}" if math.isfinite(v) else str(v) for v in row.values()]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(result: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols, labels = list(next(iter(result.values()))), list(result)
    vals = torch.tensor([[result[r][c] for c in cols] for r in labels]).clamp(max=1e6)
    vals = torch.where(torch.isfinite(vals), vals, torch.full_like(vals, 1e6))
    fig, ax = plt.subplots(figsize=(8, 0.4 * len(labels) + 1.5))
    im = ax.imshow(torch.log10(vals.clamp(min=1e-3)).numpy(), cmap="magma_r", aspect="auto")
    ax.set_xticks(range(len(cols)), cols, rotation=30, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    for i, r in enumerate(labels):
        for j, c in enumerate(cols):
            v = result[r][c]
            dark = not math.isfinite(v) or v > 100
            ax.text(j, i, f"{v:.3g}" if math.isfinite(v) else "inf/nan", ha="center",
                    va="center", fontsize=7, color="white" if dark else "black")
    fig.colorbar(im, ax=ax, label="log10 ||rule output - honest mean||")
    ax.set_title("Distance of the aggregate from the honest mean (non-finite capped at 1e6)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m experiments.attack_table", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=25)
    p.add_argument("--f", type=int, default=5)
    p.add_argument("--d", type=int, default=500)
    p.add_argument("--m", type=float, default=0.3, help="mean of every honest coordinate")
    p.add_argument("--trials", type=int, default=3)
    p.add_argument("--rules", help="comma-separated columns (default: all)")
    p.add_argument("--out", help="also write the Markdown table here")
    p.add_argument("--plot", help="write a heatmap PNG here")
    args = p.parse_args(argv)
    result = table(args.n, args.f, args.d, args.m, args.trials,
                   columns=None if args.rules is None else args.rules.split(","))
    text = (f"n={args.n}, f={args.f}, h={args.n - args.f} honest ~ N({args.m}, I_{args.d}), "
            f"mean over {args.trials} trials of ||rule(x) - mean(honest)||\n\n" + markdown(result))
    print(text)
    if args.out:
        with open(args.out, "w") as fh:
            fh.write(text + "\n")
    if args.plot:
        plot(result, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
