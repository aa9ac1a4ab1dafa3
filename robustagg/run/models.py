"""Models for the training loop: ``logreg``, ``mlp``, ``cnn`` (small, for 8×8 or larger images),
``simulated`` (a quadratic whose workers send synthetic gradients, :mod:`.simulated`), or any ``nn.Module`` factory ``factory(input_shape, num_classes, **kwargs)``.

``num_classes == 0`` means regression (one output). Initialization draws from the global torch
RNG inside ``torch.random.fork_rng`` seeded with ``seed``, one build at a time in the process,
so it is reproducible (also for runs side by side in threads) and leaves the caller's RNG state
untouched. The factories' type hints are their settings' schema in the
experiment config.
"""
from __future__ import annotations

import math
import threading
from collections.abc import Sequence

import torch
from torch import nn

from .simulated import NAME as SIMULATED
from .simulated import quadratic_model


def _outputs(num_classes):
    return max(num_classes, 1)


def logreg(input_shape, num_classes):
    """Multinomial logistic regression (linear regression when ``num_classes == 0``)."""
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), _outputs(num_classes)))


def mlp(input_shape, num_classes, hidden: Sequence[int] = (64,)):
    """Fully connected net: Flatten, then Linear+ReLU per entry of ``hidden``, then Linear."""
    layers, width = [nn.Flatten()], math.prod(input_shape)
    for h in hidden:
        layers += [nn.Linear(width, int(h)), nn.ReLU()]
        width = int(h)
    layers.append(nn.Linear(width, _outputs(num_classes)))
    return nn.Sequential(*layers)


def cnn(input_shape, num_classes, channels: Sequence[int] = (16, 32)):
    """Two 3×3 conv+ReLU layers (padding 1), a 2×2 max-pool, then Linear. Flat square inputs
    (64 for digits, 784 for MNIST) are viewed as one-channel images."""
    if len(input_shape) == 1:
        side = math.isqrt(input_shape[0])
        if side * side != input_shape[0]:
            raise ValueError(f"cnn: flat input of {input_shape[0]} features is not a square image")
        input_shape = (1, side, side)
    c, h, w = input_shape
    if h < 2 or w < 2:
        raise ValueError(f"cnn: images must be at least 2×2, got input_shape={input_shape}")
    c1, c2 = channels
    return nn.Sequential(
        nn.Unflatten(1, (c, h, w)),
        nn.Conv2d(c, c1, 3, padding=1), nn.ReLU(),
        nn.Conv2d(c1, c2, 3, padding=1), nn.ReLU(),
        nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(c2 * (h // 2) * (w // 2), _outputs(num_classes)))


MODELS = {"logreg": logreg, "mlp": mlp, "cnn": cnn, SIMULATED: quadratic_model}


# torch's global generator is one per process: two runs building their models in threads of one
# process (servers side by side, threaded workers) would draw from each other's seeds.
_GLOBAL_RNG = threading.Lock()


def build_model(model, input_shape, num_classes, seed=0, **kwargs) -> nn.Module:
    """``model``: a name in :data:`MODELS` or a factory called as
    ``model(input_shape, num_classes, **kwargs)``; initialized from ``seed``."""
    if isinstance(model, str):
        if model not in MODELS:
            raise ValueError(f"unknown model {model!r}; available: {', '.join(sorted(MODELS))} "
                             f"(or pass an nn.Module factory)")
        model = MODELS[model]
    if not callable(model):
        raise TypeError(f"model must be a name or a callable, got {type(model).__name__}")
    with _GLOBAL_RNG, torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = model(tuple(input_shape), num_classes, **kwargs)
    if not isinstance(net, nn.Module):
        raise TypeError(f"model factory returned {type(net).__name__}, not an nn.Module")
    return net


def loss_fn(num_classes):
    """Cross-entropy for classification, mean squared error for regression (``num_classes == 0``)."""
    if num_classes > 0:
        return nn.functional.cross_entropy
    return lambda out, y: nn.functional.mse_loss(out.squeeze(-1), y)
