"""The rules as pure functions on ``x: Tensor[n, d]`` (one file per rule).

Aggregation rules map ``Tensor[n, d] -> Tensor[d]``; pre-aggregations (``nnm``,
``bucketing``, ``clip``, ``arc``) map ``Tensor[n, d] -> Tensor[n', d]`` and compose in front of
any rule. Distance-based rules take an optional ``distances`` (float64 ``[n, n]`` squared
distances from :func:`robustagg.kernels.pairwise_sq_distances`) so that one computation serves
every distance-based step.
"""
from .bucketing import bucketing
from .caf import caf
from .cge import cge
from .bulyan import bulyan
from .centered_clipping import centered_clipping
from .arc import arc
from .clip import clip
from .clipped_clustering import clipped_clustering
from .dnc import dnc
from .flame import flame
from .fltrust import fltrust
from .foolsgold import foolsgold
from .geometric_median import geometric_median
from .krum import krum, krum_scores, multi_krum
from .mda import mda
from .mean import mean
from .meamed import meamed
from .median import coordinate_median
from .monna import monna
from .nnm import nnm
from .signguard import signguard
from .smea import smea
from .trimmed_mean import trimmed_mean

__all__ = ["arc", "bucketing", "bulyan", "centered_clipping", "clip", "coordinate_median",
           "geometric_median", "krum", "krum_scores", "mean", "multi_krum", "nnm", "trimmed_mean"]
__all__ += ["caf", "cge", "clipped_clustering", "dnc", "flame", "fltrust", "foolsgold", "mda",
            "meamed", "monna", "signguard", "smea"]
