"""Comparative gradient elimination (Gupta, Liu, Vaidya, DSN Workshops 2021)."""
from __future__ import annotations

import torch

from ._checks import as_matrix, check_bound, check_f
from ._graph import selected_mean
from ._rowstats import sq_norms


def cge(x: torch.Tensor, f: int, average: bool = False, return_selected: bool = False):
    r"""Comparative gradient elimination: drop the f vectors of largest norm and **sum** the
    n - f others,

    .. math:: \mathrm{CGE}_f(x) = \sum_{j=1}^{n-f} x_{i_j},\qquad
              \lVert x_{i_1}\rVert \le \dots \le \lVert x_{i_n}\rVert.

    The paper's server steps with the sum (its learning rate absorbs n - f);
    ``average=True`` returns the mean, :math:`\frac{1}{n-f}\sum_j x_{i_j}`, which keeps the
    scale of the other rules. ``x: Tensor[n, d]`` → ``Tensor[d]`` (and the n - f kept indices,
    smallest norm first, when ``return_selected``); needs n ≥ 2f + 1.
    Gupta, Liu, Vaidya, "Byzantine fault-tolerant distributed machine learning with norm-based
    comparative gradient elimination", DSN Workshops 2021 (the CGE gradient filter);
    ByzPy's ``CGE``.

    Conventions: ties in norm go to the lowest index; a vector with a NaN or ±Inf entry has
    norm +inf, so with at most f of them none is kept. One float64 pass over n·d values for
    the norms, one for the sum (the native ``rows_mean``).
    """
    rule = "CGE"
    dtype = x.dtype if isinstance(x, torch.Tensor) else None
    x = as_matrix(x, rule)
    n = x.shape[0]
    check_bound(rule, n, check_f(f, rule), 2, 1)
    selected = torch.sort(sq_norms(x), stable=True).indices[: n - f]
    out = selected_mean(x, selected)
    if not average:
        out = out * (n - f)
    out = out.to(dtype)
    return (out, selected) if return_selected else out
