"""Elastic-net estimators for few samples and many features: logistic (glmnet's penalised IRLS with coordinate
descent, in a numba kernel) and linear regression (scikit-learn's coordinate descent), both with the penalty
relative to the training data's lambda_max so one grid fits any scale.

Method: Friedman, Hastie & Tibshirani 2010, "Regularization paths for generalized linear models via coordinate
descent", J Stat Softw 33(1). scikit-learn estimators (``fit``/``predict``/``predict_proba``); imports nothing from
ms2study.
"""

from __future__ import annotations

import numpy as np
from numba import njit
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.linear_model import ElasticNet


@njit(cache=True)
def _logistic_enet_kernel(X: np.ndarray, y: np.ndarray, sw: np.ndarray, lam: float, alpha: float, b0: float,
                          beta: np.ndarray, max_outer: int, max_inner: int, tol: float) -> tuple[float, int]:
    """glmnet's penalised IRLS for one lambda (Friedman, Hastie & Tibshirani 2010, J Stat Softw 33(1), sec. 3).

    Minimises -sum_i sw_i loglik_i + lam * (alpha * |beta|_1 + (1 - alpha) / 2 * |beta|_2^2), intercept free,
    ``sw`` summing to 1. X (n x p, column-major), ``beta`` updated in place (warm start). Returns (intercept,
    outer iterations used)."""
    n, p = X.shape
    eta = np.empty(n)
    w = np.empty(n)
    r = np.empty(n)
    xw2 = np.empty(p)
    beta_old = np.empty(p)
    outer = 0
    for outer in range(max_outer):
        for i in range(n):
            s = b0
            for j in range(p):
                if beta[j] != 0.0:
                    s += X[i, j] * beta[j]
            eta[i] = s
            prob = 1.0 / (1.0 + np.exp(-s))
            prob = min(max(prob, 1e-5), 1.0 - 1e-5)
            w[i] = sw[i] * prob * (1.0 - prob)
            r[i] = sw[i] * (y[i] - prob)  # = w * (working response - eta)
        for j in range(p):
            acc = 0.0
            for i in range(n):
                acc += w[i] * X[i, j] * X[i, j]
            xw2[j] = acc
            beta_old[j] = beta[j]
        b0_old = b0
        w_sum = w.sum()
        for _ in range(max_inner):
            change = 0.0
            d = r.sum() / w_sum
            if d != 0.0:
                b0 += d
                for i in range(n):
                    r[i] -= w[i] * d
                change = max(change, w_sum * d * d)
            for j in range(p):
                denominator = xw2[j] + lam * (1.0 - alpha)
                if denominator <= 0.0:
                    continue  # a constant column (pure L1): its coefficient stays 0
                g = beta[j] * xw2[j]
                for i in range(n):
                    g += X[i, j] * r[i]
                threshold = lam * alpha
                soft = g - threshold if g > threshold else (g + threshold if g < -threshold else 0.0)
                new = soft / denominator
                delta = new - beta[j]
                if delta != 0.0:
                    for i in range(n):
                        r[i] -= w[i] * X[i, j] * delta
                    beta[j] = new
                    change = max(change, xw2[j] * delta * delta)
            if change < tol:
                break
        moved = abs(b0 - b0_old)
        for j in range(p):
            moved = max(moved, abs(beta[j] - beta_old[j]))
        if moved < 1e-6:
            break
    return b0, outer + 1


class ElasticNetLogistic(ClassifierMixin, BaseEstimator):
    """Elastic-net logistic regression for few samples and many features (n << p), glmnet's algorithm.

    Penalty ``lambda_ratio * lambda_max * (l1_ratio * |b|_1 + (1 - l1_ratio) / 2 * |b|^2)`` where ``lambda_max``
    is the smallest penalty that sets every coefficient to 0 on the training data (so the strength is relative,
    scale-free and ``lambda_ratio`` 1.0 is the intercept-only model); sample weights balance the classes (each
    class weighs half), as ``class_weight="balanced"`` does for the L2 model. More than two classes: one model per
    class against the rest, probabilities normalised to sum 1. Solved by penalised IRLS with coordinate descent
    (Friedman, Hastie & Tibshirani 2010, "Regularization paths for generalized linear models via coordinate
    descent", J Stat Softw 33(1)) in a numba kernel: ~0.1-1 ms per fit at 13 samples x 3,000 features, where
    scikit-learn's saga took 50-1,000 ms (tests check both reach the same coefficients). ``fit(X, y)``: X (n, p)
    float, standardised (the pipeline scales it first), y (n,) class labels; raises ValueError for one class.
    ``predict_proba`` returns (n, classes); ``coef_`` is (1 or classes, p).
    """

    def __init__(self, lambda_ratio: float = 0.1, l1_ratio: float = 0.5, max_outer: int = 50, max_inner: int = 1000,
                 tol: float = 1e-7):
        self.lambda_ratio = lambda_ratio
        self.l1_ratio = l1_ratio
        self.max_outer = max_outer
        self.max_inner = max_inner
        self.tol = tol

    def _fit_binary(self, X: np.ndarray, target: np.ndarray) -> tuple[float, np.ndarray]:
        sw = np.where(target == 1, 0.5 / max(target.sum(), 1), 0.5 / max((1 - target).sum(), 1))
        sw = sw / sw.sum()
        p0 = float(np.sum(sw * target))
        alpha = float(self.l1_ratio)
        lam_max = float(np.max(np.abs(X.T @ (sw * (target - p0))))) / max(alpha, 1e-3) if X.shape[1] else 0.0
        b0 = float(np.log(p0 / (1.0 - p0))) if 0 < p0 < 1 else 0.0
        beta = np.zeros(X.shape[1])
        if lam_max <= 0 or self.lambda_ratio >= 1.0:
            return b0, beta
        b0, _ = _logistic_enet_kernel(X, target.astype(np.float64), sw, float(self.lambda_ratio) * lam_max, alpha,
                                      b0, beta, int(self.max_outer), int(self.max_inner), float(self.tol))
        return float(b0), beta

    def fit(self, X: np.ndarray, y: np.ndarray) -> ElasticNetLogistic:
        X = np.asfortranarray(np.asarray(X, dtype=np.float64))
        y = np.asarray(y)
        self.classes_ = np.unique(y)
        if len(self.classes_) < 2:
            raise ValueError("ElasticNetLogistic needs at least two classes")
        targets = [y == self.classes_[1]] if len(self.classes_) == 2 else [y == c for c in self.classes_]
        fits = [self._fit_binary(X, t.astype(np.float64)) for t in targets]
        self.intercept_ = np.array([b for b, _ in fits])
        self.coef_ = np.vstack([beta for _, beta in fits])
        self.n_features_in_ = X.shape[1]
        return self

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        scores = np.asarray(X, dtype=np.float64) @ self.coef_.T + self.intercept_
        return scores[:, 0] if scores.shape[1] == 1 else scores

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        scores = self.decision_function(X)
        if scores.ndim == 1:
            positive = 1.0 / (1.0 + np.exp(-scores))
            return np.column_stack([1.0 - positive, positive])
        ovr = 1.0 / (1.0 + np.exp(-scores))
        return ovr / ovr.sum(axis=1, keepdims=True)

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]


class ElasticNetRelative(RegressorMixin, BaseEstimator):
    """Elastic-net regression with the penalty relative to the training data: ``alpha = lambda_ratio *
    alpha_max`` (``alpha_max``: the smallest alpha that zeroes every coefficient), so one grid fits outcomes of
    any scale. scikit-learn's coordinate descent (``ElasticNet``) does the fitting; ``lambda_ratio`` 1.0 is the
    mean-only model. ``fit(X, y)``: X (n, p) standardised, y (n,) in the outcome's unit; ``predict`` returns (n,)
    in that unit."""

    def __init__(self, lambda_ratio: float = 0.1, l1_ratio: float = 0.5):
        self.lambda_ratio = lambda_ratio
        self.l1_ratio = l1_ratio

    def fit(self, X: np.ndarray, y: np.ndarray) -> ElasticNetRelative:
        X = np.asarray(X, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        centred = y - y.mean()
        alpha_max = float(np.max(np.abs(X.T @ centred))) / (len(y) * max(float(self.l1_ratio), 1e-3)) if (
            X.shape[1]) else 0.0
        self.n_features_in_ = X.shape[1]
        if alpha_max <= 0 or self.lambda_ratio >= 1.0:
            self.coef_, self.intercept_ = np.zeros(X.shape[1]), float(y.mean())
            return self
        model = ElasticNet(alpha=float(self.lambda_ratio) * alpha_max, l1_ratio=float(self.l1_ratio),
                           max_iter=10000).fit(X, y)
        self.coef_, self.intercept_ = model.coef_, float(model.intercept_)
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(X, dtype=np.float64) @ self.coef_ + self.intercept_
