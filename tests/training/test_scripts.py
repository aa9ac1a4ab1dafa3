"""Smoke tests of the training loop's scripts: they run end to end on tiny settings and write
what they promise."""
import json

import pytest


def test_accuracy_table(tmp_path, capsys):
    from experiments import accuracy_table

    accuracy_table.main(["--rounds", "2", "--out", str(tmp_path)])
    table = (tmp_path / "table.md").read_text()
    rows = [line for line in table.splitlines() if line.startswith("| ") and "rule" not in line]
    assert [r.split("|")[1].strip() for r in rows] == accuracy_table.RULES * 2  # acc, loss
    acc = json.loads((tmp_path / "accuracy.json").read_text())["accuracy"]
    assert len(acc) == 25 and all(0.0 <= v <= 1.0 for v in acc.values())
    assert "final test accuracy" in capsys.readouterr().out


def test_bench_scale_split_grid_and_skips():
    from experiments import bench_scale as bs

    rec = {"round_s": 10.0, "compute_sum_s": 6.0, "backend_s": 5.0, "fill_s": 1.0,
           "aggregation_s": 3.0}
    # compute over 2 actors 3; transport 5 - 3 + 1 (the copy into the shards); rule 2; rest 2
    assert bs.split(rec, 2) == {"round": 10.0, "compute": 3.0, "transport": 3.0,
                                "aggregation": 2.0, "other": 2.0}
    cells = bs.grid()
    assert len(cells) == 4 * 2 * 3 + 1 and cells[-1] == (16, 10**8, 4)
    assert bs.grid(ns=[3], ks=[2]) == [(3, 10**6, 2), (3, 10**7, 2)]
    assert bs.cell_memory(64, 10**7, 2) == 8 * 64 * 10**7 + 16 * 10**7 + 8 * 10**7


@pytest.mark.ray
@pytest.mark.slow  # ~15 s of actor start-up; the default suite has the Ray loop tests
def test_bench_scale(ray_local, tmp_path):
    from experiments import bench_scale

    bench_scale.main(["--n", "3", "--d", "2000", "--k", "1", "2", "--rounds", "2", "--rule",
                      "mean", "--memory-fraction", "1.0", "--out", str(tmp_path)])
    res = json.loads((tmp_path / "scale.json").read_text())
    assert [(r["n"], r["d"], r["k"]) for r in res["rows"]] == [(3, 2000, 1), (3, 2000, 2)]
    for row in res["rows"]:
        assert row["bytes_per_round"] == 4 * 2000 * 4 and len(row["peak_rss_mb"]) == row["k"]
        assert all(row[k] >= 0 for k in ("compute_s", "transport_s", "aggregation_s",
                                         "floor_s", "floor_kernel_s"))
        assert row["floor_s"] >= row["floor_transport_s"] + row["compute_s"]
    assert 0 < res["bandwidth"]["store_GBps"][0] <= res["bandwidth"]["store_GBps"][1]
    assert res["skipped"] == [] and all(r["store_GBps"] > 0 for r in res["rows"])
    assert (tmp_path / "scale_n.png").stat().st_size and (tmp_path / "scale_d.png").stat().st_size
    assert "overhead / floor" in (tmp_path / "scale.md").read_text()
