"""What the clustering rules (SignGuard, ClippedClustering, FLAME) share: scikit-learn's
clustering module, imported on first use, and the median of a few norms."""
from __future__ import annotations

import torch


def sklearn_cluster(rule: str):
    """``sklearn.cluster``, or an ``ImportError`` saying which rule needs it."""
    try:
        from sklearn import cluster
    except ImportError as err:  # robustagg itself needs only torch and numpy
        raise ImportError(f"{rule} clusters with scikit-learn: pip install scikit-learn") from err
    return cluster


def median(v: torch.Tensor) -> float:
    """Median of a float64 vector, the mean of the two middle values for an even count."""
    s = v.sort().values
    n = s.numel()
    return float(s[(n - 1) // 2] * 0.5 + s[n // 2] * 0.5)
