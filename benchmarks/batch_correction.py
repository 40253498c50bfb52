"""Benchmark: do the batch-study corrections (issue 13) hold on simulated batch studies with a known truth?

Two parts, both on studies from ``ms2study simulate`` with two batches, a pooled QC every 5 study samples, two
solvent blanks per batch, a per-batch intensity offset, a smooth per-compound drift with injection order, eluting
contaminants (present in blanks and samples alike), [M+Na]+/[M+NH4]+ adducts and in-source fragments:

1. Statistics over several seeds on the realistic profile built from its truth (``simulate_features``: ~2,800
   compounds' measured heights with technical noise and a detection limit, no mzML) and corrected by the pipeline's
   own code (``correction.matrix.correct_matrix`` with the config defaults, ``correction.adducts``): the median QC
   RSD before and after, the share of contaminant features flagged by the blank filter (and of compound features
   wrongly flagged), the share of planted adduct pairs grouped, and the planted outcome's cross-validated AUC
   interval on the corrected and on the raw matrix (``modelling.evaluate.model_outcome``, the models stage's code).
   False positives: the outcome permuted among the study samples (a) at random and (b) confounded with batch (75 %
   of batch 1 made cases, 25 % of batch 2), several times per seed. ``batch_only_false_positive_rate`` is the
   issue's measure: the share of (a) runs whose AUC interval excludes 0.5 on the corrected matrix.
   ``batch_confounded_false_positive_rate`` is the harder one, (b): any batch effect left after correction is then
   signal for the permuted outcome. Both are also given on the raw matrix.
2. Gap filling on mzML (the real pipeline: ``ms2study run`` up to the corrected matrix, so detect, link, the ``gapfill``
   job over every run and ``correct`` run as in a study): every filled cell of a consensus feature matched to a
   simulated compound ion (10 ppm, 15 s) is compared with what detection would have reported at that run's simulated
   abundance: the feature's detected intensities in the other runs scaled by the abundance ratio (median over them).
   ``gap_fill_median_rel_error`` is the median of |filled - expected| / expected. The same study gives
   ``adduct_pair_recall_mzml``: planted adduct pairs whose ions each match one consensus feature, grouped by the correct
   stage (the demo profile's compounds; on the realistic profile, where 30 % of compounds have a same-mass neighbour
   within 3 s, a helper measured 0.69, see benchmarks/README.md).

    PYTHONPATH=workflow python benchmarks/batch_correction.py --out result.json [--seeds 0 1 2] [--quick]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "workflow"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from machine import cpu_model  # noqa: E402

from ms2study import __version__  # noqa: E402
from ms2study.correction.matrix import correct_matrix  # noqa: E402
from ms2study.io.samplesheet import sample_roles  # noqa: E402
from ms2study.modelling import featuresets  # noqa: E402
from ms2study.modelling.evaluate import model_outcome  # noqa: E402
from ms2study.simulate import study as simulate  # noqa: E402
from ms2study.stages import models  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
BATCH = {"batches": 2, "qc_every": 5, "blanks": 2, "adducts": True}
OUTCOME = {"column": "group", "type": "binary", "positive_class": "case"}
# As benchmarks/biology.py: the models stage's bootstrap and repeats, no permutation test (the interval is judged).
MODEL_PARAMS = {"n_permutations": 0, "n_bootstrap": 1000, "outer_repeats": 5, "feature_sets": ["features"]}
ADDUCT_IONS = ("[M+Na]+", "[M+NH4]+")


def raw_matrix(known: simulate.KnownFeatures) -> pl.DataFrame:
    """The simulated features as the link stage's matrix: one row per feature, one column per run (null: missed)."""
    runs = known.samples["sample_id"].to_list()
    values = np.where(np.isfinite(known.intensity), known.intensity, np.nan)  # runs x features
    frame = pl.DataFrame({
        "consensus_id": known.features["feature_id"],
        "mz": known.features["mz"].cast(pl.Float64),
        "rt_s": known.features["rt_s"].cast(pl.Float64),
        "n_detected": pl.Series(np.isfinite(values).sum(axis=0).astype(np.int32)),
    })
    return frame.with_columns([pl.Series(r, values[i], dtype=pl.Float64).fill_nan(None) for i, r in enumerate(runs)])


def auc_interval(samples: pl.DataFrame, matrix: pl.DataFrame, sample_ids: list[str]) -> dict:
    """The outcome's AUC and 95 % interval from the feature-matrix set (nested CV, bootstrap)."""
    sets = {"features": featuresets.feature_matrix_feature_set(matrix, sample_ids)}
    params = models.merge_params(dict(MODEL_PARAMS))
    out = model_outcome(samples, sets, OUTCOME, params)
    entry = out["summary"]["feature_sets"]["features"]
    return {"auc": entry["value"], "ci": [entry["ci_low"], entry["ci_high"]],
            "excludes_chance": bool(entry["ci_low"] > 0.5 or entry["ci_high"] < 0.5)}


def permuted_labels(samples: pl.DataFrame, rng: np.random.Generator, confounded: bool) -> pl.DataFrame:
    """The sheet with ``group`` redrawn among study samples: at random, or 75 % cases in batch 1 and 25 % in 2."""
    is_sample = (samples["sample_type"] == "sample").to_numpy()
    batch = samples["batch"].to_numpy()
    groups = samples["group"].to_list()
    idx = np.flatnonzero(is_sample)
    if confounded:
        p_case = np.where(batch[idx] == "1", 0.75, 0.25)
        new = np.where(rng.random(idx.size) < p_case, "case", "control")
        if len(set(new)) < 2:
            new[:2] = ["case", "control"]
    else:
        new = rng.permutation(np.array([groups[i] for i in idx], dtype=object))
    for k, i in enumerate(idx):
        groups[i] = str(new[k])
    return samples.with_columns(pl.Series("group", groups, dtype=pl.Utf8))


def adduct_pairs(known: simulate.KnownFeatures, min_runs: int) -> list[tuple[str, str]]:
    """Planted (compound feature, adduct feature) pairs where both were detected in at least ``min_runs`` runs."""
    features = known.features
    detected = np.isfinite(known.intensity).sum(axis=0)
    ids = features["feature_id"].to_list()
    ions = features["ion"].to_list()
    compound = features["compound_id"].to_list()
    main = {compound[j]: j for j in range(len(ids)) if ions[j] in ("[M+H]+", "[M]+")}
    pairs = []
    for j in range(len(ids)):
        if ions[j] in ADDUCT_IONS and compound[j] in main:
            k = main[compound[j]]
            if detected[j] >= min_runs and detected[k] >= min_runs:
                pairs.append((ids[k], ids[j]))
    return pairs


def seed_run(seed: int, n_samples: int, n_permutations: int) -> dict:
    """One simulated batch study: the correction's statistics against its truth."""
    started = time.perf_counter()
    known = simulate.simulate_features(n_samples, seed=seed, params={
        **BATCH, "fold_change": 3.0, "n_changed": 20})
    samples = known.samples.with_columns(pl.col("age").cast(pl.Utf8))
    roles = sample_roles(samples)
    matrix = raw_matrix(known)
    corrected = correct_matrix(matrix, roles, params={}, gap_filled=None)
    report, cm = corrected.report, corrected.matrix
    study_ids = roles.filter(pl.col("sample_type") == "sample")["sample_id"].to_list()
    ion = known.features["ion"].to_numpy()
    flags = cm.select("consensus_id", "blank_flag", "excluded", "compound_group")
    flag_of = dict(zip(flags["consensus_id"], flags["blank_flag"], strict=True))
    group_of = dict(zip(flags["consensus_id"], flags["compound_group"], strict=True))
    ids = known.features["feature_id"].to_list()
    is_sample_run = (roles["sample_type"] == "sample").to_numpy()
    seen_in_samples = np.isfinite(known.intensity[is_sample_run]).any(axis=0)
    contaminants = [ids[j] for j in range(len(ids)) if ion[j] == "contaminant" and seen_in_samples[j]]
    compounds = [ids[j] for j in range(len(ids)) if ion[j] != "contaminant" and seen_in_samples[j]]
    pairs = adduct_pairs(known, min_runs=4)
    grouped = [group_of[a] == group_of[b] for a, b in pairs]
    kept = cm.filter(~pl.col("excluded"))
    row = {
        "seed": seed, "n_runs": roles.height, "n_study_samples": len(study_ids),
        "n_qc": int((roles["sample_type"] == "qc").sum()), "n_blank": int((roles["sample_type"] == "blank").sum()),
        "drift_method": report["drift_method"], "n_features": cm.height,
        "qc_rsd_median_before": report["qc_rsd_median_before"], "qc_rsd_median_after": report["qc_rsd_median_after"],
        "n_contaminant_features": len(contaminants),
        "blank_flag_recall": float(np.mean([flag_of[c] for c in contaminants])) if contaminants else None,
        "compound_features_blank_flagged": float(np.mean([flag_of[c] for c in compounds])) if compounds else None,
        "n_adduct_pairs": len(pairs), "adduct_pair_recall": float(np.mean(grouped)) if grouped else None,
        "effect": {"corrected": auc_interval(samples, kept, study_ids),
                   "raw": auc_interval(samples, matrix, study_ids)},
    }
    rng = np.random.default_rng(1000 + seed)
    null_runs = []
    for k in range(n_permutations):
        for confounded in (False, True):
            permuted = permuted_labels(samples, rng, confounded)
            null_runs.append({"permutation": k, "confounded_with_batch": confounded,
                              "corrected": auc_interval(permuted, kept, study_ids),
                              "raw": auc_interval(permuted, matrix, study_ids)})
    row["null_runs"] = null_runs
    row["seconds"] = round(time.perf_counter() - started, 1)
    logging.info("seed %d: %s", seed, json.dumps({k: v for k, v in row.items() if k != "null_runs"}))
    return row


def gap_fill_check(seed: int, n_samples: int, cores: int) -> dict:
    """Gap filling on a simulated mzML batch study run through the real workflow (detect, link, gapfill, correct)."""
    with tempfile.TemporaryDirectory(prefix="ms2study-batch-") as tmp:
        study = Path(tmp) / "study"
        simulate.simulate_study(study, n_samples=n_samples, seed=seed, params=dict(BATCH))
        env = dict(os.environ, PYTHONPATH=str(REPO / "workflow"))
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "ms2study", "run", str(study), "--cores", str(cores),
                        "results/study/feature_matrix_corrected.parquet"], check=True, env=env,
                       capture_output=True, text=True)
        seconds = time.perf_counter() - started
        matrix = pl.read_parquet(study / "results" / "study" / "feature_matrix.parquet")
        corrected = pl.read_parquet(study / "results" / "study" / "feature_matrix_corrected.parquet")
        filled = pl.concat([pl.read_parquet(p) for p in sorted((study / "results" / "study" / "gap_filled").glob(
            "*.parquet"))], how="diagonal_relaxed")
        truth = pl.read_csv(study / "ground_truth.tsv", separator="\t", infer_schema_length=None)
        ions = pl.read_csv(study / "adduct_truth.tsv", separator="\t", infer_schema_length=None)
    # The ions of the study (compound ions with their ratio to the compound's abundance), matched to consensus features.
    ion_mz, ion_rt = ions["mz"].to_numpy(), ions["rt_s"].to_numpy()
    ion_compound, ion_ratio = ions["compound_id"].to_list(), ions["ratio"].to_numpy()
    abundance = {(r["sample_id"], r["compound_id"]): r["abundance"] for r in
                 truth.select("sample_id", "compound_id", "abundance").iter_rows(named=True)}
    runs = [c for c in matrix.columns if c not in ("consensus_id", "mz", "rt_s", "n_detected")]
    values = {r["consensus_id"]: r for r in matrix.iter_rows(named=True)}
    errors = []
    for row in filled.filter(pl.col("intensity").is_not_null()).iter_rows(named=True):
        feature = values[row["consensus_id"]]
        ppm = np.abs(ion_mz - feature["mz"]) / feature["mz"] * 1e6
        near = np.flatnonzero((ppm <= 10.0) & (np.abs(ion_rt - feature["rt_s"]) <= 15.0))
        if near.size != 1:
            continue  # unmatched or ambiguous features are not judged
        k = int(near[0])
        compound, ratio = ion_compound[k], ion_ratio[k]
        target = abundance.get((row["sample_id"], compound), 0.0) * ratio
        scaled = [feature[r] * target / (abundance.get((r, compound), 0.0) * ratio) for r in runs
                  if feature[r] is not None and abundance.get((r, compound), 0.0) > 0]
        if target <= 0 or not scaled:
            continue
        expected = float(np.median(scaled))
        errors.append(abs(row["intensity"] - expected) / expected)
    pairs = mzml_adduct_pairs(matrix, corrected, ions)
    return {"seed": seed, "n_study_samples": n_samples, "n_filled": int(filled["intensity"].is_not_null().sum()),
            "n_adduct_pairs": len(pairs),
            "adduct_pair_recall": float(np.mean(pairs)) if pairs else None,
            "n_gap_cells": filled.height, "n_judged": len(errors),
            "gap_fill_median_rel_error": float(np.median(errors)) if errors else None,
            "gap_fill_rel_error_p90": float(np.quantile(errors, 0.9)) if errors else None,
            "workflow_seconds": round(seconds, 1)}


def mzml_adduct_pairs(matrix: pl.DataFrame, corrected: pl.DataFrame, ions: pl.DataFrame) -> list[bool]:
    """Per planted ([M+H]+, [M+Na]+ or [M+NH4]+) pair whose two ions each match exactly one consensus feature (10 ppm,
    15 s) detected in at least 4 runs: whether the correct stage put them in one compound group."""
    detected = matrix["n_detected"].to_numpy()
    mz, rt = matrix["mz"].to_numpy(), matrix["rt_s"].to_numpy()
    ids = matrix["consensus_id"].to_list()
    group_of = dict(zip(corrected["consensus_id"], corrected["compound_group"], strict=True))

    def feature(ion_mz: float, ion_rt: float) -> str | None:
        near = np.flatnonzero((np.abs(mz - ion_mz) / ion_mz * 1e6 <= 10.0) & (np.abs(rt - ion_rt) <= 15.0))
        return ids[int(near[0])] if near.size == 1 and detected[near[0]] >= 4 else None

    found: list[bool] = []
    for (compound,), rows in ions.group_by(["compound_id"], maintain_order=True):
        by_ion = {r["ion"]: feature(r["mz"], r["rt_s"]) for r in rows.iter_rows(named=True)}
        main = by_ion.get("[M+H]+") or by_ion.get("[M]+")
        for ion in ADDUCT_IONS:
            other = by_ion.get(ion)
            if main and other and main != other:
                found.append(group_of.get(main) == group_of.get(other))
    return found


def _share(runs: list[dict], confounded: bool, matrix: str) -> float | None:
    chosen = [r[matrix]["excludes_chance"] for r in runs if r["confounded_with_batch"] == confounded]
    return float(np.mean(chosen)) if chosen else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--samples", type=int, default=40, help="study samples per simulated study (QCs extra)")
    parser.add_argument("--permutations", type=int, default=4, help="permuted outcomes per seed and kind")
    parser.add_argument("--gap-fill-samples", type=int, default=10, help="study samples of the mzML study")
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="one seed, 2 permutations, 6-sample mzML study")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if args.quick:
        args.seeds, args.permutations, args.gap_fill_samples = args.seeds[:1], 2, 6
    started = time.perf_counter()
    rows = [seed_run(s, args.samples, args.permutations) for s in args.seeds]
    gap = gap_fill_check(args.seeds[0], args.gap_fill_samples, args.cores)
    nulls = [r for row in rows for r in row["null_runs"]]

    def median(key: str) -> float | None:
        values = [row[key] for row in rows if row[key] is not None]
        return float(np.median(values)) if values else None

    result = {
        "benchmark": "batch_correction", "ms2study_version": __version__,
        "hardware": {"cpu": cpu_model(), "logical_cpus": os.cpu_count(), "python": platform.python_version()},
        "design": {**BATCH, "study_samples": args.samples, "seeds": args.seeds, "fold_change": 3.0,
                   "n_changed": 20, "profile": "realistic (simulate_features)", "model": MODEL_PARAMS},
        "qc_rsd_median_before": median("qc_rsd_median_before"),
        "qc_rsd_median_after": median("qc_rsd_median_after"),
        "blank_flag_recall": median("blank_flag_recall"),
        "compound_features_blank_flagged": median("compound_features_blank_flagged"),
        "adduct_pair_recall": median("adduct_pair_recall"),
        "adduct_pair_recall_mzml": gap["adduct_pair_recall"],
        "gap_fill_median_rel_error": gap["gap_fill_median_rel_error"],
        "effect_auc_ci_low": min(row["effect"]["corrected"]["ci"][0] for row in rows),
        "effect_auc_ci_low_raw": min(row["effect"]["raw"]["ci"][0] for row in rows),
        "batch_only_false_positive_rate": _share(nulls, False, "corrected"),
        "batch_only_false_positive_rate_raw": _share(nulls, False, "raw"),
        "batch_confounded_false_positive_rate": _share(nulls, True, "corrected"),
        "batch_confounded_false_positive_rate_raw": _share(nulls, True, "raw"),
        "n_null_runs": len(nulls),
        "targets": {},
        "per_seed": rows,
        "gap_fill": gap,
        "seconds": round(time.perf_counter() - started, 1),
    }
    t = result["targets"]
    t["qc_rsd_halved"] = bool(result["qc_rsd_median_after"] is not None and result["qc_rsd_median_before"]
                              and result["qc_rsd_median_after"] <= 0.5 * result["qc_rsd_median_before"])
    t["effect_found_every_seed"] = bool(result["effect_auc_ci_low"] > 0.5)
    t["no_batch_only_false_positive"] = result["batch_only_false_positive_rate"] == 0.0
    t["no_batch_confounded_false_positive"] = result["batch_confounded_false_positive_rate"] == 0.0
    t["blank_flag_recall_ge_0.95"] = bool((result["blank_flag_recall"] or 0) >= 0.95)
    t["gap_fill_within_30pct"] = bool(result["gap_fill_median_rel_error"] is not None
                                      and result["gap_fill_median_rel_error"] <= 0.30)
    t["adduct_pair_recall_ge_0.9"] = bool((result["adduct_pair_recall"] or 0) >= 0.9)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k not in ("per_seed", "gap_fill")}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
