"""The report's "Methods (draft for a paper)" (reporting.methods): prose written from the configuration used and the
stages' records. Configured values other than the defaults show in the text, a stage that did not run is not
described, missing or broken records never raise, values are escaped, and a real report carries the subsection
between the software versions and the configuration."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import polars as pl
import pytest
from test_report import _inputs, _write_differential, _write_study

from ms2study.modelling import differential as differential_tables
from ms2study.reporting.collect import DifferentialFiles, OutcomeFiles, ReportInputs
from ms2study.reporting.html import plain_text
from ms2study.reporting.methods import methods_section
from ms2study.stages.report import build_report

ROWS = [["python", "3.11.7"], ["platform", "Linux"], ["ms2study code", "/x/workflow, git commit abcdef123456"],
        ["ms2study", "0.1.0"], ["pyopenms", "3.6.0"], ["numpy", "2.0"], ["snakemake", "9.1.0"],
        ["torch", "not installed"]]
CORRECTION = {"drift_method": "qc_linear", "n_samples": 20, "n_qc": 6, "n_blank": 2, "batches": ["A", "B"],
              "n_blank_flagged": 7, "n_qc_rsd_flagged": 11, "qc_rsd_basis": "predicted", "n_filled": 300,
              "internal_standards": [], "normalised_after_drift": None}
MODEL_PARAMS = {"outer_repeats": 3, "inner_splits": 2, "univariate_top_k": None, "n_bootstrap": 500,
                "ci_level": 0.9, "permutation_stop_after": 0}


def _study_files(root: Path, correction: dict | None = CORRECTION, differential: dict | None = None,
                 model: dict | None = None, library: bool = False) -> ReportInputs:
    """ReportInputs naming a run's tables (empty files: only their presence is read), the feature matrix and, where
    given, the correction record, one outcome's differential summary and model summary, and a library index."""
    for name in ("features.parquet", "spectra.parquet", "feature_matrix.parquet"):
        (root / name).write_bytes(b"")
    record = None
    if correction is not None:
        record = root / "correction.json"
        record.write_text(json.dumps(correction))
    tests = []
    if differential is not None:
        differential_tables.write_table(pl.DataFrame({"consensus_id": ["C1"]}), root / "group.parquet", differential)
        tests = [DifferentialFiles(root / "group.parquet")]
    models = []
    if model is not None:
        (root / "models").mkdir()
        (root / "models" / "summary.json").write_text(json.dumps(model))
        models = [OutcomeFiles(root / "models" / "summary.json")]
    indexes = []
    if library:
        (root / "index").mkdir()
        (root / "index" / "manifest.json").write_text(json.dumps({"n_spectra": 1234,
                                                                   "sources": [{"path": "/data/mylib.mgf"}]}))
        indexes = [root / "index"]
    return ReportInputs(sheet=root / "samples.tsv", sample_tables={"features": [root / "features.parquet"],
                                                                   "spectra": [root / "spectra.parquet"]},
                        feature_matrix=root / "feature_matrix.parquet", correction=record, differential=tests,
                        models=models, library_indexes=indexes)


def _text(html: str) -> str:
    """The subsection's prose without the reference list, tags removed."""
    return plain_text(html.split('<p class="note">References')[0].replace("</p>", " </p>"))


def test_non_default_settings_show_in_the_text(tmp_path: Path) -> None:
    config = {"detect": {"noise_threshold_int": 25000.0, "mass_error_ppm": 5.0, "chrom_fwhm_s": 8.0},
              "link": {"rt_tol_s": 15.0},
              "correct": {"drift_method": "qc_linear", "qc_rsd_max": 0.2, "blank_ratio": 5.0},
              "annotate": {"fdr": 0.05, "precursor_tolerance_ppm": 20.0}, "library": "mylib.mgf",
              "models": {"covariates": ["age", "sex"]}}
    summary = {"outcome": "group", "type": "binary", "test": "moderated_ols", "covariates": ["cov:age", "cov:sex=M"],
               "n_moderated": 100, "n_permutations": 200, "n_tested": 150, "imputation": "half_minimum",
               "min_detected_fraction": 0.7, "class_counts": {"control": 10, "case": 10},
               "testability": "detected values"}
    model = {"outcome": "group", "type": "binary", "status": "done", "estimator": "random_forest", "n_samples": 20,
             "primary_metric": "roc_auc", "n_permutations": 100, "covariates": ["cov:age"], "covariate_weight": 3.0,
             "feature_sets": {"features": {"outer_splits": 5}}, "params": MODEL_PARAMS,
             "p_adjustment": {"method": "max-statistic", "permutations": 40, "feature_sets": 3}}
    html = methods_section(_study_files(tmp_path, differential=summary, model=model, library=True), config,
                           {"model_ids": ["enc-1"], "trained": True}, ROWS)
    text = _text(html)
    for expected in ("intensity threshold 25,000", "m/z tolerance 5 ppm", "expected FWHM 8 s",
                     "FeatureGroupingAlgorithmKD (10 ppm, 15 s)", "QC-RLSC", "a straight line", "exceeded 20 %",
                     "below 5× their blank mean", "within 20 ppm", "q ≤ 0.05", "mylib.mgf (1,234 spectra)",
                     "detected (gap fills not counting) in ≥ 70 % of one class", "moderated statistics",
                     "group (10 control vs 10 case; class coefficient, adjusted for age, sex)", "Freedman & Lane 1983",
                     "random forests", "repeated 3 times", "inner 2-fold", "90 % interval", "500 draws", "≤ 100 label",
                     "max-statistic adjusted across feature sets on the 40 permutations they all drew",
                     "6 pooled QCs", "2 blanks", "2 batches", "300 values", "pyOpenMS 3.6.0",
                     "git commit abcdef123456", "Snakemake 9.1.0"):
        assert expected in text, expected
    assert "cubic smoothing spline" not in text and "elastic-net" not in text and "Besag" not in text
    assert "PyTorch" not in text  # not installed: not named
    assert "Dunn W.B. et al. (2011)" in html and "Schymanski E.L. et al. (2014)" in html  # the reference list


def test_drift_fallback_and_no_correction_are_said_as_they_ran(tmp_path: Path) -> None:
    median = {**CORRECTION, "drift_method": "median", "n_qc": 0, "n_blank": 0}
    text = _text(methods_section(_study_files(tmp_path, correction=median), {}, None, ROWS))
    assert "allowed no QC-based drift correction" in text and "probabilistic quotient (Dieterle" in text
    assert "QC-RLSC" not in text and "blank" not in text and "QC RSD" not in text
    none = {**CORRECTION, "drift_method": "none"}
    (tmp_path / "none").mkdir()
    text = _text(methods_section(_study_files(tmp_path / "none", correction=none),
                                 {"correct": {"drift_method": "none", "gap_fill": False, "exclude_flagged": False}},
                                 None, ROWS))
    assert "No drift, batch or run-level correction" in text and "re-quantified" not in text
    assert "kept flagged features" in text and "QC RSD, as measured, exceeded 30 %" in text
    # trial AG: with drift_method none the values are only gap-filled, not "corrected"
    (tmp_path / "filled").mkdir()
    text = _text(methods_section(_study_files(tmp_path / "filled", correction=none),
                                 {"correct": {"drift_method": "none"}}, None, ROWS))
    assert "used the gap-filled intensities, otherwise as detected" in text and "corrected intensities" not in text


def test_a_stage_that_did_not_run_is_not_described(tmp_path: Path) -> None:
    inputs = ReportInputs(sheet=tmp_path / "samples.tsv", feature_matrix=tmp_path / "absent.parquet",
                          correction=tmp_path / "absent.json")
    html = methods_section(inputs, {"library": None}, None, ROWS)
    text = _text(html)
    for absent in ("features were detected", "FeatureGroupingAlgorithmKD", "QC-RLSC", "probabilistic quotient",
                   "searched against", "Schymanski", "Benjamini", "cross-validation", "embedded"):
        assert absent not in text, absent
    assert "Software: ms2study 0.1.0" in text and "CITATION.cff" in text
    # without a correction record the matrix's linking is described, not the corrections
    text = _text(methods_section(_study_files(tmp_path, correction=None), {}, None, ROWS))
    assert "FeatureGroupingAlgorithmKD" in text and "QC-RLSC" not in text and "re-quantified" not in text


def test_missing_or_broken_records_never_raise(tmp_path: Path) -> None:
    absent = ReportInputs(sheet=tmp_path / "samples.tsv", feature_matrix=tmp_path / "m.parquet",
                          correction=tmp_path / "c.json", differential=[DifferentialFiles(tmp_path / "d.parquet")],
                          models=[OutcomeFiles(tmp_path / "s.json")], library_indexes=[tmp_path / "lib"],
                          calibrations=[tmp_path / "cal.json"], qc=tmp_path / "qc.parquet")
    for config in (None, {}, {"library": "lib.mgf"}, "not a mapping"):
        html = methods_section(absent, config)  # type: ignore[arg-type]
        assert "Methods (draft for a paper)" in html
    assert "configuration was not passed" in methods_section(absent, None, rows=ROWS)
    (tmp_path / "c.json").write_text("{not json")
    (tmp_path / "d.parquet").write_text("not parquet")
    (tmp_path / "s.json").write_text(json.dumps({"status": "done", "feature_sets": {"x": {}}, "params": "odd"}))
    (tmp_path / "m.parquet").write_bytes(b"")
    html = methods_section(absent, {"library": "lib.mgf"}, {"model_ids": []}, ROWS)
    assert "FeatureGroupingAlgorithmKD" in html and "QC-RLSC" not in html


def test_confidence_without_q_values_and_an_untrained_encoder_are_said(tmp_path: Path) -> None:
    config = {"library": "lib.mgf", "annotate": {"confidence": "none"}}
    text = _text(methods_section(_study_files(tmp_path), config, {"model_ids": ["untrained-seed0-x"],
                                                                 "trained": False}, ROWS))
    assert "No q-values were computed" in text and "Storey" not in text and "Schymanski" not in text
    assert "untrained placeholder encoder (untrained-seed0-x" in text


def test_the_library_calibration_and_consensus_identifications_shape_the_text(tmp_path: Path) -> None:
    inputs = _study_files(tmp_path, library=True)
    calibration = tmp_path / "calibration.json"
    calibration.write_text(json.dumps({"scoring": {"plan": "fixed"}, "stats": {"n_queries": 4000},
                                       "structure_model": None}))
    (tmp_path / "identifications.parquet").write_bytes(b"")
    inputs = dataclasses.replace(inputs, calibrations=[calibration],
                                 identifications=tmp_path / "identifications.parquet")
    text = _text(methods_section(inputs, {"library": "mylib.mgf", "annotate": {"recalibrate_precursors": False}},
                                 None, ROWS))
    for expected in ("4,000 library spectra searched with their own structure removed", "Storey's π0",
                     "the weighted mean of the spectral scores (cosine 0.25, modified cosine 0.25, entropy 0.5",
                     "Simes' test", "within the isomer margin", "q ≤ 0.01"):
        assert expected in text, expected
    assert "structure model" not in text and "precursor offsets" not in text


def test_values_are_escaped(tmp_path: Path) -> None:
    config = {"reference_sample": "<b>R1</b>", "library": "<script>x</script>.mgf"}
    html = methods_section(_study_files(tmp_path), config, {"model_ids": ["<i>m</i>"], "trained": True}, ROWS)
    assert "<b>R1</b>" not in html and "&lt;b&gt;R1&lt;/b&gt;" in html
    assert "<script>" not in html and "<i>m</i>" not in html


def test_a_default_study_without_library_or_outcomes_is_concise(tmp_path: Path) -> None:
    median = {**CORRECTION, "drift_method": "median", "n_qc": 0, "n_blank": 0, "batches": ["1"]}
    text = _text(methods_section(_study_files(tmp_path, correction=median), {},
                                 {"model_ids": ["ms2study-encoder-v3-d58b640d1752"], "trained": True}, ROWS))
    words = len(re.findall(r"\S+", text))
    assert 150 <= words <= 450, words


@pytest.fixture(scope="module")
def study_report(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The tiny study of test_report (untrained encoder, outcome group modelled and tested) reported with a
    configuration, as the report rule passes it."""
    root = tmp_path_factory.mktemp("methods_study")
    _write_study(root, trained=False)
    _write_differential(root)
    out = root / "report.html"
    config = {"models": {"outcomes": [{"column": "group", "type": "binary", "positive_class": "case"}]},
              "annotate": {"fdr": 0.01}, "detect": {"noise_threshold_int": 5000.0}}
    build_report(_inputs(root, ["group"]), out, {"config_used": config})
    return out.read_text(encoding="utf-8")


def test_the_report_carries_the_methods_between_versions_and_configuration(study_report: str) -> None:
    software = study_report.split('id="software"')[1]
    assert software.index("<th>version</th>") < software.index("Methods (draft for a paper)") \
        < software.index("Configuration used")
    text = _text(software.split("Methods (draft for a paper)")[1].split("Configuration used")[0])
    for expected in ("pyOpenMS", "intensity threshold 5,000", "FeatureGroupingAlgorithmKD",
                     "untrained placeholder encoder", "group (4 control vs 4 case; ", "Benjamini-Hochberg",
                     "predicted from", "nested cross-validation", "CITATION.cff"):
        assert expected in text, expected
    assert "searched against" not in text  # no library configured: no identification paragraph


def test_the_reference_run_is_named_from_the_qc_table(tmp_path: Path) -> None:
    """Trial AG: the draft said "by default the sheet's first study sample" where the QC table names the run used."""
    from ms2study.modelling.qc import REFERENCE_NOTE

    inputs = _study_files(tmp_path, correction=None)
    qc = tmp_path / "qc.parquet"
    pl.DataFrame({"sample_id": ["S01", "S03"], "run_note": [None, f"apart; {REFERENCE_NOTE}"]}).write_parquet(qc)
    text = _text(methods_section(dataclasses.replace(inputs, qc=qc), {}, None, ROWS))
    assert "aligned onto reference run S03 by a line" in text
    assert "aligned onto reference run R9" in _text(methods_section(dataclasses.replace(inputs, qc=qc),
                                                                     {"reference_sample": "R9"}, None, ROWS))
    assert "one reference run (the sheet's first study sample)" in _text(methods_section(inputs, {}, None, ROWS))


def test_batch_only_marks_and_the_models_explanations_are_described(tmp_path: Path) -> None:
    """Session 42: the Methods named neither the batch-only mark nor how the models are explained."""
    correction = {**CORRECTION, "batch_only": {"A": 2, "B": 1}, "batch_only_expected": 0.42}
    model = {"outcome": "group", "type": "binary", "status": "done", "estimator": "elastic_net", "n_samples": 20,
             "primary_metric": "roc_auc", "feature_sets": {"embedding": {"outer_splits": 5},
                                                           "chemical_space": {"outer_splits": 5}},
             "params": MODEL_PARAMS}
    inputs = _study_files(tmp_path, correction=correction, model=model)
    explained = dataclasses.replace(inputs, attribution=[tmp_path / "group.parquet"],
                                    region_attribution=[tmp_path / "regions.parquet"])
    html = methods_section(explained, {}, None, ROWS)
    text = _text(html)
    assert "in the runs of one batch only were marked, not removed" in text and "(3; 0.4 expected by chance)" in text
    assert ("splitting each fitted score exactly over the consensus features (pooled embeddings) and the prototype "
            "regions (chemical-space abundances)") in text and "Lundberg & Lee 2017" in text
    assert "Lundberg S.M., Lee S.-I. (2017) Adv. Neural Inf. Process. Syst. 30" in html
    text = _text(methods_section(dataclasses.replace(explained, region_attribution=[]), {}, None, ROWS))
    assert "exactly over the consensus features (pooled embeddings)," in text and "prototype regions" not in text
    (tmp_path / "one").mkdir()
    one_batch = _text(methods_section(_study_files(tmp_path / "one", correction={**correction, "batches": ["A"]}), {},
                                      None, ROWS))
    assert "one batch only" not in one_batch


def test_a_paired_outcomes_models_are_described_within_subjects(tmp_path: Path) -> None:
    """Trial BJ (10 volunteers before and after a diet): the draft read "group (binary, n = 20, ROC AUC) ... outer
    stratified 5-fold ... bootstrap stratified by class", where the models ran within subjects on 10 subjects; a PI
    pasting it would misstate the design. It now says so, and cites the multilevel method."""
    model = {"outcome": "group", "type": "binary", "status": "done", "estimator": "elastic_net", "n_samples": 20,
             "n_subjects": 10, "paired_by": "subject_id", "primary_metric": "roc_auc", "n_permutations": 100,
             "feature_sets": {"features": {"outer_splits": 5}}, "params": MODEL_PARAMS}
    html = methods_section(_study_files(tmp_path, model=model), {}, {"model_ids": ["enc-1"], "trained": True}, ROWS)
    text = _text(html)
    assert "group (binary, 20 runs of 10 subjects, paired, ROC AUC)" in text and "n = 20" not in text
    assert ("group was modelled within subjects (multilevel, Westerhuis et al. 2010: each subject's runs relative to "
            "its own mean, covariates left out): folds held out whole subjects, the bootstrap resampled subjects and "
            "label permutations stayed within subjects.") in text
    assert "Westerhuis J.A. et al. (2010) Metabolomics 6:119." in html
