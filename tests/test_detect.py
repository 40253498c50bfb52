"""Feature detection (ms2study.stages.detect) and run loading (ms2study.io.msio) on synthetic pyOpenMS runs.

``make_run`` builds a small LC-MS/MS run: Gaussian elution profiles of compounds with 13C isotope
traces, optional profile-mode peaks, and DDA-like MS2 scans. test_spectra and test_link reuse it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl
import pyopenms as oms
import pytest

from ms2study import cli
from ms2study.core import tables
from ms2study.core.errors import InputError
from ms2study.io.msio import features_to_featuremap, is_profile, load_experiment
from ms2study.modelling.qc import read_chromatogram_summary
from ms2study.stages.detect import DEFAULT_PARAMS, detect_features

C13 = 1.0033548
PROTON = 1.007276


@dataclass
class Compound:
    mz: float
    rt_s: float
    height: float
    sigma_s: float = 2.0


@dataclass
class MS2Scan:
    precursor_mz: float | None
    rt_s: float
    fragments: list[tuple[float, float]] = field(default_factory=lambda: [(60.05, 300.0), (85.03, 1000.0)])


def default_compounds(n: int = 12, seed: int = 7, rt_shift: float = 0.0) -> list[Compound]:
    """``n`` compounds spread over m/z 150..800 and RT 20..100 s (well separated, deterministic)."""
    rng = np.random.default_rng(seed)
    mzs = np.sort(rng.uniform(150, 800, n)).round(4)
    rts = rng.permutation(np.linspace(20, 100, n))
    heights = rng.uniform(2e5, 2e6, n)
    return [Compound(float(m), float(r) + rt_shift, float(h)) for m, r, h in zip(mzs, rts, heights, strict=True)]


def _isotopes(mz: float) -> list[tuple[float, float]]:
    # Carbon count from mass (about 1 C per 14 Da) gives a plausible metabolite 13C pattern.
    n_c = max(1.0, (mz - PROTON) / 14.0 * 0.9)
    r1 = n_c * 0.0107
    return [(mz, 1.0), (mz + C13, r1), (mz + 2 * C13, r1 * r1 / 2)]


def make_run(
    compounds: list[Compound],
    ms2: list[MS2Scan] = (),
    *,
    profile: bool = False,
    declare_type: bool = True,
    rt_end_s: float = 120.0,
    cycle_s: float = 0.5,
    noise: bool = True,
    seed: int = 1,
) -> oms.MSExperiment:
    """An MSExperiment with MS1 scans every ``cycle_s`` and each MS2 scan inserted after the MS1 scan before it."""
    rng = np.random.default_rng(seed)
    exp = oms.MSExperiment()
    ms2 = sorted(ms2, key=lambda s: s.rt_s)
    k = 0
    native = 0
    for rt in np.arange(0.0, rt_end_s, cycle_s):
        peaks: list[tuple[float, float]] = []
        for c in compounds:
            elution = c.height * np.exp(-0.5 * ((rt - c.rt_s) / c.sigma_s) ** 2)
            if elution < 50:
                continue
            for mz, ratio in _isotopes(c.mz):
                # a little m/z scatter, as real centroids have (about 1 ppm)
                peaks.append((mz * (1 + rng.normal(0, 1e-6)), elution * ratio))
        if noise:  # low chemical noise, below the default detection threshold
            for mz in rng.uniform(100, 900, 20):
                peaks.append((float(mz), float(rng.uniform(50, 400))))
        spec = oms.MSSpectrum()
        spec.setRT(float(rt))
        spec.setMSLevel(1)
        native += 1
        spec.setNativeID(f"scan={native}")
        if profile:
            mz_arr, int_arr = _profile(peaks)
            spec.setType(
                oms.SpectrumSettings.SpectrumType.PROFILE if declare_type else oms.SpectrumSettings.SpectrumType.UNKNOWN
            )
        else:
            peaks.sort()
            mz_arr = np.array([p[0] for p in peaks], dtype=np.float64)
            int_arr = np.array([p[1] for p in peaks], dtype=np.float32)
            spec.setType(
                oms.SpectrumSettings.SpectrumType.CENTROID
                if declare_type
                else oms.SpectrumSettings.SpectrumType.UNKNOWN
            )
        spec.set_peaks((mz_arr, int_arr))
        exp.addSpectrum(spec)
        while k < len(ms2) and ms2[k].rt_s < rt + cycle_s:
            s = ms2[k]
            k += 1
            m = oms.MSSpectrum()
            m.setRT(float(max(s.rt_s, rt + 1e-3)))
            m.setMSLevel(2)
            native += 1
            m.setNativeID(f"scan={native}")
            m.setType(oms.SpectrumSettings.SpectrumType.CENTROID)
            frags = list(s.fragments)
            if s.precursor_mz is not None:
                p = oms.Precursor()
                p.setMZ(s.precursor_mz)
                p.setCharge(1)
                m.setPrecursors([p])
                frags.append((s.precursor_mz, 5000.0))  # the unfragmented precursor, to be cleaned away
            frags.sort()
            m.set_peaks((np.array([f[0] for f in frags]), np.array([f[1] for f in frags], dtype=np.float32)))
            exp.addSpectrum(m)
    return exp


def _profile(peaks: list[tuple[float, float]], resolution: float = 60000.0) -> tuple[np.ndarray, np.ndarray]:
    """Render centroids as Gaussian profile peaks sampled every ~sigma/3 (Orbitrap-like)."""
    mzs, ints = [], []
    for mz, inten in peaks:
        sigma = mz / resolution / 2.355
        x = mz + np.arange(-4, 4.01, 1 / 3) * sigma
        mzs.append(x)
        ints.append(inten * np.exp(-0.5 * ((x - mz) / sigma) ** 2))
    mz_arr = np.concatenate(mzs)
    int_arr = np.concatenate(ints)
    order = np.argsort(mz_arr)
    return mz_arr[order], int_arr[order].astype(np.float32)


def write_run(exp: oms.MSExperiment, path: Path) -> Path:
    if path.suffix.lower() == ".mzxml":
        oms.MzXMLFile().store(str(path), exp)
    else:
        oms.MzMLFile().store(str(path), exp)
    return path


def assert_found(df: pl.DataFrame, compounds: list[Compound], ppm: float = 5.0, rt_tol: float = 2.0) -> None:
    for c in compounds:
        hit = df.filter(((pl.col("mz") - c.mz).abs() / c.mz * 1e6 <= ppm) & ((pl.col("rt_s") - c.rt_s).abs() <= rt_tol))
        assert hit.height == 1, f"compound m/z {c.mz} rt {c.rt_s}: {hit.height} features"


@pytest.fixture(scope="module")
def compounds() -> list[Compound]:
    return default_compounds()


@pytest.fixture(scope="module")
def centroid_file(tmp_path_factory, compounds) -> Path:
    return write_run(make_run(compounds), tmp_path_factory.mktemp("c") / "run.mzML")


def test_centroid_run_features_found_with_hulls(centroid_file, compounds):
    df = detect_features(centroid_file, "S1")
    assert list(df.columns[: len(tables.FEATURES)]) == list(tables.FEATURES)
    assert df.schema["charge"] == pl.Int32 and df.schema["intensity"] == pl.Float64
    assert_found(df, compounds)
    # The noise lies below the intensity threshold: nothing but the compounds is found.
    assert df.height == len(compounds)
    # ids in ascending m/z, hulls enclose the apex, isotopes grouped with charge 1
    assert df["feature_id"].to_list() == [f"S1:F{i}" for i in range(1, df.height + 1)]
    assert df["mz"].is_sorted()
    assert (df["rt_start_s"] < df["rt_s"]).all() and (df["rt_s"] < df["rt_end_s"]).all()
    assert (df["mz_min"] <= df["mz"]).all() and (df["mz"] <= df["mz_max"]).all()
    assert ((df["mz_max"] - df["mz_min"]) / df["mz"] * 1e6 < 20).all()
    assert (df["n_isotopes"] >= 2).sum() >= len(compounds) - 2
    assert (df.filter(pl.col("n_isotopes") >= 2)["charge"] == 1).all()
    # a 2 s sigma peak spans several sigma: the hull is at least ~6 s wide
    assert ((df["rt_end_s"] - df["rt_start_s"]) > 6).all()
    # deterministic: the same input gives the same table
    assert detect_features(centroid_file, "S1").equals(df)


def test_profile_run_is_centroided(tmp_path, compounds):
    exp = make_run(compounds, profile=True, declare_type=False)
    path = write_run(exp, tmp_path / "profile.mzML")
    loaded = load_experiment(path, "P1")
    assert is_profile(loaded), "undeclared profile data must be recognised from the peak spacing"
    df = detect_features(path, "P1")
    assert_found(df, compounds)
    assert df.height == len(compounds)
    # Without centroiding every profile point is its own centroid: the result is not the compounds.
    raw = detect_features(path, "P1", {"centroid": "never"})
    assert raw.height != len(compounds) or not raw["mz"].equals(df["mz"])


def test_is_profile_on_centroid_data(centroid_file, tmp_path, compounds):
    assert not is_profile(load_experiment(centroid_file, "S1"))
    undeclared = write_run(make_run(compounds, declare_type=False), tmp_path / "undeclared.mzML")
    assert not is_profile(load_experiment(undeclared, "S1"))


def test_mzxml_is_read(tmp_path, compounds):
    path = write_run(make_run(compounds[:4]), tmp_path / "run.mzXML")
    df = detect_features(path, "X1")
    assert_found(df, compounds[:4])


def test_missing_file_names_file_and_sample(tmp_path):
    missing = tmp_path / "nowhere_A7.mzML"
    with pytest.raises(InputError) as err:
        detect_features(missing, "sampleA7")
    assert "nowhere_A7.mzML" in str(err.value) and "sampleA7" in str(err.value)


def test_corrupt_file_names_file_and_sample(tmp_path, centroid_file):
    bad = tmp_path / "broken_B2.mzML"
    bad.write_bytes(centroid_file.read_bytes()[:5000])  # truncated mid-file
    with pytest.raises(InputError) as err:
        detect_features(bad, "sampleB2")
    text = str(err.value)
    assert "broken_B2.mzML" in text and "sampleB2" in text and "convert the run again" in text
    garbage = tmp_path / "garbage.mzML"
    garbage.write_text("this is not XML")
    with pytest.raises(InputError, match=r"garbage\.mzML"):
        detect_features(garbage, "s")


def test_unsupported_extension_and_no_ms1(tmp_path, compounds):
    raw = tmp_path / "run.raw"
    raw.write_bytes(b"\x00\x01")
    with pytest.raises(InputError, match=r"unsupported file type.*msconvert"):
        load_experiment(raw, "s")
    only_ms2 = oms.MSExperiment()
    spec = oms.MSSpectrum()
    spec.setMSLevel(2)
    spec.setRT(10.0)
    spec.set_peaks((np.array([100.0, 200.0]), np.array([1.0, 2.0], dtype=np.float32)))
    only_ms2.addSpectrum(spec)
    path = write_run(only_ms2, tmp_path / "ms2only_C3.mzML")
    with pytest.raises(InputError) as err:
        detect_features(path, "sampleC3")
    assert "no MS1" in str(err.value) and "ms2only_C3.mzML" in str(err.value) and "sampleC3" in str(err.value)


def test_unknown_or_bad_parameter(centroid_file):
    with pytest.raises(InputError, match="mass_error_pmm"):
        detect_features(centroid_file, "S1", {"mass_error_pmm": 5})
    with pytest.raises(InputError, match="centroid"):
        detect_features(centroid_file, "S1", {"centroid": "sometimes"})


def test_parameters_take_effect(centroid_file, compounds):
    # A trace needs an apex above chrom_peak_snr x noise_threshold_int, and enough scans above the
    # threshold to be min_trace_length_s long: compounds below the cut vanish, those well above stay.
    heights = sorted(c.height for c in compounds)
    cut = (heights[2] + heights[3]) / 2
    df = detect_features(centroid_file, "S1", {"noise_threshold_int": cut, "chrom_peak_snr": 1.0,
                                               "min_trace_length_s": 3.0})
    assert_found(df, [c for c in compounds if c.height > 2 * cut])
    assert df.height <= len(compounds) - 3
    for c in compounds:
        if c.height < cut:
            assert ((df["mz"] - c.mz).abs() / c.mz * 1e6 > 5).all()
    # a shorter min_trace_length_s keeps the compounds just above the cut, whose part above it lasts under 3 s
    short = detect_features(centroid_file, "S1", {"noise_threshold_int": cut, "chrom_peak_snr": 1.0,
                                                  "min_trace_length_s": 1.5})
    near = [c for c in compounds if cut < c.height < 1.3 * cut]
    assert near and all(((df["mz"] - c.mz).abs() / c.mz * 1e6 > 5).all() for c in near)
    assert_found(short, near)
    # remove_single_traces keeps only features with an isotope trace
    multi = detect_features(centroid_file, "S1", {"remove_single_traces": True})
    assert (multi["n_isotopes"] >= 2).all()


def test_run_with_only_noise_gives_empty_table(tmp_path):
    path = write_run(make_run([]), tmp_path / "blank.mzML")
    df = detect_features(path, "blank")
    assert df.height == 0 and list(df.columns[: len(tables.FEATURES)]) == list(tables.FEATURES)


def test_features_to_featuremap_roundtrip(centroid_file):
    df = detect_features(centroid_file, "S1")
    fmap = features_to_featuremap(df)
    assert fmap.size() == df.height
    got = sorted((f.getMetaValue("feature_id"), round(f.getMZ(), 6), round(f.getRT(), 3)) for f in fmap)
    want = sorted(zip(df["feature_id"], df["mz"].round(6), df["rt_s"].round(3), strict=True))
    assert got == want


def test_cli_writes_parquet_atomically(centroid_file, tmp_path, capsys):
    out = tmp_path / "res" / "features.parquet"
    rc = cli.main(
        [
            "detect",
            "--mzml",
            str(centroid_file),
            "--sample-id",
            "S1",
            "--out",
            str(out),
            "--params",
            json.dumps({"mass_error_ppm": 8}),
        ]
    )
    assert rc == 0
    assert pl.read_parquet(out).equals(detect_features(centroid_file, "S1", {"mass_error_ppm": 8}))
    assert [p.name for p in out.parent.iterdir()] == ["features.parquet"]
    bad = tmp_path / "res2" / "features.parquet"
    rc = cli.main(["detect", "--mzml", str(tmp_path / "absent.mzML"), "--sample-id", "S9", "--out", str(bad)])
    assert rc == 1 and not bad.exists()
    assert "absent.mzML" in capsys.readouterr().err


def test_cli_writes_the_runs_chromatogram_beside_unchanged_features(centroid_file, tmp_path):
    out = tmp_path / "res" / "features.parquet"
    chrom_out = tmp_path / "res" / "chromatogram.parquet"
    rc = cli.main(["detect", "--mzml", str(centroid_file), "--sample-id", "S1", "--out", str(out),
                   "--chromatogram-out", str(chrom_out)])
    assert rc == 0
    assert pl.read_parquet(out).equals(detect_features(centroid_file, "S1"))  # the chromatogram changes nothing
    exp = load_experiment(centroid_file, "S1")
    ms1 = [s for s in exp if s.getMSLevel() == 1]
    chrom = pl.read_parquet(chrom_out)
    assert chrom.columns == ["rt_s", "tic", "bpc"] and chrom.height == len(ms1) <= 2000
    assert np.allclose(chrom["rt_s"].to_numpy(), [s.getRT() for s in ms1])
    assert np.allclose(chrom["tic"].to_numpy(), [s.get_peaks()[1].sum() for s in ms1])
    assert np.allclose(chrom["bpc"].to_numpy(), [s.get_peaks()[1].max() for s in ms1])
    summary = read_chromatogram_summary(str(chrom_out))
    assert summary["n_ms1_scans"] == len(ms1) and summary["n_ms2_scans"] == sum(s.getMSLevel() == 2 for s in exp)
    assert summary["tic_total"] == pytest.approx(chrom["tic"].sum())


def test_default_params_are_json_plain():
    # The lead copies DEFAULT_PARAMS into config.yaml: they must be plain JSON/YAML values.
    assert json.loads(json.dumps(DEFAULT_PARAMS)) == DEFAULT_PARAMS


def test_lone_compound_in_sparse_run_is_found(tmp_path):
    # Scans left empty by the noise threshold used to make OpenMS reject the trace (low sample rate).
    lone = [Compound(330.9766, 60.0, 1e6)]
    path = write_run(make_run(lone, noise=False), tmp_path / "sparse.mzML")
    df = detect_features(path, "L1")
    assert_found(df, lone)
    assert df.height == 1 and df["mz"][0] > 300
