"""Estimator families of the outcome models and their regularisation grids: ``elastic_net`` (default), ``linear``
(L2 logistic / ridge), ``random_forest`` and ``svm_linear``; one configured strength gives one scikit-learn
estimator, ``predict_scores`` turns its predictions into class probabilities or values, and ``inner_loss`` scores
them in the inner cross-validation.

Imports ``modelling.elasticnet`` and scikit-learn; nothing from the stages.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.svm import SVC, SVR

from ms2study.modelling.elasticnet import ElasticNetLogistic, ElasticNetRelative, elastic_net_path

# "linear" is L2 logistic regression for classes and ridge regression for a continuous outcome; "logistic" and
# "ridge" are accepted as names of the same family.
# "elastic_net" is the sparse family for n << p: elastic-net logistic regression (classes) and elastic-net regression
# (continuous), penalties relative to the training data's lambda_max.
ESTIMATORS = ("linear", "logistic", "ridge", "elastic_net", "random_forest", "svm_linear")


def estimator_family(params: dict) -> str:
    """The estimator family of ``params["estimator"]`` (``ESTIMATORS``): "logistic" and "ridge" are "linear"."""
    name = str(params.get("estimator", "linear"))
    return "linear" if name in ("logistic", "ridge") else name


def make_estimator(kind: str, strength: float, params: dict | None = None, seed: int = 0) -> Any:
    """The configured estimator at one regularisation strength (C, alpha, or minimum leaf size)."""
    family = estimator_family(params or {})
    if family == "random_forest":
        common = {"n_estimators": int((params or {}).get("forest_trees", 200)), "min_samples_leaf": int(strength),
                  "max_features": "sqrt", "random_state": seed, "n_jobs": 1}
        if kind == "continuous":
            return RandomForestRegressor(**common)
        return RandomForestClassifier(class_weight="balanced", **common)
    if family == "elastic_net":
        # strength: (lambda_ratio, l1_ratio) from strength_grid
        strength, l1_ratio = strength if isinstance(strength, tuple) else (strength, l1_ratios(params or {})[0])
        if kind == "continuous":
            return ElasticNetRelative(lambda_ratio=strength, l1_ratio=l1_ratio)
        return ElasticNetLogistic(lambda_ratio=strength, l1_ratio=l1_ratio)
    if family == "svm_linear":
        if kind == "continuous":
            return SVR(kernel="linear", C=strength)
        return SVC(kernel="linear", C=strength, class_weight="balanced", decision_function_shape="ovr")
    if kind == "continuous":
        return Ridge(alpha=strength)
    # Balanced class weights: otherwise each fold model's intercept follows its training class mix, which is the
    # opposite of its test fold's mix, and pooling out-of-fold scores across folds biases AUC below 0.5 on noise.
    return LogisticRegression(C=strength, l1_ratio=0.0, class_weight="balanced", max_iter=5000)  # l1_ratio 0: L2


def fit_grid(kind: str, grid: list[Any], params: dict, seed: int, X: np.ndarray, y: np.ndarray) -> list[Any]:
    """The configured estimator fitted on (X (n, p), y (n,)) at every strength of ``grid`` (``strength_grid``), in
    grid order. The elastic net fits each L1 share's penalties as one warm-started path
    (``elasticnet.elastic_net_path``); the other families fit each strength on its own."""
    if estimator_family(params) == "elastic_net":
        pairs = [g if isinstance(g, tuple) else (float(g), l1_ratios(params)[0]) for g in grid]
        return elastic_net_path(kind, X, y, pairs)
    return [make_estimator(kind, strength, params, seed).fit(X, y) for strength in grid]


def strength_grid(kind: str, params: dict) -> list[float]:
    """Regularisation strengths, strongest first, so ties in the inner CV go to the simpler model."""
    family = estimator_family(params)
    if family == "random_forest":
        return sorted((float(v) for v in params["forest_min_samples_leaf"]), reverse=True)
    if family == "svm_linear":
        return sorted(float(c) for c in params["svm_c"])
    if family == "elastic_net":
        # every (penalty, L1 share) pair; strongest penalty first, and the more ridge-like mix first on ties
        return [(r, a) for r in sorted((float(v) for v in params["elastic_net_lambda_ratio"]), reverse=True)
                for a in sorted(l1_ratios(params))]
    if kind == "continuous":
        return sorted((float(a) for a in params["ridge_alpha"]), reverse=True)
    return sorted(float(c) for c in params["logistic_c"])


def l1_ratios(params: dict) -> list[float]:
    """``l1_ratio`` as a list (a single number is a list of one)."""
    value = params.get("l1_ratio", 0.5)
    return [float(v) for v in value] if isinstance(value, (list, tuple)) else [float(value)]


def strength_label(strength: Any) -> str:
    """How a chosen regularisation is reported (``regularisation_chosen`` keys)."""
    if isinstance(strength, tuple):
        return f"lambda_ratio={strength[0]:g}, l1_ratio={strength[1]:g}"
    return f"{strength:g}"


def default_strength(kind: str, params: dict) -> Any:
    """The strength used when the training part is too small for an inner CV."""
    if estimator_family(params) == "linear":
        return 1.0 if kind != "continuous" else 10.0
    grid = strength_grid(kind, params)
    return grid[len(grid) // 2]


def predict_scores(model: Any, X: np.ndarray, kind: str, n_classes: int) -> np.ndarray:
    """A fitted model's predictions of X (n, p): continuous, (n,) values in the outcome's unit; classes, (n,
    n_classes) probabilities in class-index order (a class absent from the model's training part gets 0)."""
    if kind == "continuous":
        return model.predict(X)
    proba = np.zeros((X.shape[0], n_classes))
    if hasattr(model, "predict_proba") and not isinstance(model, SVC):
        proba[:, model.classes_] = model.predict_proba(X)
        return proba
    # A linear SVM has no probabilities (Platt scaling would need yet another CV inside folds of a few samples):
    # its decision values go through a logistic (two classes) or a softmax (one-vs-rest, more classes), which keeps
    # their order (AUC) and puts the 0.5 threshold on the SVM's own boundary (balanced accuracy).
    decision = model.decision_function(X)
    if decision.ndim == 1:
        proba[:, model.classes_[1]] = 1.0 / (1.0 + np.exp(-decision))
        proba[:, model.classes_[0]] = 1.0 - proba[:, model.classes_[1]]
        return proba
    shifted = np.exp(decision - decision.max(axis=1, keepdims=True))
    proba[:, model.classes_] = shifted / shifted.sum(axis=1, keepdims=True)
    return proba


def inner_loss(kind: str, y: np.ndarray, predicted: np.ndarray) -> float:
    """Inner-CV loss: squared error, or log loss (smoother than AUC on inner folds of two or three samples)."""
    if kind == "continuous":
        return float(((y - predicted) ** 2).sum())
    return float(-np.log(np.clip(predicted[np.arange(len(y)), y], 1e-15, 1.0)).sum())
