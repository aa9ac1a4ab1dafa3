"""Rules as modules: settings, validation, bound check, selection and state, and the registry."""
from .arc import ARC
from .base import PreAggregator, Rule
from .bucketing import Bucketing
from .bulyan import Bulyan
from .caf import CAF
from .centered_clipping import CenteredClipping
from .cge import CGE
from .clip import Clip
from .geometric_median import GeometricMedian
from .krum import Krum, MultiKrum
from .mda import MDA
from .mean import Mean
from .meamed import Meamed
from .median import CoordinateMedian
from .monna import MoNNA
from .nnm import NNM
from .pipeline import Pipeline
from .smea import SMEA
from .registry import (aggregator, available_pre_aggregators, available_rules, pre_aggregator,
                       register_pre_aggregator, register_rule)
from .trimmed_mean import TrimmedMean

__all__ = ["ARC", "Bucketing", "Bulyan", "CenteredClipping", "Clip", "CoordinateMedian",
           "GeometricMedian", "Krum", "Mean", "MultiKrum", "NNM", "Pipeline", "PreAggregator",
           "Rule", "TrimmedMean", "aggregator", "available_pre_aggregators",
           "available_rules", "pre_aggregator", "register_pre_aggregator", "register_rule"]
__all__ += ["CAF", "CGE", "MDA", "Meamed", "MoNNA", "SMEA"]
