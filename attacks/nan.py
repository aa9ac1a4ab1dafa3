"""Non-finite attack, NaN: every Byzantine worker sends ``[nan] * d``.

Not from one paper: NaN compares false with everything, so sorting- and distance-based rules
that forget it can select it or propagate it. ``needs`` is empty; any n, f >= 1.
"""
from __future__ import annotations

import torch

from attacks.base import ModelAttack


class NaN(ModelAttack):
    """``Tensor[h, d] -> Tensor[f, d]`` full of ``nan``."""

    name = "nan"
    needs = frozenset()

    def _forge(self, honest, f, rule):
        return torch.full((f, honest.shape[1]), float("nan"))
