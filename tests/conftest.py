"""Shared fixtures. ``ray_local``: one local Ray for the whole test session.

It follows the project's Ray rules (127.0.0.1 only, dashboard off, usage stats off, short temp
dir, pinned object store, 2 CPUs) and is shut down at the end of the session. Tests that need
Ray take the fixture; code under test that calls ``robustagg.backends.ray_cluster.ensure_ray``
reuses it instead of starting another instance.
"""
import pytest


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
