"""The sharded server on the Ray backend: workers' slices go straight to the shard actors.

With ``server_shards=k`` and ``backend="ray"`` the backend asks each worker for its gradient cut
into the shards' column ranges (``compute(..., split=...)``) and hands the server references,
which each shard fetches itself; the coordinator receives none of the gradients' bytes
(``coordinator_gradient_bytes`` in each round's record). Checked here: the slices are the
gradient, a bad split is refused, malformed answers (a wrong shape the worker reports, a wrong
dtype only the shard sees) and a worker process dying mid-round are omissions, and the run
equals the in-process one.
"""
import numpy as np
import pytest
import torch

from robustagg.backends.base import WorkerSpec
from robustagg.run import worker as W
from robustagg.run.config import TrainConfig
from robustagg.training import train
from tests.training.faults import replay

pytestmark = pytest.mark.ray


def test_split_answers_are_the_gradients_slices(ray_local):
    import ray

    from robustagg.backends.ray_backend import RayBackend

    specs = [WorkerSpec(worker_id=i, workers=2, model="logreg", seed=0) for i in range(2)]
    backend = RayBackend(workers_per_actor=2)
    backend.start(specs)
    try:
        params = torch.zeros(650)
        split = [(0, 64), (64, 448), (448, 650)]
        got = backend.compute(0, params, [0, 1], timeout_s=60, split=split)
        assert not got.grads and set(got.slices) == {0, 1}, got.errors
        for i, spec in enumerate(specs):
            ref, loss = W.compute_gradient(W.build_worker(spec), params, 0)
            parts = ray.get(got.slices[i])
            assert [p.dtype for p in parts] == [np.float32] * 3
            assert torch.equal(torch.from_numpy(np.concatenate(parts)), ref)
            assert got.losses[i] == loss
        for bad in ([(0, 64), (65, 650)], [(0, 64)], [], [(0, 650), (650, 650)]):
            with pytest.raises(ValueError, match="split must be"):
                backend.compute(1, params, [0], timeout_s=60, split=bad)
    finally:
        backend.close()


def test_malformed_slices_are_omissions(ray_local, tmp_path):
    """Worker 1 answers a gradient one value short (its own check flags it), worker 2 float64
    slices it says are fine (the shards refuse them): both omitted, the round goes on with the
    others, as the in-process run without them."""
    import ray

    from robustagg.backends.ray_backend import _RayWorker, split_answer
    from robustagg.training.sharded import ShardedServer

    class Malformed(_RayWorker):
        def compute(self, worker_id, round, params, mask, run, split=None):
            g, loss, secs = super().compute(worker_id, round, params, mask, run)
            if worker_id == 1:
                return split_answer(g[:-1], loss, secs, len(params), split)
            return ((True, loss, secs), *(g[lo:hi].astype(np.float64) for lo, hi in split))

    cfg = TrainConfig(rule="mean", workers=4, byzantine=0, model="logreg", backend="ray",
                      server_shards=2, rounds=1, progress=False, output_dir=str(tmp_path))
    server = ShardedServer(cfg)
    bad = [ray.remote(Malformed).options(num_cpus=0).remote() for _ in range(2)]
    try:
        assert server.direct
        server.backend.actor_of[1], server.backend.actor_of[2] = bad  # each sets itself up
        rec = server.step()
        assert rec["omitted"] == {"1": "malformed answer", "2": "malformed answer"}
        assert rec["arrived"] == 2 and rec["coordinator_gradient_bytes"] == 0
        assert torch.equal(server.params(), replay(cfg, [rec]))
    finally:
        server.close()
        for a in bad:
            ray.kill(a)


def test_sharded_ray_run_with_a_crashing_worker_equals_in_process(ray_local, tmp_path):
    """Worker 3's process dies in its call from round 2 on (Ray restarts it, it dies again):
    an omission each round, the others' slices still reach the shards directly, and the run
    equals the in-process unsharded one."""
    kw = dict(rule="median", workers=4, byzantine=1, model="logreg", rounds=4, progress=False,
              attack="crash", attack_kwargs={"round": 2})
    sharded = train(TrainConfig(**kw, backend="ray", server_shards=2,
                                output_dir=str(tmp_path / "ray")))
    one = train(TrainConfig(**kw, backend="local", output_dir=str(tmp_path / "local")))
    assert torch.equal(sharded.params, one.params)
    for r in sharded.history:
        assert set(r["omitted"]) == (set() if r["round"] < 2 else {"3"})
        assert all(why.startswith(("crashed", "restarting")) for why in r["omitted"].values())
        assert r["coordinator_gradient_bytes"] == 0
