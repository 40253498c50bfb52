"""Numba kernels for spectrum-to-library scoring, all in one place.

Spectra travel as flat arrays: concatenated peaks (m/z float64, intensity float32) and an ``offsets`` array
(spectrum ``i`` owns ``offsets[i]:offsets[i+1]``). Candidate pairs are a CSR structure over queries
(``cand_offsets``, ``cand_lib``): query ``q`` is compared with library spectra
``cand_lib[cand_offsets[q]:cand_offsets[q+1]]``. Every kernel runs in parallel over queries (``prange``) and
is compiled once per machine (``cache=True``).

Scores and the behaviour they reproduce (checked numerically in tests/test_scoring.py):

* cosine greedy: peaks pair when ``|mz_ref - mz_query| <= tolerance``; a pair's weight is the product of
  ``mz**mz_power * intensity**intensity_power`` of its two peaks; pairs are taken greedily from the heaviest
  (equal weights: the pair found later in m/z order first), each peak used at most once; the sum is divided
  by the two spectra's norms. Same scores and matched-peak counts as matchms ``CosineGreedy``.
* modified cosine: as cosine, but peaks also pair after shifting the query by the precursor difference
  ``precursor_ref - precursor_query`` (unshifted pairs listed first); when that difference is within the
  tolerance it is the plain cosine. Same as matchms ``ModifiedCosineGreedy``.
* entropy similarity: both spectra are prepared as ms_entropy's ``clean_spectrum`` does (centroiding peaks
  closer than ``2 * tolerance``, noise floor 1 % of the base peak, intensities summing to 1), then weighted
  by spectral entropy (``I ** (0.25 + 0.25 * S)`` when ``S < 3``, renormalised); the similarity is
  ``1/2 * sum(f(a + b) - f(a) - f(b))``, ``f(x) = x log2 x``, over peaks paired in one m/z-ordered sweep. Same
  as ms_entropy ``calculate_entropy_similarity``. Preparation is done once per spectrum
  (``prepare_entropy_peaks``), never per pair.
* embedding cosine: dot products of L2-normalised embeddings.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

# ------------------------------------------------------------------------------------- cosine greedy


@njit(cache=True, inline="always")
def _sort_pairs_desc(weights: np.ndarray, n: int) -> np.ndarray:
    """Order of pairs by weight, heaviest first; among equal weights the later-found pair first.

    (That is the order of a stable ascending sort read backwards, which is what matchms uses.)
    """
    if n > 48:
        return np.argsort(weights[:n], kind="mergesort")[::-1].copy()
    order = np.empty(n, dtype=np.int64)
    for i in range(n):
        order[i] = i
    # Insertion sort descending by (weight, index): cheap for the few pairs two spectra share.
    for i in range(1, n):
        cur = order[i]
        w = weights[cur]
        j = i - 1
        while j >= 0 and (weights[order[j]] < w or (weights[order[j]] == w and order[j] < cur)):
            order[j + 1] = order[j]
            j -= 1
        order[j + 1] = cur
    return order


@njit(cache=True)
def _collect(mz_r, pw_r, mz_q, pw_q, tolerance, shift, pi, pj, pw, n):
    """Append the pairs of peaks within ``tolerance`` (query shifted by ``shift``) from position n."""
    lowest = 0
    for i in range(mz_r.shape[0]):
        low = mz_r[i] - tolerance
        high = mz_r[i] + tolerance
        for j in range(lowest, mz_q.shape[0]):
            mz2 = mz_q[j] + shift
            if mz2 > high:
                break
            if mz2 < low:
                lowest = j + 1
            else:
                pi[n] = i
                pj[n] = j
                pw[n] = pw_r[i] * pw_q[j]
                n += 1
    return n


@njit(cache=True)
def _count(mz_r, mz_q, tolerance, shift):
    lowest = 0
    n = 0
    for i in range(mz_r.shape[0]):
        low = mz_r[i] - tolerance
        high = mz_r[i] + tolerance
        for j in range(lowest, mz_q.shape[0]):
            mz2 = mz_q[j] + shift
            if mz2 > high:
                break
            if mz2 < low:
                lowest = j + 1
            else:
                n += 1
    return n


@njit(cache=True)
def _power_weights(mz, intensity, mz_power, intensity_power):
    out = np.empty(mz.shape[0], dtype=np.float64)
    norm2 = 0.0
    for k in range(mz.shape[0]):
        w = (mz[k] ** mz_power) * (np.float64(intensity[k]) ** intensity_power)
        out[k] = w
        norm2 += w * w
    return out, math.sqrt(norm2)


@njit(cache=True)
def cosine_pair(mz_r, int_r, mz_q, int_q, tolerance, mz_power, intensity_power, precursor_shift, modified):
    """(score, matched peaks) of one reference/query pair; ``modified`` adds the precursor-shifted pairs."""
    if mz_r.shape[0] == 0 or mz_q.shape[0] == 0:
        return 0.0, 0
    pw_r, norm_r = _power_weights(mz_r, int_r, mz_power, intensity_power)
    pw_q, norm_q = _power_weights(mz_q, int_q, mz_power, intensity_power)
    use_shift = modified and abs(precursor_shift) > tolerance
    n_max = _count(mz_r, mz_q, tolerance, 0.0)
    if use_shift:
        n_max += _count(mz_r, mz_q, tolerance, precursor_shift)
    if n_max == 0:
        return 0.0, 0
    pi = np.empty(n_max, dtype=np.int64)
    pj = np.empty(n_max, dtype=np.int64)
    pw = np.empty(n_max, dtype=np.float64)
    n = _collect(mz_r, pw_r, mz_q, pw_q, tolerance, 0.0, pi, pj, pw, 0)
    if use_shift:
        n = _collect(mz_r, pw_r, mz_q, pw_q, tolerance, precursor_shift, pi, pj, pw, n)
    order = _sort_pairs_desc(pw, n)
    used_r = np.zeros(mz_r.shape[0], dtype=np.bool_)
    used_q = np.zeros(mz_q.shape[0], dtype=np.bool_)
    total = 0.0
    matched = 0
    for k in range(n):
        p = order[k]
        if not used_r[pi[p]] and not used_q[pj[p]]:
            total += pw[p]
            used_r[pi[p]] = True
            used_q[pj[p]] = True
            matched += 1
    return total / (norm_r * norm_q), matched


@njit(cache=True, parallel=True)
def cosine_candidates(
    q_offsets, q_mz, q_int, q_precursor,
    l_offsets, l_mz, l_int, l_precursor,
    cand_offsets, cand_lib,
    tolerance, mz_power, intensity_power, modified,
):
    """Cosine (or modified cosine) score and matched peaks for every candidate pair, library as reference."""
    if cand_offsets.shape[0] != q_offsets.shape[0]:
        raise ValueError("cand_offsets and q_offsets describe different numbers of queries")
    n_pairs = cand_lib.shape[0]
    scores = np.zeros(n_pairs, dtype=np.float64)
    matches = np.zeros(n_pairs, dtype=np.int32)
    for q in prange(q_offsets.shape[0] - 1):
        mz_q = q_mz[q_offsets[q]:q_offsets[q + 1]]
        in_q = q_int[q_offsets[q]:q_offsets[q + 1]]
        for c in range(cand_offsets[q], cand_offsets[q + 1]):
            r = cand_lib[c]
            s, m = cosine_pair(
                l_mz[l_offsets[r]:l_offsets[r + 1]], l_int[l_offsets[r]:l_offsets[r + 1]], mz_q, in_q,
                tolerance, mz_power, intensity_power, l_precursor[r] - q_precursor[q], modified,
            )
            scores[c] = s
            matches[c] = m
    return scores, matches


# ---------------------------------------------------------------------------------- entropy similarity


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


@njit(cache=True)
def entropy_pair(mz_a, int_a, mz_b, int_b, tolerance):
    """Entropy similarity of two prepared spectra (see ``prepare_entropy_one``) -> (score, matched peaks).

    Accumulated in float32 and clipped to [0, 1] like ms_entropy, so scores agree to float32 rounding.
    """
    tol = np.float32(tolerance)
    a = 0
    b = 0
    total = np.float32(0.0)
    matched = 0
    while a < mz_a.shape[0] and b < mz_b.shape[0]:
        diff = mz_a[a] - mz_b[b]
        if diff < -tol:
            a += 1
        elif diff > tol:
            b += 1
        else:
            x = int_a[a]
            y = int_b[b]
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


@njit(cache=True, parallel=True)
def entropy_candidates(q_offsets, q_mz, q_int, l_offsets, l_mz, l_int, cand_offsets, cand_lib, tolerance):
    """Entropy similarity and matched peaks for every candidate pair (both sides prepared beforehand)."""
    if cand_offsets.shape[0] != q_offsets.shape[0]:
        raise ValueError("cand_offsets and q_offsets describe different numbers of queries")
    scores = np.zeros(cand_lib.shape[0], dtype=np.float64)
    matches = np.zeros(cand_lib.shape[0], dtype=np.int32)
    for q in prange(q_offsets.shape[0] - 1):
        mz_q = q_mz[q_offsets[q]:q_offsets[q + 1]]
        in_q = q_int[q_offsets[q]:q_offsets[q + 1]]
        for c in range(cand_offsets[q], cand_offsets[q + 1]):
            r = cand_lib[c]
            a, b = l_offsets[r], l_offsets[r + 1]
            s, m = entropy_pair(mz_q, in_q, l_mz[a:b], l_int[a:b], tolerance)
            scores[c] = s
            matches[c] = m
    return scores, matches


# ------------------------------------------------------------------------------------------- decoys


@njit(cache=True)
def random_fragment_decoys(offsets, intensity, precursor_mz, pool_mz, margin_da, seed):
    """Decoy peaks per spectrum: the spectrum's own intensities on fragment m/z drawn at random from
    ``pool_mz`` (sorted) below its precursor minus ``margin_da``; returned sorted by m/z per spectrum."""
    np.random.seed(seed)
    n = offsets.shape[0] - 1
    out_mz = np.empty(intensity.shape[0], dtype=np.float64)
    out_int = np.empty(intensity.shape[0], dtype=np.float32)
    for s in range(n):
        a = offsets[s]
        b = offsets[s + 1]
        limit = np.searchsorted(pool_mz, precursor_mz[s] - margin_da)
        seg = np.empty(b - a, dtype=np.float64)
        for k in range(b - a):
            seg[k] = pool_mz[np.random.randint(0, limit)] if limit > 0 else 0.0
        order = np.argsort(seg, kind="mergesort")
        for k in range(b - a):
            out_mz[a + k] = seg[order[k]]
            out_int[a + k] = intensity[a + order[k]]
    return out_mz, out_int


# --------------------------------------------------------------------------------------- embeddings


@njit(cache=True, parallel=True)
def embedding_candidates(q_emb, l_emb, cand_offsets, cand_lib):
    """Cosine of L2-normalised embeddings per candidate pair (NaN where a query has no embedding)."""
    if cand_offsets.shape[0] != q_emb.shape[0] + 1:
        raise ValueError("cand_offsets and q_emb describe different numbers of queries")
    scores = np.full(cand_lib.shape[0], np.nan, dtype=np.float64)
    d = q_emb.shape[1]
    for q in prange(q_emb.shape[0]):
        if not np.isfinite(q_emb[q, 0]):
            continue
        for c in range(cand_offsets[q], cand_offsets[q + 1]):
            r = cand_lib[c]
            acc = 0.0
            for k in range(d):
                acc += np.float64(q_emb[q, k]) * np.float64(l_emb[r, k])
            scores[c] = acc
    return scores


def top_k_by_embedding(
    q_emb: np.ndarray, l_emb: np.ndarray, allowed: np.ndarray, top_k: int, chunk_rows: int
) -> tuple[np.ndarray, np.ndarray]:
    """Top-k library rows per query by embedding cosine over ``allowed`` library rows (analogue search).

    The library is scanned in chunks of ``chunk_rows`` rows so memory stays at
    ``n_queries * (chunk_rows + top_k)`` floats whatever the library size. Returns (cand_offsets, cand_lib).
    """
    nq = q_emb.shape[0]
    k = max(1, int(top_k))
    best_s = np.full((nq, k), -np.inf, dtype=np.float32)
    best_i = np.full((nq, k), -1, dtype=np.int64)
    rows = np.flatnonzero(allowed)
    q = np.nan_to_num(np.asarray(q_emb, dtype=np.float32), nan=0.0)
    for start in range(0, rows.size, max(1, chunk_rows)):
        idx = rows[start:start + chunk_rows]
        sims = q @ np.asarray(l_emb[idx], dtype=np.float32).T
        all_s = np.concatenate([best_s, sims], axis=1)
        all_i = np.concatenate([best_i, np.broadcast_to(idx, sims.shape)], axis=1)
        if all_s.shape[1] > k:
            part = np.argpartition(-all_s, k - 1, axis=1)[:, :k]
        else:
            part = np.tile(np.arange(all_s.shape[1]), (nq, 1))
        best_s = np.take_along_axis(all_s, part, axis=1)
        best_i = np.take_along_axis(all_i, part, axis=1)
    valid = best_i >= 0
    counts = valid.sum(axis=1)
    offsets = np.zeros(nq + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    return offsets, best_i[valid].astype(np.int64)
