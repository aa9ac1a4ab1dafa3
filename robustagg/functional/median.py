"""Coordinate-wise median."""
import torch

from .. import kernels
from ._checks import as_matrix


def coordinate_median(x: torch.Tensor) -> torch.Tensor:
    r"""Coordinate-wise median: :math:`[\mathrm{med}(x_{1k}, \dots, x_{nk})]_{k}`.

    For even n the median of a coordinate is the mean of its two middle values (the usual
    statistical median; ``torch.median`` returns the lower one instead). NaN is ordered as
    +inf, so with at most ⌈n/2⌉ - 1 non-finite values in a coordinate the result is finite.

    ``x: Tensor[n, d]`` → ``Tensor[d]``; n ≥ 2f + 1 tolerates f Byzantine rows.
    Yin, Chen, Ramchandran, Bartlett, "Byzantine-robust distributed learning: towards optimal
    statistical rates", ICML 2018, Definition 1.
    """
    dtype = x.dtype if isinstance(x, torch.Tensor) else None
    return kernels.coordinate_median(as_matrix(x, "CoordinateMedian")).to(dtype)
