"""End to end: simulate a study, run the real Snakemake workflow on it, check the results against the ground truth.

The study is run once per session (module fixture); the checks read its outputs. Reruns, bad input and a folder
without a sample sheet are checked with dry runs and single targets so the suite stays fast.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from ms2study.modelling.differential import read_summary
from ms2study.simulate.study import simulate_study

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[1]
TABLES = ["features", "spectra", "embeddings", "annotations", "sample_embedding"]
N_SAMPLES = 8


def ms2study(*args: str, cwd: Path | None = None, check: bool = True) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO / "workflow"))
    result = subprocess.run(
        [sys.executable, "-m", "ms2study", *args], capture_output=True, text=True, env=env, cwd=cwd
    )
    if check and result.returncode != 0:
        raise AssertionError(f"ms2study {' '.join(args)} failed:\n{result.stdout[-4000:]}\n{result.stderr[-6000:]}")
    return result


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("study")
    simulate_study(root, n_samples=N_SAMPLES, seed=7)
    ms2study("run", str(root), "--cores", "2")
    return root


def _job_counts(dry_run_output: str) -> dict[str, int]:
    block = dry_run_output.split("Job stats:")[-1]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", block, re.MULTILINE)}


def test_contract_outputs_exist(study: Path) -> None:
    sheet = pl.read_csv(study / "samples.tsv", separator="\t")
    for sample in sheet["sample_id"]:
        for table in TABLES:
            path = study / "results" / "samples" / sample / f"{table}.parquet"
            assert path.exists(), path
    assert (study / "results" / "study" / "feature_matrix.parquet").exists()
    report = (study / "results" / "study" / "report.html").read_text()
    assert "<html" in report.lower() and "S01" in report
    # no temporary files left behind by atomic writes
    assert not list((study / "results").rglob("*.tmp"))


def test_features_recover_planted_compounds(study: Path) -> None:
    truth = pl.read_csv(study / "ground_truth.tsv", separator="\t")
    truth = truth.filter(pl.col("present").cast(pl.Utf8).str.to_lowercase() == "true")
    truth = truth.filter(pl.col("above_noise").cast(pl.Utf8).str.to_lowercase() == "true")
    found = total = 0
    for sample, expected in truth.group_by("sample_id"):
        features = pl.read_parquet(study / "results" / "samples" / sample[0] / "features.parquet")
        f_mz, f_rt = features["mz"].to_numpy(), features["rt_s"].to_numpy()
        for mz, rt in zip(expected["mz"], expected["rt_s"]):
            ok = (np.abs(f_mz - mz) <= mz * 10e-6) & (np.abs(f_rt - rt) <= 5.0)
            found += bool(ok.any())
            total += 1
    assert total > 100
    assert found / total >= 0.90, f"found {found}/{total} planted compounds"


def _true_compound_of_spectra(study: Path, sample: str) -> pl.DataFrame:
    """Spectra mapped to a feature, with the ground-truth compound at that feature (10 ppm, 5 s)."""
    truth = pl.read_csv(study / "ground_truth.tsv", separator="\t").filter(pl.col("sample_id") == sample)
    features = pl.read_parquet(study / "results" / "samples" / sample / "features.parquet")
    spectra = pl.read_parquet(study / "results" / "samples" / sample / "spectra.parquet")
    mapped = spectra.filter(pl.col("feature_id").is_not_null()).join(
        features.select("feature_id", pl.col("mz").alias("f_mz"), pl.col("rt_s").alias("f_rt")), on="feature_id"
    )
    rows = []
    for spectrum_id, f_mz, f_rt in mapped.select("spectrum_id", "f_mz", "f_rt").iter_rows():
        hit = truth.filter(((pl.col("mz") - f_mz).abs() <= f_mz * 10e-6) & ((pl.col("rt_s") - f_rt).abs() <= 5.0))
        if hit.height == 1:
            rows.append((spectrum_id, hit["inchikey"][0], bool(str(hit["in_library"][0]).lower() == "true")))
    return pl.DataFrame(rows, schema=["spectrum_id", "true_inchikey", "in_library"], orient="row")


def test_ms2_mapped_and_identified(study: Path) -> None:
    correct = judged = mapped = scans = 0
    for sample_dir in sorted((study / "results" / "samples").iterdir()):
        sample = sample_dir.name
        spectra = pl.read_parquet(sample_dir / "spectra.parquet")
        scans += spectra.height
        mapped += spectra["feature_id"].is_not_null().sum()
        truth = _true_compound_of_spectra(study, sample).filter(pl.col("in_library"))
        top = pl.read_parquet(sample_dir / "annotations.parquet").filter(pl.col("rank") == 1)
        joined = truth.join(top.select("spectrum_id", "library_inchikey"), on="spectrum_id", how="left")
        judged += joined.height
        correct += (joined["library_inchikey"] == joined["true_inchikey"]).fill_null(False).sum()
    assert scans > 0 and mapped / scans >= 0.5, f"{mapped}/{scans} MS2 scans mapped to features"
    assert judged > 50
    assert correct / judged >= 0.80, f"true compound at rank 1 for {correct}/{judged} mapped spectra"


def test_accepted_identifications_hold_their_fdr_against_the_truth(study: Path) -> None:
    """Level-aware truth on the simulated runs: an accepted level-2 hit must be the true structure, a level-3 hit
    must have its formula or name it among the isomers; at 1 % FDR at most 2 % may be wrong. The library's own
    calibration is used (results/confidence/), and identifications.parquet holds one row per consensus feature."""
    library_dir = next((study / "results" / "library").iterdir())
    formula_of = dict(pl.read_parquet(library_dir / "metadata.parquet").select("inchikey", "formula").iter_rows())
    assert (study / "results" / "confidence" / f"{library_dir.name}.json").exists()
    accepted = wrong = judged = 0
    for sample_dir in sorted((study / "results" / "samples").iterdir()):
        truth = _true_compound_of_spectra(study, sample_dir.name)
        top = pl.read_parquet(sample_dir / "annotations.parquet").filter((pl.col("rank") == 1) & pl.col("accepted"))
        accepted += top.height
        joined = top.join(truth, on="spectrum_id", how="inner")
        judged += joined.height
        for row in joined.iter_rows(named=True):
            if row["msi_level"] == 2:
                ok = row["library_inchikey"] == row["true_inchikey"]
            else:
                ok = (row["library_formula"] == formula_of.get(row["true_inchikey"])
                      or row["true_inchikey"] in (row["isomer_inchikeys"] or []))
            wrong += not ok
            assert row["cosine"] >= 0.3 or row["evidence_note"], row
    assert judged >= 0.8 * accepted and judged > 100
    assert wrong / judged <= 0.02, f"{wrong} of {judged} accepted identifications are wrong"
    ident = pl.read_parquet(study / "results" / "study" / "identifications.parquet")
    assert ident["consensus_id"].is_unique().all() and ident.filter(pl.col("accepted")).height > 50


def test_sample_embeddings_and_matrix(study: Path) -> None:
    sheet = pl.read_csv(study / "samples.tsv", separator="\t")
    pooled = pl.concat(
        [pl.read_parquet(study / "results" / "samples" / s / "sample_embedding.parquet") for s in sheet["sample_id"]]
    )
    assert pooled.height == N_SAMPLES
    assert (pooled["n_spectra"] > 0).all()
    vectors = np.array(pooled["embedding"].to_list(), dtype=np.float32)
    assert np.isfinite(vectors).all() and np.abs(vectors).sum(axis=1).min() > 0
    matrix = pl.read_parquet(study / "results" / "study" / "feature_matrix.parquet")
    assert set(sheet["sample_id"]).issubset(matrix.columns)
    # most planted compounds are seen in most samples, so many consensus features are detected in all runs
    assert (matrix["n_detected"] == N_SAMPLES).sum() >= 50


def test_models_ran_for_configured_outcomes(study: Path) -> None:
    models = study / "results" / "study" / "models"
    summary = json.loads((models / "group" / "summary.json").read_text())
    text = json.dumps(summary)
    assert "ci_low" in text and "permutation_p" in text
    assert (models / "group" / "predictions.parquet").exists()
    assert (models / "age" / "metrics.parquet").exists()
    # the bags of chemistry are computed by the pipeline (rules prototypes, chemistry) and modelled
    chemistry = summary["feature_sets"]["chemical_space"]
    prototypes = pl.read_parquet(study / "results" / "study" / "prototypes.parquet")
    assert 0 < chemistry["n_features"] <= prototypes.height and chemistry["value"] is not None
    assert prototypes["source"][0].startswith("library")
    bags = pl.read_parquet(study / "results" / "study" / "chemistry" / "S01.parquet")
    assert bags["prototypes_id"][0] == prototypes["prototypes_id"][0] and bags["n_features"][0] > 0
    # the attribution job explains that model per region (modelling.regions) and the report shows it
    regions_path = study / "results" / "study" / "attribution" / "chemical_space" / "group.parquet"
    regions, explained = pl.read_parquet(regions_path), read_summary(regions_path)
    assert explained["status"] == "done" and regions.height == prototypes.height, explained
    assert explained["max_split_error"] < 1e-6 and (regions["contribution"] != 0).sum() == explained["regions_used"]
    assert "What the bag-of-chemistry model looks at" in (study / "results" / "study" / "report.html").read_text()
    # the models pool with the corrected intensities (correct.use_corrected, the default; rule pool_corrected):
    # without QCs the correction is a per-run median factor, the same for every feature of the run
    corrected = pl.read_parquet(study / "results" / "study" / "corrected_features" / "S01.parquet")
    raw = pl.read_parquet(study / "results" / "samples" / "S01" / "features.parquet")
    assert corrected["feature_id"].to_list() == raw["feature_id"].to_list()
    factors = corrected["factor"].to_numpy()
    assert np.ptp(factors) <= 1e-9 * factors.max() and corrected["consensus_id"].null_count() == 0
    pooled = pl.read_parquet(study / "results" / "study" / "pooled" / "S01.parquet")
    assert pooled["n_spectra"][0] > 0 and pooled["abundance_source"][0] == "feature_intensity"


def test_a_study_copied_without_its_snakemake_records_says_its_results_were_kept_unchecked(
        study: Path, tmp_path: Path) -> None:
    """Trial finding: a finished study copied without its hidden .snakemake folder ran with "Nothing to be done",
    keeping results that older code or other settings had made, without a word. Snakemake then compares file times
    only; the run now says so and names --forceall. The study with its records gets no such warning."""
    copy = tmp_path / "copied"
    shutil.copytree(study, copy, ignore=shutil.ignore_patterns(".snakemake"))  # copy2: file times kept
    # a dry run says it too (Snakemake's own note names rules only, not the cause or the remedy)
    dry = ms2study("run", str(copy), "--cores", "1", "--dry-run").stderr
    assert f"{N_SAMPLES + 2} result(s) have no Snakemake record" in dry and "a run would keep them" in dry, dry[-2000:]
    assert "without --dry-run and with --forceall" in dry
    forced = ms2study("run", str(copy), "--cores", "1", "--dry-run", "--forceall").stderr  # all planned: no warning
    assert "Snakemake record" not in forced, forced[-2000:]
    text = "".join(ms2study("run", str(copy), "--cores", "1").stderr)
    assert "nothing to do" in text
    assert "--forceall" in text, text[-3000:]
    assert f"{N_SAMPLES + 2} result(s) have no Snakemake record" in text
    # a partial rerun (the report) records only what it made: the samples' results still lack records
    (copy / "results" / "study" / "report.html").unlink()
    ms2study("run", str(copy), "--cores", "1")
    text = ms2study("run", str(copy), "--cores", "1").stderr
    assert "nothing to do" in text and f"{N_SAMPLES + 1} result(s) have no Snakemake record" in text, text[-2000:]
    # not called "up to date" then: only the files' times were compared (a fresh user's trial)
    assert "every requested output is present and up to date" not in text
    assert "newer than its inputs (see the warning below)" in text
    again = ms2study("run", str(study), "--cores", "1").stderr
    assert "nothing to do" in again and "Snakemake record" not in again and "Snakemake's records" not in again


def test_second_run_has_nothing_to_do_and_one_changed_sample_reruns_alone(study: Path) -> None:
    dry = ms2study("run", str(study), "--cores", "2", "--dry-run")
    assert "Nothing to be done" in dry.stdout + dry.stderr
    # A changed run (new content) reruns that sample's jobs and the study jobs, nothing else.
    mzml = study / "mzml" / "S03.mzML"
    original = mzml.read_bytes()
    try:
        mzml.write_bytes(original.replace(b"</mzML>", b"</mzML>\n", 1))
        dry = ms2study("run", str(study), "--cores", "2", "--dry-run")
        counts = _job_counts(dry.stdout + dry.stderr)
        for per_sample in ("detect", "spectra", "embed", "annotate", "pool"):
            assert counts.get(per_sample) == 1, (per_sample, counts)
        assert counts.get("link") == 1 and counts.get("report") == 1
        assert "index_library" not in counts
    finally:
        mzml.write_bytes(original)
        os.utime(mzml, (0, 0))  # older than its outputs again
    # Trial AA: a run replaced by another whose file is older than the results (rsync -a, cp -p, a restore) was
    # left as it was ("Nothing to be done"); its detect job, and all after it, run again, and the note says why.
    other = (study / "mzml" / "S04.mzML").read_bytes()
    try:
        mzml.write_bytes(other.replace(b"</mzML>", b"</mzML>\n<!-- another injection -->\n", 1))
        os.utime(mzml, (0, 0))
        dry = ms2study("run", str(study), "--cores", "2", "--dry-run")
        text = dry.stdout + dry.stderr
        assert ("ms2study run: note: the run file of sample(s) S03 changed since its features were detected, although "
                "the file is not newer than its results") in text
        counts = _job_counts(text)
        for per_sample in ("detect", "spectra", "embed", "annotate", "pool"):
            assert counts.get(per_sample) == 1, (per_sample, counts)
        assert counts.get("link") == 1 and counts.get("report") == 1
    finally:
        mzml.write_bytes(original)
        os.utime(mzml, (0, 0))
    dry = ms2study("run", str(study), "--cores", "2", "--dry-run")  # the run it was: nothing to do
    assert "Nothing to be done" in dry.stdout + dry.stderr and "changed since" not in dry.stderr
    # Trial BB: the run touched (or copied without its times), its content the same: its time is set back, nothing
    # reruns, and the note says so
    os.utime(mzml)
    dry = ms2study("run", str(study), "--cores", "2", "--dry-run")
    assert "Nothing to be done" in dry.stdout + dry.stderr, dry.stdout + dry.stderr
    assert "the run file of sample(s) S03 is newer than its results but holds what they were made from" in dry.stderr
    assert mzml.stat().st_mtime < (study / "results" / "samples" / "S03" / "features.parquet").stat().st_mtime


def test_bad_run_fails_clearly_and_leaves_no_output(study: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    (bad / "mzml").mkdir(parents=True)
    shutil.copy(study / "mzml" / "S01.mzML", bad / "mzml" / "good.mzML")
    (bad / "mzml" / "broken.mzML").write_text(  # damaged inside, whole at the ends: the pre-run check cannot see it, the reader does
        '<?xml version="1.0"?>\n<mzML><run><spectrumList count="3"><spectrum damaged</mzML>')
    (bad / "samples.tsv").write_text("sample_id\tfile\ngood\tmzml/good.mzML\nbroken\tmzml/broken.mzML\n")
    result = ms2study(
        "run", str(bad), "--cores", "2", "--keep-going", "results/samples/good/features.parquet",
        "results/samples/broken/features.parquet", check=False,
    )
    assert result.returncode != 0
    log = (bad / "logs" / "detect" / "broken.log").read_text()
    assert "broken.mzML" in log and "broken" in log
    assert not (bad / "results" / "samples" / "broken" / "features.parquet").exists()
    assert (bad / "results" / "samples" / "good" / "features.parquet").exists()


def test_a_library_too_small_to_calibrate_is_refused_before_any_run_is_processed(study: Path, tmp_path: Path) -> None:
    """The library's jobs have priority: a library of 4 records is refused before detection starts (one core, so
    the job order is the scheduler's choice), and the run's summary names the calibration log and the fix."""
    small = tmp_path / "small"
    (small / "mzml").mkdir(parents=True)
    for name in ("S01", "S02"):
        shutil.copy(study / "mzml" / f"{name}.mzML", small / "mzml" / f"{name}.mzML")
    (small / "samples.tsv").write_text("sample_id\tfile\nS01\tmzml/S01.mzML\nS02\tmzml/S02.mzML\n")
    records = (study / "library.mgf").read_text().split("END IONS")[:4]
    (small / "library.mgf").write_text("END IONS".join(records) + "END IONS\n")
    (small / "config.yaml").write_text("library: library.mgf\n")
    result = ms2study("run", str(small), "--cores", "1", "results/confidence/library.json",
                      "results/samples/S01/features.parquet", "results/samples/S02/features.parquet", check=False)
    out = result.stdout + result.stderr
    assert result.returncode != 0
    started = [m.group(1) for m in re.finditer(r"^(?:local)?rule (\w+):", out, re.MULTILINE)]
    assert started[:2] == ["index_library", "calibrate_library"], started
    assert "detect" in started  # --keep-going: the runs are still detected, and kept for the next run
    assert "library.calibration.log" in result.stderr and "confidence: none" in result.stderr
    assert not (small / "results" / "confidence" / "library.json").exists()


def test_folder_without_sheet_and_bad_sheet(tmp_path: Path, study: Path) -> None:
    folder = tmp_path / "runs"
    folder.mkdir()
    for name in ("S01", "S02"):
        os.symlink(study / "mzml" / f"{name}.mzML", folder / f"{name}.mzML")
    dry = ms2study("run", str(folder), "--cores", "1", "--dry-run")
    assert _job_counts(dry.stdout + dry.stderr).get("detect") == 2
    (folder / "samples.tsv").write_text("sample_id\tfile\nS01\tS01.mzML\nS01\tS02.mzML\n")
    result = ms2study("run", str(folder), "--dry-run", check=False)
    assert result.returncode == 1
    assert "appears twice" in result.stderr and "samples.tsv" in result.stderr


@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium is not installed (apt-get install chromium)")
def test_report_of_the_run_opens_in_a_browser(study: Path, tmp_path: Path) -> None:
    report = study / "results" / "study" / "report.html"
    result = subprocess.run(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", report.resolve().as_uri()],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    dom = result.stdout
    for anchor in ("overview", "samples", "identifications", "encoder", "models", "matrix"):
        assert f'id="{anchor}"' in dom
    assert "<svg" in dom and "S08" in dom


def test_snakemake_report_zip_holds_the_marked_outputs(study: Path, tmp_path: Path) -> None:
    """`snakemake --report report.zip` works on a finished study: the marked tables are in it, with their captions."""
    import zipfile

    out = tmp_path / "report.zip"
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(study), "--cores", "1",
         "--report", str(out)],
        capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(REPO / "workflow")),
    )
    assert result.returncode == 0, result.stderr[-4000:]
    names = zipfile.ZipFile(out).namelist()
    for table in ("feature_matrix.parquet", "identifications.parquet", "summary.json"):
        assert any(n.endswith("/" + table) for n in names), (table, names)
    html = zipfile.ZipFile(out).read("report/report.html").decode("utf-8", "replace")
    assert "Simes-combined" in html  # the identifications caption (workflow/report/identifications.rst)


def _dry_counts(study: Path) -> dict[str, int]:
    dry = ms2study("run", str(study), "--cores", "2", "--dry-run")
    text = dry.stdout + dry.stderr
    return {} if "Nothing to be done" in text else _job_counts(text)


def _with_config(study: Path, change: dict):
    """Context manager: the study's config.yaml with ``change`` merged into its sections, restored afterwards."""
    import contextlib

    import yaml

    @contextlib.contextmanager
    def manager():
        path = study / "config.yaml"
        original = path.read_bytes()
        config = yaml.safe_load(original) or {}
        for section, values in change.items():
            config.setdefault(section, {}).update(values)
        try:
            path.write_text(yaml.safe_dump(config, sort_keys=False))
            yield
        finally:
            path.write_bytes(original)

    return manager()


PER_SAMPLE = ("detect", "spectra", "embed", "annotate", "pool")


def test_a_model_parameter_change_reruns_models_and_report_only(study: Path) -> None:
    assert "configuration value(s) changed" not in ms2study("run", str(study), "--cores", "2", "--dry-run").stderr
    with _with_config(study, {"models": {"n_bootstrap": 123}}):
        dry = ms2study("run", str(study), "--cores", "2", "--dry-run")
    counts = _job_counts(dry.stdout + dry.stderr)
    assert counts.get("models", 0) >= 1 and counts.get("report") == 1, counts
    assert not set(counts) & {*PER_SAMPLE, "link", "index_library", "identify"}, counts
    # the run names the key that changed since the last finished run (Snakemake says only "params have changed")
    assert "1 configuration value(s) changed since the last finished run" in dry.stderr, dry.stderr
    assert re.search(r"models\.n_bootstrap: \d+ -> 123", dry.stderr), dry.stderr


def test_an_outcome_edit_reruns_the_stages_that_read_outcomes_only(study: Path) -> None:
    """An HPC admin's trial: relabelling one sample reran every study job. The correction, the identifications and
    the run QC read only the sheet's run columns (results/study/runs.tsv), which the edit leaves as they were."""
    sheet = study / "samples.tsv"
    original = sheet.read_bytes()
    rows = pl.read_csv(sheet, separator="\t", infer_schema_length=0)
    runs = study / "results" / "study" / "runs.tsv"
    header = runs.read_text().splitlines()[0].split("\t")
    assert header[:2] == ["sample_id", "file"] and "group" not in header and "group" in rows.columns, header
    before = runs.stat().st_mtime_ns
    first, flipped = rows["group"][0], next(g for g in rows["group"] if g != rows["group"][0])
    try:
        rows.with_columns(pl.when(pl.int_range(pl.len()) == 0).then(pl.lit(flipped)).otherwise(pl.col("group"))
                          .alias("group")).write_csv(sheet, separator="\t")
        dry = ms2study("run", str(study), "--cores", "2", "--dry-run")
        counts = _job_counts(dry.stdout + dry.stderr)
        assert f"{rows['sample_id'][0]} group: {first} -> {flipped}" in dry.stderr, dry.stderr
        assert counts.get("differential", 0) >= 1 and counts.get("models", 0) >= 1 and counts.get("report") == 1, counts
        assert not set(counts) & {*PER_SAMPLE, "link", "gapfill", "correct", "identify", "qc", "pool_corrected",
                                  "chemistry"}, counts
        assert runs.stat().st_mtime_ns == before
    finally:
        sheet.write_bytes(original)
    dry = ms2study("run", str(study), "--cores", "2", "--dry-run")  # the sheet it was: nothing to do
    assert "Nothing to be done" in dry.stdout + dry.stderr, dry.stdout + dry.stderr


def test_an_fdr_change_reruns_annotation_and_what_reads_it_but_not_the_models(study: Path) -> None:
    """The models read each run's RT range from the detect stage's chromatograms, not from qc.parquet (which holds
    the accepted identifications): a trial's change of annotate: fdr reran every model through the QC table."""
    with _with_config(study, {"annotate": {"fdr": 0.05}}):
        counts = _dry_counts(study)
    assert counts.get("annotate") == N_SAMPLES and counts.get("identify") == 1 and counts.get("qc") == 1, counts
    assert counts.get("report") == 1 and counts.get("differential", 0) >= 1, counts
    assert not set(counts) & {"models", "detect", "spectra", "embed", "link", "pool", "chemistry"}, counts


def test_an_encoder_change_reruns_embedding_and_downstream_but_not_detection(study: Path) -> None:
    with _with_config(study, {"embed": {"model": None}}):
        counts = _dry_counts(study)
    assert counts.get("embed") == N_SAMPLES and counts.get("annotate") == N_SAMPLES, counts
    assert counts.get("pool") == N_SAMPLES and counts.get("report") == 1, counts
    # the prototypes are learned on the library's embeddings by the encoder: new encoder, new prototypes
    # pool_corrected and chemistry are one study job each (all runs in one process, a folder of per-run tables)
    assert counts.get("prototypes") == 1 and counts.get("chemistry") == 1, counts
    assert counts.get("pool_corrected") == 1, counts
    assert not set(counts) & {"detect", "spectra", "link"}, counts


# The study jobs over every run (one job each) and the folders of per-run tables they write (core.paths.STUDY_FOLDERS).
STUDY_RUN_JOBS = {"gapfill": ("gap_filled",), "pool_corrected": ("corrected_features", "pooled"),
                  "chemistry": ("chemistry",)}


def test_study_folders_hold_what_the_one_run_commands_write(study: Path, tmp_path: Path) -> None:
    """gapfill, pool_corrected and chemistry are one job each over all runs, writing a folder of per-run tables
    (Snakemake directory() outputs): each folder holds exactly the sheet's runs' files, and a run's file equals
    what the one-run command (--sample-id) writes from the same inputs."""
    results = study / "results"
    runs = pl.read_csv(study / "samples.tsv", separator="\t")["sample_id"].to_list()
    for folders in STUDY_RUN_JOBS.values():
        for folder in folders:
            names = sorted(p.name for p in (results / "study" / folder).iterdir() if not p.name.startswith("."))
            assert names == sorted(f"{r}.parquet" for r in runs), (folder, names)
    for rule in STUDY_RUN_JOBS:  # one log per job, every run named in it
        log = (study / "logs" / "study" / f"{rule}.log").read_text()
        assert f"{len(runs)} run(s)" in log or all(f"{r}: " in log for r in runs), (rule, log[-2000:])
    import yaml

    from ms2study.core.paths import rule_params

    # the study's own settings, as the rules pass them (config.yaml over the defaults the commands apply)
    config = yaml.safe_load((study / "config.yaml").read_text()) or {}
    pool = ["--params", json.dumps(config.get("pool") or {})]
    run, s = "S02", str(results / "study")
    ms2study("gapfill", "--ms1-scans", str(results / "samples" / run / "ms1_scans.parquet"), "--sample-id", run,
             "--feature-matrix", f"{s}/feature_matrix.parquet", "--alignment", f"{s}/alignment.parquet",
             "--detect-params", json.dumps(config.get("detect") or {}),
             "--params", json.dumps(rule_params(config, "gapfill")), "--out", str(tmp_path / "gap.parquet"),
             "--feature-links", f"{s}/feature_links.parquet",
             "--features", str(results / "samples" / "{sample}" / "features.parquet"))
    tables = {t: f"--{t}={results / 'samples' / run / f'{t}.parquet'}" for t in ("embeddings", "spectra", "features")}
    ms2study("pool-corrected", "--sample-id", run, *pool, tables["embeddings"], tables["spectra"], tables["features"],
             "--links", f"{s}/feature_links.parquet", "--feature-matrix", f"{s}/feature_matrix.parquet",
             "--corrected-matrix", f"{s}/feature_matrix_corrected.parquet",
             "--out-features", str(tmp_path / "cf.parquet"), "--out", str(tmp_path / "pooled.parquet"))
    ms2study("chemistry", "--sample-id", run, tables["embeddings"], tables["spectra"],
             "--features", str(tmp_path / "cf.parquet"), "--prototypes", f"{s}/prototypes.parquet", *pool,
             "--out", str(tmp_path / "bag.parquet"))
    for folder, mine in (("gap_filled", "gap"), ("corrected_features", "cf"), ("pooled", "pooled"),
                         ("chemistry", "bag")):
        assert pl.read_parquet(results / "study" / folder / f"{run}.parquet").equals(
            pl.read_parquet(tmp_path / f"{mine}.parquet")), folder


def test_study_jobs_ask_for_resources_by_the_number_of_runs(study: Path) -> None:
    """The study jobs over every run ask for the configured base plus ``<key>_per_run`` per run of the sheet."""
    import math

    import yaml

    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())["resources"]
    dry = ms2study("run", str(study), "--cores", "2", "--dry-run", "--forcerun", *STUDY_RUN_JOBS)
    text = dry.stdout + dry.stderr
    for rule in STUDY_RUN_JOBS:
        block = text.split(f"rule {rule}:")[1].split("\n\n")[0]
        for key in ("mem_mb", "runtime"):
            want = math.ceil(config[rule][key] + config[rule][f"{key}_per_run"] * N_SAMPLES)
            assert int(re.search(rf"{key}=(\d+)", block).group(1)) == want, (rule, key, block)
    # the other study jobs' memory grows by run too, not with the size of their inputs: qc lists every raw mzML
    # (it reads the headers only), which link's 20 MB per MB of input made 1.1 TB at 1,000 lab runs (an HPC
    # admin's trial); models and report had no per-run term and asked for less than they use at 1,000 runs
    others = ("qc", "correct", "identify", "differential", "export", "models", "report")
    dry = ms2study("run", str(study), "--cores", "2", "--dry-run", "--forcerun", *others)
    text = dry.stdout + dry.stderr
    for rule in others:
        block = text.split(f"rule {rule}:")[1].split("\n\n")[0]
        want = math.ceil(config[rule]["mem_mb"] + config[rule]["mem_mb_per_run"] * N_SAMPLES)
        assert int(re.search(r"mem_mb=(\d+)", block).group(1)) == want, (rule, block)
        assert config[rule]["mem_mb_per_run"] * 1000 + config[rule]["mem_mb"] < 10000, rule


def _digests(study: Path, samples: list[str]) -> dict[str, str]:
    import hashlib

    return {f"{s}/{t}": hashlib.sha256((study / "results" / "samples" / s / f"{t}.parquet").read_bytes()).hexdigest()
            for s in samples for t in TABLES}


def test_adding_then_removing_a_sample_touches_only_it_and_the_study(study: Path) -> None:
    """Last in this module: it runs the pipeline with a ninth sample, then without it (the fixture's study again)."""
    sheet_path = study / "samples.tsv"
    original = sheet_path.read_bytes()
    sheet = pl.read_csv(sheet_path, separator="\t", infer_schema_length=0)
    old = sheet["sample_id"].to_list()
    before = _digests(study, old)
    source = study / sheet["file"][0]
    added = source.with_name("S_added.mzML.gz")
    # A new run: the first sample's file with its scan intensities unchanged but its own bytes (a comment added),
    # compressed as `msconvert --gzip` writes it (read as it is: tests/test_gzip_runs.py)
    added.write_bytes(gzip.compress(source.read_bytes().replace(b"</mzML>", b"</mzML>\n<!-- added -->\n", 1)))
    row = sheet.head(1).with_columns(pl.lit("S_added").alias("sample_id"),
                                     pl.lit(str(added.relative_to(study))).alias("file"))
    try:
        pl.concat([sheet, row]).write_csv(sheet_path, separator="\t")
        counts = _dry_counts(study)
        for rule in PER_SAMPLE:
            assert counts.get(rule) == 1, (rule, counts)
        assert counts.get("link") == 1 and counts.get("report") == 1, counts
        assert "index_library" not in counts
        # the study jobs over every run: one job each, not one per run
        assert all(counts.get(rule) == 1 for rule in STUDY_RUN_JOBS), counts
        ms2study("run", str(study), "--cores", "2")
        assert _digests(study, old) == before  # every other sample's per-sample outputs byte-identical
        assert (study / "results" / "samples" / "S_added" / "pool.parquet").exists() or \
            (study / "results" / "samples" / "S_added" / "sample_embedding.parquet").exists()
        # the compressed copy gives the features and spectra of the run it copies
        for table in ("features", "spectra"):
            first, copy = (pl.read_parquet(study / "results" / "samples" / s / f"{table}.parquet").with_columns(
                pl.col(pl.Utf8).str.replace(f"^{s}:", "").str.replace(f"^{s}$", "")) for s in (old[0], "S_added"))
            assert first.equals(copy), table
        for folders in STUDY_RUN_JOBS.values():
            assert all((study / "results" / "study" / f / "S_added.parquet").exists() for f in folders)
    finally:
        sheet_path.write_bytes(original)
    # The sample removed again: study jobs only, no per-sample job.
    counts = _dry_counts(study)
    assert counts.get("link") == 1 and counts.get("report") == 1, counts
    assert not set(counts) & set(PER_SAMPLE), counts
    assert all(counts.get(rule) == 1 for rule in STUDY_RUN_JOBS), counts
    ms2study("run", str(study), "--cores", "2")
    assert _digests(study, old) == before
    # Snakemake emptied the study jobs' folders before rerunning them: the removed sample's tables are gone, every
    # other run's are there (its per-sample outputs under results/samples/S_added stay, for reuse)
    for folders in STUDY_RUN_JOBS.values():
        for folder in folders:
            names = sorted(p.name for p in (study / "results" / "study" / folder).iterdir()
                           if not p.name.startswith("."))
            assert names == sorted(f"{r}.parquet" for r in old), (folder, names)
    assert (study / "results" / "samples" / "S_added" / "features.parquet").exists()
    assert (study / "results" / "samples" / "S_added" / "NOT_IN_SHEET.txt").exists()  # trial AA: marked as unused


def test_job_memory_grows_with_the_input_size(study: Path) -> None:
    """detect's mem_mb is the configured base plus mem_mb_per_input_mb times the mzML's size (config resources)."""
    import math

    import yaml

    dry = ms2study("run", str(study), "--cores", "2", "--dry-run", "--forcerun", "detect")
    text = dry.stdout + dry.stderr
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())["resources"]["detect"]
    blocks = [b for b in text.split("rule detect:")[1:]]
    assert len(blocks) == N_SAMPLES, text[-3000:]
    for block in blocks:
        sample = re.search(r"sample=([\w.-]+)", block).group(1)
        size_mb = (study / "mzml" / f"{sample}.mzML").stat().st_size / 1e6
        want = math.ceil(config["mem_mb"] + config["mem_mb_per_input_mb"] * size_mb)
        got = int(re.search(r"mem_mb=(\d+)", block).group(1))
        assert abs(got - want) <= 2, (sample, got, want)  # Snakemake rounds the size to whole MB or MiB


def test_models_runtime_grows_with_the_forests_it_fits(study: Path) -> None:
    """With estimator random_forest the models job asks for the base runtime plus its forests' measured cost
    (core.paths.models_runtime_minutes); with the elastic net it asks for the base alone."""
    import yaml

    from ms2study.core.paths import models_runtime_minutes

    base = yaml.safe_load((REPO / "config" / "config.yaml").read_text())["resources"]["models"]["runtime"]

    def requested() -> int:
        dry = ms2study("run", str(study), "--cores", "2", "--dry-run", "--forcerun", "models")
        block = (dry.stdout + dry.stderr).split("rule models:")[1]
        return int(re.search(r"runtime=(\d+)", block).group(1))

    assert requested() == base
    forest = {"estimator": "random_forest", "n_permutations": 4}
    with _with_config(study, {"models": forest}):
        got = requested()
    config = yaml.safe_load((study / "config.yaml").read_text())
    outcomes = len(config["models"]["outcomes"])
    want = models_runtime_minutes({"models": {**config["models"], **forest}}, N_SAMPLES, outcomes, base)
    assert got == want > base + 10, (got, want)
    # each permutation reruns one repeat of the outer CV: the forests' part grows with repeats + permutations
    more = models_runtime_minutes({"models": {**config["models"], **forest, "n_permutations": 9}}, N_SAMPLES,
                                  outcomes, base)
    repeats = config["models"].get("outer_repeats", 5)
    ratio = (repeats + 9) / (repeats + 4)
    assert abs((more - base) / (want - base) - ratio) < 0.05, (more, want, ratio)


def test_a_failed_report_job_leaves_the_earlier_report_marked_out_of_date(study: Path) -> None:
    """Snakemake deletes a job's output before it runs it: a trial's report job that failed left no report at all,
    not the earlier one marked OUT OF DATE as for any other failed job. ``ms2study run`` keeps a second name of the
    earlier report before Snakemake starts (runner.keep_report) and marks that. Last in this file: it makes the
    report job fail (an unreadable QC table, older than the report so nothing upstream reruns), then puts back the
    table and the report."""
    results = study / "results" / "study"
    report, qc = results / "report.html", results / "qc.parquet"
    saved = {p: (p.read_bytes(), p.stat().st_mtime) for p in (report, qc)}
    try:
        qc.write_bytes(b"not a parquet file")
        os.utime(qc, (saved[qc][1], saved[qc][1]))
        result = ms2study("run", str(study), "--cores", "1", "--forcerun", "report", check=False)
        assert result.returncode != 0, result.stderr[-3000:]
        assert "report  " in result.stderr and "OUT OF DATE" in result.stderr, result.stderr[-3000:]
        moved = (results / "report.out-of-date.html").read_text(encoding="utf-8")
        assert "<title>OUT OF DATE: " in moved and 'id="ms2study-out-of-date"' in moved
        assert not report.exists() and not (results / ".report.before-run.html").exists()
    finally:
        for path, (data, mtime) in saved.items():
            path.write_bytes(data)
            os.utime(path, (mtime, mtime))
        for left in ("report.out-of-date.html", "OUT_OF_DATE.txt"):
            (results / left).unlink(missing_ok=True)
