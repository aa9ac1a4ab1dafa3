from .. import functional as F
from ..functional._subsets import MAX_SUBSETS, check_subsets
from .base import Rule
from .registry import register_rule


@register_rule("smea")
class SMEA(Rule):
    """Smallest-maximum-eigenvalue averaging (n ≥ 2f + 1); ``selected`` holds the n - f
    averaged indices. ``max_subsets``: the most subsets, C(n, f), a call may search (checked by
    :meth:`check`). See :func:`robustagg.functional.smea`."""

    bound = (2, 1)

    def __init__(self, f: int = 0, max_subsets: int = MAX_SUBSETS):
        super().__init__(f)
        check_subsets("SMEA", 2 * self.f + 1, self.f, max_subsets)
        self.max_subsets = max_subsets

    def check(self, n):
        super().check(n)
        check_subsets("SMEA", n, self.f, self.max_subsets)

    def aggregate(self, x):
        out, self.selected = F.smea(x, self.f, max_subsets=self.max_subsets,
                                    return_selected=True)
        return out

    def _settings(self):
        return {"f": self.f, "max_subsets": self.max_subsets}
