from .. import functional as F
from .base import Rule
from .registry import register_rule


@register_rule("cge")
class CGE(Rule):
    """Comparative gradient elimination (n ≥ 2f + 1): the sum (``average=False``, as in the
    paper) or the mean of the n - f smallest-norm vectors; ``selected`` holds them. See
    :func:`robustagg.functional.cge`."""

    bound = (2, 1)

    def __init__(self, f: int = 0, average: bool = False):
        super().__init__(f)
        if not isinstance(average, bool):
            raise TypeError(f"CGE: average must be a bool, got {average!r}")
        self.average = average

    def aggregate(self, x):
        out, self.selected = F.cge(x, self.f, self.average, return_selected=True)
        return out

    def _settings(self):
        return {"f": self.f, "average": self.average}
