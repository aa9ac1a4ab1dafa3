"""The server's round: arrivals land in one preallocated [n, d] buffer, the attack reads its rows
in place and its forged rows are written into it, the rule aggregates the filled rows, and the
aggregate reaches the model through optim.apply_aggregate. Checked against the same round
computed by hand (stacked copies) on replayed gradients."""
import pytest
import torch

from attacks.base import ModelAttack
from robustagg.backends.base import Arrivals, Backend
from robustagg.run.config import TrainConfig
from robustagg.training.server import ParameterServer

SEEN = []  # storage pointers of what the attack was given (the server deep-copies the attack)


class Replay(Backend):
    """Answers round r with fixed random rows (some workers can be left out)."""

    def __init__(self, missing=()):
        self.missing = set(missing)

    def start(self, specs, data=None):
        self.n = len(specs)

    def compute(self, round, params, worker_ids, timeout_s):
        g = torch.Generator().manual_seed(round)
        rows = torch.randn(self.n, params.numel(), generator=g)
        ids = [i for i in worker_ids if i not in self.missing]
        return Arrivals(grads={i: rows[i] for i in ids}, losses={i: 1.0 for i in ids},
                        compute_s={i: 0.0 for i in ids},
                        errors={i: "crashed" for i in worker_ids if i in self.missing})

    def close(self):
        pass


def shifted(rows, f):
    """f copies of the d numbers after the first one of ``rows``: a view that straddles two rows."""
    d = rows.shape[1]
    return rows.reshape(-1)[1:1 + d].expand(f, -1)


class Forger(ModelAttack):
    """Omniscient: every Byzantine row = 2 × the first honest row. Otherwise a view of the rows
    it sees, overlapping the rows it replaces."""
    name = "forger"

    def _forge(self, honest, f, rule):
        SEEN.append(honest.untyped_storage().data_ptr())
        return (2 * honest[:1]).expand(f, -1) if self.omniscient else shifted(honest, f)


def server(omniscient=True, missing=()):
    cfg = TrainConfig(dataset="synthetic", dataset_kwargs={"features": 3, "samples": 60},
                      model="logreg", workers=6, byzantine=2, rule="mean", lr=1.0, momentum=0.0,
                      attack=Forger(omniscient=omniscient), backend="local",
                      progress=False)
    return ParameterServer(cfg, backend=Replay(missing))


@pytest.mark.parametrize("omniscient", [True, False])
def test_round_in_one_buffer_equals_the_stacked_reference(omniscient):
    SEEN.clear()
    s = server(omniscient)
    buffer = s.rows.untyped_storage().data_ptr()
    for r in range(2):
        p0 = s.params()
        rows = torch.randn(6, p0.numel(), generator=torch.Generator().manual_seed(r))
        seen = rows[:4] if omniscient else rows[4:]
        forged = 2 * seen[:1].expand(2, -1) if omniscient else shifted(seen, 2)
        ref = torch.cat([rows[:4], forged]).mean(0)
        rec = s.step()
        assert torch.allclose(s.params(), p0 - ref, atol=1e-6)
        assert rec["arrived"] == (4 if omniscient else 6) and rec["skipped"] == ""
    # the attack read the server's buffer, which stayed the same allocation
    assert SEEN == [buffer, buffer] and s.rows.untyped_storage().data_ptr() == buffer


def test_missing_honest_worker_and_non_finite_aggregate():
    s = server(missing=[1])
    p0 = s.params()
    rows = torch.randn(6, p0.numel(), generator=torch.Generator().manual_seed(0))
    honest = rows[[0, 2, 3]]
    s.step()
    ref = torch.cat([honest, 2 * honest[:1].expand(2, -1)]).mean(0)
    assert torch.allclose(s.params(), p0 - ref, atol=1e-6)
    # a NaN row makes the mean non-finite: nothing reaches the model, .grad is cleared
    s.backend.compute = lambda r, p, ids, t: Arrivals(
        grads={i: torch.full((p.numel(),), float("nan")) for i in ids})
    p1 = s.params()
    assert s.step()["skipped"] == "non-finite aggregate"
    assert torch.equal(s.params(), p1) and all(p.grad is None for p in s.parameters)


def test_kernels_take_every_core_whatever_torchs_threads(monkeypatch):
    # Ray sets OMP_NUM_THREADS=1 in its actors (torch then has one thread); the server's native
    # kernels still get every core of the process, and torch stays on one.
    import os

    from robustagg import kernels
    from robustagg.training import server as server_module

    seen = []
    real = kernels.kernel_threads

    def spy(threads):
        seen.append((threads, torch.get_num_threads()))
        return real(threads)

    monkeypatch.setattr(server_module.kernels, "kernel_threads", spy)
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        server().step()
    finally:
        torch.set_num_threads(old)
    assert seen == [(len(os.sched_getaffinity(0)), 1)]
