"""A library file whose records are all of a polarity the study's MS/MS lacks is named in the report (trial AJ: 76
negative-mode in-house pesticides beside a positive-mode study; the planted pesticides' names all came from the other
file, and the report listed the file as read and the Methods draft as searched)."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from ms2study.reporting.collect import unmatched_library_files
from ms2study.reporting.html import QUALITY, kind_of


def test_a_library_file_of_the_other_polarity_is_named_with_its_counts(tmp_path: Path) -> None:
    index = tmp_path / "index"
    index.mkdir()
    pl.DataFrame({"source_file": ["/lab/massbank.mgf"] * 3 + ["/lab/inhouse.mgf"] * 2 + ["/lab/mixed.msp"] * 2,
                  "ion_mode": ["positive"] * 3 + ["negative"] * 2 + ["negative", None]}).write_parquet(
        index / "metadata.parquet")
    warnings: list = []
    unmatched_library_files([{"ion_modes": ["positive"]}, {"ion_modes": ["positive"]}], [index], warnings)
    assert len(warnings) == 1 and kind_of(warnings[0]) == QUALITY
    assert "library file <b>inhouse.mgf</b>: all 2 of its records are negative-mode" in warnings[0]
    assert "could match nothing" in warnings[0] and "massbank" not in warnings[0]
    warnings = []
    unmatched_library_files([{"ion_modes": ["positive", "negative"]}], [index], warnings)  # mixed study: fine
    unmatched_library_files([{"ion_modes": []}], [index], warnings)  # modes unknown: nothing said
    unmatched_library_files([{"ion_modes": ["positive"]}], [tmp_path / "absent"], warnings)
    assert warnings == []
