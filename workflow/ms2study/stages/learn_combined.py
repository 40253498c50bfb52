"""The learned combined score: logistic-regression weights over per-candidate features, stored beside an encoder.

The annotate stage scores each query/library candidate pair with cosine, modified cosine, entropy and (with a
trained encoder) embedding similarity. ``learn_combined`` turns these, plus the matched-peak evidence and the
precursor error, into one calibrated score: it reads a reference library, tags each spectrum with the encoder's
structure-disjoint split (``ms2study.stages.train.assign_split``, with the seed and fractions recorded in the model's
``config.json``), draws query spectra from the VALIDATION structures (the encoder never trained on them, so
their embedding similarities behave like those of new compounds; part of the queries are degraded like
low-concentration measurements), takes every other train or validation spectrum of the same ion mode within
10 ppm as a candidate, labels a pair 1 when both share the first InChIKey block, and fits an L2-regularised
logistic regression (scikit-learn) on standardised feature DIFFERENCES between a true and a wrong candidate of
the same query (what decides a ranking), then calibrates scale and intercept on the labels. The standardisation
is folded back into the weights, so ``combined.json`` in the
model folder holds plain weights per raw feature and an intercept: the combined score is
``sigmoid(intercept + sum(weight_f * feature_f))``, a probability that the candidate is the same structure.
Two models are stored: one with the embedding feature (used when the query embeddings come from this encoder)
and a spectral-only one (queries without an embedding, and the target-decoy competition, where decoys have
no embeddings). Top-1 per score, cross-validated by structure over those queries, is stored with the weights.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from ms2study.core.atomic import write_text
from ms2study.core.errors import InputError
from ms2study.core.params import overlay

log = logging.getLogger(__name__)

COMBINED_FILE = "combined.json"
FORMAT_NAME = "ms2study-combined-score"
FORMAT_VERSION = 1

# Per-candidate features, in the order of the stored weights.
FEATURES = (
    "cosine", "modified_cosine", "entropy", "embedding",
    "matched_fraction",      # cosine-matched peaks / query peaks
    "log_matched_peaks",     # log(1 + cosine-matched peaks)
    "abs_ppm_error",         # |precursor error| in ppm
)
SPECTRAL_FEATURES = tuple(f for f in FEATURES if f != "embedding")

# Degradation levels mimicking ever lower concentrations: peaks under a rising relative-intensity floor vanish,
# random noise peaks appear near that floor, intensities scatter more (log-normal sigma).
LOW_CONCENTRATION_LEVELS: list[dict[str, float]] = [
    {"level": 0, "floor": 0.0, "noise_peaks": 0, "jitter": 0.0},
    {"level": 1, "floor": 0.01, "noise_peaks": 2, "jitter": 0.1},
    {"level": 2, "floor": 0.03, "noise_peaks": 5, "jitter": 0.2},
    {"level": 3, "floor": 0.08, "noise_peaks": 10, "jitter": 0.3},
    {"level": 4, "floor": 0.15, "noise_peaks": 20, "jitter": 0.4},
]

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
    "embed": {},                       # ms2study.stages.embed parameters (device, batch_size, precision); model is set
    "scoring": {},                     # ms2study.stages.annotate scoring parameters (fragment tolerance, ...)
}


class NotEnoughData(InputError):
    """The library holds too little to learn weights from (too few structures, or no query with both a true and a
    wrong candidate); ``learn-combined --optional`` turns it into a warning."""


def merge_params(params: dict | None) -> dict[str, Any]:
    """DEFAULT_PARAMS with ``params`` merged over them; unknown keys raise InputError naming the key."""
    return overlay(params, DEFAULT_PARAMS, "learn-combined")


# ------------------------------------------------------------------------------------------ features


def candidate_features(
    scores: dict[str, np.ndarray], query_peaks: np.ndarray, ppm_error: np.ndarray
) -> dict[str, np.ndarray]:
    """The features of FEATURES for candidate pairs, from ``annotate.score_pairs`` output.

    ``query_peaks`` is the query's peak count per pair, ``ppm_error`` the precursor error per pair.
    Scores are clipped to [0, 1] (negative embedding cosines carry no more evidence than 0).
    """
    matched = np.asarray(scores["matched_peaks"], dtype=np.float64)
    return {
        "cosine": np.clip(np.asarray(scores["cosine"], dtype=np.float64), 0.0, 1.0),
        "modified_cosine": np.clip(np.asarray(scores["modified_cosine"], dtype=np.float64), 0.0, 1.0),
        "entropy": np.clip(np.asarray(scores["entropy"], dtype=np.float64), 0.0, 1.0),
        "embedding": np.clip(np.asarray(scores["embedding"], dtype=np.float64), 0.0, 1.0),
        "matched_fraction": matched / np.maximum(np.asarray(query_peaks, dtype=np.float64), 1.0),
        "log_matched_peaks": np.log1p(matched),
        "abs_ppm_error": np.abs(np.asarray(ppm_error, dtype=np.float64)),
    }


@dataclass
class LearnedCombiner:
    """Weights read from a ``combined.json``: ``models[name] = {features, weights, intercept}``."""

    model_id: str
    models: dict[str, dict[str, Any]]
    path: Path | None = None
    record: dict[str, Any] = field(default_factory=dict)

    def _linear(self, name: str, features: dict[str, np.ndarray]) -> np.ndarray:
        m = self.models[name]
        z = np.full(np.asarray(features["cosine"]).shape[0], float(m["intercept"]))
        for f, w in zip(m["features"], m["weights"]):
            z = z + float(w) * np.nan_to_num(np.asarray(features[f], dtype=np.float64), nan=0.0)
        return 1.0 / (1.0 + np.exp(-z))

    def score(self, features: dict[str, np.ndarray], use_embedding: bool = True) -> np.ndarray:
        """Probability-like combined score per pair; pairs without a finite embedding use the spectral model."""
        spectral = self._linear("spectral", features)
        if not use_embedding or "with_embedding" not in self.models:
            return spectral
        has = np.isfinite(np.asarray(features["embedding"], dtype=np.float64))
        if not has.any():
            return spectral
        return np.where(has, self._linear("with_embedding", features), spectral)


def load_combined(model_dir: str | Path | None) -> LearnedCombiner | None:
    """The learned weights stored in ``model_dir/combined.json``, or None when there are none."""
    if model_dir is None:
        return None
    path = Path(model_dir) / COMBINED_FILE
    if not path.is_file():
        return None
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise InputError(f"{COMBINED_FILE} is not valid JSON ({err})", file=str(path),
                         fix="run 'ms2study learn-combined' again for this model") from err
    if meta.get("format") != FORMAT_NAME or meta.get("format_version") != FORMAT_VERSION:
        raise InputError(f"{COMBINED_FILE} has format {meta.get('format')!r} v{meta.get('format_version')!r}, "
                         f"expected {FORMAT_NAME!r} v{FORMAT_VERSION}", file=str(path),
                         fix="run 'ms2study learn-combined' again for this model")
    models = meta.get("models", {})
    for name, m in models.items():
        if len(m.get("features", [])) != len(m.get("weights", [])) or set(m["features"]) - set(FEATURES):
            raise InputError(f"{COMBINED_FILE}: model '{name}' has inconsistent features/weights", file=str(path))
    if "spectral" not in models:
        raise InputError(f"{COMBINED_FILE} lacks the 'spectral' model", file=str(path))
    return LearnedCombiner(model_id=str(meta.get("model_id")), models=models, path=path, record=meta)


# ------------------------------------------------------------------------------------ reference data


@dataclass
class Reference:
    """A cleaned reference library in memory, with structure keys and the encoder's split per spectrum."""

    index: Any                  # ms2study.library.index.LibraryIndex (in memory)
    block: np.ndarray           # first InChIKey block per spectrum ("" when unknown)
    formula: np.ndarray         # formula per spectrum ("" when unknown)
    split: np.ndarray           # train / val / test ("" when no InChIKey)
    licensed: np.ndarray        # bool: license allowed
    n_skipped: int


def model_split_settings(model_dir: str | Path | None) -> dict[str, Any]:
    """Seed, fractions and licenses of the encoder's training split, from its ``config.json`` (defaults else)."""
    from ms2study.stages import train

    out = {k: train.DEFAULT_PARAMS[k] for k in ("seed", "val_fraction", "test_fraction", "licenses")}
    if model_dir is not None and (Path(model_dir) / "config.json").is_file():
        meta = json.loads((Path(model_dir) / "config.json").read_text(encoding="utf-8"))
        recorded = (meta.get("training") or {}).get("params") or {}
        out.update({k: recorded[k] for k in out if k in recorded})
    return out


def read_reference(library_paths: list[str | Path], split: dict[str, Any], cleaning: dict | None = None) -> Reference:
    """Read and clean library files (library stage cleaning) and tag each spectrum with its structure split."""
    from ms2study.stages import train
    from ms2study.library.index import LibraryIndex, ReadReport, build_library, read_library_file

    report = ReadReport()
    entries = (raw for path in library_paths for raw in read_library_file(path, report))
    built = build_library(entries, {"cleaning": cleaning} if cleaning else None, report=report)
    meta = built.metadata
    block = meta["inchikey"].str.slice(0, 14).fill_null("").to_numpy().astype(str)
    formula = meta["formula"].fill_null("").to_numpy().astype(str)
    cache: dict[str, str] = {}
    labels = np.empty(block.size, dtype=object)
    for i, b in enumerate(block):
        if not b:
            labels[i] = ""
            continue
        if b not in cache:
            cache[b] = train.assign_split(b, int(split["seed"]), float(split["val_fraction"]),
                                          float(split["test_fraction"]))
        labels[i] = cache[b]
    licenses = split.get("licenses")
    licensed = (meta["license"].is_in(list(licenses)).fill_null(False).to_numpy() if licenses is not None
                else np.ones(block.size, dtype=bool))
    index = LibraryIndex(path=Path("."), metadata=meta, precursor_mz=built.precursor_mz, ion_mode=built.ion_mode,
                         offsets=built.offsets, mz=built.mz, intensity=built.intensity,
                         manifest={"params": {"cleaning": cleaning or {}}})
    return Reference(index, block, formula, labels.astype(str), licensed, len(report.skipped))


def degrade(
    mz: np.ndarray, intensity: np.ndarray, precursor_mz: float, level: dict[str, float], rng: np.random.Generator,
    margin_da: float = 1.6,
) -> tuple[np.ndarray, np.ndarray]:
    """A lower-concentration copy of a cleaned spectrum (see LOW_CONCENTRATION_LEVELS); m/z order kept."""
    mz = np.asarray(mz, dtype=np.float64)
    inten = np.asarray(intensity, dtype=np.float64)
    if mz.size == 0:
        return mz, inten.astype(np.float32)
    base = float(inten.max())
    if level["jitter"] > 0:
        inten = inten * np.exp(rng.normal(0.0, level["jitter"], inten.size))
    keep = inten >= level["floor"] * base
    keep[np.argmax(inten)] = True  # the base peak survives any floor: a spectrum was still acquired
    mz, inten = mz[keep], inten[keep]
    k = int(level["noise_peaks"])
    if k:
        high = max(precursor_mz - margin_da, 60.0) if math.isfinite(precursor_mz) else float(mz.max()) + 10.0
        noise_mz = rng.uniform(50.0, high, k)
        noise_int = rng.uniform(max(level["floor"], 0.005), max(2.0 * level["floor"], 0.02), k) * base
        mz = np.concatenate([mz, noise_mz])
        inten = np.concatenate([inten, noise_int])
    order = np.argsort(mz, kind="stable")
    return mz[order], inten[order].astype(np.float32)


def query_set(ref: Reference, rows: np.ndarray, levels: list[dict[str, float]] | None, seed: int) -> Any:
    """Query spectra (``annotate.FlatSpectra``) from reference rows, each degraded at ``levels[i]`` when given."""
    from ms2study.stages.annotate import FlatSpectra

    rng = np.random.default_rng(seed)
    idx = ref.index
    mzs, ints = [], []
    for i, r in enumerate(rows):
        a, b = int(idx.offsets[r]), int(idx.offsets[r + 1])
        m, x = idx.mz[a:b], idx.intensity[a:b]
        if levels is not None and levels[i]["level"] > 0:
            m, x = degrade(m, x, float(idx.precursor_mz[r]), levels[i], rng)
        mzs.append(np.asarray(m, dtype=np.float64))
        ints.append(np.asarray(x, dtype=np.float32))
    offsets = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum([m.size for m in mzs], out=offsets[1:])
    return FlatSpectra(offsets=offsets, mz=np.concatenate(mzs) if mzs else np.zeros(0),
                       intensity=np.concatenate(ints) if ints else np.zeros(0, dtype=np.float32),
                       precursor_mz=np.asarray(idx.precursor_mz)[rows].astype(np.float64),
                       ion_mode=np.asarray(idx.ion_mode)[rows].astype(np.int8), rows=np.asarray(rows, dtype=np.int64))


@dataclass
class CandidatePairs:
    """Scored candidate pairs of a query set (CSR by query) with their features and labels."""

    offsets: np.ndarray
    lib_rows: np.ndarray
    scores: dict[str, np.ndarray]
    features: dict[str, np.ndarray]
    label: np.ndarray            # same first InChIKey block as the query


def score_query_set(
    ref: Reference,
    queries: Any,
    allowed: np.ndarray,
    scoring_params: dict,
    q_emb: np.ndarray | None = None,
    lib_emb: np.ndarray | None = None,
    ppm: float = 10.0,
) -> CandidatePairs:
    """Candidates (same ion mode, ``ppm`` window, ``allowed`` library rows, never the query's own spectrum), scored."""
    from ms2study.stages import annotate

    p = annotate.merge_params({**scoring_params, "embedding_model": None, "confidence": "none"})
    idx = ref.index
    offsets, cand = annotate.find_candidates(queries.precursor_mz, queries.ion_mode, np.asarray(idx.precursor_mz),
                                             np.asarray(idx.ion_mode), ppm, None)
    q_of = np.repeat(np.arange(queries.precursor_mz.size), np.diff(offsets))
    keep = allowed[cand] & (cand != queries.rows[q_of])
    cand, q_of = cand[keep], q_of[keep]
    offsets = np.zeros(queries.precursor_mz.size + 1, dtype=np.int64)
    np.cumsum(np.bincount(q_of, minlength=queries.precursor_mz.size), out=offsets[1:])
    lib = annotate.prepare_library(idx, p)
    lib.embeddings = lib_emb
    scores = annotate.score_pairs(queries, lib, offsets, cand, p, q_emb)
    l_prec = np.asarray(idx.precursor_mz)[cand]
    ppm_error = (queries.precursor_mz[q_of] - l_prec) / l_prec * 1e6
    q_peaks = np.diff(queries.offsets)[q_of]
    feats = candidate_features(scores, q_peaks, ppm_error)
    label = ref.block[cand] == ref.block[queries.rows[q_of]]
    return CandidatePairs(offsets, cand, scores, feats, label)


def embed_rows(ref: Reference, rows: np.ndarray, embed_params: dict) -> np.ndarray:
    """Encoder embeddings (L2-normalised, float32) of reference rows ``rows``."""
    from ms2study.stages import embed

    idx = ref.index
    counts = np.diff(idx.offsets)[rows]
    offsets = np.zeros(rows.size + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    sel = np.concatenate([np.arange(idx.offsets[r], idx.offsets[r + 1]) for r in rows]) if rows.size else np.zeros(
        0, dtype=np.int64)
    emb, _has, _info = embed.embed_arrays(idx.mz[sel], idx.intensity[sel], offsets, idx.precursor_mz[rows],
                                          embed_params)
    return emb


def embed_queries(queries: Any, embed_params: dict) -> np.ndarray:
    from ms2study.stages import embed

    emb, has, _info = embed.embed_arrays(queries.mz, queries.intensity, queries.offsets, queries.precursor_mz,
                                         embed_params)
    emb = emb.astype(np.float32)
    emb[~has] = np.nan
    return emb


def top1_correct(pairs: CandidatePairs, score: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per query: (has an answer among candidates, top-1 is correct, top-1 score); ties go to the first candidate."""
    n = pairs.offsets.size - 1
    answerable = np.zeros(n, dtype=bool)
    correct = np.zeros(n, dtype=bool)
    best = np.full(n, np.nan)
    s = np.nan_to_num(np.asarray(score, dtype=np.float64), nan=-np.inf)
    for q in range(n):
        a, b = pairs.offsets[q], pairs.offsets[q + 1]
        if b <= a:
            continue
        answerable[q] = pairs.label[a:b].any()
        k = a + int(np.argmax(s[a:b]))
        correct[q] = pairs.label[k]
        best[q] = s[k]
    return answerable, correct, best


def fixed_combined(pairs: CandidatePairs, weights: dict[str, float], use_embedding: bool) -> np.ndarray:
    """The documented fixed-weight combined score (annotate.combined_score), embedding term only if allowed."""
    from ms2study.stages import annotate

    w = {k: v for k, v in weights.items() if use_embedding or k != "embedding"}
    return annotate.combined_score(pairs.scores, w)


# ----------------------------------------------------------------------------------------- learning


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


def _choose_queries(ref: Reference, part: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """One spectrum per structure of split ``part`` (licensed, with peaks), at most ``n`` structures."""
    rows = np.flatnonzero((ref.split == part) & ref.licensed & (np.diff(ref.index.offsets) > 0))
    rows = rows[rng.permutation(rows.size)]
    _, first = np.unique(ref.block[rows], return_index=True)
    chosen = rows[np.sort(first)]
    return np.sort(chosen[: int(n)])


def _choose_query_rows(ref: Reference, part: str, n_structures: int, per_structure: int,
                       rng: np.random.Generator) -> np.ndarray:
    """Up to ``per_structure`` distinct spectra of each of at most ``n_structures`` structures of split ``part``."""
    rows = np.flatnonzero((ref.split == part) & ref.licensed & (np.diff(ref.index.offsets) > 0))
    rows = rows[rng.permutation(rows.size)]
    blocks = ref.block[rows]
    order = np.argsort(blocks, kind="stable")
    rows, blocks = rows[order], blocks[order]
    starts = np.flatnonzero(np.r_[True, blocks[1:] != blocks[:-1]])
    rank = np.arange(rows.size) - np.repeat(starts, np.diff(np.r_[starts, rows.size]))
    keep_blocks = np.unique(blocks)
    if keep_blocks.size > n_structures:
        keep_blocks = np.sort(rng.choice(keep_blocks, int(n_structures), replace=False))
    chosen = rows[(rank < int(per_structure)) & np.isin(blocks, keep_blocks)]
    return np.sort(chosen)


def _subset(pairs: CandidatePairs, queries: np.ndarray) -> CandidatePairs:
    """The candidate pairs of the queries ``queries`` (indices into the query set), in that order."""
    spans = [np.arange(pairs.offsets[q], pairs.offsets[q + 1]) for q in queries]
    take = np.concatenate(spans) if spans else np.zeros(0, dtype=np.int64)
    offsets = np.zeros(len(spans) + 1, dtype=np.int64)
    np.cumsum([s.size for s in spans], out=offsets[1:])
    return CandidatePairs(offsets, pairs.lib_rows[take], {k: v[take] for k, v in pairs.scores.items()},
                          {k: v[take] for k, v in pairs.features.items()}, pairs.label[take])


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
            m_emb = _fit(_subset(pairs, train_q), FEATURES, float(p["C"]), seed, int(p["pairs_per_query"]))
            m_spec = _fit(_subset(pairs, train_q), SPECTRAL_FEATURES, float(p["C"]), seed, int(p["pairs_per_query"]))
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


def learn_combined(library_paths: list[str | Path], model_dir: str | Path, params: dict | None = None) -> dict:
    """Fit the combined score's weights on structures the encoder did not train on; write ``combined.json``.

    Stacking: the embedding similarity of structures the encoder was trained on is overconfident (it has seen
    them), so weights fitted there trust it too much. By default the queries come from the encoder's
    validation split (never trained on) and their candidates from the train and validation splits; the
    encoder's test split is never touched. The stored metrics are cross-validated by structure within those
    queries.
    """
    from ms2study.stages import annotate
    from ms2study.stages import embed

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
    _model, info, _device = embed.get_model(embed_params)
    if not info["trained"]:
        raise InputError("the encoder in this folder is untrained: its embedding similarity must not be weighted",
                         file=str(model_dir), fix="train it first with 'ms2study train'")
    ref = read_reference(library_paths, split)
    seed = int(split["seed"])
    rng = np.random.default_rng(seed)
    part = p["fit_split"]
    allowed = ref.licensed & (ref.split == "train") if part == "train" else ref.licensed & (ref.split != "test")
    allowed &= ref.split != ""
    q_rows = _choose_query_rows(ref, part, int(p["max_structures"]), int(p["queries_per_structure"]), rng)
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
    # Only library rows that are some query's candidate need an embedding.
    _off, pre_cand = annotate.find_candidates(queries.precursor_mz, queries.ion_mode,
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
    metrics = _cross_validated_top1(pairs, ref.block[q_rows], clean, p, seed, annotate.DEFAULT_PARAMS["weights"])
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
                      "rule": "ms2study.stages.train.assign_split on the first InChIKey block"},
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


# ---------------------------------------------------------------------------------------------- CLI


def _cli_learn(args: argparse.Namespace) -> int:
    from ms2study.core.params import load_params

    for path in args.library:
        if not Path(path).exists():
            raise InputError("library file does not exist", file=str(path))
    if not Path(args.model).is_dir():
        raise InputError("model folder does not exist", file=str(args.model), fix="train one with 'ms2study train'")
    try:
        record = learn_combined(args.library, args.model, load_params(args))
    except NotEnoughData as err:
        if not args.optional:
            raise
        log.warning("combined score not learned (%s); annotate will use the fixed weights", err)
        print(f"{args.model}: no {COMBINED_FILE} written: {err}")
        return 0
    print(f"{Path(args.model) / COMBINED_FILE}: validation top-1 {record['validation_top1']}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    from ms2study.core.params import add_params_argument

    p = subparsers.add_parser("learn-combined",
                              help="learn the combined score's weights for an encoder (writes combined.json)")
    p.add_argument("--library", nargs="+", required=True, help="the library the encoder was trained on")
    p.add_argument("--model", required=True, help="encoder folder (from 'ms2study train'); combined.json goes here")
    p.add_argument("--optional", action="store_true",
                   help="when the library is too small to learn from, warn and exit 0 (annotate then uses fixed weights)")
    add_params_argument(p)
    p.set_defaults(func=_cli_learn)


def table_of_weights(record: dict) -> pl.DataFrame:
    """The stored weights as a table (feature x model), for model cards and reports."""
    rows = []
    for name, m in record["models"].items():
        for f, w in zip(m["features"], m["weights"]):
            rows.append({"model": name, "feature": f, "weight": w})
        rows.append({"model": name, "feature": "intercept", "weight": m["intercept"]})
    return pl.DataFrame(rows)
