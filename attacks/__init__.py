"""Byzantine attacks for robustagg: model poisoning, data poisoning and system faults.

    from attacks import ALIE, MinMax
    byz = ALIE()(honest, f=3)                               # Tensor[h, d] -> Tensor[f, d]
    byz = MinMax(direction="std")(honest, f=3)
    atk = attacks.attack("ipm", epsilon=0.1)                # by name, for configs

See ``attacks.base`` for the three interfaces and the ``omniscient`` contract, and
docs/attacks.md for the list with papers and formulas. Imports only torch (and robustagg,
lazily, when a rule-tailored attack needs its default rule).
"""
from attacks.adaptive_clipped_clustering import AdaptiveClippedClustering
from attacks.adaptive_signguard import AdaptiveSignGuard
from attacks.alie import ALIE, alie_z
from attacks.backdoor import Backdoor
from attacks.base import Attack, DataAttack, Fault, ModelAttack
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
from attacks.registry import attack, available_attacks
from attacks.sign_flip import SignFlip
from attacks.straggle import Straggle

__all__ = [
    "ALIE", "Attack", "Crash", "DataAttack", "FangKrum", "FangTrimmedMean", "Fault", "Gaussian",
    "IPM", "Inf", "LabelFlip", "Mimic", "MinMax", "MinSum", "ModelAttack", "NaN", "OptimalALIE",
    "OptimalIPM", "SignFlip", "Straggle", "alie_z", "attack", "available_attacks",
]
__all__ += ["AdaptiveClippedClustering", "AdaptiveSignGuard"]
__all__ += ["Backdoor", "DBA", "ModelReplacement", "Neurotoxin"]
