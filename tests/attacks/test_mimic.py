"""Mimic (Karimireddy et al. 2022): copies, the heuristic finds the worker along the direction
of largest variance, fixes it after warmup, and is deterministic and resettable."""
import pytest
import torch

from attacks import Mimic


def cloud(seed, a):
    """Honest rows: base + a_i e_0 + small noise (the variance is all along e_0)."""
    g = torch.Generator().manual_seed(seed)
    x = 0.01 * torch.randn(len(a), 20, generator=g, dtype=torch.float64) + 1.0
    x[:, 0] += torch.tensor(a, dtype=torch.float64)
    return x


def test_fixed_target_copies_that_row():
    x = torch.randn(5, 7)
    out = Mimic(target=3)(x, 2)
    assert torch.equal(out, x[3].expand(2, -1))
    with pytest.raises(ValueError, match="target=5"):
        Mimic(target=5)(x, 1)


def test_heuristic_picks_the_extreme_along_the_top_direction_and_keeps_it():
    a = [0.0, 5.0, -1.0, 2.0, -8.0, 1.0]
    x = cloud(0, a)
    atk = Mimic(warmup=2, seed=0)
    out = atk(x, 3)
    assert abs(float(atk.z[0])) > 0.99               # z found e_0 (up to sign)
    # argmax_i <x_i, z>: the largest a_i if z ~ +e_0, the smallest if z ~ -e_0
    expect = max(range(len(a)), key=lambda i: float(x[i] @ atk.z))
    assert atk.chosen == expect and atk.chosen in (1, 4)
    assert torch.equal(out, x[expect].expand(3, -1))
    atk(cloud(1, a), 3)                               # second warmup round: z refined
    first = atk.chosen
    later = cloud(2, list(reversed(a)))               # after warmup the index stays fixed
    assert torch.equal(atk(later, 1)[0], later[first])
    assert atk.chosen == first


def test_deterministic_and_reset():
    x = torch.randn(8, 16, generator=torch.Generator().manual_seed(3))
    a, b = Mimic(seed=9), Mimic(seed=9)
    assert torch.equal(a(x, 2), b(x, 2)) and torch.equal(a.z, b.z)
    z = a.z.clone()
    a.reset()
    assert a.t == 0 and a.z is None
    a(x, 2)
    assert torch.equal(a.z, z)
    with pytest.raises(ValueError, match="warmup >= 1"):
        Mimic(warmup=0)
