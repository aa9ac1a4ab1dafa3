"""``approx_topk``: top-k through a threshold estimated from a sample, instead of a selection
over all d entries."""
from __future__ import annotations

import math

import torch

from .base import Compressor, check_vector, register_compressor
from .row import SparseRow
from .topk import topk_indices


@register_compressor("approx_topk")
class ApproxTopK(Compressor):
    """Sampled-threshold top-k, in the style of MSTopK (Shi et al., "Towards Scalable
    Distributed Training of Deep Learning on Public Cloud Clusters", MLSys 2021), which finds
    the k-th magnitude by thresholds tried on samples rather than by a sort.

    1. Draw ``s`` coordinates at random (with replacement) and take ``t``, the ``j``-th largest
       ``|g|`` among them, with ``j = sk/d + sigmas·sqrt(sk/d) + 1``: in expectation ``k·j/(sk/d)``
       coordinates of g reach t, and fewer than k only with probability about that of a normal
       variable beyond ``sigmas`` standard deviations.
    2. One pass over g keeps the candidates ``not |g_j| < t`` (k(1 + ε) of them, ε ≈
       ``sigmas/sqrt(sk/d)``), and the exact top-k among the candidates is the result.

    Since every coordinate above the k-th magnitude reaches t whenever at least k candidates
    do, the result is exactly the top-k (ties aside): the approximation is in the threshold,
    whose count ``last_candidates`` records. Too few candidates (or a NaN threshold) lowers t
    by doubling j, and after three tries falls back to ``torch.topk`` over all of g. NaN entries
    count as the largest, as in ``torch.topk`` and :class:`~.topk.TopK` (a NaN that a Byzantine
    row carries reaches the rule, which refuses or outvotes it).

    ``samples``: s (default ``ceil(256 d/k)``, so that sk/d = 256 and ε ≈ 0.19 at sigmas = 3);
    when s would be a quarter of d or more, the exact selection is used directly.
    """

    def __init__(self, ratio: float = 0.01, error_feedback: bool = False, seed: int = 0,
                 samples: int | None = None, sigmas: float = 3.0, residual: bool = False):
        super().__init__(ratio, error_feedback, seed, residual)
        if samples is not None and (isinstance(samples, bool) or not isinstance(samples, int)
                                    or samples < 1):
            raise ValueError(f"ApproxTopK: samples must be an int >= 1 or None, got {samples!r}")
        if not sigmas >= 0:
            raise ValueError(f"ApproxTopK: sigmas must be >= 0, got {sigmas!r}")
        self.samples, self.sigmas = samples, float(sigmas)
        self._gen = torch.Generator().manual_seed(self.seed)
        self.last_candidates = None  # candidates above the last threshold (None: exact path)
        # |g| and the comparison, kept between calls: a fresh 4d-byte buffer costs page faults
        # that take longer than the pass itself
        self._abs = self._hit = None

    def settings(self):
        return {**super().settings(), "samples": self.samples, "sigmas": self.sigmas}

    def sample_size(self, d: int, k: int) -> int:
        return self.samples if self.samples is not None else math.ceil(256 * d / k)

    def compress(self, g, mask=None):
        g = check_vector(g, "approx_topk")
        d = g.numel()
        k = self.k(d)
        if self._abs is None or self._abs.numel() != d:
            self._abs, self._hit = torch.empty(d), torch.empty(d, dtype=torch.bool)
        a = torch.abs(g, out=self._abs)
        s = self.sample_size(d, k)
        self.last_candidates = None
        idx = None
        if 4 * s < d:
            sample = a[torch.randint(d, (s,), generator=self._gen)]
            expected = s * k / d
            j = min(s, int(expected + self.sigmas * math.sqrt(expected)) + 1)
            for _ in range(3):
                t = torch.topk(sample, j, sorted=False).values.min()
                hit = torch.logical_not(torch.lt(a, t, out=self._hit), out=self._hit)  # NaN: a hit
                cand = torch.nonzero(hit).squeeze(1)
                if cand.numel() >= k:
                    self.last_candidates = cand.numel()
                    idx = cand[topk_indices(a[cand], k)]
                    break
                if j == s:
                    break
                j = min(s, 2 * j)
        if idx is None:
            idx = topk_indices(a, k)
        return SparseRow.of(g[idx], idx, d)
