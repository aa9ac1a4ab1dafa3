"""robustagg: Byzantine-robust gradient aggregation for PyTorch.

    import robustagg as ra
    g = ra.Krum(f=2)(grads)                      # Tensor[n, d], list of n tensors, or list of dicts
    g = ra.functional.multi_krum(x, f=2, m=5)    # the functional form
    rule = ra.aggregator("trimmed_mean", f=2)    # by name, for configs

Only torch and numpy are needed to import it; ray, hydra, boto3 and friends are imported by
the parts that use them.
"""
from . import functional, inputs, kernels
from .rules import (ARC, NNM, Bucketing, Bulyan, CenteredClipping, Clip, CoordinateMedian,
                    GeometricMedian, Krum, Mean, MultiKrum, Pipeline, PreAggregator, Rule,
                    TrimmedMean, aggregator, available_pre_aggregators, available_rules,
                    pre_aggregator, register_pre_aggregator, register_rule)

from .rules import (CAF, CGE, FLAME, MDA, SMEA, ClippedClustering, DnC, FLTrust,  # noqa: E402
                    FoolsGold, Meamed, MoNNA, SignGuard)

from . import distributed  # noqa: E402  (after the rules it builds on)
from .optim import RobustOptimizer  # noqa: E402

__version__ = "0.1.0"
