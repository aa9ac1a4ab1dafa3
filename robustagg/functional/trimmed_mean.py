"""Coordinate-wise trimmed mean."""
import torch

from .. import kernels, streaming
from ._checks import as_matrix, check_bound, check_f


def trimmed_mean(x: torch.Tensor, f: int,
                 device=None, chunk_columns: int | None = None) -> torch.Tensor:
    r"""Coordinate-wise trimmed mean: per coordinate k, drop the f largest and the f smallest of
    :math:`x_{1k}, \dots, x_{nk}` and average the n - 2f left,
    :math:`\mathrm{TM}_f(x)_k = \frac{1}{n-2f}\sum_{i=f+1}^{n-f} x_{(i)k}` (order statistics).

    NaN is ordered as +inf, so up to f non-finite values per coordinate are trimmed away.
    ``x: Tensor[n, d]`` → ``Tensor[d]``; needs n ≥ 2f + 1. ``device``, ``chunk_columns``: as for
    :func:`robustagg.functional.coordinate_median` (streaming in column chunks).
    Yin, Chen, Ramchandran, Bartlett, ICML 2018, Definition 2 (β = f/n).
    """
    rule = "TrimmedMean"
    dtype = x.dtype if isinstance(x, torch.Tensor) else None
    x = as_matrix(x, rule)
    check_bound(rule, x.shape[0], check_f(f, rule), 2, 1)
    target = streaming.target_device(x, device, chunk_columns, rule)
    if target is not None:
        return streaming.trimmed_mean(x, f, target, chunk_columns).to(dtype)
    return kernels.trimmed_mean(x, f).to(dtype)
