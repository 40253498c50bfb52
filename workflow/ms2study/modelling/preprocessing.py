"""Preprocessing steps of the outcome models, fitted inside the cross-validation folds only: the half-minimum
imputer with its detection filter, the univariate filter, and ``FoldPreprocessor``, which chains them with the
mean fill, scaling and the covariate weight.

They are scikit-learn transformers (``fit``/``transform``), so a nested cross-validation fits them on training rows
only and no statistic of a test sample reaches its model. Imports only scikit-learn and numpy from outside; nothing
from ms2study.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin


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


class UnivariateFilter(TransformerMixin, BaseEstimator):
    """Keep the ``top_k`` columns most associated with the outcome in the rows it is fitted on (ANOVA F for
    classes, squared correlation for a continuous outcome; scikit-learn's ``f_classif`` / ``r_regression``).

    It is a pipeline step, so inside the nested CV it only ever sees training rows: filtering on all samples first
    would select on the test samples' labels (the classic selection-bias leak, Ambroise & McLachlan 2002, PNAS
    99:6562). Constant columns score 0, a column constant within each class but not between them ranks first; ties
    keep the lower column index. ``top_k`` None or >= the number of
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
        with np.errstate(all="ignore"):
            score = (correlation_squared(X, np.asarray(y, dtype=np.float64)) if self.kind == "continuous"
                     else anova_f(X, np.asarray(y)))
        # a constant column (0/0) scores 0; a column that separates the classes perfectly (F infinite) ranks first
        score = np.nan_to_num(score, nan=0.0, posinf=np.inf)
        self.keep_ = np.sort(np.argsort(-score, kind="stable")[: int(self.top_k)])
        return self

    def transform(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(X, dtype=np.float64)[:, self.keep_]


def anova_f(X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """One-way ANOVA F statistic of each column of X (n, p) between the classes of y (n,): (p,), the statistic of
    scikit-learn's ``f_classif`` (between-class over within-class mean square, k - 1 and n - k degrees of freedom),
    computed in numpy without its per-call input validation, which took most of the nested cross-validation's
    filter time. A constant column gives NaN (0/0), a column constant within each class but not between them +inf.
    """
    classes, index = np.unique(y, return_inverse=True)
    k, n = len(classes), X.shape[0]
    counts = np.bincount(index, minlength=k).astype(np.float64)
    onehot = np.zeros((k, n))
    onehot[index, np.arange(n)] = 1.0
    mean = X.mean(axis=0)
    class_means = (onehot @ X) / counts[:, None]
    between = (counts[:, None] * (class_means - mean) ** 2).sum(axis=0)
    total = ((X - mean) ** 2).sum(axis=0)
    within = np.maximum(total - between, 0.0)
    return (between / (k - 1)) / (within / (n - k))


def correlation_squared(X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Squared Pearson correlation of each column of X (n, p) with y (n,): (p,), as scikit-learn's ``r_regression``
    squared; a constant column gives NaN."""
    centred = X - X.mean(axis=0)
    target = y - y.mean()
    r = (target @ centred) / (np.sqrt((centred ** 2).sum(axis=0)) * np.sqrt(target @ target))
    return r ** 2


def _standardise(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mean, scale) of each column as scikit-learn's StandardScaler computes them: population variance, and a
    scale of 1 where a column is constant (its variance within floating-point error of 0, scikit-learn's
    ``_is_constant_feature`` bound, or its standard deviation below 10 machine epsilons)."""
    n = X.shape[0]
    mean = X.mean(axis=0) if n else np.zeros(X.shape[1])
    var = X.var(axis=0) if n else np.zeros(X.shape[1])
    eps = np.finfo(np.float64).eps
    constant = var <= n * eps * var + (n * mean * eps) ** 2
    scale = np.sqrt(var)
    scale[constant | (scale < 10 * eps)] = 1.0
    return mean, scale


def _mean_fill(X: np.ndarray) -> np.ndarray:
    """Each column's mean over its observed training values; 0 for a column never observed (scikit-learn's
    ``SimpleImputer(strategy="mean", keep_empty_features=True)``)."""
    observed = ~np.isnan(X)
    counts = observed.sum(axis=0)
    sums = np.where(observed, X, 0.0).sum(axis=0)
    return np.where(counts > 0, sums / np.maximum(counts, 1), 0.0)


class FoldPreprocessor(TransformerMixin, BaseEstimator):
    """The preprocessing of one training part, fitted on its rows only: missing values, scaling, the univariate
    filter for the set's own columns; mean fill, scaling and the covariate weight for the covariates.

    The set's columns are the first ``n_columns`` of X, the covariates the last ``n_covariates``. Set columns:
    ``imputation`` "half_minimum" (``HalfMinimumImputer``, with its detection filter) or "mean" (the training mean,
    0 for a column never observed), then standardised (training mean 0, population sd 1; constant columns only
    centred), then, with ``top_k``, the ``UnivariateFilter`` fitted on the standardised training rows. Covariates:
    mean-filled, standardised and multiplied by ``covariate_weight``, never filtered; they come last in the output.

    Numerically the same as scikit-learn's ``ColumnTransformer`` of ``Pipeline(SimpleImputer or
    HalfMinimumImputer, StandardScaler, UnivariateFilter)`` and ``Pipeline(SimpleImputer, StandardScaler,
    _Weight)`` (a test checks it), in plain numpy: the nested cross-validation fits it once per inner and outer
    training part (thousands of times per study), and scikit-learn's per-call input validation took more time there
    than the arithmetic. ``fit(X (n, n_columns + n_covariates), y (n,))``; ``transform`` returns (m, kept columns +
    n_covariates). Raises ValueError when X has the wrong number of columns.
    """

    def __init__(self, imputation: str = "mean", n_columns: int = 0, n_covariates: int = 0,
                 min_detected_fraction: float = 0.0, top_k: int | None = None, kind: str = "binary",
                 covariate_weight: float = 1.0):
        self.imputation = imputation
        self.n_columns = n_columns
        self.n_covariates = n_covariates
        self.min_detected_fraction = min_detected_fraction
        self.top_k = top_k
        self.kind = kind
        self.covariate_weight = covariate_weight

    def _check(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != int(self.n_columns) + int(self.n_covariates):
            raise ValueError(f"expected {int(self.n_columns) + int(self.n_covariates)} columns, got "
                             f"{X.shape[1] if X.ndim == 2 else X.shape}")
        return X

    def _own(self, X: np.ndarray) -> np.ndarray:
        """The set's columns of X imputed and scaled, only those the filter keeps (``columns_``): the same values as
        imputing and scaling every column and filtering after, at a fraction of the cost."""
        if self.columns_ is not None:
            own = X[:, self.columns_]
            return (np.where(np.isnan(own), self.out_fill_, own) - self.out_mean_) / self.out_scale_
        own = X[:, : int(self.n_columns)]
        if self.half_minimum_ is not None:
            own = self.half_minimum_.transform(own)
        else:
            own = np.where(np.isnan(own), self.fill_, own)
        own = (own - self.mean_) / self.scale_
        return self.filter_.transform(own) if self.filter_ is not None else own

    def fit(self, X: np.ndarray, y: np.ndarray | None = None) -> FoldPreprocessor:
        X = self._check(X)
        self.n_features_in_ = X.shape[1]
        self.half_minimum_ = None
        if int(self.n_columns):
            own = X[:, : int(self.n_columns)]
            if self.imputation == "half_minimum":
                self.half_minimum_ = HalfMinimumImputer(float(self.min_detected_fraction)).fit(own)
                filled = self.half_minimum_.transform(own)
            else:
                self.fill_ = _mean_fill(own)
                filled = np.where(np.isnan(own), self.fill_, own)
            self.mean_, self.scale_ = _standardise(filled)
            self.filter_ = (UnivariateFilter(int(self.top_k), self.kind).fit((filled - self.mean_) / self.scale_, y)
                            if self.top_k is not None else None)
            self.columns_ = None
            if self.filter_ is not None:
                kept = self.filter_.keep_
                if self.half_minimum_ is None:
                    self.columns_, self.out_fill_ = kept, self.fill_[kept]
                elif self.half_minimum_.keep_.any():  # else the imputer's one constant column stands in
                    self.columns_ = np.flatnonzero(self.half_minimum_.keep_)[kept]
                    self.out_fill_ = self.half_minimum_.fill_[kept]
                self.out_mean_, self.out_scale_ = self.mean_[kept], self.scale_[kept]
        if int(self.n_covariates):
            covariates = X[:, int(self.n_columns):]
            self.covariate_fill_ = _mean_fill(covariates)
            self.covariate_mean_, self.covariate_scale_ = _standardise(
                np.where(np.isnan(covariates), self.covariate_fill_, covariates))
        return self

    def transform(self, X: np.ndarray) -> np.ndarray:
        X = self._check(X)
        blocks = []
        if int(self.n_columns):
            blocks.append(self._own(X))
        if int(self.n_covariates):
            covariates = X[:, int(self.n_columns):]
            covariates = np.where(np.isnan(covariates), self.covariate_fill_, covariates)
            blocks.append((covariates - self.covariate_mean_) / self.covariate_scale_ * float(self.covariate_weight))
        return np.hstack(blocks) if blocks else np.empty((X.shape[0], 0))


def preprocessor(imputation: str, params: dict, n_columns: int | None = None,
                 n_covariates: int = 0, kind: str = "binary") -> FoldPreprocessor:
    """Missing values, scaling, then (``univariate_top_k``) the univariate filter: fitted on training rows only
    (each inner and outer training part; fit with the outcome). ``FoldPreprocessor`` for the configured ``params``
    (``min_detected_fraction``, ``univariate_top_k``, ``covariate_weight``).

    With covariates (the last ``n_covariates`` of ``n_columns + n_covariates`` columns) the set's columns and the
    covariates are prepared side by side; the covariates are mean-imputed, scaled and weighted, and never
    filtered. Raises ValueError when ``n_columns`` is None (the split between the set and the covariates must be
    given)."""
    if n_columns is None:
        raise ValueError("preprocessor needs n_columns")
    top_k = params.get("univariate_top_k")
    return FoldPreprocessor(imputation=imputation, n_columns=int(n_columns), n_covariates=int(n_covariates),
                            min_detected_fraction=float(params["min_detected_fraction"]),
                            top_k=int(top_k) if top_k is not None else None, kind=kind,
                            covariate_weight=float(params.get("covariate_weight", 1.0)))
