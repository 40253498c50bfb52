"""Candidate selection by precursor m/z and ion mode: which library spectra a query is compared with at all.

A library sorted by (ion mode, precursor m/z) is binary-searched per ion-mode block, and the candidates of all
queries come back CSR-style (``offsets`` of n_queries + 1, flat library rows), the layout every scoring kernel
takes. Used by annotation, calibration, learn-combined, encoder validation and the benchmarks. Imports numpy only.
"""

from __future__ import annotations

import numpy as np

from ms2study.core.flat import offsets_from_counts


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
    offsets = offsets_from_counts(counts)
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
