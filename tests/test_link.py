"""Alignment onto a reference run and linking into the feature matrix (ms2study.stages.link)."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
from test_detect import Compound, default_compounds, make_run, write_run

from ms2study import cli
from ms2study.core import tables
from ms2study.stages.detect import detect_features
from ms2study.core.errors import InputError
from ms2study.stages.link import ALIGNMENT, DEFAULT_PARAMS, LINKS, link_features, link_features_full


def feature_table(sample: str, mz, rt, intensity=None) -> pl.DataFrame:
    """A features table as detect writes it, for points (mz, rt)."""
    mz, rt = np.asarray(mz, dtype=float), np.asarray(rt, dtype=float)
    intensity = np.full(mz.size, 1e5) if intensity is None else np.asarray(intensity, dtype=float)
    df = pl.DataFrame(
        {
            "feature_id": [f"{sample}:F{i + 1}" for i in range(mz.size)],
            "sample_id": [sample] * mz.size,
            "mz": mz,
            "rt_s": rt,
            "rt_start_s": rt - 5,
            "rt_end_s": rt + 5,
            "mz_min": mz - 1e-4,
            "mz_max": mz + 1e-4,
            "intensity": intensity,
            "charge": [1] * mz.size,
            "n_isotopes": [2] * mz.size,
            "quality": [1.0] * mz.size,
        }
    )
    return tables.conform(df, tables.FEATURES)


@pytest.fixture(scope="module")
def shifted_tables():
    """60 shared features; B runs 1.5 % slower and 12 s later (a linear drift), plus 5 features each of its own."""
    rng = np.random.default_rng(3)
    mz = np.sort(rng.uniform(100, 900, 60))
    rt = rng.uniform(60, 600, 60)
    own_a = (rng.uniform(100, 900, 5), rng.uniform(60, 600, 5))
    own_b = (rng.uniform(100, 900, 5), rng.uniform(60, 600, 5))
    rt_b = rt * 1.015 + 12.0 + rng.normal(0, 0.3, 60)
    a = feature_table("A", np.r_[mz, own_a[0]], np.r_[rt, own_a[1]], rng.uniform(1e4, 1e6, 65))
    b = feature_table("B", np.r_[mz * (1 + 2e-6), own_b[0]], np.r_[rt_b, own_b[1]], rng.uniform(1e4, 1e6, 65))
    return a, b, mz, rt


def test_shifted_tables_are_aligned_and_linked(shifted_tables):
    a, b, mz, rt = shifted_tables
    res = link_features_full({"A": a, "B": b}, "A")
    m = res.matrix
    assert list(m.columns) == [*tables.FEATURE_MATRIX_KEYS, "A", "B"]
    assert dict(m.schema) == {**tables.FEATURE_MATRIX_KEYS, "A": pl.Float64, "B": pl.Float64}
    both = m.filter(pl.col("n_detected") == 2)
    assert both.height == 60, "every shared feature is linked across the two runs"
    assert m.height == 70
    # consensus RT on the reference's axis, intensities are the tables' values
    for x, y in zip(mz, rt, strict=True):
        row = both.filter((pl.col("mz") - x).abs() < 0.01)
        assert row.height == 1 and row["rt_s"][0] == pytest.approx(y, abs=1.5)
        assert row["A"][0] == a.filter((pl.col("mz") - x).abs() < 1e-6)["intensity"][0]
    # ids C1..Cn in ascending m/z
    assert m["consensus_id"].to_list() == [f"C{i}" for i in range(1, 71)] and m["mz"].is_sorted()
    al = res.alignment
    assert dict(al.schema) == ALIGNMENT and al["sample_id"].to_list() == ["A", "B"]
    b_row = al.row(1, named=True)
    assert b_row["model"] == "linear" and b_row["n_pairs"] >= 50
    # B's RT = 1.015 rt + 12, so the fit back onto A is rt / 1.015 - 11.8
    assert b_row["slope"] == pytest.approx(1 / 1.015, abs=0.003)
    assert b_row["intercept"] == pytest.approx(-12 / 1.015, abs=1.5)
    # residuals after alignment: B's RT noise (sd 0.3 s) over its 60 features shared with the reference
    assert b_row["n_shared_with_reference"] == 60 and 0.05 < b_row["rt_residual_median_abs_s"] < 0.6
    assert al.row(0, named=True)["rt_residual_median_abs_s"] == 0.0
    assert al.row(0, named=True)["n_shared_with_reference"] == 65
    # the links table names, per consensus feature, the original feature ids
    assert dict(res.links.schema) == LINKS and res.links.height == 130
    assert set(res.links["feature_id"]) == set(a["feature_id"]) | set(b["feature_id"])


def test_without_alignment_the_drift_breaks_linking(shifted_tables):
    a, b, _, _ = shifted_tables
    # The same data with alignment off: the 12-20 s drift exceeds rt_tol, few features link.
    m = link_features({"A": a, "B": b}, "A", {"align": False})
    assert m.filter(pl.col("n_detected") == 2).height < 20


def test_detected_runs_shifted_in_time_are_linked(tmp_path):
    """Two synthetic runs through detect: B elutes 6 s later; shared compounds link, own compounds stay alone."""
    shared = default_compounds(24, seed=11)
    own_a = [Compound(611.2345, 40.0, 8e5)]
    own_b = [Compound(233.0987, 70.0, 8e5)]
    shifted = [Compound(c.mz, c.rt_s + 6.0, c.height * 0.8) for c in shared]
    pa = write_run(make_run(shared + own_a, rt_end_s=125, seed=1), tmp_path / "A.mzML")
    pb = write_run(make_run(shifted + own_b, rt_end_s=125, seed=2), tmp_path / "B.mzML")
    fa, fb = detect_features(pa, "A"), detect_features(pb, "B")
    res = link_features_full({"B": fb, "A": fa}, "A")  # dict order decides column order, not the reference
    m = res.matrix
    assert list(m.columns[-2:]) == ["B", "A"]
    for c in shared:
        row = m.filter((pl.col("mz") - c.mz).abs() / c.mz * 1e6 < 5)
        assert row.height == 1, f"m/z {c.mz}: {row.height} consensus features"
        assert row["n_detected"][0] == 2 and row["rt_s"][0] == pytest.approx(c.rt_s, abs=1.5)
    for c, present, absent in ((own_a[0], "A", "B"), (own_b[0], "B", "A")):
        row = m.filter((pl.col("mz") - c.mz).abs() / c.mz * 1e6 < 5)
        assert row.height == 1 and row[present][0] is not None and row[absent][0] is None
    b_row = res.alignment.filter(pl.col("sample_id") == "B").row(0, named=True)
    assert b_row["rt_shift_median_s"] == pytest.approx(-6.0, abs=1.0)


def test_empty_sample_single_sample_and_errors(shifted_tables):
    a, b, _, _ = shifted_tables
    empty = a.clear()
    m = link_features({"A": a, "E": empty, "B": b}, "A")
    assert list(m.columns[-3:]) == ["A", "E", "B"] and m["E"].null_count() == m.height
    assert m.filter(pl.col("n_detected") == 2).height == 60
    # the reference alone: one consensus feature per feature
    alone = link_features({"A": a}, "A")
    assert alone.height == a.height and alone["A"].null_count() == 0 and (alone["n_detected"] == 1).all()
    # one non-empty sample beside an empty reference
    m2 = link_features({"E": empty, "B": b}, "E")
    assert m2.height == b.height and m2["E"].null_count() == b.height
    # maps too small for pose clustering: no alignment (identity), still linked on raw RT
    tiny = link_features_full({"A": feature_table("A", [100.0], [10.0]), "B": feature_table("B", [100.0], [12.0])}, "A")
    assert tiny.alignment["model"].to_list() == ["reference", "identity"]
    assert tiny.matrix.height == 1 and tiny.matrix["n_detected"][0] == 2
    nothing = link_features({"E": empty}, "E")
    assert nothing.height == 0 and list(nothing.columns) == [*tables.FEATURE_MATRIX_KEYS, "E"]
    with pytest.raises(InputError, match="reference sample 'Z'"):
        link_features({"A": a}, "Z")
    with pytest.raises(InputError, match="rt_tolerance"):
        link_features({"A": a}, "A", {"rt_tolerance": 5})
    with pytest.raises(InputError, match="clash"):
        link_features({"mz": a}, "mz")


def test_deterministic(shifted_tables):
    a, b, _, _ = shifted_tables
    assert link_features({"A": a, "B": b}, "A").equals(link_features({"A": a, "B": b}, "A"))


def test_cli_writes_matrix_alignment_and_links(shifted_tables, tmp_path, capsys):
    a, b, _, _ = shifted_tables
    pa, pb = tmp_path / "a.parquet", tmp_path / "b.parquet"
    a.write_parquet(pa)
    b.write_parquet(pb)
    out = tmp_path / "study" / "feature_matrix.parquet"
    rc = cli.main(
        [
            "link",
            "--features",
            str(pa),
            str(pb),
            "--sample-ids",
            "A",
            "B",
            "--reference",
            "A",
            "--out",
            str(out),
            "--params",
            json.dumps({"rt_tol_s": 8}),
        ]
    )
    assert rc == 0
    assert pl.read_parquet(out).equals(link_features({"A": a, "B": b}, "A", {"rt_tol_s": 8}))
    assert pl.read_parquet(out.with_name("alignment.parquet")).height == 2
    assert pl.read_parquet(out.with_name("feature_links.parquet")).height == 130
    rc = cli.main(["link", "--features", str(pa), "--sample-ids", "A", "B", "--reference", "A", "--out", str(out)])
    assert rc == 1 and "1 features files but 2 sample ids" in capsys.readouterr().err


def test_default_params_are_json_plain():
    assert json.loads(json.dumps(DEFAULT_PARAMS)) == DEFAULT_PARAMS


def _with_ranges(df: pl.DataFrame, ranges: dict[int, tuple[float, float]]) -> pl.DataFrame:
    """``df`` with the elution range of the rows in ``ranges`` (row -> (start, end) s) replaced."""
    start, end = df["rt_start_s"].to_numpy().copy(), df["rt_end_s"].to_numpy().copy()
    for row, (a, b) in ranges.items():
        start[row], end[row] = a, b
    return df.with_columns(rt_start_s=pl.Series(start), rt_end_s=pl.Series(end))


@pytest.fixture(scope="module")
def split_peak_tables():
    """8 runs sharing 40 narrow features (for the alignment), plus at m/z 235.1191 one flat background ion present
    from 240 to 300 s whose apex the feature finder put at 270 s in S1-S4 and at 245 s in S5-S8; at m/z 300.1 two
    isomers (250 and 275 s, both broad, both in every run); at m/z 400.2 a narrow peak at 250 s in S1-S4 and another
    at 285 s in S5-S8."""
    rng = np.random.default_rng(11)
    mz, rt = np.sort(rng.uniform(110, 900, 40)), rng.uniform(60, 600, 40)
    tables_ = {}
    for k in range(8):
        first = k < 4
        extra_mz = [235.1191, 300.1, 300.1, 400.2]
        extra_rt = [270.0 if first else 245.0, 250.0, 275.0, 250.0 if first else 285.0]
        df = feature_table(f"S{k + 1}", np.r_[mz, extra_mz] * (1 + 1e-6 * rng.normal()),
                           np.r_[rt + rng.normal(0, 0.3, 40), extra_rt], rng.uniform(1e5, 1e6, 44))
        tables_[f"S{k + 1}"] = _with_ranges(df, {40: (240.0, 300.0), 41: (238.0, 290.0), 42: (240.0, 292.0)})
    return tables_


def _rows_at(matrix: pl.DataFrame, mz: float) -> pl.DataFrame:
    return matrix.filter((pl.col("mz") - mz).abs() < 0.001).sort("rt_s")


def test_a_flat_peak_split_by_its_apex_is_joined_and_isomers_stay_apart(split_peak_tables):
    joined = link_features(split_peak_tables, "S1")
    split = link_features(split_peak_tables, "S1", {"merge_split": False})
    assert _rows_at(split, 235.1191).height == 2  # linking on apex RT alone splits the flat ion by run
    flat = _rows_at(joined, 235.1191)
    assert flat.height == 1 and flat["n_detected"][0] == 8
    assert flat.select([f"S{k}" for k in range(1, 9)]).null_count().sum_horizontal()[0] == 0
    # two peaks in the same runs are two compounds; narrow peaks at different times are not one profile
    assert _rows_at(joined, 300.1)["n_detected"].to_list() == [8, 8]
    assert _rows_at(joined, 400.2)["n_detected"].to_list() == [4, 4]
    assert joined.height == split.height - 1


def test_joined_consensus_keeps_every_link(split_peak_tables, tmp_path):
    res = link_features_full(split_peak_tables, "S1")
    cid = _rows_at(res.matrix, 235.1191)["consensus_id"][0]
    members = res.links.filter(pl.col("consensus_id") == cid)
    assert sorted(members["sample_id"].to_list()) == [f"S{k}" for k in range(1, 9)]
    assert members["feature_id"].n_unique() == 8


def _plateau_tables(pieces: dict[str, list[tuple[float, float, float]]]) -> dict[str, pl.DataFrame]:
    """8 runs sharing 40 narrow features, plus at m/z 235.1191 a flat background ion present from 240 to 300 s: one
    feature (apex 270 s in S1-S4, 245 s in S5-S8) unless ``pieces`` gives a run's features there as (apex, start,
    end) s, the feature finder having cut the trace into pieces."""
    rng = np.random.default_rng(12)
    mz, rt = np.sort(rng.uniform(110, 900, 40)), rng.uniform(60, 600, 40)
    out = {}
    for k in range(8):
        s = f"S{k + 1}"
        flat = pieces.get(s, [(270.0 if k < 4 else 245.0, 240.0, 300.0)])
        df = feature_table(s, np.r_[mz, [235.1191] * len(flat)] * (1 + 1e-6 * rng.normal()),
                           np.r_[rt + rng.normal(0, 0.3, 40), [a for a, _, _ in flat]],
                           np.r_[rng.uniform(1e5, 1e6, 40), [1e6 * (b - a) / 60 for _, a, b in flat]])
        out[s] = _with_ranges(df, {40 + j: (a, b) for j, (_, a, b) in enumerate(flat)})
    return out


def test_a_plateau_cut_into_touching_pieces_in_one_run_is_joined_and_summed():
    # S8's trace was cut at 271.7 s: its first piece links with S5-S7 (apex 245 s), its second with S1-S4 (270 s);
    # the run holding both no longer keeps the two consensus features apart, and its value is the whole trace's
    cut = {"S8": [(246.0, 240.0, 271.8), (272.0, 271.5, 300.0)]}
    joined = link_features_full(_plateau_tables(cut), "S1")
    flat = _rows_at(joined.matrix, 235.1191)
    assert flat.height == 1 and flat["n_detected"][0] == 8
    assert flat["S8"][0] == pytest.approx(1e6 * (31.8 + 28.5) / 60)
    cid = flat["consensus_id"][0]
    assert joined.links.filter((pl.col("consensus_id") == cid) & (pl.col("sample_id") == "S8")).height == 2
    split = _rows_at(link_features(_plateau_tables(cut), "S1", {"merge_split": False}), 235.1191)
    assert split.height == 2 and split["S8"].null_count() == 0  # the run holds a piece in each


@pytest.mark.parametrize("pieces", [
    # a gap of 5 s between the two peaks: two chromatographic peaks, not the pieces of one trace
    {"S8": [(246.0, 240.0, 266.0), (272.0, 271.0, 300.0)]},
    # two touching peaks in 3 of 8 runs (more than a fifth): two compounds the column resolves in part of the runs
    {s: [(246.0, 240.0, 271.8), (272.0, 271.5, 300.0)] for s in ("S6", "S7", "S8")},
])
def test_two_peaks_at_one_mz_in_one_run_stay_apart(pieces):
    assert _rows_at(link_features(_plateau_tables(pieces), "S1"), 235.1191).height == 2


def test_a_reference_without_features_gives_way_to_the_next_run_with_features(shifted_tables, caplog) -> None:
    """A fresh user's trial: an mzXML with one MS1 scan (no features) first in the sheet became the alignment's
    reference; every other run was "aligned by 0 pairs" and the RT notes blamed the good runs. The alignment now
    falls back to the first of the given runs (the sheet's other study samples, then its QCs) that has features, and
    says so; the report warns of the empty run itself."""
    from ms2study import study
    from ms2study.reporting.sections import samples_section

    a, b, _, _ = shifted_tables
    empty = feature_table("MXL", [], [])
    with caplog.at_level("WARNING"):
        res = link_features_full({"MXL": empty, "A": a, "B": b}, "MXL", fallbacks=("A", "B"))
    models = dict(zip(res.alignment["sample_id"], res.alignment["model"]))
    assert models["A"] == "reference" and models["B"] == "linear" and models["MXL"] != "reference"
    assert "reference run MXL has 0 features" in caplog.text and "aligned onto A instead" in caplog.text
    assert res.matrix.filter(pl.col("n_detected") == 2).height == 60
    # a 3-second excerpt (a second trial: 344 features beside runs with 2,300) gives way too; a run with half the
    # median does not
    excerpt = a.head(5).with_columns(pl.lit("FEW").alias("sample_id"))
    res = link_features_full({"FEW": excerpt, "A": a, "B": b}, "FEW", fallbacks=("A", "B"))
    assert res.alignment.filter(pl.col("model") == "reference")["sample_id"].to_list() == ["A"]
    half = a.head(40).with_columns(pl.lit("HALF").alias("sample_id"))
    res = link_features_full({"HALF": half, "A": a, "B": b}, "HALF", fallbacks=("A", "B"))
    assert res.alignment.filter(pl.col("model") == "reference")["sample_id"].to_list() == ["HALF"]
    # without a fallback with features the named reference stays (nothing else to align onto)
    assert link_features_full({"MXL": empty, "A": a}, "MXL").alignment.filter(
        pl.col("model") == "reference")["sample_id"].to_list() == ["MXL"]
    # the fallbacks the workflow passes: other study samples in sheet order, then pooled QCs, never blanks
    sheet = pl.DataFrame({"sample_id": ["MXL", "Q1", "BL", "S2", "S3"], "file": ["x"] * 5,
                          "sample_type": ["sample", "qc", "blank", "sample", "sample"]})
    assert study.reference_fallbacks(sheet, "MXL") == ["S2", "S3", "Q1"]
    warned: list[str] = []
    samples_section([{"sample_id": "MXL", "features": 0, "ms2_scans": 1}, {"sample_id": "A", "features": 65}],
                    warned)
    assert len(warned) == 1 and "run <b>MXL</b> has no features" in warned[0] and "logs/detect/MXL.log" in warned[0]
