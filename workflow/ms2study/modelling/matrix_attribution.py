"""What the feature-matrix model looks at: each consensus feature's part in the linear outcome model on the feature
matrix (the models stage's ``features`` set: log1p intensity per consensus feature).

The models stage's pipeline for the set (the half-minimum fill with its detection filter, scaling, the univariate
filter, a linear estimator; ``modelling.preprocessing``) is affine in each column once a missing value is replaced by
its fill, and it treats the columns one by one, so the fitted score splits exactly over the consensus features:

    f(x_s) - f(r) = sum_j c_{s,j},   c_{s,j} = g_j (x_{s,j} - r_j) when measured, d_j when missing,

with r a reference sample (each feature's mean measured value), g_j = f(r + e_j) - f(r) the score's change per unit
of feature j, and d_j = f(r with feature j missing) - f(r) what the fill puts there (the linear decomposition of a
linear model over its inputs, SHAP's linear explainer with r as background: Lundberg & Lee 2017, NeurIPS; the
unit steps read the fitted pipeline as it is, including what its filters dropped, which get g = 0). Both are read
numerically in blocks of columns and the split is checked against the model's own scores. Per feature the table
(``MATRIX_ATTRIBUTION``) gives the class difference of its mean contribution (positive class minus the other; the
features' values add up to the difference between the classes' mean scores less the covariates' part), its signed
share of that difference, the direction it pushes the score, and in how many samples it was measured; continuous
outcomes get the slope of the contribution on the outcome instead. The model is refitted on all modelled samples
with the regularisation the outer folds chose most often, as ``modelling.attribution`` does for the embedding set.
Multiclass outcomes and non-linear estimators get no split (the summary says why). Imports ``core`` and other
``modelling`` modules.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl

from ms2study.modelling.attribution import LINEAR_FAMILIES, chosen_strength, fit_embedding_model, model_score
from ms2study.modelling.estimators import estimator_family, strength_label

SET = "features"
FILE = "feature_attribution.parquet"  # beside the outcome's summary.json (results/study/models/{outcome}/)
BLOCK = 256  # columns stepped per evaluation of the pipeline
MATRIX_ATTRIBUTION: dict[str, pl.DataType] = {
    "consensus_id": pl.Utf8,
    # binary: mean contribution in the positive class minus in the other (log-odds; > 0 toward the positive class);
    # continuous: slope of the contribution on the outcome
    "contribution": pl.Float64,
    "share": pl.Float64,                   # contribution / the sum over all features (signed; the shares add to 1)
    "direction": pl.Utf8,                  # "score toward <class>": where it pushes the model's score (not abundance)
    # the feature's own values as modelled (ln(1 + intensity), natural log, or the table's values): binary, mean over
    # the positive class's measured samples minus the other's; continuous, slope on the outcome (trial AT: "toward M"
    # read as higher in M)
    "value_difference": pl.Float64,
    "rank": pl.Int32,                      # 1 = largest |contribution|
    "contribution_positive": pl.Float64,   # binary: mean over the positive class's samples (relative to r)
    "contribution_reference": pl.Float64,  # binary: mean over the other class's samples
    "n_measured": pl.Int32,                # samples with a value (the others carry the fill)
    "n_samples": pl.Int32,
}


def _slope(x: np.ndarray, y: np.ndarray) -> float:
    """Least-squares slope of the measured values of x (NaN left out) on y; NaN with fewer than 3."""
    keep = ~np.isnan(x)
    if keep.sum() < 3 or np.ptp(y[keep]) == 0:
        return float("nan")
    yc = y[keep] - y[keep].mean()
    return float(yc @ (x[keep] - x[keep].mean()) / (yc @ yc))


def split_score(pre: Any, model: Any, kind: str, X: np.ndarray, C: np.ndarray) -> tuple[np.ndarray, float]:
    """Per-sample, per-column contributions (n, p) of a fitted affine pipeline (``pre`` then ``model``) on X (n, p;
    NaN = missing) with covariates C (n, q), relative to the reference r (each column's mean measured value, 0 for
    a column never measured), and the largest error of the split against the model's own scores (module
    docstring)."""
    n, p = X.shape
    measured = ~np.isnan(X)
    r = np.where(measured, X, 0.0).sum(axis=0) / np.maximum(measured.sum(axis=0), 1)
    c_mean = np.nan_to_num(np.nanmean(C, axis=0)) if C.shape[1] and n else np.zeros(C.shape[1])
    base = np.concatenate([r, c_mean])
    f0 = model_score(model, pre.transform(base[None, :]), kind)[0]
    g, d = np.zeros(p), np.zeros(p)
    for start in range(0, p, BLOCK):
        idx = np.arange(start, min(p, start + BLOCK))
        rows = np.tile(base, (2 * len(idx), 1))
        rows[np.arange(len(idx)), idx] += 1.0
        rows[len(idx) + np.arange(len(idx)), idx] = np.nan
        f = model_score(model, pre.transform(rows), kind) - f0
        g[idx], d[idx] = f[:len(idx)], f[len(idx):]
    contribution = np.where(np.isnan(X), d, g * (np.nan_to_num(X) - r))
    own = model_score(model, pre.transform(np.hstack([X, C])), kind)
    at_r = model_score(model, pre.transform(np.hstack([np.tile(r, (n, 1)), C])), kind)
    error = float(np.max(np.abs(own - at_r - contribution.sum(axis=1)))) if n else 0.0
    return contribution, error


def matrix_attribution(consensus_ids: list[str], X: np.ndarray, C: np.ndarray, y: np.ndarray, kind: str,
                       params: dict, entry: dict, imputation: str, positive: str,
                       feature_set: str = SET) -> tuple[pl.DataFrame, dict]:
    """The split of one outcome's feature-matrix model: (``MATRIX_ATTRIBUTION`` table of the features the model
    uses, summary). ``X`` (n samples, p consensus features in ``consensus_ids`` order; log1p intensity, NaN where
    not measured) and ``C`` (n, covariates) as the models stage modelled them, ``y`` the encoded outcome (binary:
    1 = ``positive``), ``entry`` the set's summary entry (its ``regularisation_chosen`` is reused), ``imputation``
    the set's fill; ``feature_set`` the set's name (``table`` for ``ms2study model``'s table, whose columns stand
    for the consensus ids). An outcome whose model does not split (multiclass, a non-linear estimator) or whose
    split does not reproduce the model's scores gives an empty table with ``status: skipped`` and the reason."""
    empty = pl.DataFrame(schema=MATRIX_ATTRIBUTION)
    family = estimator_family(params)
    out: dict[str, Any] = {"feature_set": feature_set, "type": kind, "estimator": family, "n_samples": len(y)}
    if kind == "multiclass" or family not in LINEAR_FAMILIES:
        out.update(status="skipped", reason=("a multiclass model" if kind == "multiclass" else
                                             f"the estimator '{family}' is not linear")
                   + ": its score does not split over features")
        return empty, out
    strength = chosen_strength({"feature_sets": {feature_set: entry}}, kind, params, feature_set)
    recorded = strength is not None
    pre, model, strength = fit_embedding_model(X, C, y, kind, {**params, "imputation": {feature_set: imputation}},
                                               strength, feature_set)
    out["regularisation"] = ("default (no inner CV possible)" if strength is None else strength_label(strength)) + (
        " (the models stage's most frequent choice)" if recorded else " (chosen by inner CV on all samples)")
    contribution, error = split_score(pre, model, kind, X, C)
    out["max_split_error"] = error
    if error > 1e-6 * (1.0 + np.abs(contribution).sum(axis=1).max(initial=0.0)):
        out.update(status="skipped", reason=f"the fitted model is not affine in the features (split error {error:.3g})")
        return empty, out
    # a weight shrunk to rounding noise carries nothing (trial AT: 1e-16 counted as "carrying weight")
    scale = float(np.abs(contribution).max(initial=0.0))
    used = np.flatnonzero(np.any(np.abs(contribution) > 1e-9 * scale, axis=0)) if scale > 0 else np.zeros(0, int)
    values = contribution[:, used]
    positive_mean = reference_mean = None
    if kind == "binary":
        positive_mean, reference_mean = values[y == 1].mean(axis=0), values[y == 0].mean(axis=0)
        toward = positive_mean - reference_mean
        direction = [f"score toward {positive}" if v > 0 else f"score away from {positive}" for v in toward]
        values_used = X[:, used]
        with np.errstate(invalid="ignore"):
            difference = (np.nanmean(np.where(y[:, None] == 1, values_used, np.nan), axis=0)
                          - np.nanmean(np.where(y[:, None] == 0, values_used, np.nan), axis=0))
        units = f"log-odds of '{positive}' (difference between the classes' mean scores)"
    else:
        centred = y - y.mean()
        toward = centred @ (values - values.mean(axis=0)) / float(centred @ centred)
        direction = [f"score toward higher {positive}" if v > 0 else f"score toward lower {positive}" for v in toward]
        difference = np.array([_slope(X[:, j], y) for j in used])
        units = f"predicted '{positive}' per unit of '{positive}'"
    total = float(toward.sum())
    order = np.argsort(-np.abs(toward), kind="stable")
    rank = np.empty(len(used), dtype=np.int64)
    rank[order] = np.arange(1, len(used) + 1)
    table = pl.DataFrame({
        "consensus_id": [consensus_ids[j] for j in used], "contribution": toward,
        "share": toward / total if total else np.full(len(used), np.nan), "direction": direction,
        "value_difference": difference, "rank": rank,
        "contribution_positive": positive_mean, "contribution_reference": reference_mean,
        "n_measured": (~np.isnan(X[:, used])).sum(axis=0), "n_samples": np.full(len(used), len(y)),
    }, schema=MATRIX_ATTRIBUTION).sort("rank")
    absolute = np.abs(table["contribution"].to_numpy())
    half = int(np.searchsorted(np.cumsum(absolute), absolute.sum() / 2.0) + 1) if absolute.sum() else 0
    out.update(status="done", units=units, positive_class=positive, n_features=X.shape[1], n_used=len(used),
               score_difference=total, n_carrying_half=half)
    return table, out
