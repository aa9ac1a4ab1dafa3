"""RobustOptimizer in one process: n gradient sources (micro-batches), against references
computed here from per-source gradients."""
import pytest
import torch
from torch import nn

import robustagg as ra
from robustagg.optim import RobustOptimizer

from ..rules.reference import krum_scores, lowest

LR = 0.1


def make_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 4), nn.Tanh(), nn.Linear(4, 1))


def batches(n, seed=1):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(16, 6, generator=g), torch.randn(16, 1, generator=g)) for _ in range(n)]


def source_grads(model, data):
    """One list of per-parameter gradients per batch, from torch.autograd.grad."""
    params = list(model.parameters())
    return [list(torch.autograd.grad(((model(x) - y) ** 2).mean(), params)) for x, y in data]


def flat(grads):
    return torch.cat([g.reshape(-1) for g in grads])


def sgd_reference(model, g_flat):
    """Parameters after one plain SGD step on the vector g_flat (as torch.optim.SGD computes it)."""
    return flat([p.detach() for p in model.parameters()]).add(g_flat, alpha=-LR)


def params_now(model):
    return flat([p.detach() for p in model.parameters()])


def test_mean_equals_plain_gradient_averaging_exactly():
    data = batches(4)
    model = make_model()
    expected = sgd_reference(model, torch.stack([flat(g) for g in source_grads(model, data)])
                             .mean(0))
    opt = RobustOptimizer(torch.optim.SGD(model.parameters(), lr=LR), ra.Mean(), n_sources=4)
    for x, y in data:
        ((model(x) - y) ** 2).mean().backward()
        opt.collect()
    assert opt.step() is True
    assert torch.equal(params_now(model), expected)


def test_list_and_dict_sources_give_the_same_step_as_collect():
    data = batches(5)
    results = []
    for form in ("collect", "list", "dict"):
        model = make_model()
        inner = torch.optim.SGD(model.named_parameters() if form == "dict" else
                                model.parameters(), lr=LR)
        opt = RobustOptimizer(inner, ra.Krum(f=1))
        grads = source_grads(model, data)
        if form == "collect":
            for g in grads:
                for p, gi in zip(model.parameters(), g):
                    p.grad = gi.clone()
                opt.collect()
            opt.step()
        elif form == "list":
            opt.step(grads)
        else:
            names = [n for n, _ in model.named_parameters()]
            opt.step([dict(zip(names, g)) for g in grads])
        results.append(params_now(model))
    assert torch.equal(results[0], results[1]) and torch.equal(results[0], results[2])


def test_krum_steps_on_the_selected_honest_source_despite_a_scaled_one():
    data = batches(5)
    model = make_model()
    grads = source_grads(model, data)
    grads[3] = [-20.0 * g for g in grads[3]]            # the Byzantine source
    x = torch.stack([flat(g) for g in grads])
    i = lowest(krum_scores(x, 1), 1)[0]
    assert i != 3
    expected = sgd_reference(model, x[i])
    rule = ra.Krum(f=1)
    opt = RobustOptimizer(torch.optim.SGD(model.parameters(), lr=LR), rule)
    opt.step(grads)
    assert int(rule.selected) == i
    assert torch.equal(params_now(model), expected)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_source(bad):
    data = batches(5)
    # a robust rule keeps the step finite and equal to the rule on the honest sources' values
    model = make_model()
    grads = source_grads(model, data)
    grads[0][0] = torch.full_like(grads[0][0], bad)
    x = torch.stack([flat(g) for g in grads])
    expected = sgd_reference(model, x.sort(dim=0).values[2])   # n = 5: the middle value
    opt = RobustOptimizer(torch.optim.SGD(model.parameters(), lr=LR), ra.CoordinateMedian(f=1))
    assert opt.step(grads) is True
    assert torch.equal(params_now(model), expected)
    # the mean would be non-finite: the step is skipped, nothing non-finite reaches the model
    before = params_now(model)
    opt = RobustOptimizer(torch.optim.SGD(model.parameters(), lr=LR, momentum=0.9),
                             ra.Mean())
    assert opt.step(grads) is False
    assert torch.equal(params_now(model), before)
    assert all(p.grad is None for p in model.parameters())


def test_none_gradients():
    model = nn.Linear(3, 1)
    extra = nn.Parameter(torch.ones(2))        # a gradient from one source only
    unused = nn.Parameter(torch.ones(2))       # no source has a gradient
    params = [model.weight, model.bias, extra, unused]
    g = torch.Generator().manual_seed(0)
    sources = [[torch.randn(1, 3, generator=g), torch.randn(1, generator=g),
                torch.randn(2, generator=g) if i == 0 else None, None] for i in range(5)]
    w = model.weight.detach().clone()

    opt = RobustOptimizer(torch.optim.SGD(params, lr=LR), ra.Mean())
    opt.step(sources)
    # f = 0: sources without a gradient count as zeros; no gradient anywhere stays None
    assert torch.equal(extra.grad, sources[0][2] / 5)
    assert unused.grad is None and torch.equal(unused.detach(), torch.ones(2))
    assert torch.equal(model.weight.detach(),
                       w.add(torch.stack([s[0] for s in sources]).mean(0), alpha=-LR))

    opt = RobustOptimizer(torch.optim.SGD(params, lr=LR), ra.Krum(f=1))
    before = extra.detach().clone()
    opt.step(sources)
    # f = 1: a gradient from a single source (possibly Byzantine) is dropped
    assert extra.grad is None and torch.equal(extra.detach(), before)
    assert model.weight.grad is not None


def test_errors_name_the_problem():
    model = make_model()
    sgd = torch.optim.SGD(model.parameters(), lr=LR)
    with pytest.raises(ValueError, match=r"Krum needs n >= 2f \+ 3 workers, got n=4, f=1"):
        RobustOptimizer(sgd, ra.Krum(f=1), n_sources=4)
    with pytest.raises(TypeError, match="pre-aggregator"):
        RobustOptimizer(sgd, ra.NNM(f=1))
    with pytest.raises(TypeError, match="torch.optim.Optimizer"):
        RobustOptimizer(model, ra.Mean())
    opt = RobustOptimizer(sgd, ra.Krum(f=1), n_sources=5)
    with pytest.raises(ValueError, match="no sources"):
        opt.step()
    grads = source_grads(model, batches(5))
    with pytest.raises(ValueError, match="expected n_sources=5 sources, got 4"):
        opt.step(grads[:4])
    grads[2][1] = torch.zeros(3)
    with pytest.raises(ValueError, match=r"source 2, parameter 1 has shape \(3,\)"):
        opt.step(grads)
    with pytest.raises(ValueError, match="parameter names"):
        opt.step([{"0.weight": g[0]} for g in grads])
    with pytest.raises(ValueError, match="Krum needs n >= 2f"):
        RobustOptimizer(sgd, ra.Krum(f=1)).step(source_grads(model, batches(4)))
