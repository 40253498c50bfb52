"""Library calibration of identification confidence, built once per library (the engine of ``ms2study
calibrate-library``).

Searches library spectra as queries against the library itself, scored exactly as the annotate stage scores
sample spectra (same candidates, scores, combined-score plan and encoder), and turns the searches into a
``ms2study.identification.confidence.Calibration``:

- leave-structure-out searches (every spectrum of the query's structure removed): the scores of wrong candidate
  structures, of another formula (inside the precursor window and, for numbers, within +-WIDE_WINDOW_DA) and of
  another structure inside the window (isomers included);
- leave-one-spectrum-out searches (other spectra of the structure stay): the isomer margin, the smallest score
  gap to another structure of the same formula above which a wrong isomer rarely wins;
- both views of every search together: the training hits of the Schymanski level-2 model
  (``ms2study.identification.structure_model``), with each library structure's isomer separability (how closely
  spectra of other structures of its formula score against it).

Each structure (first InChIKey block; seeded order) is searched up to three times, with other spectra of it
where the library has them, at most ``calibration_queries`` searches; about half of the searches use a degraded
copy (``ms2study.identification.reference.degrade`` at a random level 1-4), so that the null covers noisy spectra,
and every query's precursor m/z carries a measurement error (sd: the ppm tolerance / 4,
``ms2study.core.measurement``), as a sample's does; the queries are embedded as measured.
With a trained encoder only structures outside its training split are searched (the encoder has memorised its
training structures, whose embeddings would make the null too light).
The Snakemake rule ``calibrate_library`` writes ``results/confidence/{library}.json``; ``ms2study score``
reuses that file for a study's index (``pipeline_calibration``), else caches its own inside the index folder.
Imports core, kernels, library, encoder and the identification modules below it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path

import numpy as np

from ms2study.core.errors import InputError
from ms2study.core.flat import FlatSpectra, offsets_from_counts
from ms2study.core.measurement import error_sd_for_tolerance, measured_precursor
from ms2study.encoder import inference
from ms2study.encoder.checkpoints import model_split_settings, resolve_model_dir
from ms2study.encoder.splits import assign_split
from ms2study.identification import confidence, engine, structure_model
from ms2study.identification.combined import CombinePlan, combine_plan, ranking_score
from ms2study.identification.level2_training import level2_training
from ms2study.identification.pairs import PreparedLibrary, identifiable, prepare_library, score_pairs
from ms2study.identification.reference import LOW_CONCENTRATION_LEVELS, degrade
from ms2study.kernels.candidates import find_candidates
from ms2study.library.index import LibraryIndex, load_library_index

log = logging.getLogger(__name__)

DEGRADED_FRACTION = 0.5
SEARCHES_PER_STRUCTURE = 3
MAX_WIDE_PAIRS_PER_QUERY = 32
MAX_WIDE_QUERIES = 1500      # searches whose +-5 Da window feeds the wrong-formula null (enough for ~50k scores)
NEVER_SCORE = -np.finfo(np.float64).max  # a null candidate that can never be an identification (finite: counted)


def _query_spectra(index: LibraryIndex, rows: np.ndarray, degraded: np.ndarray, seed: int,
                   precursor_error_ppm: float = 0.0) -> FlatSpectra:
    """Library rows as query spectra; rows flagged in ``degraded`` get a random low-concentration level (1-4); every
    precursor m/z gets a measurement error of sd ``precursor_error_ppm`` (``ms2study.core.measurement``)."""
    rng = np.random.default_rng(seed)
    mzs, ints = [], []
    for r, deg in zip(rows, degraded):
        m, x = index.peaks(int(r))
        if deg:
            level = LOW_CONCENTRATION_LEVELS[int(rng.integers(1, len(LOW_CONCENTRATION_LEVELS)))]
            m, x = degrade(m, x, float(index.precursor_mz[r]), level, rng)
        mzs.append(np.asarray(m, dtype=np.float64))
        ints.append(np.asarray(x, dtype=np.float32))
    precursor = measured_precursor(np.asarray(index.precursor_mz, dtype=np.float64)[rows], precursor_error_ppm,
                                   np.random.default_rng(seed + 1))
    return FlatSpectra.from_lists(mzs, ints, precursor, np.asarray(index.ion_mode)[rows], rows)


def choose_queries(structure: np.ndarray, ion_mode: np.ndarray, n_max: int, seed: int,
                   per_structure: int = SEARCHES_PER_STRUCTURE) -> tuple[np.ndarray, np.ndarray]:
    """Calibration searches: (library rows, degraded flags), at most ``n_max`` searches in all.

    Each structure (known structure and ion mode; seeded order) is searched up to ``per_structure`` times with
    different spectra of it where the library has them; a spectrum used again is always degraded (another
    random low-concentration copy), a first use is degraded with probability DEGRADED_FRACTION.
    """
    rng = np.random.default_rng(seed)
    ok = np.flatnonzero((structure >= 0) & (np.asarray(ion_mode) != 0))
    if ok.size == 0:  # no record with both (a lab's minimal MSP: Name, PrecursorMZ and peaks) made one empty group
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=bool)
    ok = ok[rng.permutation(ok.size)]
    order = np.argsort(structure[ok], kind="stable")
    ok = ok[order]
    bounds = np.flatnonzero(np.r_[True, structure[ok][1:] != structure[ok][:-1], True])
    groups = [ok[a:b] for a, b in zip(bounds[:-1], bounds[1:])]
    rows, degraded = [], []
    for g in rng.permutation(len(groups)):
        spectra = groups[g]
        for j in range(per_structure):
            rows.append(int(spectra[j % spectra.size]))
            degraded.append(bool(j >= spectra.size or rng.random() < DEGRADED_FRACTION))
        if len(rows) >= n_max:
            break
    return np.asarray(rows[:n_max], dtype=np.int64), np.asarray(degraded[:n_max], dtype=bool)


MIN_UNSEEN_STRUCTURES = 200


def unseen_by_encoder(index: LibraryIndex, model: str | None, trained: bool) -> np.ndarray | None:
    """Library rows whose structure the encoder did NOT train on (its recorded structure split), or None.

    An encoder has memorised its training structures: searched as queries, their embeddings sit apart from
    other structures', so a null measured on them would be lighter than the null of new compounds. None when
    the encoder is untrained or fewer than MIN_UNSEEN_STRUCTURES structures are left (then every row is used).
    """
    if not trained:
        return None
    split = model_split_settings(resolve_model_dir(model))
    blocks = index.metadata["inchikey"].str.slice(0, 14).fill_null("").to_list()
    cache: dict[str, bool] = {}
    unseen = np.zeros(len(blocks), dtype=bool)
    for i, b in enumerate(blocks):
        if len(b) == 14:
            if b not in cache:
                cache[b] = assign_split(b, int(split["seed"]), float(split["val_fraction"]),
                                        float(split["test_fraction"])) != "train"
            unseen[i] = cache[b]
    n = len({b for b, u in zip(blocks, unseen) if u})
    if n < MIN_UNSEEN_STRUCTURES:
        log.warning("only %d library structures are outside the encoder's training split: the null is measured on "
                    "all structures (it may be optimistic for the embedding score)", n)
        return None
    return unseen


def _encoder(p: dict, index: LibraryIndex) -> tuple[str | None, bool, np.ndarray | None, dict]:
    """(model_id, trained, library embeddings or None, embed params) of the encoder annotate would use."""
    eparams = {"model": p["model"]}
    try:
        _model, info, _dev = inference.get_model(eparams)
    except InputError as err:
        log.warning("no encoder (%s): calibrating the spectral scores only", err)
        return None, False, None, eparams
    emb = index.embeddings(info["model_id"])
    if emb is None:
        log.warning("library index %s has no embeddings for %s: calibrating the spectral scores only",
                    index.path, info["model_id"])
    return info["model_id"], bool(info["trained"]), None if emb is None else np.asarray(emb, np.float32), eparams


def calibrate_index(index_dir: str | Path, params: dict | None = None) -> confidence.Calibration:
    """Calibration of a library index for annotate ``params`` (see the module docstring).

    Raises InputError when the library holds no structures to calibrate with (no InChIKeys, or no null search
    with a candidate).
    """
    t0 = time.perf_counter()
    p = engine.merge_params(params)
    index = load_library_index(index_dir)
    structure, formula = confidence.library_codes(index.metadata)
    classes = np.asarray([confidence.superclass(c) for c in index.metadata["compound_class"].to_list()],
                         dtype=object)
    model_id, trained, lib_emb, eparams = _encoder(p, index)
    plan = combine_plan(p, model_id, trained, lib_emb is not None)
    lib = prepare_library(index, {**p, "embedding_model": None})
    lib.embeddings = lib_emb
    seed = int(p["calibration_seed"])
    unseen = unseen_by_encoder(index, p["model"], trained and lib_emb is not None)
    eligible = structure if unseen is None else np.where(unseen, structure, -1)
    rows, degraded = choose_queries(eligible, index.ion_mode, int(p["calibration_queries"]), seed)
    if rows.size == 0:
        raise InputError("the library has no spectra with an InChIKey and an ion mode to calibrate confidence with",
                         file=str(index_dir),
                         fix="give each record an InChIKey or SMILES and an ion mode (MSP: InChIKey/SMILES and "
                             "Ion_mode or Precursor_type; MGF: INCHIKEY/SMILES and IONMODE or CHARGE), add a broad "
                             f"reference library (e.g. MassBank) beside your own, or {confidence.CONFIDENCE_NONE}")
    # the queries as measured: degraded in part, every precursor with an instrument's error, embedded as such
    precursor_error_ppm = error_sd_for_tolerance(p["precursor_tolerance_ppm"])
    queries = _query_spectra(index, rows, degraded, seed + 2, precursor_error_ppm)
    q_emb = None
    if lib_emb is not None:
        q_emb, has, _info = inference.embed_arrays(queries.mz, queries.intensity, queries.offsets,
                                                   queries.precursor_mz, eparams)
        q_emb[~has] = np.nan
    # One candidate search without the query's own spectrum; the null then also drops its structure.
    off, cand = find_candidates(queries.precursor_mz, queries.ion_mode, np.asarray(index.precursor_mz),
                                         np.asarray(index.ion_mode), p["precursor_tolerance_ppm"],
                                         p["precursor_tolerance_da"])
    q_of = np.repeat(np.arange(rows.size), np.diff(off))
    keep = cand != rows[q_of]
    cand, q_of = cand[keep], q_of[keep]
    off = offsets_from_counts(np.bincount(q_of, minlength=rows.size))
    scores = score_pairs(queries, lib, off, cand, p, q_emb)
    key = ranking_score(queries, lib, off, cand, scores, p, plan)
    key, null_key = search_and_null_keys(key)

    q_struct, q_formula = structure[rows][q_of], formula[rows][q_of]
    c_struct, c_formula = structure[cand], formula[cand]
    other_structure = c_struct != q_struct
    other_formula = other_structure & ((c_formula != q_formula) | (c_formula < 0) | (q_formula < 0))
    # Null within the window: each wrong candidate structure by its best spectrum (the query's structure removed).
    structure_null, structure_cls = structure_maxima(q_of[other_structure], c_struct[other_structure],
                                                     null_key[other_structure], classes[cand[other_structure]])
    in_window_formula, _ = structure_maxima(q_of[other_formula], c_struct[other_formula], null_key[other_formula])
    wide = _wide_formula_null(queries, q_emb, lib, structure, formula, rows, p, plan, seed, eparams)
    formula_null = np.concatenate([in_window_formula, wide])

    # Self-search: rank-1 and the best other structure of rank-1's formula, where the right structure is present.
    gap, wrong = _isomer_gaps(off, cand, key, structure, formula, q_struct)
    margin = confidence.learn_isomer_margin(gap, wrong)
    # Schymanski level 2: the two-group model of right against wrong structures
    # (ms2study.identification.structure_model).
    blocks = np.asarray(index.metadata["inchikey"].str.slice(0, 14).fill_null("").to_list(), dtype=object)
    separability = isomer_separability(index, lib, lib_emb, structure, formula, p, plan, seed)
    features, right = level2_training(q_of, cand, np.where(key > float(p["min_score"]), key, -np.inf), scores,
                                      structure, formula, rows, np.diff(queries.offsets), separability, blocks)
    level2 = structure_model.StructureModel.fit(features, right)
    separability_by_block = {str(blocks[r]): float(v) for r, v in zip(separability["row"], separability["best"])
                             if len(blocks[r]) == 14}
    stats = {
        "n_queries": int(rows.size), "n_degraded": int(degraded.sum()), "precursor_error_ppm": precursor_error_ppm,
        "n_wrong_formula_candidates": int(formula_null.size), "n_wrong_formula_in_window": int(in_window_formula.size),
        "n_wrong_structure_candidates": int(structure_null.size),
        "n_isomer_self_searches": int(gap.size), "n_isomer_self_errors": int(wrong.sum()),
        "n_level2_training_right": int(right.sum()), "n_level2_training_wrong": int((~right).sum()),
        "n_structures_with_isomer_separability": len(separability_by_block),
        "wide_window_da": confidence.WIDE_WINDOW_DA, "library_spectra": len(index),
        "seconds": round(time.perf_counter() - t0, 2),
        "queries_from": "structures outside the encoder's training split" if unseen is not None else "all structures",
    }
    cal = confidence.Calibration.from_null(formula_null, structure_null, margin, scoring_signature(p, plan), stats,
                                           structure_cls, level2, separability_by_block)
    if level2 is None:
        stats.setdefault("caveats", []).append(
            f"{int(right.sum())} right and {int((~right).sum())} wrong calibration hits, fewer than the "
            f"{structure_model.MIN_CLASS} of each a level-2 model needs: Schymanski level 2 falls back to the "
            "wrong-structure null and the isomer margin")
    stats["smallest_p"] = cal.smallest_p()
    if stats["smallest_p"] > float(p["fdr"]):
        log.warning("calibration of %s: %s", index_dir, no_acceptance_text(stats["smallest_p"], int(formula_null.size),
                                                                          float(p["fdr"])))
    elif formula_null.size < SMALL_CALIBRATION:
        log.warning("calibration of %s: %s", index_dir, small_library_text(int(formula_null.size)))
    stats["structure_null_classes"] = {c: d.n for c, d in cal.structure_by_class.items()}
    margin_text = (f"{margin:.4f}" if margin < confidence.NO_MARGIN else
                   "none (no score gap keeps wrong isomers rare enough over 50 or more self-searches: without a "
                   "level-2 model, a hit with an identifiable isomer stays level 3)")
    log.info("calibration of %s: %d wrong-formula candidates (%d within the precursor window), %d wrong-structure "
             "candidates, isomer margin %s (%d self-searches with isomers, %d wrong), %.1f s", index_dir,
             formula_null.size, in_window_formula.size, structure_null.size, margin_text, gap.size,
             int(wrong.sum()), stats["seconds"])
    if structure_null.size < confidence.MIN_STRUCTURE_NULL:
        caveat = (f"only {structure_null.size} wrong-structure candidates (fewer than "
                  f"{confidence.MIN_STRUCTURE_NULL}): no hit can be singled out, every accepted hit is Schymanski "
                  "level 3")
        stats.setdefault("caveats", []).append(caveat)
        log.warning("calibration of %s: %s", index_dir, caveat)
    return cal


SMALL_CALIBRATION = 1000  # wrong candidates measured below which a library's q-values are coarse (log, report)


def small_library_text(n_wrong: int) -> str:
    """The log's warning for a calibration of fewer than SMALL_CALIBRATION wrong candidates."""
    return (f"only {n_wrong} wrong candidates were measured: the library is small, its q-values are coarse and a few "
            "look-alike wrong candidates can keep right matches above the FDR; add a broad reference library (e.g. "
            "MassBank) to `library:` beside your own")


def no_acceptance_text(smallest_p: float, n_wrong: int, fdr: float) -> str:
    """Why no hit of a small library can be accepted at ``fdr``, and what to do (the log and the report)."""
    return (f"only {n_wrong} wrong candidates were measured, so no p-value can fall below {smallest_p:.3g}, above the "
            f"FDR {fdr:g}: no name can be accepted, however well it matches. Add a broad reference library (e.g. "
            "MassBank) to `library:` beside your own, so that the calibration measures enough wrong candidates, or "
            f"{confidence.CONFIDENCE_NONE}")


def search_and_null_keys(key: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ranking scores of candidate pairs, shape (m,), as the searches use them (NaN and -inf: never an
    identification, -inf; an isomer at -inf competes with no hit) and as the nulls count them (NEVER_SCORE, a
    finite score no hit reaches: a p-value's n counts every candidate structure of the window, Sidak, so the
    per-candidate survival must count them too). np.nan_to_num would turn -inf into that finite score for both,
    and an unidentifiable isomer then had a gap of 1.8e308 to the hit (the isomer margin was the largest float)."""
    key = np.where(np.isnan(key), -np.inf, np.asarray(key, dtype=np.float64))
    return key, np.maximum(key, NEVER_SCORE)


def structure_maxima(q_of: np.ndarray, struct: np.ndarray, key: np.ndarray,
                     classes: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """The best score per (query, candidate structure) pair, shape (number of distinct pairs,), and the class of
    that candidate structure (its first spectrum's) when ``classes`` (per pair) is given."""
    import polars as pl

    if q_of.size == 0:
        return np.zeros(0), (np.zeros(0, dtype=object) if classes is not None else None)
    frame = pl.DataFrame({"q": q_of, "s": struct, "k": key,
                          "c": pl.Series(classes.tolist() if classes is not None else [None] * q_of.size,
                                         dtype=pl.Utf8)})
    out = frame.group_by("q", "s").agg(pl.col("k").max(), pl.col("c").first())
    return out["k"].to_numpy().astype(np.float64), (np.asarray(out["c"].to_list(), dtype=object)
                                                    if classes is not None else None)


def _pair_embedding_similarity(queries: FlatSpectra, q_of: np.ndarray, cand: np.ndarray,
                               lib: PreparedLibrary, eparams: dict) -> np.ndarray:
    """Embedding cosine of each (query, candidate) pair with the query re-embedded at the candidate's precursor
    m/z (the encoder reads the precursor, so a query placed in the candidate's window must carry its mass)."""
    counts = np.diff(queries.offsets)[q_of]
    offsets = offsets_from_counts(counts)
    idx = (np.concatenate([np.arange(queries.offsets[q], queries.offsets[q + 1]) for q in q_of]) if q_of.size
           else np.zeros(0, dtype=np.int64))
    prec = np.asarray(lib.index.precursor_mz)[cand].astype(np.float64)
    emb, has, _info = inference.embed_arrays(queries.mz[idx], queries.intensity[idx], offsets, prec, eparams)
    emb = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
    sim = np.einsum("ij,ij->i", emb, np.asarray(lib.embeddings)[cand]).astype(np.float64)
    return np.where(has, sim, np.nan)


def _wide_formula_null(queries: FlatSpectra, q_emb: np.ndarray | None, lib: PreparedLibrary,
                       structure: np.ndarray, formula: np.ndarray, rows: np.ndarray, p: dict,
                       plan: CombinePlan, seed: int, eparams: dict) -> np.ndarray:
    """Wrong-formula candidates from +-WIDE_WINDOW_DA around each query, scored as if inside its window.

    At most MAX_WIDE_PAIRS_PER_QUERY random spectra per query, for at most MAX_WIDE_QUERIES queries. Inside the precursor window the precursor shift is
    below the fragment tolerance, so the modified cosine is taken equal to the cosine; the precursor error is
    drawn uniformly within the window; the query is re-embedded at the candidate's precursor m/z.
    """
    index = lib.index
    off, cand = find_candidates(queries.precursor_mz, queries.ion_mode, np.asarray(index.precursor_mz),
                                         np.asarray(index.ion_mode), None, confidence.WIDE_WINDOW_DA)
    q_of = np.repeat(np.arange(rows.size), np.diff(off))
    qf, cf = formula[rows][q_of], formula[cand]
    keep = (structure[cand] != structure[rows][q_of]) & ((cf != qf) | (cf < 0) | (qf < 0))
    rng = np.random.default_rng(seed + 3)
    if rows.size > MAX_WIDE_QUERIES:
        keep &= np.isin(q_of, rng.choice(rows.size, MAX_WIDE_QUERIES, replace=False))
    q_of, cand = q_of[keep], cand[keep]
    # A random subset per query: sort by (query, random key), keep the first MAX per query.
    order = np.lexsort((rng.random(q_of.size), q_of))
    q_of, cand = q_of[order], cand[order]
    first = np.searchsorted(q_of, q_of, side="left")
    sel = (np.arange(q_of.size) - first) < MAX_WIDE_PAIRS_PER_QUERY
    q_of, cand = q_of[sel], cand[sel]
    if q_of.size == 0:
        return np.zeros(0)
    off = offsets_from_counts(np.bincount(q_of, minlength=rows.size))
    scores = score_pairs(queries, lib, off, cand, p, None)
    if q_emb is not None and lib.embeddings is not None:
        scores["embedding"] = _pair_embedding_similarity(queries, q_of, cand, lib, eparams)
    scores["modified_cosine"] = scores["cosine"]
    scores["modified_matched_peaks"] = scores["matched_peaks"]
    tol = (float(p["precursor_tolerance_ppm"]) if p["precursor_tolerance_da"] is None
           else float(p["precursor_tolerance_da"]) / np.maximum(queries.precursor_mz[q_of], 1.0) * 1e6)
    ppm = rng.uniform(-1.0, 1.0, q_of.size) * tol
    if p["rank_by"] == "combined":
        key = plan.combined_from(scores, np.diff(queries.offsets)[q_of], ppm, p)
    else:
        key = np.asarray(scores[p["rank_by"]], dtype=np.float64)
    key = np.where(identifiable(scores, p), key, -np.inf)  # as ranking_score: never an identification
    return structure_maxima(q_of, structure[cand], search_and_null_keys(key)[1])[0]


def _isomer_gaps(off: np.ndarray, cand: np.ndarray, key: np.ndarray, structure: np.ndarray, formula: np.ndarray,
                 q_struct_per_pair: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per answerable self-search with an isomer candidate: (rank-1 minus best isomer of rank-1, rank-1 wrong)."""
    gaps, wrong = [], []
    for q in range(off.size - 1):
        a, b = int(off[q]), int(off[q + 1])
        if b - a < 2:
            continue
        k, c = key[a:b], cand[a:b]
        truth = q_struct_per_pair[a]
        if not (structure[c] == truth).any() or not np.isfinite(k.max()):
            continue
        top = int(np.argmax(k))
        s1, f1 = structure[c[top]], formula[c[top]]
        # an isomer sharing too few fragment peaks to be identified (key -inf) is no competitor
        iso = (structure[c] != s1) & ((formula[c] == f1) | (formula[c] < 0) | (f1 < 0)) & np.isfinite(k)
        if not iso.any():
            continue
        gaps.append(float(k[top] - k[iso].max()))
        wrong.append(bool(s1 != truth))
    return np.asarray(gaps, dtype=np.float64), np.asarray(wrong, dtype=bool)


MAX_SEPARABILITY_SPECTRA = 4     # query spectra per structure when measuring isomer separability
MAX_SEPARABILITY_PAIRS = 64      # isomer spectra scored against each of them


def isomer_separability(index: LibraryIndex, lib: PreparedLibrary, lib_emb: np.ndarray | None,
                        structure: np.ndarray, formula: np.ndarray, p: dict, plan: CombinePlan, seed: int) -> dict:
    """How closely each library structure's isomers score against it: spectra of another structure of the same
    formula inside its precursor window, searched as queries (up to MAX_SEPARABILITY_SPECTRA per structure, up to
    MAX_SEPARABILITY_PAIRS isomer spectra each, seeded), scored with the ranking score.

    Returns arrays over structures that have such an isomer: ``struct`` (code), ``row`` (one library row of it),
    ``best`` / ``best_partner`` (highest score of an isomer spectrum against it, and that isomer's code) and
    ``second`` (the highest score of any OTHER isomer structure; NaN when there is none), so that a calibration
    search can leave its own structure out.
    """
    pm, im = np.asarray(index.precursor_mz), np.asarray(index.ion_mode)
    off, cand = find_candidates(pm, im, pm, im, p["precursor_tolerance_ppm"], p["precursor_tolerance_da"])
    q = np.repeat(np.arange(pm.size), np.diff(off))
    keep = (structure[cand] != structure[q]) & (formula[cand] == formula[q]) & (formula[q] >= 0) & \
        (structure[q] >= 0) & (structure[cand] >= 0)
    q, cand = q[keep], cand[keep]
    empty = {k: np.zeros(0) for k in ("struct", "row", "best", "best_partner", "second")}
    if q.size == 0:
        return empty
    rng = np.random.default_rng(seed + 5)
    rows = np.unique(q)
    rows = rows[rng.permutation(rows.size)]
    rows = rows[np.argsort(structure[rows], kind="stable")]
    rank = np.arange(rows.size) - np.searchsorted(structure[rows], structure[rows], side="left")
    rows = rows[rank < MAX_SEPARABILITY_SPECTRA]
    sel = np.isin(q, rows)
    q, cand = q[sel], cand[sel]
    order = np.lexsort((rng.random(q.size), q))
    q, cand = q[order], cand[order]
    sel = (np.arange(q.size) - np.searchsorted(q, q, side="left")) < MAX_SEPARABILITY_PAIRS
    q, cand = q[sel], cand[sel]
    rows = np.unique(q)
    queries = _query_spectra(index, rows, np.zeros(rows.size, dtype=bool), seed)
    qoff = offsets_from_counts(np.bincount(np.searchsorted(rows, q), minlength=rows.size))
    scores = score_pairs(queries, lib, qoff, cand, p, None if lib_emb is None else lib_emb[rows].copy())
    # an isomer that can never be identified separates as well as any: the nulls' finite score
    key = search_and_null_keys(ranking_score(queries, lib, qoff, cand, scores, p, plan))[1]
    # Best score per (candidate structure, isomer structure), then the best two isomers per candidate structure.
    c_s, i_s = structure[cand], structure[q]
    o = np.lexsort((-key, i_s, c_s))
    c_s, i_s, key, c_row = c_s[o], i_s[o], key[o], cand[o]
    first = np.r_[True, (c_s[1:] != c_s[:-1]) | (i_s[1:] != i_s[:-1])]
    c_s, i_s, key, c_row = c_s[first], i_s[first], key[first], c_row[first]
    o = np.lexsort((-key, c_s))
    c_s, i_s, key, c_row = c_s[o], i_s[o], key[o], c_row[o]
    start = np.r_[True, c_s[1:] != c_s[:-1]]
    pos = np.flatnonzero(start)
    nxt = pos + 1
    has2 = (nxt < c_s.size) & ~np.r_[start, True][nxt]
    second = np.where(has2, key[np.minimum(nxt, c_s.size - 1)], np.nan)
    return {"struct": c_s[pos], "row": c_row[pos], "best": key[pos], "best_partner": i_s[pos], "second": second}


def scoring_signature(p: dict, plan: CombinePlan) -> dict:
    """What a calibration depends on: the ranking score, its plan and encoder, the search and scoring parameters."""
    keys = ("rank_by", "mode", "precursor_tolerance_ppm", "precursor_tolerance_da", "fragment_tolerance_da",
            "mz_power", "intensity_power", "entropy_tolerance_da", "entropy_noise_threshold", "entropy_merge_da",
            "calibration_queries", "calibration_seed", "min_matched_peaks")
    sig = {k: p[k] for k in keys}
    sig["plan"] = plan.kind
    sig["model_id"] = plan.model_id if plan.use_embedding else None
    if plan.learned is None:
        sig["weights"] = p["weights"]
    return sig


def pipeline_calibration(index_dir: str | Path, p: dict) -> confidence.Calibration | None:
    """The calibration the pipeline's ``calibrate_library`` rule wrote for this index (``results/confidence/<name>.json``
    beside ``results/library/<name>``), when it is readable and was measured with the search and score that
    ``p`` (merged annotate parameters) asks for (``scoring_signature``); None otherwise."""
    index_dir = Path(index_dir).resolve()
    path = index_dir.parent.parent / "confidence" / f"{index_dir.name}.json"
    try:
        cal = confidence.Calibration.load(path) if index_dir.parent.name == "library" and path.is_file() else None
    except InputError:
        cal = None
    if cal is None:
        return None
    model_id, trained, lib_emb, _ = _encoder(p, load_library_index(index_dir))
    want = scoring_signature(p, combine_plan(p, model_id, trained, lib_emb is not None))
    same = json.dumps(want, sort_keys=True, default=str) == json.dumps(cal.scoring, sort_keys=True, default=str)
    return cal if same else None


def cached_calibration(index_dir: str | Path, params: dict | None = None) -> confidence.Calibration:
    """The calibration for ``params``: the pipeline's own for a study's index (``pipeline_calibration``), else the
    one stored in the index folder (``calibration/<hash>.json``), built if absent."""
    p = engine.merge_params(params)
    from_pipeline = pipeline_calibration(index_dir, p)
    if from_pipeline is not None:
        log.info("using the study's calibration of %s (results/confidence)", index_dir)
        return from_pipeline
    # The format version is part of the key: a calibration cached by an older version is rebuilt, never misread.
    digest = hashlib.sha256(json.dumps(
        {**{k: p[k] for k in sorted(p) if k not in ("top_k", "fdr", "min_score", "analogue_chunk_mb")},
         "_format_version": confidence.FORMAT_VERSION}, sort_keys=True, default=str).encode()).hexdigest()[:16]
    path = Path(index_dir) / "calibration" / f"{digest}.json"
    if path.exists():
        return confidence.Calibration.load(path)
    cal = calibrate_index(index_dir, p)
    cal.save(path)
    return cal
