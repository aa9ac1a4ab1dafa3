"""A run's folder: which one, and one run at a time in it.

Without ``output_dir`` a run gets a new folder of its own,
``outputs/runs/<name>-<YYYYmmdd-HHMMSS>-<hash>``, where ``<hash>`` is the first 10 hex digits
of the SHA-256 of the settings that determine the result
(:meth:`~robustagg.run.config.TrainConfig.result_settings`): two runs never share a folder,
whatever they differ in. ``resume=True`` without ``output_dir`` continues the newest run with
the same name and hash that holds a checkpoint (a new folder if there is none).

While a run writes into its folder it holds an exclusive lock on ``<folder>/.lock``
(``fcntl.flock``, released by the system when the process ends, even by SIGKILL); a second run
in the same folder is refused with the first one's process id.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import time

from . import checkpoint

ROOT = os.path.join("outputs", "runs")
LOCK = ".lock"


def settings_hash(settings: dict) -> str:
    """10 hex digits of the SHA-256 of ``settings`` as canonical JSON."""
    text = json.dumps(settings, sort_keys=True, separators=(",", ":"), default=repr)
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def _previous(root: str, name: str, digest: str) -> str | None:
    """The newest ``<root>/<name>-<time>-<digest>`` folder holding a checkpoint."""
    if not os.path.isdir(root):
        return None
    runs = sorted(d for d in os.listdir(root)
                  if d.startswith(f"{name}-") and d.endswith(f"-{digest}")
                  and checkpoint.exists(os.path.join(root, d)))
    return os.path.join(root, runs[-1]) if runs else None


def _new(root: str, name: str, digest: str) -> str:
    """A folder made here, named by the time and the digest (a suffix if the name is taken)."""
    os.makedirs(root, exist_ok=True)
    base = os.path.join(root, f"{name}-{time.strftime('%Y%m%d-%H%M%S')}")
    for k in range(1, 1000):
        path = f"{base}-{digest}" if k == 1 else f"{base}.{k}-{digest}"
        try:
            os.mkdir(path)  # atomic: the first run to make it owns it
            return path
        except FileExistsError:
            continue
    raise RuntimeError(f"no free run folder under {root} for {name}")


class RunDir:
    """The folder ``path`` of a run, locked until :meth:`close` (also a context manager)."""

    def __init__(self, path: str):
        self.path = path
        os.makedirs(path, exist_ok=True)
        lock = os.path.join(path, LOCK)
        self._fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(self._fd, 64, 0).decode(errors="replace").strip() or "unknown"
            os.close(self._fd)
            raise RuntimeError(f"output_dir={path!r} is in use by another run (process "
                               f"{holder}); wait for it to end, or choose another output_dir") \
                from None
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, str(os.getpid()).encode(), 0)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # releases the lock
            self._fd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def open_run_dir(cfg, root: str = ROOT) -> RunDir:
    """The locked folder of the run ``cfg`` (a :class:`TrainConfig`): ``cfg.output_dir`` if
    given, else the run to resume (``resume=True``), else a new one under ``root``."""
    if cfg.output_dir:
        return RunDir(cfg.output_dir)
    digest = settings_hash(cfg.result_settings())
    previous = _previous(root, cfg.name, digest) if cfg.resume else None
    return RunDir(previous or _new(root, cfg.name, digest))
