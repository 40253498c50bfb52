"""Target-decoy confidence for library identifications: decoy spectra, competition and q-values.

Decoys are random-fragment spectra (the "naive" decoys of Scheubert et al., Nat. Commun. 2017): decoy ``i``
keeps library spectrum ``i``'s precursor m/z, ion mode, peak count and intensity profile, but its fragment
m/z are drawn at random (seeded) from the pooled fragment m/z of all library spectra of the same ion mode
lying below its precursor (minus the cleaning margin). Why this kind: a decoy then has exactly the
candidate window of its target (same precursor, so target and decoy compete for the same queries), realistic
fragment masses and intensity distribution (so chance matches score like chance matches against real
spectra), yet it cannot be a true identification. Precursor-swapped decoys were rejected because a swapped
spectrum keeps real fragmentation chemistry, so close analogues would score as true hits and inflate the
decoy count; fragment-shifted decoys that move all peaks by one constant keep the neutral-loss pattern,
which the modified cosine would still match.

Competition (Elias & Gygi 2007): per query the best target and the best decoy candidate are compared on the
spectral combined score (the embedding term is left out because decoys have no embeddings); the winner is
kept. Walking down the winners by score, FDR = decoy wins / target wins; the q-value of a score is the
smallest FDR at that score or below. Every target row then gets the q-value of its score.
The decoy spectra themselves are built (once per library) by ``ms2study.library.prepared.decoy_peaks``.
"""

from __future__ import annotations

import numpy as np


def segment_max(values: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Maximum of ``values`` within each CSR segment (NaN for empty segments)."""
    out = np.full(offsets.size - 1, np.nan)
    nonempty = np.diff(offsets) > 0
    if values.size and nonempty.any():
        out[nonempty] = np.maximum.reduceat(values, offsets[:-1][nonempty])
    return out


def competition_q_values(target_best: np.ndarray, decoy_best: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Target-decoy competition -> (winner scores descending, q-value at each of them).

    ``target_best`` / ``decoy_best``: per query best score (NaN when none). Ties go to the decoy (conservative).
    """
    t = np.nan_to_num(np.asarray(target_best, dtype=np.float64), nan=-np.inf)
    d = np.nan_to_num(np.asarray(decoy_best, dtype=np.float64), nan=-np.inf)
    has = np.isfinite(t) | np.isfinite(d)
    win = np.maximum(t, d)[has]
    is_decoy = (d >= t)[has]
    order = np.argsort(-win, kind="stable")
    win, is_decoy = win[order], is_decoy[order]
    n_decoy = np.cumsum(is_decoy)
    n_target = np.cumsum(~is_decoy)
    fdr = np.minimum(n_decoy / np.maximum(n_target, 1), 1.0)
    # Winners with equal scores share one threshold: each takes the FDR after the last of them.
    if win.size:
        ends = np.flatnonzero(np.r_[win[1:] != win[:-1], True])
        fdr = fdr[ends[np.searchsorted(ends, np.arange(win.size))]]
    q = np.minimum.accumulate(fdr[::-1])[::-1]
    return win, q


def q_value_of(scores: np.ndarray, winners: np.ndarray, q: np.ndarray) -> np.ndarray:
    """q-value of each score: the q-value at the lowest winner score that is still >= it."""
    scores = np.asarray(scores, dtype=np.float64)
    if winners.size == 0:
        return np.full(scores.shape, np.nan)
    # winners descending: count how many winners score >= s; the q-value there (at least the first).
    k = np.searchsorted(-winners, -scores, side="right")
    return q[np.clip(k - 1, 0, winners.size - 1)]
