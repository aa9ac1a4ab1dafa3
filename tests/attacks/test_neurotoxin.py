"""Neurotoxin: the backdoor gradient zeroed on the ceil(top_k * d) coordinates of largest
benign magnitude, against a loop reference."""
import math

import pytest
import torch

from attacks import Neurotoxin


def reference(g, b, top_k):
    k = math.ceil(top_k * len(g))
    order = sorted(range(len(b)), key=lambda j: -abs(float(b[j])))
    out = g.clone()
    for j in order[:k]:
        out[j] = 0.0
    return out


@pytest.mark.parametrize("d", [1, 7, 17, 4097])
@pytest.mark.parametrize("top_k", [0.0, 0.01, 0.3, 0.9])
def test_mask_matches_reference(d, top_k):
    gen = torch.Generator().manual_seed(d)
    g, b = torch.randn(d, generator=gen), torch.randn(d, generator=gen)  # no ties
    calls = []
    got = Neurotoxin(top_k=top_k).poison_gradient(g, lambda: calls.append(1) or b)
    assert torch.equal(got, reference(g, b, top_k))
    assert torch.equal(g, g.clone()) and len(calls) == (0 if top_k == 0 else 1)


def test_errors():
    with pytest.raises(ValueError, match="top_k in \\[0, 1\\)"):
        Neurotoxin(top_k=1.0)
    with pytest.raises(ValueError, match="benign gradient has shape"):
        Neurotoxin(top_k=0.5).poison_gradient(torch.ones(3), lambda: torch.ones(4))
