"""The differential stage: what differs between the groups of an outcome, a test per consensus feature, then per
chemical class.

Reads the feature matrix (``results/study/feature_matrix_corrected.parquet`` with ``correct.use_corrected``, the
default; else the linked ``results/study/feature_matrix.parquet``; optionally without the features the correct stage
flagged, ``correct.exclude_flagged``), the linked matrix as the record of which values feature detection found
(``--detected-matrix``: testability, ``models.min_detected_fraction``, is decided on detected values, never on
gap-filled ones; ``modelling.differential``), the sample sheet (QC and blank runs never enter a test) and the
identifications (``results/study/identifications.parquet``) and writes, per configured outcome,
``results/study/differential/{outcome}.parquet`` (one row per consensus feature,
``modelling.differential.DIFFERENTIAL``) and ``results/study/class_enrichment/{outcome}.parquet`` (one row per
chemical class tested, ``modelling.enrichment.ENRICHMENT``), each with the run's summary in its metadata. The
missing-value handling and the tests are described in ``modelling.differential`` and ``modelling.univariate``, the
check that the hits do not crowd into one m/z x RT region (summary ``local_cluster`` and ``warnings``) in
``modelling.locality``, the class enrichment (ChemRICH, Barupal & Fiehn 2017) in ``modelling.enrichment``.
``configured_outcomes`` and ``rule_params`` are the rule's view of the config (``workflow/rules/differential.smk``).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from ms2study.core.errors import InputError
from ms2study.core.missing import is_missing
from ms2study.core.params import add_params_argument, load_params, overlay
from ms2study.io.samplesheet import read_sample_sheet
from ms2study.modelling.coelution import coeluting_hit_groups
from ms2study.modelling.differential import (
    SIGNIFICANCE,
    TESTS,
    OutcomeValues,
    differential_with_values,
    outcome_filename,
    write_table,
)
from ms2study.modelling.enrichment import class_enrichment, distinct_labellings, global_shift
from ms2study.modelling.locality import local_cluster
from ms2study.modelling.outcomes import (
    add_run_range_arguments,
    not_sample_note,
    not_study_samples,
    read_detected_matrix,
    read_model_matrix,
    runs_measured,
    small_class_note,
    without_empty_runs,
)
from ms2study.modelling.power import detectable_log2_class_shift, detectable_log2_fold_change, detectable_log2_slope
from ms2study.modelling.structure import MIN_SAMPLES as STRUCTURE_MIN_SAMPLES
from ms2study.modelling.structure import hidden_split
from ms2study.modelling.subjects import (
    SUBJECT_COLUMN,
    average_columns,
    paired_outcome,
    paired_units,
    several_runs,
    subject_groups,
    subject_ranges,
    subject_sheet,
    subjects_note,
    varies_within,
    with_subject_block,
    without_lone_units,
)
from ms2study.modelling.univariate import log_scaled_warning

log = logging.getLogger(__name__)


DEFAULT_PARAMS: dict[str, Any] = {
    "outcome": None,                # one entry of models.outcomes: {column, type, positive_class}
    "covariates": [],               # models.covariates: adjusted for in every outcome's tests
    "imputation": "half_minimum",   # models.imputation.features: half_minimum | mean
    "min_detected_fraction": 0.5,   # models.min_detected_fraction: features detected (gap-filled values do not
                                    # count) in fewer of the outcome's samples are not tested
    "min_class_size": 3,            # classes with fewer identified compounds are not tested (modelling.enrichment)
    "alpha": 0.05,                  # p below which a class member counts as altered (ChemRICH's direction counts)
    "test": "moderated",            # differential.test: moderated | welch (modelling.differential)
    "permutations": 200,            # differential.permutations: the permutation nulls (moderated test; Welch on
                                    # features with a filled value); 0: the t distribution
    "class_permutations": 1000,     # differential.class_permutations: label permutations of the class enrichment's
                                    # null (modelling.enrichment); 0: Fisher's chi-square (assumes independent
                                    # compounds)
    "seed": 0,                      # models.seed: the permutations
}


def _detectable(table: pl.DataFrame, seen: OutcomeValues) -> float | None:
    """A binary outcome's ``power.detectable_log2_fold_change``, a continuous one's ``power.detectable_log2_slope``
    (power 0.8, q < 0.05; trial Z: a continuous outcome with no hit had no such statement) from the features its
    moderated test saw (measured in every sample), with the study's number of tested features and the test's
    covariates (a paired design's subject columns among them), a multiclass one's ``power.detectable_log2_class_shift``
    (trial BH: three diets had no such statement); None when fewer than 3 features were moderated."""
    if "test" not in table.columns:
        return None
    moderated = set(table.filter(pl.col("test").str.starts_with("moderated"))["consensus_id"].to_list())
    rows = [i for i, c in enumerate(seen.consensus_ids) if c in moderated]
    if len(rows) < 3:
        return None
    if seen.kind == "continuous":
        value = detectable_log2_slope(seen.values[rows], seen.y, int(table["tested"].sum()), covariates=seen.covariates)
    elif seen.kind == "multiclass":
        value = detectable_log2_class_shift(seen.values[rows], seen.y, int(table["tested"].sum()),
                                            covariates=seen.covariates)
    else:
        value = detectable_log2_fold_change(seen.values[rows], seen.y == 1, int(table["tested"].sum()),
                                            covariates=seen.covariates)
    return None if value is None else round(value, 4)


def merge_params(params: dict | None) -> dict:
    """DEFAULT_PARAMS with ``params`` over them; raises InputError on an unknown key or a bad value."""
    merged = overlay(params, DEFAULT_PARAMS, "differential")
    if merged["imputation"] not in ("half_minimum", "mean"):
        raise InputError(f"imputation is '{merged['imputation']}'", fix="use 'half_minimum' or 'mean'")
    if not 0 <= float(merged["min_detected_fraction"]) <= 1:
        raise InputError(f"min_detected_fraction must lie between 0 and 1 (got {merged['min_detected_fraction']})")
    for key in ("permutations", "class_permutations"):
        if not isinstance(merged[key], int) or isinstance(merged[key], bool) or merged[key] < 0:
            raise InputError(f"{key} must be an integer >= 0 (got {merged[key]!r})")
    if merged["test"] not in TESTS:
        raise InputError(f"differential test is '{merged['test']}'", fix=f"use one of {', '.join(TESTS)}")
    covariates = merged["covariates"]
    if not isinstance(covariates, list) or not all(isinstance(c, str) and c for c in covariates):
        raise InputError(f"covariates must be a list of sample-sheet column names (got {covariates!r})")
    return merged


def configured_outcomes(config: dict) -> dict[str, dict]:
    """The workflow config's ``models: outcomes`` as {file stem: outcome declaration}, in config order."""
    outcomes = (config.get("models") or {}).get("outcomes") or []
    return {outcome_filename(str(o["column"])): o for o in outcomes}


def rule_params(config: dict, stem: str) -> dict:
    """The stage parameters of one outcome (by file stem) from the workflow config: the outcome and the models'
    missing-value, covariate and seed settings and the ``differential`` section, so that only a change to these
    reruns the stage."""
    models, section = config.get("models") or {}, config.get("differential") or {}
    test = section.get("test", "moderated")
    return {"outcome": configured_outcomes(config)[stem], "covariates": models.get("covariates") or [],
            "imputation": (models.get("imputation") or {}).get("features", "half_minimum"),
            "min_detected_fraction": models.get("min_detected_fraction", 0.5),
            "test": test, "seed": models.get("seed", 0),
            # both tests permute (welch: the features with a filled value)
            "permutations": section.get("permutations", 200),
            "class_permutations": section.get("class_permutations", 1000)}


# A continuous outcome with fewer samples than this gets a warning (the binary and multiclass ones get the report's
# per-class warning, reporting.cautions.FEW_PER_CLASS): each feature's slope then rests on a handful of points.
FEW_CONTINUOUS = 10


def few_samples_warning(summary: dict) -> str | None:
    """The warning for a continuous outcome tested on fewer than ``FEW_CONTINUOUS`` samples, or None. A trial's
    4-sample age outcome was refused by the models (too few samples) while every feature was tested here and Main
    findings read "0 of 269 tested features differ" without a word on the sample size."""
    n = summary.get("n_samples")
    if summary.get("type") != "continuous" or n is None or n >= FEW_CONTINUOUS:
        return None
    units = "subjects" if summary.get("subjects") else "samples"
    return (f"only {n} {units} have a value of {summary.get('outcome')} (fewer than {FEW_CONTINUOUS}): each "
            "feature's slope rests on so few points that only very large effects can reach q < 0.05, and none found "
            "says little")


def run_differential(samples_path: str | Path, matrix_path: str | Path, identifications_path: str | Path | None,
                     differential_out: str | Path, enrichment_out: str | Path, params: dict | None = None,
                     flags_path: str | Path | None = None, detected_path: str | Path | None = None,
                     qc_path: str | Path | None = None) -> dict:
    """The stage: read the sheet, the matrix and the identifications, write both tables of one outcome.

    ``params``: ``DEFAULT_PARAMS`` keys; ``outcome`` is required. ``matrix_path``: the raw or the corrected feature
    matrix (sample columns taken by the sheet's ids); ``flags_path``: the corrected matrix whose ``excluded``
    features are left out (None: every feature is tested); ``detected_path``: the linked matrix
    (``results/study/feature_matrix.parquet``), whose non-null cells are the values feature detection found:
    ``min_detected_fraction`` counts only those, so a gap-filled value never makes a feature testable (None: every
    value of the matrix counts as detected). ``qc_path`` (``results/study/qc.parquet``): runs that measured less
    than half of the study's typical RT range are left out and named in a note
    (``modelling.outcomes.without_unmeasured_runs``; None: no check). QC and blank runs (sheet ``sample_type``) are
    left out
    and counted in the summary (``excluded_not_sample`` and a note). Returns the summary (also stored in both files'
    metadata, with the enrichment's notes). Raises InputError for missing inputs or a bad outcome (see
    ``differential_with_values``).
    """
    params = merge_params(params)
    if not params["outcome"]:
        raise InputError("no outcome given", fix="pass --params '{\"outcome\": {\"column\": ..., \"type\": ...}}'")
    samples = read_sample_sheet(samples_path)
    matrix, flag_note = read_model_matrix(matrix_path, flags_path)
    detected = read_detected_matrix(detected_path, samples["sample_id"].cast(pl.Utf8).to_list())
    # empty and failed runs (too few detected features: modelling.runchecks.failed_runs) left out
    samples, empty_note = without_empty_runs(samples, matrix, detected)
    before = samples["sample_id"].cast(pl.Utf8).to_list()
    samples, range_notes, partial_ranges = runs_measured(samples, qc_path)
    short_runs = sorted(set(before) - set(samples["sample_id"].cast(pl.Utf8).to_list()))
    identifications = None
    if identifications_path:
        if not Path(identifications_path).exists():
            raise InputError("identifications table does not exist", file=str(identifications_path),
                             fix="run the identify stage, or leave --identifications out")
        identifications = pl.read_parquet(identifications_path)
    if detected is not None:
        kept = set(samples["sample_id"].cast(pl.Utf8).to_list())
        detected = detected.select([c for c in detected.columns if c == "consensus_id" or c in kept])
    # runs of one subject (modelling.subjects): averaged; with an outcome that changes within subjects (a paired
    # design) the runs of one subject and outcome value are averaged and the subject is a factor of the tests
    # a covariate that is this outcome's own column is left out of its tests, as the models leave it out (a trial's
    # age caution advised naming 'group' as a covariate, and the group test then read "differ with group or with
    # group, which this design cannot tell apart")
    own = [c for c in params["covariates"] if c == params["outcome"]["column"]]
    groups, covariates, subject_of = subject_groups(samples), [c for c in params["covariates"] if c not in own], {}
    paired = paired_outcome(samples, params["outcome"]["column"], groups)
    without_value: list[str] = []
    if paired:
        groups, subject_of = paired_units(samples, params["outcome"]["column"], groups)
        value_of = dict(zip(samples["sample_id"].cast(pl.Utf8).to_list(),
                            samples[params["outcome"]["column"]].to_list()))
        without_value = [u for u in groups if is_missing(value_of.get(u))]
    if groups:
        samples, matrix = subject_sheet(samples, groups), average_columns(matrix, groups)
        detected = average_columns(detected, groups) if detected is not None else None
        partial_ranges = subject_ranges(partial_ranges, groups)
    complete = subject_of
    fixed: list[str] = []
    if paired:  # a subject with one outcome value only is left out (modelling.subjects.without_lone_units)
        samples, complete = without_lone_units(samples, params["outcome"]["column"], subject_of)
        samples = with_subject_block(samples, complete)
        # a covariate the same in all of a subject's runs (age) is collinear with the subjects' levels: left out, as
        # the models leave it out (trial BJ: age beside subject_id left the whole study untested, "collinear")
        units = samples["sample_id"].cast(pl.Utf8).to_list()
        blocks = np.asarray([complete.get(u, u) for u in units])
        fixed = [c for c in covariates if c in samples.columns and not varies_within(samples, units, blocks, c)]
        covariates = [c for c in covariates if c not in fixed] + [SUBJECT_COLUMN]
    table, summary, values = differential_with_values(
        matrix, samples, params["outcome"], identifications, covariates, params["imputation"],
        float(params["min_detected_fraction"]), params["test"], int(params["permutations"]), int(params["seed"]),
        detected, partial_ranges)
    if paired:  # relabellings of the class and shift tests stay within subjects
        values = dataclasses.replace(values, blocks=np.asarray([subject_of.get(s, s) for s in values.sample_ids]))
    # a covariate that follows the outcome: the comparison without it too, so the price of the adjustment is known
    unadjusted = _without_collinear(table, samples, matrix, identifications, covariates, params, detected,
                                    partial_ranges)
    excluded = not_study_samples(samples)
    summary["excluded_not_sample"] = excluded
    summary["feature_matrix"] = Path(matrix_path).name
    summary["detected_matrix"] = Path(detected_path).name if detected_path else None
    own_note = (f"covariate '{own[0]}' is this outcome itself: left out of its tests (it adjusts the other outcomes)"
                if own else None)
    fixed_note = (f"covariates ({', '.join(fixed)}) are left out of this paired test: they are the same in all of a "
                  "subject's runs, so the comparison within subjects has them fixed" if fixed else None)
    summary["notes"] = ([n for n in (not_sample_note(excluded), flag_note, empty_note, own_note, fixed_note) if n]
                        + range_notes
                        + ([subjects_note(groups, subject_of if paired else None, without_value)] if groups else [])
                        + summary["notes"])
    summary["subjects"] = several_runs(groups) if not paired else {}
    if paired:
        summary["paired_by"], summary["n_subjects"] = SUBJECT_COLUMN, len(set(complete.values()))
    # samples the tests leave out for a missing value: named in the log too, not only in the report's notes (a trial
    # blanked one sample's sex and the log said only how many features were tested)
    for key, what in (("excluded_missing_outcome", "no value of the outcome"),
                      ("excluded_missing_covariate", "no value of a covariate")):
        if summary.get(key):
            log.warning("outcome %s: %d sample(s) left out of the tests, %s: %s (fill the sample sheet's value to "
                        "test them)", summary["outcome"], len(summary[key]), what, ", ".join(summary[key][:10]))
    small = small_class_note(summary)  # a class of one left out (encode_outcome)
    if small:
        log.warning("outcome %s: %s", summary["outcome"], small)
    detectable = _detectable(table, values)
    summary["detectable_log2_fold_change"] = detectable if values.kind == "binary" else None
    if values.kind == "multiclass":  # one class against the others, stated for the smallest class
        summary["detectable_log2_class_shift"] = detectable
    if values.kind == "continuous":  # the slope per unit, and the outcome's range it spans (a fold over that range)
        summary["detectable_log2_effect_per_unit"] = detectable
        summary["outcome_range"] = [float(np.min(values.y)), float(np.max(values.y))] if len(values.y) else None
    # hit groups that co-elute and follow each other within the classes: perhaps one compound (trial F)
    summary["coeluting_hits"] = coeluting_hit_groups(table, matrix, values.sample_ids, values.y, values.kind,
                                                     SIGNIFICANCE)
    locality = local_cluster(table, SIGNIFICANCE, int(params["seed"]))
    summary["local_cluster"] = locality
    summary["warnings"] = [locality["warning"]] if locality and locality["warning"] else []
    logs = log_scaled_warning(matrix, values.sample_ids)  # a table from elsewhere, already logged (a trial)
    if logs:
        summary["warnings"].append(logs)
    hidden = hidden_split(matrix, samples, values.sample_ids, values.y, values.kind, params["outcome"]["column"],
                          values.covariates)
    summary["hidden_structure"] = ({k: v for k, v in hidden.items() if k != "warning"} if hidden else None)
    if hidden:
        summary["warnings"].append(hidden["warning"])
    elif len(values.sample_ids) < STRUCTURE_MIN_SAMPLES:  # trial AD: skipped below 12 samples, unsaid
        summary["notes"].append(f"no check for a hidden split of the samples (another outcome, an undeclared batch or "
                                f"source run): it needs {STRUCTURE_MIN_SAMPLES} or more study samples, this test has "
                                f"{len(values.sample_ids)}")
    few = few_samples_warning(summary)
    if few:
        summary["warnings"].append(few)
    if unadjusted:
        summary["without_collinear_covariates"] = {k: v for k, v in unadjusted.items() if k != "warning"}
        summary["warnings"].append(unadjusted["warning"])
    if small:  # a trial: the counts in Main findings dropped the sample unsaid
        summary["warnings"].append(small)
    # the runs the RT-range check left out or filled: a caution, not only a note in the section (a trial's Main
    # findings read "5 control, 5 case" with no word on the two runs left out)
    if short_runs:
        summary["warnings"].append(f"{len(short_runs)} run(s) left out of the tests and models: they measured less "
                                   f"than half of the study's typical RT range ({', '.join(short_runs[:8])})")
    if partial_ranges:
        summary["warnings"].append(
            f"{len(partial_ranges)} run(s) measured only part of the study's RT range ({', '.join(partial_ranges)}): "
            f"{summary.get('n_not_measured_cells', 0)} value(s) of features eluting outside a run's range are the "
            "features' means over the runs that measured them")
    if locality and locality["note"]:
        summary["notes"].append(locality["note"])
    for text in summary["warnings"]:
        log.warning("outcome %s: %s", summary["outcome"], text)
    enrichment, notes = class_enrichment(table, int(params["min_class_size"]), float(params["alpha"]), values,
                                         int(params["class_permutations"]), int(params["seed"]))
    for note in notes:
        log.warning("outcome %s: %s", summary["outcome"], note)
    summary["enrichment_notes"] = notes
    summary["n_classes_tested"] = enrichment.height
    summary["n_classes_significant"] = int((enrichment["q_value"] < SIGNIFICANCE).sum())
    summary["min_class_size"] = int(params["min_class_size"])
    summary["alpha"] = float(params["alpha"])
    summary["class_permutations"] = int(params["class_permutations"])
    # how many relabellings give distinct class statistics (binary / multiclass): bounds the smallest class p
    summary["class_distinct_labellings"] = distinct_labellings(values)
    # a shift of the whole sample with the outcome moves every self-contained class test (see global_shift)
    summary["global_shift"] = global_shift(values, table.filter(pl.col("tested"))["consensus_id"].to_list(),
                                           int(params["class_permutations"]) or 1000, int(params["seed"]))
    write_table(table, differential_out, summary)
    write_table(enrichment, enrichment_out, summary)
    if enrichment.height:
        top = enrichment.row(0, named=True)
        log.info("outcome %s: %d classes tested, %d at q < %g; top: %s (n = %d, q = %.3g, %s)", summary["outcome"],
                 enrichment.height, summary["n_classes_significant"], SIGNIFICANCE, top["class_path"],
                 top["n_compounds"], top["q_value"], top["direction"])
    return summary


# A covariate that the outcome explains to this share or more gets the tests without it beside the adjusted ones
# (said when the adjustment costs features, or at OVERLAP_R2 always): variance inflation 1 / (1 - 0.3) = 1.4.
ADJUSTMENT_CHECK_R2 = 0.3


def _without_collinear(table: pl.DataFrame, samples: pl.DataFrame, matrix: pl.DataFrame,
                       identifications: pl.DataFrame | None, covariates: list[str], params: dict,
                       detected: pl.DataFrame | None, partial_ranges: dict) -> dict[str, Any] | None:
    """When a configured covariate follows the outcome (``reporting.confounding.explained_share`` at
    ``ADJUSTMENT_CHECK_R2`` or more), the same tests without such covariates; None when there is none, or when none
    reaches ``OVERLAP_R2`` (the report's caution) and the adjustment costs no feature (trial Z: a covariate the
    outcome explained to 0.56 took its hits from 7 to 0, and only one at 0.8 or more was said).

    A trial (three arms, age 70 / 40 / 55 by arm): adjusted for age none of 12 planted compounds was at q < 0.05,
    without it 6 (all planted), and the report gave no scale of what the adjustment cost. Returns ``left_out``
    (the covariates with their share explained), ``n_significant_adjusted``, ``n_significant_without``, ``only_without``
    (consensus ids at q < SIGNIFICANCE without the adjustment only, best first, at most 10) and ``warning`` (the
    sentence for the summary's warnings). The table written stays the adjusted one."""
    from ms2study.reporting.confounding import OVERLAP_R2, explained_share

    outcome = params["outcome"]
    shares = {c: explained_share(samples, outcome, c) for c in params["covariates"]
              if c in samples.columns and c != outcome["column"]}  # its own column is no covariate of its tests
    collinear = {c: share for c, share in shares.items() if share is not None and share[0] >= ADJUSTMENT_CHECK_R2}
    if not collinear:
        return None
    strong = any(share[0] >= OVERLAP_R2 for share in collinear.values())
    kept = [c for c in covariates if c not in collinear]
    plain, _, _ = differential_with_values(
        matrix, samples, outcome, identifications, kept, params["imputation"], float(params["min_detected_fraction"]),
        params["test"], int(params["permutations"]), int(params["seed"]), detected, partial_ranges)
    adjusted = set(table.filter(pl.col("q_value") < SIGNIFICANCE)["consensus_id"].to_list())
    hits = plain.filter(pl.col("q_value") < SIGNIFICANCE).sort("q_value")
    only = [c for c in hits["consensus_id"].to_list() if c not in adjusted]
    if not strong and hits.height <= len(adjusted):
        return None
    names = ", ".join(sorted(collinear))
    shares_text = ", ".join(f"{c} {share[0]:.2f}" for c, share in sorted(collinear.items()))
    warning = (f"without adjusting for {names} (it follows the outcome: share of its variation the outcome explains "
               f"{shares_text}), {hits.height} feature(s) are "
               f"at q < {SIGNIFICANCE:g}, {len(adjusted)} with the adjustment"
               + (f"; {len(only)} only without it ({', '.join(only[:5])}{' ...' if len(only) > 5 else ''})"
                  if only else "")
               + (f": those differ with {outcome['column']} or with {names}, which this design cannot tell apart "
                  if strong else f": the adjustment removes what {outcome['column']} shares with {names}, so those "
                  "may differ with either; the adjusted tests are the stricter reading ")
               + "(the tables and figures are the adjusted tests)")
    return {"left_out": {c: round(share[0], 3) for c, share in collinear.items()},
            "n_significant_adjusted": len(adjusted), "n_significant_without": hits.height,
            "only_without": only[:10], "warning": warning}


def _cli(args: argparse.Namespace) -> int:
    run_differential(args.samples, args.feature_matrix, args.identifications, args.out, args.enrichment_out,
                     load_params(args), args.exclude_flagged, args.detected_matrix, args.qc)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``differential`` command to the ms2study CLI."""
    p = subparsers.add_parser("differential", help="per-feature tests and chemical class enrichment for one outcome")
    p.add_argument("--samples", required=True, help="sample sheet (results/study/samples.tsv)")
    p.add_argument("--feature-matrix", required=True,
                   help="results/study/feature_matrix_corrected.parquet (or the raw feature_matrix.parquet)")
    p.add_argument("--exclude-flagged", default=None, metavar="CORRECTED_MATRIX",
                   help="leave out the features flagged excluded (blank or QC RSD) in this table "
                        "(results/study/feature_matrix_corrected.parquet)")
    p.add_argument("--detected-matrix", default=None, metavar="LINKED_MATRIX",
                   help="results/study/feature_matrix.parquet: which values feature detection found; "
                        "min_detected_fraction counts only these, not gap-filled values (default: every value of "
                        "--feature-matrix counts as detected)")
    add_run_range_arguments(p)
    p.add_argument("--identifications", default=None, help="results/study/identifications.parquet (optional)")
    p.add_argument("--out", required=True, help="differential table to write (results/study/differential/X.parquet)")
    p.add_argument("--enrichment-out", required=True,
                   help="class enrichment table to write (results/study/class_enrichment/X.parquet)")
    add_params_argument(p)
    p.set_defaults(func=_cli)
