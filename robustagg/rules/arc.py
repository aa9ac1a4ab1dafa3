from .. import functional as F
from .base import PreAggregator
from .registry import register_pre_aggregator


@register_pre_aggregator("arc")
class ARC(PreAggregator):
    """Adaptive robust clipping (n ≥ 2f + 1); see :func:`robustagg.functional.arc`."""

    bound = (2, 1)

    def aggregate(self, x):
        return F.arc(x, self.f)
