import torch

from .. import functional as F
from ..functional._checks import check_positive
from .base import Rule
from .registry import register_rule


@register_rule("clipped_clustering")
class ClippedClustering(Rule):
    """Clipped clustering (honest majority, n ≥ 2f + 1 when f is given); stateful: ``history``
    holds every finite norm seen since construction or :meth:`reset` (the clipping threshold
    is their median); ``selected`` holds the averaged indices. See
    :func:`robustagg.functional.clipped_clustering`."""

    bound = (2, 1)

    def __init__(self, f: int = 0, max_tau: float = 1e5):
        super().__init__(f)
        self.max_tau = check_positive(max_tau, "ClippedClustering", "max_tau")
        self.history = None

    def aggregate(self, x):
        out, self.selected, norms = F.clipped_clustering(x, self.history, self.max_tau,
                                                         return_details=True)
        self.history = norms if self.history is None else torch.cat([self.history, norms])
        return out

    def reset(self):
        super().reset()
        self.history = None

    def _settings(self):
        return {"f": self.f, "max_tau": self.max_tau}
