"""detect / spectra / link on real public runs from ../shared/data/mzml (skipped when absent).

The reference answer is MZmine's aligned feature list for the two QC injections (120 features).
Floors below sit a few points under what the defaults measured on these files (noted per test), so a
regression shows while small numeric changes in pyOpenMS do not.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from ms2study.stages.detect import detect_features
from ms2study.stages.link import link_features_full
from ms2study.io.msio import is_profile, load_experiment
from ms2study.stages.spectra import extract_spectra

MZML = Path(__file__).resolve().parents[2] / "shared" / "data" / "mzml"
pytestmark = pytest.mark.skipif(not MZML.is_dir(), reason=f"real data not available: {MZML} does not exist")

QC = {"QC04": "171103_PMA_TK_QC_04-4to5min.mzML", "QC05": "171103_PMA_TK_QC_05-4to5min.mzML"}
PPM, RT_TOL_S = 10.0, 6.0  # matching rule against MZmine: 10 ppm and 0.1 min


@pytest.fixture(scope="module")
def mzmine() -> pl.DataFrame:
    """MZmine's per-file m/z and RT (seconds) of each aligned feature; null where MZmine did not detect it."""
    raw = pl.read_csv(MZML / "171103_PMA_TK_QC_expected_mzmine_features.csv", infer_schema_length=0)
    cols = {}
    for sample, name in QC.items():
        p = f"datafile:{name}:"
        detected = pl.col(p + "feature_state") == "DETECTED"
        cols[f"mz_{sample}"] = pl.when(detected).then(pl.col(p + "mz").cast(pl.Float64))
        cols[f"rt_{sample}"] = pl.when(detected).then(pl.col(p + "rt").cast(pl.Float64) * 60)
    return raw.select(mz=pl.col("mz").cast(pl.Float64), rt=pl.col("rt").cast(pl.Float64) * 60, **cols)


@pytest.fixture(scope="module")
def qc_features() -> dict[str, pl.DataFrame]:
    return {s: detect_features(MZML / f, s) for s, f in QC.items()}


def _matched(targets: np.ndarray, mz: np.ndarray, rt: np.ndarray) -> np.ndarray:
    """For each (m/z, RT) target: is there a point within PPM and RT_TOL_S?"""
    return np.array(
        [
            bool(np.any((np.abs(mz - t_mz) / t_mz * 1e6 <= PPM) & (np.abs(rt - t_rt) <= RT_TOL_S)))
            for t_mz, t_rt in targets
        ]
    )


def test_qc_features_overlap_mzmine(qc_features, mzmine):
    # Measured with the defaults: 117/120 in each run (97.5 %); we also find many more, weaker features.
    for sample, df in qc_features.items():
        ref = mzmine.select(f"mz_{sample}", f"rt_{sample}").drop_nulls().to_numpy()
        hit = _matched(ref, df["mz"].to_numpy(), df["rt_s"].to_numpy())
        frac = hit.mean()
        print(f"{sample}: {df.height} features; {hit.sum()}/{len(ref)} MZmine features matched ({frac:.1%})")
        assert frac >= 0.90
        assert (df["rt_start_s"] <= df["rt_s"]).all() and (df["rt_s"] <= df["rt_end_s"]).all()


def test_qc_runs_are_linked_like_mzmine(qc_features, mzmine):
    res = link_features_full(qc_features, "QC04")
    m = res.matrix
    both = m.filter(pl.col("n_detected") == 2)
    ref = mzmine.filter(pl.col("mz_QC04").is_not_null() & pl.col("mz_QC05").is_not_null())
    hit = _matched(ref.select("mz", "rt").to_numpy(), both["mz"].to_numpy(), both["rt_s"].to_numpy())
    print(
        f"linked: {m.height} consensus features, {both.height} in both runs; "
        f"{hit.sum()}/{ref.height} of MZmine's aligned features linked ({hit.mean():.1%})"
    )
    print(res.alignment)
    # Measured: 115/120 (95.8 %).
    assert hit.mean() >= 0.88
    # Two injections of one QC sample minutes apart: the fitted alignment moves no feature by more than 2 s.
    qc05 = res.alignment.filter(pl.col("sample_id") == "QC05").row(0, named=True)
    assert qc05["model"] == "linear" and qc05["rt_shift_max_abs_s"] < 2.0


def test_qc_ms2_scans_map_to_features(qc_features, mzmine):
    spectra = extract_spectra(MZML / QC["QC04"], qc_features["QC04"], "QC04")
    mapped = spectra["feature_id"].is_not_null().mean()
    print(f"QC04: {spectra.height} MS2 scans, {mapped:.1%} mapped to features")
    assert spectra.height == 381  # the README's count
    assert mapped >= 0.80  # measured 90.6 %
    assert spectra["feature_id"].drop_nulls().is_in(qc_features["QC04"]["feature_id"].implode()).all()


@pytest.mark.parametrize(
    "name", ["FeatureFinderMetaboIdent_1_input.mzML", "gc_orbi_profile_21scans.mzML", "SerumTest.mzML"]
)
def test_profile_files_are_centroided_and_yield_features(name):
    assert is_profile(load_experiment(MZML / name, "p"))
    df = detect_features(MZML / name, "p")
    raw = detect_features(MZML / name, "p", {"centroid": "never"})
    print(f"{name}: {df.height} features after centroiding, {raw.height} without")
    assert df.height >= (2 if name == "SerumTest.mzML" else 50)  # measured 151 / 95 / 2 (SerumTest spans 0.05 Da)
    # centroided features are narrow in m/z (profile points would give hulls tens of ppm wide)
    assert (((df["mz_max"] - df["mz_min"]) / df["mz"] * 1e6) < 30).mean() > 0.9


@pytest.mark.parametrize(
    "name", ["FeatureFinderMetabo_1_input.mzML", "FeatureFinderMetabo_2_input.mzML", "FeatureFindingMetabo_input1.mzML"]
)
def test_centroided_ms1_only_files(name):
    assert not is_profile(load_experiment(MZML / name, "c"))
    df = detect_features(MZML / name, "c")
    assert df.height >= 20  # measured 139 / 26 / 77
    assert extract_spectra(MZML / name, df, "c").height == 0


def test_tripletof_dda_maps_ms2_scans():
    name = "AssayGeneratorMetabo_input.mzML"
    df = detect_features(MZML / name, "T")
    spectra = extract_spectra(MZML / name, df, "T")
    mapped = spectra["feature_id"].is_not_null().mean()
    print(f"{name}: {df.height} features, {spectra.height} MS2 scans, {mapped:.1%} mapped")
    assert spectra.height == 213
    # measured 133/213 (62 %; 117 with detect's earlier 3 s minimum trace length): 46 MS1 scans, many precursors
    # below the noise threshold
    assert mapped >= 0.55
    # a scan whose cleaning leaves no peak (1-10 raw peaks, those near the precursor removed) stays, empty, mapped or
    # not: 1 of the 133 mapped (4 of the 80 others)
    assert (spectra.filter(pl.col("feature_id").is_not_null())["mz"].list.len() > 0).mean() > 0.95
    sirius = extract_spectra(
        MZML / "SiriusExport_1_input.mzML", detect_features(MZML / "SiriusExport_1_input.mzML", "X"), "X"
    )
    assert sirius.height == 10 and sirius["feature_id"].is_not_null().sum() >= 4  # measured 5


def _split_pairs(matrix: pl.DataFrame) -> int:
    """Consensus features found in QC04 only with a partner within 10 ppm found in QC05 only: one ion put into two
    consensus features, each missing in the other injection."""
    only4 = matrix.filter(pl.col("QC04").is_not_null() & pl.col("QC05").is_null())["mz"].to_numpy()
    only5 = np.sort(matrix.filter(pl.col("QC05").is_not_null() & pl.col("QC04").is_null())["mz"].to_numpy())
    if not only5.size:
        return 0
    at = np.clip(np.searchsorted(only5, only4), 1, only5.size - 1)
    nearest = np.minimum(np.abs(only5[at] - only4), np.abs(only5[at - 1] - only4))
    return int((nearest <= only4 * 1e-5).sum())


def test_flat_background_ions_of_two_injections_are_one_consensus_feature(qc_features, mzmine):
    # The excerpts hold many ions present all 60 s long (a plateau with no stable apex): the feature finder puts
    # their apex tens of seconds apart in the two injections of the same QC sample, so linking on apex RT alone
    # splits each into a QC04-only and a QC05-only consensus feature; MZmine's list has none of these ions (it
    # keeps 120 chromatographic peaks). Measured: 417 such pairs without merge_split (3,204 consensus features),
    # 179 with it (2,967; 194 and 3,025 before a run could hold two touching pieces of one joined trace). Most of
    # the rest are noise bumps on a trace present all minute, detected at unrelated times in the two runs (gap
    # filling re-quantifies each in the other run): not solved by joining consensus features.
    split = link_features_full(qc_features, "QC04", {"merge_split": False}).matrix
    joined = link_features_full(qc_features, "QC04").matrix
    assert _split_pairs(split) >= 300
    assert _split_pairs(joined) <= 0.6 * _split_pairs(split)
    # the chromatographic peaks MZmine aligned are linked as before
    ref = mzmine.drop_nulls(["mz_QC04", "mz_QC05"])
    both = joined.filter(pl.col("QC04").is_not_null() & pl.col("QC05").is_not_null())
    hit = _matched(ref.select("mz", "rt").to_numpy(), both["mz"].to_numpy(), both["rt_s"].to_numpy())
    assert hit.mean() >= 0.88
