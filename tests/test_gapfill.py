"""Gap filling (ms2study.correction.gapfill, ms2study.stages.gapfill) against the real detect and link output of a small
simulated study: the re-quantification reproduces detected intensities, cells blanked out of the matrix are filled
back with their detected values (by area, and by apex height scaled by the feature's area per height), a window
without signal stays null, and a peak seen only by its top is filled at its whole area through its height."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from ms2study import cli
from ms2study.core import tables
from ms2study.core.errors import InputError
from ms2study.core.params import schema_defaults
from ms2study.correction.gapfill import DETECT_KEYS, Ms1Scans, area_per_height, height_scaled, quantify, raw_rt
from ms2study.io.msio import load_experiment, ms1_experiment
from ms2study.simulate.study import simulate_study
from ms2study.stages.detect import detect_features
from ms2study.stages.gapfill import alignment_line, gap_fill_sample, read_area_per_height
from ms2study.stages.link import link_features_full

SAMPLES = ["S01", "S02", "S03"]


@pytest.fixture(scope="module")
def linked(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A 3-sample demo study, detected and linked in-process (no Snakemake): files, matrix, alignment."""
    root = tmp_path_factory.mktemp("gapfill_study")
    simulate_study(root, n_samples=len(SAMPLES), seed=11)
    mzml = {s: root / "mzml" / f"{s}.mzML" for s in SAMPLES}
    features = {s: detect_features(mzml[s], s) for s in SAMPLES}
    result = link_features_full(features, SAMPLES[0])
    return {"root": root, "mzml": mzml, "matrix": result.matrix, "alignment": result.alignment,
            "links": result.links, "features": features}


def _quant() -> dict:
    detect = schema_defaults("detect")
    return {k: detect[k] for k in DETECT_KEYS}


def test_inverse_alignment_maps_back_to_the_raw_axis() -> None:
    raw = np.array([10.0, 250.0, 600.0])
    slope, intercept = 1.02, -4.5
    assert np.allclose(raw_rt(slope * raw + intercept, slope, intercept), raw)
    with pytest.raises(ValueError):
        raw_rt(raw, 0.0, 1.0)


def test_scans_read_back_from_their_table_as_written() -> None:
    """``Ms1Scans.from_frame`` (flat arrays split per scan) gives the scans ``to_frame`` wrote, in RT order, an
    empty scan included; an empty table gives no scans; lists of unequal length are refused."""
    scans = Ms1Scans(np.array([2.0, 1.0, 3.0]), [np.array([1.0, 2.0]), np.array([]), np.array([3.0])],
                     [np.array([5.0, 6.0]), np.array([]), np.array([7.0])])
    back = Ms1Scans.from_frame(scans.to_frame())
    assert back.rt.tolist() == [1.0, 2.0, 3.0]
    assert [m.tolist() for m in back.mz] == [[], [1.0, 2.0], [3.0]]
    assert [i.tolist() for i in back.intensity] == [[], [5.0, 6.0], [7.0]]
    assert len(Ms1Scans.from_frame(scans.to_frame().head(0))) == 0
    broken = pl.DataFrame({"rt_s": [1.0], "mz": [[1.0, 2.0]], "intensity": [[5.0]]}, schema=tables.MS1_SCANS)
    with pytest.raises(ValueError, match="differ in length"):
        Ms1Scans.from_frame(broken)


def test_requantified_detected_features_agree_with_their_detected_intensity(linked: dict) -> None:
    """The filler quantifies like detect: at the consensus position (mapped back to each run), the features a run
    did detect come out at their detected intensity (median relative difference well under 20%)."""
    matrix, alignment = linked["matrix"], linked["alignment"]
    errors = []
    for s in SAMPLES:
        slope, intercept = alignment_line(alignment, s)
        detected = matrix.filter(pl.col(s).is_not_null())
        targets = detected.select("consensus_id", "mz").with_columns(
            rt_raw_s=pl.Series(raw_rt(detected["rt_s"].to_numpy(), slope, intercept)))
        scans = Ms1Scans.from_experiment(ms1_experiment(load_experiment(linked["mzml"][s], s)))
        found = quantify(scans, targets, 10.0, 10.0, _quant())
        assert found["consensus_id"].to_list() == targets["consensus_id"].to_list()
        ratio = found["intensity"].to_numpy() / detected[s].to_numpy()
        assert np.isfinite(ratio).mean() > 0.95, s
        errors.append(np.abs(ratio[np.isfinite(ratio)] - 1.0))
    assert detected.height > 100
    assert float(np.median(np.concatenate(errors))) < 0.2


def test_cells_blanked_out_of_the_matrix_are_filled_with_their_detected_values(linked: dict) -> None:
    matrix, alignment = linked["matrix"], linked["alignment"]
    sample = "S02"
    detected = matrix.filter(pl.col(sample).is_not_null())["consensus_id"].to_list()
    blanked = set(detected[::5])  # every fifth detected feature "missed"
    original = dict(zip(matrix["consensus_id"], matrix[sample], strict=True))
    holed = matrix.with_columns(
        pl.when(pl.col("consensus_id").is_in(list(blanked))).then(None).otherwise(pl.col(sample)).alias(sample))
    out = gap_fill_sample(linked["mzml"][sample], sample, holed, alignment)

    assert list(out.columns) == list(tables.GAP_FILLED)
    assert out.schema == pl.Schema(tables.GAP_FILLED)
    null_before = set(holed.filter(pl.col(sample).is_null())["consensus_id"].to_list())
    assert set(out["consensus_id"].to_list()) == null_before  # one row per null cell, nothing else
    assert (out["sample_id"] == sample).all()
    refilled = out.filter(pl.col("consensus_id").is_in(list(blanked)))
    assert refilled["intensity"].is_not_null().mean() > 0.9
    rel = [abs(v / original[c] - 1.0) for c, v in zip(refilled["consensus_id"], refilled["intensity"], strict=True)
           if v is not None]
    assert np.median(rel) < 0.3
    ok = refilled.filter(pl.col("intensity").is_not_null())
    assert (ok["n_scans"] >= 3).all() and ok["rt_raw_s"].is_not_null().all()
    # the apex lies in the sample's own time axis near the consensus position mapped back
    slope, intercept = alignment_line(alignment, sample)
    expected = raw_rt(holed.filter(pl.col("consensus_id").is_in(ok["consensus_id"].to_list()))
                      .sort(pl.col("consensus_id").cast(pl.Utf8))["rt_s"].to_numpy(), slope, intercept)
    got = ok.sort(pl.col("consensus_id").cast(pl.Utf8))["rt_raw_s"].to_numpy()
    assert np.all(np.abs(got - expected) <= 10.0)


def test_a_window_without_signal_stays_null(linked: dict) -> None:
    matrix, alignment = linked["matrix"], linked["alignment"]
    ghost = matrix.head(1).with_columns(consensus_id=pl.lit("C_ghost"), mz=pl.lit(987.6543),
                                        rt_s=pl.lit(300.0), **{s: pl.lit(None, dtype=pl.Float64) for s in SAMPLES})
    out = gap_fill_sample(linked["mzml"]["S01"], "S01", pl.concat([matrix, ghost]), alignment)
    row = out.filter(pl.col("consensus_id") == "C_ghost")
    assert row.height == 1
    assert row["intensity"][0] is None and row["rt_raw_s"][0] is None and row["n_scans"][0] == 0


def test_cli_writes_the_table_and_refuses_a_run_the_matrix_lacks(linked: dict, tmp_path) -> None:
    matrix_path, alignment_path = tmp_path / "feature_matrix.parquet", tmp_path / "alignment.parquet"
    linked["matrix"].write_parquet(matrix_path)
    linked["alignment"].write_parquet(alignment_path)
    out = tmp_path / "gap_filled" / "S03.parquet"
    code = cli.main(["gapfill", "--mzml", str(linked["mzml"]["S03"]), "--sample-id", "S03", "--feature-matrix",
                     str(matrix_path), "--alignment", str(alignment_path), "--out", str(out),
                     "--params", '{"gap_fill_rt_s": 8.0}', "--detect-params", '{"chrom_fwhm_s": 5.0}'])
    assert code == 0
    table = pl.read_parquet(out)
    assert table.height == linked["matrix"]["S03"].null_count()
    assert not list(tmp_path.rglob("*.tmp"))
    with pytest.raises(InputError, match="no column for this sample"):
        gap_fill_sample(linked["mzml"]["S03"], "S99", linked["matrix"], linked["alignment"])
    with pytest.raises(InputError, match="alignment table has 0 rows"):
        gap_fill_sample(linked["mzml"]["S03"], "S03", linked["matrix"],
                        linked["alignment"].filter(pl.col("sample_id") != "S03"))
    with pytest.raises(InputError, match="unknown correct"):
        gap_fill_sample(linked["mzml"]["S03"], "S03", linked["matrix"], linked["alignment"], {"gap_fill_ppm": 5})
    assert cli.main(["gapfill", "--mzml", str(linked["mzml"]["S03"]), "--sample-id", "S03", "--feature-matrix",
                     str(matrix_path), "--alignment", str(alignment_path), "--out", str(out),
                     "--detect-params", "[1]"]) == 1


def test_the_scans_detect_saves_fill_gaps_exactly_as_the_mzml_does(linked: dict, tmp_path, capsys) -> None:
    """detect --ms1-out saves the centroided MS1 scans feature detection used; gap filling every run from them in one
    process (--sample-ids, the pipeline's job) gives the tables gap filling from each run's mzML gives. A run whose
    saved scans are missing is named."""
    matrix_path, alignment_path = tmp_path / "feature_matrix.parquet", tmp_path / "alignment.parquet"
    linked["matrix"].write_parquet(matrix_path)
    linked["alignment"].write_parquet(alignment_path)
    for s in SAMPLES:
        assert cli.main(["detect", "--mzml", str(linked["mzml"][s]), "--sample-id", s,
                         "--out", str(tmp_path / s / "features.parquet"),
                         "--ms1-out", str(tmp_path / s / "ms1_scans.parquet")]) == 0
        saved = pl.read_parquet(tmp_path / s / "ms1_scans.parquet")
        assert saved.schema == pl.Schema(tables.MS1_SCANS) and saved.height > 100
        assert saved["rt_s"].is_sorted() and all(np.all(np.diff(m) >= 0) for m in saved["mz"].head(20).to_list())
    common = ["--feature-matrix", str(matrix_path), "--alignment", str(alignment_path)]
    assert cli.main(["gapfill", "--sample-ids", *SAMPLES, "--ms1-scans", str(tmp_path / "{sample}" / "ms1_scans.parquet"),
                     *common, "--out", str(tmp_path / "{sample}" / "gap_filled.parquet")]) == 0
    filled = 0
    for s in SAMPLES:
        from_scans = pl.read_parquet(tmp_path / s / "gap_filled.parquet")
        from_mzml = gap_fill_sample(linked["mzml"][s], s, linked["matrix"], linked["alignment"])
        assert from_scans.equals(from_mzml), s
        assert from_scans.height == linked["matrix"][s].null_count()
        filled += from_scans["intensity"].is_not_null().sum()
    assert filled > 0  # the comparison covers re-quantified values, not only nulls
    (tmp_path / "S02" / "ms1_scans.parquet").unlink()
    for s in SAMPLES:
        (tmp_path / s / "gap_filled.parquet").unlink()
    capsys.readouterr()
    assert cli.main(["gapfill", "--sample-ids", *SAMPLES, "--ms1-scans", str(tmp_path / "{sample}" / "ms1_scans.parquet"),
                     *common, "--out", str(tmp_path / "{sample}" / "gap_filled.parquet")]) == 1
    error = capsys.readouterr().err
    assert "ms1_scans" in error and "S02" in error and "ms2study detect" in error, error
    assert not list(tmp_path.glob("*/gap_filled.parquet"))  # checked before any run was written
    # one source of scans, not two
    assert cli.main(["gapfill", "--sample-id", "S01", "--mzml", str(linked["mzml"]["S01"]), "--ms1-scans",
                     str(tmp_path / "S01" / "ms1_scans.parquet"), *common, "--out", str(tmp_path / "y.parquet")]) == 1


def test_a_peak_the_run_detected_for_another_consensus_feature_is_not_filled_again(linked: dict) -> None:
    """A consensus feature 4 s from a detected one at the same m/z (a shoulder seen in other runs): in a run that
    missed it, the filler would find the neighbour's peak and count it twice; that value is left out (fresh-user
    finding: 185 of 2,224 filled values of a spike-in study were a neighbour's detected peak)."""
    matrix, alignment, sample = linked["matrix"], linked["alignment"], "S02"
    detected = matrix.filter(pl.col(sample).is_not_null() & (pl.col(sample) > 1e5)).sort("consensus_id").head(5)
    shoulders = detected.with_columns(consensus_id=pl.format("{}_shoulder", pl.col("consensus_id")),
                                      rt_s=pl.col("rt_s") + 4.0, **{sample: pl.lit(None, dtype=pl.Float64)})
    out = gap_fill_sample(linked["mzml"][sample], sample, pl.concat([matrix, shoulders]), alignment)
    got = out.filter(pl.col("consensus_id").str.ends_with("_shoulder"))
    assert got.height == 5 and got["intensity"].is_null().all()
    # without the detected neighbours in the matrix the same windows are filled: the peak is there, and it is the
    # neighbour's detected intensity that marks it as taken
    alone = matrix.filter(~pl.col("consensus_id").is_in(detected["consensus_id"].to_list()))
    refilled = gap_fill_sample(linked["mzml"][sample], sample, pl.concat([alone, shoulders]), alignment)
    assert refilled.filter(pl.col("consensus_id").str.ends_with("_shoulder"))["intensity"].is_not_null().sum() >= 4


def _gaussian_scans(apex: float, floor: float, mz: float = 300.0, sigma_s: float = 4.0) -> Ms1Scans:
    """MS1 scans every 0.5 s holding one Gaussian elution peak at ``mz`` (apex ``apex`` at 100 s); points below
    ``floor`` are absent, as centroids under a detector's floor are."""
    rt = np.arange(60.0, 140.0, 0.5)
    inten = apex * np.exp(-0.5 * ((rt - 100.0) / sigma_s) ** 2)
    keep = [np.array([mz]) if v >= floor else np.array([]) for v in inten]
    return Ms1Scans(rt, keep, [np.array([v]) if v >= floor else np.array([]) for v in inten])


def test_a_peak_seen_only_by_its_top_is_filled_at_its_whole_area_through_its_height() -> None:
    """A weak peak of which only the top scans rise above the floor: its area is a fraction of the peak's, its apex
    is the peak's apex, so height x the area per height of the same peak seen whole gives the whole area."""
    target = pl.DataFrame({"consensus_id": ["C1"], "mz": [300.0], "rt_raw_s": [100.0]})
    whole = quantify(_gaussian_scans(1e4, 1.0), target, 10.0, 10.0, _quant())
    top = quantify(_gaussian_scans(1e4, 8.5e3), target, 10.0, 10.0, _quant())
    area, height = whole["intensity"][0], whole["height"][0]
    assert area > 0 and 0.8e4 < height <= 1e4
    assert top["n_scans"][0] < whole["n_scans"][0] / 2
    assert top["intensity"][0] < 0.6 * area  # the top's area misses much of the peak
    ratios = pl.DataFrame({"consensus_id": ["C1"], "area_per_height": [area / height]})
    filled, kept = height_scaled(top, ratios)
    assert kept == 0
    assert filled["intensity"][0] == pytest.approx(area, rel=0.15)
    assert filled["area"][0] == top["intensity"][0] and filled["height"][0] == top["height"][0]
    # without a ratio for the feature the area stays the value, and is counted
    filled, kept = height_scaled(top, ratios.with_columns(consensus_id=pl.lit("C2")))
    assert kept == 1 and filled["intensity"][0] == top["intensity"][0]


def test_area_per_height_is_the_median_over_the_runs_that_detected_the_feature() -> None:
    links = pl.DataFrame({"consensus_id": ["C1", "C1", "C1", "C2", "C3"],
                          "feature_id": ["A:F1", "B:F1", "C:F1", "A:F2", "B:F2"]})
    features = pl.DataFrame({"feature_id": ["A:F1", "B:F1", "C:F1", "A:F2", "B:F2"],
                             "intensity": [10.0, 30.0, 8.0, 5.0, 7.0], "height": [2.0, 3.0, 2.0, 0.0, None]})
    got = area_per_height(links, features)
    assert got["consensus_id"].to_list() == ["C1"]  # C2: height 0, C3: no height
    assert got["area_per_height"][0] == pytest.approx(5.0) and got["n_runs"][0] == 3


def test_filled_by_height_the_blanked_cells_come_back_at_their_detected_values(linked: dict, tmp_path) -> None:
    """Cells blanked out of a run's column, filled by apex height x the feature's area per height in the runs that
    detected it, come back at their detected values; the CLI reads the ratio from the links and features tables."""
    matrix, alignment, sample = linked["matrix"], linked["alignment"], "S02"
    blanked = matrix.filter(pl.col(sample).is_not_null())["consensus_id"].to_list()[::5]
    original = dict(zip(matrix["consensus_id"], matrix[sample], strict=True))
    holed = matrix.with_columns(
        pl.when(pl.col("consensus_id").is_in(blanked)).then(None).otherwise(pl.col(sample)).alias(sample))
    others = [s for s in SAMPLES if s != sample]  # the ratio from the other runs only: the blanked cells are missed
    links = linked["links"].filter(pl.col("sample_id").is_in(others))
    ratios = area_per_height(links, pl.concat([linked["features"][s] for s in others], how="diagonal_relaxed"))
    out = gap_fill_sample(linked["mzml"][sample], sample, holed, alignment, ratios=ratios)
    refilled = out.filter(pl.col("consensus_id").is_in(blanked) & pl.col("intensity").is_not_null())
    assert refilled.height > 0.9 * len(blanked)
    rel = np.array([v / original[c] - 1.0 for c, v in zip(refilled["consensus_id"], refilled["intensity"],
                                                           strict=True)])
    assert np.median(np.abs(rel)) < 0.1
    assert (refilled["area"] != refilled["intensity"]).mean() > 0.9  # the value is the scaled height, not the area
    assert refilled["height"].is_not_null().all()
    # the CLI: the same values from the tables the pipeline writes
    for s in SAMPLES:
        linked["features"][s].write_parquet(tmp_path / f"{s}.features.parquet")
    links.write_parquet(tmp_path / "links.parquet")
    holed.write_parquet(tmp_path / "matrix.parquet")
    alignment.write_parquet(tmp_path / "alignment.parquet")
    read = read_area_per_height(tmp_path / "links.parquet", str(tmp_path / "{sample}.features.parquet"))
    assert read.equals(ratios)
    assert cli.main(["gapfill", "--mzml", str(linked["mzml"][sample]), "--sample-id", sample, "--feature-matrix",
                     str(tmp_path / "matrix.parquet"), "--alignment", str(tmp_path / "alignment.parquet"),
                     "--out", str(tmp_path / "out.parquet"), "--feature-links", str(tmp_path / "links.parquet"),
                     "--features", str(tmp_path / "{sample}.features.parquet")]) == 0
    assert pl.read_parquet(tmp_path / "out.parquet").equals(tables.conform(out, tables.GAP_FILLED))
    with pytest.raises(InputError, match="together"):
        read_area_per_height(tmp_path / "links.parquet", None)
    (tmp_path / "S03.features.parquet").unlink()
    with pytest.raises(InputError, match="features table missing"):
        read_area_per_height(tmp_path / "links.parquet", str(tmp_path / "{sample}.features.parquet"))


def test_a_fill_whose_peak_lies_nearer_a_feature_the_run_detected_is_left_out(linked: dict) -> None:
    """A consensus feature 6 s from a detected one at the same m/z whose detected value is a piece of the peak (half
    the area: detection split the peak): the filler finds the whole peak, whose apex is the detected feature's, not
    this one's; the intensity rule cannot see it, the apex rule leaves it out (a fresh user's realistic study: such
    fills read 1.7-3.9x the truth)."""
    matrix, alignment, sample = linked["matrix"], linked["alignment"], "S02"
    detected = matrix.filter(pl.col(sample).is_not_null() & (pl.col(sample) > 1e5)).sort("consensus_id").head(5)
    pieces = matrix.with_columns(pl.when(pl.col("consensus_id").is_in(detected["consensus_id"].to_list()))
                                 .then(pl.col(sample) * 0.5).otherwise(pl.col(sample)).alias(sample))
    shoulders = detected.with_columns(consensus_id=pl.format("{}_shoulder", pl.col("consensus_id")),
                                      rt_s=pl.col("rt_s") + 6.0, **{sample: pl.lit(None, dtype=pl.Float64)})
    out = gap_fill_sample(linked["mzml"][sample], sample, pl.concat([pieces, shoulders]), alignment)
    got = out.filter(pl.col("consensus_id").str.ends_with("_shoulder"))
    assert got.height == 5 and got["intensity"].is_null().all()
    assert got["rt_raw_s"].is_not_null().sum() >= 4  # a peak was found each time: it is left out, not missed


def test_a_fill_whose_peak_lies_nearer_another_consensus_feature_is_left_out_even_when_both_were_missed(
        linked: dict) -> None:
    """A consensus feature 6 s from another at the same m/z (a sub-feature detected in a few runs) in a run that
    detected neither: the peak in the window is the other feature's, whose own fill takes it; the sub-feature's
    fill is left out instead of reading the main peak (realistic simulated study: such fills read 2.2x the truth
    when only detected features could claim a peak)."""
    matrix, alignment, sample = linked["matrix"], linked["alignment"], "S02"
    main = matrix.filter(pl.col(sample).is_not_null() & (pl.col(sample) > 1e5)).sort("consensus_id").head(5)
    ids = main["consensus_id"].to_list()
    missed = matrix.with_columns(pl.when(pl.col("consensus_id").is_in(ids)).then(None).otherwise(pl.col(sample))
                                 .alias(sample))
    subs = main.with_columns(consensus_id=pl.format("{}_sub", pl.col("consensus_id")), rt_s=pl.col("rt_s") + 6.0,
                             **{sample: pl.lit(None, dtype=pl.Float64)})
    out = gap_fill_sample(linked["mzml"][sample], sample, pl.concat([missed, subs]), alignment)
    got = out.filter(pl.col("consensus_id").str.ends_with("_sub"))
    assert got.height == 5 and got["intensity"].is_null().all()
    assert got["rt_raw_s"].is_not_null().sum() >= 4  # the peak was found, and left to its own feature
    mains = out.filter(pl.col("consensus_id").is_in(ids))
    original = dict(zip(main["consensus_id"], main[sample], strict=True))
    rel = [v / original[c] - 1.0 for c, v in zip(mains["consensus_id"], mains["intensity"], strict=True)
           if v is not None]
    assert len(rel) >= 4 and np.median(np.abs(rel)) < 0.1
    # without the main features in the matrix, the sub-features' windows are filled with the main peaks
    alone = gap_fill_sample(linked["mzml"][sample], sample,
                            pl.concat([missed.filter(~pl.col("consensus_id").is_in(ids)), subs]), alignment)
    assert alone.filter(pl.col("consensus_id").str.ends_with("_sub"))["intensity"].is_not_null().sum() >= 4


def test_a_flat_background_ion_is_filled_from_its_signal_and_sparse_noise_is_not() -> None:
    """Trial AT: an ion at ~30,000 counts in every scan was detected as a peak in 6 cases and 1 control; the fill found
    no elution peak in the other controls, and their half-minimum fill made a 13-fold "hit" (q 0.01) that led the
    feature-matrix model. The signal is there: it is filled from it, as peers fill a region whatever its shape."""
    rng = np.random.default_rng(3)
    rt = np.arange(200.0, 300.0, 0.5)
    level = 2e4 * (1.0 + 0.02 * rng.standard_normal(rt.size))  # flat: the elution peak detector finds no peak in it
    present = rng.random(rt.size) < 0.8  # the centroid missing from some scans, as in the real run
    flat = Ms1Scans(rt, [np.array([686.202]) if k else np.array([]) for k in present],
                    [np.array([v]) if k else np.array([]) for v, k in zip(level, present)])
    target = pl.DataFrame({"consensus_id": ["C1"], "mz": [686.202], "rt_raw_s": [251.0]})
    found = quantify(flat, target, 10.0, 10.0, _quant())
    window = (np.abs(rt - 251.0) <= 10.0) & present
    assert found["n_scans"][0] == int(window.sum()) and found["height"][0] == pytest.approx(level[window].max())
    assert found["intensity"][0] == pytest.approx(np.trapezoid(level[window], rt[window]))
    # two chance centroids in the window: no signal, the cell stays null (half-minimum: below detection)
    sparse = np.zeros(rt.size, dtype=bool)
    sparse[[100, 104]] = True
    noise = Ms1Scans(rt, [np.array([686.202]) if k else np.array([]) for k in sparse],
                     [np.array([5e3]) if k else np.array([]) for k in sparse])
    assert quantify(noise, target, 10.0, 10.0, _quant())["intensity"][0] is None
