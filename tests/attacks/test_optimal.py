"""Optimal ALIE / IPM (rule-tailored scale search): at least as damaging as the fixed-scale
attacks against the rule they target, the line search itself, and the rule left untouched."""
import pytest
import torch

import robustagg as ra
from attacks import ALIE, IPM, OptimalALIE, OptimalIPM
from attacks.line_maximize import line_maximize

H, F, D = 20, 5, 40


def honest():
    g = torch.Generator().manual_seed(0)
    return torch.randn(H, D, generator=g, dtype=torch.float64) + 0.5


def deviation(rule, x, b):
    return float((rule(torch.cat([x, b])) - x.mean(0)).norm())


@pytest.mark.parametrize("make_rule", [
    ra.CoordinateMedian, lambda: ra.TrimmedMean(f=F), lambda: ra.Krum(f=F), ra.Mean])
def test_at_least_as_damaging_as_the_fixed_versions(make_rule):
    x = honest()
    for optimal, fixed in ((OptimalALIE(), ALIE()), (OptimalIPM(), IPM(0.1))):
        target = make_rule()
        b = optimal(x, F, rule=target)
        assert target.selected is None        # trial aggregations ran on copies of the rule
        rule = make_rule()
        assert optimal.distance == pytest.approx(deviation(rule, x, b))
        assert deviation(rule, x, b) >= deviation(rule, x, fixed(x, F)) - 1e-12


def test_optimal_ipm_beats_the_fixed_one_against_the_mean():
    x = honest()
    atk = OptimalIPM()
    b = atk(x, F, rule=ra.Mean())
    assert atk.scale > 1.0
    assert deviation(ra.Mean(), x, b) > 5 * deviation(ra.Mean(), x, IPM(0.1)(x, F))


def test_line_maximize_finds_the_peak_of_a_concave_function():
    calls = []

    def fn(t):
        calls.append(t)
        return -(t - 3.3) ** 2

    x, y = line_maximize(fn, start=0.0, evals=16)
    assert len(calls) == 16 and min(calls) >= 0.0
    assert abs(x - 3.3) < 0.3 and y == fn(x)


def test_needs_the_rule():
    with pytest.raises(ValueError, match="needs the aggregation rule"):
        OptimalALIE()(honest(), F)
    with pytest.raises(ValueError, match="evals >= 1"):
        OptimalIPM(evals=0)
