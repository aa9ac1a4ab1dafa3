"""Divide-and-conquer (Shejwalkar & Houmansadr, NDSS 2021)."""
from __future__ import annotations

import math

import torch

from ._checks import as_matrix, check_bound, check_f, check_positive, finite_rows
from ._graph import selected_mean


def dnc(x: torch.Tensor, f: int, generator: torch.Generator, sub_dim: int = 10_000,
        n_iters: int = 5, filter_frac: float = 1.0, return_selected: bool = False):
    r"""Divide-and-conquer: ``n_iters`` times, project the centred gradients, restricted to
    ``sub_dim`` random coordinates, on their top right singular vector and keep the
    n - ⌊c·f⌋ with the least squared projection; average the vectors kept every time.

    Per iteration: r = ``sub_dim`` coordinates drawn without replacement from ``generator``
    (all d when ``sub_dim`` ≥ d), :math:`\mu = \frac1n\sum_i x_{i,r}`, v the top right singular
    vector of the rows :math:`x_{i,r} - \mu`, scores :math:`s_i = \langle x_{i,r} - \mu,
    v\rangle^2`, good = the n - ⌊c·f⌋ lowest scores (c = ``filter_frac``); the output is the
    mean of the vectors in the intersection of the good sets.
    ``x: Tensor[n, d]`` → ``Tensor[d]`` (and the averaged indices when ``return_selected``);
    n ≥ 2f + 1 (the paper's honest majority). Shejwalkar, Houmansadr, "Manipulating the
    Byzantine: optimizing model poisoning attacks and defenses for federated learning", NDSS
    2021 (the DnC defence). Defaults ``sub_dim=10000``, ``n_iters=5``, ``filter_frac=1`` are
    fedlib/Blades' (FLPoison draws a fraction of d instead).

    Conventions: ties in score go to the lowest index; a vector with a NaN or ±Inf entry
    scores +inf and μ and v are taken over the finite vectors; when the good sets have no
    vector in common (possible once ``n_iters``·⌊c·f⌋ ≥ n - ⌊c·f⌋), those kept in the
    most iterations are averaged (Blades and FLPoison would average an empty set, NaN).
    The coordinates are drawn on the CPU generator; the sub-matrix, n × ``sub_dim``, is
    decomposed in float64.
    """
    rule = "DnC"
    dtype = x.dtype if isinstance(x, torch.Tensor) else None
    x = as_matrix(x, rule)
    n, d = x.shape
    check_bound(rule, n, check_f(f, rule), 2, 1)
    check_positive(sub_dim, rule, "sub_dim", integer=True)
    check_positive(n_iters, rule, "n_iters", integer=True)
    if not (isinstance(filter_frac, (int, float)) and 0 <= filter_frac <= 1):
        raise ValueError(f"{rule}: filter_frac must be in [0, 1], got filter_frac={filter_frac!r}")
    keep = n - math.floor(filter_frac * f)
    finite = finite_rows(x)
    kept_count = torch.zeros(n, dtype=torch.long)
    for _ in range(n_iters):
        if sub_dim >= d:
            sub = x.detach()  # the scores only select: no graph through the SVD
        else:
            cols = torch.randperm(d, generator=generator)[:sub_dim].sort().values
            sub = x.detach().index_select(1, cols.to(x.device))
        sub = sub[finite].double()
        scores = torch.full((n,), float("inf"), dtype=torch.float64)
        if sub.shape[0]:
            centred = sub - sub.mean(dim=0)
            v = torch.linalg.svd(centred, full_matrices=False).Vh[0]
            scores[finite.cpu()] = (centred @ v).pow(2).cpu()
        good = torch.sort(scores, stable=True).indices[:keep]
        good = good[torch.isfinite(scores[good])]
        kept_count[good] += 1
    selected = (kept_count == kept_count.max()).nonzero().squeeze(1)
    selected = selected[finite.cpu()[selected]]
    if selected.numel() == 0:
        out = torch.full((d,), float("nan"), dtype=x.dtype, device=x.device)
    else:
        out = selected_mean(x, selected)
    out = out.to(dtype)
    return (out, selected) if return_selected else out
