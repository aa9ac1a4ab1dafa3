"""Per-worker weights of the weighted rules: checks, and the cap on one worker's share.

What a worker can do by lying about its weight: the weighted rules give each worker a share
w_i / Σ w of the result, so a Byzantine worker that reports a huge weight takes a share close to
1, and with it the weighted mean, median and trimmed mean; one that reports 0 only removes
itself. ``max_weight_share = s`` caps every share at s (the excess goes to the others in
proportion to their weights, :func:`cap`), so f liars together hold at most f·s of the weight
whatever they report; honest workers heavier than s are capped too, which is the price.
"""
from __future__ import annotations

import torch


def check_share(max_weight_share, rule: str) -> float | None:
    """``max_weight_share`` must be None or a number in (0, 1]."""
    if max_weight_share is None:
        return None
    if isinstance(max_weight_share, bool) or not isinstance(max_weight_share, (int, float)) \
            or not 0 < max_weight_share <= 1:
        raise ValueError(f"{rule}: max_weight_share must be in (0, 1] or None, "
                         f"got max_weight_share={max_weight_share!r}")
    return float(max_weight_share)


def cap(w: torch.Tensor, s: float) -> torch.Tensor:
    r"""Water-filling: the weights :math:`\min(w_i, \lambda)`, with the level λ at which the
    largest of them is exactly the share s of their sum (w unchanged when no share exceeds s).

    ``w``: float64 ``[n]``, non-negative, positive sum, with at least 1/s positive entries.
    With k weights capped, :math:`\lambda = s\,R_k / (1 - k s)`, :math:`R_k` the sum of the
    n - k smallest; k is the least for which the largest uncapped weight is at most λ.
    """
    total = w.sum()
    if bool(w.max() <= s * total):
        return w
    q = w.sort(descending=True).values
    rest = q.flip(0).cumsum(0).flip(0)  # rest[k] = sum of q[k:]
    for k in range(1, int((w > 0).sum())):
        if k * s >= 1:
            break
        lam = s * rest[k] / (1 - k * s)
        if bool(q[k] <= lam):
            return torch.minimum(w, lam)
    # only equal shares fit (s = 1/n_positive, up to rounding)
    return torch.where(w > 0, torch.ones_like(w), w)


def check(weights, n: int, rule: str, max_weight_share: float | None = None,
          device: torch.device | None = None) -> torch.Tensor | None:
    """Validate ``weights`` (None, or n finite non-negative numbers with a positive sum) and
    apply the cap ``max_weight_share``. Returns float64 weights on ``device`` (in the caller's
    units, not normalised, so that integer weights such as sample counts add exactly), or None
    when every worker has the same positive weight: then the weighted rule is the unweighted
    one, and is computed by it. Weights are data: no gradient flows to them."""
    s = check_share(max_weight_share, rule)
    if weights is None:
        if s is not None and s * n < 1:
            raise ValueError(f"{rule}: max_weight_share={s} is below 1/n = 1/{n}: {n} workers "
                             f"with equal weights already hold 1/{n} each")
        return None
    if isinstance(weights, torch.Tensor):
        w = weights.detach()
    else:
        try:
            w = torch.as_tensor(weights)
        except (TypeError, ValueError, RuntimeError):
            raise TypeError(f"{rule}: weights must be a Tensor[n] or a sequence of n numbers, "
                            f"got {type(weights).__name__}") from None
    if w.dtype == torch.bool or w.is_complex():
        raise TypeError(f"{rule}: weights must be real numbers, got dtype {w.dtype}")
    if tuple(w.shape) != (n,):
        raise ValueError(f"{rule}: weights must have shape [{n}] (one per worker), "
                         f"got shape {tuple(w.shape)}")
    w = w.to(device="cpu", dtype=torch.float64)
    bad = ~(torch.isfinite(w) & (w >= 0))
    if bool(bad.any()):
        i = int(bad.nonzero()[0])
        raise ValueError(f"{rule}: weights must be finite and non-negative, got "
                         f"weights[{i}]={float(w[i])}")
    positive = int((w > 0).sum())
    if positive == 0:
        raise ValueError(f"{rule}: weights are all 0; at least one worker needs a positive "
                         f"weight")
    if s is not None:
        if s * positive < 1:
            raise ValueError(f"{rule}: max_weight_share={s} is below 1/{positive}: the "
                             f"{positive} workers of positive weight cannot all stay under it")
        w = cap(w, s)
    if positive == n and bool((w == w[0]).all()):
        return None
    return w.to(device) if device is not None else w
