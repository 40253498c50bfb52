"""Cosine and modified cosine similarity: peak matching, greedy assignment, batched scoring of candidate pairs.

Spectra travel as flat arrays (see ms2study.kernels): concatenated peaks and an ``offsets`` array (spectrum
``i`` owns ``offsets[i]:offsets[i+1]``); candidate pairs are CSR over queries (``cand_offsets``, ``cand_lib``).
Compiled once per machine (``cache=True``); the batched kernel runs in parallel over blocks of equal pair counts.

* cosine greedy: peaks pair when ``|mz_ref - mz_query| <= tolerance``; a pair's weight is the product of
  ``mz**mz_power * intensity**intensity_power`` of its two peaks; pairs are taken greedily from the heaviest
  (equal weights: the pair found later in m/z order first), each peak used at most once; the sum is divided
  by the two spectra's norms. Same scores and matched-peak counts as matchms ``CosineGreedy``.
* modified cosine: as cosine, but peaks also pair after shifting the query by the precursor difference
  ``precursor_ref - precursor_query`` (unshifted pairs listed first); when that difference is within the
  tolerance it is the plain cosine. Same as matchms ``ModifiedCosineGreedy``.

Checked numerically against matchms in tests/test_scoring.py. Pure array code: imports numpy and numba only.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

# ------------------------------------------------------------------------------------- cosine greedy
#
# One pair is scored over scratch arrays owned by the caller (no allocation per pair): collect the peak
# pairs within tolerance with a two-pointer window scan, then split them into groups of pairs that share
# peaks; a pair alone in its group is taken at once, and only groups are sorted for the greedy step. On
# library candidates (often the same compound) about a third of the collected pairs are alone, and the
# groups are mostly of 2-4 pairs. Peak weights and norms come precomputed per spectrum. Profiled on
# MassBank 10 ppm candidates (154k spectrum pairs, 2.5 M peak pairs, one thread, ~75 ms): the window scan
# and grouping take a bit over half, sorting the long groups of dense spectra (hundreds of peaks within
# 0.1 Da of each other) about a quarter, the small groups the rest.


@njit(cache=True, inline="always")
def _collect_into(mz_r, w_r, a_r, wa_r, n_r, mz_q, w_q, a_q, wa_q, n_q, tolerance, shift, pi, pj, pw, n):
    """Write the peak pairs within ``tolerance`` (query shifted by ``shift``) from position n.

    The reference spectrum is ``mz_r[a_r:a_r+n_r]`` with weights ``w_r[wa_r:wa_r+n_r]`` (query likewise):
    offsets rather than slices, because every slice of a shared array bumps its reference count, an atomic
    operation that the threads fight over (it made two threads slower than one). Returns the new count,
    which may exceed the scratch capacity: pairs past it are counted, not written, so the caller can grow
    the scratch and collect again.
    """
    cap = pw.shape[0]
    lowest = 0
    for i in range(n_r):
        low = mz_r[a_r + i] - tolerance
        high = mz_r[a_r + i] + tolerance
        # Query peaks below this window are below every later one too (both spectra ascend in m/z).
        while lowest < n_q and mz_q[a_q + lowest] + shift < low:
            lowest += 1
        if lowest == n_q:
            break
        j = lowest
        while j < n_q and mz_q[a_q + j] + shift <= high:
            if n < cap:
                pi[n] = i
                pj[n] = j
                pw[n] = w_r[wa_r + i] * w_q[wa_q + j]
            n += 1
            j += 1
    return n


@njit(cache=True, inline="always")
def _greedy_subset(order, m, pi, pj, pw, mark_r, mark_q):
    """Greedy assignment over the pairs ``order[:m]`` (positions in collection order, ascending).

    Order is matchms's: heaviest first, equal weights the later-collected pair first. A peak is free while
    its mark is >= 0; taking a pair marks both peaks -1.
    """
    if m > 32:
        # Long conflict chains are rare (dense spectra, wide tolerance): a stable sort read backwards gives
        # the same order as the insertion sort below.
        sub = np.empty(m, dtype=np.float64)
        for t in range(m):
            sub[t] = pw[order[t]]
        picked = order[:m][np.argsort(sub, kind="mergesort")[::-1]]
        for t in range(m):
            order[t] = picked[t]
    else:
        # Insertion by (weight, position) descending; positions arrive ascending, so a pair goes in front
        # of every earlier pair of equal weight.
        for t in range(1, m):
            cur = order[t]
            w = pw[cur]
            u = t - 1
            while u >= 0 and pw[order[u]] <= w:
                order[u + 1] = order[u]
                u -= 1
            order[u + 1] = cur
    total = 0.0
    matched = 0
    for t in range(m):
        p = order[t]
        if mark_r[pi[p]] >= 0 and mark_q[pj[p]] >= 0:
            total += pw[p]
            matched += 1
            mark_r[pi[p]] = -1
            mark_q[pj[p]] = -1
    return total, matched


@njit(cache=True, inline="always")
def _greedy_total(pi, pj, pw, n, order, mark_r, mark_q, single_sweep):
    """(sum of weights, matched pairs) of the greedy assignment over n collected pairs.

    The greedy result on all pairs equals the union of greedy results on the connected groups of pairs
    (pairs sharing a peak, transitively), since a pair's fate depends only on pairs that share its peaks.
    With one sweep (plain cosine) the groups are runs in collection order: windows move up with the
    reference peak, so a pair joins the previous one when it has the same reference peak or a query peak
    at or below the last one collected. Single pairs are taken at once, only runs are sorted. (Taking
    locally dominant pairs in rounds instead of sorting long runs was tried: no faster.) With the
    shifted sweep added (modified cosine), the pairs whose two peaks occur in no other pair are taken and
    the rest are assigned together. ``mark_r``/``mark_q`` are zero on entry and zero again on return.
    """
    total = 0.0
    matched = 0
    if single_sweep:
        k = 0
        while k < n:
            e = k + 1
            while e < n and (pi[e] == pi[e - 1] or pj[e] <= pj[e - 1]):
                e += 1
            if e == k + 1:
                total += pw[k]
                matched += 1
            elif e == k + 2:
                # Two pairs on a shared peak (the most common group): the heavier wins, the later on a tie.
                total += max(pw[k + 1], pw[k])
                matched += 1
            else:
                for t in range(e - k):
                    order[t] = k + t
                t_sum, t_matched = _greedy_subset(order, e - k, pi, pj, pw, mark_r, mark_q)
                total += t_sum
                matched += t_matched
                for t in range(k, e):
                    mark_r[pi[t]] = 0
                    mark_q[pj[t]] = 0
            k = e
        return total, matched
    for k in range(n):
        mark_r[pi[k]] += 1
        mark_q[pj[k]] += 1
    n_conflict = 0
    for k in range(n):
        if mark_r[pi[k]] == 1 and mark_q[pj[k]] == 1:
            total += pw[k]
            matched += 1
        else:
            order[n_conflict] = k
            n_conflict += 1
    if n_conflict > 0:
        t_sum, t_matched = _greedy_subset(order, n_conflict, pi, pj, pw, mark_r, mark_q)
        total += t_sum
        matched += t_matched
    for k in range(n):
        mark_r[pi[k]] = 0
        mark_q[pj[k]] = 0
    return total, matched


@njit(cache=True, inline="always")
def _pair_sum(mz_r, w_r, a_r, wa_r, n_r, mz_q, w_q, a_q, wa_q, n_q, tolerance, shift, use_shift,
              pi, pj, pw, order, cnt_r, cnt_q):
    """(weight sum, matched pairs, pairs collected) of one pair over caller-owned scratch.

    Spectra as in ``_collect_into``. When the pairs collected exceed the scratch capacity nothing is
    scored: the caller grows the scratch to at least that size and calls again.
    """
    n = _collect_into(mz_r, w_r, a_r, wa_r, n_r, mz_q, w_q, a_q, wa_q, n_q, tolerance, 0.0, pi, pj, pw, 0)
    if use_shift:
        n = _collect_into(mz_r, w_r, a_r, wa_r, n_r, mz_q, w_q, a_q, wa_q, n_q, tolerance, shift, pi, pj, pw, n)
    if n == 0 or n > pw.shape[0]:
        return 0.0, 0, n
    total, matched = _greedy_total(pi, pj, pw, n, order, cnt_r, cnt_q, not use_shift)
    return total, matched, n


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
    w_r, norm_r = _power_weights(mz_r, int_r, mz_power, intensity_power)
    w_q, norm_q = _power_weights(mz_q, int_q, mz_power, intensity_power)
    use_shift = modified and abs(precursor_shift) > tolerance
    cnt_r = np.zeros(mz_r.shape[0], dtype=np.int32)
    cnt_q = np.zeros(mz_q.shape[0], dtype=np.int32)
    # A first sweep with no room only counts the peak pairs, so the scratch gets exactly their number.
    none_i = np.empty(0, dtype=np.int32)
    n_r, n_q = mz_r.shape[0], mz_q.shape[0]
    _, _, n = _pair_sum(mz_r, w_r, 0, 0, n_r, mz_q, w_q, 0, 0, n_q, tolerance, precursor_shift, use_shift,
                        none_i, none_i, np.empty(0, dtype=np.float64), none_i, cnt_r, cnt_q)
    if n == 0:
        return 0.0, 0
    total, matched, _ = _pair_sum(
        mz_r, w_r, 0, 0, n_r, mz_q, w_q, 0, 0, n_q, tolerance, precursor_shift, use_shift,
        np.empty(n, dtype=np.int32), np.empty(n, dtype=np.int32), np.empty(n, dtype=np.float64),
        np.empty(n, dtype=np.int32), cnt_r, cnt_q,
    )
    if matched == 0:
        return 0.0, 0
    return total / (norm_r * norm_q), matched


@njit(cache=True)
def power_weights_rows(offsets, mz, intensity, rows, mz_power, intensity_power):
    """Peak weights ``mz**mz_power * intensity**intensity_power`` and their L2 norm for the spectra ``rows``.

    Returns (w_offsets, weights, norms), compact over ``rows`` (row ``rows[k]`` owns
    ``weights[w_offsets[k]:w_offsets[k+1]]``), summed in peak order as ``cosine_pair`` does, so both give
    bit-identical scores. Computed once per spectrum instead of once per pair. Serial on purpose: it takes
    a few ms, less than waking the worker threads on a busy machine.
    """
    n = rows.shape[0]
    w_offsets = np.zeros(n + 1, dtype=np.int64)
    for k in range(n):
        w_offsets[k + 1] = w_offsets[k] + offsets[rows[k] + 1] - offsets[rows[k]]
    weights = np.empty(w_offsets[n], dtype=np.float64)
    norms = np.empty(n, dtype=np.float64)
    # The default powers (0, 1) give the intensity itself (as pow would, exactly); skipping pow is cheaper.
    plain = mz_power == 0.0 and intensity_power == 1.0
    for k in range(n):
        a = offsets[rows[k]]
        o = w_offsets[k]
        norm2 = 0.0
        for t in range(w_offsets[k + 1] - o):
            if plain:
                w = np.float64(intensity[a + t])
            else:
                w = (mz[a + t] ** mz_power) * (np.float64(intensity[a + t]) ** intensity_power)
            weights[o + t] = w
            norm2 += w * w
        norms[k] = math.sqrt(norm2)
    return w_offsets, weights, norms


@njit(cache=True)
def _candidate_rows(n_lib, cand_lib):
    """Library rows that occur among the candidates (ascending) and each row's slot in that list."""
    slot = np.full(n_lib, -1, dtype=np.int64)
    n_rows = 0
    for c in range(cand_lib.shape[0]):
        if slot[cand_lib[c]] < 0:
            slot[cand_lib[c]] = 0
            n_rows += 1
    rows = np.empty(n_rows, dtype=np.int64)
    k = 0
    for r in range(n_lib):
        if slot[r] == 0:
            slot[r] = k
            rows[k] = r
            k += 1
    return rows, slot


@njit(cache=True, inline="always")
def _score_pair_range(
    start, stop, scores, matches,
    q_offsets, q_mz, q_precursor, qw_off, qw, qnorm,
    l_offsets, l_mz, l_precursor, rows, slot, lw_off, lw, lnorm,
    cand_offsets, cand_lib, tolerance, modified, max_r, max_q,
):
    """Score the candidate pairs ``start:stop`` into ``scores``/``matches`` with one set of scratch arrays."""
    cap = 4 * max(max_r, max_q)
    pi = np.empty(cap, dtype=np.int32)
    pj = np.empty(cap, dtype=np.int32)
    pw = np.empty(cap, dtype=np.float64)
    order = np.empty(cap, dtype=np.int32)
    cnt_r = np.zeros(max_r, dtype=np.int32)
    cnt_q = np.zeros(max_q, dtype=np.int32)
    q = np.searchsorted(cand_offsets, start, side="right") - 1
    for c in range(start, stop):
        while cand_offsets[q + 1] <= c:
            q += 1
        s = slot[cand_lib[c]]
        if qw_off[q + 1] == qw_off[q] or lw_off[s + 1] == lw_off[s]:
            continue
        a_r = l_offsets[rows[s]]
        n_r = lw_off[s + 1] - lw_off[s]
        a_q = q_offsets[q]
        n_q = qw_off[q + 1] - qw_off[q]
        shift = l_precursor[rows[s]] - q_precursor[q]
        use_shift = modified and abs(shift) > tolerance
        total, m, n = _pair_sum(l_mz, lw, a_r, lw_off[s], n_r, q_mz, qw, a_q, qw_off[q], n_q, tolerance, shift,
                                use_shift, pi, pj, pw, order, cnt_r, cnt_q)
        if n > cap:
            cap = 2 * n
            pi = np.empty(cap, dtype=np.int32)
            pj = np.empty(cap, dtype=np.int32)
            pw = np.empty(cap, dtype=np.float64)
            order = np.empty(cap, dtype=np.int32)
            total, m, n = _pair_sum(l_mz, lw, a_r, lw_off[s], n_r, q_mz, qw, a_q, qw_off[q], n_q, tolerance,
                                    shift, use_shift, pi, pj, pw, order, cnt_r, cnt_q)
        if m > 0:
            scores[c] = total / (lnorm[s] * qnorm[q])
            matches[c] = m


_PAIRS_PER_BLOCK = 256


@njit(cache=True, parallel=True)
def _cosine_parallel(
    q_offsets, q_mz, q_precursor, qw_off, qw, qnorm,
    l_offsets, l_mz, l_precursor, rows, slot, lw_off, lw, lnorm,
    cand_offsets, cand_lib, tolerance, modified, max_r, max_q,
):
    n_pairs = cand_lib.shape[0]
    scores = np.zeros(n_pairs, dtype=np.float64)
    matches = np.zeros(n_pairs, dtype=np.int32)
    # Blocks of equal pair counts balance the threads whatever the number of candidates per query.
    n_blocks = (n_pairs + _PAIRS_PER_BLOCK - 1) // _PAIRS_PER_BLOCK
    for blk in prange(n_blocks):
        _score_pair_range(
            blk * _PAIRS_PER_BLOCK, min(n_pairs, (blk + 1) * _PAIRS_PER_BLOCK), scores, matches,
            q_offsets, q_mz, q_precursor, qw_off, qw, qnorm,
            l_offsets, l_mz, l_precursor, rows, slot, lw_off, lw, lnorm,
            cand_offsets, cand_lib, tolerance, modified, max_r, max_q,
        )
    return scores, matches


@njit(cache=True)
def _cosine_serial(
    q_offsets, q_mz, q_precursor, qw_off, qw, qnorm,
    l_offsets, l_mz, l_precursor, rows, slot, lw_off, lw, lnorm,
    cand_offsets, cand_lib, tolerance, modified, max_r, max_q,
):
    n_pairs = cand_lib.shape[0]
    scores = np.zeros(n_pairs, dtype=np.float64)
    matches = np.zeros(n_pairs, dtype=np.int32)
    _score_pair_range(
        0, n_pairs, scores, matches,
        q_offsets, q_mz, q_precursor, qw_off, qw, qnorm,
        l_offsets, l_mz, l_precursor, rows, slot, lw_off, lw, lnorm,
        cand_offsets, cand_lib, tolerance, modified, max_r, max_q,
    )
    return scores, matches


# Below this many pairs one thread finishes before a parallel region pays for itself: waking the workers
# and waiting at the closing barrier costs a scheduler time slice (several ms) on a busy machine.
PARALLEL_MIN_PAIRS = 20_000


def cosine_candidates(
    q_offsets: np.ndarray, q_mz: np.ndarray, q_int: np.ndarray, q_precursor: np.ndarray,
    l_offsets: np.ndarray, l_mz: np.ndarray, l_int: np.ndarray, l_precursor: np.ndarray,
    cand_offsets: np.ndarray, cand_lib: np.ndarray,
    tolerance: float, mz_power: float, intensity_power: float, modified: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """Cosine (or modified cosine) score and matched peaks for every candidate pair, library as reference.

    Bit-identical to ``cosine_pair`` on each pair. Peak weights and norms are computed once per spectrum
    (for the library, only the rows that are candidates); the pairs are scored in blocks of equal size, so
    the threads share the work evenly however the candidates spread over the queries, in one parallel region
    (one thread below ``PARALLEL_MIN_PAIRS`` pairs). Dynamic scheduling through ``numba.parallel_chunksize``
    was tried and cost more than it balanced.
    """
    if cand_offsets.shape[0] != q_offsets.shape[0]:
        raise ValueError("cand_offsets and q_offsets describe different numbers of queries")
    n_pairs = cand_lib.shape[0]
    if n_pairs == 0:
        return np.zeros(0, dtype=np.float64), np.zeros(0, dtype=np.int32)
    cand_lib = np.ascontiguousarray(cand_lib, dtype=np.int64)
    rows, slot = _candidate_rows(l_offsets.shape[0] - 1, cand_lib)
    lw_off, lw, lnorm = power_weights_rows(l_offsets, l_mz, l_int, rows, mz_power, intensity_power)
    nq = q_offsets.shape[0] - 1
    qw_off, qw, qnorm = power_weights_rows(q_offsets, q_mz, q_int, np.arange(nq), mz_power, intensity_power)
    max_r = max(1, int(np.diff(lw_off).max()))
    max_q = max(1, int(np.diff(qw_off).max()))
    kernel = _cosine_parallel if n_pairs >= PARALLEL_MIN_PAIRS else _cosine_serial
    return kernel(
        q_offsets, q_mz, q_precursor, qw_off, qw, qnorm,
        l_offsets, l_mz, l_precursor, rows, slot, lw_off, lw, lnorm,
        cand_offsets, cand_lib, float(tolerance), bool(modified), max_r, max_q,
    )
