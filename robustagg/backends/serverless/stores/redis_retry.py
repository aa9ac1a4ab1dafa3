"""How the Redis store rides out a restart or a failover of the server: redis-py's retry on
connection errors, with fixed settings and without retrying a refused login.

A command that meets a dropped connection or a refused one is retried on a new connection for up
to about 5 s (10 attempts, the wait doubling from 20 ms to 1 s), whatever redis-py's own default
is (it changed across versions: none before 6, ~3 s with jitter since). An authentication error
is not retried, though redis-py counts it as a connection error: no wait mends a refused login,
and a worker whose round user is gone (the server restarted) must answer at once, so that the
server can re-create the user and re-run the round before its deadline.
"""
from __future__ import annotations

from redis.backoff import ExponentialBackoff
from redis.exceptions import AuthenticationError, ConnectionError
from redis.retry import Retry

RETRIES = 10  # attempts after a connection error: 20, 40, ... 640 ms, then 1 s (~5 s in all)


class _Refused(Exception):
    """Carries an authentication error past the retry loop."""

    def __init__(self, error: AuthenticationError):
        super().__init__(error)
        self.error = error


class Reconnect(Retry):
    """:class:`redis.retry.Retry` that re-raises authentication errors at once."""

    def call_with_retry(self, do, *args, **kwargs):
        def once():
            try:
                return do()
            except AuthenticationError as e:
                raise _Refused(e) from None

        try:
            return super().call_with_retry(once, *args, **kwargs)
        except _Refused as e:
            raise e.error from None


def reconnect() -> Reconnect:
    """The retry policy of :class:`.redis_store.RedisStore`'s client."""
    return Reconnect(ExponentialBackoff(cap=1.0, base=0.01), RETRIES,
                     supported_errors=(ConnectionError,))
