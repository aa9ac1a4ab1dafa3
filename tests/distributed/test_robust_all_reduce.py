"""robust_all_reduce on 5 gloo ranks, rank 4 Byzantine (see ``scenarios.py``): every aggregate
against a reference computed here from the gradients the ranks had."""
import pytest
import torch

from ..rules.reference import krum_scores, lowest
from .scenarios import BYZ, STEPS, WORLD


@pytest.fixture(scope="module")
def results(ranks):
    return [r["rar"] for r in ranks]


def test_every_rank_ends_with_identical_parameters(results):
    for name in ("mean", "median", "krum"):
        for r in range(1, WORLD):
            assert torch.equal(results[r][name]["params"], results[0][name]["params"]), name


def test_each_aggregate_equals_the_reference_rule_on_the_gathered_gradients(results):
    for t in range(STEPS):
        for name in ("mean", "median", "krum"):
            # every parameter's gradient (zeros where None); the first 9 are lin's
            x = torch.stack([results[r][name]["local"][t] for r in range(WORLD)])
            assert x[BYZ].norm() > 10 * x[1].norm()   # the Byzantine rank did scale
            got = results[0][name]["agg"][t]
            if name == "mean":
                torch.testing.assert_close(got, x.mean(0)[:9], rtol=1e-6, atol=1e-7)
            elif name == "median":   # n = 5 is odd: the median is the middle value, exactly
                assert torch.equal(got, x.sort(dim=0).values[2][:9])
            else:                    # Krum returns the selected honest gradient, exactly
                i = lowest(krum_scores(x, 1), 1)[0]
                assert i != BYZ and int(results[0][name]["selected"][t]) == i
                assert torch.equal(got, x[i][:9])


def test_mean_diverges_while_median_and_krum_track_the_honest_run(results):
    honest = results[0]["honest"]["params"]
    # tolerance: median and Krum follow one honest shard's gradient instead of the average of
    # four; with these shards the runs end within 2% of each other (relative L2)
    tol = 0.02 * honest.norm()
    for name in ("median", "krum"):
        assert (results[0][name]["params"] - honest).norm() < tol, name
    assert (results[0]["mean"]["params"] - honest).norm() > 100 * tol


def test_none_gradients(results):
    for r in range(WORLD):
        for name in ("mean", "median", "krum"):
            assert results[r][name]["unused_grad"] is None      # None on every rank stays None
        # only rank 0 has a gradient for rank0_only: kept by the mean (f = 0, others count as
        # zeros), dropped by the rules with f = 1 (one rank alone could be Byzantine)
        assert results[r]["mean"]["rank0_grad"] is not None
        assert results[r]["median"]["rank0_grad"] is None
        assert results[r]["krum"]["rank0_grad"] is None


def test_simulated_byzantine_rank_is_replaced_by_the_attack(results):
    x = torch.stack([results[r]["sim"]["local"] for r in range(WORLD)])   # lin's gradients
    x[BYZ] = -20.0 * x[:BYZ].mean(0)
    for r in range(WORLD):
        assert torch.equal(results[r]["sim"]["agg"], x.sort(dim=0).values[2])


def test_bad_world_size_and_byzantine_ranks_are_clear_errors(results):
    first, second = results[0]["errors"]
    assert "Krum needs n >= 2f + 3" in first and "n=5, f=2" in first
    assert "byzantine_ranks" in second and "5" in second
