"""MoNNA: mean of the nearest neighbours of a trusted vector (Farhadkhani et al., ICML 2023)."""
from __future__ import annotations

import torch

from ._checks import as_matrix, check_bound, check_f
from ._graph import selected_mean
from ._rowstats import sq_distances_to


def monna(x: torch.Tensor, f: int, pivot: int | torch.Tensor = 0,
          distances: torch.Tensor | None = None, return_selected: bool = False):
    r"""MoNNA: the mean of the n - f vectors nearest to a trusted vector :math:`x_p`,

    .. math:: \mathrm{MoNNA}_{f,p}(x) = \frac{1}{n-f}\sum_{i \in N_p} x_i,

    :math:`N_p` the n - f vectors closest to :math:`x_p` (itself included when it is a row).

    ``x: Tensor[n, d]`` → ``Tensor[d]`` (and the n - f indices, nearest first, when
    ``return_selected``); needs n ≥ 2f + 1. ``pivot``: the index of the trusted row (an honest
    worker's own vector, as in the peer-to-peer setting of the paper) or a trusted
    ``Tensor[d]`` that is not among the rows. Farhadkhani, Guerraoui, Gupta, Hoang, Pinot,
    Stephan, "Robust collaborative learning with linear gradient overhead", ICML 2023,
    the MoNNA aggregation rule; ByzFL's ``MoNNA``
    (``idx`` there).

    Cost: one pass over n·d values for the distances to the pivot (float64 sums), unless
    ``distances`` (float64 ``[n, n]``, shared with other steps) gives them; one for the mean.
    Conventions: the pivot row comes first whatever its duplicates; other ties go to the lowest
    index (ByzFL's ``argpartition`` leaves them unspecified); a row with a NaN or ±Inf entry is
    +inf away. The pivot is trusted, so a non-finite pivot is a ``ValueError``.
    """
    rule = "MoNNA"
    dtype = x.dtype if isinstance(x, torch.Tensor) else None
    x = as_matrix(x, rule)
    n, d = x.shape
    check_bound(rule, n, check_f(f, rule), 2, 1)
    if isinstance(pivot, torch.Tensor):
        if tuple(pivot.shape) != (d,):
            raise ValueError(f"{rule}: pivot must be a row index or a Tensor[{d}], "
                             f"got shape {tuple(pivot.shape)}")
        p = pivot.to(device=x.device)
        row = None
    elif isinstance(pivot, int) and not isinstance(pivot, bool) and 0 <= pivot < n:
        p, row = x[pivot], pivot
    else:
        raise ValueError(f"{rule}: pivot must be a row index in [0, {n}) or a Tensor[{d}], "
                         f"got pivot={pivot!r}")
    if not bool(torch.isfinite(p).all()):
        raise ValueError(f"{rule}: the trusted pivot vector must be finite")
    if distances is not None and row is not None:
        if tuple(distances.shape) != (n, n):
            raise ValueError(f"{rule}: distances must have shape [{n}, {n}], "
                             f"got {tuple(distances.shape)}")
        dist = distances[row].to(torch.float64).clone()
    else:
        dist = sq_distances_to(x.detach(), p.detach())  # a selection: no graph
    if row is not None:
        dist[row] = -1.0  # the trusted vector itself first, whatever its duplicates
    selected = torch.sort(dist, stable=True).indices[: n - f]
    out = selected_mean(x, selected).to(dtype)
    return (out, selected) if return_selected else out
