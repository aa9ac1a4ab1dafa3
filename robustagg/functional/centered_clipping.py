"""Centered clipping (Karimireddy, He, Jaggi, ICML 2021)."""
from __future__ import annotations

import torch

from . import _scaling, _weights
from ._checks import as_matrix, check_positive, finite_rows


def _iterate(x, p, v, tau, n_iter):
    """``n_iter`` centered-clipping steps from v on finite rows ``x`` with shares ``p``; None
    if a difference or its norm overflowed."""
    for _ in range(n_iter):
        diff = x - v
        norms = torch.linalg.vector_norm(diff, dim=1)
        if not bool(torch.isfinite(norms).all()):
            return None
        scale = (tau / norms.clamp_min(torch.finfo(x.dtype).tiny)).clamp_max(1.0)
        v = v + (p * scale) @ diff
    return v


def centered_clipping(x: torch.Tensor, tau: float, n_iter: int = 1,
                      center: torch.Tensor | None = None, *, weights=None,
                      max_weight_share: float | None = None) -> torch.Tensor:
    r"""Centered clipping: starting from :math:`v_0` = ``center`` (zeros if None), iterate
    ``n_iter`` times

    .. math:: v_{l+1} = v_l + \frac1n \sum_i (x_i - v_l)
              \min\left(1, \frac{\tau}{\lVert x_i - v_l \rVert}\right).

    ``x: Tensor[n, d]``, ``center: Tensor[d]`` → ``Tensor[d]``. Karimireddy, He, Jaggi,
    "Learning from history for Byzantine robust optimization", ICML 2021, equation (CC); the
    paper takes the previous round's aggregate as the center (:class:`robustagg.CenteredClipping`
    does). A vector with a non-finite entry contributes nothing (its clipped difference has
    no defined direction); it still counts in n.

    Weighted (``weights``: n finite non-negative numbers, e.g. sample counts): 1/n becomes
    the share :math:`w_i / \sum_j w_j` (our extension; equal weights give the paper's rule
    exactly). Each worker moves v by at most its share times τ per step, so a liar's weight is
    its whole influence: ``max_weight_share`` caps it (:mod:`robustagg.functional._weights`).

    Finite vectors whose differences or norms overflow are handled by running the same
    steps on x · 2^-e (the center and τ scaled with it), detected on the norms computed
    anyway.
    """
    rule = "CenteredClipping"
    dtype = x.dtype if isinstance(x, torch.Tensor) else None
    x = as_matrix(x, rule)
    check_positive(tau, rule, "tau")
    check_positive(n_iter, rule, "n_iter", integer=True)
    n, d = x.shape
    if center is None:
        v = torch.zeros(d, dtype=x.dtype, device=x.device)
    else:
        if tuple(center.shape) != (d,):
            raise ValueError(f"{rule}: center must have shape [{d}], got {tuple(center.shape)}")
        v = center.to(device=x.device, dtype=x.dtype)
    w = _weights.check(weights, n, rule, max_weight_share, x.device)
    p = torch.full((n,), 1.0 / n, dtype=x.dtype, device=x.device) if w is None \
        else (w / w.sum()).to(x.dtype)
    keep = finite_rows(x) & (p > 0)
    x, p = x[keep], p[keep]
    out = _iterate(x, p, v, tau, n_iter)
    if out is None:
        e = _scaling.exponent(torch.cat([x, v[None]]))
        out = _scaling.unscale(_iterate(_scaling.scale(x, e), p, _scaling.scale(v, e),
                                        tau * 2.0 ** -e, n_iter), e)
    return out.to(dtype)
