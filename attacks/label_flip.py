"""Label flipping (data poisoning; e.g. Allen-Zhu et al., ICLR 2021, and Karimireddy et al.,
ICML 2021, "Learning from History for Byzantine Robust Optimization").

A Byzantine worker trains on its own batch with every label ``y`` replaced by ``C - 1 - y``
(C classes), then sends the resulting gradient honestly: ``poison_batch(x, y, C) -> (x, C-1-y)``.
"""
from __future__ import annotations

import torch

from attacks.base import DataAttack, check_labels


class LabelFlip(DataAttack):
    """``poison_batch(x: Tensor[B, ...], y: LongTensor[B], num_classes) -> (x, C - 1 - y)``."""

    name = "label_flip"

    def poison_batch(self, x: torch.Tensor, y: torch.Tensor, num_classes: int):
        check_labels(y, num_classes, self.name)
        return x, num_classes - 1 - y
