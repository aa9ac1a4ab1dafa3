"""Static norm clipping."""
from __future__ import annotations

import torch

from ._checks import as_matrix, check_positive


def clip_to(x: torch.Tensor, threshold: torch.Tensor | float) -> torch.Tensor:
    """Scale each row of x to norm at most ``threshold``. A row whose norm is NaN stays NaN."""
    norms = x.norm(dim=1)
    scale = (threshold / norms.clamp_min(torch.finfo(x.dtype).tiny)).clamp_max(1.0)
    return x * scale[:, None]


def clip(x: torch.Tensor, tau: float) -> torch.Tensor:
    r"""Static norm clipping, a pre-aggregation: :math:`y_i = x_i \min(1, \tau/\lVert x_i\rVert)`.

    ``x: Tensor[n, d]`` → ``Tensor[n, d]``. Non-finite rows stay non-finite (the rule after
    it deals with them).
    """
    rule = "Clip"
    dtype = x.dtype if isinstance(x, torch.Tensor) else None
    x = as_matrix(x, rule)
    check_positive(tau, rule, "tau")
    return clip_to(x, tau).to(dtype)
