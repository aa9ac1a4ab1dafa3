"""experiments/attack_table.py on a tiny setting: every row and column, and the cells that
follow from the rules' definitions."""
import math

from experiments.attack_table import ROWS, markdown, table


def test_small_table():
    # a few rows: the rule-tailored ones cost many aggregations (the full table is the script)
    rows = [r for r in ROWS if r[0] in ("none", "gaussian (std 200)", "inf", "nan", "ipm (eps 100)")]
    t = table(n=11, f=2, d=8, m=0.3, trials=1, progress=False, rows=rows)
    assert list(t) == [label for label, _, _ in rows]
    assert all(list(row) == ["Mean", "Median", "Krum", "MultiKrum", "TrimmedMean", "Bulyan",
                             "DnC", "MoNNA", "Meamed", "CGE", "CAF", "SignGuard",
                             "ClippedClustering", "FLAME", "FoolsGold", "FLTrust"]
               for row in t.values())
    assert math.isinf(t["inf"]["Mean"]) and math.isnan(t["nan"]["Mean"])
    # robust rules stay finite under non-finite rows; MultiKrum (m = n - f) then averages
    # exactly the honest rows
    assert all(math.isfinite(v) for k, v in t["inf"].items() if k != "Mean")
    assert t["gaussian (std 200)"]["MultiKrum"] < 1e-9
    assert t["gaussian (std 200)"]["Mean"] > 100
    assert t["ipm (eps 100)"]["Mean"] > t["none"]["Mean"]
    assert "| ipm (eps 100) |" in markdown(t)
