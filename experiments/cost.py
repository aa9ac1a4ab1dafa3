"""Print the FaaS-versus-Ray estimate of a run: ``python -m experiments.cost --d 1e6 --n 50 ...``.

Times per round come from the flags or, with ``--calibrate metrics.jsonl``, from a run's metrics.
Prices and bandwidths are robustagg.costmodel.Prices (dated); ``--prices file.json`` overrides them
(``--dump-prices`` prints the defaults as a starting file).

``--measure`` first runs the same small experiment (the default one: digits, MLP, Krum;
``--workers``, ``--measure-rounds``, ``--attack``) on the Lambda backend (local runtime, its own
redis-server) and on the Ray backend (local Ray), prints both round-time splits, checks that the
final parameters are equal, then calibrates the estimate from the Lambda run's metrics. At
another scale (``--d``), compute is scaled by d and aggregation by n^2 d (Krum-like): a stated
assumption, not a measurement.

``--cluster`` projects one round of a sharded parameter server onto a cluster of nodes (network
bandwidth, shards, cores) from what ``experiments.bench_scale`` measured here
(:mod:`experiments.cluster_projection`).

``--right-size`` calibrates the worker function at several memory sizes on the local runtime
and picks the size of least $ within a time bound and the fastest within a $ bound
(:mod:`experiments.right_size`).
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict

from experiments import cluster_projection, right_size
from robustagg import costmodel as cm


def _instances(text: str) -> tuple:
    out = []
    for part in text.split(","):
        name, _, count = part.partition(":")
        out.append((name.strip(), int(count or 1)))
    return tuple(out)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m experiments.cost", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--d", type=float, default=None,
                   help="model parameters (elements); default 1e6, or the measured model's")
    p.add_argument("--n", type=int, default=20, help="workers per round")
    p.add_argument("--rounds", type=int, default=1000)
    p.add_argument("--compute-s", type=float, default=0.5, help="seconds per gradient on 1 vCPU")
    p.add_argument("--aggregation-s", type=float, default=0.0, help="seconds per aggregation")
    p.add_argument("--step-s", type=float, default=0.0, help="seconds per optimizer step")
    p.add_argument("--bytes-per-element", type=int, default=4)
    p.add_argument("--calibrate", metavar="METRICS_JSONL",
                   help="take compute/aggregation/step times from a run's metrics (medians)")
    p.add_argument("--memory-mb", type=int, default=3008)
    p.add_argument("--store", choices=["redis", "s3"], default="redis")
    p.add_argument("--store-instance", default="cache.r6g.large")
    p.add_argument("--server-instance", default="c5.2xlarge")
    p.add_argument("--concurrency", type=int, default=1000)
    p.add_argument("--invocation", choices=["RequestResponse", "Event"], default="RequestResponse")
    p.add_argument("--ray-instances", default="c5.2xlarge:2", help="TYPE:COUNT[,TYPE:COUNT] (head first)")
    p.add_argument("--ray-startup-s", type=float, default=120.0)
    p.add_argument("--prices", help="JSON file overriding robustagg.costmodel.Prices fields")
    p.add_argument("--dump-prices", action="store_true", help="print the default prices as JSON")
    p.add_argument("--json", action="store_true", help="print the estimate as JSON")
    m = p.add_argument_group("measure")
    m.add_argument("--measure", action="store_true",
                   help="run the small experiment on Lambda (local) and Ray, then calibrate")
    m.add_argument("--workers", type=int, default=10)
    m.add_argument("--byzantine", type=int, default=2)
    m.add_argument("--attack", default="none")
    m.add_argument("--measure-rounds", type=int, default=20)
    m.add_argument("--out", default="runs/cost_measure", help="where the two runs write metrics")
    right_size.add_arguments(p)
    cluster_projection.add_arguments(p)
    a = p.parse_args(argv)
    if a.cluster:
        return cluster_projection.run(a)
    if a.right_size:
        return right_size.run(a, cm.Prices.from_json(a.prices) if a.prices else cm.Prices())
    if a.measure:
        w = measure(a)
        a.calibrated = cm.rescale(w, d=int(a.d) if a.d else w.d, n=a.n, rounds=a.rounds)
    d = int(a.d or 1e6)

    prices = cm.Prices.from_json(a.prices) if a.prices else cm.Prices()
    if a.dump_prices:
        print(prices.to_json())
        return 0
    try:
        if getattr(a, "calibrated", None) is not None:
            w = a.calibrated
        elif a.calibrate:
            w = cm.calibrate(a.calibrate, d=d, n=a.n, rounds=a.rounds)
        else:
            w = cm.Workload(d=d, n=a.n, rounds=a.rounds, compute_s=a.compute_s,
                            aggregation_s=a.aggregation_s, step_s=a.step_s,
                            bytes_per_element=a.bytes_per_element)
        est = cm.estimate(
            w,
            cm.LambdaSetup(memory_mb=a.memory_mb, store=a.store, store_instance=a.store_instance,
                           server_instance=a.server_instance, concurrency=a.concurrency,
                           invocation=a.invocation),
            cm.RaySetup(instances=_instances(a.ray_instances), startup_s=a.ray_startup_s),
            prices)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if a.json:
        out = {"workload": asdict(w), "violations": est.violations, "prices_date": prices.date}
        for name, b in (("lambda", est.lam), ("ray", est.ray)):
            out[name] = {"time_s": b.time_s, "round_s": b.round_s, "cost": b.cost,
                         "total": b.total, **b.extra}
        print(json.dumps(out, indent=2))
    else:
        print(est.table())
    return 0


def _median(xs):
    xs = sorted(xs)
    return xs[len(xs) // 2] if xs else float("nan")


def measure(a) -> cm.Workload:
    """Run the small experiment on both backends, print the round-time splits, return the
    Lambda run's calibrated workload (at the measured d and n)."""
    import os

    import torch

    from robustagg.training import TrainConfig
    from robustagg.training.loop import train

    os.makedirs(a.out, exist_ok=True)
    stats_path = os.path.join(a.out, "lambda_round_stats.jsonl")
    if os.path.exists(stats_path):
        os.remove(stats_path)
    kw = dict(workers=a.workers, byzantine=a.byzantine, attack=a.attack, rounds=a.measure_rounds,
              eval_every=a.measure_rounds, progress=False)
    runs = {
        "lambda": train(TrainConfig(backend="lambda", output_dir=os.path.join(a.out, "lambda"),
                                    backend_kwargs={"local": True, "memory_mb": a.memory_mb,
                                                    "stats_path": stats_path}, **kw)),
        "ray": train(TrainConfig(backend="ray", output_dir=os.path.join(a.out, "ray"), **kw)),
    }
    keys = ("round_s", "compute_s", "transport_s", "aggregation_s", "step_s")
    print(f"measured: default experiment, n={a.workers}, f={a.byzantine}, attack={a.attack}, "
          f"{a.measure_rounds} rounds; medians over rounds 1.. (round 0 apart), milliseconds")
    print(f"{'backend':<8} {'startup_s':>9} {'round0':>8} " + " ".join(f"{k:>13}" for k in keys))
    for name, res in runs.items():
        h = res.history[1:]
        print(f"{name:<8} {res.summary['startup_s']:>9.1f} {res.history[0]['round_s'] * 1e3:>8.1f} "
              + " ".join(f"{_median(r[k] for r in h) * 1e3:>13.2f}" for k in keys))
    stats = [json.loads(line) for line in open(stats_path)][1:]
    print("lambda transport split (ms): " + ", ".join(
        f"{k[:-2]} {_median(s[k] for s in stats) * 1e3:.2f}"
        for k in ("publish_s", "invoke_s", "collect_s", "cleanup_s"))
          + f"; billed per invocation {_median(s['billed_ms'] for s in stats) / a.workers:.1f} ms"
          + f", max memory used {max(s['max_memory_mb'] for s in stats):.0f} MB")
    same = torch.equal(runs["lambda"].params, runs["ray"].params)
    print(f"final parameters equal on both backends: {same}\n")
    d = runs["lambda"].params.numel()
    return cm.calibrate(os.path.join(a.out, "lambda", "metrics.jsonl"), d=d, n=a.workers)


if __name__ == "__main__":
    sys.exit(main())
