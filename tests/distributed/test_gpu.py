"""robust_all_reduce and the DDP hook with NCCL, one rank per GPU (skipped without CUDA)."""
import copy

import pytest
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

import robustagg as ra
from robustagg.distributed import comm_hook, robust_all_reduce

from .spawn import run_ranks

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


def _grads(model):
    return torch.cat([p.grad.reshape(-1) for p in model.parameters()]).cpu()


def nccl_worker(rank, world):
    dev = torch.device("cuda", rank)
    torch.manual_seed(0)
    init = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 2))
    x = torch.randn(32, 8, generator=torch.Generator().manual_seed(rank)).to(dev)
    out = {}
    model = copy.deepcopy(init).to(dev)
    model(x).square().sum().backward()
    out["local"] = _grads(model)
    robust_all_reduce(model, ra.CoordinateMedian())
    out["rar"] = _grads(model)
    for mode in ("bucket", "whole"):
        ddp = DDP(copy.deepcopy(init).to(dev), device_ids=[rank], bucket_cap_mb=1e-4)
        ddp.register_comm_hook(None, comm_hook(ra.CoordinateMedian(), mode=mode))
        ddp.zero_grad(set_to_none=True)
        ddp(x).square().sum().backward()
        out[mode] = _grads(ddp.module)
    return out


def test_nccl_robust_all_reduce_and_hook_equal_the_median_of_the_ranks():
    world = torch.cuda.device_count()
    res = run_ranks(nccl_worker, world, backend="nccl")
    x = torch.stack([r["local"] for r in res])
    ref = x.sort(dim=0).values
    ref = ref[world // 2] if world % 2 else (ref[world // 2 - 1] + ref[world // 2]) / 2
    for r in res:
        torch.testing.assert_close(r["rar"], ref, rtol=1e-6, atol=1e-6)
        assert torch.equal(r["bucket"], r["rar"]) and torch.equal(r["whole"], r["rar"])
