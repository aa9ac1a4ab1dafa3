"""What the loop hands a rule besides the rows, and the backdoor's side of a run: the server's
root set (kept out of every shard; its gradient set as FLTrust's ``server_grad`` each round),
shard sizes as weights, worker ids for FoolsGold, the data attacks' per-worker copies and
gradients in the worker core, and the attack success rate."""
import math

import pytest
import torch

import attacks
import robustagg as ra
from robustagg.run import worker as W
from robustagg.run.config import TrainConfig, WorkerSpec
from robustagg.run.data import load_dataset
from robustagg.training.server import ParameterServer


def server(**kw):
    return ParameterServer(TrainConfig(**{"backend": "local", "progress": False, **kw}))


class SpyMean(ra.Mean):
    """The mean, remembering the weights of each call."""

    def aggregate(self, x, weights=None):
        self.seen = weights
        return super().aggregate(x, weights=weights)


class SpyFLTrust(ra.FLTrust):
    def aggregate(self, x):
        self.seen = self.server_grad.clone()
        return super().aggregate(x)


class SpyFoolsGold(ra.FoolsGold):
    def aggregate(self, x):
        self.seen = list(self.worker_ids)
        return super().aggregate(x)


def test_root_set_is_kept_out_of_the_shards_and_feeds_fltrust():
    rule = SpyFLTrust(f=2)
    ps = server(rule=rule, server_root_samples=60, seed=3)
    root = set(ps.root.spec.indices)
    shards = [set(s.spec.indices) for s in ps.backend.states.values()]
    assert len(root) == 60
    total = len(load_dataset("digits").y_train)
    assert sum(ps.shard_sizes) == total - 60
    assert all(not (root & s) for s in shards) and len(set().union(*shards)) == total - 60
    params = ps.params()
    ps.step()
    want, _ = W.compute_gradient(ps.root, params, 0)  # a minibatch of the root set, round 0
    assert torch.equal(rule.seen, want)
    assert rule.server_grad is None  # consumed: a round without a fresh one fails
    ps.close()


def test_shard_sizes_are_the_weights():
    rule = SpyMean()
    ps = server(rule=rule, weighted=True, partition="dirichlet", alpha=0.3, byzantine=0)
    ps.step()
    assert rule.seen == ps.shard_sizes and len(set(ps.shard_sizes)) > 1
    ps.close()


def test_foolsgold_is_told_the_worker_ids():
    rule = SpyFoolsGold(f=2)
    ps = server(rule=rule, attack="gaussian")
    ps.step()
    assert rule.seen == list(range(10))
    ps.close()


def test_config_refuses_what_the_rule_cannot_use():
    with pytest.raises(ValueError, match="Krum.* does not take weights \\(rules that do: .*median"):
        TrainConfig(weighted=True)
    with pytest.raises(ValueError, match="pre-aggregations mix workers"):
        TrainConfig(weighted=True, rule="mean", pre=["bucketing"], byzantine=1)
    with pytest.raises(ValueError, match="FLTrust.* set server_root_samples >= 1"):
        TrainConfig(rule="fltrust")
    with pytest.raises(ValueError, match="server_root_samples must be an int >= 0"):
        TrainConfig(server_root_samples=-1)
    with pytest.raises(ValueError, match="server_root_samples must be in \\[0, 1438\\)"):
        server(rule="fltrust", server_root_samples=5000)


def spec(attack, worker_id=9, **kw):
    return WorkerSpec(worker_id=worker_id, workers=10, is_byzantine=True, attack=attack,
                      attack_kwargs=kw, batch_size=16)


def test_worker_core_applies_the_backdoor_and_its_gradient():
    data = load_dataset("digits")
    params = torch.nn.utils.parameters_to_vector(
        W.build_worker(spec("none"), data).model.parameters()).detach()
    honest = W.build_worker(WorkerSpec(worker_id=9, workers=10, batch_size=16), data)
    bd = W.build_worker(spec("backdoor", target=2), data)
    mr = W.build_worker(spec("model_replacement", target=2), data)
    nt = W.build_worker(spec("neurotoxin", target=2, top_k=0.2), data)
    g_clean, _ = W.compute_gradient(honest, params, 5)
    g_bd, _ = W.compute_gradient(bd, params, 5)
    assert not torch.equal(g_bd, g_clean)
    assert torch.equal(W.compute_gradient(mr, params, 5)[0], g_bd * 10)  # gamma = n = 10
    g_nt = W.compute_gradient(nt, params, 5)[0]
    top = torch.topk(g_clean.abs(), math.ceil(0.2 * len(g_clean))).indices
    assert (g_nt[top] == 0).all()
    keep = torch.ones_like(g_nt, dtype=torch.bool)
    keep[top] = False
    assert torch.equal(g_nt[keep], g_bd[keep])
    assert [W.build_worker(spec("dba", worker_id=i), data).attack.part for i in (6, 7, 8, 9)] \
        == [2, 3, 0, 1]


def test_attack_success_rate_is_measured_under_a_backdoor():
    ps = server(rule="mean", attack="backdoor", attack_kwargs={"target": 4})
    for _ in range(3):
        ps.step()
    res = ps.evaluate()
    keep = ps.y_test != 4
    with torch.no_grad():
        out = ps.model(attacks.Backdoor().trigger(ps.x_test[keep])).argmax(1)
    assert res["attack_success_rate"] == pytest.approx(float((out == 4).float().mean()))
    ps.close()
    clean = server(rule="mean")
    assert "attack_success_rate" not in clean.evaluate()
    clean.close()
    with pytest.raises(ValueError, match="stamps a trigger on images"):
        server(rule="mean", dataset="breast_cancer", attack="backdoor")
