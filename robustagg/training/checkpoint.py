"""Checkpoints: a run's state in a file read without unpickling code, and a manifest beside it
that says which file is current, its size and its SHA-256.

``<out_dir>/checkpoint-<round>.pt`` holds tensors and plain data only (the model and optimizer
state dicts, the rule's and the attack's state as :mod:`~robustagg.training.snapshot` trees,
the worker momenta, the round), written by ``torch.save`` and read by
``torch.load(weights_only=True)``, so a crafted file cannot run code. ``<out_dir>/checkpoint.json``
(the manifest, JSON) names that file and records its size, its SHA-256, the round and the run's
settings that determine the result (:meth:`TrainConfig.result_settings`).

Writing is crash-safe: the data file and then the manifest are each written to a temporary
file, flushed to disk and renamed into place; the previous data file is removed only after the
new manifest is in place. A crash at any point leaves a manifest naming a complete file.
Loading verifies the size and the checksum before reading a byte of the state; every error
names the file and what is wrong with it (missing, empty, truncated, changed).
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import re

import torch

MANIFEST = "checkpoint.json"
FORMAT = 1
_DATA = re.compile(r"checkpoint-\d{8}\.pt")
_LEGACY = "checkpoint.pt"  # written by earlier versions: a pickle, never loaded


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used; the message names the file and what is wrong."""


def _write_atomic(path: str, data: bytes) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _sync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save(out_dir: str, state: dict, settings: dict) -> str:
    """Write ``state`` (tensors and plain data, with an int ``"round"``) and its manifest
    into ``out_dir``; ``settings``: the run's result settings (JSON). Returns the data file's
    path."""
    buf = io.BytesIO()
    torch.save(state, buf)
    data = buf.getvalue()
    name = f"checkpoint-{int(state['round']):08d}.pt"
    path = os.path.join(out_dir, name)
    _write_atomic(path, data)
    manifest = {"format": FORMAT, "file": name, "bytes": len(data),
                "sha256": hashlib.sha256(data).hexdigest(), "round": int(state["round"]),
                "settings": settings}
    _write_atomic(os.path.join(out_dir, MANIFEST), json.dumps(manifest, indent=1).encode())
    _sync_dir(out_dir)
    for other in os.listdir(out_dir):  # the earlier checkpoints, now unreferenced
        if _DATA.fullmatch(other) and other != name:
            os.remove(os.path.join(out_dir, other))
    return path


def exists(out_dir: str) -> bool:
    """Whether ``out_dir`` holds a checkpoint (of this or an earlier format)."""
    return any(os.path.exists(os.path.join(out_dir, f)) for f in (MANIFEST, _LEGACY))


def remove(out_dir: str) -> None:
    """Delete the checkpoint in ``out_dir`` (a fresh run in a folder that held one)."""
    if not os.path.isdir(out_dir):
        return
    for f in os.listdir(out_dir):
        if f in (MANIFEST, _LEGACY) or _DATA.fullmatch(f):
            os.remove(os.path.join(out_dir, f))


def read_manifest(out_dir: str) -> dict | None:
    """The manifest of the checkpoint in ``out_dir``, checked; None if there is no
    checkpoint."""
    path = os.path.join(out_dir, MANIFEST)
    if not os.path.exists(path):
        if os.path.exists(os.path.join(out_dir, _LEGACY)):
            raise CheckpointError(
                f"{os.path.join(out_dir, _LEGACY)}: a checkpoint of an earlier version, without a "
                f"checksum and stored as a pickle, which is never loaded; start afresh with "
                f"resume=False")
        return None
    with open(path, "rb") as fh:
        raw = fh.read()
    if not raw:
        raise CheckpointError(f"{path}: empty (0 bytes)")
    try:
        m = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path}: not valid JSON ({e}): damaged or changed") from None
    expected = {"format": int, "file": str, "bytes": int, "sha256": str, "round": int,
                "settings": dict}
    if not isinstance(m, dict) or any(not isinstance(m.get(k), t) or isinstance(m.get(k), bool)
                                      for k, t in expected.items()):
        raise CheckpointError(f"{path}: expected an object with {sorted(expected)} of types "
                              f"{[t.__name__ for t in expected.values()]}: damaged or changed")
    if m["format"] != FORMAT:
        raise CheckpointError(f"{path}: format {m['format']}, this version reads format {FORMAT}")
    if not _DATA.fullmatch(m["file"]):
        raise CheckpointError(f"{path}: names the file {m['file']!r}, expected "
                              f"checkpoint-<8 digits>.pt in the same folder")
    return m


def _read_verified(out_dir: str, m: dict) -> bytes:
    path = os.path.join(out_dir, m["file"])
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except FileNotFoundError:
        raise CheckpointError(f"{path}: missing (named by {MANIFEST})") from None
    size = len(data)
    if size == 0:
        raise CheckpointError(f"{path}: empty (0 bytes, expected {m['bytes']})")
    if size < m["bytes"]:
        raise CheckpointError(f"{path}: truncated ({size} of {m['bytes']} bytes)")
    if size > m["bytes"]:
        raise CheckpointError(f"{path}: longer than recorded ({size} bytes, expected "
                              f"{m['bytes']}): changed")
    digest = hashlib.sha256(data).hexdigest()
    if digest != m["sha256"]:
        raise CheckpointError(f"{path}: SHA-256 {digest} does not match {m['sha256']} recorded "
                              f"in {MANIFEST}: damaged or changed")
    return data


def load(out_dir: str) -> tuple[dict, dict] | None:
    """``(state, manifest)`` of the checkpoint in ``out_dir``, or None if there is none.
    Raises :class:`CheckpointError` for a damaged, changed or unreadable one."""
    m = read_manifest(out_dir)
    if m is None:
        return None
    data = _read_verified(out_dir, m)
    path = os.path.join(out_dir, m["file"])
    try:
        # weights_only: tensors and plain containers only; a pickled object is refused
        state = torch.load(io.BytesIO(data), weights_only=True)
    except Exception as e:  # noqa: BLE001 - any failure to parse is a bad file
        raise CheckpointError(f"{path}: not a checkpoint of tensors and plain data "
                              f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})"
                              ) from None
    keys = {"round", "model", "optimizer", "rule", "attack", "worker_momentum"}
    if not isinstance(state, dict) or not keys <= set(state) or state["round"] != m["round"]:
        raise CheckpointError(f"{path}: expected a dict with at least {sorted(keys)} for round "
                              f"{m['round']}")
    return state, m


def check_settings(manifest: dict, settings: dict, out_dir: str) -> None:
    """Refuse to resume the checkpoint of ``manifest`` with other result ``settings``: the
    error names each differing field with both values and says how to start afresh."""
    now = json.loads(json.dumps(settings, default=repr))  # as the manifest holds them
    saved = manifest["settings"]
    missing = "(not set)"
    diff = [k for k in sorted(set(saved) | set(now))
            if saved.get(k, missing) != now.get(k, missing)]
    if diff:
        fields = "; ".join(f"{k}: {saved.get(k, missing)!r} there, {now.get(k, missing)!r} now"
                           for k in diff)
        raise ValueError(
            f"resume=True: the checkpoint in {out_dir} (round {manifest['round']}) was written by "
            f"a run with other settings ({fields}). Resume with that run's settings, or start "
            f"afresh with resume=False (which replaces that folder's checkpoint and metrics) or "
            f"with another output_dir")
