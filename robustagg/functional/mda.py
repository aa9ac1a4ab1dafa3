"""Minimum-diameter averaging (El Mhamdi, Guerraoui, Rouault, ICML 2018)."""
from __future__ import annotations

import torch

from ._checks import matrix_and_distances
from ._graph import selected_mean
from ._subsets import MAX_SUBSETS, best_subset, check_subsets


def mda(x: torch.Tensor, f: int, distances: torch.Tensor | None = None,
        max_subsets: int = MAX_SUBSETS, return_selected: bool = False):
    r"""Minimum-diameter averaging: the mean of the n - f vectors whose diameter is least,

    .. math:: \mathrm{MDA}_f(x) = \frac{1}{n-f}\sum_{i \in S^*} x_i, \qquad
              S^* \in \arg\min_{|S| = n-f} \max_{i, j \in S} \lVert x_i - x_j \rVert.

    ``x: Tensor[n, d]`` → ``Tensor[d]`` (and ``S*`` as ascending ``LongTensor[n - f]`` when
    ``return_selected``); needs n ≥ 2f + 1. Exact: every one of the C(n, f) subsets is
    searched, after one pass of the native distance kernel (the search itself costs
    O(C(n, f)·f·n) on the n × n distances, never O(d)); above ``max_subsets`` subsets
    (default 100 000) the call is refused with an error naming the count.
    El Mhamdi, Guerraoui, Rouault, "The hidden vulnerability of distributed learning in
    Byzantium", ICML 2018; ByzFL's ``MDA`` cites El Mhamdi, Guerraoui, Guirguis, Hoang,
    Rouault, "Genuinely distributed Byzantine machine learning", PODC 2020, for the same rule.

    Conventions: among subsets of equal diameter the one whose sorted indices come first
    lexicographically wins (ByzFL's loop keeps the first such subset too); a vector with a
    NaN or ±Inf entry is +inf away from every other, so with at most f of them the chosen
    subset has none. ``distances`` (float64 ``[n, n]`` squared distances) may be shared with
    other distance-based steps.
    """
    rule = "MDA"
    dtype = x.dtype if isinstance(x, torch.Tensor) else None
    x, distances = matrix_and_distances(x, f, distances, rule, 2, 1)
    n = x.shape[0]
    check_subsets(rule, n, f, max_subsets)
    dist = distances.cpu()
    # The diameter of a subset is its largest pair. Only the pairs among the f·(n - 1) + 1
    # largest can be that pair (fewer than f·(n - 1) pairs touch the f vectors left out), so a
    # subset's diameter is the first of them, largest first, with both ends kept.
    iu = torch.triu_indices(n, n, 1)
    pair_d = dist[iu[0], iu[1]]
    order = torch.sort(pair_d, descending=True, stable=True).indices[: f * (n - 1) + 1]
    a, b, top = iu[0][order], iu[1][order], pair_d[order]

    def diameter(kept):
        if top.numel() == 0:  # n - f = 1: no pairs, every diameter is 0
            return torch.zeros(kept.shape[0], dtype=torch.float64)
        both = kept[:, a] & kept[:, b]
        return top[both.to(torch.uint8).argmax(dim=1)]

    selected, best = best_subset(n, f, diameter)
    if best == float("inf"):  # more than f non-finite vectors: no subset is trustworthy
        out = torch.full((x.shape[1],), float("nan"), dtype=x.dtype, device=x.device)
    else:
        out = selected_mean(x, selected)
    out = out.to(dtype)
    return (out, selected) if return_selected else out
