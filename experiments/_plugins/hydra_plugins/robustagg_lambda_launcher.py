"""The Lambda launcher Hydra sees (``hydra/launcher: robustagg_lambda``, chosen by
``+parallel=lambda``): each sweep cell, a whole training run with in-process workers, is one
invocation of the sweep function (:mod:`experiments.lambda_cell`), at most ``concurrency`` at a
time. The work is in :mod:`experiments.lambda_sweep` and
:mod:`robustagg.backends.serverless.sweep_client`; this class only speaks Hydra's Launcher
protocol. Hydra imports every module of the ``hydra_plugins`` package at start, which registers
the launcher's config below."""
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Optional, Sequence

from hydra.core.config_store import ConfigStore
from hydra.core.utils import JobReturn, configure_log, run_job, setup_globals
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, open_dict

log = logging.getLogger(__name__)


@dataclass
class LambdaLauncherConf:
    _target_: str = "hydra_plugins.robustagg_lambda_launcher.LambdaLauncher"
    _convert_: str = "all"                 # plain dicts for store and reference
    function_name: str = "robustagg-sweep"
    local: bool = True                     # serve the function here (local Lambda runtime)
    handler: str = "experiments.lambda_cell.handler"
    store: Optional[Dict[str, Any]] = None  # the store as this process reaches it (AWS)
    worker_auth: Optional[str] = None
    endpoint_url: Optional[str] = None
    region: str = "us-east-1"
    profile: Optional[str] = None
    memory_mb: int = 3008
    timeout_s: float = 900.0
    concurrency: int = 4
    function_concurrency: Optional[int] = None  # local only: environments (default concurrency)
    attempts: int = 10                     # invocations per cell while throttled
    backoff_s: float = 1.0
    backoff_cap_s: float = 30.0
    prices: Optional[str] = None           # JSON file overriding robustagg.costmodel.Prices
    reference: Dict[str, float] = field(default_factory=dict)  # experiments.lambda_sweep.Reference


ConfigStore.instance().store(group="hydra/launcher", name="robustagg_lambda",
                             node=LambdaLauncherConf)


class LambdaLauncher(Launcher):
    def __init__(self, **settings) -> None:
        super().__init__()
        self.settings = settings
        self.config = self.hydra_context = self.task_function = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction,
              config: DictConfig) -> None:
        self.config, self.hydra_context, self.task_function = config, hydra_context, task_function

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from experiments import lambda_sweep as ls
        from experiments.schema import task_config, train_config
        from robustagg import costmodel as cm
        from robustagg.backends.serverless.sweep_client import SweepFunction

        setup_globals()
        s = dict(self.settings)
        prices = cm.Prices.from_json(s["prices"]) if s.get("prices") else cm.Prices()
        ref = ls.Reference(**s["reference"])
        cells = []  # (index, name, sweep config, resolved config, event config)
        for k, overrides in enumerate(job_overrides):
            idx = initial_job_idx + k
            cfg = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
            with open_dict(cfg):
                cfg.hydra.job.id = cfg.hydra.job.num = idx
            config = task_config(cfg)
            tc = train_config(config)
            cells.append((idx, str(cfg.hydra.sweep.subdir), cfg, config, ls.cell_event_config(tc)))
        estimates = {name: ls.estimate(train_config(config), ref, s["memory_mb"], prices)
                     for _, name, _, config, _ in cells}
        ls.refuse_over_limit(estimates, s["timeout_s"], s["memory_mb"])
        Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        fn = SweepFunction(s["function_name"], local=s["local"], handler=s["handler"],
                           store=s["store"],
                           worker_auth=s["worker_auth"], concurrency=s["concurrency"],
                           function_concurrency=s["function_concurrency"],
                           memory_mb=s["memory_mb"], timeout_s=s["timeout_s"],
                           attempts=s["attempts"], backoff_s=s["backoff_s"],
                           backoff_cap_s=s["backoff_cap_s"], endpoint_url=s["endpoint_url"],
                           region=s["region"], profile=s["profile"])
        print(f"[lambda] {len(cells)} cells on {s['function_name']} ({'local runtime' if s['local'] else 'AWS'}, "
              f"{s['memory_mb']} MB, concurrency {s['concurrency']}); the cost model estimates "
              f"{sum(e.time_s for e in estimates.values()):,.0f} s and "
              f"${sum(e.cost for e in estimates.values()):.6f} in all", flush=True)
        names = {idx: name for idx, name, *_ in cells}
        outcomes = {}
        with fn:
            t0 = time.perf_counter()
            for o in fn.run({idx: ev for idx, _, _, _, ev in cells}):
                outcomes[o.cell] = o
                print(ls.cost_line(names[o.cell], o, prices), flush=True)
            wall = time.perf_counter() - t0
        runs = []
        for idx, name, cfg, config, _ in cells:  # into the cell folders, as a local run writes
            outcome = outcomes[idx]
            runs.append(run_job(hydra_context=self.hydra_context, config=cfg,
                                task_function=lambda _cfg, o=outcome, c=config: _write(o, c),
                                job_dir_key="hydra.sweep.dir", job_subdir_key="hydra.sweep.subdir"))
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        record = ls.sweep_record({names[i]: o for i, o in sorted(outcomes.items())}, estimates,
                                 wall, s["concurrency"], prices)
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        (sweep_dir / ls.RECORD).write_text(json.dumps(record, indent=1))
        print(ls.sweep_line(record), flush=True)
        return runs


def _write(outcome, config):
    from hydra.core.hydra_config import HydraConfig

    from experiments import lambda_sweep as ls

    summary = ls.write_cell(HydraConfig.get().runtime.output_dir, config, outcome)
    return summary.get("final_test_acc")
