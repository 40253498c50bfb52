"""Cases found by the new-user probe of issue 14 (bad inputs tried as a user would), each stopped at the door with a
message naming the file, row or key and the fix, before Snakemake starts (no .snakemake folder is made).

The probe itself lives outside the project; these are its FAILs, fixed, as tests.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
from pathlib import Path

import pytest

from ms2study import study
from ms2study.cli import main
from ms2study.core.errors import InputError


def _touch_mzml(folder: Path, name: str) -> None:
    (folder / name).write_text("<mzML></mzML>")


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


def test_nested_key_in_command_line_config_is_refused_with_the_yaml_to_write(tmp_path: Path,
                                                                            capsys: pytest.CaptureFixture) -> None:
    _two_sample_study(tmp_path)
    code, err = _run(["run", str(tmp_path), "-n", "--config", "annotate.fdr=0.05"], capsys)
    assert code == 1
    assert "--config annotate.fdr=0.05" in err and "annotate: {fdr: 0.05}" in err and "config.yaml" in err
    assert "Traceback" not in err and not (tmp_path / ".snakemake").exists()
    # a bad value in that form is named like one in config.yaml (what is allowed) before the form is refused
    code, err = _run(["run", str(tmp_path), "-n", "--config", "annotate.fdr=high"], capsys)
    assert code == 1 and "key 'annotate.fdr': 'high' is not of type 'number'" in err
    # ... and the fix points to config.yaml, since --config cannot take the corrected value in that form either
    assert "correct the key(s) named above in the study's config.yaml (--config takes top-level keys only)" in err
    assert not (tmp_path / ".snakemake").exists()


def test_command_line_config_is_validated_before_snakemake(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    _two_sample_study(tmp_path)
    code, err = _run(["run", str(tmp_path), "-n", "--config", "reference_sample=S99"], capsys)
    assert code == 1 and "reference_sample 'S99' is not in the sample sheet" in err
    # a mapping given with --config stays text in Snakemake: refused with the hint, before any job
    code, err = _run(["run", str(tmp_path), "-n", "--config", "annotate={fdr: 0.05}"], capsys)
    assert code == 1 and "key 'annotate.fdr'" in err and "study's config.yaml instead" in err
    (tmp_path / "over.yaml").write_text("annotate: {fdr: high}\n")
    code, err = _run(["run", str(tmp_path), "-n", "--configfile", str(tmp_path / "over.yaml")], capsys)
    assert code == 1 and "key 'annotate.fdr'" in err
    assert "Traceback" not in err and "WorkflowError" not in err and not (tmp_path / ".snakemake").exists()


def test_missing_library_stops_the_run_before_snakemake(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    _two_sample_study(tmp_path)
    (tmp_path / "config.yaml").write_text("library: nothere.mgf\n")
    code, err = _run(["run", str(tmp_path), "-n"], capsys)
    assert code == 1 and "library file 'nothere.mgf' not found" in err and "did you mean" not in err
    # the file named is the config.yaml that set it, not the missing library (a trial)
    assert f"file '{tmp_path / 'config.yaml'}': library file 'nothere.mgf'" in err
    assert "WorkflowError" not in err and not (tmp_path / ".snakemake").exists()
    (tmp_path / "library.mgf").write_text("BEGIN IONS\nPEPMASS=100\n50 10\nEND IONS\n")
    (tmp_path / "config.yaml").write_text("library: libary.mgf\n")  # a typo of a file that is there: suggested
    code, err = _run(["run", str(tmp_path), "-n"], capsys)
    assert code == 1 and "library file 'libary.mgf' not found" in err and "did you mean 'library.mgf'?" in err


def test_an_lc_ms_run_as_query_points_to_the_pipeline(tmp_path: Path) -> None:
    from ms2study.io.queries import read_query_spectra

    _touch_mzml(tmp_path, "run.mzML")
    with pytest.raises(InputError, match=r"LC-MS run is not a query spectrum file.*ms2study run STUDY_DIR.*"
                                         r"spectra\.parquet") as err:
        read_query_spectra(tmp_path / "run.mzML")
    assert "run.mzML" in str(err.value)


@pytest.mark.parametrize("args", [["--help"], ["run", "--help"], ["simulate", "--help"], ["score", "--help"]])
def test_help_is_plain_text(args: list[str]) -> None:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        main(args)
    text = out.getvalue()
    assert "usage: ms2study" in text and "``" not in text and ":mod:`" not in text


def _small_mzml(path: Path) -> bytes:
    import numpy as np
    import pyopenms as oms

    exp = oms.MSExperiment()
    for i in range(4):
        spec = oms.MSSpectrum()
        spec.setMSLevel(1)
        spec.setRT(float(i))
        spec.set_peaks((np.array([100.0, 200.0]), np.array([1e4, 2e4], dtype=np.float32)))
        exp.addSpectrum(spec)
    oms.MzMLFile().store(str(path), exp)
    return path.read_bytes()


def _damaged(whole: bytes) -> bytes:
    """``whole`` with its first scan's intensities (float32 1e4, 2e4) replaced by garbage of the same length."""
    import base64

    import numpy as np

    good = base64.b64encode(np.array([1e4, 2e4], dtype=np.float32).tobytes())
    bad = base64.b64encode(np.array([1e31, -1e6], dtype=np.float32).tobytes())
    assert good in whole
    return whole.replace(good, bad, 1)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("empty.mzML", lambda whole: b"", r"the file is empty \(0 bytes\).*copy or convert the run again"),
        ("cut.mzML", lambda whole: whole[: len(whole) // 2], r"ends before its closing tag: it is truncated"),
        ("named.mzXML", lambda whole: whole, r"holds mzML but is named \.mzXML.*rename it to named\.mzML"),
        ("vendor.mzML", lambda whole: b"\x01\x02binary", r"not XML.*msconvert"),
        # a saved web page (trial J: it passed the pre-run check)
        ("page.mzML", lambda whole: b"<!DOCTYPE html><html><body>404 Not Found</body></html>",
         r"holds no <mzML> or <mzXML> element.*not a run"),
        # a damaged copy: one scan's intensity block decodes to values no detector writes (a trial's run read 1e31)
        ("damaged.mzML", lambda whole: _damaged(whole),
         r"1 scan\(s\) hold values no instrument writes, e.g. scan .* at RT 0.0 s: m/z 100, intensity 1e\+31"
         r".*copy or convert the run again"),
    ],
)
def test_unreadable_runs_say_what_is_wrong_with_the_file(tmp_path: Path, name: str, content, message: str) -> None:
    from ms2study.io.msio import load_experiment

    whole = _small_mzml(tmp_path / "whole.mzML")
    assert load_experiment(tmp_path / "whole.mzML", "W").getNrSpectra() == 4
    (tmp_path / name).write_bytes(content(whole))
    with pytest.raises(InputError, match=message) as err:
        load_experiment(tmp_path / name, "S07")
    assert "sample 'S07'" in str(err.value) and name in str(err.value)
    # a gzip-compressed run under its plain name is read (pyOpenMS decompresses it)
    (tmp_path / "packed.mzML").write_bytes(gzip.compress(whole))
    assert load_experiment(tmp_path / "packed.mzML", "P").getNrSpectra() == 4


def test_a_retry_of_detect_on_an_unchanged_bad_file_does_not_read_it_again(tmp_path: Path, monkeypatch,
                                                                           capsys: pytest.CaptureFixture) -> None:
    """Trial finding: a truncated run made detect fail, and the profile's retry read it again to fail the same way.
    Snakemake cannot exempt some errors from retries, so detect remembers the error beside its output: the retry on
    the unchanged file repeats the same message without reading the file; a replaced file is read again."""
    from ms2study.stages import detect

    whole = _small_mzml(tmp_path / "whole.mzML")
    bad = tmp_path / "bad.mzML"
    bad.write_bytes(whole[: len(whole) // 2])
    calls = []
    real = detect.load_experiment
    monkeypatch.setattr(detect, "load_experiment", lambda *a, **k: (calls.append(a), real(*a, **k))[1])
    out = tmp_path / "S07" / "features.parquet"
    argv = ["detect", "--mzml", str(bad), "--sample-id", "S07", "--out", str(out)]

    def error_line() -> str:
        return [line for line in capsys.readouterr().err.splitlines() if "ms2study detect: error:" in line][-1]

    assert main(argv) == 1
    first = error_line()
    assert "truncated" in first and len(calls) == 1 and detect.bad_input_mark(out).exists()
    assert main(argv) == 1
    assert error_line() == first and len(calls) == 1  # the same message, the file not read again
    bad.write_bytes(whole)  # replaced: read again, and the mark goes once the run is read
    assert main(argv) == 0 and len(calls) == 2 and not detect.bad_input_mark(out).exists()



def test_a_retry_of_calibrate_library_on_an_unchanged_refused_library_does_not_search_it_again(
        tmp_path: Path, monkeypatch, capsys: pytest.CaptureFixture) -> None:
    """Reported in session 26: Snakemake retried a calibration refused for bad input (the profiles retry every
    failed job). As detect does, the refusal is remembered beside the output: a retry on the unchanged index and
    parameters repeats the message without searching; a rebuilt index is calibrated again."""
    from ms2study.identification import calibration
    from ms2study.library.index import index_library
    from ms2study.stages import calibrate

    mgf = tmp_path / "lab.mgf"
    # one compound: a leave-structure-out search finds no wrong candidate, so no null can be measured
    mgf.write_text("".join(f"BEGIN IONS\nTITLE=c{k}\nNAME=caffeine\nPEPMASS=195.0877\nCHARGE=1+\n"
                           f"{80 + k}.0 10\n138.0662 50\nEND IONS\n" for k in range(3)))
    index = tmp_path / "results" / "library" / "lab"
    index_library(mgf, index)
    calls = []
    real = calibration.calibrate_index
    monkeypatch.setattr(calibrate, "calibrate_index", lambda *a, **k: (calls.append(a), real(*a, **k))[1])
    out = tmp_path / "results" / "confidence" / "lab.json"
    argv = ["calibrate-library", "--index", str(index), "--out", str(out)]

    def error_line() -> str:
        return [line for line in capsys.readouterr().err.splitlines() if "calibrate-library: error:" in line][-1]

    assert main(argv) == 1
    first = error_line()
    assert "wrong candidate" in first and len(calls) == 1 and calibrate.badinput.mark_for(out).exists()
    assert main(argv) == 1
    assert error_line() == first and len(calls) == 1 and not out.exists()  # repeated, not searched again
    assert main([*argv, "--params", json.dumps({"fdr": 0.05})]) == 1 and len(calls) == 2  # a changed setting
    index_library(mgf, index)  # rebuilt (a changed library): searched again
    assert main(argv) == 1 and len(calls) == 3


_FAILED_LOG = """Job stats:
job       count
------  -------
detect        3
report        1
total         4

[Mon Nov 30 10:28:53 2026]
localrule detect:
    input: mzml/S02.mzML
    output: results/samples/S02/features.parquet
    log: logs/detect/S02.log
    jobid: 2
    wildcards: sample=S02

[Mon Nov 30 10:28:53 2026]
localrule detect:
    input: mzml/S01.mzML
    output: results/samples/S01/features.parquet
    log: logs/detect/S01.log
    jobid: 1
    wildcards: sample=S01

[Mon Nov 30 10:28:53 2026]
localrule detect:
    input: mzml/S05.mzML
    output: results/samples/S05/features.parquet
    log: logs/detect/S05.log
    jobid: 3
    wildcards: sample=S05
[Mon Nov 30 10:28:58 2026]
Finished jobid: 1 (Rule: detect)
Error in rule detect:
    jobid: 2
    output: results/samples/S02/features.parquet
    log: logs/detect/S02.log (check log file(s) for error details)
Exiting because a job execution failed. Look below for error messages
"""


def test_a_failed_run_marks_the_earlier_study_tables_out_of_date_until_a_run_finishes(tmp_path: Path) -> None:
    import os
    import time

    from ms2study import runner

    study_tables = tmp_path / "results" / "study"
    study_tables.mkdir(parents=True)
    (study_tables / "feature_matrix.parquet").write_text("earlier run")
    for sample in ("S01", "S02"):  # per-sample outputs of an earlier run
        (tmp_path / "results" / "samples" / sample).mkdir(parents=True)
        (tmp_path / "results" / "samples" / sample / "spectra.parquet").write_text("earlier run")
    # as the report is written: one self-contained page whose embedded scripts can hold tag-like text
    earlier_report = ('<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>ms2study report: demo'
                      '</title><script>var s = "<body class=x><title>";</script></head><body data-x="1">'
                      "<h1>ms2study report: demo \u00b5</h1><p>Main findings</p></body></html>\n")
    (study_tables / "report.html").write_text(earlier_report, encoding="utf-8")
    for name in ("report.html", "feature_matrix.parquet"):
        os.utime(study_tables / name, (time.time() - 3600, time.time() - 3600))
    since = time.time()
    (tmp_path / ".snakemake" / "log").mkdir(parents=True)
    (tmp_path / ".snakemake" / "log" / "run.snakemake.log").write_text(_FAILED_LOG)
    (tmp_path / "logs" / "detect").mkdir(parents=True)
    (tmp_path / "logs" / "detect" / "S02.log").write_text(
        "2026-11-30 INFO reading\nms2study detect: error: sample 'S02', file 'mzml/S02.mzML': the file is empty "
        "(0 bytes) -> copy or convert the run again\n")
    summary = runner.summarize(tmp_path, 1, since)
    # the failed job's own message is shown under its log path
    assert "\n          sample 'S02', file 'mzml/S02.mzML': the file is empty (0 bytes) -> copy or" in summary
    note = study_tables / "OUT_OF_DATE.txt"
    assert "OUT OF DATE" in summary and str(study_tables) in summary and "OUT_OF_DATE.txt" in summary
    assert not (study_tables / "report.html").exists() and (study_tables / "report.out-of-date.html").exists()
    # the moved report says so itself (opened later from a bookmark): a banner first in <body>, the title prefixed
    moved = (study_tables / "report.out-of-date.html").read_text(encoding="utf-8")
    banner = moved.index('<div id="ms2study-out-of-date"')
    assert moved[:banner].endswith('</script></head><body data-x="1">')
    assert "<title>OUT OF DATE: ms2study report: demo</title>" in moved
    assert 'var s = "<body class=x><title>";' in moved  # script text untouched
    assert "OUT OF DATE: this report is from an earlier run" in moved[banner:]
    assert "did not finish (1 job(s) failed: detect (sample S02))" in moved and "OUT_OF_DATE.txt" in moved
    # the rest of the page is kept as it was, and the time it was made
    without = moved[:banner] + moved[moved.index("</div>", banner) + len("</div>"):]
    assert without == earlier_report.replace("<title>", "<title>OUT OF DATE: ", 1)
    assert (study_tables / "report.out-of-date.html").stat().st_mtime < since - 3000
    text = note.read_text()
    assert text.startswith("OUT OF DATE: the tables in this folder were made by an earlier run")
    # the validated sheet beside them is the current one (written before any job, when it changed): said so
    assert "samples.tsv is the exception: it is the study's sheet as that run read it" in text
    assert "that this run did not rewrite are from that earlier run too" in summary
    assert "and samples.tsv holds the current sheet" in summary
    assert "detect  sample S02  log: logs/detect/S02.log" in text
    # the samples whose jobs failed (S02) or were cut short (S05, started, never finished) are named, S01 is not
    assert "Samples whose jobs failed or did not finish in that run: S02, S05." in text
    assert "results/samples/S02/, results/samples/S05/" in text
    assert "sample(s) S02, S05 failed or did not finish" in summary
    # the folder of a sample whose jobs failed carries the mark too (a trial found old outputs there, unmarked)
    sample_note = tmp_path / "results" / "samples" / "S02" / "OUT_OF_DATE.txt"
    assert sample_note.read_text().startswith("OUT OF DATE: the run started")
    assert "detect  log: logs/detect/S02.log" in sample_note.read_text()
    assert not (tmp_path / "results" / "samples" / "S01" / "OUT_OF_DATE.txt").exists()
    # a run that finishes writes its report and removes the note and the moved report
    later = time.time()
    (study_tables / "report.html").write_text("this run")
    assert "the run finished" in runner.summarize(tmp_path, 0, later - 1)
    assert not note.exists() and not (study_tables / "report.out-of-date.html").exists()
    assert not sample_note.exists()


def test_a_moved_report_without_a_body_tag_is_left_as_it_is_and_the_run_says_so(tmp_path: Path) -> None:
    import os
    import time

    from ms2study import runner

    study_tables = tmp_path / "results" / "study"
    study_tables.mkdir(parents=True)
    (study_tables / "report.html").write_text("<html>an earlier run's report</html>")
    os.utime(study_tables / "report.html", (time.time() - 3600, time.time() - 3600))
    since = time.time()
    (tmp_path / ".snakemake" / "log").mkdir(parents=True)
    (tmp_path / ".snakemake" / "log" / "run.snakemake.log").write_text(_FAILED_LOG)
    summary = runner.summarize(tmp_path, 1, since)
    assert (study_tables / "report.out-of-date.html").read_text() == "<html>an earlier run's report</html>"
    assert "carries no out-of-date banner: no <body> tag was found in it; it was left as it is" in summary


_NOTHING_LOG = """Assuming unrestricted shared filesystem usage.

SNAKEMAKE
=========
  Snakemake version: 9.27.1
  Config file(s): [PosixPath('/work/main/config/config.yaml'), 'config.yaml']

Building DAG of jobs...
Nothing to be done (all requested files are present and up to date).
"""


def test_a_run_with_nothing_to_do_says_so_in_one_closing_line(tmp_path: Path) -> None:
    """Trial finding: `ms2study run DIR` on an up-to-date study printed no closing line (only a run that rewrote the
    report did). It now says that every requested output is up to date and where the report is; a run whose jobs
    did not include the report says it did not write one."""
    import os
    import time

    from ms2study import runner

    study_tables = tmp_path / "results" / "study"
    study_tables.mkdir(parents=True)
    (study_tables / "report.html").write_text("earlier run")
    os.utime(study_tables / "report.html", (time.time() - 3600, time.time() - 3600))
    since = time.time()
    (tmp_path / ".snakemake" / "log").mkdir(parents=True)
    (tmp_path / ".snakemake" / "metadata").mkdir()  # Snakemake's record of the report (a run made it)
    import base64
    (tmp_path / ".snakemake" / "metadata" / base64.urlsafe_b64encode(b"results/study/report.html").decode()).write_text("{}")
    log = tmp_path / ".snakemake" / "log" / "run.snakemake.log"
    log.write_text(_NOTHING_LOG)
    summary = runner.summarize(tmp_path, 0, since)
    assert summary == ("ms2study: nothing to do: every requested output is present and up to date; report: "
                       f"{tmp_path / 'results' / 'study' / 'report.html'}")
    # a run of a target the report does not depend on: jobs ran, the report is the earlier one
    log.write_text("Job stats:\njob      count\n-------  -------\ndetect         1\ntotal          1\n\n"
                   "Finished jobid: 0 (Rule: detect)\n1 of 1 steps (100%) done\n")
    summary = runner.summarize(tmp_path, 0, since)
    assert summary.startswith("ms2study: the run finished; it did not write the report (the one there is from an "
                              "earlier run: ") and "\n" not in summary


def test_a_study_folder_the_user_cannot_write_stops_the_run_before_snakemake(tmp_path: Path) -> None:
    import os
    import shutil
    import subprocess
    import sys
    import tempfile

    root = Path(tempfile.mkdtemp(prefix="ms2study-readonly-"))  # world-readable, unlike pytest's tmp_path
    try:
        os.chmod(root, 0o755)
        study_dir = root / "study"
        study_dir.mkdir()
        _two_sample_study(study_dir)
        repo = Path(__file__).resolve().parents[1]
        command = [sys.executable, "-m", "ms2study", "run", str(study_dir), "--cores", "1"]
        if os.geteuid() == 0:  # root writes anywhere: run as nobody, for whom the folder is read-only
            if not shutil.which("setpriv"):
                pytest.skip("running as root without setpriv: cannot run as a user without write permission")
            command = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *command]
            can_start = subprocess.run([*command[:4], sys.executable, "-c", "import ms2study"], cwd=root,
                                       env=dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1] /
                                                                           "workflow")), capture_output=True)
            if can_start.returncode != 0:
                pytest.skip("user nobody cannot start this Python (its files are not readable to other users)")
        else:
            os.chmod(study_dir, 0o555)
        env = dict(os.environ, PYTHONPATH=str(repo / "workflow"), HOME=str(root))
        done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=root, check=False)
        assert done.returncode == 1, done.stderr[-2000:]
        assert f"the run cannot write in {study_dir}" in done.stderr and "write permission" in done.stderr
        assert "Traceback" not in done.stderr and not (study_dir / ".snakemake").exists()
    finally:
        os.chmod(root / "study", 0o755)
        shutil.rmtree(root, ignore_errors=True)


def test_simulate_with_a_gradient_too_short_names_the_parameter(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code, err = _run(["simulate", str(tmp_path / "sim"), "--samples", "2", "--params", '{"rt_max_s": 240}'], capsys)
    assert code == 1 and "no room on the gradient" in err and "raise rt_max_s (now 240 s" in err
    assert "Traceback" not in err


def test_score_says_when_no_library_spectrum_has_the_queries_ion_mode() -> None:
    import numpy as np
    import polars as pl

    from ms2study.stages.search import ion_mode_mismatch

    queries = pl.DataFrame({"ion_mode": ["positive", None, "positive"]})
    message = ion_mode_mismatch(queries, np.array([-1, -1]), "positive")
    assert message and "queries: 3 positive; library: 2 negative" in message and "ion mode" in message
    assert ion_mode_mismatch(queries, np.array([-1, 1]), "positive") is None  # overlap
    assert ion_mode_mismatch(queries, np.array([-1, 0]), "positive") is None  # unknown library mode: searched in both
    assert "queries: 2 positive; library: 1 negative" in ion_mode_mismatch(pl.DataFrame({"ion_mode": [None, None]}),
                                                                        np.array([-1]), "Positive")


def test_every_problem_of_a_study_is_named_at_once(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """Fresh-user trial: the outcome-column error hid the library path's typo until it was fixed. Both at once now,
    numbered; one problem alone reads as before."""
    _two_sample_study(tmp_path)
    (tmp_path / "library.mgf").write_text("BEGIN IONS\nPEPMASS=100\n50 10\nEND IONS\n")
    outcome = "models:\n  outcomes:\n    - {column: disease, type: binary}\n"  # no such column in the sheet
    (tmp_path / "config.yaml").write_text("library: libary.mgf\n" + outcome)
    code, err = _run(["run", str(tmp_path), "-n"], capsys)
    assert code == 1 and "2 problems with this study: (1) " in err and "column 'disease'" in err
    assert f"(2) file '{tmp_path / 'config.yaml'}': library file 'libary.mgf' not found" in err
    assert "did you mean" in err
    assert "Traceback" not in err and not (tmp_path / ".snakemake").exists()
    # (a one-record library without a structure cannot calibrate q-values: names without them, so that the
    # outcome is the one problem left)
    (tmp_path / "config.yaml").write_text("library: library.mgf\nannotate: {confidence: none}\n" + outcome)
    code, err = _run(["run", str(tmp_path), "-n"], capsys)
    assert code == 1 and "problems with this study" not in err and "column 'disease'" in err
    (tmp_path / "config.yaml").write_text("library: library.mgf\n" + outcome)
    code, err = _run(["run", str(tmp_path), "-n"], capsys)
    assert "2 problems with this study" in err and "cannot calibrate identification confidence" in err


def test_jobs_kept_without_snakemake_records_are_named_in_the_closing_lines(tmp_path: Path) -> None:
    """Snakemake's note that kept jobs have no metadata (a study copied without .snakemake, some jobs rerun) is turned
    into a warning naming the rules and --forceall; a run with its records gets none."""
    import time

    from ms2study import runner
    from ms2study.runlog import parse_snakemake_log

    text = ("Job stats:\njob      count\n-------  -------\ndetect         1\ntotal          1\n\n"
            "Finished jobid: 0 (Rule: detect)\n1 of 1 steps (100%) done\n"
            "3 jobs have missing provenance/metadata so that it in part cannot be used to trigger re-runs.\n"
            "Rules with missing metadata: spectra embed spectra\n")
    run = parse_snakemake_log(text)
    assert (run.unrecorded_jobs, run.unrecorded_rules) == (3, ["embed", "spectra"])
    since = time.time()
    (tmp_path / ".snakemake" / "log").mkdir(parents=True)
    (tmp_path / ".snakemake" / "log" / "run.snakemake.log").write_text(text)
    summary = runner.summarize(tmp_path, 0, since)
    assert "warning: 3 finished job(s) were kept without Snakemake's records" in summary and "--forceall" in summary
    assert "(rules: embed, spectra)" in summary
    # outputs without records after a run that did nothing (Snakemake then says nothing): the runner's own check
    import base64

    from ms2study.runlog import unrecorded_outputs

    assert unrecorded_outputs(tmp_path) == []
    for name in ("results/study/report.html", "results/samples/S01/features.parquet",
                 "results/samples/S02/features.parquet"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x")
    (tmp_path / ".snakemake" / "log" / "run.snakemake.log").write_text(_NOTHING_LOG)
    assert unrecorded_outputs(tmp_path) == ["results/study/report.html", "results/samples/S01/features.parquet",
                                            "results/samples/S02/features.parquet"]
    summary = runner.summarize(tmp_path, 0, since)
    assert "warning: 3 result(s) have no Snakemake record" in summary and "--forceall" in summary
    # a rerun of the report alone records the report only: the samples' results still lack records (a fresh user's
    # trial: the warning vanished after one partial run); records for all of them (--forceall) end the warning
    (tmp_path / ".snakemake" / "metadata").mkdir()
    for name in unrecorded_outputs(tmp_path)[:1]:
        (tmp_path / ".snakemake" / "metadata" / base64.urlsafe_b64encode(name.encode()).decode()).write_text("{}")
    assert "2 result(s) have no Snakemake record" in runner.summarize(tmp_path, 0, since)
    for name in unrecorded_outputs(tmp_path):
        (tmp_path / ".snakemake" / "metadata" / base64.urlsafe_b64encode(name.encode()).decode()).write_text("{}")
    assert "records" not in runner.summarize(tmp_path, 0, since)



def test_a_finished_run_says_which_outcomes_were_not_modelled(tmp_path: Path) -> None:
    # a trial: 1 control and 2 treated samples; the run "finished" and only the report said nothing was modelled
    import json
    import time

    from ms2study import runner

    since = time.time() - 1
    models = tmp_path / "results" / "study" / "models"
    reason = "class 'control' has 1 sample(s); at least 2 per class are needed"
    for outcome, status in (("group", "skipped"), ("age", "ok"), ("site", "skipped")):
        (models / outcome).mkdir(parents=True)
        (models / outcome / "summary.json").write_text(json.dumps({
            "outcome": outcome, "status": status, "reason": reason if status == "skipped" else None}))
    # 'site' was removed from config.yaml: the last models job did not list it (a second trial's finding)
    (models / "models_done.json").write_text(json.dumps({"outcomes": [
        {"column": "group", "folder": "group", "status": "skipped", "reason": reason},
        {"column": "age", "folder": "age", "status": "ok", "reason": None}]}))
    for folder in ("differential", "attribution"):
        (tmp_path / "results" / "study" / folder).mkdir()
        for stem in ("age", "site"):
            (tmp_path / "results" / "study" / folder / f"{stem}.parquet").write_bytes(b"")
    (tmp_path / "results" / "study" / "report.html").write_text("<html></html>")
    summary = runner.summarize(tmp_path, 0, since)
    assert "the run finished" in summary
    assert f"outcome 'group' was not modelled: {reason}" in summary
    assert "results/study/differential/site.parquet" in summary and "results/study/attribution/site.parquet" in summary
    assert "differential/age.parquet" not in summary
    assert "'age'" not in summary and "'site'" not in summary
    assert "no longer configured are left from an earlier run" in summary and "results/study/models/site" in summary


def test_a_finished_run_prints_the_reports_warning_counts_and_its_cautions(tmp_path: Path) -> None:
    """A trial's study whose library held no spectrum of the runs' polarity ended with "the run finished" alone:
    the cause was in the report only. The report job logs its warnings by tier and each caution on the conclusions;
    the run's last lines repeat them; an older report log says nothing."""
    import os
    import time

    from ms2study import runner
    from ms2study.reporting.html import DOUBT, PROCESSING, QUALITY, Caution, plain_text, tier_summary

    warnings = [Caution("MS/MS of <b>negative</b> polarity were not searched &amp; named nothing", DOUBT),
                Caution("the groups differ in <code>batch</code>", DOUBT), "low MS/MS coverage",
                Caution("12 records dropped", PROCESSING)]
    assert tier_summary(warnings) == "2 cautions on the conclusions, 1 on data quality, 1 processing note"
    assert tier_summary([]) == "no warnings" and tier_summary([Caution("x", QUALITY)]) == "1 on data quality"
    assert plain_text(warnings[0]) == "MS/MS of negative polarity were not searched & named nothing"
    (tmp_path / "results" / "study").mkdir(parents=True)
    (tmp_path / "logs" / "study").mkdir(parents=True)
    since = time.time()
    (tmp_path / "results" / "study" / "report.html").write_text("this run")
    log = tmp_path / "logs" / "study" / "report.log"
    log.write_text("2026-12-03 10:00:00,000 WARNING ms2study.stages.report: caution on the conclusions: "
                   f"{plain_text(warnings[0])}\n"
                   "2026-12-03 10:00:00,000 WARNING ms2study.stages.report: caution on the conclusions: "
                   f"{plain_text(warnings[1])}\n"
                   f"2026-12-03 10:00:01,000 INFO ms2study.stages.report: report written to {tmp_path}/r.html: "
                   f"{tier_summary(warnings)}\n")
    summary = runner.summarize(tmp_path, 0, since - 1)
    assert ("the report's warnings: 2 cautions on the conclusions, 1 on data quality, 1 processing note"
            in summary), summary
    assert "  - MS/MS of negative polarity were not searched & named nothing" in summary
    assert "  - the groups differ in batch" in summary
    from ms2study.runlog import shortened

    # a long caution keeps both ends: its last clause says what to do (a trial saw every caution cut before its advice)
    long = "the samples fall into two groups " + "x" * 400 + " name it under models: covariates"
    assert shortened(long).startswith("the samples fall into two groups") and shortened(long).endswith(
        "name it under models: covariates") and " ... " in shortened(long) and len(shortened(long)) < 340
    assert shortened("short") == "short"
    # trial AD: cut between words, not inside them
    words = " ".join(f"word{i:03d}" for i in range(80))
    cut = shortened(words)
    head, tail = cut.split(" ... ")
    assert all(w in words.split() for w in head.split() + tail.split()), cut
    # trial AM: the tail starts at a clause, not inside a parenthesis quoting a benchmark
    caution = ("the study samples fall into two groups the outcome does not explain (S01, S03 | S02, S04; apart by "
               "9 within-group sds): a factor these tests do not include. " + "y" * 200 + " (in simulated spike-in "
               "studies split by their source run it changed the smallest q from 0.58 to 0.55); it follows the "
               "sample sheet's column 'background': name it under models: covariates")
    assert shortened(caution).split(" ... ")[1] == ("it follows the sample sheet's column 'background': name it under "
                                                    "models: covariates")
    # trial BG: a figure keeps the verdict that closes its parenthesis ("AUC 1.00, 95 % interval ..." lost "not shown
    # to beat chance")
    few = ("outcome group: only 5 control vs 5 case samples (fewer than 10 per class): the models' 95 % intervals are "
           "wide (best set, embedding: AUC 1.00, 95 % interval 0.64 to 1.00, short of the models' rule for beating "
           "chance), and the tests have little power; " + "z " * 150 + "name such a column under models: covariates")
    assert shortened(few).split(" ... ")[0].endswith("short of the models' rule for beating chance)"), shortened(few)
    # trial BN: the tail began inside its clause ("... large statistics and keep even large changes above q 0.05:
    # name such a column"); a clause that starts a little before the tail's window is kept whole
    clause = ("the null pools only 35 distinct splits, so a column that splits the samples gives large statistics "
              "and keeps even large changes above q 0.05: name such a column under models: covariates")
    cut = shortened("a caution on the study " + "v " * 200 + "; " + clause)
    assert cut.split(" ... ")[1] == clause, cut
    os.utime(log, (since - 100, since - 100))  # an earlier run's report log: not this run's report
    assert "the report's warnings" not in runner.summarize(tmp_path, 0, since - 1)


def test_a_folder_of_runs_without_sheet_library_or_outcome_is_told_what_it_will_not_get(tmp_path: Path) -> None:
    """A trial pointed ms2study run at a folder of runs: 85 jobs were planned with no word that nothing would be
    identified, compared or modelled."""
    from ms2study.runconfig import setup_notes

    notes = setup_notes(tmp_path, {"samples": "samples.tsv", "library": None, "models": {"outcomes": []}}, 3)
    assert len(notes) == 3
    assert notes[0].startswith(f"no sample sheet (samples.tsv) in {tmp_path}: its 3 run(s) are all read as study "
                               "samples")
    assert "no MS/MS is identified" in notes[1] and "no models and no differential tests" in notes[2]
    (tmp_path / "samples.tsv").write_text("sample_id\tfile\n")
    assert setup_notes(tmp_path, {"samples": "samples.tsv", "library": ["lib.mgf"],
                                  "models": {"outcomes": [{"column": "group", "type": "binary"}]}}, 3) == []


def test_a_failed_job_logged_again_from_its_group_job_is_listed_once(tmp_path: Path) -> None:
    """Trial on SLURM: a truncated mzML's detect job failed inside its group job, and Snakemake's log names it again
    from inside the group job under another job id; the summary listed the same failure twice. Once now."""
    import time

    from ms2study import runner

    since = time.time()
    error = _FAILED_LOG[_FAILED_LOG.index("Error in rule detect:"):_FAILED_LOG.index("Exiting")]
    log = _FAILED_LOG.replace(error, error + error.replace("jobid: 2", "jobid: 9"))
    (tmp_path / ".snakemake" / "log").mkdir(parents=True)
    (tmp_path / ".snakemake" / "log" / "run.snakemake.log").write_text(log)
    summary = runner.summarize(tmp_path, 1, since, ["--keep-going"])
    assert "the run failed: 1 job(s) failed, sample(s) S02 (jobs that did not depend on them were run, except" in summary
    assert summary.count("logs/detect/S02.log") == 1


_GROUP_FAILED_LOG = """Job 502eca13 has been submitted with SLURM jobid 5001 (log: {slurm}).
[Sat Dec  5 19:59:04 2026]
    message: Error in group sample
    log: {slurm} (check log file(s) for error details)
    jobs:
        rule spectra:
            jobid: 2
            output: results/samples/S02/spectra.parquet
            log: logs/spectra/S02.log (check log file(s) for error details)
        rule detect:
            jobid: 1
            output: results/samples/S01/features.parquet, results/samples/S01/chromatogram.parquet
            log: logs/detect/S01.log (check log file(s) for error details)
Logfile {slurm}:
================================================================================
/bin/sh: 1: /work/main/.venv/bin/python: not found
================================================================================
    [Sat Dec  5 19:59:04 2026]
    Error in rule detect:
        message: None
        jobid: 1
        input: mzml/S01.mzML
        output: results/samples/S01/features.parquet, results/samples/S01/chromatogram.parquet
        log: logs/detect/S01.log (check log file(s) for error details)
        shell:
            python -m ms2study --threads 1 detect --mzml mzml/S01.mzML > logs/detect/S01.log 2>&1
            (command exited with non-zero exit code)
Exiting because a job execution failed. Look below for error messages
"""


def test_a_failed_cluster_group_job_names_its_members_samples_and_the_cluster_logs_last_line(tmp_path: Path) -> None:
    """Trial BB (Snakemake 9.27, SLURM plugin 2.8): a group job of two samples failed on a node without the Python
    environment; Snakemake logged "message: Error in group sample" with indented member blocks, none of which was
    read, and the summary said the run failed "before a job failed". The members are now listed with their samples,
    the cluster job's log first, its last line as the cause, and a member log left by an earlier run is marked."""
    import os
    import time

    from ms2study import runner
    from ms2study.runlog import parse_snakemake_log

    slurm = ".snakemake/slurm_logs/group_sample_detect_spectra/5001.log"
    (tmp_path / "logs" / "spectra").mkdir(parents=True)
    (tmp_path / "logs" / "spectra" / "S02.log").write_text("INFO S02: 369 MS2 scans, 368 mapped\n")  # an earlier run
    os.utime(tmp_path / "logs" / "spectra" / "S02.log", (time.time() - 600, time.time() - 600))
    since = time.time()
    (tmp_path / slurm).parent.mkdir(parents=True)
    (tmp_path / slurm).write_text("/bin/sh: 1: /work/main/.venv/bin/python: not found\n")
    text = _GROUP_FAILED_LOG.format(slurm=slurm)
    run = parse_snakemake_log(text)
    assert sorted((job.rule, job.sample) for job in run.failed) == [("detect", "S01"), ("spectra", "S02")]
    assert all(job.logs[0] == slurm and job.message == "Error in group sample" for job in run.failed)
    (tmp_path / ".snakemake" / "log").mkdir(parents=True)
    (tmp_path / ".snakemake" / "log" / "run.snakemake.log").write_text(text)
    summary = runner.summarize(tmp_path, 1, since)
    assert "before a job failed" not in summary
    assert "the run failed: 2 job(s) failed, sample(s) S01, S02" in summary
    assert summary.count("the cluster job's log ends: /bin/sh: 1: /work/main/.venv/bin/python: not found") == 2
    assert f"{tmp_path / 'logs/spectra/S02.log'} (not written by this run)" in summary
