"""``ranks``: one spawn of 5 gloo ranks running every scenario of ``scenarios.py`` (spawning is
the expensive part on a shared machine), shared by the tests of this folder."""
import pytest

from .scenarios import WORLD, all_scenarios
from .spawn import run_ranks


@pytest.fixture(scope="session")
def ranks():
    """What each rank returned from ``all_scenarios``, indexed by rank."""
    return run_ranks(all_scenarios, WORLD)
