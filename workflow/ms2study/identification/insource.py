"""Possible in-source fragments: a spectrum whose precursor m/z appears as a fragment in the MS/MS of a heavier
precursor that co-elutes with it in the same run.

An ion broken in the ion source elutes exactly with its parent, and the parent's own MS/MS usually holds it: the
co-elution and MS2-containment evidence of ISFrag (Guo et al. 2021, "ISFrag: De Novo Recognition of In-Source
Fragments for Liquid Chromatography-Mass Spectrometry Data", Anal Chem 93:10243). Such a fragment's MS/MS can match
a library compound perfectly (glycine from a glycine conjugate), so a name given to it may not be the compound in
the sample. Parents at the mass differences of the same compound's own ions (13C isotopes, Na/K/NH4/ACN adducts of
[M+H]+, the [2M+H]+ dimer; in negative mode Na/K, chloride, formate and acetate adducts of [M-H]- and [2M-H]-) and
ions of the other polarity are not counted: their MS/MS holding [M+H]+ says nothing about another compound. Nor are
mixed dimers [A+B+H]+ of two co-eluting compounds: a parent whose m/z is this precursor's plus the neutral mass of
another co-eluting precursor, and whose MS/MS holds that precursor's m/z too (a fresh user's TripleTOF run of a
pesticide mix: myclobutanil and fenamiphos, both right, were marked as fragments of their cluster at m/z 592.22,
whose MS/MS holds both [M+H]+ ions; the partner is looked for within twice the co-elution window of the cluster,
since with 20 ppm settings fenamiphos's apex lay 1.5 s from the cluster's scan). The price: a covalent parent whose
MS/MS holds both complementary fragment ions of one bond, where the second is also a co-eluting precursor, is read as
a cluster and not counted.
Co-elution is judged on the apexes of the features the two spectra were mapped to (``feature_apex_s``, within
``APEX_WINDOW_S``), not on the MS2 scan times: dynamic exclusion spreads a feature's MS2 scans over its peak and
beyond, so the fragment's and the parent's scans often lie several seconds apart though their peaks coincide (cholic
acid and its sulfate: apexes 0.1 s apart, scans 3-16 s), while ions that only overlap have apexes apart. A spectrum
mapped to no feature keeps its scan time. On the study-truth benchmark (``benchmarks/study_truth.py``), seed 11 (24
samples, 193 accepted names, 11 in-source fragments): scan times within 2 s marked 37 accepted names, 10 of the 11
fragments (precision 0.27); apexes within 1 s mark 19, all 11 (0.58); apexes within 2 s 33 (0.33). Seed 3 (16
samples, 197 accepted, 15 fragments; a study not looked at before the window was chosen): scan times 33 marked, 14
fragments (0.42); apexes within 1 s 24, 13 (0.54). Right names marked: 38 -> 16 over both.
Evidence, not proof: a co-eluting spectrum can still hold the m/z by chance. A study adds what settles it
(``parent_correlation``): an in-source fragment is a fixed share of its parent, so across the study's samples its
intensity follows the parent's almost exactly, while an ion co-eluting by chance varies on its own (the correlation
grouping of one compound's ions in CAMERA, Kuhl et al., Anal Chem 84:283, 2012). On the study-truth benchmark
(seed 11, 24 samples) the marked in-source fragments had log-intensity correlations of 0.97-1.0 with their parent's
feature over 16-24 samples, the marked right names 0.19-0.71; ``CONFIRM_MIN_R`` was set between them. On seed 21
(16 samples, not looked at before) the 6 names above it were all in-source fragments (0.93-1.0) and the 12 right
names marked by chance lay at -0.03 to 0.58. Imports numpy, polars and numba only.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import polars as pl
from numba import njit

log = logging.getLogger(__name__)

RT_WINDOW_S = 2.0      # co-elution by MS2 scan times (no feature apexes known): about one DDA cycle
APEX_WINDOW_S = 1.0    # co-elution by feature apexes: a consensus feature's apex is placed within ~0.3 s (median)
                       # to 0.9 s (90 %) of the true one on the study-truth benchmark
TOLERANCE_DA = 0.003   # the fragment peak within this of the spectrum's precursor m/z (high-resolution MS/MS)
MIN_RELATIVE = 0.2     # and at least this share of the parent spectrum's base peak
MIN_DELTA_DA = 1.5     # lighter differences: the precursor's own 13C isotope, co-isolated
PARENT_PPM = 10.0      # the parent's consensus feature: m/z within this of the parent precursor m/z
PARENT_RT_S = 2.0      # and its retention time within this of the fragment's feature
CONFIRM_MIN_R = 0.9    # log intensities correlated at least this much: the parent explains >= 81 % of the variance
CONFIRM_MIN_SAMPLES = 5  # study samples measuring both, at least
# a mark the intensities rule out: a fragment made in the source keeps its parent's ratio, so its log intensity
# follows the parent's (a true one at r 0.36 or more even with a parent varying only 0.15 ln and 0.2 of noise);
# r below this over at least RULE_OUT_MIN_SAMPLES samples clears the mark (trials O, X: indole, adenosine and
# epsilon-decalactone marked at r 0.09, -0.08 and 0.12 over 11-16 samples, and left out of their class sets)
RULE_OUT_MAX_R = 0.3
RULE_OUT_MIN_SAMPLES = 8
# a parent found by a conjugate's loss alone (no MS/MS evidence) needs more samples: each feature has up to 8 loss
# candidates, and on the real Q Exactive background of semireal.py (seed 0, 3,472 features in one minute of RT)
# 235 features had one co-eluting, 2 of them following at r >= 0.9 over 5-6 samples (chance: an independent pair
# reaches r 0.9 with p 0.02 over 5 samples, 0.001 over 8)
LOSS_MIN_SAMPLES = 8
PROTON = 1.007276
# parent - precursor differences of one compound's own ions, per polarity of the precursor [M+H]+ / [M-H]-:
# 13C2, 13C3, then [M+Na]+, [M+K]+, [M+NH4]+, [M+ACN+H]+; or [M+Na-2H]-, [M+K-2H]-, [M+Cl]-, [M+FA-H]- (formate),
# [M+Hac-H]- (acetate). Negative-mode differences are not skipped in positive mode nor the reverse: a loss of HCl or
# HCOOH (35.98, 46.01) is a real positive-mode in-source fragment, and a sugar's or steroid's formate and chloride
# adducts break to its [M-H]- in negative mode (a trial: five right [M-H]- names withdrawn as fragments of them)
SAME_COMPOUND_DA = (2.006710, 3.010065, 21.981944, 37.955882, 17.026549, 41.026549)
SAME_COMPOUND_NEGATIVE_DA = (2.006710, 3.010065, 21.981944, 37.955882, 35.976678, 46.005479, 60.021129)
# Neutral losses of conjugating groups (monoisotopic residue masses): labile bonds of phase-II conjugates and glycosides
# that break in the ion source, leaving the aglycone's or acid's ion at the conjugate's retention time. Water, NH3 and
# formic acid are left out: they are also differences between one compound's own ions ([M+H-H2O]+ and [M+NH4]+ are
# the adduct grouping's, correction.adducts; [M+HCOO]- and [M-H]- differ by HCOOH), so a name there is not a fragment.
CONJUGATE_LOSSES = {
    "C6H8O6 (glucuronide)": 176.032088, "SO3 (sulfate)": 79.956815, "HPO3 (phosphate)": 79.966331,
    "C6H10O5 (hexose)": 162.052824, "C5H8O4 (pentose)": 132.042259, "C6H10O4 (deoxyhexose)": 146.057909,
    "C2H3NO (glycine conjugate)": 57.021464, "C2H5NO2S (taurine conjugate)": 107.004099,
}


@njit(cache=True)
def _mixed_dimer(i, j, window, precursor, sign, offsets, peak_mz, tol):
    """Whether parent j is the cluster [A+B+H]+ of precursor i ([A+H]+) and another co-eluting precursor k ([B+H]+)
    (negative: [A+B-H]-, [A-H]-, [B-H]-): j's m/z is i's plus k's neutral mass, and j's MS/MS holds k's m/z too (any
    intensity)."""
    delta = precursor[j] - precursor[i]
    for k in window:
        if k == i or k == j or sign[k] != sign[i] or abs(delta - (precursor[k] - sign[k] * PROTON)) > tol * 3:
            continue
        for m in range(offsets[j], offsets[j + 1]):
            if abs(peak_mz[m] - precursor[k]) <= tol:
                return True
    return False


@njit(cache=True)
def _parents(rt, precursor, sign, offsets, peak_mz, peak_int, window, tol, min_rel, min_delta, same, same_negative):
    n = rt.size
    order = np.argsort(rt)
    sorted_rt = rt[order]
    out = np.full(n, np.nan)
    for i in range(n):
        lo = np.searchsorted(sorted_rt, rt[i] - window)
        hi = np.searchsorted(sorted_rt, rt[i] + window, side="right")
        best = 0.0
        for t in range(lo, hi):
            j = order[t]
            delta = precursor[j] - precursor[i]
            if delta <= min_delta or sign[j] != sign[i]:  # an ion of the other polarity is no in-source parent
                continue
            skip = abs(delta - (precursor[i] - sign[i] * PROTON)) <= tol * 3  # [2M+H]+ / [2M-H]- of this compound
            for s in same if sign[i] > 0 else same_negative:
                if abs(delta - s) <= tol * 3:
                    skip = True
            if skip:
                continue
            a, b = offsets[j], offsets[j + 1]
            if b <= a:
                continue
            base = 0.0
            hit = 0.0
            for k in range(a, b):
                base = max(base, peak_int[k])
                if abs(peak_mz[k] - precursor[i]) <= tol:
                    hit = max(hit, peak_int[k])
            if hit > 0.0 and hit >= min_rel * base and (best == 0.0 or precursor[j] < best):
                # the cluster's partner co-elutes with the cluster; apexes of broad or saturated peaks wander, so
                # it is looked for within twice the window of the cluster (its MS/MS must hold the partner too)
                plo = np.searchsorted(sorted_rt, rt[j] - 2.0 * window)
                phi = np.searchsorted(sorted_rt, rt[j] + 2.0 * window, side="right")
                if not _mixed_dimer(i, j, order[plo:phi], precursor, sign, offsets, peak_mz, tol):
                    best = precursor[j]
        if best > 0.0:
            out[i] = best
    return out


def in_source_parents(spectra: pl.DataFrame, rt_window_s: float = RT_WINDOW_S, tolerance_da: float = TOLERANCE_DA,
                      min_relative: float = MIN_RELATIVE, features: pl.DataFrame | None = None,
                      apex_window_s: float = APEX_WINDOW_S, ion_mode: str = "positive") -> np.ndarray:
    """For each row of one run's ``spectra`` (columns rt_s, precursor_mz, mz, intensity: ``tables.SPECTRA``), the
    precursor m/z of the lightest co-eluting heavier precursor whose MS/MS holds this row's precursor m/z as a peak
    (within ``tolerance_da``, at least ``min_relative`` of that spectrum's base peak; the same compound's isotope,
    adduct and dimer ions and mixed dimers with another co-eluting precursor excluded: module docstring), NaN where
    there is none. Co-elution: with ``features`` (the run's features table: feature_id, rt_s = apex, s) each
    spectrum is placed at its mapped feature's apex (its scan time when unmapped) and the window is
    ``apex_window_s``; without, MS2 scan times within ``rt_window_s``. Polarity: each row's ``ion_mode`` where the
    table has one, else ``ion_mode`` (the scans whose file states none); a parent is looked for among precursors of
    the same polarity, with that polarity's own-ion differences (``SAME_COMPOUND_DA``, ``SAME_COMPOUND_NEGATIVE_DA``).
    Returns a float64 array of len(spectra). Raises KeyError when a column is missing."""
    if spectra.height == 0:
        return np.empty(0)
    if features is not None and "feature_id" in spectra.columns:
        apex = features.select("feature_id", pl.col("rt_s").cast(pl.Float64).alias("_apex")).unique("feature_id")
        spectra = spectra.join(apex, on="feature_id", how="left", maintain_order="left").with_columns(
            rt_s=pl.coalesce("_apex", pl.col("rt_s").cast(pl.Float64)))
        rt_window_s = apex_window_s
    lengths = spectra["mz"].list.len().fill_null(0).to_numpy().astype(np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    filled = spectra.filter(pl.col("mz").list.len() > 0)
    peak_mz = filled["mz"].explode().cast(pl.Float64).fill_null(np.nan).to_numpy()
    peak_int = filled["intensity"].explode().cast(pl.Float64).fill_null(0.0).to_numpy()
    modes = (spectra["ion_mode"].cast(pl.Utf8).fill_null(ion_mode).to_list() if "ion_mode" in spectra.columns
             else [ion_mode] * spectra.height)
    sign = np.asarray([-1.0 if str(m).lower().startswith("neg") else 1.0 for m in modes])
    return _parents(spectra["rt_s"].cast(pl.Float64).fill_null(np.nan).to_numpy(),
                    spectra["precursor_mz"].cast(pl.Float64).fill_null(np.nan).to_numpy(), sign, offsets,
                    np.ascontiguousarray(peak_mz), np.ascontiguousarray(peak_int), float(rt_window_s),
                    float(tolerance_da), float(min_relative), MIN_DELTA_DA, np.asarray(SAME_COMPOUND_DA),
                    np.asarray(SAME_COMPOUND_NEGATIVE_DA))


def warm_up() -> None:
    """Compile the kernel (numba caches it on disk) on a two-spectrum run: ``prepare-library`` calls it once per
    library so that the annotate jobs only load the cached kernel."""
    in_source_parents(pl.DataFrame({"rt_s": [1.0, 1.5], "precursor_mz": [100.0, 200.0],
                                    "mz": [[50.0], [100.0, 150.0]], "intensity": [[1.0], [1.0, 2.0]]}))


def most_named(values: np.ndarray, tolerance_da: float = 0.01) -> float | None:
    """The value of ``values`` (m/z, shape (n,)) with the most others within ``tolerance_da`` (the lighter on a tie),
    as the median of those; None when empty. E.g. [386.2335, 293.2482, 386.2341] -> 386.2338. Used for the parent
    m/z most of a consensus feature's spectra name: not the median of all, since two spectra naming parents at 386.23
    and 293.25 would give 339.74, where no ion is (found by the study-truth benchmark)."""
    if values.size == 0:
        return None
    v = np.sort(values)
    lo = np.searchsorted(v, v - tolerance_da - 1e-9, side="left")
    hi = np.searchsorted(v, v + tolerance_da + 1e-9, side="right")
    k = int(np.argmax(hi - lo))
    return float(np.median(v[lo[k]:hi[k]]))


CHECK_COLUMNS = {"in_source_parent_id": pl.Utf8, "in_source_correlation": pl.Float64, "in_source_n_samples": pl.Int32}


def parent_correlation(marked: pl.DataFrame, matrix: pl.LazyFrame | pl.DataFrame, samples: list[str]
                       ) -> pl.DataFrame:
    """How closely each marked feature's intensity follows its in-source parent's across the study's samples.

    ``marked``: consensus_id, in_source_of_mz (the parent precursor m/z); ``matrix``: the study's feature matrix
    (consensus_id, mz, rt_s, one intensity column per run; ``link`` stage), read lazily: its positions once, then the
    ``samples`` columns of the marked features and their parent candidates only (study samples: QC and blank runs
    would correlate any two ions). The parent's consensus features: m/z within ``PARENT_PPM`` of in_source_of_mz and
    RT within ``PARENT_RT_S`` of the marked feature's; of those, the one whose log intensities correlate best
    (Pearson) over the samples measuring both (intensity > 0). Returns consensus_id, in_source_parent_id,
    in_source_correlation, in_source_n_samples, one row per row of ``marked``, in its order (a feature may come with
    several parent m/z; nulls where no parent feature was found or fewer than 3 samples measure both). Raises
    KeyError when ``matrix`` lacks consensus_id, mz or rt_s.
    """
    schema = {"consensus_id": pl.Utf8, **CHECK_COLUMNS}
    lazy = matrix.lazy()
    names = lazy.collect_schema().names()
    for column in ("consensus_id", "mz", "rt_s"):
        if column not in names:
            raise KeyError(column)
    cols = [c for c in samples if c in names]
    where = lazy.select(pl.col("consensus_id").cast(pl.Utf8), pl.col("mz").cast(pl.Float64),
                        pl.col("rt_s").cast(pl.Float64)).collect()
    rt_of = dict(zip(where["consensus_id"].to_list(), where["rt_s"].to_list()))
    mz_all, rt_all, id_all = where["mz"].to_numpy(), where["rt_s"].to_numpy(), where["consensus_id"].to_numpy()
    rows_in = marked.select(pl.col("consensus_id").cast(pl.Utf8), "in_source_of_mz").rows()
    candidates: list[list[str]] = []
    for cid, parent_mz in rows_in:
        rt = rt_of.get(cid)
        if parent_mz is None or rt is None or not cols:
            candidates.append([])
            continue
        near = ((np.abs(mz_all - parent_mz) <= parent_mz * PARENT_PPM * 1e-6) & (np.abs(rt_all - rt) <= PARENT_RT_S)
                & (id_all != cid))
        candidates.append(id_all[near].tolist())
    wanted = {cid for (cid, _), ids in zip(rows_in, candidates) if ids} | {c for ids in candidates for c in ids}
    values: dict[str, np.ndarray] = {}
    if wanted:
        rows = lazy.filter(pl.col("consensus_id").cast(pl.Utf8).is_in(list(wanted))).select(
            pl.col("consensus_id").cast(pl.Utf8), *[pl.col(c).cast(pl.Float64) for c in cols]).collect()
        with np.errstate(divide="ignore", invalid="ignore"):
            logs = np.log(rows.select(cols).to_numpy())
        values = dict(zip(rows["consensus_id"].to_list(), logs))
    out = []
    for (cid, _), near in zip(rows_in, candidates):
        best: tuple = (cid, None, None, None)
        a = values.get(cid)
        for parent in near if a is not None else []:
            b = values[parent]
            ok = np.isfinite(a) & np.isfinite(b)
            if ok.sum() < 3 or np.std(a[ok]) == 0 or np.std(b[ok]) == 0:
                continue
            r = float(np.corrcoef(a[ok], b[ok])[0, 1])
            if best[2] is None or r > best[2]:
                best = (cid, parent, r, int(ok.sum()))
        out.append(best)
    return pl.DataFrame(out, schema=schema, orient="row")


def follows_parent() -> pl.Expr:
    """Whether a feature's intensity follows its in-source parent's (``CHECK_COLUMNS``): r >= ``CONFIRM_MIN_R`` over
    at least ``CONFIRM_MIN_SAMPLES`` samples; false where not checked. The one rule for withdrawing a name
    (``withdraw_confirmed``) and for telling a withdrawn name from another refusal (the report, the benchmark)."""
    return ((pl.col("in_source_correlation") >= CONFIRM_MIN_R)
            & (pl.col("in_source_n_samples") >= CONFIRM_MIN_SAMPLES)).fill_null(False)


WITHDRAWN_NOTE = "not accepted: an in-source fragment"  # how evidence_note starts on a withdrawn name


def withdrawn(columns) -> pl.Expr:
    """Rows of identifications.parquet (its ``columns``) that were accepted until the check found their feature
    follows its in-source parent (``follows_parent``; ``withdraw_confirmed`` starts their evidence_note with
    WITHDRAWN_NOTE): what the report and the study-truth benchmark list as withdrawn. A name refused before the check
    (q above the FDR, an adduct contradiction) is not one, even where its feature follows the parent. False for a
    table written without the check's columns."""
    if not {"in_source_correlation", "in_source_n_samples", "evidence_note"} <= set(columns):
        return pl.lit(False)
    return (~pl.col("accepted").fill_null(False) & follows_parent()
            & pl.col("evidence_note").str.starts_with(WITHDRAWN_NOTE).fill_null(False))


def withdrawing_loss() -> pl.Expr:
    """The conjugate's loss through which a withdrawn name's parent was found (its evidence_note, written by
    ``withdraw_confirmed``: "..., a loss of SO3 (sulfate); ..."); null where the MS/MS named the parent."""
    return pl.col("evidence_note").str.extract(r"^" + WITHDRAWN_NOTE + r" of m/z [^;]*, a loss of ([^;]+);", 1)


def read_matrix(path: str | Path) -> pl.LazyFrame:
    """The feature matrix at ``path`` for ``parent_correlation``, read lazily. Raises InputError naming the file when
    it is missing, is not Parquet or lacks consensus_id, mz or rt_s."""
    from ms2study.core.errors import InputError

    fix = "give results/study/feature_matrix.parquet (the link stage's), or leave --feature-matrix out"
    if not Path(path).is_file():
        raise InputError("feature matrix does not exist", file=str(path), fix=fix)
    try:
        lazy = pl.scan_parquet(path)
        names = lazy.collect_schema().names()
    except (pl.exceptions.PolarsError, OSError) as err:
        raise InputError(f"feature matrix is not a Parquet table ({type(err).__name__})", file=str(path),
                         fix=fix) from None
    missing = [c for c in ("consensus_id", "mz", "rt_s") if c not in names]
    if missing:
        raise InputError(f"feature matrix lacks column(s) {missing}", file=str(path), fix=fix)
    return lazy


def loss_parents(features: pl.DataFrame, matrix: pl.LazyFrame | pl.DataFrame, samples: list[str],
                 losses: dict[str, float] | None = None) -> pl.DataFrame:
    """The best-following co-eluting parent of each feature one of ``losses`` (default CONJUGATE_LOSSES) heavier.

    ``features``: consensus_id. For every loss, the parent m/z is the feature's consensus m/z (``matrix``) plus the
    loss (singly charged ions of either polarity), searched as ``parent_correlation`` searches a marked parent. Returns
    consensus_id, ``CHECK_COLUMNS``, in_source_parent_mz (the parent feature's m/z) and in_source_loss (the loss's
    name): per feature the candidate with the highest correlation; nulls where none was found. Raises KeyError when
    ``matrix`` lacks consensus_id, mz or rt_s."""
    losses = CONJUGATE_LOSSES if losses is None else losses
    lazy = matrix.lazy()
    ids = features["consensus_id"].cast(pl.Utf8).unique(maintain_order=True).to_list()
    where = (lazy.select(pl.col("consensus_id").cast(pl.Utf8), pl.col("mz").cast(pl.Float64)).collect())
    mz_of = dict(zip(where["consensus_id"].to_list(), where["mz"].to_list()))
    asked = pl.DataFrame([(cid, mz_of[cid] + mass, name) for cid in ids if mz_of.get(cid) is not None
                          for name, mass in losses.items()],
                         schema={"consensus_id": pl.Utf8, "in_source_of_mz": pl.Float64, "in_source_loss": pl.Utf8},
                         orient="row")
    empty = pl.DataFrame({"consensus_id": ids}, schema={"consensus_id": pl.Utf8}).with_columns(
        *[pl.lit(None, dtype=t).alias(c) for c, t in CHECK_COLUMNS.items()],
        pl.lit(None, dtype=pl.Float64).alias("in_source_parent_mz"),
        pl.lit(None, dtype=pl.Utf8).alias("in_source_loss"))
    if asked.height == 0:
        return empty
    found = pl.concat([parent_correlation(asked, lazy, samples).drop("consensus_id"), asked], how="horizontal")
    found = found.join(where.rename({"consensus_id": "in_source_parent_id", "mz": "in_source_parent_mz"}),
                       on="in_source_parent_id", how="left")
    best = (found.filter(pl.col("in_source_correlation").is_not_null())
            .sort(["in_source_correlation", "in_source_n_samples"], descending=True)
            .unique("consensus_id", keep="first", maintain_order=True)
            .select("consensus_id", *CHECK_COLUMNS, "in_source_parent_mz", "in_source_loss"))
    return empty.select("consensus_id").join(best, on="consensus_id", how="left", maintain_order="left")


def withdraw_confirmed(identifications: pl.DataFrame, matrix: pl.LazyFrame | pl.DataFrame | None,
                       samples: list[str]) -> pl.DataFrame:
    """``identifications`` (``stages.identify.IDENTIFICATIONS`` columns so far) with ``CHECK_COLUMNS`` for each
    feature marked as a possible in-source fragment (``in_source_of_mz``; ``parent_correlation`` over the study
    ``samples``; all null without ``matrix``). An accepted name whose feature ``follows_parent`` is an in-source
    fragment's: it is not accepted (msi_level and isomer_inchikeys null; evidence_note says why), and the log counts
    them. The parent is the one the MS/MS marked or, where that one does not follow (or nothing was marked: a parent
    is often not fragmented itself), a co-eluting feature one of CONJUGATE_LOSSES heavier that follows over at least
    LOSS_MIN_SAMPLES samples (``loss_parents``); its m/z then becomes in_source_of_mz and evidence_note names the
    loss. A study-truth benchmark finding (seed 21): citric acid named on the in-source fragment of its glycine
    conjugate, whose MS/MS was never acquired, was marked through another co-eluting ion's MS/MS (r 0.24), while the
    conjugate's feature, 57.0215 Da heavier, follows it at r 0.92 over 14 samples. A mark whose feature does not
    follow its parent (r below ``RULE_OUT_MAX_R`` over at least ``RULE_OUT_MIN_SAMPLES`` samples) is cleared
    (in_source_of_mz null; the parent, r and n kept)."""
    marked = identifications.filter(pl.col("in_source_of_mz").is_not_null())
    accepted = identifications.filter(pl.col("accepted").fill_null(False))
    if matrix is None or (marked.height == 0 and accepted.height == 0):
        return identifications.with_columns(*[pl.lit(None, dtype=t).alias(c) for c, t in CHECK_COLUMNS.items()])
    by_msms = (parent_correlation(marked, matrix, samples) if marked.height else
               pl.DataFrame(schema={"consensus_id": pl.Utf8, **CHECK_COLUMNS}))
    out = identifications.join(by_msms, on="consensus_id", how="left")
    loss = loss_parents(accepted, matrix, samples).rename({c: f"_loss_{c}" for c in CHECK_COLUMNS})
    out = out.join(loss, on="consensus_id", how="left")
    loss_follows = ((pl.col("_loss_in_source_correlation") >= CONFIRM_MIN_R)
                    & (pl.col("_loss_in_source_n_samples") >= LOSS_MIN_SAMPLES)).fill_null(False)
    by_loss = pl.col("accepted").fill_null(False) & ~follows_parent() & loss_follows
    out = out.with_columns(
        *[pl.when(by_loss).then(pl.col(f"_loss_{c}")).otherwise(pl.col(c)).alias(c) for c in CHECK_COLUMNS],
        pl.when(by_loss).then(pl.col("in_source_parent_mz")).otherwise(pl.col("in_source_of_mz")).alias(
            "in_source_of_mz"),
        pl.when(by_loss).then(pl.col("in_source_loss")).alias("in_source_loss"))
    ruled_out = ((pl.col("in_source_correlation") < RULE_OUT_MAX_R)
                 & (pl.col("in_source_n_samples") >= RULE_OUT_MIN_SAMPLES)).fill_null(False)
    cleared = out.select((ruled_out & pl.col("in_source_of_mz").is_not_null()).sum()).item()
    if cleared:
        log.info("%d possible in-source fragment mark(s) cleared: their intensity does not follow the marked parent's "
                 "(log-intensity r < %.1f over >= %d samples)", cleared, RULE_OUT_MAX_R, RULE_OUT_MIN_SAMPLES)
    out = out.with_columns(pl.when(ruled_out).then(None).otherwise(pl.col("in_source_of_mz")).alias("in_source_of_mz"))
    confirmed = pl.col("accepted").fill_null(False) & follows_parent()
    n = out.select(confirmed.sum()).item()
    if n:
        log.info("%d accepted name(s) withdrawn: in-source fragments whose intensity follows their co-eluting "
                 "parent's over the study samples (log-intensity r >= %.2f over >= %d samples; %d found as a "
                 "conjugate's loss)", n, CONFIRM_MIN_R, CONFIRM_MIN_SAMPLES,
                 out.select((confirmed & pl.col("in_source_loss").is_not_null()).sum()).item())
    why = (pl.lit(WITHDRAWN_NOTE + " of m/z ") + pl.col("in_source_of_mz").round(4).cast(pl.Utf8)
           + pl.lit(" (consensus feature ") + pl.col("in_source_parent_id")
           + pl.when(pl.col("in_source_loss").is_not_null()).then(pl.lit(", a loss of ") + pl.col("in_source_loss"))
           .otherwise(pl.lit("")) + pl.lit("; log intensities r ")
           + pl.col("in_source_correlation").round(3).cast(pl.Utf8) + pl.lit(" over ")
           + pl.col("in_source_n_samples").cast(pl.Utf8) + pl.lit(" samples)"))
    return out.with_columns(
        *[pl.when(confirmed).then(None).otherwise(pl.col(c)).alias(c) for c in ("msi_level", "isomer_inchikeys")],
        pl.when(confirmed).then(why).otherwise(pl.col("evidence_note")).alias("evidence_note"),
        pl.when(confirmed).then(False).otherwise(pl.col("accepted")).alias("accepted")).drop(
        [f"_loss_{c}" for c in CHECK_COLUMNS] + ["in_source_parent_mz", "in_source_loss"])
