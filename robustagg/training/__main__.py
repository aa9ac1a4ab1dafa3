"""``python -m robustagg.training [key=value ...]``: run one experiment with TrainConfig's
defaults, overridden by ``key=value`` pairs (values parsed as JSON when they parse, e.g.
``rounds=50 rule=median attack=gaussian attack_kwargs='{"std":100}'``). The Hydra entry point
with config groups and sweeps is ``python -m experiments.train``."""
import json
import sys

from . import TrainConfig, train


def parse(argv):
    kwargs = {}
    for arg in argv:
        key, sep, value = arg.partition("=")
        if not sep:
            raise SystemExit(f"arguments are key=value, got {arg!r}\n{__doc__}")
        try:
            kwargs[key] = json.loads(value)
        except json.JSONDecodeError:
            kwargs[key] = value
    return kwargs


def main(argv=None):
    args = parse(sys.argv[1:] if argv is None else argv)
    try:
        cfg = TrainConfig.from_dict(args)
    except (ValueError, TypeError) as e:
        raise SystemExit(f"error: {e}") from None
    result = train(cfg)
    print(f"final accuracy: {result.final_accuracy}")


if __name__ == "__main__":
    main()
