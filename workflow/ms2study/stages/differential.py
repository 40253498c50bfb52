"""What differs between the groups of an outcome: a test per consensus feature, then per chemical class.

The ``differential`` study stage reads the linked feature matrix (``results/study/feature_matrix.parquet``), the
sample sheet and the identifications (``results/study/identifications.parquet``) and writes, per configured outcome,
``results/study/differential/{outcome}.parquet`` (one row per consensus feature, ``DIFFERENTIAL``) and
``results/study/class_enrichment/{outcome}.parquet`` (one row per chemical class tested, ``ENRICHMENT``).

Missing values are handled as in the outcome models (``ms2study.stages.models``, config ``models:``). A consensus feature
not detected in a sample (null, NaN or an intensity <= 0) is missing. Only features detected in at least
``min_detected_fraction`` of the samples that have a value for the outcome are tested (``models:
min_detected_fraction``); the others keep their row with ``tested`` false and null p- and q-values. In a tested
feature, a missing value is filled with half the feature's smallest detected intensity (``models: imputation:
features: half_minimum``, the usual reading that an undetected compound lies below the detection limit; on the log2
scale that is log2(minimum) - 1), or with the mean of its detected log2 intensities when that setting is ``mean``.
The models fill inside each cross-validation fold to avoid leakage; a test has no folds, so here the fill and the
filter use all samples of the outcome. Detection rates are computed before any fill.

Tests, all on log2 intensities (intensities of LC-MS features are roughly log-normal, and a difference of log2
means is a log2 fold change):

- binary outcome: Welch's unequal-variance t-test (Welch 1947, Biometrika 34:28; ``scipy.stats.ttest_ind`` with
  ``equal_var=False``), the usual univariate test in metabolomics (e.g. MetaboAnalyst); ``log2_fold_change`` is the
  mean log2 intensity of the positive class minus that of the other class (the log2 ratio of geometric means).
  Covariates are not adjusted for in this test (the report says so when they are configured).
- continuous outcome: ordinary least squares of log2 intensity on the outcome plus the configured ``models:
  covariates`` (numbers as they are, text one-hot coded as in the models; samples missing a covariate are left
  out); ``log2_effect_per_unit`` is the slope (log2 change per unit of the outcome), tested two-sided with a t
  distribution on n - p degrees of freedom (``scipy.stats.t``).
- multiclass outcome: one-way ANOVA (``scipy.stats.f_oneway``), without an effect size.

q-values are Benjamini-Hochberg (Benjamini & Hochberg 1995, J R Stat Soc B 57:289;
``scipy.stats.false_discovery_control``) over the tested features of the outcome.

Class enrichment follows ChemRICH (Barupal & Fiehn 2017, Sci Rep 7:14567): see ``class_enrichment``.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from ms2study.core.atomic import atomic_path
from ms2study.core.errors import InputError
from ms2study.core.params import overlay

log = logging.getLogger(__name__)

DEFAULT_PARAMS: dict[str, Any] = {
    "outcome": None,                # one entry of models.outcomes: {column, type, positive_class}
    "covariates": [],               # models.covariates: adjusted for in continuous outcomes
    "imputation": "half_minimum",   # models.imputation.features: half_minimum | mean
    "min_detected_fraction": 0.5,   # models.min_detected_fraction: rarer features are not tested
    "min_class_size": 2,            # ChemRICH tests clusters of at least two compounds
    "alpha": 0.05,                  # p below which a class member counts as altered (ChemRICH's direction counts)
}
# Key under which the summary of a run (outcome, classes, notes) is stored in the Parquet files' metadata.
METADATA_KEY = "ms2study"
SIGNIFICANCE = 0.05  # the q threshold the summary and the report count at

DIFFERENTIAL: dict[str, pl.DataType] = {
    "consensus_id": pl.Utf8,
    "mz": pl.Float64,
    "rt_s": pl.Float64,
    # the accepted identification of the feature (all null when it has none)
    "name": pl.Utf8,
    "inchikey": pl.Utf8,
    "formula": pl.Utf8,
    "compound_class": pl.Utf8,
    "msi_level": pl.Int8,
    "isomer_inchikeys": pl.List(pl.Utf8),
    "identification_q_value": pl.Float64,
    "outcome": pl.Utf8,                   # the sample-sheet column
    "test": pl.Utf8,                      # welch_t | ols | anova
    "log2_fold_change": pl.Float64,       # binary: mean log2 positive class - mean log2 other class
    "log2_effect_per_unit": pl.Float64,   # continuous: log2 intensity change per unit of the outcome
    "statistic": pl.Float64,              # t (welch_t, ols) or F (anova)
    "p_value": pl.Float64,
    "q_value": pl.Float64,                # Benjamini-Hochberg over the tested features
    "tested": pl.Boolean,                 # false: detected in too few samples, or the test was undefined
    "n_samples": pl.Int32,                # samples with a value for the outcome (and every covariate)
    "detection_rate": pl.Float64,         # share of those samples in which the feature was detected
    "detection_rate_positive": pl.Float64,   # binary: in the positive class
    "detection_rate_reference": pl.Float64,  # binary: in the other class
    "mean_log2_intensity": pl.Float64,    # over the samples, after the fill
}

ENRICHMENT: dict[str, pl.DataType] = {
    "class_path": pl.Utf8,        # levels from the top down to this class, joined by "; "
    "class_name": pl.Utf8,        # the class itself (last level of the path)
    "class_level": pl.Int32,      # 1 = top level of the path
    "n_compounds": pl.Int32,      # identified, tested compounds in the class (one feature per compound)
    "n_significant": pl.Int32,    # of them with p < alpha
    "n_up": pl.Int32,             # significant and higher with the outcome (positive class / larger values)
    "n_down": pl.Int32,
    "share_up": pl.Float64,       # n_up / n_significant (null when none is significant)
    "direction": pl.Utf8,         # up | down | mixed | none (none significant) | null (multiclass: no direction)
    "median_effect": pl.Float64,  # median log2 fold change / log2 effect per unit of the class's compounds
    "ks_statistic": pl.Float64,
    "p_value": pl.Float64,        # one-sided Kolmogorov-Smirnov: the class's p-values smaller than uniform
    "q_value": pl.Float64,        # Benjamini-Hochberg over the classes tested
    "compounds": pl.List(pl.Utf8),
    "consensus_ids": pl.List(pl.Utf8),
}
CLASS_SEPARATORS = re.compile(r"\s*[;/]\s*")


def merge_params(params: dict | None) -> dict:
    """DEFAULT_PARAMS with ``params`` over them; raises InputError on an unknown key or a bad value."""
    merged = overlay(params, DEFAULT_PARAMS, "differential")
    if merged["imputation"] not in ("half_minimum", "mean"):
        raise InputError(f"imputation is '{merged['imputation']}'", fix="use 'half_minimum' or 'mean'")
    if not 0 <= float(merged["min_detected_fraction"]) <= 1:
        raise InputError(f"min_detected_fraction must lie between 0 and 1 (got {merged['min_detected_fraction']})")
    covariates = merged["covariates"]
    if not isinstance(covariates, list) or not all(isinstance(c, str) and c for c in covariates):
        raise InputError(f"covariates must be a list of sample-sheet column names (got {covariates!r})")
    return merged


def outcome_filename(column: str) -> str:
    """The file stem of an outcome's tables: the path-safe form of its column (as ``models.outcome_dirname``)."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", column).strip(".") or "outcome"


def configured_outcomes(config: dict) -> dict[str, dict]:
    """The workflow config's ``models: outcomes`` as {file stem: outcome declaration}, in config order."""
    outcomes = (config.get("models") or {}).get("outcomes") or []
    return {outcome_filename(str(o["column"])): o for o in outcomes}


def rule_params(config: dict, stem: str) -> dict:
    """The stage parameters of one outcome (by file stem) from the workflow config: the outcome and the models'
    missing-value and covariate settings, so that only a change to these reruns the stage."""
    models = config.get("models") or {}
    return {"outcome": configured_outcomes(config)[stem], "covariates": models.get("covariates") or [],
            "imputation": (models.get("imputation") or {}).get("features", "half_minimum"),
            "min_detected_fraction": models.get("min_detected_fraction", 0.5)}


# ------------------------------------------------------------------------------------------- intensities


def log2_intensities(feature_matrix: pl.DataFrame, sample_ids: Sequence[str]) -> np.ndarray:
    """The feature matrix's intensities of ``sample_ids`` as log2, features × samples (float64).

    A null, NaN or non-positive intensity (not detected) is NaN. Raises InputError when a sample has no column.
    """
    missing = [s for s in sample_ids if s not in feature_matrix.columns]
    if missing:
        raise InputError(f"feature matrix has no column for sample(s) {missing[:5]}",
                         fix="rerun 'ms2study link' with every sample of the sheet")
    if not sample_ids:
        return np.empty((feature_matrix.height, 0))
    values = feature_matrix.select([pl.col(s).cast(pl.Float64) for s in sample_ids]).to_numpy()
    values = np.asarray(values, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(values > 0, np.log2(np.where(values > 0, values, 1.0)), np.nan)


def fill_missing(log2_values: np.ndarray, imputation: str = "half_minimum",
                 min_detected_fraction: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Fill missing log2 intensities (features × samples, NaN = not detected) as the outcome models do.

    Returns (filled matrix of the same shape, boolean mask of the features detected in at least
    ``min_detected_fraction`` of the samples and at least once). ``half_minimum`` fills a feature with
    log2(min / 2) = log2(min) - 1 of its detected intensities, ``mean`` with the mean of its detected log2 values.
    Features never detected stay NaN.
    """
    detected = ~np.isnan(log2_values)
    n = log2_values.shape[1]
    fraction = detected.mean(axis=1) if n else np.zeros(log2_values.shape[0])
    keep = (fraction >= float(min_detected_fraction)) & (fraction > 0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # never-detected features: all-NaN rows
        if imputation == "half_minimum":
            fill = np.nanmin(log2_values, axis=1) - 1.0
        elif imputation == "mean":
            fill = np.nanmean(log2_values, axis=1)
        else:
            raise InputError(f"imputation is '{imputation}'", fix="use 'half_minimum' or 'mean'")
    return np.where(detected, log2_values, fill[:, None]), keep


# ------------------------------------------------------------------------------------------- tests


def welch_test(values: np.ndarray, positive: np.ndarray) -> dict[str, np.ndarray]:
    """Welch's t-test per feature: positive class against the rest.

    ``values``: log2 intensities, features × samples, no NaN; ``positive``: boolean per sample (both classes need
    at least two samples). Returns ``log2_fold_change`` (mean positive - mean other), ``statistic`` (t) and
    ``p_value`` (two-sided; NaN where both classes are constant). Method: Welch 1947 via ``scipy.stats.ttest_ind``.
    """
    from scipy import stats

    a, b = values[:, positive], values[:, ~positive]
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)  # zero variance in both classes: NaN, reported untested
        result = stats.ttest_ind(a, b, axis=1, equal_var=False)
    return {"log2_fold_change": a.mean(axis=1) - b.mean(axis=1), "statistic": np.asarray(result.statistic, float),
            "p_value": np.asarray(result.pvalue, float)}


def ols_slope_test(values: np.ndarray, x: np.ndarray, covariates: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Slope of each feature on ``x`` by ordinary least squares, adjusted for ``covariates``.

    ``values``: log2 intensities, features × samples (no NaN); ``x``: the outcome per sample; ``covariates``:
    samples × k numeric columns (no NaN) or None. Model per feature: value = b0 + b1 x + covariates @ c + error.
    Returns ``log2_effect_per_unit`` (b1, log2 units per unit of x), ``statistic`` (t = b1 / se) and ``p_value``
    (two-sided, t distribution with n - 2 - k degrees of freedom via ``scipy.stats.t``; NaN where the residual
    variance is 0). Raises InputError when there are no residual degrees of freedom or the design is singular.
    """
    from scipy import stats

    n = values.shape[1]
    design = np.column_stack([np.ones(n), np.asarray(x, dtype=np.float64)]
                             + ([covariates] if covariates is not None and covariates.size else []))
    dof = n - design.shape[1]
    if dof < 1:
        raise InputError(f"{n} samples leave no residual degrees of freedom for {design.shape[1]} coefficients")
    if np.linalg.matrix_rank(design) < design.shape[1]:
        raise InputError("the outcome and the covariates are collinear (the regression design is singular)")
    beta, *_ = np.linalg.lstsq(design, values.T, rcond=None)
    residuals = values.T - design @ beta
    sigma2 = (residuals**2).sum(axis=0) / dof
    unscaled = np.linalg.inv(design.T @ design)[1, 1]
    with np.errstate(all="ignore"):
        se = np.sqrt(sigma2 * unscaled)
        t = np.where(se > 0, beta[1] / se, np.nan)
    return {"log2_effect_per_unit": beta[1], "statistic": t, "p_value": 2.0 * stats.t.sf(np.abs(t), dof)}


def anova_test(values: np.ndarray, groups: np.ndarray) -> dict[str, np.ndarray]:
    """One-way ANOVA per feature (``scipy.stats.f_oneway``) across the classes in ``groups`` (one label per sample).

    Returns ``statistic`` (F) and ``p_value`` (NaN where every class is constant).
    """
    from scipy import stats

    blocks = [values[:, groups == g] for g in np.unique(groups)]
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")  # constant features: NaN, reported untested
        result = stats.f_oneway(*blocks, axis=1)
    return {"statistic": np.asarray(result.statistic, float), "p_value": np.asarray(result.pvalue, float)}


def bh_q_values(p_values: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg q-values of the finite entries of ``p_values`` (``scipy.stats.false_discovery_control``);
    NaN stays NaN and does not count towards the number of tests."""
    from scipy import stats

    p_values = np.asarray(p_values, dtype=np.float64)
    q = np.full(p_values.shape, np.nan)
    finite = np.isfinite(p_values)
    if finite.any():
        q[finite] = stats.false_discovery_control(np.clip(p_values[finite], 0.0, 1.0), method="bh")
    return q


# ------------------------------------------------------------------------------------------- differential


def accepted_identifications(identifications: pl.DataFrame | None) -> pl.DataFrame:
    """The accepted identifications, one per consensus feature, with the columns joined into ``DIFFERENTIAL``
    (``q_value`` renamed ``identification_q_value``). Columns missing from the table are null."""
    columns = ["name", "inchikey", "formula", "compound_class", "msi_level", "isomer_inchikeys",
               "identification_q_value"]
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


def differential_analysis(feature_matrix: pl.DataFrame, samples: pl.DataFrame, outcome: dict,
                          identifications: pl.DataFrame | None = None, covariates: Sequence[str] = (),
                          imputation: str = "half_minimum",
                          min_detected_fraction: float = 0.5) -> tuple[pl.DataFrame, dict]:
    """Test every consensus feature for a difference with one outcome; returns (table, summary).

    ``feature_matrix``: wide, ``tables.FEATURE_MATRIX_KEYS`` then one intensity column per sample (raw scale,
    null = not detected); ``samples``: the sample sheet (sample_id and the outcome and covariate columns, strings);
    ``outcome``: {column, type: binary | continuous | multiclass, positive_class}; ``identifications``: the
    ``identify`` stage's table (only accepted rows are used). The table has one row per consensus feature, columns
    ``DIFFERENTIAL``, sorted by q-value (untested last). The summary holds the outcome, its type, the test, the
    classes and their sizes, the samples left out, the counts and notes. Missing values: see the module docstring.

    An outcome with too few samples (fewer than two per class, or no residual degrees of freedom) gives every
    feature ``tested`` false and a note, not an error. Raises InputError for a malformed outcome, an outcome or
    covariate column absent from the sheet, a non-numeric continuous value, or a sample without a matrix column.
    Methods: Welch's t-test, OLS t-test of the slope, one-way ANOVA, Benjamini-Hochberg (module docstring).
    """
    from ms2study.stages.models import check_outcome, covariate_matrix, encode_outcome

    spec = check_outcome(outcome)
    kind = spec["type"]
    if "consensus_id" not in feature_matrix.columns:
        raise InputError("feature matrix lacks column 'consensus_id'", fix="produce it with 'ms2study link'")
    target = encode_outcome(samples, spec)
    ids, y = list(target["sample_ids"]), np.asarray(target["y"])
    summary: dict[str, Any] = {"outcome": spec["column"], "type": kind, "excluded_missing_outcome":
                               target["excluded_missing_outcome"], "imputation": imputation,
                               "min_detected_fraction": float(min_detected_fraction), "notes": []}
    covariates = [c for c in covariates if c != spec["column"]]
    C = None
    if kind == "continuous" and covariates:
        C, names = covariate_matrix(samples, ids, covariates)
        complete = ~np.isnan(C).any(axis=1)
        if not complete.all():
            dropped = [s for s, ok in zip(ids, complete) if not ok]
            summary["excluded_missing_covariate"] = dropped
            summary["notes"].append(f"{len(dropped)} sample(s) lack a covariate value and are left out: "
                                    f"{', '.join(dropped[:10])}")
            ids, y, C = [s for s, ok in zip(ids, complete) if ok], y[complete], C[complete]
        varying = C.std(axis=0) > 0 if len(ids) else np.zeros(C.shape[1], dtype=bool)
        C, names = C[:, varying], [n for n, v in zip(names, varying) if v]
        summary["covariates"] = names
    elif covariates:
        summary["notes"].append(f"covariates ({', '.join(covariates)}) are not adjusted for in the "
                                f"{'Welch t-test' if kind == 'binary' else 'ANOVA'}")
    test = {"binary": "welch_t", "continuous": "ols", "multiclass": "anova"}[kind]
    summary["test"] = test
    if kind != "continuous":
        summary["classes"] = target["classes"]
        summary["class_counts"] = {c: int(n) for c, n in zip(target["classes"], np.bincount(
            y, minlength=len(target["classes"])))}
    if kind == "binary":
        summary["positive_class"] = target["positive_class"]
        summary["reference_class"] = next((c for c in target["classes"] if c != target["positive_class"]), None)
    summary["n_samples"] = len(ids)

    raw = log2_intensities(feature_matrix, ids)
    detected = ~np.isnan(raw)
    values, keep = fill_missing(raw, imputation, min_detected_fraction)
    n_features = feature_matrix.height
    nan = np.full(n_features, np.nan)
    result: dict[str, np.ndarray] = {"statistic": nan, "p_value": nan}
    reason = _too_small(kind, y, len(ids), 0 if C is None else C.shape[1])
    if reason:
        summary["notes"].append(f"not tested: {reason}")
        log.warning("outcome %s not tested: %s", spec["column"], reason)
    elif keep.any():
        rows = np.flatnonzero(keep)
        if kind == "binary":
            part = welch_test(values[rows], y == 1)
        elif kind == "continuous":
            try:
                part = ols_slope_test(values[rows], y.astype(np.float64), C)
            except InputError as err:
                part = {}
                summary["notes"].append(f"not tested: {err.message}")
        else:
            part = anova_test(values[rows], y)
        for key, part_values in part.items():
            full = np.full(n_features, np.nan)
            full[rows] = part_values
            result[key] = full
    p = np.where(keep, result["p_value"], np.nan)
    q = bh_q_values(p)
    tested = np.isfinite(p)

    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        rate = detected.mean(axis=1) if ids else nan
        mean_log2 = np.nanmean(values, axis=1) if ids else nan
        rate_pos = detected[:, y == 1].mean(axis=1) if kind == "binary" and (y == 1).any() else nan
        rate_ref = detected[:, y == 0].mean(axis=1) if kind == "binary" and (y == 0).any() else nan
    keys = feature_matrix.select(pl.col("consensus_id").cast(pl.Utf8),
                                 *[pl.col(c).cast(pl.Float64) if c in feature_matrix.columns
                                   else pl.lit(None, dtype=pl.Float64).alias(c) for c in ("mz", "rt_s")])

    def series(values: np.ndarray | None) -> pl.Series:
        return pl.Series(values if values is not None else nan, dtype=pl.Float64).fill_nan(None)

    table = keys.with_columns(
        pl.lit(spec["column"], dtype=pl.Utf8).alias("outcome"), pl.lit(test, dtype=pl.Utf8).alias("test"),
        series(result.get("log2_fold_change")).alias("log2_fold_change"),
        series(result.get("log2_effect_per_unit")).alias("log2_effect_per_unit"),
        series(result["statistic"]).alias("statistic"), series(p).alias("p_value"), series(q).alias("q_value"),
        pl.Series(tested, dtype=pl.Boolean).alias("tested"),
        pl.lit(len(ids), dtype=pl.Int32).alias("n_samples"),
        series(rate).alias("detection_rate"), series(rate_pos).alias("detection_rate_positive"),
        series(rate_ref).alias("detection_rate_reference"), series(mean_log2).alias("mean_log2_intensity"),
    )
    table = table.join(accepted_identifications(identifications), on="consensus_id", how="left",
                       maintain_order="left")
    table = table.select([pl.col(c).cast(t) for c, t in DIFFERENTIAL.items()]).sort(
        ["q_value", "p_value", "consensus_id"], nulls_last=True)
    summary.update(n_features=n_features, n_tested=int(tested.sum()),
                   n_not_detected_enough=int((~keep).sum()),
                   n_significant=int((np.nan_to_num(q, nan=1.0) < SIGNIFICANCE).sum()),
                   n_identified=int(table["name"].is_not_null().sum()))
    log.info("outcome %s (%s, %s): %d of %d features tested, %d at q < %g", spec["column"], kind, test,
             summary["n_tested"], n_features, summary["n_significant"], SIGNIFICANCE)
    return table, summary


def _too_small(kind: str, y: np.ndarray, n: int, n_covariates: int) -> str | None:
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


# ------------------------------------------------------------------------------------------- class enrichment


def class_paths(compound_class: str | None) -> list[tuple[str, ...]]:
    """Every level of a class annotation, top down: "Lipids; Fatty Acyls" -> [("Lipids",), ("Lipids",
    "Fatty Acyls")]. Levels are separated by ';' or '/' (ChemOnt/ClassyFire paths); a plain name is one level;
    empty or missing gives []."""
    if compound_class is None:
        return []
    parts = [p for p in CLASS_SEPARATORS.split(str(compound_class).strip()) if p]
    return [tuple(parts[:k]) for k in range(1, len(parts) + 1)]


def class_enrichment(differential: pl.DataFrame, min_class_size: int = 2,
                     alpha: float = 0.05) -> tuple[pl.DataFrame, list[str]]:
    """ChemRICH-style chemical class enrichment of one outcome's differential table; returns (table, notes).

    Method: ChemRICH (Barupal & Fiehn 2017, "Chemical Similarity Enrichment Analysis (ChemRICH) as alternative to
    biochemical pathway mapping for metabolomic datasets", Sci Rep 7:14567). The identified compounds of a class
    are a set; if the class is unaffected, their p-values are uniform on [0, 1]. The one-sided Kolmogorov-Smirnov
    test (``scipy.stats.kstest(p, "uniform", alternative="greater")``: the empirical distribution of the p-values
    lies above the uniform one, i.e. they are smaller) gives the class's p-value; Benjamini-Hochberg over the
    classes tested gives its q-value. Like ChemRICH this is a self-contained test: it asks whether the class
    changes, not whether it changes more than the other classes. ChemRICH's classes come from MeSH and Tanimoto
    clustering; here they are the identifications' ``compound_class``, at every level of its path (see
    ``class_paths``), each level tested as its own set. Direction as in ChemRICH: among the class's compounds with
    p < ``alpha``, how many go up and down with the outcome (sign of ``log2_fold_change`` or
    ``log2_effect_per_unit``).

    ``differential``: a ``DIFFERENTIAL`` table. Only tested features with an accepted identification and a class
    count; when several features carry the same compound (same first InChIKey block, else name), the one detected
    most often (then the most intense) stands for it, a choice blind to the outcome. Classes with fewer than
    ``min_class_size`` compounds are not tested. The table has columns ``ENRICHMENT``, sorted by q-value; it has
    zero rows, with a note saying why, when no class can be tested (e.g. a library without classes). Raises
    InputError when ``differential`` lacks a ``DIFFERENTIAL`` column.
    """
    from scipy import stats

    missing = [c for c in ("consensus_id", "name", "inchikey", "compound_class", "p_value", "tested",
                           "log2_fold_change", "log2_effect_per_unit", "detection_rate", "mean_log2_intensity")
               if c not in differential.columns]
    if missing:
        raise InputError(f"differential table lacks column(s) {missing}", fix="produce it with 'ms2study differential'")
    notes: list[str] = []
    empty = pl.DataFrame(schema=ENRICHMENT)
    identified = differential.filter(pl.col("name").is_not_null() | pl.col("inchikey").is_not_null())
    if identified.height == 0:
        notes.append("no consensus feature has an accepted identification: no class enrichment")
        return empty, notes
    with_class = identified.filter(pl.col("compound_class").fill_null("").str.strip_chars() != "")
    if with_class.height == 0:
        notes.append(f"the library gives no compound classes for the {identified.height} identified features "
                     "(no COMPOUND_CLASS / ChemOnt metadata): no class enrichment")
        return empty, notes
    candidates = (
        with_class.filter(pl.col("tested") & pl.col("p_value").is_not_null())
        .with_columns(
            pl.when(pl.col("inchikey").fill_null("").str.len_chars() >= 14)
            .then(pl.col("inchikey").str.slice(0, 14))
            .otherwise(pl.lit("name:") + pl.col("name").fill_null("").str.to_lowercase()).alias("_compound"),
            pl.coalesce("log2_fold_change", "log2_effect_per_unit").alias("_effect"))
        .sort(["detection_rate", "mean_log2_intensity", "consensus_id"], descending=[True, True, False],
              nulls_last=True)
        .unique("_compound", keep="first", maintain_order=True)
    )
    members: dict[tuple[str, ...], list[int]] = {}
    for i, value in enumerate(candidates["compound_class"].to_list()):
        for path in class_paths(value):
            members.setdefault(path, []).append(i)
    p_all = candidates["p_value"].to_numpy()
    effect = candidates["_effect"].to_numpy().astype(np.float64)
    names = candidates["name"].fill_null(candidates["inchikey"]).to_list()
    cids = candidates["consensus_id"].to_list()
    has_direction = bool(np.isfinite(effect).any())
    rows = []
    for path, index in members.items():
        if len(index) < int(min_class_size):
            continue
        p = p_all[index]
        ks = stats.kstest(p, "uniform", alternative="greater")
        significant = p < float(alpha)
        up = int((significant & (effect[index] > 0)).sum())
        down = int((significant & (effect[index] < 0)).sum())
        n_sig = int(significant.sum())
        if not has_direction:
            direction = None
        elif n_sig == 0:
            direction = "none"
        else:
            direction = "up" if up > down else "down" if down > up else "mixed"
        finite = effect[index][np.isfinite(effect[index])]
        rows.append({"class_path": "; ".join(path), "class_name": path[-1], "class_level": len(path),
                     "n_compounds": len(index), "n_significant": n_sig, "n_up": up, "n_down": down,
                     "share_up": up / n_sig if n_sig and has_direction else None, "direction": direction,
                     "median_effect": float(np.median(finite)) if finite.size else None,
                     "ks_statistic": float(ks.statistic), "p_value": float(ks.pvalue), "q_value": None,
                     "compounds": [names[i] for i in index], "consensus_ids": [cids[i] for i in index]})
    if not rows:
        notes.append(f"no class has {int(min_class_size)} or more identified, tested compounds "
                     f"({candidates.height} compounds with a class): no class enrichment")
        return empty, notes
    table = pl.DataFrame(rows, schema=ENRICHMENT)
    table = table.with_columns(pl.Series("q_value", bh_q_values(table["p_value"].to_numpy()), dtype=pl.Float64))
    return table.sort(["q_value", "p_value", "n_compounds", "class_path"], descending=[False, False, True, False]), notes


# ------------------------------------------------------------------------------------------- files


def write_table(table: pl.DataFrame, path: str | Path, summary: dict) -> None:
    """Write ``table`` as Parquet atomically with ``summary`` (JSON) in the file metadata under ``METADATA_KEY``."""
    with atomic_path(path) as tmp:
        table.write_parquet(tmp, compression="zstd", metadata={METADATA_KEY: json.dumps(summary, default=str)})


def read_summary(path: str | Path) -> dict:
    """The summary stored by ``write_table`` in a differential or enrichment file ({} when there is none)."""
    text = pl.read_parquet_metadata(path).get(METADATA_KEY)
    return json.loads(text) if text else {}


def run_differential(samples_path: str | Path, matrix_path: str | Path, identifications_path: str | Path | None,
                     differential_out: str | Path, enrichment_out: str | Path, params: dict | None = None) -> dict:
    """The stage: read the sheet, the matrix and the identifications, write both tables of one outcome.

    ``params``: ``DEFAULT_PARAMS`` keys; ``outcome`` is required. Returns the summary (also stored in both files'
    metadata, with the enrichment's notes). Raises InputError for missing inputs or a bad outcome (see
    ``differential_analysis``).
    """
    from ms2study.stages.models import read_samples

    params = merge_params(params)
    if not params["outcome"]:
        raise InputError("no outcome given", fix="pass --params '{\"outcome\": {\"column\": ..., \"type\": ...}}'")
    samples = read_samples(samples_path)
    if not Path(matrix_path).exists():
        raise InputError("feature matrix does not exist", file=str(matrix_path), fix="run the link stage")
    matrix = pl.read_parquet(matrix_path)
    identifications = None
    if identifications_path:
        if not Path(identifications_path).exists():
            raise InputError("identifications table does not exist", file=str(identifications_path),
                             fix="run the identify stage, or leave --identifications out")
        identifications = pl.read_parquet(identifications_path)
    table, summary = differential_analysis(
        matrix, samples, params["outcome"], identifications, params["covariates"], params["imputation"],
        float(params["min_detected_fraction"]))
    enrichment, notes = class_enrichment(table, int(params["min_class_size"]), float(params["alpha"]))
    for note in notes:
        log.warning("outcome %s: %s", summary["outcome"], note)
    summary["enrichment_notes"] = notes
    summary["n_classes_tested"] = enrichment.height
    summary["n_classes_significant"] = int((enrichment["q_value"] < SIGNIFICANCE).sum())
    summary["min_class_size"] = int(params["min_class_size"])
    summary["alpha"] = float(params["alpha"])
    write_table(table, differential_out, summary)
    write_table(enrichment, enrichment_out, summary)
    if enrichment.height:
        top = enrichment.row(0, named=True)
        log.info("outcome %s: %d classes tested, %d at q < %g; top: %s (n = %d, q = %.3g, %s)", summary["outcome"],
                 enrichment.height, summary["n_classes_significant"], SIGNIFICANCE, top["class_path"],
                 top["n_compounds"], top["q_value"], top["direction"])
    return summary


# ------------------------------------------------------------------------------------------- CLI


def _cli(args: argparse.Namespace) -> int:
    from ms2study.core.params import load_params

    run_differential(args.samples, args.feature_matrix, args.identifications, args.out, args.enrichment_out,
                     load_params(args))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    from ms2study.core.params import add_params_argument

    p = subparsers.add_parser("differential", help="per-feature tests and chemical class enrichment for one outcome")
    p.add_argument("--samples", required=True, help="sample sheet (results/study/samples.tsv)")
    p.add_argument("--feature-matrix", required=True, help="results/study/feature_matrix.parquet")
    p.add_argument("--identifications", default=None, help="results/study/identifications.parquet (optional)")
    p.add_argument("--out", required=True, help="differential table to write (results/study/differential/X.parquet)")
    p.add_argument("--enrichment-out", required=True,
                   help="class enrichment table to write (results/study/class_enrichment/X.parquet)")
    add_params_argument(p)
    p.set_defaults(func=_cli)
