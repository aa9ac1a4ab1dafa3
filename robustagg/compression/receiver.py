"""The server's side of a compressed round: the round's mask, the messages turned into the rows
the rule aggregates, the attack forging in compressed space, and the aggregate back in ``R^d``.

Per round: :meth:`Receiver.begin` (the shared mask, published with the parameters),
:meth:`~Receiver.fill` (the arrived messages, in worker-id order: honest workers first),
:meth:`~Receiver.forge` (a model attack sees the honest *messages* and writes the Byzantine
ones), :meth:`~Receiver.matrix` (what the rule aggregates), :meth:`~Receiver.expand` (the
result as ``Tensor[d]``), :meth:`~Receiver.end` (a finite aggregate tells ``topk_shared``
where to look next).

What the rule sees:

- **shared mask, stateless rule, no error feedback**: the ``[m, k]`` sub-matrix of values.
  Every row is zero off the mask, so distances, norms and coordinate-wise statistics on the
  sub-matrix equal those on the dense rows, and the aggregate is zero off the mask: the same
  result at k/d of the cost. (A rule with state across rounds, or that draws coordinates at
  random, gets the dense rows instead: its state lives in ``R^d``.)
- **shared mask with error feedback**: the dense EF21 estimates ``h_i`` (:mod:`.memory`).
- **shared mask with worker momentum** (``momentum`` = β > 0): each worker's momentum of what it
  sent, kept here by worker id, ``m_i <- β m_i + (1 - β) x_i`` (``m_i = x_i`` on its first
  message), ``x_i`` the message scattered into ``R^d`` (zero off the mask) or, with error
  feedback, its EF21 estimate. With a random mask this is RoSDHB (Gupta, Honsell, Xu, Gupta &
  Neglia, "Reconciling Communication Compression and Byzantine-Robustness in Distributed
  Learning", AISTATS 2026): Polyak momentum per worker on the server after a global
  sparsification, the rule run on the momenta. RoSDHB scales the message by d/k (unbiased
  rand-k); momentum and the rules of this package are linear in the scale of all rows alike
  (``rule(c x) = c rule(x)`` for mean, median, trimmed mean, Krum), so that factor is a factor
  of the learning rate, not a different method.
- **per-worker masks**: each message scattered into ``R^d``, zero where the worker sent nothing.
  This is what a compressed message means, but it is not robust: a coordinate-wise median over
  mostly-zero columns is mostly zero, and distances between rows of different supports hide
  an attacker that concentrates on coordinates the honest workers rarely send
  (``tests/compression/test_per_worker_masks.py``, docs/compression.md).
"""
from __future__ import annotations

import torch

from .base import Compressor
from .memory import FeedbackMemory
from .row import SparseRow, numpy_tensor


def stateless(rule) -> bool:
    """Whether ``rule`` (or each part of a pipeline) keeps nothing between calls beyond its
    selection, so that it may run on a shared mask's sub-matrix."""
    from robustagg.rules.base import Rule

    parts = [*getattr(rule, "pre", []), rule.rule] if hasattr(rule, "pre") else [rule]
    return all(isinstance(p, Rule) and type(p).reset is Rule.reset for p in parts)


class Receiver:
    """For ``n`` workers, ``d`` parameters, the run's ``compressor`` and ``rule``;
    ``momentum``: β of the worker momentum kept per worker id (0: none; shared masks only)."""

    def __init__(self, compressor: Compressor, n: int, d: int, rule, momentum: float = 0.0):
        if isinstance(momentum, bool) or not isinstance(momentum, (int, float)) \
                or not 0 <= momentum < 1:
            raise ValueError(f"Receiver: momentum must be in [0, 1), got {momentum!r}")
        if momentum and not compressor.shared:
            raise ValueError(
                f"worker momentum needs a shared mask (randk_shared, topk_shared), not "
                f"{compressor.name!r}: with per-worker masks the momenta would mix coordinates "
                f"each worker chose for itself, the rows whose failure "
                f"tests/compression/test_per_worker_masks.py shows")
        self.comp, self.d, self.k = compressor, d, compressor.k(d)
        self.shared = compressor.shared
        self.beta = float(momentum)
        self.sub = self.shared and not compressor.error_feedback and not self.beta and \
            stateless(rule)
        self.memory = FeedbackMemory(d) if compressor.error_feedback else None
        self.momenta: dict[int, torch.Tensor] = {}  # worker id -> m_i (with momentum)
        self.values = torch.empty(n, self.k) if self.shared else None
        self.rows = None if self.sub else torch.empty(n, d)
        self.mask = None

    @property
    def message_bytes(self) -> int:
        """Payload bytes of one message: k float32 values, plus k indices without a shared
        mask."""
        return self.k * (4 if self.shared else 4 + (4 if self.d < 2**31 else 8))

    def begin(self, round: int) -> torch.Tensor | None:  # noqa: A002
        """The round's shared mask (None with per-worker masks)."""
        self.mask = self.comp.round_mask(round, self.d) if self.shared else None
        return self.mask

    def fill(self, messages: dict) -> list[int]:
        """Write each arrived :class:`SparseRow` (by worker id) in worker-id order; returns the
        ids."""
        ids = sorted(messages)
        for row, i in enumerate(ids):
            self._put(row, messages[i])
        return ids

    def _put(self, row: int, msg: SparseRow):
        if self.shared:
            self.values[row].copy_(numpy_tensor(msg.values))
        else:
            msg.dense(out=self.rows[row])

    def forge(self, attack, h: int, m: int, f: int, rule) -> None:
        """Let a model ``attack`` write rows ``h .. h+f``: it reads the honest messages (rows
        ``:h``, omniscient) or the Byzantine workers' own (rows ``h:m``), in compressed space:
        the ``[., k]`` values under a shared mask, else the scattered rows, whose forgeries are
        compressed again so that each is a valid k-entry message."""
        space = self.values if self.shared else self.rows
        seen = space[:h] if attack.omniscient else space[h:m]
        if not len(seen):
            raise RuntimeError(f"no compressed message arrived for attack {attack!r} to see")
        forged = attack(seen, f, rule=rule).clone()  # may be a view of the rows it overwrites
        for j in range(f):
            if self.shared:
                self.values[h + j].copy_(forged[j])
            else:
                self._put(h + j, self.comp.compress(forged[j].float().contiguous()))

    def matrix(self, ids: list[int]) -> torch.Tensor:
        """What the rule aggregates for the rows of ``ids`` (in the order :meth:`fill` gave)."""
        m = len(ids)
        if self.sub:
            return self.values[:m]
        if self.memory is not None:
            for row, i in enumerate(ids):
                self.rows[row].copy_(self.memory.update(i, self.mask, self.values[row]))
        elif self.shared:
            for row in range(m):
                self.rows[row].zero_()[self.mask] = self.values[row]
        if self.beta:
            for row, i in enumerate(ids):
                mom = self.momenta.get(i)
                if mom is None:
                    self.momenta[i] = self.rows[row].clone()
                else:
                    self.rows[row].copy_(mom.mul_(self.beta).add_(self.rows[row],
                                                                  alpha=1 - self.beta))
        return self.rows[:m]

    def expand(self, agg: torch.Tensor) -> torch.Tensor:
        """The rule's result as ``Tensor[d]``."""
        if not self.sub:
            return agg
        out = torch.zeros(self.d, dtype=agg.dtype)
        out[self.mask] = agg
        return out

    def end(self, aggregate: torch.Tensor, finite: bool) -> None:
        if finite:
            self.comp.observe(aggregate, self.mask if self.sub else None)

    def state_dict(self) -> dict:
        return {"memory": None if self.memory is None else self.memory.state_dict(),
                "compressor_memory": getattr(self.comp, "memory", None),
                "momenta": {i: m.clone() for i, m in self.momenta.items()}}

    def load_state_dict(self, state: dict) -> None:
        if self.memory is not None and state.get("memory") is not None:
            self.memory.load_state_dict(state["memory"])
        self.momenta = {int(i): m.clone() for i, m in (state.get("momenta") or {}).items()}
        if state.get("compressor_memory") is not None:
            self.comp.memory = state["compressor_memory"].clone()
