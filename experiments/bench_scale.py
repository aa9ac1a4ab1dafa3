"""Scale benchmark of the Ray training loop: how a round's time splits into worker compute,
transport and aggregation as the number of workers n and the model size d grow.

    python -m experiments.bench_scale             # n in {4, 16, 64}, d in {1e4, 1e6}
    python -m experiments.bench_scale --quick     # n in {4, 16}, d in {1e4, 1e5}, 3 rounds
    python -m experiments.bench_scale --server --n 64 --d 1e6 1e7   # the server's side only

Each cell trains the synthetic logistic problem (32 features) with an MLP whose hidden width
makes it d parameters, on one local Ray (started once), and reports the mean over the rounds
after the first (warm-up). In the same run it measures the object store's bandwidth (one
``ray.put`` and one ``ray.get`` in an actor of a 40 MB float32 array, numpy and torch) so that
the transport cost per round can be read against it: a round moves the parameters once into
the store (4d bytes) and n gradients back (4nd bytes). Logical workers are packed into at most
``--max-actors`` actor processes (this machine has 2 cores; 64 torch processes would not fit).
Writes ``scale.md``, ``scale.json`` and ``scale.png`` to ``--out``.

``--server`` measures the server's side of a round alone, without workers or Ray: a backend
that hands back the same n gradients every round (as Ray hands back read-only arrays from its
object store), then the attack (``--attack``, default ``alie``: it reads every honest row), the
rule and the optimizer step, as :class:`~robustagg.training.server.ParameterServer` runs them.
Per round it reports the time and the bytes the server allocated (torch's profiler, CPU memory),
which is what the round's copies cost. Writes ``server.md`` and ``server.json``.
"""
import argparse
import json
import math
import os
import time

FEATURES = 32


def hidden_for(d):
    """MLP(32 -> h -> 2) has 32h + h + 2h + 2 = 35h + 2 parameters."""
    return max(1, round((d - 2) / (FEATURES + 3)))


def bandwidth(mb=40, repeats=3):
    """GB/s of ray.put (driver) and of ray.get in another process, for numpy and torch."""
    import numpy as np
    import ray
    import torch

    @ray.remote(num_cpus=0)
    class Reader:
        def read(self, x):
            t0 = time.perf_counter()
            v = ray.get(x[0])
            s = float(v[:: 4096].sum())  # touch it without copying it
            return time.perf_counter() - t0, s

    reader = Reader.remote()
    ray.get(reader.read.remote([ray.put(np.zeros(1, np.float32))]))
    out = {}
    arr = np.random.default_rng(0).standard_normal(mb * 2**18).astype(np.float32)
    for kind, obj in [("numpy", arr), ("torch", torch.from_numpy(arr))]:
        puts, gets = [], []
        for _ in range(repeats):
            t0 = time.perf_counter()
            ref = ray.put(obj)
            puts.append(time.perf_counter() - t0)
            gets.append(ray.get(reader.read.remote([ref]))[0])
            del ref
        gb = arr.nbytes / 1e9
        out[kind] = {"put_GBps": gb / min(puts), "get_GBps": gb / min(gets)}
    ray.kill(reader)
    return out


def cell(n, d, rounds, rule, max_actors, out):
    from robustagg.training import TrainConfig, train

    cfg = TrainConfig(dataset="synthetic", dataset_kwargs={"features": FEATURES, "samples": 4000},
                      model="mlp", model_kwargs={"hidden": [hidden_for(d)]}, workers=n,
                      byzantine=0, rule=rule, rounds=rounds, batch_size=32, eval_every=rounds,
                      backend="ray", progress=False, round_timeout_s=600,
                      backend_kwargs={"workers_per_actor": math.ceil(n / max_actors)},
                      output_dir=os.path.join(out, f"n{n}-d{d}"))
    res = train(cfg)
    warm = res.history[1:] or res.history
    mean = {k: sum(r[k] for r in warm) / len(warm)
            for k in ("round_s", "compute_s", "transport_s", "aggregation_s", "step_s")}
    dim = res.params.numel()
    return {"n": n, "d": dim, "actors": math.ceil(n / math.ceil(n / max_actors)),
            "startup_s": res.summary["startup_s"], "bytes_per_round": 4 * dim * (n + 1), **mean}


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


def plot(rows, path):
    """Stacked bars of the split, one panel per d (linear scales: the panels differ ~10x)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    parts = ["compute_s", "transport_s", "aggregation_s", "step_s"]
    dims = sorted({r["d"] for r in rows})
    fig, axes = plt.subplots(1, len(dims), figsize=(4.5 * len(dims), 4), squeeze=False)
    for ax, d in zip(axes[0], dims):
        sub = [r for r in rows if r["d"] == d]
        labels = [f"n={r['n']}" for r in sub]
        bottom = [0.0] * len(sub)
        for p in parts:
            vals = [r[p] for r in sub]
            ax.bar(labels, vals, bottom=bottom, label=p[:-2])
            bottom = [b + v for b, v in zip(bottom, vals)]
        ax.set_title(f"d = {d:,}")
        ax.set_ylabel("seconds per round")
    axes[0][0].legend()
    fig.suptitle("Round time split (Ray, one machine)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="n in {4,16}, d in {1e4,1e5}, 3 rounds")
    ap.add_argument("--n", type=int, nargs="+", default=None)
    ap.add_argument("--d", type=float, nargs="+", default=None)
    ap.add_argument("--rounds", type=int, default=None, help="default 6 (3 with --quick)")
    ap.add_argument("--rule", default="krum")
    ap.add_argument("--max-actors", type=int, default=8)
    ap.add_argument("--object-store-mb", type=int, default=1200)
    ap.add_argument("--out", default="runs/bench_scale")
    ap.add_argument("--server", action="store_true",
                    help="the server's side of a round only (no workers, no Ray)")
    ap.add_argument("--attack", default="alie", help="with --server")
    ap.add_argument("--byzantine", type=int, default=None, help="with --server; default n // 8")
    args = ap.parse_args(argv)
    ns = args.n or ([4, 16] if args.quick else [4, 16, 64])
    ds = [int(d) for d in (args.d or ([1e4, 1e5] if args.quick else [1e4, 1e6]))]
    os.makedirs(args.out, exist_ok=True)
    if args.server:
        args.n = ns
        return server_main(args, ds)
    rounds = args.rounds or (3 if args.quick else 6)
    os.makedirs(args.out, exist_ok=True)

    import ray
    from tqdm import tqdm

    from robustagg.backends.ray_cluster import ensure_ray

    _, started = ensure_ray(None, num_cpus=2, object_store_mb=args.object_store_mb)
    try:
        bw = bandwidth()
        rows = [cell(n, d, rounds, args.rule, args.max_actors, args.out)
                for n, d in tqdm([(n, d) for d in ds for n in ns], desc="cells")]
    finally:
        if started:
            ray.shutdown()
    np_get = bw["numpy"]["get_GBps"]
    lines = [f"object store, 40 MB: numpy put {bw['numpy']['put_GBps']:.2f} GB/s, "
             f"get {np_get:.2f} GB/s; torch put {bw['torch']['put_GBps']:.2f} GB/s, "
             f"get {bw['torch']['get_GBps']:.2f} GB/s", "",
             f"rule={args.rule}, {rounds} rounds per cell (mean over rounds 2..), seconds per round",
             "",
             "| n | d | actors | round | compute | transport | aggregation | step | MB moved "
             "| transport at measured put+get BW | startup |",
             "|---" * 11 + "|"]
    for r in rows:
        mb = r["bytes_per_round"] / 1e6
        ideal = r["bytes_per_round"] / 1e9 * (1 / bw["numpy"]["put_GBps"] + 1 / np_get)
        lines.append(f"| {r['n']} | {r['d']} | {r['actors']} | {r['round_s']:.4f} | "
                     f"{r['compute_s']:.4f} | {r['transport_s']:.4f} | {r['aggregation_s']:.4f} | "
                     f"{r['step_s']:.4f} | {mb:.1f} | {ideal:.4f} | {r['startup_s']:.1f} |")
    write(args.out, "scale", lines, {"bandwidth": bw, "rows": rows, "rule": args.rule,
                                     "rounds": rounds}, "\n![round time split](scale.png)\n")
    plot(rows, os.path.join(args.out, "scale.png"))
    print(f"wrote {args.out}/scale.md, scale.json, scale.png")


if __name__ == "__main__":
    main()
