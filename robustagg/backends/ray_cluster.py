"""Starting, joining and stopping Ray under the project's rules: loopback only, bounded connect,
stopped by PID (never `ray stop`, which would kill every Ray on the machine).

A local Ray binds every part to 127.0.0.1, has no dashboard, no usage stats, a short temp
dir (Unix socket paths are limited to ~107 characters), a pinned object store and a fixed
CPU count. Joining an existing cluster first probes its GCS port with a timeout, because
``ray.init(address=...)`` with nothing listening retries for minutes.
"""
import os
import signal
import subprocess
import sys
import tempfile
import time

import psutil

from .net import LOOPBACK, free_port, probe

# Read by every Ray process at start; set before ray.init / `ray start`.
RAY_ENV = {
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_AUTH_MODE": "disabled",
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
}


def ray_env(base=None):
    """``base`` (default ``os.environ``) plus the variables that keep Ray local and quiet."""
    env = dict(os.environ if base is None else base)
    env.update(RAY_ENV)
    return env


def short_temp_dir(prefix="ra_"):
    """A new directory ``/tmp/<prefix>XXXXXXXX`` (well under 45 characters)."""
    return tempfile.mkdtemp(prefix=prefix, dir="/tmp")


def _import_ray_local():
    """Import ray with RAY_ENV in effect (ray reads the loopback switch once, at import)."""
    os.environ.update(RAY_ENV)
    import ray
    from ray._private import ray_constants

    # Imported earlier without the variable: without this, Ray maps 127.0.0.1 to the
    # interface address and its GCS listens there.
    ray_constants.ENABLE_RAY_CLUSTER = False
    return ray


def start_local(num_cpus=2, object_store_mb=300, temp_dir=None):
    """Start an in-process local Ray on 127.0.0.1; returns its GCS address ``host:port``."""
    ray = _import_ray_local()
    if num_cpus < 1:
        raise ValueError(f"num_cpus must be >= 1, got num_cpus={num_cpus}")
    if object_store_mb < 80:
        raise ValueError(f"object_store_mb must be >= 80 (Ray's minimum), got object_store_mb={object_store_mb}")
    temp_dir = temp_dir or short_temp_dir()
    if len(temp_dir) > 45:
        raise ValueError(f"Ray temp_dir must be at most 45 characters, got {temp_dir!r} ({len(temp_dir)})")
    ctx = ray.init(
        num_cpus=num_cpus,
        object_store_memory=int(object_store_mb) * 1024 * 1024,
        include_dashboard=False,
        _node_ip_address=LOOPBACK,
        _temp_dir=temp_dir,
        log_to_driver=False,
        configure_logging=False,
    )
    _start_reaper(temp_dir)
    return ctx.address_info["address"]


_REAPER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "ray_reaper.py")
_reapers = []  # (process, write end): the write end closes when this process ends


def _start_reaper(temp_dir):
    """Start ``ray_reaper.py`` for the instance in ``temp_dir``: it stops the instance's
    leftover processes (the agents Ray leaves orphaned for up to a minute) when this process
    ends, even by SIGKILL, or when the instance is shut down."""
    for proc, fd in list(_reapers):  # those of instances shut down before have exited
        if proc.poll() is not None:
            os.close(fd)
            _reapers.remove((proc, fd))
    read_end, write_end = os.pipe()  # not inherited by Ray's processes (PEP 446)
    proc = subprocess.Popen([sys.executable, _REAPER, temp_dir, str(os.getpid())],
                            stdin=read_end, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    os.close(read_end)
    _reapers.append((proc, write_end))


def connect(address, timeout_s=15.0):
    """Join the running cluster at ``address`` ("auto" or "host:port"); returns its address.

    Fails within ``timeout_s`` with a clear message when nothing answers there.
    """
    os.environ.update(RAY_ENV)
    import ray

    resolved = address
    if address == "auto":
        from ray._private.services import canonicalize_bootstrap_address_or_die

        # Ray's own "auto": RAY_ADDRESS, the last `ray start`, else the one running GCS.
        resolved = canonicalize_bootstrap_address_or_die("auto")
    host, _, port = resolved.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f'address must be "auto" or "host:port", got address={address!r}')
    from ray._private import ray_constants

    if ray_constants.ENABLE_RAY_CLUSTER and host in (LOOPBACK, "localhost"):
        # Ray read RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER when it was first imported; with clusters
        # enabled it replaces a loopback host by this machine's address and retries for ever.
        raise RuntimeError(f"connect({address!r}): ray was imported before connect() without "
                           f"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0, so it would not reach a cluster "
                           f"on {host}; call connect() before importing ray, or set that "
                           f"variable in the environment")
    if not probe(host, port, timeout_s):
        raise ConnectionError(f"no Ray cluster answers at address={resolved!r} within {timeout_s} s")
    ray.init(address=resolved, log_to_driver=False, configure_logging=False)
    return resolved


def ensure_ray(address=None, num_cpus=2, object_store_mb=300, connect_timeout_s=15.0):
    """Make sure this process is connected to Ray. Returns ``(address, started_here)``.

    An already initialised Ray (for example the test suite's) is reused; ``address=None``
    starts a local one; otherwise the cluster at ``address`` is joined. ``started_here`` tells
    the caller whether it must call ``ray.shutdown()`` when done.
    """
    import ray

    if ray.is_initialized():
        return ray.get_runtime_context().gcs_address, False
    if address is None:
        return start_local(num_cpus=num_cpus, object_store_mb=object_store_mb), True
    return connect(address, timeout_s=connect_timeout_s), True


def start_head(num_cpus=2, object_store_mb=200, temp_dir=None, timeout_s=180.0):
    """``ray start --head --node-ip-address=127.0.0.1`` on a free port, in a subprocess (a
    cluster other processes join by address). Returns ``(address, temp_dir)``; stop it with
    :func:`stop_head` (``temp_dir`` names its processes)."""
    ray_bin = os.path.join(os.path.dirname(sys.executable), "ray")
    port, temp_dir = free_port(), temp_dir or short_temp_dir("ra_head_")
    subprocess.run([ray_bin, "start", "--head", f"--node-ip-address={LOOPBACK}", f"--port={port}",
                    f"--num-cpus={num_cpus}", f"--object-store-memory={object_store_mb * 2**20}",
                    f"--temp-dir={temp_dir}", "--include-dashboard=false", "--disable-usage-stats"],
                   env=ray_env(), check=True, capture_output=True, timeout=timeout_s)
    return f"{LOOPBACK}:{port}", temp_dir


def processes_of(temp_dir, extra=()):
    """PIDs of the processes whose command line names ``temp_dir`` (the Ray daemons of that
    instance), their descendants (its workers), and ``extra``."""
    found = set(extra)
    for p in psutil.process_iter(["cmdline"]):
        if temp_dir in " ".join(p.info["cmdline"] or ()):
            found.add(p.pid)
    for pid in list(found):
        try:
            found.update(c.pid for c in psutil.Process(pid).children(recursive=True))
        except psutil.Error:  # gone meanwhile
            pass
    return found


def stop_head(temp_dir, grace_s=2.0):
    """Stop the Ray instance whose processes name ``temp_dir``: SIGTERM, then SIGKILL."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in processes_of(temp_dir):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        if sig == signal.SIGTERM:
            time.sleep(grace_s)
