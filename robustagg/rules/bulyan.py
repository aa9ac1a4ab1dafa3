from .. import functional as F
from .base import Rule
from .registry import register_rule


@register_rule("bulyan")
class Bulyan(Rule):
    """Bulyan over Krum (n ≥ 4f + 3); ``selected`` holds the θ = n - 2f indices chosen by the
    recursive Krum. See :func:`robustagg.functional.bulyan`."""

    bound = (4, 3)

    def aggregate(self, x):
        out, self.selected = F.bulyan(x, self.f, return_selected=True)
        return out
