"""Static norm clipping."""
from __future__ import annotations

import torch

from ._checks import as_matrix, check_positive
from ._scaling import row_norms, scale


def clip_to(x: torch.Tensor, threshold: torch.Tensor | float, norms: torch.Tensor) -> torch.Tensor:
    """Scale each row of x to norm at most ``threshold``, given the rows' ``norms`` in the same
    units as ``threshold`` (both may be of x · 2^-e, :func:`robustagg.functional._scaling.row_norms`):
    the factor min(1, threshold / norm) is computed in float64. A row whose norm is NaN stays
    NaN."""
    factor = (threshold / norms.clamp_min(torch.finfo(torch.float64).tiny)).clamp_max(1.0)
    if bool((factor < torch.finfo(x.dtype).tiny).any()):
        # below x's normal range a factor loses its digits: apply it as two normal halves
        half = factor.sqrt().to(x.dtype)[:, None]
        return x * half * half
    return x * factor.to(x.dtype)[:, None]


def clip(x: torch.Tensor, tau: float) -> torch.Tensor:
    r"""Static norm clipping, a pre-aggregation: :math:`y_i = x_i \min(1, \tau/\lVert x_i\rVert)`.

    ``x: Tensor[n, d]`` → ``Tensor[n, d]``. Non-finite rows stay non-finite (the rule after
    it deals with them). Norms that overflow (float32 entries near 1e20) are taken on
    x · 2^-e, a power of two, and τ with them, so finite rows are clipped exactly.
    """
    rule = "Clip"
    dtype = x.dtype if isinstance(x, torch.Tensor) else None
    x = as_matrix(x, rule)
    check_positive(tau, rule, "tau")
    norms, e = row_norms(x)
    threshold = scale(torch.tensor(float(tau), dtype=torch.float64), e)
    return clip_to(x, threshold, norms).to(dtype)
