"""Compressed messages through the backends: the Lambda handler's sparse blobs decode to the
worker core's message, the server refuses malformed ones, and a compressed run on Ray ends
where the in-process run does."""
import numpy as np
import pytest
import torch

from robustagg.backends.serverless import handler as H
from robustagg.backends.serverless import wire
from robustagg.backends.serverless.backend import LambdaBackend
from robustagg.backends.serverless.stores import MemoryStore, grad_key, params_key, shard_key
from robustagg.compression import compressor, mask_seed
from robustagg.run.config import WorkerSpec
from robustagg.run.data import load_dataset
from robustagg.run.models import build_model
from robustagg.run.worker import build_worker, timed_gradient

RUN, TOKEN, ROUND = "crun", bytes(range(32)), 3
SPEC = ("model", "model_kwargs", "batch_size", "seed", "is_byzantine", "attack",
        "attack_kwargs", "workers", "compression", "compression_kwargs")


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def lambda_round(data, compression, kwargs):
    """One worker's invocation on a memory store; returns (blob, worker state, params, event)."""
    H._STATES.clear()
    store = MemoryStore()
    spec = WorkerSpec(worker_id=1, workers=5, dataset="digits", batch_size=16, seed=7,
                      compression=compression, compression_kwargs=kwargs)
    state = build_worker(spec, data)
    digests = []
    for part, kind, t in (("x", "shard_x", state.x), ("y", "shard_y", state.y)):
        blob = wire.encode(t, kind=kind, run_id=RUN, round=0, worker=1)
        store.put(shard_key(RUN, 1, part), blob, if_absent=False)
        digests.append(wire.digest_of(blob))
    model = build_model("mlp", data.input_shape, data.num_classes, seed=123)
    params = torch.nn.utils.parameters_to_vector(model.parameters()).detach()
    pblob = wire.encode(params, kind="params", run_id=RUN, round=ROUND, worker=-1)
    store.put(params_key(RUN, ROUND), pblob, if_absent=False)
    ev = {"version": 2, "run_id": RUN, "round": ROUND, "worker_id": 1, "token": TOKEN.hex(),
          "d": params.numel(), "num_classes": data.num_classes,
          "input_shape": list(data.input_shape), "x_dtype": "float32", "y_dtype": "int64",
          "params_digest": wire.digest_of(pblob), "shard_digests": digests,
          "spec": {k: getattr(spec, k) for k in SPEC}}
    if compression == "randk_shared":
        ev["mask_seed"] = mask_seed(7, ROUND)
    res = H.run_event(H.parse_event(ev), store)
    assert res["ok"]
    return store.get(grad_key(RUN, ROUND, 1, TOKEN)), state, params, ev


@pytest.mark.parametrize("name", ["topk", "approx_topk", "randk_shared"])
def test_lambda_worker_sends_the_worker_cores_message(digits, name):
    blob, state, params, ev = lambda_round(digits, name, {"ratio": 0.01})
    d = ev["d"]
    comp = compressor(name, ratio=0.01, seed=7)
    k = comp.k(d)
    mask = comp.round_mask(ROUND, d)
    ref, _, _ = timed_gradient(state, params, ROUND, mask)
    backend = LambdaBackend(local=True, run_id=RUN)
    backend.compressor = comp
    row = backend._decode(blob, ROUND, 1, d, TOKEN)
    assert np.array_equal(row.values, ref.values)
    assert (row.indices is None) == comp.shared
    if not comp.shared:
        assert np.array_equal(row.indices, ref.indices)
        assert len(blob) == wire.HEADER_SIZE + 8 * k  # int32 indices + float32 values
    else:
        assert len(blob) == wire.HEADER_SIZE + 4 * k


def test_lambda_backend_publishes_the_mask_seed():
    backend = LambdaBackend(local=True, run_id=RUN)
    backend.compressor = compressor("randk_shared", ratio=0.1, seed=7)
    backend._events = {0: {"spec": {}}}
    assert backend.event(5, 0, 100, "00" * 16)["mask_seed"] == mask_seed(7, 5)


def test_lambda_server_refuses_a_malformed_sparse_blob(digits):
    blob, state, params, ev = lambda_round(digits, "topk", {"ratio": 0.01})
    backend = LambdaBackend(local=True, run_id=RUN)
    backend.compressor = compressor("topk", ratio=0.02, seed=7)  # expects twice the entries
    with pytest.raises(wire.WireError, match="entry count mismatch"):
        backend._decode(blob, ROUND, 1, ev["d"], TOKEN)


def test_lambda_handler_checks_compression_fields(digits):
    _, _, _, ev = lambda_round(digits, "randk_shared", {"ratio": 0.01})
    with pytest.raises(H.BadEvent, match="mask_seed is given with compression='randk_shared'"):
        H.parse_event({k: v for k, v in ev.items() if k != "mask_seed"})
    with pytest.raises(H.BadEvent, match="compression 'topk_shared' is not offered on Lambda"):
        H.parse_event({**ev, "spec": {**ev["spec"], "compression": "topk_shared"}})
    with pytest.raises(H.BadEvent, match="residual=True is not offered on Lambda"):
        H.parse_event({**ev, "spec": {**ev["spec"], "compression_kwargs": {
            "ratio": 0.01, "residual": True}}})


@pytest.mark.slow
@pytest.mark.parametrize("compression,kwargs", [
    ("topk", {"ratio": 0.05}),
    ("topk_shared", {"ratio": 0.05, "residual": True}),  # each actor keeps its workers' e
])
def test_compressed_run_on_ray_equals_the_local_run(tmp_path, compression, kwargs):
    from robustagg.training import train
    from robustagg.run.config import TrainConfig

    cfgs = dict(rounds=3, eval_every=3, progress=False, rule="median", attack="alie",
                compression=compression, compression_kwargs=kwargs, num_cpus=2)
    local = train(TrainConfig(backend="local", output_dir=str(tmp_path / "local"), **cfgs))
    ray_run = train(TrainConfig(backend="ray", output_dir=str(tmp_path / "ray"), **cfgs))
    assert torch.equal(local.params, ray_run.params)
    assert local.history[-1]["bytes_round"] == ray_run.history[-1]["bytes_round"]
