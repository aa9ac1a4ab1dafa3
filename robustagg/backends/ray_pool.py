"""Ray processes kept across the runs of a sweep: started once, given each run's model, data
and rule.

Starting a Ray actor starts a Python process that imports torch: seconds per actor on a small
machine, against about 2 s for the 100 rounds of a digits run. A sweep that runs its cells one
after another in one process (Hydra's default launcher) therefore opens a :func:`sweep_pool`:

* one *host* actor holds the current run's parameter server (built from the run's config in
  the host's process, closed at the run's end), instead of one new server actor per run;
* the host keeps the worker actors of a finished run in a :class:`WorkerPool`; the next run's
  :class:`~robustagg.backends.ray_backend.RayBackend` takes them and sends them its workers'
  specs and dataset through the object store (``_RayWorker.setup``), starting new actors only
  when it needs more, or others (another CPU share).

Each run builds everything that decides its result afresh (model, optimizer, rule, attack,
worker shards, generators from the run's seed), so it gives the same bits as in fresh
processes. An actor that Ray restarted during a run (a crash), or that is still busy when the
run ends, is killed rather than kept. Closing the pool kills the host, which takes its worker
actors with it (Ray kills the actors an actor owns when it ends); the local Ray's reaper
(:mod:`robustagg.backends.ray_reaper`) covers a driver that ends without closing.
"""
from __future__ import annotations

import contextlib

from .ray_backend import RayBackend


class WorkerPool:
    """Idle worker actors, all started with the same Ray options (CPU share, restarts)."""

    def __init__(self):
        self.options = None
        self.idle = []

    def take(self, options: dict, k: int) -> list:
        """Up to ``k`` idle actors started with ``options``; idle actors started with other
        options are killed first (their CPU share may be what the new actors need)."""
        if options != self.options:
            self.clear()
            self.options = dict(options)
        out, self.idle = self.idle[:k], self.idle[k:]
        return out

    def give(self, options: dict, actors: list) -> None:
        """Keep ``actors`` (started with ``options``, their run released) for a later take."""
        if options != self.options:
            self.clear()
            self.options = dict(options)
        self.idle += actors

    def clear(self) -> None:
        """Kill the idle actors."""
        import ray

        for a in self.idle:
            ray.kill(a, no_restart=True)
        self.idle = []


class _Host:
    """Actor: the current run's parameter server, and the worker actors kept for the next run."""

    def __init__(self):
        self.server = None
        self.workers = WorkerPool()

    def open(self, server_cls, cfg) -> None:
        """Build ``server_cls(cfg, backend=...)`` (a parameter server driving a Ray backend that
        takes its actors from this host's pool)."""
        self.close()
        backend = RayBackend(**cfg.backend_kwargs, pool=self.workers)
        try:
            self.server = server_cls(cfg, backend=backend)
        except BaseException:
            backend.close()
            raise

    def call(self, method: str, *args):
        return getattr(self.server, method)(*args)

    def close(self) -> None:
        """Close the run's server (its workers go back to the pool)."""
        server, self.server = self.server, None
        if server is not None:
            server.close()

    def shutdown(self) -> None:
        """Close the run's server and kill the pooled workers."""
        self.close()
        self.workers.clear()


class Lease:
    """A run's parameter server on the pool's host, called like the training loop's server
    actor: ``call(method, *args)``, then ``kill()`` (which closes the run, keeping the host)."""

    def __init__(self, pool: "SweepPool", host):
        self.pool, self.host = pool, host

    def call(self, method: str, *args):
        import ray

        return ray.get(self.host.call.remote(method, *args))

    def kill(self) -> None:
        import ray

        try:
            ray.get(self.host.close.remote())
        except ray.exceptions.RayError:  # the host failed: the next run starts a new one
            self.pool.close()


class SweepPool:
    """The host actor of a sweep, started at the first :meth:`lease` (Ray must be initialised
    in this process by then) and reused by the following ones until :meth:`close`."""

    def __init__(self):
        self.host = None

    def lease(self, server_cls, cfg) -> Lease:
        """``server_cls(cfg)`` built on the host, for one run. A host found gone (killed, for
        example by Ray's out-of-memory killer) is replaced, once."""
        import ray

        for attempt in range(2):
            if self.host is None:
                self.host = ray.remote(_Host).options(num_cpus=0, max_restarts=0).remote()
            try:
                ray.get(self.host.open.remote(server_cls, cfg))
                return Lease(self, self.host)
            except ray.exceptions.RayTaskError:  # the run's own error: the host is fine
                raise
            except ray.exceptions.RayError:  # the host is gone: not the run's fault
                self.close()
                if attempt:
                    raise

    def close(self) -> None:
        """Kill the host and its worker actors."""
        import ray

        host, self.host = self.host, None
        if host is None or not ray.is_initialized():
            return
        try:
            ray.get(host.shutdown.remote(), timeout=60)
        except ray.exceptions.RayError:  # already gone or stuck: killing it is enough
            pass
        ray.kill(host, no_restart=True)


_active: SweepPool | None = None


@contextlib.contextmanager
def sweep_pool():
    """Within the block, Ray runs of this process (:func:`robustagg.training.train` with
    ``backend="ray"``) share one host actor and its worker actors; closed at the block's end,
    also on an error."""
    global _active
    if _active is not None:  # nested: the outer block's pool serves and closes
        yield _active
        return
    _active = SweepPool()
    try:
        yield _active
    finally:
        pool, _active = _active, None
        pool.close()


def active_pool() -> SweepPool | None:
    """The pool of the enclosing :func:`sweep_pool` block, or None outside one."""
    return _active
