"""Training hits of the level-2 model (``ms2study.identification.structure_model``) from the calibration's
searches of the library against itself (``ms2study.identification.calibration``). Imports numpy only, and the
identification modules it names."""

from __future__ import annotations

import numpy as np

from ms2study.identification import confidence, structure_model


def level2_training(q_of: np.ndarray, cand: np.ndarray, key: np.ndarray, scores: dict[str, np.ndarray],
                    structure: np.ndarray, formula: np.ndarray, rows: np.ndarray, query_peaks: np.ndarray,
                    separability: dict, blocks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Training hits of the level-2 model from the calibration searches: (features, right).

    Each search gives its rank-1 hit twice: with the query's other spectra among the candidates (kept where its
    structure is there; right unless another structure wins) and with its structure removed (always wrong, as
    for a compound absent from the library: its structure is then also left out of the isomer counts and of the
    separability). Features as ``structure_model.rank1_features``; separability only for structures with an
    InChIKey (as annotate looks it up). ``key``: the ranking score, -inf for candidates annotate would drop
    (at or below ``min_score``); ``scores`` holds ``matched_peaks`` per pair: a rank-1 hit sharing fewer than
    ``structure_model.LEVEL2_MIN_MATCHED_PEAKS`` is left out. Returns features of shape (number of hits,
    len(FEATURES)) and right (bool).
    """
    n = rows.size
    q_struct, q_formula = structure[rows], formula[rows]
    n_struct = structure.max(initial=-1) + 1
    best = np.full(n_struct, np.nan)
    partner = np.full(n_struct, -2, dtype=np.int64)
    second = np.full(n_struct, np.nan)
    s_idx = np.asarray(separability["struct"], dtype=np.int64)
    best[s_idx] = separability["best"]
    partner[s_idx] = separability["best_partner"]
    second[s_idx] = separability["second"]
    no_key = np.asarray([len(b) != 14 for b in blocks])
    c_s, c_f = structure[cand], formula[cand]
    others = structure_model.other_formula_structures(structure, formula, c_f)
    out_f, out_y = [], []
    for removed in (False, True):
        sel = (c_s != q_struct[q_of]) if removed else np.ones(q_of.size, dtype=bool)
        qo, cs, cr = q_of[sel], c_s[sel], cand[sel]
        same_formula = (c_f[sel] == q_formula[qo]) & (q_formula[qo] >= 0)
        k = others[sel] - (same_formula if removed else 0)
        sep = best[cs]
        if removed:
            sep = np.where(partner[cs] == q_struct[qo], second[cs], sep)
        sep = np.where(no_key[cr], np.nan, sep)
        n_cand = confidence.distinct_per_query(qo, cs, n)
        feats, top = structure_model.rank1_features(
            qo, cs, c_f[sel], key[sel], {k_: v[sel] for k_, v in scores.items()}, k, sep, query_peaks, n_cand, n)
        ok = top >= 0
        # hits sharing too few peaks to tell isomers apart are never level 2: the model does not learn from them
        # (no pair left, as when a tiny library's every candidate is the query's own structure: top is all -1)
        matched = np.asarray(scores["matched_peaks"], dtype=np.float64)[sel]
        if matched.size:
            ok &= matched[np.maximum(top, 0)] >= structure_model.LEVEL2_MIN_MATCHED_PEAKS
        if not removed:
            present = np.zeros(n, dtype=bool)
            present[qo[cs == q_struct[qo]]] = True
            ok &= present
        out_f.append(feats[ok])
        out_y.append(np.where(top[ok] >= 0, cs[np.maximum(top[ok], 0)] == q_struct[ok], False))
    return np.vstack(out_f), np.concatenate(out_y)
