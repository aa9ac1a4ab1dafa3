"""Ray backend: workers are Ray actors; parameters and gradients travel through the object store.

Per round the parameters are put in the object store once (one ``ray.put`` of a float32 numpy
array, shared zero-copy by every actor on the node); each worker answers with a contiguous
float32 numpy array (zero-copy on the way back too: Ray copies torch tensors when pickling,
numpy arrays it does not). Asked with ``split`` (a sharded server's column ranges), a worker
answers its gradient's slices as separate objects and the backend fetches only the small
metadata beside them: each shard fetches its own slices from the object store of the worker's
node (:meth:`RayBackend.compute`). A compressing worker answers with its message's numpy arrays
(values, or indices and values), and a shared mask is put in the object store once per round
beside the parameters. The round's deadline is ``timeout_s`` after the round's start (before
the parameters are published); what has not been seen by then (late, crashed, malformed) is an
omission. Actors are created with ``max_restarts`` so that a crashed worker process is
restarted by Ray, rebuilds its shard at its next call (from the worker specs and the dataset
the backend keeps in the object store until ``close``) and rejoins the following rounds.

An actor process hosts the workers of one run at a time: ``setup`` builds them from the run's
specs and dataset (both passed as object-store references), so the actors of a finished run
can serve the next one. With a :class:`~robustagg.backends.ray_pool.WorkerPool` the backend
takes its actors from the pool and gives the healthy ones back at ``close`` (a sweep's cells
share them: :mod:`robustagg.backends.ray_pool`); without one it starts its own and kills them.

Resources are fractional (``cpus_per_actor``, default: the cluster's CPUs shared evenly
among the actors) so that 10-20 workers share 2 cores. ``workers_per_actor > 1`` packs
several logical workers into one process (each still answers separately) for large n on small
machines; a crash then takes down all workers of that actor for the round.
"""
from __future__ import annotations

import os
import time
import warnings

import numpy as np
import torch

from robustagg.run.data import Data
from robustagg.run.worker import build_worker, fault, timed_gradient

from .base import Arrivals, Backend, check_answer, check_gradient, check_split, spec_compressor

_DATA_FIELDS = ("x_train", "y_train", "x_test", "y_test")
RELEASE_TIMEOUT_S = 10.0  # for a pooled actor to finish a late answer and drop its run


def put_dataset(data):
    """One copy of ``data`` (a ``Data``, or None) in the object store, as numpy arrays (which Ray
    moves without copying) that :meth:`_RayWorker.setup` reads back; None for None."""
    import ray

    if data is None:
        return None
    return ray.put({**{k: getattr(data, k).numpy() for k in _DATA_FIELDS},
                    "num_classes": data.num_classes})


class _RayWorker:
    """One actor process hosting the logical workers (by worker id) of one run at a time."""

    def __init__(self):
        torch.set_num_threads(1)
        self.run, self.states = None, {}

    def setup(self, run: tuple) -> int:
        """Build the workers of ``run``: ``(token, [specs ref, data ref or None])`` (references
        in a list, which Ray passes unresolved); returns this process's id."""
        import ray

        token, (specs_ref, data_ref) = run
        specs = ray.get(specs_ref)
        shared = None
        if data_ref is not None:
            data = ray.get(data_ref)
            # the object store hands out read-only arrays; each worker keeps a copy of its shard
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                shared = Data(*(torch.from_numpy(data[k]) for k in _DATA_FIELDS),
                              num_classes=data["num_classes"])
        self.run, self.states = None, {}  # a failed build leaves no half-built run
        self.states = {s.worker_id: build_worker(s, shared) for s in specs}
        self.run = token
        return os.getpid()

    def compute(self, worker_id: int, round: int, params: np.ndarray, mask, run: tuple,
                split=None):
        """``(gradient, loss, seconds)``; with ``split``, :func:`split_answer`'s k + 1 values."""
        if run[0] != self.run:  # restarted by Ray since setup: rebuild this run's workers
            self.setup(run)
        state = self.states[worker_id]
        act = fault(state, round)
        if act == "crash":
            os._exit(1)  # a real process death: Ray sees the actor die and restarts it
        if act is not None:
            time.sleep(act)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # read-only view; only read from
            p = torch.from_numpy(params)
            m = None if mask is None else torch.from_numpy(mask)
        grad, loss, secs = timed_gradient(state, p, round, m)
        if split is not None:
            return split_answer(grad, loss, secs, len(params), split)
        return (grad.numpy() if state.compressor is None else grad.message()), loss, secs

    def release(self) -> int:
        """Drop the run's workers; returns this process's id."""
        self.run, self.states = None, {}
        return os.getpid()

    def ping(self):
        return os.getpid()


def split_answer(grad, loss: float, secs: float, d: int, split: list) -> tuple:
    """A worker's answer cut into the k column ranges ``split``: ``((ok, loss, seconds),
    slice 0, ..., slice k-1)``, each slice a numpy view of the float32 gradient (Ray stores a
    numpy view's own bytes; a torch view would be pickled with its whole storage). ``ok``:
    whether ``grad`` was a float32 ``[d]`` vector; if not, the slices are None."""
    g = check_gradient(grad, d)
    if g is None:
        return (False, loss, secs), *([None] * len(split))
    g = g.numpy()
    return (True, loss, secs), *(g[lo:hi] for lo, hi in split)


def _arrived_by(refs: list, deadline: float) -> tuple[list, list]:
    """``(ready, late)``: the answers seen by ``deadline`` (a ``time.perf_counter()`` value),
    and the others. An answer counts only if it was seen ready before the deadline passed,
    even when a wait returns late (a loaded machine): each wait's result is checked against
    the clock, and what one seen after the deadline brought is late."""
    import ray

    ready, pending = [], refs
    while pending:
        left = deadline - time.perf_counter()
        if left <= 0:
            break
        done, pending = ray.wait(pending, num_returns=1, timeout=left)
        if done and pending:  # and whatever else is already there, in one call
            more, pending = ray.wait(pending, num_returns=len(pending), timeout=0)
            done += more
        if time.perf_counter() > deadline:
            pending = done + pending
            break
        ready += done
    return ready, pending


def get_each(refs: dict) -> tuple[dict, dict]:
    """``({key: value}, {key: exception})`` of ``refs`` (``{key: ObjectRef}``), fetched in one
    ``ray.get``; if that fails, one reference at a time, so that each failure (an actor that
    died or is being restarted, an object that was lost) is told under its own key."""
    import ray

    keys = list(refs)
    try:
        return dict(zip(keys, ray.get([refs[k] for k in keys]))), {}
    except ray.exceptions.RayError:
        pass
    values, errors = {}, {}
    for k in keys:
        try:
            values[k] = ray.get(refs[k])
        except ray.exceptions.RayError as e:
            errors[k] = e
    return values, errors


def _fetch(ready: list, refs: dict, errors: dict) -> dict:
    """``{worker id: answer}`` of the ``ready`` references (``refs``: reference -> worker id),
    :func:`get_each`'s failures written to ``errors`` under their worker."""
    import ray

    values, failed = get_each({refs[r]: r for r in ready})
    for i, e in failed.items():
        errors[i] = "restarting (actor being restarted by Ray)" \
            if isinstance(e, ray.exceptions.ActorUnavailableError) \
            else f"crashed ({type(e).__name__})"
    return values


class RayBackend(Backend):
    """Workers as Ray actors. Needs ``ray`` initialised in this process (the training loop or
    :func:`robustagg.backends.ray_cluster.ensure_ray` does it). It takes ``split``
    (:meth:`compute`). ``pool``: a
    :class:`~robustagg.backends.ray_pool.WorkerPool` to take the actors from and give them
    back to (None: start them here, kill them at ``close``)."""

    splits = True

    def __init__(self, workers_per_actor: int = 1, cpus_per_actor: float | None = None,
                 max_restarts: int = 3, start_timeout_s: float = 300.0, pool=None):
        if not isinstance(workers_per_actor, int) or workers_per_actor < 1:
            raise ValueError(f"RayBackend: workers_per_actor must be an int >= 1, "
                             f"got workers_per_actor={workers_per_actor!r}")
        if cpus_per_actor is not None and not cpus_per_actor > 0:
            raise ValueError(f"RayBackend: cpus_per_actor must be > 0, got {cpus_per_actor!r}")
        self.workers_per_actor = workers_per_actor
        self.cpus_per_actor = cpus_per_actor
        self.max_restarts = max_restarts
        self.start_timeout_s = start_timeout_s
        self.pool = pool
        self.actors = []
        self.actor_of = {}  # worker id -> its actor
        self.run_of = {}  # worker id -> its actor's setup (see _RayWorker.setup)
        self.pids = []  # each actor's process at setup: another one at close means a restart
        self.options = None
        self.compressor = None

    def start(self, specs, data=None):
        import ray

        if not ray.is_initialized():
            raise RuntimeError("RayBackend.start: ray is not initialised (use "
                               "robustagg.backends.ray_cluster.ensure_ray first)")
        self.compressor = spec_compressor(specs)
        groups = [specs[k:k + self.workers_per_actor]
                  for k in range(0, len(specs), self.workers_per_actor)]
        cpus = self.cpus_per_actor
        if cpus is None:  # leave a share for the server
            cpus = max(ray.cluster_resources().get("CPU", 1.0) / (len(groups) + 1), 0.01)
        self.options = {"num_cpus": round(cpus, 4), "max_restarts": self.max_restarts,
                        "max_task_retries": 0}
        # One copy of the dataset in the object store instead of one load per actor. The
        # references are held until close(): an actor restarted by Ray rebuilds its workers
        # from them, and an object nobody holds any more has been freed by then.
        data_ref = put_dataset(data)
        token = os.urandom(8).hex()  # names this run to the actors
        runs = [(token, [ray.put(g), data_ref]) for g in groups]
        reused = self.pool.take(self.options, len(groups)) if self.pool is not None else []
        cls = ray.remote(_RayWorker).options(**self.options)
        self.actors = reused + [cls.remote() for _ in range(len(groups) - len(reused))]
        self.actor_of = {s.worker_id: self.actors[k] for k, g in enumerate(groups) for s in g}
        self.run_of = {s.worker_id: runs[k] for k, g in enumerate(groups) for s in g}
        self.pids = ray.get([a.setup.remote(run) for a, run in zip(self.actors, runs)],
                            timeout=self.start_timeout_s)

    def compute(self, round, params, worker_ids, timeout_s, mask=None, split=None):
        """As :meth:`Backend.compute`. Without ``split`` each worker answers its gradient, and
        the answers seen by the deadline are fetched here. With ``split`` each worker's call
        returns k + 1 objects (:func:`split_answer`): only the small first one (its loss, time
        and whether its gradient was a float32 ``[d]`` vector) is waited on and fetched here,
        and :attr:`Arrivals.slices` holds the k others, unfetched: its slices stay in the
        object store of the worker's node until the shard that owns each fetches it."""
        import ray

        out = Arrivals()
        d = params.numel()
        if split is not None:
            if self.compressor is not None:
                raise ValueError("RayBackend.compute: split takes dense gradients; the workers "
                                 "compress theirs")
            split = check_split(split, d)
        t0 = time.perf_counter()
        deadline = t0 + timeout_s  # from the round's start: publishing counts too
        ref = ray.put(params.numpy())  # published once; every actor reads the same object
        mask_ref = None if mask is None else ray.put(mask.numpy())
        if split is None:
            calls = {i: [self.actor_of[i].compute.remote(i, round, ref, mask_ref,
                                                         self.run_of[i])]
                     for i in worker_ids}
        else:
            calls = {i: self.actor_of[i].compute.options(num_returns=len(split) + 1).remote(
                i, round, ref, mask_ref, self.run_of[i], split) for i in worker_ids}
        refs = {c[0]: i for i, c in calls.items()}  # the answer, or its small first part
        ready, pending = _arrived_by(list(refs), deadline)
        for i, answer in _fetch(ready, refs, out.errors).items():
            g = None
            if isinstance(answer, tuple) and len(answer) == 3 and \
                    all(isinstance(v, float) for v in answer[1:]):
                if split is None:
                    g = check_answer(answer[0], d, self.compressor)
                elif answer[0] is True:
                    g = calls[i][1:]
            if g is None:
                out.errors[i] = "malformed answer"
                continue
            (out.grads if split is None else out.slices)[i] = g
            out.losses[i], out.compute_s[i] = answer[1], answer[2]
        for r in pending:
            out.errors[refs[r]] = f"timeout (> {timeout_s} s)"
            ray.cancel(r)  # drops it if still queued; a running call finishes and is ignored
        out.wall_s = time.perf_counter() - t0
        return out

    def close(self):
        """Kill the actors, or with a pool give back those still in the process they were set
        up in (one restarted by Ray, or still busy after ``RELEASE_TIMEOUT_S``, is killed)."""
        import ray

        keep = []
        if self.pool is not None and self.actors:
            keep = _still_set_up(self.actors, self.pids, RELEASE_TIMEOUT_S)
            self.pool.give(self.options, keep)
        for a in self.actors:
            if not any(a is k for k in keep):
                ray.kill(a, no_restart=True)
        self.actors, self.actor_of, self.run_of, self.pids = [], {}, {}, []


def _still_set_up(actors: list, pids: list, timeout_s: float) -> list:
    """The ``actors`` that dropped their run within ``timeout_s`` in the process they were set
    up in (``pids``); not those restarted by Ray since, dead, or still busy."""
    import ray

    refs = {a.release.remote(): (a, pid) for a, pid in zip(actors, pids)}
    ready, _ = ray.wait(list(refs), num_returns=len(refs), timeout=timeout_s)
    out = []
    for r in ready:
        a, pid = refs[r]
        try:
            if ray.get(r) == pid:
                out.append(a)
        except ray.exceptions.RayError:  # died meanwhile
            continue
    return out
