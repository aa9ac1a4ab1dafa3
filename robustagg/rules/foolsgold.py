from __future__ import annotations

import torch

from .. import functional as F
from ..functional._checks import check_positive
from .base import Rule
from .registry import register_rule


@register_rule("foolsgold")
class FoolsGold(Rule):
    """FoolsGold (any n ≥ 1), stateful across rounds: ``history[worker_id]`` is the sum of that
    worker's updates so far (in the updates' dtype, on their device).

    How history is keyed: row i of a call belongs to worker ``worker_ids[i]`` when
    ``rule.worker_ids`` (a list of n hashable ids, e.g. the training loop's worker ids) is set
    before the call, which consumes it; otherwise row i is worker i, which is right only when
    every round sends the same workers in the same order. A worker seen for the first time
    starts from an empty history; :meth:`reset` forgets every history. ``weights`` holds the
    last round's α. See :func:`robustagg.functional.foolsgold`."""

    def __init__(self, f: int = 0, kappa: float = 1.0):
        super().__init__(f)
        self.kappa = check_positive(kappa, "FoolsGold", "kappa")
        self.history: dict = {}
        self.worker_ids = None
        self.weights = None

    def aggregate(self, x):
        n = x.shape[0]
        ids = list(range(n)) if self.worker_ids is None else list(self.worker_ids)
        self.worker_ids = None
        if len(ids) != n or len(set(ids)) != n:
            raise ValueError(f"FoolsGold: worker_ids must name each of the n={n} rows once, "
                             f"got {ids!r}")
        dtype = x.dtype
        x = x.float() if dtype in (torch.float16, torch.bfloat16) else x
        zero = torch.zeros(x.shape[1], dtype=x.dtype, device=x.device)
        past = torch.stack([self.history.get(i, zero).to(device=x.device, dtype=x.dtype)
                            for i in ids])
        out, self.weights = F.foolsgold(x, past, self.kappa, return_weights=True)
        finite = torch.isfinite(x).all(dim=1)
        for row, i in enumerate(ids):
            if bool(finite[row]):  # a non-finite update never enters a history
                self.history[i] = (past[row] + x[row]).detach()  # no graph across rounds
        return out.to(dtype)

    def reset(self):
        super().reset()
        self.history = {}
        self.worker_ids = None
        self.weights = None

    def _settings(self):
        return {"f": self.f, "kappa": self.kappa}
