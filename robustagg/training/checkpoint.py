"""Atomic checkpoints: write to a temporary file in the same folder, fsync, then rename, so a
crash mid-write leaves the previous checkpoint intact."""
from __future__ import annotations

import os

import torch

FILENAME = "checkpoint.pt"


def save(out_dir: str, state: dict) -> str:
    """Write ``state`` to ``<out_dir>/checkpoint.pt`` atomically; returns the path."""
    path = os.path.join(out_dir, FILENAME)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "wb") as fh:
        torch.save(state, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return path


def load(out_dir: str) -> dict | None:
    """The checkpoint in ``out_dir``, or None if there is none."""
    path = os.path.join(out_dir, FILENAME)
    if not os.path.exists(path):
        return None
    # Our own file (it holds the rule and attack objects with their generators), not worker data.
    return torch.load(path, weights_only=False)
