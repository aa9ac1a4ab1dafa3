"""Time every registered rule natively at a few (n, d), and ByzFL's version where ByzFL is
importable: ``python -m experiments.bench_rules [--sizes 10x10000,25x100000] [--repeat 5]``.

Each cell is the median wall time of ``repeat`` calls (after one warm-up) on float32
``Tensor[n, d]`` rows ~ N(0, 1) from ``torch.Generator().manual_seed(0)``, f = n // 5 (the
bound of every rule holds at n >= 10), on this process's torch threads. Stateful rules are
reset before each call; FLTrust is handed a server gradient (an honest draw) before each call.
The ByzFL column (``byzfl`` package, ByzFL's classes of the same name called on the same
tensors) is timed in the same process, and the ratio is ByzFL's time over ours; it is blank
where ByzFL has no such rule or cannot be imported (the line printed first says why).
"""
from __future__ import annotations

import argparse
import inspect
import statistics
import sys
import time

import torch

import robustagg as ra
from robustagg.rules.registry import rule_classes

# robustagg name -> ByzFL class name (ByzFL 0.0.11's aggregators)
BYZFL = {"mean": "Average", "median": "Median", "trimmed_mean": "TrMean", "krum": "Krum",
         "multi_krum": "MultiKrum", "geometric_median": "GeometricMedian",
         "centered_clipping": "CenteredClipping", "mda": "MDA", "monna": "MoNNA",
         "meamed": "Meamed", "caf": "CAF", "smea": "SMEA"}


def byzfl_module():
    """``(module, None)`` or ``(None, why it cannot be used)``: ByzFL's aggregators module,
    imported on its own when ``import byzfl`` fails for a part a benchmark does not need (its
    ``__init__`` imports torchvision); ``pip install --no-deps byzfl`` is enough."""
    import importlib.util
    from pathlib import Path

    from experiments.bench_krum import byzfl_aggregators

    spec = importlib.util.find_spec("byzfl")
    if spec is None or not spec.submodule_search_locations:
        return None, "byzfl is not installed (pip install --no-deps byzfl)"
    try:
        return byzfl_aggregators(Path(list(spec.submodule_search_locations)[0])), None
    except Exception as e:  # noqa: BLE001 - any import failure means: no ByzFL column
        return None, f"{type(e).__name__}: {e}"


def native_rules(f: int) -> dict:
    """One instance per registered class (aliases once), built with f where it takes f."""
    out = {}
    for cls in sorted(set(rule_classes().values()), key=lambda c: c.name):
        out[cls.name] = cls(f=f) if "f" in inspect.signature(cls).parameters else cls()
    return out


def timed(call, repeat: int) -> float:
    call()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bench(sizes, repeat: int = 5, progress: bool = True):
    """``[(name, n, d, ours_s, byzfl_s or None, note)]``."""
    byzfl, why = byzfl_module()
    rows = []
    for n, d in sizes:
        f = n // 5
        g = torch.Generator().manual_seed(0)
        x = torch.randn(n, d, generator=g)
        root = torch.randn(d, generator=g)
        for name, rule in native_rules(f).items():
            def ours(rule=rule):
                rule.reset()
                if hasattr(rule, "server_grad"):
                    rule.server_grad = root
                return rule(x)
            try:
                t = timed(ours, repeat)
                note = ""
            except ValueError as e:  # e.g. MDA/SMEA above their subset limit
                t, note = None, str(e).split(";")[0]
            tb = None
            if byzfl is not None and name in BYZFL and hasattr(byzfl, BYZFL[name]):
                cls = getattr(byzfl, BYZFL[name])
                kw = {"f": f} if "f" in inspect.signature(cls).parameters else {}
                agg = cls(**kw)
                try:
                    tb = timed(lambda: agg(x), repeat)
                except Exception as e:  # noqa: BLE001 - a peer's failure is reported, not fatal
                    note = f"ByzFL: {type(e).__name__}: {e}"[:80]
            rows.append((name, n, d, t, tb, note))
            if progress:
                print(f"  {name} n={n} d={d}: {t}", file=sys.stderr)
    return rows, why


def markdown(rows, why) -> str:
    lines = [] if why is None else [f"ByzFL not timed: {why}", ""]
    lines += ["| rule | n | d | robustagg (ms) | ByzFL (ms) | ByzFL / robustagg | note |",
              "|---|---|---|---|---|---|---|"]
    for name, n, d, t, tb, note in rows:
        ms = "" if t is None else f"{1e3 * t:.3g}"
        msb = "" if tb is None else f"{1e3 * tb:.3g}"
        ratio = "" if t is None or tb is None else f"{tb / t:.3g}"
        lines.append(f"| {name} | {n} | {d} | {ms} | {msb} | {ratio} | {note} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m experiments.bench_rules", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="10x10000,25x100000",
                   help="comma-separated nxd (default 10x10000,25x100000)")
    p.add_argument("--repeat", type=int, default=5)
    args = p.parse_args(argv)
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")]
    rows, why = bench(sizes, args.repeat)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"robustagg kernels: {ra.kernels.backend(torch.device('cpu'))}\n")
    print(markdown(rows, why))
    return 0


if __name__ == "__main__":
    sys.exit(main())
