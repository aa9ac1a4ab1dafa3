"""Distributed backdoor attack, DBA (Xie, Huang, Chen and Li, "DBA: Distributed Backdoor Attacks
against Federated Learning", ICLR 2020).

The global trigger (the BadNets patch of :mod:`attacks.trigger`) is split into ``parts`` local
triggers, its pixels row by row in ``parts`` consecutive pieces (at 28×28 with 4 parts: the
four 1×4 bars of the paper's MNIST pattern). Byzantine worker i trains with local trigger
``i mod parts`` only,

    poison_batch(x, y, C) = ([T_{i mod parts}(x_1..x_k); x_{k+1..B}], [target, ...; y_{k+1..B}]),

while the attack is judged on the *global* trigger (:meth:`trigger`), which no single worker
ever used. The training loop's Byzantine workers have consecutive ids, so f <= parts workers
use f different local triggers.
"""
from __future__ import annotations

import copy

from attacks import trigger as T
from attacks.backdoor import Backdoor


class DBA(Backdoor):
    """BadNets with the trigger split over the Byzantine workers (Xie et al., ICLR 2020).

    Args:
        parts: the number of local triggers (default 4, the paper's).
        part: which local trigger this attack stamps (set by :meth:`for_worker` from the
            worker id; default 0).
        (others as :class:`~attacks.backdoor.Backdoor`.)
    """

    name = "dba"

    def __init__(self, target: int = 0, poison_frac: float = 0.5, value: float = 1.0,
                 size: int | None = None, parts: int = 4, part: int = 0):
        super().__init__(target, poison_frac, value, size)
        if isinstance(parts, bool) or not isinstance(parts, int) or parts < 1:
            raise ValueError(f"dba needs parts to be an int >= 1, got parts={parts!r}")
        if isinstance(part, bool) or not isinstance(part, int) or not 0 <= part < parts:
            raise ValueError(f"dba needs part in [0, parts={parts}), got part={part!r}")
        self.parts, self.part = parts, part

    def local_pixels(self, x):
        return T.split(self._pixels(x), self.parts)[self.part]

    def for_worker(self, worker_id: int, workers: int) -> "DBA":
        out = copy.copy(self)
        out.part = worker_id % self.parts
        return out

    def __repr__(self) -> str:
        return super().__repr__()[:-1] + f", parts={self.parts}, part={self.part})"
