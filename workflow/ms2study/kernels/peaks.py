"""Peak-level generation kernels: random-fragment decoy spectra for target-decoy competition.

Spectra travel as flat arrays (see ms2study.kernels): concatenated peaks and an ``offsets`` array (spectrum
``i`` owns ``offsets[i]:offsets[i+1]``); candidate pairs are CSR over queries (``cand_offsets``, ``cand_lib``).
``random_fragment_decoys`` keeps each spectrum's intensities and draws its fragment m/z at random from a pool
(the decoy policy that uses it lives in ms2study.identification.decoys). Compiled once per machine
(``cache=True``). Pure array code: imports numpy and numba only.
"""

from __future__ import annotations

import numpy as np
from numba import njit


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
