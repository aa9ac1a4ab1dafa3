"""Sweeps on Lambda: the cell result format, the sweep function's event schema and handler, the
launcher's back-off and its refusal of cells past the timeout, and a tiny sweep end to end on
the local Lambda runtime (``+parallel=lambda``) against the same sweep run locally."""
import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from experiments import lambda_cell as C
from experiments import lambda_sweep as ls
from robustagg.backends.serverless import cell_result as R
from robustagg.backends.serverless.invoker import InvokeResult
from robustagg.backends.serverless.stores import make_store
from robustagg.backends.serverless.sweep_client import invoke_with_backoff, is_throttled

ROOT = Path(__file__).resolve().parents[2]
TOKEN = bytes(range(32))


def _doc(**kw):
    doc = {"version": 1, "sweep_id": "sw1", "cell": 3, "ok": True, "summary": {"final_test_acc": 0.5},
           "history": [{"round": 0, "test_loss": float("nan")}], "log": "", "error_type": None,
           "error": None, "run_s": 1.5, "peak_rss_mb": 300.0}
    return {**doc, **kw}


# ---- the result format ----------------------------------------------------------------------------
def test_result_round_trip_keeps_nan_metrics():
    doc = R.decode(R.encode(_doc(), TOKEN), "sw1", 3, TOKEN)
    assert doc["summary"] == {"final_test_acc": 0.5} and doc["history"][0]["test_loss"] != 0


@pytest.mark.parametrize("mutate, message", [
    (lambda b: b[:-1], "length"),
    (lambda b: b[:60] + bytes([b[60] ^ 1]) + b[61:], "HMAC"),
    (lambda b: b"XXXX" + b[4:], "magic"),
    (lambda b: b[:6] + b"\x01\x00" + b[8:], "reserved"),
    (lambda b: b[:10], "shorter"),
])
def test_tampered_results_are_refused(mutate, message):
    with pytest.raises(R.ResultError, match=message):
        R.decode(mutate(R.encode(_doc(), TOKEN)), "sw1", 3, TOKEN)


def test_results_of_another_token_sweep_or_cell_are_refused():
    blob = R.encode(_doc(), TOKEN)
    with pytest.raises(R.ResultError, match="HMAC"):
        R.decode(blob, "sw1", 3, bytes(32))
    for sweep, cell in (("sw2", 3), ("sw1", 4)):
        with pytest.raises(R.ResultError, match="expected sweep"):
            R.decode(blob, sweep, cell, TOKEN)
    with pytest.raises(R.ResultError, match="field 'ok'"):
        R.encode(_doc(ok=1), TOKEN)


def test_a_pickle_is_never_executed(tmp_path):
    marker = tmp_path / "ran"

    class Boom:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    with pytest.raises(R.ResultError):
        R.decode(pickle.dumps(Boom()), "sw1", 3, TOKEN)
    assert not marker.exists()


def test_cell_keys_are_unguessable_and_the_deploy_user_matches():
    key = R.cell_key("sw1", 3, TOKEN)
    assert key.startswith("ra/sw1/cell/3/") and key != R.cell_key("sw1", 3, bytes(32))
    with open(ROOT / "robustagg/backends/serverless/deploy/redis-acl.conf") as fh:
        line = next(ln for ln in fh if ln.startswith("user ra-sweep "))
    assert [r for r in line.split()[2:] if not r.startswith(">")] == ["on", *R.SWEEP_RULES]


# ---- the sweep function's event -------------------------------------------------------------------
def _event(**config):
    return {"version": 1, "sweep_id": "sw1", "cell": 0, "token": TOKEN.hex(),
            "config": {"rounds": 2, "workers": 3, "byzantine": 0, "rule": "mean",
                       "attack": "none", "eval_every": 2, **config}}


def test_a_valid_event_parses():
    assert C.parse_event(json.dumps(_event()))["config"]["rounds"] == 2


@pytest.mark.parametrize("change, message", [
    ({"store": {"kind": "redis", "host": "evil.example"}}, "'store' field is not accepted"),
    ({"version": True}, "version"),
    ({"cell": "0"}, "cell must be an int"),
    ({"token": "ab"}, "token"),
    ({"extra": 1}, "unknown fields"),
])
def test_bad_events_are_refused(change, message):
    with pytest.raises(C.BadEvent, match=message):
        C.parse_event({**_event(), **change})


@pytest.mark.parametrize("config, message", [
    ({"backend": "ray"}, "not accepted: where a cell runs"),
    ({"output_dir": "/etc"}, "not accepted"),
    ({"rule_kwargs": {"_target_": "os.system"}}, "not a setting name"),
    ({"rule": "os.system"}, "registered name"),
    ({"dataset_kwargs": {"root": "/proc"}}, "'root' is not accepted"),
    ({"rounds": True}, "must be an integer"),
    ({"lr": "0.1"}, "must be a number"),
    ({"pre": [["nnm", {"f": [[1]]}]]}, "scalar or a list"),
    ({"lr_milestones": [10, "20"]}, "list of at most 64 integers"),
    ({"lr_milestones": list(range(1, 100))}, "list of at most 64 integers"),
])
def test_cell_configs_carry_settings_only(config, message):
    with pytest.raises(C.BadEvent, match=message):
        C.parse_event(_event(**config))


@pytest.mark.redis
def test_handler_runs_the_cell_and_writes_its_result(redis_server, monkeypatch):
    """The function reads where to write from RA_STORE, never from the event; a config that
    TrainConfig refuses is a stored result with the reason, not a crash."""
    from robustagg.backends.serverless.function_config import function_environment

    cfg = {k: v for k, v in redis_server.items()}
    for k, v in function_environment(cfg, "function").items():
        monkeypatch.setenv(k, v)
    store = make_store(redis_server)
    answer = C.handler(_event())
    assert answer["ok"] and answer["written"], answer
    doc = R.decode(store.get(R.cell_key("sw1", 0, TOKEN)), "sw1", 0, TOKEN)
    assert [r["round"] for r in doc["history"]] == [0, 1] and doc["summary"]["rounds"] == 2
    assert any("round 2/2" in json.loads(line)[3] for line in doc["log"].splitlines())
    ev = _event(byzantine=3)  # byzantine must be < workers
    ev["cell"] = 1
    answer = C.handler(ev)
    assert answer == {**answer, "ok": False, "written": True, "error_type": "BadSettings"}
    doc = R.decode(store.get(R.cell_key("sw1", 1, TOKEN)), "sw1", 1, TOKEN)
    assert "byzantine" in doc["error"]
    store.delete_prefix("ra/sw1/")
    monkeypatch.delenv("RA_STORE")
    assert C.handler(_event())["error_type"] == "BadConfig"


# ---- the launcher ---------------------------------------------------------------------------------
def test_throttled_invocations_are_retried_with_backoff():
    answers = [InvokeResult(False, 429, error="TooManyRequestsException: Rate Exceeded.")] * 2 + \
        [InvokeResult(True, 200, {"ok": True})]
    calls, sleeps = [], []
    res, tries = invoke_with_backoff(lambda ev: answers[len(calls.append(ev) or calls) - 1], {},
                                     attempts=5, base_s=1.0, cap_s=1.5, sleep=sleeps.append,
                                     rng=lambda: 1.0)
    assert res.ok and tries == 3 and sleeps == [1.0, 1.5]  # base * 2**k, capped
    failed = InvokeResult(False, None, error="ReadTimeoutError: timed out")
    assert not is_throttled(failed)
    assert invoke_with_backoff(lambda ev: failed, {}, attempts=5, sleep=sleeps.append)[1] == 1
    res, tries = invoke_with_backoff(lambda ev: answers[0], {}, attempts=3, sleep=lambda s: None)
    assert tries == 3 and not res.ok


def test_cells_past_the_timeout_are_refused_before_launch():
    from robustagg.run.config import TrainConfig

    ref = ls.Reference(d=4810, workers=10, batch_size=32, compute_s=0.002, aggregation_s=0.001,
                       step_s=0.0005, startup_s=5.0)
    small = ls.estimate(TrainConfig(backend="local", rounds=10), ref, 3008)
    big = ls.estimate(TrainConfig(backend="local", rounds=200_000), ref, 3008)
    assert small.time_s < 60 < 900 < big.time_s
    ls.refuse_over_limit({"small": small}, 900, 3008)
    with pytest.raises(ValueError, match=r"1 cell\(s\) would run past .* 900 s limit(.|\n)*big: "):
        ls.refuse_over_limit({"small": small, "big": big}, 900, 3008)
    # a small function (less CPU) or a shorter timeout refuses sooner
    assert ls.estimate(TrainConfig(backend="local", rounds=10), ref, 128).time_s > small.time_s
    with pytest.raises(ValueError):
        ls.refuse_over_limit({"small": small}, small.time_s / 2, 3008)


def test_cells_must_name_their_components_and_run_in_process():
    from robustagg.run.config import TrainConfig

    with pytest.raises(ValueError, match="backend must be 'local'"):
        ls.cell_event_config(TrainConfig(backend="ray"))
    config = ls.cell_event_config(TrainConfig(backend="local"))
    assert not set(config) & set(C.PLACEMENT)
    C.parse_event({**_event(), "config": config})  # what the launcher sends, the function takes


def _train(args, sweep_dir):
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    return subprocess.run([sys.executable, "-m", "experiments.train", "-m",
                           f"hydra.sweep.dir={sweep_dir}", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.redis
def test_a_tiny_sweep_on_the_local_lambda_runtime(tmp_path):
    """Two cells through a function with one environment and a launcher with two invocations in
    flight: one is throttled and retried; both cells' folders hold what a local sweep writes,
    and experiments.report reads them."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    cells = ["rule=mean,median", "rounds=3", "eval_every=3", "workers=4", "byzantine=0",
             "attack=none", "backend=local"]
    lam = _train(["+parallel=lambda", *cells, "hydra.launcher.concurrency=2",
                  "hydra.launcher.function_concurrency=1", "hydra.launcher.memory_mb=1769",
                  "hydra.launcher.attempts=30", "hydra.launcher.backoff_cap_s=2"], tmp_path / "lambda")
    assert lam.returncode == 0, lam.stdout[-3000:] + lam.stderr[-3000:]
    record = json.loads((tmp_path / "lambda" / ls.RECORD).read_text())
    assert [c["ok"] for c in record["cells"]] == [True, True]
    assert sum(c["attempts"] for c in record["cells"]) > 2  # the second waited for the first
    assert all(c["billed_ms"] > 0 and c["memory_mb"] == 1769 for c in record["cells"])
    assert "[lambda] sweep: 2 cells" in lam.stdout and "$" in lam.stdout
    local = _train([cells[0].split(",")[0], *cells[1:]], tmp_path / "local")
    assert local.returncode == 0, local.stderr[-3000:]
    name = "attack=none,backend=local,byzantine=0,eval_every=3,rounds=3,rule=mean,workers=4"
    a, b = tmp_path / "lambda" / name, tmp_path / "local" / name
    # .lock: a live run's hold on its folder (the function's run held its own temporary one)
    assert sorted(p.name for p in a.iterdir()) == sorted(p.name for p in b.iterdir() if p.name != ".lock")
    sa, sb = (json.loads((d / "summary.json").read_text()) for d in (a, b))
    assert sa["config"] == sb["config"] and sa["rounds"] == sb["rounds"] == 3
    assert [json.loads(x)["round"] for x in (a / "metrics.jsonl").read_text().splitlines()] == [0, 1, 2]
    assert "round 3/3" in (a / "train.log").read_text()
    from experiments.report import load_cells

    assert sorted(c["rule"] for c in load_cells(tmp_path / "lambda")) == ["mean", "median"]
