from .. import functional as F
from ..functional._checks import check_positive
from .base import PreAggregator
from .registry import register_pre_aggregator


@register_pre_aggregator("clip")
class Clip(PreAggregator):
    """Static norm clipping at ``tau``; see :func:`robustagg.functional.clip`."""

    def __init__(self, tau: float = 1.0):
        super().__init__(0)
        self.tau = check_positive(tau, "Clip", "tau")

    def aggregate(self, x):
        return F.clip(x, self.tau)

    def _settings(self):
        return {"tau": self.tau}
