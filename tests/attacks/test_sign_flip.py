"""Sign flip: every row is -scale * mean(honest)."""
import pytest
import torch

from attacks import SignFlip


def test_vector():
    x = torch.tensor([[1.0, -2.0], [3.0, 0.0]])     # mean (2, -1)
    assert torch.equal(SignFlip()(x, 2), torch.tensor([[-2.0, 1.0]] * 2))
    assert torch.equal(SignFlip(scale=3)(x, 1), torch.tensor([[-6.0, 3.0]]))
    with pytest.raises(ValueError, match="scale > 0"):
        SignFlip(scale=0)
