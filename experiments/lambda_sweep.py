"""Sweep cells as Lambda invocations (``+parallel=lambda``): what the Hydra launcher
(``hydra_plugins/robustagg_lambda_launcher.py``) does, without Hydra's types.

* :func:`cell_event_config`: a cell's ``TrainConfig`` as the data its event carries (registry
  names and plain settings; where it runs is the sweep function's).
* :func:`estimate`: the cost model's time and $ for a cell run whole in one invocation
  (:func:`robustagg.costmodel.estimate_cell`, from a reference measurement rescaled to the
  cell's model size, workers, rounds and batch); :func:`refuse_over_limit` stops the sweep
  before any launch when a cell would pass the function's timeout (at most Lambda's 15 min).
* :func:`write_cell`: a cell's result written into its folder as ``experiments.train`` writes a
  local run (``config.yaml``, ``config.json``, ``metrics.jsonl``/``.csv``, ``summary.json`` or
  ``failed.json``, the run's log lines to ``train.log``), so ``experiments.report`` reads a
  Lambda sweep as it reads a local one.
* :func:`cost_line`, :func:`sweep_record`: billed duration and memory of each invocation (its
  REPORT line) in dollars at list prices, per cell and for the sweep.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, replace
from pathlib import Path

from omegaconf import OmegaConf

from robustagg import costmodel as cm

from .lambda_cell import PLACEMENT
from .schema import train_config
from .sweep import FAILED, write_summary

CONFIG_FILE = "config.yaml"
RECORD = "lambda_sweep.json"
_NAMED = ("dataset", "model", "rule", "attack")


@dataclass(frozen=True)
class Reference:
    """A measured run the estimates are scaled from: one gradient's ``compute_s`` (batch
    ``batch_size``, model of ``d`` parameters) and per-round ``aggregation_s`` / ``step_s`` with
    ``workers`` workers, on one vCPU; ``startup_s`` before round 0 in a warm function."""
    d: int
    workers: int
    batch_size: int
    compute_s: float
    aggregation_s: float
    step_s: float
    startup_s: float


def cell_event_config(tc) -> dict:
    """The settings of ``tc`` (a TrainConfig) a cell's event carries; ValueError for a cell that
    names a component by object (``_target_``): the function builds from registry names."""
    objects = [k for k in _NAMED if not isinstance(getattr(tc, k), str)]
    if objects:
        raise ValueError(f"a cell on Lambda names its {objects} from the registries; "
                         f"got {[repr(getattr(tc, k))[:60] for k in objects]}")
    if tc.backend != "local":
        raise ValueError(f"a cell on Lambda runs its workers in-process: backend must be 'local' "
                         f"(+parallel=lambda sets it), got backend={tc.backend!r}")
    return {k: v for k, v in tc.to_dict().items() if k not in PLACEMENT}


_SIZES: dict = {}


def model_size(tc) -> int:
    """Parameters of ``tc``'s model for its dataset (sized on the meta device: no memory)."""
    import torch

    from robustagg.run.data import load_dataset
    from robustagg.run.models import build_model

    key = json.dumps([tc.dataset, tc.dataset_kwargs, tc.model, tc.model_kwargs], sort_keys=True)
    if key not in _SIZES:
        data = load_dataset(tc.dataset, **tc.dataset_kwargs)
        with torch.device("meta"):
            model = build_model(tc.model, data.input_shape, data.num_classes, **tc.model_kwargs)
        _SIZES[key] = sum(p.numel() for p in model.parameters())
    return _SIZES[key]


def estimate(tc, ref: Reference, memory_mb: int, prices: cm.Prices = cm.Prices()) -> cm.CellEstimate:
    """The cost model's time and $ of the cell ``tc`` run whole on a function of ``memory_mb``."""
    base = cm.Workload(d=ref.d, n=ref.workers, rounds=1, compute_s=ref.compute_s,
                       aggregation_s=ref.aggregation_s, step_s=ref.step_s)
    w = cm.rescale(base, d=model_size(tc), n=tc.workers, rounds=tc.rounds)
    w = replace(w, compute_s=w.compute_s * tc.batch_size / ref.batch_size)
    return cm.estimate_cell(w, memory_mb, ref.startup_s, prices)


def refuse_over_limit(estimates: dict, timeout_s: float, memory_mb: int) -> None:
    """Raise ValueError naming every cell (name -> CellEstimate) whose estimate passes the
    function's timeout (at most Lambda's 900 s), before anything is launched."""
    limit = min(timeout_s, cm.LAMBDA_MAX_TIMEOUT_S)
    over = {n: e for n, e in estimates.items() if e.over_limit(limit)}
    if over:
        lines = [f"  {n}: ~{e.time_s:,.0f} s ({e.workload.rounds:,} rounds x {e.workload.n} "
                 f"workers, d={e.workload.d:,})" for n, e in over.items()]
        raise ValueError(
            f"{len(over)} cell(s) would run past the sweep function's {limit:g} s limit on "
            f"{memory_mb} MB (Lambda stops an invocation at {cm.LAMBDA_MAX_TIMEOUT_S:g} s); "
            f"nothing was launched. Fewer rounds, a smaller model or more memory (more CPU) "
            f"would fit; or run these cells with the local or Ray launcher:\n" + "\n".join(lines))


def billed_ms(outcome) -> float:
    """What the invocation is billed for: its billed duration plus its init (a container
    image's cold start is billed)."""
    return (outcome.billed_ms or 0.0) + (outcome.init_ms or 0.0)


def cost_line(name: str, outcome, prices: cm.Prices = cm.Prices()) -> str:
    c = cm.invocation_cost(outcome.memory_mb or 0, billed_ms(outcome), prices)
    status = "ok" if outcome.ok else f"FAILED ({(outcome.error or '')[:120]})"
    return (f"[lambda] {name}: billed {billed_ms(outcome):,.0f} ms at {outcome.memory_mb or 0:.0f} MB "
            f"(max used {outcome.max_memory_mb or 0:.0f} MB) = {c['gb_s']:.2f} GB-s, "
            f"${c['total']:.6f}; {outcome.attempts} attempt(s), {outcome.wall_s:.1f} s; {status}")


def sweep_record(outcomes: dict, estimates: dict, wall_s: float, concurrency: int,
                 prices: cm.Prices = cm.Prices()) -> dict:
    """The sweep's cost record: one entry per cell (name -> CellOutcome) and the totals."""
    cells = []
    for name, o in outcomes.items():
        c = cm.invocation_cost(o.memory_mb or 0, billed_ms(o), prices)
        cells.append({"cell": name, "ok": o.ok, "billed_ms": billed_ms(o), "memory_mb": o.memory_mb,
                      "max_memory_mb": o.max_memory_mb, "init_ms": o.init_ms,
                      "attempts": o.attempts, "wall_s": o.wall_s, "gb_s": c["gb_s"],
                      "usd": c["total"], "estimate_s": estimates[name].time_s,
                      "run_s": (o.result or {}).get("run_s")})
    total = {k: sum(c[k] for c in cells) for k in ("billed_ms", "gb_s", "usd")}
    return {"cells": cells, "wall_s": wall_s, "concurrency": concurrency,
            "sum_of_cell_walls_s": sum(c["wall_s"] for c in cells), **total,
            "prices": f"{prices.region} {prices.date}"}


def sweep_line(record: dict) -> str:
    n, failed = len(record["cells"]), sum(not c["ok"] for c in record["cells"])
    return (f"[lambda] sweep: {n} cells{f' ({failed} failed)' if failed else ''} in "
            f"{record['wall_s']:.1f} s with concurrency {record['concurrency']} (cells' own "
            f"times add up to {record['sum_of_cell_walls_s']:.1f} s); billed "
            f"{record['billed_ms'] / 1000:,.1f} s = {record['gb_s']:,.2f} GB-s, "
            f"${record['usd']:.6f} at {record['prices']} list prices")


def _replay_log(text: str) -> None:
    """The function's log lines (JSON ``[created, logger, level, message]``) through this
    process's logging, with their own times: Hydra's job logging puts them in train.log."""
    for line in text.splitlines():
        try:
            created, name, level, msg = json.loads(line)
            rec = logging.makeLogRecord({"name": str(name), "levelname": str(level),
                                         "levelno": logging.getLevelName(str(level)),
                                         "msg": str(msg), "created": float(created)})
        except (ValueError, TypeError):
            continue  # an unreadable line is left out, never interpreted
        if isinstance(rec.levelno, int):
            logging.getLogger(rec.name).handle(rec)


def write_cell(output_dir, config: dict, outcome) -> dict:
    """Write ``outcome`` (a CellOutcome) into ``output_dir`` as a local run of ``config`` (the
    resolved experiment config) writes it; returns the summary, or raises RuntimeError with
    the cell's error after writing ``failed.json``."""
    from robustagg.training.metrics import MetricsLog

    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / CONFIG_FILE).write_text(OmegaConf.to_yaml(config))
    result = outcome.result or {}
    _replay_log(result.get("log", ""))
    if not outcome.ok:
        (out / FAILED).write_text(json.dumps({"error": outcome.error, "config": config},
                                             indent=1, default=str))
        raise RuntimeError(f"cell failed on Lambda: {outcome.error}")
    with open(out / "config.json", "w") as fh:
        json.dump(train_config(config, out).to_dict(), fh, indent=1)
    log = MetricsLog(str(out))
    try:
        for rec in result["history"]:
            log.write(rec)
    finally:
        log.close()
    write_summary(out, config, result["summary"])
    return result["summary"]
