from .. import functional as F
from ..functional._subsets import MAX_SUBSETS, check_subsets
from .base import Rule
from .registry import register_rule


@register_rule("mda")
class MDA(Rule):
    """Minimum-diameter averaging (n ≥ 2f + 1); ``selected`` holds the n - f averaged indices.
    ``max_subsets``: the most subsets, C(n, f), a call may search (checked by :meth:`check`).
    See :func:`robustagg.functional.mda`."""

    bound = (2, 1)

    def __init__(self, f: int = 0, max_subsets: int = MAX_SUBSETS):
        super().__init__(f)
        check_subsets("MDA", 2 * self.f + 1, self.f, max_subsets)
        self.max_subsets = max_subsets

    def check(self, n):
        super().check(n)
        check_subsets("MDA", n, self.f, self.max_subsets)

    def aggregate(self, x):
        out, self.selected = F.mda(x, self.f, max_subsets=self.max_subsets, return_selected=True)
        return out

    def _settings(self):
        return {"f": self.f, "max_subsets": self.max_subsets}
