"""Probe: why the bag of chemistry (``chemical_space``) misses ``biology.py``'s sparse effect (issue 12).

On the sweep's target setting (16 samples, 8 cases, 12 library compounds of one class 3x higher; the same studies as
``biology.py``: ``study_seed(16, 3.0, 12, replicate, null)``) it measures, per prototype set (k, k-means seed) and
assignment (hard / soft):

- the bag's AUC (``biology.evaluate``: the models stage's nested CV, elastic net) on the effect and null studies;
- where the planted compounds land: how many prototype regions they fall into, how many other features share those
  regions per sample, the planted compounds' share of the region's abundance (median over controls), each planted
  region's Welch t (cases vs controls) against the largest |t| of the other regions;
- a decomposition with oracle columns that no pipeline has (they know which compounds are planted): the planted
  compounds' summed abundance over every sample that detects them (MS1), the same counting a compound only where it
  was fragmented in that sample (what a per-sample bag can see), the summed totals of the planted regions, and a
  "consensus" bag that places every MS1-detected feature of a sample by its mean embedding over all samples (what a
  bag built on linked features would see; it is not per-sample, so adding a sample would change earlier bags).

The bag's values are the pipeline's (``biology.feature_sets``' path: ``corrected`` intensities, shipped encoder,
``chemistry.chemistry_sample``); the diagnosis recomputes the region totals from the same per-feature grouping
(``pooling.per_feature_means``) and checks that they equal the bag. Studies are cached as pickles under ``--cache``
(each takes ~20-70 s to build and embed). Usage:
  PYTHONPATH=workflow python benchmarks/chemical_space_probe.py --out probe.json [--replicates 3]
      [--ks 32 64 128 256] [--prototype-seeds 0 1 2] [--assignments hard soft] [--no-decomposition]
"""

from __future__ import annotations

import argparse
import json
import pickle
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "workflow"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import biology  # noqa: E402

from ms2study.encoder.inference import embed_spectra  # noqa: E402
from ms2study.modelling import chemistry, featuresets, pooling  # noqa: E402
from ms2study.simulate import study as simulate  # noqa: E402

TARGET = {"n_samples": 16, "fold_change": 3.0, "n_changed": 12}


def build_study(replicate: int, null: bool, cache: Path | None = None) -> dict:
    """One study of the target setting: ``known`` (as simulated), ``corrected`` (``biology.corrected``) and the
    spectrum ``embeddings`` (one row per spectrum, embedded once per spectrum_key), cached under ``cache``."""
    seed = biology.study_seed(TARGET["n_samples"], TARGET["fold_change"], TARGET["n_changed"], replicate, null)
    path = cache / f"study_{seed}.pkl" if cache else None
    if path and path.exists():
        with path.open("rb") as handle:
            return {"seed": seed, "null": null, **pickle.load(handle)}
    known = simulate.simulate_features(TARGET["n_samples"], seed=seed, params={
        "fold_change": TARGET["fold_change"], "n_changed": 0 if null else TARGET["n_changed"]})
    unique = known.spectra.unique("spectrum_key", keep="first", maintain_order=True)
    emb = embed_spectra(unique.with_columns(pl.col("spectrum_key").alias("spectrum_id")), None)
    by_key = emb.select(pl.col("spectrum_id").alias("spectrum_key"), "embedding", "model_id")
    embeddings = known.spectra.select("spectrum_id", "sample_id", "feature_id", "spectrum_key").join(
        by_key, on="spectrum_key", how="left", maintain_order="left")
    built = {"known": known, "corrected": biology.corrected(known), "embeddings": embeddings}
    if path:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as handle:
            pickle.dump(built, handle)
    return {"seed": seed, "null": null, **built}


def region_dilution(weights: np.ndarray, abundance: np.ndarray, planted: np.ndarray) -> dict[str, np.ndarray]:
    """Per prototype region of one sample: ``total`` abundance, the ``planted`` features' abundance, the number of
    features (``n_features``) and of planted ones (``n_planted``), membership-weighted. ``weights`` (features x k)
    as ``chemistry.assign_prototypes`` returns them, ``abundance`` (features,; NaN and negatives count 0, as in
    ``chemistry_sample``), ``planted`` a boolean mask over the features."""
    abundance = np.clip(np.nan_to_num(np.asarray(abundance, dtype=np.float64)), 0.0, None)
    planted = np.asarray(planted, dtype=bool)
    return {"total": weights.T @ abundance, "planted": weights.T @ (abundance * planted),
            "n_features": weights.sum(axis=0), "n_planted": weights[planted].sum(axis=0)}


def welch_t(matrix: np.ndarray, case: np.ndarray) -> np.ndarray:
    """Welch t (cases minus controls) per column of ``matrix`` (samples x columns), NaN values left out; NaN
    where a group has fewer than 2 values or both have no spread."""
    out = np.full(matrix.shape[1], np.nan)
    for j in range(matrix.shape[1]):
        a, b = matrix[case, j], matrix[~case, j]
        a, b = a[np.isfinite(a)], b[np.isfinite(b)]
        if len(a) > 1 and len(b) > 1:
            se = np.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b))
            out[j] = (a.mean() - b.mean()) / se if se > 0 else np.nan
    return out


def sample_bags(st: dict, prototypes: chemistry.Prototypes, pool_params: dict) -> tuple[pl.DataFrame, list[dict]]:
    """The study's ``chemical_space`` feature set as the pipeline makes it, and per sample the region dilution
    (``region_dilution``) recomputed from the same per-feature grouping; raises AssertionError if they differ."""
    known, emb = st["corrected"], st["embeddings"]
    planted_ids = set(known.features.filter(pl.col("changed"))["feature_id"].to_list())
    p = pooling.merge_params(pool_params)
    rows, regions = [], []
    for sample in known.samples["sample_id"].to_list():
        e = emb.filter(pl.col("sample_id") == sample)
        sp = known.spectra.filter(pl.col("sample_id") == sample)
        features = known.features_table(sample)
        rows.append(chemistry.chemistry_sample(e, sp, sample, prototypes, pool_params, features=features))
        usable = e.join(sp.select("spectrum_id", pl.col("precursor_intensity").cast(pl.Float64)), on="spectrum_id",
                        how="left").filter(pl.col("embedding").is_not_null() & pl.col("feature_id").is_not_null())
        matrix = np.stack(usable["embedding"].to_list()).astype(np.float64)
        means, abundance, _ = pooling.per_feature_means(usable, matrix, "feature_intensity", features, sample)
        ids = np.unique(usable["feature_id"].to_numpy().astype(str))  # per_feature_means' order
        weights = chemistry.assign_prototypes(means, prototypes, p["chemistry"]["assignment"],
                                              float(p["chemistry"]["temperature"]))
        regions.append(region_dilution(weights, abundance, np.array([f in planted_ids for f in ids])))
    bag = pl.concat(rows)
    values = np.array([[np.nan if v is None else v for v in row] for row in bag["abundance"].to_list()])
    mine = np.array([np.where(r["n_features"] > 0, np.log1p(r["total"]), np.nan) for r in regions])
    assert np.allclose(values, mine, equal_nan=True, rtol=1e-5), "diagnosis does not reproduce chemistry_sample"
    return featuresets.chemical_space_feature_set(bag), regions


def diagnose(st: dict, bag: pl.DataFrame, regions: list[dict]) -> dict:
    """Where the planted compounds land and what their regions show (see the module docstring)."""
    case = (st["corrected"].samples["group"] == "case").to_numpy()
    n_planted = np.array([r["n_planted"] for r in regions])            # samples x k
    hit = np.flatnonzero(n_planted.sum(axis=0) > 0)
    t = welch_t(bag.drop("sample_id").to_numpy().astype(np.float64), case)
    others = np.setdiff1d(np.flatnonzero(np.isfinite(t)), hit)
    share = np.array([r["planted"] / np.maximum(r["total"], 1e-12) for r in regions])
    n_features = np.array([r["n_features"] for r in regions])
    return {
        "n_regions_hit": int(hit.size),
        "planted_with_msms_per_sample": round(float(n_planted.sum(axis=1).mean()), 2),
        "planted_regions": [{"region": int(r), "planted_per_sample": round(float(n_planted[:, r].mean()), 2),
                             "features_per_sample": round(float(n_features[:, r].mean()), 1),
                             "planted_share_controls": round(float(np.median(share[~case, r])), 4),
                             "t": None if np.isnan(t[r]) else round(float(t[r]), 2)} for r in hit],
        "max_abs_t_other_regions": round(float(np.nanmax(np.abs(t[others]))), 2) if others.size else None,
        "median_features_per_region": round(float(np.median(n_features.mean(axis=0))), 1),
    }


def auc(st: dict, frame: pl.DataFrame) -> dict:
    """AUC, interval and its verdicts of one feature set on the study (``biology.evaluate``, elastic net), modelled
    under the name ``chemical_space``: the models stage's settings for that set apply (``imputation``
    half_minimum with the detection filter; at k >= 64 some regions are empty in some samples)."""
    res = biology.evaluate(st["known"], {"chemical_space": frame}, {"estimator": "elastic_net"})["chemical_space"]
    return {"auc": round(float(res["auc"]), 3), "ci": [round(float(x), 3) for x in res["ci"]],
            "above_chance": res["above_chance"], "excludes_chance": res["excludes_chance"]}


def consensus_bag(st: dict, prototypes: chemistry.Prototypes) -> pl.DataFrame:
    """Every MS1-detected feature of a sample, placed by the mean of its embeddings over all samples (features
    fragmented in no sample left out), summed per region as ``chemistry_sample`` sums (hard assignment)."""
    known = st["corrected"]
    emb = st["embeddings"].filter(pl.col("embedding").is_not_null()).group_by("feature_id").agg(pl.col("embedding"))
    means = {f: np.mean(np.array(x, dtype=np.float64), axis=0)
             for f, x in zip(emb["feature_id"].to_list(), emb["embedding"].to_list(), strict=True)}
    ids = known.features["feature_id"].to_list()
    columns = [j for j, f in enumerate(ids) if f in means]
    weights = chemistry.assign_prototypes(np.array([means[ids[j]] for j in columns]), prototypes)
    values = known.intensity[:, columns]
    totals = np.nan_to_num(values) @ weights
    covered = np.isfinite(values).astype(float) @ weights > 0
    matrix = np.where(covered, np.log1p(totals), np.nan)
    return pl.DataFrame({"sample_id": known.samples["sample_id"],
                         **{f"proto_{r}": pl.Series(matrix[:, r]).fill_nan(None) for r in range(matrix.shape[1])}})


def decomposition(st: dict, bag: pl.DataFrame, planted_regions: list[int], prototypes: chemistry.Prototypes) -> dict:
    """Oracle columns (module docstring): from the planted compounds' own abundance to the bag."""
    known = st["corrected"]
    ids = known.samples["sample_id"]
    planted = known.features["changed"].to_numpy()
    sample_index = {s: i for i, s in enumerate(ids.to_list())}
    feature_index = {f: j for j, f in enumerate(known.features["feature_id"].to_list())}
    fragmented = np.zeros(known.intensity.shape, dtype=bool)
    for s, f in zip(known.spectra["sample_id"].to_list(), known.spectra["feature_id"].to_list(), strict=True):
        fragmented[sample_index[s], feature_index[f]] = True
    values = np.nan_to_num(known.intensity)
    regions = bag.select([f"proto_{r}" for r in planted_regions]).to_numpy().astype(np.float64)
    return {
        "planted_sum_ms1": auc(st, pl.DataFrame({"sample_id": ids, "x": np.log1p(values[:, planted].sum(1))})),
        "planted_sum_msms_only": auc(st, pl.DataFrame({
            "sample_id": ids, "x": np.log1p(np.where(fragmented, values, 0.0)[:, planted].sum(1))})),
        "planted_regions_summed": auc(st, pl.DataFrame({
            "sample_id": ids, "x": np.log(np.nansum(np.expm1(regions), axis=1))})),
        "planted_regions_only": auc(st, bag.select("sample_id", *[f"proto_{r}" for r in planted_regions])),
        "consensus_bag": auc(st, consensus_bag(st, prototypes)),
        "planted_msms_share": {
            "cases": round(float(fragmented[case_mask(known)][:, planted].mean()), 3),
            "controls": round(float(fragmented[~case_mask(known)][:, planted].mean()), 3)},
        "msms_given_detected_all": round(float(fragmented.sum() / np.isfinite(known.intensity).sum()), 3),
    }


def case_mask(known: simulate.KnownFeatures) -> np.ndarray:
    return (known.samples["group"] == "case").to_numpy()


def summarize(rows: list[dict]) -> list[dict]:
    """Per (k, assignment): mean AUC of the effect and null studies over studies and prototype seeds, how many
    effect studies' intervals lie above 0.5 and how many null intervals exclude it."""
    out = []
    for key in sorted({(r["k"], r["assignment"]) for r in rows}):
        group = [r for r in rows if (r["k"], r["assignment"]) == key]
        effect = [r["bag"] for r in group if not r["null"]]
        null = [r["bag"] for r in group if r["null"]]
        out.append({"k": key[0], "assignment": key[1], "evaluations": len(group),
                    "effect_auc_mean": round(float(np.mean([x["auc"] for x in effect])), 3) if effect else None,
                    "null_auc_mean": round(float(np.mean([x["auc"] for x in null])), 3) if null else None,
                    "effect_above_chance": sum(x["above_chance"] for x in effect),
                    "null_excludes_chance": sum(x["excludes_chance"] for x in null)})
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--replicates", type=int, default=3, help="effect and null studies of the target setting")
    parser.add_argument("--ks", type=int, nargs="+", default=[32, 64, 128, 256])
    parser.add_argument("--prototype-seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--assignments", nargs="+", default=["hard", "soft"])
    parser.add_argument("--no-decomposition", action="store_true", help="skip the oracle columns")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/chem"), help="study pickles")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    library = biology.library_embeddings()
    studies = [(r, null) for r in range(args.replicates) for null in (False, True)]
    rows: list[dict] = []
    for k in args.ks:
        for pseed in args.prototype_seeds:
            prototypes = biology.library_prototypes(pseed, k, library=library)
            for replicate, null in studies:
                st = build_study(replicate, null, args.cache)
                for assignment in args.assignments:
                    bag, regions = sample_bags(st, prototypes, {"chemistry": {"assignment": assignment}})
                    row = {"k": k, "prototype_seed": pseed, "assignment": assignment, "replicate": replicate,
                           "null": null, "seed": st["seed"], "bag": auc(st, bag)}
                    if not null:
                        row["diagnosis"] = diagnose(st, bag, regions)
                        if not args.no_decomposition and assignment == "hard" and pseed == args.prototype_seeds[0]:
                            hit = [r["region"] for r in row["diagnosis"]["planted_regions"]]
                            row["decomposition"] = decomposition(st, bag, hit, prototypes)
                    rows.append(row)
                    print(json.dumps({x: row[x] for x in ("k", "prototype_seed", "assignment", "seed", "bag")}),
                          flush=True)
            result = {"benchmark": "chemical_space_probe", "setting": TARGET, "replicates": args.replicates,
                      "library_compounds": library.height, "summary": summarize(rows),
                      "seconds": round(time.perf_counter() - started, 1), "rows": rows}
            args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
