"""The Hydra entry point: ``python -m experiments.train [overrides]`` (what ``make run`` runs).

    python -m experiments.train                                    # the default experiment
    python -m experiments.train rule=median attack=ipm attack.epsilon=0.1 byzantine=3
    python -m experiments.train -m rule=mean,krum attack=none,alie seed=0,1   # a sweep
    python -m experiments.train -m +study=reproduction             # the reproduction study

The config (``experiments/conf``) is typed by :mod:`experiments.schema`, turned into a
:class:`robustagg.training.TrainConfig` (which checks the rule's bound on n and f) and run
with :func:`robustagg.training.train`. Rules, pre-aggregations and attacks are named from the
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
from hydra.utils import get_method, instantiate
from omegaconf import DictConfig, OmegaConf

from experiments import schema
from experiments.sweep import FAILED, progress_line, task_config, write_summary

schema.register()

CONFIG_FILE = "config.yaml"


def _named(node: dict):
    """``(name or factory, kwargs)`` of a ``name:``/``_target_:`` node."""
    node = dict(node)
    if "_target_" in node:
        return get_method(node.pop("_target_")), node
    return node.pop("name"), node


def train_config(config: dict, output_dir=None):
    """The :class:`~robustagg.training.TrainConfig` of a resolved experiment config (a dict as
    :func:`experiments.sweep.task_config` returns). Constructing it checks every value and the
    rule's bound, so this is the check that runs before any Ray process starts."""
    from robustagg.training import TrainConfig

    c = config
    pre = list((c.get("pre") or {}).values())
    if "_target_" in c["rule"] or any("_target_" in p for p in pre):
        # A user's own rule or pre-aggregation: build the objects here (Hydra's instantiate).
        import robustagg as ra

        def build(node, factory):
            return instantiate(node) if "_target_" in node else factory(**node)

        rule = build(c["rule"], ra.aggregator)
        if pre:
            rule = ra.Pipeline(pre=[build(p, ra.pre_aggregator) for p in pre], rule=rule)
        rule_args = {"rule": rule, "pre": []}
    else:
        name, kwargs = _named(c["rule"])
        rule_args = {"rule": name, "rule_kwargs": kwargs, "pre": [dict(p) for p in pre]}
    if "_target_" in c["attack"]:  # a user's own attack: the training loop takes the object
        attack, attack_kwargs = instantiate(c["attack"]), {}
    else:
        attack, attack_kwargs = _named(c["attack"])
    data = dict(c["dataset"])
    split = {k: data.pop(k) for k in ("partition", "alpha", "shards_per_worker") if k in data}
    dataset, dataset_kwargs = _named(data)
    model, model_kwargs = _named(c["model"])
    opt = dict(c["optimizer"])
    backend = dict(c["backend"])
    return TrainConfig(
        dataset=dataset, dataset_kwargs=dataset_kwargs, **split,
        model=model, model_kwargs=model_kwargs,
        workers=c["workers"], byzantine=c["byzantine"], **rule_args,
        attack=attack, attack_kwargs=attack_kwargs,
        rounds=c["rounds"], batch_size=c["batch_size"], optimizer=opt.pop("name"), **opt,
        eval_every=c["eval_every"], seed=c["seed"], checkpoint_every=c["checkpoint_every"],
        resume=c["resume"],
        progress=c["progress"], output_dir=None if output_dir is None else str(output_dir),
        backend=backend.pop("name"), backend_kwargs=backend.pop("kwargs"), **backend,
    )


def preflight(cfg: DictConfig, where: str = ""):
    """Check a composed config without running it (the sweeper calls this for every cell before
    the first one starts); raises ``ValueError`` naming ``where`` and the problem."""
    try:
        return train_config(task_config(cfg))
    except (ValueError, TypeError) as e:
        raise ValueError(f"{where + ': ' if where else ''}{e}") from e


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
def main(cfg: DictConfig):
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


if __name__ == "__main__":
    main()
