"""One outcome modelled on every feature set: the nested cross-validation of each set (with the covariates riding
along, and modelled alone as the baseline to beat), its metrics with bootstrap intervals and a label-permutation
p-value from the identical procedure, and the rows of the metrics and predictions tables. (An AUC's interval is the
hull of the bootstrap interval and Newcombe's score interval: ``metrics.summarise_metric``.)

Imports the other ``modelling`` modules; writes nothing (the models stage writes the tables).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import polars as pl

from ms2study.core.paths import family_permutations, permutation_budget
from ms2study.modelling.crossval import cross_validate
from ms2study.modelling.estimators import estimator_family, strength_label
from ms2study.modelling.featuresets import align_rows
from ms2study.modelling.matrix_attribution import SET as MATRIX_SET
from ms2study.modelling.matrix_attribution import matrix_attribution
from ms2study.modelling.metrics import (
    CHANCE,
    PRIMARY_METRIC,
    SECONDARY_METRICS,
    bootstrap_weights,
    finite_or_none,
    metric_values,
    pooled_auc,
    summarise_metric,
)
from ms2study.modelling.outcomes import check_outcome, covariate_matrix, encode_outcome, too_few_samples
from ms2study.modelling.subjects import SUBJECT_COLUMN, varies_within, within_blocks

log = logging.getLogger(__name__)



# Why a configured feature set can be absent (a note in summary.json and the report).
MISSING_SET_REASONS = {
    "chemical_space": "no bags of chemistry were given (the pipeline computes them when models.feature_sets "
                      "lists chemical_space; by hand: 'ms2study prototypes', 'ms2study chemistry', then "
                      "'ms2study models --sample-chemistry')",
    "features": "no feature matrix was given",
    "binned_spectra": "no spectra tables were given",
    "embedding": "no sample embeddings were given",
}


def model_outcome(samples: pl.DataFrame, feature_sets: dict[str, pl.DataFrame], spec: dict, params: dict,
                  note_missing_sets: bool = True, skip_reason: str | None = None,
                  blocks: Mapping[str, str] | None = None) -> dict:
    """Nested CV of one outcome on every feature set: returns summary, metrics rows and prediction rows, and under
    ``explained`` the split of the feature-matrix model over its features (``modelling.matrix_attribution``: a
    (table, summary) pair; None when that set was not modelled). With
    ``skip_reason`` nothing is modelled: the summary says why, without sample or class counts. ``blocks``: each
    row's subject in a paired design (``modelling.multilevel``: sets already centred within subjects): the splits
    keep a subject's rows together, permutations stay within subjects, the bootstrap resamples subjects, and
    covariates and imputations other than the mean are not used."""
    spec = check_outcome(spec)
    kind = spec["type"]
    if skip_reason:  # the sheet's rows are not the units such an outcome compares: no counts, nothing encoded
        log.warning("outcome %s skipped: %s", spec["column"], skip_reason)
        return {"summary": {"outcome": spec["column"], "type": kind, "classes": [], "n_samples": None,
                            "positive_class": spec.get("positive_class"), "excluded_missing_outcome": [],
                            "primary_metric": PRIMARY_METRIC[kind], "chance": CHANCE[PRIMARY_METRIC[kind]],
                            "feature_sets": {}, "notes": [], "status": "skipped", "reason": skip_reason},
                "metrics": [], "predictions": []}
    target = encode_outcome(samples, spec)
    summary: dict[str, Any] = {
        "outcome": spec["column"], "type": kind, "classes": target["classes"],
        "positive_class": target["positive_class"], "n_samples": len(target["sample_ids"]),
        "excluded_missing_outcome": target["excluded_missing_outcome"],
        "primary_metric": PRIMARY_METRIC[kind], "chance": CHANCE[PRIMARY_METRIC[kind]], "feature_sets": {},
        "notes": list(target.get("notes", [])),
    }
    if target.get("excluded_small_class"):
        summary["excluded_small_class"] = target["excluded_small_class"]
    if kind != "continuous":
        # one class left (a trial: {"M": 0} beside 183 samples, its one class coded 1 as the positive one)
        summary["class_counts"] = ({target["classes"][0]: len(target["y"])} if len(target["classes"]) == 1 else
                                   {c: int(n) for c, n in zip(target["classes"], np.bincount(
                                       target["y"], minlength=len(target["classes"])))})
    reason = too_few_samples(target, kind)
    if reason:
        summary.update(status="skipped", reason=reason)
        log.warning("outcome %s skipped: %s", spec["column"], reason)
        return {"summary": summary, "metrics": [], "predictions": []}
    y = target["y"]
    ids = target["sample_ids"]
    groups = np.asarray([blocks[s] for s in ids]) if blocks else None
    covariates = [c for c in params["covariates"] if c != spec["column"]]
    if len(covariates) < len(params["covariates"]):  # before the paired branch empties the list (trial AQ)
        summary["notes"].append(f"covariate '{spec['column']}' is this outcome itself: left out of its models")
    if groups is not None:
        summary["paired_by"], summary["n_subjects"] = SUBJECT_COLUMN, int(np.unique(groups).size)
        varying = [c for c in covariates if varies_within(samples, ids, groups, c)]
        fixed = [c for c in covariates if c not in varying]
        if fixed:
            summary["notes"].append(f"covariates ({', '.join(fixed)}) are left out of this paired model: they are the "
                                    "same in all of a subject's runs, so the within-subject comparison has them fixed")
        if varying:  # a run-level covariate (trial AQ: osmolality per urine sample) was dropped with a false reason
            summary["notes"].append(f"covariates ({', '.join(varying)}) differ between a subject's runs, and this "
                                    "paired model does not adjust for them (no within-subject adjustment is "
                                    "implemented): what differs with them within subjects may show as the outcome's")
        covariates = []
    C, covariate_names = covariate_matrix(samples, ids, covariates)
    if covariates:
        summary["covariates"] = covariate_names
        summary["covariate_weight"] = float(params["covariate_weight"])
        lacking = [s for s, row in zip(ids, C) if np.isnan(row).any()]
        if lacking:  # the differential tests leave these samples out instead: say how the models differ
            summary["notes"].append(
                f"{len(lacking)} sample(s) lack a covariate value ({', '.join(lacking[:10])}): the models keep them "
                "and fill the value with the training samples' mean inside each fold (the differential tests leave "
                "them out)")
    feature_sets = dict(feature_sets)
    if covariate_names:
        # The covariates alone: the baseline that every set (which also holds them) has to beat.
        feature_sets["covariates"] = pl.DataFrame({"sample_id": ids})
    summary["estimator"] = estimator_family(params)
    boot = bootstrap_weights(y, kind, int(params["n_bootstrap"]), int(params["seed"]), groups)
    # The same permutations for every feature set, so their p-values are paired.
    rng = np.random.default_rng(int(params["seed"]) + 1)
    metrics_rows: list[dict] = []
    prediction_rows: list[dict] = []
    wanted = list(params["feature_sets"]) + (["covariates"] if covariate_names and "covariates" not in
                                             params["feature_sets"] else [])
    order = [n for n in wanted if n in feature_sets]
    n_permutations = permutation_budget(params["n_permutations"], len(y))
    summary["n_permutations"] = n_permutations
    # Every set draws the permutations the adjustment for choosing among them reads; a lone set needs none.
    # (the covariates-alone baseline is not among the sets chosen from: adjust_for_the_choice)
    candidates = [n for n in order if n != "covariates"]
    family = family_permutations(n_permutations, int(params.get("permutation_stop_after", 0))) \
        if len(candidates) > 1 else 0
    permutations = [within_blocks(len(y), groups, rng) for _ in range(n_permutations)]
    for name in wanted if note_missing_sets else []:
        if name not in feature_sets:
            summary["notes"].append(f"feature set '{name}' is not available"
                                    + (f": {MISSING_SET_REASONS[name]}" if name in MISSING_SET_REASONS else ""))
    explained = None  # (table, summary) of the feature-matrix model's split, when that set is modelled
    for name in order:
        started = time.perf_counter()
        X, columns, empty = align_rows(feature_sets[name], ids, name)
        if name == "covariates" and covariate_names:
            X, columns, empty = np.empty((len(ids), 0)), [], []
        elif not columns or len(empty) == len(ids):
            summary["notes"].append(f"feature set '{name}' has no values for these samples")
            continue
        # centred within subjects, values are no longer log intensities: the training mean fills them
        imputation = params["imputation"].get(name, "mean") if groups is None else "mean"
        # Covariates ride along as the last columns; the preprocessing treats them apart (see preprocessor).
        own = X
        X = np.hstack([X, C])
        entry, rows, cv = _evaluate_set(name, X, y, kind, imputation, params, C.shape[1], empty, boot, permutations,
                                        summary["notes"], family, groups)
        metrics_rows.extend(rows)
        scores = cv["scores"]
        if cv["chosen"]:
            values, counts = np.unique([strength_label(v) for v in cv["chosen"]], return_counts=True)
            entry["regularisation_chosen"] = {str(v): int(c) for v, c in zip(values, counts)}
        entry["seconds"] = round(time.perf_counter() - started, 3)
        summary["feature_sets"][name] = entry
        if name in (MATRIX_SET, "table"):  # what the feature-matrix model looks at (modelling.matrix_attribution)
            explained = matrix_attribution(columns, own, C, y, kind, params, entry, imputation,
                                           target["positive_class"] if kind == "binary" else spec["column"], name)
            explained[1]["paired_by"] = summary.get("paired_by")  # the model compares a subject's runs
        prediction_rows.extend(_prediction_rows(name, ids, y, scores, cv["fold"], kind, target["classes"]))
        log.info("outcome %s, %s: %s = %s [%s, %s], p = %s (%.1f s)", spec["column"], name, entry["metric"],
                 format_metric(entry["value"]), format_metric(entry["ci_low"]), format_metric(entry["ci_high"]),
                 entry["permutation_p"], entry["seconds"])
    adjust_for_the_choice(summary, family)
    summary["status"] = "done" if summary["feature_sets"] else "skipped"
    if not summary["feature_sets"]:
        summary["reason"] = "no feature set had values for the samples"
    return {"summary": summary, "metrics": metrics_rows, "predictions": prediction_rows, "explained": explained}


def _evaluate_set(name: str, X: np.ndarray, y: np.ndarray, kind: str, imputation: str, params: dict,
                  n_cov: int, empty: list[str], boot: np.ndarray, permutations: list[np.ndarray],
                  notes: list[str], family: int, groups: np.ndarray | None = None
                  ) -> tuple[dict[str, Any], list[dict], dict]:
    """Nested CV of one feature set (X: samples x (columns + ``n_cov`` covariates); ``empty``: its samples without
    any value) with its metrics: returns (the set's summary entry, its metrics rows, the cross-validation). A note
    on coarse fold-wise metrics is added to ``notes`` once."""
    cv = cross_validate(X, y, kind, imputation, params, n_covariates=n_cov, groups=groups)
    scores = cv["scores"]
    if kind != "continuous" and np.bincount(y).min() < 2 * cv["k"] and not any("coarse" in n for n in notes):
        notes.append(
            f"some test folds hold a single sample of a class ({cv['k']} folds, smallest class "
            f"{int(np.bincount(y).min())}): fold-wise metrics are coarse and their bootstrap interval can collapse "
            "(e.g. to [1, 1]); the AUC's and balanced accuracy's intervals are therefore widened to at least a "
            "score interval for these class sizes (Newcombe's for the AUC, Wilson's per class recall combined by "
            "MOVER for balanced accuracy), which keeps their width at perfect separation; the "
            "permutation p-value tests whether a model beats chance, the interval says how precisely its value is "
            "known")
    n_features = X.shape[1] - n_cov
    entry: dict[str, Any] = {"n_samples": len(y), "n_features": n_features, "n_covariates": n_cov,
                             "imputation": imputation, "samples_without_values": empty, "outer_splits": cv["k"],
                             "outer_repeats": int(params["outer_repeats"])}
    rows = []
    for metric in [PRIMARY_METRIC[kind], *SECONDARY_METRICS[kind]]:
        stats = summarise_metric(metric, y, scores, cv["fold"], boot, float(params["ci_level"]), int(params["seed"]))
        primary = metric == PRIMARY_METRIC[kind]
        p_value = None
        if primary and permutations:
            test = permutation_p_value(X, y, kind, imputation, params, n_cov, metric, cv, permutations, family,
                                       groups)
            p_value = test["p"]
            entry.update(permutation_null_mean=test["null_mean"], permutations_drawn=test["drawn"],
                         permutations_reaching=test["reaching"], permutations_stopped_early=test["stopped_early"],
                         permutation_observed=test["observed"], permutation_null=test["null"])
        if primary:
            entry.update(metric=metric, value=stats["value"], ci_low=stats["ci_low"], ci_high=stats["ci_high"],
                         permutation_p=p_value)
            if metric == "roc_auc":  # how the samples rank as a whole (modeltext.pooled_auc_clause)
                entry["pooled_auc"] = [finite_or_none(round(v, 4)) for v in pooled_auc(y, scores)]
            if "ci_score" in stats:  # an AUC: the two intervals whose hull ci_low, ci_high are
                entry.update(ci_bootstrap=stats["ci_bootstrap"], ci_score=stats["ci_score"])
            if "ci_corrected_t" in stats:  # R², MAE: likewise (metrics.corrected_t_interval)
                entry.update(ci_bootstrap=stats["ci_bootstrap"], ci_corrected_t=stats["ci_corrected_t"])
        else:
            entry.setdefault("secondary", {})[metric] = {k: stats[k] for k in ("value", "ci_low", "ci_high")}
        rows.append({
            "feature_set": name, "metric": metric, "primary": primary, "value": stats["value"],
            "ci_low": stats["ci_low"], "ci_high": stats["ci_high"], "permutation_p": p_value,
            "n_samples": len(y), "n_features": n_features, "outer_splits": cv["k"],
            "outer_repeats": int(params["outer_repeats"]), "per_repeat": stats["per_repeat"],
        })
    return entry, rows, cv


def sequential_permutation_p(observed: float, null_statistic: Callable[[int], float], max_permutations: int,
                             stop_after: int, min_draws: int = 0) -> dict[str, Any]:
    """Sequential Monte Carlo p-value (Besag & Clifford 1991, Biometrika 78:301-304) of an observed statistic.

    ``null_statistic(i)`` returns the statistic on the i-th permutation (i = 0, 1, ...). Permutations are drawn
    until ``stop_after`` of them reach the observed value (>= observed - 1e-12), then p = stop_after / drawn; or
    until ``max_permutations`` are drawn, then p = (1 + reaching) / (1 + max_permutations) (Phipson & Smyth 2010,
    Stat Appl Genet Mol Biol 9:39), so the resolution stays 1 / (max_permutations + 1). Both are valid p-values
    (P(p <= a) <= a under exchangeability); stopping early only spends fewer permutations where the p-value is
    clearly large (at least stop_after / max_permutations). ``stop_after`` 0 never stops early; nor does drawing
    stop before ``min_draws`` permutations (the ones the adjustment over feature sets reads, ``family_adjusted_p``).
    Returns {"p": float, "drawn": int, "reaching": int, "stopped_early": bool, "null_mean": float | None,
    "null": list of the statistics drawn, in order}.
    Raises ValueError when max_permutations < 1 or stop_after < 0."""
    if max_permutations < 1 or stop_after < 0:
        raise ValueError(f"max_permutations must be >= 1 and stop_after >= 0 (got {max_permutations}, {stop_after})")
    null: list[float] = []
    reaching = 0
    for i in range(max_permutations):
        value = float(null_statistic(i))
        null.append(value)
        reaching += bool(value >= observed - 1e-12)
        if stop_after and reaching >= stop_after and min_draws <= len(null) < max_permutations:
            return {"p": reaching / len(null), "drawn": len(null), "reaching": reaching, "stopped_early": True,
                    "null_mean": finite_or_none(np.mean(null)), "null": null}
    return {"p": (1 + reaching) / (1 + len(null)), "drawn": len(null), "reaching": reaching, "stopped_early": False,
            "null_mean": finite_or_none(np.mean(null)), "null": null}


def permutation_p_value(X: np.ndarray, y: np.ndarray, kind: str, imputation: str, params: dict, n_cov: int,
                        metric: str, cv: dict, permutations: list[np.ndarray], min_draws: int = 0,
                        groups: np.ndarray | None = None) -> dict[str, Any]:
    """Label-permutation p-value of ``metric`` for a cross-validation ``cv`` of (X, y), as
    ``sequential_permutation_p`` returns it (p, drawn, reaching, stopped_early, null_mean, null), with the
    ``observed`` statistic; at least ``min_draws`` permutations are drawn.

    The statistic tested is the first repeat's out-of-fold metric; the null reruns the identical nested procedure
    (one repeat, same seed) on the permutations of the labels (index arrays of len(y)), in order, at most all of
    them, stopping after ``params["permutation_stop_after"]`` reach the observed value."""
    observed = metric_values(metric, y, cv["scores"][0], cv["fold"][0])[0]

    def null_statistic(i: int) -> float:
        permuted = y[permutations[i]]
        shuffled = cross_validate(X, permuted, kind, imputation, params, n_repeats=1, n_covariates=n_cov,
                                  groups=groups)
        return metric_values(metric, permuted, shuffled["scores"][0], shuffled["fold"][0])[0]

    test = sequential_permutation_p(observed, null_statistic, len(permutations),
                                    int(params.get("permutation_stop_after", 0)), min_draws)
    return {**test, "observed": float(observed)}


def family_adjusted_p(observed: dict[str, float], nulls: dict[str, list[float]], m: int) -> dict[str, dict]:
    """P-values adjusted for choosing among feature sets: Westfall & Young's (1993, Resampling-Based Multiple
    Testing, Wiley, ch. 2) single-step max-statistic over the sets, on their first ``m`` shared label permutations.

    ``observed``: each set's observed statistic (higher is better, all on one metric); ``nulls``: each set's null
    statistics, permutation by permutation, the same permutations for every set, at least ``m`` each. For each
    permutation b < m the largest null statistic over the sets, M_b; set k's adjusted p is
    (1 + #{b: M_b >= observed_k}) / (1 + m) (Phipson & Smyth 2010), which controls the family-wise error over the
    sets (strong control under subset pivotality). With one metric the sets' null distributions are alike, and it
    is then less conservative than Bonferroni, the more so the more the sets' statistics are correlated (a set whose
    null scatters much wider than the others' can make it more conservative). A null statistic that is not finite counts as not reaching. Returns {set: {"p": float,
    "reaching": int}}; {} when m < 1. Raises ValueError when a set has fewer than m null statistics."""
    if m < 1 or not observed:
        return {}
    short = [k for k in observed if len(nulls[k]) < m]
    if short:
        raise ValueError(f"feature sets {short} drew fewer than the {m} permutations the adjustment reads")
    table = np.array([[v if np.isfinite(v) else -np.inf for v in nulls[k][:m]] for k in observed], dtype=float)
    largest = table.max(axis=0)
    out = {}
    for k, value in observed.items():
        reaching = int(np.sum(largest >= value - 1e-12))
        out[k] = {"p": (1 + reaching) / (1 + m), "reaching": reaching}
    return out


def adjust_for_the_choice(summary: dict, m: int) -> None:
    """Adds to each feature set of ``summary`` with a permutation p its ``permutation_p_adjusted`` (the larger of
    ``family_adjusted_p``'s over the sets on the first ``m`` permutations and the set's own p, so never below it)
    and ``permutations_reaching_adjusted``, and to the summary ``p_adjustment`` (method, permutations, sets); the
    null statistics are dropped from the entries; the observed statistic stays (``permutation_observed``, the first
    repeat's score that p tests, which the report names beside the mean over repeats). The covariates-alone
    baseline (set ``covariates``) is left out of the family: it is what a verdict is checked against, not a
    candidate for "the measurements predict" (trial V: an uninformative covariate raised a set's p from 0.0099 to
    0.024, unsaid). Nothing when fewer than two sets have permutations."""
    entries = {k: e for k, e in summary["feature_sets"].items() if e.get("permutation_p") is not None}
    observed = {k: float(e["permutation_observed"]) for k, e in entries.items()}
    nulls = {k: e.pop("permutation_null") for k, e in entries.items()}
    for k, e in entries.items():  # as summary.json can hold it (an undefined score: null)
        e["permutation_observed"] = finite_or_none(observed[k])
    entries = {k: e for k, e in entries.items() if k != "covariates"}
    observed = {k: v for k, v in observed.items() if k in entries}
    if len(entries) < 2 or m < 1:
        return
    for k, result in family_adjusted_p(observed, nulls, m).items():
        entries[k]["permutation_p_adjusted"] = max(result["p"], float(entries[k]["permutation_p"]))
        entries[k]["permutations_reaching_adjusted"] = result["reaching"]
    summary["p_adjustment"] = {"method": "max-statistic over the feature sets (Westfall & Young 1993)",
                               "permutations": m, "feature_sets": len(entries)}


def format_metric(value: float | None) -> str:
    """A metric value as printed in logs and the CLI: three decimals, "NA" for None."""
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
