"""Sample sheets as labs write them (trial W): Excel exports, header spellings, decimal commas, QC names. Each case
went through silently (or was refused with a misleading message) before; each now gets a clear refusal naming the
file and the fix, or a warning before any job."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from ms2study.core.errors import InputError
from ms2study.io.samplesheet import read_sample_sheet, role_name_warnings
from ms2study.modelling.outcomes import check_covariate_values

SHEET = "sample_id\tfile\tgroup\nA\ta.mzML\tcase\nB\tb.mzML\tcontrol\n"


def test_a_covariate_written_with_decimal_commas_throughout_is_refused() -> None:
    """Ages 45,8 in every row (a European Excel export) became one category per sample: no test was left."""
    sheet = pl.DataFrame({"sample_id": ["A", "B", "C"], "age": ["45,8", "52,1", "38,0"], "sex": ["M", "F", "M"]})
    with pytest.raises(InputError, match=r"covariate 'age' holds numbers written with a decimal comma \(A: '45,8' "):
        check_covariate_values(sheet, ["age"])
    check_covariate_values(sheet, ["sex"])  # text levels: fine
    check_covariate_values(sheet.with_columns(age=pl.Series(["45.8", "52.1", "38.0"])), ["age"])


def test_covariate_levels_differing_only_in_letter_case_are_refused() -> None:
    sheet = pl.DataFrame({"sample_id": list("ABCD"), "sex": ["M", "F", "m", "f"]})
    with pytest.raises(InputError, match="differ only in letter case"):
        check_covariate_values(sheet, ["sex"])


@pytest.mark.parametrize("header", ["Sample Type", "sample-type", "Batch", "Injection Order"])
def test_a_read_column_under_another_spelling_is_refused(tmp_path: Path, header: str) -> None:
    """'Sample Type' / 'Batch' / 'Injection Order' were ignored: pooled QCs taken as samples, batches dropped."""
    (tmp_path / "samples.tsv").write_text(f"sample_id\tfile\t{header}\nA\ta.mzML\tqc\n")
    with pytest.raises(InputError, match=f"column\\(s\\) '{header}' \\(read as "):
        read_sample_sheet(tmp_path / "samples.tsv")


def test_a_needed_column_under_another_spelling_names_only_its_own_cost(tmp_path: Path) -> None:
    """Trial AB: 'sample id' was refused with "otherwise pooled QCs are taken as samples and the batches and run
    order are not used", which belongs to sample_type, batch and injection_order."""
    (tmp_path / "samples.tsv").write_text("sample id\tfile\tBatch\nA\ta.mzML\t1\n")
    with pytest.raises(InputError) as err:
        read_sample_sheet(tmp_path / "samples.tsv")
    assert "otherwise the batches are not used" in str(err.value) and "pooled QCs" not in str(err.value)
    (tmp_path / "samples.tsv").write_text("Sample_ID\tfile\nA\ta.mzML\n")
    with pytest.raises(InputError) as err:
        read_sample_sheet(tmp_path / "samples.tsv")
    assert str(err.value).endswith("exactly (lower case, underscores)")


def test_excel_exports_are_read_or_refused_for_what_they_are(tmp_path: Path) -> None:
    path = tmp_path / "samples.tsv"
    path.write_bytes(SHEET.replace("\n", "\r").encode())  # Excel for Mac: CR line endings ("no rows" before)
    assert read_sample_sheet(path)["sample_id"].to_list() == ["A", "B"]
    path.write_bytes(SHEET.encode("utf-16"))  # "Unicode Text": UTF-16 with a byte-order mark
    assert read_sample_sheet(path)["sample_id"].to_list() == ["A", "B"]
    path.write_bytes(b"PK\x03\x04" + b"\x00" * 40)  # an .xlsx saved under the sheet's name
    with pytest.raises(InputError, match=r"an Excel workbook \(\.xlsx\), not text"):
        read_sample_sheet(path)
    # trial BI: Excel's trailing empty columns (a tab after the last cell) were carried as a nameless column into
    # the report and the GNPS export; they are dropped, and a column holding values without a header is refused
    path.write_bytes(b"\xef\xbb\xbfsample_id\tfile\tgroup\t\t\r\nA\ta.mzML\tx\t\t\r\nB\tb.mzML\ty\t\t\r\n")
    assert read_sample_sheet(path).columns == ["sample_id", "file", "group"]
    path.write_bytes(b"sample_id\tfile\tgroup\t\nA\ta.mzML\tx\t\nB\tb.mzML\ty\t41\n")
    with pytest.raises(InputError, match=r"column 4 has no header but holds values \(first: '41'\)"):
        read_sample_sheet(path)
    path.write_bytes(b"sample_id\tfile\tage\tage\nA\ta.mzML\t40\t41\n")  # the second 'age' was read as another column
    with pytest.raises(InputError, match=r"the header 'age' is written twice \(columns 3 and 4\)"):
        read_sample_sheet(path)


def test_runs_named_like_qcs_or_blanks_but_typed_as_samples_are_named() -> None:
    sheet = pl.DataFrame({"sample_id": ["S01", "QC_pool_01", "Blank", "solvent2", "sequence", "QC_02", "Pool-3",
                                        "Pool-4"],
                          "sample_type": [None, None, "", None, None, "qc", "sample", None]})
    warnings = role_name_warnings(sheet)  # a type written as "sample" is believed
    assert len(warnings) == 1 and ": QC_pool_01, Blank, solvent2, Pool-4;" in warnings[0]
    assert "write qc or blank in a sample_type column" in warnings[0]
    assert role_name_warnings(pl.DataFrame({"sample_id": ["S01", "S02"]})) == []


def test_batch_dates_typed_two_ways_are_named() -> None:
    """Trial W: a batch column with 2024-03-01 in some rows and 01/03/2024 in others made two batches of one day,
    unsaid. Labels in one form, or not dates, pass."""
    from ms2study.io.samplesheet import batch_label_warnings

    mixed = pl.DataFrame({"sample_id": ["A", "B", "C", "D"], "batch": ["2024-03-01", "01/03/2024", "2024-03-08", None]})
    warnings = batch_label_warnings(mixed, "lab.tsv")
    assert warnings == [("the batch column of lab.tsv holds dates typed in 2 form(s) (day/month/year or month/day/year: "
                         "01/03/2024; year-month-day: 2024-03-01, 2024-03-08): each distinct label is its own "
                         "batch, so a day typed two ways makes two batches; write every batch the same way")]
    # trial AB: one day with and without leading zeros, or compact
    padded = batch_label_warnings(pl.DataFrame({"sample_id": ["A", "B", "C"],
                                                "batch": ["2024-3-1", "2024-03-01", "20240301"]}))
    assert len(padded) == 1 and "2024-03-01 and 2024-3-1 and 20240301 name one day" in padded[0]
    for labels in (["2024-03-01", "2024-03-08"], ["1", "2"], ["B1", "20240301"], ["plate1", "plate2"]):
        assert batch_label_warnings(pl.DataFrame({"sample_id": ["A", "B"], "batch": labels})) == []
    assert batch_label_warnings(pl.DataFrame({"sample_id": ["A"]})) == []
