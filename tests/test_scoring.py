"""Numba kernels against their oracles: matchms (cosine, modified cosine) and ms_entropy (entropy)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ms2study.kernels import cosine, embedding, entropy
from ms2study.library import index as library

matchms = pytest.importorskip("matchms")
ms_entropy = pytest.importorskip("ms_entropy")
from matchms import Spectrum
from matchms.similarity import CosineGreedy, ModifiedCosineGreedy

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
MASSBANK = SHARED / "massbank" / "massbank_dev.mgf.gz"
PESTICIDES = SHARED / "fixtures" / "pesticides.mgf"


def ours_cosine(a, b, tol=0.1, mz_power=0.0, intensity_power=1.0, modified=False):
    (mz_a, in_a, prec_a), (mz_b, in_b, prec_b) = a, b
    return cosine.cosine_pair(
        np.asarray(mz_a, float), np.asarray(in_a, np.float32), np.asarray(mz_b, float), np.asarray(in_b, np.float32),
        tol, mz_power, intensity_power, prec_a - prec_b, modified,
    )


def oracle_cosine(a, b, tol=0.1, mz_power=0.0, intensity_power=1.0, modified=False):
    sa, sb = (
        Spectrum(mz=np.asarray(m, float), intensities=np.asarray(i, np.float32).astype(float),
                 metadata={"precursor_mz": p})
        for m, i, p in (a, b)
    )
    cls = ModifiedCosineGreedy if modified else CosineGreedy
    res = cls(tolerance=tol, mz_power=mz_power, intensity_power=intensity_power).pair(sa, sb)
    return float(res["score"]), int(res["matches"])


def ours_entropy(a, b, tol=0.02):
    pa = entropy.prepare_entropy_one(np.asarray(a[0], float), np.asarray(a[1], np.float32), 0.01, 2 * tol, True)
    pb = entropy.prepare_entropy_one(np.asarray(b[0], float), np.asarray(b[1], np.float32), 0.01, 2 * tol, True)
    return entropy.entropy_pair(pa[0], pa[1], pb[0], pb[1], tol)[0]


def oracle_entropy(a, b, tol=0.02):
    pa = np.c_[a[0], a[1]].astype(np.float32).reshape(-1, 2)
    pb = np.c_[b[0], b[1]].astype(np.float32).reshape(-1, 2)
    return float(ms_entropy.calculate_entropy_similarity(pa, pb, ms2_tolerance_in_da=tol))


def assert_all_agree(pairs, tol=0.1, mz_power=0.0, intensity_power=1.0, entropy_tol=0.02):
    for a, b in pairs:
        for modified in (False, True):
            s, m = ours_cosine(a, b, tol, mz_power, intensity_power, modified)
            so, mo = oracle_cosine(a, b, tol, mz_power, intensity_power, modified)
            assert abs(s - so) <= 1e-6 and m == mo, (modified, s, so, m, mo)
        e, eo = ours_entropy(a, b, entropy_tol), oracle_entropy(a, b, entropy_tol)
        assert abs(e - eo) <= 1e-6, (e, eo)


def test_docstring_example_of_matchms() -> None:
    ref = ([100, 150, 200.0], [0.7, 0.2, 0.1], 200.0)
    query = ([100, 140, 190.0], [0.4, 0.2, 0.1], 190.0)
    score, matches = ours_cosine(ref, query, tol=0.2)
    assert round(score, 2) == 0.83 and matches == 1
    # Modified cosine also pairs 150/140 and 200/190 through the 10 Da precursor shift.
    score_mod, matches_mod = ours_cosine(ref, query, tol=0.2, modified=True)
    assert matches_mod == 3 and score_mod > score


def test_edge_cases_agree_with_oracles() -> None:
    empty = ([], [], 300.0)
    one = ([100.0], [5.0], 300.0)
    one_other = ([100.05], [2.0], 310.0)
    dup = ([80.0, 80.0, 120.0, 120.01], [5.0, 5.0, 9.0, 9.0], 200.0)           # duplicate m/z, equal intensities
    ties = ([50.0, 50.05, 50.1, 90.0], [3.0, 3.0, 3.0, 3.0], 150.0)            # equal pair weights -> tie order
    beyond = ([100.0, 150.0, 299.0, 350.0], [1.0, 2.0, 50.0, 80.0], 300.0)     # peaks at/after the precursor
    beyond2 = ([100.02, 150.0, 298.99, 349.9], [1.5, 2.0, 40.0, 90.0], 320.0)
    for a, b in [(empty, one), (empty, empty), (one, one), (one, one_other), (dup, ties), (ties, ties),
                 (dup, dup), (beyond, beyond2), (ties, dup)]:
        assert_all_agree([(a, b), (b, a)])
    assert ours_cosine(empty, one) == (0.0, 0)
    assert ours_entropy(empty, one) == 0.0
    assert ours_cosine(one, one)[0] == pytest.approx(1.0)


@pytest.mark.parametrize(("mz_power", "intensity_power", "tol"), [(0.0, 1.0, 0.1), (1.0, 0.5, 0.02), (2.0, 0.6, 0.05)])
def test_random_spectra_with_ties_agree(mz_power: float, intensity_power: float, tol: float) -> None:
    rng = np.random.default_rng(7)
    pairs = []
    for _ in range(150):
        base = np.sort(rng.choice(np.arange(50, 400, 0.05), size=rng.integers(1, 40), replace=False))
        # Small integer intensities make many equal pair weights, the hard case for greedy tie-breaking.
        a = (base, rng.integers(1, 5, base.size).astype(float), 420.0)
        jitter = base + rng.normal(0, tol / 2, base.size)
        keep = rng.random(base.size) < 0.7
        b = (np.sort(jitter[keep] + (rng.random() < 0.5) * 14.0157), rng.integers(1, 5, keep.sum()).astype(float),
             420.0 + 14.0157)
        pairs.append((a, b))
    assert_all_agree(pairs, tol=tol, mz_power=mz_power, intensity_power=intensity_power)


@pytest.mark.skipif(not PESTICIDES.exists(), reason=f"fixture not found: {PESTICIDES}")
def test_pesticides_all_pairs(tmp_path: Path) -> None:
    index = library.index_library(PESTICIDES, tmp_path / "idx")
    spectra = [(*index.peaks(i), float(index.precursor_mz[i])) for i in range(len(index))]
    pairs = [(spectra[i], spectra[j]) for i in range(0, len(spectra), 3) for j in range(len(spectra))]
    assert_all_agree(pairs, tol=0.02)


@pytest.mark.skipif(not MASSBANK.exists(), reason=f"MassBank file not found: {MASSBANK}")
def test_random_massbank_pairs(tmp_path_factory: pytest.TempPathFactory) -> None:
    from ms2study.io.entries import ReadReport
    from ms2study.io.formats import read_library_file
    from ms2study.library.build import build_library

    # The first 6,000 records are enough for realistic pairs and keep the test fast.
    report = ReadReport()
    raw = []
    for rec in read_library_file(MASSBANK, report):
        raw.append(rec)
        if len(raw) == 6000:
            break
    built = build_library(raw)
    n = built.metadata.height
    rng = np.random.default_rng(3)

    def spec(i):
        a, b = built.offsets[i], built.offsets[i + 1]
        return built.mz[a:b], built.intensity[a:b], float(built.precursor_mz[i])

    # Neighbours in precursor order are often the same compound (high scores); random pairs cover the rest.
    pairs = [(spec(i), spec(min(n - 1, i + rng.integers(1, 6)))) for i in rng.integers(0, n, 400)]
    pairs += [(spec(i), spec(j)) for i, j in rng.integers(0, n, (200, 2))]
    assert_all_agree(pairs, tol=0.02)
    scores = [ours_entropy(a, b) for a, b in pairs[:400]]
    assert np.mean(np.asarray(scores) > 0.5) > 0.2  # the test did see similar spectra


def test_candidate_kernels_match_pairwise() -> None:
    rng = np.random.default_rng(11)
    specs = []
    for _ in range(30):
        mz = np.sort(rng.uniform(50, 300, rng.integers(0, 25)))
        specs.append((mz, rng.uniform(1, 100, mz.size).astype(np.float32), float(rng.uniform(300, 320))))

    def flat(sel):
        offsets = np.zeros(len(sel) + 1, dtype=np.int64)
        offsets[1:] = np.cumsum([specs[i][0].size for i in sel])
        mz = np.concatenate([specs[i][0] for i in sel]) if offsets[-1] else np.zeros(0)
        inten = np.concatenate([specs[i][1] for i in sel]) if offsets[-1] else np.zeros(0)
        inten = inten.astype(np.float32)
        return offsets, mz, inten, np.array([specs[i][2] for i in sel])

    q = flat(range(10))
    lib = flat(range(10, 30))
    cand_offsets = np.arange(0, 10 * 20 + 1, 20, dtype=np.int64)
    cand_lib = np.tile(np.arange(20), 10).astype(np.int64)
    for modified in (False, True):
        scores, matches = cosine.cosine_candidates(*q, *lib, cand_offsets, cand_lib, 0.05, 0.0, 1.0, modified)
        for c in range(cand_lib.size):
            qi, li = c // 20, 10 + cand_lib[c]
            s, m = cosine.cosine_pair(specs[li][0], specs[li][1], specs[qi][0], specs[qi][1], 0.05, 0.0, 1.0,
                                       specs[li][2] - specs[qi][2], modified)
            assert scores[c] == s and matches[c] == m
    qe = entropy.prepare_entropy_peaks(q[0], q[1], q[2], 0.01, 0.04, True)
    le = entropy.prepare_entropy_peaks(lib[0], lib[1], lib[2], 0.01, 0.04, True)
    ent, _ = entropy.entropy_candidates(*qe, *le, cand_offsets, cand_lib, 0.02)
    for c in range(0, cand_lib.size, 7):
        qi, li = c // 20, 10 + cand_lib[c]
        assert ent[c] == pytest.approx(ours_entropy(specs[li], specs[qi]), abs=1e-7)


def test_embedding_top_k_is_exact_and_chunked() -> None:
    rng = np.random.default_rng(5)
    lib = rng.normal(size=(500, 16)).astype(np.float32)
    lib /= np.linalg.norm(lib, axis=1, keepdims=True)
    q = lib[[3, 77, 400]] + rng.normal(0, 0.01, (3, 16)).astype(np.float32)
    allowed = np.ones(500, dtype=bool)
    allowed[77] = False
    off, cand = embedding.top_k_by_embedding(q, lib, allowed, 4, chunk_rows=37)
    brute = (q @ lib.T)
    brute[:, ~allowed] = -np.inf
    for i in range(3):
        assert set(cand[off[i]:off[i + 1]]) == set(np.argsort(-brute[i])[:4])
    assert 3 in cand[off[0]:off[1]] and 77 not in cand
    sims = embedding.embedding_candidates(q / np.linalg.norm(q, axis=1, keepdims=True), lib, off, cand)
    assert np.all(sims <= 1 + 1e-6) and sims[list(cand[:4]).index(3)] > 0.99


def test_mismatched_candidate_offsets_are_refused() -> None:
    offsets = np.array([0, 1, 2], dtype=np.int64)
    mz = np.array([100.0, 120.0])
    inten = np.ones(2, dtype=np.float32)
    prec = np.array([200.0, 220.0])
    with pytest.raises(ValueError, match="different numbers"):
        cosine.cosine_candidates(offsets, mz, inten, prec, offsets, mz, inten, prec,
                                  np.array([0, 1], dtype=np.int64), np.array([0], dtype=np.int64), 0.1, 0.0, 1.0, False)


def test_dense_spectra_long_conflict_groups_agree() -> None:
    # Hundreds of peaks within the tolerance of each other make long groups of conflicting peak pairs
    # (the sorted path of the greedy step, beyond the insertion-sort size), with many equal weights.
    rng = np.random.default_rng(21)
    pairs = []
    for size in (40, 120, 300):
        for _ in range(4):
            a_mz = np.sort(rng.uniform(100, 100 + size * 0.01, size))
            kept = a_mz[rng.random(size) < 0.8]
            b_mz = np.sort(kept + rng.normal(0, 0.01, kept.size))
            a = (a_mz, rng.integers(1, 4, size).astype(float), 300.0)
            b = (b_mz, rng.integers(1, 4, b_mz.size).astype(float), 300.0 + rng.choice([0.0, 0.05, 14.0]))
            pairs.append((a, b))
    for a, b in pairs:
        for modified in (False, True):
            s, m = ours_cosine(a, b, 0.1, 0.0, 1.0, modified)
            so, mo = oracle_cosine(a, b, 0.1, 0.0, 1.0, modified)
            assert abs(s - so) <= 1e-6 and m == mo, (modified, s, so, m, mo)


def test_parallel_and_serial_candidate_kernels_agree(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(17)
    n_q, n_l = 40, 60
    sizes_q, sizes_l = rng.integers(0, 60, n_q), rng.integers(0, 60, n_l)

    def flat(sizes):
        offsets = np.zeros(sizes.size + 1, dtype=np.int64)
        np.cumsum(sizes, out=offsets[1:])
        mz = np.concatenate([np.sort(rng.uniform(50, 200, k)) for k in sizes])
        return offsets, mz, rng.integers(1, 6, mz.size).astype(np.float32), rng.uniform(300, 302, sizes.size)

    q, lib = flat(sizes_q), flat(sizes_l)
    # Every library spectrum is a candidate of every query: many pairs, so the parallel kernel runs.
    cand_offsets = np.arange(0, n_q * n_l + 1, n_l, dtype=np.int64)
    cand_lib = np.tile(np.arange(n_l), n_q).astype(np.int64)
    for modified in (False, True):
        monkeypatch.setattr(cosine, "PARALLEL_MIN_PAIRS", 0)
        par = cosine.cosine_candidates(*q, *lib, cand_offsets, cand_lib, 0.3, 1.0, 0.5, modified)
        monkeypatch.setattr(cosine, "PARALLEL_MIN_PAIRS", 10**12)
        ser = cosine.cosine_candidates(*q, *lib, cand_offsets, cand_lib, 0.3, 1.0, 0.5, modified)
        assert np.array_equal(par[0], ser[0]) and np.array_equal(par[1], ser[1])
        assert (par[1] > 0).mean() > 0.5
        for c in range(0, cand_lib.size, 37):
            qi, li = c // n_l, cand_lib[c]
            s, m = cosine.cosine_pair(
                lib[1][lib[0][li]:lib[0][li + 1]], lib[2][lib[0][li]:lib[0][li + 1]],
                q[1][q[0][qi]:q[0][qi + 1]], q[2][q[0][qi]:q[0][qi + 1]], 0.3, 1.0, 0.5,
                lib[3][li] - q[3][qi], modified,
            )
            assert par[0][c] == s and par[1][c] == m


def test_query_offsets_not_starting_at_zero() -> None:
    # Queries given as a window of a larger flat array (offsets start past 0) score like a fresh copy.
    mz = np.array([100.0, 150.0, 200.0, 100.0, 150.0, 210.0, 100.02, 149.98])
    inten = np.array([1, 2, 3, 4, 5, 6, 7, 8], dtype=np.float32)
    prec = np.array([250.0, 250.0])
    window = np.array([3, 6, 8], dtype=np.int64)
    lib_off = np.array([0, 3], dtype=np.int64)
    cand_offsets = np.array([0, 1, 2], dtype=np.int64)
    cand_lib = np.zeros(2, dtype=np.int64)
    got = cosine.cosine_candidates(window, mz, inten, prec, lib_off, mz, inten, prec[:1], cand_offsets, cand_lib,
                                    0.05, 0.0, 1.0, False)
    fresh = cosine.cosine_candidates(window - 3, mz[3:], inten[3:], prec, lib_off, mz, inten, prec[:1],
                                      cand_offsets, cand_lib, 0.05, 0.0, 1.0, False)
    assert np.array_equal(got[0], fresh[0]) and np.array_equal(got[1], fresh[1])
    assert list(got[1]) == [2, 2]
