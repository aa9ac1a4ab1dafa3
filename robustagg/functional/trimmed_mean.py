"""Coordinate-wise trimmed mean, and its weighted form."""
from __future__ import annotations

import torch

from .. import kernels, streaming
from . import _weights
from ._checks import as_matrix, check_bound, check_f, needs_grad, no_streamed_grad
from ._scaling import rescue_columns
from ._weighted_order import trim_mass, weighted_trimmed_mean


def trimmed_mean(x: torch.Tensor, f: int, device=None, chunk_columns: int | None = None, *,
                 weights=None, max_weight_share: float | None = None) -> torch.Tensor:
    r"""Coordinate-wise trimmed mean: per coordinate k, drop the f largest and the f smallest of
    :math:`x_{1k}, \dots, x_{nk}` and average the n - 2f left,
    :math:`\mathrm{TM}_f(x)_k = \frac{1}{n-2f}\sum_{i=f+1}^{n-f} x_{(i)k}` (order statistics).

    NaN is ordered as +inf, so up to f non-finite values per coordinate are trimmed away.
    ``x: Tensor[n, d]`` → ``Tensor[d]``; needs n ≥ 2f + 1. ``device``, ``chunk_columns``: as for
    :func:`robustagg.functional.coordinate_median` (streaming in column chunks; weights are
    not streamed).
    Yin, Chen, Ramchandran, Bartlett, ICML 2018, Definition 2 (β = f/n).

    Weighted (``weights``: n finite non-negative numbers, e.g. sample counts): the α-trimmed
    mean of the weighted empirical distribution of each coordinate,
    :math:`\frac{1}{1-2\alpha}\int_\alpha^{1-\alpha} F^{-1}(t)\,dt` (Huber & Ronchetti,
    "Robust Statistics", 2nd ed., Wiley 2009, Section 3.3, L-estimates), with α the share of
    the total weight held by the f heaviest workers, the most any f workers can hold: that
    mass is cut from each end (a value straddling a cut keeps the part of its weight inside)
    and the rest averaged by weight. Equal weights give α = f/n, the unweighted rule, exactly.
    Whichever f workers are Byzantine, their weight is at most the mass cut from each side, so
    each coordinate stays within the honest values' range. ``max_weight_share`` caps each
    worker's share (:mod:`robustagg.functional._weights`), which bounds α by
    f·max_weight_share; the f heaviest must hold less than half the weight.
    """
    rule = "TrimmedMean"
    dtype = x.dtype if isinstance(x, torch.Tensor) else None
    x = as_matrix(x, rule)
    check_bound(rule, x.shape[0], check_f(f, rule), 2, 1)
    target = streaming.target_device(x, device, chunk_columns, rule)
    w = _weights.check(weights, x.shape[0], rule, max_weight_share, x.device)
    if w is not None:
        if target is not None:
            raise ValueError(f"{rule}: weights cannot be combined with streaming "
                             f"(device={device!r}, chunk_columns={chunk_columns!r})")
        tau, total = float(trim_mass(w, f)), float(w.sum())
        if not 2 * tau < total:
            raise ValueError(f"{rule}: the f={f} heaviest workers hold {tau / total:.0%} of "
                             f"the weight; cutting that from both ends leaves nothing (it must "
                             f"be below half: lower max_weight_share)")
        return rescue_columns(lambda s: weighted_trimmed_mean(s, w, f), x,
                              weighted_trimmed_mean(x, w, f)).to(dtype)
    if target is not None:
        no_streamed_grad(x, rule)
        return rescue_columns(lambda s: streaming.trimmed_mean(s, f, target, chunk_columns), x,
                              streaming.trimmed_mean(x, f, target, chunk_columns)).to(dtype)
    # the sort-based path carries the autograd graph; the native kernel does not
    fn = kernels.trimmed_mean_torch if needs_grad(x) else kernels.trimmed_mean
    return rescue_columns(lambda s: fn(s, f), x, fn(x, f)).to(dtype)
