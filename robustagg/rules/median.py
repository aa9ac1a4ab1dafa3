from .. import functional as F
from .base import Rule
from .registry import register_rule


@register_rule("median", "coordinate_median")
class CoordinateMedian(Rule):
    """Coordinate-wise median (n ≥ 2f + 1 when f is given); see
    :func:`robustagg.functional.coordinate_median`."""

    bound = (2, 1)

    def aggregate(self, x):
        return F.coordinate_median(x)
