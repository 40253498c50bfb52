"""The learned combined score: logistic-regression weights over per-candidate features, stored beside an encoder.

The annotate stage scores each query/library candidate pair with cosine, modified cosine, entropy and (with a
trained encoder) embedding similarity. ``learn_combined`` turns these, plus the matched-peak evidence and the
precursor error, into one calibrated score: it reads a reference library, tags each spectrum with the encoder's
structure-disjoint split (``ms2study.encoder.splits.assign_split``, with the seed and fractions recorded in the model's
``config.json``), draws query spectra from the VALIDATION structures (the encoder never trained on them, so
their embedding similarities behave like those of new compounds; part of the queries are degraded like
low-concentration measurements, and every query's precursor m/z carries a measurement error, sd the tolerance / 4,
``ms2study.core.measurement``), takes every other train or validation spectrum of the same ion mode within
10 ppm as a candidate, labels a pair 1 when both share the first InChIKey block, and fits an L2-regularised
logistic regression (scikit-learn) on standardised feature DIFFERENCES between a true and a wrong candidate of
the same query (what decides a ranking), then calibrates scale and intercept on the labels. The standardisation
is folded back into the weights, so ``combined.json`` in the
model folder holds plain weights per raw feature and an intercept: the combined score is
``sigmoid(intercept + sum(weight_f * feature_f))``, a probability that the candidate is the same structure.
Two models are stored: one with the embedding feature (used when the query embeddings come from this encoder)
and a spectral-only one (queries without an embedding, and the target-decoy competition, where decoys have
no embeddings). Top-1 per score, cross-validated by structure over those queries, is stored with the weights.
Imports core, encoder and the identification modules below it.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

from ms2study.core.atomic import write_text
from ms2study.core.errors import InputError
from ms2study.core.measurement import error_sd_for_tolerance, measured_precursor
from ms2study.core.params import overlay
from ms2study.encoder import inference
from ms2study.encoder.checkpoints import model_split_settings
from ms2study.identification import engine
from ms2study.identification.combined import (
    COMBINED_FILE, FEATURES, FORMAT_NAME, FORMAT_VERSION, SPECTRAL_FEATURES, LearnedCombiner,
)
from ms2study.identification.reference import (
    LOW_CONCENTRATION_LEVELS, CandidatePairs, choose_query_rows, embed_queries, embed_rows, fixed_combined,
    query_set, read_reference, score_query_set, subset_pairs, top1_correct,
)
from ms2study.kernels.candidates import find_candidates

log = logging.getLogger(__name__)


DEFAULT_PARAMS: dict[str, Any] = {
    "seed": None,                      # split seed; None: the encoder's training seed (0 if not recorded)
    "fit_split": "val",                # encoder split the queries come from: val (never trained on) | train
    "max_structures": 4000,            # structures of that split used as queries (seeded draw)
    "queries_per_structure": 6,        # distinct spectra per structure used as queries (val has ~12 each)
    "degraded_fraction": 0.5,          # share of queries degraded (random level >= 1)
    "cv_folds": 5,                     # folds (by structure) of the stored cross-validated metrics
    "min_queries": 20,                 # queries with a true and a wrong candidate needed to fit at all
    "precursor_tolerance_ppm": 10.0,   # candidate window
    "C": 1.0,                          # inverse L2 strength of the logistic regression
    "pairs_per_query": 25,             # sampled (true, wrong) candidate pairs per training query
    "licenses": "model",               # "model": the encoder's training licenses; null: all; or a list
    "embed": {},                       # embed stage parameters (device, batch_size, precision); model is set
    "scoring": {},                     # annotate stage scoring parameters (fragment tolerance, ...)
}


class NotEnoughData(InputError):
    """The library holds too little to learn weights from (too few structures, or no query with both a true and a
    wrong candidate); ``learn-combined --optional`` turns it into a warning."""


def merge_params(params: dict | None) -> dict[str, Any]:
    """DEFAULT_PARAMS with ``params`` merged over them; unknown keys raise InputError naming the key."""
    return overlay(params, DEFAULT_PARAMS, "learn-combined")


def _fit(pairs: CandidatePairs, names: tuple[str, ...], c: float, seed: int, per_query: int = 25,
         min_queries: int = 1) -> dict:
    """Ranking weights from pairwise differences (true minus wrong candidate of one query), then calibrated.

    Annotation ranks the candidates of one query, so the weights are fitted on what decides a ranking: a
    logistic regression without intercept on feature differences between a true and a wrong candidate of the
    same query (up to ``per_query`` sampled pairs each). A one-dimensional logistic fit of the labels on the
    resulting linear score then gives scale and intercept, so the combined score reads as a probability.
    """
    from sklearn.linear_model import LogisticRegression

    x = np.column_stack([np.nan_to_num(pairs.features[f], nan=0.0) for f in names])
    mean, scale = x.mean(axis=0), x.std(axis=0)
    scale = np.where(scale > 0, scale, 1.0)
    xs = (x - mean) / scale
    rng = np.random.default_rng(seed)
    diffs = []
    for q in range(pairs.offsets.size - 1):
        a, b = int(pairs.offsets[q]), int(pairs.offsets[q + 1])
        pos = a + np.flatnonzero(pairs.label[a:b])
        neg = a + np.flatnonzero(~pairs.label[a:b])
        if pos.size and neg.size:
            k = min(per_query, pos.size * neg.size)
            diffs.append(xs[rng.choice(pos, k)] - xs[rng.choice(neg, k)])
    if len(diffs) < max(1, min_queries):
        raise NotEnoughData(f"only {len(diffs)} queries have both a true and a wrong candidate (at least "
                            f"{max(1, min_queries)} needed): too little to learn a ranking from",
                            fix="use a library with several spectra per structure and isomers or near-isobaric "
                                "compounds")
    d = np.vstack(diffs)
    ranker = LogisticRegression(C=c, fit_intercept=False, max_iter=2000, random_state=seed)
    ranker.fit(np.vstack([d, -d]), np.r_[np.ones(d.shape[0]), np.zeros(d.shape[0])].astype(int))
    w_std = ranker.coef_[0]
    z = xs @ w_std
    calibrator = LogisticRegression(C=1e6, max_iter=2000).fit(z[:, None], pairs.label.astype(int))
    slope, b0 = float(calibrator.coef_[0, 0]), float(calibrator.intercept_[0])
    slope = slope if slope > 0 else 1.0  # the ranking fixes the sign; calibration only scales it
    w = slope * w_std / scale
    b = b0 - slope * float(np.sum(w_std * mean / scale))
    return {"features": list(names), "weights": [float(v) for v in w], "intercept": float(b),
            "n_ranking_pairs": int(d.shape[0])}


def _cross_validated_top1(pairs: CandidatePairs, blocks: np.ndarray, clean: np.ndarray, p: dict, seed: int,
                          weights: dict[str, float]) -> dict[str, Any]:
    """Top-1 per score on the clean queries, the learned scores fitted without the query's structure (k folds)."""
    folds = max(2, int(p["cv_folds"]))
    unique = np.unique(blocks)
    fold_of_block = dict(zip(unique, np.random.default_rng(seed).permutation(unique.size) % folds))
    fold = np.asarray([fold_of_block[b] for b in blocks])
    learned = np.full(pairs.label.size, np.nan)
    learned_spectral = np.full(pairs.label.size, np.nan)
    q_of = np.repeat(np.arange(blocks.size), np.diff(pairs.offsets))
    for k in range(folds):
        train_q = np.flatnonzero(fold != k)
        try:
            m_emb = _fit(subset_pairs(pairs, train_q), FEATURES, float(p["C"]), seed, int(p["pairs_per_query"]))
            m_spec = _fit(subset_pairs(pairs, train_q), SPECTRAL_FEATURES, float(p["C"]), seed, int(p["pairs_per_query"]))
        except NotEnoughData:
            continue  # a fold without a query that has both a true and a wrong candidate
        combiner = LearnedCombiner(model_id="cv", models={"with_embedding": m_emb, "spectral": m_spec})
        here = fold[q_of] == k
        feats = {f: v[here] for f, v in pairs.features.items()}
        learned[here] = combiner.score(feats)
        learned_spectral[here] = combiner.score(feats, use_embedding=False)
    candidates = {
        **{k: pairs.scores[k] for k in ("cosine", "modified_cosine", "entropy", "embedding")},
        "fixed_default": fixed_combined(pairs, weights, True),
        "learned_spectral": learned_spectral,
        "learned": learned,
    }
    metrics: dict[str, Any] = {}
    sel = clean
    for name, s in candidates.items():
        answerable, correct, _ = top1_correct(pairs, s)  # answerable does not depend on the score
        sel = answerable & clean
        metrics[name] = float(correct[sel].mean()) if sel.any() else None
    metrics["n_queries_answerable"] = int(sel.sum())
    metrics["folds"] = folds
    return metrics


def learn_combined(library_paths: list[str | Path], model_dir: str | Path, params: dict | None = None,
                   cleaning: dict | None = None) -> dict:
    """Fit the combined score's weights on structures the encoder did not train on; write ``combined.json``.

    Stacking: the embedding similarity of structures the encoder was trained on is overconfident (it has seen
    them), so weights fitted there trust it too much. By default the queries come from the encoder's
    validation split (never trained on) and their candidates from the train and validation splits; the
    encoder's test split is never touched. The stored metrics are cross-validated by structure within those
    queries. ``cleaning``: the ``clean_peaks`` parameters of the library spectra (the config's ``cleaning``
    section, as for sample spectra and the index; None: the library defaults).
    """
    p = merge_params(params)
    if p["fit_split"] not in ("val", "train"):
        raise InputError(f"learn-combined fit_split {p['fit_split']!r} is not known", fix="use 'val' or 'train'")
    started = time.perf_counter()
    model_dir = Path(model_dir)
    split = model_split_settings(model_dir)
    if p["seed"] is not None:
        split["seed"] = int(p["seed"])
    if p["licenses"] != "model":
        split["licenses"] = p["licenses"]
    embed_params = {**(p["embed"] or {}), "model": str(model_dir)}
    _model, info, _device = inference.get_model(embed_params)
    if not info["trained"]:
        raise InputError("the encoder in this folder is untrained: its embedding similarity must not be weighted",
                         file=str(model_dir), fix="train it first with 'ms2study train'")
    ref = read_reference(library_paths, split, cleaning)
    seed = int(split["seed"])
    rng = np.random.default_rng(seed)
    part = p["fit_split"]
    allowed = ref.licensed & (ref.split == "train") if part == "train" else ref.licensed & (ref.split != "test")
    allowed &= ref.split != ""
    q_rows = choose_query_rows(ref, part, int(p["max_structures"]), int(p["queries_per_structure"]), rng)
    n_structures = int(np.unique(ref.block[q_rows]).size)
    if n_structures < 10:
        raise NotEnoughData(
            f"only {n_structures} structures of the encoder's '{part}' split in the library: too few to learn from",
            file=", ".join(map(str, library_paths)),
            fix="use the library the encoder was trained on, or an encoder trained with a larger val_fraction")
    levels = [LOW_CONCENTRATION_LEVELS[0] if rng.random() >= float(p["degraded_fraction"])
              else LOW_CONCENTRATION_LEVELS[int(rng.integers(1, len(LOW_CONCENTRATION_LEVELS)))] for _ in q_rows]
    queries = query_set(ref, q_rows, levels, seed + 1)
    ppm = float(p["precursor_tolerance_ppm"])
    # the queries as measured: a precursor error (sd: the tolerance / 4) as a sample spectrum carries one, so the
    # embedding weight is learned on embeddings of measured precursors (ms2study.core.measurement)
    queries = dataclasses.replace(queries, precursor_mz=measured_precursor(
        queries.precursor_mz, error_sd_for_tolerance(ppm), np.random.default_rng(seed + 3)))
    # Only library rows that are some query's candidate need an embedding.
    _off, pre_cand = find_candidates(queries.precursor_mz, queries.ion_mode,
                                              np.asarray(ref.index.precursor_mz), np.asarray(ref.index.ion_mode),
                                              ppm, None)
    need = np.unique(pre_cand)
    lib_emb = np.zeros((len(ref.index), int(_model.config.dim)), dtype=np.float32)
    if need.size:
        lib_emb[need] = embed_rows(ref, need, embed_params)
    q_emb = embed_queries(queries, embed_params)
    pairs = score_query_set(ref, queries, allowed, p["scoring"], q_emb, lib_emb, ppm)
    models = {
        "with_embedding": _fit(pairs, FEATURES, float(p["C"]), seed, int(p["pairs_per_query"]),
                               int(p["min_queries"])),
        "spectral": _fit(pairs, SPECTRAL_FEATURES, float(p["C"]), seed, int(p["pairs_per_query"]),
                         int(p["min_queries"])),
    }
    clean = np.asarray([lv["level"] == 0 for lv in levels], dtype=bool)
    metrics = _cross_validated_top1(pairs, ref.block[q_rows], clean, p, seed, engine.DEFAULT_PARAMS["weights"])
    record = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "model_id": info["model_id"],
        "score": "sigmoid(intercept + sum(weight * feature)); 'with_embedding' when the query has an embedding "
                 "from this encoder, else 'spectral'",
        "models": models,
        "feature_definitions": {
            "cosine": "greedy cosine (annotate fragment tolerance), clipped to [0, 1]",
            "modified_cosine": "modified cosine, clipped to [0, 1]",
            "entropy": "spectral entropy similarity, clipped to [0, 1]",
            "embedding": "cosine of the encoder embeddings, clipped to [0, 1]",
            "matched_fraction": "cosine-matched peaks / query peaks",
            "log_matched_peaks": "log(1 + cosine-matched peaks)",
            "abs_ppm_error": "|query - library precursor m/z| / library precursor m/z * 1e6",
        },
        "training_data": {
            "library": [str(x) for x in library_paths],
            "split": {**split, "part": part,
                      "rule": "ms2study.encoder.splits.assign_split on the first InChIKey block"},
            "why_this_split": ("the encoder never trained on its validation structures, so their embedding "
                               "similarities are as trustworthy as on new compounds" if part == "val" else
                               "the encoder's own training structures: the embedding weight comes out too high"),
            "n_structures": n_structures,
            "n_queries": int(q_rows.size),
            "n_degraded_queries": int((~clean).sum()),
            "degradation_levels": LOW_CONCENTRATION_LEVELS,
            "candidates": (f"same ion mode, within {ppm} ppm, licensed spectra of the "
                           f"{'train' if part == 'train' else 'train and validation'} split(s) except the query"),
            "n_pairs": int(pairs.label.size),
            "n_positive_pairs": int(pairs.label.sum()),
            "label": "same first InChIKey block",
        },
        "params": p,
        "validation_top1": metrics,
        "validation": f"top-1 on the clean queries, learned scores {metrics['folds']}-fold cross-validated by "
                      "structure",
        "seconds": round(time.perf_counter() - started, 1),
        "hardware": {"machine": platform.machine(), "python": platform.python_version()},
    }
    write_text(json.dumps(record, indent=2) + "\n", model_dir / COMBINED_FILE)
    log.info("learned combined score for %s from %d pairs: cross-validated top-1 %s", info["model_id"],
             pairs.label.size, metrics)
    return record
