"""Benchmark: how a study's cost grows with its sample count (issue 15 item 6).

A 2-core machine cannot run 200 or 1,000 samples through every per-sample stage, so the measurement has two parts
(say so when quoting the numbers):

1. A small real run. ``ms2study simulate --samples K`` (``--profile demo``: the smallest simulated runs, ~6 MB of
   mzML each; ``realistic``: ~19 MB; ``lab``: realistic over a 30-minute gradient, ~57 MB) runs through the whole
   workflow locally (``ms2study run --cores 1``: one job at a time, so that the jobs do not compete with each other). Every ``python -m ms2study`` command of every job is
   timed by ``/usr/bin/time``: the rules run ``python`` from the folder of the interpreter running Snakemake, so the
   run uses an interpreter in a folder whose ``python`` is a timing shim (``timed_python``). Per job: wall time, CPU
   time (user + system), peak RSS (the kernel's maximum resident set). The rules are classified from the run itself:
   per sample (the command names one sample with ``--sample-id``; phase ``sample`` writes results/samples/, phase
   ``study`` writes results/study/ after the study jobs), once per study (library index, calibration, prototypes)
   and study (the rest, among them the jobs over every run, gapfill, pool_corrected and chemistry, whose commands
   take ``--sample-ids``), so a rule added to the workflow is counted.
2. Study stages at 50, 100, 200 and 1,000 samples, from replicated inputs: the K measured samples' per-sample tables
   (results/samples/{sample}/) are copied under new sample ids (``S01`` -> ``S01r2`` ...; ids relabelled, as
   ``report_size.py`` does; each copy's feature and MS/MS peak intensities varied log-normally, sd 0.3, and its spectrum
   embeddings by noise of sd 0.05, its sample embedding pooled again from them, so that the models fit distinct samples,
   not degenerate exact copies; the saved MS1 scans, which hold no sample id, copied as they are), each new sample's
   mzML is a symbolic link to its source's, the sheet gets a row per sample (its source's outcomes), every table one
   mtime. Snakemake then runs only the study rules (``--allowed-rules``; the per-sample tables are its inputs), each job
   timed as above, gap filling included (the study jobs over every run are measured at each size). Replicated samples
   are copies, so the study has K distinct samples: the linked feature count stays that of K samples, which makes the
   study stages' cost here a lower bound of a real study's; the sample count (rows, columns, files) grows as it would.
   models grows much faster than the samples: above ``--heavy-up-to`` (50) it and the stages reading its results are
   left out (``--omit-from models``) and their cost at 200 and 1,000 extrapolated from the two largest sizes measured
   (``cost_at``: CPU as a power law, peak linearly).

Start-up per job: the job's own command with ``--help`` (``python -m ms2study --threads 1 COMMAND --help``:
interpreter, CLI, the command's module and its imports: polars, pyOpenMS, torch, numba...; numba's cached kernels
load later and count as work), the least of 3; and Snakemake's own start for one job (``snakemake -n`` of a
finished target), which a SLURM job step pays. ``startup_share`` is the start-up over the per-sample stages' CPU (a
local run); ``startup_share_slurm`` adds one Snakemake start per job.

Adding a sample: the 200-sample replicated study, after its study stages ran, gets one more sample; ``snakemake
-n`` (all rules, default config, gap filling on; and off) lists the jobs Snakemake would run; their cost is the
measured cost of each job's rule (per-sample rules: median over the K samples; study rules: at 200 samples,
measured or extrapolated), set against a full 200-sample run (200 x the per-sample stages + the once-per-study jobs
+ the study stages at 200). ``other_samples_rerun`` lists detection-phase jobs of other samples in that list (none
expected).

Usage: ``PYTHONPATH=workflow python benchmarks/scale.py --out R.json [--samples 50 100 200 1000] [--measured 4]
[--profile demo|realistic|lab] [--heavy-up-to 50] [--workdir DIR] [--quick]``. ``--quick``: 2 measured samples, sizes 3
and 5, 60 calibration structures (minutes). A second call with the same ``--workdir`` resumes; ``--rejudge R.json``
recomputes the keys of an earlier result.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "workflow"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from machine import machine_record

# Jobs that run once per study whatever its size (the library's index and calibration, the library prototypes);
# the rest is per sample (a job per sample: its command names the sample) or study (one job, or one per outcome,
# over all samples). The rules are taken from the run itself, so a rule added to the workflow is counted.
ONCE = ("index_library", "calibrate_library", "prototypes")
# CLI command -> rule (index_library runs three commands)
COMMAND_RULE = {"index-library": "index_library", "embed-library": "index_library",
                "prepare-library": "index_library", "calibrate-library": "calibrate_library"}
ID_COLUMNS = ("spectrum_id", "feature_id")
TIME_FORMAT = "%e\t%U\t%S\t%M\t%C"
TARGETS = {"study_cpu_share_200": 0.10, "startup_share": 0.20, "study_peak_mb_per_sample_1000": 20.0,
           "add_one_sample_share_200": 0.03}


def timed_python(root: Path, log: Path) -> tuple[str, dict[str, str]]:
    """An interpreter of this environment whose rule jobs are timed into ``log``, and the environment to run it in.

    The rules run ``python`` from the folder of the interpreter running Snakemake (rules/common.smk puts it first
    on PATH), so that folder gets a ``python`` that runs ``/usr/bin/time -a -o LOG`` on the real one (one
    tab-separated line per command: wall, user, system seconds, peak RSS KB, command line). It is a copy of the
    environment's layout (pyvenv.cfg, lib as links) so the interpreter there finds the same packages."""
    venv = root / "venv"
    (venv / "bin").mkdir(parents=True, exist_ok=True)
    prefix = Path(sys.prefix)
    if (prefix / "pyvenv.cfg").exists():
        shutil.copy(prefix / "pyvenv.cfg", venv / "pyvenv.cfg")
    for name in ("lib", "lib64"):
        if (prefix / name).exists() and not (venv / name).exists():
            (venv / name).symlink_to(prefix / name)
    real = venv / "bin" / "python-real"
    if not real.exists():
        real.symlink_to(os.path.realpath(sys.executable))
    shim = venv / "bin" / "python"
    shim.write_text(f'#!/bin/sh\nexec /usr/bin/time -a -o "{log}" -f "{TIME_FORMAT}" "{real}" "$@"\n')
    shim.chmod(0o755)
    return str(real), dict(os.environ, PYTHONPATH=str(REPO / "workflow"))


def parse_times(log: Path) -> list[dict]:
    """The timed ``python -m ms2study`` runs in ``log``: rule, sample (or None), wall_s, cpu_s, peak_mb."""
    runs = []
    if not log.exists():
        return runs
    for line in log.read_text().splitlines():
        parts = line.split("\t", 4)
        if len(parts) != 5 or "-m ms2study" not in parts[4]:
            continue
        command = parts[4]
        found = re.search(r"-m ms2study(?: --threads \d+)? ([\w-]+)", command)
        if not found:
            continue
        name = found.group(1)
        sample = re.search(r"--sample-id (\S+)", command) or re.search(r"--out \S*results/samples/([^/]+)/", command)
        out = re.search(r"--(?:out|outdir) (\S+)", command)
        runs.append({"rule": COMMAND_RULE.get(name, name.replace("-", "_")), "command": name,
                     "out": out.group(1) if out else "",
                     "sample": sample.group(1) if sample else None, "wall_s": float(parts[0]),
                     "cpu_s": float(parts[1]) + float(parts[2]), "peak_mb": int(parts[3]) / 1024})
    return runs


def per_job(runs: list[dict]) -> dict[tuple[str, str | None], dict]:
    """Runs summed per job (rule, sample): wall and CPU add up, peak memory is the largest command's. A command run
    again (same command and output: a resumed run) counts once, its last run."""
    last = {(r["rule"], r["sample"], r["command"], r["out"]): r for r in runs}
    jobs: dict[tuple[str, str | None], dict] = {}
    for r in last.values():
        job = jobs.setdefault((r["rule"], r["sample"]), {"wall_s": 0.0, "cpu_s": 0.0, "peak_mb": 0.0})
        job["wall_s"] += r["wall_s"]
        job["cpu_s"] += r["cpu_s"]
        job["peak_mb"] = max(job["peak_mb"], r["peak_mb"])
    return jobs


def timed(command: list[str], env: dict[str, str], repeats: int = 3) -> dict:
    """The least wall and CPU time and peak RSS of ``repeats`` runs of ``command`` (a process that only starts)."""
    best = None
    for _ in range(repeats):
        with tempfile.NamedTemporaryFile("r", suffix=".time") as out:
            subprocess.run(["/usr/bin/time", "-o", out.name, "-f", "%e\t%U\t%S\t%M", *command], env=env,
                           check=True, capture_output=True, timeout=600)
            wall, user, system, rss = out.read().strip().splitlines()[-1].split("\t")
        row = {"wall_s": float(wall), "cpu_s": round(float(user) + float(system), 2), "peak_mb": int(rss) / 1024}
        best = row if best is None or row["cpu_s"] < best["cpu_s"] else best
    return best


def run_study(study: Path, python: str, env: dict[str, str], extra: list[str], timeout: float) -> tuple[int, float]:
    """``ms2study run STUDY --cores 1 EXTRA`` with ``python``: exit code and wall seconds (output: STUDY/run.log)."""
    start = time.perf_counter()
    with (study / "run.log").open("w") as log:
        try:
            code = subprocess.run([python, "-m", "ms2study", "run", str(study), "--cores", "1", *extra],
                                  env=env, stdout=log, stderr=subprocess.STDOUT, timeout=timeout).returncode
        except subprocess.TimeoutExpired:
            code = -1
    return code, time.perf_counter() - start


# --profile lab: the realistic profile over a 30-minute gradient with three times its background compounds (the
# same density of compounds per minute), ~57 MB of mzML per run: the length of a lab's routine DDA run, where the
# per-sample work that start-up is set against grows with the run while start-up does not.
LAB_PARAMS = {"rt_max_s": 1800.0, "n_background_compounds": 7500}


def simulate(study: Path, samples: int, calibration_queries: int | None, profile: str = "demo") -> None:
    """``ms2study simulate`` of ``samples`` runs (seed 0) into ``study`` with ``profile`` (demo, realistic, or lab:
    realistic with LAB_PARAMS); ``calibration_queries`` (None: the config's) set in the study's config."""
    env = dict(os.environ, PYTHONPATH=str(REPO / "workflow"))
    extra = ["--profile", "realistic", "--params", json.dumps(LAB_PARAMS)] if profile == "lab" else ["--profile",
                                                                                                     profile]
    subprocess.run([sys.executable, "-m", "ms2study", "simulate", str(study), "--samples", str(samples), "--seed",
                    "0", *extra], check=True, capture_output=True, env=env)
    if calibration_queries:
        config = yaml.safe_load((study / "config.yaml").read_text()) or {}
        config.setdefault("annotate", {})["calibration_queries"] = calibration_queries
        (study / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))


# Biological variation given to a copy (--jitter): log-normal sd of intensities (features, MS/MS peaks) and the sd
# of the noise added to each spectrum embedding (then renormalised).
JITTER_LOG_SD = 0.3
JITTER_EMBEDDING_SD = 0.05


def _relabel(frame: pl.DataFrame, source: str, new: str, rng: np.random.Generator | None = None) -> pl.DataFrame:
    """``frame`` of ``source`` as a table of sample ``new``: ids relabelled; with ``rng`` (a copy), intensities and
    spectrum embeddings varied as between the samples of one group, so that the models see distinct samples (exact
    copies make every fit degenerate: perfectly separable, and far slower to converge than real data)."""
    exprs = [pl.lit(new).alias("sample_id")] if "sample_id" in frame.columns else []
    exprs += [pl.col(c).str.replace(f"^{re.escape(source)}:", f"{new}:") for c in ID_COLUMNS
              if c in frame.columns and frame.schema[c] == pl.String]
    frame = frame.with_columns(exprs) if exprs else frame
    if rng is None or frame.height == 0:
        return frame
    varied = []
    for column in ("intensity", "height", "precursor_intensity"):
        if column in frame.columns and frame.schema[column] in (pl.Float64, pl.Float32):
            varied.append(pl.col(column) * pl.Series(np.exp(rng.normal(0.0, JITTER_LOG_SD, frame.height))))
    if "intensity" in frame.columns and isinstance(frame.schema["intensity"], pl.List):  # MS/MS peaks
        peaks = [None if v is None else (np.asarray(v) * np.exp(rng.normal(0.0, JITTER_LOG_SD, len(v)))).tolist()
                 for v in frame["intensity"].to_list()]
        varied.append(pl.Series("intensity", peaks, dtype=frame.schema["intensity"]))
    if "spectrum_id" in frame.columns and isinstance(frame.schema.get("embedding"), pl.List):
        # spectrum embeddings (the pooled vectors and bags of chemistry are pooled again from them, ``_repool``; not
        # the annotations' embedding score, a number)
        vectors = []
        for v in frame["embedding"].to_list():
            if v is None:
                vectors.append(None)
                continue
            moved = np.asarray(v, dtype=np.float64) + rng.normal(0.0, JITTER_EMBEDDING_SD, len(v))
            vectors.append((moved / max(np.linalg.norm(moved), 1e-12)).tolist())
        varied.append(pl.Series("embedding", vectors, dtype=frame.schema["embedding"]))
    return frame.with_columns(varied) if varied else frame


def _repool(study: Path, sample: str, config: dict) -> None:
    """A varied copy's sample embedding made again from its varied spectrum embeddings, with the product's own
    pooling (``pool_sample``, the study's pool settings). Attribution checks that a pooled vector is the pooling of
    its spectra, so it cannot be varied on its own; the study-level pooled vectors and bags of chemistry are made by
    the study jobs (pool_corrected, chemistry) in the timed run."""
    from ms2study.modelling.pooling import pool_sample

    params = config.get("pool") or {}
    tables = study / "results" / "samples" / sample
    if not ((tables / "embeddings.parquet").exists() and (tables / "spectra.parquet").exists()):
        return  # nothing was embedded: nothing to pool
    embeddings, spectra = pl.read_parquet(tables / "embeddings.parquet"), pl.read_parquet(tables / "spectra.parquet")
    if (tables / "sample_embedding.parquet").exists():
        pool_sample(embeddings, spectra, sample, params, features=pl.read_parquet(tables / "features.parquet")
                    ).write_parquet(tables / "sample_embedding.parquet")


# Per-sample tables that name no sample (no ids to relabel): copied as they are (the saved MS1 scans: ~2 MB a run;
# not linked: the tables' mtimes are set below, which would move the source's too).
UNCHANGED_TABLES = ("ms1_scans.parquet",)


def replicate(source: Path, out: Path, n: int, gap_fill: bool = True) -> list[str]:
    """A study folder of ``n`` samples made from ``source``'s per-sample tables (see the module docstring); the
    sample ids, in sheet order."""
    sheet = pl.read_csv(source / "samples.tsv", separator="\t")
    base = sheet["sample_id"].to_list()
    (out / "mzml").mkdir(parents=True, exist_ok=True)
    config = yaml.safe_load((source / "config.yaml").read_text()) or {}
    config.setdefault("correct", {})["gap_fill"] = gap_fill
    (out / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    shutil.copy(source / config.get("library", "library.mgf"), out / config.get("library", "library.mgf"))
    rows, sources = [], []
    for i in range(n):
        src = base[i % len(base)]
        new = src if i < len(base) else f"{src}r{i // len(base) + 1}"
        row = sheet.filter(pl.col("sample_id") == src)
        mzml = out / "mzml" / f"{new}.mzML"
        if not mzml.exists():
            mzml.symlink_to((source / row["file"][0]).resolve())
        rows.append(row.with_columns(pl.lit(new).alias("sample_id"), pl.lit(f"mzml/{new}.mzML").alias("file")))
        sources.append((new, src))
    # tables after the mzML links, so that Snakemake finds them newer than their inputs; the library's and the
    # sample-independent study tables (library prototypes) as they are
    for folder in ("library", "confidence"):
        shutil.copytree(source / "results" / folder, out / "results" / folder, dirs_exist_ok=True, symlinks=True)
    if (source / "results" / "study" / "prototypes.parquet").exists():
        (out / "results" / "study").mkdir(parents=True, exist_ok=True)
        shutil.copy(source / "results" / "study" / "prototypes.parquet", out / "results" / "study")
    # per-sample tables: results/samples/{sample}/*.parquet (the study phase's tables of every run, under
    # results/study/<folder>/, are made by the study jobs in the timed run)
    for index, (new, src) in enumerate(sources):
        target = out / "results" / "samples" / new
        target.mkdir(parents=True, exist_ok=True)
        # the measured samples as they are; every copy with its own (seeded) variation
        rng = np.random.default_rng(index) if new != src else None
        for table in sorted((source / "results" / "samples" / src).glob("*.parquet")):
            if table.name in UNCHANGED_TABLES:
                shutil.copyfile(table, target / table.name)
                continue
            _relabel(pl.read_parquet(table), src, new, rng).write_parquet(target / table.name)
        if rng is not None:
            _repool(out, new, config)
    pl.concat(rows).write_csv(out / "samples.tsv", separator="\t")
    # every table one time, later than the inputs (mzML links, library, sheet): Snakemake reruns a job whose input is
    # newer than its output, and the copies were written in no particular order
    later = time.time()
    for path in (out / "results").rglob("*"):
        os.utime(path, (later, later), follow_symlinks=False)
    return [new for new, _ in sources]


def job_stats(output: str) -> dict[str, int]:
    """Snakemake's "Job stats" table (rule -> jobs) from a dry run's output."""
    lines = output.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("Job stats:"):
            counts = {}
            for row in lines[i + 3:]:
                parts = row.split()
                if len(parts) != 2 or not parts[1].isdigit():
                    break
                if parts[0] != "total":
                    counts[parts[0]] = int(parts[1])
            return counts
    return {}


def summarise(jobs: dict[tuple[str, str | None], dict], rules) -> dict[str, dict]:
    """Per rule: jobs, median and total wall/CPU, largest peak (MB)."""
    out = {}
    for rule in rules:
        rows = [v for (r, _), v in jobs.items() if r == rule]
        if rows:
            out[rule] = {"jobs": len(rows),
                         "wall_s_median": round(statistics.median(r["wall_s"] for r in rows), 2),
                         "cpu_s_median": round(statistics.median(r["cpu_s"] for r in rows), 2),
                         "cpu_s_total": round(sum(r["cpu_s"] for r in rows), 2),
                         "peak_mb_max": round(max(r["peak_mb"] for r in rows), 1)}
    return out


def add_phases(per_sample: dict[str, dict], runs: list[dict]) -> None:
    """Mark each per-sample rule's phase: ``sample`` (writes results/samples/{sample}/..., depends on its sample
    only) or ``study`` (writes results/study/..., after the study jobs: reruns for every sample when one is added)."""
    for r in runs:
        if r["rule"] in per_sample:
            per_sample[r["rule"]]["phase"] = "sample" if "results/samples/" in r["out"] else "study"


def measure(root: Path, measured: int, sizes: list[int], calibration_queries: int | None,
            stage_timeout: float, profile: str = "demo", heavy_up_to: int = 50) -> dict:
    """Both parts of the benchmark (module docstring); the result's measurements (keys judged by ``judge``)."""
    small = root / "small"
    if not (small / "samples.tsv").exists():  # else a run left in --workdir is resumed (its finished jobs kept)
        simulate(small, measured, calibration_queries, profile)
    log = root / "small.time"
    python, env = timed_python(root / "timed-small", log)
    locked = any((small / ".snakemake" / "locks").glob("*"))  # a killed run: unlock, redo what was incomplete
    code, wall = run_study(small, python, env, ["--recover"] if locked else [], stage_timeout * 4)
    walls = [float(w) for w in (root / "small.wall").read_text().split()] if (root / "small.wall").exists() else []
    (root / "small.wall").write_text(" ".join(str(w) for w in [*walls, wall]))
    wall = sum(walls) + wall
    if code != 0:
        raise RuntimeError(f"the {measured}-sample run failed: {(small / 'run.log').read_text()[-3000:]}")
    small_jobs = per_job(parse_times(log))
    per_sample_rules = sorted({rule for rule, sample in small_jobs if sample is not None})
    study_rules = sorted({rule for rule, sample in small_jobs if sample is None and rule not in ONCE})
    per_sample = summarise(small_jobs, per_sample_rules)
    add_phases(per_sample, parse_times(log))
    once = summarise(small_jobs, ONCE)
    plain = dict(os.environ, PYTHONPATH=str(REPO / "workflow"))
    # A job that does nothing: the rule's own command with --help (interpreter, CLI, the command's module and
    # what it imports: polars, pyOpenMS, torch, numba...; the CLI imports only the command's module), least of 3.
    commands = {}
    for r in parse_times(log):
        commands.setdefault(r["rule"], r["command"])
    startup = {rule: {**timed([sys.executable, "-m", "ms2study", "--threads", "1", commands[rule], "--help"], plain),
                      "command": f"python -m ms2study --threads 1 {commands[rule]} --help"}
               for rule in per_sample_rules}
    startup["snakemake_job"] = timed([sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d",
                                      str(small), "-n", "--cores", "1", "results/samples/S01/features.parquet"],
                                     plain, repeats=2)
    study_runs, add_one = [], None
    reference = max([n for n in sizes if n <= 200] or [min(sizes)])
    for n in sorted(sizes):
        folder = root / f"n{n}"
        if (root / f"n{n}.json").exists():  # measured by an earlier call with this --workdir
            study_runs.append(json.loads((root / f"n{n}.json").read_text()))
            continue
        shutil.rmtree(folder, ignore_errors=True)
        shutil.rmtree(root / f"timed-n{n}", ignore_errors=True)
        (root / f"n{n}.time").unlink(missing_ok=True)
        ids = replicate(small, folder, n)
        log_n = root / f"n{n}.time"
        python_n, env_n = timed_python(root / f"timed-n{n}", log_n)
        # above --heavy-up-to, models and what reads its results are left out and extrapolated (module docstring)
        heavy = n > heavy_up_to
        code, wall_n = run_study(folder, python_n, env_n, ["--allowed-rules", "all", *study_rules,
                                                           *(["--omit-from", "models"] if heavy else [])],
                                 stage_timeout)
        runs = parse_times(log_n)
        jobs = per_job(runs)  # a rule with a job per outcome: its jobs summed, the largest peak
        row = {"n_samples": n, "exit_code": code, "wall_s": round(wall_n, 1),
               "stages": {rule: {**{k: round(v, 2) for k, v in jobs[(rule, None)].items()},
                                 "commands": sum(r["rule"] == rule for r in runs)}
                          for rule in study_rules if (rule, None) in jobs}}
        row["cpu_s"] = round(sum(s["cpu_s"] for s in row["stages"].values()), 1)
        # what the run spent outside the stages' commands (Snakemake: DAG, checks, the sample sheet rule)
        row["snakemake_wall_s"] = round(wall_n - sum(s["wall_s"] for s in row["stages"].values()), 1)
        row["omitted"] = "models and the stages reading it (--omit-from models)" if heavy else None
        study_runs.append(row)
        if code == 0:
            (root / f"n{n}.json").write_text(json.dumps(row))
        print(json.dumps({k: row[k] for k in ("n_samples", "exit_code", "wall_s", "cpu_s")}), flush=True)
        if n == reference and code == 0:
            add_one = dry_run_add_one(folder, ids, plain)
        if code != 0:
            break
    mzml_mb = [round(f.stat().st_size / 1e6, 1) for f in sorted((small / "mzml").glob("*.mzML"))]
    return {"small_run": {"samples": measured, "profile": profile, "mzml_mb": mzml_mb, "wall_s": round(wall, 1),
                          "per_sample": per_sample, "once_per_study": once,
                          "study": summarise(small_jobs, study_rules)},
            "startup": startup, "study_runs": study_runs, "add_one": add_one}


def dry_run_add_one(folder: Path, ids: list[str], env: dict[str, str]) -> dict:
    """Snakemake's job list after one sample is added to a finished ``folder`` study: with gap filling on (the
    default config) and off."""
    sheet = pl.read_csv(folder / "samples.tsv", separator="\t")
    new = "ADDED1"
    link = folder / "mzml" / f"{new}.mzML"
    link.symlink_to((folder / sheet["file"][0]).resolve())
    sheet = pl.concat([sheet, sheet.head(1).with_columns(pl.lit(new).alias("sample_id"),
                                                         pl.lit(f"mzml/{new}.mzML").alias("file"))])
    sheet.write_csv(folder / "samples.tsv", separator="\t")
    result = {"n_samples_before": len(ids)}
    for gap_fill in (True, False):
        config = yaml.safe_load((folder / "config.yaml").read_text())
        config["correct"]["gap_fill"] = gap_fill
        (folder / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
        out = subprocess.run([sys.executable, "-m", "ms2study", "run", str(folder), "--cores", "1", "-n"],
                             env=env, capture_output=True, text=True, timeout=900)
        result["gap_fill_on" if gap_fill else "gap_fill_off"] = job_stats(out.stdout + out.stderr)
    return result


def study_costs(m: dict) -> dict[int, dict[str, dict]]:
    """Study stages' CPU (s) and peak (MB) by sample count: the small real run and every finished study size."""
    small = m["small_run"]
    sizes = {small["samples"]: {s: {"cpu_s": v["cpu_s_total"], "peak_mb": v["peak_mb_max"]}
                                for s, v in small.get("study", {}).items()}}
    for run in m["study_runs"]:
        if run["exit_code"] == 0:
            sizes[run["n_samples"]] = {s: {"cpu_s": v["cpu_s"], "peak_mb": v["peak_mb"]}
                                       for s, v in run["stages"].items()}
    return sizes


def cost_at(sizes: dict[int, dict[str, dict]], stage: str, n: int) -> dict | None:
    """A study stage's cost at ``n`` samples: measured, else extrapolated from the two largest sizes measured
    below (CPU as a power law of the sample count, peak memory linearly: an underestimate if it grows faster)."""
    if stage in sizes.get(n, {}):
        return {**sizes[n][stage], "extrapolated": False}
    known = sorted(k for k in sizes if stage in sizes[k] and k < n)
    if len(known) < 2:
        return None
    n1, n2 = known[-2:]
    a, b = sizes[n1][stage], sizes[n2][stage]
    exponent = math.log(max(b["cpu_s"], 1e-3) / max(a["cpu_s"], 1e-3)) / math.log(n2 / n1)
    return {"cpu_s": round(b["cpu_s"] * (n / n2) ** exponent, 1),
            "peak_mb": round(b["peak_mb"] + (b["peak_mb"] - a["peak_mb"]) / (n2 - n1) * (n - n2), 1),
            "extrapolated": True, "from_sizes": [n1, n2], "cpu_exponent": round(exponent, 2)}


def judge(m: dict, sizes: list[int]) -> dict:
    """The issue's keys and targets from the measurements (see the module docstring for what each means)."""
    per_sample = m["small_run"]["per_sample"]
    sample_cpu = sum(s["cpu_s_median"] for s in per_sample.values())
    library_cpu = sum(s["cpu_s_total"] for s in m["small_run"]["once_per_study"].values())
    startup = m["startup"]
    start_cpu = sum(startup[stage]["cpu_s"] for stage in per_sample)
    costs = study_costs(m)
    runs = sorted(r["n_samples"] for r in m["study_runs"] if r["exit_code"] == 0)
    ref = 200 if 200 in runs else max([n for n in runs if n <= 200] or runs[:1])
    big = max(runs)
    stages = sorted({s for by_stage in costs.values() for s in by_stage})
    at_ref = {s: cost_at(costs, s, ref) for s in stages}
    at_big = {s: cost_at(costs, s, big) for s in stages}
    study_ref_cpu = sum(c["cpu_s"] for c in at_ref.values() if c)
    full_ref = ref * sample_cpu + library_cpu + study_ref_cpu
    peak_stage = max((s for s in stages if at_big[s]), key=lambda s: at_big[s]["peak_mb"])
    result = {
        "reference_samples": ref, "largest_samples": big,
        "per_sample_cpu_s": round(sample_cpu, 2),
        "study_cpu_share_200": round(study_ref_cpu / full_ref, 4),
        "startup_share": round(start_cpu / sample_cpu, 4),
        "startup_share_slurm": round((start_cpu + len(per_sample) * startup["snakemake_job"]["cpu_s"]) / sample_cpu,
                                     4),
        "study_peak_mb_per_sample_1000": round(at_big[peak_stage]["peak_mb"] / big, 3),
        "study_peak_stage_1000": peak_stage,
        "full_run_cpu_s_200": round(full_ref, 1),
        "study_stages_at_200": at_ref, "study_stages_at_1000": at_big,
        "extrapolated": sorted({s for s in stages if (at_ref[s] or {}).get("extrapolated")
                                or (at_big[s] or {}).get("extrapolated")}),
    }
    growth = {}
    for stage in stages:
        points = sorted((n, c[stage]["cpu_s"], c[stage]["peak_mb"]) for n, c in costs.items() if stage in c)
        if len(points) > 1:
            (n1, cpu1, peak1), (n2, cpu2, peak2) = points[0], points[-1]
            growth[stage] = {"sizes": [p[0] for p in points], "cpu_s": [p[1] for p in points],
                             "peak_mb": [p[2] for p in points],
                             "peak_mb_per_added_sample": round((peak2 - peak1) / (n2 - n1), 4),
                             "cpu_exponent": round(math.log(max(cpu2, 1e-3) / max(cpu1, 1e-3)) / math.log(n2 / n1), 2)}
    result["study_growth"] = growth
    add = m.get("add_one")
    if add:
        cost = {}
        for variant in ("gap_fill_on", "gap_fill_off"):
            total = 0.0
            for rule, count in add[variant].items():
                if rule in per_sample:
                    total += count * per_sample[rule]["cpu_s_median"]
                elif at_ref.get(rule):  # every job of a study rule reruns (the sheet changed)
                    total += at_ref[rule]["cpu_s"]
                elif rule in m["small_run"]["once_per_study"]:
                    total += m["small_run"]["once_per_study"][rule]["cpu_s_total"]
            # valid only when no other sample's per-sample job is planned (the study phase's reruns by design)
            others = {r: c for r, c in add[variant].items()
                      if per_sample.get(r, {}).get("phase") == "sample" and c > 1}
            cost[variant] = {"jobs": add[variant], "cpu_s": round(total, 1), "share": round(total / full_ref, 4),
                             "other_samples_rerun": others}
        result["add_one_sample"] = cost
        result["add_one_sample_share_200"] = cost["gap_fill_on"]["share"]
    result["targets"] = {k: {"target": f"<= {v}", "measured": result.get(k),
                             "met": result.get(k) is not None and result[k] <= v} for k, v in TARGETS.items()}
    return result


def judge_with_per_sample(m: dict, other: dict) -> dict:
    """The shares of ``judge`` when every sample costs what ``other``'s measured samples cost (its small run's
    per-sample stages and their start-up, e.g. larger runs of --profile realistic), with ``m``'s library jobs,
    study stages and add-one job list: how the targets depend on the size of the runs."""
    swapped = {**m, "small_run": {**m["small_run"], "per_sample": other["small_run"]["per_sample"]},
               "startup": other["startup"]}
    keys = judge(swapped, [r["n_samples"] for r in m["study_runs"]])
    return {"how": f"per-sample stages and start-up of {other['small_run']['samples']} {other['small_run']['profile']}"
                   f"-profile samples (mzML MB {other['small_run']['mzml_mb']}); library, study stages and the add-one "
                   "job list of the main run",
            "per_sample": other["small_run"]["per_sample"], "startup": other["startup"],
            **{k: keys[k] for k in ("per_sample_cpu_s", "study_cpu_share_200", "startup_share", "startup_share_slurm",
                                    "full_run_cpu_s_200", "add_one_sample_share_200", "targets") if k in keys}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--samples", type=int, nargs="+", default=[50, 100, 200, 1000])
    parser.add_argument("--measured", type=int, default=4, help="samples of the small real run")
    parser.add_argument("--stage-timeout", type=float, default=3600.0, help="seconds for one study size's stages")
    parser.add_argument("--workdir", type=Path, help="keep the studies here (default: a temporary folder)")
    parser.add_argument("--quick", action="store_true", help="2 measured samples, sizes 3 and 5")
    parser.add_argument("--heavy-up-to", type=int, default=50, help="largest study size at which models, "
                        "attribution and report run (above: left out, extrapolated)")
    parser.add_argument("--profile", choices=["demo", "realistic", "lab"], default="demo",
                        help="ms2study simulate's profile of the measured samples (realistic: larger runs; lab: "
                             "realistic over a 30-minute gradient, LAB_PARAMS)")
    parser.add_argument("--rejudge", type=Path, help="recompute the keys of an earlier result (with --workdir: "
                        "its per-sample phases from the kept logs)")
    parser.add_argument("--per-sample-from", type=Path, help="with --rejudge: also judge the shares with the "
                        "per-sample stages and start-up of this other result (e.g. a --profile realistic run of "
                        "larger runs), kept under '<its profile>_profile' (realistic_profile, lab_profile)")
    args = parser.parse_args()
    if args.rejudge:
        old = json.loads(args.rejudge.read_text())
        if args.workdir and (args.workdir / "small.time").exists():
            add_phases(old["small_run"]["per_sample"], parse_times(args.workdir / "small.time"))
        keys = judge(old, [r["n_samples"] for r in old["study_runs"]])
        result = {**old, **keys}
        if args.per_sample_from:
            other = json.loads(args.per_sample_from.read_text())
            # the machine the per-sample stages were measured on (the study stages keep the main run's)
            result[f"{other['small_run']['profile']}_profile"] = {**judge_with_per_sample(old, other),
                                                                   "machine": other.get("machine")}
        args.out.write_text(json.dumps(result, indent=2) + "\n")
        return 0
    if args.quick:
        args.measured, args.samples = 2, [3, 5]
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="ms2study-scale-") as tmp:
        root = args.workdir or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        m = measure(root, args.measured, args.samples, 60 if args.quick else None, args.stage_timeout,
                    args.profile, args.heavy_up_to)
    result = {**judge(m, args.samples), **m, "quick": args.quick, "benchmark_wall_s": round(time.perf_counter() -
                                                                                              started, 1),
              "method": "per-sample stages measured on a small real run; study stages on replicated per-sample "
                        "tables (K distinct samples copied under new ids); see benchmarks/scale.py's docstring",
              "machine": machine_record()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
