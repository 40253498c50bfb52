"""Issue 13 items 1 and 6: the sample sheet's acquisition columns (sample_type, injection_order, batch) are
validated with the row named, QC and blank runs never enter an outcome model or a differential test (and the
summaries say how many were left out), acquisition columns are never outcomes or covariates, and the models and
tests read the corrected matrix (sample columns by the sheet's ids, flag columns ignored) without the flagged
features."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from ms2study import study
from ms2study.cli import main as cli_main
from ms2study.core.errors import InputError
from ms2study.modelling.differential import read_summary
from ms2study.modelling.outcomes import covariate_matrix, drop_flagged, encode_outcome, not_study_samples, runs_measured
from ms2study.stages import differential, models

REPO = Path(__file__).resolve().parents[1]


def _study(folder: Path, rows: list[str], header: str = "sample_id\tfile\tsample_type\tinjection_order\tbatch") -> None:
    for row in rows:
        name = row.split("\t")[1]
        (folder / name).write_text("<mzML></mzML>")
    (folder / "samples.tsv").write_text(header + "\n" + "\n".join(rows) + "\n")


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        (["A\ta.mzML\tsample\t1\t1", "B\tb.mzML\tpool\t2\t1"],
         r"row 3 \(sample 'B'\): column 'sample_type': 'pool' is not one of sample, qc, blank"),
        (["A\ta.mzML\tsample\t0\t1"], r"row 2 \(sample 'A'\): column 'injection_order': '0' is not a whole number"),
        (["A\ta.mzML\tqc\t1.5\t1"], r"row 2 \(sample 'A'\): column 'injection_order': '1.5' is not a whole number"),
        (["A\ta.mzML\tsample\t1\t1", "B\tb.mzML\tblank\t2\t1", "C\tc.mzML\tqc\t2\t2"],
         r"rows 3, 4: samples 'B' and 'C' share injection_order 2"),
    ],
)
def test_bad_acquisition_cells_name_the_row(tmp_path: Path, rows: list[str], message: str) -> None:
    _study(tmp_path, rows)
    with pytest.raises(InputError, match=message) as err:
        study.load_sample_sheet(tmp_path, study.load_config(tmp_path))
    assert "samples.tsv" in str(err.value) and err.value.fix


def test_good_acquisition_columns_pass_in_any_case_and_may_be_empty(tmp_path: Path) -> None:
    _study(tmp_path, ["A\ta.mzML\tSample\t3\tday1", "Q\tq.mzML\tQC\t1\tday1", "B\tb.mzML\tBlank\t4\t",
                      "C\tc.mzML\t\t2\tday2"])
    sheet = study.load_sample_sheet(tmp_path, study.load_config(tmp_path))
    roles = study.check_sample_roles(sheet)
    assert roles["sample_type"].to_list() == ["sample", "qc", "blank", "sample"]
    assert roles["injection_order"].to_list() == [3, 1, 4, 2] and roles["batch"].to_list()[2] == "1"


def test_ms2study_run_and_snakemake_refuse_a_bad_sample_type_before_any_job(tmp_path: Path,
                                                                            capsys: pytest.CaptureFixture) -> None:
    _study(tmp_path, ["A\ta.mzML\tsample\t1\t1", "B\tb.mzML\tQC-pool\t2\t1"])
    assert cli_main(["run", str(tmp_path), "-n"]) == 1
    err = capsys.readouterr().err
    assert "row 3 (sample 'B')" in err and "sample_type" in err and "Traceback" not in err
    result = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(tmp_path),
                             "--dry-run"], check=False, capture_output=True, text=True)
    assert result.returncode != 0
    assert "row 3 (sample 'B')" in result.stdout + result.stderr
    assert not (tmp_path / "results").exists()


def test_acquisition_columns_are_never_outcomes_or_covariates(tmp_path: Path) -> None:
    _study(tmp_path, ["A\ta.mzML\tsample\t1\t1", "B\tb.mzML\tsample\t2\t2"])
    sheet = study.load_sample_sheet(tmp_path, study.load_config(tmp_path))
    config = {"models": {"outcomes": [{"column": "batch", "type": "binary"}]}}
    with pytest.raises(InputError, match=r"outcome column 'batch' \(config models.outcomes.0\) describes how"):
        study.check_outcomes(sheet, config)
    with pytest.raises(InputError, match=r"covariate column 'injection_order' \(config models.covariates\)"):
        study.check_outcomes(sheet, {"models": {"outcomes": [], "covariates": ["injection_order"]}})
    # a trial without pooled QCs had no way to adjust for batch: the refusal says how
    with pytest.raises(InputError) as refused:
        study.check_outcomes(sheet, {"models": {"outcomes": [], "covariates": ["batch"]}})
    assert "copy it under another name (e.g. 'plate'" in refused.value.fix and "own level" in refused.value.fix
    with pytest.raises(InputError, match="acquisition column"):
        encode_outcome(sheet, {"column": "sample_type", "type": "multiclass"})
    with pytest.raises(InputError, match="acquisition columns"):
        covariate_matrix(sheet, ["A"], ["batch"])


def _sheet(n: int = 12) -> pl.DataFrame:
    """n study samples (case/control alternating), 3 pooled QCs and 2 blanks, whose group cells hold a class too
    (a hand-filled sheet often copies one): they must still be left out."""
    ids = [f"S{i:02d}" for i in range(n)] + ["QC1", "QC2", "QC3", "BL1", "BL2"]
    kinds = ["sample"] * n + ["qc"] * 3 + ["blank"] * 2
    group = ["case" if i % 2 else "control" for i in range(n)] + ["case", "control", "case", "control", "case"]
    return pl.DataFrame({"sample_id": ids, "file": [f"{s}.mzML" for s in ids], "group": group,
                         "sample_type": kinds, "injection_order": [str(i + 1) for i in range(len(ids))],
                         "batch": ["1"] * (len(ids) // 2) + ["2"] * (len(ids) - len(ids) // 2),
                         "age": [str(30 + i) for i in range(len(ids))]})


def test_qc_and_blank_runs_never_enter_an_outcome() -> None:
    sheet = _sheet()
    target = encode_outcome(sheet, {"column": "group", "type": "binary", "positive_class": "case"})
    assert target["sample_ids"] == [f"S{i:02d}" for i in range(12)] and len(target["y"]) == 12
    assert target["excluded_not_sample"] == {"qc": ["QC1", "QC2", "QC3"], "blank": ["BL1", "BL2"]}
    assert target["excluded_missing_outcome"] == []
    # without the column every run is a sample, as before
    plain = encode_outcome(sheet.drop("sample_type"), {"column": "group", "type": "binary"})
    assert len(plain["sample_ids"]) == 17 and not_study_samples(sheet.drop("sample_type")) == {"qc": [], "blank": []}


def _matrix(sheet: pl.DataFrame, seed: int = 0) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(raw matrix, corrected matrix as the contract lays it out: flag columns between n_detected and the runs).
    C0 differs strongly between case and control in the samples; C1 is flagged (excluded) and differs too."""
    rng = np.random.default_rng(seed)
    ids = sheet["sample_id"].to_list()
    case = np.array([g == "case" for g in sheet["group"].to_list()])
    values = rng.lognormal(12, 0.2, size=(8, len(ids)))
    values[0] *= np.where(case, 8.0, 1.0)
    values[1] *= np.where(case, 8.0, 1.0)
    keys = {"consensus_id": [f"C{i}" for i in range(8)], "mz": np.linspace(100, 500, 8),
            "rt_s": np.linspace(30, 600, 8), "n_detected": pl.Series([len(ids)] * 8, dtype=pl.Int32)}
    raw = pl.DataFrame({**keys, **{s: values[:, j] for j, s in enumerate(ids)}})
    flags = {"blank_ratio": [10.0] * 8, "blank_flag": [False, True] + [False] * 6,
             "qc_rsd_before": [0.4] * 8, "qc_rsd_after": [0.1] * 8, "qc_rsd_flag": [False] * 8,
             "n_filled": pl.Series([0] * 8, dtype=pl.Int32), "compound_group": [f"G{i}" for i in range(8)],
             "adduct": ["[M+H]+"] * 8, "group_representative": [True] * 8,
             "excluded": [False, True] + [False] * 6}
    corrected = pl.DataFrame({**keys, **flags, **{s: values[:, j] * 1.01 for j, s in enumerate(ids)}})
    return raw, corrected


BINARY_GROUP = {"column": "group", "type": "binary", "positive_class": "case"}


def _differential(tmp_path: Path, sheet: pl.DataFrame, corrected: pl.DataFrame) -> dict:
    """Sheet and corrected matrix written to ``tmp_path``; the group's differential test run on them (tables
    d.parquet, e.parquet); returns its summary."""
    sheet.write_csv(tmp_path / "samples.tsv", separator="\t")
    corrected.write_parquet(tmp_path / "corrected.parquet")
    return differential.run_differential(tmp_path / "samples.tsv", tmp_path / "corrected.parquet", None,
                                         tmp_path / "d.parquet", tmp_path / "e.parquet", {"outcome": BINARY_GROUP},
                                         flags_path=tmp_path / "corrected.parquet")


def test_differential_reads_the_corrected_matrix_by_sample_id_and_leaves_flagged_features_out(tmp_path: Path) -> None:
    sheet = _sheet()
    raw, corrected = _matrix(sheet)
    summary = _differential(tmp_path, sheet, corrected)
    table = pl.read_parquet(tmp_path / "d.parquet")
    assert summary["n_samples"] == 12 and summary["excluded_not_sample"]["qc"] == ["QC1", "QC2", "QC3"]
    assert "C1" not in table["consensus_id"].to_list() and table.height == 7
    assert table.filter(pl.col("consensus_id") == "C0")["q_value"][0] < 0.01
    notes = read_summary(tmp_path / "d.parquet")["notes"]
    assert any("3 pooled QC run(s) and 2 blank run(s)" in n for n in notes)
    assert any("1 of 8 consensus features are flagged" in n for n in notes)
    # the raw matrix filtered by the corrected matrix's flags; without flags every feature is tested
    raw.write_parquet(tmp_path / "raw.parquet")
    differential.run_differential(tmp_path / "samples.tsv", tmp_path / "raw.parquet", None, tmp_path / "d2.parquet",
                                  tmp_path / "e2.parquet", {"outcome": BINARY_GROUP})
    assert pl.read_parquet(tmp_path / "d2.parquet").height == 8
    with pytest.raises(InputError, match="lacks column"):
        drop_flagged(raw, raw.select("consensus_id"))


def test_models_leave_qcs_and_blanks_out_and_say_so(tmp_path: Path) -> None:
    sheet = _sheet()
    _, corrected = _matrix(sheet, seed=1)
    sheet.write_csv(tmp_path / "samples.tsv", separator="\t")
    corrected.write_parquet(tmp_path / "corrected.parquet")
    params = {"outcomes": [{"column": "group", "type": "binary", "positive_class": "case"}],
              "feature_sets": ["features"], "n_permutations": 2, "outer_repeats": 1, "n_bootstrap": 50}
    code = cli_main(["models", "--samples", str(tmp_path / "samples.tsv"), "--feature-matrix",
                     str(tmp_path / "corrected.parquet"), "--exclude-flagged", str(tmp_path / "corrected.parquet"),
                     "--outdir", str(tmp_path / "models"), "--params", json.dumps(params)])
    assert code == 0
    summary = json.loads((tmp_path / "models" / "group" / "summary.json").read_text())
    assert summary["status"] == "done" and summary["n_samples"] == 12
    assert summary["excluded_not_sample"] == {"qc": ["QC1", "QC2", "QC3"], "blank": ["BL1", "BL2"]}
    assert summary["feature_sets"]["features"]["n_features"] == 7  # C1 flagged; flag columns are not features
    assert any("3 pooled QC run(s) and 2 blank run(s)" in n for n in summary["notes"])
    assert summary["feature_matrix"] == "corrected.parquet" and summary["n_flagged_left_out"] == 1
    predictions = pl.read_parquet(tmp_path / "models" / "group" / "predictions.parquet")
    assert not set(predictions["sample_id"].to_list()) & {"QC1", "QC2", "QC3", "BL1", "BL2"}
    # the in-process API says the same
    out = models.model_outcomes(sheet, {}, params["outcomes"], tmp_path / "m2", params)
    assert "excluded_not_sample" in out["group"]


def test_rules_read_the_corrected_matrix_by_default_and_pass_the_flags() -> None:
    corrected = "results/study/feature_matrix_corrected.parquet"
    assert models.matrix_inputs({}) == {"matrix": corrected, "flags": [corrected], "flag_input": [],
                                        "option": f"--exclude-flagged {corrected}",
                                        "sample_embedding": "results/study/pooled/{sample}.parquet",
                                        "features": "results/study/corrected_features/{sample}.parquet",
                                        # the folders of rule pool_corrected: the rules' input (files: params)
                                        "sample_embedding_folder": "results/study/pooled",
                                        "features_folder": "results/study/corrected_features"}
    raw = models.matrix_inputs({"correct": {"use_corrected": False}})
    assert raw["matrix"] == "results/study/feature_matrix.parquet" and raw["flags"] == [corrected]
    assert raw["flag_input"] == [corrected]  # beside the raw matrix the rules list the corrected one for its flags
    # without the corrected matrix, pooling keeps the detect stage's own intensities (per-sample tables)
    assert raw["sample_embedding"] == "results/samples/{sample}/sample_embedding.parquet"
    assert raw["features"] == "results/samples/{sample}/features.parquet"
    assert raw["sample_embedding_folder"] is None and raw["features_folder"] is None  # the files are the input
    assert models.matrix_inputs({"correct": {"exclude_flagged": False}})["option"] == ""
    text = {name: (REPO / "workflow" / "rules" / f"{name}.smk").read_text()
            for name in ("models", "differential", "attribution", "report")}
    for name in ("models", "differential"):
        assert 'matrix=MATRIX_INPUTS["matrix"]' in text[name] and 'flags=MATRIX_INPUTS["flag_input"]' in text[name]
        assert 'flags=MATRIX_INPUTS["option"]' in text[name] and "{params.flags}" in text[name]
    assert 'matrix=MATRIX_INPUTS["matrix"]' in text["attribution"]
    assert "--corrected-matrix {input.corrected:q} --correction {input.correction:q}" in text["report"]


def test_snakemake_dry_run_wires_the_corrected_matrix_and_the_flags(tmp_path: Path) -> None:
    """The dry run's commands: models and differential read the corrected matrix and leave its flagged features
    out; with correct.use_corrected false they read the raw matrix (still without the flagged features)."""
    _study(tmp_path, ["A\ta.mzML\tsample\t1\t1\tcase", "B\tb.mzML\tsample\t2\t1\tcontrol",
                      "C\tc.mzML\tsample\t3\t2\tcase", "D\td.mzML\tsample\t4\t2\tcontrol", "Q\tq.mzML\tqc\t5\t2\t"],
           header="sample_id\tfile\tsample_type\tinjection_order\tbatch\tgroup")
    (tmp_path / "config.yaml").write_text("models:\n  outcomes:\n    - {column: group, type: binary}\n")

    def dry(*extra: str) -> str:
        result = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d",
                                 str(tmp_path), "--dry-run", "--printshellcmds", *extra], check=False,
                                capture_output=True, text=True)
        assert result.returncode == 0, result.stderr[-3000:]
        return result.stdout

    out = dry()
    commands = [line for line in out.splitlines() if " models " in line or " differential " in line]
    assert len(commands) == 2
    # each job's input names the corrected matrix once (it is both the matrix and the flags' source)
    for rule in ("models", "differential"):
        inputs = out.split(f"rule {rule}:")[1].split("input:")[1].splitlines()[0].split(", ")
        assert inputs.count("results/study/feature_matrix_corrected.parquet") == 1, (rule, inputs)
    for line in commands:
        assert "--feature-matrix results/study/feature_matrix_corrected.parquet" in line
        assert "--exclude-flagged results/study/feature_matrix_corrected.parquet" in line
    (tmp_path / "config.yaml").write_text("models:\n  outcomes:\n    - {column: group, type: binary}\n"
                                          "correct: {use_corrected: false}\n")
    commands = [line for line in dry().splitlines() if " models " in line or " differential " in line]
    assert all("--feature-matrix results/study/feature_matrix.parquet" in line and "--exclude-flagged" in line
               for line in commands) and len(commands) == 2


def _dry_run(folder: Path) -> str:
    """Snakemake's dry run of the study in ``folder`` with the shell commands; asserts it succeeds."""
    result = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(folder),
                             "--dry-run", "--printshellcmds"], check=False, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_the_validated_sheet_is_rewritten_only_when_its_content_changes(tmp_path: Path) -> None:
    """Trial finding: a failed run had rewritten results/study/samples.tsv (rule sample_sheet), and after the bad edit
    was undone every study job reran: Snakemake reruns whatever follows a job that runs. The sheet is now written
    when Snakemake reads the workflow, only when its bytes change, and is no rule's output; each study job judges
    it by mtime and checksum."""
    _study(tmp_path, ["A\ta.mzML\tsample\t1\t1\tcase", "B\tb.mzML\tsample\t2\t1\tcontrol",
                      "C\tc.mzML\tsample\t3\t1\tcase", "D\td.mzML\tsample\t4\t1\tcontrol",
                      "Q\tq.mzML\tqc\t5\t1\tcase"],
           header="sample_id\tfile\tsample_type\tinjection_order\tbatch\tgroup")
    (tmp_path / "config.yaml").write_text("models:\n  outcomes:\n    - {column: group, type: binary}\n")
    sheet = tmp_path / "results" / "study" / "samples.tsv"

    def dry() -> str:
        return _dry_run(tmp_path)

    out = dry()
    assert "rule sample_sheet" not in out and "localrule sample_sheet" not in out
    original = sheet.read_bytes()
    assert original.startswith(b"sample_id\tfile\tsample_type\tinjection_order\tbatch\tgroup\nA\ta.mzML")
    old = 1_000_000_000_000_000_000
    os.utime(sheet, ns=(old, old))
    (tmp_path / "samples.tsv").touch()  # newer, same content: nothing rewritten
    dry()
    assert sheet.stat().st_mtime_ns == old
    # an edit that changes nothing the study reads ("Sample " for "sample", a trial's "QC " for "qc"): not rewritten
    (tmp_path / "samples.tsv").write_text((tmp_path / "samples.tsv").read_text().replace(
        "B\tb.mzML\tsample\t", "B\tb.mzML\tSample \t"))
    dry()
    assert sheet.stat().st_mtime_ns == old and sheet.read_bytes() == original
    # the outcome cell of a QC row is ignored (and warned about), so it is empty in the validated sheet and an edit
    # of it reschedules nothing (a trial: every study job was)
    assert b"\nQ\tq.mzML\tqc\t5\t1\t\n" in original
    (tmp_path / "samples.tsv").write_text((tmp_path / "samples.tsv").read_text().replace(
        "Q\tq.mzML\tqc\t5\t1\tcase", "Q\tq.mzML\tqc\t5\t1\tcontrol"))
    dry()
    assert sheet.stat().st_mtime_ns == old and sheet.read_bytes() == original
    edited = (tmp_path / "samples.tsv").read_text().replace("D\td.mzML\tsample\t4\t1\tcontrol",
                                                            "D\td.mzML\tsample\t4\t1\tcase")
    (tmp_path / "samples.tsv").write_text(edited)
    dry()
    assert sheet.stat().st_mtime_ns > old and sheet.read_bytes() != original


def test_a_removed_samples_kept_files_are_named_by_no_job(tmp_path: Path) -> None:
    """Trial finding: a removed sample's files stay under results/samples/<id>/ (kept for reuse, as README says), and
    under results/study/{gap_filled,pooled,...}/<id>.parquet until the study job writing that folder reruns (it
    empties the folder). No rule may pick them up from a folder: the jobs of the study name only the sheet's
    samples' files (a study folder is an input, its sheet's runs' files are passed by name)."""
    _study(tmp_path, ["A\ta.mzML\tsample\t1\t1\tcase", "B\tb.mzML\tsample\t2\t1\tcontrol",
                      "C\tc.mzML\tsample\t3\t1\tcase", "D\td.mzML\tsample\t4\t1\tcontrol"],
           header="sample_id\tfile\tsample_type\tinjection_order\tbatch\tgroup")
    (tmp_path / "config.yaml").write_text("models:\n  outcomes:\n    - {column: group, type: binary}\n")
    edited = (tmp_path / "samples.tsv").read_text()
    sheet = tmp_path / "results" / "study" / "samples.tsv"

    def dry() -> str:
        return _dry_run(tmp_path)

    assert "results/study/gap_filled/D.parquet" in dry()  # D is a sample: its files are named
    # D removed; its files stay
    (tmp_path / "samples.tsv").write_text("\n".join(edited.splitlines()[:-1]) + "\n")
    for stale in ("results/study/gap_filled/D.parquet", "results/study/pooled/D.parquet",
                  "results/samples/D/features.parquet", "results/samples/D/chromatogram.parquet"):
        (tmp_path / stale).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / stale).write_bytes(b"stale")
    out = dry()
    assert b"\nD\t" not in sheet.read_bytes()
    assert "/D.parquet" not in out and "samples/D/" not in out and "D.mzML" not in out
    assert "results/study/gap_filled/A.parquet" in out and "results/study/chemistry/C.parquet" in out


def test_validation_refuses_a_blank_reference_a_partial_order_and_an_impossible_drift_method() -> None:
    """Found by the fresh-user trial: a blank became the alignment reference by default; one empty injection_order
    cell passed; qc_spline without QCs failed only at the correct job, after detection."""
    from ms2study import study
    from ms2study.core.errors import InputError

    sheet = pl.DataFrame({"sample_id": ["B1", "Q1", "S1", "S2"], "file": ["b", "q", "s1", "s2"],
                          "sample_type": ["blank", "qc", "sample", "sample"], "injection_order": ["1", "2", "3", "4"]})
    assert study.check_reference_sample(sheet, {}) == "S1"  # the first study sample, not the blank in row 1
    assert study.check_reference_sample(sheet.filter(pl.col("sample_type") != "sample"), {}) == "Q1"
    with pytest.raises(InputError, match="'B1' is a blank run"):
        study.check_reference_sample(sheet, {"reference_sample": "B1"})
    # an unknown reference names the study samples as candidates (the pooled QCs as the alternative), never a blank
    with pytest.raises(InputError, match=r"one of the study samples: S1, S2 \(or a pooled QC: Q1\)$") as err:
        study.check_reference_sample(sheet, {"reference_sample": "S9"})
    assert "B1" not in str(err.value)
    with pytest.raises(InputError, match=r"one of the pooled QCs: Q1$") as err:
        study.check_reference_sample(sheet.filter(pl.col("sample_type") != "sample"), {"reference_sample": "S9"})
    assert "B1" not in str(err.value)
    partial = sheet.with_columns(pl.Series("injection_order", ["1", "", "3", "4"]))
    with pytest.raises(InputError, match=r"row 3: .*injection_order is empty for 1 run\(s\)"):
        study.check_sample_roles(partial)
    no_qc = sheet.with_columns(pl.Series("sample_type", ["blank", "sample", "sample", "sample"]))
    with pytest.raises(InputError, match="correct: drift_method qc_spline: .*no") as err:
        study.check_correction(no_qc, {"correct": {"drift_method": "qc_spline"}}, "study/config.yaml")
    assert "study/config.yaml" in str(err.value)
    study.check_correction(no_qc, {"correct": {"drift_method": "auto"}})  # auto falls back with a note instead
    repeated = sheet.with_columns(pl.Series("injection_order", ["1", "2", "1", "2"]))
    with pytest.raises(InputError, match="across the whole study"):
        study.check_sample_roles(repeated)


def test_a_run_without_any_feature_value_is_left_out_of_tests_and_models(tmp_path: Path) -> None:
    """A second fresh user's trial: a run with one MS1 scan (no features) was imputed at half the minimum in every
    feature; 76 % of the features looked higher in cases ("a shift of the whole sample") while the report said the
    run was missing from every result. Such a run is left out of the differential tests and the models, and their
    summaries say so."""
    sheet = _sheet()
    _, corrected = _matrix(sheet, seed=2)
    empty = sheet.filter(pl.col("sample_type") == "sample")["sample_id"][0]
    corrected = corrected.with_columns(pl.lit(None, dtype=pl.Float64).alias(empty))
    summary = _differential(tmp_path, sheet, corrected)
    assert summary["n_samples"] == 11
    assert any("1 run(s) without any feature value left out" in n and empty in n for n in summary["notes"])
    params = {"outcomes": [BINARY_GROUP], "feature_sets": ["features"], "n_permutations": 2, "outer_repeats": 1,
              "n_bootstrap": 50}
    assert cli_main(["models", "--samples", str(tmp_path / "samples.tsv"), "--feature-matrix",
                     str(tmp_path / "corrected.parquet"), "--outdir", str(tmp_path / "models"), "--params",
                     json.dumps(params)]) == 0
    models_summary = json.loads((tmp_path / "models" / "group" / "summary.json").read_text())
    assert models_summary["n_samples"] == 11 and any(empty in n for n in models_summary["notes"])
    predictions = pl.read_parquet(tmp_path / "models" / "group" / "predictions.parquet")
    assert empty not in predictions["sample_id"].to_list()


def test_runs_that_measured_another_rt_window_are_left_out_of_tests_and_models(tmp_path: Path) -> None:
    """A fresh user's trial put a run acquired over another RT window beside the others: it was aligned, linked and
    gap-filled, and every feature outside its window counted as below detection in it. Three cases acquired over the
    first 300 s only: without the check the late features, unchanged in truth, look lower in cases; with the QC
    table's RT ranges those runs are left out of the tests and the models, and a run that measured part of the
    study's typical range is named but kept."""
    sheet = _sheet()
    _, corrected = _matrix(sheet, seed=3)
    short, part = ["S01", "S03", "S05"], "S07"
    late = corrected["rt_s"] > 300
    corrected = corrected.with_columns([pl.when(late).then(None).otherwise(pl.col(s)).alias(s) for s in short]
                                       + [pl.when(corrected["rt_s"] > 450).then(None).otherwise(pl.col(part))
                                          .alias(part)])  # the partial run lacks the features after its end
    ranges = {s: (0.0, 620.0) for s in sheet["sample_id"].to_list()}
    ranges.update({s: (0.0, 300.0) for s in short}, **{part: (0.0, 450.0)})
    pl.DataFrame({"sample_id": list(ranges), "rt_start_s": [r[0] for r in ranges.values()],
                  "rt_end_s": [r[1] for r in ranges.values()]}).write_parquet(tmp_path / "qc.parquet")

    def late_fold_changes() -> np.ndarray:
        table = pl.read_parquet(tmp_path / "d.parquet").filter(pl.col("rt_s") > 300)
        return table.filter(~pl.col("consensus_id").is_in(["C0", "C1"]))["log2_fold_change"].to_numpy()

    unchecked = _differential(tmp_path, sheet, corrected)
    biased = late_fold_changes()
    assert unchecked["n_samples"] == 12 and (biased < 0).all() and biased.mean() < -0.5, biased  # absent in 3 cases
    checked = differential.run_differential(
        tmp_path / "samples.tsv", tmp_path / "corrected.parquet", None, tmp_path / "d.parquet", tmp_path / "e.parquet",
        {"outcome": BINARY_GROUP}, flags_path=tmp_path / "corrected.parquet", qc_path=tmp_path / "qc.parquet")
    measured = late_fold_changes()
    assert checked["n_samples"] == 9 and abs(measured.mean()) < 0.3 and measured.mean() - biased.mean() > 0.5, measured
    left_out = next(n for n in checked["notes"] if "left out" in n and "typical RT range (0.0-620.0 s, the" in n)
    assert all(f"{s} (0.0-300.0 s, 48.4%)" in left_out for s in short)
    assert any(f"{part} (0.0-450.0 s, 72.6%)" in n and "not a value below detection" in n for n in checked["notes"])
    assert checked["n_not_measured_cells"] == 2  # C6 and C7 elute after S07's last scan: filled with their mean
    assert any(w.startswith("3 run(s) left out of the tests and models") and "S01, S03, S05" in w
               for w in checked["warnings"]), checked["warnings"]
    assert any(w.startswith("1 run(s) measured only part") and "2 value(s)" in w for w in checked["warnings"])
    table = pl.read_parquet(tmp_path / "d.parquet").filter(pl.col("consensus_id").is_in(["C6", "C7"]))
    assert (table["test"] == "welch_t").all()  # a filled cell: the test of features with filled values
    params = {"outcomes": [BINARY_GROUP], "feature_sets": ["features"], "n_permutations": 2, "outer_repeats": 1,
              "n_bootstrap": 50}
    assert cli_main(["models", "--samples", str(tmp_path / "samples.tsv"), "--feature-matrix",
                     str(tmp_path / "corrected.parquet"), "--qc", str(tmp_path / "qc.parquet"), "--outdir",
                     str(tmp_path / "models"), "--params", json.dumps(params)]) == 0
    models_summary = json.loads((tmp_path / "models" / "group" / "summary.json").read_text())
    assert models_summary["n_samples"] == 9 and any("S05 (0.0-300.0 s" in n for n in models_summary["notes"])
    assert models_summary.get("n_not_measured_cells") == 2, {k: v for k, v in models_summary.items() if k != "notes"}
    predictions = pl.read_parquet(tmp_path / "models" / "group" / "predictions.parquet")
    assert not set(short) & set(predictions["sample_id"].to_list())
    # the pipeline gives the models the detect stage's chromatograms instead (an fdr change must not rerun them):
    # the same ranges, the same runs left out, the same model
    chromatograms = []
    for s_id, (start, end) in ((s, ranges[s]) for s in sheet["sample_id"].to_list()):
        chromatograms.append(tmp_path / "chrom" / s_id / "chromatogram.parquet")
        chromatograms[-1].parent.mkdir(parents=True)
        pl.DataFrame({"rt_s": np.linspace(start, end, 20), "tic": np.ones(20), "bpc": np.ones(20)}).write_parquet(
            chromatograms[-1])
    assert cli_main(["models", "--samples", str(tmp_path / "samples.tsv"), "--feature-matrix",
                     str(tmp_path / "corrected.parquet"), "--chromatograms", *map(str, chromatograms), "--outdir",
                     str(tmp_path / "models2"), "--params", json.dumps(params)]) == 0
    again = json.loads((tmp_path / "models2" / "group" / "summary.json").read_text())
    assert again["notes"] == models_summary["notes"] and again["n_samples"] == 9
    assert again["feature_sets"]["features"]["value"] == models_summary["feature_sets"]["features"]["value"]
    n = len(chromatograms)
    with pytest.raises(InputError, match=rf"--chromatograms has {n - 1} path\(s\) for {n} sample"):
        runs_measured(sheet, None, [str(p) for p in chromatograms[:-1]])


def test_the_typical_rt_range_is_the_runs_median_so_a_truncated_reference_run_is_left_out_too() -> None:
    from ms2study.modelling.outcomes import without_unmeasured_runs

    sheet = pl.DataFrame({"sample_id": ["R", "A", "B", "C"]})
    qc = pl.DataFrame({"sample_id": ["R", "A", "B", "C"], "rt_start_s": [0.0, 0.0, 2.0, 1.0],
                       "rt_end_s": [200.0, 900.0, 905.0, 898.0]})
    kept, notes, partial = without_unmeasured_runs(sheet, qc)
    assert kept["sample_id"].to_list() == ["A", "B", "C"] and "R (0.0-200.0 s, 22.2%)" in notes[0] and not partial
    assert without_unmeasured_runs(sheet.head(2), qc)[1] == []  # fewer than 3 runs: no typical range


def test_an_outcome_value_on_a_qc_or_blank_row_is_warned_about() -> None:
    """A trial: a blank row carrying group=control was accepted without a word; were it a study sample typed
    wrongly, it would be left out of the models and tests in silence."""
    from ms2study.io.samplesheet import typed_rows_with_outcomes

    sheet = pl.DataFrame({"sample_id": ["S1", "S2", "QC1", "B1"], "file": ["a", "b", "c", "d"],
                          "sample_type": ["sample", "sample", "qc", "blank"],
                          "group": ["case", "control", "", "control"], "age": ["40", "50", "", ""]})
    warned = typed_rows_with_outcomes(sheet, ["group", "age", "missing"], "samples.tsv")
    assert warned == ["samples.tsv: 1 QC or blank row(s) have outcome values (group, age): B1 (blank). QC and blank "
                      "runs never enter the models or the tests, so the values are ignored; if a row is a study "
                      "sample, set its sample_type to 'sample'. A study sample typed 'blank' also becomes a blank of "
                      "the blank filter, which then leaves out every feature about as abundant in it as in the "
                      "samples: most of them."]
    # one warning for all outcome columns (a second trial: it was printed once per column)
    qc_only = sheet.with_columns(pl.Series("group", ["case", "control", "case", ""]))
    assert len(typed_rows_with_outcomes(qc_only, ["group", "age"])) == 1
    assert "QC1 (qc)" in typed_rows_with_outcomes(qc_only, ["group", "age"])[0]
    assert "blank filter" not in typed_rows_with_outcomes(qc_only, ["group", "age"])[0]
    assert typed_rows_with_outcomes(sheet.drop("sample_type"), ["group"]) == []
    assert typed_rows_with_outcomes(sheet.with_columns(pl.lit("").alias("group")), ["group"]) == []


def test_a_blank_left_without_values_does_not_stop_the_models(tmp_path: Path) -> None:
    """Trial finding: in a batch study with blanks, excluding the features found in the blanks left one blank
    without any value; the models stage dropped that run from the sheet but not its chromatogram and stopped with
    "--chromatograms has 24 path(s) for 23 sample(s)", so no report was written. Blanks and QCs are never modelled:
    an empty one is not left out (nor named), and a study sample without values still is, with its chromatogram."""
    ids = [f"S{i:02d}" for i in range(1, 9)] + ["QC1", "BL1", "S09"]
    types = ["sample"] * 8 + ["qc", "blank", "sample"]
    groups = ["case", "control"] * 4 + ["", "", "case"]
    (tmp_path / "samples.tsv").write_text("sample_id\tfile\tsample_type\tgroup\n" + "".join(
        f"{s}\t{s}.mzML\t{t}\t{g}\n" for s, t, g in zip(ids, types, groups)))
    rng = np.random.default_rng(0)
    values = {s: np.exp(rng.normal(12, 1, 30)) for s in ids}
    values["BL1"] = np.full(30, np.nan)  # the blank: nothing left once blank features are excluded
    values["S09"] = np.full(30, np.nan)  # a study sample whose detection found nothing
    pl.DataFrame({"consensus_id": [f"C{j}" for j in range(30)], "mz": np.linspace(100, 400, 30),
                  "rt_s": np.linspace(30, 600, 30), **values}).fill_nan(None).write_parquet(tmp_path / "matrix.parquet")
    chromatograms = []
    for s in ids:
        chromatograms.append(tmp_path / "chrom" / s / "chromatogram.parquet")
        chromatograms[-1].parent.mkdir(parents=True)
        pl.DataFrame({"rt_s": np.linspace(0, 620, 20), "tic": np.ones(20), "bpc": np.ones(20)}).write_parquet(
            chromatograms[-1])
    params = {"outcomes": [{"column": "group", "type": "binary", "positive_class": "case"}],
              "feature_sets": ["features"], "n_permutations": 2, "outer_repeats": 1, "n_bootstrap": 20}
    assert cli_main(["models", "--samples", str(tmp_path / "samples.tsv"), "--feature-matrix",
                     str(tmp_path / "matrix.parquet"), "--chromatograms", *map(str, chromatograms), "--outdir",
                     str(tmp_path / "models"), "--params", json.dumps(params)]) == 0
    summary = json.loads((tmp_path / "models" / "group" / "summary.json").read_text())
    assert summary["n_samples"] == 8, summary["notes"]
    left_out = [n for n in summary["notes"] if "without any feature value left out" in n]
    assert len(left_out) == 1 and "S09" in left_out[0] and "BL1" not in left_out[0]
