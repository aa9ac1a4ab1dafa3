"""Scale benchmark of the Ray training loop: a round's time against its floor as the number of
workers n, the model size d and the server's shards k grow.

    python -m experiments.bench_scale                 # the grid below, k in {1, 2, 4}
    python -m experiments.bench_scale --quick         # n in {4, 8}, d = 1e4, k in {1, 2}
    python -m experiments.bench_scale --publish       # the grid, plots copied to docs/img/
    python -m experiments.bench_scale --server --n 64 --d 1e6 1e7   # the server's side only

The grid: n in {16, 64, 256, 1000} and d in {1e6, 1e7} for k = 1, 2, 4, and n = 16, d = 1e8
with k = 4. Cells whose memory (the n gradients in the object store plus the shards' [n, d]
buffer, 8·n·d bytes, plus the workers' noise banks) exceeds ``--memory-fraction`` of this
machine's memory are skipped, with that reason in the table.

Workers are simulated by default (``--source simulated``, :mod:`robustagg.run.simulated`:
honest gradients around the moving parameters plus per-worker noise, one add per gradient),
packed into ``--actors`` actor processes, so that a round measures the loop, not a model: the
real Ray backend, server or shards, rule (``--rule``, default Krum) and optimizer.
``--source mlp`` trains the synthetic logistic problem with an MLP of d parameters instead.

The round's **floor** (:func:`robustagg.costmodel.round_floor`): the workers' compute, plus
moving 4·n·d bytes into the shards and 4·d out at the object store's bandwidth, plus the rule's
kernel time, both measured in the same run: the bandwidth right before each cell (the same
conditions as its rounds on a shared machine) as one ``ray.put`` of a 40 MB float32 numpy array
in an actor plus one ``ray.get`` of it into a preallocated buffer in another process (best of
5), the kernel time as the rule on a ready [n, d] buffer in this process on
every core (best of 2; at most 2^28 values, scaled by d beyond). Each cell reports the medians
over the rounds between the first (warm-up: first touch of the buffers) and the last (it also
evaluates the model) of the split:

- **compute**: the workers' compute, the sum of their gradient times over the actors (one core
  each, balanced);
- **transport**: the backend's wall time less that compute (publishing, queueing, the workers'
  writes into the object store, the server's reads) plus filling the shards' buffers (with k > 1
  on Ray, each shard fetching its slices from the object store; else the server copying the
  arrivals);
- **aggregation**: the attack and the rule after the copy;
- **other**: the rest of the round as the driver saw it (optimizer step, calls, metrics);

with ``overhead / floor`` = (round − compute) / (floor − compute), and each shard's peak
resident memory (it counts the object-store pages the shard read, shared memory). Writes
``scale.md``, ``scale.json``, ``scale_n.png`` (round time against n) and ``scale_d.png``
(against d) to ``--out``; ``--publish`` copies the plots to ``docs/img/``.

``--server`` measures the server's side of a round alone, without workers or Ray: a backend
that hands back the same n gradients every round (as Ray hands back read-only arrays from its
object store), then the attack (``--attack``, default ``alie``: it reads every honest row), the
rule and the optimizer step, as :class:`~robustagg.training.server.ParameterServer` runs them.
Per round it reports the time and the bytes the server allocated (torch's profiler, CPU memory),
which is what the round's copies cost. Writes ``server.md`` and ``server.json``.
"""
import argparse
import functools
import json
import math
import os
import shutil
import statistics
import time

FEATURES = 32
GRID_N = (16, 64, 256, 1000)
GRID_D = (10**6, 10**7)
GRID_K = (1, 2, 4)
BIG = (16, 10**8, 4)  # n, d, k: one cell at d = 1e8
BANDWIDTH_MB = 40
KERNEL_VALUES = 2**28  # the kernel is timed on at most this many values, scaled by d beyond


def hidden_for(d):
    """MLP(32 -> h -> 2) has 32h + h + 2h + 2 = 35h + 2 parameters."""
    return max(1, round((d - 2) / (FEATURES + 3)))


def grid(quick=False, ns=None, ds=None, ks=None):
    """The cells ``(n, d, k)`` of a run: the flags' n, d and k if given, else the default grid
    (plus the d = 1e8 cell), or the quick one."""
    if quick:
        ns, ds, ks = ns or (4, 8), ds or (10**4,), ks or (1, 2)
    cells = [(n, d, k) for d in (ds or GRID_D) for k in (ks or GRID_K) for n in (ns or GRID_N)]
    if not (quick or ns or ds or ks):
        cells.append(BIG)
    return cells


def cell_memory(n, d, actors):
    """Bytes a cell needs: the n gradients in the object store and the shards' [n, d] buffer
    (4·n·d each), the parameters a few times over (server, shards, optimizer, store: 4·4·d),
    and each worker actor's noise bank (4·d)."""
    return 8 * n * d + 16 * d + 4 * d * actors


def bandwidth(mb=BANDWIDTH_MB, repeats=5):
    """The object store's bandwidth as a gradient meets it: one ``ray.put`` of a float32 numpy
    array in an actor, one ``ray.get`` of it into a preallocated buffer in this process.
    Returns GB/s of each and of the two together (best of ``repeats``)."""
    import numpy as np
    import ray

    @ray.remote(num_cpus=0)
    class Writer:
        def __init__(self, values):
            self.arr = np.random.default_rng(0).standard_normal(values).astype(np.float32)

        def put(self):
            t0 = time.perf_counter()
            ref = ray.put(self.arr)
            return [ref], time.perf_counter() - t0

    values = mb * 2**18
    writer = Writer.remote(values)
    buf = np.empty(values, np.float32)
    puts, gets = [], []
    for _ in range(repeats):
        (ref,), put_s = ray.get(writer.put.remote())
        t0 = time.perf_counter()
        np.copyto(buf, ray.get(ref))
        gets.append(time.perf_counter() - t0)
        puts.append(put_s)
        del ref
    ray.kill(writer)
    gb = 4 * values / 1e9
    put, get = min(puts), min(gets)
    return {"MB": mb, "put_GBps": gb / put, "get_copy_GBps": gb / get,
            "store_GBps": gb / (put + get)}


@functools.lru_cache(maxsize=None)
def kernel_time(n, d, rule, repeats=2):
    """Seconds of ``rule`` (a name) with f = 0 on a ready float32 [n, d] buffer in this process,
    torch on one thread and the native kernels on every core, as the server runs it; timed on
    at most :data:`KERNEL_VALUES` values and scaled by d beyond (the rules' work is linear in
    d at fixed n); once per (n, d, rule) in a run."""
    import torch

    from robustagg import kernels
    from robustagg.run.build import build_rule
    from robustagg.run.worker import single_thread
    from robustagg.training.server import cores

    cols = max(1, min(d, KERNEL_VALUES // n))
    x = torch.randn(n, cols, generator=torch.Generator().manual_seed(0))
    agg = build_rule(rule, {}, [], {"f": 0, "seed": 0})
    best = math.inf
    with single_thread(), kernels.kernel_threads(cores()):
        for _ in range(repeats):
            t0 = time.perf_counter()
            agg(x)
            best = min(best, time.perf_counter() - t0)
    return best * d / cols


def config(n, d, k, rounds, rule, actors, source, out):
    """The run of one cell."""
    from robustagg.training import TrainConfig

    if source == "simulated":
        data = {"dataset": "simulated", "dataset_kwargs": {"samples": n}, "model": "simulated",
                "model_kwargs": {"dim": d, "noise": 0.1}, "lr": 0.01, "momentum": 0.0}
    else:
        data = {"dataset": "synthetic", "dataset_kwargs": {"features": FEATURES,
                                                           "samples": max(4000, 2 * n)},
                "model": "mlp", "model_kwargs": {"hidden": [hidden_for(d)]}, "batch_size": 32}
    return TrainConfig(workers=n, byzantine=0, rule=rule, rounds=rounds, eval_every=rounds,
                       backend="ray", progress=False, round_timeout_s=3600, server_shards=k,
                       backend_kwargs={"workers_per_actor": math.ceil(n / actors)},
                       output_dir=os.path.join(out, f"n{n}-d{d}-k{k}"), **data)


def split(record, actors):
    """A round's record as compute / transport / aggregation / other (seconds)."""
    compute = record["compute_sum_s"] / actors
    transport = max(record["backend_s"] - compute, 0.0) + record["fill_s"]
    aggregation = record["aggregation_s"] - record["fill_s"]
    other = record["round_s"] - compute - transport - aggregation
    return {"round": record["round_s"], "compute": compute, "transport": transport,
            "aggregation": aggregation, "other": other}


def cell(n, d, k, rounds, rule, actors, source, out, store_GBps):
    """One cell: the medians of its rounds' split after the first, its floor, its memory."""
    from robustagg.costmodel import round_floor
    from robustagg.training import train

    res = train(config(n, d, k, rounds, rule, actors, source, out))
    actors = math.ceil(n / math.ceil(n / actors))
    dim = res.params.numel()
    # after the warm-up, the rounds that did not also evaluate the model (the last one does)
    measured = [r for r in res.history[1:] if r.get("test_loss") is None] or res.history[1:]
    parts = [split(r, actors) for r in measured or res.history]
    med = {p: statistics.median(s[p] for s in parts) for p in parts[0]}
    kernel = kernel_time(n, dim, rule)
    floor = round_floor(n, dim, store_GBps * 1e9, kernel, med["compute"])
    overhead = (med["round"] - med["compute"]) / (floor["total"] - med["compute"])
    peak = [max(r["memory_mb"][s].get("peak", 0.0) for r in res.history)
            for s in range(len(res.history[-1]["memory_mb"]))]
    return {"n": n, "d": dim, "k": k, "actors": actors, "startup_s": res.summary["startup_s"],
            "rounds_measured": len(parts), **{f"{p}_s": v for p, v in med.items()},
            "store_GBps": store_GBps, "floor_s": floor["total"],
            "floor_transport_s": floor["transport"],
            "floor_kernel_s": kernel, "overhead_over_floor": overhead,
            "peak_rss_mb": peak, "bytes_per_round": 4 * dim * (n + 1)}


def server_cell(n, d, rounds, rule, attack, byzantine):
    """Time and bytes allocated per server round (mean over rounds after the first)."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    from robustagg.backends.base import Arrivals, Backend
    from robustagg.training import TrainConfig
    from robustagg.training.server import ParameterServer

    class Replay(Backend):
        """Answers every round with the same rows (read-only views, as from Ray's store)."""

        def start(self, specs, data=None):
            self.n = len(specs)

        def compute(self, round, params, worker_ids, timeout_s):
            if not hasattr(self, "grads"):
                g = torch.Generator().manual_seed(0)
                self.grads = torch.randn(self.n, params.numel(), generator=g) * 1e-3
            return Arrivals(grads={i: self.grads[i] for i in worker_ids},
                            losses={i: 0.0 for i in worker_ids},
                            compute_s={i: 0.0 for i in worker_ids})

        def close(self):
            self.grads = None

    cfg = TrainConfig(dataset="synthetic", dataset_kwargs={"features": FEATURES, "samples": 4 * n},
                      model="mlp", model_kwargs={"hidden": [hidden_for(d)]}, workers=n,
                      byzantine=byzantine, rule=rule, attack=attack, momentum=0.0,
                      backend="local", progress=False)
    server = ParameterServer(cfg, backend=Replay())
    times, allocated = [], []
    try:
        for r in range(rounds):
            t0 = time.perf_counter()
            if r == 0:
                server.step()  # warm-up: first-touch of the buffers
            else:
                with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
                    server.step()
                times.append(time.perf_counter() - t0)
                allocated.append(sum(max(e.self_cpu_memory_usage, 0)
                                     for e in prof.key_averages()))
        dim = server.params().numel()
    finally:
        server.close()
    return {"n": n, "d": dim, "f": byzantine, "rule": rule, "attack": attack,
            "round_s": min(times), "allocated_MB": sum(allocated) / len(allocated) / 1e6}


def server_main(args, ds):
    rows = [server_cell(n, d, args.rounds or 4, args.rule, args.attack, args.byzantine or n // 8)
            for d in ds for n in args.n]
    lines = [f"server side of a round: rule={args.rule}, attack={args.attack}; best round time "
             f"of {(args.rounds or 4) - 1} (profiled) and MB the server allocated per round", "",
             "| n | f | d | round s | allocated MB | allocated / (4 n d) |", "|---" * 6 + "|"]
    for r in rows:
        lines.append(f"| {r['n']} | {r['f']} | {r['d']} | {r['round_s']:.4f} | "
                     f"{r['allocated_MB']:.0f} | {r['allocated_MB'] * 1e6 / (4 * r['n'] * r['d']):.2f} |")
    write(args.out, "server", lines, rows)


def write(out, name, lines, data, md_tail=""):
    """Print the table ``lines``; write it to ``<out>/<name>.md`` and ``data`` to ``.json``."""
    table = "\n".join(lines)
    print(table)
    with open(os.path.join(out, f"{name}.md"), "w") as fh:
        fh.write(table + "\n" + md_tail)
    with open(os.path.join(out, f"{name}.json"), "w") as fh:
        json.dump(data, fh, indent=1)


def machine():
    """The CPU model, core count, memory and the load averages now (1, 5, 15 min)."""
    import platform

    import psutil

    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            model = next(line.split(":", 1)[1].strip() for line in fh
                         if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpu": model, "cores": os.cpu_count(),
            "memory_GB": psutil.virtual_memory().total / 1e9,
            "load": [round(v, 2) for v in os.getloadavg()]}


def span(pair):
    return f"{pair[0]:.2f} - {pair[1]:.2f}"


def table(rows, skipped, bw, rule, rounds, source, before, after):
    """The markdown lines of the results (``bw``: each bandwidth's lowest and highest)."""
    lines = [f"machine: {before['cpu']}, {before['cores']} cores, {before['memory_GB']:.1f} GB; "
             f"load average (1/5/15 min) {before['load']} at the start, {after['load']} at the "
             f"end", ""]
    if bw:
        lines += [f"object store, {bw['MB']} MB float32, measured before each cell (lowest - "
                  f"highest): put {span(bw['put_GBps'])} GB/s, get into a buffer "
                  f"{span(bw['get_copy_GBps'])} GB/s, both {span(bw['store_GBps'])} GB/s "
                  f"(the cell's own is its floor's)", ""]
    lines += [f"{source} workers, rule={rule}, {rounds} rounds per cell, medians over rounds "
              f"2..{rounds - 1}, seconds per round; floor = compute + transport at the store's "
              f"bandwidth + kernel", "",
              "| n | d | k | round | compute | transport | aggregation | other | store GB/s "
              "| floor transport | floor kernel | floor | overhead / floor "
              "| peak RSS per shard, MB |",
              "|---" * 14 + "|"]
    for r in sorted(rows + skipped, key=lambda r: (r["d"], r["n"], r["k"])):
        if "skipped" in r:
            lines.append(f"| {r['n']} | {r['d']:.0e} | {r['k']} | skipped: {r['skipped']} |"
                         + " |" * 10)
            continue
        peak = ", ".join(f"{m:.0f}" for m in r["peak_rss_mb"])
        lines.append(f"| {r['n']} | {r['d']:.0e} | {r['k']} | {r['round_s']:.3f} | "
                     f"{r['compute_s']:.3f} | {r['transport_s']:.3f} | {r['aggregation_s']:.3f} | "
                     f"{r['other_s']:.3f} | {r['store_GBps']:.2f} | {r['floor_transport_s']:.3f} | "
                     f"{r['floor_kernel_s']:.3f} | {r['floor_s']:.3f} | "
                     f"{r['overhead_over_floor']:.2f} | {peak} |")
    return lines


def plot(rows, out, along):
    """Round time (solid) and floor (dashed) against n (one panel per d) or against d (one
    panel per n), a line per k; log-log. Writes ``<out>/scale_<along>.png``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    other = "d" if along == "n" else "n"
    panels = sorted({r[other] for r in rows
                     if len({q[along] for q in rows if q[other] == r[other]}) > 1}) \
        or sorted({r[other] for r in rows})
    fig, axes = plt.subplots(1, len(panels), figsize=(4.8 * len(panels), 4), squeeze=False)
    for ax, value in zip(axes[0], panels):
        for j, k in enumerate(sorted({r["k"] for r in rows})):
            sub = sorted((r for r in rows if r[other] == value and r["k"] == k),
                         key=lambda r: r[along])
            if not sub:
                continue
            xs = [r[along] for r in sub]
            ax.plot(xs, [r["round_s"] for r in sub], "o-", color=f"C{j}", label=f"k={k} round")
            ax.plot(xs, [r["floor_s"] for r in sub], "--", color=f"C{j}", label=f"k={k} floor")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(along)
        ax.set_ylabel("seconds per round")
        ax.set_title(f"{other} = {value:,}")
        ax.legend(fontsize=8)
    fig.suptitle(f"Round time against {along}, and its floor (Ray, one machine)")
    fig.tight_layout()
    path = os.path.join(out, f"scale_{along}.png")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv=None):
    from robustagg.backends.ray_cluster import RAY_ENV

    # Ray reads these when first imported (joining a cluster on 127.0.0.1 needs them then)
    os.environ.update(RAY_ENV)
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="n in {4, 8}, d = 1e4, k in {1, 2}")
    ap.add_argument("--n", type=int, nargs="+", default=None)
    ap.add_argument("--d", type=float, nargs="+", default=None)
    ap.add_argument("--k", type=int, nargs="+", default=None, help="server shards")
    ap.add_argument("--rounds", type=int, default=4,
                    help="rounds per cell: the first (warm-up) and the last (it evaluates) "
                         "are not measured")
    ap.add_argument("--rule", default="krum")
    ap.add_argument("--source", choices=["simulated", "mlp"], default="simulated",
                    help="the workers: synthetic gradients, or an MLP on the synthetic problem")
    ap.add_argument("--actors", type=int, default=2,
                    help="worker processes the logical workers are packed into")
    ap.add_argument("--address", default=None,
                    help="a running Ray cluster to join (host:port or auto); default: a local one")
    ap.add_argument("--memory-fraction", type=float, default=0.75,
                    help="skip cells needing more than this share of the machine's memory")
    ap.add_argument("--out", default="runs/bench_scale")
    ap.add_argument("--publish", action="store_true", help="copy the plots to docs/img/")
    ap.add_argument("--server", action="store_true",
                    help="the server's side of a round only (no workers, no Ray)")
    ap.add_argument("--attack", default="alie", help="with --server")
    ap.add_argument("--byzantine", type=int, default=None, help="with --server; default n // 8")
    args = ap.parse_args(argv)
    ds = [int(d) for d in args.d] if args.d else None
    os.makedirs(args.out, exist_ok=True)
    if args.server:
        args.n = args.n or [4, 16, 64]
        return server_main(args, ds or [10**4, 10**6])
    rounds = args.rounds
    before = machine()
    budget = args.memory_fraction * before["memory_GB"] * 1e9
    runs, skipped = [], []
    for n, d, k in grid(args.quick, args.n, ds, args.k):
        need = cell_memory(n, d, min(args.actors, n))
        if need > budget:
            skipped.append({"n": n, "d": d, "k": k, "skipped": (
                f"needs about {need / 1e9:.0f} GB (8·n·d bytes: the gradients in the object "
                f"store and the shards' buffer), over {args.memory_fraction:.0%} of "
                f"{before['memory_GB']:.0f} GB")})
        else:
            runs.append((n, d, k))

    from tqdm import tqdm

    from robustagg.backends.ray_cluster import ensure_ray

    import ray

    store_mb = max([4 * (n + 2) * d * 1.25 / 2**20 for n, d, _ in runs] + [300])
    _, started = ensure_ray(args.address, num_cpus=os.cpu_count(), object_store_mb=int(store_mb))
    try:
        rows, seen = [], []
        for n, d, k in tqdm(runs, desc="cells"):
            seen.append(bandwidth())  # right before the cell: the same conditions as its rounds
            try:
                rows.append(cell(n, d, k, rounds, args.rule, args.actors, args.source,
                                 args.out, seen[-1]["store_GBps"]))
            except Exception as e:  # noqa: BLE001 - one cell's failure is its row, not the run's
                last = (str(e).strip().splitlines() or [""])[-1].replace("|", "/")[:300]
                skipped.append({"n": n, "d": d, "k": k,
                                "skipped": f"failed: {type(e).__name__}: {last}"})
    finally:
        if started:
            ray.shutdown()
    after = machine()
    bw = {key: (min(b[key] for b in seen), max(b[key] for b in seen)) if key != "MB" else
          BANDWIDTH_MB for key in seen[0]} if seen else {}
    lines = table(rows, skipped, bw, args.rule, rounds, args.source, before, after)
    plots = [plot(rows, args.out, along) for along in ("n", "d")] if rows else []
    tail = "".join(f"\n![round time against {p[-5]}]({os.path.basename(p)})\n" for p in plots)
    write(args.out, "scale", lines, {"machine": before, "load_end": after["load"],
                                     "bandwidth": bw, "rows": rows, "skipped": skipped,
                                     "rule": args.rule, "rounds": rounds,
                                     "source": args.source}, tail)
    if args.publish:
        img = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                           "docs", "img")
        for p in plots:
            shutil.copy(p, img)
    print(f"wrote {args.out}/scale.md, scale.json" + "".join(f", {os.path.basename(p)}"
                                                          for p in plots))


if __name__ == "__main__":
    main()
