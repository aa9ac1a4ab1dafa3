"""``train(cfg)``: run a configured experiment end to end and return its result.

With ``backend="ray"`` the parameter server runs as a Ray actor (and the workers as actors it
creates); Ray is the one already initialised in this process, else a local one started here on
127.0.0.1 (stopped at the end), else the cluster at ``cfg.address``. Other backends run the
server in this process. The driver loop writes the metrics, shows the progress bar, logs each
evaluation and the summary (logger ``robustagg.training``, level INFO: ``experiments.train``
writes these lines to the run folder's ``train.log``), and writes a checkpoint every
``checkpoint_every`` rounds; ``resume=True`` continues from it.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from dataclasses import dataclass

import torch

from robustagg.run.config import TrainConfig

from . import checkpoint
from .metrics import MetricsLog, format_summary, summarize
from .rundir import open_run_dir
from .server import ParameterServer
from .sharded import ShardedServer

logger = logging.getLogger("robustagg.training")


@dataclass
class TrainResult:
    """``history``: the per-round records (see :mod:`robustagg.training.metrics`);
    ``params``: the final model as one float32 vector; ``output_dir``: where the metrics,
    ``config.json``, ``summary.json`` and checkpoints are."""

    config: TrainConfig
    history: list
    summary: dict
    output_dir: str
    params: torch.Tensor

    @property
    def final_accuracy(self):
        return self.summary["final_test_acc"]


def _server_class(cfg):
    """The server of ``cfg``: sharded with ``server_shards > 1``."""
    return ShardedServer if cfg.server_shards > 1 else ParameterServer


class _Local:
    """The server in this process, called like the actor."""

    def __init__(self, cfg):
        self.server = _server_class(cfg)(cfg)

    def call(self, method, *args):
        return getattr(self.server, method)(*args)

    def kill(self):
        self.server.close()


class _Actor:
    """The server as a Ray actor (no CPU reserved: it mostly waits for the workers)."""

    def __init__(self, cfg):
        import ray

        self.ray = ray
        self.actor = ray.remote(_server_class(cfg)).options(num_cpus=0).remote(cfg)

    def call(self, method, *args):
        return self.ray.get(getattr(self.actor, method).remote(*args))

    def kill(self):
        try:
            self.call("close")  # release the backend's workers, stores and runtimes
        except Exception:  # noqa: BLE001 - a dead actor has nothing left to close
            pass
        self.ray.kill(self.actor, no_restart=True)


def _server(cfg):
    """The run's server: in this process, or for Ray a new actor, or the host of the
    enclosing sweep's pool (:func:`robustagg.backends.ray_pool.sweep_pool`)."""
    if cfg.backend != "ray":
        return _Local(cfg)
    from robustagg.backends.ray_pool import active_pool

    pool = active_pool()
    return _Actor(cfg) if pool is None else pool.lease(_server_class(cfg), cfg)


def _evaluate_now(cfg, r):
    return (r + 1) % cfg.eval_every == 0 or r + 1 == cfg.rounds


def train(cfg: TrainConfig | None = None, **overrides) -> TrainResult:
    """Train with ``cfg`` (default ``TrainConfig()``), with ``overrides`` replacing its fields.

    The run's folder is ``cfg.output_dir``, else a new one of its own (see
    :mod:`robustagg.training.rundir`), locked while the run writes. ``resume=True`` continues
    from the checkpoint there when there is one, and refuses one written with other settings
    (those of :meth:`TrainConfig.result_settings`); a run that does not resume replaces an
    earlier run's checkpoint in its folder."""
    cfg = cfg or TrainConfig()
    if overrides:
        cfg = dataclasses.replace(cfg, **overrides)
    with open_run_dir(cfg) as run_dir:
        return _train(cfg, run_dir.path)


def _train(cfg: TrainConfig, out: str) -> TrainResult:
    logger.info("%s -> %s (%d rounds, backend %s)", cfg.name, out, cfg.rounds, cfg.backend)
    loaded = checkpoint.load(out) if cfg.resume else None
    state = None
    if loaded is not None:
        state, manifest = loaded
        checkpoint.check_settings(manifest, cfg.result_settings(), out)
        logger.info("resuming %s from round %d", out, state["round"])
    else:
        checkpoint.remove(out)  # an earlier run's, not this run's
    start = state["round"] if state else 0
    started_ray = False
    if cfg.backend == "ray":
        from robustagg.backends.ray_cluster import ensure_ray

        _, started_ray = ensure_ray(cfg.address, cfg.num_cpus, cfg.object_store_mb,
                                    cfg.connect_timeout_s)
    server = None
    try:
        t0 = time.perf_counter()
        server = _server(cfg)
        server.call("params")  # waits for the server and its workers to be up
        startup_s = time.perf_counter() - t0
        if state:
            server.call("load_state_dict", state)
        with open(os.path.join(out, "config.json"), "w") as fh:
            json.dump(cfg.to_dict(), fh, indent=1)
        log = MetricsLog(out, start)
        try:
            _rounds(cfg, server, log, start, out)
        finally:
            log.close()
        params = server.call("params")
    finally:
        if server is not None:
            server.kill()
        if started_ray:
            import ray

            ray.shutdown()
    summary = {**summarize(log.history), "startup_s": startup_s}
    with open(os.path.join(out, "summary.json"), "w") as fh:
        json.dump(summary, fh, indent=1)
    logger.info("summary\n%s", format_summary(summary))
    if cfg.progress:
        print(f"{cfg.name}  ->  {out}\n{format_summary(summary)}")
    return TrainResult(cfg, log.history, summary, out, params)


def _rounds(cfg, server, log, start, out):
    from tqdm.auto import tqdm

    bar = tqdm(range(start, cfg.rounds), initial=start, total=cfg.rounds, desc=cfg.rule
               if isinstance(cfg.rule, str) else "train", disable=not cfg.progress, leave=False)
    acc = None
    for r in bar:
        t0 = time.perf_counter()
        rec = server.call("step")
        if _evaluate_now(cfg, r):
            rec.update(server.call("evaluate"))
            acc = rec.get("test_acc", acc)
            logger.info("round %d/%d: test_loss %.4g, test_acc %s, omitted %d", r + 1, cfg.rounds,
                     rec["test_loss"], "-" if acc is None else f"{acc:.4f}", len(rec["omitted"]))
        rec["round_s"] = time.perf_counter() - t0
        log.write(rec)
        bar.set_postfix(acc="-" if acc is None else f"{acc:.3f}", round_s=f"{rec['round_s']:.3f}",
                        omitted=len(rec["omitted"]))
        if cfg.checkpoint_every and (r + 1) % cfg.checkpoint_every == 0:
            checkpoint.save(out, server.call("state_dict"), cfg.result_settings())
