from __future__ import annotations

from .. import functional as F
from ..functional._checks import check_positive
from .base import Rule, Weighted
from .registry import register_rule


@register_rule("centered_clipping", "cc")
class CenteredClipping(Weighted, Rule):
    """Centered clipping; the previous output is the next call's center, as in the paper
    (:meth:`reset` starts again from zero). Weighted when called with ``weights``
    (``max_weight_share`` caps one worker's share). See
    :func:`robustagg.functional.centered_clipping`."""

    bound = (2, 1)

    def __init__(self, tau: float = 1.0, n_iter: int = 1, f: int = 0,
                 max_weight_share: float | None = None):
        super().__init__(f)
        self.tau = check_positive(tau, "CenteredClipping", "tau")
        self.n_iter = check_positive(n_iter, "CenteredClipping", "n_iter", integer=True)
        self.center = None
        self._set_share(max_weight_share)

    def aggregate(self, x, weights=None):
        out = F.centered_clipping(x, self.tau, self.n_iter, self.center, weights=weights,
                                  max_weight_share=self.max_weight_share)
        if bool(out.isfinite().all()):  # never carry a poisoned center into the next round
            self.center = out.detach().clone()
        return out

    def reset(self):
        super().reset()
        self.center = None

    def _settings(self):
        return {"tau": self.tau, "n_iter": self.n_iter, **super()._settings()}
