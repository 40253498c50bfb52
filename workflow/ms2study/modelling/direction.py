"""Which classes of a multiclass outcome a feature differs between, and which way: the F-test of
``modelling.differential`` says only that the class means differ."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import polars as pl

__all__ = ["class_extremes", "class_means"]


def class_means(values: np.ndarray, y: np.ndarray, present: Sequence[int],
                covariates: np.ndarray | None = None) -> np.ndarray:
    """Per feature (rows of ``values``, features x samples, log2) the mean of each class in ``present`` (class
    indices into ``y``): shape (features, len(present)), NaN where a class has no value. With ``covariates``
    (samples x covariates, the tests' own; NaN rows are left out) the means are adjusted for them: the class
    coefficients of the least-squares fit ``value ~ class + covariates`` with the covariates centred on the
    samples fitted, i.e. each class's mean at the covariates' mean (LS-means, Searle et al. 1980, Am. Stat.
    34:216-221), as the ANCOVA F-test beside them compares. Why: raw class means can reverse what the adjusted test
    found (a trial: age confounded with the arms, disease_A the lowest arm at equal age and the highest but one by
    raw means). A feature with a missing value is fitted on its own samples; a class without a sample there, or
    covariates collinear with the classes, give NaN."""
    values = np.asarray(values, dtype=np.float64)
    if covariates is None or covariates.size == 0 or covariates.shape[1] == 0:
        with np.errstate(invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return np.column_stack([np.nanmean(values[:, y == k], axis=1) for k in present])
    rows = np.isfinite(covariates).all(axis=1)
    out = np.full((values.shape[0], len(present)), np.nan)
    complete = np.isfinite(values[:, rows]).all(axis=1)
    if complete.any():
        out[complete] = _adjusted(values[np.ix_(complete, rows)], y[rows], present, covariates[rows])
    for i in np.flatnonzero(~complete):
        have = rows & np.isfinite(values[i])
        out[i] = _adjusted(values[i, have][None, :], y[have], present, covariates[have])[0]
    return out


def _adjusted(values: np.ndarray, y: np.ndarray, present: Sequence[int], covariates: np.ndarray) -> np.ndarray:
    """Class coefficients of ``values`` (features x samples, no NaN) on class indicators and centred covariates."""
    indicators = np.column_stack([(y == k).astype(float) for k in present])
    if not values.shape[1]:  # a feature measured in no sample (a trial saw numpy's "Mean of empty slice")
        return np.full((values.shape[0], len(present)), np.nan)
    centred = covariates - covariates.mean(axis=0)
    design = np.hstack([indicators, centred])
    # a class without a sample, or a covariate the classes explain (collinear): no adjusted mean
    if (indicators.sum(axis=0) == 0).any() or np.linalg.matrix_rank(design) < design.shape[1]:
        return np.full((values.shape[0], len(present)), np.nan)
    coefficients, *_ = np.linalg.lstsq(design, values.T, rcond=None)
    return coefficients[: len(present)].T


def class_extremes(values: np.ndarray, y: np.ndarray, classes: Sequence[str] | None,
                   covariates: np.ndarray | None = None) -> list[pl.Series]:
    """Per feature (rows of ``values``, features x samples, log2 after the fill) of a multiclass outcome (``y``:
    class index per sample into ``classes``): the class with the highest mean, the one with the lowest, and the
    difference of those means (``class_means``: adjusted for ``covariates``, samples x covariates, when given);
    null series of ``values``' length without ``classes``."""
    n = values.shape[0]
    if not classes or values.shape[1] == 0:
        return [pl.Series("highest_class", [None] * n, dtype=pl.Utf8), pl.Series("lowest_class", [None] * n,
                dtype=pl.Utf8), pl.Series("log2_class_range", [None] * n, dtype=pl.Float64)]
    present = [k for k in range(len(classes)) if (y == k).any()]
    means = class_means(values, y, present, covariates)
    ok = np.isfinite(means).all(axis=1)
    filled = np.where(np.isfinite(means), means, 0.0)
    high, low = np.argmax(filled, axis=1), np.argmin(filled, axis=1)
    names = np.array([classes[k] for k in present], dtype=object)
    spread = filled[np.arange(n), high] - filled[np.arange(n), low]
    return [pl.Series("highest_class", np.where(ok, names[high], None).tolist(), dtype=pl.Utf8),
            pl.Series("lowest_class", np.where(ok, names[low], None).tolist(), dtype=pl.Utf8),
            pl.Series("log2_class_range", np.where(ok, spread, np.nan), dtype=pl.Float64).fill_nan(None)]
