"""benchmarks/cohort_linking.py: a sample feature takes the compound whose [M+H]+ it is in its own run, with the
number of candidates, so that mislinking is judged only where the truth is unambiguous."""

from __future__ import annotations

import sys
from pathlib import Path

import polars as pl

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

import cohort_linking  # noqa: E402


def test_own_compounds_match_within_ppm_and_rt_and_count_the_candidates() -> None:
    truth = pl.DataFrame({"compound_id": ["A", "B", "C", "D"], "mz": [200.0, 200.0005, 300.0, 400.0],
                          "rt_s": [100.0, 104.0, 50.0, 80.0], "abundance": [1e5, 3e5, 1e4, 1e4],
                          "present": [True, True, True, False]})
    features = pl.DataFrame({"feature_id": ["f1", "f2", "f3", "f4", "f5"],
                             "mz": [200.0002, 300.0004, 300.0, 400.0, 200.0],
                             "rt_s": [101.0, 51.0, 70.0, 80.0, 150.0]})
    out = cohort_linking.own_compounds(features, truth)
    rows = {r["feature_id"]: (r["own_compound"], r["own_candidates"]) for r in out.iter_rows(named=True)}
    assert rows["f1"] == ("B", 2)          # two co-eluting isomers within 10 ppm and 8 s: the larger, ambiguous
    assert rows["f2"] == ("C", 1)          # 1.3 ppm, 1 s
    assert rows["f3"] == (None, 0)         # 20 s away
    assert rows["f4"] == (None, 0)         # D is not present in this run
    assert rows["f5"] == (None, 0)
