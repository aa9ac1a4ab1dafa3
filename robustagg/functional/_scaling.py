"""Power-of-two rescaling, so that finite inputs near the ends of the floating-point range give
the result an unbounded float would.

Squared distances, norms and sums of finite vectors can overflow (float32 rows of 1e20 have
infinite norms; float64 rows of 1e154 have infinite squared distances; a float64 sum of rows
near 1e308 is infinite). Multiplying every value by the same power of two, 2^-e, is exact (short
of the subnormal range) and changes no comparison, so a selection made on the scaled values is
the selection the exact values give, and a mean, median or norm of the scaled values times 2^e
is the exact one rounded as usual.

The rules run on the values as they are and check the result they have anyway (the distance
matrix, the norms, the d-vector output): only when that check finds an overflow among finite
values do they pay for the extra passes of rescaling.
"""
from __future__ import annotations

import math

import torch

from . import _checks


def target_exponent(dtype: torch.dtype, count: int) -> int:
    """The t for which values of magnitude at most 2^t keep a sum of ``count`` terms of the
    form (a - b)^2 finite in ``dtype`` (and so in float64): (2·2^t)^2·count < 2^maxexp."""
    maxexp = math.frexp(torch.finfo(dtype).max)[1]  # 128 for float32, 1024 for float64
    return (maxexp - 4 - max(count, 1).bit_length()) // 2


def exponent(x: torch.Tensor, count: int | None = None) -> int:
    """The e ≥ 0 such that the finite entries of ``x`` times 2^-e are at most 2^t
    (:func:`target_exponent` with ``count``, x's number of entries by default); 0 when they are
    already (then no rescaling helps) or when x has no finite non-zero entry."""
    finite = torch.where(torch.isfinite(x), x.abs(), torch.zeros((), dtype=x.dtype,
                                                                 device=x.device))
    top = float(finite.amax()) if finite.numel() else 0.0
    if top == 0.0:
        return 0
    t = target_exponent(x.dtype, x.numel() if count is None else count)
    return max(0, math.frexp(top)[1] - t)


def _times_pow2(x: torch.Tensor, k: int) -> torch.Tensor:
    # in steps that are normal numbers of x's dtype (a Python float is cast to it): exact
    limit = math.frexp(torch.finfo(x.dtype).max)[1] - 2
    while k:
        step = max(-limit, min(limit, k))
        x = x * 2.0 ** step
        k -= step
    return x


def scale(x: torch.Tensor, e: int) -> torch.Tensor:
    """``x · 2^-e`` (exact unless values fall into the subnormal range)."""
    return _times_pow2(x, -e) if e else x


def unscale(y: torch.Tensor, e: int) -> torch.Tensor:
    """``y · 2^e``, where a finite value of y stays finite: one that the rounding of the scaled
    computation put a hair above the largest float is clamped to it. Non-finite values (from
    non-finite inputs beyond a rule's bound) stay as they are."""
    if not e:
        return y
    big = torch.finfo(y.dtype).max
    out = _times_pow2(y, e)
    return torch.where(torch.isfinite(y), out.clamp(-big, big), out)


def rescue_columns(fn, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """``out = fn(x)`` for a column-wise ``fn: Tensor[n, k] -> Tensor[k]``, with the columns
    where it is non-finite recomputed on the scaled columns (their finite values brought to
    2^t): those are the columns where a sum of finite values overflowed. A column that is
    non-finite because of non-finite inputs stays non-finite. One check of the d-vector when
    ``out`` is finite."""
    if _checks.all_finite(out):
        return out
    bad = ~torch.isfinite(out)
    cols = bad.nonzero().squeeze(1)
    sub = x.index_select(1, cols.to(x.device))
    e = exponent(sub)
    if e == 0:  # no magnitude to bring down: the non-finite values come from the inputs
        return out
    return out.index_copy(0, cols, unscale(fn(scale(sub, e)), e).to(out.dtype))


def mean_rows(x: torch.Tensor) -> torch.Tensor:
    """The mean of the rows of ``x[n, d]``, finite whenever the rows are (a float32 or float64
    sum of finite rows can overflow)."""
    return rescue_columns(lambda s: s.mean(dim=0), x, x.mean(dim=0))


def selection_distances(x: torch.Tensor, distances: torch.Tensor, compute) -> torch.Tensor:
    """Squared distances fit for comparing sums of up to n of them: ``distances`` as they are
    when every entry is below float64's max / n (one check of the n × n matrix); when two finite
    rows' distance overflowed there (+inf, or NaN on a Gram-form path), the distances of x · 2^-e,
    computed by ``compute(x_scaled)``, which order every pair and every sum exactly as the exact
    values do. A pair involving a non-finite row stays +inf."""
    n = x.shape[0]
    limit = torch.finfo(torch.float64).max / n
    bad = ~(distances < limit)  # +inf, NaN, or too close to the top for a sum of n
    if not bool(bad.any()):
        return distances
    involved = bad.any(dim=1).to(x.device)
    finite = torch.ones(n, dtype=torch.bool, device=x.device)
    finite[involved] = _checks.finite_rows(x[involved])  # only the rows in question are read
    finite = finite.to(distances.device)
    if not bool((bad & finite[:, None] & finite[None, :]).any()):
        return distances  # every large entry involves a non-finite row: +inf as documented
    return compute(scale(x, exponent(x, x.numel())))


def row_norms(x: torch.Tensor) -> tuple[torch.Tensor, int]:
    """``(norms, e)``: the float64 Euclidean norms of the rows of x · 2^-e, with e = 0 unless a
    finite row's norm overflows in x's dtype (then e brings every finite value to at most 2^t,
    so the norms are finite and their ratios exact). A row with ±Inf has norm +inf, one with
    NaN has NaN."""
    norms = torch.linalg.vector_norm(x, dim=1)
    over = torch.isinf(norms)
    if bool(over.any()) and bool(_checks.finite_rows(x[over]).any()):
        e = exponent(x, x.shape[1])
        return torch.linalg.vector_norm(scale(x, e), dim=1).double(), e
    return norms.double(), 0
