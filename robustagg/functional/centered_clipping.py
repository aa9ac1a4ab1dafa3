"""Centered clipping (Karimireddy, He, Jaggi, ICML 2021)."""
from __future__ import annotations

import torch

from ._checks import as_matrix, check_positive, finite_rows


def centered_clipping(x: torch.Tensor, tau: float, n_iter: int = 1,
                      center: torch.Tensor | None = None) -> torch.Tensor:
    r"""Centered clipping: starting from :math:`v_0` = ``center`` (zeros if None), iterate
    ``n_iter`` times

    .. math:: v_{l+1} = v_l + \frac1n \sum_i (x_i - v_l)
              \min\left(1, \frac{\tau}{\lVert x_i - v_l \rVert}\right).

    ``x: Tensor[n, d]``, ``center: Tensor[d]`` → ``Tensor[d]``. Karimireddy, He, Jaggi,
    "Learning from history for Byzantine robust optimization", ICML 2021, equation (CC); the
    paper takes the previous round's aggregate as the center (:class:`robustagg.CenteredClipping`
    does). A vector with a non-finite entry contributes nothing (its clipped difference has
    no defined direction); it still counts in n.
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
    keep = finite_rows(x)
    x = x[keep]
    for _ in range(n_iter):
        diff = x - v
        scale = (tau / diff.norm(dim=1).clamp_min(torch.finfo(x.dtype).tiny)).clamp_max(1.0)
        v = v + (scale[:, None] * diff).sum(dim=0) / n
    return v.to(dtype)
