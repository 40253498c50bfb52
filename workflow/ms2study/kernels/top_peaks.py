"""Top-N peak selection per spectrum, parallel over spectra: the numba path of the encoder's peak selection.

Spectra travel as flat arrays (see ms2study.kernels): concatenated peaks and an ``offsets`` array (spectrum
``i`` owns ``offsets[i]:offsets[i+1]``). ``count_valid_peaks`` counts each spectrum's peaks with finite, positive
m/z and intensity (at most ``max_peaks``); ``fill_top_peaks`` writes each spectrum's most intense valid peaks,
most intense first (ties keep input order), intensities relative to its base peak. ``ms2study.encoder.inference``
calls them for large inputs only (a numpy sort is quicker than starting numba for one sample's spectra) and both
paths give the same arrays. Compiled once per machine (``cache=True``). Pure array code: imports numpy and numba
only.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange


@njit(cache=True, parallel=True)
def count_valid_peaks(mz, intensity, offsets, max_peaks):
    n = offsets.shape[0] - 1
    kept = np.zeros(n, dtype=np.int64)
    for i in prange(n):
        c = 0
        for j in range(offsets[i], offsets[i + 1]):
            if np.isfinite(mz[j]) and np.isfinite(intensity[j]) and mz[j] > 0 and intensity[j] > 0:
                c += 1
        kept[i] = min(c, max_peaks)
    return kept


@njit(cache=True, parallel=True)
def fill_top_peaks(mz, intensity, offsets, new_offsets, out_mz, out_rel):
    n = offsets.shape[0] - 1
    for i in prange(n):
        k = new_offsets[i + 1] - new_offsets[i]
        if k == 0:
            continue
        a, b = offsets[i], offsets[i + 1]
        idx = np.empty(b - a, dtype=np.int64)
        m = 0
        for j in range(a, b):
            if np.isfinite(mz[j]) and np.isfinite(intensity[j]) and mz[j] > 0 and intensity[j] > 0:
                idx[m] = j
                m += 1
        idx = idx[:m]
        # Descending intensity; mergesort is stable, so equal intensities keep their input order.
        order = np.argsort(-intensity[idx], kind="mergesort")
        base = intensity[idx[order[0]]]
        o = new_offsets[i]
        for t in range(k):
            j = idx[order[t]]
            out_mz[o + t] = mz[j]
            out_rel[o + t] = np.float32(intensity[j] / base)
