"""Benchmark: does alignment and linking stay as good when the cohort grows (issue 15 item 4)?

Method. ``ms2study simulate --realistic --samples N --seed S`` writes N distinct runs with known truth (each run its
own retention-time drift: shift, stretch and warp; its own mass calibration offset; per-sample biological variation
and DDA sampling). Feature detection runs once per run (``ms2study detect``, the study's ``detect`` settings). Then
the link stage (``ms2study link``: alignment to a fixed reference run, the first sample, and consensus features) is
run on nested cohorts, the first K runs for each K of ``--sizes`` (12, 24, 48, 96 by default): the first 12 runs are
in every cohort, so their linking can be compared as the cohort grows. Scored against the simulator's truth, on those
common runs:

- per run, the alignment's RT residual to the reference (``alignment.parquet``: median absolute residual over the
  features shared with the reference) and the truth residual: each matched sample feature's aligned RT
  (``feature_links.parquet``) against its compound's apex in the reference run (median absolute difference);
- mislinked features: each sample feature matched to a compound's [M+H]+ in its own run (10 ppm, 8 s on that run's
  own RT axis) whose consensus feature is matched (on the reference axis, ``study_truth.match_features``) to another
  compound: the share of the run's matched features, judged only where both matches have a single candidate (an
  isomer co-eluting within 8 s makes either side ambiguous);
- cell recall: of the compounds above the noise in a run (``ground_truth.tsv`` ``above_noise``) whose own ion has a
  consensus feature, the share with a value in that run's column;
- splits: truth ions with several consensus features (``study_truth.match_summary``), consensus features per run.

Usage: ``PYTHONPATH=workflow python benchmarks/cohort_linking.py --out R.json [--samples 96] [--sizes 12 24 48 96]
[--seed 5] [--workdir DIR] [--jobs 2]``. A second call with the same ``--workdir`` reuses the simulated study and its
features tables.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import polars as pl
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "workflow"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from machine import machine_record  # noqa: E402
from study_truth import PPM, RT_TOL_S, match_features, match_summary, truth_ions  # noqa: E402

COMMON = 12  # the runs in every cohort, whose linking is compared


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": str(REPO / "workflow")}


def simulate(study: Path, samples: int, seed: int) -> None:
    """The realistic study (skipped when ``study`` already holds one)."""
    if (study / "ground_truth.tsv").is_file():
        return
    subprocess.run([sys.executable, "-m", "ms2study", "simulate", "--realistic", "--samples", str(samples),
                    "--seed", str(seed), str(study)], check=True, env=_env())


def detect_all(study: Path, sample_ids: list[str], files: dict[str, str], jobs: int) -> dict[str, Path]:
    """Each run's features.parquet (``ms2study detect`` with the study's detect settings; existing ones reused)."""
    config = yaml.safe_load((study / "config.yaml").read_text()) or {}
    params = json.dumps(config.get("detect") or {})
    out = {s: study / "features" / f"{s}.parquet" for s in sample_ids}
    (study / "features").mkdir(exist_ok=True)

    def one(s: str) -> None:
        if out[s].is_file():
            return
        subprocess.run([sys.executable, "-m", "ms2study", "--threads", "1", "detect", "--mzml",
                        str(study / files[s]), "--sample-id", s, "--out", str(out[s]), "--params", params],
                       check=True, env=_env(), stdout=subprocess.DEVNULL)

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        list(pool.map(one, sample_ids))
    return out


def link(study: Path, cohort: list[str], features: dict[str, Path], folder: Path) -> float:
    """The link stage on ``cohort`` (reference: its first run) into ``folder``; returns its wall time (s)."""
    config = yaml.safe_load((study / "config.yaml").read_text()) or {}
    folder.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "ms2study", "--threads", "1", "link", "--features",
                    *[str(features[s]) for s in cohort], "--sample-ids", *cohort, "--reference", cohort[0],
                    "--out", str(folder / "feature_matrix.parquet"), "--alignment-out",
                    str(folder / "alignment.parquet"), "--links-out", str(folder / "feature_links.parquet"),
                    "--params", json.dumps(config.get("link") or {})], check=True, env=_env(),
                   stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def own_compounds(features: pl.DataFrame, truth: pl.DataFrame) -> pl.DataFrame:
    """Each sample feature (feature_id, mz, rt_s on its own run's axis) with the compound whose [M+H]+ it is in that
    run (``PPM``, ``RT_TOL_S``, the most abundant candidate; null where none)."""
    t = truth.filter(pl.col("present")).select("compound_id", "mz", "rt_s", "abundance").sort("mz")
    mz, rt, ab, comp = (t["mz"].to_numpy(), t["rt_s"].to_numpy(), t["abundance"].to_numpy(),
                        t["compound_id"].to_list())
    out = []
    for fid, fmz, frt in features.select("feature_id", "mz", "rt_s").iter_rows():
        lo, hi = np.searchsorted(mz, [fmz * (1 - PPM * 1e-6), fmz * (1 + PPM * 1e-6)])
        idx = [i for i in range(lo, hi) if abs(rt[i] - frt) <= RT_TOL_S]
        out.append((fid, comp[max(idx, key=lambda i: ab[i])] if idx else None, len(idx)))
    return pl.DataFrame(out, schema={"feature_id": pl.Utf8, "own_compound": pl.Utf8, "own_candidates": pl.Int64},
                        orient="row")


def score(study: Path, folder: Path, common: list[str], features: dict[str, Path], truth: pl.DataFrame) -> dict:
    """The module docstring's scores of one cohort's link outputs, on the ``common`` runs."""
    raw = pl.read_parquet(folder / "feature_matrix.parquet")
    alignment = pl.read_parquet(folder / "alignment.parquet")
    links = pl.read_parquet(folder / "feature_links.parquet")
    reference = common[0]
    ions, comp = truth_ions(study, reference)
    matches = match_features(raw, ions)
    main = matches.filter((pl.col("kind") == "main") & (pl.col("isotope") == 0))
    # judged only where the truth is unambiguous on both sides: one candidate ion for the consensus feature
    unambiguous = main.filter(pl.col("n_candidates") == 1)
    consensus_compound = dict(zip(unambiguous["consensus_id"].to_list(), unambiguous["compound_id"].to_list(),
                                  strict=True))
    own_feature = main.group_by("compound_id").agg(pl.col("consensus_id").first())
    ref_rt = dict(zip(*truth.filter(pl.col("sample_id") == reference).select("compound_id", "rt_s")
                      .get_columns()))
    per_run = []
    for s in common:
        t = truth.filter(pl.col("sample_id") == s)
        f = pl.read_parquet(features[s]).select("feature_id", "mz", "rt_s")
        own = own_compounds(f, t)
        linked = links.filter(pl.col("sample_id") == s).join(own, on="feature_id", how="left")
        linked = linked.with_columns(pl.col("consensus_id").replace_strict(consensus_compound, default=None)
                                     .alias("consensus_compound"))
        judged = linked.filter(pl.col("own_compound").is_not_null() & (pl.col("own_candidates") == 1)
                               & pl.col("consensus_compound").is_not_null())
        mislinked = judged.filter(pl.col("own_compound") != pl.col("consensus_compound")).height
        fit = alignment.filter(pl.col("sample_id") == s).row(0, named=True)
        truth_residual = np.abs(judged["rt_aligned_s"].to_numpy()
                                - np.array([ref_rt.get(c, np.nan) for c in judged["own_compound"]], dtype=float))
        above = t.filter(pl.col("above_noise")).join(own_feature, on="compound_id")
        cells = raw.select("consensus_id", s).join(above.select("consensus_id"), on="consensus_id")
        per_run.append({
            "sample_id": s, "n_consensus_with_value": int(raw[s].is_not_null().sum()),
            "alignment_residual_median_abs_s": fit.get("rt_residual_median_abs_s"),
            "truth_residual_median_abs_s": round(float(np.nanmedian(truth_residual)), 3) if truth_residual.size
            else None,
            "n_matched_sample_features": judged.height, "mislinked": mislinked,
            "mislinked_share": round(mislinked / judged.height, 4) if judged.height else None,
            "cell_recall": round(float(cells[s].is_not_null().mean()), 4) if cells.height else None})
    frame = pl.DataFrame(per_run)
    summary = match_summary(matches, comp)
    return {"n_consensus_features": raw.height,
            "ions_with_several_features": summary["ions_with_several_features"],
            "compounds_with_own_ion_feature": summary["compounds_with_own_ion_feature"],
            # medians over the common runs, and the mislinked share over all their judged features together
            "common_runs": {k: round(float(frame[k].drop_nulls().median()), 4) for k in
                            ("alignment_residual_median_abs_s", "truth_residual_median_abs_s", "cell_recall")}
            | {"mislinked_total": int(frame["mislinked"].sum()),
               "matched_total": int(frame["n_matched_sample_features"].sum()),
               "mislinked_share_total": round(int(frame["mislinked"].sum())
                                              / max(int(frame["n_matched_sample_features"].sum()), 1), 5)},
            "per_run": per_run}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--samples", type=int, default=96)
    ap.add_argument("--sizes", type=int, nargs="+", default=[12, 24, 48, 96])
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--workdir", type=Path, default=Path("cohort_linking_work"))
    ap.add_argument("--jobs", type=int, default=2, help="detect jobs at a time")
    args = ap.parse_args()
    if min(args.sizes) < COMMON or max(args.sizes) > args.samples:
        raise SystemExit(f"--sizes must lie between {COMMON} and --samples ({args.samples})")
    started = time.perf_counter()
    study = args.workdir.resolve() / "study"
    simulate(study, args.samples, args.seed)
    sheet = pl.read_csv(study / "samples.tsv", separator="\t", infer_schema_length=0)
    sample_ids = sheet["sample_id"].to_list()
    files = dict(zip(sample_ids, sheet["file"].to_list(), strict=True))
    t0 = time.perf_counter()
    features = detect_all(study, sample_ids, files, args.jobs)
    detect_s = time.perf_counter() - t0
    truth = pl.read_csv(study / "ground_truth.tsv", separator="\t", infer_schema_length=None)
    result = {"benchmark": "cohort_linking", "machine": machine_record(), "samples": args.samples,
              "seed": args.seed, "common_runs": sample_ids[:COMMON], "detect_s": round(detect_s, 1), "cohorts": {}}
    for k in sorted(args.sizes):
        folder = args.workdir.resolve() / f"link_{k}"
        seconds = link(study, sample_ids[:k], features, folder)
        result["cohorts"][str(k)] = {"link_s": round(seconds, 1)} | score(study, folder, sample_ids[:COMMON],
                                                                           features, truth)
        print(k, json.dumps(result["cohorts"][str(k)]["common_runs"]), flush=True)
    result["seconds"] = round(time.perf_counter() - started, 1)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
