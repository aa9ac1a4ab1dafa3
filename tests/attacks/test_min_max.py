"""Min-Max (Shejwalkar & Houmansadr, NDSS 2021): a hand-solved case, the constraint, and
maximality of gamma against the closed form of the constraint (a quadratic in gamma)."""
import math

import pytest
import torch

from attacks import MinMax


def test_hand_solved():
    # mu = (1, 0), p = (1, 0) for unit_vec and sign; b = (1 - g, 0); the farthest honest point
    # is (2, 0) at distance 1 + g <= max pairwise distance 2, so g = 1 and b = (0, 0)
    x = torch.tensor([[0.0, 0.0], [2.0, 0.0]], dtype=torch.float64)
    for direction in ("unit_vec", "sign"):
        atk = MinMax(direction)
        out = atk(x, 2)
        assert atk.gamma == pytest.approx(1.0, rel=1e-5)
        assert torch.allclose(out, torch.zeros(2, 2, dtype=torch.float64), atol=1e-5)


def closed_form_gamma(x, p):
    """Largest g with max_i ||mu - g p - x_i||^2 <= max_ij ||x_i - x_j||^2, per-row quadratics."""
    mu = x.mean(0)
    bound = max(float((x[i] - x[j]).pow(2).sum()) for i in range(len(x)) for j in range(len(x)))
    pp = float(p @ p)
    best = math.inf
    for xi in x:
        a, c = mu - xi, float((mu - xi) @ (mu - xi))
        bb = float(a @ p)  # ||a - g p||^2 = c - 2 g bb + g^2 pp
        best = min(best, (bb + math.sqrt(bb * bb - pp * (c - bound))) / pp)
    return best


@pytest.mark.parametrize("direction", ["unit_vec", "sign", "std"])
def test_constraint_holds_and_gamma_is_maximal(direction):
    g = torch.Generator().manual_seed(3)
    x = torch.randn(12, 40, generator=g, dtype=torch.float64) + 0.3
    atk = MinMax(direction, tol=1e-9)
    b = atk(x, 4)[0]
    mu = x.mean(0)
    p = {"unit_vec": mu / mu.norm(), "sign": torch.sign(mu), "std": x.std(0)}[direction]
    assert torch.allclose(b, mu - atk.gamma * p)
    bound = torch.cdist(x, x).max() ** 2
    assert float((x - b).pow(2).sum(1).max()) <= float(bound) * (1 + 1e-12)
    worse = mu - atk.gamma * (1 + 1e-6) * p
    assert float((x - worse).pow(2).sum(1).max()) > float(bound)
    assert atk.gamma == pytest.approx(closed_form_gamma(x, p), rel=1e-8)


def test_validation_and_zero_direction():
    with pytest.raises(ValueError, match="direction"):
        MinMax("cosine")
    with pytest.raises(ValueError, match="at least 2 honest"):
        MinMax()(torch.ones(1, 3), 1)
    x = torch.tensor([[1.0, 2.0], [-1.0, -2.0]])  # mu = 0: no direction, b = mu
    assert torch.equal(MinMax()(x, 1), torch.zeros(1, 2))
