"""Table and figures from a sweep folder: ``python -m experiments.report <sweep dir>``.

Reads every cell of the sweep (its ``summary.json`` and the training loop's per-round
``metrics.jsonl``), labels each cell by what varies across the sweep, and writes into the sweep
folder (or ``--out``):

* ``report.md``: per setting, one table with a row per rule (pre-aggregations included) and a
  column per attack holding the final test accuracy as mean ± std over seeds, plus the
  worst case over attacks (the minimum over attacks, per seed, then mean ± std over seeds);
  under a backdoor attack the cell also holds the attack success rate beside the accuracy,
  ``0.861 ± 0.004 (ASR 0.972 ± 0.010)`` (the share of triggered test inputs, target class
  excluded, that the final model puts in the target class);
* ``heatmap_<setting>.png``: rule × attack, mean final accuracy;
* ``accuracy_<setting>.png``: test accuracy against round, one panel per attack, a line per rule
  (mean over seeds);
* ``influence_<setting>.png``: the attack influence per round, the share of Byzantine vectors
  among those the rule selected (rules that select) and the distance of the aggregate from the
  honest mean.

A *setting* is the combination of the varying values that are neither the rule, the
pre-aggregations, the attack nor the seed (e.g. ``byzantine=3`` or ``dataset.partition=dirichlet``);
a sweep that varies nothing else has one setting.
"""
import argparse
import json
import math
import re
from collections import defaultdict
from pathlib import Path

from experiments.sweep import FAILED, SUMMARY, SWEEP_INDEX

METRICS = "metrics.jsonl"
# Keys of the training loop's metrics lines used here.
ROUND, ACCURACY = "round", "test_acc"
BYZ_SHARE, HONEST_DIST = "byzantine_share", "dist_honest_mean"
FINAL = "final_test_acc"  # in summary.json
ASR = "final_attack_success_rate"  # in summary.json, under a backdoor attack
SMOOTH = 5  # rounds in the running mean of the Byzantine share


def _flatten(d, prefix=""):
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(_flatten(v, key + "."))
        else:
            out[key] = json.dumps(v) if isinstance(v, (list, dict)) else v
    return out


def _short(v):
    return f"{v:g}" if isinstance(v, float) else str(v)


def _name(cfg: dict) -> str:
    return cfg.get("name") or str(cfg.get("_target_", "?")).rsplit(".", 1)[-1]


def _labeler(configs: list, path):
    """A function giving a component's label, ``name`` plus the arguments that vary among the
    cells using the same component (``ipm(epsilon=0.1)``). Seeds are left out (they follow the
    run's seed), and so is ``f`` where it equals ``byzantine`` (the default)."""
    def args(cfg):
        node = path(cfg) or {}
        return {k: v for k, v in _flatten(node).items() if k not in ("name", "_target_")
                and not k.endswith("seed") and not (k == "f" and v == cfg.get("byzantine"))}

    values = defaultdict(lambda: defaultdict(set))
    for cfg in configs:
        for k, v in args(cfg).items():
            values[_name(path(cfg))][k].add(json.dumps(v))

    def label(cfg):
        name = _name(path(cfg))
        shown = [f"{k}={_short(v)}" for k, v in sorted(args(cfg).items()) if len(values[name][k]) > 1]
        return f"{name}({', '.join(shown)})" if shown else name

    return label


def load_cells(sweep_dir):
    """One dict per finished or failed cell of the sweep: ``rule``, ``attack``, ``setting``,
    ``seed``, ``final`` (final test accuracy; None when the run raised), ``curves`` (per-round
    metric lists) and ``name``. Cells still running or never started are left out."""
    sweep_dir = Path(sweep_dir)
    index = sweep_dir / SWEEP_INDEX
    if index.is_file():
        dirs = [sweep_dir / n for n in json.loads(index.read_text())["cells"]]
    else:
        dirs = sorted({p.parent for f in (SUMMARY, FAILED) for p in sweep_dir.glob(f"*/{f}")})
    raw = []
    for d in dirs:
        for name in (SUMMARY, FAILED):
            if (d / name).is_file():
                summary = json.loads((d / name).read_text())
                raw.append((d, summary, _flatten(summary["config"])))
                break
    if not raw:
        raise FileNotFoundError(f"no finished cell (no */{SUMMARY}) under {sweep_dir}")

    configs = [summary["config"] for _, summary, _ in raw]
    keys = set().union(*(flat.keys() for _, _, flat in raw))
    varying = {k for k in keys if len({json.dumps(f.get(k)) for _, _, f in raw}) > 1}
    rule_label = _labeler(configs, lambda c: c["rule"])
    attack_label = _labeler(configs, lambda c: c["attack"])
    pre_keys = _ordered(k for c in configs for k in (c.get("pre") or {}))
    pre_labels = {k: _labeler(configs, lambda c, k=k: (c.get("pre") or {}).get(k)) for k in pre_keys}
    cells = []
    for d, summary, flat in raw:
        cfg = summary["config"]
        pre = [pre_labels[k](cfg) for k in (cfg.get("pre") or {})]
        setting = ", ".join(f"{k}={_short(flat.get(k))}" for k in sorted(varying)
                            if not re.match(r"(rule|pre|attack)(\.|$)|seed$", k)) or "all"
        cells.append({
            "name": d.name, "dir": d, "seed": cfg.get("seed"), "setting": setting,
            "rule": " + ".join(pre + [rule_label(cfg)]), "attack": attack_label(cfg),
            "final": None if summary.get(FINAL) is None else float(summary[FINAL]),
            "asr": None if summary.get(ASR) is None else float(summary[ASR]),
            "curves": _curves(d / METRICS),
        })
    return cells


def _curves(path: Path) -> dict:
    curves = defaultdict(list)
    if not path.is_file():
        return {}
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        rec = json.loads(line)
        for key in (ACCURACY, BYZ_SHARE, HONEST_DIST):
            v = rec.get(key)
            if v is not None:
                curves[key].append((rec[ROUND], float(v)))
    return dict(curves)


def _mean_std(values):
    m = sum(values) / len(values)
    s = math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0
    return m, s


def _fmt(values):
    m, s = _mean_std(values)
    return f"{m:.3f} ± {s:.3f}" if len(values) > 1 else f"{m:.3f}"


def _entry(values, failed, asr=()):
    text = _fmt(values) if values else ""
    if asr:
        text += f" (ASR {_fmt(asr)})"
    return f"{text} ({failed} failed)".strip() if failed else text


def _ordered(seq):
    return list(dict.fromkeys(seq))


def table(cells):
    """``{setting: (rules, attacks, rows)}``; ``rows[rule]`` maps each attack and ``"worst case"``
    to ``(accuracies, failed, success rates)``: the final accuracies of the seeds that finished,
    the number that failed, and the backdoor's attack success rates (empty without a
    backdoor). The worst case is the min over attacks per seed, on seeds where every attack
    finished."""
    out = {}
    for setting in _ordered(c["setting"] for c in cells):
        cs = [c for c in cells if c["setting"] == setting]
        rules, attacks = _ordered(c["rule"] for c in cs), _ordered(c["attack"] for c in cs)
        rows = {}
        for rule in rules:
            by_attack, asr = defaultdict(dict), defaultdict(list)
            for c in cs:
                if c["rule"] == rule:
                    by_attack[c["attack"]][c["seed"]] = c["final"]
                    if c.get("asr") is not None:
                        asr[c["attack"]].append(c["asr"])
            row = {a: ([v for v in by_attack[a].values() if v is not None],
                       sum(v is None for v in by_attack[a].values()), asr[a]) for a in attacks}
            seeds = set.intersection(*({s for s, v in by_attack[a].items() if v is not None}
                                       for a in attacks))
            row["worst case"] = ([min(by_attack[a][s] for a in attacks) for s in sorted(seeds)], 0,
                                 [])
            rows[rule] = row
        out[setting] = (rules, attacks, rows)
    return out


def markdown(tables, figures) -> str:
    """The report as Markdown: a table per setting, then its figures."""
    lines = ["# Sweep report", "",
             "Final test accuracy, mean ± std over seeds; *worst case* is the minimum over the",
             "attacks (per seed, then averaged, on the seeds where every attack finished). A blank",
             "cell did not run or did not finish; *failed* counts runs that raised (their",
             "`failed.json` says why). Under a backdoor attack, *ASR* is the attack success rate",
             "(triggered test inputs, target class excluded, put in the target class).", ""]
    for setting, (rules, attacks, rows) in tables.items():
        lines += [f"## Setting: {setting}", ""]
        header = ["rule"] + attacks + ["worst case"]
        lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for rule in rules:
            row = rows[rule]
            lines.append("| " + " | ".join([rule] + [_entry(*row[a]) for a in attacks + ["worst case"]])
                         + " |")
        lines.append("")
        for title, path in figures.get(setting, []):
            lines += [f"![{title}]({path})", ""]
    return "\n".join(lines)


def _slug(setting):
    return re.sub(r"[^A-Za-z0-9.=-]+", "_", setting).strip("_") or "all"


def _mean_curve(curves):
    """Pointwise mean of (round, value) lists over seeds, on the rounds all of them have."""
    by_round = defaultdict(list)
    for c in curves:
        for r, v in c:
            by_round[r].append(v)
    rs = sorted(r for r, vs in by_round.items() if len(vs) == len(curves))
    return rs, [sum(by_round[r]) / len(by_round[r]) for r in rs]


def _running_mean(vs, k):
    out, acc = [], 0.0
    for i, v in enumerate(vs):
        acc += v - (vs[i - k] if i >= k else 0.0)
        out.append(acc / min(i + 1, k))
    return out


def figures(cells, tables, out_dir: Path) -> dict:
    """Write the PNGs; returns ``{setting: [(title, file name), ...]}``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = defaultdict(list)
    for setting, (rules, attacks, rows) in tables.items():
        slug = _slug(setting)
        # Heatmap rule x attack.
        grid = [[_mean_std(rows[r][a][0])[0] if rows[r][a][0] else float("nan") for a in attacks]
                for r in rules]
        fig, ax = plt.subplots(figsize=(1.4 * len(attacks) + 3, 0.5 * len(rules) + 1.8))
        im = ax.imshow(grid, vmin=0, vmax=1, cmap="viridis", aspect="auto")
        ax.set_xticks(range(len(attacks)), attacks, rotation=30, ha="right")
        ax.set_yticks(range(len(rules)), rules)
        for i, row in enumerate(grid):
            for j, v in enumerate(row):
                if not math.isnan(v):
                    ax.text(j, i, f"{v:.2f}", ha="center", va="center", color="w" if v < 0.6 else "k")
        fig.colorbar(im, ax=ax, label="final test accuracy")
        ax.set_title(f"final accuracy ({setting})")
        fig.tight_layout()
        name = f"heatmap_{slug}.png"
        fig.savefig(out_dir / name, dpi=110)
        plt.close(fig)
        out[setting].append(("rule × attack heatmap", name))

        cs = [c for c in cells if c["setting"] == setting]
        for kind, keys, ylabels in [
            ("accuracy", [ACCURACY], ["test accuracy"]),
            ("influence", [BYZ_SHARE, HONEST_DIST],
             [f"Byzantine share of selected\n(mean of {SMOOTH} rounds)", "‖aggregate − honest mean‖"]),
        ]:
            fig, axes = plt.subplots(len(keys), len(attacks), squeeze=False, sharex=True, sharey="row",
                                     figsize=(3.2 * len(attacks) + 1, 2.6 * len(keys) + 0.6))
            drawn = False
            for j, attack in enumerate(attacks):
                for i, key in enumerate(keys):
                    ax = axes[i][j]
                    for rule in rules:
                        curves = [c["curves"][key] for c in cs
                                  if c["rule"] == rule and c["attack"] == attack and c["curves"].get(key)]
                        if curves:
                            rs, vs = _mean_curve(curves)
                            if key == BYZ_SHARE:  # 0/1 per round for single-selection rules
                                vs = _running_mean(vs, SMOOTH)
                            ax.plot(rs, vs, label=rule, color=f"C{rules.index(rule) % 10}")
                            drawn = True
                    if i == 0:
                        ax.set_title(attack)
                    if j == 0:
                        ax.set_ylabel(ylabels[i])
                    if key == HONEST_DIST and ax.lines:
                        ax.set_yscale("log")
                    if key == ACCURACY:
                        ax.set_ylim(0, 1)
                    if i == len(keys) - 1:
                        ax.set_xlabel("round")
            if drawn:
                handles, labels = _legend(axes, rules)
                fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 6), fontsize=8)
                fig.tight_layout(rect=(0, 0.08, 1, 1))
                name = f"{kind}_{slug}.png"
                fig.savefig(out_dir / name, dpi=110)
                out[setting].append((f"{kind} per round", name))
            plt.close(fig)
    return dict(out)


def _legend(axes, order):
    seen = {}
    for row in axes:
        for ax in row:
            for h, lab in zip(*ax.get_legend_handles_labels()):
                seen.setdefault(lab, h)
    labels = [r for r in order if r in seen]
    return [seen[r] for r in labels], labels


def report(sweep_dir, out_dir=None, plots=True) -> Path:
    """Write ``report.md`` (and, with ``plots``, its PNGs) for the sweep in ``sweep_dir``;
    returns the Markdown path."""
    out_dir = Path(out_dir or sweep_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cells = load_cells(sweep_dir)
    tables = table(cells)
    figs = figures(cells, tables, out_dir) if plots else {}
    path = out_dir / "report.md"
    path.write_text(markdown(tables, figs))
    return path


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("sweep_dir", help="folder of a -m run (hydra.sweep.dir)")
    p.add_argument("--out", help="where to write report.md and the PNGs (default: the sweep folder)")
    p.add_argument("--no-plots", action="store_true", help="the Markdown table only")
    args = p.parse_args(argv)
    path = report(args.sweep_dir, args.out, plots=not args.no_plots)
    print(path.read_text())
    print(f"written: {path}")


if __name__ == "__main__":
    main()
