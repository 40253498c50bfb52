"""Spectral entropy similarity: ms_entropy-style spectrum preparation and the similarity of prepared spectra.

Spectra travel as flat arrays (see ms2study.kernels): concatenated peaks and an ``offsets`` array (spectrum
``i`` owns ``offsets[i]:offsets[i+1]``); candidate pairs are CSR over queries (``cand_offsets``, ``cand_lib``).
Compiled once per machine (``cache=True``); the batched kernels run in parallel over spectra / queries.

Both spectra are prepared as ms_entropy's ``clean_spectrum`` does (centroiding peaks closer than
``2 * tolerance``, noise floor 1 % of the base peak, intensities summing to 1), then weighted by spectral
entropy (``I ** (0.25 + 0.25 * S)`` when ``S < 3``, renormalised); the similarity is
``1/2 * sum(f(a + b) - f(a) - f(b))``, ``f(x) = x log2 x``, over peaks paired in one m/z-ordered sweep. Same as
ms_entropy ``calculate_entropy_similarity`` (Li et al. 2021, Nat. Methods 18:1524), checked numerically in
tests/test_scoring.py. Preparation is done once per spectrum (``prepare_entropy_peaks``), never per pair.
Pure array code: imports numpy and numba only.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange


@njit(cache=True)
def _order_by_intensity_desc(inten, n):
    """Indices of the n peaks by decreasing intensity, from a Lomuto-partition quicksort.

    The tie order of equal intensities decides which peak absorbs its neighbours when centroiding, so the
    sort must be this one (ms_entropy uses the same textbook scheme), not a stable sort.
    """
    order = np.arange(n)
    stack = np.empty(2 * n + 2, dtype=np.int64)
    top = 0
    stack[top] = 0
    stack[top + 1] = n - 1
    top += 2
    while top > 0:
        top -= 2
        low = stack[top]
        high = stack[top + 1]
        if low >= high:
            continue
        pivot = inten[order[high]]
        i = low - 1
        for j in range(low, high):
            if inten[order[j]] >= pivot:
                i += 1
                t = order[i]
                order[i] = order[j]
                order[j] = t
        t = order[i + 1]
        order[i + 1] = order[high]
        order[high] = t
        p = i + 1
        # Only non-empty ranges go on the stack, so it never holds more than n entries.
        if low < p - 1:
            stack[top] = low
            stack[top + 1] = p - 1
            top += 2
        if p + 1 < high:
            stack[top] = p + 1
            stack[top + 1] = high
            top += 2
    return order


@njit(cache=True)
def _compact_nonzero_by_mz(mz, inten, n):
    """Drop peaks of zero intensity and return the rest in ascending m/z."""
    keep = 0
    for k in range(n):
        if inten[k] > 0:
            keep += 1
    sel = np.empty(keep, dtype=np.int64)
    keep = 0
    for k in range(n):
        if inten[k] > 0:
            sel[keep] = k
            keep += 1
    order = sel[np.argsort(mz[sel], kind="mergesort")]
    return mz[order].copy(), inten[order].copy()


@njit(cache=True)
def _needs_centroid(mz, merge_da):
    for k in range(1, mz.shape[0]):
        if mz[k] - mz[k - 1] < merge_da:
            return True
    return False


@njit(cache=True)
def _centroid_in_place(mz, inten, merge_da):
    """One sweep from the most intense peak down: each live peak absorbs neighbours within merge_da.

    The absorbing peak takes the intensity-weighted m/z at once, so later peaks measure distances
    to the merged position (float32 arithmetic throughout, as in ms_entropy's C code).
    """
    n = mz.shape[0]
    order = _order_by_intensity_desc(inten, n)
    for k in range(n):
        idx = order[k]
        if inten[idx] > 0:
            left = idx - 1
            while left >= 0 and mz[idx] - mz[left] <= merge_da:
                left -= 1
            right = idx + 1
            while right < n and mz[right] - mz[idx] <= merge_da:
                right += 1
            isum = np.float32(0.0)
            wsum = np.float32(0.0)
            for t in range(left + 1, right):
                isum += inten[t]
                wsum += inten[t] * mz[t]
                inten[t] = 0
            mz[idx] = wsum / isum
            inten[idx] = isum
    return _compact_nonzero_by_mz(mz, inten, n)


@njit(cache=True)
def prepare_entropy_one(mz, intensity, noise_threshold, merge_da, weighted):
    """ms_entropy-style cleaning + entropy weighting of one spectrum -> (m/z float32, intensity float32).

    Steps: drop m/z <= 0 and intensity <= 0; centroid until no two peaks are closer than ``merge_da``;
    drop peaks below ``noise_threshold`` x base peak; scale to sum 1; if ``weighted`` and the spectral
    entropy S < 3, raise intensities to ``0.25 + 0.25 S`` and rescale to sum 1.
    """
    n = mz.shape[0]
    pm = np.empty(n, dtype=np.float32)
    pi = np.empty(n, dtype=np.float32)
    for k in range(n):
        a = np.float32(mz[k])
        pm[k] = a
        pi[k] = np.float32(intensity[k]) if a > 0 else np.float32(0.0)
    pm, pi = _compact_nonzero_by_mz(pm, pi, n)
    if pm.shape[0] == 0:
        return pm, pi
    step = np.float32(merge_da)
    while _needs_centroid(pm, step):
        pm, pi = _centroid_in_place(pm, pi, step)
    if noise_threshold > 0:
        floor = np.float32(noise_threshold) * pi.max()
        for k in range(pi.shape[0]):
            if pi[k] < floor:
                pi[k] = 0
        pm, pi = _compact_nonzero_by_mz(pm, pi, pi.shape[0])
    total = np.float32(0.0)
    for k in range(pi.shape[0]):
        total += pi[k]
    if total > 0:
        for k in range(pi.shape[0]):
            pi[k] = pi[k] / total
    if weighted and pi.shape[0] > 0:
        psum = np.float32(0.0)
        for k in range(pi.shape[0]):
            psum += pi[k]
        entropy = np.float32(0.0)
        for k in range(pi.shape[0]):
            x = pi[k] / psum
            entropy -= x * np.float32(math.log(x))
        if entropy < 3:
            weight = np.float32(0.25 + 0.25 * entropy)
            wsum = np.float32(0.0)
            for k in range(pi.shape[0]):
                pi[k] = np.float32(pi[k] ** weight)
                wsum += pi[k]
            if wsum > 0:
                inv = np.float32(1.0 / wsum)
                for k in range(pi.shape[0]):
                    pi[k] = pi[k] * inv
    return pm, pi


@njit(cache=True, parallel=True)
def prepare_entropy_peaks(offsets, mz, intensity, noise_threshold, merge_da, weighted):
    """Prepare every spectrum of a flat set; returns new (offsets, m/z float32, intensity float32)."""
    n = offsets.shape[0] - 1
    tmp_mz = np.empty(mz.shape[0], dtype=np.float32)
    tmp_int = np.empty(mz.shape[0], dtype=np.float32)
    counts = np.zeros(n, dtype=np.int64)
    for s in prange(n):
        a, b = offsets[s], offsets[s + 1]
        pm, pi = prepare_entropy_one(mz[a:b], intensity[a:b], noise_threshold, merge_da, weighted)
        counts[s] = pm.shape[0]
        tmp_mz[a:a + pm.shape[0]] = pm
        tmp_int[a:a + pm.shape[0]] = pi
    new_offsets = np.zeros(n + 1, dtype=np.int64)
    for s in range(n):
        new_offsets[s + 1] = new_offsets[s] + counts[s]
    out_mz = np.empty(new_offsets[n], dtype=np.float32)
    out_int = np.empty(new_offsets[n], dtype=np.float32)
    for s in prange(n):
        a = offsets[s]
        c = counts[s]
        out_mz[new_offsets[s]:new_offsets[s] + c] = tmp_mz[a:a + c]
        out_int[new_offsets[s]:new_offsets[s] + c] = tmp_int[a:a + c]
    return new_offsets, out_mz, out_int


@njit(cache=True, inline="always")
def _xlog2x(x):
    if x <= 0:
        return np.float32(0.0)
    return x * np.float32(math.log2(x))


@njit(cache=True, inline="always")
def _entropy_at(mz_a, int_a, a0, n_a, mz_b, int_b, b0, n_b, tolerance):
    """``entropy_pair`` on ``[a0:a0+n_a]`` and ``[b0:b0+n_b]`` of flat arrays (offsets, not slices: slicing a
    shared array in a parallel loop makes the threads fight over its reference count)."""
    tol = np.float32(tolerance)
    a = 0
    b = 0
    total = np.float32(0.0)
    matched = 0
    while a < n_a and b < n_b:
        diff = mz_a[a0 + a] - mz_b[b0 + b]
        if diff < -tol:
            a += 1
        elif diff > tol:
            b += 1
        else:
            x = int_a[a0 + a]
            y = int_b[b0 + b]
            total += _xlog2x(x + y) - _xlog2x(x) - _xlog2x(y)
            matched += 1
            a += 1
            b += 1
    total = total / np.float32(2.0)
    if total < 0:
        total = np.float32(0.0)
    elif total > 1:
        total = np.float32(1.0)
    return np.float64(total), matched


@njit(cache=True)
def entropy_pair(mz_a, int_a, mz_b, int_b, tolerance):
    """Entropy similarity of two prepared spectra (see ``prepare_entropy_one``) -> (score, matched peaks).

    Accumulated in float32 and clipped to [0, 1] like ms_entropy, so scores agree to float32 rounding.
    """
    return _entropy_at(mz_a, int_a, 0, mz_a.shape[0], mz_b, int_b, 0, mz_b.shape[0], tolerance)


@njit(cache=True, parallel=True)
def entropy_candidates(q_offsets, q_mz, q_int, l_offsets, l_mz, l_int, cand_offsets, cand_lib, tolerance):
    """Entropy similarity and matched peaks for every candidate pair (both sides prepared beforehand)."""
    if cand_offsets.shape[0] != q_offsets.shape[0]:
        raise ValueError("cand_offsets and q_offsets describe different numbers of queries")
    scores = np.zeros(cand_lib.shape[0], dtype=np.float64)
    matches = np.zeros(cand_lib.shape[0], dtype=np.int32)
    for q in prange(q_offsets.shape[0] - 1):
        a_q = q_offsets[q]
        n_q = q_offsets[q + 1] - a_q
        for c in range(cand_offsets[q], cand_offsets[q + 1]):
            r = cand_lib[c]
            s, m = _entropy_at(q_mz, q_int, a_q, n_q, l_mz, l_int, l_offsets[r], l_offsets[r + 1] - l_offsets[r],
                               tolerance)
            scores[c] = s
            matches[c] = m
    return scores, matches
