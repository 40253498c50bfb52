"""``ms2study simulate`` as a user meets it: both modes' options, bad inputs refused with a clear message and no
output folder left behind, an existing study kept unless --overwrite, an interrupted run leaving OUTDIR as it was.
Inputs are small and made here (the spike-in background and library of test_spikein)."""

from __future__ import annotations

import contextlib
import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl

import pytest
from test_spikein import write_background, write_library

from ms2study.cli import main
from ms2study.core.errors import InputError
from ms2study.simulate.outdir import study_folder
from ms2study.simulate.spikein_library import read_mgf_records

REPO = Path(__file__).resolve().parents[1]
SMALL = ["--samples", "2", "--compounds", "4", "--n-changed", "2", "--seed", "1"]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("simulate_cli_inputs")
    write_background(d / "bg.mzML")
    write_library(d / "lib.mgf")
    return d / "bg.mzML", d / "lib.mgf"


def run_cli(argv: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str]:
    """(exit status, stderr) of ``ms2study`` with ``argv``, argparse's exits included."""
    try:
        code = main(argv)
    except SystemExit as err:
        code = err.code
    return code, capsys.readouterr().err


def spikein(outdir: Path, inputs, *extra: str, library: Path | None = None) -> list[str]:
    return ["simulate", str(outdir), "--background", str(inputs[0]), "--library", str(library or inputs[1]),
            *SMALL, *extra]


def nothing_written(outdir: Path) -> bool:
    """No OUTDIR and no hidden half-written study beside it."""
    return not outdir.exists() and not list(outdir.parent.glob(f".{outdir.name}.*"))


# ------------------------------------------------------------------------------------------ the library's records

@pytest.mark.parametrize(("fields", "lacking", "advice"), [
    ({"drop": ("COMPOUND_CLASS",)}, "16 lack a COMPOUND_CLASS", "--n-changed 0"),
    ({"drop": ("FORMULA",)}, "16 lack a neutral FORMULA", "add FORMULA="),
    ({"drop": ("INCHIKEY",)}, "16 lack an INCHIKEY", "add INCHIKEY="),
    ({"drop": ("ADDUCT",), "extra_fields": "ADDUCT=[M+Na]+"}, "16 lack ADDUCT [M+H]+", "add ADDUCT=[M+H]+"),
    ({"drop": ("ADDUCT",)}, "16 lack ADDUCT [M+H]+", "add ADDUCT=[M+H]+"),
    ({"license_": "CC BY-NC"}, "16 lack a LICENSE permitting commercial use", "set it to CC0"),
])
def test_unusable_library_says_how_many_records_fail_what(tmp_path, inputs, capsys, fields, lacking, advice):
    write_library(tmp_path / "own.mgf", **fields)
    code, err = run_cli(spikein(tmp_path / "out", inputs, library=tmp_path / "own.mgf"), capsys)
    assert code == 1 and "Traceback" not in err
    assert "own.mgf" in err and "only 0 structures" in err and "(0 of 16 records)" in err
    assert lacking in err and advice in err
    assert nothing_written(tmp_path / "out")


def test_own_library_without_license_or_ion_mode_is_used(tmp_path, inputs, capsys):
    write_library(tmp_path / "own.mgf", drop=("LICENSE", "IONMODE"))
    code, err = run_cli(spikein(tmp_path / "out", inputs, library=tmp_path / "own.mgf"), capsys)
    assert code == 0, err
    assert (tmp_path / "out" / "mzml" / "S02.mzML").is_file() and (tmp_path / "out" / "simulation.json").is_file()
    assert len(read_mgf_records(tmp_path / "out" / "library.mgf")) >= 8  # the records stay in the written library


def test_library_without_classes_with_no_planted_effect(tmp_path, inputs, capsys):
    write_library(tmp_path / "own.mgf", drop=("COMPOUND_CLASS",))
    argv = spikein(tmp_path / "out", inputs, library=tmp_path / "own.mgf")
    argv[argv.index("--n-changed") + 1] = "0"
    code, err = run_cli(argv, capsys)
    assert code == 0, err
    assert (tmp_path / "out" / "ground_truth.tsv").is_file()


def test_summary_is_a_few_lines_naming_the_design_and_the_next_step(tmp_path, inputs, capsys):
    # the full design is simulation.json; the terminal gets what was made, the effect, where the truth is, what next
    try:
        code = main(spikein(tmp_path / "out", inputs))
    except SystemExit as err:
        code = err.code
    out = capsys.readouterr().out.strip().splitlines()
    assert code == 0
    assert len(out) == 6, out
    assert "2 samples (1 case)" in out[0] and "4 library compounds spiked into copies of bg.mzML" in out[0]
    assert "planted effect: 2 compounds of class" in out[1] and "higher in the cases" in out[1]
    assert "MS/MS scans of spiked compounds written" in out[2]  # trial AN: a study without any went unsaid
    # trial BA: "5 compounds 1.5x higher" whose folds ran from 1.19 to 1.84 in the samples, two below detection
    truth = pl.read_csv(tmp_path / "out" / "ground_truth.tsv", separator="\t").filter(pl.col("changed"))
    low, high = truth["realised_fold"].min(), truth["realised_fold"].max()
    assert out[3].startswith(f"  the 2 changed compounds: realised {low:.2f}x to {high:.2f}x in these samples")
    assert str(tmp_path / "out" / "ground_truth.tsv") in out[4] and out[5].endswith(f"ms2study run {tmp_path / 'out'}")
    argv = spikein(tmp_path / "none", inputs)
    argv[argv.index("--n-changed") + 1] = "0"
    main(argv)
    assert "no planted effect" in capsys.readouterr().out


# --------------------------------------------------------------------------------- options of the other mode

@pytest.mark.parametrize("option", [["--batches", "2"], ["--qc-every", "2"], ["--blanks", "1"], ["--adducts"],
                                    ["--realistic"], ["--profile", "demo"], ["--params", '{"batches": 2}']])
def test_synthetic_option_with_background_refused(tmp_path, inputs, capsys, option):
    code, err = run_cli(spikein(tmp_path / "out", inputs, *option), capsys)
    assert code == 1 and "Traceback" not in err
    assert option[0] in err and "synthetic mode" in err and "--background" in err
    assert nothing_written(tmp_path / "out")


@pytest.mark.parametrize("option", [["--library", "lib.mgf"], ["--compounds", "3"], ["--n-changed", "0"],
                                    ["--fold-change", "2"], ["--unknown-fraction", "0.5"], ["--library-size", "9"]])
def test_spikein_option_without_background_refused(tmp_path, capsys, option):
    code, err = run_cli(["simulate", str(tmp_path / "out"), "--samples", "2", *option], capsys)
    assert code == 1 and "Traceback" not in err
    assert option[0] in err and "spike-in mode" in err and "pass --background" in err
    assert nothing_written(tmp_path / "out")


def test_options_of_both_modes_are_all_named_at_once(tmp_path, capsys):
    """Trial AZ: `simulate --realistic --effect score --library-size 3000` took three refusals of one option each."""
    code, err = run_cli(["simulate", str(tmp_path / "out"), "--realistic", "--effect", "score", "--library-size",
                         "30"], capsys)
    assert code == 1 and "--library-size and --effect belong to the spike-in mode" in err
    assert "--profile (or --realistic) belongs to the synthetic mode, so one of the two sets must go" in err
    assert "drop --library-size and --effect" in err and nothing_written(tmp_path / "out")


# ---------------------------------------------------------------------------------------------- bad values

@pytest.mark.parametrize("option", [["--library-size", "-5"], ["--library-size", "0"], ["--compounds", "0"],
                                    ["--n-changed", "-1"], ["--samples", "1"], ["--seed", "-1"],
                                    ["--fold-change", "0"], ["--fold-change", "x"], ["--unknown-fraction", "1.5"]])
def test_bad_spikein_counts_refused(tmp_path, inputs, capsys, option):
    code, err = run_cli(spikein(tmp_path / "out", inputs, *option), capsys)
    assert code == 2 and "Traceback" not in err
    assert f"argument {option[0]}" in err and f"(got '{option[1]}')" in err
    assert nothing_written(tmp_path / "out")


@pytest.mark.parametrize("option", [["--batches", "0"], ["--blanks", "-1"], ["--qc-every", "-2"]])
def test_bad_synthetic_counts_refused(tmp_path, capsys, option):
    code, err = run_cli(["simulate", str(tmp_path / "out"), *option], capsys)
    assert code == 2 and f"argument {option[0]}" in err and "Traceback" not in err
    assert nothing_written(tmp_path / "out")


def test_missing_background_names_the_option_not_the_sample_sheet(tmp_path, inputs, capsys):
    code, err = run_cli(spikein(tmp_path / "out", (tmp_path / "nope.mzML", inputs[1])), capsys)
    assert code == 1 and "nope.mzML" in err and "--background" in err and "sample sheet" not in err
    assert nothing_written(tmp_path / "out")


def test_missing_library_names_the_option(tmp_path, inputs, capsys):
    code, err = run_cli(spikein(tmp_path / "out", inputs, library=tmp_path / "nope.mgf"), capsys)
    assert code == 1 and "nope.mgf" in err and "--library" in err
    assert nothing_written(tmp_path / "out")


def test_background_that_is_no_run_names_the_option(tmp_path, inputs, capsys):
    (tmp_path / "bg.mzML").write_text("not xml\n")
    code, err = run_cli(spikein(tmp_path / "out", (tmp_path / "bg.mzML", inputs[1])), capsys)
    assert code == 1 and "bg.mzML" in err and "the --background run" in err and "Traceback" not in err
    assert nothing_written(tmp_path / "out")


def test_corrupt_gzip_library_names_the_option(tmp_path, inputs, capsys):
    (tmp_path / "lib.mgf.gz").write_bytes(b"\x1f\x8b\x08\x00" + b"garbage" * 20)
    code, err = run_cli(spikein(tmp_path / "out", inputs, library=tmp_path / "lib.mgf.gz"), capsys)
    assert code == 1 and "lib.mgf.gz" in err and "cannot read the --library file" in err and "Traceback" not in err
    assert nothing_written(tmp_path / "out")


@pytest.mark.parametrize("mode", ["synthetic", "spike-in"])
def test_outdir_that_is_a_file_refused(tmp_path, inputs, capsys, mode):
    (tmp_path / "taken").write_text("mine\n")
    for outdir in (tmp_path / "taken", tmp_path / "taken" / "study"):
        argv = spikein(outdir, inputs) if mode == "spike-in" else ["simulate", str(outdir), "--samples", "2"]
        code, err = run_cli(argv, capsys)
        assert code == 1 and "Traceback" not in err and "taken" in err and "is a file" in err
    assert (tmp_path / "taken").read_text() == "mine\n"


# ------------------------------------------------------------------------------------------ an existing OUTDIR

@pytest.mark.parametrize("mode", ["synthetic", "spike-in"])
def test_existing_study_refused_without_overwrite(tmp_path, inputs, capsys, mode):
    out = tmp_path / "out"
    (out / "mzml").mkdir(parents=True)
    for name in ("samples.tsv", "simulation.json"):
        (out / name).write_text("old\n")
    argv = spikein(out, inputs) if mode == "spike-in" else ["simulate", str(out), "--samples", "2"]
    code, err = run_cli(argv, capsys)
    assert code == 1 and "already holds a simulated study" in err and "--overwrite" in err
    assert (out / "samples.tsv").read_text() == "old\n"
    assert not list(tmp_path.glob(".out.*"))


@pytest.mark.parametrize("mode", ["synthetic", "spike-in"])
def test_a_study_simulate_did_not_write_is_never_overwritten(tmp_path, inputs, capsys, mode):
    out = tmp_path / "mine"
    (out / "mzml").mkdir(parents=True)
    (out / "samples.tsv").write_text("sample_id\tfile\nA\tmzml/A.mzML\n")
    argv = (spikein(out, inputs) if mode == "spike-in" else ["simulate", str(out), "--samples", "2"]) + ["--overwrite"]
    code, err = run_cli(argv, capsys)
    assert code == 1 and "not a study that ms2study simulate wrote" in err
    assert (out / "samples.tsv").read_text().startswith("sample_id")


def test_overwrite_replaces_the_study_and_keeps_other_files(tmp_path, inputs, capsys, caplog):
    out = tmp_path / "out"
    assert run_cli(spikein(out, inputs, "--samples", "4"), capsys)[0] == 0
    (out / "notes.txt").write_text("mine\n")
    (out / "mzml" / "S07.mzML").write_text("a run the user added\n")
    sheet = (out / "samples.tsv").read_text()
    with caplog.at_level("INFO"):
        assert run_cli(spikein(out, inputs, "--overwrite", "--seed", "2"), capsys)[0] == 0
    # nothing the user added is deleted; the runs the new, smaller study does not write stay and are named
    assert sorted(p.name for p in (out / "mzml").iterdir()) == ["S01.mzML", "S02.mzML", "S03.mzML", "S04.mzML",
                                                                 "S07.mzML"]
    assert (out / "mzml" / "S07.mzML").read_text() == "a run the user added\n"
    assert (out / "notes.txt").read_text() == "mine\n"
    assert (out / "samples.tsv").read_text() != sheet and "S03" not in (out / "samples.tsv").read_text()
    kept = [r.getMessage() for r in caplog.records if "does not write" in r.getMessage()]
    assert kept and all(name in kept[0] for name in ("mzml/S03.mzML", "mzml/S04.mzML", "mzml/S07.mzML"))
    # the runs it did write (changed by the new seed) are not among the files left over (fresh-user finding)
    assert "mzml/S01.mzML" not in kept[0] and "mzml/S02.mzML" not in kept[0]
    assert not list(tmp_path.glob(".out.*"))


def test_overwrite_with_the_same_study_leaves_the_files_as_they_were(tmp_path, inputs, capsys, caplog):
    """Simulating the same study again changes no file, not even its modification time, so the pipeline reruns
    nothing (a study's results/ stay valid)."""
    out = tmp_path / "out"
    assert run_cli(spikein(out, inputs), capsys)[0] == 0
    files = sorted(p for p in out.rglob("*") if p.is_file())
    before = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in files}
    with caplog.at_level("INFO"):
        assert run_cli(spikein(out, inputs, "--overwrite"), capsys)[0] == 0
    assert {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in files} == before
    assert sorted(p for p in out.rglob("*") if p.is_file()) == files
    assert any("nothing changed" in r.getMessage() for r in caplog.records)


def test_empty_existing_outdir_is_used(tmp_path, inputs, capsys):
    (tmp_path / "out").mkdir()
    assert run_cli(spikein(tmp_path / "out", inputs), capsys)[0] == 0
    assert (tmp_path / "out" / "samples.tsv").is_file()


def test_failed_study_folder_leaves_nothing(tmp_path):
    out = tmp_path / "new" / "deeper" / "out"
    with pytest.raises(InputError), study_folder(out) as folder:
        (folder / "mzml").mkdir()
        (folder / "mzml" / "S01.mzML").write_text("half")
        raise InputError("stop")
    assert not (tmp_path / "new").exists()


def test_outdir_in_a_read_only_folder_is_built_inside_it(tmp_path, monkeypatch):
    """Only OUTDIR is writable (its parent is not): the half-written study lives hidden inside OUTDIR instead."""
    import tempfile

    out = tmp_path / "out"
    out.mkdir()
    real = tempfile.mkdtemp

    def mkdtemp(prefix="", suffix="", dir=None):
        if Path(dir) == tmp_path:
            raise PermissionError(13, "Permission denied")
        return real(prefix=prefix, suffix=suffix, dir=dir)

    monkeypatch.setattr(tempfile, "mkdtemp", mkdtemp)
    with study_folder(out) as folder:
        assert folder.parent == out
        (folder / "samples.tsv").write_text("x\n")
    assert sorted(p.name for p in out.iterdir()) == ["samples.tsv"]


@pytest.mark.parametrize(("signum", "status"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_terminated_run_leaves_the_earlier_study(tmp_path, inputs, signum, status):
    """SIGTERM or Ctrl-C half-way through re-simulating: OUTDIR keeps the earlier study whole, the half-written
    one is gone, and no traceback is printed."""
    out = tmp_path / "out"
    env = dict(os.environ, PYTHONPATH=str(REPO / "workflow"))
    base = [sys.executable, "-m", "ms2study", *spikein(out, inputs)]
    subprocess.run(base, check=True, capture_output=True, env=env)
    before = {p.name: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    base[base.index("--samples") + 1] = "2000"
    proc = subprocess.Popen([*base, "--overwrite"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    deadline = time.time() + 60
    while time.time() < deadline and not list(tmp_path.glob(".out.*/mzml/S03.mzML")):
        time.sleep(0.1)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == status and "Traceback" not in err.decode(), err.decode()
    assert {p.name: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert not list(tmp_path.glob(".out.*"))


# ------------------------------------------------------------------------------------------------------ --help

def test_help_explains_both_modes():
    text = io.StringIO()
    with contextlib.redirect_stdout(text), pytest.raises(SystemExit):
        main(["simulate", "--help"])
    text = text.getvalue()
    for words in ("Synthetic mode (without --background)", "Spike-in mode (--background RUN.mzML --library LIB.mgf)",
                  "synthetic mode (without --background):", "spike-in mode (--background RUN.mzML --library LIB.mgf):",
                  "--overwrite", "COMPOUND_CLASS", "THE SPIKE-IN MODE IN DETAIL"):
        assert words in text, words
    assert "--help of that module" not in text


def test_a_killed_runs_half_written_study_is_named(tmp_path, inputs, capsys, caplog):
    """A SIGKILLed simulate leaves its hidden .OUTDIR.*.partial folder behind (nothing can remove it); the next
    simulate into that OUTDIR names it so the user can reclaim the space."""
    (tmp_path / ".out.abc123.partial" / "mzml").mkdir(parents=True)
    with caplog.at_level("WARNING"):
        assert run_cli(spikein(tmp_path / "out", inputs), capsys)[0] == 0
    assert any(".out.abc123.partial" in r.getMessage() for r in caplog.records)
