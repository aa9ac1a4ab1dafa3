"""The three kinds of Byzantine behaviour, and the checks every attack shares.

Model poisoning (``kind = "model"``)
    ``atk(honest: Tensor[h, d], f: int, rule=None) -> Tensor[f, d]``, same dtype and device as
    ``honest``. The caller replaces the gradients of its f Byzantine workers with the f rows.

    **What ``honest`` holds: the ``omniscient`` contract.** Every model attack has an
    ``omniscient: bool`` setting (default ``True``); the attack itself computes the same formula
    either way, the *caller* decides what to pass:

    - ``omniscient=True`` (the adversary of the Krum, ALIE and NDSS'21 papers): ``honest`` is the
      h = n - f gradients the honest workers sent this round, so n = h + f.
    - ``omniscient=False`` (the weaker adversary of Baruch et al. 2019 and of the "unknown
      gradients" setting of Shejwalkar & Houmansadr 2021): ``honest`` is the gradients the f
      Byzantine workers computed *honestly on their own data* this round (so usually h = f);
      every statistic (mean, std, distances, the simulated aggregation) is an estimate from those
      rows only. Attacks whose formula depends on the total n (``ALIE``) then need ``n=`` given.

    ``needs`` says what the attack uses: ``"honest"`` (the rows above; every model attack that
    looks at gradients) and ``"rule"`` (the aggregation rule object, for rule-tailored attacks).
    A rule is any callable ``Tensor[n, d] -> Tensor[d]`` (e.g. ``ra.Krum(f=2)``); attacks only
    call it, on a deep copy, so the caller's rule state is never advanced by the attacker's
    trial aggregations.

Data poisoning (``kind = "data"``)
    ``atk.poison_batch(x, y, num_classes) -> (x, y)`` changes a Byzantine worker's batch before it
    computes its (then honest-looking) gradient.

System faults (``kind = "fault"``)
    ``atk.fails(round) -> bool`` (the worker does not answer this round) and
    ``atk.delay_s(round) -> float`` (seconds it waits before answering). The training loop calls
    these; model and data attacks answer ``False`` / ``0.0``.

Randomness only through ``seed`` (an int, default 0) or an explicit ``torch.Generator``; the
generator lives on the CPU, so the same seed gives the same Byzantine rows on every device.
"""
from __future__ import annotations

import copy
from typing import Callable, ClassVar, FrozenSet, Optional

import torch

Rule = Callable[[torch.Tensor], torch.Tensor]


class Attack:
    """Common root: a name for messages, the kind, and the fault hooks (no-ops here)."""

    name: ClassVar[str] = "attack"
    kind: ClassVar[str] = "model"
    needs: ClassVar[FrozenSet[str]] = frozenset()

    def fails(self, round: int) -> bool:  # noqa: A002 - the training loop's word
        """Whether the worker gives no answer in ``round`` (only faults ever say ``True``)."""
        return False

    def delay_s(self, round: int) -> float:  # noqa: A002
        """Seconds the worker waits before answering in ``round`` (only faults say > 0)."""
        return 0.0

    def reset(self) -> None:
        """Forget state kept across rounds (stateless attacks have none)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def make_generator(seed: Optional[int], generator: Optional[torch.Generator]) -> torch.Generator:
    """A CPU generator: the one given, else a fresh one seeded with ``seed`` (0 when None)."""
    if generator is not None:
        if seed is not None:
            raise ValueError("give either seed or generator, not both")
        return generator
    return torch.Generator().manual_seed(0 if seed is None else int(seed))


def check_f(f, who: str) -> int:
    if isinstance(f, bool) or not isinstance(f, int) or f < 1:
        raise ValueError(f"{who} needs f >= 1 Byzantine workers, got f={f!r}")
    return f


class ModelAttack(Attack):
    """Model poisoning: honest gradients ``Tensor[h, d]`` -> Byzantine gradients ``Tensor[f, d]``.

    Subclasses implement ``_forge(honest, f, rule)`` on validated input and may set
    ``min_honest`` (rows the formula needs, e.g. 2 for a standard deviation). ``__call__``
    checks, in this order: ``honest`` is a floating ``Tensor[h, d]`` with
    ``h >= min_honest`` and ``d >= 1``; ``f`` is an int ``>= 1``; the rule is there when
    ``"rule" in needs``. Honest rows with NaN or Inf (a diverging model) are left out of the
    forging; with fewer than ``min_honest`` finite rows the Byzantine rows are NaN. The result
    has ``honest``'s dtype and device.
    """

    kind: ClassVar[str] = "model"
    needs: ClassVar[FrozenSet[str]] = frozenset({"honest"})
    min_honest: ClassVar[int] = 1
    # True where the attack supplies its own rule when none is passed (fang_krum: Krum(f))
    _has_default_rule: ClassVar[bool] = False

    def __init__(self, *, omniscient: bool = True):
        self.omniscient = bool(omniscient)

    def __call__(self, honest: torch.Tensor, f: int, rule: Optional[Rule] = None) -> torch.Tensor:
        # robustagg's fast row check (a sum first), imported here: `import attacks` stays free of
        # robustagg for users who only forge tensors
        from robustagg.functional._checks import finite_rows

        honest = self._check(honest, f, rule)
        finite = finite_rows(honest)
        if not bool(finite.all()):
            # A diverging model makes honest gradients overflow; the formulas (and their searches)
            # are defined on finite rows only, so the adversary forges from those.
            if int(finite.sum()) < self.min_honest:
                return torch.full((f, honest.shape[1]), float("nan"), dtype=honest.dtype,
                                  device=honest.device)
            honest = honest[finite]
        out = self._forge(honest, f, rule)
        return out.to(dtype=honest.dtype, device=honest.device)

    def _forge(self, honest: torch.Tensor, f: int, rule: Optional[Rule]) -> torch.Tensor:
        raise NotImplementedError

    def _check(self, honest, f, rule) -> torch.Tensor:
        who = self.name
        if not isinstance(honest, torch.Tensor):
            raise TypeError(f"{who}: honest must be a torch.Tensor [h, d], got {type(honest).__name__}")
        if honest.dim() != 2 or honest.shape[1] < 1:
            raise ValueError(f"{who}: honest must have shape [h, d] with d >= 1, "
                             f"got shape {tuple(honest.shape)}")
        if not honest.is_floating_point():
            raise TypeError(f"{who}: honest must be a floating tensor, got dtype {honest.dtype}")
        check_f(f, who)
        h = honest.shape[0]
        if h < self.min_honest:
            raise ValueError(f"{who} needs at least {self.min_honest} honest gradients, got h={h}")
        if "rule" in self.needs and rule is None and not self._has_default_rule:
            raise ValueError(f"{who} needs the aggregation rule: call it as atk(honest, f, rule=...)")
        if rule is not None and not callable(rule):
            raise TypeError(f"{who}: rule must be callable Tensor[n, d] -> Tensor[d], "
                            f"got {type(rule).__name__}")
        return honest

    def __repr__(self) -> str:
        return f"{type(self).__name__}(omniscient={self.omniscient})"


class RandomAttack(ModelAttack):
    """A model attack that draws random numbers: from ``seed`` (default 0) or ``generator``.

    The generator advances with every call (fresh noise each round, the same sequence for the
    same seed); ``reset()`` rewinds it to where it was at construction.
    """

    def __init__(self, *, seed: Optional[int] = None, generator: Optional[torch.Generator] = None,
                 omniscient: bool = True):
        super().__init__(omniscient=omniscient)
        self.generator = make_generator(seed, generator)
        self._initial_state = self.generator.get_state()

    def reset(self) -> None:
        self.generator.set_state(self._initial_state)


def repeat_rows(v: torch.Tensor, f: int) -> torch.Tensor:
    """``Tensor[d] -> Tensor[f, d]``: the f Byzantine workers all send ``v`` (a fresh tensor)."""
    return v.unsqueeze(0).repeat(f, 1)


def aggregate(rule: Rule, honest: torch.Tensor, byzantine: torch.Tensor) -> torch.Tensor:
    """What ``rule`` outputs on the honest rows followed by the Byzantine rows.

    The rule is deep-copied first: a trial aggregation must not advance the state (momentum,
    ``selected``) of the rule the caller will really aggregate with.
    """
    return copy.deepcopy(rule)(torch.cat([honest, byzantine.to(honest.dtype)], dim=0))


class DataAttack(Attack):
    """Data poisoning: ``poison_batch(x, y, num_classes) -> (x, y)`` on a Byzantine worker.

    The worker calls ``for_worker(worker_id, workers)`` once (the attack as that worker carries
    it out: itself here), ``poison_batch`` on each round's batch, then
    ``poison_gradient(grad, benign)`` on the gradient of the poisoned batch (``benign()``
    computes the gradient of the same batch unpoisoned); the identity here."""

    kind: ClassVar[str] = "data"
    needs: ClassVar[FrozenSet[str]] = frozenset()
    backdoor: ClassVar[bool] = False  # True: the training loop measures the attack success rate

    def for_worker(self, worker_id: int, workers: int) -> "DataAttack":
        return self

    def poison_batch(self, x: torch.Tensor, y: torch.Tensor, num_classes: int):
        raise NotImplementedError

    def poison_gradient(self, grad: torch.Tensor, benign: Callable[[], torch.Tensor]):
        return grad


def check_labels(y, num_classes, who: str) -> None:
    """``y`` must be integer class labels in ``[0, num_classes)``, ``num_classes >= 2``."""
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"{who} needs num_classes >= 2, got num_classes={num_classes!r}")
    if not isinstance(y, torch.Tensor) or y.is_floating_point() or y.is_complex():
        raise TypeError(f"{who} needs integer class labels y, got "
                        f"{getattr(y, 'dtype', type(y).__name__)}")
    if y.numel() and (int(y.min()) < 0 or int(y.max()) >= num_classes):
        raise ValueError(f"{who} needs labels in [0, {num_classes}), got values in "
                         f"[{int(y.min())}, {int(y.max())}]")


class Fault(Attack):
    """System fault: the training loop asks ``fails(round)`` and ``delay_s(round)``."""

    kind: ClassVar[str] = "fault"
    needs: ClassVar[FrozenSet[str]] = frozenset()


def check_round(value, arg: str, who: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{who} needs {arg} to be an int >= 0, got {arg}={value!r}")
    return value
