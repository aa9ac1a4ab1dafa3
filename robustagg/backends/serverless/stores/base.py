"""The Store interface of the Lambda backend and the key layout shared by the server and the workers.

A store holds opaque byte blobs (always the wire format of :mod:`..wire`, never pickles) under
string keys. Keys are namespaced by run and round::

    ra/<run>/shard/<worker>/x | y                a worker's data shard (written once per run)
    ra/<run>/shard/epoch                         the server's marker, written after the shards
    ra/<run>/r<round>/params                     the round's parameters (written by the server)
    ra/<run>/r<round>/grad/<worker>/<nonce>      a worker's gradient (write-once)

The gradient key's ``nonce`` (32 hex characters) is derived from the worker's per-round token,
which only the server and that worker's invocation know: no other client of the store can name
the key, so none can take it first (the write-once rule would otherwise let a squatter turn an
honest worker into an omission). A finished round's keys are deleted with
``delete_prefix(round_prefix(run, round))``.

The epoch marker holds random bytes of the server's choosing. When it is gone the store has
lost its data (a Redis restart without persistence, a failover): the server writes the shards
again and re-runs the round for the workers it cost.
"""
from __future__ import annotations

import hashlib
import re
import time
from abc import ABC, abstractmethod

from ..wire import check_run_id

_KEY = re.compile(r"[A-Za-z0-9_./-]{1,512}\Z")


def check_key(key: str) -> str:
    """Keys are 1-512 characters of [A-Za-z0-9_./-] (no glob or control characters)."""
    if not isinstance(key, str) or not _KEY.match(key):
        raise ValueError(f"store key must be 1-512 characters of [A-Za-z0-9_./-], got {key!r}")
    return key


def run_prefix(run_id: str) -> str:
    return f"ra/{check_run_id(run_id)}/"


def round_prefix(run_id: str, round: int) -> str:
    return f"{run_prefix(run_id)}r{int(round)}/"


def params_key(run_id: str, round: int) -> str:
    return f"{round_prefix(run_id, round)}params"


def grad_nonce(token: bytes) -> str:
    """The gradient key's unguessable part: 32 hex characters derived from the worker's token."""
    if not isinstance(token, bytes) or not 16 <= len(token) <= 64:
        raise ValueError(f"a worker token is 16-64 bytes, got {type(token).__name__} "
                         f"of length {len(token) if isinstance(token, bytes) else '?'}")
    return hashlib.blake2b(b"gradient key", key=token, digest_size=16).hexdigest()


def grad_key(run_id: str, round: int, worker: int, token: bytes) -> str:
    """Worker ``worker``'s gradient key in ``round``; ``token`` is its token for that round."""
    return f"{round_prefix(run_id, round)}grad/{int(worker)}/{grad_nonce(token)}"


def epoch_key(run_id: str) -> str:
    """The run's epoch marker: written after the shards, gone when the store lost its data."""
    return f"{run_prefix(run_id)}shard/epoch"


def shard_key(run_id: str, worker: int, part: str) -> str:
    if part not in ("x", "y"):
        raise ValueError(f"shard part must be 'x' or 'y', got {part!r}")
    return f"{run_prefix(run_id)}shard/{int(worker)}/{part}"


class Store(ABC):
    """Byte blobs under keys: write-once puts, gets, waiting for many keys, deleting a prefix."""

    @abstractmethod
    def put(self, key: str, data: bytes, if_absent: bool = True) -> bool:
        """Store ``data`` under ``key``; with ``if_absent`` an existing key is kept.
        Returns True when written, False when the key existed (and ``if_absent``)."""

    @abstractmethod
    def get(self, key: str) -> bytes | None:
        """The blob under ``key``, or None."""

    @abstractmethod
    def get_many(self, keys: list[str]) -> dict[str, bytes]:
        """The blobs of those ``keys`` that exist."""

    @abstractmethod
    def delete_prefix(self, prefix: str) -> int:
        """Delete every key starting with ``prefix``; returns how many were deleted."""

    def wait(self, keys, timeout: float, poll: float = 0.002, max_poll: float = 0.05) -> dict[str, bytes]:
        """Wait until every key exists or ``timeout`` seconds pass; return those that arrived.

        Polls the missing keys with exponential back-off from ``poll`` to ``max_poll`` seconds.
        """
        missing = [check_key(k) for k in keys]
        found: dict[str, bytes] = {}
        deadline = time.monotonic() + timeout
        delay = poll
        while missing:
            got = self.get_many(missing)
            found.update(got)
            missing = [k for k in missing if k not in got]
            left = deadline - time.monotonic()
            if not missing or left <= 0:
                break
            time.sleep(min(delay, left))
            delay = min(delay * 2, max_poll)
        return found

    def close(self) -> None:
        """Release connections (default: nothing to release)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
