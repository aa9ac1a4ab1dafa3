"""Crash and straggle: the two fault hooks the training loop calls."""
import pytest

from attacks import Crash, Straggle


def test_crash():
    c = Crash(round=3)
    assert [c.fails(t) for t in range(5)] == [False, False, False, True, True]
    assert c.delay_s(4) == 0.0 and c.kind == "fault"
    with pytest.raises(ValueError, match="round"):
        Crash(round=-1)


def test_straggle():
    s = Straggle(delay=0.25, start=2)
    assert [s.delay_s(t) for t in range(4)] == [0.0, 0.0, 0.25, 0.25]
    assert not any(s.fails(t) for t in range(4)) and s.kind == "fault"
    with pytest.raises(ValueError, match="delay"):
        Straggle(delay=float("inf"))
