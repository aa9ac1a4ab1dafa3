"""Arithmetic mean: the non-robust baseline, and its weighted form."""
from __future__ import annotations

import torch

from . import _weights
from ._checks import as_matrix
from ._scaling import mean_rows, rescue_columns


def mean(x: torch.Tensor, *, weights=None, max_weight_share: float | None = None) -> torch.Tensor:
    r"""Average of the rows: :math:`\frac1n \sum_i x_i`, or with per-worker ``weights``
    :math:`\sum_i w_i x_i / \sum_i w_i` (a worker of weight 0 is left out, whatever it sent).

    ``x: Tensor[n, d]`` → ``Tensor[d]``, any n ≥ 1; ``weights``: n finite non-negative numbers
    (e.g. sample counts), equal weights giving the unweighted mean exactly;
    ``max_weight_share`` caps each worker's share of the total weight (see
    :mod:`robustagg.functional._weights`). Not robust: one Byzantine row moves it arbitrarily
    far (Blanchard et al., NeurIPS 2017, Lemma 1), and a non-finite row of positive weight
    makes it non-finite. A sum of finite rows that overflows is recomputed scaled, so finite
    rows give a finite mean.
    """
    rule = "Mean"
    dtype = x.dtype if isinstance(x, torch.Tensor) else None
    x = as_matrix(x, rule)
    w = _weights.check(weights, x.shape[0], rule, max_weight_share, x.device)
    if w is None:
        return mean_rows(x).to(dtype)
    keep = (w > 0).nonzero().squeeze(1)
    if keep.numel() < x.shape[0]:
        x, w = x.index_select(0, keep), w[keep]
    p = (w / w.sum()).to(x.dtype)
    return rescue_columns(lambda s: p @ s, x, p @ x).to(dtype)
