"""The Lambda worker: ``handler(event, context)``, the real AWS Lambda signature.

The event names a run, a round and a worker, and carries the per-run data a stateless worker
needs to rebuild itself; never a host, a port, a bucket or a credential (schema version 2)::

    {"version": 2, "run_id": "a1b2", "round": 3, "worker_id": 4,
     "token": "<64 hex: this worker's token for this round, made up by the server>",
     "params_digest": "<32 hex>", "shard_digests": ["<32 hex>", "<32 hex>"],
     "d": 4810, "num_classes": 10, "input_shape": [64], "x_dtype": "float32", "y_dtype": "int64",
     "spec": {"model", "model_kwargs", "batch_size", "seed", "is_byzantine", "attack",
              "attack_kwargs", "workers", "compression", "compression_kwargs"},
     "mask_seed": <int, only with compression="randk_shared": the round's published mask seed>}

Where the store is and how the worker logs in come from the function's own configuration
(:mod:`.function_config`: ``RA_STORE`` and, for a standing Redis user, ``RA_REDIS_USERNAME`` /
``RA_REDIS_PASSWORD``). An event with a ``store`` field is refused.

The worker reads ``ra/<run>/r<round>/params`` and its shard ``ra/<run>/shard/<worker>/{x,y}``
(the shard and model are cached while the container stays warm), checks that their digests are
the ones the event names (a blob that another client of the store put in their place is
refused), computes the gradient with the worker core shared by every backend
(:func:`robustagg.run.worker.compute_gradient`), and writes it, write-once, to its
gradient key ``ra/<run>/r<round>/grad/<worker>/<nonce>`` (the nonce derived from the token, so
no other worker can name the key) in the wire format with a digest keyed by the token. With
compression the gradient is compressed first: per-worker masks (``topk``, ``approx_topk``)
travel as a ``sparse_grad`` blob (indices + values), and ``randk_shared`` sends the k values on
the mask drawn from the event's ``mask_seed``, as a float32 ``[k]`` grad blob. (``topk_shared``,
whose mask is not a seed, is not offered on Lambda.)

Result: ``{"ok": true, "worker_id", "round", "loss", "compute_s", "written", "bytes"}``. Anything
else gives ``{"ok": false, "error_type", "error"}`` and never an exception: ``BadEvent`` (the
schema, checked before anything is used), ``BadSettings`` (the spec's model or attack cannot be
built), ``BadConfig`` (the function's environment), ``MissingBlob``, ``WireError``,
``StoreError`` (connection, authentication, permission) or ``InternalError``. The one exception
is the crash fault attack, which raises :class:`WorkerCrash` on purpose: it simulates a crash.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import time

import torch

from robustagg.backends.base import WorkerSpec
from robustagg.compression import available_compressors, random_mask
from robustagg.run.data import Data
from robustagg.run.models import MODELS, build_model
from robustagg.run.worker import build_worker, fault, timed_gradient

from . import function_config, wire
from .stores import Store, grad_key, make_store, params_key, shard_key

SCHEMA_VERSION = 2
# One thread, as the Ray workers use: the same seed then gives bit-identical gradients on every
# backend (a different thread count may change the order of float sums). RA_TORCH_THREADS
# raises it on big functions (Lambda gives one vCPU per 1,769 MB).
torch.set_num_threads(int(os.environ.get("RA_TORCH_THREADS", "1")))
_DTYPES = {"float32": torch.float32, "int64": torch.int64}
_EVENT_FIELDS = {"version", "run_id", "round", "worker_id", "token", "d", "num_classes",
                 "input_shape", "x_dtype", "y_dtype", "spec", "params_digest", "shard_digests",
                 "mask_seed"}
_SPEC_FIELDS = {"model": str, "model_kwargs": dict, "batch_size": int, "seed": int,
                "is_byzantine": bool, "attack": str, "attack_kwargs": dict, "workers": int}
# optional: absent means dense gradients
_OPTIONAL_SPEC_FIELDS = {"compression": str, "compression_kwargs": dict}
# compressors whose mask a worker can form from the event (per-worker, or from a seed)
LAMBDA_COMPRESSORS = ("none", "topk", "approx_topk", "randk_shared")
# bounds on what an event may hold, checked before any field is read
_MAX_TEXT = 64 * 1024       # characters of a JSON-text event
_MAX_DEPTH = 4              # event -> spec -> *_kwargs -> a list of scalars
_MAX_NODES = 1024           # values in the whole event
_MAX_KWARGS = 16
_MAX_BATCH = 65536          # samples per minibatch: a larger one is a memory bomb, not a setting
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}\Z")
_SCALARS = (str, int, float, bool, type(None))


class BadEvent(ValueError):
    """The event does not follow the schema."""


class BadSettings(ValueError):
    """The event's spec names a model or an attack that cannot be built with its arguments."""


class MissingBlob(RuntimeError):
    """A blob the event refers to is not in the store."""


class StoreError(RuntimeError):
    """The store failed: connection, authentication, permission."""


class WorkerCrash(RuntimeError):
    """Raised by a worker whose fault attack makes it crash this round (an unhandled error)."""


def _check_structure(event) -> None:
    """JSON types only, at most _MAX_DEPTH levels and _MAX_NODES values (walked without
    recursion, so a deeply nested event cannot exhaust the stack)."""
    stack, nodes = [(event, 0)], 0
    while stack:
        value, depth = stack.pop()
        nodes += 1
        if nodes > _MAX_NODES:
            raise BadEvent(f"event holds more than {_MAX_NODES} values")
        if isinstance(value, dict):
            children = value.values()
            if not all(isinstance(k, str) for k in value):
                raise BadEvent("event: object keys must be strings")
        elif isinstance(value, list):
            children = value
        elif isinstance(value, _SCALARS):
            continue
        else:
            raise BadEvent(f"event holds a {type(value).__name__}, not a JSON value")
        if depth >= _MAX_DEPTH and children:
            raise BadEvent(f"event is nested deeper than {_MAX_DEPTH} levels")
        stack.extend((c, depth + 1) for c in children)


def _need(ev: dict, key: str, typ, where="event"):
    if key not in ev:
        raise BadEvent(f"{where}: missing field {key!r}")
    v = ev[key]
    if not isinstance(v, typ) or (typ is int and isinstance(v, bool)):
        shown = "" if isinstance(v, (dict, list)) else f" {v!r}"[:80]
        raise BadEvent(f"{where}: field {key!r} must be {typ.__name__}, got {type(v).__name__}{shown}")
    return v


def _int(ev: dict, key: str, lo: int, hi: int, where="event") -> int:
    v = _need(ev, key, int, where)
    if not lo <= v < hi:
        raise BadEvent(f"{where}: field {key!r} must be in [{lo}, {hi}), got {v}")
    return v


def _is_hex(text, nbytes: int) -> bool:
    if not isinstance(text, str) or len(text) != 2 * nbytes:
        return False
    try:
        bytes.fromhex(text)
        return True
    except ValueError:
        return False


def _check_kwargs(spec: dict, key: str) -> None:
    kw = spec[key]
    if len(kw) > _MAX_KWARGS:
        raise BadEvent(f"event.spec: {key} has more than {_MAX_KWARGS} entries")
    for k, v in kw.items():
        if not _IDENT.match(k):
            raise BadEvent(f"event.spec: {key} key {k[:40]!r} is not an identifier")
        if not (isinstance(v, _SCALARS) or
                (isinstance(v, list) and all(isinstance(x, _SCALARS) for x in v))):
            raise BadEvent(f"event.spec: {key}[{k!r}] must be a scalar or a list of scalars")


def _check_spec(spec: dict) -> None:
    import attacks

    for k, typ in _SPEC_FIELDS.items():
        _need(spec, k, typ, where="event.spec")
    for k, typ in _OPTIONAL_SPEC_FIELDS.items():
        if k in spec:
            _need(spec, k, typ, where="event.spec")
    known = set(_SPEC_FIELDS) | set(_OPTIONAL_SPEC_FIELDS)
    if set(spec) - known:
        raise BadEvent(f"event.spec: unknown fields {sorted(set(spec) - known)}")
    _int(spec, "batch_size", 1, _MAX_BATCH + 1, "event.spec")
    _int(spec, "seed", 0, 2**63, "event.spec")
    _int(spec, "workers", 1, 2**31, "event.spec")
    if spec["model"] not in MODELS:
        raise BadEvent(f"event.spec: unknown model {spec['model'][:40]!r}; known: {sorted(MODELS)}")
    if spec["attack"] not in attacks.available_attacks():
        raise BadEvent(f"event.spec: unknown attack {spec['attack'][:40]!r}; known: "
                       f"{attacks.available_attacks()}")
    if spec.get("compression", "none") not in LAMBDA_COMPRESSORS:
        known = [c for c in available_compressors() if c in LAMBDA_COMPRESSORS]
        raise BadEvent(f"event.spec: compression {spec['compression'][:40]!r} is not offered on "
                       f"Lambda; known: {known}")
    for key in ("model_kwargs", "attack_kwargs", "compression_kwargs"):
        if key in spec:
            _check_kwargs(spec, key)
    if spec.get("compression_kwargs", {}).get("residual"):
        raise BadEvent("event.spec: compression residual=True is not offered on Lambda: a "
                       "function keeps nothing between invocations")


def json_object(event) -> dict:
    """``event`` as a dict: JSON text (at most ``_MAX_TEXT`` characters) is decoded; anything
    but a JSON object raises BadEvent."""
    if isinstance(event, (str, bytes)):
        if len(event) > _MAX_TEXT:
            raise BadEvent(f"event is longer than {_MAX_TEXT} characters")
        try:
            event = json.loads(event)
        except (ValueError, RecursionError) as e:
            raise BadEvent(f"event is not JSON: {type(e).__name__}: {str(e)[:80]}") from None
    if not isinstance(event, dict):
        raise BadEvent(f"event must be a JSON object, got {type(event).__name__}")
    return event


def parse_event(event) -> dict:
    """Validate an event against the schema; returns it, or raises BadEvent naming the field."""
    event = json_object(event)
    _check_structure(event)
    version = event.get("version")
    if type(version) is not int or version != SCHEMA_VERSION:  # True == 1 is no version
        raise BadEvent(f"event: field 'version' must be {SCHEMA_VERSION}, got {version!r}"[:120])
    if "store" in event:
        raise BadEvent("event: a 'store' field is not accepted: the store's location and "
                       "credentials come from the function's configuration "
                       f"({function_config.STORE_ENV})")
    unknown = set(event) - _EVENT_FIELDS
    if unknown:
        raise BadEvent(f"event: unknown fields {sorted(unknown)}"[:200])
    try:
        wire.check_run_id(_need(event, "run_id", str))
    except ValueError as e:
        raise BadEvent(f"event: {e}"[:120]) from None
    _int(event, "round", 0, 2**63)
    _int(event, "worker_id", 0, 2**31)
    _int(event, "d", 1, 2**40)
    _int(event, "num_classes", 0, 2**31)
    shape = _need(event, "input_shape", list)
    if not 1 <= len(shape) <= 3 or not all(type(s) is int and 0 < s < 2**31 for s in shape):
        raise BadEvent("event: input_shape must be 1-3 positive ints")
    for k in ("x_dtype", "y_dtype"):
        if _need(event, k, str) not in _DTYPES:
            raise BadEvent(f"event: field {k!r} must be one of {sorted(_DTYPES)}, got {event[k]!r}"[:120])
    if not _is_hex(_need(event, "token", str), 32):
        raise BadEvent("event: token must be 64 hex characters")
    digests = [_need(event, "params_digest", str)] + list(_need(event, "shard_digests", list))
    if len(digests) != 3 or not all(_is_hex(h, 16) for h in digests):
        raise BadEvent("event: params_digest and the 2 shard_digests must be 32 hex characters each")
    spec = _need(event, "spec", dict)
    _check_spec(spec)
    if (spec.get("compression") == "randk_shared") != ("mask_seed" in event):
        raise BadEvent("event: mask_seed is given with compression='randk_shared', and only then")
    if "mask_seed" in event:
        _int(event, "mask_seed", 0, 2**63)
    if not event["worker_id"] < spec["workers"]:
        raise BadEvent(f"event: worker_id={event['worker_id']} is not in [0, workers="
                       f"{spec['workers']})")
    return event


def _store_op(what: str, fn, *args):
    """Run one store operation; any failure of the store itself becomes a StoreError."""
    try:
        return fn(*args)
    except Exception as e:  # redis-py, botocore: connection, authentication, permission errors
        raise StoreError(f"{what}: {type(e).__name__}: {str(e)[:200]}") from None


def _fetch(store: Store, key: str, digest: str) -> bytes:
    """The blob under ``key``, if its digest is the one the event names (else WireError)."""
    blob = _store_op(f"get {key}", store.get, key)
    if blob is None:
        raise MissingBlob(f"{key} is not in the store")
    if wire.digest_of(blob) != digest:
        raise wire.WireError(f"{key}: digest {wire.digest_of(blob)} is not the {digest} the "
                             f"event names (written by someone else than the server)")
    return blob


# Warm-container caches: the standing store connection, worker state by (run, worker, spec).
_STORES: dict[str, Store] = {}
_STATES: dict[tuple, object] = {}


@contextlib.contextmanager
def open_store(ev: dict, environ=os.environ):
    """The store this invocation uses, from the function's configuration (``environ``): the
    standing connection (kept while the container is warm), or with Redis ``auth="round"`` a
    connection of its own as this round's user of this worker (closed afterwards)."""
    settings = function_config.store_settings(environ)
    cfg = function_config.worker_store_config(settings, environ, ev["run_id"], ev["worker_id"],
                                              bytes.fromhex(ev["token"]))
    if settings.get("auth") == "round":
        store = _make_store(cfg)
        try:
            yield store
        finally:
            store.close()
        return
    key = json.dumps(cfg, sort_keys=True)
    if key not in _STORES:
        _STORES[key] = _make_store(cfg)
    yield _STORES[key]


def _make_store(cfg: dict) -> Store:
    try:
        return make_store(cfg)
    except ValueError as e:
        raise function_config.ConfigError(f"{function_config.STORE_ENV}: {e}") from None


def _build(ev: dict, x, y):
    """The worker state; the model is first built on the meta device (no memory), so settings
    that would not give the round's d parameters are refused before anything is allocated."""
    spec = WorkerSpec(worker_id=ev["worker_id"], dataset="store", indices=list(range(len(x))),
                      **ev["spec"])
    try:
        with torch.device("meta"):
            d = sum(p.numel() for p in build_model(spec.model, ev["input_shape"], ev["num_classes"],
                                                   **spec.model_kwargs).parameters())
        if d != ev["d"]:
            raise BadEvent(f"event: d={ev['d']}, but model {spec.model!r} has {d} parameters")
        # the shard is all this worker's data: build_worker keeps it whole
        return build_worker(spec, Data(x, y, x[:0], y[:0], ev["num_classes"]))
    except (TypeError, ValueError) as e:
        if isinstance(e, BadEvent):
            raise
        raise BadSettings(f"event.spec: model {spec.model!r} {spec.model_kwargs} or attack "
                          f"{spec.attack!r} {spec.attack_kwargs}: {e}"[:300]) from None


def _state(ev: dict, store: Store):
    """This worker's state (shard from the store, model, attack), built once per warm container."""
    run, w = ev["run_id"], ev["worker_id"]
    cache_key = (run, w, json.dumps([ev["spec"], ev["input_shape"], ev["num_classes"], ev["d"],
                                     ev["shard_digests"]], sort_keys=True))
    if cache_key in _STATES:
        return _STATES[cache_key]
    parts = {}
    for (part, kind, dt), want in zip((("x", "shard_x", ev["x_dtype"]), ("y", "shard_y", ev["y_dtype"])),
                                      ev["shard_digests"]):
        blob = _fetch(store, shard_key(run, w, part), want)
        parts[part] = wire.decode(blob, kind=kind, run_id=run, round=0, worker=w, dtype=_DTYPES[dt])
    x, y = parts["x"], parts["y"]
    if tuple(x.shape[1:]) != tuple(ev["input_shape"]) or x.shape[0] != y.shape[0] or x.shape[0] == 0:
        raise wire.WireError(f"shard shapes x {tuple(x.shape)}, y {tuple(y.shape)} do not match "
                             f"input_shape {ev['input_shape']}")
    state = _build(ev, x, y)
    for k in [k for k in _STATES if k[:2] == (run, w) or k[0] != run]:
        del _STATES[k]  # one state per worker of the current run
    _STATES[cache_key] = state
    return state


def run_event(ev: dict, store: Store) -> dict:
    """Do one validated event's work against ``store``: the handler minus parsing and error mapping."""
    run, rnd, w = ev["run_id"], ev["round"], ev["worker_id"]
    token = bytes.fromhex(ev["token"])
    # the parameters first: the server wrote them, so d is the size of a real model
    blob = _fetch(store, params_key(run, rnd), ev["params_digest"])
    params = wire.decode(blob, kind="params", run_id=run, round=rnd, worker=-1,
                         dtype=torch.float32, shape=(ev["d"],))
    state = _state(ev, store)
    what = fault(state, rnd)
    if what == "crash":
        raise WorkerCrash(f"worker {w} crashed in round {rnd} (fault attack {state.spec.attack!r})")
    if what is not None:
        time.sleep(what)
    comp = state.compressor
    mask = None if "mask_seed" not in ev else random_mask(ev["mask_seed"], ev["d"], comp.k(ev["d"]))
    grad, loss, secs = timed_gradient(state, params, rnd, mask)
    meta = {"run_id": run, "round": rnd, "worker": w, "token": token}
    if comp is None:
        out = wire.encode(grad, kind="grad", **meta)
    elif comp.shared:
        out = wire.encode(grad.values, kind="grad", **meta)
    else:
        out = wire.encode_sparse(grad.indices, grad.values, ev["d"], **meta)
    key = grad_key(run, rnd, w, token)
    written = _store_op(f"put {key}", store.put, key, out, True)
    return {"ok": True, "worker_id": w, "round": rnd, "loss": loss, "compute_s": secs,
            "written": written, "bytes": len(out)}


_ERRORS = ((BadEvent, "BadEvent"), (BadSettings, "BadSettings"),
           (function_config.ConfigError, "BadConfig"), (MissingBlob, "MissingBlob"),
           (wire.WireError, "WireError"), (StoreError, "StoreError"))


def handle(event, open_store=open_store) -> dict:
    """Parse ``event`` and do its work on the store ``open_store(event)`` opens: a JSON-able
    result, never an exception (but the crash fault attack's WorkerCrash)."""
    try:
        ev = parse_event(event)
        with open_store(ev) as store:
            return run_event(ev, store)
    except WorkerCrash:
        raise
    except Exception as e:
        kind = next((name for cls, name in _ERRORS if isinstance(e, cls)), None)
        msg = str(e) if kind else f"{type(e).__name__}: {e}"
        return {"ok": False, "error_type": kind or "InternalError", "error": msg[:500]}


def handler(event, context=None):
    """AWS Lambda entry point. Returns a JSON-able dict; never raises for a bad event or blob."""
    return handle(event)
