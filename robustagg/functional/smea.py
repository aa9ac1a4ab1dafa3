"""Smallest-maximum-eigenvalue averaging (Allouah, Guerraoui, Gupta, Pinot, Stephan, ICML 2023)."""
from __future__ import annotations

import torch

from ._checks import finite_rows, matrix_and_distances
from ._graph import selected_mean
from ._rowstats import centred_gram
from ._subsets import MAX_SUBSETS, best_subset, check_subsets

# Subsets whose top eigenvalues differ by less than this fraction of the data's spread count
# as tied (the eigenvalues carry rounding errors of that order).
_TIE = 1e-9


def smea(x: torch.Tensor, f: int, distances: torch.Tensor | None = None,
         max_subsets: int = MAX_SUBSETS, return_selected: bool = False):
    r"""Smallest-maximum-eigenvalue averaging: the mean of the n - f vectors whose empirical
    covariance has the least largest eigenvalue,

    .. math:: \mathrm{SMEA}_f(x) = \bar x_{S^*}, \qquad
              S^* \in \arg\min_{|S| = n-f} \lambda_{\max}\Big(\frac{1}{|S|}\sum_{i\in S}
              (x_i - \bar x_S)(x_i - \bar x_S)^\top\Big).

    ``x: Tensor[n, d]`` → ``Tensor[d]`` (and ``S*`` as ascending ``LongTensor[n - f]`` when
    ``return_selected``); needs n ≥ 2f + 1. Allouah, Guerraoui, Gupta, Pinot, Stephan, "On the
    privacy-robustness-utility trilemma in distributed learning", ICML 2023 (SMEA); ByzFL's ``SMEA``.

    Exact: the d × d covariance of a subset shares its non-zero eigenvalues with the
    (n - f) × (n - f) centred Gram matrix of the subset divided by |S|, and that matrix comes
    from the squared distances alone (:func:`~robustagg.functional._rowstats.centred_gram`),
    so one pass of the native distance kernel serves every subset and the search never touches
    d again; each subset costs one small symmetric eigenvalue problem. Every one of the C(n, f)
    subsets is searched; above ``max_subsets`` (default 100 000) the call is refused with an
    error naming the count. ByzFL instead estimates each eigenvalue with one step of the power
    method from a random start, which is neither exact nor deterministic.

    Conventions: eigenvalues within 1e-9 times the data's spread (the mean finite squared
    distance) of the least count as tied, and among tied subsets the one whose sorted indices
    come first lexicographically wins; a subset with a NaN or ±Inf vector scores +inf, so with
    at most f of them the chosen subset has none.
    """
    rule = "SMEA"
    dtype = x.dtype if isinstance(x, torch.Tensor) else None
    x, distances = matrix_and_distances(x, f, distances, rule, 2, 1)
    n = x.shape[0]
    check_subsets(rule, n, f, max_subsets)
    k = n - f
    finite = finite_rows(x).cpu()
    dist = distances.cpu().clone()
    dist[~finite] = 0.0
    dist[:, ~finite] = 0.0
    spread = float(dist[finite][:, finite].mean()) if bool(finite.any()) else 0.0
    uniform = torch.full((k,), 1.0 / k, dtype=torch.float64)

    def top_eigenvalue(kept):
        idx = kept.nonzero()[:, 1].reshape(-1, k)
        sub = dist[idx[:, :, None], idx[:, None, :]]
        lam = torch.linalg.eigvalsh(centred_gram(sub, uniform))[:, -1] / k
        return torch.where(finite[idx].all(dim=1), lam.clamp_min(0.0),
                           torch.full_like(lam, float("inf")))

    selected, best = best_subset(n, f, top_eigenvalue, tol=lambda best: _TIE * spread)
    if best == float("inf"):
        out = torch.full((x.shape[1],), float("nan"), dtype=x.dtype, device=x.device)
    else:
        out = selected_mean(x, selected)
    out = out.to(dtype)
    return (out, selected) if return_selected else out
