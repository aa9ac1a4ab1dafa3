"""Compression benchmarks: accuracy against bytes sent, and the cost of compressing.

    python -m experiments.bench_compression accuracy   # rules x attacks x k/d, ~10 min on 2 cores
    python -m experiments.bench_compression goal       # k/d = 0.01 shared masks vs dense, 3 seeds
    python -m experiments.bench_compression budget     # the same with a step-decay lr, 2x rounds
    python -m experiments.bench_compression cost       # top-k vs approximate top-k at d = 1e7
    python -m experiments.bench_compression plot       # the PNGs of docs/compression.md

``accuracy``: n = 10 workers of which f = 2 (20 %) Byzantine, on Fashion-MNIST when installed
(Debian's dataset-fashion-mnist, else digits), an MLP (784-64-10, d = 50,890), SGD lr 0.1
with server momentum 0.9, the local backend (the same gradients as Ray, without processes),
``--rounds`` rounds. For each rule (mean, median, trimmed mean, Krum) and model attack (ALIE,
IPM): the dense run (k/d = 1), and for k/d in {0.1, 0.01, 0.001} per-worker masks (``topk``)
and a shared mask (``topk_shared`` with error feedback). Records the final test accuracy and
the bytes the workers sent per round (payload: values, plus indices without a shared mask).

``goal``: the k/d = 0.01 shared-mask settings of :data:`GOAL` against the dense run, for each
rule and attack above and each ``--seeds``, every run ``2 --rounds`` rounds long with the test
accuracy every ``--rounds // 5`` rounds. Two bases of comparison come out of the same runs:
the same number of rounds (both at ``--rounds``), and the compressed run at ``2 --rounds``
against the dense run at ``--rounds``, which is 1/50 of the dense run's bytes (k/d = 0.01:
1/100 per round); the dense run's accuracy at ``2 --rounds`` tells whether it had stopped
improving. Settings other than the compression (lr, momentum) are each setting's own: the
dense one of ``accuracy``, the compressed ones tuned on seed 0 (docs/compression.md).

``budget``: the settings of :data:`BUDGET` with a step-decay learning rate (times 0.1 at 2/3
and at 13/15 of each run, :func:`milestones`), for ``--rules``, ``--attacks`` and ``--seeds``:
the dense run ``--rounds`` rounds long, each compressed run twice as long, which at k/d = 0.01
is 1/50 of the dense run's bytes. Each run is one JSON file under ``<out>/budget/`` (several
processes may share a sweep; a stopped one resumes); ``plot`` prints their table.

``cost``: at d = 1e7, one thread, the time to compress one float32 gradient with ``topk``,
``approx_topk`` and ``randk_shared`` (a gather), against the memory read bound (one pass
``x.sum()`` over the 40 MB) and against sending the dense gradient at the Ray and Lambda
bandwidths of :mod:`robustagg.costmodel`: compressing pays when compress time + sparse bytes /
bandwidth < dense bytes / bandwidth.

Writes JSON to ``--out`` (default ``outputs/bench_compression``); ``plot`` reads it and writes
``docs/img/compression_{accuracy,goal,budget,cost}.png``.
"""
import argparse
import json
import os
import time

RATIOS = (0.1, 0.01, 0.001)
RULES = ("mean", "median", "trimmed_mean", "krum")
ATTACKS = ("alie", "ipm")
MASKS = {"per-worker": ("topk", {}), "shared": ("topk_shared", {"error_feedback": True})}
BASE = dict(workers=10, byzantine=2, backend="local", progress=False)
DENSE = dict(compression="none", lr=0.1, momentum=0.9)
# label -> TrainConfig settings at k/d = 0.01 with a shared mask (lr tuned on seed 0, median/ALIE)
GOAL = {
    "dense": DENSE,
    "EF21, top-k shared mask, lr 0.1": dict(compression="topk_shared", lr=0.1, momentum=0.9,
                                            compression_kwargs={"ratio": 0.01,
                                                                "error_feedback": True}),
    "EF21, top-k shared mask": dict(compression="topk_shared", lr=0.03, momentum=0.9,
                                    compression_kwargs={"ratio": 0.01, "error_feedback": True}),
    "RoSDHB (rand-k, worker momentum)": dict(compression="randk_shared", lr=3.0, momentum=0.0,
                                             worker_momentum=0.9,
                                             compression_kwargs={"ratio": 0.01}),
}


# label -> TrainConfig settings of ``budget`` (k/d = 0.01, shared masks, a step-decay lr)
BUDGET = {
    "dense": DENSE,
    "top-k mask + worker momentum": dict(compression="topk_shared", lr=1.0, momentum=0.0,
                                         worker_momentum=0.9, compression_kwargs={"ratio": 0.01}),
    "RoSDHB (rand-k, worker momentum)": GOAL["RoSDHB (rand-k, worker momentum)"],
    "top-k mask + worker residual": dict(compression="topk_shared", lr=0.15, momentum=0.5,
                                         compression_kwargs={"ratio": 0.01, "residual": True}),
}


def milestones(rounds: int) -> list[int]:
    """``budget``'s step decay: the lr times 0.1 at 2/3 and again at 13/15 of the run."""
    return [round(2 * rounds / 3), round(13 * rounds / 15)]


def dataset():
    from robustagg.run.data import FASHION_MNIST_DIR

    return "fashion_mnist" if os.path.isdir(FASHION_MNIST_DIR) else "digits"


def cells():
    """``(label, compression, kwargs)`` of the grid's compression settings."""
    yield "dense", "none", {}, 1.0
    for ratio in RATIOS:
        for mask, (name, kw) in MASKS.items():
            yield mask, name, {"ratio": ratio, **kw}, ratio


def accuracy(args):
    import torch

    from robustagg.run.config import TrainConfig
    from robustagg.training import train

    torch.set_num_threads(1)
    path = os.path.join(args.out, "accuracy.json")
    done = json.load(open(path)) if os.path.exists(path) else []
    have = {(r["rule"], r["attack"], r["compression"], r["ratio"]) for r in done}
    ds = dataset()
    for rule in RULES:
        for attack in ATTACKS:
            for mask, name, kw, ratio in cells():
                if (rule, attack, name, ratio) in have:
                    continue
                t0 = time.perf_counter()
                res = train(TrainConfig(
                    dataset=ds, workers=10, byzantine=2, rule=rule, attack=attack,
                    rounds=args.rounds, eval_every=args.rounds, lr=0.1, momentum=0.9,
                    backend="local", compression=name, compression_kwargs=kw, seed=args.seed,
                    progress=False, output_dir=os.path.join(args.out, "runs", "run")))
                rows = res.history
                done.append({"rule": rule, "attack": attack, "mask": mask, "compression": name,
                             "ratio": ratio, "dataset": ds, "rounds": args.rounds,
                             "final_acc": res.final_accuracy,
                             "bytes_round": sum(r["bytes_round"] for r in rows) / len(rows),
                             "wall_s": time.perf_counter() - t0})
                print(json.dumps(done[-1]), flush=True)
                with open(path, "w") as fh:
                    json.dump(done, fh, indent=1)


def goal(args):
    import torch

    from robustagg.run.config import TrainConfig
    from robustagg.training import train

    torch.set_num_threads(1)
    path = os.path.join(args.out, "goal.json")
    done = json.load(open(path)) if os.path.exists(path) else []
    have = {(r["rule"], r["attack"], r["setting"], r["seed"], r["rounds"]) for r in done}
    ds, total = dataset(), 2 * args.rounds
    for seed in args.seeds:
        for rule in RULES:
            for attack in ATTACKS:
                for label, kw in GOAL.items():
                    if (rule, attack, label, seed, total) in have:
                        continue
                    t0 = time.perf_counter()
                    res = train(TrainConfig(
                        **BASE, **kw, dataset=ds, rule=rule, attack=attack, rounds=total,
                        eval_every=max(1, args.rounds // 5), seed=seed,
                        output_dir=os.path.join(args.out, "runs", f"goal-{os.getpid()}")))
                    bytes_round = res.history[0]["bytes_round"]
                    done.append({
                        "rule": rule, "attack": attack, "setting": label, "seed": seed,
                        "rounds": total, "dataset": ds, "bytes_round": bytes_round,
                        "curve": [(r["round"] + 1, (r["round"] + 1) * bytes_round, r["test_acc"])
                                  for r in res.history if "test_acc" in r],
                        "wall_s": time.perf_counter() - t0})
                    print(json.dumps({k: v for k, v in done[-1].items() if k != "curve"} |
                                     {"final_acc": done[-1]["curve"][-1][2]}), flush=True)
                    with open(path, "w") as fh:
                        json.dump(done, fh, indent=1)


def budget(args):
    """Each run of ``budget`` in its own file under ``<out>/budget/``, so that several
    processes (seeds, rules) can share the work and a stopped sweep resumes."""
    import torch

    from robustagg.run.config import TrainConfig
    from robustagg.training import train

    torch.set_num_threads(1)
    folder = os.path.join(args.out, "budget")
    os.makedirs(folder, exist_ok=True)
    ds = dataset()
    for seed in args.seeds:
        for rule in args.rules:
            for attack in args.attacks:
                for label, kw, ratio in budget_settings(args.settings, args.ratios):
                    total = args.rounds * (1 if kw["compression"] == "none" else 2)
                    slug = "".join(c if c.isalnum() else "-" for c in label.split(" (")[0])
                    path = os.path.join(folder, f"{rule}-{attack}-{slug}-R{args.rounds}-s{seed}.json")
                    if os.path.exists(path):
                        continue
                    t0 = time.perf_counter()
                    res = train(TrainConfig(
                        **BASE, **kw, dataset=ds, rule=rule, attack=attack, rounds=total,
                        lr_milestones=milestones(total), eval_every=max(1, total // 12),
                        seed=seed, output_dir=os.path.join(args.out, "runs",
                                                           f"budget-{os.getpid()}")))
                    bytes_round = res.history[0]["bytes_round"]
                    rec = {"rule": rule, "attack": attack, "setting": label, "ratio": ratio,
                           "seed": seed,
                           "dense_rounds": args.rounds, "rounds": total, "dataset": ds,
                           "bytes_round": bytes_round,
                           "curve": [(r["round"] + 1, (r["round"] + 1) * bytes_round,
                                      r["test_acc"]) for r in res.history if "test_acc" in r],
                           "wall_s": time.perf_counter() - t0, "load_end": os.getloadavg()}
                    print(json.dumps({k: v for k, v in rec.items() if k != "curve"} |
                                     {"final_acc": rec["curve"][-1][2]}), flush=True)
                    with open(path, "w") as fh:
                        json.dump(rec, fh)


def budget_settings(labels, ratios):
    """``(label, TrainConfig settings, k/d)`` of ``budget``'s runs: the dense one once, each
    compressed setting at each of ``ratios`` (the label names k/d when it is not 0.01)."""
    for label in labels:
        kw = BUDGET[label]
        if kw["compression"] == "none":
            yield label, kw, 1.0
            continue
        for ratio in ratios:
            yield (label if ratio == 0.01 else f"{label}, k/d = {ratio:g}",
                   kw | {"compression_kwargs": kw["compression_kwargs"] | {"ratio": ratio}},
                   ratio)


def budget_labels(runs) -> list[str]:
    """The settings of ``budget`` runs in :data:`BUDGET`'s order (others after them, as they
    come), each by decreasing k/d."""
    base = list(BUDGET)

    def key(r):
        name = r["setting"].split(", k/d")[0]
        return base.index(name) if name in base else len(base), -r.get("ratio", 0.01)

    keys = {r["setting"]: key(r) for r in runs}
    return sorted(dict.fromkeys(r["setting"] for r in runs), key=keys.get)  # stable: ties as met


def budget_table(runs) -> str:
    """The markdown table of ``budget``: final accuracy, mean ± std over seeds, and the gap
    (dense minus compressed)."""
    import numpy as np

    labels = budget_labels(runs)
    cells = sorted({(r["rule"], r["attack"], r["dense_rounds"]) for r in runs})

    def final(rule, attack, rounds, label):
        return 100 * np.array([r["curve"][-1][2] for r in runs if (
            r["rule"], r["attack"], r["dense_rounds"], r["setting"]) == (rule, attack, rounds,
                                                                         label)])

    head = ["rule", "attack", "dense rounds"] + labels + \
        [f"gap, {lb}" for lb in labels if lb != "dense"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for rule, attack, rounds in cells:
        accs = {lb: final(rule, attack, rounds, lb) for lb in labels}
        row = [rule, attack, str(rounds)]
        row += [f"{a.mean():.1f} ± {a.std():.1f} ({len(a)})" if len(a) else "-"
                for a in accs.values()]
        row += [f"{accs['dense'].mean() - accs[lb].mean():.1f}"
                if len(accs[lb]) and len(accs["dense"]) else "-" for lb in labels if lb != "dense"]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def _best(fn, repeats):
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def cost(args):
    import torch

    from robustagg.compression import compressor
    from robustagg.costmodel import MB, Prices

    torch.set_num_threads(1)
    d = int(float(args.d))
    g = torch.randn(d, generator=torch.Generator().manual_seed(0))
    read_s = _best(lambda: g.sum(), args.repeats)
    prices = Prices()
    bandwidth = {"ray (head node)": prices.instances["c5.2xlarge"].bandwidth,
                 "lambda (per function)": prices.lambda_bandwidth}
    out = {"d": d, "threads": 1, "read_s": read_s, "read_gb_s": 4 * d / read_s / 1e9,
           "bandwidth_mb_s": {k: v / MB for k, v in bandwidth.items()}, "rows": []}
    for ratio in RATIOS:
        for name in ("topk", "approx_topk", "randk_shared"):
            comp = compressor(name, ratio=ratio)
            mask = comp.round_mask(0, d)
            secs = _best(lambda: comp.compress(g, mask), args.repeats)
            row = comp.compress(g, mask)
            rec = {"compression": name, "ratio": ratio, "k": comp.k(d), "compress_s": secs,
                   "bytes": row.nbytes, "dense_bytes": 4 * d,
                   "candidates": getattr(comp, "last_candidates", None)}
            for label, bw in bandwidth.items():
                # compressing pays below this bandwidth: t + sparse/bw < dense/bw
                rec[f"pays_below_mb_s[{label}]"] = (4 * d - row.nbytes) / secs / MB
                rec[f"round_s_dense[{label}]"] = 4 * d / bw
                rec[f"round_s_sparse[{label}]"] = secs + row.nbytes / bw
            out["rows"].append(rec)
            print(json.dumps(rec), flush=True)
    with open(os.path.join(args.out, "cost.json"), "w") as fh:
        json.dump(out, fh, indent=1)


def plot(args):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(args.img, exist_ok=True)
    acc = json.load(open(os.path.join(args.out, "accuracy.json")))
    fig, axes = plt.subplots(1, len(ATTACKS), figsize=(11, 4.2), sharey=True)
    colors = dict(zip(RULES, ("tab:gray", "tab:blue", "tab:green", "tab:red")))
    for ax, attack in zip(axes, ATTACKS):
        for rule in RULES:
            for mask, style in (("per-worker", "--o"), ("shared", "-s")):
                pts = sorted((r["bytes_round"], r["final_acc"]) for r in acc
                             if r["rule"] == rule and r["attack"] == attack and
                             r["mask"] in (mask, "dense"))
                if pts:
                    ax.plot(*zip(*pts), style, color=colors[rule], ms=4,
                            label=f"{rule}, {mask}")
        ax.set_xscale("log")
        ax.set_xlabel("bytes sent per round (all workers)")
        ax.set_title(f"{attack.upper()}, n = 10, f = 2 ({acc[0]['dataset']})")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("final test accuracy")
    axes[-1].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(os.path.join(args.img, "compression_accuracy.png"), dpi=120)

    goal_path = os.path.join(args.out, "goal.json")
    if os.path.exists(goal_path):
        plot_goal(plt, json.load(open(goal_path)), args.img)

    budget_runs = [json.load(open(os.path.join(args.out, "budget", f)))
                   for f in sorted(os.listdir(os.path.join(args.out, "budget")))] \
        if os.path.isdir(os.path.join(args.out, "budget")) else []
    if budget_runs:
        plot_budget(plt, budget_runs, args.img)
        print(budget_table(budget_runs))

    c = json.load(open(os.path.join(args.out, "cost.json")))
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for name, marker in (("topk", "o"), ("approx_topk", "s"), ("randk_shared", "^")):
        pts = [(r["ratio"], r["compress_s"] * 1e3) for r in c["rows"] if r["compression"] == name]
        ax.plot(*zip(*pts), "-" + marker, label=name)
    ax.axhline(c["read_s"] * 1e3, color="k", ls=":", label="memory read bound (one pass)")
    for label, mb_s in c["bandwidth_mb_s"].items():
        ax.axhline(4 * c["d"] / (mb_s * 2**20) * 1e3, ls="--", color="gray", lw=0.8)
        ax.text(min(RATIOS), 4 * c["d"] / (mb_s * 2**20) * 1e3 * 1.08,
                f"sending 4d dense, {label}", fontsize=7)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("k/d")
    ax.set_ylabel("ms per gradient (one thread)")
    ax.set_title(f"compressing d = {c['d']:.0e} float32")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(os.path.join(args.img, "compression_cost.png"), dpi=120)


def plot_goal(plt, runs, img):
    """Test accuracy against the bytes sent so far (all workers), mean over seeds with their
    range, one panel per attack and rule; the dotted line is 1/50 of the dense run's bytes at
    half its length."""
    import numpy as np

    labels = list(dict.fromkeys(r["setting"] for r in runs))
    fig, axes = plt.subplots(len(ATTACKS), len(RULES), figsize=(15, 6.5), sharex=True,
                             sharey=True)
    for i, attack in enumerate(ATTACKS):
        for j, rule in enumerate(RULES):
            ax = axes[i][j]
            for label, color in zip(labels, ("k", "tab:gray", "tab:blue", "tab:orange")):
                curves = [r["curve"] for r in runs if (r["rule"], r["attack"], r["setting"])
                          == (rule, attack, label)]
                if not curves:
                    continue
                acc = 100 * np.array([[p[2] for p in c] for c in curves])
                b = [p[1] for p in curves[0]]
                ax.plot(b, acc.mean(0), "-o", ms=2.5, color=color, label=label)
                ax.fill_between(b, acc.min(0), acc.max(0), color=color, alpha=0.15)
            dense = [r for r in runs if r["setting"] == "dense"]
            if dense:
                ax.axvline(dense[0]["bytes_round"] * dense[0]["rounds"] / 2 / 50, ls=":",
                           color="k", lw=0.8)
            ax.set_xscale("log")
            ax.set_ylim(40, 90)
            ax.grid(alpha=0.3)
            ax.set_title(f"{rule}, {attack.upper()}", fontsize=9)
            if i == len(ATTACKS) - 1:
                ax.set_xlabel("bytes sent so far (all workers)")
            if j == 0:
                ax.set_ylabel("test accuracy %")
    axes[0][0].legend(fontsize=7, loc="lower right")
    fig.suptitle(f"k/d = 0.01, shared masks against dense: mean of {len({r['seed'] for r in runs})}"
                 f" seeds and their range; n = 10, f = 2 ({runs[0]['dataset']})", fontsize=10)
    fig.tight_layout()
    fig.savefig(os.path.join(img, "compression_goal.png"), dpi=110)


def plot_budget(plt, runs, img):
    """``budget``: test accuracy against the bytes sent so far, mean over seeds, one panel per
    rule and attack; the dotted line is 1/50 of the dense run's bytes."""
    import numpy as np

    labels = budget_labels(runs)
    cells = sorted({(r["rule"], r["attack"]) for r in runs})
    cols = min(4, len(cells))
    rows = -(-len(cells) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3.4 * rows + 0.4), sharey=True,
                             squeeze=False)
    for ax in axes.flat[len(cells):]:
        ax.set_visible(False)
    for ax, (rule, attack) in zip(axes.flat, cells):
        for label, color in zip(labels, ("k", "tab:cyan", "tab:purple", "tab:blue", "tab:orange",
                                         "tab:green", "tab:gray")):
            for rounds, style in zip(sorted({r["dense_rounds"] for r in runs}), ("-", "--", ":")):
                curves = [r["curve"] for r in runs if (r["rule"], r["attack"], r["setting"],
                                                       r["dense_rounds"]) ==
                          (rule, attack, label, rounds)]
                if not curves:
                    continue
                n = min(len(c) for c in curves)
                acc = 100 * np.array([[p[2] for p in c[:n]] for c in curves])
                ax.plot([p[1] for p in curves[0][:n]], acc.mean(0), style, marker="o", ms=2.5,
                        color=color, label=f"{label} (dense R = {rounds})")
            dense = [r for r in runs if (r["setting"], r["rule"], r["attack"]) ==
                     ("dense", rule, attack)]
            for r in {d["dense_rounds"]: d for d in dense}.values():
                ax.axvline(r["bytes_round"] * r["rounds"] / 50, ls=":", color="k", lw=0.8)
        ax.set_xscale("log")
        ax.set_ylim(60, 90)
        ax.grid(alpha=0.3)
        ax.set_title(f"{rule}, {attack.upper()}", fontsize=9)
        ax.set_xlabel("bytes sent so far (all workers)")
    for row in axes:
        row[0].set_ylabel("test accuracy %")
    max(axes.flat, key=lambda a: len(a.get_lines())).legend(fontsize=6, loc="lower right")
    fig.suptitle("Step-decay lr, compressed runs 2x the dense rounds (at k/d = 0.01: 1/50 of the "
                 f"bytes, dotted); n = 10, f = 2 ({runs[0]['dataset']})", fontsize=9)
    fig.tight_layout()
    fig.savefig(os.path.join(img, "compression_budget.png"), dpi=110)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("what", choices=("accuracy", "goal", "budget", "cost", "plot"))
    p.add_argument("--rounds", type=int, default=150)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--rules", nargs="+", default=["trimmed_mean", "median"], choices=RULES)
    p.add_argument("--attacks", nargs="+", default=list(ATTACKS), choices=ATTACKS)
    p.add_argument("--settings", nargs="+", default=list(BUDGET)[:2], choices=list(BUDGET))
    p.add_argument("--ratios", type=float, nargs="+", default=[0.01],
                   help="budget: k/d of the compressed runs")
    p.add_argument("--d", default="1e7")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--out", default="outputs/bench_compression")
    p.add_argument("--img", default="docs/img")
    args = p.parse_args()
    os.makedirs(args.out, exist_ok=True)
    {"accuracy": accuracy, "goal": goal, "budget": budget, "cost": cost,
     "plot": plot}[args.what](args)


if __name__ == "__main__":
    main()
