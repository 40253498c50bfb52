"""Differential analysis of one outcome: a test per consensus feature of the linked feature matrix, joined with the
feature's accepted identification, and the table's storage with its summary in the Parquet metadata.

Missing values are handled as in the outcome models (config ``models:``). A consensus feature without a value in a
sample (null, NaN or an intensity <= 0) is missing. Whether a feature is tested is decided on DETECTED values only:
those the run's feature detection found, i.e. non-null in the linked matrix (``results/study/feature_matrix.parquet``,
passed as ``detected``), not the values gap filling added to the corrected matrix. A feature is tested when detected
in at least ``min_detected_fraction`` of the samples of one class (binary and multiclass outcomes: the "modified
80 % rule" of Bijlsma et al. 2006, Anal. Chem. 78:567, so a compound found in most cases and no control, an effect
by presence, stays testable) or of all samples (continuous outcomes), among the samples with a value for the
outcome; the others keep their row with ``tested`` false and null p- and q-values, whatever gap filling found. Gap
filling re-quantifies a run's signal at the feature's expected position (``correction.gapfill``) and finds signal in
most runs for many features detection saw rarely; counted as detected, such values enlarge the Benjamini-Hochberg
family with features detection barely supports (on the spike-in study of a real Q Exactive run, with a gap filler
that also integrated traces without a resolved elution peak: 3,345 features tested and 2 of the 12 planted
compounds at q < 0.05; decided on detected values, 2,803 and 5). So a filled value replaces imputation in a tested
feature but never makes a feature testable. Without ``detected`` (e.g. on the linked matrix itself) every value
counts as detected. In a tested feature, a missing value (neither detected nor gap-filled) is filled with half the
feature's smallest intensity (``half_minimum``, the usual reading that an undetected compound lies below the
detection limit; on the log2 scale that is log2(minimum) - 1), or with the mean of its log2 intensities (``mean``).
The models fill inside each cross-validation fold to avoid leakage (their detection filter counts every value of
the matrix, per training fold); a test has no folds, so here the fill and the filter use all samples of the
outcome. Detection rates are computed before any fill.

Binary outcomes: ``log2_fold_change`` is the mean log2 intensity of the positive class minus that of the other
class (the log2 ratio of geometric means); with covariates it is the coefficient of the positive class in a linear
model of log2 intensity on the class and the covariates (the adjusted log2 fold change, as limma fits
``~ group + covariates``; Smyth 2004), tested like a continuous outcome's slope (``moderated_ols`` / ``ols``): a
case-control study whose groups differ in age compares cases and controls of the same age, where the unadjusted
test also calls every age-related compound different (measured: ``benchmarks/differential_calibration.py
--covariates``). Continuous outcomes: ``log2_effect_per_unit`` is the OLS slope, adjusted for the covariates.
Multiclass outcomes: the F-test of the class indicators of a linear model (intercept, one indicator per class but
the first, the covariates): the one-way ANOVA, or ANCOVA's partial F beside covariates (``statistic`` is F; no effect
size, no direction). Covariates are taken as numbers as they are, text one-hot coded as in the models; samples
missing a covariate are left out.

Which test (``test`` parameter, per row in column ``test``): with ``moderated`` (the default), a feature with a
value (detected or gap-filled) in every sample of the outcome is tested with the moderated t-test (``moderated_t``:
two groups, the variances pooled; ``moderated_ols``: the slope, or a binary outcome's class coefficient beside
the covariates; ``moderated_f``: a multiclass outcome's F, limma's moderated F), its variance shrunk towards an
intensity-dependent prior fitted on all such features (limma-trend), its p-value from the permutation null of the
moderated statistic pooled over features (SAM-style, ``n_permutations`` permutations;
``modelling.univariate.permutation_moderated_test``); a feature with an imputed (filled) value keeps its own
variance: Welch's t-test (``welch_t``), plain OLS (``ols``; also a binary outcome's with covariates) or the
ordinary F-test (``anova``).
A filled value is a point mass at the detection limit, not a draw from the normal model the prior assumes; on real
urine studies moderating such features made the test anti-conservative (measured:
``benchmarks/differential_calibration.py``), and for the same reason Welch's p from the t distribution is too small
in the far tail (measured on null simulations: p < 1e-5 3-4x too often), so with ``n_permutations`` > 0 the Welch
p-values of binary features with a filled value come from label permutations pooled over features with as many
filled values (``modelling.univariate.permutation_welch_test``), and those of an OLS coefficient (a continuous
outcome's slope, a binary outcome's class beside covariates) and of a multiclass F from permuted residuals pooled
the same way (``permutation_ols_test``, ``permutation_f_test``: Freedman & Lane 1983; a class whose samples are all
filled has no variance and an F far beyond the F distribution). With ``welch`` every binary feature without
covariates gets Welch's test, every multiclass one the ordinary F-test and every other one plain OLS (the filled ones
with the same permutation p-values). The tests are in ``modelling.univariate``; ``effect_ci_low``/``effect_ci_high``,
the effect's 95 % interval, from ``modelling.effect_interval``. Imports ``core`` and those ``modelling`` modules.
"""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from ms2study.core.atomic import atomic_path
from ms2study.core.errors import InputError
from ms2study.modelling.cells import detection_mask, fill_not_measured, not_measured_mask
from ms2study.modelling.direction import class_extremes
from ms2study.modelling.effect_interval import effect_intervals
from ms2study.modelling.outcomes import check_outcome, covariate_matrix, encode_outcome, outcome_dirname
from ms2study.modelling.univariate import (
    bh_q_values,
    detected_enough,
    fill_missing,
    log2_intensities,
    multiclass_tests,
    ols_slope_test,
    permutation_moderated_test,
    permutation_ols_test,
    permutation_welch_test,
    welch_test,
)

log = logging.getLogger(__name__)


# Key under which the summary of a run (outcome, classes, notes) is stored in the Parquet files' metadata.
METADATA_KEY = "ms2study"
SIGNIFICANCE = 0.05  # the q threshold the summary and the report count at
# The classic tests by name (features the moderated test does not take keep them), as the summary's notes say them.
CLASSIC_TEST_NAMES = {"welch_t": "Welch t-test", "ols": "ordinary least squares",
                      "anova": "ordinary F-test (ANOVA)"}
TESTS = ("moderated", "welch")  # the choices of the test parameter (module docstring)
DIFFERENTIAL: dict[str, pl.DataType] = {
    "consensus_id": pl.Utf8,
    "mz": pl.Float64,
    "rt_s": pl.Float64,
    # the correct stage's grouping of one compound's ions (feature_matrix_corrected; null on the raw matrix): its
    # compound group and this feature's ion, e.g. "[M+H]+", "[M+Na]+", "[M+H]+ M+1", "[M+H]+ 37Cl M+2". Isotope and
    # adduct features of one compound are tested one by one; n_significant_compounds counts groups
    "compound_group": pl.Utf8,
    "ion": pl.Utf8,
    # whether the ion label rests on the co-variation test (true) or on mass and RT alone (false: the pair was
    # measured together in fewer than correct: adduct_min_runs runs); null without a label
    "ion_tested": pl.Boolean,
    # the correct stage's RT spread flag (correction.rtspread): the apex RT wanders over the study samples, so the
    # feature may sum co-eluting ions the instrument does not resolve; null on the raw matrix or when not judged
    "rt_sd_flag": pl.Boolean,
    # the accepted identification of the feature (all null when it has none)
    "name": pl.Utf8,
    "inchikey": pl.Utf8,
    "formula": pl.Utf8,
    "compound_class": pl.Utf8,
    "msi_level": pl.Int8,
    "isomer_inchikeys": pl.List(pl.Utf8),
    "identification_q_value": pl.Float64,
    # the identify stage's mark of a possible in-source fragment (the parent's m/z); class enrichment leaves it out
    "in_source_of_mz": pl.Float64,
    "outcome": pl.Utf8,                   # the sample-sheet column
    "test": pl.Utf8,          # moderated_t | welch_t | moderated_ols | ols | moderated_f | anova; null: not tested
    "log2_fold_change": pl.Float64,       # binary: mean log2 positive class - mean log2 other class
    "log2_effect_per_unit": pl.Float64,   # continuous: log2 intensity change per unit of the outcome
    # 95 % interval of that effect (limma's, modelling.effect_interval); null where a value was imputed
    "effect_ci_low": pl.Float64,
    "effect_ci_high": pl.Float64,
    "statistic": pl.Float64,              # t (moderated_t, welch_t, moderated_ols, ols) or F (moderated_f, anova)
    "p_value": pl.Float64,
    "q_value": pl.Float64,                # Benjamini-Hochberg over the tested features
    "tested": pl.Boolean,                 # false: detected in too few samples, or the test was undefined
    "n_samples": pl.Int32,                # samples with a value for the outcome (and every covariate)
    "detection_rate": pl.Float64,         # share of those samples with a value (detected or gap-filled)
    "detection_rate_positive": pl.Float64,   # binary: in the positive class
    "detection_rate_reference": pl.Float64,  # binary: in the other class
    # share of those samples whose value is gap-filled, not detected (xcms' "filled" peaks); testability is decided
    # on detection_rate - gap_filled_rate. 0 without the linked matrix (nothing known to be filled)
    "gap_filled_rate": pl.Float64,
    "gap_filled_rate_positive": pl.Float64,   # binary: in the positive class
    "gap_filled_rate_reference": pl.Float64,  # binary: in the other class
    # share of those samples where feature detection found it (detection_rate - gap_filled_rate): what testability
    # reads (a trial filtered on detection_rate 1.0 for a feature detected in 2 of 12 samples, the rest gap-filled)
    "measured_rate": pl.Float64,
    "mean_log2_intensity": pl.Float64,    # over the samples, after the fill
    # multiclass: the classes with the highest and the lowest mean log2 intensity and the difference of those means
    # (log2; adjusted for no covariate), so the table says which classes differ and which way (a trial's three-group
    # study had its planted changes found with "no direction" anywhere); null for other outcomes
    "highest_class": pl.Utf8,
    "lowest_class": pl.Utf8,
    "log2_class_range": pl.Float64,
}


def outcome_filename(column: str) -> str:
    """The file stem of an outcome's differential and enrichment tables (``modelling.outcomes.outcome_dirname``)."""
    return outcome_dirname(column)


def accepted_identifications(identifications: pl.DataFrame | None) -> pl.DataFrame:
    """The accepted identifications, one per consensus feature, with the columns joined into ``DIFFERENTIAL``
    (``q_value`` renamed ``identification_q_value``). Columns missing from the table are null."""
    columns = ["name", "inchikey", "formula", "compound_class", "msi_level", "isomer_inchikeys",
               "identification_q_value", "in_source_of_mz"]
    schema = {"consensus_id": pl.Utf8, **{c: DIFFERENTIAL[c] for c in columns}}
    if identifications is None or identifications.height == 0 or "consensus_id" not in identifications.columns:
        return pl.DataFrame(schema=schema)
    frame = identifications
    if "accepted" in frame.columns:
        frame = frame.filter(pl.col("accepted").fill_null(False))
    else:  # without the flag nothing is known to be accepted
        frame = frame.clear()
    frame = frame.rename({"q_value": "identification_q_value"}) if "q_value" in frame.columns else frame
    for column in columns:
        if column not in frame.columns:
            frame = frame.with_columns(pl.lit(None, dtype=schema[column]).alias(column))
    return (frame.select([pl.col(c).cast(t) for c, t in schema.items()])
            .sort("identification_q_value", nulls_last=True).unique("consensus_id", keep="first", maintain_order=True))


@dataclass(frozen=True)
class OutcomeValues:
    """The values one outcome's tests saw, for tests that must reshuffle the samples (class enrichment's label
    permutations, ``modelling.enrichment``): ``values`` is features x samples (rows in ``consensus_ids`` order, the
    matrix's; columns in ``sample_ids`` order), log2 intensities with missing values filled as the tests filled
    them; ``y`` the encoded outcome per sample (0/1 with 1 the positive class, class index, or the value);
    ``kind`` binary | continuous | multiclass; ``covariates`` samples x k, or None; ``blocks``: subjects (paired)."""

    consensus_ids: list[str]
    sample_ids: list[str]
    values: np.ndarray
    y: np.ndarray
    kind: str
    covariates: np.ndarray | None
    blocks: np.ndarray | None = None


def differential_analysis(feature_matrix: pl.DataFrame, samples: pl.DataFrame, outcome: dict,
                          identifications: pl.DataFrame | None = None, covariates: Sequence[str] = (),
                          imputation: str = "half_minimum", min_detected_fraction: float = 0.5,
                          test: str = "moderated", n_permutations: int = 200, seed: int = 0,
                          detected: pl.DataFrame | None = None) -> tuple[pl.DataFrame, dict]:
    """Test every consensus feature for a difference with one outcome; returns (table, summary). The same as
    ``differential_with_values`` without the values."""
    return differential_with_values(feature_matrix, samples, outcome, identifications, covariates, imputation,
                                    min_detected_fraction, test, n_permutations, seed, detected)[:2]


def differential_with_values(feature_matrix: pl.DataFrame, samples: pl.DataFrame, outcome: dict,
                             identifications: pl.DataFrame | None = None, covariates: Sequence[str] = (),
                             imputation: str = "half_minimum", min_detected_fraction: float = 0.5,
                             test: str = "moderated", n_permutations: int = 200, seed: int = 0,
                             detected: pl.DataFrame | None = None,
                             run_ranges: dict[str, tuple[float, float]] | None = None
                             ) -> tuple[pl.DataFrame, dict, OutcomeValues]:
    """Test every consensus feature for a difference with one outcome; returns (table, summary, values), the last
    the ``OutcomeValues`` the tests saw.

    ``feature_matrix``: wide, ``tables.FEATURE_MATRIX_KEYS`` then one intensity column per sample (raw scale,
    null = not detected); ``samples``: the sample sheet (sample_id and the outcome and covariate columns, strings);
    ``outcome``: {column, type: binary | continuous | multiclass, positive_class}; ``identifications``: the
    ``identify`` stage's table (only accepted rows are used). The table has one row per consensus feature, columns
    ``DIFFERENTIAL``, sorted by q-value (untested last). The summary holds the outcome, its type, the test, the
    classes and their sizes, the samples left out, the counts and notes; with moderated tests also ``prior_df``
    (d0), ``n_moderated`` and ``n_permutations``; where features with imputed values got permutation p-values,
    ``n_imputed_permuted`` and ``imputed_permutations``. ``test``: ``moderated`` or ``welch`` (module docstring);
    ``n_permutations`` and ``seed``: the permutation nulls of the moderated test and of Welch's test on features
    with filled values (0: the t distribution's p-values). ``detected``: the linked feature matrix
    (``results/study/feature_matrix.parquet``: consensus_id and the samples' columns, null = not detected) when
    ``feature_matrix`` holds gap-filled values (the corrected matrix); a cell counts as detected when it is non-null
    (> 0) there and ``feature_matrix`` still holds it, and ``min_detected_fraction`` is applied to those cells only
    (``detection_mask``; per class for a binary or multiclass outcome, ``detected_enough``). None: every value of
    ``feature_matrix`` counts as detected. The summary then holds ``testability`` ("detected values" or "matrix
    values") and ``n_testable_only_with_filled`` (features that would have passed ``min_detected_fraction`` had
    gap-filled values counted). ``run_ranges`` (sample id -> (first, last scan) s): a missing cell whose feature
    elutes outside its run's range is filled with the feature's mean (``cells.fill_not_measured``), not imputed as
    below detection, and counted in ``n_not_measured_cells``; it still counts as imputed for the choice of test.
    Missing values: see the module docstring.

    An outcome with too few samples (fewer than two per class, or no residual degrees of freedom) gives every
    feature ``tested`` false and a note, not an error. Raises InputError for a malformed outcome, an outcome or
    covariate column absent from the sheet, a non-numeric continuous value, a sample without a matrix column, or a
    ``detected`` table that lacks a feature or a sample of ``feature_matrix``.
    Methods: moderated t- and F-tests (limma-trend: Smyth 2004; Law et al. 2014), Welch's t-test, OLS t-test of
    the slope, the F-test of a multiclass outcome's class indicators (one-way ANOVA / ANCOVA),
    Benjamini-Hochberg (module docstring and ``modelling.univariate``).
    """
    if test not in TESTS:
        raise InputError(f"differential test is '{test}'", fix=f"use one of {', '.join(TESTS)}")
    spec = check_outcome(outcome)
    kind = spec["type"]
    if "consensus_id" not in feature_matrix.columns:
        raise InputError("feature matrix lacks column 'consensus_id'", fix="produce it with 'ms2study link'")
    target = encode_outcome(samples, spec)
    ids, y = list(target["sample_ids"]), np.asarray(target["y"])
    summary: dict[str, Any] = {"outcome": spec["column"], "type": kind, "excluded_missing_outcome":
                               target["excluded_missing_outcome"], "imputation": imputation,
                               "min_detected_fraction": float(min_detected_fraction),
                               "notes": list(target.get("notes", []))}
    if target.get("excluded_small_class"):
        summary["excluded_small_class"] = target["excluded_small_class"]
    if spec["column"] in covariates:
        summary["notes"].append(f"the covariate {spec['column']} is this outcome itself: not adjusted for here")
    covariates = [c for c in covariates if c != spec["column"]]
    C = None
    if covariates:
        C, names = covariate_matrix(samples, ids, covariates)
        complete = ~np.isnan(C).any(axis=1)
        if not complete.all():
            dropped = [s for s, ok in zip(ids, complete) if not ok]
            summary["excluded_missing_covariate"] = dropped
            summary["notes"].append(f"{len(dropped)} sample(s) lack a covariate value and are left out: "
                                    f"{', '.join(dropped[:10])}")
            ids, y, C = [s for s, ok in zip(ids, complete) if ok], y[complete], C[complete]
        varying = C.std(axis=0) > 0 if len(ids) else np.zeros(C.shape[1], dtype=bool)
        constant = [n.removeprefix("cov:") for n, v in zip(names, varying) if not v]
        if constant:
            summary["notes"].append(f"covariate(s) {', '.join(constant)} take one value over the tested samples: "
                                    "not adjusted for")
        C, names = C[:, varying], [n for n, v in zip(names, varying) if v]
        summary["covariates"] = names
    moderated = test == "moderated"
    adjusted = kind == "binary" and C is not None and C.size > 0  # the class coefficient beside the covariates
    test_name = {"binary": "ols" if adjusted else "welch_t", "continuous": "ols", "multiclass": "anova"}[kind]
    summary["test"] = ({"binary": "moderated_ols" if adjusted else "moderated_t", "continuous": "moderated_ols",
                        "multiclass": "moderated_f"}[kind] if moderated else test_name)
    if kind != "continuous":
        summary["classes"] = target["classes"]
        counts = np.bincount(y, minlength=len(target["classes"])).tolist()
        summary["class_counts"] = dict(zip(target["classes"], counts))
    if kind == "binary":
        summary["positive_class"] = target["positive_class"]
        summary["reference_class"] = next((c for c in target["classes"] if c != target["positive_class"]), None)
    summary["n_samples"] = len(ids)

    raw = log2_intensities(feature_matrix, ids)
    present = ~np.isnan(raw)  # detected or gap-filled
    values, _ = fill_missing(raw, imputation, min_detected_fraction)
    if run_ranges and "rt_s" in feature_matrix.columns:  # eluting outside a run: not measured, not below detection
        gone = not_measured_mask(feature_matrix["rt_s"].cast(pl.Float64).to_numpy(), ids, run_ranges) & ~present
        values = np.where(gone, fill_not_measured(raw, gone), values)
        summary["n_not_measured_cells"] = int(gone.sum())
    summary["testability"] = "matrix values" if detected is None else "detected values"
    groups = None if kind == "continuous" else [y == c for c in np.unique(y)]
    keep = detected_enough(present, min_detected_fraction, groups)
    found = present
    if detected is not None:
        found = present & detection_mask(detected, feature_matrix["consensus_id"].cast(pl.Utf8).to_list(), ids)
        by_detection = detected_enough(found, min_detected_fraction, groups)
        summary["n_testable_only_with_filled"] = int((keep & ~by_detection).sum())
        keep = by_detection
    n_features = feature_matrix.height
    nan = np.full(n_features, np.nan)
    result: dict[str, np.ndarray] = {"statistic": nan, "p_value": nan}
    tests = np.full(n_features, test_name, dtype=object)
    reason = _too_small(kind, y, len(ids), 0 if C is None else C.shape[1])
    if reason:
        summary["notes"].append(f"not tested: {reason}")
        log.warning("outcome %s not tested: %s", spec["column"], reason)
    elif keep.any():
        rows = np.flatnonzero(keep)
        imputed = (~present[rows]).sum(axis=1)  # a gap-filled value is measured, not imputed
        complete = (imputed == 0) if moderated else np.zeros(rows.size, dtype=bool)
        try:
            part = _tests(kind, values[rows], y, C, complete, n_permutations, seed, imputed)
        except InputError as err:
            part = {}
            summary["notes"].append(f"not tested: {err.message}")
        prior_df = float(part.pop("prior_df", 0.0))
        if moderated and part:
            n_moderated = int(complete.sum()) if prior_df > 0 else 0
            summary.update(prior_df=round(prior_df, 3), n_moderated=n_moderated,
                           n_permutations=int(n_permutations) if n_moderated else 0)
            if not n_moderated:  # too few features detected everywhere for a prior: the classic test throughout
                summary["test"] = test_name
            tests[rows] = np.where(complete & (prior_df > 0), summary["test"], test_name)
            if n_moderated < rows.size:
                summary["notes"].append(
                    f"{rows.size - n_moderated} feature(s) with an imputed value (or too few features for a prior) "
                    "keep their own variance: "
                    f"{CLASSIC_TEST_NAMES[test_name]}")
        n_imputed_tests = int(part.pop("n_imputed_permuted", 0))
        if n_imputed_tests:
            # the report's test description says how their p-values were found; summary.json keeps the counts
            summary.update(n_imputed_permuted=n_imputed_tests, imputed_permutations=int(n_permutations))
        for key, part_values in part.items():
            full = np.full(n_features, np.nan)
            full[rows] = part_values
            result[key] = full
    p = np.where(keep, result["p_value"], np.nan)
    q = bh_q_values(p)
    tested = np.isfinite(p)
    tests = np.where(tested, tests, None)  # an untested feature names no test
    gap_filled = present & ~found

    def in_class(cells: np.ndarray, label: int) -> np.ndarray:  # share per feature in one class (binary)
        return cells[:, y == label].mean(axis=1) if kind == "binary" and (y == label).any() else nan

    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        rate = present.mean(axis=1) if ids else nan
        filled_rate = gap_filled.mean(axis=1) if ids else nan
        measured_rate = (present & found).mean(axis=1) if ids else nan
        mean_log2 = np.nanmean(values, axis=1) if ids else nan
        rate_pos, rate_ref = in_class(present, 1), in_class(present, 0)
        filled_pos, filled_ref = in_class(gap_filled, 1), in_class(gap_filled, 0)
    keys = feature_matrix.select(pl.col("consensus_id").cast(pl.Utf8),
                                 *[pl.col(c).cast(pl.Float64) if c in feature_matrix.columns
                                   else pl.lit(None, dtype=pl.Float64).alias(c) for c in ("mz", "rt_s")],
                                 *[pl.col(c).cast(pl.Utf8).alias(a) if c in feature_matrix.columns
                                   else pl.lit(None, dtype=pl.Utf8).alias(a)
                                   for c, a in (("compound_group", "compound_group"), ("adduct", "ion"))],
                                 (pl.when(pl.col("adduct").is_null()).then(None)
                                  .otherwise(pl.col("adduct_p_value").is_not_null()).alias("ion_tested")
                                  if {"adduct", "adduct_p_value"} <= set(feature_matrix.columns)
                                  else pl.lit(None, dtype=pl.Boolean).alias("ion_tested")),
                                 pl.col("rt_sd_flag").cast(pl.Boolean) if "rt_sd_flag" in feature_matrix.columns
                                 else pl.lit(None, dtype=pl.Boolean).alias("rt_sd_flag"))

    def series(values: np.ndarray | None) -> pl.Series:
        return pl.Series(values if values is not None else nan, dtype=pl.Float64).fill_nan(None)

    table = keys.with_columns(
        pl.lit(spec["column"], dtype=pl.Utf8).alias("outcome"), pl.Series(tests.tolist(), dtype=pl.Utf8).alias("test"),
        series(result.get("log2_fold_change")).alias("log2_fold_change"),
        series(result.get("log2_effect_per_unit")).alias("log2_effect_per_unit"),
        *[series(result.get(c)).alias(c) for c in ("effect_ci_low", "effect_ci_high")],
        series(result["statistic"]).alias("statistic"), series(p).alias("p_value"), series(q).alias("q_value"),
        pl.Series(tested, dtype=pl.Boolean).alias("tested"),
        pl.lit(len(ids), dtype=pl.Int32).alias("n_samples"),
        series(rate).alias("detection_rate"), series(rate_pos).alias("detection_rate_positive"),
        series(rate_ref).alias("detection_rate_reference"), series(filled_rate).alias("gap_filled_rate"),
        series(filled_pos).alias("gap_filled_rate_positive"), series(filled_ref).alias("gap_filled_rate_reference"),
        series(measured_rate).alias("measured_rate"),
        series(mean_log2).alias("mean_log2_intensity"),
        *class_extremes(values, y, target.get("classes") if kind == "multiclass" else None, C),
    )
    table = table.join(accepted_identifications(identifications), on="consensus_id", how="left",
                       maintain_order="left")
    # permutation p-values tie at their floor 1 / (1 + B m): ties are ordered by |t|, the evidence behind them
    table = table.select([pl.col(c).cast(t) for c, t in DIFFERENTIAL.items()]).sort(
        [pl.col("q_value"), pl.col("p_value"), pl.col("statistic").abs(), pl.col("consensus_id")],
        descending=[False, False, True, False], nulls_last=True)
    summary.update(n_features=n_features, n_tested=int(tested.sum()),
                   n_not_detected_enough=int((~keep).sum()),
                   n_significant=int((np.nan_to_num(q, nan=1.0) < SIGNIFICANCE).sum()),
                   n_significant_compounds=significant_compounds(table),
                   n_identified=int(table["name"].is_not_null().sum()))
    log.info("outcome %s (%s, %s): %d of %d features tested, %d at q < %g", spec["column"], kind, test,
             summary["n_tested"], n_features, summary["n_significant"], SIGNIFICANCE)
    seen = OutcomeValues(feature_matrix["consensus_id"].cast(pl.Utf8).to_list(), list(ids), values, y, kind,
                         C if C is not None and C.size else None)
    return table, summary, seen


def significant_compounds(table: pl.DataFrame) -> int:
    """Compounds among a ``DIFFERENTIAL`` table's features at q < SIGNIFICANCE: distinct compound groups, a feature
    without one counting alone (an isotope or adduct feature of a significant compound is not another compound)."""
    hits = table.filter(pl.col("q_value") < SIGNIFICANCE)
    return int(hits.select(pl.coalesce("compound_group", "consensus_id")).n_unique()) if hits.height else 0


def _tests(kind: str, values: np.ndarray, y: np.ndarray, C: np.ndarray | None, complete: np.ndarray,
           n_permutations: int, seed: int, n_filled: np.ndarray) -> dict[str, np.ndarray]:
    """The per-feature test of one outcome on the tested rows (log2, filled; ``n_filled``: filled values per row):
    the moderated test with its permutation p-values on ``complete`` rows, the classic test (Welch, OLS; a binary
    outcome with covariates ``C``: OLS of the class indicator beside them) on the others, the p-values of rows with
    filled values from ``permutation_welch_test`` / ``permutation_ols_test``; a multiclass outcome's F-tests
    (``univariate.multiclass_tests``). Adds ``prior_df`` (0 when nothing was moderated) and ``n_imputed_permuted`` (rows
    whose p came from those permutations)."""
    with_fill = n_filled > 0
    covariates = C is not None and C.size > 0
    if kind == "multiclass":
        return multiclass_tests(values, y, C, complete, n_permutations, seed, n_filled)
    if kind == "binary" and not covariates:
        part = welch_test(values, y == 1)
        if n_permutations > 0 and with_fill.any():
            permuted = permutation_welch_test(values[with_fill], y == 1, n_filled[with_fill], n_permutations,
                                              seed + 1)
        design = np.column_stack([np.ones(y.size), (y == 1).astype(np.float64)])
        effect = "log2_fold_change"
    else:  # an OLS coefficient: a continuous outcome's slope, or a binary outcome's class beside the covariates
        x = (y == 1).astype(np.float64) if kind == "binary" else y.astype(np.float64)
        part = ols_slope_test(values, x, C)
        effect = "log2_fold_change" if kind == "binary" else "log2_effect_per_unit"
        part[effect] = part.pop("log2_effect_per_unit")
        if n_permutations > 0 and with_fill.any():
            permuted = permutation_ols_test(values[with_fill], x, C, n_filled[with_fill], n_permutations, seed + 1)
        design = np.column_stack([np.ones(y.size), x] + ([C] if covariates else []))
    part["effect_ci_low"], part["effect_ci_high"] = effect_intervals(values, design, n_filled)
    if n_permutations > 0 and with_fill.any():
        part["p_value"] = part["p_value"].copy()
        part["p_value"][with_fill] = permuted["p_value"]
        part["n_imputed_permuted"] = np.array(int(with_fill.sum()))
    part["prior_df"] = np.array(0.0)
    moderated = (permutation_moderated_test(values[complete], design, 1, n_permutations, seed) if complete.any()
                 else None)
    if moderated is not None and moderated["prior_df"][0] > 0:  # else too few features for a prior: classic test
        for key in ("statistic", "p_value"):
            part[key] = part[key].copy()
            part[key][complete] = moderated[key]
        part[effect] = part[effect].copy()
        part[effect][complete] = moderated["estimate"]
        part["prior_df"] = moderated["prior_df"][0]
    return part


def _too_small(kind: str, y: np.ndarray, n: int, n_covariates: int) -> str | None:
    coefficients = 1 + n_covariates + (len(np.unique(y)) - 1 if kind == "multiclass" else 1)
    if kind != "continuous" and n_covariates and n < coefficients + 1:
        return f"{n} samples with a value leave no residual degrees of freedom (at least {coefficients + 1} needed)"
    if kind == "continuous":
        if n < 3 + n_covariates:
            return f"{n} samples with a value leave no residual degrees of freedom (at least {3 + n_covariates} needed)"
        if np.ptp(y) == 0:
            return "the outcome has the same value in every sample"
        return None
    counts = np.bincount(y) if len(y) else np.zeros(0, dtype=int)
    if (counts > 0).sum() < 2:
        return "fewer than two classes among the samples with a value"
    if counts.min() < 2:
        return f"a class has {int(counts.min())} sample(s); at least 2 per class are needed"
    return None


def write_table(table: pl.DataFrame, path: str | Path, summary: dict) -> None:
    """Write ``table`` as Parquet atomically with ``summary`` (JSON) in the file metadata under ``METADATA_KEY``."""
    with atomic_path(path) as tmp:
        table.write_parquet(tmp, compression="zstd", metadata={METADATA_KEY: json.dumps(summary, default=str)})


def read_summary(path: str | Path) -> dict:
    """The summary stored by ``write_table`` in a differential or enrichment file ({} when there is none)."""
    text = pl.read_parquet_metadata(path).get(METADATA_KEY)
    return json.loads(text) if text else {}
