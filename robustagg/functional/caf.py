"""Covariance-bound agnostic filter (Allouah, Guerraoui, Stephan, ICML 2025)."""
from __future__ import annotations

import torch

from ._checks import finite_rows, matrix_and_distances
from ._rowstats import centred_gram, weighted_sum


def caf(x: torch.Tensor, f: int, distances: torch.Tensor | None = None,
        return_weights: bool = False):
    r"""CAF, the covariance-bound agnostic filter: a weighted mean whose weights are cut along
    the top eigenvector of the weighted covariance until n - 2f of weight is left.

    With weights :math:`c_i = 1`, repeat while :math:`\sum_i c_i > n - 2f` (at least once):

    .. math::
        \mu_c = \frac{\sum_i c_i x_i}{\sum_i c_i},\quad
        \Sigma_c = \frac{\sum_i c_i (x_i-\mu_c)(x_i-\mu_c)^\top}{\sum_i c_i},\quad
        (\lambda, v) = \text{top eigenpair of } \Sigma_c,\quad
        \tau_i = \langle x_i - \mu_c, v\rangle^2,\quad
        c_i \leftarrow c_i\,(1 - \tau_i/\tau_{\max}),

    and return the :math:`\mu_c` of the least :math:`\lambda` met. ``x: Tensor[n, d]`` →
    ``Tensor[d]`` (and the weights c of that mean, float64 ``[n]``, when ``return_weights``);
    needs n ≥ 2f + 1. Allouah, Guerraoui, Stephan, "Towards trustworthy federated learning with
    untrusted participants", ICML 2025, Algorithm 2 (CAF); ByzFL's ``CAF``.

    Exact and computed from the squared distances: the top eigenpair of :math:`\Sigma_c` comes
    from the n × n matrix :math:`W^{1/2} G_c W^{1/2}` (:math:`G_c` the Gram matrix of the rows
    centred on :math:`\mu_c`, :math:`W = \mathrm{diag}(c)/\sum c`), which the distances give
    without touching d again; so the whole filter costs one native distance pass plus one
    weighted sum. ByzFL instead takes one power-method step from a random vector per round,
    neither exact nor deterministic.

    Conventions: :math:`\tau_{\max}` is the largest :math:`\tau_i` among the vectors still
    weighted (:math:`c_i > 0`), so each round removes at least one vector and the filter stops
    within 2f rounds; ByzFL takes it over all n, including vectors already removed, which far
    out along v can stop any further removal and keep the loop from ever reaching
    n - 2f. The loop also stops when :math:`\lambda = 0` (the weighted vectors coincide along
    every direction). f = 0 returns the mean (ByzFL returns None). Ties in λ go to the earlier
    round. A vector with a NaN or ±Inf entry starts with weight 0 (counted as removed). With a
    repeated top eigenvalue, v is whichever eigenvector ``torch.linalg.eigh`` returns.
    """
    rule = "CAF"
    dtype = x.dtype if isinstance(x, torch.Tensor) else None
    x, distances = matrix_and_distances(x, f, distances, rule, 2, 1)
    n = x.shape[0]
    finite = finite_rows(x).cpu()
    dist = distances.cpu().clone()
    dist[~finite] = 0.0
    dist[:, ~finite] = 0.0
    c = finite.to(torch.float64)
    best_lam, best_c = float("inf"), c.clone()
    first = True
    while bool(c.sum() > 0) and (first or float(c.sum()) > n - 2 * f):
        first = False
        w = c / c.sum()
        g = centred_gram(dist, w)
        root = w.sqrt()
        evals, evecs = torch.linalg.eigh(root[:, None] * g * root[None, :])
        lam, u = float(evals[-1]), evecs[:, -1]
        if lam < best_lam:
            best_lam, best_c = lam, c.clone()
        if lam <= 0.0:
            break
        tau = (g @ (root * u)).pow(2) / lam  # <x_i - mu, v>^2, v the unit top eigenvector
        tau_max = float(tau[c > 0].max())
        c = torch.where(c > 0, c * (1.0 - tau / tau_max), c).clamp_min(0.0)
    if not bool(best_c.sum() > 0):  # every vector non-finite
        out = torch.full((x.shape[1],), float("nan"), dtype=x.dtype, device=x.device)
    else:
        out = weighted_sum(x, best_c / best_c.sum())
    out = out.to(dtype)
    return (out, best_c) if return_weights else out
