"""Study folders: config merging and validation, sample sheets, and the errors users see."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from ms2study import study
from ms2study.core.errors import InputError

REPO = Path(__file__).resolve().parents[1]


def _touch_mzml(folder: Path, name: str) -> None:
    """A stand-in run whole at both ends (the pre-run check reads only those)."""
    root = "mzXML" if name.lower().endswith(".mzxml") else "mzML"
    (folder / name).write_text(f"<{root}></{root}>")


def test_defaults_are_valid_and_study_config_overrides(tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text("library: lib.mgf\ndetect: {noise_threshold_int: 500}\n")
    config = study.load_config(tmp_path)
    assert config["library"] == "lib.mgf"
    assert config["detect"]["noise_threshold_int"] == 500
    assert config["detect"]["mass_error_ppm"] == 10.0  # sections merge key by key
    assert config["samples"] == "samples.tsv"  # untouched default


def test_unknown_config_key_is_named(tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text("libary: lib.mgf\n")
    with pytest.raises(InputError, match="libary") as err:
        study.load_config(tmp_path)
    assert "config.yaml" in str(err.value)


def test_a_key_repeated_in_one_section_is_refused_not_silently_replaced(tmp_path: Path) -> None:
    """Trial finding: a second ``models:`` block (estimator) silently replaced the first (outcomes), and the study ran
    without its outcomes. Now ``ms2study run`` (load_config) and plain Snakemake (rules/common.smk) both stop with the
    file and both lines named; the merged block is accepted."""
    config = tmp_path / "config.yaml"
    config.write_text("models:\n  outcomes:\n    - {column: group, type: binary}\nmodels:\n  estimator: ridge\n")
    with pytest.raises(InputError, match=r"key 'models' appears twice at the top level \(lines 1 and 4\)") as err:
        study.load_config(tmp_path)
    assert "config.yaml" in str(err.value) and "merge the repeated blocks" in str(err.value)
    assert "unicode string" not in str(err.value)  # no parser internals
    _touch_mzml(tmp_path, "A.mzML")
    (tmp_path / "samples.tsv").write_text("sample_id\tfile\tgroup\nA\tA.mzML\tcase\n")
    result = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(tmp_path),
                             "--dry-run"], check=False, capture_output=True, text=True)
    assert result.returncode != 0 and "appears twice" in result.stdout + result.stderr
    config.write_text("models:\n  outcomes:\n    - {column: group, type: binary}\n  estimator: ridge\n")
    assert study.load_config(tmp_path)["models"]["estimator"] == "ridge"
    nested = tmp_path / "nested.yaml"
    nested.write_text("# a comment\ndetect:\n  noise_threshold_int: 500\n  noise_threshold_int: 800\n")
    with pytest.raises(InputError, match=r"key 'noise_threshold_int' appears twice in one section \(lines 3 and 4"):
        study.read_config_file(nested)


def test_bad_outcome_type_is_named(tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text("models: {outcomes: [{column: group, type: binomial}]}\n")
    with pytest.raises(InputError, match=r"models\.outcomes\.0\.type"):
        study.load_config(tmp_path)


def test_sheet_from_folder_uses_every_run(tmp_path: Path) -> None:
    _touch_mzml(tmp_path, "b run.mzML")
    _touch_mzml(tmp_path, "a.mzXML")
    (tmp_path / "notes.txt").write_text("x")
    sheet = study.load_sample_sheet(tmp_path, study.load_config(tmp_path))
    assert sheet["sample_id"].to_list() == ["a", "b_run"]
    assert sheet["file"].to_list() == ["a.mzXML", "b run.mzML"]


def test_empty_folder_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="samples.tsv"):
        study.load_sample_sheet(tmp_path, study.load_config(tmp_path))


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ("sample_id\tfile\nA\tmissing.mzML\n", r"row 2.*missing\.mzML.*does not exist"),
        ("sample_id\tfile\nA\ta.mzML\nA\ta.mzML\n", r"row 3: sample_id 'A' appears twice"),
        ("sample_id\tfile\nbad/id\ta.mzML\n", r"row 2 \(sample 'bad/id'\): column 'sample_id'"),
        ("sample\tfile\nA\ta.mzML\n", r"missing column 'sample_id'"),
        # trial W: the headers labs write for the two needed columns get a hint
        ("Sample Name\tfile\nA\ta.mzML\n", r"missing column 'sample_id' .*is 'Sample Name' the sample_id column\?"),
        ("sample_id\tFile_Name\nA\ta.mzML\n", r"missing column 'file' .*is 'File_Name' the file column\? then name"),
        ("Sample Name\tFile Name\nA\ta.mzML\n", (r"is 'Sample Name' the sample_id column\? then name it sample_id; "
                                                 r"is 'File Name' the file column\?")),
        ("sample_id\tfile\nA\tnotes.txt\n", r"not \.mzML or \.mzXML"),
        ("sample_id\tfile\nA\tempty.mzML\n", r"row 2.*empty\.mzML': the file is empty \(0 bytes\).*copy or convert"),
        # cut short (a trial's truncated run passed this check and failed only at its detect job)
        ("sample_id\tfile\nA\tcut.mzML\n", (r"row 2.*cut\.mzML': the file ends before its closing tag: it is "
                                            r"truncated.*convert the run again.*, or remove the row to run the "
                                            r"study without this sample")),
        ("sample_id file\nA a.mzML\n", r"looks separated by spaces, not tabs"),
        ("sample_id,file\nA,a.mzML\n", r"looks separated by commas, not tabs"),
        ("sample_id\tfile\nA a.mzML\nB a.mzML\n", r"rows look separated by something other than tabs"),
    ],
)
def test_sheet_errors_name_row_and_file(tmp_path: Path, rows: str, message: str) -> None:
    _touch_mzml(tmp_path, "a.mzML")
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "empty.mzML").write_bytes(b"")
    (tmp_path / "cut.mzML").write_text('<?xml version="1.0"?>\n<indexedmzML><mzML><run><spectrumList count="3">')
    (tmp_path / "samples.tsv").write_text(rows)
    with pytest.raises(InputError, match=message) as err:
        study.load_sample_sheet(tmp_path, study.load_config(tmp_path))
    assert "samples.tsv" in str(err.value)


def test_missing_outcome_column_is_named(tmp_path: Path) -> None:
    _touch_mzml(tmp_path, "a.mzML")
    (tmp_path / "samples.tsv").write_text("sample_id\tfile\tgroup\nA\ta.mzML\tcase\n")
    (tmp_path / "config.yaml").write_text("models: {outcomes: [{column: disease, type: binary}]}\n")
    config = study.load_config(tmp_path)
    sheet = study.load_sample_sheet(tmp_path, config)
    with pytest.raises(InputError, match="outcome column 'disease'"):
        study.check_outcomes(sheet, config)
    config = study.load_config(tmp_path, {"models": {"outcomes": [], "covariates": ["bmi"]}})
    with pytest.raises(InputError, match=r"covariate column 'bmi' \(config models.covariates\)"):
        study.check_outcomes(sheet, config)
    # every missing column at once, each with a near column name (a trial: 'Group' for 'group', one per run)
    config = study.load_config(tmp_path, {"models": {"outcomes": [{"column": "Group", "type": "binary"},
                                                                  {"column": "disease", "type": "binary"}]}})
    with pytest.raises(InputError) as err:
        study.check_outcomes(sheet, config)
    assert "outcome column 'Group' (config models.outcomes.0), did you mean 'group'?" in str(err.value)
    assert "outcome column 'disease' (config models.outcomes.1)" in str(err.value)


def test_library_paths_and_name(tmp_path: Path) -> None:
    (tmp_path / "My Lib.mgf.gz").write_text("")
    config = study.load_config(tmp_path, {"library": "My Lib.mgf.gz"})
    paths = study.library_paths(tmp_path, config)
    assert paths == [tmp_path / "My Lib.mgf.gz"]
    assert study.library_name(paths, config) == "My_Lib"
    with pytest.raises(InputError, match="nothere.mgf"):
        study.library_paths(tmp_path, study.load_config(tmp_path, {"library": ["nothere.mgf"]}))


def _outcome_study(folder: Path, values: list[str], outcome: str) -> tuple[dict, pl.DataFrame]:
    rows = ["sample_id\tfile\tgroup"]
    for i, value in enumerate(values):
        _touch_mzml(folder, f"r{i}.mzML")
        rows.append(f"S{i}\tr{i}.mzML\t{value}")
    (folder / "samples.tsv").write_text("\n".join(rows) + "\n")
    (folder / "config.yaml").write_text(f"models: {{outcomes: [{outcome}]}}\n")
    config = study.load_config(folder)
    return config, study.load_sample_sheet(folder, config)


@pytest.mark.parametrize(
    ("values", "outcome", "message"),
    [
        # all samples 'case' with positive_class case: the models job would have nothing to compare
        (["case", "case", "NA"], "{column: group, type: binary, positive_class: case}",
         r"models\.outcomes\.0\.positive_class is 'case'\) has a single class: every sample with a value has 'case'"),
        (["a", "a"], "{column: group, type: multiclass}", r"config models\.outcomes\.0\) has a single class"),
        # trial finding: every sample 'control' and positive_class case was answered "set positive_class to one of:
        # control", which would leave one class; the sheet is what lacks the other class
        (["control", "control"], "{column: group, type: binary, positive_class: case}",
         r"positive_class is 'case'\) has a single class: every sample with a value has 'control'"),
        (["a", "b", "c"], "{column: group, type: binary}", r"config models\.outcomes\.0\.type .*3 classes"),
        (["1.5", "high"], "{column: group, type: continuous}", r"models\.outcomes\.0\.type .*has the value 'high'"),
    ],
)
def test_outcomes_that_cannot_be_modelled_are_refused_at_validation(tmp_path: Path, values: list[str], outcome: str,
                                                                    message: str) -> None:
    config, sheet = _outcome_study(tmp_path, values, outcome)
    with pytest.raises(InputError, match=message) as err:
        study.check_outcomes(sheet, config, str(tmp_path / "samples.tsv"))
    assert str(tmp_path / "samples.tsv") in str(err.value)


def test_a_wrong_positive_class_names_the_config_and_the_classes_of_the_sheet(tmp_path: Path,
                                                                             capsys: pytest.CaptureFixture) -> None:
    """Trial finding: a positive_class that is not a class of the column was reported as an error in samples.tsv,
    though the value to correct is in config.yaml. The message names the config file and key, and the classes the
    sheet's study samples hold."""
    from ms2study.cli import main

    config, sheet = _outcome_study(tmp_path, ["case", "control", "case"],
                                   "{column: group, type: binary, positive_class: WRONG}")
    with pytest.raises(InputError) as err:
        study.check_outcomes(sheet, config, str(tmp_path / "samples.tsv"), str(tmp_path / "config.yaml"))
    assert err.value.file == str(tmp_path / "config.yaml")
    assert "models.outcomes.0.positive_class is 'WRONG'" in err.value.message
    assert "column 'group'" in err.value.message and "case, control" in err.value.message
    assert "config.yaml" in err.value.fix and err.value.fix.endswith("one of: case, control")
    assert main(["run", str(tmp_path), "-n"]) == 1
    said = capsys.readouterr().err
    assert f"file '{tmp_path / 'config.yaml'}'" in said and f"file '{tmp_path / 'samples.tsv'}'" not in said
    # the models job, which reads the outcome without the study folder, names config.yaml too
    from ms2study.modelling.outcomes import encode_outcome

    with pytest.raises(InputError, match=r"file 'config.yaml': positive_class 'WRONG'.*one of: case, control$"):
        encode_outcome(sheet, {"column": "group", "type": "binary", "positive_class": "WRONG"})


def test_two_class_outcomes_pass_validation(tmp_path: Path) -> None:
    config, sheet = _outcome_study(tmp_path, ["case", "control", ""],
                                   "{column: group, type: binary, positive_class: case}")
    study.check_outcomes(sheet, config, "samples.tsv")


def test_one_class_outcome_stops_ms2study_run_before_any_job(tmp_path: Path) -> None:
    from ms2study.cli import main

    _outcome_study(tmp_path, ["case", "case"], "{column: group, type: binary, positive_class: case}")
    assert main(["run", str(tmp_path), "--cores", "1"]) == 1
    assert not (tmp_path / ".snakemake").exists() and not (tmp_path / "results").exists()


def test_invalid_stage_value_stops_ms2study_run_before_any_job(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from ms2study.cli import main

    _touch_mzml(tmp_path, "a.mzML")
    (tmp_path / "config.yaml").write_text("annotate: {fdr: high}\n")
    assert main(["run", str(tmp_path), "--cores", "1"]) == 1
    err = capsys.readouterr().err
    assert "key 'annotate.fdr'" in err and str(tmp_path / "config.yaml") in err and "config/README.md" in err
    assert not (tmp_path / ".snakemake").exists() and not (tmp_path / "results").exists()


def test_one_sheet_reader_and_one_missing_vocabulary(tmp_path: Path) -> None:
    """The workflow's sheet and a sheet from elsewhere go through io.samplesheet; core.missing says what is NA."""
    from ms2study.core.missing import LIBRARY_PLACEHOLDERS, is_missing
    from ms2study.io.samplesheet import read_sample_sheet
    from ms2study.io.sampletable import read_sample_table

    (tmp_path / "s.tsv").write_text("# written by hand\nsample_id \tgroup\nA\tcase\nB\tNA\nC\tmissing\n")
    sheet = read_sample_sheet(tmp_path / "s.tsv")
    assert sheet.columns == ["sample_id", "group"] and sheet["group"].to_list() == ["case", "NA", "missing"]
    assert [is_missing(v) for v in sheet["group"]] == [False, True, True]
    with pytest.raises(InputError, match="missing column 'file'"):
        read_sample_sheet(tmp_path / "s.tsv", required=("sample_id", "file"))
    (tmp_path / "other.csv").write_text("id;group\n A ;case\nB;?\n")
    other = read_sample_sheet(tmp_path / "other.csv", "id", any_format=True)
    assert other["sample_id"].to_list() == ["A", "B"] and is_missing(other["group"][1])
    (tmp_path / "table.tsv").write_text("feature\tA\tB\nm1\t3.1\tmissing\n")
    table, _, _ = read_sample_table(tmp_path / "table.tsv", ["A", "B"])
    assert table["m1"].to_list() == [3.1, None]
    assert is_missing(None) and is_missing(float("nan")) and is_missing(" N/A ")
    assert not is_missing("unknown") and is_missing("Unknown", LIBRARY_PLACEHOLDERS) and not is_missing(0)


def test_reference_sample_not_in_the_sheet_stops_ms2study_run_before_any_job(tmp_path: Path,
                                                                              capsys: pytest.CaptureFixture) -> None:
    from ms2study.cli import main

    for name in ("a", "b"):
        _touch_mzml(tmp_path, f"{name}.mzML")
    (tmp_path / "samples.tsv").write_text("sample_id\tfile\nA\ta.mzML\nB\tb.mzML\n")
    (tmp_path / "config.yaml").write_text("reference_sample: S99\n")
    assert main(["run", str(tmp_path), "-n"]) == 1
    err = capsys.readouterr().err
    assert "reference_sample 'S99' is not in the sample sheet" in err and "one of the study samples: A, B" in err
    assert "Traceback" not in err and "WorkflowError" not in err


def test_mass_tolerances_that_differ_are_named(tmp_path: Path) -> None:
    # a TOF user's "20 ppm" set for detection and linking only: gap filling, adducts, ... would still look at 10 ppm
    (tmp_path / "config.yaml").write_text("detect: {mass_error_ppm: 20}\nlink: {mz_tol_ppm: 20}\n")
    warning = study.mass_tolerance_warning(study.load_config(tmp_path))
    assert warning.startswith("m/z tolerances differ (20 ppm: detect.mass_error_ppm, link.mz_tol_ppm; 10 ppm: ")
    assert "correct.gap_fill_mz_ppm" in warning and "spectra.mz_tolerance_ppm" in warning
    # all set, but not alike: named too
    every = {(s, k): 20 for s, k in study.MASS_TOLERANCES} | {("spectra", "mz_tolerance_ppm"): 5,
                                                              ("annotate", "precursor_tolerance_ppm"): 50}
    sections: dict[str, dict] = {}
    for (s, k), v in every.items():
        sections.setdefault(s, {})[k] = v
    text = "\n".join(f"{s}: {{{', '.join(f'{k}: {v}' for k, v in keys.items())}}}" for s, keys in sections.items())
    (tmp_path / "config.yaml").write_text(text + "\n")
    warning = study.mass_tolerance_warning(study.load_config(tmp_path))
    assert "50 ppm: annotate.precursor_tolerance_ppm;" in warning and warning.count("ppm:") == 3
    # annotation in Da: its ppm key is not compared, and the message says so
    (tmp_path / "config.yaml").write_text(text.replace("precursor_tolerance_ppm: 50", "precursor_tolerance_da: 0.01")
                                          .replace("mz_tolerance_ppm: 5", "mz_tolerance_ppm: 20") + "\n")
    assert study.mass_tolerance_warning(study.load_config(tmp_path)) is None
    (tmp_path / "config.yaml").write_text("annotate: {precursor_tolerance_da: 0.01}\ndetect: {mass_error_ppm: 5}\n")
    warning = study.mass_tolerance_warning(study.load_config(tmp_path))
    assert "annotation uses precursor_tolerance_da = 0.01 Da" in warning
    # the defaults, or all alike: nothing to say
    assert study.mass_tolerance_warning(study.load_config(tmp_path / "absent")) is None
    (tmp_path / "config.yaml").write_text(text.replace(": 50", ": 20").replace(": 5}", ": 20}") + "\n")
    assert study.mass_tolerance_warning(study.load_config(tmp_path)) is None


def test_ms2study_run_shows_the_mass_tolerance_warning(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from ms2study.cli import main

    _touch_mzml(tmp_path, "a.mzML")
    (tmp_path / "config.yaml").write_text("annotate: {precursor_tolerance_ppm: 25}\n")
    main(["run", str(tmp_path), "--cores", "1", "-n"])
    err = capsys.readouterr().err
    assert "ms2study run: warning: m/z tolerances differ (25 ppm: annotate.precursor_tolerance_ppm; 10 ppm: " in err


def test_byte_identical_runs_under_two_sample_ids_are_named(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """A fresh user's trial: two runs copied under new ids took the differential hits from 4 to 11, and nothing said
    so. Identical files are found by size, then content; distinct runs are not hashed at all."""
    from ms2study.cli import main
    from ms2study.io.runfiles import identical_runs

    _touch_mzml(tmp_path, "a.mzML")
    (tmp_path / "b.mzML").write_text("<mzML id='another run'></mzML>")
    (tmp_path / "c.mzML").write_bytes((tmp_path / "a.mzML").read_bytes())  # a copy under a new name
    (tmp_path / "d.mzML").write_bytes((tmp_path / "a.mzML").read_bytes().replace(b"<mzML>", b"<mzML "))  # other bytes
    ids, files = ["A", "B", "C", "D", "E"], ["a.mzML", "b.mzML", "c.mzML", "d.mzML", "a.mzML"]
    assert identical_runs(tmp_path, ids, files) == [["A", "C", "E"]]
    assert identical_runs(tmp_path, ids[:4], ["a.mzML", "b.mzML", "d.mzML", "missing.mzML"]) == []
    (tmp_path / "d.mzML").unlink()
    main(["run", str(tmp_path), "--cores", "1", "-n"])
    err = capsys.readouterr().err
    assert "ms2study run: warning: samples a, c have byte-identical run files: one injection counted 2 times" in err
    # one file listed twice is said to be that (a trial was asked whether it was a copy)
    from ms2study.io.runfiles import identical_run_warnings

    sheet = pl.DataFrame({"sample_id": ["A", "B", "E"], "file": ["a.mzML", "b.mzML", "a.mzML"]})
    assert identical_run_warnings(tmp_path, sheet) == [
        ("samples A, E name the same file (a.mzML): one injection counted 2 times; remove the extra rows from the "
         "sample sheet unless that is meant")]


def test_one_injection_under_two_ids_with_different_groups_is_refused(tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture) -> None:
    """Trial W: one run listed as a case and, under another id, as a control was only warned about, and the
    differential tests counted it on both sides. With the same group it stays a warning (a replicate may be meant)."""
    from ms2study.cli import main

    for name in ("a", "b", "c", "d"):
        (tmp_path / f"{name}.mzML").write_text(f"<mzML id='{name}'></mzML>")  # four distinct runs
    (tmp_path / "config.yaml").write_text("models:\n  outcomes:\n    - {column: group, type: binary}\n")
    rows = [("A", "a.mzML", "case"), ("B", "b.mzML", "control"), ("C", "c.mzML", "case"), ("D", "d.mzML", "control"),
            ("E", "a.mzML", "control")]
    sheet = tmp_path / "samples.tsv"
    sheet.write_text("sample_id\tfile\tgroup\n" + "".join("\t".join(r) + "\n" for r in rows))
    assert main(["run", str(tmp_path), "--cores", "1", "-n"]) != 0
    err = capsys.readouterr().err
    assert ("samples A, E are one injection (their run files hold the same bytes) but differ in 'group' "
            "(A: 'case', E: 'control')") in err and "give each sample its own run file" in err
    sheet.write_text(sheet.read_text().replace("E\ta.mzML\tcontrol", "E\ta.mzML\tcase"))
    main(["run", str(tmp_path), "--cores", "1", "-n"])
    err = capsys.readouterr().err
    assert "samples A, E name the same file (a.mzML): one injection counted 2 times" in err and "differ in" not in err


def test_a_numeric_covariate_with_excel_values_is_refused_before_any_job(tmp_path: Path) -> None:
    """A trial: an age column holding '#N/A' and '52,0' passed, was coded as one level per sample, and every
    differential test vanished ("no residual degrees of freedom") while the report blamed the design."""
    from ms2study.modelling.outcomes import covariate_matrix

    rows = [("A", "case", "34"), ("B", "case", "#N/A"), ("C", "control", "52,0"), ("D", "control", "41.5"),
            ("E", "case", "NA"), ("F", "control", "60")]
    for sid, _, _ in rows:
        _touch_mzml(tmp_path, f"{sid}.mzML")
    (tmp_path / "samples.tsv").write_text("sample_id\tfile\tgroup\tage\tsex\n" + "".join(
        f"{s}\t{s}.mzML\t{g}\t{a}\t{'MF'[i % 2]}\n" for i, (s, g, a) in enumerate(rows)))
    config = study.load_config(tmp_path, {"models": {"outcomes": [{"column": "group", "type": "binary"}],
                                                     "covariates": ["sex", "age"]}})
    sheet = study.load_sample_sheet(tmp_path, config)
    with pytest.raises(InputError) as err:
        study.check_outcomes(sheet, config, "samples.tsv")
    said = str(err.value)
    assert "covariate 'age' holds numbers and 2 value(s) that are not (B: '#N/A', C: '52,0')" in said
    assert "decimal point (52.0, not 52,0)" in said and "samples.tsv" in said
    with pytest.raises(InputError, match="covariate 'age' holds numbers"):  # the stages refuse it too
        covariate_matrix(sheet, sheet["sample_id"].to_list(), ["age"])
    # a categorical covariate (sex) and a clean numeric one pass
    fixed = sheet.with_columns(pl.Series("age", ["34", "NA", "52.0", "41.5", "NA", "60"]))
    study.check_outcomes(fixed, config, "samples.tsv")
    assert covariate_matrix(fixed, fixed["sample_id"].to_list(), ["sex", "age"])[1] == ["cov:sex=M", "cov:age"]


def test_missing_run_files_are_named_together_with_the_file_meant(tmp_path: Path) -> None:
    """Trial W: a lab sheet's problems came one run at a time, with no hint for a name typed in other letter case or a
    Windows path, and a run in a folder whose accented name macOS stores decomposed was refused."""
    import unicodedata

    (tmp_path / "mzml").mkdir()
    for name in ("Run_01.mzML", "run_02.mzML", "QC_pool_03.mzML"):
        _touch_mzml(tmp_path / "mzml", name)
    accented = tmp_path / unicodedata.normalize("NFD", "Études")
    accented.mkdir()
    _touch_mzml(accented, "run_04.mzML")
    rows = [("A", "mzml/run_01.mzML"), ("B", "mzml\\run_02.mzML"), ("C", "mzml/QC_pool_3.mzML"),
            ("D", "Études/run_04.mzML"), ("E", "mzml/nothing_like_it.mzML")]
    (tmp_path / "samples.tsv").write_text("sample_id\tfile\n" + "".join(f"{a}\t{b}\n" for a, b in rows))
    with pytest.raises(InputError) as err:
        study.load_sample_sheet(tmp_path, study.load_config(tmp_path))
    text = str(err.value)
    assert text.startswith(f"file '{tmp_path / 'samples.tsv'}': 4 run files have problems: (1) row 2: file "
                           "'mzml/run_01.mzML' does not exist")
    assert "did you mean 'mzml/Run_01.mzML'?" in text and "did you mean 'mzml/run_02.mzML'?" in text
    assert "did you mean 'mzml/QC_pool_03.mzML'?" in text and "(sample 'C';" in text
    assert "(4) row 6: file 'mzml/nothing_like_it.mzML' does not exist" in text and "Études" not in text
    from ms2study.io.runfiles import near_match

    assert near_match(tmp_path, "MZML/run_02.mzML") == "mzml/run_02.mzML"  # trial AB: the folder's letter case
    assert near_match(tmp_path / "elsewhere", str(tmp_path / "mzml" / "RUN_02.mzML")) == str(
        tmp_path / "mzml" / "run_02.mzML")  # an absolute path stays absolute
    (tmp_path / "samples.tsv").write_text("sample_id\tfile\nD\tÉtudes/run_04.mzML\n")
    sheet = study.load_sample_sheet(tmp_path, study.load_config(tmp_path))
    assert (tmp_path / sheet["file"][0]).is_file()  # the folder as stored (decomposed), so the jobs find it


def test_an_excel_sheet_reads_as_written(tmp_path: Path) -> None:
    """A core facility's sheet from Excel (trial B, session 35): a trailing empty row was refused as "sample 'None'
    ... 'sample_id' is a required property", Windows-1252 text as "not tab-separated", a name stored with decomposed
    accents (macOS) as missing although it printed the same, and an mzML the sheet does not list went unmentioned."""
    import unicodedata

    from ms2study.io.samplesheet import unlisted_runs

    _touch_mzml(tmp_path, "A.mzML")
    _touch_mzml(tmp_path, unicodedata.normalize("NFD", "Contrôle 02.mzML"))
    _touch_mzml(tmp_path, "Extra run.mzML")
    body = "sample_id\tfile\tgroup \r\nA\tA.mzML\tcase\r\nB\tContrôle 02.mzML\tcontrol\r\n"
    config = study.load_config(tmp_path)
    for tail in ("\t\t\r\n", "\r\n", "\n"):
        (tmp_path / "samples.tsv").write_bytes(("\ufeff" + body + tail).encode("utf-8"))
        sheet = study.load_sample_sheet(tmp_path, config)
        assert sheet["sample_id"].to_list() == ["A", "B"] and "group" in sheet.columns
    # the file as stored on disk (decomposed), so the jobs find it
    assert (tmp_path / sheet["file"][1]).exists() and sheet["file"][1] != "Contrôle 02.mzML"
    (tmp_path / "samples.tsv").write_bytes(body.encode("cp1252"))
    sheet = study.load_sample_sheet(tmp_path, config)
    assert unicodedata.normalize("NFC", sheet["file"][1]) == "Contrôle 02.mzML"
    assert unlisted_runs(tmp_path, sheet["file"].to_list()) == [
        ("1 mzML/mzXML file(s) in the study folder are not in the sample sheet and are not processed: Extra run.mzML "
         "(add a row for each to include it)")]
    (tmp_path / "results").mkdir()
    _touch_mzml(tmp_path / "results", "copy.mzML")  # the pipeline's own folders are not the lab's runs
    assert len(unlisted_runs(tmp_path, [*sheet["file"].to_list(), "Extra run.mzML"])) == 0
    (tmp_path / "samples.tsv").write_bytes(b"sample_id\tfile\r\nA\tA.mzML\x81\r\n")  # not even Windows-1252
    with pytest.raises(InputError, match="neither UTF-8 nor Windows-1252"):
        study.load_sample_sheet(tmp_path, config)


def test_a_run_without_ms_ms_is_named_before_any_job(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """A trial (E): an MS1-only run went through every job and was said only in the QC table after the run. Its
    header (no "MSn spectrum" in fileContent) and first scans (MS1 only) show it before any job; a DDA run, a run
    whose header lists MSn spectra and a short MS1 excerpt are not named."""
    import pyopenms as oms

    from ms2study.cli import main
    from ms2study.io import runfiles
    from ms2study.io.runfiles import ms1_only_warnings, ms_levels_sampled

    def write(name: str, n_ms1: int, ms2_every: int = 0) -> None:
        exp = oms.MSExperiment()
        for j in range(n_ms1):
            s = oms.MSSpectrum()
            s.setMSLevel(1), s.setRT(float(j)), s.setNativeID(f"scan={len(exp.getSpectra()) + 1}")
            s.set_peaks(([100.0, 200.0], [1e5, 2e5]))
            exp.addSpectrum(s)
            if ms2_every and j % ms2_every == 0:
                m = oms.MSSpectrum()
                m.setMSLevel(2), m.setRT(j + 0.5), m.setNativeID(f"scan={len(exp.getSpectra()) + 1}")
                p = oms.Precursor()
                p.setMZ(200.0)
                m.setPrecursors([p])
                m.set_peaks(([50.0, 80.0], [1e3, 2e3]))
                exp.addSpectrum(m)
        oms.MzMLFile().store(str(tmp_path / name), exp)

    write("dda.mzML", 30, ms2_every=3)
    write("full_scan.mzML", 30)
    write("excerpt.mzML", 5)
    assert ms_levels_sampled(tmp_path / "dda.mzML")[:2] == (30, 10)
    assert ms_levels_sampled(tmp_path / "full_scan.mzML")[:2] == (30, 0)
    sheet = pl.DataFrame({"sample_id": ["A", "B", "C"], "file": ["dda.mzML", "full_scan.mzML", "excerpt.mzML"]})
    warnings = ms1_only_warnings(tmp_path, sheet)
    assert len(warnings) == 1 and warnings[0].startswith(
        "sample B (full_scan.mzML): no MS/MS scan in the whole file (30 MS1 scans)")
    # trial V: a header that lists MSn spectra is not believed (msconvert's msLevel filter drops the MS2 scans and
    # keeps the source's fileContent), but said
    text = (tmp_path / "full_scan.mzML").read_text()
    (tmp_path / "full_scan.mzML").write_text(text.replace(
        "<fileContent>", '<fileContent>\n<cvParam cvRef="MS" accession="MS:1000580" name="MSn spectrum" value=""/>'))
    assert ms_levels_sampled(tmp_path / "full_scan.mzML") == (30, 0, True)
    assert [w.split(":")[0] + ":" + w.split(":")[1].split("(")[0] for w in ms1_only_warnings(tmp_path, sheet)] == [
        "sample B (full_scan.mzML): no MS/MS scan in the whole file although its header lists MS/MS spectra "]
    (tmp_path / "full_scan.mzML").write_text(text)
    main(["run", str(tmp_path), "--cores", "1", "-n"])
    err = capsys.readouterr().err
    assert "ms2study run: warning: sample full_scan (full_scan.mzML): no MS/MS scan in the whole file" in err
    assert "sample dda (" not in err and "sample excerpt (" not in err
    dda = oms.MSExperiment()
    oms.MzMLFile().load(str(tmp_path / "dda.mzML"), dda)

    def ms1_then_dda(name: str, n_ms1: int, n_dda: int, start_s: float) -> tuple[bytes, int]:
        """``n_ms1`` MS1-only scans, then the DDA run ``n_dda`` times: the file's bytes and its first MS2's offset."""
        write(name, n_ms1)
        exp = oms.MSExperiment()
        oms.MzMLFile().load(str(tmp_path / name), exp)
        for k in range(n_dda):
            for s in dda.getSpectra():
                s = oms.MSSpectrum(s)
                s.setRT(start_s + 30 * k + s.getRT())
                exp.addSpectrum(s)
        oms.MzMLFile().store(str(tmp_path / name), exp)
        text = (tmp_path / name).read_bytes()
        return text, text.index(b'accession="MS:1000511" name="ms level" value="2"')

    # trial R: a DDA run whose first minute went to waste (MS1 only) holds MS/MS in its middle: not named
    text, first_ms2 = ms1_then_dda("diverted.mzML", 300, 20, 400.0)
    assert first_ms2 < len(text) // 2 - 1000
    monkey = pytest.MonkeyPatch()
    monkey.setattr(runfiles, "MS_LEVEL_BYTES", first_ms2 - 1000)  # the start: MS1 only; the middle: DDA
    try:
        assert ms_levels_sampled(tmp_path / "diverted.mzML")[1] > 0
        diverted = pl.DataFrame({"sample_id": ["D"], "file": ["diverted.mzML"]})
        assert ms1_only_warnings(tmp_path, diverted) == []
        # trial V: MS/MS only in the run's last part (after its start and middle)
        text, first_ms2 = ms1_then_dda("late.mzML", 600, 5, 700.0)
        assert first_ms2 > 0.7 * len(text)
        monkey.setattr(runfiles, "MS_LEVEL_BYTES", len(text) // 6)
        assert ms_levels_sampled(tmp_path / "late.mzML")[1] > 0
    finally:
        monkey.undo()


def test_a_run_given_by_an_absolute_path_outside_the_study_folder_is_kept_absolute(tmp_path: Path) -> None:
    """Trial AE: an absolute path in samples.tsv to a run outside the study folder ended `ms2study run` with a
    ValueError traceback; it is a valid sheet (a lab keeps its runs on another disk)."""
    study_dir, runs = tmp_path / "study", tmp_path / "elsewhere"
    study_dir.mkdir()
    runs.mkdir()
    _touch_mzml(runs, "a.mzML")
    _touch_mzml(study_dir, "b.mzML")
    (study_dir / "samples.tsv").write_text(f"sample_id\tfile\nA\t{runs / 'a.mzML'}\nB\tb.mzML\n")
    sheet = study.load_sample_sheet(study_dir, study.load_config(study_dir))
    assert sheet["file"].to_list() == [str(runs / "a.mzML"), "b.mzML"]
