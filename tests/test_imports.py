"""The core, the run, the training loop and the in-process backend import with torch and numpy
alone: ray, hydra, boto3 and friends stay optional."""
import subprocess
import sys

BLOCKER = """
import importlib.abc, sys
OPTIONAL = {"ray", "hydra", "omegaconf", "boto3", "botocore", "redis", "matplotlib", "tqdm",
            "sklearn", "awslambdaric", "moto"}
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in OPTIONAL:
            raise ImportError("blocked optional dependency " + name)
sys.meta_path.insert(0, Block())
import robustagg, attacks, robustagg.functional, robustagg.rules, robustagg.inputs
import robustagg.run, robustagg.training, robustagg.backends.base, robustagg.backends.local_backend
import torch
x = torch.randn(7, 4)
assert robustagg.Krum(f=2)(x).shape == (4,)
print("ok")
"""


def test_core_imports_without_optional_dependencies():
    out = subprocess.run([sys.executable, "-c", BLOCKER], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
