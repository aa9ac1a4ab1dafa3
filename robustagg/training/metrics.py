"""Per-round metrics of a run: ``metrics.jsonl`` (one JSON object per round) and
``metrics.csv`` (the same, flat) in the run's folder, and the end-of-run summary.

A record holds: ``round``; ``train_loss`` (mean minibatch loss of the honest workers that
answered); ``test_loss``/``test_acc`` (every ``eval_every`` rounds and at the last, else
empty), and with them, under a backdoor attack, ``attack_success_rate`` (the share of
the test inputs not of the target class that the model puts in the target class once the
trigger is stamped on them); ``arrived``/``asked`` and ``omitted`` (worker id -> reason);
``skipped`` (why the step
was not applied, e.g. a non-finite aggregate); the attack influence: ``selected`` (worker ids
the rule selected, where it selects), ``byzantine_share`` (share of Byzantine ids among them)
and ``dist_honest_mean`` (‖aggregate − mean of honest vectors‖₂); the time split in seconds:
``compute_s`` (slowest worker's gradient computation), ``transport_s`` (backend wall time
minus that: publishing, queueing, transfer, waiting), ``aggregation_s`` (attack + rule),
``step_s`` (optimizer), ``round_s`` (the whole round as the driver saw it); the payload bytes
each worker sent, ``bytes_sent`` (worker id -> bytes: 4d dense, or the compressed message), and
their sum ``bytes_round``.
"""
from __future__ import annotations

import csv
import json
import os

FIELDS = ["round", "train_loss", "test_loss", "test_acc", "attack_success_rate", "arrived",
          "asked", "omitted", "skipped", "selected", "byzantine_share", "dist_honest_mean",
          "compute_s", "transport_s",
          "backend_s", "aggregation_s", "step_s", "round_s", "bytes_sent", "bytes_round"]


def read_jsonl(path: str) -> list[dict]:
    """The records of a ``metrics.jsonl``."""
    with open(path) as fh:
        return [json.loads(line) for line in fh if line.strip()]


def _flat(v):
    if isinstance(v, (list, dict)):
        return json.dumps(v, separators=(",", ":"))
    return "" if v is None else v


class MetricsLog:
    """Appends records to ``<out_dir>/metrics.jsonl`` and ``metrics.csv``. With
    ``start_round > 0`` (a resumed run) the records of rounds ``>= start_round`` already there
    are dropped first, so that the files hold each round once."""

    def __init__(self, out_dir: str, start_round: int = 0):
        os.makedirs(out_dir, exist_ok=True)
        self.jsonl_path = os.path.join(out_dir, "metrics.jsonl")
        self.csv_path = os.path.join(out_dir, "metrics.csv")
        kept = []
        if start_round > 0 and os.path.exists(self.jsonl_path):
            kept = [r for r in read_jsonl(self.jsonl_path) if r["round"] < start_round]
        self.history = kept
        self._jsonl = open(self.jsonl_path, "w")
        self._csv_fh = open(self.csv_path, "w", newline="")
        self._csv = csv.DictWriter(self._csv_fh, fieldnames=FIELDS, extrasaction="ignore")
        self._csv.writeheader()
        for r in kept:
            self._write(r)

    def _write(self, record: dict) -> None:
        self._jsonl.write(json.dumps(record) + "\n")
        self._csv.writerow({k: _flat(record.get(k)) for k in FIELDS})

    def write(self, record: dict) -> None:
        self.history.append(record)
        self._write(record)
        self._jsonl.flush()
        self._csv_fh.flush()

    def close(self) -> None:
        self._jsonl.close()
        self._csv_fh.close()


def summarize(history: list[dict]) -> dict:
    """Final and best accuracy, mean time split, omissions and skipped steps of a run."""
    evals = [r for r in history if r.get("test_loss") is not None]
    last = evals[-1] if evals else {}
    accs = [r["test_acc"] for r in evals if r.get("test_acc") is not None]
    n = max(len(history), 1)
    shares = [r["byzantine_share"] for r in history if r.get("byzantine_share") is not None]
    return {
        "rounds": len(history),
        "final_test_acc": last.get("test_acc"), "best_test_acc": max(accs) if accs else None,
        "final_test_loss": last.get("test_loss"),
        "final_attack_success_rate": last.get("attack_success_rate"),
        "final_train_loss": history[-1].get("train_loss") if history else None,
        "omissions": sum(len(r.get("omitted") or {}) for r in history),
        "skipped_steps": sum(bool(r.get("skipped")) for r in history),
        "mean_byzantine_share": sum(shares) / len(shares) if shares else None,
        **{f"mean_{k}": sum(r.get(k) or 0.0 for r in history) / n
           for k in ("round_s", "compute_s", "transport_s", "aggregation_s", "step_s")},
    }


def format_summary(summary: dict) -> str:
    """A two-column text table of :func:`summarize`'s result."""
    def fmt(v):
        return "-" if v is None else (f"{v:.4g}" if isinstance(v, float) else str(v))

    width = max(map(len, summary))
    return "\n".join(f"{k.ljust(width)}  {fmt(v)}" for k, v in summary.items())
