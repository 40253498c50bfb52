"""Nested cross-validation of the outcome models: the outer repeated (stratified) k-fold whose k never exceeds the
smallest class, the inner k-fold that picks the regularisation on the training part only, and the out-of-fold
predictions they produce.

Preprocessing (``modelling.preprocessing``) is fitted inside every training part, so nothing of a test sample leaks
into its model. All splits are seeded. Imports ``modelling.preprocessing`` and ``modelling.estimators``.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import KFold, RepeatedKFold, RepeatedStratifiedKFold, StratifiedKFold
from threadpoolctl import threadpool_limits

from ms2study.modelling.estimators import (
    default_strength,
    fit_grid,
    inner_loss,
    make_estimator,
    predict_scores,
    strength_grid,
)
from ms2study.modelling.preprocessing import preprocessor


class RepeatedGroupKFold:
    """Repeated k-fold over groups (the subjects of a paired design, ``modelling.multilevel``): each repeat shuffles
    the groups (seeded) and deals them into ``n_splits`` folds of near-equal size, so all rows of a group are in one
    fold. ``split(X, y)`` yields (train, test) row indices, ``n_splits`` per repeat, repeat by repeat, as
    scikit-learn's repeated splitters do. With every group holding each class (complete pairs) every test fold
    holds every class. Raises ValueError when there are fewer groups than folds."""

    def __init__(self, groups: np.ndarray, n_splits: int, n_repeats: int, random_state: int):
        self.groups = np.asarray(groups)
        self.names, self.index = np.unique(self.groups, return_inverse=True)
        if n_splits < 2 or self.names.size < n_splits:
            raise ValueError(f"{self.names.size} groups cannot fill {n_splits} folds")
        self.n_splits, self.n_repeats, self.random_state = int(n_splits), int(n_repeats), int(random_state)

    def split(self, X=None, y=None):
        rng = np.random.default_rng(self.random_state)
        for _ in range(self.n_repeats):
            fold_of = np.empty(self.names.size, dtype=np.int64)
            fold_of[rng.permutation(self.names.size)] = np.arange(self.names.size) % self.n_splits
            per_row = fold_of[self.index]
            for fold in range(self.n_splits):
                yield np.flatnonzero(per_row != fold), np.flatnonzero(per_row == fold)


def outer_splitter(y: np.ndarray, kind: str, params: dict, n_repeats: int | None = None,
                   groups: np.ndarray | None = None):
    """The outer repeated k-fold. Classes: stratified, k = min(outer_splits, smallest class), so no test fold lacks
    a class. Continuous: k = min(outer_splits, n // 2), so each test fold has at least two samples. With ``groups``
    (a paired design): ``RepeatedGroupKFold`` over them, k = min(outer_splits, number of groups)."""
    repeats = int(n_repeats or params["outer_repeats"])
    if groups is not None:
        k = min(int(params["outer_splits"]), int(np.unique(groups).size))
        return RepeatedGroupKFold(groups, k, repeats, int(params["seed"])), k
    if kind == "continuous":
        k = min(int(params["outer_splits"]), len(y) // 2)
        return RepeatedKFold(n_splits=k, n_repeats=repeats, random_state=int(params["seed"])), k
    k = min(int(params["outer_splits"]), int(np.bincount(y).min()))
    return RepeatedStratifiedKFold(n_splits=k, n_repeats=repeats, random_state=int(params["seed"])), k


def inner_splitter(kind: str, y_train: np.ndarray, params: dict, seed: int, groups: np.ndarray | None = None
                   ) -> KFold | StratifiedKFold | RepeatedGroupKFold | None:
    """Inner CV on the training part; None where it is too small to split (a class with < 2 training samples; with
    ``groups``, fewer than 2 groups)."""
    if groups is not None:
        k = min(int(params["inner_splits"]), int(np.unique(groups).size))
        return RepeatedGroupKFold(groups, k, 1, seed) if k >= 2 else None
    if kind == "continuous":
        k = min(int(params["inner_splits"]), len(y_train) // 2)
        return KFold(n_splits=k, shuffle=True, random_state=seed) if k >= 2 else None
    k = min(int(params["inner_splits"]), int(np.bincount(y_train).min()))
    return StratifiedKFold(n_splits=k, shuffle=True, random_state=seed) if k >= 2 else None


def fit_nested(X: np.ndarray, y: np.ndarray, kind: str, imputation: str, params: dict, seed: int,
               n_covariates: int = 0, groups: np.ndarray | None = None) -> tuple:
    """Choose the regularisation by inner CV on (X, y), then refit on all of it.

    Equivalent to GridSearchCV over a Pipeline(impute, scale, model) with the strength as the only searched
    parameter, but the preprocessing is fitted once per inner split instead of once per grid value, the elastic
    net fits its grid as warm-started paths (``estimators.fit_grid``), and the joblib machinery is skipped: on
    cohorts of ten samples that overhead dominated the run time (about 50x).
    The last ``n_covariates`` columns of X are covariates (see ``preprocessor``); ``groups``: each row's subject (a
    paired design), kept together by the inner splits.
    Returns (preprocessor, model, chosen strength or None when no inner split was possible).
    """
    n_classes = int(y.max()) + 1 if kind != "continuous" else 0
    grid = strength_grid(kind, params)
    inner = inner_splitter(kind, y, params, seed, groups)
    chosen = None
    if inner is not None and len(grid) > 1:
        losses = np.zeros(len(grid))
        for train, valid in inner.split(X, y):
            pre = preprocessor(imputation, params, X.shape[1] - n_covariates, n_covariates, kind).fit(
                X[train], y[train])
            A, B = pre.transform(X[train]), pre.transform(X[valid])
            for g, model in enumerate(fit_grid(kind, grid, params, seed, A, y[train])):
                losses[g] += inner_loss(kind, y[valid], predict_scores(model, B, kind, n_classes))
        chosen = grid[int(np.argmin(losses))]  # argmin takes the first of ties: the strongest regularisation
    strength = chosen if chosen is not None else default_strength(kind, params)
    pre = preprocessor(imputation, params, X.shape[1] - n_covariates, n_covariates, kind).fit(X, y)
    model = make_estimator(kind, strength, params, seed).fit(pre.transform(X), y)
    return pre, model, chosen


def cross_validate(X: np.ndarray, y: np.ndarray, kind: str, imputation: str, params: dict,
                    n_repeats: int | None = None, n_covariates: int = 0, groups: np.ndarray | None = None) -> dict:
    """Out-of-fold predictions of the nested CV: ``scores`` (repeats × n [× classes]), ``fold`` (repeats × n),
    and the regularisation chosen per outer fold. ``groups``: each row's subject (a paired design): outer and
    inner splits keep a subject's rows together."""
    splitter, k = outer_splitter(y, kind, params, n_repeats, groups)
    repeats = int(n_repeats or params["outer_repeats"])
    n_classes = int(y.max()) + 1 if kind != "continuous" else 0
    shape = (repeats, len(y), n_classes) if kind == "multiclass" else (repeats, len(y))
    scores = np.full(shape, np.nan)
    folds = np.full((repeats, len(y)), -1, dtype=np.int32)
    chosen: list[Any] = []
    # Single-threaded BLAS: on matrices this small, BLAS threads only wait on each other; on a shared 2-core
    # machine that made each fit 50x slower.
    with warnings.catch_warnings(), threadpool_limits(limits=1):
        warnings.simplefilter("ignore", ConvergenceWarning)
        for i, (train, test) in enumerate(splitter.split(X, y)):
            repeat, fold = divmod(i, k)
            pre, model, strength = fit_nested(X[train], y[train], kind, imputation, params, int(params["seed"]) + i,
                                              n_covariates, None if groups is None else groups[train])
            if strength is not None:
                chosen.append(strength)
            predicted = predict_scores(model, pre.transform(X[test]), kind, n_classes)
            scores[repeat, test] = predicted[:, 1] if kind == "binary" else predicted
            folds[repeat, test] = fold
    return {"scores": scores, "fold": folds, "k": k, "chosen": chosen}
