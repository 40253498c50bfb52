"""Benchmark: size and render time of the study report as the number of samples grows.

Running a 100-sample simulated study through the whole pipeline takes hours on 2 cores, so the report's inputs are
built by replication instead (say so when quoting the numbers): the per-sample tables of a finished study (default
the demo, ``ms2study run`` on ``ms2study simulate``) are copied under new sample ids (``S01`` -> ``S01r2`` ...;
sample, spectrum and feature ids relabelled), the feature matrix gets one column per new sample (the source
sample's intensities), the sheet one row per new sample (its source's outcome values). The study-level tables
whose size does not depend on the samples (identifications, differential and class enrichment tables, the model
summaries and predictions of the source study) are used as they are. The QC inputs that the pipeline does not make
yet are synthesised: a QC row per sample and a 3,000-point TIC and base-peak chromatogram per sample (a DDA run's
MS1 scans), and an attribution table per outcome from its differential table. The report is then built by
``ms2study.stages.report.build_report`` and opened ``--repeats`` times in headless Chromium (``--dump-dom``); the
render time is the page's own ``data-rendered-ms`` (navigation start to the load event plus one task: HTML parsed,
plotly.js and the DataTables bundle run, every chart drawn, every table built), the median over the repeats.

Usage:
  PYTHONPATH=workflow python benchmarks/report_size.py --study /tmp/after/demo --out R.json [--samples 12 50 100]
Writes ``n_samples``, ``size_mb``, ``render_s`` for the largest study at the top level, every size under
``scaling``, and the machine and its load.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "workflow"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from machine import machine_record

from ms2study.reporting.collect import TABLES, DifferentialFiles, OutcomeFiles, ReportInputs
from ms2study.stages.report import build_report

ID_COLUMNS = ("spectrum_id", "feature_id")


def _relabel(frame: pl.DataFrame, source: str, new: str) -> pl.DataFrame:
    exprs = [pl.lit(new).alias("sample_id")] if "sample_id" in frame.columns else []
    exprs += [pl.col(c).str.replace(f"^{re.escape(source)}:", f"{new}:") for c in ID_COLUMNS if c in frame.columns]
    return frame.with_columns(exprs)


def replicate(study: Path, out: Path, n: int, seed: int = 0) -> ReportInputs:
    """The report inputs of an ``n``-sample study made from ``study``'s results (see the module docstring)."""
    rng = np.random.default_rng(seed)
    res = study / "results"
    sheet = pl.read_csv(res / "study" / "samples.tsv", separator="\t")
    base = sheet["sample_id"].to_list()
    rows, matrix = [], pl.read_parquet(res / "study" / "feature_matrix.parquet")
    keep = [c for c in matrix.columns if c not in base]
    new_columns = {}
    for i in range(n):
        source = base[i % len(base)]
        new = source if i < len(base) else f"{source}r{i // len(base) + 1}"
        rows.append(sheet.filter(pl.col("sample_id") == source).with_columns(pl.lit(new).alias("sample_id")))
        new_columns[new] = matrix[source]
        target = out / "results" / "samples" / new
        target.mkdir(parents=True, exist_ok=True)
        for kind in TABLES:
            _relabel(pl.read_parquet(res / "samples" / source / f"{kind}.parquet"), source, new).write_parquet(
                target / f"{kind}.parquet")
        rt = np.linspace(0, 1200, 3000)
        peaks = sum(rng.uniform(1e5, 1e7) * np.exp(-0.5 * ((rt - c) / rng.uniform(2, 6)) ** 2)
                    for c in rng.uniform(30, 1170, 60))
        pl.DataFrame({"rt_s": rt, "tic": peaks * 3 + 1e5, "bpc": peaks + 1e4}).write_parquet(
            target / "chromatogram.parquet")
    sheet = pl.concat(rows)
    (out / "results" / "study").mkdir(parents=True, exist_ok=True)
    sheet.write_csv(out / "results" / "study" / "samples.tsv", separator="\t")
    pl.DataFrame({**{c: matrix[c] for c in keep}, **new_columns}).write_parquet(
        out / "results" / "study" / "feature_matrix.parquet")
    ids = sheet["sample_id"].to_list()
    score = rng.normal(size=n)
    pl.DataFrame({
        "sample_id": ids, "n_ms1_scans": [3000] * n, "n_ms2_scans": rng.integers(200, 600, n),
        "n_ms2_mapped": rng.integers(100, 200, n), "share_ms2_mapped": rng.uniform(0.3, 0.9, n),
        "n_features": rng.integers(200, 300, n), "tic_total": rng.uniform(1e9, 2e9, n),
        "rt_shift_median_s": rng.normal(0, 2, n), "precursor_error_median_ppm": rng.normal(0, 1.5, n),
        "n_accepted": rng.integers(50, 150, n), "outlier": np.abs(score) > 2.5, "outlier_score": np.abs(score),
        "outlier_rule": ["robust z > 2.5 (median/MAD of the distance to the median sample)"] * n,
    }).write_parquet(out / "results" / "study" / "qc.parquet")
    study_dir = res / "study"
    outcomes = sorted(p.parent.name for p in (study_dir / "models").glob("*/summary.json"))
    attribution = []
    for outcome in outcomes:
        table = pl.read_parquet(study_dir / "differential" / f"{outcome}.parquet")
        contribution = rng.normal(size=table.height)
        path = out / "results" / "study" / "attribution" / f"{outcome}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        table.select("consensus_id", "mz", "rt_s", "name", "inchikey", "msi_level").with_columns(
            pl.Series("contribution", contribution),
            pl.Series("direction", np.where(contribution > 0, "positive", "negative")),
            pl.Series("rank", np.argsort(np.argsort(-np.abs(contribution))) + 1)).write_parquet(path)
        attribution.append(path)
    samples = out / "results" / "samples"
    return ReportInputs(
        sheet=out / "results" / "study" / "samples.tsv",
        sample_tables={t: [samples / s / f"{t}.parquet" for s in ids] for t in TABLES},
        feature_matrix=out / "results" / "study" / "feature_matrix.parquet",
        identifications=study_dir / "identifications.parquet",
        models=[OutcomeFiles(study_dir / "models" / o / "summary.json", study_dir / "models" / o / "predictions.parquet")
                for o in outcomes],
        differential=[DifferentialFiles(study_dir / "differential" / f"{o}.parquet",
                                        study_dir / "class_enrichment" / f"{o}.parquet") for o in outcomes],
        calibrations=sorted((res / "confidence").glob("*.json")),
        library_indexes=sorted(p.parent for p in (res / "library").glob("*/manifest.json")),
        qc=out / "results" / "study" / "qc.parquet",
        chromatograms=[samples / s / "chromatogram.parquet" for s in ids], attribution=attribution)


def render_ms(chromium: str, html: Path, profile: Path) -> float:
    """The page's ``data-rendered-ms`` after one headless Chromium load (``--dump-dom``)."""
    result = subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", f"--user-data-dir={profile}", "--dump-dom",
         html.resolve().as_uri()], capture_output=True, text=True, timeout=300, check=True)
    found = re.search(r'data-rendered-ms="(\d+)"', result.stdout)
    if not found:
        raise RuntimeError("the page did not report its render time (data-rendered-ms)")
    return float(found.group(1))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--study", type=Path, default=Path("/tmp/after/demo"), help="a finished study's folder")
    parser.add_argument("--samples", type=int, nargs="+", default=[12, 50, 100])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("chromium is not installed (apt-get install chromium)")
    scaling = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in sorted(args.samples):
            root = Path(tmp) / f"n{n}"
            inputs = replicate(args.study, root, n)
            html = root / "report.html"
            start = time.perf_counter()
            build_report(inputs, html)
            build_s = time.perf_counter() - start
            times = [render_ms(chromium, html, Path(tmp) / "profile") / 1000 for _ in range(args.repeats)]
            scaling.append({"n_samples": n, "size_mb": round(html.stat().st_size / 1e6, 2),
                            "render_s": round(float(np.median(times)), 2),
                            "render_s_each": [round(t, 2) for t in times], "build_s": round(build_s, 1)})
            print(json.dumps(scaling[-1]), flush=True)
    sizes = np.array([[s["n_samples"], s["size_mb"]] for s in scaling])
    slope = float(np.polyfit(sizes[:, 0], sizes[:, 1], 1)[0]) if len(sizes) > 1 else None
    result = {**{k: scaling[-1][k] for k in ("n_samples", "size_mb", "render_s")},
              "mb_per_sample": round(slope, 4) if slope is not None else None, "scaling": scaling,
              "source_study": str(args.study), "inputs": "replicated per-sample tables (see the script's docstring)",
              "machine": machine_record()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
