"""Helpers for the experiments tests: compose the project's Hydra config, run the CLI in-process."""
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
        # Hydra's logging setup would stay on the root logger for the rest of the session.
        quiet = ["hydra/job_logging=disabled", "hydra/hydra_logging=disabled"]
        monkeypatch.setattr(sys, "argv", ["experiments.train", *args, *quiet])
        return main()

    return _cli
