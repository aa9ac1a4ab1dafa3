"""Shared fixtures.

``ray_local``: one local Ray for the whole test session. It follows the project's Ray rules
(127.0.0.1 only, dashboard off, usage stats off, short temp dir, pinned object store, 2 CPUs)
and is shut down at the end of the session. Tests that need Ray take the fixture; code under
test that calls ``robustagg.backends.ray_cluster.ensure_ray`` reuses it instead of starting
another instance.

``cpu_level``: a test that takes it (the native-kernel and rule tests do, through their modules'
``pytestmark`` or conftest) runs once per instruction-set level this CPU can run (avx512, avx2,
base; or only the level ``ROBUSTAGG_CPU_LEVEL`` names), with the native kernels switched to that
level. The summary line at the end says which levels were exercised.
"""
import os

import pytest

from robustagg import kernels

_LEVELS = ([os.environ["ROBUSTAGG_CPU_LEVEL"]] if os.environ.get("ROBUSTAGG_CPU_LEVEL")
           else kernels.cpu_levels()) or ["no-native"]
_EXERCISED: set[str] = set()


def pytest_generate_tests(metafunc):
    if "cpu_level" in metafunc.fixturenames:
        metafunc.parametrize("cpu_level", _LEVELS, indirect=True)


@pytest.fixture
def cpu_level(request):
    """The instruction-set level the native CPU kernels run at during this test."""
    level = request.param
    _EXERCISED.add(level)
    if level == "no-native":
        yield None
        return
    with kernels.use_cpu_level(level):
        yield level


def pytest_terminal_summary(terminalreporter):
    if _EXERCISED:
        runs = ", ".join(kernels.cpu_levels()) or "none (no native extension)"
        exercised = ", ".join(lv for lv in kernels.CPU_LEVELS + ("no-native",) if lv in _EXERCISED)
        terminalreporter.write_line(f"native CPU kernels tested at: {exercised} "
                                    f"(this CPU runs: {runs})")


@pytest.fixture(scope="session")
def ray_local():
    """Address (``127.0.0.1:port``) of the session's local Ray; ``ray`` is initialised."""
    ray = pytest.importorskip("ray")
    from robustagg.backends.ray_cluster import short_temp_dir, start_local

    if ray.is_initialized():  # a test started its own and left it: not ours to reuse
        ray.shutdown()
    address = start_local(num_cpus=2, object_store_mb=300, temp_dir=short_temp_dir("ra_test_"))
    yield address
    ray.shutdown()
