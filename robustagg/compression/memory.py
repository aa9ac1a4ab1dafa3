"""Error feedback kept on the server, per worker id: the EF21 estimates.

EF21 (Richtárik, Sokolov & Fatkhullin, "EF21: A New, Simpler, Theoretically Better, and
Practically Faster Error Feedback", NeurIPS 2021; with a robust rule, Byz-EF21 of Rammal,
Gruntkowska, Fedin, Gorbunov & Richtárik, AISTATS 2024): the server holds ``h_i`` per worker,
worker i sends ``c_i = C(g_i - h_i)``, the server sets ``h_i <- h_i + c_i`` and the rule
aggregates the ``h_i``.

With a shared mask M, ``C(g_i - h_i) = (g_i - h_i)[M]``, so the worker may send ``g_i[M]`` and
the server forms ``c_i`` itself: ``h_i[M] <- g_i[M]``, ``h_i`` unchanged elsewhere. The memory is
then wholly on the server, and workers stay stateless at no extra byte. (With per-worker
top-k masks the worker needs ``h_i`` to choose its mask; see :class:`~.base.Compressor`.)
"""
from __future__ import annotations

import torch


class FeedbackMemory:
    """``h[i]``: ``Tensor[d]`` per worker id, zero until the worker's first message."""

    def __init__(self, d: int):
        self.d = d
        self.h: dict[int, torch.Tensor] = {}

    def update(self, worker: int, mask: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        """``h[worker][mask] = values``; returns ``h[worker]``."""
        h = self.h.get(worker)
        if h is None:
            h = self.h[worker] = torch.zeros(self.d)
        h[mask] = values
        return h

    def state_dict(self) -> dict:
        return {i: h.clone() for i, h in self.h.items()}

    def load_state_dict(self, state: dict) -> None:
        self.h = {int(i): h.clone() for i, h in state.items()}
