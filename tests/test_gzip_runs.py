"""Runs compressed as `msconvert --gzip` writes them (``S1.mzML.gz``, ``S1.mzXML.gz``) are read as they are: named in
a sample sheet or found in a study folder without one, checked before any job (format, damaged gzip), detected as
the uncompressed run, their MS levels sampled for the MS1-only warning; a truncated one is named by its detect job.
Other compressions (.bz2, .zip, .xz) are refused with how to decompress them."""

from __future__ import annotations

import gzip
from pathlib import Path

import polars as pl
import pytest
from test_detect import assert_found, default_compounds, make_run, write_run

from ms2study import study
from ms2study.core.errors import InputError
from ms2study.io.msio import load_experiment
from ms2study.io.runfiles import content_problem, content_size_bytes, ms1_only_warnings, ms_levels_sampled
from ms2study.io.samplesheet import run_format, run_stem, unlisted_runs
from ms2study.stages.detect import detect_features


def _gzip(path: Path) -> Path:
    packed = path.with_name(path.name + ".gz")
    packed.write_bytes(gzip.compress(path.read_bytes()))
    path.unlink()
    return packed


def test_names_of_compressed_runs() -> None:
    assert run_format("a/S1.mzML.gz") == ".mzml" and run_format("S1.MZXML.GZ") == ".mzxml"
    assert run_format("S1.mzML") == ".mzml" and run_format("S1.mgf.gz") is None and run_format("S1.gz") is None
    assert run_stem("S1.mzML.gz") == "S1" and run_stem("x.y.mzXML") == "x.y" and run_stem("S1.raw") == "S1"


def test_a_gzip_run_is_detected_as_the_run_itself(tmp_path: Path) -> None:
    compounds = default_compounds(6)
    (tmp_path / "plain").mkdir()
    plain = write_run(make_run(compounds), tmp_path / "plain" / "S1.mzML")
    packed = write_run(make_run(compounds), tmp_path / "S1.mzML")
    packed = _gzip(packed)
    assert content_problem(packed) is None
    # job memory grows with what the reader holds: the decompressed size (detect's mem_mb_per_input_mb)
    assert content_size_bytes(packed) == plain.stat().st_size > 3 * packed.stat().st_size
    assert content_size_bytes(plain) == plain.stat().st_size
    found = detect_features(packed, "S1")
    assert_found(found, compounds)
    assert found.drop("sample_id").equals(detect_features(plain, "S1").drop("sample_id"))
    # mzXML too
    mzxml = _gzip(write_run(make_run(compounds[:3]), tmp_path / "S2.mzXML"))
    assert_found(detect_features(mzxml, "S2"), compounds[:3])
    # a truncated compressed run cannot be seen before it is read: its reader names it, file and sample
    truncated = tmp_path / "S3.mzML.gz"
    truncated.write_bytes(packed.read_bytes()[: packed.stat().st_size // 2])
    assert content_problem(truncated) is None
    with pytest.raises(InputError, match=r"the compressed file ends before its end: it is truncated.*copy the run "
                                         r"again") as err:
        load_experiment(truncated, "S3")
    assert "sample 'S3'" in str(err.value) and "S3.mzML.gz" in str(err.value)


def test_sheet_and_folder_take_gzip_runs_and_refuse_other_compressions(tmp_path: Path) -> None:
    write_run(make_run(default_compounds(2), rt_end_s=10.0), tmp_path / "a.mzML")
    _gzip(tmp_path / "a.mzML")
    # without a sheet: the file's name without .mzML.gz is the sample id
    sheet = study.load_sample_sheet(tmp_path, study.load_config(tmp_path))
    assert sheet.select("sample_id", "file").rows() == [("a", "a.mzML.gz")]
    (tmp_path / "samples.tsv").write_text("sample_id\tfile\nA\ta.mzML.gz\n")
    assert study.load_sample_sheet(tmp_path, study.load_config(tmp_path))["file"].to_list() == ["a.mzML.gz"]
    # a compressed run in the folder that the sheet does not name is listed as not processed
    (tmp_path / "extra.mzXML.gz").write_bytes(b"")
    assert "extra.mzXML.gz" in " ".join(unlisted_runs(tmp_path, ["a.mzML.gz"]))
    assert unlisted_runs(tmp_path, ["a.mzML.gz", "extra.mzXML.gz"]) == []
    (tmp_path / "extra.mzXML.gz").unlink()
    # a run and its compressed copy in one folder would be one sample twice: refused, both named
    (tmp_path / "samples.tsv").unlink()
    (tmp_path / "a.mzML").write_bytes(gzip.decompress((tmp_path / "a.mzML.gz").read_bytes()))
    with pytest.raises(InputError, match=r"2 files give the same sample_id 'a': 'a.mzML', 'a.mzML.gz'"):
        study.load_sample_sheet(tmp_path, study.load_config(tmp_path))
    (tmp_path / "a.mzML").unlink()
    (tmp_path / "b.mzML.bz2").write_bytes(b"BZh91AY&SY")
    (tmp_path / "samples.tsv").write_text("sample_id\tfile\nA\ta.mzML.gz\nB\tb.mzML.bz2\n")
    with pytest.raises(InputError, match=r"row 3: file 'b.mzML.bz2' is not .mzML or .mzXML \(or .mzML.gz\) "
                                         r"\(it is bz2-compressed\).*bunzip2.*gzip, .mzML.gz, is read as it is"):
        study.load_sample_sheet(tmp_path, study.load_config(tmp_path))


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("x.mzML.gz", lambda run: gzip.compress(b'<?xml version="1.0"?>\n<mzXML>\n</mzXML>\n'),
         r"holds mzXML but is named .mzML.gz.*rename it to x.mzXML.gz"),
        ("x.mzML.gz", lambda run: run, r"named .gz but is not gzip-compressed.*rename it to x.mzML "),
        ("x.mzML.gz", lambda run: gzip.compress(run)[:10] + b"\x00" * 300,
         r"gzip-compressed but cannot be decompressed"),
        ("x.mzML.gz", lambda run: gzip.compress(b"<!DOCTYPE html><html>404</html>"), r"holds no <mzML> or <mzXML>"),
    ],
)
def test_a_bad_compressed_run_is_refused_before_any_job(tmp_path: Path, name: str, content, message: str) -> None:
    run = write_run(make_run(default_compounds(2), rt_end_s=5.0), tmp_path / "run.mzML").read_bytes()
    (tmp_path / name).write_bytes(content(run))
    (tmp_path / "samples.tsv").write_text(f"sample_id\tfile\nA\t{name}\n")
    with pytest.raises(InputError, match=message) as err:
        study.load_sample_sheet(tmp_path, study.load_config(tmp_path))
    assert "row 2" in str(err.value) and "sample 'A'" in str(err.value)


def test_ms_levels_of_a_gzip_run_for_the_ms1_only_warning(tmp_path: Path, monkeypatch) -> None:
    from test_detect import MS2Scan

    from ms2study.io import runfiles

    compounds = default_compounds(4)
    dda = _gzip(write_run(make_run(compounds, [MS2Scan(compounds[0].mz, compounds[0].rt_s)]), tmp_path / "d.mzML"))
    ms1_only = _gzip(write_run(make_run(compounds), tmp_path / "m.mzML"))
    assert ms_levels_sampled(dda)[1] == 1 and ms_levels_sampled(dda)[0] > 200
    n_ms1, n_ms2, _ = ms_levels_sampled(ms1_only)
    assert n_ms2 == 0 and n_ms1 == load_experiment(ms1_only, "M").getNrSpectra() > 200
    # read in blocks (a lab run's decompressed size is many blocks): a block ends at a line end, nothing is lost
    monkeypatch.setattr(runfiles, "MS_LEVEL_BYTES", 3000)
    assert ms_levels_sampled(ms1_only)[:2] == (n_ms1, 0) and ms_levels_sampled(dda)[1] == 1
    sheet = pl.DataFrame({"sample_id": ["D", "M"], "file": [dda.name, ms1_only.name]})
    warnings = ms1_only_warnings(tmp_path, sheet)
    assert len(warnings) == 1 and warnings[0].startswith("sample M (m.mzML.gz): no MS/MS scan in the whole file")
