"""Runs of one subject (technical replicate injections): the sheet's subject_id column (modelling.subjects).

Without it, replicate injections counted as independent samples made a null study look like a strong effect:
measured on the study below (12 subjects x 3 injections, no group effect), 29 % of the features had p < 0.05 and
41 were "significant" at q < 0.05, and the feature-matrix model reached AUC 1.0 [0.89, 1.0]; with subject_id,
5.3 %, none, and AUC 0.40 [0, 1]."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from ms2study.core.errors import InputError
from ms2study.modelling.subjects import (
    average_columns,
    average_rows,
    check_subjects,
    paired_outcome,
    paired_units,
    subject_groups,
    subject_ranges,
    subject_sheet,
    with_subject_block,
)

SPEC = {"column": "group", "type": "binary", "positive_class": "case"}


def _sheet(**extra: list) -> pl.DataFrame:
    ids = ["A1", "A2", "B1", "B2", "C1", "Q1"]
    return pl.DataFrame({"sample_id": ids, "file": [f"{s}.mzML" for s in ids],
                         "sample_type": ["sample"] * 5 + ["qc"],
                         "group": ["case", "case", "control", "control", "case", None], **extra})


def test_runs_are_grouped_by_subject_and_averaged() -> None:
    sheet = _sheet(subject_id=["PA", "PA", "PB", "PB", None, None])
    groups = subject_groups(sheet)
    assert groups == {"PA": ["A1", "A2"], "PB": ["B1", "B2"], "C1": ["C1"]}  # the QC takes no part
    collapsed = subject_sheet(sheet, groups)
    assert collapsed["sample_id"].to_list() == ["PA", "PB", "C1", "Q1"]
    assert collapsed["group"].to_list() == ["case", "control", "case", None]
    rows = pl.DataFrame({"sample_id": ["A1", "A2", "B1", "B2", "C1"], "x": [1.0, 3.0, None, 4.0, 5.0],
                         "y": [None, None, 2.0, 2.0, 1.0]})
    averaged = average_rows(rows, groups)
    assert averaged.to_dicts() == [{"sample_id": "PA", "x": 2.0, "y": None}, {"sample_id": "PB", "x": 4.0, "y": 2.0},
                                   {"sample_id": "C1", "x": 5.0, "y": 1.0}]
    matrix = pl.DataFrame({"consensus_id": ["C1", "C2"], "rt_s": [10.0, 20.0], "A1": [100.0, None],
                           "A2": [400.0, 0.0], "B1": [None, None], "B2": [8.0, 2.0], "C1": [3.0, None]})
    wide = average_columns(matrix, groups)
    assert wide.columns == ["consensus_id", "rt_s", "PA", "PB", "C1"]
    assert wide["PA"].to_list() == pytest.approx([200.0, None], nan_ok=True)  # geometric mean; 0 is no value
    assert wide["PB"].to_list() == pytest.approx([8.0, 2.0]) and wide["C1"].to_list() == [3.0, None]
    # a subject is measured over part of the RT range only when all of its runs are
    ranges = subject_ranges({"A1": (0.0, 50.0), "B1": (0.0, 40.0), "B2": (10.0, 60.0)}, groups)
    assert ranges == {"PB": (0.0, 60.0)}


def test_no_column_or_one_run_per_subject_changes_nothing() -> None:
    assert subject_groups(_sheet()) is None
    assert subject_groups(_sheet(subject_id=["P1", "P2", "P3", "P4", None, None])) is None


@pytest.mark.parametrize(("extra", "columns", "message"), [
    ({"subject_id": ["PA", "PA", "PB", "PB", None, None], "age": ["30", "", "40", "40", "50", None]}, ["age"],
     r"covariate 'age' differs between the runs of subject 'PA' \(A1: 30, A2: \(empty\)\)"),
    ({"subject_id": ["C1", "C1", "PB", "PB", None, None]}, [],
     r"subject_id 'C1' \(runs A1, A2\) is also the sample_id of run 'C1', which is not one of its runs"),
    ({"subject_id": ["P A", "P A", "PB", "PB", None, None]}, [], r"subject_id 'P A' .* may hold only"),
    ({"subject_id": ["PA", "PA", "PB", "PB", None, None]}, ["subject_id"], r"cannot be an outcome"),
])
def test_a_subject_column_the_analyses_cannot_use_is_refused(extra: dict, columns: list[str], message: str) -> None:
    with pytest.raises(InputError, match=message) as err:
        check_subjects(_sheet(**extra), columns, "study/samples.tsv", ["group"])
    assert err.value.file == "study/samples.tsv" and err.value.fix


def test_an_outcome_that_changes_within_subjects_is_a_paired_design() -> None:
    sheet = _sheet(subject_id=["PA", "PB", "PA", "PB", None, None])  # each subject once case, once control
    check_subjects(sheet, [], "samples.tsv", ["group"])  # accepted
    groups = subject_groups(sheet)
    replicates = _sheet(subject_id=["PA", "PA", "PB", "PB", None, None])
    assert paired_outcome(sheet, "group", groups)
    assert not paired_outcome(replicates, "group", subject_groups(replicates))
    units, subject_of = paired_units(sheet, "group", groups)
    assert units == {"A1": ["A1"], "B1": ["B1"], "A2": ["A2"], "B2": ["B2"], "C1": ["C1"]}
    assert subject_of == {"A1": "PA", "B1": "PA", "A2": "PB", "B2": "PB", "C1": "C1"}
    blocked = with_subject_block(subject_sheet(sheet, units), subject_of)
    assert blocked["subject_id"].to_list() == ["subject PA", "subject PB", "subject PA", "subject PB", "subject C1",
                                               None]


def test_ms2study_run_refuses_a_covariate_changing_within_a_subject_before_any_job(tmp_path: Path) -> None:
    from ms2study.cli import main

    rows = ["sample_id\tfile\tgroup\tage\tsubject_id"]
    for i, (group, age, subject) in enumerate([("a", 30, "P1"), ("a", 31, "P1"), ("b", 40, "P2"), ("b", 40, "P2")]):
        (tmp_path / f"r{i}.mzML").write_text("<mzML></mzML>")
        rows.append(f"S{i}\tr{i}.mzML\t{group}\t{age}\t{subject}")
    (tmp_path / "samples.tsv").write_text("\n".join(rows) + "\n")
    (tmp_path / "config.yaml").write_text("models: {outcomes: [{column: group, type: binary, positive_class: b}], "
                                          "covariates: [age]}\n")
    assert main(["run", str(tmp_path), "--cores", "1"]) == 1
    assert not (tmp_path / "results").exists()


def _replicate_study(folder: Path, seed: int = 0) -> tuple[Path, Path]:
    """A null study: 12 subjects (6 cases) x 3 injections, biological sd 0.5 and technical sd 0.05 (natural log),
    300 features, no group effect. Returns (sheet with subject_id, the same sheet without it)."""
    rng = np.random.default_rng(seed)
    n_sub, reps, m = 12, 3, 300
    subject = np.repeat(np.arange(n_sub), reps)
    logs = (12 + rng.normal(0, 1, (m, 1)) + rng.normal(0, 0.5, (m, n_sub))[:, subject]
            + rng.normal(0, 0.05, (m, n_sub * reps)))
    ids = [f"R{i:02d}" for i in range(n_sub * reps)]
    pl.DataFrame({"consensus_id": [f"C{j}" for j in range(m)], "rt_s": np.linspace(30, 600, m),
                  **{s: np.exp(logs[:, k]) for k, s in enumerate(ids)}}).write_parquet(folder / "matrix.parquet")
    sheet = pl.DataFrame({"sample_id": ids, "file": [f"{s}.mzML" for s in ids],
                          "group": np.where(subject < n_sub // 2, "control", "case").tolist(),
                          "subject_id": [f"P{k:02d}" for k in subject]})
    sheet.write_csv(folder / "with.tsv", separator="\t")
    sheet.drop("subject_id").write_csv(folder / "without.tsv", separator="\t")
    return folder / "with.tsv", folder / "without.tsv"


def test_replicate_injections_are_one_subject_in_the_differential_tests(tmp_path: Path) -> None:
    from ms2study.stages.differential import run_differential

    with_subjects, without = _replicate_study(tmp_path)
    share = {}
    for name, sheet in (("with", with_subjects), ("without", without)):
        summary = run_differential(sheet, tmp_path / "matrix.parquet", None, tmp_path / f"{name}.parquet",
                                   tmp_path / f"{name}_classes.parquet",
                                   {"outcome": SPEC, "permutations": 0, "class_permutations": 0})
        table = pl.read_parquet(tmp_path / f"{name}.parquet").filter(pl.col("tested"))
        share[name] = float((table["p_value"] < 0.05).mean())
        if name == "with":
            assert summary["n_samples"] == 12 and (table["q_value"] < 0.05).sum() == 0
            assert any(n.startswith("36 study runs of 12 subjects") for n in summary["notes"])
            assert summary["subjects"]["P00"] == ["R00", "R01", "R02"]
        else:
            assert summary["n_samples"] == 36
    assert share["with"] <= 0.09   # measured 0.053: calibrated
    assert share["without"] >= 0.2  # measured 0.29: what counting injections as samples does


def test_replicate_injections_never_sit_on_both_sides_of_a_cross_validation_split(tmp_path: Path) -> None:
    from ms2study.cli import main

    with_subjects, without = _replicate_study(tmp_path)
    auc = {}
    for name, sheet in (("with", with_subjects), ("without", without)):
        params = {"outcomes": [SPEC], "feature_sets": ["features"], "n_permutations": 0, "outer_repeats": 2}
        assert main(["models", "--samples", str(sheet), "--feature-matrix", str(tmp_path / "matrix.parquet"),
                     "--outdir", str(tmp_path / name), "--params", json.dumps(params)]) == 0
        summary = json.loads((tmp_path / name / "group" / "summary.json").read_text())
        auc[name] = summary["feature_sets"]["features"]
        predictions = pl.read_parquet(tmp_path / name / "group" / "predictions.parquet")
        assert predictions["sample_id"].n_unique() == (12 if name == "with" else 36)
    assert auc["with"]["n_samples"] == 12 and auc["with"]["ci_low"] < 0.5  # measured 0.40 [0, 1]
    assert auc["without"]["ci_low"] > 0.7  # measured 1.0 [0.89, 1]: one subject's injections in train and test


def test_a_small_continuous_outcome_counts_subjects() -> None:
    from ms2study.stages.differential import few_samples_warning

    assert few_samples_warning({"type": "continuous", "n_samples": 6, "outcome": "age", "subjects": {"P": ["a", "b"]}}
                               ).startswith("only 6 subjects have a value of age")
    assert few_samples_warning({"type": "continuous", "n_samples": 6, "outcome": "age"}).startswith("only 6 samples")


def _paired_study(folder: Path, effect: float, seed: int = 0) -> tuple[Path, Path]:
    """12 subjects, each measured before and after (two runs), subject sd 0.5 and within-subject sd 0.15 (natural
    log), 300 features of which the first 20 rise by ``effect`` after. Returns (sheet with subject_id, without)."""
    rng = np.random.default_rng(seed)
    n_sub, m = 12, 300
    subject = np.repeat(np.arange(n_sub), 2)
    after = np.tile([0, 1], n_sub)
    logs = 12 + rng.normal(0, 1, (m, 1)) + rng.normal(0, 0.5, (m, n_sub))[:, subject] + rng.normal(0, 0.15,
                                                                                                      (m, 2 * n_sub))
    logs[:20] += effect * after
    ids = [f"R{i:02d}" for i in range(2 * n_sub)]
    pl.DataFrame({"consensus_id": [f"C{j:03d}" for j in range(m)], "rt_s": np.linspace(30, 600, m),
                  **{s: np.exp(logs[:, k]) for k, s in enumerate(ids)}}).write_parquet(folder / "matrix.parquet")
    sheet = pl.DataFrame({"sample_id": ids, "file": [f"{s}.mzML" for s in ids],
                          "time": np.where(after == 1, "after", "before").tolist(),
                          "subject_id": [f"{k + 1}" for k in subject]})  # ids that read as numbers: still levels
    sheet.write_csv(folder / "with.tsv", separator="\t")
    sheet.drop("subject_id").write_csv(folder / "without.tsv", separator="\t")
    return folder / "with.tsv", folder / "without.tsv"


PAIRED = {"column": "time", "type": "binary", "positive_class": "after"}


def _found(folder: Path, sheet: Path, name: str) -> tuple[pl.DataFrame, dict]:
    from ms2study.stages.differential import run_differential

    summary = run_differential(sheet, folder / "matrix.parquet", None, folder / f"{name}.parquet",
                               folder / f"{name}_classes.parquet",
                               {"outcome": PAIRED, "permutations": 200, "class_permutations": 0})
    return pl.read_parquet(folder / f"{name}.parquet").filter(pl.col("tested")), summary


def test_a_paired_design_compares_each_subject_with_itself(tmp_path: Path) -> None:
    """Null: the paired tests hold their level (measured: 4.3 % of p below 0.05 over 4 studies). Effect 0.4 (ln)
    in 20 features, small beside the subjects' spread: the paired tests find them (20 of 20 in 3 studies, at most
    one false), counting runs as independent samples (no subject_id) none."""
    shares = []
    for seed in range(2):
        null = tmp_path / f"null{seed}"
        null.mkdir()
        table, summary = _found(null, _paired_study(null, 0.0, seed)[0], "paired")
        shares.append(float((table["p_value"] < 0.05).mean()))
        assert (table["q_value"] < 0.05).sum() <= 1
    assert np.mean(shares) <= 0.09
    assert summary["paired_by"] == "subject_id" and summary["n_subjects"] == 12 and summary["n_samples"] == 24
    assert any("a paired design" in n for n in summary["notes"]) and summary["subjects"] == {}
    paired_sheet, plain_sheet = _paired_study(tmp_path, 0.4, 7)
    paired, summary = _found(tmp_path, paired_sheet, "paired")
    plain, _ = _found(tmp_path, plain_sheet, "plain")
    planted = [f"C{j:03d}" for j in range(20)]
    hits = paired.filter(pl.col("q_value") < 0.05)["consensus_id"].to_list()
    assert sum(h in planted for h in hits) >= 15 and sum(h not in planted for h in hits) <= 2
    assert plain.filter(pl.col("q_value") < 0.05).height <= 5
    from ms2study.reporting.html import covariate_names

    assert covariate_names(summary) == "subject_id (a paired design: each of the 12 subjects a factor level)"
    # trial BJ: an age per subject (the same in both runs) beside subject_id made the design singular and left the
    # whole study untested ("collinear"); it is left out of the paired test, as the models leave it out, and said
    aged = pl.read_csv(paired_sheet, separator="\t", infer_schema_length=0)
    aged.with_columns(age=(pl.col("subject_id").cast(pl.Int64) * 3 + 30).cast(pl.Utf8)).write_csv(
        tmp_path / "aged.tsv", separator="\t")
    from ms2study.stages.differential import run_differential

    with_age = run_differential(tmp_path / "aged.tsv", tmp_path / "matrix.parquet", None, tmp_path / "aged.parquet",
                                tmp_path / "aged_classes.parquet", {"outcome": PAIRED, "covariates": ["age"],
                                                                    "permutations": 200, "class_permutations": 0})
    aged_table = pl.read_parquet(tmp_path / "aged.parquet").filter(pl.col("tested"))
    assert aged_table.height == paired.height and aged_table["q_value"].to_list() == paired["q_value"].to_list()
    assert ("covariates (age) are left out of this paired test: they are the same in all of a subject's runs, so "
            "the comparison within subjects has them fixed") in with_age["notes"]
    assert covariate_names(with_age) == covariate_names(summary)


def _paired_models(folder: Path, sheet: Path, outcome: dict, **extra) -> tuple[dict, pl.DataFrame]:
    from ms2study.cli import main

    params = {"outcomes": [outcome], "feature_sets": ["features"], "n_permutations": 19, "outer_repeats": 2,
              "n_bootstrap": 200, **extra}
    out = folder / f"m_{sheet.stem}"
    assert main(["models", "--samples", str(sheet), "--feature-matrix", str(folder / "matrix.parquet"),
                 "--outdir", str(out), "--params", json.dumps(params)]) == 0
    column = outcome["column"]
    return (json.loads((out / column / "summary.json").read_text()),
            pl.read_parquet(out / column / "predictions.parquet"))


def test_a_paired_outcome_is_modelled_within_subjects(tmp_path: Path) -> None:
    """Trial O (session 33): a before/after study's models were skipped ("would need subject-grouped
    cross-validation"). Now multilevel (Westerhuis et al. 2010): each subject's runs relative to its own mean, CV by
    subject, permutations within subjects. Effect 0.4 (ln) in 20 of 300 features, small beside the subjects' spread
    (0.5): within subjects the model separates before from after; counting runs as independent samples (no
    subject_id) it does not. Null: no evidence claimed."""
    paired_sheet, plain_sheet = _paired_study(tmp_path, 0.4, 1)
    summary, predictions = _paired_models(tmp_path, paired_sheet, PAIRED)
    entry = summary["feature_sets"]["features"]
    assert summary["status"] == "done" and summary["paired_by"] == "subject_id" and summary["n_subjects"] == 12
    assert summary["n_samples"] == 24 and summary["class_counts"] == {"before": 12, "after": 12}
    assert any("a paired design" in n and "multilevel" in n for n in summary["notes"])
    assert entry["value"] >= 0.9 and entry["ci_low"] > 0.5 and entry["permutation_p"] <= 0.05, entry
    # a subject's two units are always in the same test fold: no subject on both sides of a split
    sheet = pl.read_csv(paired_sheet, separator="\t", schema_overrides={"subject_id": pl.Utf8})
    subject = dict(zip(sheet["sample_id"], sheet["subject_id"]))
    folds = predictions.with_columns(pl.col("sample_id").replace_strict(subject).alias("subject"))
    assert folds.group_by("repeat", "subject").agg(pl.col("fold").n_unique())["fold"].max() == 1
    assert folds.group_by("repeat", "subject").len()["len"].min() == 2
    plain, _ = _paired_models(tmp_path, plain_sheet, PAIRED)
    assert plain["feature_sets"]["features"]["value"] < entry["value"] - 0.15, plain["feature_sets"]["features"]
    assert "paired_by" not in plain
    (tmp_path / "null").mkdir()
    null, _ = _paired_models(tmp_path / "null", _paired_study(tmp_path / "null", 0.0, 2)[0], PAIRED)
    assert null["feature_sets"]["features"]["ci_low"] <= 0.5 and null["feature_sets"]["features"]["permutation_p"] > 0.05


def test_a_paired_outcome_left_unmodelled_says_why(tmp_path: Path) -> None:
    """A paired outcome with three values (repeated measures) is skipped with the reason; a subject with runs of
    one value only is left out of a binary paired model, and a covariate is left out with a note."""
    paired_sheet, _ = _paired_study(tmp_path, 0.4, 1)
    sheet = pl.read_csv(paired_sheet, separator="\t", schema_overrides={"subject_id": pl.Utf8})
    three = sheet.with_columns(pl.when(pl.col("sample_id") == "R01").then(pl.lit("later")).otherwise(pl.col("time"))
                               .alias("time"))
    three.write_csv(tmp_path / "three.tsv", separator="\t")
    summary, _ = _paired_models(tmp_path, tmp_path / "three.tsv", {"column": "time", "type": "multiclass"})
    assert summary["status"] == "skipped" and "a paired design" in summary["reason"] and "not binary" in summary["reason"]
    assert "class_counts" not in summary and summary["n_samples"] is None
    assert not any("averaged" in n for n in summary["notes"])  # its reason, not how other outcomes' runs were used
    # subject 1 measured before only (its after run dropped), an age per subject as covariate
    lone = sheet.filter(pl.col("sample_id") != "R01").with_columns(
        (pl.col("subject_id").cast(pl.Int32) * 3 + 20).cast(pl.Utf8).alias("age"))
    lone.write_csv(tmp_path / "lone.tsv", separator="\t")
    summary, predictions = _paired_models(tmp_path, tmp_path / "lone.tsv", PAIRED, covariates=["age"])
    assert summary["n_subjects"] == 11 and summary["n_samples"] == 22 and "R00" not in predictions["sample_id"]
    assert any("1 subject(s) with runs of one value only left out (1)" in n for n in summary["notes"])
    assert any("covariates (age) are left out of this paired model" in n for n in summary["notes"])
    assert "covariates" not in summary["feature_sets"]
    # trial AQ: a run-level covariate (it differs between a subject's runs) was dropped as "the same in all its runs",
    # and the outcome was said to be among the covariates
    varying = lone.with_columns(pl.Series("osmolality", [str(300 + 7 * i) for i in range(lone.height)]))
    varying.write_csv(tmp_path / "varying.tsv", separator="\t")
    summary, _ = _paired_models(tmp_path, tmp_path / "varying.tsv", PAIRED, covariates=["age", "osmolality"])
    assert any("covariates (age) are left out" in n for n in summary["notes"])
    assert any("covariates (osmolality) differ between a subject's runs" in n for n in summary["notes"])
    assert not any("this outcome itself" in n for n in summary["notes"])
    from ms2study.modelling.subjects import subjects_note

    note = subjects_note({"A1": ["A1"], "A2": ["A2"], "B1": ["B1"]}, {"A1": "PA", "A2": "PA", "B1": "PB"})
    assert note.endswith("1 subject(s) have runs of one outcome value only (PB): they add nothing to the "
                         "within-subject comparison and are left out of the tests")
    # runs without a value of the outcome (a three-arm sheet with one arm's cells empty): counted apart, not as units
    arms = subjects_note({"a1": ["a1"], "b1": ["b1"], "c1": ["c1"], "a2": ["a2"], "b2": ["b2"], "c2": ["c2"]},
                         {u: f"P{u[1]}" for u in ("a1", "b1", "c1", "a2", "b2", "c2")}, without_value=["c1", "c2"])
    assert arms.startswith("6 study runs (2 of them without a value of the outcome, left out) of 2 subjects")
    assert "averaged (4 units)" in arms and "one outcome value only" not in arms


def test_relabellings_of_a_paired_design_stay_within_subjects(tmp_path: Path) -> None:
    """Trial (a before/after study): every after run sat lower as a whole (normalisation), each feature a little, and
    the study-wide shift test, relabelling across subjects, read p 0.17 while all 6 subjects moved the same way;
    13 of 13 classes came out enriched. Relabellings now swap labels within subjects only."""
    from ms2study.modelling.subjects import within_blocks

    rng = np.random.default_rng(0)
    blocks = np.array(["a", "a", "b", "b", "c", "c", "c"])
    for _ in range(20):
        order = within_blocks(7, blocks, rng)
        assert sorted(order) == list(range(7)) and (blocks[order] == blocks).all()
    assert sorted(within_blocks(5, None, rng)) == list(range(5))
    with_sheet, _ = _paired_study(tmp_path, 0.0, 3)
    matrix = pl.read_parquet(tmp_path / "matrix.parquet")
    after = [s for s, t in zip(*pl.read_csv(with_sheet, separator="\t").select("sample_id", "time")) if t == "after"]
    matrix.with_columns([pl.col(s) * np.exp(-0.05) for s in after]).write_parquet(tmp_path / "matrix.parquet")
    _, summary = _found(tmp_path, with_sheet, "shifted")
    shift = summary["global_shift"]
    assert shift["median_effect"] < -0.05 and shift["p_value"] <= 0.01  # 12 subjects all lower: sign flips


def test_the_findings_say_a_paired_model_compares_within_subjects() -> None:
    from ms2study.reporting.findings import model_verdict

    entry = {"metric": "roc_auc", "value": 0.97, "ci_low": 0.81, "ci_high": 1.0, "permutation_p": 0.01}
    summary = {"status": "done", "outcome": "time", "type": "binary", "classes": ["after", "before"],
               "positive_class": "after", "feature_sets": {"features": entry}}
    assert "separates after from before samples" in model_verdict(summary)[0]
    paired = dict(summary, paired_by="subject_id", n_subjects=12)
    assert "separates after from before within subjects (paired, 12 subjects)" in model_verdict(paired)[0]
    null = dict(paired, feature_sets={"features": dict(entry, value=0.5, ci_low=0.2, permutation_p=0.6)})
    assert "no evidence of separation within subjects" in model_verdict(null)[0]


def test_the_findings_heading_of_a_paired_outcome_counts_its_subjects(tmp_path: Path) -> None:
    """Trial BJ: "Outcome: group (binary: 10 before, 10 after)" read as 20 independent people."""
    from ms2study.reporting.collect import OutcomeFiles
    from ms2study.reporting.findings import findings_section

    entry = {"metric": "roc_auc", "value": 0.97, "ci_low": 0.81, "ci_high": 1.0, "permutation_p": 0.01}
    summary = {"status": "done", "outcome": "time", "type": "binary", "classes": ["after", "before"],
               "positive_class": "after", "class_counts": {"before": 10, "after": 10}, "paired_by": "subject_id",
               "n_subjects": 10, "feature_sets": {"features": entry}}
    (tmp_path / "summary.json").write_text(json.dumps(summary))
    box = findings_section([OutcomeFiles(tmp_path / "summary.json")], [], None, None, [])
    assert "Outcome: time (binary: 10 before, 10 after; paired: 10 subjects, each compared with itself)" in box


def test_the_paired_models_benchmark_writes_its_rates(tmp_path: Path) -> None:
    """benchmarks/paired_models.py on its strongest setting (quick): within subjects the planted change is found in
    most studies, with the runs counted as independent samples in far fewer."""
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[1]
    out = tmp_path / "paired.json"
    done = subprocess.run([sys.executable, str(repo / "benchmarks" / "paired_models.py"), "--out", str(out), "--quick",
                           "--only", "effect 0.4"], capture_output=True, text=True, timeout=600, check=False,
                          env={**__import__("os").environ, "PYTHONPATH": str(repo / "workflow")})
    assert done.returncode == 0, done.stderr[-2000:]
    rows = {r["mode"]: r for r in json.loads(out.read_text())["settings"]}
    assert rows["paired"]["studies"] == 8 and rows["paired"]["share_both"] >= 0.75
    assert rows["runs as independent samples"]["share_both"] <= 0.5 < rows["paired"]["share_both"]
    assert len(rows["paired"]["p_values"]) == 8


def test_a_subject_with_one_value_only_is_left_out_of_the_paired_tests(tmp_path: Path) -> None:
    """A trial: one subject's after run missing took a before/after study from 7 hits to 0 (its lone unit a block of
    one in the permutations); without that unit, 6. Such a subject is now left out, and the note says so."""
    paired_sheet, _ = _paired_study(tmp_path, 0.4, 7)
    sheet = pl.read_csv(paired_sheet, separator="\t", schema_overrides={"subject_id": pl.Utf8})
    sheet.filter(pl.col("sample_id") != "R23").write_csv(tmp_path / "lone.tsv", separator="\t")  # 12: before only
    lone, lone_summary = _found(tmp_path, tmp_path / "lone.tsv", "lone")
    sheet.filter(~pl.col("sample_id").is_in(["R22", "R23"])).write_csv(tmp_path / "eleven.tsv", separator="\t")
    eleven, _ = _found(tmp_path, tmp_path / "eleven.tsv", "eleven")
    assert lone_summary["n_subjects"] == 11 and lone_summary["n_samples"] == 22
    assert any("1 subject(s) have runs of one outcome value only (12)" in n and "left out of the tests" in n
               for n in lone_summary["notes"])
    # the same tests as with the subject removed from the sheet
    assert lone.sort("consensus_id")["p_value"].to_list() == pytest.approx(
        eleven.sort("consensus_id")["p_value"].to_list())
    assert (lone["q_value"] < 0.05).sum() >= 15


def test_the_attribution_of_a_paired_outcome_says_its_refit_is_not_paired(tmp_path: Path) -> None:
    from ms2study.reporting.collect import OutcomeFiles
    from ms2study.reporting.outcomes import attribution_caveats

    entry = {"metric": "roc_auc", "value": 0.97, "ci_low": 0.81, "ci_high": 1.0, "permutation_p": 0.01}
    path = tmp_path / "time" / "summary.json"
    path.parent.mkdir()
    path.write_text(json.dumps({"status": "done", "outcome": "time", "paired_by": "subject_id",
                                "feature_sets": {"embedding": entry}}))
    said = attribution_caveats([OutcomeFiles(path)])["time"]
    assert said.startswith("the models of time compare each subject with itself (a paired design)")
    path.write_text(json.dumps({"status": "done", "outcome": "time", "feature_sets": {"embedding": entry}}))
    assert attribution_caveats([OutcomeFiles(path)]) == {}


def test_the_models_section_says_a_paired_outcome_was_modelled_within_subjects(tmp_path: Path) -> None:
    """A trial: the models section's method paragraph spoke of stratified folds and a bootstrap of samples for a
    paired outcome; only a note at the bottom said otherwise."""
    from ms2study.reporting.collect import OutcomeFiles
    from ms2study.reporting.outcomes import models_section

    paired_sheet, _ = _paired_study(tmp_path, 0.4, 1)
    summary, _ = _paired_models(tmp_path, paired_sheet, PAIRED)
    path = tmp_path / "m_with" / "time" / "summary.json"
    sheet = pl.read_csv(paired_sheet, separator="\t", schema_overrides={"subject_id": pl.Utf8})
    part = models_section([OutcomeFiles(path, None)], sheet, {}, [])
    assert "<b>Paired design</b> (12 subjects, sample sheet's subject_id): modelled within subjects" in part
    assert summary["paired_by"] == "subject_id"


def test_a_subject_with_one_value_of_a_paired_outcome_is_named_before_the_run() -> None:
    """Trial BJ: a subject whose "after" run was missing was left out of the paired tests, said only in the notes
    after a 20-minute run; the pre-run check (``study.check_study``) names it."""
    from ms2study.modelling.subjects import lone_subject_warnings

    sheet = pl.DataFrame({"sample_id": ["A1", "A2", "B1", "B2", "C1", "QC1"],
                          "time": ["before", "after", "before", "after", "before", None],
                          "subject_id": ["P1", "P1", "P2", "P2", "P3", None],
                          "sample_type": ["sample"] * 5 + ["qc"]})
    assert lone_subject_warnings(sheet, ["time"], "samples.tsv") == [
        "samples.tsv: outcome 'time' changes within subjects (a paired design), but 1 subject(s) have runs of one of "
        "its values only (P3): they will be left out of its tests and models (add the missing run, or leave it so)"]
    assert lone_subject_warnings(sheet.filter(pl.col("sample_id") != "C1"), ["time"], "samples.tsv") == []
    assert lone_subject_warnings(sheet.drop("subject_id"), ["time"], "samples.tsv") == []  # not paired
