"""MS2 extraction and precursor-to-feature mapping (ms2study.stages.spectra) on synthetic runs."""

from __future__ import annotations

import json
import logging

import numpy as np
import polars as pl
import pyopenms as oms
import pytest
from test_detect import Compound, MS2Scan, default_compounds, make_run, write_run

from ms2study import cli
from ms2study.core import tables
from ms2study.core.errors import InputError
from ms2study.stages.detect import detect_features
from ms2study.stages.spectra import DEFAULT_PARAMS, extract_spectra, map_precursors


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A run with MS2 scans: on three compounds' apex and edge, one with no feature, one far off in RT, one bare."""
    comps = default_compounds()
    c0, c1, c2 = comps[0], comps[5], comps[9]
    ms2 = [
        MS2Scan(c0.mz + 0.0005, c0.rt_s),  # apex, 3 ppm off in m/z at m/z ~150
        MS2Scan(c1.mz, c1.rt_s - 3.5),  # rising edge, inside the hull
        MS2Scan(c2.mz, c2.rt_s + 1.0),
        MS2Scan(523.1234, 50.0),  # nothing elutes at this m/z
        MS2Scan(c1.mz, c1.rt_s + 40.0),  # right m/z, wrong time
        MS2Scan(None, 70.0),  # no precursor information
    ]
    path = write_run(make_run(comps, ms2), tmp_path_factory.mktemp("s") / "ms2run.mzML")
    features = detect_features(path, "S1")
    return path, features, comps, ms2


def _feature_of(features: pl.DataFrame, c: Compound) -> str:
    hit = features.filter(((pl.col("mz") - c.mz).abs() / c.mz * 1e6 <= 5) & ((pl.col("rt_s") - c.rt_s).abs() <= 2))
    assert hit.height == 1
    return hit["feature_id"][0]


def test_every_ms2_scan_is_a_row_mapped_or_not(run):
    path, features, comps, ms2 = run
    df = extract_spectra(path, features, "S1")
    assert list(df.columns[: len(tables.SPECTRA)]) == list(tables.SPECTRA)
    assert df.height == len(ms2)
    df = df.sort("rt_s")
    by_rt = sorted(ms2, key=lambda s: s.rt_s)
    got = dict(zip([s.rt_s for s in by_rt], df["feature_id"].to_list(), strict=True))
    c0, c1, c2 = comps[0], comps[5], comps[9]
    assert got[c0.rt_s] == _feature_of(features, c0)
    assert got[c1.rt_s - 3.5] == _feature_of(features, c1)
    assert got[c2.rt_s + 1.0] == _feature_of(features, c2)
    assert got[50.0] is None
    assert got[c1.rt_s + 40.0] is None
    assert got[70.0] is None
    bare = df.filter(pl.col("rt_s").is_between(69.9, 70.1))
    assert bare["precursor_mz"][0] is None and bare["precursor_charge"][0] == 0


def test_ids_scan_index_and_native_id_follow_the_file(run):
    path, features, _, _ = run
    df = extract_spectra(path, features, "S1")
    exp = oms.MSExperiment()
    oms.MzMLFile().load(str(path), exp)
    for sid, idx, native, rt in df.select("spectrum_id", "scan_index", "native_id", "rt_s").iter_rows():
        assert sid == f"S1:S{idx}"
        spec = exp.getSpectrum(idx)
        assert spec.getMSLevel() == 2 and spec.getNativeID() == native and spec.getRT() == pytest.approx(rt)


def test_peaks_are_cleaned(run):
    path, features, _, _ = run
    df = extract_spectra(path, features, "S1")
    assert df.schema["mz"] == pl.List(pl.Float64) and df.schema["intensity"] == pl.List(pl.Float32)
    mapped = df.filter(pl.col("precursor_mz").is_not_null())
    for mz, inten, prec in mapped.select("mz", "intensity", "precursor_mz").iter_rows():
        # the unfragmented precursor peak (5000) is gone, the two fragments stay, ascending
        assert mz == pytest.approx([60.05, 85.03]) and inten == pytest.approx([300.0, 1000.0])
        assert all(m < prec - 1.6 for m in mz)
    # with remove_precursor off the precursor peak is kept; min_relative_intensity drops the weak fragment
    kept = extract_spectra(path, features, "S1", {"remove_precursor": False, "min_relative_intensity": 0.1})
    first = kept.filter(pl.col("precursor_mz").is_not_null()).row(0, named=True)
    assert len(first["mz"]) == 2 and first["mz"][-1] == pytest.approx(first["precursor_mz"], abs=1e-4)
    assert first["mz"][0] == pytest.approx(85.03)


def test_map_precursors_candidates_and_tie_breaks():
    features = pl.DataFrame(
        {
            "feature_id": ["A", "B", "C", "D"],
            "mz": [300.000, 300.002, 300.0015, 500.0],
            "rt_s": [60.0, 60.0, 60.0, 60.0],
            "rt_start_s": [50.0, 55.0, 55.0, 50.0],
            "rt_end_s": [70.0, 65.0, 65.0, 70.0],
            "mz_min": [299.999, 300.0012, 300.0012, 499.999],
            "mz_max": [300.001, 300.0022, 300.0022, 500.001],
            "intensity": [1e5, 1e6, 1e4, 1e5],
        }
    )
    # 300.0016: A, B and C qualify (A within 10 ppm of its hull), all hulls hold t=60: B, the most intense,
    # although C is 0.3 ppm nearer in m/z. 300.0005: A and B qualify, B again. 300.0020 at t=52: only A's
    # hull (wider in RT) is open, B/C start at 55 (tol 0)
    got = map_precursors(
        np.array([300.0016, 300.0005, 300.0020, 400.0]),
        np.array([60.0, 60.0, 52.0, 60.0]),
        features,
        rt_tolerance_s=0.0,
        mz_tolerance_ppm=10.0,
    )
    assert got == ["B", "B", "A", None]
    # equal intensity: the nearer in m/z; equal in both: the first in table order
    same = features.with_columns(intensity=pl.Series([1e5, 1e6, 1e6, 1e5]))
    assert map_precursors(np.array([300.0016]), np.array([60.0]), same, 0.0, 10.0) == ["C"]
    twin = same.with_columns(mz=pl.Series([300.0, 300.002, 300.002, 500.0]))
    assert map_precursors(np.array([300.002]), np.array([60.0]), twin, 0.0, 10.0) == ["B"]
    assert map_precursors(np.array([300.002]), np.array([60.0]), twin.reverse(), 0.0, 10.0) == ["C"]
    # the RT tolerance widens the hull
    assert map_precursors(np.array([500.0]), np.array([72.0]), features, 3.0, 10.0) == ["D"]
    assert map_precursors(np.array([500.0]), np.array([72.0]), features, 1.0, 10.0) == [None]
    assert map_precursors(np.array([500.0]), np.array([60.0]), features.clear(), 1.0, 10.0) == [None]


def test_extract_spectra_logs_scans_with_several_candidates(run, caplog):
    path, features, comps, _ = run
    c0 = comps[0]
    own = features.filter(pl.col("feature_id") == _feature_of(features, c0)).row(0, named=True)
    # a small feature at the same m/z ending 2 s before the scan at c0's apex: its widened hull (3 s) reaches it
    small = {**own, "feature_id": "S1:Fsmall", "rt_s": c0.rt_s - 6.0, "rt_start_s": c0.rt_s - 9.0,
             "rt_end_s": c0.rt_s - 2.0, "intensity": own["intensity"] / 100, "mz": c0.mz + 0.0005}
    more = pl.concat([features, pl.DataFrame([small], schema=features.schema)])
    with caplog.at_level(logging.INFO, logger="ms2study.stages.spectra"):
        df = extract_spectra(path, more, "S1")
    assert df.filter((pl.col("rt_s") - c0.rt_s).abs() < 0.01)["feature_id"].to_list() == [own["feature_id"]]
    assert "S1: 1 of the 3 mapped scans had several candidate features" in caplog.text
    assert "1 went to the one whose own RT hull holds the scan, 0 to the one most intense" in caplog.text


def test_no_features_maps_nothing_and_bad_input(run, tmp_path):
    path, features, _, ms2 = run
    df = extract_spectra(path, features.clear(), "S1")
    assert df.height == len(ms2) and df["feature_id"].null_count() == len(ms2)
    with pytest.raises(InputError, match="rt_start_s"):
        extract_spectra(path, features.drop("rt_start_s"), "S1")
    with pytest.raises(InputError, match="rt_tol"):
        extract_spectra(path, features, "S1", {"rt_tol": 3})
    with pytest.raises(InputError) as err:
        extract_spectra(tmp_path / "gone_D4.mzML", features, "sampleD4")
    assert "gone_D4.mzML" in str(err.value) and "sampleD4" in str(err.value)


def test_run_without_ms2_gives_empty_table(tmp_path):
    path = write_run(make_run(default_compounds(3)), tmp_path / "ms1only.mzML")
    df = extract_spectra(path, detect_features(path, "M"), "M")
    assert df.height == 0 and list(df.columns[: len(tables.SPECTRA)]) == list(tables.SPECTRA)


def test_cli(run, tmp_path, capsys):
    path, features, _, _ = run
    fpath = tmp_path / "features.parquet"
    features.write_parquet(fpath)
    out = tmp_path / "out" / "spectra.parquet"
    rc = cli.main(
        [
            "spectra",
            "--mzml",
            str(path),
            "--features",
            str(fpath),
            "--sample-id",
            "S1",
            "--out",
            str(out),
            "--params",
            json.dumps({"rt_tolerance_s": 2.0}),
        ]
    )
    assert rc == 0
    assert pl.read_parquet(out).equals(extract_spectra(path, features, "S1", {"rt_tolerance_s": 2.0}))
    rc = cli.main(
        [
            "spectra",
            "--mzml",
            str(path),
            "--features",
            str(tmp_path / "nope.parquet"),
            "--sample-id",
            "S1",
            "--out",
            str(tmp_path / "x.parquet"),
        ]
    )
    assert rc == 1 and "nope.parquet" in capsys.readouterr().err


def test_default_params_are_json_plain():
    assert json.loads(json.dumps(DEFAULT_PARAMS)) == DEFAULT_PARAMS


def test_profile_ms2_scans_are_centroided(tmp_path):
    from test_detect import _profile

    exp = oms.MSExperiment()
    for rt in (1.0, 2.0):
        ms1 = oms.MSSpectrum()
        ms1.setMSLevel(1)
        ms1.setRT(rt)
        ms1.set_peaks((np.array([300.0]), np.array([1e5], dtype=np.float32)))
        exp.addSpectrum(ms1)
    ms2 = oms.MSSpectrum()
    ms2.setMSLevel(2)
    ms2.setRT(2.5)
    prec = oms.Precursor()
    prec.setMZ(300.0)
    ms2.setPrecursors([prec])
    ms2.set_peaks(_profile([(120.0421, 1000.0), (180.0632, 400.0)]))
    ms2.setType(oms.SpectrumSettings.SpectrumType.PROFILE)
    exp.addSpectrum(ms2)
    path = write_run(exp, tmp_path / "profile_ms2.mzML")
    empty = tables.empty(tables.FEATURES)
    row = extract_spectra(path, empty, "P").row(0, named=True)
    assert row["mz"] == pytest.approx([120.0421, 180.0632], abs=2e-4)
    assert row["intensity"][0] / row["intensity"][1] == pytest.approx(2.5, rel=0.1)
    raw = extract_spectra(path, empty, "P", {"centroid": "never"}).row(0, named=True)
    assert len(raw["mz"]) > 20
