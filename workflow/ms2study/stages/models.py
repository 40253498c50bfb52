"""The models stage: how well each feature set predicts each study outcome, estimated with nested cross-validation.

Every feature set (pooled spectrum embeddings, bags of chemistry, the linked feature matrix, binned spectra, or a
table from elsewhere) is modelled on the same outer folds, so the sets can be compared side by side. The outer loop
is a repeated (stratified) k-fold whose k never exceeds the smallest class; the inner loop picks the regularisation
on the training part only; missing-value handling, scaling and filtering are fitted inside the folds. Results carry
a 95% interval from a stratified bootstrap of the out-of-fold predictions and a label-permutation p-value computed
with the identical procedure. The default estimator is the elastic net after a univariate filter fitted in the
training folds (a study's effect is often a few compounds among thousands of features in a few dozen samples,
``benchmarks/biology.py``); L2 logistic / ridge, a random forest or a linear SVM can be configured. Optional
covariates ride along with every set and are modelled alone, as the row a set has to beat.

This module holds the ``models:`` config section (``DEFAULT_PARAMS``, ``merge_params``), writes the per-outcome
tables and the two commands (``ms2study models`` for the pipeline, ``ms2study model`` for a table from elsewhere).
The statistics live in ``ms2study.modelling``: ``featuresets`` (tables to matrices), ``outcomes`` (targets,
covariates), ``preprocessing``, ``estimators`` and ``elasticnet``, ``crossval`` (nested CV), ``metrics`` and
``evaluate`` (one outcome on every set).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Any

import polars as pl

from ms2study.core.atomic import write_parquet, write_text
from ms2study.core.errors import InputError
from ms2study.core.params import add_params_argument, load_params, overlay
from ms2study.io.samplesheet import ACQUISITION_COLUMNS, read_sample_sheet
from ms2study.io.sampletable import id_column_check, read_sample_table, refuse_answers_in_table, refuse_repeated_ids
from ms2study.modelling.cells import fill_matrix_not_measured
from ms2study.modelling.differential import read_summary, write_table
from ms2study.modelling.estimators import ESTIMATORS
from ms2study.modelling.evaluate import METRICS_SCHEMA, PREDICTIONS_SCHEMA, format_metric, model_outcome
from ms2study.modelling.featuresets import feature_matrix_feature_set, study_feature_sets
from ms2study.modelling.matrix_attribution import FILE as MATRIX_FILE
from ms2study.modelling.matrix_attribution import MATRIX_ATTRIBUTION
from ms2study.modelling.matrix_attribution import SET as MATRIX_SET
from ms2study.modelling.multilevel import paired_model_data
from ms2study.modelling.outcomes import (
    OUTCOME_TYPES,
    add_run_range_arguments,
    check_outcome,
    encode_outcome,
    not_sample_note,
    not_study_samples,
    outcome_dirname,
    read_detected_matrix,
    read_model_matrix,
    runs_measured,
    without_empty_runs,
)
from ms2study.modelling.subjects import (
    average_rows,
    paired_outcome,
    several_runs,
    subject_groups,
    subject_sheet,
    subjects_note,
)
from ms2study.reporting.confounding import design_cautions
from ms2study.reporting.findings import model_verdict
from ms2study.reporting.html import plain_text

DEFAULT_PARAMS: dict[str, Any] = {
    # Outcomes to model: a list of {column, type: binary | multiclass | continuous, positive_class}.
    "outcomes": [],
    # Feature sets to model, in display order; names absent from the data are skipped with a note.
    # embedding: pooled spectrum embeddings; features: linked feature matrix (precursor baseline);
    # binned_spectra: MS/MS peaks binned and averaged per sample (model-free baseline; needs --spectra).
    # chemical_space: log abundance per prototype region of the embedding space (modelling.chemistry.chemistry_sample).
    "feature_sets": ["embedding", "chemical_space", "features", "binned_spectra"],
    "spectra_bin_width": 1.0,  # m/z width of the binned_spectra bins
    # How missing values of each feature set are filled INSIDE the training folds: "half_minimum" (a feature not
    # detected in a sample lies below the detection limit: half its smallest training value, on the raw intensity
    # scale) or "mean" (a sample without MS/MS has no embedding at all: the training mean, a neutral guess).
    # Sets not named here use "mean".
    # chemical_space: a region without features in a sample is "nothing measured there", like an undetected feature.
    "imputation": {"embedding": "mean", "chemical_space": "half_minimum", "features": "half_minimum"},
    # Feature matrix columns detected in fewer than this fraction of the TRAINING samples are dropped (in the folds).
    "min_detected_fraction": 0.5,
    "outer_splits": 5,        # upper bound for k; lowered to the smallest class count (continuous: n // 2)
    "outer_repeats": 5,       # repeats of the outer k-fold, averaged in the point estimate
    "inner_splits": 3,        # inner CV for the regularisation strength (lowered to the smallest training class)
    "logistic_c": [0.01, 0.1, 1.0, 10.0],         # L2 logistic regression: inverse regularisation strengths tried
    "ridge_alpha": [0.1, 1.0, 10.0, 100.0, 1000.0],  # ridge regression: penalties tried
    # Estimator: elastic_net (elastic-net logistic / elastic-net regression: sparse, for few samples and many
    # features) | linear (L2 logistic / ridge; "logistic" and "ridge" name the same) | random_forest | svm_linear.
    # On realistic simulated studies (benchmarks/biology.py: 16 samples, 12 of ~2,800 compounds 3x up) elastic_net
    # reached a mean AUC of 0.90 on the feature matrix where L2 sat at 0.44 (worse than chance: anti-learning).
    "estimator": "elastic_net",
    "svm_c": [0.001, 0.01, 0.1, 1.0],         # svm_linear: inverse regularisation strengths tried
    # elastic_net: penalties tried, as fractions of the training data's lambda_max (1.0 would be intercept only:
    # on 8 + 8 simulated studies adding it cut the mean AUC from 0.90 to 0.83 without lowering false positives,
    # which stayed at 0 of 8), and the shares of L1 in the penalty tried with each (a number or a list; the inner
    # CV picks the pair). Classes (8 simulated studies): 0.2 alone: mean AUC 0.81, 0.5: 0.90, [0.5, 0.9]: 0.91,
    # [0.5, 0.9, 1.0]: 0.90; continuous (2 of 500 features, 3 seeds): 0.5 alone R² 0.05, [0.5, 0.9] 0.58,
    # [0.5, 0.9, 1.0] 0.87, L2 -0.09 (a ridge-like fit spreads weight over noise at n << p).
    "elastic_net_lambda_ratio": [0.5, 0.3, 0.2, 0.1, 0.05],
    "l1_ratio": [0.5, 0.9, 1.0],
    # Univariate filter inside the training folds before the estimator: keep the k columns with the largest F
    # (classes) or squared correlation (continuous) on the training rows; null: no filter. With elastic_net it
    # changed no result on the simulated studies (the selected features rank high anyway) and saves 2-3x time.
    "univariate_top_k": 200,
    "forest_trees": 200,                      # random_forest: trees per forest
    "forest_min_samples_leaf": [1, 3, 5],     # random_forest: leaf sizes tried (larger: smoother)
    # Sample-sheet columns added to every feature set (numeric as they are, text one-hot coded). Inside the folds
    # they are mean-imputed, scaled and multiplied by covariate_weight, so an L2 penalty on them is weight² times
    # weaker than on the set's own columns; they are also modelled alone, as "covariates".
    "covariates": [],
    # 3: penalty 9x weaker. Not fully unpenalised on purpose: at 10 (100x) an unrelated covariate (age on the demo's
    # group) took over the strongly regularised models of 12 samples and cut the feature matrix's AUC from 1.0 to 0.8.
    "covariate_weight": 3.0,
    # Label permutations for the p-value, at most (resolution 1 / (n + 1)); 0 disables; "auto": 40, 100 up to 100
    # samples (core.paths.permutation_budget). Drawing stops once permutation_stop_after of them
    # reach the observed value (Besag & Clifford's sequential p; 0: never), so a clearly large p costs few.
    "n_permutations": "auto",
    "permutation_stop_after": 10,
    "n_bootstrap": 1000,      # bootstrap draws of the out-of-fold predictions for the interval
    "ci_level": 0.95,
    "seed": 0,
}


# The study matrices and the rules' view of config section correct live in core.paths (light: the rule files import
# them when Snakemake starts, in every SLURM job step); re-exported here for the stage's callers.
from ms2study.core.paths import CORRECT_DEFAULTS, CORRECTED_MATRIX, RAW_MATRIX, matrix_inputs  # noqa: F401


def merge_params(params: dict | None) -> dict:
    """DEFAULT_PARAMS with ``params`` over them; an unknown key raises InputError naming it."""
    merged = overlay(params, DEFAULT_PARAMS, "models")
    if isinstance((params or {}).get("imputation"), dict):  # feature sets not named keep their default
        merged["imputation"] = {**DEFAULT_PARAMS["imputation"], **params["imputation"]}
    for key, value in merged["imputation"].items():
        if value not in ("mean", "half_minimum"):
            raise InputError(f"models.imputation.{key} is '{value}'", fix="use 'mean' or 'half_minimum'")
    if merged["estimator"] not in ESTIMATORS:
        raise InputError(f"models.estimator is '{merged['estimator']}'", fix=f"use one of {', '.join(ESTIMATORS)}")
    covariates = merged["covariates"]
    if not isinstance(covariates, list) or not all(isinstance(c, str) and c for c in covariates):
        raise InputError(f"models.covariates must be a list of sample-sheet column names (got {covariates!r})")
    if not float(merged["covariate_weight"]) > 0:
        raise InputError(f"models.covariate_weight must be positive (got {merged['covariate_weight']!r})")
    for key in ("outer_splits", "outer_repeats", "inner_splits", "n_permutations", "n_bootstrap", "forest_trees",
                "permutation_stop_after"):
        if key == "n_permutations" and merged[key] == "auto":
            continue
        if isinstance(merged[key], bool) or not isinstance(merged[key], int) or merged[key] < (
                0 if key in ("n_permutations", "permutation_stop_after") else 1):
            raise InputError(f"models.{key} must be a positive integer{' or auto' if key == 'n_permutations' else ''}"
                             f" (got {merged[key]!r})")
    if merged["outer_splits"] < 2:
        raise InputError("models.outer_splits must be at least 2")
    top_k = merged["univariate_top_k"]
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
        raise InputError(f"models.univariate_top_k must be a positive integer or null (got {top_k!r})")
    l1 = merged["l1_ratio"]
    l1_values = l1 if isinstance(l1, list) else [l1]
    if not l1_values or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v <= 1
                                for v in l1_values):
        raise InputError(f"models.l1_ratio must be a number in (0, 1] or a list of them (got {l1!r})")
    ratios = merged["elastic_net_lambda_ratio"]
    if not isinstance(ratios, list) or not ratios or not all(
            isinstance(r, (int, float)) and not isinstance(r, bool) and 0 < r <= 1 for r in ratios):
        raise InputError(f"models.elastic_net_lambda_ratio must be a list of numbers in (0, 1] (got {ratios!r})")
    if not 0 < float(merged["ci_level"]) < 1:
        raise InputError(f"models.ci_level must lie between 0 and 1 (got {merged['ci_level']!r})")
    return merged


PAIRED_REASON = ("the outcome changes between runs of one subject (a paired design, sample sheet's subject_id) and "
                 "is not binary: paired models are built for two outcome values (before / after); to model two of its "
                 "values within subjects, add a column holding only those two (the other runs' cells empty) and "
                 "declare it binary; the differential tests compare each subject with itself")


def model_outcomes(samples: pl.DataFrame, feature_sets: dict[str, pl.DataFrame], outcomes: list[dict],
                   outdir: Path, params: dict | None = None, notes: list[str] | None = None,
                   record: dict | None = None, skip: dict[str, str] | None = None,
                   blocks: dict[str, str] | None = None) -> dict:
    """Model every outcome on every feature set; write ``outdir/{outcome}/{metrics,predictions}.parquet`` and
    ``summary.json`` (an outcome that cannot be modelled gets a summary with ``status: skipped`` and its reason),
    and ``feature_attribution.parquet``, what the feature-matrix model looks at (``modelling.matrix_attribution``;
    its summary, or why there is none, in the file's metadata: ``modelling.differential.read_summary``).
    QC and blank runs of the sheet (``sample_type``) never enter an outcome: each summary lists them under
    ``excluded_not_sample`` and says how many in its notes; ``notes`` (e.g. the flagged features left out of the
    matrix) are added to every summary, and so are the keys of ``record`` (e.g. which feature matrix was read).
    ``skip``: outcome column -> the reason it is not modelled (a paired design). ``blocks``: each row's subject when
    ``samples`` and ``feature_sets`` are a paired outcome's units (``modelling.multilevel``). Returns ``{outcome
    column: summary}``."""
    # A configured feature set that is absent deserves a note; a default one (e.g. binned_spectra when no spectra
    # were passed) does not.
    explicit_sets = "feature_sets" in (params or {})
    params = merge_params(params)
    specs = [check_outcome(o) for o in outcomes]
    if "sample_id" not in samples.columns:
        raise InputError("the sample sheet has no sample_id column", file="samples.tsv")
    dirs = [outcome_dirname(s["column"]) for s in specs]
    if len(set(dirs)) != len(dirs):
        raise InputError(f"outcome columns {[s['column'] for s in specs]} map to the same folder names {dirs}",
                         fix="declare each outcome once, with column names that differ in letters or digits")
    outdir = Path(outdir)
    excluded = not_study_samples(samples)
    extra = [n for n in [not_sample_note(excluded), *(notes or [])] if n]
    result: dict[str, dict] = {}
    for spec, dirname in zip(specs, dirs):
        started = time.perf_counter()
        out = model_outcome(samples, feature_sets, spec, params, note_missing_sets=explicit_sets,
                            skip_reason=(skip or {}).get(spec["column"]), blocks=blocks)
        summary = out["summary"]
        summary["excluded_not_sample"] = excluded
        summary.update(record or {})
        # an outcome skipped as a paired design gets its reason, not the notes on how the runs were modelled
        summary["notes"] = ([] if spec["column"] in (skip or {}) else extra) + summary.get("notes", [])
        summary["seconds"] = round(time.perf_counter() - started, 3)
        # n_permutations as used for this outcome (an integer: "auto" resolved by its sample count)
        summary["params"] = {**{k: v for k, v in params.items() if k != "outcomes"},
                             "n_permutations": summary.get("n_permutations", params["n_permutations"])}
        target = outdir / dirname
        write_parquet(pl.DataFrame(out["metrics"], schema=METRICS_SCHEMA), target / "metrics.parquet")
        write_parquet(pl.DataFrame(out["predictions"], schema=PREDICTIONS_SCHEMA), target / "predictions.parquet")
        table, explained = out.get("explained") or (pl.DataFrame(schema=MATRIX_ATTRIBUTION), {
            "feature_set": MATRIX_SET, "status": "skipped",
            "reason": summary.get("reason") or "the feature matrix was not modelled for this outcome"})
        write_table(table, target / MATRIX_FILE, {"outcome": spec["column"], **explained})
        write_text(json.dumps(summary, indent=2) + "\n", target / "summary.json")
        result[spec["column"]] = summary
    return result


def model_by_subject(samples: pl.DataFrame, sets: dict[str, pl.DataFrame], outcomes: list[dict], outdir: Path,
                     params: dict, notes: list[str], record: dict) -> dict:
    """``model_outcomes`` with the sheet's subjects (``subject_id``, ``modelling.subjects``): runs of one subject
    with one outcome value are one row (averaged), so folds and permutations never split them; a binary outcome
    that changes within subjects is modelled within them (``modelling.multilevel``), another is skipped with
    ``PAIRED_REASON``. Without ``subject_id`` every run is a row. Returns ``{outcome column: summary}`` in the
    order of ``outcomes``. Used by the models stage and by ``ms2study model`` (a trial's table of 15 volunteers x
    3 diets without it: random labels per volunteer "separated" in 6 of 11 tries)."""
    notes, record = list(notes), dict(record)
    groups = subject_groups(samples)  # runs of one subject (replicate injections): one row each (modelling.subjects)
    paired = [o for o in outcomes if paired_outcome(samples, o["column"], groups)]
    # a binary paired outcome is modelled within subjects (modelling.multilevel); others are skipped with the reason
    skip = {o["column"]: PAIRED_REASON for o in paired if check_outcome(o)["type"] != "binary"}
    within = [o for o in paired if o["column"] not in skip]
    paired_runs, run_notes, run_record = (samples, sets), list(notes), dict(record)
    if groups:
        samples, sets = subject_sheet(samples, groups), {n: average_rows(f, groups) for n, f in sets.items()}
        notes.append(subjects_note(groups))
        record["subjects"] = several_runs(groups)
    summaries = model_outcomes(samples, sets, [o for o in outcomes if o not in within], outdir, params, notes, record,
                               skip)
    for spec in within:
        unit_sheet, centred, blocks, note = paired_model_data(*paired_runs, spec["column"], groups)
        summaries.update(model_outcomes(unit_sheet, centred, [spec], outdir, params, run_notes + [note], run_record,
                                        blocks=blocks))
    return {o["column"]: summaries[o["column"]] for o in outcomes if o["column"] in summaries}


def _cli_models(args: argparse.Namespace) -> int:
    params = load_params(args)
    outcomes = params.get("outcomes", []) or []
    samples = read_sample_sheet(args.samples)
    sets = study_feature_sets(samples, args.sample_embeddings or [], None, args.spectra or [],
                              float(merge_params(params)["spectra_bin_width"]), args.sample_chemistry or [])
    notes, record = [], {}
    if args.feature_matrix:
        matrix, note = read_model_matrix(args.feature_matrix, args.exclude_flagged)
        sheet_ids = samples["sample_id"].cast(pl.Utf8).to_list()
        detected = read_detected_matrix(args.detected_matrix, sheet_ids)
        # empty and failed runs (too few detected features: modelling.runchecks.failed_runs) left out
        samples, empty_note = without_empty_runs(samples, matrix, detected)
        kept = set(samples["sample_id"].cast(pl.Utf8).to_list())
        # the chromatograms are one per sheet row: those of the runs left out go with them (a trial: an empty blank
        # left out here stopped the models with "24 path(s) for 23 sample(s)")
        chromatograms = ([c for s, c in zip(sheet_ids, args.chromatograms) if s in kept]
                         if args.chromatograms and len(args.chromatograms) == len(sheet_ids) else args.chromatograms)
        samples, range_notes, partial_ranges = runs_measured(samples, args.qc, chromatograms)
        matrix, n_not_measured = fill_matrix_not_measured(matrix, samples["sample_id"].to_list(), partial_ranges)
        sets = {name: frame.filter(pl.col("sample_id").is_in(samples["sample_id"].to_list())) if "sample_id" in
                frame.columns else frame for name, frame in sets.items()}
        sets["features"] = feature_matrix_feature_set(matrix, samples["sample_id"].to_list())
        notes = [n for n in (note, empty_note) if n] + range_notes
        total = pl.scan_parquet(args.feature_matrix).select(pl.len()).collect().item()
        record = {"feature_matrix": Path(args.feature_matrix).name, "n_flagged_left_out": total - matrix.height,
                  "n_not_measured_cells": n_not_measured}
    summaries = model_by_subject(samples, sets, outcomes, Path(args.outdir), params, notes, record)
    done = {
        "outcomes": [{"column": c, "folder": outcome_dirname(c), "status": s["status"], "reason": s.get("reason")}
                     for c, s in summaries.items()],
        "feature_sets": sorted(sets),
    }
    write_text(json.dumps(done, indent=2) + "\n", Path(args.outdir) / "models_done.json")
    return 0


def _print_explained(path: Path, top: int = 5) -> None:
    """Print the table's features the refitted linear model leans on most (``modelling.matrix_attribution``)."""
    if not path.exists():
        return
    info, table = read_summary(path), pl.read_parquet(path)
    if info.get("status") != "done" or table.height == 0:
        print(f"what the model looks at: not explained ({info.get('reason') or 'it kept no feature'})")
        return
    positive = str(info.get("positive_class"))

    def level(value: float | None) -> str:  # the feature's own values, apart from where it pushes the score (AT)
        if value is None or math.isnan(value):
            return "its level not compared"
        if info.get("type") == "continuous":
            return f"{'rises' if value > 0 else 'falls'} with {positive}"
        return f"{'higher' if value > 0 else 'lower'} in {positive}"

    leaders = ", ".join(f"{r['consensus_id']} ({r['share']:+.0%} of the model, {r['direction']}; "
                        f"{level(r.get('value_difference'))})"
                        for r in table.sort("rank").head(top).iter_rows(named=True))
    half = info.get("n_carrying_half")
    print(f"what the model looks at (refitted on all rows; share of its score difference; the direction is where a "
          f"feature pushes the score, which may differ from whether it is higher, {path}): {leaders}; {half} of its "
          f"{info.get('n_used')} weighted features {'carries' if half == 1 else 'carry'} half of it")


def _cli_model(args: argparse.Namespace) -> int:
    params = load_params(args)
    samples = read_sample_sheet(args.samples, args.id_column, any_format=True)
    try:
        table, note, log_transformed = read_sample_table(args.table, samples["sample_id"].to_list(),
                                                         log_transform=args.log)
    except InputError:
        id_column_check(args.table, args.samples, samples, args.id_column, 0)  # names the column that does match
        raise
    id_column_check(args.table, args.samples, samples, args.id_column, table.height)
    refuse_repeated_ids(samples, args.samples)  # after the id column is found right (a wrong one repeats values)
    print(note)
    if args.subject_column:  # repeated measures under another name (a trial: ST000291's volunteers)
        if args.subject_column not in samples.columns:
            raise InputError(f"--subject-column '{args.subject_column}' is not a column of the sample sheet",
                             file=str(args.samples), fix=f"use one of {', '.join(samples.columns)}")
        samples = samples.drop("subject_id", strict=False).rename({args.subject_column: "subject_id"})
    # Only samples present in the table are modelled (the note lists the others).
    samples = samples.filter(pl.col("sample_id").is_in(table["sample_id"].implode()))
    spec: dict[str, Any] = {"column": args.outcome, "type": args.type or "binary"}
    refuse_answers_in_table(table, samples, spec, args.table)
    if args.positive_class is not None:
        spec["positive_class"] = args.positive_class
    # half the smallest value assumes intensities (log1p of them); a table given already log-scaled is filled with
    # the feature's mean unless the user chose (a trial: on log10 values half-minimum filled 1/4.4 of the minimum)
    default = "half_minimum" if log_transformed else "mean"
    imputation = {"table": (params.get("imputation") or {}).get("table", default)}
    params = {**params, "feature_sets": ["table"], "imputation": imputation}
    # a batch (or run order) of a table from elsewhere was not corrected by ms2study: adjusted for as given, under
    # another name, since the pipeline refuses these names as covariates (its correct stage handles them; trial T)
    acquisition = [c for c in params.get("covariates") or [] if c in ACQUISITION_COLUMNS and c in samples.columns]
    if acquisition:
        samples = samples.rename({c: f"{c}_as_given" for c in acquisition})
        params["covariates"] = [f"{c}_as_given" if c in acquisition else c for c in params["covariates"]]
        print(f"note: covariate(s) {', '.join(acquisition)} adjusted for as given (named "
              f"{', '.join(c + '_as_given' for c in acquisition)}): this command does not correct batches or drift")
    filled = "half the smallest value" if imputation["table"] == "half_minimum" else "the mean"
    print(f"note: missing values are filled with {filled} of each feature, inside the cross-validation folds")
    # an outcome that follows another column of the sheet (a batch, a run order): said here and in summary.json,
    # as the pipeline's report says it (a trial's outcome equal to the batch column "separated" with no word)
    try:
        # the outcome checked first (trial AQ: --type binary on BMI printed kilobytes of caution over 152 "classes"
        # before the error)
        encode_outcome(samples, check_outcome(spec))
        cautions = [plain_text(c) for c in design_cautions(samples, [spec], list(params.get("covariates") or []))]
        for caution in cautions:
            print(f"caution: {caution}")
        summaries = model_by_subject(samples, {"table": table}, [spec], Path(args.out), params, cautions, {})
    except InputError as err:
        if err.file not in ("samples.tsv", "config.yaml"):
            raise
        # the pipeline's wording names the study's sheet and config.yaml; this command has neither: name what the
        # user gave (a trial was told "file 'samples.tsv'" and to edit config.yaml)
        raise InputError(err.message.replace("(config models.outcomes) ", "")
                         + ("" if args.type else " (--type was not given: it defaults to binary)"),
                         file=str(args.samples), sample=err.sample,
                         fix="check --outcome, --type and --positive-class against this sheet's columns and values"
                         ) from err
    summary = summaries[args.outcome]
    for name, entry in summary.get("feature_sets", {}).items():
        low, high = format_metric(entry["ci_low"]), format_metric(entry["ci_high"])
        null_mean = entry.get("permutation_null_mean")
        print(f"{args.outcome} ({summary['type']}, n = {entry['n_samples']}) on {name}: {entry['metric']} = "
              f"{format_metric(entry['value'])} [{low}, {high}], permutation p = "
              f"{'NA' if entry['permutation_p'] is None else format(float(entry['permutation_p']), '.3g')}"
              + (f" (on shuffled labels {format_metric(null_mean)} on average)" if null_mean is not None else ""))
    for note_text in summary.get("notes") or []:  # a paired design, single-sample folds ... (trial T)
        if note_text not in cautions:  # printed above
            print(f"note: {note_text}")
    folder = Path(args.out) / outcome_dirname(args.outcome)
    _print_explained(folder / MATRIX_FILE)
    verdict = None
    if summary["status"] == "done":  # the report's words (a trial had only the numbers to judge by)
        # the pipeline's advice names config.yaml; this command takes --params (trial V)
        verdict = plain_text(model_verdict(summary)[0]).replace(" in config.yaml", " (here: --params)")
        print("verdict: " + verdict)
    else:
        print(f"{args.outcome}: skipped: {summary.get('reason')}")
    # what was read and decided, beside the numbers (trial AQ: the verdict and the log decision were on stdout only)
    summary.update(verdict=verdict, table=str(args.table), sample_sheet=str(args.samples), table_note=note,
                   log1p_applied=bool(log_transformed), imputation=imputation["table"])
    write_text(json.dumps(summary, indent=2) + "\n", folder / "summary.json")
    print(f"written: {folder}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``models`` (pipeline) and ``model`` (a table from elsewhere) commands to the ms2study CLI."""
    p = subparsers.add_parser("models", help="nested-CV outcome models of the study's feature sets")
    p.add_argument("--samples", required=True, help="sample sheet (TSV with sample_id and the outcome columns)")
    p.add_argument("--sample-embeddings", nargs="*", default=[], help="sample_embedding.parquet of each sample")
    p.add_argument("--feature-matrix", default=None,
                   help="results/study/feature_matrix.parquet, or feature_matrix_corrected.parquet (correct stage)")
    p.add_argument("--exclude-flagged", default=None, metavar="CORRECTED_MATRIX",
                   help="leave out the features flagged excluded (blank or QC RSD) in this table "
                        "(results/study/feature_matrix_corrected.parquet)")
    p.add_argument("--detected-matrix", default=None, metavar="LINKED_MATRIX",
                   help="results/study/feature_matrix.parquet: which values feature detection found; a run with under "
                        "a fifth of the study samples' median count is left out as failed (default: the values of "
                        "--feature-matrix, gap-filled ones included)")
    p.add_argument("--spectra", nargs="*", default=[],
                   help="spectra.parquet of each sample, for the binned-spectra baseline (optional)")
    p.add_argument("--sample-chemistry", nargs="*", default=[],
                   help="sample_chemistry.parquet of each sample (bags of chemistry, 'ms2study chemistry'; optional)")
    add_run_range_arguments(p)
    p.add_argument("--outdir", required=True, help="folder for {outcome}/... and models_done.json")
    add_params_argument(p)
    p.set_defaults(func=_cli_models)

    q = subparsers.add_parser(
        "model", help="the same models on a samples x features table from elsewhere",
        description="The models stage's nested cross-validation on a table from elsewhere. No study config is read: "
                    "covariates (models: covariates in a study) are given as --params '{\"covariates\": [\"age\"]}' "
                    "(columns of --samples), and so are the other models settings. Runs of one subject (the sheet's "
                    "subject_id column, or --subject-column) are modelled as the pipeline models them: averaged into "
                    "one row when the outcome is the same for all of them, compared within subjects when a binary "
                    "outcome changes between them (paired); without it every row is an independent sample.")
    q.add_argument("--table", required=True, help="TSV, CSV or Parquet; samples x features in either orientation")
    q.add_argument("--samples", required=True, help="sample sheet with the outcome column (TSV or CSV)")
    q.add_argument("--id-column", default=None, help="sample id column of the sheet (default: sample_id or the first)")
    q.add_argument("--subject-column", default=None,
                   help="the sheet's column naming each row's subject, when not subject_id (repeated measures)")
    q.add_argument("--outcome", required=True, help="outcome column of the sample sheet")
    q.add_argument("--type", default=None, choices=OUTCOME_TYPES, help="the outcome's type (default: binary)")
    q.add_argument("--positive-class", default=None)
    q.add_argument("--log", default="auto", choices=["auto", "yes", "no"],
                   help="log1p the values (auto: when they look like raw intensities)")
    q.add_argument("--out", required=True, help="output folder ({outcome}/metrics.parquet, ...)")
    add_params_argument(q)
    q.set_defaults(func=_cli_model)
