"""The parameter server: model, optimizer, rule, attack, round counter; one round per ``step``.

A round (docs/architecture.md, "One round"): publish the parameters once through the backend,
collect what arrived by the deadline into one preallocated ``[n, d]`` buffer (rows in worker-id
order, honest workers first since workers ``n-f .. n-1`` are the Byzantine ones), optionally
fold each worker's gradient into its worker momentum, let a model-poisoning attack write the f
Byzantine rows of the buffer (it reads the honest rows of the round in place: the omniscient
adversary), aggregate the buffer's filled rows, and apply a finite aggregate with the optimizer
through :func:`robustagg.optim.apply_aggregate` (the path ``RobustOptimizer`` takes); a
non-finite one is skipped and logged.

Worker momentum (Karimireddy, He & Jaggi, "Learning from History for Byzantine Robust
Optimization", ICML 2021, Alg. 2): ``m_i^t = (1 - β) g_i^t + β m_i^{t-1}``, ``m_i^1 = g_i^1``,
and the rule aggregates the m_i. It is kept here, per worker id, rather than on the workers, so
that workers stay stateless (a Lambda invocation or a restarted actor has no memory); for an
honest worker the vector is the same either way, and a Byzantine worker's is replaced anyway.

With compression (``TrainConfig.compression``) the workers send sparse messages and
:class:`robustagg.compression.Receiver` stands in for the buffer: it picks the round's shared
mask (published with the parameters), turns the messages into the rows the rule aggregates
(the ``[n, k]`` sub-matrix under a shared mask), lets a model attack forge messages from the
honest messages, and returns the aggregate in ``R^d``; with ``worker_momentum`` (shared masks
only) it keeps each worker's momentum of its messages instead (RoSDHB). The record then holds
the payload bytes each worker sent (``bytes_sent``, the Byzantine workers' forged messages
included) and their sum (``bytes_round``).

The rule's inputs besides the rows: with ``weighted`` each row's weight is its worker's shard
size; with ``server_root_samples`` the server keeps that many training samples out of every
shard (its root set, Cao et al., NDSS 2021) and, for a rule with ``server_grad`` (FLTrust),
computes a gradient on a minibatch of it each round as a worker would (worker id -1); a rule
with ``worker_ids`` (FoolsGold's history) is told which worker each row is. Under a backdoor
attack (``attack.backdoor``) the evaluation adds the attack success rate: the share of the test
inputs whose label is not the target that the model assigns to the target once the whole
trigger is stamped on them.

The class is plain Python; the Ray driver wraps it as an actor (``ray.remote(ParameterServer)``).
"""
from __future__ import annotations

import copy
import os
import time

import torch

from robustagg import kernels
from robustagg.backends.base import make_backend
from robustagg.compression import Receiver
from robustagg.optim import apply_aggregate
from robustagg.run.config import WorkerSpec
from robustagg.run.data import load_dataset, partition, root_split
from robustagg.run.models import build_model, loss_fn
from robustagg.run.worker import build_worker, compute_gradient, derive_seed, single_thread

from .snapshot import StateError, restore, snapshot


def fold_momentum(store: dict, i: int, g: torch.Tensor, beta: float) -> torch.Tensor:
    """Worker i's vector of the round: ``g``, or with ``beta`` its momentum
    ``(1 - β) g + β m_i`` (``g`` itself the first time), kept in ``store`` by worker id."""
    if not beta:
        return g
    m = store.get(i)
    store[i] = g.clone() if m is None else m.mul_(beta).add_(g, alpha=1 - beta)
    return store[i]


def cores() -> int:
    """The cores this process may run on (its CPU affinity): the native kernels' threads on the
    server and its shards. Not torch's thread setting: Ray sets ``OMP_NUM_THREADS=1`` in its
    actors, which would leave the kernels of a server running as an actor one core."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def process_memory_mb() -> dict:
    """This process's memory in MB: ``peak`` (VmHWM, the peak resident set: it counts the
    object-store pages the process read, which are shared memory) and ``private`` (RssAnon
    now: the process's own heap)."""
    out = {}
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                if key in ("VmHWM", "RssAnon"):
                    out["peak" if key == "VmHWM" else "private"] = int(value.split()[0]) / 1024
    except OSError:  # not Linux: nothing to report
        pass
    return out


class ParameterServer:
    """Holds the training state of one run of ``cfg`` (a :class:`TrainConfig`) and drives the
    workers through ``backend`` (a :class:`~robustagg.backends.base.Backend`; default: the one
    ``cfg.backend`` names, built with ``cfg.backend_kwargs``)."""

    def __init__(self, cfg, backend=None):
        self.cfg = cfg
        data = load_dataset(cfg.dataset, **cfg.dataset_kwargs)
        self.x_test, self.y_test, self.num_classes = data.x_test, data.y_test, data.num_classes
        self.loss = loss_fn(data.num_classes)
        self.model = build_model(cfg.model, data.input_shape, data.num_classes, seed=cfg.seed,
                                 **cfg.model_kwargs)
        self.parameters = [p for p in self.model.parameters()]
        self.optimizer = self._optimizer()
        self.rule = cfg.build_rule()
        attack = cfg.build_attack()
        self.byzantine = set(cfg.byzantine_ids)
        self.model_attack = attack if attack is not None and attack.kind == "model" else None
        self.attacked = attack is not None  # without an attack the "Byzantine" ids act honestly
        self.backdoor = attack if getattr(attack, "backdoor", False) else None
        if self.backdoor is not None:
            self.backdoor.trigger(self.x_test[:1])  # a dataset of no images fails here, clearly
        self.round = 0
        self.worker_momentum: dict[int, torch.Tensor] = {}
        # the round's vectors, row k for the k-th smallest worker id present (allocated once)
        d = sum(p.numel() for p in self.parameters)
        compressor = cfg.build_compressor()
        self.receiver = None if compressor.name == "none" else \
            Receiver(compressor, cfg.workers, d, self.rule, momentum=cfg.worker_momentum)
        self.rows = self._buffer(cfg.workers, d) if self.receiver is None else None
        self.backend = backend or make_backend(cfg.backend, **cfg.backend_kwargs)
        root, shards = self._split(data)
        self.shard_sizes = [len(s) for s in shards]
        # the server's root set, as a worker's state (worker id -1: seeds no worker draws)
        self.root = None if root is None else build_worker(WorkerSpec.of(cfg, -1, root.tolist()),
                                                           data)
        worker_attack = attack is not None and attack.kind in ("data", "fault")
        self.backend.start([WorkerSpec.of(cfg, i, shards[i].tolist(), worker_attack)
                            for i in range(cfg.workers)], data=data)

    def _buffer(self, n: int, d: int):
        """The round's ``[n, d]`` rows (a sharded server keeps them in its shards instead)."""
        return torch.empty(n, d)

    def _optimizer(self):
        c, params = self.cfg, self.parameters
        if c.optimizer == "adam":
            return torch.optim.Adam(params, lr=c.lr, weight_decay=c.weight_decay)
        return torch.optim.SGD(params, lr=c.lr, momentum=c.momentum, weight_decay=c.weight_decay)

    def _split(self, data):
        """``(root, shards)``: the server's root set (None without one) and the workers'
        training indices, the partition of the samples outside the root set."""
        c = self.cfg
        root, rest = None, torch.arange(len(data.y_train))
        if c.server_root_samples:
            root, rest = root_split(len(rest), c.server_root_samples, derive_seed(c.seed, "root"))
        shards = partition(data.y_train[rest], c.workers, c.partition, c.alpha,
                           c.shards_per_worker, c.seed)
        return root, [rest[s] for s in shards]

    # ---- one round ----
    def params(self) -> torch.Tensor:
        """The model as one float32 vector ``Tensor[d]``."""
        return torch.nn.utils.parameters_to_vector(self.parameters).detach().float()

    def _asked(self):
        """Workers asked for a gradient: everyone, except Byzantine workers whose rows a
        model attack writes from the honest ones (they need not compute)."""
        n = self.cfg.workers
        if self.model_attack is not None and self.model_attack.omniscient:
            return [i for i in range(n) if i not in self.byzantine]
        return list(range(n))

    def _fill(self, grads: dict) -> list[int]:
        """Write each arrived vector (a gradient, or with ``worker_momentum`` the worker's
        momentum) into ``self.rows`` in worker-id order; returns the ids of the rows."""
        ids = sorted(grads)
        for k, i in enumerate(ids):
            self.rows[k].copy_(fold_momentum(self.worker_momentum, i, grads[i],
                                             self.cfg.worker_momentum))
        return ids

    def _check_arrivals(self, ids, arr, r) -> None:
        """Stop the run when the rule's bound fails for the ``ids`` that arrived in round r,
        naming the missing workers and why they are missing."""
        c = self.cfg
        try:
            self.rule.check(len(ids))
        except ValueError as e:
            missing = sorted(set(range(c.workers)) - set(ids))
            raise RuntimeError(f"round {r}: only {len(ids)} of {c.workers} workers answered within "
                               f"round_timeout_s={c.round_timeout_s} (missing {missing}: "
                               f"{arr.errors}); {e}") from None

    def step(self) -> dict:
        """Run one round; return its metrics record (plain data). torch runs on one thread, like
        the workers' (its reductions' bits depend on the thread count), and the native kernels
        on every core of the process (:func:`cores`; theirs do not), so results do not depend on
        where the server runs or on its core count."""
        with single_thread(), kernels.kernel_threads(cores()):
            return self._step()

    def _step(self) -> dict:
        c, r = self.cfg, self.round
        t0 = time.perf_counter()
        rx = self.receiver
        mask = None if rx is None else rx.begin(r)
        params = self.params().contiguous()
        arr = self.backend.compute(r, params, self._asked(), c.round_timeout_s,
                                   **({} if mask is None else {"mask": mask}))
        t1 = time.perf_counter()
        ids = self._fill(arr.grads) if rx is None else rx.fill(arr.grads)
        t_fill = time.perf_counter()
        honest_ids = [i for i in ids if i not in self.byzantine]
        h = len(honest_ids)
        if self.model_attack is not None and rx is not None:
            rx.forge(self.model_attack, h, len(ids), len(self.byzantine), self.rule)
            ids = honest_ids + sorted(self.byzantine)
        elif self.model_attack is not None:
            # omniscient: the honest rows; otherwise the Byzantine workers' own honest gradients
            seen = self.rows[:h] if self.model_attack.omniscient else self.rows[h:len(ids)]
            if not len(seen):
                raise RuntimeError(f"round {r}: no gradient arrived for attack={c.attack!r} to see")
            forged = self.model_attack(seen, len(self.byzantine), rule=self.rule)
            if not self.model_attack.omniscient and \
                    forged.untyped_storage().data_ptr() == self.rows.untyped_storage().data_ptr():
                forged = forged.clone()  # may be a view of the rows it is about to overwrite
            self.rows[h:h + len(self.byzantine)].copy_(forged)
            ids = honest_ids + sorted(self.byzantine)
        self._check_arrivals(ids, arr, r)
        # every message of a round has the same size (forged ones too: a valid message)
        sent = {i: 4 * params.numel() if rx is None else rx.message_bytes for i in ids}
        x = self.rows[:len(ids)] if rx is None else rx.matrix(ids)
        agg = self._aggregate(x, ids, params, r)
        t2 = time.perf_counter()
        full = agg if rx is None else rx.expand(agg)
        finite = apply_aggregate(self.parameters, full)
        if finite:
            for group in self.optimizer.param_groups:
                group["lr"] = c.lr_at(r)
            self.optimizer.step()
        if rx is not None:
            rx.end(full.detach(), finite)
        t3 = time.perf_counter()
        record = self._influence(agg, x, ids, honest_ids)
        self.round += 1
        compute = max(arr.compute_s.values(), default=0.0)
        honest_losses = [arr.losses[i] for i in honest_ids if i in arr.losses]
        record.update(
            round=r, arrived=len(arr.grads), asked=len(self._asked()),
            omitted={str(i): why for i, why in sorted(arr.errors.items())},
            skipped="" if finite else "non-finite aggregate",
            train_loss=sum(honest_losses) / len(honest_losses) if honest_losses else None,
            compute_s=compute, transport_s=max(arr.wall_s - compute, 0.0),
            backend_s=t1 - t0, aggregation_s=t2 - t1, step_s=t3 - t2, fill_s=t_fill - t1,
            compute_sum_s=sum(arr.compute_s.values()), memory_mb=[process_memory_mb()],
            bytes_sent={str(i): b for i, b in sorted(sent.items())},
            bytes_round=sum(sent.values()))
        return record

    def _aggregate(self, x, ids, params, r):
        """The rule on the rows ``x`` of workers ``ids``, given what else it takes: weights, the
        server's gradient, the worker ids."""
        inner = getattr(self.rule, "rule", self.rule)  # the rule behind pre-aggregations
        if hasattr(inner, "server_grad") and self.root is not None:
            inner.server_grad, _ = compute_gradient(self.root, params, r)
        if hasattr(inner, "worker_ids") and \
                all(p.per_worker for p in getattr(self.rule, "pre", [])):
            inner.worker_ids = list(ids)
        if self.cfg.weighted:
            return self.rule(x, weights=[self.shard_sizes[i] for i in ids])
        return self.rule(x)

    def _influence(self, agg, x, ids, honest_ids) -> dict:
        """Attack influence: the rule's selection (as worker ids, when rows still map to
        workers), the share of the attacking workers' vectors among it (None without an attack:
        then every worker is honest), and ``‖agg - honest mean‖₂``."""
        record = self._selection(ids)
        dist = None
        if honest_ids:
            # Byzantine ids are the largest, so the honest rows are the first ones: a view
            honest_mean = x[: len(honest_ids)].mean(0)
            dist = float((agg - honest_mean).double().norm())
        return {**record, "dist_honest_mean": dist}

    def _selection(self, ids) -> dict:
        """The rule's selection as worker ids (when rows still map to workers) and the share
        of the attacking workers' vectors among it."""
        sel = self.rule.selected
        selected = None
        if sel is not None and len(sel) and int(sel.max()) < len(ids) and \
                all(p.out_n(len(ids)) == len(ids) for p in getattr(self.rule, "pre", [])):
            selected = [ids[int(k)] for k in sel.flatten().tolist()]
        share = None if not (selected and self.attacked) else \
            sum(i in self.byzantine for i in selected) / len(selected)
        return {"selected": selected, "byzantine_share": share}

    @torch.no_grad()
    def evaluate(self) -> dict:
        """Test loss and (classification) accuracy of the current model; under a backdoor
        attack also its attack success rate."""
        out = self.model(self.x_test)
        res = {"test_loss": float(self.loss(out, self.y_test))}
        if self.num_classes > 0:
            res["test_acc"] = float((out.argmax(1) == self.y_test).float().mean())
        if self.backdoor is not None:
            target = self.backdoor.target
            keep = self.y_test != target
            hit = self.model(self.backdoor.trigger(self.x_test[keep])).argmax(1) == target
            res["attack_success_rate"] = float(hit.float().mean())
        return res

    # ---- checkpoints ----
    def state_dict(self) -> dict:
        """Everything a resumed run needs, as tensors and plain data (what
        ``torch.load(weights_only=True)`` reads): model, optimizer, the rule's and the attack's
        state (:func:`~robustagg.training.snapshot.snapshot`: their generators, histories,
        selections), worker momentum, compression memory, round."""
        return {"round": self.round, "model": copy.deepcopy(self.model.state_dict()),
                "optimizer": copy.deepcopy(self.optimizer.state_dict()),
                "rule": snapshot(self.rule),
                "attack": None if self.model_attack is None else snapshot(self.model_attack),
                "worker_momentum": {i: m.clone() for i, m in self.worker_momentum.items()},
                "compression": None if self.receiver is None else self.receiver.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        """Continue from ``state`` (a :meth:`state_dict` of a run with the same settings): the
        rule and attack built from this run's settings take the saved state."""
        if (state["attack"] is None) != (self.model_attack is None):
            raise StateError(f"the checkpoint {'has no' if state['attack'] is None else 'has a'} "
                             f"model attack, this run {'has one' if self.model_attack else 'none'}")
        self.round = state["round"]
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        restore(self.rule, state["rule"])
        if self.model_attack is not None:
            restore(self.model_attack, state["attack"])
        self.worker_momentum = {int(i): m.clone() for i, m in state["worker_momentum"].items()}
        if self.receiver is not None and state.get("compression"):
            self.receiver.load_state_dict(state["compression"])

    def close(self) -> None:
        self.backend.close()
