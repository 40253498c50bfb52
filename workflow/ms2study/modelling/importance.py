"""Permutation importance of consensus features in an outcome model on pooled spectrum embeddings, for the models
the linear split of ``modelling.attribution`` cannot explain: non-linear estimators (random forest) and multiclass
outcomes.

Method: model reliance by permutation (Breiman 2001, Machine Learning 45:5; Fisher, Rudin & Dominici 2019, JMLR
20:177), measured on the models stage's own outer folds (``crossval.outer_splitter`` with the same seed and repeats,
each training part fitted as the models stage fits it, ``crossval.fit_nested``), so no sample scores a model it
trained. A sample's pooled embedding is a sum over its consensus features of their terms, x_s = sum_f t_{s,f} with
t_{s,f} = a_{s,f} e_f (``attribution.pooling_terms``). To permute feature f within a test fold, each test sample
swaps its term for that of another test sample of the fold, x'_s = x_s - t_{s,f} + t_{pi(s),f} (a sample without
the feature has a zero term), and the fold's out-of-fold predictions are recomputed. The importance of f is the
increase of the out-of-fold loss from the unpermuted predictions to the permuted ones: the Brier score (mean over
samples of the squared distance between the predicted class probabilities and the true class; Brier 1950) for
classes, 1 - R² of the pooled out-of-fold predictions for a continuous outcome (so the R² drop), averaged over
``n_shuffles`` shuffles and the repeats; its sd is over those. A proper, continuous loss, not the AUC: with test
folds of 2-4 samples a fold's AUC is 1.0 before and after most permutations, and a model whose features carry
redundant signal would show no importance at all. Positive: the model relies on the feature; about 0: it does not.
The swap leaves the other features' terms as they are (with ``pool: normalize`` the vector's norm moves a little),
and with test folds of 2-4 samples a single shuffle is coarse: the average over shuffles and repeats is what to read.

Imports ``modelling.crossval``, ``modelling.estimators`` and ``modelling.metrics``.
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from threadpoolctl import threadpool_limits

from ms2study.modelling.crossval import fit_nested, outer_splitter
from ms2study.modelling.estimators import predict_scores
from ms2study.modelling.metrics import metric_values

CHUNK_VALUES = 4_000_000  # test rows x features x dimensions built at once (float64: 32 MB)
LOSS = {"binary": "brier", "multiclass": "brier", "continuous": "1 - r2"}


def out_of_fold_loss(kind: str, y: np.ndarray, scores: np.ndarray, folds: np.ndarray) -> float:
    """The importance's loss of one repeat's out-of-fold predictions (module docstring): Brier score of the
    positive-class probability (binary, (n,)) or of the class probabilities (multiclass, (n, classes)); 1 - R² of
    the predicted values (continuous, pooled over folds as ``metrics.metric_values`` does)."""
    if kind == "continuous":
        return 1.0 - float(metric_values("r2", y, scores, folds)[0])
    if kind == "binary":
        return float(np.mean((scores - (y == 1)) ** 2))
    truth = np.zeros_like(scores)
    truth[np.arange(len(y)), y] = 1.0
    return float(np.mean(((scores - truth) ** 2).sum(axis=1)))


def _terms(sample_terms: list[dict[str, np.ndarray]], rows: np.ndarray, columns: list[str], dim: int) -> np.ndarray:
    """Dense terms (len(rows), len(columns), dim) of the given samples and consensus features (0 where absent)."""
    out = np.zeros((len(rows), len(columns), dim))
    wanted = {c: j for j, c in enumerate(columns)}
    for i, s in enumerate(rows):
        for consensus, term in sample_terms[s].items():
            j = wanted.get(consensus)
            if j is not None:
                out[i, j] = term
    return out


def permutation_importance(X: np.ndarray, C: np.ndarray, y: np.ndarray, kind: str, params: dict,
                           sample_terms: list[dict[str, np.ndarray]], n_shuffles: int = 5,
                           seed: int = 0) -> dict:
    """Permutation importance of every consensus feature named in ``sample_terms`` (module docstring).

    ``X``: pooled embeddings (n, dim; a row of NaN for a sample without one, imputed as the models stage does);
    ``C``: covariates (n, k); ``y``: encoded outcome (class index, or value for ``kind`` continuous); ``params``:
    the models stage's settings (``outer_splits``, ``outer_repeats``, ``seed``, imputation, estimator...);
    ``sample_terms``: per sample, {consensus_id: its term of the pooled vector (dim,)}. Returns ``consensus_ids``
    (sorted), ``importance`` and ``importance_sd`` (per consensus feature: the loss's increase), ``loss`` (its
    name), ``baseline`` (the loss of the unpermuted out-of-fold predictions, mean over repeats) and
    ``n_evaluations`` (shuffles x repeats). Seeded by ``seed`` (the shuffles) and ``params['seed']`` (folds).
    """
    consensus = sorted({c for terms in sample_terms for c in terms})
    n, dim = X.shape
    XC = np.hstack([X, C])
    n_classes = int(y.max()) + 1 if kind != "continuous" else 0
    splitter, k = outer_splitter(y, kind, params)
    imputation = (params.get("imputation") or {}).get("embedding", "mean")
    rng = np.random.default_rng(seed)
    shape = (n, n_classes) if kind == "multiclass" else (n,)
    drops: list[np.ndarray] = []
    baselines: list[float] = []
    base = np.full(shape, np.nan)
    permuted = np.full((len(consensus), n_shuffles, *shape), np.nan)
    folds = np.full(n, -1, dtype=np.int32)
    with warnings.catch_warnings(), threadpool_limits(limits=1):
        warnings.simplefilter("ignore", ConvergenceWarning)
        for i, (train, test) in enumerate(splitter.split(XC, y)):
            fold = i % k
            pre, model, _ = fit_nested(XC[train], y[train], kind, imputation, params, int(params["seed"]) + i,
                                       C.shape[1])

            def score(rows: np.ndarray) -> np.ndarray:
                predicted = predict_scores(model, pre.transform(rows), kind, n_classes)
                return predicted[:, 1] if kind == "binary" else predicted

            base[test] = score(XC[test])
            folds[test] = fold
            orders = [rng.permutation(len(test)) for _ in range(n_shuffles)]
            step = max(1, CHUNK_VALUES // max(1, len(test) * dim))
            for start in range(0, len(consensus), step):
                columns = consensus[start:start + step]
                T = _terms(sample_terms, test, columns, dim)
                for shuffle, order in enumerate(orders):
                    rows = X[test][:, None, :] - T + T[order]          # (test, features, dim)
                    rows = np.concatenate([rows, np.broadcast_to(C[test][:, None, :], (*rows.shape[:2],
                                                                                        C.shape[1]))], axis=2)
                    predicted = score(rows.reshape(-1, dim + C.shape[1]))
                    predicted = predicted.reshape(len(test), len(columns), *shape[1:])
                    permuted[start:start + len(columns), shuffle][:, test] = np.moveaxis(predicted, 1, 0)
            if fold == k - 1:  # a repeat is complete: its losses
                reference = out_of_fold_loss(kind, y, base, folds)
                baselines.append(reference)
                drop = np.array([[out_of_fold_loss(kind, y, permuted[f, s], folds) - reference
                                  for s in range(n_shuffles)] for f in range(len(consensus))])
                drops.append(drop)
    stacked = np.concatenate(drops, axis=1) if drops else np.zeros((len(consensus), 0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return {"consensus_ids": consensus, "importance": np.nanmean(stacked, axis=1) if stacked.size else
                np.zeros(len(consensus)), "importance_sd": np.nanstd(stacked, axis=1) if stacked.size else
                np.zeros(len(consensus)), "loss": LOSS[kind], "baseline": float(np.mean(baselines)) if baselines
                else float("nan"), "n_evaluations": int(stacked.shape[1])}
