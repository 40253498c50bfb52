"""A failed run (a failed injection: a small part of the features detected) is left out of the tests and models.

Trial J (session 36): one failed run kept in a study filled most features with gap-filled values near the detection
limit, and every planted difference was lost; the QC table flagged the run, the tests kept it. The tests and the
models now leave out the study samples that the QC table's rule flags as failed (``modelling.runchecks.failed_runs``,
counted on the linked matrix), and say so."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl

from ms2study.cli import main as cli_main
from ms2study.modelling.outcomes import without_empty_runs
from ms2study.modelling.qc import qc_table
from ms2study.modelling.runchecks import failed_runs
from ms2study.stages import differential

N_FEATURES, N_CHANGED = 60, 6


def _study(tmp_path: Path, seed: int = 0) -> tuple[list[str], str]:
    """12 study samples (case / control alternating) and 2 pooled QCs; features C0-C5 3x higher in cases. One case,
    S03, is a failed injection: detection found 5 of its unchanged features (linked matrix), and gap filling gave the rest
    values near the detection limit (corrected matrix). Writes samples.tsv, raw.parquet, corrected.parquet; returns
    (the study sample ids, the failed run)."""
    rng = np.random.default_rng(seed)
    ids = [f"S{i:02d}" for i in range(12)] + ["QC1", "QC2"]
    kinds = ["sample"] * 12 + ["qc"] * 2
    group = ["case" if i % 2 else "control" for i in range(12)] + ["", ""]
    pl.DataFrame({"sample_id": ids, "file": [f"{s}.mzML" for s in ids], "group": group, "sample_type": kinds,
                  "injection_order": [str(i + 1) for i in range(len(ids))]}).write_csv(
        tmp_path / "samples.tsv", separator="\t")
    case = np.array([g == "case" for g in group])
    values = rng.lognormal(12, 0.25, size=(N_FEATURES, len(ids)))
    values[:N_CHANGED] *= np.where(case, 3.0, 1.0)
    failed = "S03"
    j = ids.index(failed)
    raw = values.copy()
    raw[:-5, j] = np.nan  # detection found 5 features in the failed run (none of the changed ones)
    corrected = values.copy()
    corrected[:-5, j] = rng.lognormal(8, 0.3, N_FEATURES - 5)  # gap-filled near the detection limit
    keys = {"consensus_id": [f"C{i}" for i in range(N_FEATURES)], "mz": np.linspace(100, 700, N_FEATURES),
            "rt_s": np.linspace(30, 600, N_FEATURES)}
    pl.DataFrame({**keys, **dict(zip(ids, raw.T))}).fill_nan(None).write_parquet(tmp_path / "raw.parquet")
    pl.DataFrame({**keys, **dict(zip(ids, corrected.T))}).write_parquet(tmp_path / "corrected.parquet")
    return ids[:12], failed


def _hits(tmp_path: Path, detected: bool) -> tuple[dict, pl.DataFrame]:
    summary = differential.run_differential(
        tmp_path / "samples.tsv", tmp_path / "corrected.parquet", None, tmp_path / "d.parquet", tmp_path / "e.parquet",
        {"outcome": {"column": "group", "type": "binary", "positive_class": "case"}},
        detected_path=tmp_path / "raw.parquet" if detected else None)
    return summary, pl.read_parquet(tmp_path / "d.parquet")


def _models(tmp_path: Path) -> None:
    """``ms2study models`` on the study ``_study`` wrote (group, the feature matrix only, few permutations)."""
    params = {"outcomes": [{"column": "group", "type": "binary", "positive_class": "case"}],
              "feature_sets": ["features"], "n_permutations": 2, "outer_repeats": 1, "n_bootstrap": 20}
    assert cli_main(["models", "--samples", str(tmp_path / "samples.tsv"), "--feature-matrix",
                     str(tmp_path / "corrected.parquet"), "--detected-matrix", str(tmp_path / "raw.parquet"),
                     "--outdir", str(tmp_path / "models"), "--params", json.dumps(params)]) == 0


def test_the_rule_flags_a_fifth_of_the_median_and_needs_three_runs() -> None:
    assert failed_runs({"a": 100, "b": 110, "c": 19, "d": None}) == (["c"], 100.0)
    assert failed_runs({"a": 100, "b": 110, "c": 21}) == ([], 100.0)  # 21 of a median of 100: a dilute run, kept
    assert failed_runs({"a": 100, "b": 3}) == ([], 51.5)  # two runs: nothing judged


def test_a_failed_run_is_left_out_of_the_tests_and_the_planted_difference_is_found(tmp_path: Path) -> None:
    ids, failed = _study(tmp_path)
    kept_summary, kept = _hits(tmp_path, detected=False)  # the gap-filled values hide the failure: the run is kept
    summary, table = _hits(tmp_path, detected=True)
    changed = pl.col("consensus_id").is_in([f"C{i}" for i in range(N_CHANGED)])
    found = table.filter(changed & (pl.col("q_value") < 0.05)).height
    found_kept = kept.filter(changed & (pl.col("q_value") < 0.05)).height
    assert kept_summary["n_samples"] == 12 and summary["n_samples"] == 11
    assert found == N_CHANGED and found_kept < N_CHANGED, (found, found_kept)
    note = next(n for n in summary["notes"] if "left out as failed runs" in n)
    assert f"{failed} (5)" in note and "median number of detected consensus features (60)" in note
    assert table.filter(~changed & (pl.col("q_value") < 0.05)).height == 0
    # the QC table flags the same run by the same count, and says where it is left out
    qc = qc_table(pl.read_csv(tmp_path / "samples.tsv", separator="\t"), {s: {} for s in ids}, None,
                  pl.read_parquet(tmp_path / "raw.parquet"))
    flagged = qc.filter(pl.col("outlier_rule").str.starts_with("far fewer"))["sample_id"].to_list()
    assert flagged == [failed]
    assert qc.filter(pl.col("sample_id") == failed)["outlier_rule"][0].endswith("the tests and the models")


def test_the_models_leave_the_failed_run_out_and_qcs_are_never_judged(tmp_path: Path) -> None:
    _, failed = _study(tmp_path, seed=1)
    _models(tmp_path)
    summary = json.loads((tmp_path / "models" / "group" / "summary.json").read_text())
    assert summary["n_samples"] == 11
    assert sum("left out as failed runs" in n and f"{failed} (5)" in n for n in summary["notes"]) == 1
    # a QC with few features is no study sample: never left out by this rule (nor named)
    sheet = pl.read_csv(tmp_path / "samples.tsv", separator="\t")
    raw = pl.read_parquet(tmp_path / "raw.parquet").with_columns(pl.lit(None, dtype=pl.Float64).alias("QC1"))
    kept, note = without_empty_runs(sheet, raw.fill_null(1.0), raw)
    assert kept.height == sheet.height - 1 and "QC1" not in note and failed in note


def test_the_report_says_the_failed_run_is_left_out_and_other_outliers_stay(tmp_path: Path) -> None:
    """Trial M: one sentence said the failed run was "left out of ... the tests and the models" and that "they stay
    in the tests and models; ... remove its row"; the QC table's row never said it was left out."""
    from ms2study.reporting.html import kind_of
    from ms2study.reporting.qc import _outlier_part

    ids, failed = _study(tmp_path)
    qc = qc_table(pl.read_csv(tmp_path / "samples.tsv", separator="\t"), {s: {} for s in ids}, None,
                  pl.read_parquet(tmp_path / "raw.parquet"))
    assert qc.filter(pl.col("sample_id") == failed)["run_note"][0] == "failed run: left out of the tests and models"
    warnings: list[str] = []
    _outlier_part(qc.filter(pl.col("sample_type") == "sample"), "sample", True, warnings)
    (said,) = [w for w in warnings if failed in w]
    assert said.startswith(f"failed study run(s) left out of the tests and models ({failed}: far fewer consensus")
    assert "stay in the tests" not in said and said.label == "failed run left out" and kind_of(said) == "quality"
    # another outlier beside it keeps its own warning
    both = qc.with_columns(pl.when(pl.col("sample_id") == "S05").then(True).otherwise(pl.col("outlier"))
                           .alias("outlier"))
    warnings = []
    _outlier_part(both.filter(pl.col("sample_type") == "sample"), "sample", True, warnings)
    assert any(w.startswith("outlier study sample(s) S05 (") and "stay in the tests and models" in w
               for w in warnings)
    # trial AW: a real 17 s excerpt beside 60 s runs was called a failed run; a run spanning under half the median
    # retention-time span of its kind is said to be a shorter acquisition
    spans = {s: {"rt_start_s": 0.0, "rt_end_s": 17.0 if s == failed else 60.0} for s in ids}
    short = qc_table(pl.read_csv(tmp_path / "samples.tsv", separator="\t"), spans, None,
                     pl.read_parquet(tmp_path / "raw.parquet"))
    row = short.filter(pl.col("sample_id") == failed)
    assert row["run_note"][0].startswith("its acquisition 0.0-17.0 s covers 28.3% of the study's typical RT range")
    assert row["outlier_rule"][0].endswith("it spans 17 s of retention time against a median of 60 s, so it is a "
                                           "shorter acquisition (an excerpt or a stopped run) rather than a failed "
                                           "injection")
    warnings = []
    _outlier_part(short.filter(pl.col("sample_type") == "sample"), "sample", True, warnings)
    (said,) = [w for w in warnings if failed in w]
    assert said.startswith("short study run(s) left out") and said.label == "short run left out"
    # a run of ordinary length with few features stays a failed run
    spans[failed]["rt_end_s"] = 45.0
    assert qc_table(pl.read_csv(tmp_path / "samples.tsv", separator="\t"), spans, None,
                    pl.read_parquet(tmp_path / "raw.parquet")).filter(pl.col("sample_id") == failed)[
        "run_note"][0].startswith("failed run: left out of the tests and models")


def test_a_class_whose_runs_all_failed_is_not_tested_and_stops_nothing(tmp_path: Path) -> None:
    """Trial BC: both TripleTOF runs, the only samples of class 'pesticide', were left out as failed runs; the
    differential and models jobs then stopped with "positive_class 'pesticide' ... is not a class of the sample
    sheet's column: set it to one of: plasma" (advice that cannot work) and no report was written. The outcome is
    now not tested nor modelled, with a note naming why, and both stages finish."""
    _study(tmp_path)
    sheet = pl.read_csv(tmp_path / "samples.tsv", separator="\t")
    cases = sheet.filter(pl.col("group") == "case")["sample_id"].to_list()
    raw = pl.read_parquet(tmp_path / "raw.parquet")
    keep = [f"C{i}" for i in range(N_FEATURES - 5, N_FEATURES)]  # every case run detected 5 features
    raw.with_columns([pl.when(pl.col("consensus_id").is_in(keep)).then(pl.col(s)).otherwise(None).alias(s)
                      for s in cases]).write_parquet(tmp_path / "raw.parquet")
    summary, table = _hits(tmp_path, detected=True)
    assert any("no study sample of class 'case' is left among the samples tested" in n for n in summary["notes"])
    assert any(n.startswith("not tested") for n in summary["notes"]) and table["p_value"].is_null().all()
    _models(tmp_path)
    models = json.loads((tmp_path / "models" / "group" / "summary.json").read_text())
    assert models["status"] == "skipped" and "only one class" in models["reason"]
    assert any("no study sample of class 'case' is left" in n for n in models["notes"])
