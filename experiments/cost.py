"""Print the FaaS-versus-Ray estimate of a run: ``python -m experiments.cost --d 1e6 --n 50 ...``.

Times per round come from the flags or, with ``--calibrate metrics.jsonl``, from a run's metrics.
Prices and bandwidths are robustagg.costmodel.Prices (dated); ``--prices file.json`` overrides them
(``--dump-prices`` prints the defaults as a starting file).
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict

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
    p.add_argument("--d", type=float, default=1e6, help="model parameters (elements)")
    p.add_argument("--n", type=int, default=20, help="workers per round")
    p.add_argument("--rounds", type=int, default=1000)
    p.add_argument("--compute-s", type=float, default=0.5, help="seconds per gradient on 1 vCPU")
    p.add_argument("--aggregate-s", type=float, default=0.0, help="seconds per aggregation")
    p.add_argument("--step-s", type=float, default=0.0, help="seconds per optimizer step")
    p.add_argument("--bytes-per-element", type=int, default=4)
    p.add_argument("--calibrate", metavar="METRICS_JSONL",
                   help="take compute/aggregate/step times from a run's metrics (medians)")
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
    a = p.parse_args(argv)

    prices = cm.Prices.from_json(a.prices) if a.prices else cm.Prices()
    if a.dump_prices:
        print(prices.to_json())
        return 0
    try:
        if a.calibrate:
            w = cm.calibrate(a.calibrate, d=int(a.d), n=a.n, rounds=a.rounds)
        else:
            w = cm.Workload(d=int(a.d), n=a.n, rounds=a.rounds, compute_s=a.compute_s,
                            aggregate_s=a.aggregate_s, step_s=a.step_s,
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


if __name__ == "__main__":
    sys.exit(main())
