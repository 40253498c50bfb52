"""Outcome models: how well each feature set predicts each study outcome, estimated with nested cross-validation.

Every feature set (pooled spectrum embeddings, the linked feature matrix, or a table from elsewhere) is modelled on
the same outer folds, so the sets can be compared side by side. The outer loop is a repeated (stratified) k-fold whose
k never exceeds the smallest class, so every test fold holds every class; the inner loop picks the regularisation
strength on the training part only. Missing-value handling, scaling and detection filtering are fitted inside the
folds (they are pipeline steps), so no statistic of a test sample ever reaches its model. Classification metrics
are computed within each test fold and averaged; results carry a 95% interval from a stratified bootstrap of the
out-of-fold predictions and a label-permutation p-value computed with the identical procedure, so a small cohort
cannot look better than it is. All seeds are fixed. The default estimator is the elastic net (logistic for classes,
linear regression for a continuous outcome; glmnet's coordinate descent, penalties relative to each training part's
lambda_max), preceded by a univariate filter fitted inside the training folds: a study's effect is often a few
compounds among thousands of features in a few dozen samples, where L2 on everything fails (``benchmarks/biology.py``).
L2 logistic regression / ridge, a random forest or a linear SVM can be configured, each with its own inner-CV grid.
Feature sets: pooled embeddings, bags of chemistry (``pool.chemistry_sample``), the feature matrix, binned spectra.
Optional covariates (sample-sheet columns such as age or site) are appended to every feature set, prepared inside the
folds and scaled up so the penalty barely holds them back, and are also modelled alone: the row a set has to beat to
show that it adds anything beyond them.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import re
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from numba import njit
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, TransformerMixin, clone
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
from sklearn.exceptions import ConvergenceWarning
from sklearn.feature_selection import f_classif, r_regression
from sklearn.impute import SimpleImputer
from sklearn.linear_model import ElasticNet, LogisticRegression, Ridge
from sklearn.model_selection import KFold, RepeatedKFold, RepeatedStratifiedKFold, StratifiedKFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC, SVR
from threadpoolctl import threadpool_limits

from ms2study.core.atomic import write_parquet, write_text
from ms2study.core.errors import InputError
from ms2study.core.params import overlay

log = logging.getLogger(__name__)

OUTCOME_TYPES = ("binary", "multiclass", "continuous")
# "linear" is L2 logistic regression for classes and ridge regression for a continuous outcome; "logistic" and
# "ridge" are accepted as names of the same family.
# "elastic_net" is the sparse family for n << p: elastic-net logistic regression (classes) and elastic-net regression
# (continuous), penalties relative to the training data's lambda_max.
ESTIMATORS = ("linear", "logistic", "ridge", "elastic_net", "random_forest", "svm_linear")
# Strings a sample sheet uses for "not recorded"; such samples are left out of that outcome's model and listed.
MISSING_TOKENS = {"", "na", "nan", "n/a", "null", "none", "missing", "-", "?"}

DEFAULT_PARAMS: dict[str, Any] = {
    # Outcomes to model: a list of {column, type: binary | multiclass | continuous, positive_class}.
    "outcomes": [],
    # Feature sets to model, in display order; names absent from the data are skipped with a note.
    # embedding: pooled spectrum embeddings; features: linked feature matrix (precursor baseline);
    # binned_spectra: MS/MS peaks binned and averaged per sample (model-free baseline; needs --spectra).
    # chemical_space: log abundance per prototype region of the embedding space (pool.chemistry_sample).
    "feature_sets": ["embedding", "chemical_space", "features", "binned_spectra"],
    "spectra_bin_width": 1.0,  # m/z width of the binned_spectra bins
    # How missing values of each feature set are filled INSIDE the training folds: "half_minimum" (a feature not
    # detected in a sample lies below the detection limit: half its smallest training value, on the raw intensity
    # scale) or "mean" (a sample without MS/MS has no embedding at all: the training mean, a neutral guess).
    # Sets not named here use "mean".
    # chemical_space: a region without features in a sample is "nothing measured there", like an undetected feature.
    "imputation": {"embedding": "mean", "chemical_space": "half_minimum", "features": "half_minimum"},
    # Feature matrix columns detected in fewer than this fraction of the TRAINING samples are dropped (in the folds).
    "min_detected_fraction": 0.5,
    "outer_splits": 5,        # upper bound for k; lowered to the smallest class count (continuous: n // 2)
    "outer_repeats": 5,       # repeats of the outer k-fold, averaged in the point estimate
    "inner_splits": 3,        # inner CV for the regularisation strength (lowered to the smallest training class)
    "logistic_c": [0.01, 0.1, 1.0, 10.0],         # L2 logistic regression: inverse regularisation strengths tried
    "ridge_alpha": [0.1, 1.0, 10.0, 100.0, 1000.0],  # ridge regression: penalties tried
    # Estimator: elastic_net (elastic-net logistic / elastic-net regression: sparse, for few samples and many
    # features) | linear (L2 logistic / ridge; "logistic" and "ridge" name the same) | random_forest | svm_linear.
    # On realistic simulated studies (benchmarks/biology.py: 16 samples, 12 of ~2,800 compounds 3x up) elastic_net
    # reached a mean AUC of 0.90 on the feature matrix where L2 sat at 0.44 (worse than chance: anti-learning).
    "estimator": "elastic_net",
    "svm_c": [0.001, 0.01, 0.1, 1.0],         # svm_linear: inverse regularisation strengths tried
    # elastic_net: penalties tried, as fractions of the training data's lambda_max (1.0 would be intercept only:
    # on 8 + 8 simulated studies adding it cut the mean AUC from 0.90 to 0.83 without lowering false positives,
    # which stayed at 0 of 8), and the shares of L1 in the penalty tried with each (a number or a list; the inner
    # CV picks the pair). Classes (8 simulated studies): 0.2 alone: mean AUC 0.81, 0.5: 0.90, [0.5, 0.9]: 0.91,
    # [0.5, 0.9, 1.0]: 0.90; continuous (2 of 500 features, 3 seeds): 0.5 alone R² 0.05, [0.5, 0.9] 0.58,
    # [0.5, 0.9, 1.0] 0.87, L2 -0.09 (a ridge-like fit spreads weight over noise at n << p).
    "elastic_net_lambda_ratio": [0.5, 0.3, 0.2, 0.1, 0.05],
    "l1_ratio": [0.5, 0.9, 1.0],
    # Univariate filter inside the training folds before the estimator: keep the k columns with the largest F
    # (classes) or squared correlation (continuous) on the training rows; null: no filter. With elastic_net it
    # changed no result on the simulated studies (the selected features rank high anyway) and saves 2-3x time.
    "univariate_top_k": 200,
    "forest_trees": 200,                      # random_forest: trees per forest
    "forest_min_samples_leaf": [1, 3, 5],     # random_forest: leaf sizes tried (larger: smoother)
    # Sample-sheet columns added to every feature set (numeric as they are, text one-hot coded). Inside the folds
    # they are mean-imputed, scaled and multiplied by covariate_weight, so an L2 penalty on them is weight² times
    # weaker than on the set's own columns; they are also modelled alone, as "covariates".
    "covariates": [],
    # 3: penalty 9x weaker. Not fully unpenalised on purpose: at 10 (100x) an unrelated covariate (age on the demo's
    # group) took over the strongly regularised models of 12 samples and cut the feature matrix's AUC from 1.0 to 0.8.
    "covariate_weight": 3.0,
    "n_permutations": 20,     # label permutations for the p-value (resolution 1 / (n + 1)); 0 disables
    "n_bootstrap": 1000,      # bootstrap draws of the out-of-fold predictions for the interval
    "ci_level": 0.95,
    "seed": 0,
}

PRIMARY_METRIC = {"binary": "roc_auc", "multiclass": "macro_roc_auc", "continuous": "r2"}
SECONDARY_METRICS = {"binary": ["balanced_accuracy"], "multiclass": ["balanced_accuracy"], "continuous": ["mae"]}
# What a model without information scores (the report draws it as the reference line).
CHANCE = {"roc_auc": 0.5, "macro_roc_auc": 0.5, "r2": 0.0}


# ------------------------------------------------------------------------------------------- parameters


def merge_params(params: dict | None) -> dict:
    """DEFAULT_PARAMS with ``params`` over them; an unknown key raises InputError naming it."""
    merged = overlay(params, DEFAULT_PARAMS, "models")
    if isinstance((params or {}).get("imputation"), dict):  # feature sets not named keep their default
        merged["imputation"] = {**DEFAULT_PARAMS["imputation"], **params["imputation"]}
    for key, value in merged["imputation"].items():
        if value not in ("mean", "half_minimum"):
            raise InputError(f"models.imputation.{key} is '{value}'", fix="use 'mean' or 'half_minimum'")
    if merged["estimator"] not in ESTIMATORS:
        raise InputError(f"models.estimator is '{merged['estimator']}'", fix=f"use one of {', '.join(ESTIMATORS)}")
    covariates = merged["covariates"]
    if not isinstance(covariates, list) or not all(isinstance(c, str) and c for c in covariates):
        raise InputError(f"models.covariates must be a list of sample-sheet column names (got {covariates!r})")
    if not float(merged["covariate_weight"]) > 0:
        raise InputError(f"models.covariate_weight must be positive (got {merged['covariate_weight']!r})")
    for key in ("outer_splits", "outer_repeats", "inner_splits", "n_permutations", "n_bootstrap", "forest_trees"):
        if isinstance(merged[key], bool) or not isinstance(merged[key], int) or merged[key] < (
                0 if key == "n_permutations" else 1):
            raise InputError(f"models.{key} must be a positive integer (got {merged[key]!r})")
    if merged["outer_splits"] < 2:
        raise InputError("models.outer_splits must be at least 2")
    top_k = merged["univariate_top_k"]
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
        raise InputError(f"models.univariate_top_k must be a positive integer or null (got {top_k!r})")
    l1 = merged["l1_ratio"]
    l1_values = l1 if isinstance(l1, list) else [l1]
    if not l1_values or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v <= 1
                                for v in l1_values):
        raise InputError(f"models.l1_ratio must be a number in (0, 1] or a list of them (got {l1!r})")
    ratios = merged["elastic_net_lambda_ratio"]
    if not isinstance(ratios, list) or not ratios or not all(
            isinstance(r, (int, float)) and not isinstance(r, bool) and 0 < r <= 1 for r in ratios):
        raise InputError(f"models.elastic_net_lambda_ratio must be a list of numbers in (0, 1] (got {ratios!r})")
    if not 0 < float(merged["ci_level"]) < 1:
        raise InputError(f"models.ci_level must lie between 0 and 1 (got {merged['ci_level']!r})")
    return merged


def check_outcome(spec: Any) -> dict:
    """Validate one outcome declaration ({column, type, positive_class}) and return it as a clean dict."""
    if not isinstance(spec, dict) or "column" not in spec or "type" not in spec:
        raise InputError(f"outcome {spec!r} must be a mapping with 'column' and 'type'",
                         fix="e.g. {column: group, type: binary, positive_class: case}")
    unknown = sorted(set(spec) - {"column", "type", "positive_class"})
    if unknown:
        raise InputError(f"outcome '{spec['column']}' has unknown key(s) {unknown}",
                         fix="allowed keys: column, type, positive_class")
    if spec["type"] not in OUTCOME_TYPES:
        raise InputError(f"outcome '{spec['column']}' has type '{spec['type']}'",
                         fix=f"use one of {', '.join(OUTCOME_TYPES)}")
    return {"column": str(spec["column"]), "type": spec["type"], "positive_class": spec.get("positive_class")}


def outcome_dirname(column: str) -> str:
    """The folder name of an outcome's results (path-safe form of the column name)."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", column).strip(".") or "outcome"


# ------------------------------------------------------------------------------------------- feature sets


def embedding_feature_set(sample_embeddings: pl.DataFrame) -> pl.DataFrame:
    """Pooled sample embeddings (``tables.SAMPLE_EMBEDDING`` rows) as sample_id + one Float64 column per dimension.

    A sample without MS/MS (null embedding) keeps its row with nulls in every column: it stays in the folds and the
    model fills it inside each training fold with the training mean (``imputation: mean``), which is neutral and
    leaks nothing; the summary lists such samples. It is never turned into a zero vector here.
    """
    for column in ("sample_id", "embedding"):
        if column not in sample_embeddings.columns:
            raise InputError(f"sample embedding table lacks column '{column}'", fix="produce it with 'ms2study pool'")
    lengths = sample_embeddings["embedding"].list.len()
    present = lengths.drop_nulls()
    dim = int(present.max()) if present.len() else 0
    bad = sample_embeddings.filter(lengths.is_not_null() & (lengths != dim))
    if bad.height:
        raise InputError(
            f"embedding has {bad['embedding'].list.len()[0]} values, others have {dim}",
            sample=str(bad["sample_id"][0]), fix="pool every sample with the same encoder (rerun 'ms2study pool')",
        )
    ids = sample_embeddings["sample_id"].cast(pl.Utf8)
    if dim == 0:
        return pl.DataFrame({"sample_id": ids})
    matrix = np.full((sample_embeddings.height, dim), np.nan)
    for i, value in enumerate(sample_embeddings["embedding"].to_list()):
        if value is not None:
            matrix[i] = np.asarray(value, dtype=np.float64)
    # NaN (e.g. from an empty pool) counts as missing too, like null.
    columns = {f"emb_{j}": pl.Series(matrix[:, j]).fill_nan(None) for j in range(dim)}
    return pl.DataFrame({"sample_id": ids, **columns})


def chemical_space_feature_set(sample_chemistry: pl.DataFrame) -> pl.DataFrame:
    """Bags of chemistry (``pool.SAMPLE_CHEMISTRY`` rows, one per sample) as sample_id + one Float64 column per
    prototype region (``proto_{r}``: log1p of the summed abundance there; null where the sample has no feature).

    Every sample must have been summarised with the same prototypes (one ``prototypes_id``): raises InputError
    naming a sample that was not, or when columns are missing or lengths differ.
    """
    for column in ("sample_id", "abundance", "prototypes_id"):
        if column not in sample_chemistry.columns:
            raise InputError(f"sample chemistry table lacks column '{column}'", fix="produce it with 'ms2study chemistry'")
    ids = sample_chemistry["prototypes_id"].unique().drop_nulls().to_list()
    if len(ids) > 1:
        first = sample_chemistry.filter(pl.col("prototypes_id") != ids[0])["sample_id"][0]
        raise InputError(f"samples were summarised with different prototypes {sorted(ids)}", sample=str(first),
                         fix="rerun 'ms2study chemistry' for every sample with the study's prototypes")
    lengths = sample_chemistry["abundance"].list.len().unique().drop_nulls().to_list()
    if len(lengths) > 1:
        raise InputError(f"bags of chemistry of different lengths {sorted(lengths)}",
                         fix="rerun 'ms2study chemistry' for every sample with the study's prototypes")
    k = int(lengths[0]) if lengths else 0
    matrix = np.full((sample_chemistry.height, k), np.nan)
    for i, row in enumerate(sample_chemistry["abundance"].to_list()):
        if row is not None:
            matrix[i] = [np.nan if v is None else v for v in row]
    columns = {f"proto_{r}": pl.Series(matrix[:, r]).fill_nan(None) for r in range(k)}
    return pl.DataFrame({"sample_id": sample_chemistry["sample_id"].cast(pl.Utf8), **columns})


def feature_matrix_feature_set(feature_matrix: pl.DataFrame, sample_ids: list[str]) -> pl.DataFrame:
    """The linked feature matrix (consensus features × samples) as samples × features of log1p(intensity).

    A feature not detected in a sample (null, or an intensity <= 0) stays null here. It is filled INSIDE each
    training fold with half of that feature's smallest training intensity (``imputation: half_minimum``; below the
    detection limit is the likely truth), after features detected in fewer than ``min_detected_fraction`` of the
    training samples are dropped. Doing both before the split would let test samples shape the training data
    (leakage), so they are pipeline steps. log1p itself is per value and needs no fitting.
    """
    if "consensus_id" not in feature_matrix.columns:
        raise InputError("feature matrix lacks column 'consensus_id'", fix="produce it with 'ms2study link'")
    missing = [s for s in sample_ids if s not in feature_matrix.columns]
    if missing:
        raise InputError(
            f"feature matrix has no column for sample(s) {missing[:5]}",
            fix="rerun 'ms2study link' with every sample of the sheet",
        )
    ids = feature_matrix["consensus_id"].cast(pl.Utf8).to_list()
    values = feature_matrix.select([pl.col(s).cast(pl.Float64) for s in sample_ids]).to_numpy()  # features × samples
    with np.errstate(invalid="ignore"):
        logged = np.where(values > 0, np.log1p(np.where(values > 0, values, 0.0)), np.nan)
    columns = {cid: pl.Series(cid, logged[j], dtype=pl.Float64).fill_nan(None) for j, cid in enumerate(ids)}
    return pl.DataFrame({"sample_id": pl.Series(list(sample_ids), dtype=pl.Utf8), **columns})


def binned_spectra_feature_set(spectra: pl.DataFrame, sample_ids: list[str], bin_width: float = 1.0) -> pl.DataFrame:
    """The model-free MS/MS baseline: each sample's spectra binned by fragment m/z and averaged.

    Each spectrum's intensities are scaled to sum 1 (so every spectrum counts once, whatever its total ion
    current), summed into ``bin_width`` m/z bins, and the sum is divided by the sample's number of spectra. A bin
    without peaks in a sample is 0 (a real zero: no fragment there). A sample without spectra keeps its row with
    nulls, filled inside the folds like a missing embedding. Columns are ``mz_{bin start}``.
    """
    for column in ("sample_id", "mz", "intensity"):
        if column not in spectra.columns:
            raise InputError(f"spectra table lacks column '{column}'", fix="produce it with 'ms2study spectra'")
    if bin_width <= 0:
        raise InputError(f"spectra bin width must be positive (got {bin_width})")
    peaks = (
        spectra.select(pl.col("sample_id").cast(pl.Utf8), "mz", pl.col("intensity").cast(pl.List(pl.Float64)))
        .with_row_index("spectrum")
        .filter(pl.col("mz").list.len() > 0)
        .explode("mz", "intensity")
        .filter(pl.col("intensity") > 0)
        .with_columns((pl.col("intensity") / pl.col("intensity").sum().over("spectrum")).alias("share"),
                      (pl.col("mz") / bin_width).floor().cast(pl.Int64).alias("bin"))
    )
    n_spectra = peaks.group_by("sample_id").agg(pl.col("spectrum").n_unique().alias("n"))
    binned = (peaks.group_by("sample_id", "bin").agg(pl.col("share").sum())
              .join(n_spectra, on="sample_id").with_columns(pl.col("share") / pl.col("n")))
    bins = sorted(binned["bin"].unique().to_list())
    frame = pl.DataFrame({"sample_id": pl.Series(list(sample_ids), dtype=pl.Utf8)})
    if not bins:
        return frame
    wide = binned.pivot(on="bin", index="sample_id", values="share")
    names = {str(b): f"mz_{b * bin_width:g}" for b in bins}
    wide = wide.rename(names).select("sample_id", *names.values()).with_columns(
        [pl.col(c).fill_null(0.0) for c in names.values()])
    return frame.join(wide, on="sample_id", how="left", maintain_order="left")


def read_spectra_tables(paths: list[str | Path]) -> pl.DataFrame:
    frames = []
    for path in paths:
        if not Path(path).exists():
            raise InputError("spectra table does not exist", file=str(path), fix="run the spectra stage")
        frames.append(pl.read_parquet(path, columns=["sample_id", "mz", "intensity"]).with_columns(
            pl.col("sample_id").cast(pl.Utf8), pl.col("mz").cast(pl.List(pl.Float64)),
            pl.col("intensity").cast(pl.List(pl.Float64))))
    return pl.concat(frames) if frames else pl.DataFrame(
        schema={"sample_id": pl.Utf8, "mz": pl.List(pl.Float64), "intensity": pl.List(pl.Float64)})


# ------------------------------------------------------------------------------------------- estimators


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


# ------------------------------------------------------------------------------------------- sparse estimators


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


def _preprocessor(imputation: str, params: dict, n_columns: int | None = None,
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


def _family(params: dict) -> str:
    name = str(params.get("estimator", "linear"))
    return "linear" if name in ("logistic", "ridge") else name


def _estimator(kind: str, strength: float, params: dict | None = None, seed: int = 0) -> Any:
    """The configured estimator at one regularisation strength (C, alpha, or minimum leaf size)."""
    family = _family(params or {})
    if family == "random_forest":
        common = {"n_estimators": int((params or {}).get("forest_trees", 200)), "min_samples_leaf": int(strength),
                  "max_features": "sqrt", "random_state": seed, "n_jobs": 1}
        if kind == "continuous":
            return RandomForestRegressor(**common)
        return RandomForestClassifier(class_weight="balanced", **common)
    if family == "elastic_net":
        # strength: (lambda_ratio, l1_ratio) from _grid
        strength, l1_ratio = strength if isinstance(strength, tuple) else (strength, _l1_ratios(params or {})[0])
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


def _grid(kind: str, params: dict) -> list[float]:
    """Regularisation strengths, strongest first, so ties in the inner CV go to the simpler model."""
    family = _family(params)
    if family == "random_forest":
        return sorted((float(v) for v in params["forest_min_samples_leaf"]), reverse=True)
    if family == "svm_linear":
        return sorted(float(c) for c in params["svm_c"])
    if family == "elastic_net":
        # every (penalty, L1 share) pair; strongest penalty first, and the more ridge-like mix first on ties
        return [(r, a) for r in sorted((float(v) for v in params["elastic_net_lambda_ratio"]), reverse=True)
                for a in sorted(_l1_ratios(params))]
    if kind == "continuous":
        return sorted((float(a) for a in params["ridge_alpha"]), reverse=True)
    return sorted(float(c) for c in params["logistic_c"])


def _l1_ratios(params: dict) -> list[float]:
    """``l1_ratio`` as a list (a single number is a list of one)."""
    value = params.get("l1_ratio", 0.5)
    return [float(v) for v in value] if isinstance(value, (list, tuple)) else [float(value)]


def _strength_label(strength: Any) -> str:
    """How a chosen regularisation is reported (``regularisation_chosen`` keys)."""
    if isinstance(strength, tuple):
        return f"lambda_ratio={strength[0]:g}, l1_ratio={strength[1]:g}"
    return f"{strength:g}"


def _default_strength(kind: str, params: dict) -> Any:
    """The strength used when the training part is too small for an inner CV."""
    if _family(params) == "linear":
        return 1.0 if kind != "continuous" else 10.0
    grid = _grid(kind, params)
    return grid[len(grid) // 2]


def outer_splitter(y: np.ndarray, kind: str, params: dict, n_repeats: int | None = None):
    """The outer repeated k-fold. Classes: stratified, k = min(outer_splits, smallest class), so no test fold lacks
    a class. Continuous: k = min(outer_splits, n // 2), so each test fold has at least two samples."""
    repeats = int(n_repeats or params["outer_repeats"])
    if kind == "continuous":
        k = min(int(params["outer_splits"]), len(y) // 2)
        return RepeatedKFold(n_splits=k, n_repeats=repeats, random_state=int(params["seed"])), k
    k = min(int(params["outer_splits"]), int(np.bincount(y).min()))
    return RepeatedStratifiedKFold(n_splits=k, n_repeats=repeats, random_state=int(params["seed"])), k


def _inner_splitter(kind: str, y_train: np.ndarray, params: dict, seed: int) -> KFold | StratifiedKFold | None:
    """Inner CV on the training part; None where it is too small to split (a class with < 2 training samples)."""
    if kind == "continuous":
        k = min(int(params["inner_splits"]), len(y_train) // 2)
        return KFold(n_splits=k, shuffle=True, random_state=seed) if k >= 2 else None
    k = min(int(params["inner_splits"]), int(np.bincount(y_train).min()))
    return StratifiedKFold(n_splits=k, shuffle=True, random_state=seed) if k >= 2 else None


def _predict(model: Any, X: np.ndarray, kind: str, n_classes: int) -> np.ndarray:
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


def _loss(kind: str, y: np.ndarray, predicted: np.ndarray) -> float:
    """Inner-CV loss: squared error, or log loss (smoother than AUC on inner folds of two or three samples)."""
    if kind == "continuous":
        return float(((y - predicted) ** 2).sum())
    return float(-np.log(np.clip(predicted[np.arange(len(y)), y], 1e-15, 1.0)).sum())


def fit_nested(X: np.ndarray, y: np.ndarray, kind: str, imputation: str, params: dict, seed: int,
               n_covariates: int = 0) -> tuple:
    """Choose the regularisation by inner CV on (X, y), then refit on all of it.

    Equivalent to GridSearchCV over a Pipeline(impute, scale, model) with the strength as the only searched
    parameter, but the preprocessing is fitted once per inner split instead of once per grid value, and the
    joblib machinery is skipped: on cohorts of ten samples that overhead dominated the run time (about 50x).
    The last ``n_covariates`` columns of X are covariates (see ``_preprocessor``).
    Returns (preprocessor, model, chosen strength or None when no inner split was possible).
    """
    n_classes = int(y.max()) + 1 if kind != "continuous" else 0
    grid = _grid(kind, params)
    inner = _inner_splitter(kind, y, params, seed)
    chosen = None
    if inner is not None and len(grid) > 1:
        losses = np.zeros(len(grid))
        for train, valid in inner.split(X, y):
            pre = clone(_preprocessor(imputation, params, X.shape[1] - n_covariates, n_covariates, kind)).fit(
                X[train], y[train])
            A, B = pre.transform(X[train]), pre.transform(X[valid])
            for g, strength in enumerate(grid):
                model = _estimator(kind, strength, params, seed).fit(A, y[train])
                losses[g] += _loss(kind, y[valid], _predict(model, B, kind, n_classes))
        chosen = grid[int(np.argmin(losses))]  # argmin takes the first of ties: the strongest regularisation
    strength = chosen if chosen is not None else _default_strength(kind, params)
    pre = _preprocessor(imputation, params, X.shape[1] - n_covariates, n_covariates, kind).fit(X, y)
    model = _estimator(kind, strength, params, seed).fit(pre.transform(X), y)
    return pre, model, chosen


def _cross_validate(X: np.ndarray, y: np.ndarray, kind: str, imputation: str, params: dict,
                    n_repeats: int | None = None, n_covariates: int = 0) -> dict:
    """Out-of-fold predictions of the nested CV: ``scores`` (repeats × n [× classes]), ``fold`` (repeats × n),
    and the regularisation chosen per outer fold."""
    splitter, k = outer_splitter(y, kind, params, n_repeats)
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
                                              n_covariates)
            if strength is not None:
                chosen.append(strength)
            predicted = _predict(model, pre.transform(X[test]), kind, n_classes)
            scores[repeat, test] = predicted[:, 1] if kind == "binary" else predicted
            folds[repeat, test] = fold
    return {"scores": scores, "fold": folds, "k": k, "chosen": chosen}


# ------------------------------------------------------------------------------------------- metrics


def _weighted_auc(positive: np.ndarray, score: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """ROC AUC of one set of samples under each row of multiplicity ``weights`` (draws × samples): the weighted
    share of (positive, negative) pairs ranked correctly, ties counting half. NaN where a class is absent."""
    pos, neg = positive, ~positive
    if not pos.any() or not neg.any():
        return np.full(weights.shape[0], np.nan)
    sp, sn = score[pos], score[neg]
    pairs = (sp[:, None] > sn[None, :]) + 0.5 * (sp[:, None] == sn[None, :])
    wp, wn = weights[:, pos], weights[:, neg]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.einsum("bi,ij,bj->b", wp, pairs, wn) / (wp.sum(axis=1) * wn.sum(axis=1))


def _nanmean(stack: list[np.ndarray] | np.ndarray) -> np.ndarray:
    stack = np.asarray(stack, dtype=np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns stay NaN
        return np.nanmean(stack, axis=0)


def _class_metric(name: str, y: np.ndarray, scores: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """A classification metric of one test fold under each weight row."""
    if name == "roc_auc":
        return _weighted_auc(y == 1, scores, weights)
    if name == "macro_roc_auc":
        return _nanmean([_weighted_auc(y == c, scores[:, c], weights) for c in range(scores.shape[1])])
    if name == "balanced_accuracy":
        predicted = scores.argmax(axis=1) if scores.ndim == 2 else (scores >= 0.5).astype(np.int64)
        n_classes = scores.shape[1] if scores.ndim == 2 else 2
        recalls = []
        for c in range(n_classes):
            member = y == c
            with np.errstate(invalid="ignore", divide="ignore"):
                recalls.append((weights * (member & (predicted == c))).sum(axis=1) / (weights * member).sum(axis=1))
        return _nanmean(recalls)
    raise ValueError(f"unknown metric {name}")


def metric_values(name: str, y: np.ndarray, scores: np.ndarray, folds: np.ndarray,
                  weights: np.ndarray | None = None) -> np.ndarray:
    """One repeat's out-of-fold metric under each row of sample ``weights`` (draws × n; default: all ones).

    Classification metrics are computed within each test fold and averaged over folds (as scikit-learn's
    ``cross_val_score`` does). Pooling scores across folds compares numbers from different models, whose offsets
    shift with each fold's class mix; on noise that pooled AUC sat near 0.44 instead of 0.5 on 12 samples, while
    the fold-wise mean sat at 0.50. Continuous metrics pool the out-of-fold predictions (R² = 1 - PRESS / total sum
    of squares), because an R² within test folds of two or three samples is meaningless.
    """
    weights = np.ones((1, len(y))) if weights is None else weights
    if name in ("r2", "mae"):
        total = weights.sum(axis=1)
        if name == "mae":
            return (weights * np.abs(y - scores)).sum(axis=1) / total
        mean = (weights * y).sum(axis=1, keepdims=True) / total[:, None]
        with np.errstate(invalid="ignore", divide="ignore"):
            return 1.0 - (weights * (y - scores) ** 2).sum(axis=1) / (weights * (y - mean) ** 2).sum(axis=1)
    per_fold = [_class_metric(name, y[folds == f], scores[folds == f], weights[:, folds == f])
                for f in np.unique(folds)]
    return _nanmean(per_fold)


def _bootstrap_weights(y: np.ndarray, kind: str, n_draws: int, seed: int) -> np.ndarray:
    """Multiplicities of each sample in ``n_draws`` bootstrap resamples (draws × n); resampled within each class
    so every draw keeps the study's class sizes."""
    rng = np.random.default_rng(seed)
    weights = np.zeros((n_draws, len(y)))
    groups = [np.arange(len(y))] if kind == "continuous" else [np.flatnonzero(y == c) for c in np.unique(y)]
    rows = np.arange(n_draws)[:, None]
    for members in groups:
        picks = members[rng.integers(0, len(members), size=(n_draws, len(members)))]
        np.add.at(weights, (np.broadcast_to(rows, picks.shape), picks), 1.0)
    return weights


def summarise_metric(name: str, y: np.ndarray, scores: np.ndarray, folds: np.ndarray, boot: np.ndarray,
                     level: float, seed: int = 0) -> dict:
    """Point estimate (mean over repeats of the out-of-fold metric) and a percentile bootstrap interval.

    Each bootstrap draw resamples the samples (stratified by class) and recomputes the metric of one repeat, drawn
    at random, on its out-of-fold predictions with those multiplicities. The interval thus carries both the
    sample-to-sample variation and the variation between fold assignments; an interval over repeats alone would be
    falsely narrow (the repeats share the samples), and one over the mean of the repeats too narrow as well (on
    12 pure-noise samples it covered 0.5 in 15 of 20 seeds; this one in 20 of 20). The models are not refitted per
    draw; the permutation p-value, which reruns everything, remains the test to rely on.
    """
    per_repeat = np.array([metric_values(name, y, scores[r], folds[r])[0] for r in range(scores.shape[0])])
    per_draw = np.stack([metric_values(name, y, scores[r], folds[r], boot) for r in range(scores.shape[0])])
    # Each draw takes one repeat (chosen at random, seeded) rather than the mean over repeats, so the interval also
    # carries the fold-assignment variability of a single cross-validation.
    pick = np.random.default_rng(seed).integers(0, scores.shape[0], size=per_draw.shape[1])
    draws = per_draw[pick, np.arange(per_draw.shape[1])]
    draws = draws[np.isfinite(draws)]
    alpha = (1.0 - level) / 2.0
    low, high = (np.quantile(draws, [alpha, 1.0 - alpha]) if draws.size else (np.nan, np.nan))
    return {"value": _num(np.nanmean(per_repeat)), "ci_low": _num(low), "ci_high": _num(high),
            "per_repeat": [_num(v) for v in per_repeat]}


def _num(value: Any) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


# ------------------------------------------------------------------------------------------- outcomes


def _is_missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return str(value).strip().lower() in MISSING_TOKENS


def encode_outcome(samples: pl.DataFrame, spec: dict) -> dict:
    """The outcome's target vector for the samples that have a value; samples without one are listed.

    Binary: 1 = ``positive_class`` (default: 1/true/yes if present, else the last class in sorted order).
    Multiclass: class index in sorted order. Continuous: the value as float.
    """
    column, kind = spec["column"], spec["type"]
    if column not in samples.columns:
        raise InputError(f"outcome column '{column}' is not in the sample sheet (columns: {', '.join(samples.columns)})",
                         file="samples.tsv", fix="add the column or remove the outcome from config.yaml")
    ids = samples["sample_id"].cast(pl.Utf8).to_list()
    raw = samples[column].to_list()
    keep = [i for i, v in enumerate(raw) if not _is_missing(v)]
    missing = [ids[i] for i in range(len(ids)) if i not in set(keep)]
    values = [str(raw[i]).strip() for i in keep]
    result: dict[str, Any] = {"sample_ids": [ids[i] for i in keep], "excluded_missing_outcome": missing}
    if kind == "continuous":
        y = np.empty(len(values))
        for j, v in enumerate(values):
            try:
                y[j] = float(v)
            except ValueError as err:
                raise InputError(f"outcome '{column}' is continuous but has the value '{v}'",
                                 sample=result["sample_ids"][j], file="samples.tsv",
                                 fix="use numbers (or NA for missing), or declare the outcome multiclass") from err
        result.update(y=y, classes=None, positive_class=None)
        return result
    classes = sorted(set(values), key=_class_sort_key)
    if kind == "binary":
        if len(classes) > 2:
            raise InputError(f"outcome '{column}' is binary but has {len(classes)} classes {classes[:6]}",
                             file="samples.tsv", fix="declare it multiclass, or recode it to two classes")
        positive = spec.get("positive_class")
        if positive is not None:
            positive = _match_class(positive, classes)
            if positive is None:
                raise InputError(f"positive_class '{spec['positive_class']}' of outcome '{column}' is not among its "
                                 f"values {classes}", file="samples.tsv", fix="set positive_class to one of them")
        else:
            lowered = {c.lower(): c for c in classes}
            positive = next((lowered[t] for t in ("1", "true", "yes", "case") if t in lowered), classes[-1])
        if len(classes) == 2:
            negative = next(c for c in classes if c != positive)
            classes = [negative, positive]
        y = np.array([1 if v == positive else 0 for v in values], dtype=np.int64)
        result.update(y=y, classes=classes, positive_class=positive)
        return result
    index = {c: i for i, c in enumerate(classes)}
    result.update(y=np.array([index[v] for v in values], dtype=np.int64), classes=classes, positive_class=None)
    return result


def _class_sort_key(value: str) -> tuple:
    try:
        return (0, float(value), value)
    except ValueError:
        return (1, 0.0, value)


def _match_class(wanted: Any, classes: list[str]) -> str | None:
    """Match a configured class to the sheet's strings: YAML reads `1` as int and `yes` as True."""
    candidates = {str(wanted), str(wanted).lower()}
    if isinstance(wanted, bool):
        candidates |= {"1", "yes"} if wanted else {"0", "no"}
    if isinstance(wanted, (int, float)) and not isinstance(wanted, bool):
        candidates.add(f"{float(wanted):g}")
    for c in classes:
        if c in candidates or c.lower() in candidates:
            return c
    return None


def _too_small(target: dict, kind: str) -> str | None:
    n = len(target["sample_ids"])
    if kind == "continuous":
        if n < 6:
            return f"only {n} samples with a value (at least 6 needed)"
        if np.ptp(target["y"]) == 0:
            return "the outcome has the same value in every sample"
        return None
    counts = np.bincount(target["y"], minlength=len(target["classes"]))
    if len(target["classes"]) < 2:
        return f"only one class ({target['classes']}) among the samples with a value"
    if counts.min() < 2:
        smallest = target["classes"][int(counts.argmin())]
        return f"class '{smallest}' has {int(counts.min())} sample(s); at least 2 per class are needed"
    return None


def _align(feature_set: pl.DataFrame, sample_ids: list[str], name: str) -> tuple[np.ndarray, list[str], list[str]]:
    """Rows of ``feature_set`` in ``sample_ids`` order (absent samples: all NaN), its column names, and the samples
    without any value (listed in the summary; filled inside the folds)."""
    if "sample_id" not in feature_set.columns:
        raise InputError(f"feature set '{name}' lacks a sample_id column")
    columns = [c for c in feature_set.columns if c != "sample_id"]
    frame = pl.DataFrame({"sample_id": sample_ids}).join(
        feature_set.with_columns(pl.col("sample_id").cast(pl.Utf8)), on="sample_id", how="left", maintain_order="left")
    X = frame.select([pl.col(c).cast(pl.Float64) for c in columns]).to_numpy() if columns else np.empty(
        (len(sample_ids), 0))
    X = np.asarray(X, dtype=np.float64)
    empty = [s for s, row in zip(sample_ids, X) if columns and np.isnan(row).all()]
    return X, columns, empty


def covariate_matrix(samples: pl.DataFrame, sample_ids: list[str], columns: list[str]) -> tuple[np.ndarray, list[str]]:
    """Covariate columns of the sample sheet for ``sample_ids``, as numbers: (matrix, column names).

    A column whose recorded values all read as numbers is used as it is (``cov:age``); any other is one-hot coded
    against its first level in sorted order (``cov:sex=M``), which uses only the list of levels, not the outcome,
    so it leaks nothing. Missing values are NaN and are mean-imputed inside the training folds.
    """
    missing = [c for c in columns if c not in samples.columns]
    if missing:
        raise InputError(f"covariate column(s) {missing} are not in the sample sheet (columns: "
                         f"{', '.join(samples.columns)})", file="samples.tsv",
                         fix="add the column(s) or remove them from models: covariates in config.yaml")
    frame = pl.DataFrame({"sample_id": sample_ids}).join(
        samples.select(pl.col("sample_id").cast(pl.Utf8), *[pl.col(c) for c in columns]),
        on="sample_id", how="left", maintain_order="left")
    blocks: list[np.ndarray] = []
    names: list[str] = []
    for column in columns:
        raw = frame[column].to_list()
        text = [None if _is_missing(v) else str(v).strip() for v in raw]
        try:
            values = np.array([np.nan if t is None else float(t) for t in text])
            blocks.append(values[:, None])
            names.append(f"cov:{column}")
            continue
        except ValueError:
            pass
        levels = sorted({t for t in text if t is not None}, key=_class_sort_key)
        for level in levels[1:]:
            blocks.append(np.array([np.nan if t is None else float(t == level) for t in text])[:, None])
            names.append(f"cov:{column}={level}")
    matrix = np.hstack(blocks) if blocks else np.empty((len(sample_ids), 0))
    return matrix, names


def model_outcome(samples: pl.DataFrame, feature_sets: dict[str, pl.DataFrame], spec: dict, params: dict,
                  note_missing_sets: bool = True) -> dict:
    """Nested CV of one outcome on every feature set: returns summary, metrics rows and prediction rows."""
    spec = check_outcome(spec)
    kind = spec["type"]
    target = encode_outcome(samples, spec)
    summary: dict[str, Any] = {
        "outcome": spec["column"], "type": kind, "classes": target["classes"],
        "positive_class": target["positive_class"], "n_samples": len(target["sample_ids"]),
        "excluded_missing_outcome": target["excluded_missing_outcome"],
        "primary_metric": PRIMARY_METRIC[kind], "chance": CHANCE[PRIMARY_METRIC[kind]], "feature_sets": {},
        "notes": [],
    }
    if kind != "continuous":
        summary["class_counts"] = {c: int(n) for c, n in zip(target["classes"], np.bincount(
            target["y"], minlength=len(target["classes"])))}
    reason = _too_small(target, kind)
    if reason:
        summary.update(status="skipped", reason=reason)
        log.warning("outcome %s skipped: %s", spec["column"], reason)
        return {"summary": summary, "metrics": [], "predictions": []}
    y = target["y"]
    ids = target["sample_ids"]
    covariates = [c for c in params["covariates"] if c != spec["column"]]
    if len(covariates) < len(params["covariates"]):
        summary["notes"].append(f"covariate '{spec['column']}' is this outcome itself: left out of its models")
    C, covariate_names = covariate_matrix(samples, ids, covariates)
    if covariates:
        summary["covariates"] = covariate_names
        summary["covariate_weight"] = float(params["covariate_weight"])
    feature_sets = dict(feature_sets)
    if covariate_names:
        # The covariates alone: the baseline that every set (which also holds them) has to beat.
        feature_sets["covariates"] = pl.DataFrame({"sample_id": ids})
    summary["estimator"] = _family(params)
    level = float(params["ci_level"])
    boot = _bootstrap_weights(y, kind, int(params["n_bootstrap"]), int(params["seed"]))
    # The same permutations for every feature set, so their p-values are paired.
    rng = np.random.default_rng(int(params["seed"]) + 1)
    permutations = [rng.permutation(len(y)) for _ in range(int(params["n_permutations"]))]
    metrics_rows: list[dict] = []
    prediction_rows: list[dict] = []
    wanted = list(params["feature_sets"]) + (["covariates"] if covariate_names and "covariates" not in
                                             params["feature_sets"] else [])
    order = [n for n in wanted if n in feature_sets]
    for name in wanted if note_missing_sets else []:
        if name not in feature_sets:
            summary["notes"].append(f"feature set '{name}' is not available")
    for name in order:
        started = time.perf_counter()
        X, columns, empty = _align(feature_sets[name], ids, name)
        if name == "covariates" and covariate_names:
            X, columns, empty = np.empty((len(ids), 0)), [], []
        elif not columns or len(empty) == len(ids):
            summary["notes"].append(f"feature set '{name}' has no values for these samples")
            continue
        imputation = params["imputation"].get(name, "mean")
        # Covariates ride along as the last columns; the preprocessing treats them apart (see _preprocessor).
        X = np.hstack([X, C])
        n_cov = C.shape[1]
        cv = _cross_validate(X, y, kind, imputation, params, n_covariates=n_cov)
        scores = cv["scores"]
        if kind != "continuous" and np.bincount(y).min() < 2 * cv["k"] and not any("coarse" in n for n in
                                                                                   summary["notes"]):
            summary["notes"].append(
                f"some test folds hold a single sample of a class ({cv['k']} folds, smallest class "
                f"{int(np.bincount(y).min())}): fold-wise metrics are coarse and the interval can collapse (e.g. to "
                "[1, 1]); rely on the permutation p-value and read the interval as optimistic")
        entry: dict[str, Any] = {"n_samples": len(y), "n_features": len(columns), "n_covariates": n_cov,
                                 "imputation": imputation,
                                 "samples_without_values": empty, "outer_splits": cv["k"],
                                 "outer_repeats": int(params["outer_repeats"])}
        for metric in [PRIMARY_METRIC[kind], *SECONDARY_METRICS[kind]]:
            stats = summarise_metric(metric, y, scores, cv["fold"], boot, level, int(params["seed"]))
            primary = metric == PRIMARY_METRIC[kind]
            p_value = None
            if primary and permutations:
                # The statistic tested is the first repeat's out-of-fold metric; the null reruns the identical nested
                # procedure (one repeat, same seed) on permuted labels. p = (1 + #null >= observed) / (1 + n).
                observed = metric_values(metric, y, scores[0], cv["fold"][0])[0]
                null = []
                for permutation in permutations:
                    shuffled = _cross_validate(X, y[permutation], kind, imputation, params, n_repeats=1,
                                               n_covariates=n_cov)
                    null.append(metric_values(metric, y[permutation], shuffled["scores"][0], shuffled["fold"][0])[0])
                null = np.array(null)
                p_value = float((1 + np.sum(null >= observed - 1e-12)) / (1 + len(null)))
                entry["permutation_null_mean"] = _num(np.mean(null))
            if primary:
                entry.update(metric=metric, value=stats["value"], ci_low=stats["ci_low"], ci_high=stats["ci_high"],
                             permutation_p=p_value)
            else:
                entry.setdefault("secondary", {})[metric] = {k: stats[k] for k in ("value", "ci_low", "ci_high")}
            metrics_rows.append({
                "feature_set": name, "metric": metric, "primary": primary, "value": stats["value"],
                "ci_low": stats["ci_low"], "ci_high": stats["ci_high"], "permutation_p": p_value,
                "n_samples": len(y), "n_features": len(columns), "outer_splits": cv["k"],
                "outer_repeats": int(params["outer_repeats"]), "per_repeat": stats["per_repeat"],
            })
        if cv["chosen"]:
            values, counts = np.unique([_strength_label(v) for v in cv["chosen"]], return_counts=True)
            entry["regularisation_chosen"] = {str(v): int(c) for v, c in zip(values, counts)}
        entry["seconds"] = round(time.perf_counter() - started, 3)
        summary["feature_sets"][name] = entry
        prediction_rows.extend(_prediction_rows(name, ids, y, scores, cv["fold"], kind, target["classes"]))
        log.info("outcome %s, %s: %s = %s [%s, %s], p = %s (%.1f s)", spec["column"], name, entry["metric"],
                 _fmt(entry["value"]), _fmt(entry["ci_low"]), _fmt(entry["ci_high"]), entry["permutation_p"],
                 entry["seconds"])
    summary["status"] = "done" if summary["feature_sets"] else "skipped"
    if not summary["feature_sets"]:
        summary["reason"] = "no feature set had values for the samples"
    return {"summary": summary, "metrics": metrics_rows, "predictions": prediction_rows}


def _fmt(value: float | None) -> str:
    return "NA" if value is None else f"{value:.3f}"


def _prediction_rows(name: str, ids: list[str], y: np.ndarray, scores: np.ndarray, folds: np.ndarray, kind: str,
                     classes: list[str] | None) -> list[dict]:
    rows = []
    for r in range(scores.shape[0]):
        for i, sample in enumerate(ids):
            if kind == "multiclass":
                proba = [float(v) for v in scores[r, i]]
                score, predicted, label = proba[int(y[i])], classes[int(np.argmax(proba))], classes[int(y[i])]
            elif kind == "binary":
                proba = None
                score = float(scores[r, i])
                predicted, label = classes[int(score >= 0.5)], classes[int(y[i])]
            else:
                proba, score, predicted, label = None, float(scores[r, i]), f"{scores[r, i]:.6g}", f"{y[i]:.6g}"
            rows.append({"feature_set": name, "repeat": r, "fold": int(folds[r, i]), "sample_id": sample,
                         "y_true": float(y[i]), "label": label, "y_score": score, "predicted": predicted,
                         "proba": proba})
    return rows


PREDICTIONS_SCHEMA: dict[str, pl.DataType] = {
    "feature_set": pl.Utf8, "repeat": pl.Int32, "fold": pl.Int32, "sample_id": pl.Utf8,
    "y_true": pl.Float64,     # binary: 1 = positive class; multiclass: class index (summary 'classes'); continuous
    "label": pl.Utf8,         # the true value as written in the sheet
    "y_score": pl.Float64,    # binary: P(positive); multiclass: P(true class); continuous: the prediction
    "predicted": pl.Utf8,     # predicted class (threshold 0.5 / arg max) or value
    "proba": pl.List(pl.Float64),  # multiclass: probabilities in 'classes' order; null otherwise
}
METRICS_SCHEMA: dict[str, pl.DataType] = {
    "feature_set": pl.Utf8, "metric": pl.Utf8, "primary": pl.Boolean, "value": pl.Float64, "ci_low": pl.Float64,
    "ci_high": pl.Float64, "permutation_p": pl.Float64, "n_samples": pl.Int32, "n_features": pl.Int32,
    "outer_splits": pl.Int32, "outer_repeats": pl.Int32, "per_repeat": pl.List(pl.Float64),
}


def model_outcomes(samples: pl.DataFrame, feature_sets: dict[str, pl.DataFrame], outcomes: list[dict],
                   outdir: Path, params: dict | None = None) -> dict:
    """Model every outcome on every feature set; write ``outdir/{outcome}/{metrics,predictions}.parquet`` and
    ``summary.json`` (an outcome that cannot be modelled gets a summary with ``status: skipped`` and its reason).
    Returns ``{outcome column: summary}``."""
    # A configured feature set that is absent deserves a note; a default one (e.g. binned_spectra when no spectra
    # were passed) does not.
    explicit_sets = "feature_sets" in (params or {})
    params = merge_params(params)
    specs = [check_outcome(o) for o in outcomes]
    if "sample_id" not in samples.columns:
        raise InputError("the sample sheet has no sample_id column", file="samples.tsv")
    dirs = [outcome_dirname(s["column"]) for s in specs]
    if len(set(dirs)) != len(dirs):
        raise InputError(f"outcome columns {[s['column'] for s in specs]} map to the same folder names {dirs}",
                         fix="declare each outcome once, with column names that differ in letters or digits")
    outdir = Path(outdir)
    result: dict[str, dict] = {}
    for spec, dirname in zip(specs, dirs):
        started = time.perf_counter()
        out = model_outcome(samples, feature_sets, spec, params, note_missing_sets=explicit_sets)
        summary = out["summary"]
        summary["seconds"] = round(time.perf_counter() - started, 3)
        summary["params"] = {k: v for k, v in params.items() if k != "outcomes"}
        target = outdir / dirname
        write_parquet(pl.DataFrame(out["metrics"], schema=METRICS_SCHEMA), target / "metrics.parquet")
        write_parquet(pl.DataFrame(out["predictions"], schema=PREDICTIONS_SCHEMA), target / "predictions.parquet")
        write_text(json.dumps(summary, indent=2) + "\n", target / "summary.json")
        result[spec["column"]] = summary
    return result


# ------------------------------------------------------------------------------------------- reading inputs


def read_samples(path: str | Path) -> pl.DataFrame:
    """The sample sheet as strings (as the workflow writes it: tab-separated, one row per sample)."""
    path = Path(path)
    if not path.exists():
        raise InputError("sample sheet does not exist", file=str(path), fix="pass the study's samples.tsv")
    try:
        sheet = pl.read_csv(path, separator="\t", infer_schema_length=0, comment_prefix="#")
    except Exception as err:  # polars raises several error types for malformed text
        raise InputError(f"cannot read as a tab-separated table ({err})", file=str(path)) from err
    sheet = sheet.rename({c: c.strip() for c in sheet.columns})
    if "sample_id" not in sheet.columns:
        raise InputError(f"no sample_id column (columns: {', '.join(sheet.columns)})", file=str(path))
    return sheet


def read_sample_embeddings(paths: list[str | Path]) -> pl.DataFrame:
    frames = []
    for path in paths:
        if not Path(path).exists():
            raise InputError("sample embedding table does not exist", file=str(path), fix="run the pool stage")
        frames.append(pl.read_parquet(path).select(
            pl.col("sample_id").cast(pl.Utf8), pl.col("embedding").cast(pl.List(pl.Float32))))
    return pl.concat(frames) if frames else pl.DataFrame(schema={"sample_id": pl.Utf8,
                                                                "embedding": pl.List(pl.Float32)})


def read_sample_chemistry(paths: list[str | Path]) -> pl.DataFrame:
    """The per-sample bag-of-chemistry tables (``pool.SAMPLE_CHEMISTRY``) stacked; InputError for a missing file."""
    frames = []
    for path in paths:
        if not Path(path).exists():
            raise InputError("sample chemistry table does not exist", file=str(path), fix="run 'ms2study chemistry'")
        frames.append(pl.read_parquet(path).select(
            pl.col("sample_id").cast(pl.Utf8), pl.col("prototypes_id").cast(pl.Utf8),
            pl.col("abundance").cast(pl.List(pl.Float32))))
    return pl.concat(frames)


def study_feature_sets(samples: pl.DataFrame, sample_embedding_paths: list[str | Path],
                       feature_matrix_path: str | Path | None, spectra_paths: list[str | Path] | None = None,
                       bin_width: float = 1.0, sample_chemistry_paths: list[str | Path] | None = None,
                       ) -> dict[str, pl.DataFrame]:
    """The pipeline's feature sets: "embedding" (pooled spectrum embeddings), "features" (linked matrix) and,
    when their tables are given, "binned_spectra" (spectra) and "chemical_space" (bags of chemistry)."""
    sets: dict[str, pl.DataFrame] = {}
    if sample_chemistry_paths:
        sets["chemical_space"] = chemical_space_feature_set(read_sample_chemistry(sample_chemistry_paths))
    if spectra_paths:
        sets["binned_spectra"] = binned_spectra_feature_set(read_spectra_tables(spectra_paths),
                                                            samples["sample_id"].to_list(), bin_width)
    if sample_embedding_paths:
        sets["embedding"] = embedding_feature_set(read_sample_embeddings(sample_embedding_paths))
    if feature_matrix_path:
        if not Path(feature_matrix_path).exists():
            raise InputError("feature matrix does not exist", file=str(feature_matrix_path), fix="run the link stage")
        sets["features"] = feature_matrix_feature_set(pl.read_parquet(feature_matrix_path),
                                                      samples["sample_id"].to_list())
    return sets


# ------------------------------------------------------------------------------------------- CLI


def _cli_models(args: argparse.Namespace) -> int:
    from ms2study.core.params import load_params

    params = load_params(args)
    outcomes = params.get("outcomes", []) or []
    samples = read_samples(args.samples)
    sets = study_feature_sets(samples, args.sample_embeddings or [], args.feature_matrix, args.spectra or [],
                              float(merge_params(params)["spectra_bin_width"]), args.sample_chemistry or [])
    summaries = model_outcomes(samples, sets, outcomes, Path(args.outdir), params)
    done = {
        "outcomes": [{"column": c, "folder": outcome_dirname(c), "status": s["status"], "reason": s.get("reason")}
                     for c, s in summaries.items()],
        "feature_sets": sorted(sets),
    }
    write_text(json.dumps(done, indent=2) + "\n", Path(args.outdir) / "models_done.json")
    return 0


def _cli_model(args: argparse.Namespace) -> int:
    from ms2study.core.params import load_params
    from ms2study.io.sampletable import read_sample_sheet_any, read_sample_table

    params = load_params(args)
    samples = read_sample_sheet_any(args.samples, args.id_column)
    table, note = read_sample_table(args.table, samples["sample_id"].to_list(), log_transform=args.log)
    print(note)
    # Only samples present in the table are modelled (the note lists the others).
    samples = samples.filter(pl.col("sample_id").is_in(table["sample_id"].implode()))
    spec: dict[str, Any] = {"column": args.outcome, "type": args.type}
    if args.positive_class is not None:
        spec["positive_class"] = args.positive_class
    params = {**params, "feature_sets": ["table"], "imputation": {"table": "half_minimum"}}
    summaries = model_outcomes(samples, {"table": table}, [spec], Path(args.out), params)
    summary = summaries[args.outcome]
    for name, entry in summary.get("feature_sets", {}).items():
        print(f"{args.outcome} ({summary['type']}, n = {entry['n_samples']}) on {name}: {entry['metric']} = "
              f"{_fmt(entry['value'])} [{_fmt(entry['ci_low'])}, {_fmt(entry['ci_high'])}], "
              f"permutation p = {entry['permutation_p']}")
    if summary["status"] != "done":
        print(f"{args.outcome}: skipped: {summary.get('reason')}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    from ms2study.core.params import add_params_argument

    p = subparsers.add_parser("models", help="nested-CV outcome models of the study's feature sets")
    p.add_argument("--samples", required=True, help="sample sheet (TSV with sample_id and the outcome columns)")
    p.add_argument("--sample-embeddings", nargs="*", default=[], help="sample_embedding.parquet of each sample")
    p.add_argument("--feature-matrix", default=None, help="results/study/feature_matrix.parquet")
    p.add_argument("--spectra", nargs="*", default=[],
                   help="spectra.parquet of each sample, for the binned-spectra baseline (optional)")
    p.add_argument("--sample-chemistry", nargs="*", default=[],
                   help="sample_chemistry.parquet of each sample (bags of chemistry, 'ms2study chemistry'; optional)")
    p.add_argument("--outdir", required=True, help="folder for {outcome}/... and models_done.json")
    add_params_argument(p)
    p.set_defaults(func=_cli_models)

    q = subparsers.add_parser("model", help="the same models on a samples x features table from elsewhere")
    q.add_argument("--table", required=True, help="TSV, CSV or Parquet; samples x features in either orientation")
    q.add_argument("--samples", required=True, help="sample sheet with the outcome column (TSV or CSV)")
    q.add_argument("--id-column", default=None, help="sample id column of the sheet (default: sample_id or the first)")
    q.add_argument("--outcome", required=True, help="outcome column of the sample sheet")
    q.add_argument("--type", default="binary", choices=OUTCOME_TYPES)
    q.add_argument("--positive-class", default=None)
    q.add_argument("--log", default="auto", choices=["auto", "yes", "no"],
                   help="log1p the values (auto: when they look like raw intensities)")
    q.add_argument("--out", required=True, help="output folder ({outcome}/metrics.parquet, ...)")
    add_params_argument(q)
    q.set_defaults(func=_cli_model)
