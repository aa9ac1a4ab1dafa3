"""Coordinate-wise median."""
import torch

from .. import kernels, streaming
from ._checks import as_matrix


def coordinate_median(x: torch.Tensor,
                      device=None, chunk_columns: int | None = None) -> torch.Tensor:
    r"""Coordinate-wise median: :math:`[\mathrm{med}(x_{1k}, \dots, x_{nk})]_{k}`.

    For even n the median of a coordinate is the mean of its two middle values (the usual
    statistical median; ``torch.median`` returns the lower one instead). NaN is ordered as
    +inf, so with at most ⌈n/2⌉ - 1 non-finite values in a coordinate the result is finite.

    ``x: Tensor[n, d]`` → ``Tensor[d]``; n ≥ 2f + 1 tolerates f Byzantine rows.
    ``device``: compute there, streaming x through it in column chunks of ``chunk_columns``
    (None: sized from free memory) when x lives elsewhere (:mod:`robustagg.streaming`); the
    result is on x's device. None computes on x's device.
    Yin, Chen, Ramchandran, Bartlett, "Byzantine-robust distributed learning: towards optimal
    statistical rates", ICML 2018, Definition 1.
    """
    rule = "CoordinateMedian"
    dtype = x.dtype if isinstance(x, torch.Tensor) else None
    x = as_matrix(x, rule)
    target = streaming.target_device(x, device, chunk_columns, rule)
    if target is not None:
        return streaming.coordinate_median(x, target, chunk_columns).to(dtype)
    return kernels.coordinate_median(x).to(dtype)
