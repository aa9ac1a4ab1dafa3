"""``bench_compression budget`` (its step decay, its settings per k/d, the table it prints from
synthetic runs) and ``mask_bound`` (a few rounds on digits, its table)."""
import pytest

from experiments.bench_compression import BUDGET, budget_settings, budget_table, milestones
from experiments.mask_bound import MASKS, WORKERS, simulate, table


def test_milestones_at_two_thirds_and_thirteen_fifteenths():
    assert milestones(1500) == [1000, 1300]
    assert milestones(3000) == [2000, 2600]


def test_every_budget_setting_but_dense_is_a_shared_mask_at_one_percent():
    for label, kw in BUDGET.items():
        assert (kw["compression"] == "none") == (label == "dense")
        if label != "dense":
            assert kw["compression"] in ("randk_shared", "topk_shared")
            assert kw["compression_kwargs"]["ratio"] == 0.01


def test_table_is_the_mean_over_seeds_and_dense_minus_compressed():
    def run(setting, seed, acc):
        return {"rule": "median", "attack": "ipm", "dense_rounds": 100, "setting": setting,
                "seed": seed, "curve": [(1, 1, 0.5), (2, 2, acc)]}

    runs = [run("dense", 0, 0.86), run("dense", 1, 0.88), run("sparse", 0, 0.80),
            run("sparse", 1, 0.82)]
    table = budget_table(runs).splitlines()
    assert table[0] == "| rule | attack | dense rounds | dense | sparse | gap, sparse |"
    assert table[2] == "| median | ipm | 100 | 87.0 ± 1.0 (2) | 81.0 ± 1.0 (2) | 6.0 |"


def test_budget_settings_run_dense_once_and_each_compressed_setting_per_ratio():
    runs = list(budget_settings(["dense", "top-k mask + worker momentum"], [0.01, 0.1]))
    assert [(label, ratio) for label, _, ratio in runs] == [
        ("dense", 1.0), ("top-k mask + worker momentum", 0.01),
        ("top-k mask + worker momentum, k/d = 0.1", 0.1)]
    assert [kw.get("compression_kwargs", {}).get("ratio") for _, kw, _ in runs] == [None, 0.01, 0.1]
    assert BUDGET["top-k mask + worker momentum"]["compression_kwargs"]["ratio"] == 0.01


@pytest.mark.parametrize("mask", MASKS)
def test_mask_bound_runs_masked_twice_as_long_at_their_bytes(mask):
    curve = simulate(mask, rounds=3, ratio=0.1, evals=3, dataset="digits")
    d = 64 * 64 + 64 + 64 * 10 + 10  # the MLP on 8x8 digits
    per_round = WORKERS * 4 * (d if mask == "dense" else round(0.1 * d))
    assert [r for r, _, _ in curve] == ([1, 2, 3] if mask == "dense" else [2, 4, 6])
    assert all(b == r * per_round for r, b, _ in curve)
    assert all(0 <= acc <= 1 for _, _, acc in curve)


def test_mask_bound_table_gives_the_gap_to_dense_and_the_bytes_share():
    def run(mask, ratio, seed, acc):
        return {"mask": mask, "ratio": ratio, "seed": seed, "curve": [(10, 1, acc)]}

    rows = table([run("dense", 1.0, 0, 0.86), run("dense", 1.0, 1, 0.88),
                  run("oracle", 0.01, 0, 0.82), run("server", 0.01, 0, 0.80)]).splitlines()
    assert rows[2] == "| dense | 1 | 10 | 1 | 87.0 ± 1.0 (2) | 0.0 |"
    assert rows[3] == "| server | 0.01 | 10 | 0.02 | 80.0 ± 0.0 (1) | 7.0 |"
    assert rows[4] == "| oracle | 0.01 | 10 | 0.02 | 82.0 ± 0.0 (1) | 5.0 |"
