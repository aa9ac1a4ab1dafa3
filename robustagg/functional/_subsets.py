"""Exact searches over the subsets of n - f of n vectors (MDA, SMEA), with a documented limit
on how many subsets a call may search."""
from __future__ import annotations

import itertools
import math
from typing import Callable

import torch

# Default limit on C(n, f), the number of subsets a call may search: n = 30, f = 4 (27 405) and
# n = 20, f = 6 (38 760) pass, n = 30, f = 5 (142 506) does not.
MAX_SUBSETS = 100_000


def check_subsets(rule: str, n: int, f: int, max_subsets: int) -> int:
    """The number of subsets, C(n, f); ``ValueError`` naming it when above ``max_subsets``."""
    if isinstance(max_subsets, bool) or not isinstance(max_subsets, int) or max_subsets < 1:
        raise ValueError(f"{rule}: max_subsets must be an int >= 1, got {max_subsets!r}")
    count = math.comb(n, f)
    if count > max_subsets:
        raise ValueError(f"{rule} searches every subset of n - f = {n - f} of the n = {n} "
                         f"vectors: C({n}, {f}) = {count} subsets, above max_subsets="
                         f"{max_subsets}; raise max_subsets to search them anyway")
    return count


def _lexicographic_first(kept: torch.Tensor) -> int:
    """Row of ``kept`` (bool ``[m, n]``) whose kept indices, sorted, come first
    lexicographically: the one that keeps the lowest index where the rows differ."""
    rows = torch.arange(kept.shape[0])
    for j in range(kept.shape[1]):
        if len(rows) == 1:
            break
        has = kept[rows, j]
        if bool(has.any()):
            rows = rows[has]
    return int(rows[0])


def best_subset(n: int, f: int, score: Callable[[torch.Tensor], torch.Tensor],
                tol: Callable[[float], float] = lambda best: 0.0,
                chunk: int = 4096) -> tuple[torch.Tensor, float]:
    """The subset of n - f indices with the least ``score`` and that score.

    ``score(kept: bool[m, n]) -> float64[m]`` scores m subsets at once (kept[i, j]: subset i
    keeps vector j). Scores within ``tol(best)`` of the least count as equal, and among equal
    ones the subset whose sorted indices come first lexicographically wins. Returns the kept
    indices (``LongTensor[n - f]``, ascending) and the least score (+inf when every subset
    scores +inf).
    """
    best = math.inf
    tied: list[tuple[torch.Tensor, float]] = []  # (kept mask, score) near the best so far
    combos = itertools.combinations(range(n), f)
    while True:
        removed = list(itertools.islice(combos, chunk))
        if not removed:
            break
        kept = torch.ones(len(removed), n, dtype=torch.bool)
        if f:
            kept[torch.arange(len(removed))[:, None], torch.tensor(removed)] = False
        values = score(kept).cpu()
        best = min(best, float(values.min()))
        bound = best + tol(best) if math.isfinite(best) else best
        tied = [(m, v) for m, v in tied if v <= bound]
        for i in (values <= bound).nonzero().squeeze(1).tolist():
            tied.append((kept[i], float(values[i])))
    masks = torch.stack([m for m, _ in tied])
    winner = masks[_lexicographic_first(masks)]
    return winner.nonzero().squeeze(1), best
