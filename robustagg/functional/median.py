"""Coordinate-wise median, and its weighted form."""
from __future__ import annotations

import torch

from .. import kernels, streaming
from . import _weights
from ._checks import as_matrix, needs_grad, no_streamed_grad
from ._scaling import rescue_columns
from ._weighted_order import weighted_median


def coordinate_median(x: torch.Tensor, device=None, chunk_columns: int | None = None, *,
                      weights=None, max_weight_share: float | None = None) -> torch.Tensor:
    r"""Coordinate-wise median: :math:`[\mathrm{med}(x_{1k}, \dots, x_{nk})]_{k}`.

    For even n the median of a coordinate is the mean of its two middle values (the usual
    statistical median; ``torch.median`` returns the lower one instead). NaN is ordered as
    +inf, so with at most ⌈n/2⌉ - 1 non-finite values in a coordinate the result is finite.

    Weighted (``weights``: n finite non-negative numbers, e.g. sample counts): per coordinate,
    the value where the cumulative weight crosses half the total, i.e. the first sorted value
    v with W(≤ v) ≥ W(> v); when the weight at or below a value is exactly half, the mean of it
    and the next value of positive weight (so equal weights give the unweighted median exactly,
    even n included). The median of the weighted empirical distribution; a coordinate stays
    among the honest values while the Byzantine workers hold less than half the weight, which
    ``max_weight_share`` (each worker's share capped, see
    :mod:`robustagg.functional._weights`) guarantees when f·max_weight_share < 1/2.

    ``x: Tensor[n, d]`` → ``Tensor[d]``; n ≥ 2f + 1 tolerates f Byzantine rows.
    ``device``: compute there, streaming x through it in column chunks of ``chunk_columns``
    (None: sized from free memory) when x lives elsewhere (:mod:`robustagg.streaming`); the
    result is on x's device. None computes on x's device. Weights are not streamed.
    Yin, Chen, Ramchandran, Bartlett, "Byzantine-robust distributed learning: towards optimal
    statistical rates", ICML 2018, Definition 1.
    """
    rule = "CoordinateMedian"
    dtype = x.dtype if isinstance(x, torch.Tensor) else None
    x = as_matrix(x, rule)
    target = streaming.target_device(x, device, chunk_columns, rule)
    w = _weights.check(weights, x.shape[0], rule, max_weight_share, x.device)
    if w is not None:
        if target is not None:
            raise ValueError(f"{rule}: weights cannot be combined with streaming "
                             f"(device={device!r}, chunk_columns={chunk_columns!r})")
        return weighted_median(x, w).to(dtype)  # a/2 + b/2: finite values stay finite
    if target is not None:
        no_streamed_grad(x, rule)
        out = streaming.coordinate_median(x, target, chunk_columns)
        return rescue_columns(lambda s: streaming.coordinate_median(s, target, chunk_columns),
                              x, out).to(dtype)
    # the sort-based path carries the autograd graph; the native kernel does not
    fn = kernels.coordinate_median_torch if needs_grad(x) else kernels.coordinate_median
    return rescue_columns(fn, x, fn(x)).to(dtype)
