"""Before a run, ``ms2study run`` names what changed in the sample sheet since the study stages last read it (trial
AV: a sample moved from control to case listed 13 study jobs in the dry run without a word of why)."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from ms2study.runsheet import STUDY_SHEET, remember_sheet, sheet_change_note


def test_added_removed_rows_and_changed_cells_are_named(tmp_path: Path) -> None:
    old = pl.DataFrame({"sample_id": ["S01", "S02", "S03"], "file": ["a", "b", "c"], "group": ["case", "control", None],
                        "age": [50, 61, 40]})
    assert sheet_change_note(tmp_path, old) is None  # no earlier sheet: a first run
    (tmp_path / STUDY_SHEET).parent.mkdir(parents=True)
    old.write_csv(tmp_path / STUDY_SHEET, separator="\t")
    assert sheet_change_note(tmp_path, old) is None  # nothing changed
    new = pl.DataFrame({"sample_id": ["S01", "S03", "S09"], "file": ["a", "c", "i"],
                        "group": ["case", "case", "control"], "bmi": [20.5, 22.0, 31.0]})
    note = sheet_change_note(tmp_path, new)
    assert note == ("the sample sheet changed since the last finished run: rows added: S09; rows removed: S02; "
                    "columns added: bmi; columns removed: age; 1 cell(s) changed: S03 group: (empty) -> case")
    many = old.with_columns(age=pl.Series([1, 2, 3]), file=pl.Series(["x", "y", "z"]), group=pl.lit("other"))
    assert "; and 1 more" in sheet_change_note(tmp_path, many)  # 9 cells: 8 named
    (tmp_path / STUDY_SHEET).write_text("no sample id column\n")
    assert sheet_change_note(tmp_path, new) is None
    # a finished run's sheet is what the note compares with: a dry run rewriting STUDY_SHEET does not hide the
    # change from a second dry run (trial AY)
    remember_sheet(tmp_path, old)
    new.write_csv(tmp_path / STUDY_SHEET, separator="\t")
    assert sheet_change_note(tmp_path, new).startswith("the sample sheet changed since the last finished run: rows")
    remember_sheet(tmp_path, new)
    assert sheet_change_note(tmp_path, new) is None
