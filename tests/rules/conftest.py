"""Every rule test runs once per native CPU level (see ``cpu_level`` in tests/conftest.py)."""
import pytest


@pytest.fixture(autouse=True)
def _at_each_cpu_level(cpu_level):
    yield
