"""FoolsGold (Fung, Yoon, Beschastnikh, RAID 2020)."""
from __future__ import annotations

import torch

from ._checks import as_matrix, check_positive, finite_rows
from ._graph import sq_distances
from ._rowstats import cosines, sq_norms, weighted_sum


def foolsgold_weights(history: torch.Tensor, kappa: float = 1.0) -> torch.Tensor:
    r"""FoolsGold's learning rates :math:`\alpha_i` (float64 ``[n]``) from the workers'
    summed updates ``history: Tensor[n, d]`` (see :func:`foolsgold`)."""
    n = history.shape[0]
    cs = cosines(sq_distances(history), sq_norms(history)).cpu()
    cs.fill_diagonal_(0.0)  # a worker is not compared with itself (the reference code's cs - I)
    v = cs.max(dim=1).values
    # pardoning: a worker more similar to someone than j is keeps its similarity to j scaled down
    ratio = v[:, None] / torch.where(v[None, :] > 0, v[None, :], torch.ones_like(v[None, :]))
    cs = torch.where(v[None, :] > v[:, None], cs * ratio, cs)
    alpha = (1.0 - cs.max(dim=1).values).clamp(0.0, 1.0)
    top = alpha.max() if n else torch.zeros((), dtype=torch.float64)
    if float(top.detach()) <= 0:
        return torch.zeros(n, dtype=torch.float64)
    alpha = alpha / top
    # logit, with ln(0) = -inf and ln(1/0) = +inf, then clipped to [0, 1]: 0 and 1 are
    # written directly, so that no infinite derivative of the logit enters a backward pass
    inner = (alpha > 0) & (alpha < 1)
    a = torch.where(inner, alpha, torch.full_like(alpha, 0.5))
    logit = torch.log(a) - torch.log1p(-a)
    w = (kappa * (logit + 0.5)).clamp(0.0, 1.0)
    return torch.where(inner, w, (alpha >= 1).to(w.dtype))


def foolsgold(x: torch.Tensor, history: torch.Tensor | None = None, kappa: float = 1.0,
              return_weights: bool = False):
    r"""FoolsGold: down-weight workers whose *summed* updates point the same way (sybils).

    With :math:`H_i = \sum_{t' \le t}\Delta_{i,t'}` (``history`` + this round's ``x``),
    :math:`cs_{ij} = \cos(H_i, H_j)` for i ≠ j (0 on the diagonal), :math:`v_i = \max_j cs_{ij}`,
    pardoning :math:`cs_{ij} \leftarrow cs_{ij} v_i / v_j` when :math:`v_j > v_i`,
    :math:`\alpha_i = 1 - \max_j cs_{ij}` clipped to [0, 1], divided by its largest value, then
    :math:`\alpha_i = \mathrm{clip}_{[0,1]}(\kappa(\ln\frac{\alpha_i}{1-\alpha_i} + 0.5))`, and

    .. math:: \text{out} = \sum_i \alpha_i \Delta_{i,t}

    (a weighted **sum**, as the paper's server update). ``x: Tensor[n, d]``, ``history``: the n
    workers' summed earlier updates ``Tensor[n, d]`` or None → ``Tensor[d]`` (and α, float64
    ``[n]``, when ``return_weights``); any n ≥ 1 (the rule bounds no f).
    Fung, Yoon, Beschastnikh, "The limitations of federated learning in sybil settings", RAID
    2020, Algorithm 1, κ = ``kappa`` (the paper's confidence, 1 by default).

    Conventions: the optional feature-importance weighting of the paper's output layer is not
    applied (the rule sees flat vectors; FLPoison's variant uses the model's output layer);
    updates are summed as they come (FLPoison first scales those of norm above 1 to norm 1); a
    vector with a NaN or ±Inf entry gets α = 0 and is left out of H; a zero H has cosine 0 with
    every other. Cost: one native distance pass on H and one norm pass (the cosines), one
    weighted sum.
    """
    rule = "FoolsGold"
    dtype = x.dtype if isinstance(x, torch.Tensor) else None
    x = as_matrix(x, rule)
    check_positive(kappa, rule, "kappa")
    finite = finite_rows(x)
    step = torch.where(finite[:, None], x, torch.zeros_like(x))
    if history is not None:
        if tuple(history.shape) != tuple(x.shape):
            raise ValueError(f"{rule}: history must have shape {list(x.shape)}, "
                             f"got {list(history.shape)}")
        step = step + history.to(device=x.device, dtype=x.dtype)
    alpha = foolsgold_weights(step, kappa)
    alpha = torch.where(finite.cpu(), alpha, torch.zeros_like(alpha))
    out = weighted_sum(x, alpha).to(dtype)
    return (out, alpha) if return_weights else out
