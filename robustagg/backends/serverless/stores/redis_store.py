"""The Redis store (the default: LambdaML used ElastiCache the same way).

Write-once puts are ``SET key value NX``; waiting polls ``MGET`` on the missing keys; deleting a
prefix walks ``SCAN MATCH prefix*`` and ``UNLINK``s in batches. The password comes from
configuration: ``password`` (a value read from a config file) or ``password_env`` (the name of an
environment variable holding it), never from code.

A restart or a failover of the server drops every connection: commands are retried on a new
connection for a few seconds, but a refused login is not (:mod:`.redis_retry`). Whether the
restarted server still holds the data is the backend's business (:func:`.base.epoch_key`).
"""
from __future__ import annotations

import os

from .base import Store, check_key


def resolve_secret(value: str | None, env: str | None, what: str) -> str | None:
    """A secret given either directly (from configuration) or as the name of an environment variable."""
    if value is not None and env is not None:
        raise ValueError(f"give {what} or {what}_env, not both")
    if env is not None:
        if env not in os.environ:
            raise ValueError(f"{what}_env names the environment variable {env!r}, which is not set")
        return os.environ[env]
    return value


class RedisStore(Store):
    def __init__(self, host: str = "127.0.0.1", port: int = 6379, *, db: int = 0,
                 username: str | None = None, password: str | None = None,
                 password_env: str | None = None, ssl: bool = False, socket_timeout: float = 30.0):
        import redis

        from .redis_retry import reconnect

        self._r = redis.Redis(host=host, port=int(port), db=db, username=username,
                              password=resolve_secret(password, password_env, "password"),
                              ssl=ssl, socket_timeout=socket_timeout, retry=reconnect())

    @property
    def client(self):
        """The redis-py client (the server manages the workers' ACL users through it)."""
        return self._r

    def put(self, key, data, if_absent=True):
        return bool(self._r.set(check_key(key), bytes(data), nx=if_absent))

    def get(self, key):
        return self._r.get(check_key(key))

    def get_many(self, keys):
        if not keys:
            return {}
        return {k: v for k, v in zip(keys, self._r.mget(keys)) if v is not None}

    def delete_prefix(self, prefix):
        check_key(prefix)  # keys have no glob characters, so prefix* matches exactly the prefix
        n = 0
        batch = []
        for k in self._r.scan_iter(match=prefix + "*", count=1000):
            batch.append(k)
            if len(batch) == 1000:
                n += self._r.unlink(*batch)
                batch = []
        if batch:
            n += self._r.unlink(*batch)
        return n

    def close(self):
        self._r.close()
