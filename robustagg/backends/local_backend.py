"""In-process backend: the workers run one after another in the server's process.

No parallelism and no transport, so it is the reference the other backends are compared with
(same seed, same gradients) and the fast path for tests. Faults are simulated: a crash is an
omission; a delay longer than the round timeout is an omission (without waiting it out), a
shorter one is slept.
"""
from __future__ import annotations

import time

from robustagg.run.worker import build_worker, fault, timed_gradient

from .base import Arrivals, Backend, check_answer, spec_compressor


class LocalBackend(Backend):
    """Runs :func:`robustagg.run.worker.compute_gradient` for each worker in turn."""

    def __init__(self):
        self.states = {}
        self.compressor = None

    def start(self, specs, data=None):
        self.states = {s.worker_id: build_worker(s, data) for s in specs}
        self.compressor = spec_compressor(specs)

    def compute(self, round, params, worker_ids, timeout_s, mask=None):
        out = Arrivals()
        t0 = time.perf_counter()
        for i in worker_ids:
            act = fault(self.states[i], round)
            if act == "crash":
                out.errors[i] = "crashed"
                continue
            if act is not None:
                if act >= timeout_s:
                    out.errors[i] = f"timeout ({act:.3g} s late)"
                    continue
                time.sleep(act)
            g, out.losses[i], out.compute_s[i] = timed_gradient(self.states[i], params, round, mask)
            out.grads[i] = check_answer(g, params.numel(), self.compressor)
        out.wall_s = time.perf_counter() - t0
        return out

    def close(self):
        self.states = {}
