"""Rules as modules: settings, validation, bound check, selection and state, and the registry."""
from .arc import ARC
from .base import PreAggregator, Rule
from .bucketing import Bucketing
from .bulyan import Bulyan
from .caf import CAF
from .centered_clipping import CenteredClipping
from .cge import CGE
from .clip import Clip
from .clipped_clustering import ClippedClustering
from .dnc import DnC
from .flame import FLAME
from .fltrust import FLTrust
from .foolsgold import FoolsGold
from .geometric_median import GeometricMedian
from .krum import Krum, MultiKrum
from .mda import MDA
from .mean import Mean
from .meamed import Meamed
from .median import CoordinateMedian
from .monna import MoNNA
from .nnm import NNM
from .pipeline import Pipeline
from .signguard import SignGuard
from .smea import SMEA
from .registry import (aggregator, available_pre_aggregators, available_rules, pre_aggregator,
                       register_pre_aggregator, register_rule)
from .trimmed_mean import TrimmedMean

__all__ = ["ARC", "Bucketing", "Bulyan", "CenteredClipping", "Clip", "CoordinateMedian",
           "GeometricMedian", "Krum", "Mean", "MultiKrum", "NNM", "Pipeline", "PreAggregator",
           "Rule", "TrimmedMean", "aggregator", "available_pre_aggregators",
           "available_rules", "pre_aggregator", "register_pre_aggregator", "register_rule"]
__all__ += ["CAF", "CGE", "ClippedClustering", "DnC", "FLAME", "FLTrust", "FoolsGold", "MDA",
            "Meamed", "MoNNA", "SMEA", "SignGuard"]
