"""Arithmetic mean: the non-robust baseline."""
import torch

from ._checks import as_matrix


def mean(x: torch.Tensor) -> torch.Tensor:
    r"""Average of the rows: :math:`\frac1n \sum_i x_i`.

    ``x: Tensor[n, d]`` → ``Tensor[d]``, any n ≥ 1. Not robust: one Byzantine row moves it
    arbitrarily far (Blanchard et al., NeurIPS 2017, Lemma 1), and a non-finite row makes it
    non-finite.
    """
    dtype = x.dtype if isinstance(x, torch.Tensor) else None
    return as_matrix(x, "Mean").mean(dim=0).to(dtype)
