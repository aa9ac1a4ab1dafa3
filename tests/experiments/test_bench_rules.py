"""experiments.bench_rules: every registered rule gets a time or the reason it has none, and the
ByzFL column says why it is blank when ByzFL cannot be loaded."""
import robustagg as ra
from experiments import bench_rules


def test_every_rule_is_timed_or_explained():
    rows, why = bench_rules.bench([(11, 9)], repeat=1, progress=False)
    names = {r[0] for r in rows}
    classes = {cls.name for cls in ra.rules.registry.rule_classes().values()}
    assert names == classes
    for name, n, d, ours, theirs, note in rows:
        assert ours is not None or note, name
    text = bench_rules.markdown(rows, why)
    assert "| krum | 11 | 9 |" in text
    if why is not None:
        assert text.startswith("ByzFL not timed: ")
