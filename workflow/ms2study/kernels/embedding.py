"""Embedding similarity: cosine of L2-normalised spectrum embeddings per candidate pair, and top-k search.

Spectra travel as flat arrays (see ms2study.kernels): concatenated peaks and an ``offsets`` array (spectrum
``i`` owns ``offsets[i]:offsets[i+1]``); candidate pairs are CSR over queries (``cand_offsets``, ``cand_lib``).
``embedding_candidates`` is a parallel numba kernel (``cache=True``) scoring given candidate pairs;
``top_k_by_embedding`` is plain numpy, a chunked scan of the library for the analogue search's candidates.
Pure array code: imports numpy and numba only.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange


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
