"""Sizes of the Krum-cost microbenchmarks.

In the default suite (``--benchmark-disable``) the benchmarks are correctness tests, so they run
on one small d; with ``--benchmark-enable`` they run on d in ``ROBUSTAGG_BENCH_D``
(comma-separated, default ``1e4,1e5,1e6``).
"""
import os


def pytest_generate_tests(metafunc):
    if "d" not in metafunc.fixturenames:
        return
    opt = metafunc.config.getoption
    if opt("benchmark_disable", False) and not opt("benchmark_enable", False):
        ds = [10_000]
    else:
        ds = [int(float(v)) for v in os.environ.get("ROBUSTAGG_BENCH_D", "1e4,1e5,1e6").split(",")]
    metafunc.parametrize("d", ds, ids=[f"d{d:g}" for d in ds])
