"""Runs that look like replicate injections while the sheet counts them as samples (modelling.replicates)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import polars as pl

from ms2study.modelling.qc import qc_table
from ms2study.modelling.replicates import replicate_groups, with_replicate_notes
from ms2study.reporting.html import DOUBT, kind_of
from ms2study.reporting.qc import qc_section


def _runs(seed: int, n: int, bio: float = 0.4, tech: float = 0.1, reps: int = 1, p: int = 600) -> np.ndarray:
    """n runs of n // reps subjects (runs of a subject adjacent), two groups differing in 30 features 3x."""
    rng = np.random.default_rng(seed)
    n_sub = n // reps
    subjects = rng.normal(0, bio, (n_sub, p))
    subjects[: n_sub // 2, :30] += np.log(3)
    return rng.normal(12, 1.5, p) + subjects[np.repeat(np.arange(n_sub), reps)] + rng.normal(0, tech, (n, p))


def test_pairs_and_triplets_of_replicates_are_found_and_clean_studies_are_not_flagged() -> None:
    ids = [f"S{i:02d}" for i in range(12)]
    for seed in range(20):  # measured: no clean study of 100 flagged per setting (module docstring)
        assert replicate_groups(_runs(seed, 12), ids) == []
    groups = replicate_groups(_runs(1, 12, reps=2), ids)
    assert [g[0] for g in groups] == [[ids[2 * k], ids[2 * k + 1]] for k in range(6)]
    assert all(inside < 0.6 * outside for _, inside, outside in groups)
    groups = replicate_groups(_runs(2, 12, reps=3), ids)
    assert [g[0] for g in groups] == [ids[3 * k: 3 * k + 3] for k in range(4)]
    # every run of a reported group sees the same runs set apart: none lies nearer to a run outside it (a trial's
    # study had a pair named from inside a trio whose third run was about as near)
    for seed in range(10):
        for reps in (2, 3):
            for _, inside, outside in replicate_groups(_runs(seed, 12, bio=0.2, tech=0.15, reps=reps), ids):
                assert inside < outside
    # runs the sheet already gives one subject are not reported; fewer than 6 runs are not checked
    assert replicate_groups(_runs(1, 12, reps=2), ids, {s: f"P{i // 2}" for i, s in enumerate(ids)}) == []
    assert replicate_groups(_runs(1, 4, reps=2), ids[:4]) == []


def test_a_study_with_unmarked_replicates_gets_a_caution_on_its_tests_and_models(tmp_path: Path) -> None:
    ids = [f"S{i:02d}" for i in range(8)] + ["QC1"]
    X = np.vstack([_runs(3, 8), _runs(4, 1)])
    X[1] = X[0] + np.random.default_rng(5).normal(0, 0.05, X.shape[1])  # S01 is a second injection of S00
    matrix = pl.DataFrame({"consensus_id": [f"C{j}" for j in range(X.shape[1])],
                           **{s: np.exp(X[k]) for k, s in enumerate(ids)}})
    sheet = pl.DataFrame({"sample_id": ids, "file": [f"{s}.mzML" for s in ids],
                          "sample_type": ["sample"] * 8 + ["qc"]})
    table = with_replicate_notes(qc_table(sheet, {s: {} for s in ids}, None, matrix), sheet, matrix)
    notes = dict(zip(table["sample_id"].to_list(), table["run_note"].to_list()))
    assert notes["S00"].startswith("much closer to S01 than to any other run (distance ")
    assert "replicate injections of one sample? If so, give them one subject_id" in notes["S01"]
    assert all(notes[s] is None for s in ids[2:])
    table.write_parquet(tmp_path / "qc.parquet")
    warnings: list = []
    qc_section(tmp_path / "qc.parquet", [], ids, warnings)
    caution = [w for w in warnings if "possible replicate injections" == getattr(w, "label", None)]
    assert len(caution) == 1 and kind_of(caution[0]) == DOUBT and set(caution[0].concerns) == {"models",
                                                                                               "differential"}
    assert "study runs S00, S01 each lie much closer" in caution[0]
    # with subject_id giving them one subject, nothing is said
    marked = sheet.with_columns(pl.Series("subject_id", ["P0", "P0"] + [None] * 7))
    assert with_replicate_notes(qc_table(marked, {s: {} for s in ids}, None, matrix), marked, matrix)[
        "run_note"].null_count() == len(ids)


def test_one_odd_run_does_not_turn_the_check_off_for_all() -> None:
    """A trial: an MS1-only run beside two byte-identical pairs left no feature detected in every run, so the check
    said nothing at all. The run detecting the fewest features is now left out of the check, with a note."""
    ids = [f"S{i:02d}" for i in range(8)] + ["ODD"]
    X = np.vstack([_runs(3, 8), _runs(4, 1)])
    X[1] = X[0] + np.random.default_rng(5).normal(0, 0.05, X.shape[1])  # S01 is a second injection of S00
    values = np.exp(X)
    values[8, 20:] = np.nan  # the odd run detects 20 of the 600 features
    matrix = pl.DataFrame({"consensus_id": [f"C{j}" for j in range(X.shape[1])],
                           **{s: values[k] for k, s in enumerate(ids)}})
    sheet = pl.DataFrame({"sample_id": ids, "file": [f"{s}.mzML" for s in ids]})
    table = with_replicate_notes(qc_table(sheet, {s: {} for s in ids}, None, matrix), sheet, matrix)
    notes = dict(zip(table["sample_id"].to_list(), table["run_note"].to_list()))
    assert notes["S00"].startswith("much closer to S01") and notes["S01"].startswith("much closer to S00")
    assert notes["ODD"].startswith("left out of the replicate check: it shares too few features")
    assert all(notes[s] is None for s in ids[2:8])


def test_the_replicate_check_benchmark_writes_its_rates(tmp_path: Path) -> None:
    import json

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    module = __import__("replicate_check")
    assert module.main(["--out", str(tmp_path / "r.json"), "--quick"]) == 0
    rows = json.loads((tmp_path / "r.json").read_text())["rows"]
    plain = [r for r in rows if r["setting"].startswith("two groups")]
    assert len(plain) == 4 and all(r["clean_studies_flagged"] == 0 for r in plain)
    assert all(r["replicate_pairs_found"]["tech_sd_0.1_runs_2"] == 1.0 for r in plain if r["biological_sd"] == 0.4)
