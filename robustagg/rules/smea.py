from .. import functional as F
from .registry import register_rule
from .subset_search import SubsetSearchRule


@register_rule("smea")
class SMEA(SubsetSearchRule):
    """Smallest-maximum-eigenvalue averaging (n ≥ 2f + 1); ``selected`` holds the n - f
    averaged indices, ``max_subsets`` the most subsets, C(n, f), a call may search. See
    :func:`robustagg.functional.smea`."""

    search = staticmethod(F.smea)
