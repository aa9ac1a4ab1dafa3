"""The step-decay learning rate (``lr_milestones``, ``lr_gamma``): the rate of each round, the
step the server takes with it, and bad settings refused."""
import pytest
import torch

import robustagg as ra
from robustagg.run.config import TrainConfig
from robustagg.training.server import ParameterServer


class SpyMean(ra.Mean):
    """The mean, remembering its last result."""

    def aggregate(self, x, weights=None):
        self.last = super().aggregate(x, weights=weights).clone()
        return self.last


def test_lr_at_multiplies_by_gamma_at_each_milestone_reached():
    cfg = TrainConfig(backend="local", lr=0.8, lr_milestones=[2, 5], lr_gamma=0.5)
    assert [cfg.lr_at(r) for r in range(7)] == [0.8, 0.8, 0.4, 0.4, 0.4, 0.2, 0.2]
    assert [TrainConfig(backend="local", lr=0.3).lr_at(r) for r in (0, 10**6)] == [0.3, 0.3]


@pytest.mark.parametrize("compression", [{}, {"compression": "randk_shared",
                                               "compression_kwargs": {"ratio": 0.1}}])
def test_server_steps_with_the_rounds_rate(compression):
    rule = SpyMean()
    cfg = TrainConfig(backend="local", progress=False, rule=rule, attack="none", momentum=0.0,
                      lr=0.5, lr_milestones=[1, 3], lr_gamma=0.1, **compression)
    server = ParameterServer(cfg)
    for r in range(4):
        before = server.params()
        server.step()
        full = torch.zeros_like(before)
        if compression:  # the rule ran on the mask's values
            full[server.receiver.mask] = rule.last
        else:
            full = rule.last
        step = before - server.params()
        torch.testing.assert_close(step, cfg.lr_at(r) * full, rtol=1e-5, atol=1e-8)
    assert [cfg.lr_at(r) for r in range(4)] == pytest.approx([0.5, 0.05, 0.05, 0.005])


@pytest.mark.parametrize("kw", [{"lr_milestones": [3, 2]}, {"lr_milestones": [2, 2]},
                                {"lr_milestones": [0]}, {"lr_milestones": [1.5]},
                                {"lr_gamma": 0.0}, {"lr_gamma": 1.5}])
def test_bad_schedules_are_refused(kw):
    with pytest.raises(ValueError, match="lr_milestones|lr_gamma"):
        TrainConfig(backend="local", **kw)
