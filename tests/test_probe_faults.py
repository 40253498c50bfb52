"""Cases found by the new-user probe of issue 14 (bad inputs tried as a user would), each stopped at the door with a
message naming the file, row or key and the fix, before Snakemake starts (no .snakemake folder is made).

The probe itself lives outside the project; these are its FAILs, fixed, as tests.
"""

from __future__ import annotations

import contextlib
import gzip
import io
from pathlib import Path

import pytest

from ms2study import study
from ms2study.cli import main
from ms2study.core.errors import InputError


def _touch_mzml(folder: Path, name: str) -> None:
    (folder / name).write_text("<mzML/>")


def _two_sample_study(folder: Path) -> Path:
    for name in ("a", "b"):
        _touch_mzml(folder, f"{name}.mzML")
    (folder / "samples.tsv").write_text("sample_id\tfile\tgroup\nA\ta.mzML\tcase\nB\tb.mzML\tcontrol\n")
    return folder


def _run(args: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str]:
    code = main(args)
    return code, capsys.readouterr().err


def test_empty_sample_sheet_says_how_to_write_one(tmp_path: Path) -> None:
    _touch_mzml(tmp_path, "a.mzML")
    (tmp_path / "samples.tsv").write_text("")
    with pytest.raises(InputError, match=r"sample sheet is empty.*sample_id<TAB>file.*delete the file") as err:
        study.load_sample_sheet(tmp_path, study.load_config(tmp_path))
    assert str(tmp_path / "samples.tsv") in str(err.value)


def test_files_that_map_to_one_sample_id_are_named(tmp_path: Path) -> None:
    _touch_mzml(tmp_path, "run 1.mzML")
    _touch_mzml(tmp_path, "run_1.mzML")
    _touch_mzml(tmp_path, "other.mzML")
    with pytest.raises(InputError) as err:
        study.load_sample_sheet(tmp_path, study.load_config(tmp_path))
    text = str(err.value)
    assert "'run 1.mzML'" in text and "'run_1.mzML'" in text and "sample_id 'run_1'" in text
    assert "row" not in text and "samples.tsv" in text  # no sheet, so no row to name; the fix is to add one


def test_compressed_run_in_the_sheet_says_decompress(tmp_path: Path) -> None:
    (tmp_path / "a.mzML.gz").write_bytes(gzip.compress(b"<mzML/>"))
    (tmp_path / "samples.tsv").write_text("sample_id\tfile\nA\ta.mzML.gz\n")
    with pytest.raises(InputError, match=r"row 2: file 'a.mzML.gz' is not .mzML or .mzXML \(it is compressed\)"
                                         r".*gunzip") as err:
        study.load_sample_sheet(tmp_path, study.load_config(tmp_path))
    assert "msconvert" not in str(err.value)