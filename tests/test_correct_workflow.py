"""The workflow builds the corrected feature matrix (rules gapfill and correct) on a small simulated batch study (2
batches, pooled QCs, blanks, drift, contaminants), meets the issue's targets for QC RSD and blank flags against the
simulation's truth, and reruns only what a changed correct key touches."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from ms2study.core import tables
from ms2study.correction.matrix import REPORT_KEYS
from ms2study.simulate.study import simulate_study

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[1]
TARGET = "results/study/feature_matrix_corrected.parquet"
# 6 samples in 2 batches; per batch a blank, a QC at the start, after every 2 samples and at the end (3 QCs)
ACQUISITION = {"batches": 2, "qc_every": 2, "blanks": 1}


def ms2study(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO / "workflow"))
    result = subprocess.run([sys.executable, "-m", "ms2study", *args], capture_output=True, text=True, env=env)
    if result.returncode != 0:
        raise AssertionError(f"ms2study {' '.join(args)} failed:\n{result.stdout[-4000:]}\n{result.stderr[-6000:]}")
    return result


def _jobs(study: Path) -> dict[str, int]:
    """Rule -> job count of a dry run of the corrected matrix."""
    dry = ms2study("run", str(study), "--cores", "1", "--dry-run", TARGET)
    text = dry.stdout + dry.stderr
    if "Nothing to be done" in text:
        return {}
    block = text.split("Job stats:")[-1]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", block, re.MULTILINE)}


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("correct_study")
    simulate_study(root, n_samples=6, seed=5, params=ACQUISITION)
    ms2study("run", str(root), "--cores", "2", TARGET)
    return root


def test_corrected_matrix_gap_filled_tables_and_record(study: Path) -> None:
    results = study / "results" / "study"
    runs = pl.read_csv(study / "samples.tsv", separator="\t")["sample_id"].to_list()
    raw = pl.read_parquet(results / "feature_matrix.parquet")
    corrected = pl.read_parquet(results / "feature_matrix_corrected.parquet")
    assert corrected.columns == [*tables.CORRECTED_MATRIX_KEYS, *runs]
    assert corrected["consensus_id"].to_list() == raw["consensus_id"].to_list()
    filled_cells = 0
    for run in runs:
        gap = pl.read_parquet(results / "gap_filled" / f"{run}.parquet")
        assert list(gap.columns) == list(tables.GAP_FILLED)
        assert gap.height == raw[run].null_count()  # a row for every cell the run missed
        filled_cells += gap["intensity"].is_not_null().sum()
    # one gap-filling job for all runs (a folder of per-run tables), reading the MS1 scans detect saved
    assert sorted(p.name for p in (results / "gap_filled").glob("*.parquet")) == sorted(f"{r}.parquet" for r in runs)
    log = (study / "logs" / "study" / "gapfill.log").read_text()
    assert all(f"{run}: " in log for run in runs), log[-2000:]
    record = json.loads((results / "correction.json").read_text())
    assert tuple(record) == REPORT_KEYS
    assert record["drift_method"] == "qc_linear"  # 3 QCs in each batch
    assert (record["n_samples"], record["n_qc"], record["n_blank"]) == (6, 6, 2)
    assert record["batches"] == ["1", "2"]
    assert record["n_filled"] == filled_cells == corrected["n_filled"].sum()
    # the targets: QC RSD at least halved; at least 95% of the contaminants (in blanks and samples) flagged
    assert record["qc_rsd_median_after"] <= 0.5 * record["qc_rsd_median_before"]
    contaminants = pl.read_csv(study / "contaminants.tsv", separator="\t")
    found = flagged = 0
    for mz, rt in zip(contaminants["mz"], contaminants["rt_s"], strict=True):
        hits = corrected.filter(((pl.col("mz") - mz).abs() <= mz * 10e-6) & ((pl.col("rt_s") - rt).abs() <= 15))
        found += hits.height > 0
        flagged += bool(hits["blank_flag"].any())
    assert found >= 0.9 * contaminants.height and flagged >= 0.95 * found
    assert record["n_blank_flagged"] < 0.5 * corrected.height  # the compounds are not
    # the raw matrix keeps the raw intensities; the corrected one moved them
    assert raw.select(runs).to_numpy().tolist() != corrected.select(runs).to_numpy().tolist()


def test_only_what_a_changed_key_touches_reruns(study: Path) -> None:
    assert _jobs(study) == {}
    config = study / "config.yaml"
    original = config.read_text()
    try:
        config.write_text(original + "correct:\n  use_corrected: false\n  exclude_flagged: false\n")
        assert _jobs(study) == {}  # keys of later stages do not rerun the corrections
        config.write_text(original + "correct:\n  qc_rsd_max: 0.2\n")
        jobs = _jobs(study)
        assert jobs.get("correct") == 1 and "gapfill" not in jobs and "link" not in jobs
        config.write_text(original + "correct:\n  gap_fill_rt_s: 6.0\n")
        jobs = _jobs(study)
        assert jobs.get("gapfill") == 1 and jobs.get("correct") == 1 and "detect" not in jobs
        config.write_text(original + "correct:\n  gap_fill: false\n")
        jobs = _jobs(study)
        assert jobs.get("correct") == 1 and "gapfill" not in jobs
    finally:
        config.write_text(original)


def test_a_bad_run_fails_the_gapfill_job_naming_it_and_leaves_no_folder(study: Path) -> None:
    """One unreadable MS1 scans table among the runs: the one gap-filling job fails with a message naming the file
    and the run, and Snakemake removes the folder (other runs' tables were written before the bad one was read), so
    no half-filled results/study/gap_filled looks finished. The table restored, the rerun makes the folder again."""
    runs = pl.read_csv(study / "samples.tsv", separator="\t")["sample_id"].to_list()
    bad_run = runs[-1]  # the last run read: the earlier runs' tables are written when it fails
    scans = study / "results" / "samples" / bad_run / "ms1_scans.parquet"
    original = scans.read_bytes()
    folder = study / "results" / "study" / "gap_filled"
    try:
        scans.write_bytes(original[: len(original) // 2])  # truncated
        env = dict(os.environ, PYTHONPATH=str(REPO / "workflow"))
        failed = subprocess.run([sys.executable, "-m", "ms2study", "run", str(study), "--cores", "1", TARGET],
                                capture_output=True, text=True, env=env)
        assert failed.returncode != 0
        log = (study / "logs" / "study" / "gapfill.log").read_text()
        assert str(scans.relative_to(study)) in log and f"'{bad_run}'" in log and "Traceback" not in log, log[-3000:]
        assert f"{runs[0]}: " in log  # an earlier run was filled (and written) before the bad one was read
        assert not folder.exists()
    finally:
        scans.write_bytes(original)
    ms2study("run", str(study), "--cores", "1", TARGET)
    assert sorted(p.name for p in folder.glob("*.parquet")) == sorted(f"{r}.parquet" for r in runs)
    assert _jobs(study) == {}
