"""Sign-flipping attack (Allen-Zhu, Ebrahimian, Li and Alistarh, "Byzantine-Resilient Non-Convex
Stochastic Gradient Descent", ICLR 2021; also Karimireddy et al. 2021/2022's "bit flipping").

Every Byzantine worker sends ``-s * mu`` with ``mu = (1/h) sum_i g_i`` the mean of ``honest``
(``honest``: Tensor[h, d]; the round's honest gradients when omniscient, the Byzantine workers'
own honestly computed gradients when not) and ``s > 0`` the scale (1 in the papers).
Any n and f >= 1.
"""
from __future__ import annotations

from attacks.base import ModelAttack, repeat_rows
from attacks.ipm import ipm_vector


class SignFlip(ModelAttack):
    """``Tensor[h, d] -> Tensor[f, d]``, every row ``-scale * mean(honest)``."""

    name = "sign_flip"

    def __init__(self, scale: float = 1.0, *, omniscient: bool = True):
        super().__init__(omniscient=omniscient)
        if not scale > 0:
            raise ValueError(f"sign_flip needs scale > 0, got scale={scale!r}")
        self.scale = float(scale)

    def _forge(self, honest, f, rule):
        # IPM's vector with epsilon = scale: the same formula, a different regime and paper
        return repeat_rows(ipm_vector(honest, self.scale), f)

    def __repr__(self) -> str:
        return f"SignFlip(scale={self.scale}, omniscient={self.omniscient})"
