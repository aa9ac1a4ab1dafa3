"""What each of the 5 gloo ranks does in the distributed tests; the tests check the results.

One spawn runs every scenario (on this shared 2-core machine spawning 5 ranks costs more than
all the training), see ``conftest.py``. Rank 4 is Byzantine: it scales its loss, hence its
gradient, by -20.

robust_all_reduce (``rar``): honest = the 4 honest ranks alone with plain ``dist.all_reduce`` / 4
(the reference run); mean / median / krum with the Byzantine rank. Every step each rank records
its own gradient and the aggregate it received, so the tests recompute every aggregate.

DDP (``ddp``): the same small MLP trained with DDP and a hook, or with robust_all_reduce.
"""
import torch
import torch.distributed as dist
from torch import nn

import robustagg as ra
from robustagg.distributed import robust_all_reduce

from torch.nn.parallel import DistributedDataParallel as DDP

from robustagg.distributed import comm_hook

WORLD, BYZ, SCALE, STEPS, LR = 5, 4, -20.0, 25, 0.1
W_TRUE = torch.tensor([1.0, -2.0, 0.5, 3.0, -1.0, 2.0, 0.0, 1.5])


class Net(nn.Module):
    """Linear regression, plus a parameter no rank uses and one only rank 0 uses."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.lin = nn.Linear(8, 1)
        self.unused = nn.Parameter(torch.zeros(3))
        self.rank0_only = nn.Parameter(torch.zeros(2))

    def ordered(self):
        """lin's parameters first (``parameters()`` yields the module's own first)."""
        return [self.lin.weight, self.lin.bias, self.unused, self.rank0_only]

    def forward(self, x, rank):
        out = self.lin(x).squeeze(-1)
        return out + self.rank0_only.sum() if rank == 0 else out


def shard(rank):
    g = torch.Generator().manual_seed(100 + rank)
    x = torch.randn(256, 8, generator=g)
    return x, x @ W_TRUE + 0.01 * torch.randn(256, generator=g)


def _train(rank, rule, group, byzantine):
    model, (x, y) = Net(), shard(rank)
    local, agg, selected = [], [], []
    for _ in range(STEPS):
        model.zero_grad(set_to_none=True)
        loss = ((model(x, rank) - y) ** 2).mean()
        (SCALE * loss if byzantine and rank == BYZ else loss).backward()
        local.append(torch.cat([torch.zeros(p.numel()) if p.grad is None else p.grad.reshape(-1)
                                for p in model.ordered()]))
        if rule is None:   # the plain data-parallel loop robust_all_reduce replaces
            model.rank0_only.grad = None
            for p in model.lin.parameters():
                dist.all_reduce(p.grad, group=group)
                p.grad /= dist.get_world_size(group)
        else:
            assert robust_all_reduce(model, rule)
            selected.append(rule.selected)
        agg.append(torch.cat([model.lin.weight.grad.reshape(-1), model.lin.bias.grad]))
        with torch.no_grad():
            for p in model.parameters():
                if p.grad is not None:
                    p -= LR * p.grad
    return {"params": torch.cat([p.detach().reshape(-1) for p in model.lin.parameters()]),
            "local": torch.stack(local), "agg": torch.stack(agg), "selected": selected,
            "unused_grad": model.unused.grad, "rank0_grad": model.rank0_only.grad}


def rar_scenarios(rank, world):
    out = {}
    honest_group = dist.new_group(list(range(WORLD - 1)))
    if rank != BYZ:
        out["honest"] = _train(rank, None, honest_group, byzantine=False)
    out["mean"] = _train(rank, ra.Mean(), None, byzantine=True)
    out["median"] = _train(rank, ra.CoordinateMedian(f=1), None, byzantine=True)
    out["krum"] = _train(rank, ra.Krum(f=1), None, byzantine=True)

    # simulated Byzantine rank: every rank replaces row 4 by the attack's output
    model, (x, y) = Net(), shard(rank)
    ((model(x, rank) - y) ** 2).mean().backward()
    mine = torch.cat([model.lin.weight.grad.reshape(-1), model.lin.bias.grad])

    def attack(honest, f, rule):
        return -20.0 * honest.mean(0, keepdim=True).expand(f, -1)

    robust_all_reduce(model.lin, ra.CoordinateMedian(f=1), attack=attack, byzantine_ranks=[BYZ])
    out["sim"] = {"local": mine,
                  "agg": torch.cat([model.lin.weight.grad.reshape(-1), model.lin.bias.grad])}

    out["errors"] = _errors(lambda: robust_all_reduce(model, ra.Krum(f=2)),
                            lambda: robust_all_reduce(model, ra.Mean(), byzantine_ranks=[5],
                                                      attack=attack))
    return out


def _errors(*calls):
    """The ValueError message of each call (each must raise one)."""
    errors = []
    for call in calls:
        try:
            call()
        except ValueError as e:
            errors.append(str(e))
    return errors




def _mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 1))


def _train_mlp(rank, model, step_grads, steps=4):
    x, y = shard(rank)
    for _ in range(steps):
        model.zero_grad(set_to_none=True)
        loss = ((model(x).squeeze(-1) - y) ** 2).mean()
        (SCALE * loss if rank == BYZ else loss).backward()
        step_grads()
        with torch.no_grad():
            for p in model.parameters():
                p -= LR * p.grad
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


def _ddp(rank, hook):
    """Train under DDP (buckets of at most 100 bytes: several per model); returns
    (params, bucket indices seen)."""
    model = DDP(_mlp(), bucket_cap_mb=1e-4)
    seen = []
    if hook is not None:
        def counted(state, bucket):
            seen.append(bucket.index())
            return hook(state, bucket)
        model.register_comm_hook(None, counted)
    return _train_mlp(rank, model, lambda: None), seen


def _rar(rank, rule):
    model = _mlp()
    return _train_mlp(rank, model, lambda: robust_all_reduce(model, rule))


def ddp_scenarios(rank, world):
    out = {"rar_median": _rar(rank, ra.CoordinateMedian(f=1)),
           "rar_krum": _rar(rank, ra.Krum(f=1)),
           "ddp_plain": _ddp(rank, None)[0]}
    out["ddp_mean"], _ = _ddp(rank, comm_hook(ra.Mean()))
    out["ddp_median"], out["buckets"] = _ddp(rank, comm_hook(ra.CoordinateMedian(f=1)))
    out["ddp_krum_whole"], _ = _ddp(rank, comm_hook(ra.Krum(f=1), mode="whole"))
    out["ddp_krum_bucket"], _ = _ddp(rank, comm_hook(ra.Krum(f=1)))
    cc = comm_hook(ra.CenteredClipping(tau=0.5, f=1))
    out["ddp_cc_bucket"], _ = _ddp(rank, cc)
    out["cc_centers"] = {key[0]: rule.center.numel() for key, rule in cc.bucket_rules.items()
                         if len(key[1]) < 4}          # the buckets after DDP's re-bucketing
    out["errors"] = _errors(lambda: comm_hook(ra.Krum(f=2)),
                            lambda: comm_hook(ra.Mean(), mode="layer"))
    return out


def all_scenarios(rank, world):
    return {"rar": rar_scenarios(rank, world), "ddp": ddp_scenarios(rank, world)}
