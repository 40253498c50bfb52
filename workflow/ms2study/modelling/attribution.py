"""What the embedding model looks at: each consensus feature's contribution to the linear outcome model on pooled
spectrum embeddings.

A sample's pooled embedding is a weighted sum of its features' spectrum embeddings (``modelling.pooling``):
x_s = sum_f a_{s,f} e_f, with a_{s,f} the feature's pooling weight (its abundance share w_{s,f} for
``abundance_share``, divided by the pooled vector's norm when ``normalize`` is set). Everything the models stage
puts between x_s and the model's score (imputation, scaling, the univariate filter, a linear estimator) is affine
for a sample with an embedding, so the score is f(x_s) = f(mu) + g . (x_s - mu), with mu the study's mean pooled
embedding and g the model's gradient in the embedding space. That splits exactly into per-feature terms,

    contribution_{s,f} = g . (a_{s,f} e_f - w_{s,f} mu),      sum_f contribution_{s,f} = f(x_s) - f(mu),

the linear decomposition of a linear model's output over its inputs (as in SHAP's linear explainer with the
study mean as background: Lundberg & Lee 2017, NeurIPS), pushed through the pooling sum. Units: log-odds of the
positive class for a binary outcome (a positive contribution pushes the sample toward the positive class), the
outcome's unit for a continuous one. ``g`` is read off the fitted pipeline numerically (one evaluation per
embedding dimension; exact for an affine map) and the split is checked against the model's own scores.

Per consensus feature (``feature_links``; 0 in a sample where the feature was not pooled), the table
(``ATTRIBUTION``) holds how much the feature moves the score toward the positive class: its mean contribution in the
positive class minus that in the other class, so the features' values add up exactly to the difference between the
classes' mean scores (continuous outcomes: the slope of the contribution on the outcome, adding up to the slope of
the score). The plain mean over all samples is kept as ``contribution_mean``, but it ranks poorly: a feature pooled
at the same share in every sample adds the same constant to every score and separates nothing (on the demo study,
ranking by it put 4 of the 15 planted lipids in the top 20, against 7 by the class difference). Also: direction,
rank by absolute size, the class means, and the feature's accepted identification. Multiclass outcomes and
non-linear estimators (random forest), whose score does not split over features, get permutation importance on the
models stage's folds instead (``modelling.importance``; column ``method``): ``contribution`` is then the increase
of the out-of-fold loss (Brier score, or 1 - R²) when the feature's part of the test samples' vectors is permuted,
``importance_sd`` its spread, and there is no direction. Imports ``core`` and other ``modelling`` modules.
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

import numpy as np
import polars as pl
from sklearn.exceptions import ConvergenceWarning
from threadpoolctl import threadpool_limits

from ms2study.core.errors import InputError
from ms2study.modelling.crossval import fit_nested
from ms2study.modelling.differential import accepted_identifications
from ms2study.modelling.estimators import estimator_family, make_estimator, strength_grid, strength_label
from ms2study.modelling.featuresets import align_rows, embedding_feature_set
from ms2study.modelling.importance import permutation_importance
from ms2study.modelling.outcomes import check_outcome, covariate_matrix, encode_outcome, too_few_samples
from ms2study.modelling.pooling import check_sample_tables, merge_params, per_feature_means, without_excluded
from ms2study.modelling.preprocessing import preprocessor

log = logging.getLogger(__name__)

ATTRIBUTION: dict[str, pl.DataType] = {
    "consensus_id": pl.Utf8,
    "mz": pl.Float64,
    "rt_s": pl.Float64,
    # binary: mean contribution in the positive class minus in the other (> 0: toward the positive class);
    # continuous: slope of the contribution on the outcome (per unit of the outcome)
    "contribution": pl.Float64,
    "direction": pl.Utf8,                  # the model's score, not abundance: "toward <positive class>" / "away from ..."
    "rank": pl.Int32,                      # 1 = largest |contribution|
    "name": pl.Utf8,                       # the accepted identification (null when none)
    "inchikey": pl.Utf8,
    "msi_level": pl.Int8,
    "contribution_mean": pl.Float64,       # mean over all modelled samples (0 where not pooled)
    "contribution_positive": pl.Float64,   # binary: mean over the positive class's samples
    "contribution_reference": pl.Float64,  # binary: mean over the other class's samples
    "n_samples": pl.Int32,                 # samples in which the feature was pooled
    "method": pl.Utf8,                     # linear_split | permutation (modelling.importance)
    "importance_sd": pl.Float64,           # permutation: sd of the metric's drop over shuffles and repeats
}
LINEAR_FAMILIES = ("elastic_net", "linear", "svm_linear")
SET = "embedding"


def pooling_terms(embeddings: pl.DataFrame, spectra: pl.DataFrame, features: pl.DataFrame | None, sample_id: str,
                  pool_params: dict | None) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    """How the pool stage built one sample's vector, per pooled unit: (keys, a (u,), w (u,), E (u, dim)).

    Keys are feature ids (or ``spectrum:<id>`` for an unmapped spectrum pooled alone); the pooled vector is
    ``a @ E``; ``w`` (sums to 1) is each unit's share of the pooling weight. Per-spectrum methods (``weighted_mean``,
    ``mean``) are summed per feature. Raises InputError for ``max_abs`` (not a weighted sum: nothing to split) and
    for the tables ``pooling.pool_sample`` refuses. A sample without usable spectra gives empty arrays."""
    p = merge_params(pool_params)
    method = str(p["method"])
    if method == "max_abs":
        raise InputError("pool method 'max_abs' is not a weighted sum of spectrum embeddings: no attribution",
                         sample=sample_id, fix="use pool: method: abundance_share (the default) to attribute")
    check_sample_tables(embeddings, spectra, sample_id)
    embeddings = without_excluded(embeddings, features)
    rows = embeddings.join(spectra.select("spectrum_id", pl.col("precursor_intensity").cast(pl.Float64)),
                           on="spectrum_id", how="left")
    usable = rows.filter(pl.col("embedding").is_not_null())
    if p["mapped_only"]:
        usable = usable.filter(pl.col("feature_id").is_not_null())
    if usable.height == 0:
        return [], np.zeros(0), np.zeros(0), np.zeros((0, 0))
    matrix = np.stack(usable["embedding"].to_list()).astype(np.float64)
    keys = usable.select(pl.coalesce("feature_id", pl.lit("spectrum:") + pl.col("spectrum_id"))).to_series()
    unique, inverse = np.unique(keys.to_numpy().astype(str), return_inverse=True)
    if method == "abundance_share":
        source = p["abundance"]
        if source == "auto":
            source = "feature_intensity" if features is not None else "precursor_intensity"
        E, weights, _ = per_feature_means(usable, matrix, str(source), features, sample_id)
    else:
        if method == "weighted_mean":
            spectrum_w = np.log1p(np.clip(usable["precursor_intensity"].fill_null(0.0).fill_nan(0.0).to_numpy(),
                                          0.0, None))
        else:
            spectrum_w = np.ones(usable.height)
        if spectrum_w.sum() <= 0:
            spectrum_w = np.ones(usable.height)
        weights = np.bincount(inverse, weights=spectrum_w, minlength=len(unique))
        sums = np.zeros((len(unique), matrix.shape[1]))
        np.add.at(sums, inverse, spectrum_w[:, None] * matrix)
        E = sums / np.where(weights > 0, weights, 1.0)[:, None]
    if weights.sum() <= 0:  # the pool stage then pools with equal weights
        weights = np.ones(len(unique))
    share = weights / weights.sum()
    coefficient = share.copy()
    if p["normalize"]:
        norm = np.linalg.norm(share @ E)
        coefficient = share / norm if norm > 0 else share
    return [str(k) for k in unique], coefficient, share, E


def chosen_strength(summary: dict, kind: str, params: dict, feature_set: str = SET) -> Any | None:
    """The regularisation the models stage chose most often for ``feature_set`` (its ``regularisation_chosen``
    counts over the outer folds; ties go to the strongest), as a grid value; None when the summary records none."""
    counts = ((summary.get("feature_sets") or {}).get(feature_set) or {}).get("regularisation_chosen") or {}
    if not counts:
        return None
    grid = strength_grid(kind, params)
    labels = [strength_label(g) for g in grid]
    best = max(counts.values())
    for value, label in zip(grid, labels):
        if counts.get(label) == best:
            return value
    return None


def modelled(summary: dict, feature_set: str = SET) -> tuple[dict, str, str | None]:
    """The models stage's ``params`` in its ``summary`` (summary.json of one outcome), the estimator family, and why
    ``feature_set``'s model cannot be explained (the stage did not model it) or None. Raises InputError when the
    summary lacks the params."""
    params = summary.get("params")
    if not isinstance(params, dict):
        raise InputError("the models summary has no 'params'", fix="rerun the models stage")
    reason = None
    if summary.get("status") != "done" or feature_set not in (summary.get("feature_sets") or {}):
        reason = (f"the models stage did not model the '{feature_set}' set of this outcome "
                  f"({summary.get('reason', '')})")
    return params, estimator_family(params), reason


def model_score(model: Any, Z: np.ndarray, kind: str) -> np.ndarray:
    """The fitted model's score of the preprocessed rows Z (m, columns): shape (m,); the prediction for a
    continuous outcome, else the decision function (log-odds of the last class for a logistic model)."""
    if kind == "continuous":
        return np.asarray(model.predict(Z), dtype=np.float64)
    return np.asarray(model.decision_function(Z), dtype=np.float64).reshape(len(Z), -1)[:, -1]


def fit_embedding_model(X: np.ndarray, C: np.ndarray, y: np.ndarray, kind: str, params: dict,
                        strength: Any | None, feature_set: str = SET) -> tuple[Any, Any, Any]:
    """The models stage's pipeline for ``feature_set`` (the embedding set unless given; its imputation from the
    models' ``imputation``) fitted on all samples: (preprocessor, model, strength). ``strength`` None: chosen by the
    same inner CV as the models stage (``crossval.fit_nested``)."""
    imputation = (params.get("imputation") or {}).get(feature_set, "mean")
    XC = np.hstack([X, C])
    with warnings.catch_warnings(), threadpool_limits(limits=1):
        warnings.simplefilter("ignore", ConvergenceWarning)
        if strength is None:
            pre, model, chosen = fit_nested(XC, y, kind, imputation, params, int(params["seed"]), C.shape[1])
            return pre, model, chosen
        pre = preprocessor(imputation, params, X.shape[1], C.shape[1], kind).fit(XC, y)
        model = make_estimator(kind, strength, params, int(params["seed"])).fit(pre.transform(XC), y)
    return pre, model, strength


def embedding_gradient(pre: Any, model: Any, kind: str, mu: np.ndarray, c_mean: np.ndarray) -> tuple[np.ndarray,
                                                                                                        float]:
    """(g (dim,), f(mu)): the fitted score's gradient in the embedding space at the study mean, by unit steps along
    each dimension (exact for the affine pipelines of the linear families)."""
    dim = len(mu)
    rows = np.tile(np.concatenate([mu, c_mean]), (dim + 1, 1))
    rows[np.arange(1, dim + 1), np.arange(dim)] += 1.0
    f = model_score(model, pre.transform(rows), kind)
    return f[1:] - f[0], float(f[0])


def attribute(samples: pl.DataFrame, spec: dict, summary: dict, pooled: pl.DataFrame,
              terms: dict[str, tuple[list[str], np.ndarray, np.ndarray, np.ndarray]], links: pl.DataFrame,
              feature_matrix: pl.DataFrame, identifications: pl.DataFrame | None) -> tuple[pl.DataFrame, dict]:
    """Contributions of every consensus feature to one outcome's embedding model: (``ATTRIBUTION`` table, summary).

    ``summary``: the models stage's summary.json of the outcome (its ``params`` are the models' settings; its
    chosen regularisation is reused). ``pooled``: the samples' pooled embeddings (sample_id, embedding).
    ``terms``: ``pooling_terms`` per sample. ``links``: consensus_id, sample_id, feature_id. ``feature_matrix``:
    consensus_id, mz, rt_s. An outcome that cannot be attributed gives an empty table and the reason in the
    summary's ``status``/``reason``. Raises InputError when the recomputed pooling does not match the stored pooled
    embeddings (the pool settings changed since) or the summary lacks the models' params."""
    spec = check_outcome(spec)
    kind = spec["type"]
    out: dict[str, Any] = {"outcome": spec["column"], "type": kind, "feature_set": SET, "notes": []}
    empty = pl.DataFrame(schema=ATTRIBUTION)
    params, family, reason = modelled(summary)
    out["estimator"] = family
    target = encode_outcome(samples, spec)
    if reason is None:
        reason = too_few_samples(target, kind)
    if reason:
        out.update(status="skipped", reason=reason)
        return empty, out
    ids, y = target["sample_ids"], target["y"]
    X, _, _ = align_rows(embedding_feature_set(pooled), ids, SET)
    covariates = [c for c in params.get("covariates") or [] if c != spec["column"]]
    C, _ = covariate_matrix(samples, ids, covariates)
    link_map = dict(zip(zip(links["sample_id"].cast(pl.Utf8).to_list(), links["feature_id"].cast(pl.Utf8).to_list()),
                        links["consensus_id"].cast(pl.Utf8).to_list()))
    if kind == "multiclass" or family not in LINEAR_FAMILIES:
        out["method"] = "permutation"
        out["notes"].append(("multiclass outcome" if kind == "multiclass" else f"estimator '{family}' is not linear")
                            + ": the score does not split over features; permutation importance on the models "
                              "stage's folds instead (modelling.importance)")
        return _permutation_table(ids, X, C, y, kind, params, terms, link_map, feature_matrix, identifications, out)
    out["method"] = "linear_split"
    strength = chosen_strength(summary, kind, params)
    recorded = strength is not None
    pre, model, strength = fit_embedding_model(X, C, y, kind, params, strength)
    out["regularisation"] = ("default (no inner CV possible)" if strength is None else strength_label(strength)) + (
        " (the models stage's most frequent choice)" if recorded else " (chosen by inner CV on all samples)")
    mu = np.nanmean(X, axis=0)
    c_mean = np.nanmean(C, axis=0) if C.shape[1] else np.zeros(0)
    g, f_mu = embedding_gradient(pre, model, kind, mu, np.nan_to_num(c_mean))
    # The split must reproduce the model's own scores, and the recomputed pooling the stored pooled vectors.
    per_sample: dict[str, dict[str, float]] = {}
    residual, unlinked = 0.0, 0.0
    for i, s in enumerate(ids):
        keys, a, w, E = terms.get(s, ([], np.zeros(0), np.zeros(0), np.zeros((0, 0))))
        if not keys or not np.isfinite(X[i]).all():
            continue
        _check_pooling(a, E, X[i], s)
        contribution = (a[:, None] * E - w[:, None] * mu) @ g
        XC = np.concatenate([X[i], C[i]])
        row_mu = np.concatenate([mu, C[i]])
        f_s, f_base = model_score(model, pre.transform(np.vstack([XC, row_mu])), kind)
        residual = max(residual, abs(f_s - f_base - contribution.sum()))
        mapped: dict[str, float] = {}
        for key, value in zip(keys, contribution):
            consensus = link_map.get((s, key))
            if consensus is None:
                unlinked += abs(value)
                continue
            mapped[consensus] = mapped.get(consensus, 0.0) + float(value)
        per_sample[s] = mapped
    out["max_split_error"] = residual
    if residual > 1e-6 * (1.0 + np.abs(g).sum()):
        out.update(status="skipped", reason=f"the fitted model is not affine in the embedding (split error "
                                            f"{residual:.3g})")
        return empty, out
    positive = target["positive_class"] if kind == "binary" else spec["column"]
    table = _consensus_table(per_sample, ids, y, kind, positive, feature_matrix, identifications)
    out.update(status="done", n_samples=len(ids), positive_class=target.get("positive_class"),
               classes=target.get("classes"), baseline_score=f_mu, unlinked_abs_contribution=unlinked,
               units=(f"log-odds of '{positive}' (difference between the classes' means)" if kind == "binary"
                      else f"predicted '{positive}' per unit of '{positive}'"),
               n_features=table.height)
    return table, out


def _check_pooling(a: np.ndarray, E: np.ndarray, x: np.ndarray, sample: str) -> None:
    if not np.allclose(a @ E, x, rtol=1e-3, atol=1e-5):
        raise InputError("the pooled embedding differs from the pooling recomputed from its spectra", sample=sample,
                         fix="rerun the study (ms2study run): the sample embeddings and the feature intensities "
                             "given to attribution must come from one pooling (pool, or pool_corrected with the "
                             "corrected intensities), with the current pool settings")


def _permutation_table(ids: list[str], X: np.ndarray, C: np.ndarray, y: np.ndarray, kind: str, params: dict,
                       terms: dict, link_map: dict, feature_matrix: pl.DataFrame,
                       identifications: pl.DataFrame | None, out: dict) -> tuple[pl.DataFrame, dict]:
    """Permutation importance (``modelling.importance``) of the consensus features as an ``ATTRIBUTION`` table."""
    sample_terms: list[dict[str, np.ndarray]] = []
    unlinked = 0
    for i, s in enumerate(ids):
        keys, a, _w, E = terms.get(s, ([], np.zeros(0), np.zeros(0), np.zeros((0, 0))))
        mapped: dict[str, np.ndarray] = {}
        if keys and np.isfinite(X[i]).all():
            _check_pooling(a, E, X[i], s)
            for key, coefficient, vector in zip(keys, a, E):
                consensus = link_map.get((s, key))
                if consensus is None:
                    unlinked += 1
                    continue
                mapped[consensus] = mapped.get(consensus, 0.0) + coefficient * vector
        sample_terms.append(mapped)
    result = permutation_importance(X, C, y, kind, params, sample_terms, seed=int(params["seed"]))
    consensus = result["consensus_ids"]
    importance = result["importance"]
    order = np.argsort(-importance, kind="stable")
    rank = np.empty(len(consensus), dtype=np.int64)
    rank[order] = np.arange(1, len(consensus) + 1)
    present = np.array([sum(c in t for t in sample_terms) for c in consensus], dtype=np.int64)
    frame = pl.DataFrame({"consensus_id": consensus, "contribution": importance, "rank": rank,
                          "n_samples": present, "importance_sd": result["importance_sd"]})
    table = _attribution_table(frame.with_columns(pl.lit("permutation").alias("method")), feature_matrix,
                               identifications)
    out.update(status="done", n_samples=len(ids), loss=result["loss"], baseline_loss=result["baseline"],
               n_evaluations=result["n_evaluations"], unlinked_terms=unlinked, n_features=table.height,
               units=f"increase of the out-of-fold {result['loss']} when the feature is permuted within test folds")
    return table, out


def _attribution_table(frame: pl.DataFrame, feature_matrix: pl.DataFrame,
                       identifications: pl.DataFrame | None) -> pl.DataFrame:
    """``frame`` (consensus_id and the values of one method) with each feature's m/z, RT and accepted
    identification, as an ``ATTRIBUTION`` table (absent columns null) sorted by rank."""
    keys = feature_matrix.select(pl.col("consensus_id").cast(pl.Utf8), pl.col("mz").cast(pl.Float64),
                                 pl.col("rt_s").cast(pl.Float64))
    ident = accepted_identifications(identifications).select("consensus_id", "name", "inchikey", "msi_level")
    frame = frame.join(keys, on="consensus_id", how="left").join(ident, on="consensus_id", how="left")
    return frame.select([pl.col(c).cast(t) if c in frame.columns else pl.lit(None, dtype=t).alias(c)
                         for c, t in ATTRIBUTION.items()]).sort("rank")


def _consensus_table(per_sample: dict[str, dict[str, float]], ids: list[str], y: np.ndarray, kind: str,
                     label: str, feature_matrix: pl.DataFrame, identifications: pl.DataFrame | None) -> pl.DataFrame:
    consensus = sorted({c for mapped in per_sample.values() for c in mapped})
    index = {c: j for j, c in enumerate(consensus)}
    values = np.zeros((len(ids), len(consensus)))
    present = np.zeros((len(ids), len(consensus)), dtype=bool)
    for i, s in enumerate(ids):
        for c, v in per_sample.get(s, {}).items():
            values[i, index[c]] = v
            present[i, index[c]] = True
    mean = values.mean(axis=0) if len(ids) else np.zeros(len(consensus))
    positive_mean = reference_mean = None
    if kind == "binary":
        positive_mean, reference_mean = values[y == 1].mean(axis=0), values[y == 0].mean(axis=0)
        toward = positive_mean - reference_mean
        direction = [f"toward {label}" if v > 0 else f"away from {label}" for v in toward]
    else:
        centred = y - y.mean()
        toward = centred @ (values - mean) / float(centred @ centred)
        direction = [f"toward higher {label}" if v > 0 else f"toward lower {label}" for v in toward]
    order = np.argsort(-np.abs(toward), kind="stable")
    rank = np.empty(len(consensus), dtype=np.int64)
    rank[order] = np.arange(1, len(consensus) + 1)
    frame = pl.DataFrame({
        "consensus_id": consensus, "contribution": toward, "direction": direction, "rank": rank,
        "contribution_mean": mean, "contribution_positive": positive_mean, "contribution_reference": reference_mean,
        "n_samples": present.sum(axis=0),
    }, schema_overrides={"contribution_positive": pl.Float64, "contribution_reference": pl.Float64})
    return _attribution_table(frame.with_columns(pl.lit("linear_split").alias("method")), feature_matrix,
                              identifications)

