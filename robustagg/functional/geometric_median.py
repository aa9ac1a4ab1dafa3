"""Geometric median by the smoothed Weiszfeld algorithm (RFA)."""
from __future__ import annotations

import torch

from . import _scaling, _weights
from ._checks import all_finite, as_matrix, check_positive, finite_rows


def _weiszfeld(x, alpha, nu, max_iter, tol, unit):
    """The smoothed Weiszfeld iteration on finite rows ``x`` with shares ``alpha`` (summing to
    1), in units where the caller's 1 is ``unit`` (x is the caller's rows times ``unit``, a
    power of two); None if a norm or a sum overflowed on the way."""
    z = alpha @ x
    for _ in range(max_iter):
        dist = torch.linalg.vector_norm(x - z, dim=1)
        beta = alpha / dist.clamp_min(nu * unit)
        total = beta.sum()
        if not bool(torch.isfinite(dist).all()) or not bool(total > 0):
            return None  # x - z or its norm overflowed, or every weight underflowed
        new = (beta / total) @ x
        step = torch.linalg.vector_norm(new - z)
        z = new
        if step <= tol * (unit + torch.linalg.vector_norm(z)):
            break
    return z if all_finite(z) else None


def geometric_median(x: torch.Tensor, weights=None, nu: float = 1e-6, max_iter: int = 200,
                     tol: float = 1e-6, *, max_weight_share: float | None = None) -> torch.Tensor:
    r"""Approximate geometric median :math:`\arg\min_z \sum_i \alpha_i \lVert z - x_i \rVert`
    by the smoothed Weiszfeld iteration

    .. math:: z \leftarrow \frac{\sum_i \beta_i x_i}{\sum_i \beta_i}, \qquad
              \beta_i = \frac{\alpha_i}{\max(\nu, \lVert z - x_i \rVert)},

    started at the weighted mean, stopped after ``max_iter`` steps or when a step moves z by
    at most ``tol · (1 + ‖z‖)``. ``weights`` α (n finite non-negative numbers, e.g. the
    workers' sample counts, as RFA weighs them) default to uniform; ``max_weight_share`` caps
    each worker's share of the total weight (:mod:`robustagg.functional._weights`): the
    geometric median stays bounded while the Byzantine workers hold less than half the weight,
    which the cap guarantees when f·max_weight_share < 1/2.

    ``x: Tensor[n, d]`` → ``Tensor[d]``; breakdown point 1/2, so n ≥ 2f + 1.
    Pillutla, Kakade, Harchaoui, "Robust aggregation for federated learning", IEEE TSP 2022
    (RFA), Algorithm 2. A vector with a non-finite entry is infinitely far from any z, so its
    weight β is 0: it is left out (the limit of the iteration). Finite vectors whose norms or
    sums overflow (float32 entries near 1e20, float64 near 1e154) are handled by running the
    same iteration on x · 2^-e (ν and the tolerance's 1 scaled with it: the same iterates,
    scaled); an overflow is detected on the norms the iteration computes anyway.
    """
    rule = "GeometricMedian"
    dtype = x.dtype if isinstance(x, torch.Tensor) else None
    x = as_matrix(x, rule)
    check_positive(nu, rule, "nu")
    check_positive(max_iter, rule, "max_iter", integer=True)
    n = x.shape[0]
    w = _weights.check(weights, n, rule, max_weight_share, x.device)
    alpha = torch.ones(n, dtype=x.dtype, device=x.device) if w is None else w.to(x.dtype)
    keep = finite_rows(x) & (alpha > 0)
    if not bool(keep.any()):  # nothing finite to take the median of
        return torch.full((x.shape[1],), float("nan"), dtype=dtype, device=x.device)
    x, alpha = x[keep], alpha[keep]
    alpha = alpha / alpha.sum()
    z = _weiszfeld(x, alpha, nu, max_iter, tol, 1.0)
    if z is None:
        e = _scaling.exponent(x)
        z = _scaling.unscale(_weiszfeld(_scaling.scale(x, e), alpha, nu, max_iter, tol,
                                        2.0 ** -e), e)
    return z.to(dtype)
