"""A run's precursor m/z offset, measured on its own confident library matches, so that its spectra are searched at
the m/z the library knows.

The annotate stage searches each run as measured, within ``annotate: precursor_tolerance_ppm`` (10 ppm by default).
A run whose mass calibration is off by more than most of that window loses its identifications: a trial's spike-in
study with runs 14-20 ppm off accepted 0 spectra in those runs and 34-51 in the others. Before the search, every
spectrum with a library candidate within ``WIDE_WINDOW_PPM`` is compared by cosine (the cheapest score); the best
candidate of each spectrum that shares at least ``MIN_MATCHED_PEAKS`` fragments at cosine ``MIN_COSINE`` or more
votes with its precursor error in ppm, each library spectrum once (the median of its votes: a compound fragmented
again and again counts once). ``core.votes.densest_window`` then finds where the votes agree: the offset, accepted
with at least ``MIN_VOTES`` library spectra agreeing within +-``HALF_WIDTH_PPM`` and holding at least half of all
votes (wrong matches spread over the wide window). An offset of ``MIN_OFFSET_PPM`` or more is removed from the
run's precursor m/z before the search; ``precursor_error_ppm`` in the annotations stays the measured error.

Per run, never across runs: it needs no other sample, so adding a sample never changes another's annotations. The
same idea, recalibrating on the run's own identified or known ions, is OpenMS InternalCalibration's (documented
there for peptides and lock masses); a constant offset is the first-order term, an m/z-dependent error is not
modelled. Imports numpy, ``core`` and ``kernels``.
"""

from __future__ import annotations

import numpy as np

from ms2study.core.flat import FlatSpectra
from ms2study.core.measurement import recalibrated
from ms2study.core.votes import densest_window
from ms2study.kernels import cosine
from ms2study.kernels.candidates import find_candidates

WIDE_WINDOW_PPM = 50.0   # the widest offset looked for
HALF_WIDTH_PPM = 2.0     # agreement of the votes of one offset (MS/MS precursor m/z scatter by 1-2 ppm)
MIN_COSINE = 0.7         # a vote's match: cosine at least this ...
MIN_MATCHED_PEAKS = 4    # ... sharing at least this many fragment peaks
MIN_VOTES = 3            # library spectra that agree on the offset
MIN_SHARE = 0.5          # and at least this share of all votes
MIN_OFFSET_PPM = 3.0     # a smaller offset is within an Orbitrap's specification: not removed ...
WINDOW_SHARE = 0.3       # ... nor one under this share of the precursor window (a QTOF's 20 ppm window: 6 ppm)


def precursor_offset_ppm(queries: FlatSpectra, lib_offsets: np.ndarray, lib_mz: np.ndarray, lib_intensity: np.ndarray,
                         lib_precursor: np.ndarray, lib_mode: np.ndarray, p: dict) -> tuple[float | None, int]:
    """The run's precursor offset in ppm ((measured - library) / library x 1e6) and the number of library spectra
    agreeing on it; (None, n) when the votes do not agree (see the module docstring).

    ``queries``: the run's cleaned spectra (``identification.pairs.flatten_queries``); the library as flat arrays
    sorted by (ion mode, precursor m/z), as ``find_candidates`` needs them; ``p``: the annotate parameters
    (``fragment_tolerance_da``, ``mz_power``, ``intensity_power``)."""
    if queries.precursor_mz.size == 0 or np.asarray(lib_precursor).size == 0:
        return None, 0
    lib_precursor = np.asarray(lib_precursor, dtype=np.float64)
    cand_offsets, cand_lib = find_candidates(queries.precursor_mz, queries.ion_mode, lib_precursor,
                                             np.asarray(lib_mode), WIDE_WINDOW_PPM, None)
    if cand_lib.size == 0:
        return None, 0
    cos, matched = cosine.cosine_candidates(
        queries.offsets, queries.mz, queries.intensity, queries.precursor_mz, np.asarray(lib_offsets),
        np.asarray(lib_mz), np.asarray(lib_intensity), lib_precursor, cand_offsets, cand_lib,
        float(p["fragment_tolerance_da"]), float(p["mz_power"]), float(p["intensity_power"]), False)
    counts = np.diff(cand_offsets)
    query_of = np.repeat(np.arange(counts.size), counts)
    good = (np.nan_to_num(cos, nan=-1.0) >= MIN_COSINE) & (matched >= MIN_MATCHED_PEAKS)
    if not good.any():
        return None, 0
    # each query's best good candidate: sort good pairs by query, then by cosine descending
    idx = np.flatnonzero(good)
    idx = idx[np.lexsort((-cos[idx], query_of[idx]))]
    first = idx[np.r_[True, query_of[idx][1:] != query_of[idx][:-1]]]
    lib_rows, q_rows = cand_lib[first], query_of[first]
    errors = (queries.precursor_mz[q_rows] - lib_precursor[lib_rows]) / lib_precursor[lib_rows] * 1e6
    votes = np.array([np.median(errors[lib_rows == row]) for row in np.unique(lib_rows)])
    contrast = MIN_SHARE * WIDE_WINDOW_PPM / HALF_WIDTH_PPM  # a share of all votes, as densest_window's contrast
    return densest_window(votes, HALF_WIDTH_PPM, WIDE_WINDOW_PPM, MIN_VOTES, contrast)


def shifted(queries: FlatSpectra, offset_ppm: float) -> FlatSpectra:
    """``queries`` with precursor m/z divided by 1 + ``offset_ppm`` x 1e-6 (peaks unchanged)."""
    return FlatSpectra(queries.offsets, queries.mz, queries.intensity,
                       recalibrated(queries.precursor_mz, offset_ppm),
                       queries.ion_mode, queries.rows)


def removal_threshold_ppm(tolerance_ppm: float | None, tolerance_da: float | None) -> float:
    """The smallest offset removed (ppm): ``MIN_OFFSET_PPM``, or ``WINDOW_SHARE`` of a ppm precursor window when that
    is larger (a Da window: ``MIN_OFFSET_PPM``)."""
    if tolerance_da is not None or tolerance_ppm is None:
        return MIN_OFFSET_PPM
    return max(MIN_OFFSET_PPM, WINDOW_SHARE * float(tolerance_ppm))
