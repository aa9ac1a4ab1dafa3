"""Kernel dispatch: native CPU (``cpp``), native CUDA (``cuda``) or pure torch (``torch``).

Every function here takes float32 or float64 input that the caller has already validated
(the rules in :mod:`robustagg.functional` do that), and keeps the inner loops free of checks.
``backend(device)`` says which path serves a device.

Contract shared by all paths:

- ``pairwise_sq_distances(x[n, d]) -> float64[n, n]``: squared Euclidean distances,
  symmetric, exact zero diagonal; any pair involving a row with NaN or ±Inf is ``+inf``.
- ``coordinate_median(x[n, d]) -> [d]``: per coordinate, the middle value (odd n) or the mean of
  the two middle values (even n); NaN is ordered as ``+inf``.
- ``trimmed_mean(x[n, d], f) -> [d]``: per coordinate, the mean of the n - 2f values left after
  dropping the f largest and f smallest; NaN is ordered as ``+inf``.
- ``rows_mean(x[n, d], idx[m]) -> [d]``: the mean of the rows ``idx``.
- ``pairwise_sq_distance_partials(x[n, d], width) -> float64[groups, n, n]``: the squared
  distances over each group of ``width`` columns, in order. On the native CPU path,
  ``pairwise_sq_distances`` is these partials for ``width = distance_group_width(d)`` added in
  group order to zero, so column slices cut at multiples of that width (a sharded server's)
  give partials whose in-order sum is the whole matrix's distances bit for bit.

The CPU kernels exist for several instruction-set levels (``avx512``, ``avx2``, ``base``: the
portable build) and use the best one the CPU runs, or the one named by the environment variable
``ROBUSTAGG_CPU_LEVEL``, read once when robustagg is imported. ``cpu_level()`` says which one is
in use; docs/kernels.md says which results are bit-identical across levels and thread counts.
"""
from __future__ import annotations

import contextlib
import os

import torch

try:  # the native extension is optional: without it everything runs on the torch path
    from robustagg import _C  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - exercised only when the build is missing
    _C = None


_FORCE_TORCH = False

CPU_LEVELS = ("avx512", "avx2", "base")  # widest first
_LEVEL_ENV = "ROBUSTAGG_CPU_LEVEL"


def cpu_levels() -> list[str]:
    """The instruction-set levels this CPU can run, widest first (``[]`` without the native
    extension)."""
    return list(_C.cpu_levels()) if _C is not None else []


def cpu_level() -> str | None:
    """The instruction-set level the native CPU kernels use: ``"avx512"``, ``"avx2"`` or
    ``"base"`` (None without the native extension)."""
    return _C.cpu_level() if _C is not None else None


def _set_cpu_level(level: str, source: str) -> None:
    if level not in CPU_LEVELS:
        raise ValueError(f"{source} must be one of {', '.join(CPU_LEVELS)}; got {level!r}")
    if _C is None:
        raise RuntimeError(f"{source}={level} asks for a native CPU level, but the native "
                           "extension is not built (robustagg runs on pure torch)")
    if level not in cpu_levels():
        raise RuntimeError(f"{source}={level}: this CPU cannot run {level}; it runs "
                           f"{', '.join(cpu_levels())}")
    _C.set_cpu_level(level)


@contextlib.contextmanager
def use_cpu_level(level: str):
    """Within the block the native CPU kernels run at ``level`` (one of :func:`cpu_levels`), to
    compare the levels on one machine. Process-wide, not thread-safe: for benchmarks and tests."""
    old = cpu_level()
    _set_cpu_level(level, "use_cpu_level")
    try:
        yield
    finally:
        _C.set_cpu_level(old)


@contextlib.contextmanager
def kernel_threads(threads: int | None):
    """Within the block the native CPU kernels use ``threads`` threads (None: torch's setting,
    the default), whatever ``torch.get_num_threads()`` says. Their results are the same bits at
    every thread count, so code that keeps torch on one thread for reproducible reductions can
    still give the kernels every core. Process-wide, not thread-safe."""
    if _C is None:
        yield
        return
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int)
                                or threads < 1):
        raise ValueError(f"kernel_threads needs a positive int or None, got {threads!r}")
    old = _C.kernel_threads_setting()
    _C.set_kernel_threads(threads or 0)
    try:
        yield
    finally:
        _C.set_kernel_threads(old)


if os.environ.get(_LEVEL_ENV):
    _set_cpu_level(os.environ[_LEVEL_ENV], _LEVEL_ENV)


def _has(name: str) -> bool:
    return not _FORCE_TORCH and _C is not None and hasattr(_C, name)


@contextlib.contextmanager
def torch_path():
    """Within the block every function here takes the pure-torch path (``backend`` says
    "torch"), to compare the native kernels against it. Process-wide, not thread-safe: for
    benchmarks and tests."""
    global _FORCE_TORCH
    old, _FORCE_TORCH = _FORCE_TORCH, True
    try:
        yield
    finally:
        _FORCE_TORCH = old


def backend(device: torch.device | str = "cpu") -> str:
    """Which implementation serves ``device``: ``"cpp"``, ``"cuda"`` or ``"torch"``."""
    device = torch.device(device)
    if device.type == "cpu" and _has("pairwise_sq_distances_cpu"):
        return "cpp"
    if device.type == "cuda" and _has("pairwise_sq_distances_cuda"):
        return "cuda"
    return "torch"


def _nan_as_inf(x: torch.Tensor) -> torch.Tensor:
    return torch.where(torch.isnan(x), torch.full_like(x, float("inf")), x)


# ---------------------------------------------------------------- pure torch reference path

def pairwise_sq_distances_torch(x: torch.Tensor) -> torch.Tensor:
    """Gram form on float64 rows centred on the mean of the finite rows (centring keeps the
    identity exact enough for near-duplicate inputs)."""
    n = x.shape[0]
    finite = torch.isfinite(x).all(dim=1)
    out = torch.full((n, n), float("inf"), dtype=torch.float64, device=x.device)
    if finite.any():
        xf = x[finite].double()
        xf = xf - xf.mean(dim=0, keepdim=True)
        sq = (xf * xf).sum(dim=1)
        dist = (sq[:, None] + sq[None, :] - 2.0 * (xf @ xf.T)).clamp_min_(0.0)
        dist = (dist + dist.T) * 0.5  # the GEMM need not be bitwise symmetric; the result is
        idx = finite.nonzero().squeeze(1)
        out[idx[:, None], idx[None, :]] = dist
    out.fill_diagonal_(0.0)
    return out


def coordinate_median_torch(x: torch.Tensor) -> torch.Tensor:
    n = x.shape[0]
    s = _nan_as_inf(x).sort(dim=0).values
    if n % 2:
        return s[n // 2].clone()
    # mean of the two middle values, written so that it cannot overflow: a/2 + b/2
    return s[n // 2 - 1] * 0.5 + s[n // 2] * 0.5


def trimmed_mean_torch(x: torch.Tensor, f: int) -> torch.Tensor:
    n = x.shape[0]
    s = _nan_as_inf(x).sort(dim=0).values
    # float64 sum, one division: the float64 reference rounded once to x's dtype
    return (s[f:n - f].sum(dim=0, dtype=torch.float64) / (n - 2 * f)).to(x.dtype)


def rows_mean_torch(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    return x.index_select(0, idx).mean(dim=0)


# ---------------------------------------------------------------- dispatch

def pairwise_sq_distances(x: torch.Tensor) -> torch.Tensor:
    """Squared distances between the rows of ``x[n, d]`` as float64 ``[n, n]`` (see module doc)."""
    b = backend(x.device)
    if b == "cpp":
        return _C.pairwise_sq_distances_cpu(x)
    if b == "cuda" and x.dtype == torch.float32:  # float64 keeps float64 arithmetic: torch
        return _C.pairwise_sq_distances_cuda(x)
    return pairwise_sq_distances_torch(x)


def distance_group_width(d: int) -> int:
    """The width of the column groups whose partial distances the native CPU kernel adds in
    order for a matrix of d columns: a power of two from 256 to 65536 that depends on d only
    (256 on the torch path, which promises no bits)."""
    return _C.distance_group_width(d) if _has("distance_group_width") else 256


def pairwise_sq_distance_partials(x: torch.Tensor, width: int) -> torch.Tensor:
    """float64 ``[groups, n, n]``: squared distances between the rows of ``x[n, d]`` (CPU) over
    each group of ``width`` columns (``groups = max(ceil(d / width), 1)``), symmetric with a
    zero diagonal, NaN or +inf where a row is not finite. Their sum in group order is the
    distances (module doc); map a non-finite sum to +inf as ``pairwise_sq_distances`` does."""
    if _has("pairwise_sq_distance_partials_cpu"):
        return _C.pairwise_sq_distance_partials_cpu(x, width)
    d = x.shape[1]
    parts = [pairwise_sq_distances_torch(x[:, lo:lo + width]) for lo in range(0, max(d, 1), width)]
    return torch.stack(parts)


# The native order-statistics kernels hold the n values of a column at once: n <= 256 on the
# CPU (a sorting network over vector registers), n <= 64 on the GPU (one thread per column).
_ORDER_STAT_MAX_N = {"cpp": 256, "cuda": 64}


def _native_cpu(x: torch.Tensor) -> bool:
    return x.device.type == "cpu" and _has("pairwise_sq_distances_cpu")


def _native_cuda(x: torch.Tensor) -> bool:
    return x.device.type == "cuda" and x.dtype == torch.float32 and _has("rows_mean_cuda")


def _order_stat_mean(x: torch.Tensor, lo: int, hi: int):
    """The native kernel's result, or None where none serves ``x``."""
    n = x.shape[0]
    if _native_cpu(x) and n <= _ORDER_STAT_MAX_N["cpp"]:
        return _C.order_stat_mean_cpu(x, lo, hi)
    if _native_cuda(x) and n <= _ORDER_STAT_MAX_N["cuda"]:
        return _C.order_stat_mean_cuda(x, lo, hi)
    return None


def coordinate_median(x: torch.Tensor) -> torch.Tensor:
    """Coordinate-wise median of ``x[n, d]`` (see module doc)."""
    n = x.shape[0]
    out = _order_stat_mean(x, (n - 1) // 2, n // 2)
    return coordinate_median_torch(x) if out is None else out


def trimmed_mean(x: torch.Tensor, f: int) -> torch.Tensor:
    """Coordinate-wise f-trimmed mean of ``x[n, d]`` (see module doc)."""
    out = _order_stat_mean(x, f, x.shape[0] - f - 1)
    return trimmed_mean_torch(x, f) if out is None else out


def rows_mean(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """Mean of the rows ``idx`` of ``x[n, d]``."""
    if _native_cpu(x):
        return _C.rows_mean_cpu(x, idx)
    if _native_cuda(x):
        return _C.rows_mean_cuda(x, idx)
    return rows_mean_torch(x, idx)
