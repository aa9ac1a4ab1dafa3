"""How far can a shared mask of k/d = 0.01 go? The server's top-k mask against an oracle mask
that knows each round's gradient, and against dense, on honest workers alone.

    python -m experiments.mask_bound run --seeds 0 1 2    # ~3 min on one core
    python -m experiments.mask_bound plot                 # table + docs/img/compression_bound.png

The compressed runs of docs/compression.md end 3-4 points below dense at 1/50 of the bytes.
This study asks whether a better choice of mask could close that gap. The oracle's mask in
round t is the k coordinates of largest ``|mean_i g_i|`` of that round's own gradients. No server
can know it before the messages arrive, so it is the best choice of k coordinates for one
round's step, and an upper reference for any mask a server could publish. (Choosing well for
one step is not necessarily best over a run, so it is a reference, not a proof.)

Every run aggregates with the mean of 8 honest workers (no attack: with the recommended
setting the mean without attack ends where trimmed mean under ALIE does), on Fashion-MNIST with
the MLP 784-64-10, batches of 32 per worker and the step-decay lr of ``bench_compression
budget`` (times 0.1 at 2/3 and 13/15 of a run). The dense run is ``--rounds`` long (lr 0.1,
server momentum 0.9), the masked runs twice as long: 1/50 of the dense bytes at k/d = 0.01.
The masked runs go through the training loop's server side
(:class:`robustagg.compression.Receiver`); ``server`` and ``oracle`` with the recommended
setting (worker momentum β = 0.9 kept on the server per worker, lr 1, no server momentum):

- ``server``: ``topk_shared`` as in training (the top half from the last aggregate, the rest
  random);
- ``oracle``: the round's own top k;
- ``residual``: the ``server`` mask, but each worker keeps what it did not send and adds it to
  its next gradient (error feedback on the worker, Stich, Cordonnier & Jaggi, "Sparsified SGD
  with Memory", NeurIPS 2018), lr 0.15 with server momentum 0.5 (the best of lr 0.03-1 with
  momentum 0-0.9 on seed 0). Workers in the training loop are stateless (a worker may be rebuilt
  every round, on Lambda or when a partition is resized), so this is not offered there; it
  measures what worker state would buy.

The 8 workers' gradients come from one vectorised call (``torch.func.vmap``): a 3,000-round
run takes about half a minute on one core.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import time

MASKS = ("dense", "server", "oracle", "residual")
WORKERS, BATCH = 8, 32


def simulate(mask: str, rounds: int, ratio: float = 0.01, seed: int = 0, evals: int = 12,
             dataset: str | None = None, lr: float | None = None,
             momentum: float | None = None) -> list[tuple[int, int, float]]:
    """One run; ``rounds`` is the dense run's length (the masked runs take twice as many);
    ``dataset``: Fashion-MNIST when installed, else digits; ``lr``, ``momentum`` (the server's):
    the mask's own setting unless given. Returns ``(round, bytes sent so far by all workers,
    test accuracy)`` at ``evals`` points."""
    import torch
    from torch.func import functional_call, grad, vmap

    from experiments.bench_compression import dataset as default_dataset
    from experiments.bench_compression import milestones
    from robustagg.compression import Receiver, compressor
    from robustagg.compression.topk import topk_indices
    from robustagg.rules import Mean
    from robustagg.run.data import load_dataset, partition
    from robustagg.run.models import build_model

    torch.set_num_threads(1)
    data = load_dataset(dataset or default_dataset())
    model = build_model("mlp", data.input_shape, data.num_classes, seed=seed)
    shapes = {n: p.shape for n, p in model.named_parameters()}
    sizes = [math.prod(s) for s in shapes.values()]
    theta = torch.nn.Parameter(torch.cat([p.detach().flatten() for p in model.parameters()]))
    d = theta.numel()

    def forward(flat, x):
        params = {n: v.view(s) for (n, s), v in zip(shapes.items(), flat.split(sizes))}
        return functional_call(model, params, (x,))

    def loss(flat, x, y):
        return torch.nn.functional.cross_entropy(forward(flat, x), y)

    grads = vmap(grad(loss), in_dims=(None, 0, 0))  # [workers, d] in one call
    parts = partition(data.y_train, WORKERS, seed=seed)
    draw = torch.Generator().manual_seed(seed + 1)
    dense = mask == "dense"
    total = rounds if dense else 2 * rounds
    senders = [compressor("topk_shared", ratio=ratio, seed=seed, residual=mask == "residual")
               for _ in range(WORKERS)]  # each worker's own, as in training
    own_lr, own_momentum = {"dense": (0.1, 0.9), "residual": (0.15, 0.5)}.get(mask, (1.0, 0.0))
    opt = torch.optim.SGD([theta], lr=own_lr if lr is None else lr,
                          momentum=own_momentum if momentum is None else momentum)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones(total), gamma=0.1)
    receiver = None if dense else Receiver(
        compressor("topk_shared", ratio=ratio, seed=seed), WORKERS, d, Mean(),
        momentum=0.0 if mask == "residual" else 0.9)
    message_bytes = 4 * d if dense else receiver.message_bytes
    curve = []
    for t in range(total):
        batch = torch.stack([p[torch.randint(len(p), (BATCH,), generator=draw)] for p in parts])
        g = grads(theta.detach(), data.x_train[batch], data.y_train[batch])
        if dense:
            step = g.mean(0)
        else:
            m = receiver.begin(t)
            if mask == "oracle":  # replaces the published mask once the gradients are known
                m = receiver.mask = topk_indices(g.mean(0).abs(), receiver.k)
            ids = receiver.fill({i: senders[i].send(g[i], m) for i in range(WORKERS)})
            step = receiver.expand(receiver.matrix(ids).mean(0))
            receiver.end(step, True)
        theta.grad = step
        opt.step()
        sched.step()
        if (t + 1) % max(1, total // evals) == 0 or t + 1 == total:
            with torch.no_grad():
                acc = (forward(theta, data.x_test).argmax(1) == data.y_test).float().mean()
            curve.append((t + 1, (t + 1) * WORKERS * message_bytes, acc.item()))
    return curve


def run(args):
    os.makedirs(args.out, exist_ok=True)
    for seed in args.seeds:
        for ratio in args.ratios:
            for mask in args.masks:
                if mask == "dense" and ratio != args.ratios[0]:
                    continue
                name = "dense" if mask == "dense" else f"{mask}-{ratio:g}"
                path = os.path.join(args.out, f"{name}-R{args.rounds}-s{seed}.json")
                if os.path.exists(path):
                    continue
                t0 = time.perf_counter()
                curve = simulate(mask, args.rounds, ratio, seed, lr=args.lr,
                                 momentum=args.momentum)
                rec = {"mask": mask, "ratio": 1.0 if mask == "dense" else ratio, "seed": seed,
                       "dense_rounds": args.rounds, "curve": curve,
                       "wall_s": round(time.perf_counter() - t0, 1), "load": os.getloadavg()}
                print(f"{mask:6s} k/d {rec['ratio']:<5g} seed {seed}: "
                      f"{100 * curve[-1][2]:.1f} % after {curve[-1][0]} rounds "
                      f"({rec['wall_s']} s)", flush=True)
                with open(path, "w") as fh:
                    json.dump(rec, fh)


def load(out):
    return [json.load(open(os.path.join(out, f))) for f in sorted(os.listdir(out))
            if f.endswith(".json")]


def table(runs) -> str:
    """Final accuracy, mean ± std over seeds, and the gap to dense, per mask and k/d."""
    import numpy as np

    rows = ["| mask | k/d | rounds | bytes vs dense | final test accuracy % | gap to dense |",
            "|---|---|---|---|---|---|"]
    dense = np.array([100 * r["curve"][-1][2] for r in runs if r["mask"] == "dense"])
    for mask, ratio in sorted({(r["mask"], r["ratio"]) for r in runs},
                              key=lambda mr: (MASKS.index(mr[0]), -mr[1])):
        sel = [r for r in runs if (r["mask"], r["ratio"]) == (mask, ratio)]
        acc = np.array([100 * r["curve"][-1][2] for r in sel])
        share = 1 if mask == "dense" else 2 * ratio
        rows.append(f"| {mask} | {ratio:g} | {sel[0]['curve'][-1][0]:,} | {share:g} | "
                    f"{acc.mean():.1f} ± {acc.std():.1f} ({len(acc)}) | "
                    f"{dense.mean() - acc.mean():.1f} |")
    return "\n".join(rows)


def plot(args):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    runs = load(args.out)
    print(table(runs))
    fig, ax = plt.subplots(figsize=(6.4, 4))
    colors = {"dense": "k", "server": "tab:blue", "oracle": "tab:red", "residual": "tab:green"}
    styles = ["-", "--", ":", "-."]
    for mask, ratio in sorted({(r["mask"], r["ratio"]) for r in runs}):
        curves = [r["curve"] for r in runs if (r["mask"], r["ratio"]) == (mask, ratio)]
        n = min(len(c) for c in curves)
        acc = 100 * np.array([[p[2] for p in c[:n]] for c in curves]).mean(0)
        ratios = sorted({r["ratio"] for r in runs if r["mask"] != "dense"})
        style = "-" if mask == "dense" else styles[ratios.index(ratio) % len(styles)]
        label = "dense" if mask == "dense" else f"{mask} mask, k/d = {ratio:g}"
        ax.plot([p[1] for p in curves[0][:n]], acc, style, marker="o", ms=2.5,
                color=colors[mask], label=label)
    ax.set_xscale("log")
    ax.set_ylim(60, 90)
    ax.grid(alpha=0.3)
    ax.set_xlabel("bytes sent so far (all workers)")
    ax.set_ylabel("test accuracy %")
    ax.legend(fontsize=7, loc="lower right")
    ax.set_title("Shared masks: the server's top-k against an oracle; masked runs 2x the dense "
                 "rounds\n(8 honest workers, mean, Fashion-MNIST MLP, step-decay lr, "
                 f"mean of {len({r['seed'] for r in runs})} seeds)", fontsize=8)
    fig.tight_layout()
    fig.savefig(os.path.join(args.img, "compression_bound.png"), dpi=110)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("what", choices=("run", "plot"))
    p.add_argument("--rounds", type=int, default=1500, help="the dense run's rounds")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--ratios", type=float, nargs="+", default=[0.01])
    p.add_argument("--masks", nargs="+", default=list(MASKS), choices=MASKS)
    p.add_argument("--lr", type=float, help="run: the lr of every mask given (a scan; use "
                   "its own --out)")
    p.add_argument("--momentum", type=float, help="run: the server momentum, likewise")
    p.add_argument("--out", default="outputs/mask_bound")
    p.add_argument("--img", default="docs/img")
    args = p.parse_args()
    {"run": run, "plot": plot}[args.what](args)


if __name__ == "__main__":
    main()
