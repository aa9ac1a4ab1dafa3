from .. import functional as F
from .base import Rule
from .registry import register_rule


@register_rule("meamed")
class Meamed(Rule):
    """Mean around the median (n ≥ 2f + 1); see :func:`robustagg.functional.meamed`."""

    bound = (2, 1)

    def aggregate(self, x):
        return F.meamed(x, self.f)
