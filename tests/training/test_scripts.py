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


@pytest.mark.ray
@pytest.mark.slow  # ~30 s of actor start-up; the default suite has the Ray loop tests
def test_bench_scale(ray_local, tmp_path):
    from experiments import bench_scale

    bench_scale.main(["--n", "3", "--d", "2000", "--rounds", "2", "--rule", "mean",
                      "--out", str(tmp_path)])
    res = json.loads((tmp_path / "scale.json").read_text())
    (row,) = res["rows"]
    assert row["n"] == 3 and row["d"] == 35 * bench_scale.hidden_for(2000) + 2
    assert row["bytes_per_round"] == 4 * row["d"] * 4
    assert all(row[k] >= 0 for k in ("compute_s", "transport_s", "aggregation_s", "step_s"))
    assert res["bandwidth"]["numpy"]["put_GBps"] > 0 and (tmp_path / "scale.png").stat().st_size
