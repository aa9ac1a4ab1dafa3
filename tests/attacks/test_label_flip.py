"""Label flipping: y -> C - 1 - y, x untouched, bad labels rejected."""
import pytest
import torch

from attacks import LabelFlip


def test_flip():
    x, y = torch.randn(4, 3), torch.tensor([0, 1, 7, 9])
    x2, y2 = LabelFlip().poison_batch(x, y, 10)
    assert x2 is x
    assert torch.equal(y2, torch.tensor([9, 8, 2, 0]))
    assert LabelFlip.kind == "data"


def test_bad_labels():
    with pytest.raises(ValueError, match=r"labels in \[0, 3\)"):
        LabelFlip().poison_batch(torch.zeros(2, 1), torch.tensor([0, 3]), 3)
    with pytest.raises(TypeError, match="integer class labels"):
        LabelFlip().poison_batch(torch.zeros(2, 1), torch.tensor([0.0, 1.0]), 3)
    with pytest.raises(ValueError, match="num_classes >= 2"):
        LabelFlip().poison_batch(torch.zeros(2, 1), torch.tensor([0, 0]), 1)
