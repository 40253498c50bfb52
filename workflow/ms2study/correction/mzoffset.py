"""A run's m/z calibration offset against the reference run, measured on the features the two share.

An instrument's mass calibration drifts between runs (a few ppm on an Orbitrap within a day, more after a
temperature change or a missed calibration; 5-20 ppm on a time-of-flight instrument without lock mass). When a run's
offset against the study's reference run approaches the linking tolerance (``link: mz_tol_ppm``), its features no
longer link to the others': a trial's spike-in study with offsets of 14-20 ppm in 5 of 16 runs split each compound
into several consensus features, imputed the missing halves and lost every planted difference, and nothing said why.

``mz_offset_ppm``: every pair of a run feature (its ``top`` most intense) and a reference feature within
``max_ppm`` in m/z and ``rt_window_s`` in retention time votes with its m/z difference in ppm
((run - reference) / reference x 1e6); the offset is ``core.votes.densest_window`` of the votes (half-width
``PEAK_HALF_WIDTH_PPM``, span ``max_ppm``, at least ``MIN_PAIRS`` votes and ``MIN_CONTRAST`` times an even
spread). A single offset per run is the first-order term of a calibration error (an m/z-dependent error is not
modelled). The same votes-in-a-window idea is what lock-mass-free recalibration tools use on known ions (e.g.
OpenMS InternalCalibration, on identified peptides or a list of contaminants); here the reference run's own
features are the known ions, and the link stage anchors the scale at the runs' median offset (``stages.link``),
so the correction is relative to the study, not absolute (the annotate stage's precursor recalibration against
the library, ``identification.recalibration``, is).
Imports numpy, polars and ``core.votes``.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from ms2study.core.votes import densest_window

MAX_PPM = 50.0              # the largest offset looked for
PEAK_HALF_WIDTH_PPM = 2.0   # half-width of the window that collects one ion's votes (jitter of ~1-2 ppm)
MIN_PAIRS = 20              # votes in the window needed to call the offset measured
MIN_CONTRAST = 5.0          # and this many times the votes an even spread of wrong pairs puts in such a window
TOP_FEATURES = 2000         # the run's most intense features that vote
# link: an offset at least this large is removed before linking (smaller ones are within the m/z jitter of a feature)
RECALIBRATE_MIN_PPM = 2.0
# link: the RT window of a voting pair, this many times link: align_pair_rt_max_s (the runs are not aligned yet)
RT_WINDOW_FACTOR = 3.0


def mz_offset_ppm(mz: np.ndarray, rt_s: np.ndarray, intensity: np.ndarray, ref_mz: np.ndarray,
                  ref_rt_s: np.ndarray, rt_window_s: float, max_ppm: float = MAX_PPM, top: int = TOP_FEATURES
                  ) -> tuple[float | None, int]:
    """The run's m/z offset against the reference in ppm ((run - reference) / reference x 1e6), and the number of
    feature pairs it rests on; (None, n) when no window of votes stands out (see the module docstring).

    ``mz``, ``rt_s``, ``intensity``: the run's features, shape (n,) each; ``ref_mz``, ``ref_rt_s``: the reference
    run's, shape (m,); ``rt_window_s``: the largest RT difference of a pair (the runs' RT shift is not yet known:
    use the alignment's pair window plus the expected shift). Raises ValueError when the run's arrays differ in
    length."""
    mz, rt_s, intensity = (np.asarray(a, dtype=np.float64) for a in (mz, rt_s, intensity))
    if not (mz.shape == rt_s.shape == intensity.shape):
        raise ValueError(f"mz, rt_s and intensity differ in length ({mz.size}, {rt_s.size}, {intensity.size})")
    ref_mz, ref_rt_s = np.asarray(ref_mz, dtype=np.float64), np.asarray(ref_rt_s, dtype=np.float64)
    keep = np.isfinite(mz) & np.isfinite(rt_s) & (mz > 0)
    mz, rt_s, intensity = mz[keep], rt_s[keep], np.nan_to_num(intensity[keep], nan=0.0)
    if mz.size == 0 or ref_mz.size == 0:
        return None, 0
    chosen = np.argsort(-intensity, kind="stable")[:top]
    mz, rt_s = mz[chosen], rt_s[chosen]
    order = np.argsort(ref_mz, kind="stable")
    ref_mz, ref_rt_s = ref_mz[order], ref_rt_s[order]
    lo = np.searchsorted(ref_mz, mz * (1.0 - max_ppm * 1e-6), side="left")
    hi = np.searchsorted(ref_mz, mz * (1.0 + max_ppm * 1e-6), side="right")
    counts = hi - lo
    run_index = np.repeat(np.arange(mz.size), counts)
    ref_index = (np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)) + np.repeat(lo, counts)
    close = np.abs(ref_rt_s[ref_index] - rt_s[run_index]) <= rt_window_s
    votes = ((mz[run_index] - ref_mz[ref_index]) / ref_mz[ref_index] * 1e6)[close]
    return densest_window(votes, PEAK_HALF_WIDTH_PPM, max_ppm, MIN_PAIRS, MIN_CONTRAST)


def removed_offsets(alignment: pl.DataFrame) -> dict[str, float]:
    """{run: its m/z offset in ppm} of the runs whose features the link stage moved onto the study's scale (the
    alignment table's ``mz_offset_ppm`` where ``mz_recalibrated``); {} for a table without those columns (an older
    link stage). A consensus m/z times 1 + offset x 1e-6 is where the run measured that ion."""
    if not {"mz_offset_ppm", "mz_recalibrated"} <= set(alignment.columns):
        return {}
    moved = alignment.filter(pl.col("mz_recalibrated").fill_null(False) & pl.col("mz_offset_ppm").is_not_null())
    return dict(zip(moved["sample_id"].cast(pl.Utf8).to_list(), moved["mz_offset_ppm"].to_list()))
