"""experiments.report on a synthetic sweep folder written here in the training loop's format
(``summary.json`` with ``final_test_acc`` and the cell's ``config``; ``metrics.jsonl`` with
``round``, ``test_acc``, ``byzantine_share``, ``dist_honest_mean``). No training, no Ray."""
import json
import statistics

import pytest

from experiments.report import load_cells, main, report

RULES = {"mean": {"name": "mean"}, "krum": {"name": "krum", "f": 2}}
ATTACKS = {"none": {"name": "none"}, "alie": {"name": "alie", "z": None}}
SEEDS = [0, 1, 2]


def acc(rule, attack, seed):
    """A made-up final accuracy, different for every cell."""
    return round(0.9 - 0.3 * (rule == "mean") * (attack == "alie") - 0.05 * (rule == "krum")
                 + 0.01 * seed + 0.003 * (attack == "none"), 6)


def write_cell(root, name, config, final, rounds=20, done=True):
    d = root / name
    d.mkdir(parents=True)
    with open(d / "metrics.jsonl", "w") as fh:
        for r in range(rounds):
            rec = {"round": r, "train_loss": 1.0, "test_acc": None, "byzantine_share": None,
                   "dist_honest_mean": 0.5 + r}
            if (r + 1) % 5 == 0:
                rec["test_acc"] = final * (r + 1) / rounds
            if config["rule"]["name"] == "krum":
                rec["byzantine_share"] = float(r % 2)
            fh.write(json.dumps(rec) + "\n")
    if done:
        (d / "summary.json").write_text(json.dumps({"final_test_acc": final, "config": config}))
    return d


def base_config(rule, attack, seed, **extra):
    return {"rule": RULES[rule], "pre": {}, "attack": ATTACKS[attack], "workers": 10,
            "byzantine": 2, "seed": seed, "rounds": 20, **extra}


@pytest.fixture
def sweep(tmp_path):
    names = []
    for rule in RULES:
        for attack in ATTACKS:
            for seed in SEEDS:
                name = f"attack={attack},rule={rule},seed={seed}"
                write_cell(tmp_path, name, base_config(rule, attack, seed), acc(rule, attack, seed))
                names.append(name)
    # a cell that was interrupted: metrics but no summary; must not count
    write_cell(tmp_path, "attack=none,rule=median,seed=0",
               base_config("mean", "none", 0) | {"rule": {"name": "median", "f": 2}}, 0.0, done=False)
    names.append("attack=none,rule=median,seed=0")
    (tmp_path / "sweep.json").write_text(json.dumps({"cells": names, "skipped": [], "to_run": names}))
    return tmp_path


def parse_table(md):
    """``{rule: {column: text}}`` of the first Markdown table in ``md``."""
    all_lines = md.splitlines()
    start = next(i for i, ln in enumerate(all_lines) if ln.startswith("|"))
    end = next((i for i in range(start, len(all_lines)) if not all_lines[i].startswith("|")),
               len(all_lines))
    lines = all_lines[start:end]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    rows = {}
    for ln in lines[2:]:
        cells = [c.strip() for c in ln.strip("|").split("|")]
        rows[cells[0]] = dict(zip(header[1:], cells[1:]))
    return header, rows


def expected(values):
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def test_table_holds_mean_std_and_worst_case(sweep):
    md = report(sweep, plots=False).read_text()
    header, rows = parse_table(md)
    assert header == ["rule", "none", "alie", "worst case"]
    assert list(rows) == ["mean", "krum"]  # the unfinished median cell is left out
    for rule in RULES:
        for attack in ATTACKS:
            assert rows[rule][attack] == expected([acc(rule, attack, s) for s in SEEDS])
        worst = [min(acc(rule, a, s) for a in ATTACKS) for s in SEEDS]
        assert rows[rule]["worst case"] == expected(worst)
    # mean under ALIE is the worst entry of the table, as constructed
    assert rows["mean"]["worst case"] == rows["mean"]["alie"]


def test_figures_are_written_and_referenced(sweep):
    md = report(sweep).read_text()
    for name in ("heatmap_all.png", "accuracy_all.png", "influence_all.png"):
        path = sweep / name
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
        assert f"]({name})" in md


def test_cells_carry_curves_from_the_metrics(sweep):
    cells = load_cells(sweep)
    assert len(cells) == len(RULES) * len(ATTACKS) * len(SEEDS)
    krum = next(c for c in cells if c["rule"] == "krum" and c["attack"] == "alie" and c["seed"] == 1)
    final = acc("krum", "alie", 1)
    assert krum["curves"]["test_acc"] == [(r, final * (r + 1) / 20) for r in range(4, 20, 5)]
    assert krum["curves"]["byzantine_share"] == [(r, float(r % 2)) for r in range(20)]
    mean = next(c for c in cells if c["rule"] == "mean")
    assert "byzantine_share" not in mean["curves"]  # the mean selects nothing


def test_labels_show_what_varies_and_settings_split_tables(tmp_path):
    """Two IPM epsilons become two columns; two values of byzantine become two tables; seeds
    and f (following byzantine) never appear in labels."""
    for byz in (1, 2):
        for eps in (0.1, 10.0):
            for seed in (0, 1):
                cfg = {"rule": {"name": "krum", "f": byz}, "pre": {"nnm": {"name": "nnm", "f": byz}},
                       "attack": {"name": "ipm", "epsilon": eps, "seed": seed},
                       "byzantine": byz, "seed": seed}
                write_cell(tmp_path, f"b{byz}e{eps}s{seed}", cfg, 0.5 + eps / 100 + byz / 10)
    md = report(tmp_path, plots=False).read_text()
    assert "## Setting: byzantine=1" in md and "## Setting: byzantine=2" in md
    header, rows = parse_table(md)
    assert header == ["rule", "ipm(epsilon=0.1)", "ipm(epsilon=10)", "worst case"]
    assert list(rows) == ["nnm + krum"]
    assert rows["nnm + krum"]["ipm(epsilon=10)"] == "0.700 ± 0.000"


def test_failed_cells_are_counted_not_averaged(sweep):
    """A run that raised leaves failed.json (config + error): the table counts it and the
    worst case uses only seeds where every attack finished."""
    d = sweep / "attack=alie,rule=krum,seed=3"
    d.mkdir()
    (d / "failed.json").write_text(json.dumps(
        {"error": "ValueError: diverged", "config": base_config("krum", "alie", 3)}))
    index = json.loads((sweep / "sweep.json").read_text())
    index["cells"].append(d.name)
    (sweep / "sweep.json").write_text(json.dumps(index))
    _, rows = parse_table(report(sweep, plots=False).read_text())
    assert rows["krum"]["alie"] == expected([acc("krum", "alie", s) for s in SEEDS]) + " (1 failed)"
    assert rows["krum"]["worst case"] == expected([min(acc("krum", a, s) for a in ATTACKS) for s in SEEDS])


def test_cli_prints_the_report(sweep, capsys, tmp_path):
    out = tmp_path / "elsewhere"
    main([str(sweep), "--out", str(out), "--no-plots"])
    printed = capsys.readouterr().out
    assert "| krum |" in printed and (out / "report.md").is_file() and not list(out.glob("*.png"))


def test_empty_folder_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no finished cell"):
        report(tmp_path)
