"""Right-sizing the worker function's memory from measurements:
``python -m experiments.cost --right-size [options]``.

For each model size (``--d``: the default experiment's MLP widened to about that many
parameters) it calibrates the worker function on the local Lambda runtime at each memory size
(``--sizes``, 128 to 10,240 MB), the CPU limited to Lambda's share for the size
(:mod:`robustagg.backends.serverless.cpu_share`: a cgroup quota where this process may create
one, else a duty cycle; the mode used is printed), and records the median billed milliseconds
per invocation and the peak resident memory (:mod:`robustagg.backends.serverless.rightsize`).
Then, per model size, :func:`robustagg.costmodel.right_size` picks the memory of least $ within
a time bound and the fastest memory within a $ bound (by default: the default memory's time and
$, 5% slack), and the saving against the default memory is printed.

Written: ``<out>/sizing.json`` (every point and choice), ``--plot`` (duration and $ against
memory, one line per model size) and, for the first model size, ``--write-config``: a backend
option (``backend=lambda_rightsized``) whose ``memory_mb`` is the least-$ size and whose
``sizing`` holds both choices and the curve, which the Lambda backend's provisioning watch
compares each run against.
"""
from __future__ import annotations

import json
import os
from datetime import date

from robustagg import costmodel as cm

SIZES = (128, 256, 512, 1024, 1769, 3008, 5308, 10240)
MLP_INPUTS, MLP_CLASSES = 64, 10  # digits


def mlp_hidden(d: float) -> int:
    """The hidden width of the default experiment's one-layer MLP with about ``d`` parameters."""
    return max(1, round((d - MLP_CLASSES) / (MLP_INPUTS + 1 + MLP_CLASSES)))


def add_arguments(p) -> None:
    g = p.add_argument_group("right-size")
    g.add_argument("--right-size", action="store_true",
                   help="calibrate the worker function at several memory sizes and pick one")
    g.add_argument("--sizes", default=",".join(map(str, SIZES)), help="memory sizes, MB")
    g.add_argument("--model-d", default="4810", help="model sizes to calibrate, comma separated")
    g.add_argument("--rs-workers", type=int, default=4, help="invocations per round")
    g.add_argument("--rs-rounds", type=int, default=6, help="rounds per size (the first is warm-up)")
    g.add_argument("--default-mb", type=int, default=1024, help="the memory to compare against")
    g.add_argument("--time-bound-ms", type=float, help="default: the default memory's time + 5%%")
    g.add_argument("--cost-bound", type=float, help="$ per invocation; default: the default's + 5%%")
    g.add_argument("--headroom", type=float, default=0.1, help="memory share left free at the peak")
    g.add_argument("--cpu-mode", choices=["auto", "cgroup", "duty"], default="auto")
    g.add_argument("--rs-out", default="runs/right_size")
    g.add_argument("--plot", default="docs/img/right_size.png")
    g.add_argument("--write-config", default="experiments/conf/backend/lambda_rightsized.yaml")


def run(a, prices: cm.Prices) -> int:
    from robustagg.backends.serverless.rightsize import calibrate
    from robustagg.run.config import TrainConfig

    sizes = [int(s) for s in a.sizes.split(",")]
    if a.default_mb not in sizes:
        sizes.append(a.default_mb)
    os.makedirs(a.rs_out, exist_ok=True)
    load = os.getloadavg()
    print(f"right-sizing the worker function: sizes {sorted(sizes)} MB, {a.rs_workers} invocations "
          f"x {a.rs_rounds} rounds per size; load average {load[0]:.1f} on {os.cpu_count()} cores")
    results = []
    for d in (float(x) for x in a.model_d.split(",")):
        h = mlp_hidden(d)
        cfg = TrainConfig(workers=a.rs_workers, byzantine=0, rule="mean", model_kwargs={"hidden": [h]})
        real_d = (MLP_INPUTS + 1) * h + (h + 1) * MLP_CLASSES
        print(f"model: MLP hidden={h}, d={real_d:,}")
        pts = calibrate(cfg, sizes, a.rs_rounds, a.cpu_mode)
        points = [p for p, _ in pts]
        entry = {"d": real_d, "hidden": h, "points": [{**p.__dict__, **det} for p, det in pts]}
        try:
            sz = cm.right_size(points, a.default_mb, a.time_bound_ms, a.cost_bound, a.headroom,
                               prices=prices)
        except ValueError as e:
            print(f"  no choice: {e}")
        else:
            entry["sizing"] = sz.to_dict(prices)
            print(f"  least $ within {sz.time_bound_ms:.1f} ms: {sz.min_cost.memory_mb} MB "
                  f"({sz.min_cost.billed_ms:.1f} ms, ${sz.min_cost.cost(prices):.3g}/invocation); "
                  f"fastest within ${sz.cost_bound:.3g}: {sz.min_time.memory_mb} MB "
                  f"({sz.min_time.billed_ms:.1f} ms); saving against {a.default_mb} MB: "
                  f"{sz.saving(prices):.1%} per invocation")
        results.append(entry)
    record = {"date": str(date.today()), "load_average": load, "cores": os.cpu_count(),
              "prices": f"{prices.region} {prices.date}", "workers": a.rs_workers,
              "rounds": a.rs_rounds, "default_mb": a.default_mb, "models": results}
    with open(os.path.join(a.rs_out, "sizing.json"), "w") as fh:
        json.dump(record, fh, indent=1)
    if a.plot:
        plot(record, a.plot, prices)
    if a.write_config and "sizing" in results[0]:
        write_config(a.write_config, results[0], a.default_mb)
        print(f"written: {a.write_config} (backend=lambda_rightsized)")
    return 0


def plot(record: dict, path: str, prices: cm.Prices) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_t, ax_c) = plt.subplots(1, 2, figsize=(10, 4))
    for m in record["models"]:
        pts = [p for p in m["points"] if p["ok"]]
        mem = [p["memory_mb"] for p in pts]
        ax_t.plot(mem, [p["billed_ms"] for p in pts], marker="o", label=f"d={m['d']:,}")
        ax_c.plot(mem, [cm.invocation_cost(p["memory_mb"], p["billed_ms"], prices)["total"] * 1e6
                        for p in pts], marker="o", label=f"d={m['d']:,}")
        if "sizing" in m:
            best = m["sizing"]["min_cost"]
            ax_c.scatter([best["memory_mb"]], [best["usd_per_invocation"] * 1e6], s=120,
                         facecolors="none", edgecolors="k")
    for ax, label in ((ax_t, "billed ms per invocation"), (ax_c, "$ per million invocations")):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("memory (MB)")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    fig.suptitle(f"worker function on the local Lambda runtime, CPU share as Lambda's "
                 f"(load {record['load_average'][0]:.1f} on {record['cores']} cores; circle: least $)",
                 fontsize=9)
    fig.tight_layout()
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    fig.savefig(path, dpi=110)


def write_config(path: str, model: dict, default_mb: int) -> None:
    s = model["sizing"]
    curve = [[p["memory_mb"], round(p["billed_ms"], 2), round(p["peak_mb"], 1), p["ok"]]
             for p in model["points"]]
    lines = [
        "defaults:",
        "  - /schema/backend/base@_here_",
        "  - _self_",
        "name: lambda",
        f"# Written by `python -m experiments.cost --right-size` ({date.today()}): the worker",
        f"# function of the default experiment (d = {model['d']:,}) calibrated on the local Lambda",
        f"# runtime. memory_mb: the least $ within {s['time_bound_ms']:.1f} ms per invocation",
        f"# ({s['saving_vs_default']:.1%} less than {default_mb} MB); the fastest within "
        f"${s['cost_bound_usd']:.3g} is {s['min_time']['memory_mb']} MB.",
        "kwargs:",
        "  local: true",
        "  concurrency: 2",
        f"  memory_mb: {s['min_cost']['memory_mb']}",
        "  sizing:",
        f"    min_cost_mb: {s['min_cost']['memory_mb']}",
        f"    min_time_mb: {s['min_time']['memory_mb']}",
        "    # [memory_mb, billed_ms, peak_mb, ok] per calibrated size",
        f"    curve: {json.dumps(curve)}",
    ]
    with open(path, "w") as fh:
        fh.write("\n".join(lines) + "\n")
