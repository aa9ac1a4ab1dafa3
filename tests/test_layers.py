"""The layer contract (docs/architecture.md): every module of robustagg, attacks and experiments
imports only from its own layer or the layers below it, and no private Hydra or Ray module where
a public API exists. Read from the source (``ast``), imports inside functions included, so a
lazy import cannot hide a dependency."""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Bottom to top. A module belongs to the layer of the longest name that is it or its package
# ("robustagg" alone is the package's __init__: the public face of the layers below it).
LAYERS = [
    ("kernels", ["robustagg._C", "robustagg.kernels", "robustagg.streaming"]),
    ("functional", ["robustagg.functional", "robustagg.inputs"]),
    ("rules", ["robustagg.rules"]),
    ("compression", ["robustagg.compression"]),
    ("drop-ins", ["robustagg", "robustagg.optim", "robustagg.distributed", "robustagg.costmodel"]),
    ("attacks", ["attacks"]),
    ("run", ["robustagg.run"]),
    ("backends", ["robustagg.backends"]),
    ("training", ["robustagg.training"]),
    ("experiments", ["experiments"]),
]
OURS = ("robustagg", "attacks", "experiments")

# Private modules still imported, each because no public API does the same.
ALLOWED_PRIVATE = {
    ("robustagg.backends.ray_cluster", "ray._private"):  # its ray_constants
        "switching Ray to loopback after it was imported (the variable is read once, at import)",
    ("robustagg.backends.ray_cluster", "ray._private.services"):
        "resolving address='auto' to host:port, to probe it before ray.init retries for minutes",
}


def layer_of(module: str):
    """The index in LAYERS of ``module``'s layer, or None for a module outside them."""
    best = None
    for index, (_, names) in enumerate(LAYERS):
        for name in names:
            exact = name == "robustagg"
            if module == name or (not exact and module.startswith(name + ".")):
                if best is None or len(name) > best[1]:
                    best = (index, len(name))
    return None if best is None else best[0]


def modules():
    """``name -> path`` of every Python module of the project."""
    out = {}
    for top in OURS:
        for path in (ROOT / top).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
    out["robustagg._C"] = None  # the native extension
    return out


def imports(name: str, source: str, is_package: bool, known) -> set:
    """The modules ``name`` imports (absolute names; ``from X import y`` is X.y when that is a
    module, else X)."""
    package = name if is_package else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([node.module] if node.module else []))
            for a in node.names:
                sub = f"{base}.{a.name}"
                found.add(sub if sub in known else base)
    return found


def violations(name: str, source: str, is_package: bool = False, known=()) -> list:
    """What ``name``'s imports break: a layer above its own, or a private Hydra/Ray module."""
    out = []
    own = layer_of(name)
    for dep in sorted(imports(name, source, is_package, known)):
        top = dep.split(".")[0]
        if top in ("ray", "hydra") and any(p.startswith("_") for p in dep.split(".")[1:]):
            if (name, dep) not in ALLOWED_PRIVATE:
                out.append(f"{name} imports the private module {dep}")
            continue
        if top not in OURS or dep == name:
            continue
        theirs = layer_of(dep)
        if theirs is not None and own is not None and theirs > own:
            out.append(f"{name} ({LAYERS[own][0]}) imports {dep} ({LAYERS[theirs][0]})")
    return out


def test_every_module_has_a_layer():
    assert [m for m in modules() if layer_of(m) is None] == []


def test_imports_point_down_the_layers():
    known = modules()
    found = []
    for name, path in known.items():
        if path is not None:
            found += violations(name, path.read_text(), path.name == "__init__.py", known)
    assert found == []


def test_allowed_private_imports_are_still_needed():
    known = modules()
    used = set()
    for name, path in known.items():
        if path is not None:
            used |= {(name, d) for d in imports(name, path.read_text(), path.name == "__init__.py",
                                                 known)}
    assert set(ALLOWED_PRIVATE) <= used


def test_the_contract_catches_a_forbidden_import():
    known = modules()
    assert violations("robustagg.rules.krum", "from robustagg.training import train",
                      known=known) == ["robustagg.rules.krum (rules) imports robustagg.training "
                                       "(training)"]
    assert violations("robustagg.run.worker", "def f():\n    from ..backends import base\n",
                      known=known) == ["robustagg.run.worker (run) imports "
                                       "robustagg.backends.base (backends)"]
    assert violations("experiments.sweep", "from hydra._internal import utils") == [
        "experiments.sweep imports the private module hydra._internal"]
    assert violations("attacks.alie", "import robustagg") == []  # drop-ins sit below attacks
