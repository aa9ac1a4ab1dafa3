"""DBA: the global trigger split into local triggers, one per Byzantine worker; their union is
the global trigger."""
import pytest
import torch

from attacks import DBA, Backdoor
from attacks import trigger as T


def test_local_triggers_are_the_papers_bars_and_cover_the_global_one():
    x = torch.zeros(4, 784)
    parts = [DBA(poison_frac=1.0).for_worker(i, 10) for i in range(6, 10)]
    assert [p.part for p in parts] == [2, 3, 0, 1]  # worker id mod parts
    union = torch.zeros(4, 784)
    for p in sorted(parts, key=lambda p: p.part):
        xp, yp = p.poison_batch(x, torch.ones(4, dtype=torch.long), 10)
        img = xp[0].view(28, 28)
        on = img.nonzero().tolist()
        # part k of the 4x4 patch at rows/cols 22..25 is row 22 + k: a 1x4 bar
        assert on == [[22 + p.part, c] for c in range(22, 26)]
        assert (yp == 0).all()
        union = torch.maximum(union, xp)
    assert torch.equal(union, Backdoor().trigger(x))
    assert torch.equal(DBA().trigger(x), Backdoor().trigger(x))  # judged on the global trigger


def test_digits_parts_are_pixels_and_split_is_even():
    pix = T.pixels(8, 8)
    assert pix == [(6, 6), (6, 7), (7, 6), (7, 7)]
    assert T.split(pix, 4) == [[p] for p in pix]
    assert T.split(list(range(16)), 3) == [list(range(0, 5)), list(range(5, 11)),
                                           list(range(11, 16))]
    with pytest.raises(ValueError, match="splits into 1..4 parts"):
        DBA(parts=5).poison_batch(torch.zeros(2, 64), torch.zeros(2, dtype=torch.long), 10)
    with pytest.raises(ValueError, match="part in \\[0, parts=4\\)"):
        DBA(part=4)
