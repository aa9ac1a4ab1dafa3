import torch

from .. import functional as F
from .base import Rule
from .registry import register_rule


@register_rule("flame")
class FLAME(Rule):
    """FLAME (fewer than n/2 malicious; n ≥ 2f + 1 when f is given); ``selected`` holds the
    admitted indices. The noise comes from a generator seeded by ``seed`` (same seed, same
    noise; :meth:`reset` rewinds it); ``noise=0`` turns it off. See
    :func:`robustagg.functional.flame`."""

    bound = (2, 1)

    def __init__(self, f: int = 0, noise: float = 0.001, seed: int = 0):
        super().__init__(f)
        if not (isinstance(noise, (int, float)) and not isinstance(noise, bool) and noise >= 0):
            raise ValueError(f"FLAME: noise must be >= 0, got noise={noise!r}")
        self.noise, self.seed = float(noise), seed
        self.reset()

    def aggregate(self, x):
        out, self.selected = F.flame(x, self.generator, self.noise, return_selected=True)
        return out

    def reset(self):
        super().reset()
        self.generator = torch.Generator().manual_seed(self.seed)

    def _settings(self):
        return {"f": self.f, "noise": self.noise, "seed": self.seed}
