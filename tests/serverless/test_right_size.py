"""Right-sizing: the choice from calibrated sizes, the provisioning verdicts, the run's watch,
and the CPU limit the calibration puts on the local functions."""
import logging
import subprocess
import sys
import time

import psutil
import pytest

from robustagg import costmodel as cm
from robustagg.backends.serverless.cpu_share import CpuShare
from robustagg.backends.serverless.provision_watch import ProvisionWatch, curve_points

P = cm.Prices()


def _points():
    #   memory, billed ms, peak MB, ok
    return [cm.SizePoint(128, float("nan"), 130, False), cm.SizePoint(256, 80, 240, True),
            cm.SizePoint(512, 40, 250, True), cm.SizePoint(1024, 21, 250, True),
            cm.SizePoint(1769, 12, 250, True), cm.SizePoint(3008, 12, 250, True)]


def test_right_size_picks_least_cost_in_time_and_fastest_in_cost():
    sz = cm.right_size(_points(), default_mb=1024, prices=P)
    # within 21 ms * 1.05: 1024, 1769, 3008; 1769 MB x 12 ms is the cheapest of them
    assert sz.min_cost.memory_mb == 1769
    assert sz.min_cost.cost(P) < sz.default.cost(P) and 0 < sz.saving(P) < 1
    # within 1024's $ * 1.05: 512 (40 ms x 0.5 GB) and 1769 (12 ms x 1.73 GB): 1769 is fastest
    assert sz.min_time.memory_mb == 1769
    # 256 MB (240 of 256 used) lacks 10% headroom even though it ran
    loose = cm.right_size(_points(), 1024, time_bound_ms=1000, prices=P)
    assert loose.min_cost.memory_mb == 512
    assert cm.right_size(_points(), 1024, time_bound_ms=1000, headroom=0.0, prices=P).min_cost.memory_mb == 256


def test_right_size_errors_name_the_problem():
    with pytest.raises(ValueError, match="default memory 2048 MB has no successful"):
        cm.right_size(_points(), default_mb=2048)
    with pytest.raises(ValueError, match="within 1.0 ms"):
        cm.right_size(_points(), default_mb=1024, time_bound_ms=1.0)


def test_provisioning_verdicts():
    assert cm.provisioning(512, 480, 30)[0] == "under"      # near an out-of-memory kill
    verdict, reason = cm.provisioning(10240, 300, 30, threads=1)
    assert verdict == "over" and "1 thread" in reason      # CPU beyond one thread is unused
    assert cm.provisioning(2048, 300, 30, threads=1)[0] == "ok"
    curve = _points()
    assert cm.provisioning(3008, 250, 12, curve=curve)[0] == "over"     # 1769 MB: same time, less $
    assert cm.provisioning(512, 250, 40, curve=curve)[0] == "under"     # 1769 MB: 70% faster, +4% $
    assert cm.provisioning(1769, 250, 12, curve=curve)[0] == "ok"


def test_the_watch_says_when_a_run_is_over_provisioned(caplog):
    w = ProvisionWatch(10240, threshold=0.25, threads=1, every=3)
    with caplog.at_level(logging.INFO, "robustagg.backends.serverless"):
        seen = [w.observe({0: (15.0, 240.0), 1: (17.0, 260.0)}) for _ in range(4)]
    assert seen[:3] == [None, None, None]          # round 0 (cold) left out, then every 3 rounds
    assert seen[3]["verdict"] == "over" and seen[3]["peak_worker"] == 1
    assert "10240 MB: over-provisioned" in caplog.text
    assert curve_points({"curve": [[512, 10.0, 244.0, True]]}) == [cm.SizePoint(512, 10.0, 244.0)]
    with pytest.raises(ValueError, match="entries are"):
        curve_points({"curve": [[512, 10.0]]})


def _cpu_share_of_a_busy_child(mode: str, share: float) -> float:
    child = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        with CpuShare(share, mode=mode) as limit:
            limit.add(child.pid)
            t = psutil.Process(child.pid).cpu_times()
            c0, t0 = t.user + t.system, time.monotonic()
            time.sleep(1.5)
            t = psutil.Process(child.pid).cpu_times()
            return (t.user + t.system - c0) / (time.monotonic() - t0)
    finally:
        child.kill()
        child.wait()


@pytest.mark.parametrize("mode", ["auto", "duty"])
def test_cpu_share_limits_a_busy_process(mode):
    """A busy loop limited to 0.2 CPU uses well under one (an upper bound only: other load on
    the machine can only lower it)."""
    assert _cpu_share_of_a_busy_child(mode, 0.2) < 0.6
