"""Redis ACL users of the Lambda backend: what the server and each worker may do (Redis >= 7).

A worker may read the round's parameters and its own shard and write its own gradient key, with
``GET`` and ``SET`` only: no other key, no admin command (``CONFIG``, ``ACL``, ``FLUSHALL``,
``KEYS``, ``SCAN``...), no reading another worker's gradient, no writing the parameters.

Two ways to give workers their user (the backend's ``worker_auth``):

* ``"round"`` (the default for Redis): the server creates, for each round and worker, a user
  :func:`round_user` whose password is derived from that worker's round token and whose keys
  are exactly that worker's: :func:`round_rules`. The server deletes the users when the round
  ends. Workers hold no standing Redis secret at all. The server's own user needs
  ``ACL SETUSER``/``ACL DELUSER`` (self-managed Redis; ElastiCache manages users through its
  API instead, so use ``"function"`` there).
* ``"function"``: one standing worker user configured once (``deploy/redis-acl.conf``,
  :data:`WORKER_RULES`), its name and password in the function's environment. The key patterns
  cannot tell one worker from another there; each worker's gradient key is still unguessable
  to the others (:func:`..base.grad_nonce`), so none can take another's key first.
"""
from __future__ import annotations

import hashlib
import hmac

from .base import grad_key, params_key, run_prefix

_COMMANDS = ["resetchannels", "-@all", "+get", "+set"]

# The standing worker user of worker_auth="function" (deploy/redis-acl.conf holds the same).
WORKER_RULES = ["resetkeys", "%R~ra/*/r*/params", "%R~ra/*/shard/*", "%W~ra/*/r*/grad/*/*",
                *_COMMANDS]
# The server's user: every key under ra/, the commands the backend uses, no admin command.
SERVER_RULES = ["resetkeys", "~ra/*", "resetchannels", "-@all", "+get", "+set", "+mget", "+scan",
                "+unlink", "+ping"]
# ... plus these when it creates the workers' round users (worker_auth="round").
SERVER_ROUND_USER_RULES = ["+acl|setuser", "+acl|deluser", "+acl|users"]


def round_user(run_id: str, worker: int) -> str:
    """The ACL user name of ``worker`` in run ``run_id`` (one per worker, re-created each round)."""
    return f"ra.{run_id}.w{int(worker)}"


def round_password(token: bytes) -> str:
    """The round user's password: derived from the worker's round token (64 hex characters)."""
    return hmac.new(token, b"redis round user", hashlib.sha256).hexdigest()


def round_rules(run_id: str, round: int, worker: int, token: bytes) -> list[str]:
    """``ACL SETUSER`` rules of ``worker``'s user in ``round``: read this round's parameters and
    its own shard, write its own gradient key; nothing else."""
    return ["reset", "on", ">" + round_password(token),
            f"%R~{params_key(run_id, round)}", f"%R~{run_prefix(run_id)}shard/{int(worker)}/*",
            f"%W~{grad_key(run_id, round, worker, token)}", *_COMMANDS]


def grant_round(client, run_id: str, round: int, tokens: dict) -> None:
    """Create (or replace) the round users of the workers in ``tokens`` (worker -> token)."""
    pipe = client.pipeline(transaction=False)
    for w, tok in tokens.items():
        pipe.execute_command("ACL", "SETUSER", round_user(run_id, w),
                             *round_rules(run_id, round, w, tok))
    pipe.execute()


def revoke(client, run_id: str, workers=None) -> None:
    """Delete the round users of ``workers`` (all of the run's when None); this also closes
    their connections."""
    if workers is None:
        prefix = f"ra.{run_id}.w"
        names = [u for u in (n.decode() if isinstance(n, bytes) else n
                             for n in client.execute_command("ACL", "USERS"))
                 if u.startswith(prefix)]
    else:
        names = [round_user(run_id, w) for w in workers]
    if names:
        client.execute_command("ACL", "DELUSER", *names)
