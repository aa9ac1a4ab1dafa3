"""The worker core: gradients against a hand-written reference, determinism, statelessness."""
import pytest
import torch

from robustagg.backends.base import WorkerSpec, check_gradient
from robustagg.run import worker
from robustagg.run.data import load_dataset


def _spec(**kw):
    return WorkerSpec(**{"worker_id": 2, "workers": 5, "model": "logreg", "batch_size": 16,
                         "seed": 7, **kw})


def test_gradient_matches_softmax_regression_formula():
    st = worker.build_worker(_spec())
    d = sum(p.numel() for p in st.model.parameters())
    params = torch.randn(d, generator=torch.Generator().manual_seed(0)) * 0.1
    grad, loss = worker.compute_gradient(st, params, round=3)
    # reference: the same minibatch, softmax cross-entropy gradient by hand
    g = torch.Generator().manual_seed(worker.derive_seed(7, 2, 3))
    idx = torch.randperm(len(st.x), generator=g)[:16]
    x, y = st.x[idx], st.y[idx]
    W, b = params[:640].view(10, 64), params[640:]
    p = torch.softmax(x @ W.T + b, 1)
    err = (p - torch.nn.functional.one_hot(y, 10).float()) / 16
    ref = torch.cat([(err.T @ x).reshape(-1), err.sum(0)])
    assert grad.dtype == torch.float32 and grad.shape == (d,)
    assert torch.allclose(grad, ref, atol=1e-6)
    assert loss == pytest.approx(float(-torch.log(p[torch.arange(16), y]).mean()), rel=1e-5)


def test_stateless_equals_stateful_and_rounds_differ():
    spec = _spec(model="mlp", partition="dirichlet", alpha=0.5)
    st = worker.build_worker(spec)
    params = torch.nn.utils.parameters_to_vector(st.model.parameters()).detach()
    g1, _ = worker.compute_gradient(st, params, 1)
    g2, _ = worker.compute_gradient(st, params, 2)
    fresh = worker.build_worker(WorkerSpec.from_dict(spec.to_dict()))
    assert torch.equal(worker.compute_gradient(fresh, params, 1)[0], g1)
    assert not torch.equal(g1, g2)


def test_shard_from_indices_or_recipe_agree():
    spec = _spec(partition="shards")
    st = worker.build_worker(spec)
    idx = worker.shard_indices(spec, load_dataset("digits").y_train)
    st2 = worker.build_worker(_spec(partition="shards", indices=idx.tolist()))
    assert torch.equal(st.x, st2.x) and torch.equal(st.y, st2.y)


def test_label_flip_poisons_only_byzantine_workers():
    honest = worker.build_worker(_spec())
    byz = worker.build_worker(_spec(is_byzantine=True, attack="label_flip"))
    params = torch.zeros(650)
    gh, _ = worker.compute_gradient(honest, params, 0)
    gb, _ = worker.compute_gradient(byz, params, 0)
    # at zero parameters the softmax is uniform: flipping y -> 9 - y permutes the bias gradient
    assert torch.allclose(gb[640:], gh[640:].flip(0), atol=1e-6)
    assert worker.build_worker(_spec(attack="label_flip")).attack is None  # honest id: no attack


def test_faults_from_attacks():
    st = worker.build_worker(_spec(is_byzantine=True, attack="crash", attack_kwargs={"round": 2}))
    assert [worker.fault(st, r) for r in range(4)] == [None, None, "crash", "crash"]
    st = worker.build_worker(_spec(is_byzantine=True, attack="straggle",
                                   attack_kwargs={"delay": 0.5, "start": 1}))
    assert [worker.fault(st, r) for r in range(2)] == [None, 0.5]
    with pytest.raises(ValueError, match="model-poisoning"):
        worker.build_worker(_spec(is_byzantine=True, attack="gaussian"))


def test_check_gradient_rejects_wrong_format():
    import numpy as np

    assert check_gradient(np.zeros(4, np.float32), 4) is not None
    assert check_gradient(np.full(4, np.nan, np.float32), 4) is not None  # the rules' job
    for bad in [np.zeros(4, np.float64), np.zeros(5, np.float32), np.zeros((2, 2), np.float32),
                b"\x00" * 16, [0.0] * 4, torch.zeros(4, dtype=torch.float16)]:
        assert check_gradient(bad, 4) is None


def test_derive_seed_is_stable():
    assert worker.derive_seed(0, 1, 2) == worker.derive_seed(0, 1, 2) != worker.derive_seed(0, 2, 1)
    import hashlib

    ref = int.from_bytes(hashlib.sha256(b"0/1/2").digest()[:8], "little") >> 1
    assert worker.derive_seed(0, 1, 2) == ref
