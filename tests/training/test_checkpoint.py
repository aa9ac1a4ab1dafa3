"""Checkpoints and run folders: nothing in a checkpoint runs code, damage is found and named,
a resumed run has the settings of the run it continues, runs never share a folder.

In-process workers (the ``local`` backend): what is tested here does not depend on where the
workers run.
"""
import hashlib
import io
import json
import os
import pathlib

import pytest
import torch

import attacks
import robustagg as ra
from robustagg.run.build import build_attack, build_rule
from robustagg.training import TrainConfig, train
from robustagg.training import checkpoint
from robustagg.training.checkpoint import CheckpointError
from robustagg.training.metrics import read_jsonl
from robustagg.training.rundir import RunDir
from robustagg.training.snapshot import restore, snapshot

SMALL = dict(backend="local", progress=False, model="logreg", workers=5, byzantine=1,
             rule="median", rounds=4, checkpoint_every=2)


def run(out, **kw):
    return train(TrainConfig(**{**SMALL, "output_dir": str(out), **kw}))


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A run's folder with a checkpoint of round 4 (Gaussian attack, so the attack has state)."""
    out = tmp_path_factory.mktemp("saved") / "run"
    run(out, attack="gaussian", attack_kwargs={"std": 0.1})
    return out


def copy_run(src, dst):
    dst.mkdir()
    for f in src.iterdir():
        (dst / f.name).write_bytes(f.read_bytes())
    return dst


def data_file(out) -> pathlib.Path:
    return out / json.loads((out / checkpoint.MANIFEST).read_text())["file"]


def rewrite_manifest(out, data: bytes):
    """What a forger with write access does: the manifest made to match the file."""
    m = json.loads((out / checkpoint.MANIFEST).read_text())
    m.update(bytes=len(data), sha256=hashlib.sha256(data).hexdigest())
    (out / checkpoint.MANIFEST).write_text(json.dumps(m))


class Payload:
    """Pickles as a call that creates a file: proof of code run at load."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return pathlib.Path.touch, (pathlib.Path(self.marker),)


# ---- a crafted checkpoint runs no code ----
def test_crafted_checkpoint_runs_no_code(saved, tmp_path):
    out = copy_run(saved, tmp_path / "run")
    marker = tmp_path / "code-ran"
    state = torch.load(data_file(out), weights_only=True)
    state["rule"] = Payload(marker)
    buf = io.BytesIO()
    torch.save(state, buf)
    data_file(out).write_bytes(buf.getvalue())
    rewrite_manifest(out, buf.getvalue())  # the checksum passes: only the loader stands guard
    with pytest.raises(CheckpointError, match=r"checkpoint-00000004\.pt: not a checkpoint of "
                                              r"tensors and plain data"):
        run(out, attack="gaussian", attack_kwargs={"std": 0.1}, resume=True)
    assert not marker.exists()


def test_checkpoint_earlier_format_is_never_unpickled(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    marker = tmp_path / "code-ran"
    torch.save({"round": 1, "x": Payload(marker)}, out / "checkpoint.pt")
    with pytest.raises(CheckpointError, match=r"checkpoint\.pt: a checkpoint of an earlier "
                                              r"version.*resume=False"):
        run(out, resume=True)
    assert not marker.exists()


# ---- damage is found and named ----
def truncate(p):
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])


def empty(p):
    p.write_bytes(b"")


def flip_tensor_byte(p):
    data = bytearray(p.read_bytes())
    data[len(data) // 2] ^= 0x01
    p.write_bytes(bytes(data))


def append(p):
    p.write_bytes(p.read_bytes() + b"\0")


@pytest.mark.parametrize("damage,message", [
    (truncate, r"truncated \(\d+ of \d+ bytes\)"),
    (empty, r"empty \(0 bytes, expected \d+\)"),
    (flip_tensor_byte, r"SHA-256 [0-9a-f]{64} does not match [0-9a-f]{64} recorded in "
                       r"checkpoint\.json: damaged or changed"),
    (append, r"longer than recorded"),
    (os.remove, r"missing \(named by checkpoint\.json\)"),
])
def test_damaged_data_file_is_refused_naming_it(saved, tmp_path, damage, message):
    out = copy_run(saved, tmp_path / "run")
    path = data_file(out)
    damage(path)
    with pytest.raises(CheckpointError, match=f"^{str(path)}: {message}"):
        checkpoint.load(str(out))


@pytest.mark.parametrize("content,message", [
    (b"", r"empty \(0 bytes\)"),
    (b'{"format": 1, "file": "checkp', r"not valid JSON"),
    (b'{"format": 1}', r"expected an object with"),
    (b'{"format": 1, "file": "../../etc/passwd", "bytes": 1, "sha256": "", "round": 1, '
     b'"settings": {}}', r"names the file '../../etc/passwd'"),
])
def test_damaged_manifest_is_refused_naming_it(saved, tmp_path, content, message):
    out = copy_run(saved, tmp_path / "run")
    (out / checkpoint.MANIFEST).write_bytes(content)
    with pytest.raises(CheckpointError, match=f"^{str(out / checkpoint.MANIFEST)}: {message}"):
        checkpoint.load(str(out))


def test_intact_checkpoint_loads(saved):
    state, manifest = checkpoint.load(str(saved))
    assert state["round"] == manifest["round"] == 4
    assert sorted(f for f in os.listdir(saved) if f.startswith("checkpoint")) == \
        ["checkpoint-00000004.pt", "checkpoint.json"]  # the round-2 file was removed


# ---- resume continues the same run ----
def test_resume_refuses_other_settings_naming_them(saved, tmp_path):
    out = copy_run(saved, tmp_path / "run")
    with pytest.raises(ValueError) as e:
        run(out, rule="trimmed_mean", attack="none", byzantine=0, resume=True, rounds=8)
    msg = str(e.value)
    assert f"the checkpoint in {out} (round 4)" in msg
    for field in ("rule: 'median' there, 'trimmed_mean' now", "attack: 'gaussian' there, "
                  "'none' now", "byzantine: 1 there, 0 now", "attack_kwargs: {'std': 0.1} there, "
                  "{} now"):
        assert field in msg
    assert "lr" not in msg and "rounds" not in msg
    assert "start afresh with resume=False" in msg
    assert checkpoint.load(str(out))[1]["round"] == 4  # refused before anything was written


def test_resume_may_change_what_does_not_change_the_result(tmp_path):
    kw = dict(attack="gaussian", attack_kwargs={"std": 0.1}, pre=["bucketing"],
              rule="median", workers=7, byzantine=1)
    full = run(tmp_path / "full", rounds=8, **kw)
    run(tmp_path / "part", rounds=4, **kw)
    resumed = run(tmp_path / "part", rounds=8, eval_every=3, round_timeout_s=30.0,
                  checkpoint_every=1, resume=True, **kw)
    # the rule's generator (bucketing) and the attack's restored: the same run
    assert torch.equal(resumed.params, full.params)


def test_fresh_run_replaces_an_earlier_checkpoint(saved, tmp_path):
    out = copy_run(saved, tmp_path / "run")
    run(out, rule="trimmed_mean", checkpoint_every=0)
    assert not checkpoint.exists(str(out))  # a later resume cannot pick up the other run's


# ---- run folders ----
def test_default_folders_are_unique_and_resume_finds_its_own(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    kw = {**SMALL, "output_dir": None}
    a = train(TrainConfig(**kw, lr=0.1))
    b = train(TrainConfig(**kw, lr=0.05))  # differs in lr only: the name is the same
    assert a.output_dir != b.output_dir
    assert os.path.dirname(a.output_dir) == os.path.join("outputs", "runs")
    assert os.path.basename(a.output_dir).startswith(TrainConfig(**kw).name + "-")
    for res in (a, b):
        logged = read_jsonl(os.path.join(res.output_dir, "metrics.jsonl"))
        assert [r["train_loss"] for r in logged] == [r["train_loss"] for r in res.history]
    c = train(TrainConfig(**kw, lr=0.1))  # the same settings again: a folder of its own too
    assert c.output_dir not in (a.output_dir, b.output_dir)
    # resume finds the newest run with these settings and a checkpoint, not b (other lr)
    resumed = train(TrainConfig(**{**kw, "rounds": 6}, lr=0.1, resume=True))
    assert resumed.output_dir == c.output_dir
    assert [r["train_loss"] for r in resumed.history[:4]] == \
        [r["train_loss"] for r in c.history]


def test_a_folder_in_use_is_refused(tmp_path):
    out = tmp_path / "run"
    with RunDir(str(out)):
        with pytest.raises(RuntimeError, match=rf"output_dir='{out}' is in use by another run "
                                               rf"\(process {os.getpid()}\)"):
            run(out)
    run(out)  # free again once the first run has ended


# ---- the state of every rule and attack survives the round trip ----
def weights_only_round_trip(tree):
    buf = io.BytesIO()
    torch.save(tree, buf)
    return torch.load(io.BytesIO(buf.getvalue()), weights_only=True)


N, F, D = 15, 2, 7


@pytest.mark.parametrize("name", [r for r in ra.available_rules() if r != "fltrust"] +
                         [f"{p}+krum" for p in ra.available_pre_aggregators()])
def test_rule_state_round_trip(name):
    pre, _, rule = name.rpartition("+")

    def build():
        return build_rule(rule, {}, [(pre, {})] if pre else [], {"f": F, "seed": 3})

    g = torch.Generator().manual_seed(1)
    used = build()
    for _ in range(3):
        used(torch.randn(N, D, generator=g))
    fresh = build()
    restore(fresh, weights_only_round_trip(snapshot(used)))
    x = torch.randn(N, D, generator=g)
    assert torch.equal(used(x), fresh(x))
    assert (used.selected is None) == (fresh.selected is None)


@pytest.mark.parametrize("name", [a for a in attacks.available_attacks()
                                  if a != "none" and attacks.attack(a).kind == "model"])
def test_model_attack_state_round_trip(name):
    def build():
        return build_attack(name, {}, 5, n=N)

    g = torch.Generator().manual_seed(1)
    rule = ra.aggregator("krum", f=F)
    used = build()
    for _ in range(2):
        used(torch.randn(N - F, D, generator=g), F, rule=rule)
    fresh = build()
    restore(fresh, weights_only_round_trip(snapshot(used)))
    h = torch.randn(N - F, D, generator=g)
    assert torch.equal(used(h, F, rule=rule).nan_to_num(), fresh(h, F, rule=rule).nan_to_num())


def test_restoring_into_another_class_names_both():
    from robustagg.training.snapshot import StateError

    with pytest.raises(StateError, match=r"the checkpoint holds a robustagg\.rules\.krum\.Krum, "
                                         r"the run builds a robustagg\.rules\.median\.CoordinateMedian"):
        restore(ra.aggregator("median", f=1), snapshot(ra.aggregator("krum", f=1)))
