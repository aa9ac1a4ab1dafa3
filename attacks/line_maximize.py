"""Rule-tailored scale search shared by ``optimal_alie`` and ``optimal_ipm``.

The attack's scale factor x (ALIE's z, IPM's epsilon) is chosen each round to maximise

    J(x) = || rule([honest; b(x) repeated f times]) - mu ||_2,     mu = mean(honest),

the distance of the rule's output from the honest mean, as ByzFL's optimal attacks do
(``LineMaximize``: a best-effort line search by exploration, no gradients). From the fixed
attack's own scale x_0 (so the result is never worse than the fixed attack): expansion (step
``delta``, doubled after each improvement) while J improves, then ``evals`` minus the expansion
evaluations contraction steps of shrinking size (``ratio``), kept at ``x >= lower``.
"""
from __future__ import annotations

import math
from typing import Callable, ClassVar

import torch

from attacks.base import ModelAttack, aggregate, repeat_rows


def line_maximize(fn: Callable[[float], float], start: float, evals: int = 16,
                  delta: float = 1.0, ratio: float = 0.8, lower: float = 0.0):
    """Best-effort ``argmax fn(x)`` over ``x >= lower`` from ``start``; returns ``(x, fn(x))``."""
    best_x, best_y = start, fn(start)
    evals -= 1
    x = best_x
    while evals > 0:  # expansion
        x = max(best_x, lower) + delta
        y = fn(x)
        evals -= 1
        if y > best_y:
            best_x, best_y = x, y
            delta *= 2
        else:
            delta *= ratio
            break
    while evals > 0:  # contraction around the best point
        x = x + delta if x < best_x else max(x - delta, lower)
        y = fn(x)
        evals -= 1
        if y > best_y:
            best_x, best_y = x, y
        delta *= ratio
    return best_x, best_y


class OptimalScale(ModelAttack):
    """Base of the rule-tailored attacks: ``b(x)`` from ``vector(honest, x)``, x by
    ``line_maximize`` against the rule passed to the call. After a call, ``scale`` holds x and
    ``distance`` the J(x) reached. Subclasses define ``prepare`` (the per-round statistics,
    computed once), ``vector`` and ``start``.
    """

    needs: ClassVar = frozenset({"honest", "rule"})

    def __init__(self, *, evals: int = 16, delta: float = 1.0, ratio: float = 0.8,
                 omniscient: bool = True):
        super().__init__(omniscient=omniscient)
        if not (isinstance(evals, int) and evals >= 1 and delta > 0 and 0.5 < ratio < 1):
            raise ValueError(f"{self.name} needs evals >= 1, delta > 0 and 0.5 < ratio < 1, "
                             f"got evals={evals!r}, delta={delta!r}, ratio={ratio!r}")
        self.evals, self.delta, self.ratio = evals, float(delta), float(ratio)
        self.scale = self.distance = None

    def prepare(self, honest: torch.Tensor):
        """What ``vector`` needs from ``honest`` (e.g. its mean), computed once per call."""
        raise NotImplementedError

    def vector(self, stats, x: float) -> torch.Tensor:
        """The Byzantine vector ``Tensor[d]`` at scale ``x``."""
        raise NotImplementedError

    def start(self, h: int, f: int) -> float:
        raise NotImplementedError

    def _forge(self, honest, f, rule):
        mu = honest.to(torch.float64).mean(dim=0)
        stats = self.prepare(honest)

        def distance(x: float) -> float:
            byz = repeat_rows(self.vector(stats, x).to(honest.dtype), f)
            y = float((aggregate(rule, honest, byz).to(torch.float64) - mu).norm())
            return y if math.isfinite(y) else -math.inf

        self.scale, self.distance = line_maximize(distance, self.start(honest.shape[0], f),
                                                  self.evals, self.delta, self.ratio)
        return repeat_rows(self.vector(stats, self.scale), f)
