"""The Hydra entry point: ``python -m experiments.train [overrides]`` (what ``make run`` runs).

    python -m experiments.train                                    # the default experiment
    python -m experiments.train rule=median attack=ipm attack.epsilon=0.1 byzantine=3
    python -m experiments.train -m rule=mean,krum attack=none,alie seed=0,1   # a sweep
    python -m experiments.train -m +study=reproduction             # the reproduction study

The config (``experiments/conf``) is typed by :mod:`experiments.schema` (generated from
:class:`robustagg.training.TrainConfig`), turned back into a ``TrainConfig`` (which checks the
rule's bound on n and f) and run with :func:`robustagg.training.train`. Rules, pre-aggregations and attacks are named from the
registries (``name: krum``) or built from ``_target_`` (a user's own class); models and datasets
are named or given by a ``_target_`` factory.

A run's folder (``hydra.run.dir``, or the cell's folder of a sweep) holds ``config.yaml`` (the
resolved config), the training loop's metrics files and ``summary.json``. In a sweep every cell
runs in this process on one Ray instance, started once (or joined, with ``backend.address``);
parallel launchers (Hydra's Ray or joblib launcher) are described in ``docs/experiments.md``.
"""
import atexit
import json
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from experiments import schema
from experiments.schema import preflight, task_config, train_config
from experiments.sweep import FAILED, progress_line, write_summary

schema.register()

CONFIG_FILE = "config.yaml"
# Option names Hydra's override grammar reads as floats (attack=nan is the float NaN): the
# command line's spelling, and the option file that holds them.
FLOAT_NAMED = {"attack": {"nan": "nan_grad", "inf": "inf_grad"}}


def float_named(args: list) -> list:
    """``args`` with ``attack=nan`` / ``attack=inf`` (also in a sweep, ``attack=none,nan``)
    spelled as their option files, ``nan_grad`` / ``inf_grad``."""
    out = []
    for arg in args:
        key, sep, value = arg.partition("=")
        names = FLOAT_NAMED.get(key)
        if sep and names:
            value = ",".join(names.get(v.strip().lower(), v) for v in value.split(","))
        out.append(key + sep + value)
    return out


_ray_started = False


def _ray_once(tc) -> None:
    """Start (or join) Ray once per process; later cells and ``train`` reuse it."""
    global _ray_started
    from robustagg.backends.ray_cluster import ensure_ray

    _, started = ensure_ray(tc.address, num_cpus=tc.num_cpus, object_store_mb=tc.object_store_mb,
                            connect_timeout_s=tc.connect_timeout_s)
    if started and not _ray_started:
        import ray

        _ray_started = True
        atexit.register(ray.shutdown)


def run(cfg: DictConfig, output_dir) -> dict:
    """Run one experiment into ``output_dir``; returns its summary."""
    from robustagg.training import train

    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    config = task_config(cfg)
    tc = train_config(config, output_dir)
    (output_dir / CONFIG_FILE).write_text(OmegaConf.to_yaml(config))
    if tc.backend == "ray":
        _ray_once(tc)
    try:
        summary = train(tc).summary
    except Exception as e:  # kept for the report; the sweep reports the failure at its end
        (output_dir / FAILED).write_text(json.dumps({"error": f"{type(e).__name__}: {e}",
                                                     "config": config}, indent=1, default=str))
        raise
    write_summary(output_dir, config, summary)
    return summary


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def _task(cfg: DictConfig):
    hc = HydraConfig.get()
    try:
        preflight(cfg)  # a sweep's cells were checked by the sweeper already; this is cheap
    except ValueError as e:
        sys.exit(f"experiments.train: {e}")
    if hc.mode == RunMode.MULTIRUN:
        print(progress_line(hc.sweep.dir, hc.sweep.subdir) or f"[cell] {hc.sweep.subdir}", flush=True)
    summary = run(cfg, hc.runtime.output_dir)
    print(f"final test accuracy {summary.get('final_test_acc')}  ->  {hc.runtime.output_dir}", flush=True)
    return summary.get("final_test_acc")


def main():
    """The command line's entry point: Hydra's, after :func:`float_named`."""
    sys.argv[1:] = float_named(sys.argv[1:])
    return _task()


if __name__ == "__main__":
    main()
