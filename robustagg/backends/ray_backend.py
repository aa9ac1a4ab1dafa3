"""Ray backend: workers are Ray actors; parameters and gradients travel through the object store.

Per round the parameters are put in the object store once (one ``ray.put`` of a float32 numpy
array, shared zero-copy by every actor on the node); each worker answers with a contiguous
float32 numpy array (zero-copy on the way back too: Ray copies torch tensors when pickling,
numpy arrays it does not); a compressing worker answers with its message's numpy arrays
(values, or indices and values), and a shared mask is put in the object store once per round
beside the parameters. The round's deadline is ``timeout_s`` after the round's start (before
the parameters are published); what has not been seen by then (late, crashed, malformed) is an
omission. Actors are created with ``max_restarts`` so that a crashed worker process is
restarted by Ray, rebuilds its shard in ``__init__`` (from the dataset the backend keeps in the
object store until ``close``) and rejoins the following rounds.

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

from .base import Arrivals, Backend, check_answer, spec_compressor

_DATA_FIELDS = ("x_train", "y_train", "x_test", "y_test")


class _RayWorker:
    """One actor process hosting one or more logical workers (by worker id)."""

    def __init__(self, specs: list, data: dict | None):
        torch.set_num_threads(1)
        shared = None
        if data is not None:
            # the object store hands out read-only arrays; each worker keeps a copy of its shard
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                shared = Data(*(torch.from_numpy(data[k]) for k in _DATA_FIELDS),
                              num_classes=data["num_classes"])
        self.states = {s.worker_id: build_worker(s, shared) for s in specs}

    def compute(self, worker_id: int, round: int, params: np.ndarray, mask=None):
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
        return (grad.numpy() if state.compressor is None else grad.message()), loss, secs

    def ping(self):
        return os.getpid()


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


class RayBackend(Backend):
    """Workers as Ray actors. Needs ``ray`` initialised in this process (the training loop or
    :func:`robustagg.backends.ray_cluster.ensure_ray` does it)."""

    def __init__(self, workers_per_actor: int = 1, cpus_per_actor: float | None = None,
                 max_restarts: int = 3, start_timeout_s: float = 300.0):
        if not isinstance(workers_per_actor, int) or workers_per_actor < 1:
            raise ValueError(f"RayBackend: workers_per_actor must be an int >= 1, "
                             f"got workers_per_actor={workers_per_actor!r}")
        if cpus_per_actor is not None and not cpus_per_actor > 0:
            raise ValueError(f"RayBackend: cpus_per_actor must be > 0, got {cpus_per_actor!r}")
        self.workers_per_actor = workers_per_actor
        self.cpus_per_actor = cpus_per_actor
        self.max_restarts = max_restarts
        self.start_timeout_s = start_timeout_s
        self.actors = []
        self.actor_of = {}
        self.data_ref = None
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
        # One copy in the object store instead of one load per actor. The reference is held
        # until close(): Ray re-runs an actor's __init__ with the same arguments when it
        # restarts the actor, and an argument nobody holds any more has been freed by then.
        self.data_ref = None
        if data is not None:
            self.data_ref = ray.put({**{k: getattr(data, k).numpy() for k in _DATA_FIELDS},
                                     "num_classes": data.num_classes})
        cls = ray.remote(_RayWorker).options(num_cpus=round(cpus, 4),
                                             max_restarts=self.max_restarts, max_task_retries=0)
        self.actors = [cls.remote(g, self.data_ref) for g in groups]
        self.actor_of = {s.worker_id: self.actors[k] for k, g in enumerate(groups) for s in g}
        ray.get([a.ping.remote() for a in self.actors], timeout=self.start_timeout_s)

    def compute(self, round, params, worker_ids, timeout_s, mask=None):
        import ray

        out = Arrivals()
        d = params.numel()
        t0 = time.perf_counter()
        deadline = t0 + timeout_s  # from the round's start: publishing counts too
        ref = ray.put(params.numpy())  # published once; every actor reads the same object
        mask_ref = None if mask is None else ray.put(mask.numpy())
        refs = {self.actor_of[i].compute.remote(i, round, ref, mask_ref): i for i in worker_ids}
        ready, pending = _arrived_by(list(refs), deadline)
        for r in ready:
            i = refs[r]
            try:
                answer = ray.get(r)
            except ray.exceptions.ActorUnavailableError:
                out.errors[i] = "restarting (actor being restarted by Ray)"
                continue
            except ray.exceptions.RayError as e:
                out.errors[i] = f"crashed ({type(e).__name__})"
                continue
            g = None
            if isinstance(answer, tuple) and len(answer) == 3 and \
                    all(isinstance(v, float) for v in answer[1:]):
                g = check_answer(answer[0], d, self.compressor)
            if g is None:
                out.errors[i] = "malformed answer"
                continue
            out.grads[i], out.losses[i], out.compute_s[i] = g, answer[1], answer[2]
        for r in pending:
            out.errors[refs[r]] = f"timeout (> {timeout_s} s)"
            ray.cancel(r)  # drops it if still queued; a running call finishes and is ignored
        out.wall_s = time.perf_counter() - t0
        return out

    def close(self):
        import ray

        for a in self.actors:
            ray.kill(a, no_restart=True)
        self.actors, self.actor_of, self.data_ref = [], {}, None
