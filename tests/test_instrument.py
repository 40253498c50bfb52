"""A run's instrument from its mzML header, and the warning for time-of-flight data searched with an Orbitrap's
precursor window (a fresh user's trial, D1: two SCIEX TripleTOF 6600 runs searched at the 10 ppm defaults missed a
standard at -10.7 ppm, and nothing in the output said the data were time-of-flight). Tiny mzML files are written with
pyOpenMS here; the shared runs in ../shared/data/mzml are read when present."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pyopenms as oms
import pytest

from ms2study import cli
from ms2study.core.atomic import write_parquet
from ms2study.io.instrument import NOT_STATED, read_instrument
from ms2study.modelling.qc import chromatogram, chromatogram_metadata
from ms2study.modelling.runchecks import TOF_ADVISED_PPM, tolerance_note, window_ppm
from ms2study.reporting.html import DOUBT, kind_of
from ms2study.reporting.qc import qc_section

MZML = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "mzml"
A = oms.MassAnalyzer.AnalyzerType


def write_run(path: Path, model: str | None = None, analyzers: tuple = (), rt0: float = 10.0) -> Path:
    """A three-scan MS1 run whose header states ``model`` and ``analyzers`` (pyOpenMS types), or neither."""
    exp = oms.MSExperiment()
    for i in range(3):
        spec = oms.MSSpectrum()
        spec.setMSLevel(1)
        spec.setRT(rt0 + i)
        spec.set_peaks(([100.0, 200.0], [1e4, 2e4]))
        exp.addSpectrum(spec)
    instrument = exp.getInstrument()
    if model:
        instrument.setName(model)
    parts = []
    for order, kind in enumerate(analyzers):
        analyzer = oms.MassAnalyzer()
        analyzer.setType(kind)
        analyzer.setOrder(order + 2)
        parts.append(analyzer)
    if parts:
        instrument.setMassAnalyzers(parts)
    exp.setInstrument(instrument)
    oms.MzMLFile().store(str(path), exp)
    return path


def test_the_header_gives_model_and_analyzers_and_nothing_is_guessed(tmp_path: Path):
    qtof = read_instrument(write_run(tmp_path / "q.mzML", "TripleTOF 6600", (A.QUADRUPOLE, A.QUADRUPOLE, A.TOF)))
    assert qtof.model == "TripleTOF 6600" and qtof.analyzers == ("quadrupole", "quadrupole", "time-of-flight")
    assert qtof.time_of_flight and qtof.analyzers_text() == "quadrupole, quadrupole, time-of-flight"
    orbi = read_instrument(write_run(tmp_path / "o.mzML", "Q Exactive", (A.QUADRUPOLE, A.ORBITRAP)))
    assert orbi.analyzers == ("quadrupole", "orbitrap") and not orbi.time_of_flight
    # trial AC: converters write a Q Exactive's Orbitrap as FT-ICR; the analyzer stays as stated, with that said
    ft = read_instrument(write_run(tmp_path / "ft.mzML", "Q Exactive", (A.FOURIERTRANSFORM,)))
    assert ft.analyzers == ("fourier transform ion cyclotron resonance",)
    assert ft.analyzers_text() == ("fourier transform ion cyclotron resonance (as converters write an Orbitrap; the "
                                   "instrument's analyzer is an Orbitrap)")
    assert read_instrument(write_run(tmp_path / "icr.mzML", "solariX", (A.FOURIERTRANSFORM,))).analyzers_text() == (
        "fourier transform ion cyclotron resonance")
    # a model whose name says TOF, without an analyzer in the header: no analyzer, no time-of-flight (never guessed)
    named = read_instrument(write_run(tmp_path / "n.mzML", "TripleTOF 6600"))
    assert named.model == "TripleTOF 6600" and named.analyzers == () and not named.time_of_flight
    assert read_instrument(write_run(tmp_path / "bare.mzML")) == NOT_STATED  # the simulator's runs state neither
    assert read_instrument(tmp_path / "missing.mzML") == NOT_STATED
    (tmp_path / "run.raw").write_text("not a run")
    assert read_instrument(tmp_path / "run.raw") == NOT_STATED
    (tmp_path / "broken.mzML").write_text("<?xml version='1.0'?><mzML><run>")
    assert read_instrument(tmp_path / "broken.mzML") == NOT_STATED  # unreadable: unknown, never a failure


@pytest.mark.skipif(not MZML.is_dir(), reason="../shared/data/mzml (the shared test runs) is not present")
def test_the_shared_runs_state_their_instrument():
    agm = read_instrument(MZML / "AssayGeneratorMetabo_input.mzML")
    assert agm.model == "TripleTOF 6600" and agm.time_of_flight
    qc = read_instrument(MZML / "171103_PMA_TK_QC_04-4to5min.mzML")
    assert qc.model == "Q Exactive" and not qc.time_of_flight
    assert read_instrument(MZML / "SerumTest.mzML") == NOT_STATED


def test_tolerance_note_follows_the_config_readme_advice():
    low, high = TOF_ADVISED_PPM
    note = tolerance_note(True, 10.0)
    assert note and "±10 ppm" in note and f"{low:g}-{high:g} ppm" in note and "annotate.precursor_tolerance_ppm" in note
    assert "detect.mass_error_ppm" in note and "correct.adduct_mz_ppm" in note  # the seven keys, set together
    assert tolerance_note(True, low) is None and tolerance_note(True, 20.0) is None
    assert tolerance_note(False, 10.0) is None  # not time-of-flight (or not stated): nothing to say
    # a window in Da is compared at the run's median precursor m/z: 0.01 Da at m/z 300 is 33 ppm, 0.002 Da 6.7 ppm
    assert tolerance_note(True, 10.0, 0.01, 300.0) is None
    assert "6.7 ppm at the run's median precursor m/z 300.0" in tolerance_note(True, 10.0, 0.002, 300.0)
    assert tolerance_note(True, 10.0, 0.002, None) is None and window_ppm(10.0, 0.002, None) is None


def _stage(tmp_path: Path, runs: dict[str, Path], search: dict | None) -> pl.DataFrame:
    """The qc stage through its CLI on tiny per-run tables (40 s excerpts) of the given runs; the QC table."""
    paths: dict[str, list[str]] = {k: [] for k in ("chrom", "spec", "feat", "ann")}
    for s in runs:
        paths["chrom"].append(str(tmp_path / f"{s}_chrom.parquet"))
        write_parquet(chromatogram(np.linspace(430.0, 470.0, 41), np.full(41, 10.0), np.full(41, 2.0)),
                      paths["chrom"][-1], metadata=chromatogram_metadata(41, 2, 410.0))
        tables = (("spec", pl.DataFrame({"feature_id": [f"{s}:F1", None], "precursor_mz": [304.11, 294.13]})),
                  ("feat", pl.DataFrame({"feature_id": [f"{s}:F1"]})),
                  ("ann", pl.DataFrame({"rank": [1], "accepted": [True], "precursor_error_ppm": [-3.4]})))
        for key, frame in tables:
            paths[key].append(str(tmp_path / f"{s}_{key}.parquet"))
            frame.write_parquet(paths[key][-1])
    sheet = tmp_path / "samples.tsv"
    pl.DataFrame({"sample_id": list(runs), "file": [str(p) for p in runs.values()]}).write_csv(sheet, separator="\t")
    out = tmp_path / "qc.parquet"
    args = ["qc", "--samples", str(sheet), "--chromatograms", *paths["chrom"], "--spectra", *paths["spec"],
            "--features", *paths["feat"], "--annotations", *paths["ann"], "--runs", *map(str, runs.values()),
            "--out", str(out)]
    if search is not None:
        args += ["--search", json.dumps(search)]
    assert cli.main(args) == 0
    return pl.read_parquet(out)


def test_a_tof_study_searched_at_10_ppm_is_named_in_the_report(tmp_path: Path):
    runs = {"AGM": write_run(tmp_path / "agm.mzML", "TripleTOF 6600", (A.QUADRUPOLE, A.QUADRUPOLE, A.TOF)),
            "ORB": write_run(tmp_path / "orb.mzML", "Q Exactive", (A.QUADRUPOLE, A.ORBITRAP)),
            "SIM": write_run(tmp_path / "sim.mzML")}
    table = _stage(tmp_path, runs, {"precursor_tolerance_ppm": 10.0, "precursor_tolerance_da": None,
                                    "searched": True})
    assert table["instrument"].to_list() == ["TripleTOF 6600", "Q Exactive", None]
    assert table["mass_analyzers"].to_list() == ["quadrupole, quadrupole, time-of-flight", "quadrupole, orbitrap",
                                                 None]
    assert table["tolerance_note"][0].startswith("time-of-flight analyzer searched with a precursor window of ±10 ppm")
    assert table["tolerance_note"][1:].is_null().all()
    warnings: list[str] = []
    html = qc_section(tmp_path / "qc.parquet", [], list(runs), warnings)
    tof = [w for w in warnings if "time-of-flight data searched with a narrow" in w]
    assert len(tof) == 1 and kind_of(tof[0]) == DOUBT and "identifications" in tof[0].concerns
    assert ("AGM (TripleTOF 6600; mass analyzers quadrupole, quadrupole, time-of-flight, as their files state) "
            "searched with a precursor window of ±10 ppm") in tof[0]
    assert "ORB" not in tof[0] and "SIM" not in tof[0]
    assert ">instrument (as the file states)</th>" in html and "TripleTOF 6600" in html
    # wide enough, or no library searched: no note, no warning
    wide = _stage(tmp_path, runs, {"precursor_tolerance_ppm": 20.0, "searched": True})
    assert wide["tolerance_note"].is_null().all()
    unsearched = _stage(tmp_path, runs, {"precursor_tolerance_ppm": 10.0, "searched": False})
    assert unsearched["tolerance_note"].is_null().all()
    warnings = []
    qc_section(tmp_path / "qc.parquet", [], list(runs), warnings)
    assert not any("time-of-flight" in w for w in warnings)


def test_runs_that_state_no_instrument_show_no_instrument_column(tmp_path: Path):
    runs = {"S1": write_run(tmp_path / "s1.mzML"), "S2": write_run(tmp_path / "s2.mzML")}
    table = _stage(tmp_path, runs, {"precursor_tolerance_ppm": 10.0, "searched": True})
    assert table["instrument"].is_null().all() and table["tolerance_note"].is_null().all()
    html = qc_section(tmp_path / "qc.parquet", [], list(runs), [])
    assert "as the file states" not in html


def test_runs_of_several_instruments_are_a_caution_naming_each_with_its_runs(tmp_path: Path):
    """Trial AS: Q Exactive and TripleTOF runs in one study were linked and compared without a word."""
    from ms2study.reporting.runnotes import instrument_mix_warning

    runs = {"AGM": write_run(tmp_path / "agm.mzML", "TripleTOF 6600", (A.QUADRUPOLE, A.QUADRUPOLE, A.TOF)),
            "ORB": write_run(tmp_path / "orb.mzML", "Q Exactive", (A.QUADRUPOLE, A.ORBITRAP)),
            "ORC": write_run(tmp_path / "orc.mzML", "Q Exactive", (A.QUADRUPOLE, A.ORBITRAP)),
            "SIM": write_run(tmp_path / "sim.mzML")}
    _stage(tmp_path, runs, {"precursor_tolerance_ppm": 20.0, "searched": True})
    warnings: list[str] = []
    qc_section(tmp_path / "qc.parquet", [], list(runs), warnings)
    mixed = [w for w in warnings if "different instruments" in w]
    assert len(mixed) == 1 and kind_of(mixed[0]) == DOUBT and set(mixed[0].concerns) == {"differential", "models"}
    assert ("the runs come from 2 different instruments</b>, as their files state: Q Exactive (2 runs: ORB, ORC); "
            "TripleTOF 6600 (1 run: AGM); not stated (1 run: SIM)") in mixed[0]
    # one model (and runs stating nothing): no caution; models unstated but analyzers differing: named by analyzers
    qc = pl.DataFrame({"sample_id": ["A", "B", "C"], "instrument": ["Q Exactive", "Q Exactive", None],
                       "mass_analyzers": ["quadrupole, orbitrap"] * 2 + [None]})
    quiet: list[str] = []
    instrument_mix_warning(qc, quiet)
    assert quiet == []
    by_analyzer = qc.with_columns(pl.lit(None, dtype=pl.Utf8).alias("instrument"),
                                  pl.Series(["quadrupole, orbitrap", "quadrupole, time-of-flight", None])
                                  .alias("mass_analyzers"))
    instrument_mix_warning(by_analyzer, quiet)
    assert len(quiet) == 1 and "mass analyzers quadrupole, time-of-flight (1 run: B)" in quiet[0]
    instrument_mix_warning(qc.drop("instrument", "mass_analyzers"), quiet)
    assert len(quiet) == 1
