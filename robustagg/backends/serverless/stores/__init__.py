"""Stores of the Lambda backend, by name: ``make_store({"kind": "redis", "host": ..., ...})``."""
from __future__ import annotations

from .base import (Store, check_key, epoch_key, grad_key, grad_nonce, params_key, round_prefix,
                   run_prefix, shard_key)
from .memory_store import MemoryStore


def _redis(**kw):
    from .redis_store import RedisStore
    return RedisStore(**kw)


def _s3(**kw):
    from .s3_store import S3Store
    return S3Store(**kw)


STORES = {"memory": MemoryStore, "redis": _redis, "s3": _s3}


def make_store(config: dict) -> Store:
    """Build a store from configuration: ``{"kind": "redis"|"s3"|"memory", **its arguments}``."""
    config = dict(config)
    kind = config.pop("kind", None)
    if kind not in STORES:
        raise ValueError(f"store kind must be one of {sorted(STORES)}, got {kind!r}")
    try:
        return STORES[kind](**config)
    except TypeError as e:
        raise ValueError(f"bad settings for the {kind} store: {e}") from None


def release_run(store: Store, run_id: str, revoke_users: bool) -> None:
    """End a run's use of ``store``: delete its keys, drop its per-round Redis users when it made
    them (``revoke_users``), and close the store whatever failed."""
    try:
        store.delete_prefix(run_prefix(run_id))
        if revoke_users:
            from . import redis_acl
            redis_acl.revoke(store.client, run_id)
    finally:
        store.close()


__all__ = ["Store", "MemoryStore", "make_store", "STORES", "check_key", "epoch_key", "grad_key",
           "grad_nonce", "params_key", "release_run", "round_prefix", "run_prefix", "shard_key"]
