from .. import functional as F
from .base import Rule
from .registry import register_rule


@register_rule("trimmed_mean")
class TrimmedMean(Rule):
    """Coordinate-wise f-trimmed mean (n ≥ 2f + 1); see :func:`robustagg.functional.trimmed_mean`."""

    bound = (2, 1)

    def aggregate(self, x):
        return F.trimmed_mean(x, self.f)
