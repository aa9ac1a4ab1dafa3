"""python -m robustagg.training [key=value ...]

One run with TrainConfig's defaults, overridden by key=value pairs for its fields. Each value is
read as its field's type, dicts and lists as JSON:

    python -m robustagg.training rounds=50 rule=median backend=local progress=false
    python -m robustagg.training attack=gaussian attack_kwargs='{"std": 100}' pre='["nnm"]'
    python -m robustagg.training address=127.0.0.1:6390      # join a running Ray cluster

The Hydra entry point, with config groups and sweeps, is python -m experiments.train."""
import dataclasses
import json
import sys
import typing

from . import TrainConfig, train


def _read(key: str, value: str, hint):
    """``value`` as the type ``hint`` of field ``key``."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if type(None) in typing.get_args(hint) and value.lower() in ("none", "null"):
        return None
    kind = args[0] if len(args) == 1 else hint
    try:
        if kind is bool:
            if value.lower() not in ("true", "false"):
                raise ValueError("expected true or false")
            return value.lower() == "true"
        if kind in (int, float):
            return kind(value)
        if kind in (dict, list):
            out = json.loads(value)
            if not isinstance(out, kind):
                raise ValueError(f"expected a JSON {kind.__name__}")
            return out
    except ValueError as e:
        raise SystemExit(f"error: {key}={value!r}: {e}") from None
    return value  # str, or a registry name of rule/attack/dataset/model


def usage() -> str:
    lines = [__doc__, "", "fields (default):"]
    for f in dataclasses.fields(TrainConfig):
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        lines.append(f"  {f.name}={json.dumps(default)}")
    return "\n".join(lines)


def parse(argv) -> dict:
    hints = typing.get_type_hints(TrainConfig)
    kwargs = {}
    for arg in argv:
        if arg in ("-h", "--help"):
            print(usage())
            raise SystemExit(0)
        key, sep, value = arg.partition("=")
        if not sep or key not in hints:
            raise SystemExit(f"error: arguments are key=value for a field of TrainConfig, got "
                             f"{arg!r} (--help lists them)")
        kwargs[key] = _read(key, value, hints[key])
    return kwargs


def main(argv=None):
    args = parse(sys.argv[1:] if argv is None else argv)
    try:
        cfg = TrainConfig(**args)
    except (ValueError, TypeError) as e:
        raise SystemExit(f"error: {e}") from None
    result = train(cfg)
    print(f"final accuracy: {result.final_accuracy}")


if __name__ == "__main__":
    main()
