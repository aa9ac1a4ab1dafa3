"""The server's side of a compressed round: the shared-mask sub-matrix gives the dense result,
EF21 memory per worker id, attacks forging compressed messages."""
import pytest
import torch

import robustagg as ra
from robustagg.compression import (RandKShared, Receiver, SparseRow, TopKShared, compressor,
                                   stateless)

N, D = 7, 4097


def messages(comp, mask, seed=0, n=N):
    g = torch.randn(n, D, generator=torch.Generator().manual_seed(seed))
    g[1] = g[0]  # a duplicate row
    return g, {i: comp.compress(g[i], mask) for i in range(n)}


@pytest.mark.parametrize("rule", [ra.Mean(), ra.CoordinateMedian(), ra.TrimmedMean(f=2),
                                  ra.Krum(f=2), ra.MultiKrum(f=2, m=3), ra.GeometricMedian(),
                                  ra.aggregator("meamed", f=2)],
                         ids=lambda r: type(r).__name__)
def test_shared_mask_sub_matrix_equals_the_dense_rows(rule):
    comp = RandKShared(ratio=0.01, seed=3)
    rx = Receiver(comp, N, D, rule)
    assert rx.sub
    mask = rx.begin(4)
    g, msgs = messages(comp, mask)
    ids = rx.fill(msgs)
    x = rx.matrix(ids)
    assert x.shape == (N, comp.k(D))
    out = rx.expand(rule(x))
    sel = None if rule.selected is None else rule.selected.clone()
    dense = torch.zeros(N, D)
    dense[:, mask] = g[:, mask]
    ref = rule(dense)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)
    assert (sel is None) == (rule.selected is None) and (sel is None or torch.equal(sel, rule.selected))


def test_stateful_rules_get_the_dense_rows():
    for rule in (ra.CenteredClipping(), ra.aggregator("dnc", f=1)):
        assert not stateless(rule)
        rx = Receiver(RandKShared(ratio=0.01), N, D, rule)
        mask = rx.begin(0)
        g, msgs = messages(rx.comp, mask)
        x = rx.matrix(rx.fill(msgs))
        assert x.shape == (N, D) and torch.equal(x[:, mask], g[:, mask])
        off = torch.ones(D, dtype=torch.bool)
        off[mask] = False
        assert not x[:, off].any()


def test_error_feedback_memory_per_worker_id():
    """EF21 with a shared mask: h_i[M] = g_i[M] each round, h_i kept elsewhere; the rule sees
    the dense h_i."""
    comp = RandKShared(ratio=0.1, error_feedback=True, seed=1)
    rx = Receiver(comp, 3, 50, ra.Mean())
    assert not rx.sub
    ref = {i: torch.zeros(50) for i in (0, 2, 5)}
    for r in range(4):
        mask = rx.begin(r)
        ids = [0, 2, 5] if r != 2 else [0, 5]  # worker 2 misses round 2: its memory stays
        g = torch.randn(3, 50, generator=torch.Generator().manual_seed(r))
        got = rx.fill({i: comp.compress(g[j], mask) for j, i in enumerate(ids)})
        x = rx.matrix(got)
        for j, i in enumerate(ids):
            ref[i][mask] = g[j][mask]
            assert torch.equal(x[j], ref[i])
    state = rx.state_dict()
    fresh = Receiver(RandKShared(ratio=0.1, error_feedback=True, seed=1), 3, 50, ra.Mean())
    fresh.load_state_dict(state)
    assert all(torch.equal(fresh.memory.h[i], ref[i]) for i in ref)


class Recorder:
    """A model attack that records what it saw and sends copies of its first row, scaled."""
    omniscient = True
    kind = "model"

    def __init__(self):
        self.seen = None

    def __call__(self, honest, f, rule=None):
        self.seen = honest.clone()
        return -3 * honest[:1].expand(f, -1)


def test_attack_sees_and_forges_compressed_messages():
    comp = RandKShared(ratio=0.01)
    rx = Receiver(comp, N, D, ra.Mean())
    mask = rx.begin(0)
    g, msgs = messages(comp, mask, n=N - 2)
    rx.fill(msgs)
    atk = Recorder()
    rx.forge(atk, N - 2, N - 2, 2, ra.Mean())
    assert atk.seen.shape == (N - 2, comp.k(D)) and torch.equal(atk.seen, g[:, mask])
    x = rx.matrix(list(range(N)))
    assert torch.equal(x[N - 1], -3 * g[0, mask])


def test_per_worker_forgeries_are_compressed_again():
    comp = compressor("topk", ratio=0.01)
    rx = Receiver(comp, N, D, ra.Mean())
    rx.begin(0)
    g, msgs = messages(comp, None, n=N - 2)
    rx.fill(msgs)
    atk = Recorder()
    rx.forge(atk, N - 2, N - 2, 2, ra.Mean())
    assert atk.seen.shape == (N - 2, D) and int((atk.seen[0] != 0).sum()) == comp.k(D)
    x = rx.matrix(list(range(N)))
    assert int((x[N - 1] != 0).sum()) == comp.k(D)
    assert rx.message_bytes == 8 * comp.k(D)


def test_topk_shared_observes_the_expanded_aggregate():
    comp = TopKShared(ratio=0.01, seed=2)
    rx = Receiver(comp, N, D, ra.Mean())
    mask = rx.begin(0)
    _, msgs = messages(comp, mask)
    agg = rx.expand(ra.Mean()(rx.matrix(rx.fill(msgs))))
    rx.end(agg, finite=True)
    assert torch.equal(comp.memory[mask], agg[mask])
    before = comp.memory.clone()
    rx.end(agg * float("nan"), finite=False)  # a skipped step teaches nothing
    assert torch.equal(comp.memory, before)


@pytest.mark.parametrize("error_feedback", [False, True])
def test_worker_momentum_per_worker_id(error_feedback):
    """With momentum β the rule sees m_i = β m_i + (1 - β) x_i (m_i = x_i on the first
    message), x_i the message scattered into R^d, or its EF21 estimate; a worker that misses a
    round keeps its momentum; the momenta survive a checkpoint."""
    beta, d = 0.9, 50
    make = lambda: RandKShared(ratio=0.1, error_feedback=error_feedback, seed=1)  # noqa: E731
    comp = make()
    rx = Receiver(comp, 3, d, ra.Mean(), momentum=beta)
    assert not rx.sub
    h = {i: torch.zeros(d) for i in (0, 2, 5)}
    m = {}
    for r in range(5):
        mask = rx.begin(r)
        ids = [0, 2, 5] if r != 2 else [0, 5]
        g = torch.randn(3, d, generator=torch.Generator().manual_seed(r))
        x = rx.matrix(rx.fill({i: comp.compress(g[j], mask) for j, i in enumerate(ids)}))
        for j, i in enumerate(ids):
            if error_feedback:
                h[i][mask] = g[j][mask]
                xi = h[i].clone()
            else:
                xi = torch.zeros(d)
                xi[mask] = g[j][mask]
            m[i] = xi if i not in m else beta * m[i] + (1 - beta) * xi
            torch.testing.assert_close(x[j], m[i], rtol=1e-6, atol=1e-7)
    fresh = Receiver(make(), 3, d, ra.Mean(), momentum=beta)
    fresh.load_state_dict(rx.state_dict())
    assert sorted(fresh.momenta) == [0, 2, 5]
    assert all(torch.equal(fresh.momenta[i], rx.momenta[i]) for i in m)


@pytest.mark.parametrize("rule", [ra.Mean(), ra.CoordinateMedian(), ra.TrimmedMean(f=2),
                                  ra.Krum(f=2)], ids=lambda r: type(r).__name__)
def test_unbiased_scaling_is_a_learning_rate_factor(rule):
    """RoSDHB sends (d/k) g[M]; with worker momentum the aggregate of scaled messages is the
    aggregate of unscaled ones times d/k, so the scale is a factor of the learning rate."""
    scale = D / RandKShared(ratio=0.01).k(D)
    out = []
    for c in (1.0, scale):
        comp = RandKShared(ratio=0.01, seed=5)
        rx = Receiver(comp, N, D, rule, momentum=0.9)
        for r in range(3):
            mask = rx.begin(r)
            g, _ = messages(comp, mask, seed=r)
            x = rx.matrix(rx.fill({i: comp.compress(c * g[i], mask) for i in range(N)}))
        out.append(rule(x))
    torch.testing.assert_close(out[1], scale * out[0], rtol=1e-4, atol=1e-6)


def test_worker_momentum_is_refused_where_it_means_nothing():
    with pytest.raises(ValueError, match="worker momentum needs a shared mask"):
        Receiver(compressor("topk", ratio=0.01), N, D, ra.Mean(), momentum=0.9)
    for bad in (1.0, -0.1, True):
        with pytest.raises(ValueError, match="momentum must be in"):
            Receiver(RandKShared(ratio=0.01), N, D, ra.Mean(), momentum=bad)
