"""Property tests (hypothesis): readers on random text, scoring kernels on random spectra.

Readers (MGF, MSP, GNPS JSON; libraries and queries): whatever the text, reading either succeeds or raises
InputError, and what is returned keeps the readers' promises (unique ids, a finite precursor m/z > 0, finite
peaks, every entry accounted for). Scoring kernels (cosine, modified cosine, entropy): scores lie in [0, 1],
are symmetric, identical spectra score 1, and the order in which peaks are listed changes nothing once the
spectra go through the pipeline's own preparation (``clean_peaks`` / ``prepare_entropy_one``).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import polars as pl
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ms2study.core.cleaning import clean_peaks
from ms2study.core.errors import InputError
from ms2study.io import entries, formats
from ms2study.io.queries import QUERY_SCHEMA, read_query_spectra
from ms2study.kernels import cosine, entropy
from ms2study.library import build

# No example database: nothing is written into the checkout (failures print their example and reproduce
# from the seed hypothesis prints).
SETTINGS = settings(max_examples=50, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(autouse=True)
def _quiet_reader_logs():
    """Random files produce many (correct) warnings; keep them out of the test output."""
    loggers = [logging.getLogger(name) for name in ("ms2study.io", "ms2study.library")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    yield
    for logger, level in zip(loggers, levels):
        logger.setLevel(level)


# ------------------------------------------------------------------------------------------ readers

_number = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(-10**30, 10**30).map(str),
    st.sampled_from(["0", "-0", "1,5", "281,2013306", "1,2,3", "1.2.3", "nan", "inf", "-inf", "1e400", "", " ",
                     "abc", "+", "-", ",", "1_0", "0x10", "١٢٣"]),
)
_word = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)


def _join(parts: list[str]) -> str:
    return "\n".join(parts) + "\n"


_mgf_line = st.one_of(
    st.just("BEGIN IONS"), st.just("END IONS"), st.just(""), st.just("begin ions"),
    st.builds(lambda v, w: f"PEPMASS={v} {w}", _number, _number),
    st.builds(lambda v: f"CHARGE={v}", st.sampled_from(["1+", "1-", "-2", "2", "0", "x", "99999999999999999999"])),
    st.builds(lambda v: f"IONMODE={v}", st.sampled_from(["positive", "Negative", "P", "N", "+", "-", "?"])),
    st.builds(lambda v: f"TITLE={v}", st.sampled_from(["a", "a", "b", "a#2", ""])),
    st.builds(lambda k, v: f"{k}={v}", _word, _word),
    st.builds(lambda a, b: f"{a} {b}", _number, _number),
    st.builds(lambda a, b: f"{a}\t{b}\tx", _number, _number),
    _word,
)
_msp_line = st.one_of(
    st.just(""), st.just("Name: x"), st.just("Name: x"), st.just("DB#: d"),
    st.builds(lambda v: f"PrecursorMZ: {v}", _number),
    st.builds(lambda v: f"Num Peaks: {v}", st.one_of(st.integers(-2, 6).map(str), _number)),
    st.builds(lambda v: f"Ion_mode: {v}", st.sampled_from(["P", "N", "positive", "?"])),
    st.builds(lambda a, b: f"{a} {b}", _number, _number),
    st.builds(lambda a, b, c, d: f"{a} {b}; {c} {d};", _number, _number, _number, _number),
    st.builds(lambda a, b, c, d: f"({a} {b}) ({c},{d})", _number, _number, _number, _number),
    st.builds(lambda a, b: f'{a}:{b} "ann"', _number, _number),
    st.builds(lambda k, v: f"{k}: {v}", _word, _word),
    _word,
)
_json_scalar = st.one_of(st.none(), st.booleans(), st.integers(-10**20, 10**20),
                         st.floats(allow_nan=False), _word)
_json_value = st.recursive(_json_scalar, lambda c: st.lists(c, max_size=4) | st.dictionaries(_word, c, max_size=4),
                           max_leaves=12)
_peaks_value = st.one_of(
    st.lists(st.lists(st.one_of(st.floats(allow_nan=False), st.integers(-10**5, 10**5)), max_size=3), max_size=5),
    _json_value,
)
_gnps_record = st.fixed_dictionaries(
    {"spectrum_id": st.sampled_from(["s", "s", "t"]), "Precursor_MZ": st.one_of(_number, _json_scalar)},
    optional={"peaks_json": st.one_of(_peaks_value, _peaks_value.map(json.dumps)), "Ion_Mode": _json_scalar},
)
_json_text = st.one_of(
    st.lists(st.one_of(_gnps_record, _json_value), max_size=5).map(json.dumps),
    _json_value.map(json.dumps),
    st.text(max_size=40),
)

# Whole entries, mostly well formed, with random values and random damage: these reach the deep paths.
_mz = st.one_of(st.floats(0.5, 2000.0).map(repr), _number)
_peak = st.tuples(st.floats(0.5, 2000.0, allow_subnormal=False), st.one_of(
    st.floats(0.0, 1e6), st.sampled_from([-1.0, float("nan"), float("inf")])))


@st.composite
def mgf_entries(draw) -> str:
    out = []
    for _ in range(draw(st.integers(0, 4))):
        peaks = draw(st.lists(_peak, max_size=6))
        lines = [f"PEPMASS={draw(_mz)}", f"TITLE={draw(st.sampled_from(['a', 'a', 'b', '']))}"]
        lines += draw(st.lists(_mgf_line, max_size=2))
        lines += [f"{m!r} {i!r}" for m, i in peaks]
        end = ["END IONS"] if draw(st.integers(0, 9)) else []   # one in ten is truncated
        out.append(_join(["BEGIN IONS", *lines, *end]))
        if draw(st.integers(0, 9)) == 0:
            out.append(_join(draw(st.lists(_mgf_line, max_size=3))))
    return "".join(out)


@st.composite
def msp_entries(draw) -> str:
    out = []
    for _ in range(draw(st.integers(0, 4))):
        peaks = draw(st.lists(_peak, max_size=6))
        form = draw(st.sampled_from(["{} {}", "{}\t{}", "({} {})", "{}:{}", "{} {};"]))
        declared = draw(st.one_of(st.just(len(peaks)), st.integers(-1, 7)))
        lines = [f"Name: {draw(st.sampled_from(['a', 'b']))}", f"PrecursorMZ: {draw(_mz)}"]
        lines += draw(st.lists(_msp_line, max_size=2))
        lines.append(f"Num Peaks: {declared}")
        lines += draw(st.lists(_msp_line, max_size=1))
        lines += [form.format(repr(m), repr(i)) for m, i in peaks]
        out.append(_join(lines) + draw(st.sampled_from(["\n", "", "\n\n"])))
    return "".join(out)


_good_record = st.builds(
    lambda sid, prec, peaks, as_text: {"spectrum_id": sid, "Precursor_MZ": prec,
                                       "peaks_json": json.dumps(peaks) if as_text else peaks},
    st.sampled_from(["s", "s", "t"]), st.one_of(st.floats(0.5, 2000.0), _number),
    st.lists(st.tuples(st.floats(0.5, 2000.0), st.floats(-1.0, 1e6)).map(list), max_size=5), st.booleans(),
)

CASES = {
    "mgf": st.one_of(mgf_entries(), st.lists(_mgf_line, max_size=30).map(_join), st.text(max_size=200)),
    "msp": st.one_of(msp_entries(), st.lists(_msp_line, max_size=30).map(_join), st.text(max_size=200)),
    "json": st.one_of(st.lists(_good_record, max_size=5).map(json.dumps), _json_text),
}


def _check_queries(path: Path) -> None:
    try:
        table, report = read_query_spectra(path, require_any=False)
    except InputError:
        return
    assert table.schema == pl.Schema(QUERY_SCHEMA)
    assert table["spectrum_id"].n_unique() == table.height
    precursor = table["precursor_mz"].to_numpy()
    assert np.all(np.isfinite(precursor)) and np.all(precursor > 0)
    for mz, inten in zip(table["mz"].to_list(), table["intensity"].to_list()):
        assert len(mz) == len(inten) > 0
        assert np.all(np.isfinite(mz)) and np.all(np.asarray(mz) > 0)
        assert np.all(np.isfinite(inten)) and np.all(np.asarray(inten) >= 0)
    assert set(table["ion_mode"].drop_nulls().to_list()) <= {"positive", "negative"}
    # Every entry is accounted for: used, or named as skipped.
    assert report.n_used == table.height
    assert report.n_used + report.n_skipped == report.n_entries
    assert all(i.reason and i.entry >= 1 and i.identifier for i in report.issues)


def _check_library(path: Path) -> None:
    report = entries.ReadReport()
    try:
        built = build.build_library(formats.read_library_file(path, report), report=report)
    except InputError:
        return
    meta = built.metadata
    assert meta["library_id"].n_unique() == meta.height == report.n_used
    assert np.all(np.diff(built.offsets) > 0)
    assert np.all(np.isfinite(built.intensity)) and np.all(built.intensity > 0)
    assert report.n_used + report.n_skipped + report.n_emptied == report.n_entries


@pytest.mark.parametrize("ext", ["mgf", "msp", "json"])
def test_readers_never_crash_on_random_text(ext: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    folder = tmp_path_factory.mktemp(f"fuzz_{ext}")

    @SETTINGS
    @given(text=CASES[ext])
    def run(text: str) -> None:
        path = folder / f"input.{ext}"
        path.write_bytes(text.encode("utf-8", errors="surrogatepass"))
        _check_queries(path)
        _check_library(path)

    run()


@pytest.mark.parametrize("ext", ["mgf", "msp", "json"])
def test_readers_never_crash_on_random_bytes(ext: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    folder = tmp_path_factory.mktemp(f"bytes_{ext}")

    @settings(max_examples=25, deadline=None, database=None)
    @given(data=st.binary(max_size=300))
    def run(data: bytes) -> None:
        for name in (f"input.{ext}", f"input.{ext}.gz"):
            path = folder / name
            path.write_bytes(data)
            _check_queries(path)
            _check_library(path)

    run()


_valid_peaks = st.lists(st.tuples(st.floats(1.0, 2000.0), st.floats(1e-3, 1e6)), min_size=1, max_size=8)
_WRITERS = {
    "mgf": lambda prec, mode, peaks: _join(["BEGIN IONS", "TITLE=t", f"PEPMASS={prec!r}",
                                            f"CHARGE={'1+' if mode == 'positive' else '1-'}",
                                            *(f"{m!r} {i!r}" for m, i in peaks), "END IONS"]),
    "msp": lambda prec, mode, peaks: _join([f"Name: t\nPrecursorMZ: {prec!r}", f"Ion_mode: {mode[0].upper()}",
                                            f"Num Peaks: {len(peaks)}",
                                            "; ".join(f"{m!r} {i!r}" for m, i in peaks)]),
    "json": lambda prec, mode, peaks: json.dumps([{"spectrum_id": "t", "Precursor_MZ": prec, "Ion_Mode": mode,
                                                   "peaks_json": [list(p) for p in peaks]}]),
}


@pytest.mark.parametrize("ext", ["mgf", "msp", "json"])
def test_written_spectra_read_back_exactly(ext: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    folder = tmp_path_factory.mktemp(f"roundtrip_{ext}")

    @SETTINGS
    @given(prec=st.floats(1.0, 3000.0), mode=st.sampled_from(["positive", "negative"]), peaks=_valid_peaks)
    def run(prec: float, mode: str, peaks: list[tuple[float, float]]) -> None:
        path = folder / f"t.{ext}"
        path.write_text(_WRITERS[ext](prec, mode, peaks))
        table, report = read_query_spectra(path)
        assert table["precursor_mz"].to_list() == [prec]
        assert table["ion_mode"].to_list() == [mode]
        assert table["mz"][0].to_list() == [m for m, _ in peaks]
        np.testing.assert_array_equal(table["intensity"][0].to_numpy(), np.array([i for _, i in peaks], np.float32))
        assert report.issues == []

    run()


# ------------------------------------------------------------------------------------------ scoring

TOL = 0.02


@st.composite
def spectra(draw, max_peaks: int = 25) -> tuple[np.ndarray, np.ndarray]:
    """Raw peaks as a user's file may hold them: unsorted, duplicates possible (m/z on a 0.005 Da grid so that
    peaks fall within the tolerance of each other), intensities over six orders of magnitude."""
    n = draw(st.integers(1, max_peaks))
    mz = np.array(draw(st.lists(st.integers(10_000, 200_000), min_size=n, max_size=n)), dtype=np.float64) * 0.005
    inten = np.array(draw(st.lists(st.floats(1e-3, 1e3), min_size=n, max_size=n)), dtype=np.float64)
    return mz, inten


def _clean(mz: np.ndarray, inten: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return clean_peaks(mz, inten, None, remove_precursor=False)


def _cosine(a, b, shift: float = 0.0, modified: bool = False, mz_power: float = 0.0, intensity_power: float = 1.0):
    return cosine.cosine_pair(a[0], a[1], b[0], b[1], TOL, mz_power, intensity_power, shift, modified)


def _entropy_prepared(mz: np.ndarray, inten: np.ndarray):
    return entropy.prepare_entropy_one(mz, inten.astype(np.float32), 0.01, 2 * TOL, True)


def _entropy(a, b) -> float:
    return entropy.entropy_pair(a[0], a[1], b[0], b[1], TOL)[0]


POWERS = st.sampled_from([(0.0, 1.0), (1.0, 0.5), (3.0, 0.6)])


@SETTINGS
@given(a=spectra(), b=spectra(), shift=st.sampled_from([0.0, 0.01, 14.0157, -18.0106]), powers=POWERS)
def test_cosine_bounded_and_symmetric(a, b, shift, powers) -> None:
    ca, cb = _clean(*a), _clean(*b)
    for modified in (False, True):
        s_ab, m_ab = _cosine(ca, cb, shift, modified, *powers)
        s_ba, m_ba = _cosine(cb, ca, -shift, modified, *powers)
        assert 0.0 <= s_ab <= 1.0 + 1e-12 and 0.0 <= s_ba <= 1.0 + 1e-12
        assert s_ab == pytest.approx(s_ba, abs=1e-9)
        assert m_ab == m_ba
        assert m_ab <= min(ca[0].size, cb[0].size)


@SETTINGS
@given(a=spectra(), powers=POWERS, seed=st.integers(0, 2**32 - 1))
def test_cosine_identity_and_peak_order(a, powers, seed) -> None:
    mz, inten = a
    clean = _clean(mz, inten)
    for modified in (False, True):
        score, matched = _cosine(clean, clean, 0.0, modified, *powers)
        assert score == pytest.approx(1.0, abs=1e-9)
        assert matched == clean[0].size
    # The same peaks listed in another order: the pipeline's cleaning gives the same arrays and scores.
    perm = np.random.default_rng(seed).permutation(mz.size)
    shuffled = _clean(mz[perm], inten[perm])
    np.testing.assert_array_equal(shuffled[0], clean[0])
    np.testing.assert_allclose(shuffled[1], clean[1], rtol=1e-6)
    other = _clean(mz[::-1] + 0.003, inten[::-1])
    assert _cosine(shuffled, other, 0.0, False, *powers)[0] == pytest.approx(
        _cosine(clean, other, 0.0, False, *powers)[0], abs=1e-6)


@SETTINGS
@given(a=spectra(), b=spectra())
def test_entropy_bounded_symmetric_identity(a, b) -> None:
    pa, pb = _entropy_prepared(*a), _entropy_prepared(*b)
    s_ab, s_ba = _entropy(pa, pb), _entropy(pb, pa)
    assert 0.0 <= s_ab <= 1.0 and 0.0 <= s_ba <= 1.0
    assert s_ab == pytest.approx(s_ba, abs=1e-6)
    assert _entropy(pa, pa) == pytest.approx(1.0, abs=1e-5)
    # Prepared peaks: ascending m/z, intensities summing to 1.
    assert np.all(np.diff(pa[0]) > 0)
    assert float(pa[1].sum()) == pytest.approx(1.0, abs=1e-5)


@SETTINGS
@given(a=spectra(), b=spectra(), seed=st.integers(0, 2**32 - 1))
def test_entropy_peak_order_changes_nothing(a, b, seed) -> None:
    mz, inten = a
    perm = np.random.default_rng(seed).permutation(mz.size)
    pa, pa_perm, pb = _entropy_prepared(mz, inten), _entropy_prepared(mz[perm], inten[perm]), _entropy_prepared(*b)
    assert _entropy(pa_perm, pb) == pytest.approx(_entropy(pa, pb), abs=1e-5)


@SETTINGS
@given(queries=st.lists(spectra(12), min_size=1, max_size=4), refs=st.lists(spectra(12), min_size=1, max_size=4))
def test_candidate_kernels_agree_with_pair_kernels(queries, refs) -> None:
    """The batched kernels (all query x library pairs as candidates) give each pair's score, bounded."""

    def flat(specs):
        clean = [_clean(*s) for s in specs]
        offsets = np.zeros(len(clean) + 1, dtype=np.int64)
        np.cumsum([c[0].size for c in clean], out=offsets[1:])
        return clean, offsets, np.concatenate([c[0] for c in clean]), np.concatenate([c[1] for c in clean])

    q_clean, q_off, q_mz, q_int = flat(queries)
    l_clean, l_off, l_mz, l_int = flat(refs)
    nq, nl = len(q_clean), len(l_clean)
    cand_offsets = np.arange(nq + 1, dtype=np.int64) * nl
    cand_lib = np.tile(np.arange(nl, dtype=np.int64), nq)
    q_prec = np.full(nq, 500.0)
    l_prec = np.full(nl, 500.0)
    scores, matches = cosine.cosine_candidates(q_off, q_mz, q_int, q_prec, l_off, l_mz, l_int, l_prec,
                                                cand_offsets, cand_lib, TOL, 0.0, 1.0, False)
    assert np.all((scores >= 0) & (scores <= 1 + 1e-12))
    for k in range(nq * nl):
        q, r = divmod(k, nl)
        s, m = _cosine(l_clean[r], q_clean[q])
        assert scores[k] == s and matches[k] == m
    eq_off, eq_mz, eq_int = entropy.prepare_entropy_peaks(q_off, q_mz, q_int, 0.01, 2 * TOL, True)
    el_off, el_mz, el_int = entropy.prepare_entropy_peaks(l_off, l_mz, l_int, 0.01, 2 * TOL, True)
    e_scores, _ = entropy.entropy_candidates(eq_off, eq_mz, eq_int, el_off, el_mz, el_int, cand_offsets, cand_lib,
                                             TOL)
    assert np.all((e_scores >= 0) & (e_scores <= 1))
    for k in range(nq * nl):
        q, r = divmod(k, nl)
        expected = _entropy(_entropy_prepared(*q_clean[q]), _entropy_prepared(*l_clean[r]))
        assert e_scores[k] == pytest.approx(expected, abs=1e-6)
