"""Tests per feature: log2 intensities with the missing-value fill of the outcome models, then one test per consensus
feature and Benjamini-Hochberg q-values.

All tests run on log2 intensities (intensities of LC-MS features are roughly log-normal, and a difference of log2
means is a log2 fold change):

- binary outcome: Welch's unequal-variance t-test (Welch 1947, Biometrika 34:28; ``scipy.stats.ttest_ind`` with
  ``equal_var=False``), the usual univariate test in metabolomics (e.g. MetaboAnalyst);
- continuous outcome: ordinary least squares of log2 intensity on the outcome plus covariates, the slope tested
  two-sided with a t distribution on n - p degrees of freedom (``scipy.stats.t``);
- multiclass outcome: one-way ANOVA (``scipy.stats.f_oneway``), without an effect size.

q-values are Benjamini-Hochberg (Benjamini & Hochberg 1995, J R Stat Soc B 57:289;
``scipy.stats.false_discovery_control``). Pure arrays in, arrays out; imports only ``core``.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import polars as pl

from ms2study.core.errors import InputError


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
