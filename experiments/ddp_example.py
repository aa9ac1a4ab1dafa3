"""Robust aggregation in a plain ``torch.distributed`` loop: gloo on CPU, torchrun-style.

    # torchrun starts the ranks (each reads RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT):
    torchrun --nproc_per_node 5 --master_addr 127.0.0.1 --master_port 29511 \\
        experiments/ddp_example.py train
    # or the script spawns its own ranks on 127.0.0.1 (a free port):
    python experiments/ddp_example.py train --nproc 5               # robust_all_reduce
    python experiments/ddp_example.py train --nproc 5 --entry ddp   # DDP + comm_hook
    python experiments/ddp_example.py bench --nproc 4               # overhead, ~1M parameters

``train``: an MLP on Fashion-MNIST (Debian's files, read offline), one shard per rank; the last
rank is Byzantine and scales its loss (so its gradient) by ``--scale`` (default -10), or, with
``--attack alie`` (any model attack of ``attacks``), every rank simulates that attack for the
last rank after the gather (``robust_all_reduce(..., attack=, byzantine_ranks=)``). For each
rule (``--rules``, default mean, median, krum) and for an honest run (mean, no Byzantine rank),
every rank trains from the same initial parameters; rank 0 prints the test accuracy, whether
all ranks ended with identical parameters, and plots the training loss
(``outputs/ddp_example/train_loss.png``).

``bench``: the time per call of ``robust_all_reduce`` with the mean, the median and Krum over a
plain ``all_reduce`` of the same ~1.07M gradients (MLP 784-1024-256-10), every row timed in the
same run (interleaved), as ratios against the one-buffer ``all_reduce``. Each time is the
slowest rank's, median over ``--reps`` rounds.
"""
import argparse
import logging
import os
import statistics
import sys
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import robustagg as ra
from robustagg.backends.net import free_port
from robustagg.distributed import comm_hook, init_loopback_group, robust_all_reduce
from robustagg.run.data import load_dataset, partition
from robustagg.run.models import build_model, loss_fn

RULES = {"mean": lambda f: ra.Mean(), "median": lambda f: ra.CoordinateMedian(f=f),
         "trimmed_mean": lambda f: ra.TrimmedMean(f=f), "krum": lambda f: ra.Krum(f=f),
         "multi_krum": lambda f: ra.MultiKrum(f=f)}


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("task", choices=["train", "bench"])
    p.add_argument("--nproc", type=int, default=None,
                   help="spawn this many ranks on 127.0.0.1 (omit under torchrun)")
    p.add_argument("--entry", choices=["all_reduce", "ddp"], default="all_reduce",
                   help="train: robust_all_reduce, or DDP with comm_hook(rule, mode='whole')")
    p.add_argument("--rules", default="mean,median,krum", help="train: comma-separated")
    p.add_argument("--f", type=int, default=1, help="train: the rules' f")
    p.add_argument("--scale", type=float, default=-10.0, help="train: Byzantine gradient scale")
    p.add_argument("--attack", default="scale",
                   help="train: 'scale' (the last rank scales its own gradient), or a model "
                        "attack of the attacks package (alie, ipm, sign_flip, ...) that every "
                        "rank simulates for the last rank after the gather")
    p.add_argument("--steps", type=int, default=150)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--reps", type=int, default=20, help="bench: timed calls per row")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="outputs/ddp_example")
    return p.parse_args(argv)


def log0(*a):
    if dist.get_rank() == 0:
        print(*a, flush=True)


def progress(it, desc):
    if dist.get_rank() != 0:
        return it
    from tqdm import tqdm
    return tqdm(it, desc=desc, leave=False, file=sys.stderr)


def identical_on_all_ranks(model) -> bool:
    flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    ref = flat.clone()
    dist.broadcast(ref, src=0)
    same = torch.tensor([float(torch.equal(flat, ref))])
    dist.all_reduce(same, op=dist.ReduceOp.MIN)
    return bool(same.item())


def simulated_attack(args, byzantine):
    """The ``attack``/``byzantine_ranks`` arguments: none for 'scale' or an honest run."""
    if not byzantine or args.attack == "scale":
        return {}
    import attacks
    atk = attacks.attack(args.attack)
    if getattr(atk, "kind", None) != "model":
        raise SystemExit(f"--attack {args.attack}: only model attacks can be simulated here")
    return {"attack": atk, "byzantine_ranks": [dist.get_world_size() - 1]}


def train_one(args, data, shard, name, byzantine):
    rank, world = dist.get_rank(), dist.get_world_size()
    rule = RULES["mean" if name == "honest" else name](args.f)
    sim = simulated_attack(args, byzantine)
    scaled = byzantine and args.attack == "scale" and rank == world - 1
    model = build_model("mlp", data.input_shape, data.num_classes, seed=args.seed, hidden=(64,))
    net, hook = model, None
    if args.entry == "ddp":
        from torch.nn.parallel import DistributedDataParallel as DDP
        net, hook = DDP(model), comm_hook(rule, mode="whole", **sim)
        net.register_comm_hook(None, hook)
    opt = torch.optim.SGD(model.parameters(), lr=args.lr)
    loss_f = loss_fn(data.num_classes)
    g = torch.Generator().manual_seed(args.seed * 1000 + rank)
    losses, skipped = [], 0
    for _ in progress(range(args.steps), name):
        idx = shard[torch.randint(len(shard), (args.batch,), generator=g)]
        opt.zero_grad(set_to_none=True)
        loss = loss_f(net(data.x_train[idx]), data.y_train[idx])
        (args.scale * loss if scaled else loss).backward()
        if args.entry == "all_reduce":
            skipped += not robust_all_reduce(model, rule, **sim)   # False: non-finite, no step
        opt.step()
        losses.append(loss.item())
    with torch.no_grad():
        acc = (model(data.x_test).argmax(1) == data.y_test).float().mean().item()
    skipped = hook.skipped if hook is not None else skipped
    return acc, losses, skipped, identical_on_all_ranks(model)


def train(args):
    rank, world = dist.get_rank(), dist.get_world_size()
    data = load_dataset("fashion_mnist")
    shard = partition(data.y_train, world, "iid", seed=args.seed)[rank]
    runs = [("honest", False)] + [(r, True) for r in args.rules.split(",")]
    how = f"gradient x {args.scale}" if args.attack == "scale" else f"simulated {args.attack}"
    log0(f"{world} ranks ({args.entry}); rank {world - 1} Byzantine ({how}) except in 'honest'; "
         f"{args.steps} steps of batch {args.batch}, lr {args.lr}")
    # a diverging mean logs a warning per rank and step; the table counts them instead
    logging.getLogger("robustagg").setLevel(logging.ERROR)
    rows, curves = [], {}
    for name, byzantine in runs:
        acc, losses, skipped, same = train_one(args, data, shard, name, byzantine)
        rows.append((name, acc, sum(losses[-10:]) / 10, skipped, same))
        curves[name] = losses
    log0(f"{'run':<10} {'test acc':>9} {'loss (last 10)':>15} {'non-finite aggregates':>22} "
         f"{'ranks identical':>16}")
    for name, acc, loss, skipped, same in rows:
        log0(f"{name:<10} {acc:>9.4f} {loss:>15.4g} {skipped:>22} {str(same):>16}")
    if rank == 0:
        plot(curves, args.out, f"{args.entry}, {how}")


def plot(curves, out, title):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    os.makedirs(out, exist_ok=True)
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, losses in curves.items():
        ax.plot(losses, label=name)
    # a diverging run leaves through the top instead of squashing the others into one line
    ax.set(xlabel="step", ylabel="rank 0 training loss (batch)", yscale="log",
           ylim=(None, 10 * max(curves["honest"])), title=f"One Byzantine rank ({title})")
    ax.legend()
    path = os.path.join(out, "train_loss.png")
    fig.savefig(path, dpi=120, bbox_inches="tight")
    print(f"plot: {path}")


def timed(rows, reset, reps):
    """Median over ``reps`` rounds of the slowest rank's time per row; the rows are interleaved
    (each round times every row once, after 3 warm-up rounds) so that load from other
    processes on the machine falls on all rows alike."""
    times = {label: [] for label, _ in rows}
    for i in progress(range(reps + 3), "bench"):
        for label, fn in rows:
            reset()
            dist.barrier()
            t0 = time.perf_counter()
            fn()
            t = torch.tensor([time.perf_counter() - t0])
            dist.all_reduce(t, op=dist.ReduceOp.MAX)
            if i >= 3:
                times[label].append(t.item())
    return [(label, statistics.median(times[label])) for label, _ in rows]


def bench(args):
    rank, world = dist.get_rank(), dist.get_world_size()
    model = build_model("mlp", (784,), 10, seed=args.seed, hidden=(1024, 256))
    params = list(model.parameters())
    d = sum(p.numel() for p in params)
    g = torch.Generator().manual_seed(args.seed * 1000 + rank)
    grads = [torch.randn(p.shape, generator=g) for p in params]
    flat = torch.cat([x.reshape(-1) for x in grads])

    def reset():
        for p, x in zip(params, grads):
            p.grad = x.clone()

    def all_reduce_flat():   # the baseline: one bucket, as DDP or a careful hand-written loop
        buf = torch.cat([p.grad.reshape(-1) for p in params])
        dist.all_reduce(buf)
        buf /= world
        for p, chunk in zip(params, buf.split([p.numel() for p in params])):
            p.grad.copy_(chunk.view_as(p))

    def all_reduce_per_param():   # the naive loop robust_all_reduce replaces
        for p in params:
            dist.all_reduce(p.grad)
            p.grad /= world

    def all_gather_only():
        out = torch.empty(world * d)
        dist.all_gather_single(out, flat)

    f_krum = (world - 3) // 2
    rows = [("all_reduce, one flat buffer (baseline)", all_reduce_flat),
            ("all_reduce, one call per parameter", all_reduce_per_param),
            ("all_gather of the flat gradient only", all_gather_only)]
    for label, rule in [("mean", ra.Mean()), ("median", ra.CoordinateMedian()),
                        (f"Krum f={f_krum}", ra.Krum(f=f_krum))]:
        rows.append((f"robust_all_reduce, {label}",
                     lambda rule=rule: robust_all_reduce(model, rule)))
    x = torch.randn(world, d, generator=torch.Generator().manual_seed(args.seed))
    rows.append((f"Krum f={f_krum} alone on [{world}, d], no communication",
                 lambda: ra.Krum(f=f_krum)(x)))
    log0(f"{world} ranks, gloo on 127.0.0.1, d = {d:,} parameters (float32), "
         f"{torch.get_num_threads()} thread(s) per rank, median of {args.reps} interleaved rounds")
    results = timed(rows, reset, args.reps)
    base = results[0][1]
    log0(f"{'':<52} {'ms/call':>9} {'ratio':>7}")
    for label, t in results:
        log0(f"{label:<52} {1e3 * t:>9.2f} {t / base:>7.2f}")


def run(args, rank=None):
    torch.set_num_threads(1)
    if rank is None:   # under torchrun: env:// (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT)
        dist.init_process_group("gloo")
    else:              # spawned below: every socket on 127.0.0.1
        init_loopback_group(rank, args.nproc, args.port)
    try:
        train(args) if args.task == "train" else bench(args)
    finally:
        dist.destroy_process_group()


def _spawned(rank, args):
    run(args, rank)


def main(argv=None):
    args = parse(argv)
    if args.nproc is None:
        if "RANK" not in os.environ:
            sys.exit("launch with torchrun, or pass --nproc N to spawn N ranks here")
        os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")   # gloo on the loopback interface
        run(args)
        return
    args.port = free_port()
    mp.spawn(_spawned, args=(args,), nprocs=args.nproc, join=True)


if __name__ == "__main__":
    main()
