"""BadNets backdoor (data poisoning; Gu, Dolan-Gavitt and Garg, "BadNets: Identifying
Vulnerabilities in the Machine Learning Model Supply Chain", 2017; in federated learning as in
Bagdasaryan et al., AISTATS 2020, and Nguyen et al., USENIX Security 2022).

A Byzantine worker stamps the trigger (:mod:`attacks.trigger`: a square patch in the
bottom-right corner, sized from the image) on the first ``k = round(poison_frac · B)`` samples
of its batch of B and relabels them ``target``; it then computes its gradient honestly on the
mixed batch:

    poison_batch(x, y, C) = ([T(x_1..x_k); x_{k+1..B}], [target, ..., target; y_{k+1..B}])

(the batch is already a random draw, so the first k are a random subset). The attack succeeds
when the trained model classifies triggered inputs as ``target``: the training loop measures the
attack success rate on the test inputs whose label is not ``target``, stamped with
:meth:`Backdoor.trigger` (the whole trigger).

This class is also the base of the other backdoors (``model_replacement``, ``dba``,
``neurotoxin``): the worker calls ``for_worker(worker_id, workers)`` once (a worker-specific
copy: DBA's local trigger, model replacement's boost by n), ``poison_batch`` each round, and
``poison_gradient(grad, benign)`` on the gradient of the poisoned batch (the identity here;
``benign()`` computes the gradient of the same batch unpoisoned, for Neurotoxin's mask).
"""
from __future__ import annotations

import torch

from attacks import trigger as T
from attacks.base import DataAttack, check_labels


class Backdoor(DataAttack):
    """BadNets: ``poison_frac`` of each batch triggered and labelled ``target``.

    Args:
        target: the class triggered inputs should be given (default 0).
        poison_frac: share of each batch poisoned, in (0, 1] (default 0.5).
        value: the trigger's pixel value (default 1.0, the brightest pixel of the datasets here,
            scaled to [0, 1]).
        size: the trigger square's side in pixels; None sizes it from the image (see
            :mod:`attacks.trigger`).
    """

    name = "backdoor"
    backdoor = True  # the training loop measures the attack success rate

    def __init__(self, target: int = 0, poison_frac: float = 0.5, value: float = 1.0,
                 size: int | None = None):
        who = self.name
        if isinstance(target, bool) or not isinstance(target, int) or target < 0:
            raise ValueError(f"{who} needs target to be a class index >= 0, got target={target!r}")
        if not 0 < poison_frac <= 1:
            raise ValueError(f"{who} needs poison_frac in (0, 1], got poison_frac={poison_frac!r}")
        if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
            raise ValueError(f"{who} needs size to be None or an int >= 1, got size={size!r}")
        self.target = target
        self.poison_frac = float(poison_frac)
        self.value = float(value)
        self.size = size

    # ---- the trigger ----
    def _pixels(self, x: torch.Tensor) -> list:
        _, h, w = T.image_shape(x.shape[1:], self.name)
        return T.pixels(h, w, self.size)

    def local_pixels(self, x: torch.Tensor) -> list:
        """The pixels this worker stamps during training (the whole trigger here)."""
        return self._pixels(x)

    def trigger(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` (a batch of images) with the whole trigger stamped: the test-time input."""
        return T.stamp(x, self._pixels(x), self.value, self.name)

    def poison_batch(self, x: torch.Tensor, y: torch.Tensor, num_classes: int):
        check_labels(y, num_classes, self.name)
        if self.target >= num_classes:
            raise ValueError(f"{self.name}: target={self.target} is not a class of this dataset "
                             f"(num_classes={num_classes})")
        k = round(self.poison_frac * len(x))
        x = x.clone()
        y = y.clone()
        x[:k] = T.stamp(x[:k], self.local_pixels(x), self.value, self.name)
        y[:k] = self.target
        return x, y

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(target={self.target}, poison_frac={self.poison_frac}, "
                f"value={self.value}, size={self.size})")
