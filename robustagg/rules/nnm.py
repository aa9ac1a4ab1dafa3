from .. import functional as F
from .base import PreAggregator
from .registry import register_pre_aggregator


@register_pre_aggregator("nnm")
class NNM(PreAggregator):
    """Nearest-neighbour mixing (n ≥ 2f + 1); see :func:`robustagg.functional.nnm`."""

    bound = (2, 1)

    def aggregate(self, x):
        return F.nnm(x, self.f)
