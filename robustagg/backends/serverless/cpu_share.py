"""CPU share for local functions, scaled as Lambda scales it with memory (one vCPU per 1,769 MB).

Lambda gives a function CPU in proportion to its memory; the local runtime's processes would
otherwise get whole cores. :class:`CpuShare` limits a set of processes to ``share`` CPUs:

* ``"cgroup"`` (when this process may create cgroups, e.g. as root): a cgroup with a CFS quota
  of ``share x period`` per ``period`` (cgroup v1 ``cpu.cfs_quota_us``, or v2 ``cpu.max``),
  the mechanism Lambda's own sandboxes are limited by;
* ``"duty"`` (otherwise): a duty cycle, the processes stopped (``SIGSTOP``) for
  ``(1 - share) x period`` of every ``period`` and continued for the rest. With one torch
  thread per worker (the handler's default) a process never uses more than one CPU, so shares
  of 1 and above need no limit: that is the "threads" half of the emulation.

``mode`` says which one is in force; :meth:`watch` adds every new descendant process whose
command line holds a given string (the local runtime's ``awslambdaric`` environments).
"""
from __future__ import annotations

import os
import threading
import time
import uuid

import psutil

_V1 = "/sys/fs/cgroup/cpu"
_V2 = "/sys/fs/cgroup"


def _make_cgroup(share: float, period_us: int) -> str | None:
    """A new cgroup limited to ``share`` CPUs; its directory, or None where none can be made."""
    name = f"robustagg-{uuid.uuid4().hex[:8]}"
    quota = max(1000, int(share * period_us))
    try:
        if os.path.exists(os.path.join(_V1, "cpu.cfs_quota_us")):
            path = os.path.join(_V1, name)
            os.mkdir(path)
            with open(os.path.join(path, "cpu.cfs_period_us"), "w") as f:
                f.write(str(period_us))
            with open(os.path.join(path, "cpu.cfs_quota_us"), "w") as f:
                f.write(str(quota))
            return path
        with open(os.path.join(_V2, "cgroup.controllers")) as f:
            if "cpu" not in f.read().split():
                return None
        path = os.path.join(_V2, name)
        os.mkdir(path)
        with open(os.path.join(path, "cpu.max"), "w") as f:
            f.write(f"{quota} {period_us}")
        return path
    except OSError:
        return None


class CpuShare:
    """Limit processes to ``share`` CPUs (``mode``: ``"auto"``, ``"cgroup"`` or ``"duty"``)."""

    def __init__(self, share: float, period_s: float = 0.1, mode: str = "auto"):
        if share <= 0:
            raise ValueError(f"CPU share must be > 0, got {share}")
        if mode not in ("auto", "cgroup", "duty"):
            raise ValueError(f"mode must be 'auto', 'cgroup' or 'duty', got {mode!r}")
        self.share, self.period_s = share, period_s
        self.pids: set[int] = set()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self.cgroup = None
        if mode in ("auto", "cgroup"):
            self.cgroup = _make_cgroup(share, int(period_s * 1e6))
            if self.cgroup is None and mode == "cgroup":
                raise OSError("cannot create a cgroup here (needs root and a writable cpu controller)")
        self.mode = "cgroup" if self.cgroup else "duty"
        if self.mode == "duty" and share < 1:
            self._spawn(self._duty_cycle)

    def _spawn(self, target, *args):
        t = threading.Thread(target=target, args=args, daemon=True)
        t.start()
        self._threads.append(t)

    def add(self, pid: int) -> None:
        """Limit process ``pid`` (its threads too) from now on."""
        with self._lock:
            if pid in self.pids:
                return
            self.pids.add(pid)
        if self.cgroup:
            try:
                with open(os.path.join(self.cgroup, "cgroup.procs"), "w") as f:
                    f.write(str(pid))
            except OSError:  # the process ended already
                pass

    def watch(self, match: str, interval_s: float = 0.02) -> "CpuShare":
        """Add, every ``interval_s``, each descendant of this process whose command line holds
        ``match``."""
        self._spawn(self._watch, match, interval_s)
        return self

    def _watch(self, match: str, interval_s: float):
        me = psutil.Process()
        while not self._stop.is_set():
            for p in me.children(recursive=True):
                try:
                    if p.pid not in self.pids and any(match in part for part in p.cmdline()):
                        self.add(p.pid)
                except psutil.Error:
                    pass
            time.sleep(interval_s)

    def _signal_all(self, stop: bool):
        with self._lock:
            pids = list(self.pids)
        for pid in pids:
            try:
                p = psutil.Process(pid)
                p.suspend() if stop else p.resume()
            except psutil.Error:
                with self._lock:
                    self.pids.discard(pid)

    def _duty_cycle(self):
        on, off = self.share * self.period_s, (1 - self.share) * self.period_s
        while not self._stop.is_set():
            time.sleep(on)
            self._signal_all(stop=True)
            time.sleep(off)
            self._signal_all(stop=False)

    def close(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(1.0)
        if self.mode == "duty":
            self._signal_all(stop=False)
        if self.cgroup:  # move what is left back to the root group, then remove ours
            root = os.path.dirname(self.cgroup)
            try:
                with open(os.path.join(self.cgroup, "cgroup.procs")) as f:
                    left = f.read().split()
                for pid in left:
                    with open(os.path.join(root, "cgroup.procs"), "w") as f:
                        f.write(pid)
                os.rmdir(self.cgroup)
            except OSError:
                pass
            self.cgroup = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
