"""Per-scan checks of the detect and spectra stages on small runs written by the test with pyOpenMS.

Polarity of each MS2 scan (``ion_mode``), a selected ion outside its own isolation window (the window
target is used and flagged), and a run too short for feature detection (empty table and a warning).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import polars as pl
import pyopenms as oms
import pytest

from ms2study import cli
from ms2study.core import tables
from ms2study.stages.detect import detect_features
from ms2study.io.msio import ISOLATION_TARGET_KEY, read_precursor, scan_ion_mode
from ms2study.stages.spectra import extract_spectra

POS, NEG = oms.IonSource.Polarity.POSITIVE, oms.IonSource.Polarity.NEGATIVE


def _spectrum(level: int, rt: float, peaks: list[tuple[float, float]], polarity=None) -> oms.MSSpectrum:
    spec = oms.MSSpectrum()
    spec.setMSLevel(level)
    spec.setRT(rt)
    spec.setType(oms.SpectrumSettings.SpectrumType.CENTROID)
    if polarity is not None:
        # getInstrumentSettings() returns a copy: set it back, or the polarity is lost.
        settings = spec.getInstrumentSettings()
        settings.setPolarity(polarity)
        spec.setInstrumentSettings(settings)
    peaks = sorted(peaks)
    spec.set_peaks((np.array([p[0] for p in peaks]), np.array([p[1] for p in peaks], dtype=np.float32)))
    return spec


def _ms2(
    rt: float,
    selected: float | None,
    polarity=None,
    *,
    target: float | None = None,
    offsets: tuple[float, float] = (0.5, 0.5),
    peaks: list[tuple[float, float]] | None = None,
) -> oms.MSSpectrum:
    spec = _spectrum(2, rt, peaks or [(60.05, 300.0), (85.03, 1000.0)], polarity)
    if selected is not None:
        prec = oms.Precursor()
        prec.setMZ(selected)
        prec.setCharge(1)
        prec.setIsolationWindowLowerOffset(offsets[0])
        prec.setIsolationWindowUpperOffset(offsets[1])
        if target is not None:
            prec.setMetaValue(ISOLATION_TARGET_KEY, target)
        spec.setPrecursors([prec])
    return spec


def _write(path: Path, scans: list[oms.MSSpectrum]) -> Path:
    exp = oms.MSExperiment()
    for i, spec in enumerate(scans):
        spec.setNativeID(f"scan={i + 1}")
        exp.addSpectrum(spec)
    oms.MzMLFile().store(str(path), exp)
    return path


def _ms1_scans(n: int, polarity=POS, t0: float = 0.0) -> list[oms.MSSpectrum]:
    return [_spectrum(1, t0 + i, [(400.0, 1e5), (250.0, 1e5)], polarity) for i in range(n)]


def _warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


def test_polarity_switching_run_gives_ion_mode_per_scan(tmp_path, caplog):
    # MS1 and MS2 scans alternate polarity, as a polarity-switching method acquires them; one MS2 scan says nothing.
    scans = [
        *_ms1_scans(1, POS, 0.0),
        _ms2(0.5, 300.1, POS),
        *_ms1_scans(1, NEG, 1.0),
        _ms2(1.5, 298.1, NEG),
        _ms2(1.6, 298.1, NEG),
        *_ms1_scans(1, POS, 2.0),
        _ms2(2.5, 300.1, None),
        _ms2(2.6, 300.1, POS),
    ]
    path = _write(tmp_path / "switching_Q5.mzML", scans)
    with caplog.at_level(logging.INFO, logger="ms2study"):
        df = extract_spectra(path, tables.empty(tables.FEATURES), "sampleQ5")
    assert df.schema["ion_mode"] == pl.Utf8
    assert df["scan_index"].to_list() == [1, 3, 4, 6, 7]
    assert df["ion_mode"].to_list() == ["positive", "negative", "negative", None, "positive"]
    warned = [w for w in _warnings(caplog) if "mixes polarities" in w]
    assert len(warned) == 1
    assert "switching_Q5.mzML" in warned[0] and "sampleQ5" in warned[0] and "2 positive, 2 negative" in warned[0]
    assert any("2 positive, 2 negative, 1 not stated" in r.getMessage() for r in caplog.records)
    # Detection sees the MS1 scans of both polarities together and says so.
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="ms2study"):
        detect_features(path, "sampleQ5")
    warned = [w for w in _warnings(caplog) if "MS1 scans mix polarities (2 positive, 1 negative)" in w]
    assert len(warned) == 1 and "switching_Q5.mzML" in warned[0]
    # The parquet keeps the column (what annotate reads).
    out = tmp_path / "spectra.parquet"
    df.write_parquet(out)
    assert pl.read_parquet(out)["ion_mode"].to_list() == ["positive", "negative", "negative", None, "positive"]


def test_single_polarity_run_is_not_warned(tmp_path, caplog):
    path = _write(tmp_path / "neg.mzML", [*_ms1_scans(1, NEG), _ms2(0.5, 298.1, NEG), _ms2(0.6, 199.0, NEG)])
    with caplog.at_level(logging.INFO, logger="ms2study"):
        df = extract_spectra(path, tables.empty(tables.FEATURES), "N")
    assert df["ion_mode"].to_list() == ["negative", "negative"]
    assert not [w for w in _warnings(caplog) if "polarit" in w]
    assert scan_ion_mode(_spectrum(2, 1.0, [(1.0, 1.0)])) is None


def test_selected_ion_outside_isolation_window_uses_window_target(tmp_path, caplog):
    # Scan 1: the selected ion (250) lies outside its window 400 +- 0.5: the target is searched and mapped.
    # The fragment at 260 stays only if the precursor used for cleaning is 400 (250 would remove it).
    faulty = _ms2(30.0, 250.0, POS, target=400.0, peaks=[(120.0, 500.0), (260.0, 800.0), (400.0, 5000.0)])
    scans = [
        *_ms1_scans(3, POS, 28.0),
        faulty,
        _ms2(30.1, 300.2, POS, target=300.0),  # inside its window: kept as is
        _ms2(30.2, 300.0, POS),  # no separate target: the target is the selected ion
        _ms2(30.3, 250.0, POS, target=400.0, offsets=(0.0, 0.0)),  # window width not stated: not judged
        _ms2(30.4, None, POS),  # no precursor at all
    ]
    path = _write(tmp_path / "converter_K1.mzML", scans)
    features = pl.DataFrame(
        {
            "feature_id": ["K1:F1", "K1:F2"], "sample_id": ["K1", "K1"], "mz": [250.0, 400.0],
            "rt_s": [30.0, 30.0], "rt_start_s": [25.0, 25.0], "rt_end_s": [35.0, 35.0],
            "mz_min": [249.999, 399.999], "mz_max": [250.001, 400.001], "intensity": [1e5, 1e5],
            "charge": [1, 1], "n_isotopes": [1, 1], "quality": [1.0, 1.0],
        }
    )
    with caplog.at_level(logging.INFO, logger="ms2study"):
        df = extract_spectra(path, features, "K1")
    assert df.schema["selected_ion_mz"] == pl.Float64 and df.schema["precursor_corrected"] == pl.Boolean
    rows = df.sort("scan_index").select(
        "precursor_mz", "selected_ion_mz", "precursor_corrected", "feature_id"
    ).rows()
    assert rows[0] == (pytest.approx(400.0), pytest.approx(250.0), True, "K1:F2")
    assert rows[1] == (pytest.approx(300.2), pytest.approx(300.2), False, None)
    assert rows[2] == (pytest.approx(300.0), pytest.approx(300.0), False, None)
    assert rows[3] == (pytest.approx(250.0), pytest.approx(250.0), False, "K1:F1")
    assert rows[4] == (None, None, False, None)
    first = df.sort("scan_index").row(0, named=True)
    assert first["mz"] == pytest.approx([120.0, 260.0])
    warned = [w for w in _warnings(caplog) if "isolation window" in w]
    assert len(warned) == 1
    assert "1 of 5 scans: selected ion outside isolation window, window target used" in warned[0]
    assert "converter_K1.mzML" in warned[0] and "K1" in warned[0]


def test_read_precursor_window_edges():
    got = read_precursor(_ms2(1.0, 400.5, target=400.0))  # on the upper edge: inside
    assert got.precursor_mz == pytest.approx(400.5) and not got.corrected
    below = _ms2(1.0, 399.3, target=400.0, offsets=(0.6, 2.0))  # 0.1 below the lower edge (399.4)
    got = read_precursor(below)
    assert got.precursor_mz == pytest.approx(400.0) and got.selected_ion_mz == pytest.approx(399.3) and got.corrected
    got = read_precursor(_spectrum(2, 1.0, [(1.0, 1.0)]))
    assert got.precursor_mz is None and got.charge == 0 and not got.corrected


def test_run_with_two_ms1_scans_gives_empty_features_and_warning(tmp_path, caplog):
    path = _write(tmp_path / "short_R2.mzML", [*_ms1_scans(2, POS), _ms2(1.5, 400.0, POS)])
    with caplog.at_level(logging.INFO, logger="ms2study"):
        features = detect_features(path, "sampleR2")
    assert features.height == 0
    assert list(features.columns[: len(tables.FEATURES)]) == list(tables.FEATURES)
    assert all(features.schema[c] == t for c, t in tables.FEATURES.items())
    warned = [w for w in _warnings(caplog) if "short_R2.mzML" in w]
    assert len(warned) == 1 and "sampleR2" in warned[0] and "only 2 MS1 scan" in warned[0]
    spectra = extract_spectra(path, features, "sampleR2")
    assert spectra.height == 1 and spectra["feature_id"].to_list() == [None]
    assert spectra["precursor_mz"].to_list() == [pytest.approx(400.0)]


def test_short_run_through_the_cli_writes_empty_table(tmp_path, capsys):
    path = _write(tmp_path / "one_scan.mzML", [*_ms1_scans(1, POS), _ms2(0.5, 400.0, POS)])
    out = tmp_path / "res" / "features.parquet"
    rc = cli.main(["detect", "--mzml", str(path), "--sample-id", "S1", "--out", str(out),
                   "--ms1-out", str(tmp_path / "res" / "ms1_scans.parquet"),
                   "--params", json.dumps({"mass_error_ppm": 8})])
    assert rc == 0
    table = pl.read_parquet(out)
    assert table.height == 0 and list(table.columns[: len(tables.FEATURES)]) == list(tables.FEATURES)
    assert "Traceback" not in capsys.readouterr().err
    # its saved MS1 scans: none (nothing to gap-fill from), in the table's own types
    scans = pl.read_parquet(tmp_path / "res" / "ms1_scans.parquet")
    assert scans.height == 0 and scans.schema == pl.Schema(tables.MS1_SCANS)


def test_three_ms1_scans_run_detection(tmp_path, caplog):
    # At the limit pyOpenMS runs (no warning, no error); the short-run path is not taken.
    path = _write(tmp_path / "three.mzML", [*_ms1_scans(3, POS)])
    with caplog.at_level(logging.WARNING, logger="ms2study"):
        features = detect_features(path, "T")
    assert features.height == 0 and not _warnings(caplog)


def test_conform_fills_columns_added_later():
    old = pl.DataFrame(schema={c: t for c, t in tables.SPECTRA.items() if c not in tables.ADDED_LATER})
    old = pl.concat([old, pl.DataFrame({"spectrum_id": ["a"]}, schema_overrides={"spectrum_id": pl.Utf8})],
                    how="diagonal")
    got = tables.conform(old, tables.SPECTRA)
    assert list(got.columns) == list(tables.SPECTRA)
    assert got.schema["ion_mode"] == pl.Utf8 and got["ion_mode"].to_list() == [None]
    with pytest.raises(ValueError, match="rt_s"):
        tables.conform(old.drop("rt_s"), tables.SPECTRA)


def test_fragment_scans_of_another_ms_level_are_counted_and_said(tmp_path, caplog):
    # An ion-trap method writes MS3 scans among the MS2 (as mzXML from such instruments does): they are not
    # searched, and the spectra stage, its table's metadata and the report's notes say how many were left out.
    ms3 = _spectrum(3, 0.8, [(70.0, 100.0), (90.0, 200.0)], POS)
    scans = [*_ms1_scans(1, POS), _ms2(0.5, 300.1, POS), ms3, _ms2(0.9, 200.1, POS), _spectrum(3, 1.1, [(50.0, 1.0)])]
    path = _write(tmp_path / "iontrap_T3.mzML", scans)
    feats = tmp_path / "features.parquet"
    tables.empty(tables.FEATURES).write_parquet(feats)
    out = tmp_path / "spectra.parquet"
    with caplog.at_level(logging.INFO, logger="ms2study"):
        rc = cli.main(["spectra", "--mzml", str(path), "--features", str(feats), "--sample-id", "T3",
                       "--out", str(out)])
    assert rc == 0
    assert pl.read_parquet(out)["scan_index"].to_list() == [1, 3]
    warned = [w for w in _warnings(caplog) if "not used" in w]
    assert len(warned) == 1
    assert "iontrap_T3.mzML" in warned[0] and "'T3'" in warned[0] and "2 MS3 scans" in warned[0]

    from ms2study.reporting.collect import sample_stats, scan_warnings

    notes: list = []
    stats = sample_stats("T3", {"spectra": out}, notes)
    assert stats["unused_levels"] == {3: 2} and "without_fragments" not in stats
    scan_warnings([stats, {"sample_id": "T4"}], notes)
    said = [str(n) for n in notes if "another MS level" in str(n)]
    assert len(said) == 1 and "1 run(s) (T3)" in said[0] and "2 MS3 scans" in said[0]
    # A run with MS2 scans only carries no such metadata and no note.
    plain = _write(tmp_path / "plain.mzML", [*_ms1_scans(1, POS), _ms2(0.5, 300.1, POS)])
    caplog.clear()
    unused: dict[int, int] = {}
    with caplog.at_level(logging.INFO, logger="ms2study"):
        extract_spectra(plain, tables.empty(tables.FEATURES), "P", unused_levels=unused)
    assert unused == {} and not [w for w in _warnings(caplog) if "not used" in w]


def test_msms_scans_holding_only_the_precursor_are_counted_and_said(tmp_path, caplog):
    # As in a real TripleTOF excerpt (SiriusExport_1_input.mzML): MS/MS scans whose peaks all lie within 1.6 Da of
    # the precursor (the unfragmented ion) are emptied by the cleaning; one scan holds no peak at all.
    near = [(300.10, 5000.0), (300.6, 40.0)]
    blank = _ms2(0.8, 250.1, POS)
    blank.set_peaks((np.array([], dtype=np.float64), np.array([], dtype=np.float32)))
    scans = [*_ms1_scans(1, POS), _ms2(0.5, 300.1, POS, peaks=near), _ms2(0.6, 300.1, POS, peaks=near),
             _ms2(0.7, 200.1, POS), blank]
    path = _write(tmp_path / "tof_E1.mzML", scans)
    feats = tmp_path / "features.parquet"
    tables.empty(tables.FEATURES).write_parquet(feats)
    out = tmp_path / "spectra.parquet"
    with caplog.at_level(logging.INFO, logger="ms2study"):
        assert cli.main(["spectra", "--mzml", str(path), "--features", str(feats), "--sample-id", "E1",
                         "--out", str(out)]) == 0
    assert pl.read_parquet(out)["mz"].list.len().to_list() == [0, 0, 2, 0]
    warned = [w for w in _warnings(caplog) if "hold no fragment peak" in w]
    assert len(warned) == 1 and "tof_E1.mzML" in warned[0]
    assert "3 of 4 MS2 scans hold no fragment peak: 2 only peaks at or above the precursor" in warned[0]
    assert "1 no peak at all" in warned[0]

    from ms2study.reporting.collect import sample_stats, scan_warnings
    from ms2study.reporting.html import QUALITY, kind_of

    notes: list = []
    stats = sample_stats("E1", {"spectra": out}, notes)
    assert stats["without_fragments"] == 3 and stats["ms2_scans"] == 4 and "unused_levels" not in stats
    scan_warnings([stats], notes)
    said = [n for n in notes if "hold no fragment peak" in str(n)]
    assert len(said) == 1 and "3 MS/MS scans of 1 run(s) hold no fragment peak (E1 3 of 4)" in said[0]
    assert "In E1 that is half of the MS/MS or more" in said[0] and kind_of(said[0]) == QUALITY
    assert any(str(n).startswith("every run's MS/MS is positive-mode") for n in notes)  # trial AW: never said
