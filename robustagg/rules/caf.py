from .. import functional as F
from .base import Rule
from .registry import register_rule


@register_rule("caf")
class CAF(Rule):
    """Covariance-bound agnostic filter (n ≥ 2f + 1); ``weights`` holds the weights c of the
    returned mean after a call. See :func:`robustagg.functional.caf`."""

    bound = (2, 1)

    def __init__(self, f: int = 0):
        super().__init__(f)
        self.weights = None

    def aggregate(self, x):
        out, self.weights = F.caf(x, self.f, return_weights=True)
        return out

    def reset(self):
        super().reset()
        self.weights = None
