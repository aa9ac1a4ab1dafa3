"""Attacks by name, for configs: ``attack(name, **kw)`` and ``available_attacks()``.

``attack("none")`` returns ``None``: the training code treats None as "no attack" (there is no
no-op object to call). Names are case-insensitive and "-" may stand for "_".
"""
from __future__ import annotations

from typing import Dict, List, Optional, Type

from attacks.adaptive_clipped_clustering import AdaptiveClippedClustering
from attacks.adaptive_signguard import AdaptiveSignGuard
from attacks.alie import ALIE
from attacks.backdoor import Backdoor
from attacks.base import Attack
from attacks.crash import Crash
from attacks.dba import DBA
from attacks.fang_krum import FangKrum
from attacks.fang_trimmed_mean import FangTrimmedMean
from attacks.gaussian import Gaussian
from attacks.inf import Inf
from attacks.ipm import IPM
from attacks.label_flip import LabelFlip
from attacks.mimic import Mimic
from attacks.model_replacement import ModelReplacement
from attacks.min_max import MinMax
from attacks.min_sum import MinSum
from attacks.nan import NaN
from attacks.neurotoxin import Neurotoxin
from attacks.optimal_alie import OptimalALIE
from attacks.optimal_ipm import OptimalIPM
from attacks.sign_flip import SignFlip
from attacks.straggle import Straggle

ATTACKS: Dict[str, Type[Attack]] = {cls.name: cls for cls in (
    Gaussian, SignFlip, LabelFlip, Inf, NaN, Mimic, ALIE, IPM, MinMax, MinSum, FangKrum,
    FangTrimmedMean, OptimalALIE, OptimalIPM, Crash, Straggle, AdaptiveSignGuard,
    AdaptiveClippedClustering, Backdoor, ModelReplacement, DBA, Neurotoxin)}


def available_attacks() -> List[str]:
    """Every name ``attack`` accepts, "none" first."""
    return ["none"] + sorted(ATTACKS)


def attack(name: str, **kw) -> Optional[Attack]:
    """The attack called ``name`` built with ``kw`` (its constructor's arguments); None for "none"."""
    key = str(name).lower().replace("-", "_")
    if key == "none":
        if kw:
            raise ValueError(f"attack 'none' takes no arguments, got {sorted(kw)}")
        return None
    if key not in ATTACKS:
        raise ValueError(f"unknown attack {name!r}; available: {', '.join(available_attacks())}")
    return ATTACKS[key](**kw)
