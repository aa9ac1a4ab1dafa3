"""Soak (``-m slow``): a long Lambda run with worker environments killed and stalled and its
Redis restarted, from outside.

1,000 rounds by default (``RA_SOAK_ROUNDS`` sets another count) of 6 workers (one Byzantine id,
no attack: all honest), coordinate-wise median, logistic regression on digits, a checkpoint
every 100 rounds, on the local Lambda runtime (one awslambdaric process per worker) and a
private redis-server this test starts, workers logging in as their round users. A chaos thread,
seeded, acts as the metrics file grows, one fault at a time:

* every 60-140 rounds it SIGKILLs one of the run's runtime processes (the invocation fails; the
  pool starts a new environment, which rebuilds its shard from the store after a cold start);
* every 20-60 rounds it stops one with SIGSTOP for ``STALL_S``, past the deadline, then SIGCONT
  (a straggler);
* every 70-150 rounds, 0-20 ms after a round's users were created, it restarts the redis-server
  by its PID (SIGKILL, then the same port and password): the store comes back empty, without
  the shards, the round's parameters, users and gradients; the backend writes the shards again
  and re-runs the round for the workers it cost (or, when the restart came after every gradient
  was in, writes the shards when a worker next misses one).

After a kill or a restart the next fault waits for a round in which every worker answered. The
last kill and restart are 100 rounds before the end, the last stall 10 rounds before it. Only
processes this test started are touched: the runtime processes are this process's children,
the redis-server is its own.

Checked: every round is recorded exactly once; every worker answers in the last round; the final
parameters equal an in-process replay with the omissions the metrics record; the store holds no
more than one round's keys and users at any sample; this process's memory (driver and server)
stays flat (RSS sampled every 50 rounds, after 100 rounds of warm-up): under 16 MB of growth,
and its trend beyond the per-round records kept by design (``train()``'s history, the backend's
``round_stats``) under one parameter vector a round. The figures are printed (``-s``) and
reported in docs/training.md.
"""
import json
import os
import random
import shutil
import signal
import sys
import threading
import time

import psutil
import pytest
import torch

from robustagg.backends.serverless.stores import make_store
from robustagg.backends.serverless.stores.redis_server import LocalRedisServer
from robustagg.training import TrainConfig
from robustagg.training.metrics import read_jsonl
from tests.training.faults import replay, train_under

pytestmark = [pytest.mark.slow, pytest.mark.redis]

ROUNDS = int(os.environ.get("RA_SOAK_ROUNDS", "1000"))
WORKERS = 6
TIMEOUT_S = 2.0  # round 0 builds every worker's state in its container: ~1 s on loaded cores
STALL_S = 2.5
SAMPLE_EVERY = 50
WARMUP = 100
MB = 2 ** 20
PASSWORD_ENV = "RA_SOAK_REDIS_PASSWORD"


def runtime_pids(exclude=()) -> list[int]:
    """PIDs of this process's local Lambda environments (the awslambdaric processes it started),
    less ``exclude``."""
    out = []
    for p in psutil.Process().children():
        try:
            cmd = p.cmdline()
        except psutil.Error:  # ended meanwhile
            continue
        if "awslambdaric" in cmd and p.pid not in exclude:
            out.append(p.pid)
    return sorted(out)


def rss(pid):
    try:
        return psutil.Process(pid).memory_info().rss
    except (psutil.Error, TypeError):
        return None


class Metrics:
    """How many workers answered in each round so far, from the run's metrics.jsonl as it grows
    (complete lines only, read incrementally; the records themselves are not kept, so that the
    test's own memory does not grow with the rounds)."""

    def __init__(self, out):
        self.path, self.offset, self.arrived = os.path.join(out, "metrics.jsonl"), 0, []

    def poll(self) -> int:
        try:
            with open(self.path, "rb") as fh:
                fh.seek(self.offset)
                data = fh.read()
        except FileNotFoundError:
            return 0
        end = data.rfind(b"\n") + 1
        self.offset += end
        self.arrived += [json.loads(line)["arrived"] for line in data[:end].splitlines()
                         if line.strip()]
        return len(self.arrived)


def deep_size(obj, seen=None) -> int:
    """Bytes of ``obj`` and everything it holds (dicts, lists, strings, numbers)."""
    seen = set() if seen is None else seen
    if id(obj) in seen:
        return 0
    seen.add(id(obj))
    size = sys.getsizeof(obj)
    if isinstance(obj, dict):
        size += sum(deep_size(k, seen) + deep_size(v, seen) for k, v in obj.items())
    elif isinstance(obj, (list, tuple)):
        size += sum(deep_size(v, seen) for v in obj)
    return size


def trend(xs, ys) -> float:
    """The least-squares slope of ys over xs."""
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)


class Chaos(threading.Thread):
    """Kills and stalls the run's runtime processes and restarts its redis-server as rounds
    pass; samples memory and the store."""

    def __init__(self, out, srv, before, rounds, seed=0):
        super().__init__(daemon=True)
        self.metrics, self.srv, self.before, self.rounds = Metrics(out), srv, set(before), rounds
        self.admin = make_store(srv.config())  # the server's own password: DBSIZE, ACL USERS
        self.rng = random.Random(seed)
        self.done = threading.Event()
        self.kills, self.stalls, self.restarts, self.samples, self.errors = [], [], [], [], []

    def run(self):
        try:
            self._run()
        except Exception as e:  # noqa: BLE001 - reported by the test
            self.errors.append(repr(e))
        finally:
            self.admin.close()

    def _tick(self):
        self._sample()
        time.sleep(0.02)

    def _wait_for(self, r):
        while self.metrics.poll() < r and not self.done.is_set():
            self._tick()
        return not self.done.is_set()

    def _wait_full_round(self):
        """Until a round after this one in which every worker answered."""
        since = self.metrics.poll()
        while not self.done.is_set() and WORKERS not in self.metrics.arrived[since:]:
            self._tick()
            self.metrics.poll()

    def _sample(self):
        r = len(self.metrics.arrived)
        if r // SAMPLE_EVERY <= len(self.samples):
            return
        client = self.admin.client
        self.samples.append({"round": r, "server": rss(os.getpid()), "redis": rss(self.srv.proc.pid),
                             "workers": [rss(p) for p in runtime_pids(self.before)],
                             "keys": client.dbsize(),
                             "users": len(client.execute_command("ACL", "USERS"))})

    def _restart_in_a_round(self):
        """Restart the redis-server while a round is in flight: 0-20 ms after its round users
        exist (before the workers log in, while they compute, or after they wrote)."""
        give_up = time.monotonic() + 2.0
        while len(self.admin.client.execute_command("ACL", "USERS")) < 2 and \
                time.monotonic() < give_up:
            time.sleep(0.001)
        time.sleep(self.rng.uniform(0.0, 0.02))
        self.srv.restart()

    def _run(self):
        last = self.rounds - 100
        nxt = {"kill": self.rng.randint(60, 140), "stall": self.rng.randint(20, 60),
               "restart": self.rng.randint(70, 150)}
        while True:
            what = min(nxt, key=nxt.get)
            r = nxt[what]
            if not self._wait_for(r):
                return
            pids = runtime_pids(self.before)
            if what == "restart":
                nxt["restart"] = r + self.rng.randint(70, 150) if r <= last else self.rounds + 1
                if r <= last:
                    self._restart_in_a_round()
                    self.restarts.append(len(self.metrics.arrived))
                    self._wait_full_round()
            elif not pids:
                nxt[what] = r + 1
            elif what == "kill":
                nxt["kill"] = r + self.rng.randint(60, 140) if r <= last else self.rounds + 1
                if r <= last:
                    os.kill(self.rng.choice(pids), signal.SIGKILL)
                    self.kills.append(len(self.metrics.arrived))
                    self._wait_full_round()  # the new environment is warm
            else:
                pid = self.rng.choice(pids)
                os.kill(pid, signal.SIGSTOP)
                time.sleep(STALL_S)
                os.kill(pid, signal.SIGCONT)
                self.stalls.append(len(self.metrics.arrived))
                nxt["stall"] = r + self.rng.randint(20, 60)
                if nxt["stall"] > self.rounds - 10:  # the last rounds are the whole team's
                    nxt["stall"] = self.rounds + 1


def test_soak_kills_stragglers_and_redis_restarts(tmp_path):
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    out = str(tmp_path / "soak")
    with LocalRedisServer() as srv:
        os.environ[PASSWORD_ENV] = srv.password
        try:
            cfg = TrainConfig(
                backend="lambda", workers=WORKERS, byzantine=1, rule="median", model="logreg",
                rounds=ROUNDS, eval_every=100, checkpoint_every=100, round_timeout_s=TIMEOUT_S,
                progress=False, output_dir=out,
                backend_kwargs={"local": True, "store": srv.config(password_env=PASSWORD_ENV),
                                "timeout_s": 30, "stats_path": str(tmp_path / "stats.jsonl")})
            chaos = Chaos(out, srv, runtime_pids(), ROUNDS)
            res, wall = train_under(chaos, cfg)
        finally:
            del os.environ[PASSWORD_ENV]
    assert not chaos.errors, chaos.errors
    logged = read_jsonl(os.path.join(out, "metrics.jsonl"))
    assert [r["round"] for r in logged] == list(range(ROUNDS))  # each round once, in order
    assert logged[-1]["arrived"] == WORKERS  # every killed worker is back

    omitted = [r for r in logged if r["omitted"]]
    reasons = {}
    for r in omitted:
        for why in r["omitted"].values():
            kind = " ".join(why.split(" ")[:3])
            reasons[kind] = reasons.get(kind, 0) + 1
    with open(tmp_path / "stats.jsonl") as fh:
        stats = [json.loads(line) for line in fh]
    restored = [s["round"] for s in stats if s["store_restored"]]
    assert chaos.restarts and restored  # restarts cost rounds their data, and they were re-run

    t1 = time.perf_counter()
    assert torch.equal(res.params, replay(cfg, logged))
    replay_s = time.perf_counter() - t1

    warm = [s for s in chaos.samples if s["round"] >= WARMUP and s["server"]]
    assert len(warm) >= 2, chaos.samples
    growth = (max(s["server"] for s in warm) - warm[0]["server"]) / MB
    # kept by design, a record per round: train()'s history (returned) and the backend's
    # round_stats (as parsed from stats.jsonl: the same dicts)
    kept = (deep_size(res.history) + deep_size(stats)) / ROUNDS
    kept_mb = kept * (warm[-1]["round"] - warm[0]["round"]) / MB
    slope = trend([s["round"] for s in warm], [s["server"] for s in warm])  # bytes a round
    rounds_s = sorted(s["publish_s"] + s["invoke_s"] + s["collect_s"] + s["cleanup_s"]
                      for s in stats)
    print(f"\nlambda soak: {ROUNDS} rounds in {wall:.0f} s (replay {replay_s:.1f} s), backend "
          f"round median {1e3 * rounds_s[len(rounds_s) // 2]:.0f} ms; "
          f"{len(chaos.kills)} kills at rounds {chaos.kills}; {len(chaos.stalls)} stalls; "
          f"{len(chaos.restarts)} Redis restarts at rounds {chaos.restarts}, store restored in "
          f"rounds {restored} (omissions left in them: "
          f"{sum(s['omitted'] for s in stats if s['store_restored'])}); "
          f"{len(omitted)} rounds with omissions, by reason {reasons}; "
          f"final accuracy {res.final_accuracy}; load average {os.getloadavg()}")
    for s in chaos.samples:
        print(f"  round {s['round']:5d}: server {s['server'] / MB:7.1f} MB, redis "
              f"{(s['redis'] or 0) / MB:5.1f} MB, {s['keys']} keys, {s['users']} users, "
              f"workers {[round(w / MB) for w in s['workers'] if w]} MB")
    print(f"  server growth after round {warm[0]['round']}: {growth:.1f} MB, of which the "
          f"per-round records kept by design ({kept / 1024:.1f} KB a round): {kept_mb:.1f} MB; "
          f"RSS trend {slope / 1024:.1f} KB a round")
    # the store holds at most the shards, the marker, one round's parameters and gradients
    assert max(s["keys"] for s in chaos.samples) <= 3 * WORKERS + 2
    assert max(s["users"] for s in chaos.samples) <= WORKERS + 1
    # flat: bounded, and beyond the records kept by design it grows by less than one parameter
    # vector a round (d = 650: 2.6 KB)
    assert growth < 16, growth
    assert slope - kept < 4 * res.params.numel(), (slope, kept)
