"""Sweeps through the real entry point (run in this process, as ``python -m experiments.train
-m ...`` would): a tiny sweep on the session's Ray, then the report; re-running skips finished
cells; a bad cell stops the sweep before any cell runs; the study preset composes."""
import json

import pytest

from experiments.report import report

TINY = ["workers=5", "byzantine=1", "rounds=3", "eval_every=3", "progress=false"]


def cell_dirs(sweep_dir):
    return sorted(p for p in sweep_dir.iterdir() if p.is_dir() and not p.name.startswith("."))


@pytest.mark.ray
def test_tiny_sweep_on_one_ray_then_report(cli, ray_local, tmp_path, capsys):
    import ray

    sweep = tmp_path / "sweep"
    cli("-m", "rule=mean,median", "attack=none,sign_flip", "backend.kwargs.workers_per_actor=5",
        *TINY, f"hydra.sweep.dir={sweep}")
    out = capsys.readouterr().out
    assert "4 cells, 0 finished (skipped), 4 to run" in out
    assert "[cell 1/4]" in out and "[cell 4/4]" in out and "(3 remain" in out
    # every cell ran on the session's Ray: none started (and stopped) its own
    assert ray.is_initialized() and ray.get_runtime_context().gcs_address == ray_local

    cells = cell_dirs(sweep)
    assert len(cells) == 4
    for d in cells:
        for name in ("config.yaml", "metrics.jsonl", "metrics.csv", "summary.json"):
            assert (d / name).is_file(), f"{d.name}: no {name}"
        summary = json.loads((d / "summary.json").read_text())
        records = [json.loads(line) for line in (d / "metrics.jsonl").read_text().splitlines()]
        assert [r["round"] for r in records] == [0, 1, 2]
        assert summary["final_test_acc"] == records[-1]["test_acc"]
        assert summary["config"]["rounds"] == 3 and summary["config"]["workers"] == 5

    md = report(sweep).read_text()
    rows = [ln.split("|")[1].strip() for ln in md.splitlines() if ln.startswith("| ")]
    assert rows == ["rule", "mean", "median"]
    assert "| rule | none | sign_flip | worst case |" in md
    for png in ("heatmap_all.png", "accuracy_all.png", "influence_all.png"):
        assert (sweep / png).read_bytes()[:4] == b"\x89PNG"


def test_rerun_skips_finished_cells(cli, tmp_path, capsys):
    sweep = tmp_path / "sweep"
    args = ["-m", "rule=mean,median", "backend=local", "rounds=2", "eval_every=2",
            "workers=5", "byzantine=1", "progress=false", f"hydra.sweep.dir={sweep}"]
    cli(*args)
    assert "2 cells, 0 finished (skipped), 2 to run" in capsys.readouterr().out
    first, second = cell_dirs(sweep)
    stamps = {d: (d / "summary.json").stat().st_mtime_ns for d in (first, second)}

    cli(*args)  # nothing left to do
    out = capsys.readouterr().out
    assert "2 cells, 2 finished (skipped), 0 to run" in out and "[cell" not in out
    assert {d: (d / "summary.json").stat().st_mtime_ns for d in (first, second)} == stamps

    # an interrupted cell: metrics written, no summary
    (second / "summary.json").unlink()
    cli(*args)
    out = capsys.readouterr().out
    assert "2 cells, 1 finished (skipped), 1 to run" in out and f"[cell 1/1] {second.name}" in out
    assert (first / "summary.json").stat().st_mtime_ns == stamps[first]
    assert (second / "summary.json").is_file()
    index = json.loads((sweep / "sweep.json").read_text())
    assert index["skipped"] == [first.name] and index["to_run"] == [second.name]


def test_a_bad_cell_stops_the_sweep_before_any_cell_runs(cli, tmp_path, capsys):
    sweep = tmp_path / "sweep"
    with pytest.raises(SystemExit):
        cli("-m", "workers=10,6", "rule=krum", "byzantine=2", "backend=local", "rounds=2",
            f"hydra.sweep.dir={sweep}")
    err = capsys.readouterr().err
    assert "Krum needs n >= 2f + 3 workers, got n=6, f=2" in err and "cell " in err
    assert not sweep.exists() or cell_dirs(sweep) == []
    # or, asked to, it leaves such cells out and says which
    cli("-m", "workers=10,6", "rule=krum", "byzantine=2", "backend=local", "rounds=2",
        "hydra.sweeper.skip_infeasible=true", "hydra.sweeper.dry_run=true", f"hydra.sweep.dir={sweep}")
    assert "1 cells, 0 finished (skipped), 1 to run, 1 infeasible left out" in capsys.readouterr().out
    index = json.loads((sweep / "sweep.json").read_text())
    assert [c.split(",")[-1] for c in index["cells"]] == ["workers=10"]
    assert len(index["infeasible"]) == 1 and "got n=6, f=2" in index["infeasible"][0]


def test_study_preset_composes_every_cell(cli, tmp_path, capsys):
    sweep = tmp_path / "study"
    cli("-m", "+study=reproduction", "hydra.sweeper.dry_run=true", f"hydra.sweep.dir={sweep}")
    index = json.loads((sweep / "sweep.json").read_text())
    cells = index["cells"]
    assert len(cells) == len(set(cells)) == len(index["to_run"]) and cell_dirs(sweep) == []

    def count(*parts):
        return sum(all(p in c.split(",") for p in parts) for c in cells)

    # the four findings' cells, for both seeds
    assert count("attack=gaussian", "byzantine=1", "rule=mean") == 2
    assert count("attack=alie", "byzantine=3", "rule=krum") == 2
    assert count("attack.epsilon=0.1", "attack=ipm", "rule=median") == 2
    assert count("dataset.partition=dirichlet", "pre=[nnm]", "rule=krum") == 4
    assert len(cells) == 2 * (3 + 6 + 4 + 6 + 1)


@pytest.mark.slow
@pytest.mark.ray
@pytest.mark.parametrize("launcher", ["ray", "joblib"])
def test_parallel_launchers_on_a_loopback_cluster(tmp_path, launcher):
    """``ray start --head`` on 127.0.0.1 (stopped by PID at the end), then a 2-cell sweep run
    in parallel by Hydra's Ray launcher (cells are Ray tasks) or joblib launcher (cells are
    processes joining the cluster), the cells overlapping in time; the re-run skips both."""
    import subprocess
    import sys

    from robustagg.backends.ray_cluster import ray_env, start_head, stop_head

    pytest.importorskip({"ray": "hydra_plugins.hydra_ray_launcher",
                         "joblib": "hydra_plugins.hydra_joblib_launcher"}[launcher])
    address, temp = start_head(num_cpus=2)
    env = ray_env()
    sweep = tmp_path / "sweep"
    cmd = [sys.executable, "-m", "experiments.train", "-m", f"+parallel={launcher}",
           f"backend.address={address}", "rule=mean,median", *TINY, "model=logreg",
           f"hydra.sweep.dir={sweep}"]
    try:
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=400)
        assert out.returncode == 0, out.stderr[-3000:]
        cells = cell_dirs(sweep)
        assert len(cells) == 2 and all((d / "summary.json").is_file() for d in cells)
        # in parallel: each cell started (config.yaml) before the other finished (summary.json)
        starts = [(d / "config.yaml").stat().st_mtime for d in cells]
        ends = [(d / "summary.json").stat().st_mtime for d in cells]
        assert max(starts) < min(ends)
        again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=200)
        assert "2 cells, 2 finished (skipped), 0 to run" in again.stdout, again.stderr[-2000:]
    finally:
        stop_head(temp)
