"""Mean around the median (Xie, Koyejo, Gupta, 2018)."""
from __future__ import annotations

import torch

from ._checks import as_matrix, check_bound, check_f

# Columns per block: a block's sort holds n·width values and as many indices.
_BLOCK_VALUES = 1 << 22


def _meamed_block(s: torch.Tensor, f: int) -> torch.Tensor:
    """Meamed of the sorted float64 columns ``s[n, w]`` (NaN already +inf)."""
    n = s.shape[0]
    k = n - f
    med = s[(n - 1) // 2] * 0.5 + s[n // 2] * 0.5
    # The k values nearest the median are k consecutive order statistics s[j..j+k-1]: a window
    # is a valid choice when no value left out is nearer than one kept. The first valid window
    # (lowest j) keeps the smaller of values equally near on either side.
    inf = torch.full_like(med, float("inf"))
    start = torch.full_like(med, f, dtype=torch.long)
    for j in range(f, -1, -1):  # downwards, so the lowest valid j is written last
        inner = torch.maximum(med - s[j], s[j + k - 1] - med)
        outer = torch.minimum(med - s[j - 1] if j > 0 else inf,
                              s[j + k] - med if j + k < n else inf)
        start = torch.where(inner <= outer, torch.full_like(start, j), start)
    rank = torch.arange(n, device=s.device)[:, None]
    inside = (rank >= start[None, :]) & (rank < start[None, :] + k)
    return torch.where(inside, s, torch.zeros_like(s)).sum(dim=0) / k


def meamed(x: torch.Tensor, f: int) -> torch.Tensor:
    r"""Mean around the median: per coordinate k, the mean of the n - f values closest to the
    coordinate's median,

    .. math:: \mathrm{Meamed}_f(x)_k = \frac{1}{n-f}\sum_{i \in C_k} x_{ik},\qquad
              C_k = \text{the } n-f \text{ indices with the least } |x_{ik} - \mathrm{med}_k|.

    ``x: Tensor[n, d]`` → ``Tensor[d]``; needs n ≥ 2f + 1. Xie, Koyejo, Gupta, "Generalized
    Byzantine-tolerant SGD", arXiv:1802.10116, 2018, the mean-around-median rule ("Meamed",
    with b = f); ByzFL's ``Meamed``.

    Conventions: the median of an even number of values is the mean of the two middle ones (as
    :func:`coordinate_median`; ByzFL on torch tensors uses torch's lower median instead); NaN
    is ordered as +inf; when two values are equally far from the median on either side and only
    one fits, the smaller is kept (ByzFL's ``argpartition`` leaves this unspecified; the choice
    depends on the values only, so the result does not depend on the order of the workers).
    Per coordinate this is a sort, O(n log n · d), in column blocks of bounded memory; the
    n - f closest values are a run of consecutive order statistics, so no second sort is needed.
    """
    rule = "Meamed"
    dtype = x.dtype if isinstance(x, torch.Tensor) else None
    x = as_matrix(x, rule)
    n, d = x.shape
    check_bound(rule, n, check_f(f, rule), 2, 1)
    width = max(1, _BLOCK_VALUES // n)
    out = torch.empty(d, dtype=x.dtype, device=x.device)
    for s in range(0, d, width):
        block = x[:, s:s + width].double()
        block = torch.where(torch.isnan(block), torch.full_like(block, float("inf")), block)
        out[s:s + width] = _meamed_block(block.sort(dim=0).values, f).to(x.dtype)
    return out.to(dtype)
