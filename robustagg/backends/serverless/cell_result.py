"""A sweep cell's result as it crosses the store: keys, the declared format, and its Redis user.

One sweep cell (a whole training run with in-process workers) is one invocation of the sweep
function; the function writes its result once to the cell's key::

    ra/<sweep>/cell/<cell>/<nonce>      the nonce derived from the cell's token (unguessable)

in this format (never a pickle):

======  ====  ==========================================================================
offset  size  field
======  ====  ==========================================================================
0       4     magic ``RACR``
4       2     format version (1), little-endian
6       2     reserved (zero)
8       8     body length in bytes, little-endian
16      32    HMAC-SHA256 of bytes 0..16 and the body, keyed with the cell's token
48      n     the body: UTF-8 JSON, one object (:data:`FIELDS`); NaN and
                ±Infinity in metrics as Python's ``json`` writes them
======  ====  ==========================================================================

:func:`decode` checks magic, version, the reserved bytes, the exact length, the HMAC (so no
other client of the store can forge a result: only the launcher and the cell's invocation know
the token), then that the JSON body names this sweep and cell and that every field has its type.

With Redis and per-cell users (``auth: "round"`` in the function's ``RA_STORE``), the launcher
creates for each cell the user :func:`.stores.redis_acl.round_user` ``(sweep, cell)`` whose
password derives from the cell's token and who may only ``SET`` the cell's key
(:func:`cell_rules`).
"""
from __future__ import annotations

import hashlib
import hmac
import json
import struct

from .stores import grad_nonce, run_prefix
from .stores.redis_acl import round_password, round_user
from .wire import check_run_id

MAGIC = b"RACR"
VERSION = 1
_HEAD = struct.Struct("<4sHHQ")      # magic, version, reserved, body length
HEADER_BYTES = _HEAD.size + 32       # + the HMAC
MAX_BODY = 64 * 2**20                # a cell's metrics are kilobytes; more is not a result
# field -> accepted JSON types (bool is not an int here: exact types are checked)
FIELDS = {
    "version": (int,), "sweep_id": (str,), "cell": (int,), "ok": (bool,),
    "summary": (dict, type(None)), "history": (list,), "log": (str,),
    "error_type": (str, type(None)), "error": (str, type(None)),
    "run_s": (float, int), "peak_rss_mb": (float, int),
}


class ResultError(ValueError):
    """A stored cell result is malformed, forged or for another sweep or cell."""


# The sweep function's standing Redis user (worker_auth="function"; deploy/redis-acl.conf's ra-sweep)
SWEEP_RULES = ["resetkeys", "%W~ra/*/cell/*/*", "resetchannels", "-@all", "+set"]


def cell_prefix(sweep_id: str, cell: int) -> str:
    return f"{run_prefix(sweep_id)}cell/{int(cell)}/"


def cell_key(sweep_id: str, cell: int, token: bytes) -> str:
    """The key cell ``cell`` of ``sweep_id`` writes its result to (``token``: the cell's)."""
    return cell_prefix(sweep_id, cell) + grad_nonce(token)


def cell_rules(sweep_id: str, cell: int, token: bytes) -> list[str]:
    """``ACL SETUSER`` rules of the cell's Redis user: ``SET`` its result key, nothing else."""
    return ["reset", "on", ">" + round_password(token), f"%W~{cell_key(sweep_id, cell, token)}",
            "resetchannels", "-@all", "+set"]


def grant_cells(client, sweep_id: str, tokens: dict) -> None:
    """Create the Redis users of the cells in ``tokens`` (cell -> token)."""
    pipe = client.pipeline(transaction=False)
    for cell, tok in tokens.items():
        pipe.execute_command("ACL", "SETUSER", round_user(sweep_id, cell),
                             *cell_rules(sweep_id, cell, tok))
    pipe.execute()


def _mac(token: bytes, head: bytes, body: bytes) -> bytes:
    return hmac.new(token, head + body, hashlib.sha256).digest()


def encode(doc: dict, token: bytes) -> bytes:
    """The stored form of a result ``doc`` (a dict with :data:`FIELDS`)."""
    check(doc, doc.get("sweep_id"), doc.get("cell"))
    body = json.dumps(doc, separators=(",", ":")).encode()
    if len(body) > MAX_BODY:
        raise ResultError(f"cell result of {len(body):,} bytes is over {MAX_BODY:,}")
    head = _HEAD.pack(MAGIC, VERSION, 0, len(body))
    return head + _mac(token, head, body) + body


def decode(blob, sweep_id: str, cell: int, token: bytes) -> dict:
    """The result in ``blob``, checked (format, HMAC, sweep, cell, field types); else ResultError."""
    if not isinstance(blob, (bytes, bytearray, memoryview)):
        raise ResultError(f"cell result must be bytes, got {type(blob).__name__}")
    blob = bytes(blob)
    if len(blob) < HEADER_BYTES:
        raise ResultError(f"cell result of {len(blob)} bytes is shorter than its header")
    magic, version, reserved, size = _HEAD.unpack_from(blob)
    if magic != MAGIC:
        raise ResultError(f"not a cell result (magic {magic!r})")
    if version != VERSION or reserved != 0:
        raise ResultError(f"cell result version {version} (reserved {reserved}); expected {VERSION}")
    if size > MAX_BODY or len(blob) != HEADER_BYTES + size:
        raise ResultError(f"cell result length {len(blob)} does not match its header ({size} + "
                          f"{HEADER_BYTES})")
    body = blob[HEADER_BYTES:]
    if not hmac.compare_digest(blob[_HEAD.size:HEADER_BYTES], _mac(token, blob[:_HEAD.size], body)):
        raise ResultError(f"cell result of sweep {sweep_id} cell {cell}: the HMAC does not match "
                          f"the cell's token (written by someone else than its invocation)")
    try:
        doc = json.loads(body.decode("utf-8"))
    except (ValueError, RecursionError) as e:
        raise ResultError(f"cell result body is not JSON: {type(e).__name__}: {str(e)[:80]}") from None
    return check(doc, sweep_id, cell)


def check(doc, sweep_id: str, cell: int) -> dict:
    """``doc`` if it is a result of ``sweep_id``'s cell ``cell`` with every field typed."""
    if not isinstance(doc, dict):
        raise ResultError(f"cell result must be a JSON object, got {type(doc).__name__}")
    if set(doc) != set(FIELDS):
        raise ResultError(f"cell result fields {sorted(doc)}; expected {sorted(FIELDS)}")
    for k, types in FIELDS.items():
        if type(doc[k]) not in types:
            raise ResultError(f"cell result field {k!r} must be "
                              f"{' or '.join(t.__name__ for t in types)}, got {type(doc[k]).__name__}")
    check_run_id(sweep_id)
    if doc["version"] != VERSION or doc["sweep_id"] != sweep_id or doc["cell"] != cell:
        raise ResultError(f"cell result of sweep {doc['sweep_id']!r} cell {doc['cell']} "
                          f"(version {doc['version']}); expected sweep {sweep_id!r} cell {cell}")
    if not all(isinstance(r, dict) for r in doc["history"]):
        raise ResultError("cell result history must be a list of objects (one per round)")
    return doc
