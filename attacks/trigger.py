"""Backdoor triggers on image batches, sized from the image (BadNets' corner patch, Gu et al.,
"BadNets: Identifying Vulnerabilities in the Machine Learning Model Supply Chain", 2017).

A batch ``x`` holds images as ``[B, C, H, W]``, ``[B, H, W]`` or flat ``[B, s*s]`` (one channel,
a square side s: digits' 64 = 8×8, Fashion-MNIST's 784 = 28×28). The trigger is a solid square
of side ``size`` in the bottom-right corner, ``margin`` pixels from both edges, every channel
set to ``value``:

    size   = max(2, round(min(H, W) / 7))        (8×8 -> 2, 28×28 -> 4, 32×32 -> 5)
    margin = min(H, W) // 14                     (8×8 -> 0, 28×28 -> 2)

(the same share of the image at every resolution). Its pixels, listed row by row, can be split
into ``parts`` consecutive pieces, the local triggers of DBA (Xie et al., ICLR 2020): at 28×28
the 16 pixels in 4 parts are the four 1×4 bars of the paper's MNIST pattern; at 8×8 each part is
one pixel.
"""
from __future__ import annotations

import math

import torch


def image_shape(sample_shape: tuple, who: str) -> tuple[int, int, int]:
    """``(C, H, W)`` of one sample of shape ``sample_shape``; a clear error if it is no image."""
    sample_shape = tuple(sample_shape)
    if len(sample_shape) == 3:
        return sample_shape
    if len(sample_shape) == 2:
        return (1, *sample_shape)
    if len(sample_shape) == 1:
        side = math.isqrt(sample_shape[0])
        if side * side == sample_shape[0] and side >= 2:
            return (1, side, side)
    raise ValueError(f"{who} stamps a trigger on images: samples of shape [C, H, W], [H, W] or "
                     f"flat [s*s] (a square image), got samples of shape {list(sample_shape)}")


def pixels(height: int, width: int, size: int | None = None) -> list[tuple[int, int]]:
    """The trigger's ``(row, column)`` pixels, row by row, for an ``height × width`` image."""
    side = min(height, width)
    size = max(2, round(side / 7)) if size is None else int(size)
    margin = side // 14
    if not 1 <= size <= side - margin:
        raise ValueError(f"trigger size must be in [1, {side - margin}] for a {height}×{width} "
                         f"image, got size={size}")
    rows = range(height - margin - size, height - margin)
    cols = range(width - margin - size, width - margin)
    return [(r, c) for r in rows for c in cols]


def split(pix: list, parts: int) -> list[list]:
    """``pix`` cut into ``parts`` consecutive pieces (as equal as can be; none empty)."""
    if parts < 1 or parts > len(pix):
        raise ValueError(f"a trigger of {len(pix)} pixels splits into 1..{len(pix)} parts, "
                         f"got parts={parts}")
    bounds = [round(k * len(pix) / parts) for k in range(parts + 1)]
    return [pix[a:b] for a, b in zip(bounds, bounds[1:])]


def stamp(x: torch.Tensor, pix: list, value: float, who: str) -> torch.Tensor:
    """A copy of the batch ``x`` with every pixel of ``pix`` set to ``value`` in every channel."""
    c, h, w = image_shape(x.shape[1:], who)
    out = x.clone()
    img = out.view(len(out), c, h, w)
    rows = torch.tensor([r for r, _ in pix], dtype=torch.long)
    cols = torch.tensor([q for _, q in pix], dtype=torch.long)
    img[:, :, rows, cols] = value
    return out
