"""Sweeps: the cells of a ``-m`` run, which of them already finished, and the progress line.

``GridSweeper`` is Hydra's basic sweeper (a cartesian product of the command line's
comma-separated values) with three additions:

* ``grids``: a list of products whose union is swept, so a study preset can name exactly
  the cells it needs (e.g. three rules under four attacks, plus Krum with and without
  NNM under non-iid data) instead of one large product. Values on the command line win
  over a grid's values for the same key.
* Every cell is composed and checked (rule bounds included) before the first one starts, so a
  bad value in cell 40 fails at once rather than after 39 cells of training.
* A cell whose folder holds a ``summary.json`` written for the same resolved config is
  skipped: an interrupted sweep re-run with the same command continues where it stopped.
* Cells run in this process (Hydra's default launcher) share one set of Ray actors: the
  parameter server's host and the worker actors start with the first cell and are given each
  cell's model, data and rule (:mod:`robustagg.backends.ray_pool`); they stop when the sweep
  ends, also when a cell fails.

The sweeper writes ``sweep.json`` (every cell's folder name, in order) into the sweep folder;
the task reads it to print ``[cell k/m]``, and ``experiments.report`` reads it to know which
cells belong to the sweep.
"""
import copy
import itertools
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

from hydra.core.config_store import ConfigStore
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

from experiments.schema import preflight, task_config

# Hydra takes plugins only from the hydra_plugins namespace package, found on sys.path:
# experiments/_plugins holds our part of it (the sweeper class Hydra instantiates).
_PLUGINS = str(Path(__file__).with_name("_plugins"))
if _PLUGINS not in sys.path:
    sys.path.append(_PLUGINS)

SUMMARY = "summary.json"
FAILED = "failed.json"  # written instead when the cell's run raised
SWEEP_INDEX = "sweep.json"


@dataclass
class GridSweeperConf:
    _target_: str = "hydra_plugins.robustagg_grid_sweeper.GridSweeper"
    max_batch_size: Optional[int] = None
    params: Optional[Dict[str, str]] = None
    grids: List[Dict[str, str]] = field(default_factory=list)
    dry_run: bool = False  # compose, check and list the cells, run none
    skip_infeasible: bool = False  # leave out (and list) cells whose rule bound fails, not stop


ConfigStore.instance().store(group="hydra/sweeper", name="grid", node=GridSweeperConf)


def is_finished(cell_dir: Path, config: dict) -> bool:
    """True when ``cell_dir`` holds a summary written by a finished run of exactly ``config``."""
    path = Path(cell_dir) / SUMMARY
    if not path.is_file():
        return False
    try:
        return json.loads(path.read_text()).get("config") == config
    except (OSError, ValueError):  # a summary cut short by the interruption: run the cell again
        return False


def write_summary(cell_dir: Path, config: dict, summary: dict) -> Path:
    """Write ``summary.json`` (the run's summary plus its resolved ``config``) atomically."""
    path = Path(cell_dir) / SUMMARY
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({**summary, "config": config}, indent=1, default=str))
    tmp.replace(path)
    (Path(cell_dir) / FAILED).unlink(missing_ok=True)
    return path


def progress_line(sweep_dir: Path, cell_name: str) -> Optional[str]:
    """``[cell k/m] <name> (r remain)`` for a cell of the sweep in ``sweep_dir``, else None."""
    try:
        index = json.loads((Path(sweep_dir) / SWEEP_INDEX).read_text())
        todo = index["to_run"]
        k = todo.index(cell_name) + 1
    except (OSError, ValueError, KeyError):
        return None
    return f"[cell {k}/{len(todo)}] {cell_name} ({len(todo) - k} remain, {len(index['skipped'])} skipped as finished)"


def product(overrides) -> List[List[str]]:
    """The cartesian product of parsed overrides, as Hydra's basic sweeper forms it: one
    ``key=value`` list per cell; a key given twice keeps its first place and its last values."""
    choices: Dict[str, List[str]] = {}
    for o in overrides:
        key = o.get_key_element()
        if o.is_sweep_override():
            if not o.is_discrete_sweep():
                raise HydraException(f"the grid sweeper does not support sweep type "
                                     f"{o.value_type.name} ({key})")
            choices[key] = [f"{key}={v}" for v in o.sweep_string_iterator()]
        else:
            choices[key] = [f"{key}={o.get_value_element_as_str()}"]
    return [list(cell) for cell in itertools.product(*choices.values())]


class _Composed:
    """Hydra's config loader, answering ``load_sweep_config`` for a cell composed before with a
    copy of that config (the launcher writes the job's number into it): the sweeper composes
    every cell to check it, and the launcher asks for each again (about 0.3-1 s a cell)."""

    def __init__(self, loader):
        self.loader, self.configs = loader, {}

    def load_sweep_config(self, master_config: DictConfig, sweep_overrides: List[str]) -> DictConfig:
        key = (id(master_config), tuple(sweep_overrides))
        if key not in self.configs:
            self.configs[key] = self.loader.load_sweep_config(master_config, list(sweep_overrides))
        return copy.deepcopy(self.configs[key])

    def __getattr__(self, name):  # the rest of the loader's interface
        if name in ("loader", "configs") or name.startswith("__"):  # unpickling: not set yet
            raise AttributeError(name)
        return getattr(self.loader, name)


class GridSweeper(Sweeper):
    """Hydra's basic sweeper over the union of ``grids``, skipping finished cells."""

    def __init__(self, max_batch_size: Optional[int] = None, params: Optional[Dict[str, str]] = None,
                 grids: Optional[List[Dict[str, str]]] = None, dry_run: bool = False,
                 skip_infeasible: bool = False) -> None:
        super().__init__()
        self.dry_run, self.skip_infeasible = dry_run, skip_infeasible
        self.max_batch_size = max_batch_size
        self.params = dict(params or {})
        self.grids = [dict(g) for g in (grids or [])] or [{}]
        self.hydra_context = self.config = self.launcher = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction,
              config: DictConfig) -> None:
        from hydra.core.plugins import Plugins

        hydra_context = HydraContext(config_loader=_Composed(hydra_context.config_loader),
                                     callbacks=hydra_context.callbacks)
        self.hydra_context, self.config = hydra_context, config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config)

    def cells(self, arguments: List[str]) -> List[List[str]]:
        """Override lists of every cell, in order, without duplicates."""
        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        seen, out = set(), []
        for grid in self.grids:
            # Later keys win: grid over params, command line over both.
            lines = [f"{k}={v}" for d in (self.params, grid) for k, v in d.items()] + list(arguments)
            for job in product(parser.parse_overrides(lines)):
                if tuple(job) not in seen:
                    seen.add(tuple(job))
                    out.append(job)
        return out

    def sweep(self, arguments: List[str]) -> Any:
        from robustagg.backends.ray_cluster import RAY_ENV
        from robustagg.backends.ray_pool import sweep_pool

        os.environ.update(RAY_ENV)  # before a launcher (Ray's) starts or joins Ray

        sweep_dir = Path(self.config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")

        todo, skipped, names, infeasible = [], [], [], []
        for job in self.cells(arguments):
            cfg = self.hydra_context.config_loader.load_sweep_config(self.config, list(job))
            name = str(cfg.hydra.sweep.subdir)
            try:
                preflight(cfg, where=f"cell {name}")
            except ValueError as e:
                if not self.skip_infeasible:
                    raise
                infeasible.append(str(e))
                continue
            names.append(name)
            if is_finished(sweep_dir / name, task_config(cfg)):
                skipped.append(name)
            else:
                todo.append((name, job))
        (sweep_dir / SWEEP_INDEX).write_text(json.dumps(
            {"cells": names, "skipped": skipped, "to_run": [n for n, _ in todo],
             "infeasible": infeasible}, indent=1))
        for reason in infeasible:
            print(f"left out: {reason}")
        print(f"sweep {sweep_dir}: {len(names)} cells, {len(skipped)} finished (skipped), "
              f"{len(todo)} to run" + (f", {len(infeasible)} infeasible left out" if infeasible else ""),
              flush=True)
        if self.dry_run:
            print("\n".join(f"  {n}" for n, _ in todo))
            return []

        jobs = [job for _, job in todo]
        size = self.max_batch_size or max(len(jobs), 1)
        returns = []
        with sweep_pool():  # cells run in this process share Ray actors (not other launchers')
            for first in range(0, len(jobs), size):
                results = self.launcher.launch(jobs[first:first + size], initial_job_idx=first)
                for r in results:
                    _ = r.return_value  # re-raises a failed cell's exception
                returns.append(results)
        return returns
