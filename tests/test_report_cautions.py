"""The report's cautions (``reporting.cautions``), from a scientist's reading of a spike-in study's report: MS/MS
coverage, a permutation p at its floor, scores below chance, what 'detected' means, wording, and the warnings a
reader must be given (few samples, mostly imputed tests, untested adduct labels, the differential stage's own)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from ms2study.core import tables
from ms2study.modelling.differential import write_table
from ms2study.reporting import cautions, choice, collect, outcomes, whatdiffers, qc
from ms2study.reporting.collect import DifferentialFiles, OutcomeFiles, ReportInputs
from ms2study.stages.report import build_report

IDS = [f"S{i:02d}" for i in range(1, 9)]
N_FEATURES = 10


def _entry(value: float, low: float, high: float, p: float, secondary: dict | None = None) -> dict:
    return {"metric": "roc_auc", "value": value, "ci_low": low, "ci_high": high, "permutation_p": p,
            "permutation_null_mean": 0.5, "n_samples": 8, "n_features": 10, "outer_splits": 4, "outer_repeats": 5,
            "secondary": secondary or {}}


SUMMARY = {"outcome": "group", "type": "binary", "status": "done", "n_samples": 8, "positive_class": "case",
           "class_counts": {"control": 4, "case": 4}, "params": {"n_permutations": 20},
           "feature_sets": {"embedding": _entry(0.2, 0.0, 0.7, 1.0, {"balanced_accuracy": {
                                "value": 0.3, "ci_low": 0.1, "ci_high": 0.6}}),
                            "features": _entry(0.98, 0.72, 1.0, 1 / 21),
                            "binned_spectra": _entry(0.55, 0.1, 1.0, 0.4)}}


def _study(root: Path, ion_tested: bool = False) -> ReportInputs:
    """Eight runs; C0 alone has MS/MS; C1-C3 are significant; C0-C6 have an imputed value; C0 and C1 carry adduct
    labels, C1's grouped on mass and RT alone; the differential summary carries a warning with markup in it."""
    study = root / "study"
    study.mkdir(parents=True)
    group = ["control"] * 4 + ["case"] * 4
    pl.DataFrame({"sample_id": IDS, "file": [f"{s}.mzML" for s in IDS], "group": group}).write_csv(
        study / "samples.tsv", separator="\t")
    spectra_paths = []
    for k, s in enumerate(IDS):
        spectra = pl.DataFrame({
            "spectrum_id": [f"{s}:S0", f"{s}:S1"], "sample_id": [s] * 2, "scan_index": [0, 1],
            "native_id": ["scan=0", "scan=1"], "rt_s": [100.0] * 2, "precursor_mz": [150.0] * 2,
            "precursor_charge": [1] * 2, "precursor_intensity": [1e5] * 2, "feature_id": [f"{s}:F0", None],
            "mz": [[50.0, 80.0]] * 2, "intensity": [[1.0, 0.5]] * 2},
            schema={c: t for c, t in tables.SPECTRA.items() if c not in tables.ADDED_LATER})
        spectra = tables.conform(spectra, tables.SPECTRA).with_columns(
            pl.Series("precursor_corrected", [k == 0, False]))  # one scan's selected ion outside its window
        spectra_paths.append(study / f"{s}_spectra.parquet")
        spectra.write_parquet(spectra_paths[-1])
    rng = np.random.default_rng(0)
    ids = [f"C{i}" for i in range(N_FEATURES)]
    values = rng.uniform(1e4, 1e6, size=(N_FEATURES, len(IDS)))
    matrix = pl.DataFrame({"consensus_id": ids, "mz": np.linspace(100, 400, N_FEATURES),
                           "rt_s": np.linspace(60, 600, N_FEATURES), "n_detected": [len(IDS)] * N_FEATURES,
                           **{s: values[:, j] for j, s in enumerate(IDS)}})
    matrix.write_parquet(study / "feature_matrix.parquet")
    matrix.with_columns(pl.Series("adduct", ["[M+H]+", "[M+NH4]+"] + [None] * (N_FEATURES - 2)),
                        pl.Series("adduct_p_value", [0.001] + [None] * (N_FEATURES - 1), dtype=pl.Float64)
                        ).write_parquet(study / "feature_matrix_corrected.parquet")
    pl.DataFrame({"consensus_id": [f"C{i}" for i in range(N_FEATURES) for _ in IDS],
                  "sample_id": IDS * N_FEATURES, "feature_id": [f"{s}:F{i}" for i in range(N_FEATURES) for s in IDS]}
                 ).write_parquet(study / "feature_links.parquet")
    q = [0.5, 0.01, 0.02, 0.03] + [0.6] * (N_FEATURES - 4)
    differential = pl.DataFrame({
        "consensus_id": ids, "mz": matrix["mz"], "rt_s": matrix["rt_s"], "compound_group": [None] * N_FEATURES,
        "ion": ["[M+H]+", "[M+NH4]+"] + [None] * (N_FEATURES - 2), "outcome": ["group"] * N_FEATURES,
        "test": ["welch_t"] * 7 + ["moderated_t"] * 3, "log2_fold_change": [0.1, 2.0, 1.5, -1.2] + [0.0] * 6,
        "p_value": [v / 10 for v in q], "q_value": q, "tested": [True] * N_FEATURES,
        "detection_rate": [0.75] * 7 + [1.0] * 3}, schema_overrides={"compound_group": pl.Utf8, "ion": pl.Utf8})
    if ion_tested:  # as the differential stage may write it: null without a label, false on mass and RT alone
        differential = differential.with_columns(pl.Series("ion_tested", [False, True] + [None] * (N_FEATURES - 2)))
    (study / "differential").mkdir()
    write_table(differential, study / "differential" / "group.parquet", {
        "outcome": "group", "type": "binary", "positive_class": "case", "reference_class": "control",
        "class_counts": {"control": 4, "case": 4}, "test": "welch_t", "n_samples": 8,
        "warnings": ["3 of 3 hits lie in one m/z × RT patch <script>"]})
    (study / "models" / "group").mkdir(parents=True)
    (study / "models" / "group" / "summary.json").write_text(json.dumps(SUMMARY))
    return ReportInputs(sheet=study / "samples.tsv", sample_tables={"spectra": spectra_paths},
                        feature_matrix=study / "feature_matrix.parquet",
                        models=[OutcomeFiles(study / "models" / "group" / "summary.json")],
                        differential=[DifferentialFiles(study / "differential" / "group.parquet")],
                        corrected_matrix=study / "feature_matrix_corrected.parquet",
                        feature_links=study / "feature_links.parquet")


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """(whole report, its Warnings section)."""
    root = tmp_path_factory.mktemp("cautions")
    out = root / "report.html"
    build_report(_study(root), out)
    text = out.read_text(encoding="utf-8")
    return text, text.split('id="warnings"')[1].split('id="overview"')[0]


def _between(text: str, start: str, end: str) -> str:
    return text.split(f'id="{start}"')[1].split(f'id="{end}"')[0]


def test_ms2_coverage_is_stated_warned_and_counted_among_the_hits(report: tuple[str, str]) -> None:
    """Finding 3: 135 of 3326 features had MS/MS and none of the 11 hits, yet the report was silent, and its QC
    column 'share MS2 mapped' (a share of scans) read as good coverage."""
    text, warnings = report
    assert "MS/MS for 1 of 10 consensus features (10.0 %)" in _between(text, "overview", "samples")
    assert "MS/MS for 1 of 10 consensus features (10.0 %), below 20 %: only these can be identified" in warnings
    differential = _between(text, "differential", "encoder")
    assert "MS/MS for 0 of the 3 features at q &lt; 0.05 (only these can be identified)" in differential
    assert "outcome <b>group</b>: none of the 3 features at q &lt; 0.05 has MS/MS" in warnings
    assert qc.QC_COLUMNS["share_ms2_mapped"] == "share of MS2 scans mapped"
    assert "the share of the run's MS/MS scans assigned to a feature (of scans, not of features" in qc.QC_TEXT
    # above the threshold: stated, not warned; without the links: neither
    many = {f"C{i}" for i in range(3)}
    warned: list[str] = []
    cautions.coverage_warning(many, 10, warned)
    assert warned == []
    assert cautions.features_with_ms2(None, []) is None


def test_a_permutation_p_at_its_floor_is_said_so(report: tuple[str, str]) -> None:
    """Finding 7: p = 0.048 = 1/21 with 20 permutations met 'p < 0.05' by construction, unsaid."""
    models = _between(report[0], "models", "matrix")
    assert ("p = 0.0476 (features) is 1/(20 + 1), the smallest p these 20 permutations can give; more permutations "
            "(models: n_permutations) would tell how far below it lies.") in models
    assert "0.0476 (floor)" in models and "0.4 (floor)" not in models
    # a set permutation_note already explains (near 1, p not small) is not said twice
    floor = {**SUMMARY, "params": {"n_permutations": 9},
             "feature_sets": {"features": _entry(1.0, 0.7, 1.0, 0.1)}}
    assert outcomes.permutation_note(floor) is not None
    assert cautions.floor_note(floor, skip=cautions.near_maximum(floor)) is None
    assert cautions.floor_note({**SUMMARY, "params": {}}) is None


def test_an_adjusted_p_at_the_floor_of_the_shared_permutations_is_said_so() -> None:
    """A trial raised models: n_permutations to 400: the raw p fell to 0.0025 but the adjusted p Main findings reads
    stayed 1/41 (the 40 shared permutations: sets may stop drawing early), and nothing said why."""
    entry = {**_entry(0.9, 0.7, 1.0, 1 / 401), "permutation_p_adjusted": 1 / 41}
    summary = {**SUMMARY, "params": {"n_permutations": 400, "permutation_stop_after": 10},
               "p_adjustment": {"permutations": 40}, "feature_sets": {"features": entry,
                                                                      "embedding": _entry(0.5, 0.2, 0.8, 0.5)}}
    note = cautions.floor_note(summary)
    assert note.startswith("p = 0.00249 (features) is 1/(400 + 1)")
    assert ("The p adjusted for the choice among the sets, 0.0244 (features), is 1/(40 + 1), the smallest that the 40 "
            "permutations shared by every set can give; models: n_permutations alone does not raise it while sets "
            "may stop drawing early (permutation_stop_after: 10); with permutation_stop_after: 0") in note
    # drawing never stops early: the shared permutations are all of them, and n_permutations raises both
    every = {**summary, "params": {"n_permutations": 40, "permutation_stop_after": 0}}
    assert "models: n_permutations raises it." in cautions.floor_note(
        {**every, "feature_sets": {"features": {**entry, "permutation_p": 0.3}}})
    # not at the floor: nothing
    assert cautions.floor_note({**summary, "feature_sets": {"features": {**entry, "permutation_p": 0.3,
                                                                         "permutation_p_adjusted": 0.3}}}) is None


def test_a_score_well_below_chance_is_explained(report: tuple[str, str]) -> None:
    """Finding 8: AUC 0.19 [0, 0.667] was only 'not above chance'."""
    models = _between(report[0], "models", "matrix")
    assert ("Scores well below chance (embedding: roc_auc 0.20 [0.00, 0.70], "
            "balanced_accuracy 0.30 [0.10, 0.60]) are not an inverse effect:") in models
    assert "Parker, Günter &amp; Bedo 2007, BMC Bioinformatics 8:326" in models
    assert "The embedding set sees only the 1 of 10 consensus features with MS/MS." in models
    assert "binned_spectra: roc_auc" not in models  # 0.55: not below chance
    # an interval wholly below chance (a trial: binned_spectra AUC 0.000 [0.000, 0.357], 5 + 5 samples, p 1) is the
    # same artefact: a model fitted to the labels cannot learn their inverse
    inverse = {**SUMMARY, "feature_sets": {"features": _entry(0.1, 0.0, 0.3, 1.0)}}
    note = cautions.below_chance_note(inverse)
    assert note.startswith("Scores well below chance (features: roc_auc 0.10 [0.00, 0.30]) are not an inverse "
                           "effect, even where the interval lies wholly below chance")
    assert "wholly" not in cautions.below_chance_note({**SUMMARY, "feature_sets": {
        "features": _entry(0.2, 0.0, 0.7, 1.0)}})


def test_the_smallest_detectable_effect_says_what_detected_means(report: tuple[str, str]) -> None:
    """Finding 6: 'detected' means the AUC's interval above 0.5 in at least half of the simulated studies."""
    models = _between(report[0], "models", "matrix")
    assert ("&#x27;Detected&#x27; means the AUC&#x27;s 95 % interval lay above 0.5 in at least half of the simulated "
            "studies of that setting; most settings were simulated once or a few times") in models
    assert "a rough guide, not a measured power" in models and "power;" not in models  # trial AL: one study each
    assert cautions.detection_meaning({"criterion": "AUC above 0.7 in most studies"}) == (
        "'Detected' means: AUC above 0.7 in most studies (simulated studies, not runs of this instrument).")


def test_wording_claims_no_cause_and_says_imputed(report: tuple[str, str]) -> None:
    """Finding 9: 'a converter fault' was asserted; 'filled' meant imputed in one place and gap-filled in others."""
    text, warnings = report
    # the run is named (a second trial: "11 scans" with the runs only in the logs)
    assert (f"1 MS/MS scans had a selected-ion m/z outside their own isolation window ({IDS[0]} 1; cause unknown, a "
            "converter fault is one known cause): the isolation target was used as precursor m/z") in warnings
    assert "(a converter fault)" not in text
    assert "Welch for features with an imputed value" in whatdiffers._test_text(
        {"type": "binary", "test": "moderated_t", "n_moderated": 5, "class_counts": {}})
    assert "half-minimum fill " not in text and "with a filled value" not in text  # filled: gap-filled only


def test_the_warnings_a_reader_must_be_given(report: tuple[str, str]) -> None:
    """Finding 10: few samples, mostly imputed tests and labels resting on mass and RT alone went unwarned."""
    text, warnings = report
    assert ("outcome <b>group</b>: only 4 control vs 4 case samples (fewer than 10 per class): the models&#x27; 95 % "
            "intervals are wide (best set, features: AUC 0.98, 95 % interval 0.72 to 1.00") in str(warnings) or (
        "outcome <b>group</b>: only 4 control vs 4 case samples (fewer than 10 per class): the models' 95 % "
        "intervals are wide (best set, features: AUC 0.98, 95 % interval 0.72 to 1.00") in str(warnings)
    assert "outcome <b>group</b>: 7 of 10 tested features (70 %) rely on imputation" in warnings
    assert ("1 of 2 adduct and isotope labels rest on mass and RT alone (measured together in fewer than "
            "<code>correct: adduct_min_runs</code> = 5 runs") in warnings
    assert "they refuse no identification" in warnings
    # the label is marked in the differential table (from the corrected matrix: the table has no ion_tested)
    assert "[M+NH4]+ (mass and RT only)" in _between(text, "differential", "encoder")
    assert "[M+H]+ (mass and RT only)" not in text
    # below the thresholds: no warning
    quiet: list[str] = []
    cautions.class_size_warning({**SUMMARY, "class_counts": {"control": 10, "case": 12}}, "group", quiet)
    cautions.imputation_warning(pl.DataFrame({"detection_rate": [1.0, 1.0, 0.5]}), "group", quiet)
    cautions.label_warning(pl.DataFrame({"adduct": ["[M+H]+"], "adduct_p_value": [0.01]}), 5, quiet)
    assert quiet == []


def test_the_table_s_own_ion_tested_column_marks_the_labels() -> None:
    table = pl.DataFrame({"consensus_id": ["C0", "C1", "C2"], "ion": ["[M+H]+", "[M+Na]+", None],
                          "ion_tested": [True, False, None]})
    marked = cautions.mark_untested_ions(table, None)
    assert marked["ion"].to_list() == ["[M+H]+", "[M+Na]+ (mass and RT only)", None]
    assert cautions.mark_untested_ions(table.drop("ion_tested"), None).equals(table.drop("ion_tested"))


def test_the_differential_summary_s_warnings_are_shown_escaped(report: tuple[str, str]) -> None:
    """The differential stage records warnings in its summary (e.g. hits crowded in one m/z × RT patch)."""
    assert "outcome <b>group</b>: 3 of 3 hits lie in one m/z × RT patch &lt;script&gt;" in report[1]


def test_the_command_takes_the_feature_links(tmp_path: Path) -> None:
    from ms2study.stages.report import inputs_from_args
    import argparse

    args = argparse.Namespace(samples="s.tsv", feature_matrix=None, identifications=None, model_summaries=[],
                              model_predictions=[], differential=[], class_enrichment=[], calibration=[],
                              encoder_info=None, library_index=[], qc=None, chromatograms=[], attribution=[], region_attribution=[],
                              corrected_matrix=None, correction=None, feature_links="links.parquet",
                              **{k: None for k in collect.TABLES})
    assert inputs_from_args(args).feature_links == Path("links.parquet")


def test_a_verdict_at_the_permutations_resolution_is_said_so_in_the_models_section(report: tuple[str, str]) -> None:
    """20 permutations and 3 feature sets: p = 1/21 cannot survive the adjustment for the choice among the sets
    (3/21 = 0.143 is the smallest adjusted p), whatever the data; the models section and the box say so."""
    text, _ = report
    models = _between(text, "models", "differential")
    assert ('<p class="note resolution">Best set, features: this verdict is limited by the number of permutations: '
            "0 of the 20 permutations drawn reached the first repeat's AUC, and with 20 permutations and 3 feature "
            "sets the smallest adjusted p possible is 3/21 = 0.143; the adjusted p (0.143) cannot fall below 0.05 with any "
            "count of reaching permutations. Raise <code>models: n_permutations</code> in config.yaml (e.g. to 1000) "
            "to tell whether it holds.</p>") in models
    assert choice.permutation_resolution(SUMMARY, "embedding") is None  # its interval reaches chance anyway
    findings_box = text.split('id="findings"')[1].split('id="warnings"')[0]
    assert "cannot fall below 0.05 with any count of reaching permutations" in findings_box


def test_accepted_identifications_per_run_say_what_they_count_and_why_they_vary(tmp_path: Path) -> None:
    """Simulated 3-batch study: 'accepted identifications' ranged 30 to 124 between runs with similar MS/MS, read
    as run quality; the false-discovery cut is applied run by run, and the study's identifications are elsewhere."""
    runs = ["S1", "S2", "QC1", "B1"]
    table = pl.DataFrame({"sample_id": runs, "sample_type": ["sample", "sample", "qc", "blank"],
                          "n_ms2_scans": [2261, 2747, 2500, 560], "n_accepted": [30, 124, 90, 0],
                          "outlier": [False] * 4, "outlier_rule": ["robust z > 3.5"] * 4})
    table.write_parquet(tmp_path / "qc.parquet")
    warnings: list[str] = []
    section = qc.qc_section(tmp_path / "qc.parquet", [], runs, warnings)
    note = section.split('<p class="note accepted">')[1].split("</p>")[0]
    assert "counted per spectrum" in note and "computed run by run" in note
    assert "(here 30 to 124 per study sample or pooled QC, 4.1-fold; 1.3 % to 4.5 % of their MS/MS scans)" in note
    assert "is not a measure of the run's quality" in note
    assert ('<a href="#identifications">Identifications</a> (<code>results/study/identifications.parquet</code>): '
            "one per consensus feature") in note
    assert section.index('class="note accepted"') < section.index('id="qc-table')  # above the tables
    # a table without the column says nothing; one of study samples only speaks of runs
    assert qc.accepted_note(table.drop("n_accepted")) == ""
    assert "(here 30 to 124 per run, 4.1-fold;" in qc.accepted_note(table.filter(pl.col("sample_type") == "sample"))
    # runs that accepted as many: one number, not "29 to 29" (a fresh user's two QC injections)
    same = table.with_columns(n_accepted=pl.lit(29), n_ms2_scans=pl.lit(381)).filter(pl.col("sample_type") == "qc")
    assert "(here 29 in each run; 7.6 % of their MS/MS scans)" in qc.accepted_note(same)


def test_hits_gap_filled_unevenly_between_the_groups_are_named() -> None:
    """A scientist's trial: a hit filled in half of one group and none of the other had its fold change inflated
    (log2 3.36 against a true 1.92). Hits whose gap-filled shares differ by 25 points or more are named with the
    shares; an even or a non-significant one is not, and a table without the per-group columns says nothing."""
    from ms2study.reporting import cautions

    table = pl.DataFrame({"consensus_id": ["C1998", "C10", "C11", "C12"], "q_value": [0.02, 0.01, 0.3, 0.04],
                          "gap_filled_rate_positive": [0.0, 0.1, 0.0, None],
                          "gap_filled_rate_reference": [0.5, 0.2, 0.9, None]})
    assert cautions.uneven_gap_filling(table).to_list() == [True, False, True, False]
    warnings: list[str] = []
    cautions.gap_filling_warning(table, "group", warnings)
    assert len(warnings) == 1 and "1 of the 3 features at q &lt; 0.05" in warnings[0]
    assert "C1998 (0 % vs 50 %)" in warnings[0] and "C11" not in warnings[0]
    assert warnings[0].label == "fold changes may be off where gap filling differs"
    quiet: list[str] = []
    cautions.gap_filling_warning(table.drop("gap_filled_rate_positive", "gap_filled_rate_reference"), "group", quiet)
    cautions.gap_filling_warning(table.filter(pl.col("consensus_id") == "C10"), "group", quiet)
    assert quiet == []


def test_a_small_two_group_study_is_told_how_few_splits_its_permutation_null_has() -> None:
    """A second trial: 4 + 4 samples, copies of two source runs; the split by source filled the pooled permutation
    null and a 3x change stayed at q 0.68. The few-samples caution says how many distinct splits there are and what
    to do (a covariate, held fixed by the permutations); larger studies are not told."""
    from ms2study.reporting.cautions import class_size_warning

    warnings: list[str] = []
    class_size_warning({"type": "binary", "class_counts": {"control": 4, "case": 4}, "feature_sets": {}}, "group",
                       warnings)
    assert len(warnings) == 1 and "pools only 35 distinct splits" in warnings[0]
    assert "models: covariates" in warnings[0]
    warnings = []
    class_size_warning({"type": "binary", "class_counts": {"control": 5, "case": 7}, "feature_sets": {}}, "group",
                       warnings)
    assert len(warnings) == 1 and "distinct splits" not in warnings[0]  # 792 splits


def test_a_three_arm_study_names_its_small_arm_and_its_covariates_by_column() -> None:
    """A three-arm trial: arms of 15, 28 and 2 read "only 15 control vs 28 disease_A vs 2 disease_B samples (fewer
    than 10 per class)", and covariates age and sex "adjusted for age, sex=M" (one-hot coding; "males only")."""
    from ms2study.reporting.cautions import class_size_warning
    from ms2study.reporting.html import covariate_names

    said: list = []
    class_size_warning({"type": "multiclass", "class_counts": {"control": 15, "disease_A": 28, "disease_B": 2}},
                       "arm", said)
    assert said and str(said[0]).startswith(
        "outcome <b>arm</b>: disease_B has fewer than 10 samples (15 control vs 28 disease_A vs 2 disease_B): ")
    said = []
    class_size_warning({"type": "binary", "class_counts": {"control": 4, "case": 4}}, "group", said)
    assert "only 4 control vs 4 case samples (fewer than 10 per class)" in str(said[0])
    assert covariate_names({"covariates": ["cov:age", "cov:sex=M", "cov:site=B", "cov:site=C"]}) == "age, sex, site"


def test_each_warning_of_the_differential_test_has_its_own_label() -> None:
    """Trial N: two warnings of the differential stage were linked beside the findings as "warning of the
    differential test" twice; each now carries its own words."""
    from ms2study.reporting.cautions import summary_warnings

    summary = {"warnings": ["6 run(s) measured only part of the study's RT range (S02, S03): 1999 value(s) ...",
                            "more than half of the tested features rely on imputed values: ...",
                            "1 run(s) left out of the tests and models: they measured less ..."]}
    warnings: list = []
    summary_warnings(summary, "group", warnings)
    # up to ten words (trial AW: "1 run(s) left out of the ..." said nothing of what it was left out of)
    assert [w.label for w in warnings] == ["6 run(s) measured only part of the study's RT range ...",
                                           "more than half of the tested features rely on imputed ...",
                                           "1 run(s) left out of the tests and models"]
    assert all(w.concerns == ("differential:group",) for w in warnings)


def test_byte_identical_runs_are_a_caution_in_the_report(tmp_path: Path) -> None:
    """Trial AD: six copies of two real runs gave "2253 of 2253 tested features differ" with zero-width intervals;
    the report said only "possible replicate injections", the pre-run warning was in the terminal only."""
    from ms2study.reporting.copies import identical_run_cautions

    (tmp_path / "a.mzML").write_text("<mzML id='one run'></mzML>")
    (tmp_path / "b.mzML").write_bytes((tmp_path / "a.mzML").read_bytes())
    (tmp_path / "c.mzML").write_text("<mzML id='another run'></mzML>")
    sheet = pl.DataFrame({"sample_id": ["A", "B", "C", "D"], "file": ["a.mzML", "b.mzML", "c.mzML", "gone.mzML"]})
    found = identical_run_cautions(sheet, tmp_path)
    assert len(found) == 1 and found[0].label == "identical run files (A, B)"
    assert str(found[0]).startswith("runs <b>A, B</b> are byte-identical copies of one run file: every test, interval "
                                    "and model counts that one injection 2 times")
    assert identical_run_cautions(sheet.filter(pl.col("sample_id") != "B"), tmp_path) == []
    assert identical_run_cautions(sheet.drop("file"), tmp_path) == []


def test_runs_with_identical_matrix_values_are_a_caution_and_main_findings_says_not_evidence(tmp_path: Path) -> None:
    """Trial AS: two real runs, each copied with one header comment added (files not byte-identical), gave "2886 of
    2886 tested features differ" at the top of Main findings with no word on the copies."""
    from ms2study.reporting import copies, findings

    rng = np.random.default_rng(2)
    a, b = rng.lognormal(10, 1, 40), rng.lognormal(10, 1, 40)
    a[:5] = np.nan
    matrix = pl.DataFrame({"consensus_id": [f"C{i}" for i in range(40)], "A": a, "A2": a, "B": b, "B2": b,
                           "C": b * 1.01, "E": np.where(np.arange(40) < 35, np.nan, a)})
    assert copies.identical_value_groups(matrix, ["A", "B", "A2", "B2", "C", "E"]) == [["A", "A2"], ["B", "B2"]]
    found = copies.identical_value_cautions(matrix, ["A", "B", "A2", "B2", "C", "E"])
    assert [c.label for c in found] == ["identical run values (A, A2)", "identical run values (B, B2)"]
    assert found[0].concerns == ("models", "differential")
    assert "runs <b>A, A2</b> hold the same value for every feature" in found[0]
    # a group the byte-identical caution already names is not named twice
    byte = copies._caution(["A", "A2"], "are byte-identical copies of one run file", copies.FILES_LABEL)
    assert [str(c).split("</b>")[0] for c in copies.identical_value_cautions(matrix, ["A", "A2", "B", "B2"], [byte])] \
        == ["runs <b>B, B2"]
    table = pl.DataFrame({"consensus_id": ["C1"], "q_value": [0.001], "tested": [True], "log2_fold_change": [1.0]})
    write_table(table, tmp_path / "group.parquet", {"outcome": "group", "type": "binary", "positive_class": "case"})
    files = [DifferentialFiles(tmp_path / "group.parquet", None)]
    plain = findings.findings_section([], files, None, None, [])
    warned = findings.findings_section([], files, None, None, list(found))
    assert "not evidence" not in plain and "<b>1</b> of 1 tested features differ" in plain
    assert "<b>not evidence</b>: the study counts copies of one injection as separate runs" in warned
