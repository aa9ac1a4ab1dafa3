"""Stops what is left of a local Ray instance once the process that started it is gone.

``python ray_reaper.py <temp_dir> <driver pid>``, started by
:func:`robustagg.backends.ray_cluster.start_local` with a pipe from the driver as its stdin.
Ray's own processes fate-share with the driver (the kernel kills its GCS and raylet when the
driver dies), but when the raylet dies without SIGTERM its DashboardAgent and RuntimeEnvAgent
first try to report the death to the (dead) GCS and wait up to 60 s for it, orphaned to PID 1,
one of them still listening on 127.0.0.1. Ray 2.60 has no public switch to start a node
without these agents.

This script records, every 2 s, the processes of the instance: the driver's descendants whose
command line names ``temp_dir`` and their descendants (workers, agents), each with its start
time. When the pipe closes (the driver ended, however) or the instance's own processes are
gone (a normal ``ray.shutdown``), it sends SIGTERM, then SIGKILL after 2 s, to each recorded
process still running with the same start time (so a reused PID is never hit), and exits.
Only the standard library and psutil: it must start fast and outlive the driver's imports.
"""
import os
import select
import signal
import sys

import psutil

POLL_S = 2.0
GRACE_S = 2.0


def members(temp_dir: str, driver: int) -> tuple[dict, dict]:
    """``(heads, everyone)``, each ``pid -> start time``: the driver's descendants whose command
    line names ``temp_dir`` (the instance's GCS, raylet and monitors), and those with their
    descendants (workers, agents)."""
    heads, everyone = {}, {}
    try:
        procs = psutil.Process(driver).children(recursive=True)
    except psutil.Error:  # the driver is gone
        return heads, everyone
    for p in procs:
        if p.pid == os.getpid():  # this script names temp_dir too
            continue
        try:
            if temp_dir in " ".join(p.cmdline()):
                heads[p.pid] = everyone[p.pid] = p.create_time()
                for c in p.children(recursive=True):
                    everyone[c.pid] = c.create_time()
        except psutil.Error:  # ended meanwhile
            continue
    return heads, everyone


def alive(known: dict) -> list:
    """The recorded processes still running (same PID and start time)."""
    out = []
    for pid, started in known.items():
        try:
            p = psutil.Process(pid)
            if p.create_time() == started and p.status() != psutil.STATUS_ZOMBIE:
                out.append(p)
        except psutil.Error:
            continue
    return out


def stop(known: dict) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        procs = alive(known)
        for p in procs:
            try:
                p.send_signal(sig)
            except psutil.Error:
                pass
        if sig == signal.SIGTERM and procs:
            psutil.wait_procs(procs, timeout=GRACE_S)


def main(temp_dir: str, driver: int) -> None:
    heads, known = members(temp_dir, driver)
    while True:
        ready, _, _ = select.select([sys.stdin], [], [], POLL_S)
        if ready and not os.read(sys.stdin.fileno(), 4096):
            break  # the driver ended
        now_heads, now = members(temp_dir, driver)
        heads.update(now_heads)
        known.update(now)
        if heads and not alive(heads):
            break  # the instance was shut down
    stop(known)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
