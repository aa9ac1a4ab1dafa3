"""The registry and the checks every model attack shares: names, "none", output shape, dtype
and device, validation errors, determinism (same seed, same rows)."""
import subprocess
import sys

import pytest
import torch

import attacks
import robustagg as ra
from attacks import ModelAttack
from attacks.base import RandomAttack

MODEL = [n for n in attacks.available_attacks()
         if n != "none" and attacks.attack(n).kind == "model"]


def make(name):
    """The attack by name, seeded where it draws random numbers."""
    random = issubclass(attacks.registry.ATTACKS[name], RandomAttack)
    return attacks.attack(name, seed=11) if random else attacks.attack(name)


def test_names_and_none():
    names = attacks.available_attacks()
    assert names[0] == "none"
    assert set(names) == {"none", "gaussian", "sign_flip", "label_flip", "inf", "nan", "mimic",
                          "alie", "ipm", "min_max", "min_sum", "fang_krum", "fang_trimmed_mean",
                          "optimal_alie", "optimal_ipm", "crash", "straggle",
                          "adaptive_signguard", "adaptive_clipped_clustering", "backdoor",
                          "model_replacement", "dba", "neurotoxin"}
    assert attacks.attack("none") is None
    assert attacks.attack("None") is None
    assert isinstance(attacks.attack("Min-Max", direction="std"), attacks.MinMax)
    assert attacks.attack("ipm", epsilon=0.3).epsilon == 0.3
    with pytest.raises(ValueError, match="unknown attack 'krumm'"):
        attacks.attack("krumm")
    with pytest.raises(TypeError):
        attacks.attack("ipm", eps=1)
    kinds = {n: attacks.attack(n).kind for n in names if n != "none"}
    assert kinds["label_flip"] == "data" and kinds["crash"] == kinds["straggle"] == "fault"
    assert attacks.attack("optimal_alie").needs == {"honest", "rule"}
    assert attacks.attack("gaussian").needs == frozenset()


@pytest.mark.parametrize("name", MODEL)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_shape_dtype_and_determinism(name, dtype):
    g = torch.Generator().manual_seed(0)
    x = (torch.randn(12, 9, generator=g) + 0.3).to(dtype)
    rule = ra.TrimmedMean(f=3)
    out = make(name)(x, 3, rule=rule)
    assert out.shape == (3, 9) and out.dtype == dtype and out.device == x.device
    again = make(name)(x, 3, rule=rule)
    assert torch.equal(out.nan_to_num(), again.nan_to_num())


@pytest.mark.parametrize("name", MODEL)
def test_validation(name):
    atk = make(name)
    x = torch.randn(12, 4)
    with pytest.raises(ValueError, match=r"f >= 1.*f=0"):
        atk(x, 0, rule=ra.Mean())
    with pytest.raises(ValueError, match="f >= 1"):
        atk(x, True, rule=ra.Mean())
    with pytest.raises(ValueError, match="shape \\[h, d\\]"):
        atk(x[0], 2, rule=ra.Mean())
    with pytest.raises(TypeError, match="floating"):
        atk(x.long(), 2, rule=ra.Mean())
    with pytest.raises(TypeError, match="torch.Tensor"):
        atk(x.numpy(), 2, rule=ra.Mean())
    with pytest.raises(ValueError, match=rf"{atk.name} needs at least"):
        atk(x[:0], 2, rule=ra.Mean())


def test_base_is_abstract_and_rule_checked():
    with pytest.raises(NotImplementedError):
        ModelAttack()(torch.ones(2, 2), 1)
    with pytest.raises(TypeError, match="rule must be callable"):
        attacks.OptimalIPM()(torch.ones(3, 2), 1, rule="krum")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name", MODEL)
def test_cuda_output_stays_on_the_device(name):
    x = torch.randn(12, 64, device="cuda") + 0.3
    rule = ra.TrimmedMean(f=3)
    out = make(name)(x, 3, rule=rule)
    assert out.device == x.device and out.dtype == x.dtype and out.shape == (3, 64)
    ref = make(name)(x.cpu(), 3, rule=rule)
    assert torch.allclose(out.cpu().nan_to_num(), ref.nan_to_num(), rtol=1e-4, atol=1e-5)


def test_import_needs_only_torch():
    code = ("import sys, attacks; bad = {'robustagg', 'ray', 'hydra', 'matplotlib', 'scipy'} "
            "& set(sys.modules); assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_non_finite_honest_rows_are_left_out_not_fatal():
    """A diverging model sends overflowing honest gradients: every model attack still answers
    (from the finite rows), and with no finite row it answers NaN rows."""
    import robustagg as ra
    g = torch.Generator().manual_seed(0)
    honest = torch.randn(8, 20, generator=g)
    honest[2, 3], honest[5] = float("inf"), float("nan")
    for name in attacks.available_attacks():
        atk = attacks.attack(name, **({"n": 10} if "alie" in name else {}))
        if atk is None or atk.kind != "model":
            continue
        out = atk(honest, 2, rule=ra.Krum(f=2))
        assert out.shape == (2, 20), name
        if name not in ("inf", "nan"):
            assert torch.isfinite(out).all(), name
            clean = attacks.attack(name, **({"n": 10} if "alie" in name else {}))
            finite_rows = honest[torch.isfinite(honest).all(dim=1)]
            assert torch.equal(out, clean(finite_rows, 2, rule=ra.Krum(f=2))), name
    assert torch.isnan(attacks.attack("ipm")(torch.full((3, 4), float("inf")), 2)).all()
