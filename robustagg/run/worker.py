"""The worker's computation, shared by every backend (Ray actors, Lambda handler, in-process).

A leaf of the training stack: it imports the run's data, models and attacks, never the
training loop or a backend, so that both can import it.

``build_worker(spec)`` turns a :class:`~robustagg.run.config.WorkerSpec` into a
:class:`WorkerState` (its shard, its model, its loss, its data-poisoning or fault attack);
``compute_gradient(state, params, round)`` is a pure function of (spec, params, round): the
minibatch is drawn from a generator seeded by (seed, worker id, round), so a stateless worker
that rebuilds its state every round returns the same gradient as a long-lived one.
"""
from __future__ import annotations

import contextlib
import hashlib
import time
from dataclasses import dataclass

import torch
from torch import nn

from robustagg import inputs

from .build import build_attack, build_compressor
from .data import load_dataset, partition
from .models import build_model, loss_fn
from .simulated import NAME as SIMULATED
from .simulated import SimulatedWorker


@contextlib.contextmanager
def single_thread():
    """Run torch on one thread inside the block (restored after): floating-point reductions
    then give the same bits in every process (a Ray actor, a Lambda container, the driver),
    so a run's result does not depend on the backend or on the host's core count."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def derive_seed(*parts) -> int:
    """A 63-bit seed from ``parts`` (ints/strings), stable across processes and machines
    (unlike ``hash``)."""
    digest = hashlib.sha256("/".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


@dataclass
class WorkerState:
    """A built worker: its shard ``x [m, ...]``, ``y [m]``, model, loss, attack (data or
    fault attack of a Byzantine worker, else None) and compressor (None: dense gradients)."""

    spec: object
    x: torch.Tensor
    y: torch.Tensor
    model: nn.Module
    loss: object
    num_classes: int
    attack: object = None
    compressor: object = None


def shard_indices(spec, labels: torch.Tensor) -> torch.Tensor:
    """This worker's training indices: ``spec.indices`` if given, else the partition recipe."""
    if spec.indices is not None:
        return torch.as_tensor(spec.indices, dtype=torch.long)
    return partition(labels, spec.workers, spec.partition, spec.alpha,
                     spec.shards_per_worker, spec.seed)[spec.worker_id]


def build_worker(spec, data=None) -> WorkerState:
    """Load (or take ``data``, an already loaded :class:`~robustagg.run.data.Data`) and
    keep only this worker's shard; build the model and, for a Byzantine worker, its attack.
    A simulated worker (``model="simulated"``) needs neither: :class:`SimulatedWorker`."""
    attack = (build_attack(spec.attack, spec.attack_kwargs, derive_seed(spec.seed, spec.worker_id))
              if spec.is_byzantine else None)
    comp = None
    if spec.compression != "none":
        comp = build_compressor(spec.compression, spec.compression_kwargs, spec.seed)
    if spec.model == SIMULATED:
        return SimulatedWorker.of(spec, attack, comp)
    if attack is not None and getattr(attack, "kind", None) not in ("data", "fault"):
        raise ValueError(f"worker {spec.worker_id}: attack={spec.attack!r} is not a data-poisoning "
                         f"or fault attack; model-poisoning attacks act on the server")
    if attack is not None and attack.kind == "data":
        attack = attack.for_worker(spec.worker_id, spec.workers)  # e.g. DBA's local trigger
    data = data if data is not None else load_dataset(spec.dataset, **spec.dataset_kwargs)
    idx = shard_indices(spec, data.y_train)
    model = build_model(spec.model, data.input_shape, data.num_classes, seed=spec.seed,
                        **spec.model_kwargs)
    return WorkerState(spec, data.x_train[idx].contiguous(), data.y_train[idx].contiguous(),
                       model, loss_fn(data.num_classes), data.num_classes, attack, comp)


def compute_gradient(state: WorkerState, params: torch.Tensor, round: int):
    """Gradient of the loss at ``params`` (float32 ``Tensor[d]``) on this round's minibatch.

    Returns ``(grad, loss)``: float32 contiguous ``Tensor[d]`` and a float. The minibatch is
    ``batch_size`` indices drawn without replacement (with replacement if the shard is
    smaller) by a generator seeded with ``derive_seed(seed, worker_id, round)``; a data-poisoning
    attack rewrites it before the forward pass and may then change the gradient
    (``poison_gradient``: model replacement's boost, Neurotoxin's mask). Computed on one
    thread (:func:`single_thread`).
    """
    if isinstance(state, SimulatedWorker):
        return state.gradient(params, round)
    spec = state.spec
    g = torch.Generator().manual_seed(derive_seed(spec.seed, spec.worker_id, round))
    m = len(state.x)
    if m >= spec.batch_size:
        idx = torch.randperm(m, generator=g)[: spec.batch_size]
    else:
        idx = torch.randint(m, (spec.batch_size,), generator=g)
    x, y = state.x[idx], state.y[idx]
    atk = state.attack if state.attack is not None and state.attack.kind == "data" else None
    with single_thread():
        torch.nn.utils.vector_to_parameters(params, state.model.parameters())
        if atk is None:
            return _gradient(state, x, y)
        grad, loss = _gradient(state, *atk.poison_batch(x, y, state.num_classes))
        grad = atk.poison_gradient(grad, lambda: _gradient(state, x, y)[0])
        return grad.float().contiguous(), loss


def _gradient(state: WorkerState, x, y):
    """``(gradient, loss)`` of the model (parameters already set) on the batch ``(x, y)``."""
    model = state.model
    model.zero_grad(set_to_none=True)
    loss = state.loss(model(x), y)
    loss.backward()
    return inputs.flatten_grads(model).float().contiguous(), float(loss.detach())


def fault(state: WorkerState, round: int):
    """What a fault attack does to this worker in ``round``: ``"crash"``, a delay in seconds
    (``float > 0``), or None."""
    atk = state.attack
    if atk is None or atk.kind != "fault":
        return None
    if hasattr(atk, "fails") and atk.fails(round):
        return "crash"
    delay = float(atk.delay_s(round)) if hasattr(atk, "delay_s") else 0.0
    return delay if delay > 0 else None


def timed_gradient(state: WorkerState, params: torch.Tensor, round: int, mask=None):
    """``compute_gradient`` plus its wall time: ``(grad, loss, seconds)``. With a compressor,
    ``grad`` is the message (a :class:`~robustagg.compression.SparseRow`; ``mask``: the
    round's shared coordinates, for shared-mask compressors), and the time includes the
    compression."""
    t0 = time.perf_counter()
    grad, loss = compute_gradient(state, params, round)
    if state.compressor is not None:
        with single_thread():
            grad = state.compressor.send(grad, mask)
    return grad, loss, time.perf_counter() - t0
