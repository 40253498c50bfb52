"""Adduct and isotope grouping of the study feature matrix: the consensus features of one compound ([M+H]+, [M+Na]+,
[M+NH4]+, ... and their isotope peaks: 13C, 37Cl, 81Br, 34S, 30Si) become one compound group with each member's ion
annotated.

The method follows the idea of OpenMS's MetaboliteFeatureDeconvolution (pyOpenMS documentation, "Adduct
Detection"; Bielow et al., J. Proteome Res. 2010) on the consensus level, with its integer program replaced by a
greedy, score-ordered assignment and with intensity correlation across samples added (as CAMERA, Kuhl et al., Anal.
Chem. 2012, and MS-DIAL do):

1. Candidate pairs: consensus features whose retention times differ by at most ``adduct_rt_tol_s``.
2. Mass hypotheses: a pair (a, b) with m/z(a) < m/z(b) is an *adduct pair* when some neutral mass M gives a under
   one adduct and b under another of :data:`ADDUCTS` (m/z = k * M + delta, singly charged) within
   ``adduct_mz_ppm`` of b's m/z, or an *isotope pair* when b - a is an isotope step within the same tolerance and
   b/a has a ratio that isotope can have at that mass (``correction.isotopes``, where the bounds and their sources
   are): one or two 13C steps (1.003355 Da, at most 1.1% per carbon); one heavy atom at M+2 (37Cl +1.997050 Da,
   32% of M per Cl; 81Br +1.997953, 97% per Br; 34S +1.995796, 4.5% per S; 30Si +1.996844, 3.4% per Si); 13C with one
   at M+3; two Cl/Br, or 13C2 with one heavy atom, at M+4; at most m/z / 12 C, 35 Cl, 79 Br, 60 S, 74 Si, with slack for
   quantification noise. A difference that fits both 13C2 and a heavy atom (possible above m/z ~440-550 at 10 ppm)
   is 13C2 where its ratio is one a 13C2 peak can have, else a heavy-atom peak. Water loss is claimed only as the
   listed ion [M+H-H2O]+ / [M-H-H2O]-; other in-source fragments (losses of NH3, CO2, HCOOH, ...) are NOT claimed
   and stay separate features.
3. Co-variation: the Pearson correlation r of log intensities over the n runs where both are measured must show that
   they co-vary (``correction.covariation``): r at least ``adduct_min_correlation`` (an effect-size floor) and above
   0 by a one-sided test (exact t test; the least r passing at level 0.01 falls with n: 0.88 over 6 runs, 0.57 over
   16), so that the evidence asked for grows as the runs to judge it shrink; the test's Benjamini-Hochberg q-value
   over the study's tested pairs (a heavy-atom isotope reading counts only where its ratio can be, so that these
   readings do not dilute the other tests) must reach ``adduct_alpha`` (``adduct_multiple_testing: bh``, default;
   ``none``: each pair's p-value), so at most that share of the groupings made are expected to be chance. The test's
   null is learned on the study's co-eluting pairs that fit no mass hypothesis (``adduct_null: empirical``, default;
   ``correction.covariation``), since co-eluting ions may co-vary without being one compound. With fewer
   than ``adduct_min_runs`` shared runs (small studies) the pair is judged on retention time and mass alone (counted
   in the notes) and its grouping carries no test (``adduct_p_value`` null): identification does not refuse a library
   match on it; it needs the two measured together in half the runs of each feature it labels, or in the stronger
   ion's most intense runs (``covariation.unsupported_sparse``; counted). A pair never measured together is rejected.
4. Assignment: isotope peaks first (ascending m/z; each monoisotopic feature takes its best M+1, 13C2 M+2 and
   one-heavy-atom M+2, and, only after that heavy M+2 and as it reads, its M+3 and M+4), then adduct
   pairs in descending score (correlation, mass error, RT difference, adduct prior) join groups as connected
   components while they stay consistent: a feature has one adduct and belongs to one group, a group has one neutral
   mass and each adduct at most once; an edge that contradicts the groups formed by better edges is dropped.

Limits (measured on simulated studies run through detect and link): isomers of one neutral mass co-eluting within
the RT tolerance cannot be told apart, so their ions may be paired crosswise (labels stay right); gap-filled values
weaken the correlation (recall 0.83 against 0.94 on the measured values of the same realistic study), so pass
measured intensities (filled cells null) where possible.

Evidence per feature (``EVIDENCE_COLUMNS``): the partner and the test of the accepted edge that gave the feature its
label (its best-scored one, a tested edge before an untested one; an isotope peak's edge to its monoisotopic
feature): ``adduct_partner``, ``adduct_n_runs`` (runs both measured), ``adduct_correlation`` and ``adduct_p_value``
(null when not tested), so that a refused identification can show what the grouping rested on.

Labels: ``"[M+H]+"``, ``"[M+Na]+"``, ...; an isotope peak ``"[M+H]+ M+1"`` (``"M+1"`` when its monoisotopic
feature's adduct is unknown), ``"[M+H]+ 37Cl M+2"``, ``"[M+H]+ 13C 37Cl M+3"``, ``"[M+H]+ 37Cl2 M+4"`` (every
composition that fits mass and ratio, joined by "/": ``"37Cl/34S M+2"``); each ends in ``M+k``, which
identification reads as an isotope peak, never as an adduct; singletons have a null adduct. The representative of
a group is its [M+H]+ member ([M-H]- in negative mode), else its most intense non-isotope member (mean over detected
samples). Group ids are ``G1, G2, ...`` in ascending m/z of the representatives (then RT, then consensus id).

Layer 4: imports ``core`` and ``correction`` only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import permutations

import numpy as np
import polars as pl

from ms2study.core import tables
from ms2study.core.errors import InputError
from ms2study.core.ions import ion_shift
from ms2study.correction import covariation, isotopes
from ms2study.correction.adduct_notation import adduct_contradiction, adduct_signature  # noqa: F401 (re-exported)
from ms2study.correction.covariation import (
    MAX_DECOYS,
    NULL_MIN_RUNS,
    NULLS,
    empirical_null,
    null_p_values,
    pair_q_values,
    required_correlation,
)

# (label, molecules per ion k, mass shift delta in Da for m/z = k * M + delta, prior) of singly charged ions. The
# priors break ties between labellings: [M+Na]+ ranks above [M+NH4]+ because an [M+H]+ / [M+NH4]+ pair is also what
# an in-source NH3 loss from [M+H]+ looks like (amines), while nothing else is 21.98 Da from [M+H]+.
# The deltas are ``core.ions.ION_SHIFTS``.
ADDUCTS: dict[str, tuple[tuple[str, int, float, float], ...]] = {
    polarity: tuple((label, k, ion_shift(label), prior) for label, k, prior in rows) for polarity, rows in {
        "positive": (("[M+H]+", 1, 0.40), ("[M+Na]+", 1, 0.30), ("[M+NH4]+", 1, 0.15), ("[M+K]+", 1, 0.08),
                     ("[M+H-H2O]+", 1, 0.07), ("[2M+H]+", 2, 0.05)),
        "negative": (("[M-H]-", 1, 0.50), ("[M+Cl]-", 1, 0.15), ("[M+FA-H]-", 1, 0.20), ("[M-H-H2O]-", 1, 0.10),
                     ("[2M-H]-", 2, 0.05)),
    }.items()
}
PROTONATED = {"positive": "[M+H]+", "negative": "[M-H]-"}
MIN_SHARED_SAMPLES = 5           # default adduct_min_runs: shared runs before the correlation is tested
DEFAULT_ALPHA = 0.01             # default adduct_alpha: level of the one-sided correlation test
EVIDENCE_COLUMNS: dict[str, pl.DataType] = tables.ADDUCT_EVIDENCE
_LABEL_COLUMNS: dict[str, pl.DataType] = {"consensus_id": pl.Utf8, "compound_group": pl.Utf8, "adduct": pl.Utf8,
                                          "group_representative": pl.Boolean}
GROUP_COLUMNS: dict[str, pl.DataType] = {**_LABEL_COLUMNS, **EVIDENCE_COLUMNS}
PAIR_COLUMNS: dict[str, pl.DataType] = {
    "consensus_id_a": pl.Utf8, "consensus_id_b": pl.Utf8, "kind": pl.Utf8, "adduct_a": pl.Utf8, "adduct_b": pl.Utf8,
    "neutral_mass": pl.Float64, "mz_error_ppm": pl.Float64, "rt_diff_s": pl.Float64, "n_shared": pl.Int32,
    "correlation": pl.Float64, "p_value": pl.Float64, "score": pl.Float64}
_PAIRS_PER_CHUNK = 2_000_000       # candidate pairs tested at once
_CELLS_PER_BLOCK = 4_000_000       # pair x sample cells of the correlation arrays at once


@dataclass
class AdductGrouping:
    """What :func:`adduct_grouping` found: ``table`` (``GROUP_COLUMNS``, matrix row order), ``pairs`` (the accepted
    edges, ``PAIR_COLUMNS``) and ``notes`` (plain sentences for logs and correction.json), ``counts`` (numbers)."""

    table: pl.DataFrame
    pairs: pl.DataFrame
    notes: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)


def group_adducts(matrix: pl.DataFrame, sample_ids: list[str], params: dict,
                  polarity: str = "positive") -> pl.DataFrame:
    """Compound groups of the study feature matrix: one row per consensus feature (matrix order) with columns
    ``consensus_id``, ``compound_group`` ("G{n}"), ``adduct`` (null when unknown), ``group_representative`` and the
    evidence of the label (``EVIDENCE_COLUMNS``, module docstring).

    ``matrix``: consensus_id, mz, rt_s and one intensity column per ``sample_ids`` entry (null = not detected);
    ``params``: ``adduct_rt_tol_s`` (3.0 s), ``adduct_mz_ppm`` (10.0), ``adduct_min_correlation`` (0.6),
    ``adduct_alpha`` (0.01), ``adduct_min_runs`` (5), ``adduct_multiple_testing`` ("bh" or "none"),
    ``adduct_null`` ("empirical" or "theoretical");
    ``polarity``: "positive" or "negative". Method: module docstring. Raises InputError for missing columns or an
    unknown polarity, an alpha outside (0, 1), an unknown multiple-testing mode or null."""
    return adduct_grouping(matrix, sample_ids, params, polarity).table


def collapse_groups(corrected: pl.DataFrame, sample_ids: list[str]) -> pl.DataFrame:
    """One row per compound group: the representative's row of ``corrected`` (all columns and flags kept, matrix
    order). Raises InputError when the grouping columns or sample columns are missing or a group has no or several
    representatives."""
    missing = [c for c in ("consensus_id", "compound_group", "group_representative", *sample_ids)
               if c not in corrected.columns]
    if missing:
        raise InputError(f"corrected feature matrix lacks columns {missing[:10]}",
                         fix="run the correct stage with correct.adducts: true (it writes the grouping columns)")
    reps = corrected.group_by("compound_group").agg(pl.col("group_representative").fill_null(False).sum().alias("n"))
    bad = reps.filter(pl.col("n") != 1)
    if bad.height:
        raise InputError(f"{bad.height} compound groups do not have exactly one representative "
                         f"(e.g. {bad['compound_group'][0]})", fix="rerun the correct stage")
    return corrected.filter(pl.col("group_representative").fill_null(False))


def adduct_grouping(matrix: pl.DataFrame, sample_ids: list[str], params: dict,
                    polarity: str = "positive") -> AdductGrouping:
    """:func:`group_adducts` with its accepted pairs, notes and counts (see :class:`AdductGrouping`)."""
    if polarity not in ADDUCTS:
        raise InputError(f"unknown polarity {polarity!r}", fix="use 'positive' or 'negative'")
    missing = [c for c in ("consensus_id", "mz", "rt_s", *sample_ids) if c not in matrix.columns]
    if missing:
        raise InputError(f"feature matrix lacks columns {missing[:10]}",
                         fix="pass the link stage's feature_matrix.parquet and the sheet's sample ids")
    rt_tol, ppm = float(params.get("adduct_rt_tol_s", 3.0)), float(params.get("adduct_mz_ppm", 10.0))
    test = correlation_test(params)
    null_kind = str(params.get("adduct_null", "empirical"))
    if null_kind not in NULLS:
        raise InputError(f"unknown adduct_null {null_kind!r}", fix="use 'empirical' or 'theoretical'")
    ids = matrix["consensus_id"].cast(pl.Utf8).to_list()
    mz = matrix["mz"].cast(pl.Float64).fill_null(np.nan).to_numpy()
    rt = matrix["rt_s"].cast(pl.Float64).fill_null(np.nan).to_numpy()
    x = (matrix.select([pl.col(s).cast(pl.Float64) for s in sample_ids]).to_numpy().astype(np.float64)
         if sample_ids else np.empty((matrix.height, 0)))
    x = np.where(np.isfinite(x) & (x > 0), x, np.nan)
    logx = np.log(x)
    n_det = np.isfinite(x).sum(axis=1)
    mean_intensity = np.where(n_det > 0, np.nansum(x, axis=1) / np.maximum(n_det, 1), -np.inf)
    counts = {"n_candidate_pairs": 0, "n_mass_pairs": 0, "n_tested_correlation": 0, "n_rejected_correlation": 0,
              "n_rejected_never_shared": 0,
              "n_untested_correlation": 0, "n_rejected_sparse_partner": 0, "n_conflicts": 0, "n_decoy_pairs": 0}
    edges, decoys = [], []
    for a, b in _coeluting_pairs(mz, rt, rt_tol):
        counts["n_candidate_pairs"] += a.size
        chunk, decoy = edges_and_decoys(a, b, mz, rt, rt_tol, ppm, polarity)
        edges.extend(chunk)
        if null_kind == "empirical":
            decoys.append(decoy)
    null = _null(decoys, logx, x, mz, test[2], counts) if null_kind == "empirical" else None
    pairs = _concat_edges(edges)
    counts["n_mass_pairs"] = int(pairs["a"].size)
    pairs = _judge_correlation(pairs, logx, x, mz, test, counts, null, n_det)
    iso_of, labelling, accepted = _assign(pairs, mz, ppm, counts)
    table = pl.concat([_groups_table(ids, mz, rt, mean_intensity, iso_of, labelling, polarity),
                       _evidence(ids, accepted)], how="horizontal")
    pair_table = pl.DataFrame({
        "consensus_id_a": [ids[e[0]] for e in accepted], "consensus_id_b": [ids[e[1]] for e in accepted],
        "kind": [e[2] for e in accepted], "adduct_a": [table["adduct"][e[0]] for e in accepted],
        "adduct_b": [table["adduct"][e[1]] for e in accepted], "neutral_mass": [e[3] for e in accepted],
        "mz_error_ppm": [e[4] for e in accepted], "rt_diff_s": [e[5] for e in accepted],
        "n_shared": [e[6] for e in accepted], "correlation": [e[7] for e in accepted],
        "p_value": [e[9] for e in accepted], "score": [e[8] for e in accepted]}, schema=PAIR_COLUMNS)
    counts["n_compound_groups"] = int(table["compound_group"].n_unique()) if table.height else 0
    sizes = table.group_by("compound_group").len()
    counts["n_features_in_adduct_groups"] = int(sizes.filter(pl.col("len") > 1)["len"].sum() or 0)
    notes = [f"adduct grouping ({polarity}): {counts['n_features_in_adduct_groups']} of {table.height} consensus "
             f"features in {int((sizes['len'] > 1).sum())} groups of two or more; in-source fragments other than "
             "water loss are not claimed"]
    counts["n_heavy_isotope_peaks"] = sum(any(h in e[2] for h in isotopes.HEAVY) for e in accepted)
    if counts["n_heavy_isotope_peaks"]:
        notes.append(f"{counts['n_heavy_isotope_peaks']} isotope peaks of Cl, Br, S or Si atoms (37Cl, 81Br, 34S, "
                     "30Si at M+2 to M+4) grouped with their monoisotopic features")
    if counts["n_rejected_correlation"]:
        notes.append(covariation.rejection_note(counts, test))
    if counts["n_untested_correlation"]:
        notes.append(f"{counts['n_untested_correlation']} candidate pairs shared fewer than {test[2]} runs: judged on "
                     "retention time and mass alone (no intensity correlation; no identification is refused on them)")
    if counts["n_rejected_sparse_partner"]:
        notes.append(f"{counts['n_rejected_sparse_partner']} untested candidate pairs not grouped: measured together "
                     f"in under {covariation.MIN_UNTESTED_CO_DETECTION:.0%} of the runs of a feature they would label,"
                     " and not in the stronger ion's most intense runs")
    if null is None and null_kind == "empirical":
        notes.append(f"only {counts['n_decoy_pairs']} co-eluting decoy pairs measured together in enough runs: the "
                     "correlation test uses its theoretical null (independent ions)")
    elif null is not None and (null.centre.max() > 0.5 or null.spread.max() > 1.2):
        notes.append(f"co-eluting ions that are not one compound co-vary here (Fisher z of {null.n_decoys} decoy "
                     f"pairs: centre up to {null.centre.max():.1f}, spread up to {null.spread.max():.1f}, against 0 "
                     "and 1 for independent ions): the correlation test of the groupings uses that empirical null")
    if counts["n_conflicts"]:
        notes.append(f"{counts['n_conflicts']} candidate pairs contradicted better-scored groups and were dropped")
    return AdductGrouping(table, pair_table, notes, counts)


def _coeluting_pairs(mz: np.ndarray, rt: np.ndarray, rt_tol: float):
    """Index pairs (a, b) of features within ``rt_tol`` seconds, oriented so that mz[a] <= mz[b], in chunks."""
    ok = np.flatnonzero(np.isfinite(mz) & np.isfinite(rt))
    order = ok[np.argsort(rt[ok], kind="stable")]
    rts = rt[order]
    hi = np.searchsorted(rts, rts + rt_tol, side="right")
    n_after = hi - np.arange(order.size) - 1
    start = 0
    while start < order.size:
        cum = np.cumsum(n_after[start:])
        stop = start + max(1, int(np.searchsorted(cum, _PAIRS_PER_CHUNK, side="right")))
        counts = n_after[start:stop]
        first = np.repeat(np.arange(start, stop), counts)
        offset = np.arange(first.size) - np.repeat(np.cumsum(counts) - counts, counts)
        i, j = order[first], order[first + 1 + offset]
        swap = mz[i] > mz[j]
        yield np.where(swap, j, i), np.where(swap, i, j)
        start = stop


def edges_and_decoys(a: np.ndarray, b: np.ndarray, mz: np.ndarray, rt: np.ndarray, rt_tol: float, ppm: float,
                     polarity: str) -> tuple[list[dict], tuple[np.ndarray, np.ndarray]]:
    """The co-eluting pairs (a, b) split into the mass hypotheses they satisfy (non-empty edge arrays of
    :func:`_mass_edges`) and the decoys of the empirical null: the pairs that fit none, as (a, b) index arrays."""
    chunk = [e for e in _mass_edges(a, b, mz, rt, rt_tol, ppm, polarity) if e["a"].size]
    hyp = np.concatenate([e["a"] * mz.size + e["b"] for e in chunk]) if chunk else np.empty(0, np.int64)
    decoy = ~np.isin(a * mz.size + b, hyp)
    return chunk, (a[decoy], b[decoy])


def _mass_edges(a: np.ndarray, b: np.ndarray, mz: np.ndarray, rt: np.ndarray, rt_tol: float, ppm: float,
                polarity: str) -> list[dict]:
    """Every mass hypothesis the pairs (a, b) satisfy: isotope steps (``isotopes.STEPS``) and ordered adduct pairs,
    as edge arrays."""
    out = []
    mza, mzb = mz[a], mz[b]
    tol = ppm * 1e-6 * mzb
    drt = np.abs(rt[a] - rt[b])
    for kind, step in isotopes.STEPS.items():
        err = np.abs(mzb - mza - step)
        hit = err <= tol
        out.append({"a": a[hit], "b": b[hit], "kind": kind, "la": None, "lb": None,
                    "mass": np.full(hit.sum(), np.nan), "err": err[hit] / mzb[hit] * 1e6, "drt": drt[hit],
                    "prior": np.full(hit.sum(), 0.5)})
    for (la, ka, da, pa), (lb, kb, db, pb) in permutations(ADDUCTS[polarity], 2):
        mass = (mza - da) / ka
        err = np.abs(kb * mass + db - mzb)
        hit = (err <= tol) & (mass > 0)
        out.append({"a": a[hit], "b": b[hit], "kind": "adduct", "la": la, "lb": lb, "mass": mass[hit],
                    "err": err[hit] / mzb[hit] * 1e6, "drt": drt[hit], "prior": np.full(hit.sum(), pa + pb)})
    for e in out:
        e["score_mass"] = 1.0 - e["err"] / max(ppm, 1e-9)
        e["score_rt"] = 1.0 - e["drt"] / max(rt_tol, 1e-9)
    return out


def _concat_edges(edges: list[dict]) -> dict:
    """One dict of equal-length arrays from the per-hypothesis edge arrays."""
    numbers = ("mass", "err", "drt", "prior", "score_mass", "score_rt")
    if not edges:
        return {**{k: np.empty(0, np.int64) for k in "ab"}, **{k: np.empty(0, object) for k in ("kind", "la", "lb")},
                **{k: np.empty(0, float) for k in numbers}}
    out = {k: np.concatenate([e[k] for e in edges]) for k in ("a", "b", *numbers)}
    for k in ("kind", "la", "lb"):
        out[k] = np.concatenate([np.full(e["a"].size, e[k], dtype=object) for e in edges])
    return out


def _pair_statistics(a: np.ndarray, b: np.ndarray, logx: np.ndarray,
                     x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per pair: shared samples, Pearson r of log intensities over them, median intensity ratio b / a over them
    (NaN without shared samples) and whether both are detected somewhere; in blocks to bound memory."""
    n, r, ratio, both = (np.zeros(a.size, dtype=np.int64), np.full(a.size, np.nan), np.full(a.size, np.nan),
                         np.zeros(a.size, dtype=bool))
    step = max(1, _CELLS_PER_BLOCK // max(1, x.shape[1]))
    for lo_i in range(0, a.size, step):
        sl = slice(lo_i, lo_i + step)
        la, lb = logx[a[sl]], logx[b[sl]]
        shared = np.isfinite(la) & np.isfinite(lb)
        k = shared.sum(axis=1)
        with np.errstate(all="ignore"):
            ma = np.where(shared, la, 0.0).sum(axis=1) / k
            mb = np.where(shared, lb, 0.0).sum(axis=1) / k
            da = np.where(shared, la - ma[:, None], 0.0)
            db = np.where(shared, lb - mb[:, None], 0.0)
            r[sl] = (da * db).sum(axis=1) / np.sqrt((da * da).sum(axis=1) * (db * db).sum(axis=1))
            if x.shape[1]:
                ratios = np.sort(np.where(shared, x[b[sl]] / x[a[sl]], np.inf), axis=1)
                rows = np.arange(k.size)
                mid = (ratios[rows, np.maximum(k - 1, 0) // 2] + ratios[rows, np.maximum(k, 1) // 2]) / 2
                ratio[sl] = np.where(k > 0, mid, np.nan)
        n[sl] = k
        both[sl] = np.isfinite(la).any(axis=1) & np.isfinite(lb).any(axis=1)
    return n, r, ratio, both


def _null(decoys: list[tuple[np.ndarray, np.ndarray]], logx: np.ndarray, x: np.ndarray, mz: np.ndarray,
          min_runs: int, counts: dict):
    """The empirical null (``covariation.empirical_null``) of the decoy pairs (feature index arrays per chunk), at
    most ``covariation.MAX_DECOYS`` of them drawn (seeded) before their correlations are computed."""
    a = np.concatenate([d[0] for d in decoys]) if decoys else np.empty(0, np.int64)
    b = np.concatenate([d[1] for d in decoys]) if decoys else np.empty(0, np.int64)
    if a.size > 4 * MAX_DECOYS:  # keep 4x the decoys the null uses: some are measured together too rarely
        keep = np.sort(np.random.default_rng(0).choice(a.size, 4 * MAX_DECOYS, replace=False))
        a, b = a[keep], b[keep]
    n, r, _, _ = _pair_statistics(a, b, logx, x)
    null = empirical_null(mz[b] - mz[a], r, n, min_runs)
    counts["n_decoy_pairs"] = null.n_decoys if null is not None else int((n >= max(min_runs, NULL_MIN_RUNS)).sum())
    return null


def correlation_test(params: dict) -> tuple[float, float, int, str]:
    """(least correlation, alpha, least shared runs, multiple testing) of the pairs' test, from ``params``."""
    return (float(params.get("adduct_min_correlation", 0.6)), float(params.get("adduct_alpha", DEFAULT_ALPHA)),
            int(params.get("adduct_min_runs", MIN_SHARED_SAMPLES)), str(params.get("adduct_multiple_testing", "bh")))


def _judge_correlation(pairs: dict, logx: np.ndarray, x: np.ndarray, mz: np.ndarray,
                       test: tuple[float, float, int, str], counts: dict, null, n_det: np.ndarray) -> dict:
    """Shared samples, Pearson r of log intensities, its one-sided test and the isotope-ratio check per edge; keeps the
    edges that pass and adds ``n_shared``, ``r``, ``p`` (null when untested), ``ratio`` and ``score``. ``test``:
    (effect floor, alpha, least shared runs, "bh" (q over the tested pairs at alpha) or "none" (p at alpha));
    ``null``: the study's empirical null (``covariation.null_p_values``), None for the t test alone; ``n_det``: runs
    measuring each feature, for the co-detection rule of untested edges (``covariation.unsupported_sparse``)."""
    floor, alpha, min_runs, multiple = test
    if multiple not in ("bh", "none"):
        raise InputError(f"unknown adduct_multiple_testing {multiple!r}", fix="use 'bh' or 'none'")
    a = pairs["a"]
    n, r, ratio, both = _pair_statistics(a, pairs["b"], logx, x)
    need = required_correlation(n, alpha, floor, min_runs)
    tested = np.isfinite(need) & np.isfinite(r)
    p = np.where(tested, null_p_values(r, n, mz[pairs["b"]] - mz[a], null), np.nan)
    kind = pairs["kind"]
    iso_fail = isotopes.implausible(kind, ratio, mz[a])
    # a heavy-atom reading with a ratio it cannot have is no candidate: kept out of the BH family, so that these
    # readings do not dilute the tests of the adduct and 13C pairs
    not_candidate = iso_fail & np.isin(kind, isotopes.HEAVY_KINDS)
    never = (n == 0) & both & ~not_candidate
    if multiple == "bh":  # the study's candidate pairs are many: control the share of chance groupings among them
        q = pair_q_values(np.where(not_candidate, np.nan, p), a, pairs["b"])
        corr_fail = tested & ((r < floor) | ~(q <= alpha)) & ~not_candidate
    else:
        corr_fail = tested & ((r < need) | ~(p <= alpha)) & ~not_candidate
    sparse = ~tested & ~never & covariation.unsupported_sparse(n, n_det, a, pairs["b"], kind == "adduct", logx, alpha)
    keep = ~corr_fail & ~never & ~iso_fail & ~sparse
    counts["n_tested_correlation"] = int((tested & ~not_candidate).sum())
    counts["n_rejected_correlation"] = int((corr_fail & ~never).sum())
    counts["n_rejected_never_shared"] = int(never.sum())
    counts["n_rejected_sparse_partner"] = int((sparse & ~iso_fail).sum())
    counts["n_untested_correlation"] = int((keep & ~tested & (kind == "adduct")).sum())
    r_used = np.where(tested, r, floor)
    score = 2.0 * r_used + 0.5 * pairs["score_mass"] + 0.5 * pairs["score_rt"] + 0.5 * pairs["prior"]
    out = {k: v[keep] for k, v in pairs.items()}
    out["n_shared"], out["r"], out["score"] = n[keep], np.where(tested, r, np.nan)[keep], score[keep]
    out["p"], out["ratio"] = p[keep], ratio[keep]
    return out


def _assign(pairs: dict, mz: np.ndarray, ppm: float, counts: dict):
    """Isotopes first, then adduct edges by descending score under the consistency rules (module docstring).
    Returns (iso_of: feature -> (mono, label suffix), (labels: feature -> adduct, roots: feature -> component
    root), accepted edge tuples)."""
    accepted = []
    iso_of: dict[int, tuple[int, str]] = {}
    iso = np.flatnonzero(pairs["kind"] != "adduct")
    for e, a, b, suffix in isotopes.assign(pairs["a"][iso], pairs["b"][iso], pairs["kind"][iso], pairs["score"][iso],
                                           pairs["ratio"][iso], mz[pairs["a"][iso]]):
        iso_of[b] = (a, suffix)
        accepted.append(_edge_tuple(pairs, int(iso[e]), suffix))
    parent = {}

    def find(i: int) -> int:
        while parent.get(i, i) != i:
            parent[i] = parent.get(parent[i], parent[i])
            i = parent[i]
        return i

    labels: dict[int, str] = {}
    mass: dict[int, float] = {}
    members: dict[int, set[str]] = {}
    adduct = np.flatnonzero(pairs["kind"] == "adduct")
    adduct = adduct[np.lexsort((pairs["b"][adduct], pairs["a"][adduct], -pairs["score"][adduct]))]
    for e in adduct:
        a, b = int(pairs["a"][e]), int(pairs["b"][e])
        la, lb, m = pairs["la"][e], pairs["lb"][e], float(pairs["mass"][e])
        if a in iso_of or b in iso_of:
            continue
        ga, gb = find(a), find(b)
        if ga == gb:
            continue
        if labels.get(a, la) != la or labels.get(b, lb) != lb:
            counts["n_conflicts"] += 1
            continue
        tol = 2 * ppm * 1e-6 * m
        if any(g in mass and abs(mass[g] - m) > tol for g in (ga, gb)):
            counts["n_conflicts"] += 1
            continue
        sa, sb = members.get(ga, {la}), members.get(gb, {lb})
        if sa & sb:
            counts["n_conflicts"] += 1
            continue
        parent[gb] = ga
        labels[a], labels[b] = la, lb
        members[ga] = sa | sb
        mass[ga] = mass.get(ga, mass.get(gb, m))
        members.pop(gb, None)
        mass.pop(gb, None)
        accepted.append(_edge_tuple(pairs, e, "adduct"))
    roots = {i: find(i) for i in set(parent) | set(labels)}
    return iso_of, (labels, roots), accepted


def _edge_tuple(pairs: dict, e: int, kind: str) -> tuple:
    """(a, b, kind, neutral mass, ppm error, RT difference, shared samples, r, score, p) of edge ``e``."""
    m, r, p = float(pairs["mass"][e]), float(pairs["r"][e]), float(pairs["p"][e])
    return (int(pairs["a"][e]), int(pairs["b"][e]), kind, None if np.isnan(m) else m, float(pairs["err"][e]),
            float(pairs["drt"][e]), int(pairs["n_shared"][e]), None if np.isnan(r) else r, float(pairs["score"][e]),
            None if np.isnan(p) else p)


def _evidence(ids: list[str], accepted: list[tuple]) -> pl.DataFrame:
    """EVIDENCE_COLUMNS per feature (matrix order): the accepted edge behind its label, a tested edge before an
    untested one, then the higher score; an isotope peak's edge to its monoisotopic feature. Null without one."""
    best: dict[int, tuple] = {}
    for e in accepted:
        a, b, kind = e[0], e[1], e[2]
        for me, partner in ((b, a),) if kind != "adduct" else ((a, b), (b, a)):
            key = (e[9] is not None, e[8])
            if me not in best or key > best[me][0]:
                best[me] = (key, partner, e[6], e[7], e[9])
    rows = [best.get(i) for i in range(len(ids))]
    return pl.DataFrame({"adduct_partner": [ids[r[1]] if r else None for r in rows],
                         "adduct_n_runs": [r[2] if r else None for r in rows],
                         "adduct_correlation": [r[3] if r else None for r in rows],
                         "adduct_p_value": [r[4] if r else None for r in rows]}, schema=EVIDENCE_COLUMNS)


def _groups_table(ids: list[str], mz: np.ndarray, rt: np.ndarray, mean_intensity: np.ndarray,
                  iso_of: dict[int, tuple[int, str]], labelling: tuple, polarity: str) -> pl.DataFrame:
    """GROUP_COLUMNS per feature (matrix order): components, labels, representatives and G-numbers."""
    labels, roots = labelling
    n = len(ids)
    root = np.array([roots.get(i, i) for i in range(n)])
    for b, (a, _) in iso_of.items():
        root[b] = roots.get(a, a)
    adduct: list[str | None] = [labels.get(i) for i in range(n)]
    for b, (a, suffix) in iso_of.items():
        adduct[b] = f"{labels[a]} {suffix}" if a in labels else suffix
    groups: dict[int, list[int]] = {}
    for i in range(n):
        groups.setdefault(int(root[i]), []).append(i)
    rep = {}
    for g, idx in groups.items():
        mono = [i for i in idx if i not in iso_of] or idx
        prot = [i for i in mono if adduct[i] == PROTONATED[polarity]]
        rep[g] = prot[0] if prot else min(mono, key=lambda i: (-mean_intensity[i], ids[i]))
    key = sorted(groups, key=lambda g: (np.isnan(mz[rep[g]]), np.nan_to_num(mz[rep[g]]),
                                        np.nan_to_num(rt[rep[g]]), ids[rep[g]]))
    name = {g: f"G{k + 1}" for k, g in enumerate(key)}
    return pl.DataFrame({"consensus_id": ids, "compound_group": [name[int(r)] for r in root], "adduct": adduct,
                         "group_representative": [rep[int(root[i])] == i for i in range(n)]}, schema=_LABEL_COLUMNS)
