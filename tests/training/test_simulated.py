"""Simulated workers (robustagg.run.simulated): the gradient is the documented formula, a pure
function of (seed, worker, round) whatever the process or the packing, distinct per worker in
a round, and a run with them goes through the server and rule like any other."""
import pytest
import torch

from robustagg.run import simulated
from robustagg.run.config import TrainConfig, WorkerSpec
from robustagg.run.worker import build_worker, compute_gradient


def spec(i, workers=8, dim=1000, noise=0.5, seed=3):
    return WorkerSpec(worker_id=i, workers=workers, dataset="simulated", model="simulated",
                      model_kwargs={"dim": dim, "noise": noise}, seed=seed)


def test_gradient_is_params_plus_scaled_noise_window():
    w = torch.randn(1000, generator=torch.Generator().manual_seed(1))
    state = build_worker(spec(5))
    g, loss = compute_gradient(state, w, round=7)
    windows = max(8, simulated.MIN_WINDOWS)
    off = simulated.window_offset(5, 7, 3, windows)
    bank = simulated.noise_bank(1000, 0.5, 3, windows)
    assert torch.equal(g, w + bank[off:off + 1000])
    assert loss == pytest.approx(0.5 * float(w.double().square().sum()), rel=1e-12)
    # the bank is σ times standard normal values, drawn from a stream of its own
    assert bank.std().item() == pytest.approx(0.5, rel=0.1)
    assert not torch.equal(bank[:1000] / 0.5, torch.randn(1000, generator=torch.Generator()
                                                            .manual_seed(3)))


def test_same_seed_worker_round_same_bits_and_workers_differ():
    w = torch.zeros(1000)
    simulated.noise_bank.cache_clear()
    first = [compute_gradient(build_worker(spec(i)), w, 2)[0] for i in range(8)]
    simulated.noise_bank.cache_clear()  # a fresh process: the bank drawn again
    again = [compute_gradient(build_worker(spec(i)), w, 2)[0] for i in range(8)]
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert len({tuple(g[:16].tolist()) for g in first}) == 8  # every worker its own window
    other_round = compute_gradient(build_worker(spec(0)), w, 3)[0]
    other_seed = compute_gradient(build_worker(spec(0, seed=4)), w, 2)[0]
    assert not torch.equal(first[0], other_round) and not torch.equal(first[0], other_seed)


def test_offsets_distinct_within_a_round_up_to_the_windows():
    for windows in (1024, 1500):
        offs = {simulated.window_offset(i, 11, 0, windows) for i in range(windows)}
        assert offs == set(range(windows))


def test_settings_and_pairing_are_checked():
    with pytest.raises(ValueError, match="needs dataset='simulated'"):
        simulated.quadratic_model((64,), 10)  # digits' shape and classes
    with pytest.raises(ValueError, match="dim must be an int >= 1"):
        simulated.quadratic_model((1,), 0, dim=0)
    with pytest.raises(ValueError, match="noise must be a finite number"):
        build_worker(WorkerSpec(worker_id=0, workers=2, model="simulated",
                                model_kwargs={"dim": 4, "noise": -1.0}))
    bad = WorkerSpec(worker_id=1, workers=2, model="simulated", is_byzantine=True,
                     attack="label_flip")
    with pytest.raises(ValueError, match="fault attacks only"):
        build_worker(bad)


def test_a_simulated_run_trains_and_repeats(tmp_path):
    from robustagg.training import train

    cfg = TrainConfig(dataset="simulated", dataset_kwargs={"samples": 6}, model="simulated",
                      model_kwargs={"dim": 300, "noise": 0.1}, workers=6, byzantine=1,
                      rule="krum", rounds=4, lr=0.1, momentum=0.0, backend="local",
                      progress=False, eval_every=4)
    a = train(cfg, output_dir=str(tmp_path / "a"))
    b = train(cfg, output_dir=str(tmp_path / "b"))
    assert torch.equal(a.params, b.params)
    losses = [r["train_loss"] for r in a.history]
    assert losses == sorted(losses, reverse=True)  # ½‖w‖² shrinks under SGD on it
    w = a.params.double()
    assert a.history[-1]["test_loss"] == pytest.approx(0.5 * float(w.square().sum()), rel=1e-5)
    assert all(r["selected"] is not None for r in a.history)
