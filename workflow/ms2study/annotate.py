"""Library identification of MS/MS spectra: candidate search, scoring, ranking and confidence.

For each query spectrum with peaks, candidates are the library spectra of the same ion mode whose precursor
m/z lies within a ppm (or Da) window, found by binary search on the index's sorted precursor m/z
(``identity`` mode); ``analogue`` mode drops the precursor filter and takes the library spectra nearest in
embedding space (chunked matrix products, memory bounded), or, without embeddings, scores the whole library.
Every candidate gets the cosine and modified cosine (matchms ``CosineGreedy`` / ``ModifiedCosineGreedy``
semantics), the entropy similarity (ms_entropy semantics) and, when embeddings are given, the embedding
cosine, all from the numba kernels in ``ms2study.scoring``. The library embeddings are those stored in the index
under the query embeddings' ``model_id`` (written by ``ms2study embed-library`` with the same encoder); without
them the embedding score is left out. The ``combined`` score is, when ``combine`` is ``auto`` and the query
embeddings come from a TRAINED encoder whose folder (``model``, as in the embed stage) holds a
``combined.json`` learned for that very model (``ms2study learn-combined``, see ``ms2study.combine``), the
learned logistic score over cosine, modified cosine, entropy, embedding similarity, matched peaks and
precursor error. Otherwise it is the documented fixed default: the weighted mean of the available scores
(``DEFAULT_PARAMS["weights"]``: entropy 0.5, cosine 0.25, modified cosine 0.25, embedding 0.25,
renormalised over the scores present), in which the embedding term counts only for a trained encoder: an
untrained placeholder's embedding similarity (``model_trained`` false, or a ``model_id`` starting with
``untrained``) is still reported in the ``embedding`` column but never enters the combined score.
Candidates are ranked by ``rank_by`` (combined by default) and the best ``top_k`` kept. Confidence comes from
a target-decoy competition (``ms2study.decoys``): ``q_value`` per row and ``accepted`` at ``fdr`` (1 %).
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

from ms2study import scoring, tables
from ms2study.atomic import write_parquet
from ms2study.cleaning import clean_peaks
from ms2study.errors import InputError
from ms2study.library import ION_MODE_CODE, LibraryIndex, ensure_library_index, load_library_index
from ms2study.params import overlay

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
    "decoys": True,                      # target-decoy q-values
    "decoy_seed": 0,
    "fdr": 0.01,                         # q-value threshold marking accepted identifications
    # Query cleaning: the same clean_peaks parameters as the library (see library.DEFAULT_PARAMS).
    "cleaning": None,                    # None = take the library index's cleaning parameters
}

SCORE_NAMES = ("cosine", "modified_cosine", "entropy", "embedding")

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
    "library_adduct": pl.Utf8,
    "library_formula": pl.Utf8,
    "library_precursor_mz": pl.Float64,
    "query_precursor_mz": pl.Float64,
}
ANNOTATION_SCHEMA: dict[str, pl.DataType] = {**tables.ANNOTATIONS, **EXTRA_COLUMNS}

# Output columns of `ms2study score` (the contract), after renaming spectrum_id -> query_id.
SCORE_COLUMNS = [
    "query_id", "rank", "library_id", "library_name", "library_inchikey", "library_smiles",
    "precursor_error_ppm", "cosine", "modified_cosine", "entropy", "embedding", "combined",
    "matched_peaks", "q_value", "accepted",
]


def merge_params(params: dict | None) -> dict[str, Any]:
    """DEFAULT_PARAMS with ``params`` merged over them; unknown keys raise InputError naming the key."""
    merged = overlay(params, DEFAULT_PARAMS, "annotate", nested=("weights",))
    if merged["mode"] not in ("identity", "analogue"):
        raise InputError(f"annotate mode '{merged['mode']}' is not known", fix="use 'identity' or 'analogue'")
    if merged["combine"] not in ("auto", "fixed"):
        raise InputError(f"annotate combine '{merged['combine']}' is not known", fix="use 'auto' or 'fixed'")
    if merged["rank_by"] not in ("combined", *SCORE_NAMES):
        raise InputError(
            f"rank_by '{merged['rank_by']}' is not a score", fix=f"use combined or one of {list(SCORE_NAMES)}"
        )
    return merged


# ------------------------------------------------------------------------------------------ queries


@dataclass
class FlatSpectra:
    """Query spectra as flat arrays (see ms2study.scoring); row i of ``ids`` is spectrum i."""

    offsets: np.ndarray
    mz: np.ndarray
    intensity: np.ndarray
    precursor_mz: np.ndarray
    ion_mode: np.ndarray
    rows: np.ndarray          # row numbers in the input frame


def flatten_queries(spectra: pl.DataFrame, cleaning: dict, default_ion_mode: str) -> FlatSpectra:
    """Clean the query peaks (same function as the library) and flatten the spectra that keep peaks."""
    mz_lists = spectra["mz"].to_list()
    int_lists = spectra["intensity"].to_list()
    precursors = spectra["precursor_mz"].cast(pl.Float64).to_list()
    if "ion_mode" in spectra.columns:
        modes = [ION_MODE_CODE.get((m or default_ion_mode).lower(), 0) for m in spectra["ion_mode"].to_list()]
    else:
        modes = [ION_MODE_CODE.get(default_ion_mode, 0)] * spectra.height
    keep_rows, mzs, ints = [], [], []
    for row, (mz, inten, prec) in enumerate(zip(mz_lists, int_lists, precursors)):
        if mz is None or inten is None or prec is None or not math.isfinite(prec) or prec <= 0:
            continue
        cmz, cint = clean_peaks(np.asarray(mz, dtype=np.float64), np.asarray(inten, dtype=np.float64), prec, **cleaning)
        if cmz.size == 0:
            continue
        keep_rows.append(row)
        mzs.append(cmz)
        ints.append(cint)
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


def read_query_file(path: str | Path) -> pl.DataFrame:
    """Query spectra from an MGF (any library-style MGF) or a pipeline spectra.parquet."""
    from ms2study.library import ReadReport, _first, _parse_float, read_library_file

    path = Path(path)
    if path.name.endswith(".parquet"):
        df = pl.read_parquet(path)
        missing = [c for c in ("spectrum_id", "precursor_mz", "mz", "intensity") if c not in df.columns]
        if missing:
            raise InputError(
                f"query table lacks columns {missing}", file=str(path), fix="pass a spectra.parquet from the pipeline"
            )
        return df
    report = ReadReport()
    rows = []
    for raw in read_library_file(path, report):
        mode = (_first(raw.fields, "ion_mode") or "").lower()
        rows.append({
            "spectrum_id": _first(raw.fields, "library_id") or f"{path.name}:{raw.entry}",
            "sample_id": None,
            "feature_id": None,
            "precursor_mz": _parse_float(_first(raw.fields, "precursor_mz")),
            "ion_mode": "negative" if mode.startswith("neg") else ("positive" if mode.startswith("pos") else None),
            "mz": raw.mz.tolist(),
            "intensity": raw.intensity.astype(np.float32).tolist(),
        })
    schema = {"spectrum_id": pl.Utf8, "sample_id": pl.Utf8, "feature_id": pl.Utf8, "precursor_mz": pl.Float64,
              "ion_mode": pl.Utf8, "mz": pl.List(pl.Float64), "intensity": pl.List(pl.Float32)}
    return pl.DataFrame(rows, schema=schema)


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
    """All candidate rows with scores, ranked within each query, top_k kept."""
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
    frame = frame.with_columns((pl.int_range(pl.len()).over("_q") + 1).cast(pl.Int32).alias("rank"))
    return frame.filter(pl.col("rank") <= int(p["top_k"])).drop("_key")


def _spectral_weights(p: dict) -> dict[str, float]:
    # Decoys have no embeddings, so target and decoy compete on the spectral scores only.
    return {k: v for k, v in p["weights"].items() if k != "embedding"}


@dataclass
class CombinePlan:
    """How the combined score is computed for one call: learned weights, or fixed ones (with/without embedding)."""

    learned: Any | None            # ms2study.combine.LearnedCombiner
    use_embedding: bool            # the embedding similarity may enter the combined score
    model_id: str | None
    description: str

    def combined(self, queries: FlatSpectra, lib: PreparedLibrary, cand_offsets: np.ndarray, cand_lib: np.ndarray,
                 scores: dict[str, np.ndarray], p: dict, spectral_only: bool = False) -> np.ndarray:
        if self.learned is None:
            weights = _spectral_weights(p) if spectral_only or not self.use_embedding else p["weights"]
            return combined_score(scores, weights)
        from ms2study.combine import candidate_features

        q_of = np.repeat(np.arange(queries.precursor_mz.size), np.diff(cand_offsets))
        l_prec = np.asarray(lib.index.precursor_mz)[cand_lib]
        feats = candidate_features(scores, np.diff(queries.offsets)[q_of], (queries.precursor_mz[q_of] - l_prec)
                                   / l_prec * 1e6)
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
        from ms2study.encoder import SHIPPED_MODEL_NAME, SHIPPED_MODELS_DIR

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
        from ms2study.combine import load_combined

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
    from ms2study import decoys

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


def _empty_annotations() -> pl.DataFrame:
    return pl.DataFrame(schema=ANNOTATION_SCHEMA)


def annotate_spectra(
    spectra: pl.DataFrame,
    library_index_dir: Path | str,
    params: dict | None = None,
    embeddings: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """Top-k library candidates per spectrum with all scores (columns: tables.ANNOTATIONS, then EXTRA_COLUMNS).

    ``spectra`` follows tables.SPECTRA (an ``ion_mode`` column is honoured when present);
    ``embeddings`` follows tables.EMBEDDINGS and enables the embedding score and analogue search.
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
    ranked = _rank_table(queries, lib, cand_offsets, cand_lib, scores, p, combined)

    q_values = None
    if p["decoys"]:
        q_values = _decoy_q_values(queries, lib, cand_offsets, cand_lib, scores, ranked, p, plan)
    ranked = ranked.with_columns(
        pl.Series("q_value", q_values if q_values is not None else np.full(ranked.height, np.nan), dtype=pl.Float64)
    )
    ranked = ranked.with_columns(
        ((pl.col("rank") == 1) & (pl.col("q_value") <= float(p["fdr"]))).fill_null(False).alias("accepted")
    )
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
        "library_adduct": meta["adduct"].gather(lib_rows),
        "library_formula": meta["formula"].gather(lib_rows),
        "library_precursor_mz": l_prec,
        "query_precursor_mz": q_prec,
    })
    out = tables.conform(out, ANNOTATION_SCHEMA)
    log.info(
        "annotated %d of %d spectra (%d candidate pairs, %d rows, %d accepted at %.0f%% FDR)",
        out["spectrum_id"].n_unique(), spectra.height, cand_lib.size, out.height,
        int(out["accepted"].sum()), 100 * float(p["fdr"]),
    )
    return out


# ---------------------------------------------------------------------------------------------- CLI


def score_files(
    queries: str | Path,
    libraries: list[str | Path],
    params: dict | None = None,
    index_root: str | Path = "results/library",
    library_params: dict | None = None,
) -> pl.DataFrame:
    """``ms2study score``: index the libraries (cached), annotate the queries, return SCORE_COLUMNS first."""
    libraries = [Path(x) for x in libraries]
    if len(libraries) == 1 and (libraries[0] / "manifest.json").exists():
        index_dir = libraries[0]
    else:
        stem = "+".join(x.name.split(".")[0] for x in libraries)
        index_dir = Path(index_root) / stem
        ensure_library_index(libraries, index_dir, library_params)
    spectra = read_query_file(queries)
    ann = annotate_spectra(spectra, index_dir, params)
    ann = ann.rename({"spectrum_id": "query_id"})
    return ann.select(SCORE_COLUMNS + [c for c in ann.columns if c not in SCORE_COLUMNS])


def _cli_annotate(args: argparse.Namespace) -> int:
    from ms2study.cli import load_params

    params = load_params(args)
    if args.library_index is None:
        # No library configured: the contract table still exists (empty), so the study stages run unchanged.
        log.warning("no library configured (config 'library'): %s has no identifications", args.out)
        write_parquet(pl.DataFrame(schema=ANNOTATION_SCHEMA), args.out)
        return 0
    spectra = pl.read_parquet(args.spectra)
    embeddings = pl.read_parquet(args.embeddings) if args.embeddings else None
    out = annotate_spectra(spectra, Path(args.library_index), params, embeddings)
    write_parquet(out, args.out)
    return 0


def _cli_score(args: argparse.Namespace) -> int:
    from ms2study.cli import load_params

    params = load_params(args)
    params.update({"precursor_tolerance_ppm": args.ppm, "top_k": args.top_k, "mode": args.mode})
    if args.da is not None:
        params["precursor_tolerance_da"] = args.da
    out = score_files(args.queries, args.library, params, index_root=args.index_root)
    write_parquet(out, args.out)
    print(f"{args.out}: {out.height} hits for {out['query_id'].n_unique()} queries")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    from ms2study.cli import add_params_argument

    p = subparsers.add_parser("annotate", help="score a sample's spectra against a library index (top-k candidates)")
    p.add_argument("--spectra", required=True, help="spectra.parquet of one sample")
    p.add_argument("--library-index", default=None,
                   help="index folder from 'ms2study index-library' (without it: an empty table, no library)")
    p.add_argument("--embeddings", default=None, help="embeddings.parquet of the same sample (optional)")
    p.add_argument("--out", required=True, help="annotations.parquet to write")
    add_params_argument(p)
    p.set_defaults(func=_cli_annotate)

    s = subparsers.add_parser("score", help="score query spectra (MGF or spectra.parquet) against library files")
    s.add_argument("--queries", required=True, help="queries: .mgf or a spectra.parquet")
    s.add_argument("--library", nargs="+", required=True, help="library file(s) (.mgf/.msp/.json) or one index folder")
    s.add_argument("--out", required=True, help="hits.parquet to write")
    s.add_argument("--ppm", type=float, default=DEFAULT_PARAMS["precursor_tolerance_ppm"],
                   help="precursor window (ppm)")
    s.add_argument("--da", type=float, default=None, help="precursor window in Da (replaces --ppm)")
    s.add_argument("--top-k", type=int, default=DEFAULT_PARAMS["top_k"], help="candidates kept per query")
    s.add_argument("--mode", choices=["identity", "analogue"], default="identity")
    s.add_argument("--index-root", default="results/library", help="where library indexes are cached")
    add_params_argument(s)
    s.set_defaults(func=_cli_score)
