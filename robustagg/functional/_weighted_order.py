"""Weighted order statistics per coordinate: the weighted median and the weighted trimmed mean
(the arithmetic of :func:`~robustagg.functional.coordinate_median` and
:func:`~robustagg.functional.trimmed_mean` with weights; inputs checked by the caller).

Each column is sorted (NaN ordered as +inf, ties kept in row order) and carries its rows'
weights; cumulative weights are float64 sums, exact for integer weights such as sample counts
(up to 2^53).
"""
from __future__ import annotations

import torch


def _sorted(x: torch.Tensor, w: torch.Tensor):
    """Per column: the sorted values, their weights, the weight at or below each position and
    the weight strictly below it (float64 ``[n, d]`` each but the first)."""
    s, idx = torch.where(torch.isnan(x), torch.full_like(x, float("inf")), x).sort(
        dim=0, stable=True)
    m = w[idx]
    at_or_below = m.cumsum(dim=0)
    below = torch.cat([torch.zeros_like(m[:1]), at_or_below[:-1]])
    return s, m, at_or_below, below


def weighted_median(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    r"""Per column, the value where the cumulative weight crosses half the total: the lower
    weighted median is the first sorted value v_j with W(≤ v_j) ≥ W(> v_j), the upper the last
    v_j with W(≥ v_j) ≥ W(< v_j); they differ only when the weight at or below one value is
    exactly half, and then the result is their mean (the two middle values of an even n at
    equal weights). A value of weight 0 is never either. ``x[n, d]``, ``w`` float64 ``[n]``."""
    s, m, at_or_below, below = _sorted(x, w)
    at_or_above = m.flip(0).cumsum(dim=0).flip(0)
    above = torch.cat([at_or_above[1:], torch.zeros_like(m[:1])])
    lo = (at_or_below >= above).to(torch.int8).argmax(dim=0)  # first true (monotone)
    hi = (at_or_above >= below).sum(dim=0) - 1                # last true (a prefix)
    a, b = s.gather(0, lo[None]), s.gather(0, hi[None])
    return (a * 0.5 + b * 0.5)[0]  # cannot overflow, unlike (a + b) / 2


def trim_mass(w: torch.Tensor, f: int) -> torch.Tensor:
    """The weight trimmed from each end: the total weight of the f heaviest workers, the most
    that any f workers can hold."""
    return w.topk(f).values.sum() if f else w.new_zeros(())


def weighted_trimmed_mean(x: torch.Tensor, w: torch.Tensor, f: int) -> torch.Tensor:
    r"""Per column, the weighted mean of the mass left after removing the mass τ = the weight
    of the f heaviest workers from each end (a value straddling a cut keeps the part of its
    weight inside): :math:`\frac{1}{W - 2\tau}\sum_j k_j v_j`,
    :math:`k_j = \max(0, \min(C_j, W - \tau) - \max(C_{j-1}, \tau))`, with :math:`C_j` the
    weight at or below :math:`v_j`. ``x[n, d]``, ``w`` float64 ``[n]`` with 2τ < W."""
    s, m, at_or_below, below = _sorted(x, w)
    total = at_or_below[-1:]
    tau = trim_mass(w, f)
    kept = (torch.minimum(at_or_below, total - tau) - torch.maximum(below, tau)).clamp_min(0)
    share = kept / (total - 2 * tau)
    # a trimmed or weightless value contributes nothing, not 0 * inf
    terms = torch.where(share > 0, share * s.double(), torch.zeros_like(share))
    return terms.sum(dim=0).to(x.dtype)
