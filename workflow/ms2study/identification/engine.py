"""Library identification of MS/MS spectra (the engine of ``ms2study annotate`` and ``ms2study score``): candidate
search, scoring, ranking and confidence.

For each query spectrum with peaks, candidates are the library spectra of the same ion mode whose precursor
m/z lies within a ppm (or Da) window, found by binary search on the index's sorted precursor m/z
(``identity`` mode); ``analogue`` mode drops the precursor filter and takes the library spectra nearest in
embedding space (chunked matrix products, memory bounded), or, without embeddings, scores the whole library.
Every candidate gets the cosine and modified cosine (matchms ``CosineGreedy`` / ``ModifiedCosineGreedy``
semantics), the entropy similarity (ms_entropy semantics) and, when embeddings are given, the embedding
cosine, all from the numba kernels in ``ms2study.kernels``. The library embeddings are those stored in the index
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
the library's calibrated null model (``ms2study.identification.confidence``): ``p_value``, ``q_value`` and
``structure_q_value`` of each rank-1 hit, ``accepted`` at ``fdr`` (1 %) and the Schymanski level.
The same function serves the Snakemake rule (``ms2study annotate``), ``ms2study score`` and the tests.
Imports core, kernels, library, encoder.checkpoints and the identification modules below it.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from ms2study.core import tables
from ms2study.core.errors import InputError
from ms2study.core.measurement import nominal_precursor
from ms2study.core.params import overlay, schema_defaults
from ms2study.identification import confidence, recalibration
from ms2study.identification.acceptance import (
    LOW_COSINE, _checked_calibration, _decoy_q_values, confidence_table, evidence_notes,
)
from ms2study.identification.combined import SCORE_NAMES, combine_plan, embeddings_model
from ms2study.identification.insource import in_source_parents
from ms2study.identification.pairs import (
    _analogue_candidates, _query_embedding_matrix, _rank_table, flatten_queries, prepare_library, score_pairs,
)
from ms2study.kernels.candidates import find_candidates
from ms2study.library.index import load_library_index

log = logging.getLogger(__name__)


# The annotate section (defaults, types and allowed values in workflow/schemas/config.schema.yaml); the rule adds
# the encoder folder (embed: model, where a learned combined.json lives) and the cleaning (null: the index's).
# model: the encoder of the embeddings; embed: the embed stage's settings (a recalibrated run is embedded again)
DEFAULT_PARAMS: dict[str, Any] = {**schema_defaults("annotate"), "model": "default", "cleaning": None, "embed": None}


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
    "structure_log_lr": pl.Float64,  # level-2 model: log likelihood ratio of the right structure (rank 1; NaN: none)
    "msi_level": pl.Int8,
    "isomer_inchikeys": pl.List(pl.Utf8),
    "isomer_gap": pl.Float64,      # rank-1 score minus the best other structure of its formula (null: none)
    "n_candidates": pl.Int32,      # candidate structures in the precursor window
    "evidence_note": pl.Utf8,      # why an accepted hit with cosine < 0.3 passed, or why rank 1 is no identification
    "in_source_parent_mz": pl.Float64,  # a co-eluting heavier precursor whose MS/MS holds this one (insource)
    "library_adduct": pl.Utf8,
    "library_formula": pl.Utf8,
    "library_precursor_mz": pl.Float64,
    "query_precursor_mz": pl.Float64,
    # the run's precursor m/z offset removed before the search (ppm, identification.recalibration; null: none)
    "precursor_recalibration_ppm": pl.Float64,
}


ANNOTATION_SCHEMA: dict[str, pl.DataType] = {**tables.ANNOTATIONS, **EXTRA_COLUMNS}


def _log_spectra_without_rows(spectra: pl.DataFrame, queries: Any, cand_offsets: np.ndarray, frame: pl.DataFrame,
                              p: dict) -> None:
    """Name the spectra that get no row, so none is missing in silence: those without a library candidate (identity
    search: none of their ion mode in the precursor window) and those whose every candidate scored at or below
    ``min_score`` (e.g. random peaks whose spectral scores are all 0)."""
    kept = np.zeros(queries.rows.size, dtype=bool)
    kept[frame["_q"].unique().to_numpy()] = True
    had = np.diff(cand_offsets) > 0
    window = (f"{p['precursor_tolerance_da']} Da" if p["precursor_tolerance_da"] is not None
              else f"{p['precursor_tolerance_ppm']} ppm")
    modes = {1: "positive", -1: "negative"}
    for missing, why, with_precursor in (
            (~had, f"have no library candidate of their ion mode within {window} of their precursor", True),
            (had & ~kept, f"have candidates that all score at or below min_score {float(p['min_score']):g} "
                          f"({p['rank_by']})", False)):
        rows = np.flatnonzero(missing)
        if rows.size:
            ids = spectra["spectrum_id"].gather(queries.rows[rows[:10]]).to_list()
            shown = [f"{i} ({modes.get(int(queries.ion_mode[r]), 'unknown mode')} {queries.precursor_mz[r]:.4f})"
                     if with_precursor else i for i, r in zip(ids, rows[:10])]
            log.warning("%d of %d spectra %s and get no row: %s%s", rows.size, queries.rows.size, why,
                        ", ".join(shown), ", ..." if rows.size > 10 else "")


NOMINAL_NOTE = ("precursor m/z given as a whole number (unit resolution): candidates listed, no q-value and never "
                "accepted, since the confidence rests on the precursor's accurate mass")


def _without_confidence_for_nominal_precursors(ranked: pl.DataFrame, queries: Any, spectra: pl.DataFrame,
                                               nominal: np.ndarray) -> pl.DataFrame:
    """``ranked`` with the confidence of queries whose precursor m/z is a whole number removed (p, q, structure q,
    likelihood ratio, level and acceptance; the candidates stay), and one warning naming them. The null model's
    wrong candidates are those within the ppm window of an accurate precursor; a whole-number precursor also
    matches other formulas' whole-number records exactly, so its q-value does not hold: a trial saw 3 of 22 such
    queries accepted at q <= 0.01 with the wrong formula (0 of 275 with accurate precursors). ``nominal``: per
    query, ``core.measurement.nominal_precursor`` of its precursor."""
    if not nominal.any():
        return ranked
    hit = pl.Series(nominal).gather(ranked["_q"].to_numpy())
    ids = spectra["spectrum_id"].gather(queries.rows[np.flatnonzero(nominal)]).cast(pl.Utf8).to_list()
    log.warning("%d of %d query spectra have a whole-number precursor m/z (unit resolution, e.g. %s): their "
                "candidates are listed without q-values and none is accepted (the confidence needs accurate "
                "precursor masses)", len(ids), nominal.size, ", ".join(ids[:5]) + (", ..." if len(ids) > 5 else ""))
    cleared = [pl.when(hit).then(None).otherwise(pl.col(c)).alias(c)
               for c in ("p_value", "q_value", "structure_q_value", "structure_log_lr", "msi_level")
               if c in ranked.columns]
    return ranked.with_columns(*cleared, (pl.col("accepted") & ~hit).alias("accepted"))


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


def _recalibrated(queries: Any, index: Any, p: dict) -> tuple[Any, float | None]:
    """(``queries`` with the run's precursor offset removed, the offset) when one of
    ``recalibration.removal_threshold_ppm`` or more is measured on its confident library matches
    (``recalibration.precursor_offset_ppm``; logged), else (``queries``, None)."""
    offset, n = recalibration.precursor_offset_ppm(
        queries, np.asarray(index.offsets), np.asarray(index.mz), np.asarray(index.intensity),
        np.asarray(index.precursor_mz), np.asarray(index.ion_mode), p)
    if offset is None or abs(offset) < recalibration.removal_threshold_ppm(p["precursor_tolerance_ppm"],
                                                                         p["precursor_tolerance_da"]):
        log.info("precursor m/z offset: %s (%d library spectra agree)", "not measured" if offset is None
                 else f"{offset:+.1f} ppm, within the scatter: left as is", n)
        return queries, None
    log.warning("precursor m/z offset %+.1f ppm, measured on %d library spectra matched at cosine >= %.1f: removed "
                "before the search (precursor_error_ppm stays the measured error); recalibrate the instrument or "
                "set annotate: recalibrate_precursors: false to search as measured", offset, n,
                recalibration.MIN_COSINE)
    return recalibration.shifted(queries, offset), offset


def _reembedded(spectra: pl.DataFrame, offset_ppm: float, embeddings: pl.DataFrame, p: dict) -> pl.DataFrame:
    """The run's spectra embedded again at their recalibrated precursor m/z with the encoder that embedded them
    (``p["model"]``, the embed settings ``p["embed"]``): the encoder reads the precursor m/z, and a trial's run
    24 ppm off kept 9 of 33 accepted spectra when only the search used the recalibrated m/z. ``embeddings`` is
    returned unchanged (with a warning) when the encoder gives another model id."""
    from ms2study.encoder import inference

    shifted = spectra.with_columns(pl.col("precursor_mz").cast(pl.Float64) / (1.0 + offset_ppm * 1e-6))
    again = inference.embed_spectra(shifted, {**(p.get("embed") or {}), "model": p["model"]})
    before, after = embeddings_model(embeddings)[0], embeddings_model(again)[0]
    if before is not None and after != before:
        log.warning("the run's spectra were embedded by %s, the configured encoder is %s: embeddings kept at the "
                    "measured precursor m/z", before, after)
        return embeddings
    log.info("%d spectra embedded again at the recalibrated precursor m/z (%s)", again.height, after)
    return again


def _empty_annotations() -> pl.DataFrame:
    return pl.DataFrame(schema=ANNOTATION_SCHEMA)


def _in_source(spectra: pl.DataFrame, features: pl.DataFrame | None = None, ion_mode: str = "positive") -> np.ndarray:
    """``insource.in_source_parents`` of the run's spectra, co-elution by the apexes of their ``features`` when
    given (NaN for every row where the table lacks retention times or peaks, e.g. MGF queries); ``ion_mode``: the
    polarity of scans whose file states none."""
    if not {"rt_s", "precursor_mz", "mz", "intensity"} <= set(spectra.columns):
        return np.full(spectra.height, np.nan)
    return in_source_parents(spectra, features=features, ion_mode=ion_mode)


def annotate_spectra(
    spectra: pl.DataFrame,
    library_index_dir: Path | str,
    params: dict | None = None,
    embeddings: pl.DataFrame | None = None,
    calibration: confidence.Calibration | str | Path | None = None,
    cleaned_with: dict | None = None,
    features: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """Top-k library candidates per spectrum with all scores (columns: tables.ANNOTATIONS, then EXTRA_COLUMNS).

    ``spectra`` follows tables.SPECTRA (an ``ion_mode`` column is honoured when present);
    ``embeddings`` follows tables.EMBEDDINGS and enables the embedding score and analogue search;
    ``calibration`` is the library's ``ms2study.identification.confidence.Calibration`` (or its JSON path), required with
    ``confidence: null_model`` (the default). Confidence columns (p_value, q_value, structure_q_value,
    accepted, msi_level, isomer_inchikeys) are filled on rank-1 rows only. Raises InputError for a missing or
    mismatched calibration and for embeddings that do not fit the library's. ``cleaned_with``: the cleaning the
    spectra already went through (the spectra stage records it); equal to this search's cleaning, the peaks are
    not cleaned again. ``features``: the run's features table (feature_id, rt_s): in-source parents are then looked
    for among spectra whose features' apexes co-elute (``identification.insource``), else by MS2 scan time.
    """
    p = merge_params(params)
    index = load_library_index(library_index_dir)
    cleaning = p["cleaning"] if p["cleaning"] is not None else index.manifest.get("params", {}).get("cleaning", {})
    for col in ("sample_id", "feature_id"):
        if col not in spectra.columns:
            spectra = spectra.with_columns(pl.lit(None, dtype=pl.Utf8).alias(col))
    queries = flatten_queries(spectra, None if cleaned_with == cleaning else cleaning, p["ion_mode"])
    if queries.rows.size == 0 or len(index) == 0:
        return _empty_annotations()
    measured_precursor = queries.precursor_mz  # the errors reported are the measured ones
    removed = None
    if p["mode"] == "identity" and p["recalibrate_precursors"]:
        queries, removed = _recalibrated(queries, index, p)
        if removed is not None and embeddings is not None:
            embeddings = _reembedded(spectra, removed, embeddings, p)
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
    _log_spectra_without_rows(spectra, queries, cand_offsets, frame, p)
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
    # the spectra of one feature, or of one unmapped ion triggered again and again, count once among the
    # discoveries of the q-values (confidence.unit_q_values)
    rt = (spectra["rt_s"].cast(pl.Float64).fill_null(np.nan).gather(queries.rows).to_numpy() if "rt_s" in spectra.columns
          else np.full(queries.rows.size, np.nan))  # queries without a retention time: each its own unit
    units = confidence.ion_units(spectra["feature_id"].cast(pl.Utf8).gather(queries.rows).to_list(),
                                 queries.precursor_mz, rt, float(p["precursor_tolerance_ppm"]))
    conf = (confidence_table(frame, index, n_candidates, p, cal, row_q, codes, np.diff(queries.offsets), units)
            if p["confidence"] != "none" else None)
    ranked = frame.filter(pl.col("rank") <= int(p["top_k"])).drop("_key")
    if conf is not None:
        ranked = ranked.join(conf, on="_q", how="left").with_columns(
            pl.when(pl.col("rank") == 1).then(pl.col(c)).alias(c)
            for c in ("p_value", "q_value", "structure_q_value", "structure_log_lr", "accepted", "msi_level",
                      "isomer_inchikeys", "isomer_gap"))
    else:
        unset = ("p_value", "q_value", "structure_q_value", "structure_log_lr")
        ranked = ranked.with_columns(pl.lit(None, dtype=pl.Float64).alias(c) for c in unset).with_columns(
            pl.lit(None, dtype=pl.Int8).alias("msi_level"), pl.lit(None, dtype=pl.List(pl.Utf8)).alias("isomer_inchikeys"),
            pl.lit(None, dtype=pl.Float64).alias("isomer_gap"))
    ranked = ranked.with_columns(pl.col("accepted").fill_null(False) if "accepted" in ranked.columns
                                 else pl.lit(False).alias("accepted"))
    nominal = nominal_precursor(measured_precursor)  # per query
    ranked = _without_confidence_for_nominal_precursors(ranked, queries, spectra, nominal).sort(["_q", "rank"])
    meta = index.metadata
    lib_rows = ranked["_lib"].to_numpy()
    q_rows = queries.rows[ranked["_q"].to_numpy()]
    q_prec = measured_precursor[ranked["_q"].to_numpy()]
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
        "structure_log_lr": ranked["structure_log_lr"].fill_nan(None),
        "msi_level": ranked["msi_level"],
        "isomer_inchikeys": ranked["isomer_inchikeys"],
        "isomer_gap": ranked["isomer_gap"],
        "n_candidates": n_candidates[ranked["_q"].to_numpy()].astype(np.int32),
        "evidence_note": pl.Series([NOMINAL_NOTE if w else None for w in nominal[ranked["_q"].to_numpy()]],
                                   dtype=pl.Utf8).fill_null(evidence_notes(ranked, plan.use_embedding, int(p["min_matched_peaks"]))),
        "in_source_parent_mz": pl.Series(_in_source(spectra, features, p["ion_mode"])[q_rows]).fill_nan(None),
        "library_adduct": meta["adduct"].gather(lib_rows),
        "library_formula": meta["formula"].gather(lib_rows),
        "library_precursor_mz": l_prec,
        "query_precursor_mz": q_prec,
        "precursor_recalibration_ppm": pl.Series([removed] * ranked.height, dtype=pl.Float64),
    })
    out = tables.conform(out, ANNOTATION_SCHEMA)
    acc = out.filter(pl.col("accepted"))
    log.info(
        "annotated %d of %d spectra (%d candidate pairs, %d rows, %d accepted at %.0f%% FDR: %d at Schymanski level 2, "
        "%d at level 3; confidence: %s)",
        out["spectrum_id"].n_unique(), spectra.height, cand_lib.size, out.height, acc.height,
        100 * float(p["fdr"]), int((acc["msi_level"] == 2).sum()), int((acc["msi_level"] == 3).sum()),
        p["confidence"],
    )
    lacking = out.filter((ranked["rank"] == 1) & ~ranked["_identifiable"])  # out's rows are ranked's
    if lacking.height:
        shown = lacking["spectrum_id"].head(10).to_list()
        needed = int(p["min_matched_peaks"])
        log.info("%d spectra: no candidate in their precursor window shares %s with them: not identified "
                 "(annotate: min_matched_peaks): %s%s", lacking.height,
                 "a fragment peak" if needed == 1 else f"{needed} fragment peaks",
                 ", ".join(shown), ", ..." if lacking.height > 10 else "")
    low = acc.filter(pl.col("cosine") < LOW_COSINE)
    if low.height:
        log.info("%d accepted hits have cosine < %.1f: accepted on the combined score (entropy %s)", low.height,
                 LOW_COSINE, "and embedding agreement" if plan.use_embedding else "agreement")
    return out
