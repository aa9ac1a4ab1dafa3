"""Microbenchmarks of Krum's cost (and of the coordinate-wise kernels) across n and d, with the
baselines timed in the same run.

Each benchmark also checks its result against a float64 reference, so in the default suite
(``--benchmark-disable`` in pytest.ini: every benchmark body runs once) these are correctness
tests. Real timings::

    python -m pytest tests/bench --benchmark-enable                   # d in {1e4, 1e5, 1e6}
    ROBUSTAGG_BENCH_D=1e7 python -m pytest tests/bench --benchmark-enable -k "n10 or n32"

(d is parametrised in tests/bench/conftest.py: one small d when benchmarking is disabled.)

Groups are ``<kernel> n=<n> d=<d>``; compare the rows of a group (pytest-benchmark prints
their times side by side, and ``--benchmark-compare`` ratios across runs). The full sweep with
peer libraries, the machine's bounds and plots is ``python -m experiments.bench_krum``.
"""
import numpy as np
import pytest
import torch

from robustagg import functional as F
from robustagg import kernels

NS = (10, 32, 100)
F_OF = {10: 2, 32: 7, 100: 20}
_cache = {}


def data(n: int, d: int) -> torch.Tensor:
    """Honest N(0, 1) rows around a common mean, f of them shifted; float32, fixed seed."""
    key = ("x", n, d)
    if key not in _cache:
        _cache.clear()  # keep one input (and its references) alive at a time
        g = torch.Generator().manual_seed(n * 7919 + d)
        x = torch.randn(1, d, generator=g) + torch.randn(n, d, generator=g)
        x[: F_OF[n]] += 3.0
        _cache[key] = x
    return _cache[key]


def ref_scores(x: torch.Tensor, f: int) -> torch.Tensor:
    """Float64 Krum scores from direct-difference distances (cdist without the Gram shortcut)."""
    key = ("scores", *x.shape)
    if key not in _cache:
        xd = x.double()
        dist = torch.cdist(xd, xd, compute_mode="donot_use_mm_for_euclid_dist") ** 2
        dist.fill_diagonal_(float("inf"))
        _cache[key] = dist.sort(dim=1).values[:, : x.shape[0] - f - 2].sum(dim=1)
    return _cache[key]


# ------------------------------------------------------------------ Krum implementations

def krum_native(x, f):
    out, sel = F.krum(x, f, distances=kernels.pairwise_sq_distances(x), return_selected=True)
    return int(sel[0])


def krum_torch_path(x, f):
    """robustagg's pure-torch path: centred float64 Gram distances."""
    dist = kernels.pairwise_sq_distances_torch(x)
    return int(F.krum(x, f, distances=dist, return_selected=True)[1][0])


def krum_cdist(x, f):
    """The obvious torch baseline: torch.cdist (float32), squared, then the scores."""
    dist = torch.cdist(x, x).double() ** 2
    return int(F.krum(x, f, distances=dist, return_selected=True)[1][0])


def krum_numpy_gemm(x, f):
    """The fastest plain baseline of issue 3: float32 numpy Gram matrix (no centring)."""
    a = x.numpy()
    sq = np.einsum("ij,ij->i", a, a, dtype=np.float64)
    dist = sq[:, None] + sq[None, :] - 2.0 * (a @ a.T).astype(np.float64)
    dist = torch.from_numpy(np.maximum(dist, 0.0))
    dist.fill_diagonal_(0.0)
    return int(F.krum(x, f, distances=dist, return_selected=True)[1][0])


KRUM = {"native": krum_native, "torch_path": krum_torch_path, "cdist": krum_cdist,
        "numpy_gemm": krum_numpy_gemm}


@pytest.mark.parametrize("impl", list(KRUM))
@pytest.mark.parametrize("n", NS, ids=lambda n: f"n{n}")
def test_krum(benchmark, n, d, impl):
    x, f = data(n, d), F_OF[n]
    benchmark.group = f"krum n={n} d={d:g}"
    got = benchmark(KRUM[impl], x, f)
    scores = ref_scores(x, f)
    top = scores.sort(stable=True)
    if (top.values[1] - top.values[0]) / top.values[0] > 1e-4:  # a well-defined winner
        assert got == int(top.indices[0])
    else:  # a near-tie: any of the tied vectors
        assert scores[got] <= top.values[0] * (1 + 1e-4)


@pytest.mark.parametrize("impl", ["native", "torch_path"])
@pytest.mark.parametrize("n", NS, ids=lambda n: f"n{n}")
def test_multi_krum(benchmark, n, d, impl):
    x, f = data(n, d), F_OF[n]
    benchmark.group = f"multi_krum n={n} d={d:g}"
    dist_fn = kernels.pairwise_sq_distances if impl == "native" else \
        kernels.pairwise_sq_distances_torch
    got = benchmark(lambda: F.multi_krum(x, f, distances=dist_fn(x)))
    chosen = ref_scores(x, f).sort(stable=True).indices[: n - f]
    ref = x.double()[chosen].mean(dim=0)
    torch.testing.assert_close(got.double(), ref, rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------ coordinate-wise kernels

def ref_order_mean(x, lo, hi):
    return x.double().sort(dim=0).values[lo:hi + 1].mean(dim=0).float()


COORD = {
    "median native": lambda x, f: kernels.coordinate_median(x),
    "median torch_path": lambda x, f: kernels.coordinate_median_torch(x),
    "median torch.quantile": lambda x, f: torch.quantile(x, 0.5, dim=0),
    "trimmed_mean native": lambda x, f: kernels.trimmed_mean(x, f),
    "trimmed_mean torch_path": lambda x, f: kernels.trimmed_mean_torch(x, f),
}


@pytest.mark.parametrize("impl", list(COORD))
@pytest.mark.parametrize("n", NS[:2], ids=lambda n: f"n{n}")
def test_coordinate(benchmark, n, d, impl):
    x, f = data(n, d), F_OF[n]
    kind = impl.split()[0]
    benchmark.group = f"{kind} n={n} d={d:g}"
    got = benchmark(COORD[impl], x, f)
    lo, hi = ((n - 1) // 2, n // 2) if kind == "median" else (f, n - f - 1)
    torch.testing.assert_close(got, ref_order_mean(x, lo, hi), rtol=1e-6, atol=1e-6)
