"""Bulyan (El Mhamdi, Guerraoui, Rouault, ICML 2018)."""
from __future__ import annotations

import torch

from .. import kernels
from . import _scaling
from ._checks import all_finite, matrix_and_distances
from .krum import scores_from_distances, select_lowest


def _closest_to_median_mean(s: torch.Tensor, beta: int):
    """Bulyan's coordinate step on the selected rows ``s[θ, d]`` (all finite): per coordinate
    the mean of the β values closest to the median, and whether that is the exact answer (the
    β-th smallest distance to the median is finite, so no overflowed distance was compared, and
    the mean is finite)."""
    med = kernels.coordinate_median(s)
    # stable sort: ties in distance keep selection order (the documented convention)
    dist, order = (s - med).abs().sort(dim=0, stable=True)
    out = s.gather(0, order[:beta]).mean(dim=0)
    exact = all_finite(dist[beta - 1]) and all_finite(out)
    return out, exact


def bulyan(x: torch.Tensor, f: int, distances: torch.Tensor | None = None,
           return_selected: bool = False):
    r"""Bulyan over Krum.

    1. Selection: θ = n - 2f vectors, chosen one at a time by Krum on the vectors not chosen
       yet (the scores recomputed on the remaining set R after each choice, with |R| - f - 2
       neighbours; one distance matrix serves every step).
    2. Aggregation: per coordinate k, the mean of the β = θ - 2f selected values closest to
       their median: :math:`\frac1\beta \sum_{i \in B_k} x_{ik}`,
       :math:`B_k = \arg\min_{|B|=\beta} \sum_{i \in B} |x_{ik} - \mathrm{med}_k|`.

    ``x: Tensor[n, d]`` → ``Tensor[d]`` (and the θ selected indices, in order of choice, when
    ``return_selected``). Needs n ≥ 4f + 3.
    El Mhamdi, Guerraoui, Rouault, "The hidden vulnerability of distributed learning in
    Byzantium", ICML 2018, Section 4 (Algorithm "Bulyan", equations for θ and β).

    Conventions (the paper leaves them open): on the last, small sets |R| - f - 2 falls to
    f - 1 and can be 0 (f = 1), which would make every score 0; we use at least one neighbour
    (when there is one), so that a non-finite vector keeps an infinite score and is never
    selected. Ties in
    Krum go to the lowest index (with one neighbour the two mutually nearest vectors always tie,
    so for f <= 2 the selection can depend on the order of the inputs); in the coordinate step, ties in distance to the median go to
    the value chosen earlier in the selection. NaN is ordered as +inf.

    Extreme values: distances that overflow float64 between finite vectors are computed again
    on x·2^-e (a power of two: the same choices as exact arithmetic), and a coordinate step
    whose distances to the median or whose mean overflow is taken on the scaled selected rows;
    both are detected on values the rule computes anyway.
    """
    rule = "Bulyan"
    dtype = x.dtype if isinstance(x, torch.Tensor) else None
    x, distances = matrix_and_distances(x, f, distances, rule, 4, 3)
    n = x.shape[0]
    distances = _scaling.selection_distances(x, distances, kernels.pairwise_sq_distances)

    theta, beta = n - 2 * f, n - 4 * f
    remaining = torch.arange(n, device=distances.device)
    chosen = []
    for _ in range(theta):
        sub = distances[remaining][:, remaining]
        k = min(max(len(remaining) - f - 2, 1), len(remaining) - 1)
        pick = select_lowest(scores_from_distances(sub, k), 1)
        if pick.numel() == 0:  # more than f non-finite rows: nothing trustworthy is left
            break
        chosen.append(remaining[pick])
        remaining = remaining[torch.arange(len(remaining), device=remaining.device) != pick]
    if len(chosen) < theta:
        out = torch.full((x.shape[1],), float("nan"), dtype=x.dtype, device=x.device)
        selected = torch.cat(chosen) if chosen else torch.empty(0, dtype=torch.long)
        return (out.to(dtype), selected) if return_selected else out.to(dtype)
    selected = torch.cat(chosen)

    s = x.index_select(0, selected.to(x.device))  # finite: a non-finite row is never chosen
    out, exact = _closest_to_median_mean(s, beta)
    if not exact:
        e = _scaling.exponent(s)
        out = _scaling.unscale(_closest_to_median_mean(_scaling.scale(s, e), beta)[0], e)
    out = out.to(dtype)
    return (out, selected) if return_selected else out
