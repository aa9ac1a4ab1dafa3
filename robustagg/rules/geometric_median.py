from __future__ import annotations

from .. import functional as F
from ..functional._checks import check_positive
from .base import Rule, Weighted
from .registry import register_rule


@register_rule("geometric_median", "rfa")
class GeometricMedian(Weighted, Rule):
    """Geometric median by smoothed Weiszfeld (RFA; n ≥ 2f + 1 when f is given), weighted when
    called with ``weights`` (``max_weight_share`` caps one worker's share). See
    :func:`robustagg.functional.geometric_median`."""

    bound = (2, 1)

    def __init__(self, f: int = 0, nu: float = 1e-6, max_iter: int = 200, tol: float = 1e-6,
                 max_weight_share: float | None = None):
        super().__init__(f)
        self.nu = check_positive(nu, "GeometricMedian", "nu")
        self.max_iter = check_positive(max_iter, "GeometricMedian", "max_iter", integer=True)
        self.tol = tol
        self._set_share(max_weight_share)

    def aggregate(self, x, weights=None):
        return F.geometric_median(x, weights=weights, nu=self.nu, max_iter=self.max_iter,
                                  tol=self.tol, max_weight_share=self.max_weight_share)

    def _settings(self):
        return {**super()._settings(), "nu": self.nu, "max_iter": self.max_iter, "tol": self.tol}
