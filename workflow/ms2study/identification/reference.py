"""The evaluation harness shared by learn-combined, calibration, encoder validation and the benchmarks: a reference
library in memory with its structure split, query sets drawn from it (optionally degraded like low-concentration
measurements), and their candidate pairs scored exactly as the annotate stage scores them.

Candidates are the other spectra of the same ion mode within 10 ppm (never the query's own spectrum), labelled
correct when they share the query's first InChIKey block. Imports core, kernels, library, encoder and the
identification modules below it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ms2study.core.flat import FlatSpectra, offsets_from_counts
from ms2study.encoder import inference
from ms2study.encoder.splits import assign_split
from ms2study.identification.combined import candidate_features, combined_score
from ms2study.identification.engine import merge_params as annotate_params
from ms2study.identification.pairs import prepare_library, score_pairs
from ms2study.kernels.candidates import find_candidates
from ms2study.io.entries import ReadReport
from ms2study.io.formats import read_library_file
from ms2study.library.build import build_library
from ms2study.library.index import LibraryIndex


# Degradation levels mimicking ever lower concentrations: peaks under a rising relative-intensity floor vanish,
# random noise peaks appear near that floor, intensities scatter more (log-normal sigma).
LOW_CONCENTRATION_LEVELS: list[dict[str, float]] = [
    {"level": 0, "floor": 0.0, "noise_peaks": 0, "jitter": 0.0},
    {"level": 1, "floor": 0.01, "noise_peaks": 2, "jitter": 0.1},
    {"level": 2, "floor": 0.03, "noise_peaks": 5, "jitter": 0.2},
    {"level": 3, "floor": 0.08, "noise_peaks": 10, "jitter": 0.3},
    {"level": 4, "floor": 0.15, "noise_peaks": 20, "jitter": 0.4},
]


@dataclass
class Reference:
    """A cleaned reference library in memory, with structure keys and the encoder's split per spectrum."""

    index: LibraryIndex         # in memory
    block: np.ndarray           # first InChIKey block per spectrum ("" when unknown)
    formula: np.ndarray         # formula per spectrum ("" when unknown)
    split: np.ndarray           # train / val / test ("" when no InChIKey)
    licensed: np.ndarray        # bool: license allowed
    n_skipped: int


def read_reference(library_paths: list[str | Path], split: dict[str, Any], cleaning: dict | None = None) -> Reference:
    """Read and clean library files (library stage cleaning) and tag each spectrum with its structure split."""
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
            cache[b] = assign_split(b, int(split["seed"]), float(split["val_fraction"]),
                                          float(split["test_fraction"]))
        labels[i] = cache[b]
    licenses = split.get("licenses")
    licensed = (meta["license"].is_in(list(licenses)).fill_null(False).to_numpy() if licenses is not None
                else np.ones(block.size, dtype=bool))
    index = LibraryIndex.from_built(built, manifest={"params": {"cleaning": cleaning or {}}})
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


def query_set(ref: Reference, rows: np.ndarray, levels: list[dict[str, float]] | None, seed: int) -> FlatSpectra:
    """Query spectra (``FlatSpectra``) from reference rows, each degraded at ``levels[i]`` when given."""
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
    return FlatSpectra.from_lists(mzs, ints, np.asarray(idx.precursor_mz)[rows], np.asarray(idx.ion_mode)[rows], rows)


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
    queries: FlatSpectra,
    allowed: np.ndarray,
    scoring_params: dict,
    q_emb: np.ndarray | None = None,
    lib_emb: np.ndarray | None = None,
    ppm: float = 10.0,
) -> CandidatePairs:
    """Candidates (same ion mode, ``ppm`` window, ``allowed`` library rows, never the query's own spectrum), scored."""
    p = annotate_params({**scoring_params, "embedding_model": None, "confidence": "none"})
    idx = ref.index
    offsets, cand = find_candidates(queries.precursor_mz, queries.ion_mode, np.asarray(idx.precursor_mz),
                                             np.asarray(idx.ion_mode), ppm, None)
    q_of = np.repeat(np.arange(queries.precursor_mz.size), np.diff(offsets))
    keep = allowed[cand] & (cand != queries.rows[q_of])
    cand, q_of = cand[keep], q_of[keep]
    offsets = offsets_from_counts(np.bincount(q_of, minlength=queries.precursor_mz.size))
    lib = prepare_library(idx, p)
    lib.embeddings = lib_emb
    scores = score_pairs(queries, lib, offsets, cand, p, q_emb)
    l_prec = np.asarray(idx.precursor_mz)[cand]
    ppm_error = (queries.precursor_mz[q_of] - l_prec) / l_prec * 1e6
    q_peaks = np.diff(queries.offsets)[q_of]
    feats = candidate_features(scores, q_peaks, ppm_error)
    label = ref.block[cand] == ref.block[queries.rows[q_of]]
    return CandidatePairs(offsets, cand, scores, feats, label)


def embed_rows(ref: Reference, rows: np.ndarray, embed_params: dict) -> np.ndarray:
    """Encoder embeddings (L2-normalised, float32) of reference rows ``rows``."""
    sub = ref.index.spectra.take(rows)
    emb, _has, _info = inference.embed_arrays(sub.mz, sub.intensity, sub.offsets, sub.precursor_mz, embed_params)
    return emb


def embed_queries(queries: FlatSpectra, embed_params: dict) -> np.ndarray:
    emb, has, _info = inference.embed_arrays(queries.mz, queries.intensity, queries.offsets, queries.precursor_mz,
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
    """The documented fixed-weight combined score (``combined.combined_score``), embedding term only if allowed."""
    w = {k: v for k, v in weights.items() if use_embedding or k != "embedding"}
    return combined_score(pairs.scores, w)


def choose_queries(ref: Reference, part: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """One spectrum per structure of split ``part`` (licensed, with peaks), at most ``n`` structures."""
    rows = np.flatnonzero((ref.split == part) & ref.licensed & (np.diff(ref.index.offsets) > 0))
    rows = rows[rng.permutation(rows.size)]
    _, first = np.unique(ref.block[rows], return_index=True)
    chosen = rows[np.sort(first)]
    return np.sort(chosen[: int(n)])


def choose_query_rows(ref: Reference, part: str, n_structures: int, per_structure: int,
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


def subset_pairs(pairs: CandidatePairs, queries: np.ndarray) -> CandidatePairs:
    """The candidate pairs of the queries ``queries`` (indices into the query set), in that order."""
    spans = [np.arange(pairs.offsets[q], pairs.offsets[q + 1]) for q in queries]
    take = np.concatenate(spans) if spans else np.zeros(0, dtype=np.int64)
    return CandidatePairs(offsets_from_counts([s.size for s in spans]), pairs.lib_rows[take], {k: v[take] for k, v in pairs.scores.items()},
                          {k: v[take] for k, v in pairs.features.items()}, pairs.label[take])
