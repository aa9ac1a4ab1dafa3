"""Why per-worker masks break robust rules, and the shared mask that does not (docs/compression.md).

Honest gradients ``g_i = μ + noise`` with μ = 1 on 100 "important" coordinates of d = 1000 and
noise σ = 0.3: each honest worker's top-20 is 20 of the 100 important coordinates, chosen by its
noise, so two honest rows share about 4 coordinates. The f = 2 attackers (n = 10) send the same
20 entries of magnitude 1 on coordinates no honest worker ever sends.
"""
import pytest
import torch

import robustagg as ra
from robustagg.compression import RandKShared, Receiver, SparseRow, compressor

N, F, D, K = 10, 2, 1000, 20


def honest(seed=0):
    gen = torch.Generator().manual_seed(seed)
    mu = torch.zeros(D)
    mu[:100] = 1.0
    return mu, mu + 0.3 * torch.randn(N - F, D, generator=gen)


def per_worker_rows(g):
    """The honest top-k messages, and the attackers' (omniscient: they see the honest
    messages): K entries of -1 on the first coordinates no honest worker sent."""
    top = compressor("topk", ratio=K / D)
    rows = torch.stack([top.compress(x).dense() for x in g])
    unsent = (rows == 0).all(0).nonzero().squeeze(1)
    rare = unsent[unsent >= 100][:K]
    attack = SparseRow.of(torch.full((K,), -1.0), rare, D).dense()
    return torch.cat([rows, attack.expand(F, D)])


@pytest.mark.parametrize("seed", range(20))
def test_krum_picks_the_attacker_with_per_worker_masks(seed):
    mu, g = honest(seed)
    x = per_worker_rows(g)
    krum = ra.Krum(f=F)
    out = krum(x)
    assert int(krum.selected[0]) >= N - F  # an attacker's row is the aggregate
    assert torch.equal(out, x[N - F]) and float(out[:100].abs().sum()) == 0  # no honest signal


@pytest.mark.parametrize("seed", range(20))
def test_median_of_mostly_zero_columns_is_meaningless(seed):
    """Even without attackers (f = 0 rows added), a column that fewer than half the workers
    send has median 0: the median of scattered top-k rows loses the honest signal."""
    mu, g = honest(seed)
    top = compressor("topk", ratio=K / D)
    x = torch.stack([top.compress(row).dense() for row in g])
    med = ra.CoordinateMedian()(x)
    # an important coordinate is in about 1.6 of the 8 rows: its median is 0 (μ is 1 there)
    assert int((med[:100] == 0).sum()) >= 80
    assert int((x[:, :100] != 0).any(0).sum()) >= 70  # while the rows cover most of them


def shared_round(g, attack_values, rule, seed=0):
    """One round under a shared random mask through the server's Receiver: the honest rows'
    values on the mask, and the attackers' values (the best they can do: any k values there)."""
    comp = RandKShared(ratio=K / D, seed=seed)
    rx = Receiver(comp, N, D, rule)
    mask = rx.begin(0)
    msgs = {i: comp.compress(row, mask) for i, row in enumerate(g)}
    msgs.update({N - F + j: SparseRow.of(attack_values, None, D) for j in range(F)})
    ids = rx.fill(msgs)
    x = rx.matrix(ids)
    return mask, x, rx.expand(rule(x))


@pytest.mark.parametrize("seed", range(20))
def test_the_shared_mask_remedy(seed):
    mu, g = honest(seed)
    krum = ra.Krum(f=F)
    mask, x, out = shared_round(g, torch.full((K,), -1.0), krum, seed)
    assert x.shape == (N, K)  # the rule ran on the [n, k] sub-matrix
    assert int(krum.selected[0]) < N - F  # an honest row wins
    _, _, med = shared_round(g, torch.full((K,), -1.0), ra.CoordinateMedian(), seed)
    # on the mask the median follows μ to within the noise (σ = 0.3) and the attackers' shift
    # of an order statistic, where the scattered per-worker median is 0 on the important
    # coordinates (off by 1); it is 0 elsewhere
    assert float((med[mask] - mu[mask]).abs().mean()) < 0.35
    off = torch.ones(D, dtype=torch.bool)
    off[mask] = False
    assert float(med[off].abs().max()) == 0
