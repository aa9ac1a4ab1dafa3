"""Geometric median by the smoothed Weiszfeld algorithm (RFA)."""
from __future__ import annotations

import torch

from ._checks import as_matrix, check_positive, finite_rows


def geometric_median(x: torch.Tensor, weights: torch.Tensor | None = None, nu: float = 1e-6,
                     max_iter: int = 200, tol: float = 1e-6) -> torch.Tensor:
    r"""Approximate geometric median :math:`\arg\min_z \sum_i \alpha_i \lVert z - x_i \rVert`
    by the smoothed Weiszfeld iteration

    .. math:: z \leftarrow \frac{\sum_i \beta_i x_i}{\sum_i \beta_i}, \qquad
              \beta_i = \frac{\alpha_i}{\max(\nu, \lVert z - x_i \rVert)},

    started at the weighted mean, stopped after ``max_iter`` steps or when a step moves z by
    at most ``tol · (1 + ‖z‖)``. ``weights`` α default to uniform.

    ``x: Tensor[n, d]`` → ``Tensor[d]``; breakdown point 1/2, so n ≥ 2f + 1.
    Pillutla, Kakade, Harchaoui, "Robust aggregation for federated learning", IEEE TSP 2022
    (RFA), Algorithm 2. A vector with a non-finite entry is infinitely far from any z, so its
    weight β is 0: it is left out (the limit of the iteration).
    """
    rule = "GeometricMedian"
    dtype = x.dtype if isinstance(x, torch.Tensor) else None
    x = as_matrix(x, rule)
    check_positive(nu, rule, "nu")
    check_positive(max_iter, rule, "max_iter", integer=True)
    n = x.shape[0]
    if weights is None:
        alpha = torch.ones(n, dtype=x.dtype, device=x.device)
    else:
        if tuple(weights.shape) != (n,) or not bool((weights >= 0).all()):
            raise ValueError(f"{rule}: weights must be non-negative of shape [{n}], "
                             f"got shape {tuple(weights.shape)}")
        alpha = weights.to(x.dtype)
    keep = finite_rows(x)
    if not bool(keep.any()):  # nothing finite to take the median of
        return torch.full((x.shape[1],), float("nan"), dtype=dtype, device=x.device)
    x, alpha = x[keep], alpha[keep]
    alpha = alpha / alpha.sum()
    z = alpha @ x
    for _ in range(max_iter):
        beta = alpha / (x - z).norm(dim=1).clamp_min(nu)
        new = (beta / beta.sum()) @ x
        step = (new - z).norm()
        z = new
        if step <= tol * (1.0 + z.norm()):
            break
    return z.to(dtype)
