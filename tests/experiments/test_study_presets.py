"""The published-findings presets compose every cell, with the cell counts docs/experiments.md
gives, 3 seeds per cell and each finding's own setting (slow: composing 252 cells takes ~30 s)."""
import json

import pytest

from experiments.sweep import SWEEP_INDEX

# preset -> (cells, {override: value} every cell's config must have)
PRESETS = {
    "baruch2019": (18, {"workers": 51, "byzantine": 12, "batch_size": 83}),
    "baruch2019_fashion_mnist": (30, {"workers": 51, "byzantine": 12, "batch_size": 83}),
    "shejwalkar2021": (69, {"workers": 25, "byzantine": 5}),
    "backdoors": (75, {"workers": 20, "byzantine": 4, "server_root_samples": 100}),
    "allouah2023": (252, {"workers": 12, "byzantine": 2}),
}


@pytest.mark.slow
@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_preset_composes_its_cells(cli, compose, tmp_path, preset):
    cells, setting = PRESETS[preset]
    sweep = tmp_path / preset
    cli("-m", f"+study={preset}", "hydra.sweeper.dry_run=true", f"hydra.sweep.dir={sweep}")
    index = json.loads((sweep / SWEEP_INDEX).read_text())
    assert len(index["cells"]) == len(set(index["cells"])) == cells
    assert not index["infeasible"]
    for seed in (0, 1, 2):  # every cell in three seeds
        assert sum(c.endswith(f"seed={seed}") for c in index["cells"]) == cells // 3
    cfg = compose(f"+study={preset}")
    assert {k: cfg[k] for k in setting} == setting
    assert cfg.optimizer.momentum == 0.0 and list(cfg.model.hidden) == [100]


def test_fashion_mnist_preset_is_baruch2019_on_fashion_mnist(compose):
    digits, fashion = compose("+study=baruch2019"), compose("+study=baruch2019_fashion_mnist")
    assert digits.dataset.name == "digits" and fashion.dataset.name == "fashion_mnist"
    for key in ("workers", "byzantine", "batch_size", "rounds", "model", "optimizer", "backend"):
        assert fashion[key] == digits[key], key
