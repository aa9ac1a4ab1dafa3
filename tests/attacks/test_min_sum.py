"""Min-Sum (Shejwalkar & Houmansadr, NDSS 2021): a hand-solved case, the constraint, and
maximality of gamma against its closed form: sum_i ||mu - g p - x_i||^2 = S0 + h g^2 ||p||^2."""
import math

import pytest
import torch

from attacks import MinSum


def test_hand_solved():
    # scores of both honest points: 4; sum for b = (1 - g, 0): (1-g)^2 + (1+g)^2 = 2 + 2 g^2
    x = torch.tensor([[0.0, 0.0], [2.0, 0.0]], dtype=torch.float64)
    atk = MinSum("unit_vec")
    out = atk(x, 3)
    assert atk.gamma == pytest.approx(1.0, rel=1e-5)
    assert out.shape == (3, 2)
    assert torch.allclose(out, torch.zeros(3, 2, dtype=torch.float64), atol=1e-5)


@pytest.mark.parametrize("direction", ["unit_vec", "sign", "std"])
def test_constraint_holds_and_gamma_is_maximal(direction):
    g = torch.Generator().manual_seed(4)
    x = torch.randn(15, 30, generator=g, dtype=torch.float64) - 0.2
    atk = MinSum(direction, tol=1e-9)
    b = atk(x, 5)[0]
    mu, h = x.mean(0), x.shape[0]
    p = {"unit_vec": mu / mu.norm(), "sign": torch.sign(mu), "std": x.std(0)}[direction]
    scores = [sum(float((xi - xj).pow(2).sum()) for xj in x) for xi in x]
    bound = min(scores)
    assert float((x - b).pow(2).sum()) <= bound * (1 + 1e-12)
    s0 = float((x - mu).pow(2).sum())
    gamma_star = math.sqrt((bound - s0) / (h * float(p @ p)))
    assert atk.gamma == pytest.approx(gamma_star, rel=1e-8)
    worse = mu - atk.gamma * (1 + 1e-6) * p
    assert float((x - worse).pow(2).sum()) > bound
