"""Final test accuracy (and test loss) of Mean, Median, Krum, MultiKrum, TrimmedMean under no
attack, Gaussian, sign flip, ALIE and IPM, on the default setting (digits, MLP, 10 workers,
2 Byzantine), one seed. Prints Markdown tables and writes them, with the raw numbers, to
``--out``.

    python -m experiments.accuracy_table                       # in-process workers (fast)
    python -m experiments.accuracy_table --backend ray         # the same on a local Ray

The backend does not change the numbers (tests/training/test_ray.py checks that a Ray run and
an in-process run with the same seed end with identical parameters); it changes the time.
"""
import argparse
import json
import os
import time

RULES = ["mean", "median", "krum", "multi_krum", "trimmed_mean"]
ATTACKS = ["none", "gaussian", "sign_flip", "alie", "ipm"]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backend", default="local", choices=["local", "ray"])
    ap.add_argument("--rounds", type=int, default=None, help="default: TrainConfig's")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="runs/accuracy_table")
    args = ap.parse_args(argv)

    from tqdm import tqdm

    from robustagg.training import TrainConfig, train

    extra = {} if args.rounds is None else {"rounds": args.rounds}
    acc, loss, t0 = {}, {}, time.perf_counter()
    cells = [(r, a) for r in RULES for a in ATTACKS]
    for rule, attack in tqdm(cells, desc="cells"):
        cfg = TrainConfig(rule=rule, attack=attack, seed=args.seed, backend=args.backend,
                          progress=False, output_dir=os.path.join(args.out, f"{rule}-{attack}"),
                          **extra)
        res = train(cfg)
        acc[f"{rule}/{attack}"] = res.final_accuracy
        loss[f"{rule}/{attack}"] = res.summary["final_test_loss"]

    def markdown(values, fmt):
        lines = ["| rule | " + " | ".join(ATTACKS) + " |", "|---" * (len(ATTACKS) + 1) + "|"]
        lines += [f"| {r} | " + " | ".join(fmt(values[f"{r}/{a}"]) for a in ATTACKS) + " |"
                  for r in RULES]
        return "\n".join(lines)

    table = (f"final test accuracy\n\n{markdown(acc, '{:.3f}'.format)}\n\n"
             f"final test loss\n\n{markdown(loss, '{:.3g}'.format)}")
    print(table)
    print(f"({len(cells)} runs, {time.perf_counter() - t0:.0f} s, backend={args.backend}, "
          f"seed={args.seed})")
    with open(os.path.join(args.out, "table.md"), "w") as fh:
        fh.write(table + "\n")
    with open(os.path.join(args.out, "accuracy.json"), "w") as fh:
        json.dump({"accuracy": acc, "test_loss": loss}, fh, indent=1)


if __name__ == "__main__":
    main()
