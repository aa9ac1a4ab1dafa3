"""The Lambda worker: ``handler(event, context)``, the real AWS Lambda signature.

The event holds references and settings only, never tensors or secrets (schema version 1)::

    {"version": 1, "run_id": "a1b2", "round": 3, "worker_id": 4,
     "store": {"kind": "redis", "host": "...", "port": 6379, "password_env": "RA_REDIS_PASSWORD"},
     "token": "<64 hex chars: this worker's per-round key for the gradient digest>",
     "params_digest": "<32 hex>", "shard_digests": ["<32 hex>", "<32 hex>"],
     "d": 4810, "num_classes": 10, "input_shape": [64], "x_dtype": "float32", "y_dtype": "int64",
     "spec": {WorkerSpec fields: model, model_kwargs, batch_size, seed, byzantine, attack, ...}}

The worker reads ``ra/<run>/r<round>/params`` and its shard ``ra/<run>/shard/<worker>/{x,y}``
from the store (the shard and model are cached while the container stays warm), checks that
their digests are the ones the event names (a blob that another client of the store put in their
place is refused), computes the
gradient with the worker core shared by every backend
(:func:`robustagg.training.worker.compute_gradient`), and writes it, write-once, to
``ra/<run>/r<round>/grad/<worker>`` in the wire format with a digest keyed by ``token``.

Result: ``{"ok": true, "worker_id", "round", "loss", "compute_s", "written", "bytes"}``; a
malformed event or a missing/bad blob gives ``{"ok": false, "error_type", "error"}`` (a clear
result, not a crash). Store passwords reach the worker through its environment (the function's
configuration), named by ``password_env``; an event carrying a secret is refused.
"""
from __future__ import annotations

import json
import os
import time

import torch

from robustagg.backends.base import WorkerSpec
from robustagg.training.data import Data
from robustagg.training.worker import build_worker, fault, timed_gradient

from . import wire
from .stores import Store, grad_key, make_store, params_key, shard_key

SCHEMA_VERSION = 1
# One thread, as the Ray workers use: the same seed then gives bit-identical gradients on every
# backend (a different thread count may change the order of float sums). RA_TORCH_THREADS
# raises it on big functions (Lambda gives one vCPU per 1,769 MB).
torch.set_num_threads(int(os.environ.get("RA_TORCH_THREADS", "1")))
_SECRET_FIELDS = ("password", "aws_secret_access_key", "aws_session_token")
_SPEC_FIELDS = {"model": str, "model_kwargs": dict, "batch_size": int, "seed": int,
                "byzantine": bool, "attack": str, "attack_kwargs": dict, "num_workers": int}
_DTYPES = {"float32": torch.float32, "int64": torch.int64}


class BadEvent(ValueError):
    """The event does not follow the schema."""


def _need(ev: dict, key: str, typ, where="event"):
    if key not in ev:
        raise BadEvent(f"{where}: missing field {key!r}")
    v = ev[key]
    ok = isinstance(v, typ) and not (typ is int and isinstance(v, bool))
    if not ok:
        raise BadEvent(f"{where}: field {key!r} must be {typ.__name__}, got {type(v).__name__} {v!r}"
                       if not isinstance(v, (dict, list)) else
                       f"{where}: field {key!r} must be {typ.__name__}, got {type(v).__name__}")
    return v


def _is_hex(text: str, nbytes: int) -> bool:
    try:
        return len(bytes.fromhex(text)) == nbytes and len(text) == 2 * nbytes
    except ValueError:
        return False


def parse_event(event) -> dict:
    """Validate an event against schema version 1; returns it, or raises BadEvent naming the field."""
    if isinstance(event, (str, bytes)):
        try:
            event = json.loads(event)
        except ValueError as e:
            raise BadEvent(f"event is not JSON: {e}") from None
    if not isinstance(event, dict):
        raise BadEvent(f"event must be a JSON object, got {type(event).__name__}")
    if event.get("version") != SCHEMA_VERSION:
        raise BadEvent(f"event: field 'version' must be {SCHEMA_VERSION}, got {event.get('version')!r}")
    known = {"version", "run_id", "round", "worker_id", "store", "token", "d", "num_classes",
             "input_shape", "x_dtype", "y_dtype", "spec", "params_digest", "shard_digests"}
    if set(event) - known:
        raise BadEvent(f"event: unknown fields {sorted(set(event) - known)}")
    try:
        wire.check_run_id(_need(event, "run_id", str))
    except ValueError as e:
        raise BadEvent(f"event: {e}") from None
    for k in ("round", "worker_id", "d", "num_classes"):
        if _need(event, k, int) < 0:
            raise BadEvent(f"event: field {k!r} must be >= 0, got {event[k]}")
    if event["d"] < 1:
        raise BadEvent(f"event: field 'd' must be >= 1, got {event['d']}")
    shape = _need(event, "input_shape", list)
    if not 1 <= len(shape) <= 3 or not all(isinstance(s, int) and s > 0 for s in shape):
        raise BadEvent(f"event: input_shape must be 1-3 positive ints, got {shape!r}")
    for k in ("x_dtype", "y_dtype"):
        if _need(event, k, str) not in _DTYPES:
            raise BadEvent(f"event: field {k!r} must be one of {sorted(_DTYPES)}, got {event[k]!r}")
    if not _is_hex(_need(event, "token", str), 32):
        raise BadEvent("event: token must be 64 hex characters")
    digests = [_need(event, "params_digest", str)] + list(_need(event, "shard_digests", list))
    if len(digests) != 3 or not all(isinstance(h, str) and _is_hex(h, 16) for h in digests):
        raise BadEvent("event: params_digest and the 2 shard_digests must be 32 hex characters each")
    store = _need(event, "store", dict)
    if not isinstance(store.get("kind"), str):
        raise BadEvent("event: store needs a 'kind' string")
    leaked = [k for k in _SECRET_FIELDS if store.get(k) is not None]
    if leaked:
        raise BadEvent(f"event: store carries a secret {leaked}: give secrets to the function's "
                       f"environment and name them with password_env")
    spec = _need(event, "spec", dict)
    for k, typ in _SPEC_FIELDS.items():
        _need(spec, k, typ, where="event.spec")
    if set(spec) - set(_SPEC_FIELDS):
        raise BadEvent(f"event.spec: unknown fields {sorted(set(spec) - set(_SPEC_FIELDS))}")
    if spec["batch_size"] < 1:
        raise BadEvent(f"event.spec: batch_size must be >= 1, got {spec['batch_size']}")
    if not 0 <= event["worker_id"] < spec["num_workers"]:
        raise BadEvent(f"event: worker_id={event['worker_id']} is not in [0, num_workers="
                       f"{spec['num_workers']})")
    return event


# Warm-container caches: store connections by configuration, worker state by (run, worker, spec).
_STORES: dict[str, Store] = {}
_STATES: dict[tuple, object] = {}


def _store(config: dict) -> Store:
    key = json.dumps(config, sort_keys=True)
    if key not in _STORES:
        _STORES[key] = make_store(config)
    return _STORES[key]


class MissingBlob(RuntimeError):
    pass


def _fetch(store: Store, key: str, digest: str) -> bytes:
    """The blob under ``key``, if its digest is the one the event names (else WireError)."""
    blob = store.get(key)
    if blob is None:
        raise MissingBlob(f"{key} is not in the store")
    if wire.digest_of(blob) != digest:
        raise wire.WireError(f"{key}: digest {wire.digest_of(blob)} is not the {digest} the "
                             f"event names (written by someone else than the server)")
    return blob


def _state(ev: dict, store: Store):
    """This worker's state (shard from the store, model, attack), built once per warm container."""
    run, w = ev["run_id"], ev["worker_id"]
    cache_key = (run, w, json.dumps([ev["spec"], ev["input_shape"], ev["num_classes"],
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
    # the shard is all this worker's data: build_worker keeps it whole and builds model and attack
    spec = WorkerSpec(worker_id=w, dataset="store", indices=list(range(len(x))), **ev["spec"])
    state = build_worker(spec, Data(x, y, x[:0], y[:0], ev["num_classes"]))
    for k in [k for k in _STATES if k[:2] == (run, w) or k[0] != run]:
        del _STATES[k]  # one state per worker of the current run
    _STATES[cache_key] = state
    return state


class WorkerCrash(RuntimeError):
    """Raised by a worker whose fault attack makes it crash this round (an unhandled error)."""


def run_event(ev: dict, store: Store) -> dict:
    """Do one validated event's work against ``store``: the handler minus parsing and error mapping."""
    run, rnd, w = ev["run_id"], ev["round"], ev["worker_id"]
    state = _state(ev, store)
    what = fault(state, rnd)
    if what == "crash":
        raise WorkerCrash(f"worker {w} crashed in round {rnd} (fault attack {state.spec.attack!r})")
    if what is not None:
        time.sleep(what)
    blob = _fetch(store, params_key(run, rnd), ev["params_digest"])
    params = wire.decode(blob, kind="params", run_id=run, round=rnd, worker=-1,
                         dtype=torch.float32, shape=(ev["d"],))
    grad, loss, secs = timed_gradient(state, params, rnd)
    out = wire.encode(grad, kind="grad", run_id=run, round=rnd, worker=w,
                      token=bytes.fromhex(ev["token"]))
    written = store.put(grad_key(run, rnd, w), out, if_absent=True)
    return {"ok": True, "worker_id": w, "round": rnd, "loss": loss, "compute_s": secs,
            "written": written, "bytes": len(out)}


def handler(event, context=None):
    """AWS Lambda entry point. Returns a JSON-able dict; never raises for a bad event or blob."""
    try:
        ev = parse_event(event)
        return run_event(ev, _store(ev["store"]))
    except BadEvent as e:
        return {"ok": False, "error_type": "BadEvent", "error": str(e)}
    except MissingBlob as e:
        return {"ok": False, "error_type": "MissingBlob", "error": str(e)}
    except wire.WireError as e:
        return {"ok": False, "error_type": "WireError", "error": str(e)}
    except ValueError as e:  # store configuration, unknown model or attack names
        return {"ok": False, "error_type": "BadSettings", "error": str(e)}
