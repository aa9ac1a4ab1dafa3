from .. import functional as F
from .base import Rule
from .registry import register_rule


@register_rule("mean", "average")
class Mean(Rule):
    """Arithmetic mean (not robust); see :func:`robustagg.functional.mean`."""

    def __init__(self):
        super().__init__(0)

    def aggregate(self, x):
        return F.mean(x)

    def _settings(self):
        return {}
