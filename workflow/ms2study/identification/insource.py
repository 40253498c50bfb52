"""Possible in-source fragments: a spectrum whose precursor m/z appears as a fragment in the MS/MS of a heavier
precursor that co-elutes with it in the same run.

An ion broken in the ion source elutes exactly with its parent, and the parent's own MS/MS usually holds it: the
co-elution and MS2-containment evidence of ISFrag (Guo et al. 2021, "ISFrag: De Novo Recognition of In-Source
Fragments for Liquid Chromatography-Mass Spectrometry Data", Anal Chem 93:10243). Such a fragment's MS/MS can match
a library compound perfectly (glycine from a glycine conjugate), so a name given to it may not be the compound in
the sample. Parents at the mass differences of the same compound's own ions (13C isotopes, Na/K/NH4/ACN adducts of
[M+H]+, the [2M+H]+ dimer) are not counted: their MS/MS holding [M+H]+ says nothing about another compound.
Co-elution is judged on the apexes of the features the two spectra were mapped to (``feature_apex_s``, within
``APEX_WINDOW_S``), not on the MS2 scan times: dynamic exclusion spreads a feature's MS2 scans over its peak and
beyond, so the fragment's and the parent's scans often lie several seconds apart though their peaks coincide (cholic
acid and its sulfate: apexes 0.1 s apart, scans 3-16 s), while ions that only overlap have apexes apart. A spectrum
mapped to no feature keeps its scan time. On the study-truth benchmark (``benchmarks/study_truth.py``), seed 11 (24
samples, 193 accepted names, 11 in-source fragments): scan times within 2 s marked 37 accepted names, 10 of the 11
fragments (precision 0.27); apexes within 1 s mark 19, all 11 (0.58); apexes within 2 s 33 (0.33). Seed 3 (16
samples, 197 accepted, 15 fragments; a study not looked at before the window was chosen): scan times 33 marked, 14
fragments (0.42); apexes within 1 s 24, 13 (0.54). Right names marked: 38 -> 16 over both.
Evidence, not proof: a co-eluting spectrum can still hold the m/z by chance. Imports numpy, polars and numba only.
"""

from __future__ import annotations

import numpy as np
import polars as pl
from numba import njit

RT_WINDOW_S = 2.0      # co-elution by MS2 scan times (no feature apexes known): about one DDA cycle
APEX_WINDOW_S = 1.0    # co-elution by feature apexes: a consensus feature's apex is placed within ~0.3 s (median)
                       # to 0.9 s (90 %) of the true one on the study-truth benchmark
TOLERANCE_DA = 0.003   # the fragment peak within this of the spectrum's precursor m/z (high-resolution MS/MS)
MIN_RELATIVE = 0.2     # and at least this share of the parent spectrum's base peak
MIN_DELTA_DA = 1.5     # lighter differences: the precursor's own 13C isotope, co-isolated
PROTON = 1.007276
# parent - precursor differences of one compound's own ions: 13C2, 13C3, [M+Na]+, [M+K]+, [M+NH4]+, [M+ACN+H]+
SAME_COMPOUND_DA = (2.006710, 3.010065, 21.981944, 37.955882, 17.026549, 41.026549)


@njit(cache=True)
def _parents(rt, precursor, offsets, peak_mz, peak_int, window, tol, min_rel, min_delta, same):
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
            if delta <= min_delta:
                continue
            skip = abs(delta - (precursor[i] - PROTON)) <= tol * 3  # [2M+H]+ of this compound
            for s in same:
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
                best = precursor[j]
        if best > 0.0:
            out[i] = best
    return out


def in_source_parents(spectra: pl.DataFrame, rt_window_s: float = RT_WINDOW_S, tolerance_da: float = TOLERANCE_DA,
                      min_relative: float = MIN_RELATIVE, features: pl.DataFrame | None = None,
                      apex_window_s: float = APEX_WINDOW_S) -> np.ndarray:
    """For each row of one run's ``spectra`` (columns rt_s, precursor_mz, mz, intensity: ``tables.SPECTRA``), the
    precursor m/z of the lightest co-eluting heavier precursor whose MS/MS holds this row's precursor m/z as a peak
    (within ``tolerance_da``, at least ``min_relative`` of that spectrum's base peak; the same compound's isotope,
    adduct and dimer ions excluded: module docstring), NaN where there is none. Co-elution: with ``features`` (the
    run's features table: feature_id, rt_s = apex, s) each spectrum is placed at its mapped feature's apex (its
    scan time when unmapped) and the window is ``apex_window_s``; without, MS2 scan times within ``rt_window_s``.
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
    return _parents(spectra["rt_s"].cast(pl.Float64).fill_null(np.nan).to_numpy(),
                    spectra["precursor_mz"].cast(pl.Float64).fill_null(np.nan).to_numpy(), offsets,
                    np.ascontiguousarray(peak_mz), np.ascontiguousarray(peak_int), float(rt_window_s),
                    float(tolerance_da), float(min_relative), MIN_DELTA_DA, np.asarray(SAME_COMPOUND_DA))


def warm_up() -> None:
    """Compile the kernel (numba caches it on disk) on a two-spectrum run: ``prepare-library`` calls it once per
    library so that the annotate jobs only load the cached kernel."""
    in_source_parents(pl.DataFrame({"rt_s": [1.0, 1.5], "precursor_mz": [100.0, 200.0],
                                    "mz": [[50.0], [100.0, 150.0]], "intensity": [[1.0], [1.0, 2.0]]}))
