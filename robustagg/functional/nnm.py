"""Nearest-neighbour mixing (Allouah et al., AISTATS 2023)."""
from __future__ import annotations

import torch

from .. import kernels
from . import _scaling
from ._checks import finite_rows, matrix_and_distances


def nnm(x: torch.Tensor, f: int, distances: torch.Tensor | None = None) -> torch.Tensor:
    r"""Nearest-neighbour mixing, a pre-aggregation: each vector is replaced by the mean of its
    n - f nearest neighbours, itself included,
    :math:`y_i = \frac{1}{n-f}\sum_{j \in N_i} x_j`.

    ``x: Tensor[n, d]`` → ``Tensor[n, d]``; needs n ≥ 2f + 1 (the rule after it keeps its own
    bound). Ties among neighbours go to the lowest index. Allouah, Farhadkhani, Guerraoui,
    Gupta, Pinot, Stephan, "Fixing by mixing: a recipe for optimal Byzantine ML under
    heterogeneity", AISTATS 2023, Algorithm 1. Non-finite vectors are +inf away from all others,
    so an honest vector mixes only finite ones. Finite vectors whose distances or means overflow
    are handled on x·2^-e (a power of two: the same neighbours and the exact means).
    """
    rule = "NNM"
    dtype = x.dtype if isinstance(x, torch.Tensor) else None
    x, distances = matrix_and_distances(x, f, distances, rule, 2, 1)
    n = x.shape[0]
    distances = _scaling.selection_distances(x, distances, kernels.pairwise_sq_distances).clone()
    distances.fill_diagonal_(-1.0)  # itself first, whatever the duplicates
    # stable argsort: ties go to the lowest index
    near, neighbours = distances.sort(dim=1, stable=True)
    neighbours = neighbours[:, : n - f].to(x.device)
    out = x[neighbours].mean(dim=1)
    # neighbours all finite (finite distances) and yet a non-finite mean: the sum overflowed
    overflow = ~finite_rows(out) & torch.isfinite(near[:, : n - f]).all(dim=1).to(x.device)
    if bool(overflow.any()):
        e = _scaling.exponent(x)
        rows = overflow.nonzero().squeeze(1)
        fixed = _scaling.unscale(_scaling.scale(x, e)[neighbours[rows]].mean(dim=1), e)
        out = out.index_copy(0, rows, fixed)
    return out.to(dtype)
