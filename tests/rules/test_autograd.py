"""Autograd: every rule's result carries x's graph when x requires grad (gradients flow to the
values it selects or averages, as through torch.median), and none when it does not or under
torch.no_grad. Checked for every registered rule and pre-aggregation, and against finite
differences (torch.autograd.gradcheck) at generic points, where the selection does not move."""
import inspect

import pytest
import torch

import robustagg as ra
from robustagg import functional as F
from robustagg.rules.registry import _PRE, _RULES


class FLTrustWithRoot(ra.FLTrust):
    """FLTrust given a server gradient before every call, as the training loop does."""

    def __call__(self, grads, weights=None):
        g = torch.Generator().manual_seed(7)
        self.server_grad = torch.randn(grads.shape[1], generator=g, dtype=grads.dtype)
        return super().__call__(grads)


def build(cls, f=1):
    """The class, with f = 1 where it takes f (FLTrust with its server gradient)."""
    cls = FLTrustWithRoot if cls is ra.FLTrust else cls
    return cls(f=f) if "f" in inspect.signature(cls).parameters else cls()


def pipeline_for(pre_cls):
    pre = build(pre_cls)
    return ra.Pipeline(pre=[pre], rule=ra.Mean())


RULES = sorted({cls for cls in _RULES.values()}, key=lambda c: c.__name__)
PRES = sorted({cls for cls in _PRE.values()}, key=lambda c: c.__name__)
# Rules registered before they keep the graph: whoever makes one keep it removes it from here.
PENDING: set = set()


def _mark(cls):
    if cls.__name__ in PENDING:
        return pytest.mark.xfail(reason=f"{cls.__name__} does not keep the graph yet")
    return ()


def generic(n, d, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=dtype)


@pytest.mark.parametrize("make", [pytest.param(lambda c=c: build(c), id=c.__name__, marks=_mark(c))
                                  for c in RULES]
                         + [pytest.param(lambda c=c: pipeline_for(c), id=f"{c.__name__}>Mean",
                                         marks=_mark(c)) for c in PRES]
                         + [pytest.param(lambda: ra.Pipeline(pre=[ra.NNM(f=1)],
                                                             rule=ra.Krum(f=1)), id="NNM>Krum")])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_every_rule_keeps_the_graph(make, dtype):
    rule = make()
    n = rule.min_n + 2
    x = generic(n, 6, dtype).requires_grad_()
    out = rule(x)
    assert out.requires_grad and out.grad_fn is not None, f"{rule!r} dropped the graph"
    (g,) = torch.autograd.grad(out.sum(), x)
    assert g.shape == x.shape and torch.isfinite(g).all() and g.abs().sum() > 0
    rule.reset()
    with torch.no_grad():
        assert not rule(x).requires_grad
    rule.reset()
    assert not rule(x.detach()).requires_grad


GRADCHECK = [
    ("krum", lambda x: F.krum(x, 1)),
    ("multi_krum", lambda x: F.multi_krum(x, 1, 3)),
    ("median_odd", lambda x: F.coordinate_median(x)),
    ("median_even", lambda x: F.coordinate_median(x[:6])),
    ("trimmed_mean", lambda x: F.trimmed_mean(x, 2)),
    ("bulyan", lambda x: F.bulyan(x, 1)),
    ("geometric_median", lambda x: F.geometric_median(x, max_iter=30, tol=0.0)),
    ("centered_clipping", lambda x: F.centered_clipping(x, 1.0, 3)),
    ("mean", F.mean),
    ("weighted_mean", lambda x: F.mean(x, weights=[1, 2, 3, 1, 2, 3, 4])),
    ("weighted_median", lambda x: F.coordinate_median(x, weights=[1, 2, 3, 1, 2, 3, 4])),
    ("weighted_trimmed_mean", lambda x: F.trimmed_mean(x, 1, weights=[1, 2, 3, 1, 2, 3, 4])),
    ("nnm_krum", lambda x: F.krum(F.nnm(x, 1), 1)),
    ("arc", lambda x: F.arc(x, 2)),
    ("clip", lambda x: F.clip(x, 1.5)),
    ("bucketing", lambda x: F.bucketing(x, 2, torch.Generator().manual_seed(0))),
    ("cge", lambda x: F.cge(x, 2)),
    ("monna", lambda x: F.monna(x, 2, pivot=1)),
    ("mda", lambda x: F.mda(x, 2)),
    ("smea", lambda x: F.smea(x, 2)),
    ("dnc", lambda x: F.dnc(x, 2, torch.Generator().manual_seed(0), sub_dim=3)),
    # the weights these rules compute from x are differentiated too
    ("fltrust", lambda x: F.fltrust(x, torch.tensor([1.0, 0.5, -0.25, 2.0], dtype=x.dtype))),
    ("flame", lambda x: F.flame(x, torch.Generator().manual_seed(0), noise=0.01)),
    ("clipped_clustering", lambda x: F.clipped_clustering(
        x, history=torch.tensor([3.0, 9.0], dtype=torch.float64))),
    ("foolsgold", lambda x: F.foolsgold(x, kappa=1.0)),
]


@pytest.mark.parametrize("name,fn", GRADCHECK, ids=[c[0] for c in GRADCHECK])
def test_gradients_match_finite_differences(name, fn):
    x = generic(7, 4, seed=1) * torch.arange(1.0, 8.0, dtype=torch.float64)[:, None]
    assert torch.autograd.gradcheck(fn, (x.requires_grad_(),), eps=1e-6, atol=1e-5)


def test_krum_gradient_is_the_selected_row():
    x = generic(7, 3).requires_grad_()
    out, sel = F.krum(x, 1, return_selected=True)
    (g,) = torch.autograd.grad(out.sum(), x)
    expected = torch.zeros_like(x)
    expected[sel] = 1.0
    assert torch.equal(g, expected)


def test_streaming_refuses_rather_than_drops_the_graph():
    x = generic(5, 8, torch.float32).requires_grad_()
    with pytest.raises(ValueError, match="streaming .* does not carry autograd"):
        F.coordinate_median(x, chunk_columns=3)
    with pytest.raises(ValueError, match="streaming .* does not carry autograd"):
        F.trimmed_mean(x, 1, chunk_columns=3)
    # Krum streams only the distances: the mean of the chosen rows keeps the graph
    assert F.krum(x, 1, chunk_columns=3).requires_grad
