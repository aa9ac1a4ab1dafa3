"""Label flipping (data poisoning; e.g. Allen-Zhu et al., ICLR 2021, and Karimireddy et al.,
ICML 2021, "Learning from History for Byzantine Robust Optimization").

A Byzantine worker trains on its own batch with every label ``y`` replaced by ``C - 1 - y``
(C classes), then sends the resulting gradient honestly: ``poison_batch(x, y, C) -> (x, C-1-y)``.
"""
from __future__ import annotations

import torch

from attacks.base import DataAttack


class LabelFlip(DataAttack):
    """``poison_batch(x: Tensor[B, ...], y: LongTensor[B], num_classes) -> (x, C - 1 - y)``."""

    name = "label_flip"

    def poison_batch(self, x: torch.Tensor, y: torch.Tensor, num_classes: int):
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
            raise ValueError(f"label_flip needs num_classes >= 2, got num_classes={num_classes!r}")
        if not isinstance(y, torch.Tensor) or y.is_floating_point() or y.is_complex():
            raise TypeError(f"label_flip needs integer class labels y, got "
                            f"{getattr(y, 'dtype', type(y).__name__)}")
        if y.numel() and (int(y.min()) < 0 or int(y.max()) >= num_classes):
            raise ValueError(f"label_flip needs labels in [0, {num_classes}), got values in "
                             f"[{int(y.min())}, {int(y.max())}]")
        return x, num_classes - 1 - y
