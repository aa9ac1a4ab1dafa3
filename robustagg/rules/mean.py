from __future__ import annotations

from .. import functional as F
from .base import Rule, Weighted
from .registry import register_rule


@register_rule("mean", "average")
class Mean(Weighted, Rule):
    """Arithmetic mean (not robust), weighted when called with ``weights``;
    ``max_weight_share`` caps one worker's share. See :func:`robustagg.functional.mean`."""

    def __init__(self, max_weight_share: float | None = None):
        super().__init__(0)
        self._set_share(max_weight_share)

    def aggregate(self, x, weights=None):
        return F.mean(x, weights=weights, max_weight_share=self.max_weight_share)

    def _settings(self):
        return {k: v for k, v in super()._settings().items() if k != "f"}
