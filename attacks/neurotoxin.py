"""Neurotoxin (Zhang, Panda, Song, Yang, Mahoney, Mittal, Ramchandran and Gonzalez, "Neurotoxin:
Durable Backdoors in Federated Learning", ICML 2022, Algorithm 1).

The backdoor update is projected onto the coordinates the benign workers rarely update, so
that their later updates do not overwrite it: with ``b`` an estimate of the benign gradient,

    S = the ceil(top_k · d) coordinates of largest |b_j|,
    poison_gradient(g)_j = 0 for j in S, g_j otherwise,

``g`` the gradient of the poisoned BadNets batch (:class:`~attacks.backdoor.Backdoor`). The
paper's b is the previous round's global update, seen by an attacker that keeps state across
rounds; a worker here is stateless (a Lambda invocation, a restarted actor), so b is the
gradient of the attacker's own batch *without* the poison at the same parameters (the estimate
the authors' code computes from the attacker's clean data). The paper's "top-k%" with k = 1 is
``top_k = 0.01``.
"""
from __future__ import annotations

import math

import torch

from attacks.backdoor import Backdoor


class Neurotoxin(Backdoor):
    """BadNets with the update zeroed on the ``top_k`` share of coordinates the benign gradient
    moves most.

    Args:
        top_k: the share of coordinates (largest benign magnitudes) removed, in [0, 1)
            (default 0.01, the paper's 1%).
        (others as :class:`~attacks.backdoor.Backdoor`.)
    """

    name = "neurotoxin"

    def __init__(self, target: int = 0, poison_frac: float = 0.5, value: float = 1.0,
                 size: int | None = None, top_k: float = 0.01):
        super().__init__(target, poison_frac, value, size)
        if not 0 <= top_k < 1:
            raise ValueError(f"neurotoxin needs top_k in [0, 1), got top_k={top_k!r}")
        self.top_k = float(top_k)

    def poison_gradient(self, grad: torch.Tensor, benign):
        k = math.ceil(self.top_k * grad.numel())
        if k == 0:
            return grad
        b = benign()
        if b.shape != grad.shape:
            raise ValueError(f"neurotoxin: the benign gradient has shape {tuple(b.shape)}, the "
                             f"poisoned one {tuple(grad.shape)}")
        top = torch.topk(b.abs().flatten(), k, sorted=False).indices
        out = grad.clone()
        out.view(-1)[top] = 0
        return out

    def __repr__(self) -> str:
        return super().__repr__()[:-1] + f", top_k={self.top_k})"
