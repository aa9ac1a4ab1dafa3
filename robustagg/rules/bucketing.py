import math

import torch

from .. import functional as F
from ..functional._checks import check_positive
from .base import PreAggregator
from .registry import register_pre_aggregator


@register_pre_aggregator("bucketing")
class Bucketing(PreAggregator):
    """Bucketing into ⌈n/s⌉ averaged buckets; the permutation stream is seeded by ``seed``, so
    the same seed gives the same buckets round after round. See
    :func:`robustagg.functional.bucketing`."""

    per_worker = False  # a bucket mixes workers

    def __init__(self, s: int = 2, seed: int = 0):
        super().__init__(0)
        self.s = check_positive(s, "Bucketing", "s", integer=True)
        self.seed = seed
        self.reset()

    def out_n(self, n):
        return math.ceil(n / self.s)

    def aggregate(self, x):
        return F.bucketing(x, self.s, self.generator)

    def reset(self):
        super().reset()
        self.generator = torch.Generator().manual_seed(self.seed)

    def _settings(self):
        return {"s": self.s, "seed": self.seed}
