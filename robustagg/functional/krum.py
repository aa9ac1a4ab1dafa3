"""Krum and multi-Krum (Blanchard, El Mhamdi, Guerraoui, Stainer, NeurIPS 2017)."""
from __future__ import annotations

import torch

from .. import kernels, streaming
from ._checks import as_matrix, check_bound, check_f, matrix_and_distances, needs_grad
from ._scaling import rescue_columns, selection_distances

_INF = float("inf")


def scores_from_distances(distances: torch.Tensor, k: int) -> torch.Tensor:
    """Per row, the sum of its ``k`` smallest distances to the *other* rows (float64 ``[n]``).

    ``distances``: float64 ``[n, n]`` as from :func:`robustagg.kernels.pairwise_sq_distances`
    (+inf for non-finite rows), so a row with a non-finite entry scores +inf when k ≥ 1.
    """
    off = distances.clone()
    off.fill_diagonal_(_INF)  # a vector is not its own neighbour (a duplicate of it is)
    if k == 0:
        return torch.zeros(off.shape[0], dtype=off.dtype, device=off.device)
    # Summed in ascending order by a scan: sum() may split the k values among vector lanes
    # differently on different CPUs; a scan adds them one by one, so scores (and ties between
    # them) are the same bits on every machine.
    return off.topk(k, dim=1, largest=False, sorted=True).values.cumsum(dim=1)[:, -1]


def select_lowest(scores: torch.Tensor, m: int) -> torch.Tensor:
    """Indices of the ``m`` lowest finite scores, ties to the lowest index (``LongTensor[≤ m]``).

    A non-finite score is never selected, so fewer than m indices come back when fewer than m
    scores are finite (then the rule's bound on f was exceeded).
    """
    order = torch.sort(scores, stable=True).indices
    order = order[torch.isfinite(scores[order])]
    return order[:m]


def _matrix_and_distances(x, f, distances, rule: str, device, chunk_columns):
    """:func:`matrix_and_distances` for Krum's bound (n >= 2f + 3), the distances streamed
    through ``device`` in column chunks when asked (:func:`robustagg.streaming.target_device`).
    Returns ``(x, distances, compute)``, ``compute`` the function that computed them (to
    compute them again on rescaled rows)."""
    if device is None and chunk_columns is None:  # today's path, untouched
        return (*matrix_and_distances(x, f, distances, rule, 2, 3),
                kernels.pairwise_sq_distances)
    x = as_matrix(x, rule)
    check_bound(rule, x.shape[0], check_f(f, rule), 2, 3)  # before streaming the whole of x
    target = streaming.target_device(x, device, chunk_columns, rule)
    if target is None:
        compute = kernels.pairwise_sq_distances
    else:
        def compute(rows):
            return streaming.pairwise_sq_distances(rows, target, chunk_columns)
    if distances is None and target is not None:
        distances = compute(x)
    return (*matrix_and_distances(x, f, distances, rule, 2, 3), compute)


def krum_scores(x: torch.Tensor, f: int, distances: torch.Tensor | None = None,
                device=None, chunk_columns: int | None = None) -> torch.Tensor:
    r"""Krum scores :math:`s(i) = \sum_{i \to j} \lVert x_i - x_j \rVert^2`, where
    :math:`i \to j` ranges over the n - f - 2 vectors closest to :math:`x_i` (j ≠ i).

    ``x: Tensor[n, d]``, optional ``distances`` float64 ``[n, n]`` (squared, shared with other
    distance-based steps) → float64 ``[n]`` on x's device. Needs n ≥ 2f + 3.
    ``device``: compute the distances there, streaming x through it in column chunks of
    ``chunk_columns`` (None: sized from free memory) when x lives elsewhere
    (:mod:`robustagg.streaming`); None computes on x's device.
    Blanchard et al., "Machine learning with adversaries: Byzantine tolerant gradient descent",
    NeurIPS 2017, Section 4 (definition of Krum). A score whose float64 sum overflows is
    +inf here (the selections of :func:`krum` and :func:`multi_krum` rescale instead).
    """
    x, distances, _ = _matrix_and_distances(x, f, distances, "Krum", device, chunk_columns)
    return scores_from_distances(distances, x.shape[0] - f - 2)


def krum(x: torch.Tensor, f: int, distances: torch.Tensor | None = None,
         return_selected: bool = False, device=None, chunk_columns: int | None = None):
    r"""Krum: the vector with the lowest score, :math:`x_{i^*}`, :math:`i^* = \arg\min_i s(i)`
    (see :func:`krum_scores`); ties go to the lowest index, a non-finite vector is never chosen.

    ``x: Tensor[n, d]`` → ``Tensor[d]`` (and the selected index as ``LongTensor[1]`` when
    ``return_selected``). Needs n ≥ 2f + 3 (Blanchard et al., NeurIPS 2017, Proposition 1).
    If no vector has a finite score (more than f non-finite rows) the result is NaN.
    ``device``, ``chunk_columns``: as for :func:`krum_scores`; the result is on x's device.
    Finite inputs whose squared distances overflow float64 are compared as rescaled by a
    power of two (the same selection as exact arithmetic; see :func:`multi_krum`).
    """
    return multi_krum(x, f, 1, distances, return_selected, rule="Krum", device=device,
                      chunk_columns=chunk_columns)


def multi_krum(x: torch.Tensor, f: int, m: int | None = None,
               distances: torch.Tensor | None = None, return_selected: bool = False,
               rule: str = "MultiKrum", device=None, chunk_columns: int | None = None):
    r"""Multi-Krum: the unweighted mean of the m vectors with the lowest Krum scores,
    :math:`\frac1m \sum_{i \in M} x_i`, scores computed once (Blanchard et al., NeurIPS 2017,
    Section 5; El Mhamdi et al., ICML 2018, Section 2).

    ``x: Tensor[n, d]`` → ``Tensor[d]`` (and the selected indices when ``return_selected``).
    Needs n ≥ 2f + 3 and 1 ≤ m ≤ n; m defaults to n - f. Ties go to the lowest index, and a
    vector with a non-finite score is never selected (so with m > n - f and f non-finite rows
    fewer than m vectors are averaged).
    ``device``, ``chunk_columns``: the distances computed there, streamed in column chunks when
    x lives elsewhere (:func:`krum_scores`); the mean of the selected rows, one pass over m·d
    values, is taken where x lives, and the result is on x's device.

    Extreme values: when two finite vectors' squared distance, or a score, would overflow
    float64 (entries near 1e154 in float64), the distances are computed again on x·2^-e, a
    power of two that changes no comparison, so the selection is the one exact arithmetic
    gives; a mean of selected rows that overflows is taken on the scaled rows likewise. The
    check is on the distance matrix and the output, so ordinary inputs pay no extra pass.
    """
    dtype = x.dtype if isinstance(x, torch.Tensor) else None
    x, distances, compute = _matrix_and_distances(x, f, distances, rule, device, chunk_columns)
    n = x.shape[0]
    if m is None:
        m = n - f
    if isinstance(m, bool) or not isinstance(m, int) or not 1 <= m <= n:
        raise ValueError(f"{rule} needs 1 <= m <= n, got m={m!r}, n={n}")
    distances = selection_distances(x, distances, compute)
    selected = select_lowest(scores_from_distances(distances, n - f - 2), m)
    if selected.numel() == 0:
        out = torch.full((x.shape[1],), float("nan"), dtype=x.dtype, device=x.device)
    else:
        idx = selected.to(x.device)
        if needs_grad(x):  # index_select records the graph; the native kernel does not
            def rows_mean(rows):
                return rows.index_select(0, idx).mean(dim=0)
        else:
            def rows_mean(rows):
                return kernels.rows_mean(rows, idx)
        out = rescue_columns(rows_mean, x, rows_mean(x))
    out = out.to(dtype)
    return (out, selected) if return_selected else out
