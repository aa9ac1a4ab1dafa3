"""``python -m experiments.cost --cluster``: one round of a sharded parameter server projected
onto a cluster (:func:`robustagg.costmodel.project_cluster`) from what ``experiments.bench_scale``
measured on this machine, and where its time goes.

    python -m experiments.cost --cluster --d 1e9 --n 1000 --nodes 16 --network-gbps 25 \\
        --shards 16 --cores 32 --scale-json runs/bench_scale/scale.json

From ``--scale-json`` (a ``scale.json``) it takes the object store's bandwidth (the highest
measured in that run), the kernel time of the cell with the nearest n by ratio (scaled by d,
and by n² when n differs: the distance kernels' work) and the simulated workers' compute per
gradient (scaled by d); ``--store-gbps``, ``--kernel-s`` with ``--kernel-cores``, and
``--gradient-s`` give them instead.
"""
from __future__ import annotations

import json
import math

from robustagg import costmodel as cm


def add_arguments(p) -> None:
    g = p.add_argument_group("cluster projection")
    g.add_argument("--cluster", action="store_true",
                   help="project one round of a sharded server onto a cluster")
    g.add_argument("--nodes", type=int, default=16)
    g.add_argument("--cores", type=int, default=32, help="cores per node")
    g.add_argument("--network-gbps", type=float, default=25.0, help="per node, Gb/s each way")
    g.add_argument("--shards", type=int, default=None, help="server shards (default: nodes)")
    g.add_argument("--scale-json", default="runs/bench_scale/scale.json")
    g.add_argument("--store-gbps", type=float, default=None, help="GB/s (put + get)")
    g.add_argument("--kernel-s", type=float, default=None, help="the rule on the whole [n, d]")
    g.add_argument("--kernel-cores", type=int, default=None)
    g.add_argument("--gradient-s", type=float, default=None, help="one gradient, one core")


def measured(path: str, n: int, d: int) -> dict:
    """``store_Bps``, ``kernel_s`` (on [n, d]), ``kernel_cores`` and ``gradient_s`` (one
    gradient of d values) derived from a ``bench_scale`` result, as the module doc says."""
    with open(path) as fh:
        res = json.load(fh)
    rows = [r for r in res["rows"] if r["k"] == 1] or res["rows"]
    if not rows:
        raise ValueError(f"{path}: no measured cell")
    near = min(rows, key=lambda r: (abs(math.log(r["n"] / n)), -r["d"]))
    kernel = near["floor_kernel_s"] * d / near["d"] * (n / near["n"]) ** 2
    widest = max(rows, key=lambda r: r["d"] * r["n"])
    gradient = widest["compute_s"] * widest["actors"] / widest["n"] * d / widest["d"]
    # the highest of the run's measurements: what the machine's store can do
    return {"store_Bps": max(res["bandwidth"]["store_GBps"]) * 1e9, "kernel_s": kernel,
            "kernel_cores": res["machine"]["cores"], "gradient_s": gradient,
            "from": f"{path}: store bandwidth, kernel of n={near['n']} d={near['d']:.0e}, "
                    f"compute of n={widest['n']} d={widest['d']:.0e}"}


def run(a) -> int:
    n, d = a.n, int(a.d or 1e9)
    base = {}
    if None in (a.store_gbps, a.kernel_s, a.kernel_cores, a.gradient_s):
        base = measured(a.scale_json, n, d)
    store = a.store_gbps * 1e9 if a.store_gbps is not None else base["store_Bps"]
    cluster = cm.Cluster(nodes=a.nodes, cores=a.cores, network_Bps=a.network_gbps * 1e9 / 8,
                         store_Bps=store, shards=a.shards or a.nodes)
    p = cm.project_cluster(n, d, cluster,
                           a.gradient_s if a.gradient_s is not None else base["gradient_s"],
                           a.kernel_s if a.kernel_s is not None else base["kernel_s"],
                           a.kernel_cores or base["kernel_cores"])
    print(f"one round, n={n}, d={d:.0e}: {cluster.nodes} nodes x {cluster.cores} cores, "
          f"{a.network_gbps:g} Gb/s, store {store / 1e9:.2f} GB/s, k={cluster.shards} shards")
    if base:
        print(f"  measured inputs: {base['from']}")
    for part, s in sorted(p["split"].items(), key=lambda kv: -kv[1]):
        print(f"  {part:<8} {s:10.2f} s  {s / p['round_s']:6.1%}")
    print(f"  {'round':<8} {p['round_s']:10.2f} s")
    print(f"  server memory per shard node: {p['memory_per_shard'] / 1e9:,.0f} GB "
          f"(its [n, d/k] buffer plus the same bytes arriving in its object store)")
    return 0
