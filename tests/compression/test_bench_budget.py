"""``bench_compression budget``: its step decay and the table it prints (synthetic runs)."""
from experiments.bench_compression import BUDGET, budget_table, milestones


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
