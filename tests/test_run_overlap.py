"""Runs over RT ranges that do not overlap, and runs that are short excerpts (a fresh user's trial, D6: two
pesticide excerpts of 430-469 s and 404-421 s shared no feature, and the run note blamed matrix, method, polarity or
instrument; no part of the report said the runs were 40 s and 17 s excerpts). Small tables written here."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from ms2study import cli
from ms2study.core.atomic import write_parquet
from ms2study.modelling.qc import alignment_notes, chromatogram, chromatogram_metadata, qc_table
from ms2study.modelling.runchecks import RT_OVERLAP_MIN_SHARE, SHORT_RUN_S, overlap_note, rt_overlap, short_run
from ms2study.reporting.html import QUALITY, kind_of
from ms2study.reporting.qc import qc_section

PEST = pl.DataFrame({"sample_id": ["AGM", "SIR"], "model": ["reference", "identity"], "n_features": [108, 5],
                     "n_pairs": [108, 0], "n_shared_with_reference": [108, 0]})


def test_rt_overlap_and_its_note():
    assert rt_overlap((404.0, 420.9), (430.0, 469.2)) == (0.0, 0.0)
    assert rt_overlap((0.0, 100.0), (50.0, 300.0)) == (50.0, 0.5)
    assert rt_overlap((100.0, 200.0), (0.0, 600.0)) == (100.0, 1.0)  # an excerpt inside the reference's range
    assert rt_overlap((10.0, 10.0), (0.0, 20.0)) == (0.0, 1.0)
    with pytest.raises(ValueError):
        rt_overlap((20.0, 10.0), (0.0, 30.0))
    note = overlap_note((404.036, 420.854), (430.017, 469.231), "AGM")
    assert note.startswith("its RT range 404.0-420.9 s overlaps the reference run AGM's 430.0-469.2 s by 0.0 s (0%")
    assert overlap_note((0.0, 100.0), (100.0 * (1 - RT_OVERLAP_MIN_SHARE), 300.0), "R") is None
    assert short_run(430.0, 469.2) and not short_run(0.0, SHORT_RUN_S) and not short_run(None, 10.0)


def test_a_run_outside_the_reference_range_is_told_so_not_asked_about_its_matrix():
    before = alignment_notes(PEST)  # without RT ranges: the note as it was
    assert "another matrix, method, polarity or instrument" in before["SIR"]
    notes = alignment_notes(PEST, {"AGM": (430.017, 469.231), "SIR": (404.036, 420.854)})
    assert set(notes) == {"SIR"}
    assert notes["SIR"].startswith("its RT range 404.0-420.9 s overlaps the reference run AGM's 430.0-469.2 s")
    assert "shares 0 of its 5 features (0%)" in notes["SIR"] and "no RT shift measured" in notes["SIR"]
    assert "another matrix" not in notes["SIR"]
    # ranges that overlap: the shared-features note stays as it was
    same = alignment_notes(PEST, {"AGM": (0.0, 1200.0), "SIR": (0.0, 1190.0)})
    assert same == before
    # a run mostly outside the reference's range is noted even when it shares features (with 3 runs, 2 typical)
    three = pl.DataFrame({"sample_id": ["R", "A", "B"], "model": ["reference", "linear", "linear"],
                          "n_features": [1000, 1000, 1000], "n_pairs": [900, 900, 500],
                          "n_shared_with_reference": [1000, 900, 500]})
    ranges = {"R": (0.0, 600.0), "A": (0.0, 600.0), "B": (400.0, 1200.0)}
    assert set(alignment_notes(three, ranges)) == {"B"}
    runs = {s: {"n_features": 1000, "rt_start_s": a, "rt_end_s": b} for s, (a, b) in ranges.items()}
    table = qc_table(pl.DataFrame({"sample_id": ["R", "A", "B"]}), runs, three, None)
    from ms2study.modelling.qc import REFERENCE_NOTE

    assert table["run_note"].to_list()[:2] == [REFERENCE_NOTE, None]
    assert table["run_note"][2].startswith("its RT range 400.0")
    assert table["rt_start_s"].to_list() == [0.0, 0.0, 400.0]


def _stage(tmp_path: Path, ranges: dict[str, tuple[float, float]], alignment: pl.DataFrame) -> Path:
    """The qc stage through its CLI, each run's chromatogram spanning its range; returns the QC table's path."""
    paths: dict[str, list[str]] = {k: [] for k in ("chrom", "spec", "feat")}
    for s, (start, end) in ranges.items():
        paths["chrom"].append(str(tmp_path / f"{s}_chrom.parquet"))
        rt = np.linspace(start, end, 30)
        write_parquet(chromatogram(rt, np.full(30, 10.0), np.full(30, 2.0)), paths["chrom"][-1],
                      metadata=chromatogram_metadata(30, 2, 300.0))
        for key, frame in (("spec", pl.DataFrame({"feature_id": [f"{s}:F1", None]})),
                           ("feat", pl.DataFrame({"feature_id": [f"{s}:F1"]}))):
            paths[key].append(str(tmp_path / f"{s}_{key}.parquet"))
            frame.write_parquet(paths[key][-1])
    sheet = tmp_path / "samples.tsv"
    pl.DataFrame({"sample_id": list(ranges), "file": list(ranges)}).write_csv(sheet, separator="\t")
    alignment.write_parquet(tmp_path / "alignment.parquet")
    out = tmp_path / "qc.parquet"
    assert cli.main(["qc", "--samples", str(sheet), "--chromatograms", *paths["chrom"], "--spectra", *paths["spec"],
                     "--features", *paths["feat"], "--alignment", str(tmp_path / "alignment.parquet"),
                     "--out", str(out)]) == 0
    return out


def test_the_report_names_runs_apart_in_rt_and_short_excerpts(tmp_path: Path):
    out = _stage(tmp_path, {"AGM": (430.017, 469.231), "SIR": (404.036, 420.854)}, PEST)
    table = pl.read_parquet(out)
    assert table["rt_start_s"].to_list() == pytest.approx([430.017, 404.036])
    warnings: list[str] = []
    html = qc_section(out, [], ["AGM", "SIR"], warnings)
    apart = [w for w in warnings if "hardly overlaps the reference run's" in w]
    assert len(apart) == 1 and "SIR: its RT range 404.0-420.9 s" in apart[0] and "430.0-469.2 s" in apart[0]
    assert not any("another matrix" in w for w in warnings)
    short = [w for w in warnings if "spanning less than 5 min" in w]
    assert len(short) == 1 and kind_of(short[0]) == QUALITY
    assert "AGM 430.0-469.2 s" in short[0] and "SIR 404.0-420.9 s" in short[0] and "truncated" in short[0]
    assert ">RT range (s)</th>" in html and "404.0-420.9" in html
    # full-length runs over one gradient: neither warning
    whole = PEST.with_columns(pl.Series("n_shared_with_reference", [108, 4]), pl.Series("n_pairs", [108, 4]))
    out = _stage(tmp_path / "", {"AGM": (0.5, 1199.0), "SIR": (0.6, 1198.0)}, whole)
    warnings = []
    qc_section(out, [], ["AGM", "SIR"], warnings)
    assert not any("RT range" in w or "spanning less than" in w for w in warnings)


def test_a_run_cut_short_is_named_in_the_qc_table_with_what_the_tests_do_with_it():
    """Session 27's second trial: a run cut at 70 % of its gradient had an empty note in the QC table while the tests
    and models filled its late features; one cut at 50 % was left out of them without a word there."""
    alignment = pl.DataFrame({"sample_id": ["R", "A", "B", "C", "D"], "model": ["reference"] + ["linear"] * 4,
                              "n_features": [1000] * 5, "n_pairs": [900] * 5, "n_shared_with_reference": [900] * 5})
    ranges = {"R": (0.0, 600.0), "A": (0.0, 420.0), "B": (0.0, 290.0), "C": (0.0, 602.0), "D": (0.0, 601.0)}
    runs = {s: {"n_features": 1000, "rt_start_s": a, "rt_end_s": b} for s, (a, b) in ranges.items()}
    notes = dict(zip(ranges, qc_table(pl.DataFrame({"sample_id": list(ranges)}), runs, alignment, None)["run_note"]))
    assert "covers 70.0% of the study's typical RT range 0.0-600.0 s" in notes["A"] and "take their mean" in notes["A"]
    assert "covers 48.3%" in notes["B"] and "left out of the differential tests and the models" in notes["B"]
    assert notes["C"] is None and notes["D"] is None


def test_an_empty_run_does_not_set_the_typical_range_of_the_qc_table():
    """Trial AS: a 1-scan mzXML without features (and other short runs) set the QC table's typical RT range, so
    three usable runs were said to be left out of the tests and models, which kept them."""
    alignment = pl.DataFrame({"sample_id": ["R", "A", "E1", "E2"], "model": ["reference"] + ["linear"] * 3,
                              "n_features": [1000, 1000, 0, 0], "n_pairs": [900] * 4,
                              "n_shared_with_reference": [900] * 4})
    ranges = {"R": (240.0, 300.0), "A": (240.0, 301.0), "E1": (348.0, 348.1), "E2": (350.0, 400.0)}
    runs = {s: {"n_features": 0 if s.startswith("E") else 1000, "rt_start_s": a, "rt_end_s": b}
            for s, (a, b) in ranges.items()}
    notes = dict(zip(ranges, qc_table(pl.DataFrame({"sample_id": list(ranges)}), runs, alignment, None)["run_note"]))
    assert not any("left out of the differential tests" in (notes[s] or "") for s in ("R", "A"))
