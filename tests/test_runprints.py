"""Run-file fingerprints (``ms2study.runprints``): a run replaced under its name by a file older than its results
is processed again (trial AA); one whose detect job has not run since keeps its old record, so it is found again."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import polars as pl

from ms2study import runprints


def test_a_replaced_run_is_found_until_its_detect_job_runs(tmp_path: Path) -> None:
    (tmp_path / "a.mzML").write_bytes(b"<mzML>" + b"a" * (3 << 20) + b"</mzML>")
    (tmp_path / "b.mzML").write_bytes(b"<mzML>b</mzML>")
    sheet = pl.DataFrame({"sample_id": ["A", "B", "C"], "file": ["a.mzML", "b.mzML", "missing.mzML"]})
    for sample in ("A", "B"):
        (tmp_path / "results" / "samples" / sample).mkdir(parents=True)
        (tmp_path / "results" / "samples" / sample / "features.parquet").write_bytes(b"x")
    replaced, prints = runprints.replaced_runs(tmp_path, sheet)
    assert replaced == [] and set(prints) == {"A", "B"}  # no record yet: left to Snakemake
    runprints.remember(tmp_path, prints, since=time.time() + 60)  # outputs not from this run: adopted
    assert json.loads((tmp_path / runprints.FINGERPRINTS).read_text()) == prints
    # the middle of a large file is not read; its start or end, or its size, is
    (tmp_path / "a.mzML").write_bytes(b"<mzML>" + b"a" * (1 << 20) + b"b" + b"a" * (2 << 20) + b"</mzML>")
    assert runprints.replaced_runs(tmp_path, sheet)[0] == []
    (tmp_path / "a.mzML").write_bytes(b"<mzML id='other'>" + b"a" * (3 << 20) + b"</mzML>")
    os.utime(tmp_path / "a.mzML", (0, 0))  # older than its results: Snakemake would not rerun it
    replaced, prints = runprints.replaced_runs(tmp_path, sheet)
    assert replaced == ["A"] and runprints.with_forced(["--cores", "1"], replaced) == [
        "--cores", "1", "--forcerun", "results/samples/A/features.parquet"]
    # the user's own --forcerun keeps its rules (a second option would replace the first)
    assert runprints.with_forced(["-R", "report", "--cores", "1"], replaced) == [
        "-R", "results/samples/A/features.parquet", "report", "--cores", "1"]
    assert runprints.with_forced(["--forcerun=models"], replaced) == [
        "--forcerun", "results/samples/A/features.parquet", "models"]
    assert runprints.replaced_note(replaced)[0].startswith("the run file of sample(s) A changed since its features")
    runprints.remember(tmp_path, prints, since=time.time() + 60)  # a run that did not reach A's detect job
    assert runprints.replaced_runs(tmp_path, sheet)[0] == ["A"]
    runprints.remember(tmp_path, prints, since=0)  # A's features written in this run
    assert runprints.replaced_runs(tmp_path, sheet)[0] == []
    # a file newer than its results is Snakemake's to rerun; a sample gone from the sheet keeps its record while its
    # features table is there (its outputs are reused if it comes back), and is forgotten with it
    (tmp_path / "b.mzML").write_bytes(b"<mzML>another b</mzML>")
    assert runprints.replaced_runs(tmp_path, sheet)[0] == []
    runprints.remember(tmp_path, {"A": prints["A"]}, since=0)
    assert list(json.loads((tmp_path / runprints.FINGERPRINTS).read_text())) == ["A", "B"]
    (tmp_path / "results" / "samples" / "B" / "features.parquet").unlink()
    runprints.remember(tmp_path, {"A": prints["A"]}, since=0)
    assert list(json.loads((tmp_path / runprints.FINGERPRINTS).read_text())) == ["A"]
    assert runprints.with_forced(["-n"], []) == ["-n"] and runprints.replaced_note([]) == []


def test_the_folder_of_a_sample_removed_from_the_sheet_is_marked(tmp_path: Path) -> None:
    """Trial AA: results/samples/ listed 16 folders for a 15-sample study, the removed one unmarked."""
    for sample in ("A", "B", "S05"):
        (tmp_path / "results" / "samples" / sample).mkdir(parents=True)
    sheet = pl.DataFrame({"sample_id": ["A", "B"]})
    dry = runprints.orphan_sample_notes(tmp_path, sheet, mark=False)  # a dry run writes nothing (trial AB)
    assert "S05" in dry[0] and "a run (not a dry run) marks each" in dry[0]
    assert not (tmp_path / "results" / "samples" / "S05" / runprints.NOT_IN_SHEET).exists()
    notes = runprints.orphan_sample_notes(tmp_path, sheet)
    assert notes == [("results/samples/ holds the folders of 1 sample(s) no longer in the sheet (S05): no result uses "
                     "them (each has a NOT_IN_SHEET.txt); delete them when you no longer need them")]
    marker = tmp_path / "results" / "samples" / "S05" / runprints.NOT_IN_SHEET
    assert "is not in the study's sample sheet" in marker.read_text()
    assert not (tmp_path / "results" / "samples" / "A" / runprints.NOT_IN_SHEET).exists()
    assert runprints.orphan_sample_notes(tmp_path, pl.DataFrame({"sample_id": ["A", "B", "S05"]}), mark=False) == []
    assert marker.exists()  # listed again in a dry run: the marker stays until a real run
    assert runprints.orphan_sample_notes(tmp_path, pl.DataFrame({"sample_id": ["A", "B", "S05"]})) == []
    assert not marker.exists()  # listed again: unmarked
    assert runprints.orphan_sample_notes(tmp_path / "elsewhere", sheet) == []


def test_a_run_replaced_while_its_sample_was_out_of_the_sheet_is_found_when_it_comes_back(tmp_path: Path) -> None:
    """Trial AV: S03 removed from the sheet, its run replaced by another (cp -p: older than S03's results), the row
    added back: the old outputs were reused and the new file's fingerprint recorded as if it had made them."""
    run = tmp_path / "s03.mzML"
    run.write_bytes(b"<mzML>first injection</mzML>")
    (tmp_path / "results" / "samples" / "S03").mkdir(parents=True)
    (tmp_path / "results" / "samples" / "S03" / "features.parquet").write_bytes(b"x")
    both = pl.DataFrame({"sample_id": ["S03"], "file": ["s03.mzML"]})
    _, prints = runprints.replaced_runs(tmp_path, both)
    runprints.remember(tmp_path, prints, since=0)  # S03 processed
    without = pl.DataFrame({"sample_id": [], "file": []}, schema={"sample_id": pl.Utf8, "file": pl.Utf8})
    _, none = runprints.replaced_runs(tmp_path, without)
    runprints.remember(tmp_path, none, since=time.time() + 60)  # a run without S03
    run.write_bytes(b"<mzML>another injection</mzML>")
    os.utime(run, (0, 0))
    replaced, current = runprints.replaced_runs(tmp_path, both)  # the row is back
    assert replaced == ["S03"] and current["S03"] != prints["S03"]


def test_swapped_and_renamed_runs_are_named(tmp_path: Path) -> None:
    """Trial AV: the files of S01 and S02 swapped, and samples renamed S0x -> P0x with the same files, were processed
    again with no word of why."""
    for name in ("a", "b", "c"):
        (tmp_path / f"{name}.mzML").write_bytes(f"<mzML>{name}</mzML>".encode())
    first = pl.DataFrame({"sample_id": ["S01", "S02", "S03"], "file": ["a.mzML", "b.mzML", "c.mzML"]})
    for sample in first["sample_id"]:
        (tmp_path / "results" / "samples" / sample).mkdir(parents=True)
        (tmp_path / "results" / "samples" / sample / "features.parquet").write_bytes(b"x")
    _, prints = runprints.replaced_runs(tmp_path, first)
    runprints.remember(tmp_path, prints, since=0)
    assert runprints.moved_note(tmp_path, prints) == []
    later = pl.DataFrame({"sample_id": ["S01", "S02", "P03"], "file": ["b.mzML", "a.mzML", "c.mzML"]})
    _, now = runprints.replaced_runs(tmp_path, later)
    notes = runprints.moved_note(tmp_path, now)
    assert notes[0].startswith("the run files of S01 and S02 are each other's files of the last run")
    assert notes[1].startswith("the run of P03 (was S03) is the file the old id's results were made from")


def test_a_touched_run_with_its_recorded_content_gets_its_time_set_back(tmp_path: Path, monkeypatch) -> None:
    """Trial BB (an HPC admin): a run touched, or copied without its times, was processed again with every study
    stage although its content was the one processed. Its time is set back to before its results; a changed run, a
    sample without a record and a file already older are left as they are."""
    sheet = pl.DataFrame({"sample_id": ["A", "B", "C"], "file": ["a.mzML", "b.mzML", "c.mzML"]})
    for sample in ("A", "B", "C"):
        (tmp_path / f"{sample.lower()}.mzML").write_bytes(f"<mzML>{sample}</mzML>".encode())
        os.utime(tmp_path / f"{sample.lower()}.mzML", (1000, 1000))
        folder = tmp_path / "results" / "samples" / sample
        folder.mkdir(parents=True)
        for name, when in (("features.parquet", 2000), ("spectra.parquet", 3000)):
            (folder / name).write_bytes(b"x")
            os.utime(folder / name, (when, when))
    (tmp_path / "results" / "study").mkdir()
    (tmp_path / "results" / "study" / "qc.parquet").write_bytes(b"x")
    os.utime(tmp_path / "results" / "study" / "qc.parquet", (1500, 1500))
    _, prints = runprints.replaced_runs(tmp_path, sheet)
    runprints.remember(tmp_path, {s: prints[s] for s in ("A", "B")}, since=0)  # C has no record
    for sample in ("A", "B", "C"):
        os.utime(tmp_path / f"{sample.lower()}.mzML")  # touched: now
    (tmp_path / "b.mzML").write_bytes(b"<mzML>another B</mzML>")  # changed: Snakemake's to rerun
    _, prints = runprints.replaced_runs(tmp_path, sheet)
    assert runprints.set_back_touched(tmp_path, sheet, prints) == (["A"], [])
    assert (tmp_path / "a.mzML").stat().st_mtime == 1499.0  # before the oldest result made from it (qc.parquet)
    assert (tmp_path / "b.mzML").stat().st_mtime > 3000 and (tmp_path / "c.mzML").stat().st_mtime > 3000
    assert runprints.set_back_touched(tmp_path, sheet, prints) == ([], [])  # older now: nothing to do
    assert runprints.touched_note(["A"], [])[0].startswith("the run file of sample(s) A is newer than its results")
    # a folder where the time cannot be set (read-only data): the jobs run again and the note says how to avoid it
    os.utime(tmp_path / "a.mzML")

    def refuse(*args, **kwargs):
        raise PermissionError("read-only file system")

    monkeypatch.setattr(runprints.os, "utime", refuse)
    assert runprints.set_back_touched(tmp_path, sheet, prints) == ([], ["A"])
    assert "could not be set back" in runprints.touched_note([], ["A"])[0] and runprints.touched_note([], []) == []
