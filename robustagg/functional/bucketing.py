"""Bucketing (Karimireddy, He, Jaggi, ICLR 2022)."""
from __future__ import annotations

import torch

from ._checks import as_matrix, check_positive
from ._scaling import mean_rows


def bucketing(x: torch.Tensor, s: int, generator: torch.Generator | None = None) -> torch.Tensor:
    r"""Bucketing, a pre-aggregation: shuffle the n vectors with a random permutation π, split
    them into ⌈n/s⌉ buckets of s consecutive vectors (the last may be smaller) and average each,
    :math:`y_i = \frac{1}{|B_i|}\sum_{j \in B_i} x_{\pi(j)}`.

    ``x: Tensor[n, d]`` → ``Tensor[⌈n/s⌉, d]``. The rule after it sees ⌈n/s⌉ vectors, of which
    up to f may be Byzantine, so it needs its bound at n' = ⌈n/s⌉ (Karimireddy et al. take
    s ≤ n/(2f) and aggregate with a rule robust to f of n' vectors).
    Karimireddy, He, Jaggi, "Byzantine-robust learning on heterogeneous datasets via bucketing",
    ICLR 2022, Algorithm 1. The permutation comes from ``generator`` (seeded by the caller).
    """
    rule = "Bucketing"
    dtype = x.dtype if isinstance(x, torch.Tensor) else None
    x = as_matrix(x, rule)
    check_positive(s, rule, "s", integer=True)
    n = x.shape[0]
    perm = torch.randperm(n, generator=generator).to(x.device)
    shuffled = x[perm]
    buckets = [mean_rows(chunk) for chunk in shuffled.split(s, dim=0)]  # overflow-safe
    return torch.stack(buckets).to(dtype)
