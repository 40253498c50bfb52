"""Preprocessing steps of the outcome models, fitted inside the cross-validation folds only: the half-minimum
imputer with its detection filter, the univariate filter, the covariate weight, and the pipeline that chains them
with scaling.

They are scikit-learn transformers (``fit``/``transform``), so a nested cross-validation fits them on training rows
only and no statistic of a test sample reaches its model. Imports only scikit-learn and numpy from outside; nothing
from ms2study.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.compose import ColumnTransformer
from sklearn.feature_selection import f_classif, r_regression
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler


class HalfMinimumImputer(TransformerMixin, BaseEstimator):
    """Fill a feature's missing values with half its smallest observed training value, after a detection filter.

    Input is log1p(intensity) with NaN where not detected; the fill is log1p(min_raw / 2), i.e. half the minimum
    on the raw intensity scale. Columns detected in fewer than ``min_detected_fraction`` of the fitted rows are
    dropped (if that drops everything, every column detected at least once is kept).
    """

    def __init__(self, min_detected_fraction: float = 0.0):
        self.min_detected_fraction = min_detected_fraction

    def fit(self, X: np.ndarray, y: Any = None) -> HalfMinimumImputer:
        X = np.asarray(X, dtype=np.float64)
        detected = ~np.isnan(X)
        fraction = detected.mean(axis=0) if X.shape[0] else np.zeros(X.shape[1])
        keep = (fraction >= self.min_detected_fraction) & (fraction > 0)
        if not keep.any():
            keep = fraction > 0
        self.keep_ = keep
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns are not kept anyway
            minimum = np.nanmin(np.where(detected, X, np.inf), axis=0)
        self.fill_ = np.log1p(np.expm1(np.where(np.isfinite(minimum), minimum, 0.0)) / 2.0)[keep]
        self.n_features_in_ = X.shape[1]
        return self

    def transform(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)[:, self.keep_]
        if X.shape[1] == 0:  # nothing detected in training: one constant column keeps the estimator defined
            return np.zeros((X.shape[0], 1))
        return np.where(np.isnan(X), self.fill_, X)


class _Weight(TransformerMixin, BaseEstimator):
    """Multiply every column by ``weight`` (after scaling: how much less an L2 penalty holds the covariates back)."""

    def __init__(self, weight: float = 1.0):
        self.weight = weight

    def fit(self, X: np.ndarray, y: Any = None) -> _Weight:
        self.n_features_in_ = np.asarray(X).shape[1]
        return self

    def transform(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(X, dtype=np.float64) * float(self.weight)


class UnivariateFilter(TransformerMixin, BaseEstimator):
    """Keep the ``top_k`` columns most associated with the outcome in the rows it is fitted on (ANOVA F for
    classes, squared correlation for a continuous outcome; scikit-learn's ``f_classif`` / ``r_regression``).

    It is a pipeline step, so inside the nested CV it only ever sees training rows: filtering on all samples first
    would select on the test samples' labels (the classic selection-bias leak, Ambroise & McLachlan 2002, PNAS
    99:6562). Constant columns score 0; ties keep the lower column index. ``top_k`` None or >= the number of
    columns keeps everything. ``fit(X (n, p), y (n,))``, ``transform`` returns (n, min(top_k, p)). Raises
    ValueError when fitted without ``y``.
    """

    def __init__(self, top_k: int | None = None, kind: str = "binary"):
        self.top_k = top_k
        self.kind = kind

    def fit(self, X: np.ndarray, y: np.ndarray | None = None) -> UnivariateFilter:
        X = np.asarray(X, dtype=np.float64)
        self.n_features_in_ = X.shape[1]
        if self.top_k is None or int(self.top_k) >= X.shape[1]:
            self.keep_ = np.arange(X.shape[1])
            return self
        if y is None:
            raise ValueError("UnivariateFilter needs the outcome to fit")
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            if self.kind == "continuous":
                score = r_regression(X, np.asarray(y, dtype=np.float64)) ** 2
            else:
                score = f_classif(X, np.asarray(y))[0]
        score = np.nan_to_num(score, nan=0.0, posinf=0.0)
        self.keep_ = np.sort(np.argsort(-score, kind="stable")[: int(self.top_k)])
        return self

    def transform(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(X, dtype=np.float64)[:, self.keep_]


def preprocessor(imputation: str, params: dict, n_columns: int | None = None,
                  n_covariates: int = 0, kind: str = "binary") -> Pipeline | ColumnTransformer:
    """Missing values, scaling, then (``univariate_top_k``) the univariate filter: fitted on training rows only
    (each inner and outer training part; fit with the outcome).

    With covariates (the last ``n_covariates`` of ``n_columns + n_covariates`` columns) the set's columns and the
    covariates are prepared side by side; the covariates are mean-imputed, scaled and weighted (``_Weight``), and
    never filtered."""
    imputer = (HalfMinimumImputer(float(params["min_detected_fraction"])) if imputation == "half_minimum"
               else SimpleImputer(strategy="mean", keep_empty_features=True))
    steps = [("impute", imputer), ("scale", StandardScaler())]
    if params.get("univariate_top_k") is not None:
        steps.append(("filter", UnivariateFilter(int(params["univariate_top_k"]), kind)))
    own = Pipeline(steps)
    if not n_covariates:
        return own
    covariate = Pipeline([("impute", SimpleImputer(strategy="mean", keep_empty_features=True)),
                          ("scale", StandardScaler()), ("weight", _Weight(float(params["covariate_weight"])))])
    blocks = [("covariates", covariate, list(range(n_columns, n_columns + n_covariates)))]
    if n_columns:
        blocks.insert(0, ("set", own, list(range(n_columns))))
    return ColumnTransformer(blocks, sparse_threshold=0.0)
