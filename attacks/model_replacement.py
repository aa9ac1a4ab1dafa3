"""Model replacement, the scaled backdoor update (Bagdasaryan, Veit, Hua, Estrin and Shmatikov,
"How To Backdoor Federated Learning", AISTATS 2020, Section 3.2).

The attacker trains its backdoor (the BadNets batch of :class:`~attacks.backdoor.Backdoor`) and
scales its update so that it survives averaging: with n participants and global learning
rate η, it submits ``L̃ = γ (X − G^t) + G^t`` with ``γ = n / η`` (their Eq. 3), so that the
average replaces the global model by its backdoored X. Here a worker sends a gradient and the server
averages gradients and applies its own optimizer, which plays η = 1:

    poison_gradient(g) = γ · g,      γ = scale, or n (the number of workers) when scale is None,

``g`` the gradient of the poisoned batch. Under the mean, one attacker's γ·g/n = g: the round's
step is the attacker's own. Norm-bounding rules (clipping, FLAME, FLTrust) and outlier
filters see a vector γ times longer than an honest one, which is what they are for.
"""
from __future__ import annotations

import copy
import math

from attacks.backdoor import Backdoor


class ModelReplacement(Backdoor):
    """BadNets with the gradient boosted by ``scale`` (None: γ = n, the number of workers).

    Args:
        scale: the boost γ; None (default) sets it to the number of workers when the worker
            is built (:meth:`for_worker`), the paper's n/η with η = 1.
        (others as :class:`~attacks.backdoor.Backdoor`.)
    """

    name = "model_replacement"

    def __init__(self, target: int = 0, poison_frac: float = 0.5, value: float = 1.0,
                 size: int | None = None, scale: float | None = None):
        super().__init__(target, poison_frac, value, size)
        if scale is not None and not (math.isfinite(scale) and scale > 0):
            raise ValueError(f"model_replacement needs scale None or finite > 0, "
                             f"got scale={scale!r}")
        self.scale = None if scale is None else float(scale)

    def for_worker(self, worker_id: int, workers: int) -> "ModelReplacement":
        out = copy.copy(self)
        if out.scale is None:
            out.scale = float(workers)
        return out

    def poison_gradient(self, grad, benign):
        if self.scale is None:
            raise ValueError("model_replacement: scale is None; give scale= or build the worker's "
                             "copy with for_worker(worker_id, workers) (γ = workers)")
        return grad * self.scale

    def __repr__(self) -> str:
        return super().__repr__()[:-1] + f", scale={self.scale})"
