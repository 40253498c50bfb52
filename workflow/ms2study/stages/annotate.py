"""Library identification of MS/MS spectra: candidate search, scoring, ranking and confidence.

For each query spectrum with peaks, candidates are the library spectra of the same ion mode whose precursor
m/z lies within a ppm (or Da) window, found by binary search on the index's sorted precursor m/z
(``identity`` mode); ``analogue`` mode drops the precursor filter and takes the library spectra nearest in
embedding space (chunked matrix products, memory bounded), or, without embeddings, scores the whole library.
Every candidate gets the cosine and modified cosine (matchms ``CosineGreedy`` / ``ModifiedCosineGreedy``
semantics), the entropy similarity (ms_entropy semantics) and, when embeddings are given, the embedding
cosine, all from the numba kernels in ``ms2study.kernels.scoring``. The library embeddings are those stored in the index
under the query embeddings' ``model_id`` (written by ``ms2study embed-library`` with the same encoder); without
them the embedding score is left out. The ``combined`` score is, when ``combine`` is ``auto`` and the query
embeddings come from a TRAINED encoder whose folder (``model``, as in the embed stage) holds a
``combined.json`` learned for that very model (``ms2study learn-combined``, see ``ms2study.stages.learn_combined``), the
learned logistic score over cosine, modified cosine, entropy, embedding similarity, matched peaks and
precursor error. Otherwise it is the documented fixed default: the weighted mean of the available scores
(``DEFAULT_PARAMS["weights"]``: entropy 0.5, cosine 0.25, modified cosine 0.25, embedding 0.25,
renormalised over the scores present), in which the embedding term counts only for a trained encoder: an
untrained placeholder's embedding similarity (``model_trained`` false, or a ``model_id`` starting with
``untrained``) is still reported in the ``embedding`` column but never enters the combined score.
Candidates are ranked by ``rank_by`` (combined by default) and the best ``top_k`` kept. Confidence comes from
a target-decoy competition (``ms2study.identification.decoys``): ``q_value`` per row and ``accepted`` at ``fdr`` (1 %).
The same function serves the Snakemake rule (``ms2study annotate``), ``ms2study score`` and the tests.
"""

from __future__ import annotations

import argparse
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from ms2study.identification import confidence
from ms2study.kernels import scoring
from ms2study.core import tables
from ms2study.core.atomic import write_parquet
from ms2study.core.cleaning import clean_peaks
from ms2study.core.errors import InputError
from ms2study.library.index import ION_MODE_CODE, LibraryIndex, load_library_index
from ms2study.core.params import overlay

log = logging.getLogger(__name__)

DEFAULT_PARAMS: dict[str, Any] = {
    "mode": "identity",                  # identity (precursor window) | analogue (no precursor filter)
    "precursor_tolerance_ppm": 10.0,     # candidate window around the query precursor m/z
    "precursor_tolerance_da": None,      # when set, a window in Da replaces the ppm window
    "ion_mode": "positive",              # ion mode of queries lacking an ion_mode column
    "top_k": 5,                          # candidates kept per query spectrum
    "fragment_tolerance_da": 0.02,       # cosine / modified cosine peak matching tolerance
    "mz_power": 0.0,                     # cosine peak weight = mz**mz_power * intensity**intensity_power
    "intensity_power": 1.0,
    "entropy_tolerance_da": 0.02,        # entropy peak matching tolerance (peaks closer than 2x merge)
    "entropy_noise_threshold": 0.01,     # entropy preparation: drop peaks below 1 % of the base peak
    "entropy_merge_da": None,            # centroiding distance; None = 2 x entropy_tolerance_da (ms_entropy)
    "weights": {"cosine": 0.25, "modified_cosine": 0.25, "entropy": 0.5, "embedding": 0.25},
    "rank_by": "combined",               # combined | cosine | modified_cosine | entropy | embedding
    "min_score": 0.0,                    # candidates with a ranking score <= this are dropped
    "embedding_model": "default",        # library embeddings when the query embeddings carry no model_id
    "combine": "auto",                   # auto: learned weights of the encoder (combined.json) if any | fixed
    "model": "default",                  # encoder folder holding combined.json (as embed: model; default: shipped)
    "analogue_chunk_mb": 256,            # memory bound for analogue search blocks
    # Confidence: null_model (empirical null from leave-structure-out library searches, ms2study.identification.confidence) |
    # decoys (random-fragment target-decoy competition; kept for comparison, it is NOT calibrated) | none.
    "confidence": "null_model",
    "decoy_seed": 0,
    "fdr": 0.01,                         # q-value threshold marking accepted identifications
    "isomer_margin": "auto",             # auto: learned with the library calibration; or a score margin
    "calibration_queries": 4000,         # structures searched to calibrate a library (one spectrum each)
    "calibration_seed": 0,
    # Query cleaning: the same clean_peaks parameters as the library (see library.DEFAULT_PARAMS).
    "cleaning": None,                    # None = take the library index's cleaning parameters
}

SCORE_NAMES = ("cosine", "modified_cosine", "entropy", "embedding")

# Isomer margin without a library calibration (confidence: decoys): a documented guess, not a measurement.
DEFAULT_ISOMER_MARGIN = 0.05
LOW_COSINE = 0.3   # accepted hits below this cosine are counted in the log (the report says why they passed)

# Columns written after tables.ANNOTATIONS, in this order.
EXTRA_COLUMNS: dict[str, pl.DataType] = {
    "modified_cosine": pl.Float64,
    "modified_matched_peaks": pl.Int32,
    "entropy": pl.Float64,
    "entropy_matched_peaks": pl.Int32,
    "embedding": pl.Float64,
    "combined": pl.Float64,
    "q_value": pl.Float64,
    "accepted": pl.Boolean,
    "p_value": pl.Float64,
    "structure_q_value": pl.Float64,
    "msi_level": pl.Int8,
    "isomer_inchikeys": pl.List(pl.Utf8),
    "isomer_gap": pl.Float64,      # rank-1 score minus the best other structure of its formula (null: none)
    "n_candidates": pl.Int32,      # candidate structures in the precursor window
    "evidence_note": pl.Utf8,      # why an accepted hit with cosine < 0.3 passed
    "library_adduct": pl.Utf8,
    "library_formula": pl.Utf8,
    "library_precursor_mz": pl.Float64,
    "query_precursor_mz": pl.Float64,
}
ANNOTATION_SCHEMA: dict[str, pl.DataType] = {**tables.ANNOTATIONS, **EXTRA_COLUMNS}

def merge_params(params: dict | None) -> dict[str, Any]:
    """DEFAULT_PARAMS with ``params`` merged over them; unknown keys raise InputError naming the key."""
    merged = overlay(params, DEFAULT_PARAMS, "annotate", nested=("weights",))
    if merged["mode"] not in ("identity", "analogue"):
        raise InputError(f"annotate mode '{merged['mode']}' is not known", fix="use 'identity' or 'analogue'")
    if merged["combine"] not in ("auto", "fixed"):
        raise InputError(f"annotate combine '{merged['combine']}' is not known", fix="use 'auto' or 'fixed'")
    if merged["confidence"] not in ("null_model", "decoys", "none"):
        raise InputError(f"annotate confidence '{merged['confidence']}' is not known",
                         fix="use 'null_model', 'decoys' or 'none'")
    margin = merged["isomer_margin"]
    if margin != "auto" and not (isinstance(margin, (int, float)) and 0 <= float(margin) <= 1):
        raise InputError(f"annotate isomer_margin '{margin}' is neither 'auto' nor a number in [0, 1]",
                         fix="use isomer_margin: auto (learned with the library calibration) or e.g. 0.05")
    if merged["rank_by"] not in ("combined", *SCORE_NAMES):
        raise InputError(
            f"rank_by '{merged['rank_by']}' is not a score", fix=f"use combined or one of {list(SCORE_NAMES)}"
        )
    return merged


# ------------------------------------------------------------------------------------------ queries


@dataclass
class FlatSpectra:
    """Query spectra as flat arrays (see ms2study.kernels.scoring); row i of ``ids`` is spectrum i."""

    offsets: np.ndarray
    mz: np.ndarray
    intensity: np.ndarray
    precursor_mz: np.ndarray
    ion_mode: np.ndarray
    rows: np.ndarray          # row numbers in the input frame


def flatten_queries(spectra: pl.DataFrame, cleaning: dict, default_ion_mode: str) -> FlatSpectra:
    """Clean the query peaks (same function as the library) and flatten the spectra that keep peaks.

    Spectra that cannot be searched (no valid precursor m/z, no peaks, no peaks left after cleaning) are left out
    and named in the log with their reason, never dropped in silence.
    """
    mz_lists = spectra["mz"].to_list()
    int_lists = spectra["intensity"].to_list()
    precursors = spectra["precursor_mz"].cast(pl.Float64).to_list()
    if "ion_mode" in spectra.columns:
        modes = [ION_MODE_CODE.get((m or default_ion_mode).lower(), 0) for m in spectra["ion_mode"].to_list()]
    else:
        modes = [ION_MODE_CODE.get(default_ion_mode, 0)] * spectra.height
    keep_rows, mzs, ints = [], [], []
    skipped: dict[str, list[int]] = {}
    for row, (mz, inten, prec) in enumerate(zip(mz_lists, int_lists, precursors)):
        if prec is None or not math.isfinite(prec) or prec <= 0:
            skipped.setdefault("no valid precursor m/z", []).append(row)
            continue
        if mz is None or inten is None or len(mz) == 0:
            skipped.setdefault("no peaks", []).append(row)
            continue
        cmz, cint = clean_peaks(np.asarray(mz, dtype=np.float64), np.asarray(inten, dtype=np.float64), prec, **cleaning)
        if cmz.size == 0:
            skipped.setdefault("no peaks left after cleaning (all at or above the precursor, or invalid)", []).append(row)
            continue
        keep_rows.append(row)
        mzs.append(cmz)
        ints.append(cint)
    if skipped:
        ids = spectra["spectrum_id"].to_list() if "spectrum_id" in spectra.columns else list(range(spectra.height))
        for reason, rows_ in skipped.items():
            named = ", ".join(str(ids[r]) for r in rows_[:20]) + (f" and {len(rows_) - 20} more" if len(rows_) > 20 else "")
            log.warning("%d of %d spectra cannot be searched (%s): %s", len(rows_), spectra.height, reason, named)
    offsets = np.zeros(len(keep_rows) + 1, dtype=np.int64)
    np.cumsum([m.size for m in mzs], out=offsets[1:]) if mzs else None
    rows = np.asarray(keep_rows, dtype=np.int64)
    return FlatSpectra(
        offsets=offsets,
        mz=np.concatenate(mzs) if mzs else np.zeros(0, dtype=np.float64),
        intensity=np.concatenate(ints).astype(np.float32) if ints else np.zeros(0, dtype=np.float32),
        precursor_mz=np.asarray([precursors[r] for r in keep_rows], dtype=np.float64),
        ion_mode=np.asarray([modes[r] for r in keep_rows], dtype=np.int8),
        rows=rows,
    )


# ---------------------------------------------------------------------------------------- candidates


def mode_blocks(ion_mode: np.ndarray) -> dict[int, tuple[int, int]]:
    """Row range of each ion-mode code in a library sorted by (ion mode, precursor m/z)."""
    blocks = {}
    for code in (-1, 0, 1):
        lo = int(np.searchsorted(ion_mode, code, side="left"))
        hi = int(np.searchsorted(ion_mode, code, side="right"))
        blocks[code] = (lo, hi)
    return blocks


def find_candidates(
    q_precursor: np.ndarray,
    q_mode: np.ndarray,
    lib_precursor: np.ndarray,
    lib_mode: np.ndarray,
    ppm: float | None,
    da: float | None,
) -> tuple[np.ndarray, np.ndarray]:
    """CSR candidates (offsets, library rows): same ion mode (or unknown) and precursor within the window.

    The library must be sorted by (ion mode, precursor m/z); each mode block is binary-searched.
    """
    q_precursor = np.asarray(q_precursor, dtype=np.float64)
    tol = np.full(q_precursor.shape, float(da)) if da is not None else q_precursor * float(ppm) * 1e-6
    blocks = mode_blocks(np.asarray(lib_mode))
    per_block = []
    counts = np.zeros(q_precursor.size, dtype=np.int64)
    for code, (lo, hi) in blocks.items():
        if hi <= lo:
            continue
        prec = np.asarray(lib_precursor[lo:hi])
        left = np.searchsorted(prec, q_precursor - tol, side="left") + lo
        right = np.searchsorted(prec, q_precursor + tol, side="right") + lo
        # Unknown-mode library spectra may match any query; otherwise modes must agree (unknown queries: all).
        applies = np.ones(q_precursor.size, dtype=bool) if code == 0 else (q_mode == code) | (q_mode == 0)
        right = np.where(applies, right, left)
        per_block.append((left, right))
        counts += right - left
    offsets = np.zeros(q_precursor.size + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    cand = np.empty(int(offsets[-1]), dtype=np.int64)
    pos = offsets[:-1].copy()
    for left, right in per_block:
        n = right - left
        # Vectorised fill of the ranges [left, right) at each query's current position.
        total = int(n.sum())
        if total == 0:
            continue
        starts = np.repeat(pos, n)
        within = np.arange(total) - np.repeat(np.cumsum(n) - n, n)
        cand[starts + within] = np.repeat(left, n) + within
        pos += n
    return offsets, cand


# ------------------------------------------------------------------------------------------- scoring


@dataclass
class PreparedLibrary:
    """Library arrays ready for scoring (entropy-prepared peaks computed once per parameters)."""

    index: LibraryIndex
    ent_offsets: np.ndarray
    ent_mz: np.ndarray
    ent_int: np.ndarray
    embeddings: np.ndarray | None


def _merge_da(p: dict) -> float:
    return float(p["entropy_merge_da"]) if p["entropy_merge_da"] is not None else 2.0 * float(p["entropy_tolerance_da"])


def prepare_library(index: LibraryIndex, p: dict) -> PreparedLibrary:
    ent = scoring.prepare_entropy_peaks(
        np.asarray(index.offsets), np.asarray(index.mz), np.asarray(index.intensity),
        float(p["entropy_noise_threshold"]), _merge_da(p), True,
    )
    emb = index.embeddings(p["embedding_model"]) if p["embedding_model"] else None
    return PreparedLibrary(index, ent[0], ent[1], ent[2], None if emb is None else np.asarray(emb, dtype=np.float32))


def score_pairs(
    queries: FlatSpectra,
    lib: PreparedLibrary,
    cand_offsets: np.ndarray,
    cand_lib: np.ndarray,
    p: dict,
    q_embeddings: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """All scores for the candidate pairs (arrays aligned with ``cand_lib``)."""
    idx = lib.index
    args = (queries.offsets, queries.mz, queries.intensity, queries.precursor_mz,
            np.asarray(idx.offsets), np.asarray(idx.mz), np.asarray(idx.intensity), np.asarray(idx.precursor_mz),
            cand_offsets, cand_lib,
            float(p["fragment_tolerance_da"]), float(p["mz_power"]), float(p["intensity_power"]))
    cos, cos_m = scoring.cosine_candidates(*args, False)
    mod, mod_m = scoring.cosine_candidates(*args, True)
    q_ent = scoring.prepare_entropy_peaks(queries.offsets, queries.mz, queries.intensity,
                                          float(p["entropy_noise_threshold"]), _merge_da(p), True)
    ent, ent_m = scoring.entropy_candidates(q_ent[0], q_ent[1], q_ent[2], lib.ent_offsets, lib.ent_mz, lib.ent_int,
                                            cand_offsets, cand_lib, float(p["entropy_tolerance_da"]))
    if q_embeddings is not None and lib.embeddings is not None:
        emb = scoring.embedding_candidates(q_embeddings, lib.embeddings, cand_offsets, cand_lib)
    else:
        emb = np.full(cand_lib.shape[0], np.nan)
    return {"cosine": cos, "matched_peaks": cos_m, "modified_cosine": mod, "modified_matched_peaks": mod_m,
            "entropy": ent, "entropy_matched_peaks": ent_m, "embedding": emb}


def combined_score(scores: dict[str, np.ndarray], weights: dict[str, float]) -> np.ndarray:
    """Weighted mean of the available scores (NaN scores and their weights left out); negatives count as 0."""
    num = np.zeros(scores["cosine"].shape[0])
    den = np.zeros_like(num)
    for name in SCORE_NAMES:
        w = float(weights.get(name, 0.0))
        if w <= 0:
            continue
        s = scores[name]
        ok = np.isfinite(s)
        num += np.where(ok, w * np.clip(s, 0.0, 1.0), 0.0)
        den += np.where(ok, w, 0.0)
    return np.divide(num, den, out=np.zeros_like(num), where=den > 0)


def _query_embedding_matrix(
    spectra: pl.DataFrame, rows: np.ndarray, embeddings: pl.DataFrame | None
) -> np.ndarray | None:
    if embeddings is None or embeddings.height == 0:
        return None
    emb = embeddings.select("spectrum_id", "embedding").unique("spectrum_id", keep="first")
    joined = spectra[rows.tolist()].select("spectrum_id").join(emb, on="spectrum_id", how="left", maintain_order="left")
    dims = emb["embedding"].list.len().max()
    out = np.full((joined.height, int(dims)), np.nan, dtype=np.float32)
    for i, vec in enumerate(joined["embedding"].to_list()):
        if vec is not None and len(vec) == dims:
            v = np.asarray(vec, dtype=np.float32)
            n = float(np.linalg.norm(v))
            if n > 0:
                out[i] = v / n
    return out


def _analogue_candidates(
    queries: FlatSpectra, lib: PreparedLibrary, q_emb: np.ndarray | None, p: dict
) -> tuple[np.ndarray, np.ndarray]:
    mode = np.asarray(lib.index.ion_mode)
    if q_emb is not None and lib.embeddings is not None:
        chunk_rows = max(1, int(p["analogue_chunk_mb"] * 1e6 / 4 / max(1, q_emb.shape[0])))
        k = max(int(p["top_k"]) * 4, int(p["top_k"]))  # re-ranked by the combined score afterwards
        cand_all = []
        for code in np.unique(queries.ion_mode):
            sel = np.flatnonzero(queries.ion_mode == code)
            allowed = (mode == code) | (mode == 0) | (code == 0)
            off, cand = scoring.top_k_by_embedding(q_emb[sel], lib.embeddings, allowed, k, chunk_rows)
            cand_all.append((sel, off, cand))
        # Reassemble in query order.
        counts = np.zeros(queries.precursor_mz.size, dtype=np.int64)
        for sel, off, _ in cand_all:
            counts[sel] = np.diff(off)
        offsets = np.zeros(counts.size + 1, dtype=np.int64)
        np.cumsum(counts, out=offsets[1:])
        cand = np.empty(int(offsets[-1]), dtype=np.int64)
        for sel, off, c in cand_all:
            for j, q in enumerate(sel):
                cand[offsets[q]:offsets[q + 1]] = c[off[j]:off[j + 1]]
        return offsets, cand
    # Without embeddings: every same-mode library spectrum is a candidate (no precursor filter).
    n_lib = len(lib.index)
    offsets = np.zeros(queries.precursor_mz.size + 1, dtype=np.int64)
    parts = []
    for q, code in enumerate(queries.ion_mode):
        rows = np.flatnonzero((mode == code) | (mode == 0) | (code == 0)) if code != 0 else np.arange(n_lib)
        parts.append(rows)
        offsets[q + 1] = offsets[q] + rows.size
    return offsets, (np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64))


def _rank_table(
    queries: FlatSpectra, lib: PreparedLibrary, cand_offsets: np.ndarray, cand_lib: np.ndarray,
    scores: dict[str, np.ndarray], p: dict, combined: np.ndarray,
) -> pl.DataFrame:
    """All candidate rows above ``min_score`` with scores, ranked within each query (``_key``: the ranking score)."""
    q_of = np.repeat(np.arange(queries.precursor_mz.size), np.diff(cand_offsets))
    frame = pl.DataFrame({
        "_q": q_of.astype(np.int64),
        "_lib": cand_lib.astype(np.int64),
        "_pair": np.arange(cand_lib.size, dtype=np.int64),
        **{k: v for k, v in scores.items()},
        "combined": combined,
    })
    key = p["rank_by"]
    frame = frame.with_columns(pl.col(key).fill_nan(None).alias("_key"))
    frame = frame.filter(pl.col("_key") > float(p["min_score"]))
    frame = frame.sort(["_q", "_key", "_lib"], descending=[False, True, False])
    return frame.with_columns((pl.int_range(pl.len()).over("_q") + 1).cast(pl.Int32).alias("rank"))


def ranking_score(queries: FlatSpectra, lib: PreparedLibrary, cand_offsets: np.ndarray, cand_lib: np.ndarray,
                  scores: dict[str, np.ndarray], p: dict, plan: CombinePlan) -> np.ndarray:
    """The score candidates are ranked by (``rank_by``): the combined score of ``plan`` or one of SCORE_NAMES."""
    if p["rank_by"] == "combined":
        return plan.combined(queries, lib, cand_offsets, cand_lib, scores, p)
    return np.asarray(scores[p["rank_by"]], dtype=np.float64)


def confidence_table(
    frame: pl.DataFrame, index: LibraryIndex, n_candidates: np.ndarray, p: dict,
    calibration: confidence.Calibration | None, row_q_values: np.ndarray | None = None,
    codes: tuple[np.ndarray, np.ndarray] | None = None,
) -> pl.DataFrame:
    """Confidence of each query's rank-1 hit: one row per ``_q`` (see ``ms2study.identification.confidence``).

    ``frame``: all ranked candidate rows (``_q``, ``_lib``, ``_key``, ``rank``); ``n_candidates``: candidate
    structures in each query's window (n of the p-value). With a calibration the q-values are Benjamini-Hochberg over
    the rank-1 hits of this call; ``row_q_values`` (target-decoy, aligned with ``frame``) replaces them when given.
    Columns: ``_q``, p_value, q_value, structure_q_value, accepted, msi_level (2/3, null when not accepted),
    isomer_inchikeys (rank-1's InChIKey first, then other structures of its formula within the isomer margin).
    """
    structure, formula = codes if codes is not None else confidence.library_codes(index.metadata)
    inchikey = index.metadata["inchikey"]
    lib_rows = frame["_lib"]
    f = frame.select("_q", "_lib", "_key", "rank").with_columns(
        pl.Series("_s", structure).gather(lib_rows), pl.Series("_f", formula).gather(lib_rows),
        inchikey.gather(lib_rows).alias("_ik"))
    if row_q_values is not None:
        f = f.with_columns(pl.Series("_rowq", row_q_values, dtype=pl.Float64))
    top = f.filter(pl.col("rank") == 1).rename({"_key": "_s1", "_s": "_st1", "_f": "_f1", "_ik": "_ik1",
                                                 "_lib": "_lib1"})
    top = top.drop("rank")
    iso = f.join(top.select("_q", "_s1", "_st1", "_f1"), on="_q").filter(
        (pl.col("_s") != pl.col("_st1")) & ((pl.col("_f") == pl.col("_f1")) | (pl.col("_f") < 0) | (pl.col("_f1") < 0)))
    q_idx = top["_q"].to_numpy()
    s1 = top["_s1"].to_numpy().astype(np.float64)
    n = np.asarray(n_candidates)[q_idx]
    fdr = float(p["fdr"])
    margin = p["isomer_margin"]
    if calibration is not None:
        pv = calibration.p_formula(s1, n)
        qv = confidence.bh_q_values(pv)
        hit_class = np.asarray([confidence.superclass(c) for c in
                                index.metadata["compound_class"].gather(top["_lib1"]).to_list()], dtype=object)
        qs = confidence.bh_q_values(calibration.p_structure(s1, n, hit_class))
        margin = calibration.isomer_margin if margin == "auto" else float(margin)
    else:
        pv = np.full(s1.shape, np.nan)
        qv = top["_rowq"].to_numpy() if row_q_values is not None else np.full(s1.shape, np.nan)
        qs = qv
        margin = DEFAULT_ISOMER_MARGIN if margin == "auto" else float(margin)
    near = iso.filter(pl.col("_key") >= pl.col("_s1") - margin)
    best_iso = iso.group_by("_q").agg(pl.col("_key").max().alias("_iso"))
    near_keys = near.group_by("_q").agg(pl.col("_ik").drop_nulls().unique(maintain_order=True).alias("_near"))
    out = pl.DataFrame({"_q": q_idx, "p_value": pv, "q_value": qv, "structure_q_value": qs,
                        "_s1": s1, "_ik1": top["_ik1"]}, schema_overrides={"_ik1": pl.Utf8})
    out = out.join(best_iso, on="_q", how="left").join(near_keys, on="_q", how="left")
    accepted = (pl.col("q_value") <= fdr).fill_null(False)
    singled = (pl.col("structure_q_value") <= fdr).fill_null(False) & (
        pl.col("_iso").is_null() | (pl.col("_s1") - pl.col("_iso") > margin))
    isomers = pl.concat_list(pl.col("_ik1").fill_null(pl.lit(None, dtype=pl.Utf8)),
                             pl.col("_near").fill_null(pl.lit([], dtype=pl.List(pl.Utf8))))
    return out.with_columns(
        accepted.alias("accepted"),
        pl.when(accepted).then(pl.when(singled).then(2).otherwise(3)).cast(pl.Int8).alias("msi_level"),
        pl.when(~accepted).then(None)
        .when(singled).then(pl.concat_list(pl.col("_ik1")))
        .otherwise(isomers.list.drop_nulls().list.unique(maintain_order=True)).alias("isomer_inchikeys"),
        (pl.col("_s1") - pl.col("_iso")).alias("isomer_gap"),
    ).select("_q", "p_value", "q_value", "structure_q_value", "accepted", "msi_level", "isomer_inchikeys",
             "isomer_gap")


def _spectral_weights(p: dict) -> dict[str, float]:
    # Decoys have no embeddings, so target and decoy compete on the spectral scores only.
    return {k: v for k, v in p["weights"].items() if k != "embedding"}


@dataclass
class CombinePlan:
    """How the combined score is computed for one call: learned weights, or fixed ones (with/without embedding)."""

    learned: Any | None            # ms2study.stages.learn_combined.LearnedCombiner
    use_embedding: bool            # the embedding similarity may enter the combined score
    model_id: str | None
    description: str

    @property
    def kind(self) -> str:
        """learned | fixed+embedding | fixed (what a library calibration must match)."""
        return "learned" if self.learned is not None else ("fixed+embedding" if self.use_embedding else "fixed")

    def combined(self, queries: FlatSpectra, lib: PreparedLibrary, cand_offsets: np.ndarray, cand_lib: np.ndarray,
                 scores: dict[str, np.ndarray], p: dict, spectral_only: bool = False) -> np.ndarray:
        """The combined score of candidate pairs (aligned with ``cand_lib``)."""
        q_of = np.repeat(np.arange(queries.precursor_mz.size), np.diff(cand_offsets))
        l_prec = np.asarray(lib.index.precursor_mz)[cand_lib]
        return self.combined_from(scores, np.diff(queries.offsets)[q_of],
                                  (queries.precursor_mz[q_of] - l_prec) / l_prec * 1e6, p, spectral_only)

    def combined_from(self, scores: dict[str, np.ndarray], query_peaks: np.ndarray, ppm_error: np.ndarray, p: dict,
                      spectral_only: bool = False) -> np.ndarray:
        """The combined score from per-pair scores, query peak counts and precursor errors (ppm)."""
        if self.learned is None:
            weights = _spectral_weights(p) if spectral_only or not self.use_embedding else p["weights"]
            return combined_score(scores, weights)
        from ms2study.stages.learn_combined import candidate_features

        feats = candidate_features(scores, query_peaks, ppm_error)
        return self.learned.score(feats, use_embedding=not spectral_only)


def embeddings_model(embeddings: pl.DataFrame | None) -> tuple[str | None, bool]:
    """(model_id, trained) of a query embeddings table; tables without these columns count as trained."""
    if embeddings is None:
        return None, False
    model_id = None
    if "model_id" in embeddings.columns:
        ids = embeddings["model_id"].drop_nulls().unique().to_list()
        if len(ids) > 1:
            raise InputError(f"the embeddings table mixes encoders {sorted(ids)}",
                             fix="embed all spectra of a sample with one encoder")
        model_id = ids[0] if ids else None
    if "model_trained" in embeddings.columns:
        trained = bool(embeddings["model_trained"].fill_null(False).all())
    else:
        trained = not (model_id or "").startswith("untrained")
    return model_id, trained


def _model_dir(model: str | None) -> Path | None:
    if model is None:
        return None
    if str(model) == "default":
        from ms2study.encoder.model import SHIPPED_MODEL_NAME, SHIPPED_MODELS_DIR

        return SHIPPED_MODELS_DIR / SHIPPED_MODEL_NAME
    return Path(model)


def combine_plan(p: dict, model_id: str | None, trained: bool, have_embeddings: bool) -> CombinePlan:
    """Decide how ``combined`` is computed (see the module docstring)."""
    if not have_embeddings:
        return CombinePlan(None, False, model_id, "fixed weights, spectral scores (no embeddings)")
    if not trained:
        return CombinePlan(None, False, model_id,
                           f"fixed weights, spectral scores only: embeddings of {model_id or 'an untrained encoder'} "
                           "are untrained")
    if p["combine"] == "auto" and model_id is not None:
        from ms2study.stages.learn_combined import load_combined

        learned = load_combined(_model_dir(p["model"]))
        if learned is not None and learned.model_id == model_id:
            return CombinePlan(learned, True, model_id, f"learned weights {learned.path}")
        if learned is not None:
            log.warning("%s was learned for %s, but the embeddings come from %s: using the fixed weights",
                        learned.path, learned.model_id, model_id)
    return CombinePlan(None, True, model_id, "fixed weights incl. embedding")


def _decoy_q_values(
    queries: FlatSpectra, lib: PreparedLibrary, cand_offsets: np.ndarray, cand_lib: np.ndarray,
    scores: dict[str, np.ndarray], ranked: pl.DataFrame, p: dict, plan: CombinePlan,
) -> np.ndarray:
    """q-value of every ranked target row from a target-decoy competition over the same candidates."""
    from ms2study.identification import decoys

    idx = lib.index
    margin = float(idx.manifest.get("params", {}).get("cleaning", {}).get("precursor_margin_da", 1.6) or 0.0)
    d_mz, d_int = decoys.decoy_peaks(idx.offsets, idx.mz, idx.intensity, idx.precursor_mz, idx.ion_mode,
                                     seed=int(p["decoy_seed"]), margin_da=margin)
    d_index = LibraryIndex(path=idx.path, metadata=idx.metadata, precursor_mz=idx.precursor_mz, ion_mode=idx.ion_mode,
                           offsets=idx.offsets, mz=d_mz, intensity=d_int, manifest=idx.manifest)
    d_lib = prepare_library(d_index, {**p, "embedding_model": None})
    d_scores = score_pairs(queries, d_lib, cand_offsets, cand_lib, p, None)
    target = plan.combined(queries, lib, cand_offsets, cand_lib, scores, p, spectral_only=True)
    decoy = plan.combined(queries, d_lib, cand_offsets, cand_lib, d_scores, p, spectral_only=True)
    winners, q = decoys.competition_q_values(
        decoys.segment_max(target, cand_offsets), decoys.segment_max(decoy, cand_offsets)
    )
    row_scores = target[ranked["_pair"].to_numpy()]
    return decoys.q_value_of(row_scores, winners, q)


def evidence_notes(ranked: pl.DataFrame, with_embedding: bool) -> pl.Series:
    """Why an accepted hit with cosine below LOW_COSINE passed: the scores that carried it (null elsewhere)."""
    emb = (pl.lit(", embedding ") + pl.col("embedding").round(2).cast(pl.Utf8)) if with_embedding else pl.lit("")
    note = (pl.lit(f"cosine below {LOW_COSINE}: accepted on the combined score (entropy ")
            + pl.col("entropy").round(2).cast(pl.Utf8) + emb.fill_null("") + pl.lit(", modified cosine ")
            + pl.col("modified_cosine").round(2).cast(pl.Utf8) + pl.lit(")"))
    return ranked.select(pl.when(pl.col("accepted") & (pl.col("cosine") < LOW_COSINE)).then(note)
                         .otherwise(None).alias("evidence_note"))["evidence_note"]


def _checked_calibration(
    calibration: confidence.Calibration | str | Path | None, p: dict, plan: CombinePlan, index_dir: Path | str,
) -> confidence.Calibration:
    """The library calibration for this search; InputError when absent or measured with another score."""
    if calibration is None:
        raise InputError("annotate confidence 'null_model' needs the library's calibration",
                         file=str(index_dir),
                         fix="run 'ms2study calibrate-library' on the index (the pipeline does) and pass --calibration, "
                             "or set annotate confidence: none")
    cal = calibration if isinstance(calibration, confidence.Calibration) else confidence.Calibration.load(calibration)
    want = {"rank_by": p["rank_by"], "plan": plan.kind,
            "model_id": plan.model_id if plan.use_embedding else None}
    got = {k: cal.scoring.get(k) for k in want}
    if want != got:
        raise InputError(f"the library calibration was measured for {got}, this search scores with {want}",
                         file=str(index_dir),
                         fix="rebuild the calibration with the same annotate and embed settings (rerun the pipeline)")
    return cal


def _empty_annotations() -> pl.DataFrame:
    return pl.DataFrame(schema=ANNOTATION_SCHEMA)


def annotate_spectra(
    spectra: pl.DataFrame,
    library_index_dir: Path | str,
    params: dict | None = None,
    embeddings: pl.DataFrame | None = None,
    calibration: confidence.Calibration | str | Path | None = None,
) -> pl.DataFrame:
    """Top-k library candidates per spectrum with all scores (columns: tables.ANNOTATIONS, then EXTRA_COLUMNS).

    ``spectra`` follows tables.SPECTRA (an ``ion_mode`` column is honoured when present);
    ``embeddings`` follows tables.EMBEDDINGS and enables the embedding score and analogue search;
    ``calibration`` is the library's ``ms2study.identification.confidence.Calibration`` (or its JSON path), required with
    ``confidence: null_model`` (the default). Confidence columns (p_value, q_value, structure_q_value,
    accepted, msi_level, isomer_inchikeys) are filled on rank-1 rows only. Raises InputError for a missing or
    mismatched calibration and for embeddings that do not fit the library's.
    """
    p = merge_params(params)
    index = load_library_index(library_index_dir)
    cleaning = p["cleaning"] if p["cleaning"] is not None else index.manifest.get("params", {}).get("cleaning", {})
    for col in ("sample_id", "feature_id"):
        if col not in spectra.columns:
            spectra = spectra.with_columns(pl.lit(None, dtype=pl.Utf8).alias(col))
    queries = flatten_queries(spectra, cleaning, p["ion_mode"])
    if queries.rows.size == 0 or len(index) == 0:
        return _empty_annotations()
    model_id, trained = embeddings_model(embeddings)
    # Library embeddings must come from the encoder that embedded the queries: look them up by its model_id.
    lib = prepare_library(index, {**p, "embedding_model": model_id or p["embedding_model"]})
    q_emb = _query_embedding_matrix(spectra, queries.rows, embeddings)
    if q_emb is not None and lib.embeddings is None:
        log.warning("library index %s has no embeddings for %s: the embedding score is left out "
                    "(run 'ms2study embed-library --index %s' with the same embed parameters)",
                    library_index_dir, model_id or p["embedding_model"], library_index_dir)
    if q_emb is not None and lib.embeddings is not None and lib.embeddings.shape[1] != q_emb.shape[1]:
        raise InputError(f"query embeddings have {q_emb.shape[1]} dimensions, the library's "
                         f"{lib.embeddings.shape[1]}", file=str(library_index_dir),
                         fix="embed the library and the samples with the same encoder")
    plan = combine_plan(p, model_id, trained, q_emb is not None and lib.embeddings is not None)
    log.info("combined score: %s", plan.description)
    if p["mode"] == "identity":
        cand_offsets, cand_lib = find_candidates(
            queries.precursor_mz, queries.ion_mode, np.asarray(index.precursor_mz), np.asarray(index.ion_mode),
            p["precursor_tolerance_ppm"], p["precursor_tolerance_da"],
        )
    else:
        cand_offsets, cand_lib = _analogue_candidates(queries, lib, q_emb, p)
    scores = score_pairs(queries, lib, cand_offsets, cand_lib, p, q_emb)
    combined = plan.combined(queries, lib, cand_offsets, cand_lib, scores, p)
    frame = _rank_table(queries, lib, cand_offsets, cand_lib, scores, p, combined)
    # Candidate structures per query: the p-value's n counts structures, not spectra.
    codes = confidence.library_codes(index.metadata)
    n_candidates = confidence.distinct_per_query(
        np.repeat(np.arange(queries.precursor_mz.size), np.diff(cand_offsets)), codes[0][cand_lib],
        queries.precursor_mz.size)
    row_q = None
    cal = None
    if p["mode"] == "analogue" and p["confidence"] != "none":
        # The null is measured per precursor window: analogue hits (other precursors) are candidates, never
        # identifications with a q-value.
        log.info("analogue search: no q-values (the confidence calibration applies to identity searches only)")
        p = {**p, "confidence": "none"}
    if p["confidence"] == "decoys":
        row_q = _decoy_q_values(queries, lib, cand_offsets, cand_lib, scores, frame, p, plan)
    elif p["confidence"] == "null_model":
        cal = _checked_calibration(calibration, p, plan, library_index_dir)
    conf = confidence_table(frame, index, n_candidates, p, cal, row_q, codes) if p["confidence"] != "none" else None
    ranked = frame.filter(pl.col("rank") <= int(p["top_k"])).drop("_key")
    if conf is not None:
        ranked = ranked.join(conf, on="_q", how="left").with_columns(
            pl.when(pl.col("rank") == 1).then(pl.col(c)).alias(c)
            for c in ("p_value", "q_value", "structure_q_value", "accepted", "msi_level", "isomer_inchikeys",
                      "isomer_gap"))
    else:
        ranked = ranked.with_columns(pl.lit(None, dtype=pl.Float64).alias(c)
                                     for c in ("p_value", "q_value", "structure_q_value")).with_columns(
            pl.lit(None, dtype=pl.Int8).alias("msi_level"), pl.lit(None, dtype=pl.List(pl.Utf8)).alias("isomer_inchikeys"),
            pl.lit(None, dtype=pl.Float64).alias("isomer_gap"))
    ranked = ranked.with_columns(pl.col("accepted").fill_null(False) if "accepted" in ranked.columns
                                 else pl.lit(False).alias("accepted"))
    ranked = ranked.sort(["_q", "rank"])
    meta = index.metadata
    lib_rows = ranked["_lib"].to_numpy()
    q_rows = queries.rows[ranked["_q"].to_numpy()]
    q_prec = queries.precursor_mz[ranked["_q"].to_numpy()]
    l_prec = np.asarray(index.precursor_mz)[lib_rows]
    out = pl.DataFrame({
        "spectrum_id": spectra["spectrum_id"].gather(q_rows),
        "sample_id": spectra["sample_id"].cast(pl.Utf8).gather(q_rows),
        "feature_id": spectra["feature_id"].cast(pl.Utf8).gather(q_rows),
        "rank": ranked["rank"],
        "library_id": meta["library_id"].gather(lib_rows),
        "library_name": meta["name"].gather(lib_rows),
        "library_inchikey": meta["inchikey"].gather(lib_rows),
        "library_smiles": meta["smiles"].gather(lib_rows),
        "precursor_error_ppm": (q_prec - l_prec) / l_prec * 1e6,
        "cosine": ranked["cosine"],
        "matched_peaks": ranked["matched_peaks"],
        "modified_cosine": ranked["modified_cosine"],
        "modified_matched_peaks": ranked["modified_matched_peaks"],
        "entropy": ranked["entropy"],
        "entropy_matched_peaks": ranked["entropy_matched_peaks"],
        "embedding": ranked["embedding"].fill_nan(None),
        "combined": ranked["combined"],
        "q_value": ranked["q_value"].fill_nan(None),
        "accepted": ranked["accepted"],
        "p_value": ranked["p_value"].fill_nan(None),
        "structure_q_value": ranked["structure_q_value"].fill_nan(None),
        "msi_level": ranked["msi_level"],
        "isomer_inchikeys": ranked["isomer_inchikeys"],
        "isomer_gap": ranked["isomer_gap"],
        "n_candidates": n_candidates[ranked["_q"].to_numpy()].astype(np.int32),
        "evidence_note": evidence_notes(ranked, plan.use_embedding),
        "library_adduct": meta["adduct"].gather(lib_rows),
        "library_formula": meta["formula"].gather(lib_rows),
        "library_precursor_mz": l_prec,
        "query_precursor_mz": q_prec,
    })
    out = tables.conform(out, ANNOTATION_SCHEMA)
    acc = out.filter(pl.col("accepted"))
    log.info(
        "annotated %d of %d spectra (%d candidate pairs, %d rows, %d accepted at %.0f%% FDR: %d at MSI level 2, "
        "%d at level 3; confidence: %s)",
        out["spectrum_id"].n_unique(), spectra.height, cand_lib.size, out.height, acc.height,
        100 * float(p["fdr"]), int((acc["msi_level"] == 2).sum()), int((acc["msi_level"] == 3).sum()),
        p["confidence"],
    )
    low = acc.filter(pl.col("cosine") < LOW_COSINE)
    if low.height:
        log.info("%d accepted hits have cosine < %.1f: accepted on the combined score (entropy %s)", low.height,
                 LOW_COSINE, "and embedding agreement" if plan.use_embedding else "agreement")
    return out


# ---------------------------------------------------------------------------------------------- CLI


def _cli_annotate(args: argparse.Namespace) -> int:
    from ms2study.core.params import load_params

    params = load_params(args)
    if args.library_index is None:
        # No library configured: the contract table still exists (empty), so the study stages run unchanged.
        log.warning("no library configured (config 'library'): %s has no identifications", args.out)
        write_parquet(pl.DataFrame(schema=ANNOTATION_SCHEMA), args.out)
        return 0
    spectra = pl.read_parquet(args.spectra)
    embeddings = pl.read_parquet(args.embeddings) if args.embeddings else None
    out = annotate_spectra(spectra, Path(args.library_index), params, embeddings, args.calibration)
    write_parquet(out, args.out)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    from ms2study.core.params import add_params_argument

    p = subparsers.add_parser("annotate", help="score a sample's spectra against a library index (top-k candidates)")
    p.add_argument("--spectra", required=True, help="spectra.parquet of one sample")
    p.add_argument("--library-index", default=None,
                   help="index folder from 'ms2study index-library' (without it: an empty table, no library)")
    p.add_argument("--embeddings", default=None, help="embeddings.parquet of the same sample (optional)")
    p.add_argument("--calibration", default=None,
                   help="the library's calibration JSON from 'ms2study calibrate-library' (confidence: null_model)")
    p.add_argument("--out", required=True, help="annotations.parquet to write")
    add_params_argument(p)
    p.set_defaults(func=_cli_annotate)
