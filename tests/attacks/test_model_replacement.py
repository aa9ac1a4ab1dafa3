"""Model replacement: the BadNets gradient times gamma (default: the number of workers)."""
import pytest
import torch

from attacks import Backdoor, ModelReplacement


def test_scaled_backdoor_gradient():
    g = torch.randn(9, dtype=torch.float64)
    atk = ModelReplacement(target=1).for_worker(worker_id=8, workers=10)
    assert atk.scale == 10.0
    assert torch.equal(atk.poison_gradient(g, lambda: 1 / 0), g * 10)
    assert torch.equal(ModelReplacement(scale=2.5).for_worker(0, 10).poison_gradient(g, None),
                       g * 2.5)
    # the batch is BadNets'
    x, y = torch.rand(6, 64), torch.arange(6)
    for a, b in zip(atk.poison_batch(x, y, 10), Backdoor(target=1).poison_batch(x, y, 10)):
        assert torch.equal(a, b)


def test_errors():
    with pytest.raises(ValueError, match="scale None or finite > 0"):
        ModelReplacement(scale=0.0)
    with pytest.raises(ValueError, match="build the worker's copy with for_worker"):
        ModelReplacement().poison_gradient(torch.ones(2), None)
