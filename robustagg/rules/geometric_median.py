from .. import functional as F
from ..functional._checks import check_positive
from .base import Rule
from .registry import register_rule


@register_rule("geometric_median", "rfa")
class GeometricMedian(Rule):
    """Geometric median by smoothed Weiszfeld (RFA; n ≥ 2f + 1 when f is given). See
    :func:`robustagg.functional.geometric_median`."""

    bound = (2, 1)

    def __init__(self, f: int = 0, nu: float = 1e-6, max_iter: int = 200, tol: float = 1e-6):
        super().__init__(f)
        self.nu = check_positive(nu, "GeometricMedian", "nu")
        self.max_iter = check_positive(max_iter, "GeometricMedian", "max_iter", integer=True)
        self.tol = tol

    def aggregate(self, x):
        return F.geometric_median(x, nu=self.nu, max_iter=self.max_iter, tol=self.tol)

    def _settings(self):
        return {"f": self.f, "nu": self.nu, "max_iter": self.max_iter, "tol": self.tol}
