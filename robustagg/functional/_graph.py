"""The autograd side of the rules whose result a native kernel computes or whose weights
depend on x: when x needs a graph (:func:`~robustagg.functional._checks.needs_grad`), the same
values from torch operations, so that gradients flow to what the rule averages and through
the weights it computes from x (docs/rules.md, "Autograd")."""
from __future__ import annotations

import torch

from .. import kernels
from ._checks import needs_grad


def selected_mean(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """Mean of the rows ``idx`` of ``x[n, d]``: the native kernel, or ``index_select`` (which
    records the graph) when x needs one."""
    idx = idx.to(x.device)
    if needs_grad(x):
        return x.index_select(0, idx).mean(dim=0)
    return kernels.rows_mean(x, idx)


def median_tensor(v: torch.Tensor) -> torch.Tensor:
    """Median of a vector as a 0-d tensor (graph kept), the mean of the two middle values for
    an even count: the convention of ``_clustering.median``."""
    s = v.sort().values
    n = s.numel()
    return s[(n - 1) // 2] * 0.5 + s[n // 2] * 0.5


def sq_distances(x: torch.Tensor) -> torch.Tensor:
    """float64 ``[n, n]`` squared distances: the native kernel, or from the float64 Gram matrix
    (graph kept) when x needs a graph."""
    if not needs_grad(x):
        return kernels.pairwise_sq_distances(x)
    h = x.double()
    gram = h @ h.T
    sq = gram.diagonal()
    return (sq[:, None] + sq[None, :] - 2.0 * gram).clamp_min(0.0)
