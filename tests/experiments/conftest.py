"""Helpers for the experiments tests: compose the project's Hydra config, run the CLI in-process."""
import logging
import sys
from pathlib import Path

import pytest

import experiments

CONF = Path(experiments.__file__).parent / "conf"


@pytest.fixture
def compose():
    """``compose(*overrides)`` -> the composed config (Hydra's compose API)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    import experiments.train  # noqa: F401 - registers the structured configs

    def _compose(*overrides):
        with initialize_config_dir(str(CONF), version_base="1.3"):
            return hydra_compose("config", overrides=list(overrides))

    return _compose


@pytest.fixture
def cli(monkeypatch):
    """``cli(*args)`` runs ``python -m experiments.train *args`` in this process (so a sweep
    reuses the session's Ray); returns what the task returned for a single run."""
    from experiments.train import main

    def _cli(*args):
        # Hydra's logging setup would stay on the root logger for the rest of the session, and
        # its "disabled" configs disable every existing logger and raise the root to ERROR:
        # restored afterwards, so later tests' logs (and caplog) still work.
        quiet = ["hydra/job_logging=disabled", "hydra/hydra_logging=disabled"]
        monkeypatch.setattr(sys, "argv", ["experiments.train", *args, *quiet])
        root = logging.getLogger()
        saved = (root.level, list(root.handlers),
                 {name: (lg.disabled, lg.level, lg.propagate)
                  for name, lg in logging.Logger.manager.loggerDict.items()
                  if isinstance(lg, logging.Logger)})
        try:
            return main()
        finally:
            root.setLevel(saved[0])
            root.handlers[:] = saved[1]
            for name, lg in logging.Logger.manager.loggerDict.items():
                if isinstance(lg, logging.Logger):  # loggers made during the run: enabled
                    lg.disabled, lg.level, lg.propagate = saved[2].get(name, (False, lg.level,
                                                                              lg.propagate))

    return _cli
