"""The sweep function: one Lambda invocation runs one sweep cell, a whole training run with its
workers in-process, and writes the result to the store. ``handler(event, context)`` is the
entry point (``+parallel=lambda`` invokes it; ``deploy/template.yaml`` deploys it).

It sits in the experiments layer, not beside the worker handler in ``robustagg.backends``:
it runs the training loop, and the backends never import the loop.

The event names a sweep, a cell and the cell's token, and holds the cell's settings as data;
never a host, a port, a bucket or a credential (schema version 1)::

    {"version": 1, "sweep_id": "5c1d2e3f4a5b", "cell": 3, "token": "<64 hex>",
     "config": {"rule": "median", "rule_kwargs": {}, "attack": "ipm", "rounds": 50, ...}}

``config`` holds fields of :class:`robustagg.run.config.TrainConfig` as JSON values: names from
the registries (no ``_target_``, no objects), keyword arguments as scalars or lists of
scalars. Where the run happens is the function's, so the placement fields (backend, address,
output folder, checkpoints, resume) are refused, and so is a dataset ``root`` (the data a
function reads is in its image). The config is validated by constructing the ``TrainConfig``
(types, ranges, the rule's bound) before anything runs.

The store and the function's credentials come from its configuration (``RA_STORE``, see
:mod:`robustagg.backends.serverless.function_config`); with Redis ``auth: "round"`` the
invocation logs in as the cell's user, which may only ``SET`` the cell's result key. The result
(:mod:`robustagg.backends.serverless.cell_result`: JSON under an HMAC keyed with the token) holds
the run's per-round records (``metrics.jsonl``), its summary, its log lines and its peak
resident memory; a run that fails writes its error instead.

Answer: ``{"ok", "sweep_id", "cell", "written", "run_s", "error_type", "error"}``, never an
exception: ``BadEvent`` (the schema), ``BadSettings`` (a config ``TrainConfig`` refuses),
``RunError`` (the run raised); these two are in the stored result as well; ``BadConfig`` (the function's
environment), ``StoreError``.
"""
from __future__ import annotations

import json
import logging
import math
import os
import re
import resource
import tempfile
import time

from robustagg.backends.serverless import cell_result, function_config
from robustagg.backends.serverless.handler import BadEvent, json_object
from robustagg.backends.serverless.stores import make_store
from robustagg.backends.serverless.wire import check_run_id
from robustagg.costmodel import LAMBDA_MB_PER_VCPU

SCHEMA_VERSION = 1
_EVENT_FIELDS = {"version", "sweep_id", "cell", "token", "config"}
# TrainConfig fields that say where and how a run is placed: the function's business
PLACEMENT = ("backend", "address", "num_cpus", "object_store_mb", "connect_timeout_s",
             "backend_kwargs", "output_dir", "resume", "checkpoint_every", "progress")
_MAX_TEXT = 64 * 1024   # characters of the event, as JSON text
_MAX_KWARGS = 16
_MAX_LIST = 64
_MAX_PRE = 8
_IDENT = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}\Z")
_SCALARS = (str, int, float, bool, type(None))
LOG_FORMAT = "[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"
_MAX_LOG = 256 * 1024


def _is_scalar_or_list(v) -> bool:
    if isinstance(v, list):
        return len(v) <= _MAX_LIST and all(isinstance(x, _SCALARS) for x in v)
    return isinstance(v, _SCALARS)


def _check_kwargs(kw, where: str) -> dict:
    if not isinstance(kw, dict) or len(kw) > _MAX_KWARGS:
        raise BadEvent(f"{where} must be an object of at most {_MAX_KWARGS} settings")
    for k, v in kw.items():
        if not isinstance(k, str) or not _IDENT.match(k):
            raise BadEvent(f"{where}: key {str(k)[:40]!r} is not a setting name (no _target_: "
                           f"components are named from the registries)")
        if not _is_scalar_or_list(v):
            raise BadEvent(f"{where}[{k!r}] must be a scalar or a list of at most {_MAX_LIST} scalars")
    return kw


def _check_value(k: str, v, hint) -> None:
    """``v`` is a JSON value of the kind TrainConfig's field ``k`` (type ``hint``) takes."""
    where = f"event.config.{k}"
    if hint in (object, str):  # a registry name, or a choice such as the optimizer
        if not isinstance(v, str) or not _IDENT.match(v):
            raise BadEvent(f"{where} must be a registered name, got {str(v)[:40]!r}")
    elif hint is dict:
        _check_kwargs(v, where)
    elif hint is list:  # pre: [name, settings] entries
        if not isinstance(v, list) or len(v) > _MAX_PRE:
            raise BadEvent(f"{where} must be a list of at most {_MAX_PRE} entries")
        for i, e in enumerate(v):
            if not (isinstance(e, list) and len(e) == 2 and isinstance(e[0], str)
                    and _IDENT.match(e[0])):
                raise BadEvent(f"{where}[{i}] must be [name, {{settings}}]")
            _check_kwargs(e[1], f"{where}[{i}]")
    elif hint == list[int]:  # e.g. the learning rate's milestones; TrainConfig checks values
        if not (isinstance(v, list) and len(v) <= _MAX_LIST
                and all(isinstance(e, int) and not isinstance(e, bool) for e in v)):
            raise BadEvent(f"{where} must be a list of at most {_MAX_LIST} integers")
    elif hint is bool:
        if not isinstance(v, bool):
            raise BadEvent(f"{where} must be true or false, got {type(v).__name__}")
    elif hint in (int, float):
        if isinstance(v, bool) or not isinstance(v, (int, float) if hint is float else int):
            raise BadEvent(f"{where} must be {'a number' if hint is float else 'an integer'}, "
                           f"got {type(v).__name__}")
    else:
        raise BadEvent(f"{where} is not accepted in a cell's event")


def _check_config(config) -> dict:
    import typing

    from robustagg.run.config import TrainConfig

    if not isinstance(config, dict):
        raise BadEvent(f"event: config must be an object, got {type(config).__name__}")
    hints = typing.get_type_hints(TrainConfig)
    placed = sorted(set(config) & set(PLACEMENT))
    if placed:
        raise BadEvent(f"event.config: {placed} are not accepted: where a cell runs is the sweep "
                       f"function's (its workers in-process, its output in the store)")
    unknown = set(config) - set(hints)
    if unknown:
        raise BadEvent(f"event.config: unknown fields {sorted(unknown)[:8]}"[:200])
    for k, v in config.items():
        _check_value(k, v, hints[k])
    if "root" in config.get("dataset_kwargs", {}):
        raise BadEvent("event.config.dataset_kwargs: 'root' is not accepted: the data a "
                       "function reads is in its image")
    return config


def parse_event(event) -> dict:
    """Validate ``event`` against the schema; returns it, or raises BadEvent naming the field."""
    event = json_object(event)
    try:
        size = len(json.dumps(event))
    except (TypeError, ValueError, RecursionError) as e:
        raise BadEvent(f"event is not plain JSON: {type(e).__name__}") from None
    if size > _MAX_TEXT:
        raise BadEvent(f"event is longer than {_MAX_TEXT} characters")
    version = event.get("version")
    if type(version) is not int or version != SCHEMA_VERSION:
        raise BadEvent(f"event: field 'version' must be {SCHEMA_VERSION}, got {version!r}"[:120])
    if "store" in event:
        raise BadEvent("event: a 'store' field is not accepted: the store's location and "
                       f"credentials come from the function's configuration "
                       f"({function_config.STORE_ENV})")
    unknown = set(event) - _EVENT_FIELDS
    missing = _EVENT_FIELDS - set(event)
    if unknown or missing:
        raise BadEvent(f"event: unknown fields {sorted(unknown)}, missing {sorted(missing)}"[:200])
    try:
        check_run_id(event["sweep_id"])
    except ValueError as e:
        raise BadEvent(f"event: sweep_id: {e}"[:120]) from None
    cell = event["cell"]
    if type(cell) is not int or not 0 <= cell < 2**31:
        raise BadEvent(f"event: cell must be an int in [0, 2^31), got {cell!r}"[:120])
    tok = event["token"]
    if not isinstance(tok, str) or not re.fullmatch(r"[0-9a-f]{64}", tok):
        raise BadEvent("event: token must be 64 lowercase hex characters")
    _check_config(event["config"])
    return event


def _threads(environ) -> int:
    """Torch threads: ``RA_TORCH_THREADS``, else the function's vCPUs (one per 1,769 MB)."""
    if environ.get("RA_TORCH_THREADS"):
        return max(1, int(environ["RA_TORCH_THREADS"]))
    mem = float(environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", LAMBDA_MB_PER_VCPU))
    return max(1, math.floor(mem / LAMBDA_MB_PER_VCPU))


class _Lines(logging.Handler):
    """Keeps the run's log records as JSON lines ``[created, logger, level, message]``."""

    def __init__(self):
        super().__init__(logging.INFO)
        self.lines, self.size = [], 0

    def emit(self, record):
        line = json.dumps([record.created, record.name, record.levelname, record.getMessage()])
        if self.size + len(line) < _MAX_LOG:
            self.lines.append(line)
            self.size += len(line) + 1


def run_cell(ev: dict) -> dict:
    """Run the cell's training in a temporary folder; the result document (ok or not)."""
    import torch

    from robustagg.run.config import TrainConfig
    from robustagg.training import train
    from robustagg.training.metrics import read_jsonl

    torch.set_num_threads(_threads(os.environ))
    doc = {"version": cell_result.VERSION, "sweep_id": ev["sweep_id"], "cell": ev["cell"],
           "ok": False, "summary": None, "history": [], "log": "", "error_type": None,
           "error": None, "run_s": 0.0, "peak_rss_mb": 0.0}
    lines = _Lines()
    logger = logging.getLogger("robustagg.training")
    logger.addHandler(lines)
    level = logger.level
    logger.setLevel(logging.INFO)
    t0 = time.perf_counter()
    try:
        with tempfile.TemporaryDirectory(prefix="ra_cell_") as out:
            try:
                cfg = TrainConfig(**ev["config"], backend="local", output_dir=out,
                                  progress=False)
            except (TypeError, ValueError) as e:
                doc.update(error_type="BadSettings", error=f"event.config: {e}"[:2000])
                return doc
            try:
                res = train(cfg)
            except Exception as e:  # the run's own failure: the launcher writes failed.json
                doc.update(error_type="RunError", error=f"{type(e).__name__}: {e}"[:2000])
            else:
                doc.update(ok=True, summary=res.summary,
                           history=read_jsonl(os.path.join(out, "metrics.jsonl")))
    finally:
        logger.removeHandler(lines)
        logger.setLevel(level)
        doc["run_s"] = time.perf_counter() - t0
        doc["log"] = "\n".join(lines.lines)
        doc["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    return doc


def write_result(ev: dict, doc: dict, environ=os.environ) -> bool:
    """Write ``doc`` once to the cell's key, in the store of the function's configuration."""
    settings = function_config.store_settings(environ)
    token = bytes.fromhex(ev["token"])
    cfg = function_config.worker_store_config(settings, environ, ev["sweep_id"], ev["cell"], token)
    try:
        store = make_store(cfg)
    except ValueError as e:
        raise function_config.ConfigError(f"{function_config.STORE_ENV}: {e}") from None
    try:
        return store.put(cell_result.cell_key(ev["sweep_id"], ev["cell"], token),
                         cell_result.encode(doc, token), True)
    except Exception as e:  # redis-py, botocore: connection, authentication, permission errors
        raise StoreError(f"{type(e).__name__}: {str(e)[:200]}") from None
    finally:
        store.close()


class StoreError(RuntimeError):
    """The store failed: connection, authentication, permission."""


_ERRORS = ((BadEvent, "BadEvent"), (function_config.ConfigError, "BadConfig"), (StoreError, "StoreError"))


def handler(event, context=None) -> dict:
    """AWS Lambda entry point: a JSON-able answer, never an exception."""
    answer = {"ok": False, "sweep_id": None, "cell": None, "written": False, "run_s": 0.0,
              "error_type": None, "error": None}
    try:
        ev = parse_event(event)
        answer.update(sweep_id=ev["sweep_id"], cell=ev["cell"])
        function_config.store_settings(os.environ)  # a misconfigured function fails before the run
        doc = run_cell(ev)
        answer["written"] = write_result(ev, doc)
        answer.update(ok=doc["ok"], run_s=doc["run_s"], error_type=doc["error_type"],
                      error=doc["error"])
    except Exception as e:
        kind = next((name for cls, name in _ERRORS if isinstance(e, cls)), None)
        msg = str(e) if kind else f"{type(e).__name__}: {e}"
        answer.update(ok=False, error_type=kind or "InternalError", error=msg[:500])
    return answer
