"""Non-finite attack, +Inf: every Byzantine worker sends ``[+inf] * d``.

Not from one paper: the simplest test that a rule (and the training loop) never lets a
non-finite value reach the model (ByzFL's ``Inf`` attack). ``needs`` is empty; any n, f >= 1.
"""
from __future__ import annotations

import torch

from attacks.base import ModelAttack


class Inf(ModelAttack):
    """``Tensor[h, d] -> Tensor[f, d]`` full of ``+inf``."""

    name = "inf"
    needs = frozenset()

    def _forge(self, honest, f, rule):
        return torch.full((f, honest.shape[1]), float("inf"))
