"""BadNets (backdoor): the trigger's pixels for each image layout, the poisoned batch against
an explicit construction, and the errors."""
import pytest
import torch

import attacks
from attacks import Backdoor
from attacks import trigger as T


def reference_stamp(img, rows, cols, value):
    """img: [C, H, W]; a copy with img[:, r, c] = value for r in rows, c in cols."""
    out = img.clone()
    for r in rows:
        for c in cols:
            out[:, r, c] = value
    return out


@pytest.mark.parametrize("shape,rows,cols", [
    ((64,), range(6, 8), range(6, 8)),          # digits 8x8, flat: 2x2 in the corner
    ((784,), range(22, 26), range(22, 26)),     # Fashion-MNIST 28x28, flat: 4x4, 2 from the edge
    ((1, 28, 28), range(22, 26), range(22, 26)),
    ((3, 32, 32), range(25, 30), range(25, 30)),  # 5x5, 2 from the edge, every channel
    ((9, 12), range(7, 9), range(10, 12)),      # [H, W], not square: sized from min(H, W)
])
def test_trigger_where_the_docstring_says(shape, rows, cols):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(5, *shape, generator=g)
    c, h, w = T.image_shape(shape, "t")
    got = Backdoor(value=0.75).trigger(x)
    want = torch.stack([reference_stamp(img.view(c, h, w), rows, cols, 0.75).reshape(shape)
                        for img in x])
    assert torch.equal(got, want)
    assert not torch.equal(x, got)  # a copy: the input is left as it was


def test_poison_batch_formula():
    g = torch.Generator().manual_seed(1)
    x, y = torch.rand(10, 64, generator=g), torch.randint(0, 10, (10,), generator=g)
    atk = Backdoor(target=3, poison_frac=0.3)
    x2, y2 = atk.poison_batch(x, y, 10)
    k = 3  # round(0.3 * 10)
    assert torch.equal(x2[:k], atk.trigger(x[:k])) and torch.equal(x2[k:], x[k:])
    assert y2[:k].tolist() == [3] * k and torch.equal(y2[k:], y[k:])
    assert torch.equal(y, y.clone()) and atk.kind == "data" and atk.backdoor
    x3, y3 = Backdoor(poison_frac=1.0).poison_batch(x, y, 10)
    assert (y3 == 0).all() and torch.equal(x3, Backdoor().trigger(x))
    # the gradient passes unchanged, and the worker's copy is the same attack
    grad = torch.randn(7)
    assert atk.poison_gradient(grad, lambda: 1 / 0) is grad
    assert atk.for_worker(3, 10) is atk


def test_errors():
    with pytest.raises(ValueError, match="stamps a trigger on images.*\\[30\\]"):
        Backdoor().trigger(torch.zeros(2, 30))
    with pytest.raises(ValueError, match="target=10 is not a class"):
        Backdoor(target=10).poison_batch(torch.zeros(2, 64), torch.tensor([0, 1]), 10)
    with pytest.raises(ValueError, match="labels in \\[0, 10\\)"):
        Backdoor().poison_batch(torch.zeros(2, 64), torch.tensor([0, 10]), 10)
    with pytest.raises(ValueError, match="poison_frac in \\(0, 1\\]"):
        Backdoor(poison_frac=0)
    with pytest.raises(ValueError, match="target to be a class index"):
        Backdoor(target=-1)
    with pytest.raises(ValueError, match="trigger size must be in \\[1, 8\\]"):
        Backdoor(size=9).trigger(torch.zeros(1, 64))
    assert isinstance(attacks.attack("backdoor", target=2), Backdoor)
