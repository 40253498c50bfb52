"""The RT spread flag (correction.rtspread): a feature whose apex RT wanders over the study samples may sum co-eluting
ions that the instrument does not resolve; pooled QCs repeat one mixture and cannot show it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from ms2study import cli
from ms2study.correction.matrix import correct_matrix
from ms2study.correction.rtspread import rt_spread, rt_spread_flags
from ms2study.reporting.whatdiffers import _feature_table, rt_spread_warning
from test_correct import make_study


def _links(rows: list[tuple[str, str, float]]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema={"consensus_id": pl.Utf8, "sample_id": pl.Utf8, "rt_aligned_s": pl.Float64},
                        orient="row")


def test_the_spread_is_taken_over_the_study_samples_only_with_the_central_piece_as_the_apex() -> None:
    rows = [("C1", f"S{i}", 100.0 + d) for i, d in enumerate([-1.0, 0.0, 1.0, -1.0, 1.0])]
    rows += [("C1", "QC1", 130.0), ("C1", "QC2", 70.0)]  # QCs are not study samples: ignored
    # a second piece of one trace in S0 (merge_split): the piece nearest the feature's median apex (100) stands for
    # it; a trial's small tail piece 15 s off, averaged in, moved a sample's apex by 7 s and flagged one compound
    rows += [("C1", "S0", 100.0)]
    rows += [("C2", f"S{i}", 50.0) for i in range(4)]  # four samples only: not judged at min 5
    samples = [f"S{i}" for i in range(5)]
    spread = rt_spread(_links(rows), ["C1", "C2", "C3"], samples, min_samples=5)
    expected = np.std([100.0, 100.0, 101.0, 99.0, 101.0], ddof=1)
    assert spread[0] == pytest.approx(expected)
    tail = rt_spread(_links(rows + [("C1", "S3", 115.0)]), ["C1"], samples, min_samples=5)
    assert tail[0] == pytest.approx(expected)
    # the same links in another row order give the same bits (the correct stage's output is compared byte by byte)
    shuffled = _links(rows).sample(fraction=1.0, shuffle=True, seed=3)
    assert rt_spread(shuffled, ["C1"], samples, min_samples=5)[0] == spread[0]
    assert np.isnan(spread[1]) and np.isnan(spread[2])
    assert rt_spread(_links(rows), ["C2"], samples, min_samples=4)[0] == 0.0
    with pytest.raises(ValueError, match="rt_aligned_s"):
        rt_spread(_links(rows).drop("rt_aligned_s"), ["C1"], samples)
    with pytest.raises(ValueError, match="at least 2"):
        rt_spread(_links(rows), ["C1"], samples, min_samples=1)


def test_flags_lie_above_ratio_times_the_median_and_ratio_zero_turns_them_off() -> None:
    spread = np.array([0.2, 0.3, 0.3, 0.4, 1.0, np.nan])
    flags, median, threshold = rt_spread_flags(spread, 3.0)
    assert median == pytest.approx(0.3) and threshold == pytest.approx(0.9)
    assert flags == [False, False, False, False, True, None]
    off, median_off, none = rt_spread_flags(spread, 0.0)
    assert off == [False] * 5 + [None] and median_off == pytest.approx(0.3) and none is None
    assert rt_spread_flags(np.full(3, np.nan), 3.0) == ([None] * 3, None, None)


def _apex(t: np.ndarray, peaks: list[tuple[float, float]], sd: float) -> float:
    """The apex time of a sum of Gaussian peaks (height, centre) of one width on the grid ``t``."""
    signal = sum(h * np.exp(-0.5 * ((t - c) / sd) ** 2) for h, c in peaks)
    return float(t[np.argmax(signal)])


def test_coeluting_ions_of_independent_levels_are_flagged_and_single_ions_are_not() -> None:
    """Known truth: features 0-19 are two unresolved ions 1.5-4 s apart (peak sd 1.5 s) whose levels vary
    independently over the samples (log sd 0.7) but are one mixture in every QC; the others are one ion each. Every
    apex carries detection jitter (sd 0.3 s). The flag must find the mixtures whose ions lie 2 peak sd or more
    apart and few single ions; closer pairs merge into one peak whose apex hardly moves, which is the flag's limit
    (the report says an unflagged feature is not shown to be one ion)."""
    study = make_study(n_features=200, n_blanks=0)
    roles = study["roles"]
    rng = np.random.default_rng(3)
    t = np.arange(0.0, 40.0, 0.02)
    rows = []
    for j, (sample, kind) in enumerate(zip(roles["sample_id"], roles["sample_type"], strict=True)):
        for i in range(200):
            if i < 20:
                gap = 1.5 + 2.5 * (i / 19)
                a, b = (1.0, 1.0) if kind == "qc" else np.exp(rng.normal(0, 0.7, 2))
                apex = _apex(t, [(a, 20.0), (b, 20.0 + gap)], 1.5)
            else:
                apex = 20.0
            rows.append((f"C{i + 1}", sample, 100.0 + i + apex + rng.normal(0, 0.3)))
    corrected = correct_matrix(study["matrix"], roles, {"adducts": False}, links=_links(rows))
    flag = corrected.matrix["rt_sd_flag"].to_numpy()
    gaps = 1.5 + 2.5 * np.arange(20) / 19
    assert flag[:20][gaps >= 3.0].mean() >= 0.9, flag[:20]
    assert flag[:20][gaps < 2.0].mean() <= 0.5
    assert flag[20:].mean() <= 0.02
    assert corrected.report["n_rt_sd_flagged"] == int(flag.sum())
    assert corrected.report["n_rt_sd_unassessed"] == 0
    assert corrected.report["rt_sd_threshold_s"] == pytest.approx(3 * corrected.report["rt_sd_median_s"], rel=1e-3)
    # the QCs alone would show nothing: their apexes of the mixtures do not move
    qcs = roles.filter(pl.col("sample_type") == "qc")["sample_id"].to_list()
    qc_spread = rt_spread(_links(rows), [f"C{i + 1}" for i in range(20)], qcs, min_samples=5)
    assert np.nanmax(qc_spread) < 0.6
    # without links nothing is judged
    plain = correct_matrix(study["matrix"], roles, {"adducts": False})
    assert plain.matrix["rt_sd_flag"].null_count() == plain.matrix.height
    assert plain.report["n_rt_sd_flagged"] == 0 and plain.report["rt_sd_median_s"] is None


def test_a_broad_single_peak_is_judged_against_its_width_and_a_mixture_still_flagged() -> None:
    """Known truth: features 0-19 are two unresolved ions 3-4 s apart (peak sd 1.5 s, FWHM 3.5 s) of independent
    levels; features 20-39 are single broad peaks (FWHM 20 s) whose apex jitters in proportion to their width
    (sd 1.7 s, the 0.3 s of a 3.5 s peak scaled); the rest are single sharp peaks. In seconds alone every broad
    peak is flagged (a fresh user's study); with the links' peak widths none is, and the mixtures still are."""
    from ms2study.correction.rtspread import peak_width

    study = make_study(n_features=200, n_blanks=0)
    roles = study["roles"]
    rng = np.random.default_rng(5)
    t = np.arange(0.0, 40.0, 0.02)
    rows = []
    for sample, kind in zip(roles["sample_id"], roles["sample_type"], strict=True):
        for i in range(200):
            if i < 20:
                a, b = (1.0, 1.0) if kind == "qc" else np.exp(rng.normal(0, 0.7, 2))
                apex, width, jitter = _apex(t, [(a, 20.0), (b, 23.0 + i / 19)], 1.5), 3.5, 0.3
            else:
                apex, width, jitter = (20.0, 20.0, 1.7) if i < 40 else (20.0, 3.5, 0.3)
            rows.append((f"C{i + 1}", sample, 100.0 + i + apex + rng.normal(0, jitter), width * rng.uniform(0.9, 1.1)))
    links = pl.DataFrame(rows, schema={"consensus_id": pl.Utf8, "sample_id": pl.Utf8, "rt_aligned_s": pl.Float64,
                                       "peak_width_s": pl.Float64}, orient="row")
    seconds_only = correct_matrix(study["matrix"], roles, {"adducts": False}, links=links.drop("peak_width_s"))
    assert seconds_only.matrix["rt_sd_flag"].to_numpy()[20:40].mean() >= 0.9  # the false alarm
    with_width = correct_matrix(study["matrix"], roles, {"adducts": False}, links=links)
    flag = with_width.matrix["rt_sd_flag"].to_numpy()
    assert flag[:20].mean() >= 0.9, flag[:20]
    assert flag[20:40].mean() <= 0.1, flag[20:40]
    assert flag[40:].mean() <= 0.02
    # the seconds threshold reported is the same: the width only withdraws flags of broad peaks, which are counted
    assert with_width.report["rt_sd_threshold_s"] == pytest.approx(seconds_only.report["rt_sd_threshold_s"])
    assert with_width.report["n_rt_sd_within_width"] == int(seconds_only.matrix["rt_sd_flag"].sum() - flag.sum())
    assert seconds_only.report["n_rt_sd_within_width"] == 0
    ids = ["C1", "C21", "C300"]
    samples = roles.filter(pl.col("sample_type") == "sample")["sample_id"].to_list()
    widths = peak_width(links, ids, samples)
    assert 3.1 < widths[0] < 3.9 and 18 < widths[1] < 22 and np.isnan(widths[2])
    assert np.isnan(peak_width(links.drop("peak_width_s"), ids, samples)).all()
    with pytest.raises(ValueError, match="shape"):
        rt_spread_flags(np.ones(3), 3.0, np.ones(2))


def test_the_cli_reads_the_links_and_writes_the_flag(tmp_path: Path) -> None:
    study = make_study(n_features=40, n_blanks=0)
    roles = study["roles"]
    matrix_path, sheet, links = tmp_path / "m.parquet", tmp_path / "samples.tsv", tmp_path / "links.parquet"
    study["matrix"].write_parquet(matrix_path)
    sheet.write_text("sample_id\tfile\tsample_type\tinjection_order\tbatch\n" + "".join(
        f"{s}\t{s}.mzML\t{t}\t{o}\t{b}\n" for s, t, o, b in roles.iter_rows()))
    rng = np.random.default_rng(0)
    rows = [(f"C{i + 1}", s, 60.0 + i + rng.normal(0, 3.0 if i == 0 else 0.3)) for s in roles["sample_id"]
            for i in range(40)]
    _links(rows).with_columns(feature_id=pl.lit("F")).write_parquet(links)
    out, record = tmp_path / "c.parquet", tmp_path / "correction.json"
    assert cli.main(["correct", "--feature-matrix", str(matrix_path), "--samples", str(sheet), "--links",
                     str(links), "--out", str(out), "--report-out", str(record), "--params",
                     '{"adducts": false}']) == 0
    flags = pl.read_parquet(out).select("consensus_id", "rt_sd_flag", "rt_sd_s")
    assert flags.filter(pl.col("rt_sd_flag"))["consensus_id"].to_list() == ["C1"]
    assert json.loads(record.read_text())["n_rt_sd_flagged"] == 1


def test_the_report_names_hits_whose_apex_wanders_and_marks_them_in_the_table() -> None:
    tested = pl.DataFrame({"consensus_id": ["C1", "C2", "C3"], "q_value": [0.01, 0.02, 0.5],
                           "p_value": [0.001, 0.002, 0.4], "log2_fold_change": [1.0, -1.0, 0.1],
                           "rt_sd_flag": [True, None, True]})
    warnings: list = []
    rt_spread_warning(tested, "group", warnings)
    assert len(warnings) == 1 and "1 of the 2 features at q &lt; 0.05" in str(warnings[0])
    assert "C1" in str(warnings[0]) and "C3" not in str(warnings[0])
    quiet: list = []
    rt_spread_warning(tested.with_columns(rt_sd_flag=pl.lit(False)), "group", quiet)
    rt_spread_warning(tested.drop("rt_sd_flag"), "group", quiet)
    assert quiet == []
    html = _feature_table(tested, {"type": "continuous"}, "log2_fold_change", "log2 FC", "t")
    assert "RT spread flag" in html and "yes" in html and "not judged" in html  # null: too few samples to judge
    assert "RT spread flag" not in _feature_table(tested.drop("rt_sd_flag"), {"type": "continuous"},
                                                  "log2_fold_change", "log2 FC", "t")


def test_the_batch_section_lists_the_flagged_features_and_says_which_another_flag_leaves_out() -> None:
    from ms2study.reporting.batch import rt_spread_table

    corrected = pl.DataFrame({"consensus_id": ["C1", "C2", "C3"], "mz": [100.0, 200.0, 300.0],
                              "rt_s": [10.0, 20.0, 30.0], "n_detected": [10, 12, 3], "rt_sd_s": [2.5, 0.3, None],
                              "rt_sd_flag": [True, False, None], "excluded": [True, False, False]})
    html = rt_spread_table(corrected)
    assert "Features whose apex RT wanders" in html and "C1" in html and "C2" not in html and "C3" not in html
    assert "left out by another flag" in html
    assert rt_spread_table(corrected.with_columns(rt_sd_flag=pl.lit(False))) == ""


def test_a_median_spread_of_zero_does_not_flag_every_feature_that_moves() -> None:
    """Apexes on whole scans can give a median spread of 0; the threshold then rests on MIN_MEDIAN_S."""
    from ms2study.correction.rtspread import MIN_MEDIAN_S

    spread = np.array([0.0] * 10 + [0.2, 0.5])
    flags, median, threshold = rt_spread_flags(spread, 3.0)
    assert median == 0.0 and threshold == pytest.approx(3 * MIN_MEDIAN_S)
    assert flags == [False] * 10 + [False, True]


def test_the_flag_reaches_the_differential_table_from_the_raw_matrix_too(tmp_path: Path) -> None:
    """correct: use_corrected false: the differential reads the raw matrix, and the flag comes from the flags file."""
    from ms2study.modelling.outcomes import read_model_matrix

    raw = pl.DataFrame({"consensus_id": ["C1", "C2"], "mz": [100.0, 200.0], "rt_s": [10.0, 20.0],
                        "n_detected": [3, 3], "S1": [1.0, 2.0]})
    flags = raw.select("consensus_id").with_columns(excluded=pl.Series([False, True]),
                                                    rt_sd_flag=pl.Series([True, False]))
    raw.write_parquet(tmp_path / "raw.parquet")
    flags.write_parquet(tmp_path / "corrected.parquet")
    matrix, note = read_model_matrix(tmp_path / "raw.parquet", tmp_path / "corrected.parquet")
    assert matrix["consensus_id"].to_list() == ["C1"] and matrix["rt_sd_flag"].to_list() == [True]
    assert "1 of 2 consensus features are flagged" in note


def test_the_batch_text_says_plainly_when_no_feature_is_flagged() -> None:
    from ms2study.reporting.qcrsd import rt_spread_part

    record = {"rt_sd_median_s": 0.24, "rt_sd_threshold_s": 0.73, "n_rt_sd_flagged": 0, "n_rt_sd_unassessed": 1}
    text = rt_spread_part(record, 3.0)
    assert "no feature varies more than 3x that (0.73 s)" in text and "listed below" not in text
    broad = rt_spread_part(record | {"n_rt_sd_within_width": 2}, 3.0)
    assert "2 more features above 0.73 s are not flagged: measured against their peak width" in broad
    assert "not flagged: measured" not in text
    assert "<b>2</b> features vary more than 3x" in rt_spread_part(record | {"n_rt_sd_flagged": 2}, 3.0)
    assert rt_spread_part({}, 3.0) == ""
