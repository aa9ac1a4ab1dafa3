from __future__ import annotations

from .. import functional as F
from .. import inputs
from .base import Rule
from .registry import register_rule


@register_rule("fltrust")
class FLTrust(Rule):
    """FLTrust (any n ≥ 1). Each round, before the call, set ``rule.server_grad`` to the
    server's gradient on its root dataset, in the same form as one worker's gradient (a
    ``Tensor[d]``, a tensor of the gradients' shape, or a dict); the call consumes it, so a
    round without a fresh one fails with a clear error instead of reusing a stale gradient.
    ``weights`` holds the last round's weights. See :func:`robustagg.functional.fltrust`."""

    def __init__(self, f: int = 0):
        super().__init__(f)
        self.server_grad = None
        self.weights = None

    def __call__(self, grads):
        if self.server_grad is None:
            raise ValueError("FLTrust needs the server's gradient of this round: set "
                             "rule.server_grad before calling the rule")
        return super().__call__(grads)

    def aggregate(self, x):
        g0, _ = inputs.flatten([self.server_grad], "FLTrust")
        self.server_grad = None
        out, self.weights = F.fltrust(x, g0.reshape(-1), return_weights=True)
        return out

    def reset(self):
        super().reset()
        self.server_grad = None
        self.weights = None
