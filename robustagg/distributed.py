"""Drop-in robust aggregation for ``torch.distributed`` and DDP training loops.

Two entry points, both for an already initialised process group (gloo on CPU, NCCL on GPU):

* :func:`robust_all_reduce` replaces ``dist.all_reduce(p.grad); p.grad /= world`` in a
  hand-written data-parallel loop: one ``all_gather`` of every rank's whole flattened gradient,
  then the rule on ``Tensor[world, d]``, identically on every rank.
* :func:`comm_hook` is a DDP communication hook (``ddp.register_comm_hook(None, hook)``) that
  aggregates bucket by bucket, or, with ``mode="whole"``, the whole gradient at the last bucket.

Every rank gathers the same rows and runs the same deterministic rule on them, so all ranks
write the same aggregate and keep identical parameters; a Byzantine rank influences the result
only through its row, as far as the rule allows. The gathered buffers have the dtype and size
this rank declares (a rank with a different model size makes the collective fail), so what
arrives from other ranks is plain numbers: never unpickled, and NaN/Inf are left to the rule.

Byzantine ranks can be simulated for experiments: ``attack`` is any callable
``attack(honest: Tensor[h, d], f, rule) -> Tensor[f, d]`` (e.g. ``attacks.attack("alie", ...)``),
and every rank replaces the rows of ``byzantine_ranks`` with its output after the gather. The
attack must be deterministic or seeded identically on every rank, or the ranks diverge.
"""
import copy
import datetime
import logging
import os
import socket
import sys
from collections.abc import Sequence

import torch
import torch.distributed as dist

from .optim import aggregate_into, all_finite, check_rule, pack, params_of
from .rules import Rule

log = logging.getLogger(__name__)


def init_loopback_group(rank: int, world_size: int, port: int, backend: str = "gloo",
                        timeout_s: float = 300.0) -> None:
    """Initialise the default process group of ``world_size`` processes on this machine with
    every socket on 127.0.0.1: rank 0 binds the rendezvous store's socket to 127.0.0.1:``port``
    itself (``init_method="tcp://127.0.0.1:port"`` would make torch's TCPStore listen on every
    interface) and gloo is pinned to the loopback interface (``GLOO_SOCKET_IFNAME``, unless
    set). For tests and single-machine runs; multi-machine jobs initialise as usual."""
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo" if sys.platform.startswith("linux")
                          else "lo0")
    timeout = datetime.timedelta(seconds=timeout_s)
    if rank == 0:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        sock.listen(world_size)
        store = dist.TCPStore("127.0.0.1", port, world_size, True, timeout,
                              master_listen_fd=sock.detach())   # the store owns the socket
    else:
        store = dist.TCPStore("127.0.0.1", port, world_size, False, timeout)
    dist.init_process_group(backend, store=store, rank=rank, world_size=world_size,
                            timeout=timeout)


def _world_size(group, where: str) -> int:
    if not dist.is_available() or not dist.is_initialized():
        raise RuntimeError(f"{where}: torch.distributed is not initialised; call "
                           f"dist.init_process_group(...) first")
    return dist.get_world_size(group)


def _check_byzantine(byzantine_ranks, attack, world: int, where: str) -> list[int]:
    ranks = list(byzantine_ranks)
    for r in ranks:
        if isinstance(r, bool) or not isinstance(r, int) or not 0 <= r < world:
            raise ValueError(f"{where}: byzantine_ranks must be ranks in [0, {world}), "
                             f"got {r!r}")
    if len(set(ranks)) != len(ranks):
        raise ValueError(f"{where}: byzantine_ranks has duplicates: {ranks}")
    if len(ranks) >= world:
        raise ValueError(f"{where}: byzantine_ranks={ranks} leaves no honest rank in a world "
                         f"of {world}")
    if ranks and not callable(attack):
        raise ValueError(f"{where}: byzantine_ranks={ranks} needs a callable attack, got "
                         f"{attack!r}")
    if attack is not None and not ranks:
        raise ValueError(f"{where}: an attack needs byzantine_ranks")
    return sorted(ranks)


def _gather(buf: torch.Tensor, world: int, group, async_op: bool):
    """All ranks' ``buf: Tensor[m]`` as ``Tensor[world * m]`` (rank-major), in one collective."""
    out = torch.empty(world * buf.numel(), dtype=buf.dtype, device=buf.device)
    # gloo's all_gather_single accepts only the concatenated (1-D) output form
    work = dist.all_gather_single(out, buf, group=group, async_op=async_op)
    return out, work


def _simulate(rows: torch.Tensor, byzantine: list[int], attack, rule: Rule) -> None:
    """Replace ``rows[byzantine]`` (in place) with ``attack(honest rows, f, rule)``."""
    honest = [r for r in range(rows.shape[0]) if r not in byzantine]
    fake = attack(rows[honest], len(byzantine), rule)
    expected = (len(byzantine), rows.shape[1])
    if not isinstance(fake, torch.Tensor) or tuple(fake.shape) != expected:
        raise ValueError(f"attack {attack!r} must return a Tensor{list(expected)}, got "
                         f"{tuple(fake.shape) if isinstance(fake, torch.Tensor) else fake!r}")
    rows[byzantine] = fake.to(rows.dtype)


def robust_all_reduce(params, rule: Rule, group=None, *, attack=None,
                      byzantine_ranks: Sequence[int] = ()) -> bool:
    """Aggregate the gradients of ``params`` over the ranks of ``group`` with ``rule``.

    ``params``: an ``nn.Module`` (its parameters that require grad) or an iterable of tensors,
    the same on every rank. Each rank packs its ``.grad``'s into one vector ``Tensor[d]``
    (see :mod:`robustagg.optim`), one ``all_gather`` collects ``Tensor[world, d]`` (a second,
    tiny one the p per-parameter presence flags), every rank computes ``rule`` on it and writes
    the aggregate into each ``.grad``. A gradient that is None on a rank counts as zeros; it
    stays None everywhere iff at most ``rule.f`` ranks have it.

    ``rule.check(world)`` is enforced (``Krum needs n >= 2f + 3 workers, got n=4, f=1``).
    ``attack``/``byzantine_ranks`` simulate Byzantine ranks (module docstring).
    Returns True; False if the aggregate is not finite, in which case every ``.grad`` is set
    to None on every rank, so that ``optimizer.step()`` changes nothing. After the call,
    ``rule.selected`` holds the ranks the rule selected (Krum, Multi-Krum), or None.
    """
    where = f"robust_all_reduce({rule!r})"
    check_rule(rule, where)
    params = params_of(params, where)
    world = _world_size(group, where)
    rule.check(world)
    byzantine = _check_byzantine(byzantine_ranks, attack, world, where)
    vec, flags = pack(params, [p.grad for p in params])
    all_flags, flags_work = _gather(flags, world, group, async_op=True)
    out, _ = _gather(vec, world, group, async_op=False)
    flags_work.wait()
    rows = out.view(world, vec.numel())
    if byzantine:
        _simulate(rows, byzantine, attack, rule)
    return aggregate_into(params, rows, all_flags.view(world, -1), rule)


def _layout(bucket) -> tuple:
    """Which parameters a DDP bucket holds, in order (this rank's storage addresses)."""
    return tuple(p.data_ptr() for p in bucket.parameters())


class RobustCommHook:
    """The DDP communication hook made by :func:`comm_hook`. ``skipped`` counts aggregates that
    were not finite (replaced by zeros); in bucket mode ``bucket_rules`` holds the per-bucket
    copies of the rule (their ``selected``, their state)."""

    def __init__(self, rule: Rule, mode: str, group, attack, byzantine_ranks):
        self.__name__ = self.__qualname__ = "robust_comm_hook"   # DDP logs hook.__qualname__
        self.where = f"comm_hook({rule!r}, mode={mode!r})"
        self.rule = check_rule(rule, self.where)
        if mode not in ("bucket", "whole"):
            raise ValueError(f"comm_hook: mode must be 'bucket' or 'whole', got {mode!r}")
        self.mode, self.group, self.attack = mode, group, attack
        self.byzantine_ranks = list(byzantine_ranks)
        self.world = None
        self.skipped = 0
        self.bucket_rules: dict[tuple, Rule] = {}
        self._pending: list[tuple[torch.Tensor, torch.futures.Future]] = []
        self._layouts: list[tuple] = []
        self._last_layouts: list[tuple] | None = None
        if dist.is_available() and dist.is_initialized():
            self._validate()

    def _validate(self) -> None:
        self.world = _world_size(self.group, self.where)
        self.rule.check(self.world)
        self.byzantine = _check_byzantine(self.byzantine_ranks, self.attack, self.world,
                                          self.where)

    def _reduce(self, gathered: torch.Tensor, rule: Rule) -> torch.Tensor:
        """``Tensor[world * m]`` gathered buckets -> the aggregate ``Tensor[m]`` (may be a view:
        the callers hand DDP fresh tensors, because DDP takes per-parameter views of the result
        with as_strided at the bucket's offsets, ignoring the storage offset of a view such as
        Krum's ``x[i]``)."""
        rows = gathered.view(self.world, -1)
        if self.byzantine:
            _simulate(rows, self.byzantine, self.attack, rule)
        agg = rule(rows)
        if not all_finite(agg):
            # DDP needs a tensor of the bucket's shape: zeros are the only neutral value
            self.skipped += 1
            log.warning("%s: non-finite aggregate replaced by zeros", self.where)
            return torch.zeros_like(agg)
        return agg

    def __call__(self, state, bucket):
        if self.world is None:
            self._validate()
        if self.mode == "bucket":
            # one copy of the rule per bucket, so that a stateful rule (CenteredClipping's
            # center, Bucketing's generator) keeps one state per bucket; DDP re-buckets once
            # after the first iteration, which starts fresh copies
            key = (bucket.index(), _layout(bucket))
            rule = self.bucket_rules.get(key)
            if rule is None:
                rule = self.bucket_rules[key] = copy.deepcopy(self.rule)
            out, work = _gather(bucket.buffer(), self.world, self.group, async_op=True)
            return work.get_future().then(lambda _: self._reduce(out, rule).clone())
        return self._whole(bucket)

    def _whole(self, bucket):
        # DDP launches the buckets in index order and only waits for their futures after the
        # last one is launched (Reducer::finalize_backward), so the earlier buckets can get a
        # future that the last bucket's aggregation completes.
        if bucket.index() == 0:
            self._pending, self._layouts = [], []
        buf = bucket.buffer()
        self._layouts.append(_layout(bucket))
        if not bucket.is_last():
            fut = torch.futures.Future()
            self._pending.append((buf, fut))
            return fut
        pending, self._pending = self._pending, []
        bufs = [b for b, _ in pending] + [buf]
        if self._last_layouts is not None and self._layouts != self._last_layouts:
            # DDP re-bucketed (once, after the first iteration): the concatenated gradient is
            # in a new order, so a stateful rule's state (a center) no longer lines up with it
            self.rule.reset()
        self._last_layouts = self._layouts

        def finish(_):
            try:
                parts = self._reduce(out, self.rule).split([b.numel() for b in bufs])
            except BaseException as e:     # the earlier buckets' futures must not hang DDP
                for _, fut in pending:
                    fut.set_exception(e)
                raise
            for (b, fut), part in zip(pending, parts):
                fut.set_result(part.to(b.dtype, copy=True))   # fresh tensors, see _reduce
            return parts[-1].to(buf.dtype, copy=True)

        try:
            flat = torch.cat([b.reshape(-1) for b in bufs])
            out, work = _gather(flat, self.world, self.group, async_op=True)
        except BaseException as e:
            for _, fut in pending:
                fut.set_exception(e)
            raise
        return work.get_future().then(finish)


def comm_hook(rule: Rule, mode: str = "bucket", *, group=None, attack=None,
              byzantine_ranks: Sequence[int] = ()) -> RobustCommHook:
    """A DDP communication hook aggregating gradients with ``rule``::

        ddp.register_comm_hook(state=None, hook=ra.distributed.comm_hook(ra.CoordinateMedian()))

    ``mode="bucket"`` (default): each of DDP's gradient buckets is all-gathered as
    ``Tensor[world, m]`` and aggregated on its own, overlapping with the backward pass. Exact
    for coordinate-wise rules (mean, median, trimmed mean: the same as aggregating the whole
    gradient); for distance-based rules (Krum, Multi-Krum, Bulyan, geometric median, centered
    clipping) it is a per-bucket variant: Krum may select a different rank for each bucket.

    ``mode="whole"``: the hook returns pending futures for all buckets but the last, and at the
    last bucket gathers the concatenation of all buckets once and aggregates the whole gradient,
    so Krum selects one rank for all parameters, exactly as :func:`robust_all_reduce`. This stays
    within DDP's hook contract (a future per bucket holding a tensor of its shape) because DDP
    launches buckets in order and waits for their futures only after the last one; the price is
    no overlap of communication with the backward pass.

    Stateful rules (CenteredClipping's center, Bucketing's generator): in bucket mode each
    bucket has its own copy of the rule (``hook.bucket_rules``), hence its own state; in whole
    mode the rule's state is reset once when DDP re-buckets after the first iteration (the
    concatenated gradient's order changes then). Stateless rules are unaffected.

    ``group``: the process group (default: the world); DDP's ``state`` argument is ignored.
    ``rule.check(world)`` runs here if the process group is initialised (else at the first
    bucket). A non-finite aggregate (e.g. the mean with a NaN rank) is replaced by zeros, logged
    and counted in ``hook.skipped``: DDP requires a tensor, so with momentum or weight decay the
    optimizer still moves; check ``hook.skipped`` to skip the step. ``attack`` and
    ``byzantine_ranks`` simulate Byzantine ranks (module docstring), per bucket or whole.
    """
    return RobustCommHook(rule, mode, group, attack, byzantine_ranks)
