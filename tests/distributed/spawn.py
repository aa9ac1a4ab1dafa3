"""Run a function on ``world`` gloo ranks on 127.0.0.1 and collect what each rank returns.

``run_ranks(fn, world, *args)`` spawns ``world`` processes; rank r runs ``fn(rank, world,
*args)`` inside an initialised gloo (or, with ``backend="nccl"``, NCCL on GPU r) process group
(one CPU thread per rank, a free loopback port per call) and its return value (tensors,
numbers, lists, dicts) comes back in a list indexed by rank. A rank that raises fails the
call with its traceback.
"""
import os
import tempfile

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from robustagg.backends.net import free_port
from robustagg.distributed import init_loopback_group


def _rank_main(rank, world, port, out_dir, backend, fn, args):
    torch.set_num_threads(1)
    if backend == "nccl":
        torch.cuda.set_device(rank)
    init_loopback_group(rank, world, port, backend)
    try:
        result = fn(rank, world, *args)
        dist.barrier()
    finally:
        dist.destroy_process_group()
    torch.save(result, os.path.join(out_dir, f"rank{rank}.pt"))


def run_ranks(fn, world: int, *args, backend: str = "gloo") -> list:
    with tempfile.TemporaryDirectory(prefix="ra_dist_") as out_dir:
        mp.spawn(_rank_main, args=(world, free_port(), out_dir, backend, fn, args),
                 nprocs=world, join=True)
        return [torch.load(os.path.join(out_dir, f"rank{r}.pt"), weights_only=True)
                for r in range(world)]
