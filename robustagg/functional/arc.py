"""Adaptive robust clipping (Allouah et al., ICLR 2025)."""
from __future__ import annotations

import math

import torch

from ._checks import as_matrix, check_bound, check_f
from ._scaling import row_norms
from .clip import clip_to


def arc(x: torch.Tensor, f: int) -> torch.Tensor:
    r"""Adaptive robust clipping, a pre-aggregation: with :math:`k = \lfloor 2 (f/n)(n-f) \rfloor`,
    clip the k vectors of largest norm to the norm of the (k+1)-th largest; the others pass.

    ``x: Tensor[n, d]`` → ``Tensor[n, d]``; needs n ≥ 2f + 1. Allouah, Guerraoui, Gupta,
    Jellouli, Rizk, Stephan, "Boosting robustness by clipping gradients in distributed
    learning", ICLR 2025, Algorithm 2. Ties in norm go to the lowest index; a non-finite row's
    norm counts as +inf (it is among the clipped and stays non-finite). Norms that overflow
    (float32 entries near 1e20) are compared on x · 2^-e, a power of two that changes no
    comparison and no ratio.
    """
    rule = "ARC"
    dtype = x.dtype if isinstance(x, torch.Tensor) else None
    x = as_matrix(x, rule)
    n = x.shape[0]
    check_bound(rule, n, check_f(f, rule), 2, 1)
    k = math.floor(2 * f * (n - f) / n)
    if k == 0:
        return x.to(dtype)
    norms, _ = row_norms(x)  # the same power of two in every norm: ratios are exact
    norms = torch.where(torch.isnan(norms), torch.full_like(norms, float("inf")), norms)
    order = torch.sort(-norms, stable=True).indices  # largest first, ties to the lowest index
    top = order[:k].to(x.device)
    return x.index_copy(0, top, clip_to(x[top], norms[order[k]], norms[order[:k]])).to(dtype)
