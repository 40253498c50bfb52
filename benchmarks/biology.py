"""Benchmark: which sample-level feature set finds a sparse biological effect, and how often does one "find" noise?

Studies come from the realistic simulation profile (``ms2study simulate --profile realistic``: ~2,800 compounds of
which 270 are curated library compounds, measured intensity distribution and variation, a planted effect on
``n_changed`` compounds of one class). For every setting of the grid (samples x fold change x changed compounds)
one study with the effect and one null study (same design, ``n_changed`` 0, its own seed) are simulated.

Shortcut (documented in ``ms2study.simulate.study.simulate_features``): running detect/spectra/link on 2 x 24 studies of
16-40 mzML files is too slow on 2 cores, so each study's features are built from the simulation's truth: measured
heights with technical noise, a detection limit and DDA fragmentation calibrated on the mzML simulation through the
detect stage, MS/MS with the same noise model, cleaned as the spectra stage cleans them. Everything after that is
the pipeline's own code: spectra are embedded with the shipped encoder (``ms2study.encoder.inference``), pooled per
sample (``ms2study.modelling.pooling.pool_sample``, abundance share) and summarised per chemical region
(``modelling.chemistry.chemistry_sample`` over prototypes learned once on the simulated library's embeddings, with
the pipeline's ``pool.prototypes`` k and seed; ``--prototypes`` overrides k), the
feature sets are built by ``ms2study.modelling.featuresets`` (``feature_matrix_feature_set``,
``binned_spectra_feature_set``, ...) and modelled by ``modelling.evaluate.model_outcome`` (nested CV, bootstrap
interval), exactly as the models stage does.

Reported per setting and feature set: AUC (mean over outer repeats) with its 95 % interval; per null study whether
the interval excludes 0.5 (a false positive). Usage:
  PYTHONPATH=workflow python benchmarks/biology.py --out result.json [--quick] [--estimators elastic_net linear]
  PYTHONPATH=workflow python benchmarks/biology.py --measure-real --out real.json   # the real-data numbers
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "workflow"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from batch_correction import raw_matrix  # noqa: E402
from machine import cpu_model  # noqa: E402

from ms2study.core.cleaning import clean_peaks  # noqa: E402
from ms2study.correction.matrix import correct_matrix  # noqa: E402
from ms2study.encoder.inference import embed_spectra  # noqa: E402
from ms2study.io.samplesheet import sample_roles  # noqa: E402
from ms2study.modelling import chemistry as chemical_space  # noqa: E402
from ms2study.modelling import featuresets, pooling  # noqa: E402
from ms2study.modelling.evaluate import model_outcome  # noqa: E402
from ms2study.simulate import study as simulate  # noqa: E402
from ms2study.stages import models  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
FEATURE_SETS = ["embedding", "chemical_space", "features", "binned_spectra"]
EMBEDDING_SETS = ("embedding", "chemical_space")
OUTCOME = {"column": "group", "type": "binary", "positive_class": "case"}
GRID = {"n_samples": [16, 40], "fold_change": [1.5, 2.0, 3.0, 4.0], "n_changed": [5, 12, 30]}
QUICK_GRID = {"n_samples": [16], "fold_change": [3.0], "n_changed": [12]}
# The prototypes (k, k-means seed) as a pipeline run learns them: pool.prototypes of config/config.yaml, whose values
# are pooling.DEFAULT_PARAMS (tests/test_config_schema.py keeps the two equal), so the sweep measures what ships.
PROTOTYPES = pooling.DEFAULT_PARAMS["prototypes"]
# Bootstrap and repeats as the models stage defaults; no permutation test (only the interval is judged here).
MODEL_PARAMS = {"n_permutations": 0, "n_bootstrap": 1000, "outer_repeats": 5}


def library_embeddings(embed_params: dict | None = None) -> pl.DataFrame:
    """The simulated library embedded: the curated compounds' reference spectra, cleaned like the library index
    cleans them and embedded with the shipped encoder. Columns compound_id, chemical_class, embedding (null for a
    spectrum left empty by cleaning), model_id."""
    p = simulate.merge_params(None, "realistic")
    reference = simulate.build_compounds(simulate.load_compounds(), p)
    cleaned = [clean_peaks(c.spectrum_mz, c.spectrum_intensity * 1000.0, c.mz) for c in reference]
    frame = pl.DataFrame({
        "spectrum_id": [c.compound_id for c in reference], "sample_id": ["library"] * len(reference),
        "feature_id": [c.compound_id for c in reference], "precursor_mz": [c.mz for c in reference],
        "mz": [m.tolist() for m, _ in cleaned], "intensity": [i.tolist() for _, i in cleaned],
    }, schema_overrides={"mz": pl.List(pl.Float64), "intensity": pl.List(pl.Float32)})
    emb = embed_spectra(frame, embed_params)
    return pl.DataFrame({"compound_id": [c.compound_id for c in reference],
                         "chemical_class": [c.chemical_class for c in reference]}).with_columns(
        emb["embedding"], emb["model_id"])


def library_prototypes(seed: int, k: int, embed_params: dict | None = None,
                       library: pl.DataFrame | None = None) -> chemical_space.Prototypes:
    """Prototypes learned on the simulated library's embeddings (``library_embeddings``, or ``library`` when given:
    the pipeline's ``prototypes`` source ``library``). They depend on no study sample, so one set serves every
    study."""
    emb = library_embeddings(embed_params) if library is None else library
    matrix = np.array([e for e in emb["embedding"].to_list() if e is not None], dtype=np.float64)
    return chemical_space.learn_prototypes(matrix, k=k, seed=seed, model_id=emb["model_id"][0],
                                           source="simulated library")


def corrected(known: simulate.KnownFeatures) -> simulate.KnownFeatures:
    """``known`` with its intensities as the pipeline's ``correct`` stage leaves them (``correct_matrix`` with the
    config's defaults). These studies have no QC and no blank, so that is probabilistic quotient normalisation of
    every run (drift_method auto falls back to median normalisation), which removes the per-sample factor
    (``sample_factor_log_sd``); the models, the pooled embeddings and the bags of chemistry of a pipeline run all
    read the corrected intensities (``correct.use_corrected``, rules pool_corrected and chemistry). Features the
    correction flags as excluded become missing, as ``correct.exclude_flagged`` leaves them out."""
    runs = known.samples["sample_id"].to_list()
    matrix = raw_matrix(known)
    done = correct_matrix(matrix, sample_roles(known.samples.with_columns(pl.col("age").cast(pl.Utf8))), {}, None)
    table = done.matrix.with_columns([pl.when(pl.col("excluded")).then(None).otherwise(pl.col(r)).alias(r)
                                      for r in runs])
    by_id = dict(zip(table["consensus_id"].to_list(), range(table.height), strict=True))
    order = [by_id[f] for f in known.features["feature_id"].to_list()]
    values = table.select([pl.col(r).cast(pl.Float64) for r in runs]).to_numpy()[order].T  # runs x features
    return replace(known, intensity=np.where(np.isfinite(values), values, np.nan))


def feature_sets(known: simulate.KnownFeatures, prototypes: chemical_space.Prototypes,
                 embed_params: dict | None = None, pool_params: dict | None = None) -> dict[str, pl.DataFrame]:
    """The four feature sets of a study built from its known features (see the module docstring); the intensities
    are corrected first (``corrected``), as a pipeline run corrects them."""
    known = corrected(known)
    ids = known.samples["sample_id"].to_list()
    unique = known.spectra.unique("spectrum_key", keep="first", maintain_order=True)
    emb = embed_spectra(unique.with_columns(pl.col("spectrum_key").alias("spectrum_id")), embed_params)
    by_key = emb.select(pl.col("spectrum_id").alias("spectrum_key"), "embedding", "model_id")
    embeddings = known.spectra.select("spectrum_id", "sample_id", "feature_id", "spectrum_key").join(
        by_key, on="spectrum_key", how="left", maintain_order="left")
    pooled, chemistry = [], []
    for sample in ids:
        e = embeddings.filter(pl.col("sample_id") == sample)
        sp = known.spectra.filter(pl.col("sample_id") == sample)
        features = known.features_table(sample)
        pooled.append(pooling.pool_sample(e, sp, sample, pool_params, features=features))
        chemistry.append(chemical_space.chemistry_sample(e, sp, sample, prototypes, pool_params, features=features))
    matrix = pl.DataFrame({"consensus_id": known.features["feature_id"], "mz": known.features["mz"],
                           "rt_s": known.features["rt_s"],
                           **{s: known.intensity[i] for i, s in enumerate(ids)}}).with_columns(
        [pl.col(s).fill_nan(None) for s in ids])
    return {
        "embedding": featuresets.embedding_feature_set(pl.concat(pooled, how="diagonal_relaxed")),
        "chemical_space": featuresets.chemical_space_feature_set(pl.concat(chemistry)),
        "features": featuresets.feature_matrix_feature_set(matrix, ids),
        "binned_spectra": featuresets.binned_spectra_feature_set(known.spectra, ids),
    }


def evaluate(known: simulate.KnownFeatures, sets: dict[str, pl.DataFrame], estimator_params: dict) -> dict:
    """AUC, interval and interval-excludes-0.5 per feature set (``modelling.evaluate.model_outcome``)."""
    params = models.merge_params({**MODEL_PARAMS, **estimator_params, "feature_sets": list(sets)})
    out = model_outcome(known.samples.with_columns(pl.col("age").cast(pl.Utf8)), sets, OUTCOME, params)
    result = {}
    for name, entry in out["summary"]["feature_sets"].items():
        result[name] = {"auc": entry["value"], "ci": [entry["ci_low"], entry["ci_high"]],
                        "excludes_chance": bool(entry["ci_low"] > 0.5 or entry["ci_high"] < 0.5),
                        "above_chance": bool(entry["ci_low"] > 0.5), "n_features": entry["n_features"],
                        "seconds": entry["seconds"]}
    return result


def study_seed(n_samples: int, fold_change: float, n_changed: int, replicate: int, null: bool) -> int:
    """A distinct, reproducible seed per study of the sweep."""
    return int(1_000_003 * null + 10_007 * replicate + 1009 * n_samples + 101 * int(10 * fold_change) + n_changed)


def run_study(n_samples: int, fold_change: float, n_changed: int, replicate: int, null: bool,
              prototypes: chemical_space.Prototypes, estimators: list[str | dict]) -> dict:
    """Simulate one study (``null``: no effect), build its feature sets and model them with each estimator."""
    seed = study_seed(n_samples, fold_change, n_changed, replicate, null)
    started = time.perf_counter()
    known = simulate.simulate_features(n_samples, seed=seed, params={
        "fold_change": fold_change, "n_changed": 0 if null else n_changed})
    sets = feature_sets(known, prototypes)
    built = time.perf_counter() - started
    row = {"n_samples": n_samples, "fold_change": fold_change, "n_changed": n_changed, "replicate": replicate,
           "null": null, "seed": seed, "planted_class": known.summary["planted_class"],
           "n_features": known.features.height, "n_spectra": known.spectra.height,
           "build_seconds": round(built, 1), "estimators": {}}
    for estimator in estimators:
        # a name: that estimator with the models stage's defaults; "linear": L2 on all features, as before issue 12
        params = {"estimator": estimator, **({"univariate_top_k": None} if estimator == "linear" else {})}
        row["estimators"][estimator] = evaluate(known, sets, params)
    row["seconds"] = round(time.perf_counter() - started, 1)
    return row


def summarize(rows: list[dict]) -> dict:
    """Per estimator: the AUC table (effect studies, mean over replicates), the power (share of effect studies
    whose interval lies above 0.5), the false-positive rate on null studies (interval excludes 0.5), the best set
    and best embedding-based set of each setting, and the smallest detected fold change per sample size."""
    out: dict = {}
    estimators = sorted({e for r in rows for e in r["estimators"]})
    for estimator in estimators:
        effect = [r for r in rows if not r["null"] and estimator in r["estimators"]]
        null = [r for r in rows if r["null"] and estimator in r["estimators"]]
        table = []
        for key in sorted({(r["n_samples"], r["n_changed"], r["fold_change"]) for r in effect}):
            group = [r for r in effect if (r["n_samples"], r["n_changed"], r["fold_change"]) == key]
            entry = {"n_samples": key[0], "n_changed": key[1], "fold_change": key[2], "n_studies": len(group)}
            for name in FEATURE_SETS:
                results = [r["estimators"][estimator].get(name) for r in group]
                results = [x for x in results if x and x["auc"] is not None]
                if results:
                    entry[name] = {"auc": round(float(np.mean([x["auc"] for x in results])), 3),
                                   "ci": results[0]["ci"] if len(results) == 1 else None,
                                   "above_chance": round(float(np.mean([x["above_chance"] for x in results])), 2)}
            present = [n for n in FEATURE_SETS if n in entry]
            entry["best"] = max(present, key=lambda n: entry[n]["auc"]) if present else None
            emb = [n for n in present if n in EMBEDDING_SETS]
            entry["best_embedding"] = max(emb, key=lambda n: entry[n]["auc"]) if emb else None
            table.append(entry)
        fp = {name: [r["estimators"][estimator][name]["excludes_chance"] for r in null
                     if name in r["estimators"][estimator]] for name in FEATURE_SETS}
        all_fp = [v for values in fp.values() for v in values]
        smallest = {}
        for n in sorted({e["n_samples"] for e in table}):
            for name in FEATURE_SETS:
                for m in sorted({e["n_changed"] for e in table}):
                    hits = [e["fold_change"] for e in table if e["n_samples"] == n and e["n_changed"] == m
                            and name in e and e[name]["above_chance"] >= 0.5]
                    smallest.setdefault(str(n), {}).setdefault(name, {})[str(m)] = min(hits) if hits else None
        out[estimator] = {
            "table": table,
            "null_false_positive_rate": {name: (round(float(np.mean(v)), 3) if v else None) for name, v in fp.items()},
            "null_false_positive_rate_all": round(float(np.mean(all_fp)), 3) if all_fp else None,
            "null_settings": len(null),
            "null_auc_mean": {name: round(float(np.mean([r["estimators"][estimator][name]["auc"] for r in null
                                                          if name in r["estimators"][estimator]])), 3)
                              for name in FEATURE_SETS if null},
            "smallest_detected_fold_change": smallest,
        }
    return out


def targets(summary: dict, rows: list[dict], estimator: str) -> dict:
    """The issue's targets on the 16-sample, 12-compound, 3x setting (all its replicates) and on the nulls."""
    group = [r for r in rows if not r["null"] and r["n_samples"] == 16 and r["n_changed"] == 12
             and r["fold_change"] == 3.0 and estimator in r["estimators"]]
    if not group:
        return {}
    per_study = []
    for r in group:
        res = r["estimators"][estimator]
        best = max(res, key=lambda n: res[n]["auc"])
        emb = max((n for n in res if n in EMBEDDING_SETS), key=lambda n: res[n]["auc"])
        per_study.append({"seed": r["seed"], "best": best, "auc": res[best]["auc"], "ci": res[best]["ci"],
                          "best_embedding": emb, "embedding_auc": res[emb]["auc"], "embedding_ci": res[emb]["ci"]})
    met = [s["auc"] >= 0.9 and s["ci"][0] > 0.5 for s in per_study]
    fpr = summary[estimator]["null_false_positive_rate_all"]
    return {"setting": "16 samples (8 cases), 12 compounds 3x higher", "studies": per_study,
            "best_auc_ge_0.9_and_interval_above_0.5": f"{sum(met)} of {len(met)}",
            "mean_best_auc": round(float(np.mean([s["auc"] for s in per_study])), 3),
            "mean_best_embedding_auc": round(float(np.mean([s["embedding_auc"] for s in per_study])), 3),
            "null_false_positive_rate": fpr, "null_target_met": fpr is not None and fpr <= 0.05}


def run_statistics(path: Path) -> dict:
    """Statistics of one DDA run: MS1/MS2 rates, smallest centroids, MS2 peak counts, precursor MS1 intensity and
    purity (share of the isolation window's MS1 intensity, isotopes of the precursor excluded), and the features of
    the detect stage (count per minute, heights, share with MS/MS via the spectra stage)."""
    import pyopenms as oms

    from ms2study.stages.detect import detect_features
    from ms2study.stages.spectra import extract_spectra

    exp = oms.MSExperiment()
    oms.MzMLFile().load(str(path), exp)
    ms1 = [s for s in exp if s.getMSLevel() == 1]
    ms2 = [s for s in exp if s.getMSLevel() == 2]
    minutes = (ms1[-1].getRT() - ms1[0].getRT()) / 60.0
    rts = np.array([s.getRT() for s in ms1])
    purity, precursor = [], []
    for s in ms2:
        pr = s.getPrecursors()[0]
        mz = pr.getMZ()
        lo, hi = pr.getIsolationWindowLowerOffset() or 0.5, pr.getIsolationWindowUpperOffset() or 0.5
        m, i = ms1[max(int(np.searchsorted(rts, s.getRT())) - 1, 0)].get_peaks()
        window = (m >= mz - lo) & (m <= mz + hi)
        isotope = np.zeros_like(window)
        for d in (1.0033548, 2.0067097):
            isotope |= np.abs(m - (mz + d)) <= 10e-6 * mz
        target = float(i[np.abs(m - mz) <= 10e-6 * mz].sum())
        total = float(i[window & ~isotope].sum())
        if total > 0:
            purity.append(target / total)
            precursor.append(target)
    features = detect_features(str(path), "run")
    spectra = extract_spectra(str(path), features, "run")
    height = features["height"].to_numpy()
    precursor = np.array(precursor)

    def q(values, qs):
        return [round(float(v), 2) for v in np.quantile(values, qs)]

    return {
        "ms1_scans_per_min": round(len(ms1) / minutes, 1), "ms2_scans_per_min": round(len(ms2) / minutes, 1),
        "ms1_min_peak_q05_50_95": q([s.get_peaks()[1].min() for s in ms1], [0.05, 0.5, 0.95]),
        "ms2_min_peak_q05_50_95": q([s.get_peaks()[1].min() for s in ms2 if s.size()], [0.05, 0.5, 0.95]),
        "ms2_peaks_q05_50_95": q([s.size() for s in ms2], [0.05, 0.5, 0.95]),
        "ms2_peaks_cleaned_q10_50_90": q(spectra["mz"].list.len().to_numpy(), [0.1, 0.5, 0.9]),
        "ms2_tic_log10_median": round(float(np.log10(np.median([s.get_peaks()[1].sum() for s in ms2]))), 2),
        "precursor_ms1_log10_q01_50_95": q(np.log10(precursor[precursor > 0]), [0.01, 0.5, 0.95]),
        "precursor_purity_below_0.8": round(float(np.mean(np.array(purity) < 0.8)), 3),
        "precursor_purity_below_0.5": round(float(np.mean(np.array(purity) < 0.5)), 3),
        "features_per_min": round(features.height / minutes, 1),
        "feature_height_log10_q01_50_99": q(np.log10(height), [0.01, 0.5, 0.99]),
        "feature_height_ln_sd": round(float(np.log(height).std()), 2),
        "feature_intensity_ln_sd": round(float(np.log(features["intensity"].to_numpy()).std()), 2),
        "features_with_ms2": round(spectra["feature_id"].drop_nulls().n_unique() / max(features.height, 1), 3),
        "ms2_mapped_to_features": round(float(spectra["feature_id"].is_not_null().mean()), 3),
    }


def measure_real(shared: Path = SHARED) -> dict:
    """The real-data statistics the realistic profile is built on (module docstring of ms2study.simulate.study), and the
    same statistics of one realistic simulated run for comparison: the two QC injections (``run_statistics``; the
    technical variation and peak widths from MZmine's aligned list of the pair) and the outcome tables
    (per-compound sd of ln abundance, per-sample factor, first principal component's share, correlation, missing
    share). Raises FileNotFoundError when ../shared/data is absent."""
    import tempfile
    import warnings

    from ms2study.io.samplesheet import read_sample_sheet
    from ms2study.io.sampletable import read_sample_table

    runs = {name: run_statistics(shared / "mzml" / name)
            for name in ("171103_PMA_TK_QC_04-4to5min.mzML", "171103_PMA_TK_QC_05-4to5min.mzML")}
    with tempfile.TemporaryDirectory() as tmp:
        simulate.simulate_study(Path(tmp), n_samples=2, seed=1, profile="realistic")
        simulated = run_statistics(Path(tmp) / "mzml" / "S01.mzML")
    mzmine = pl.read_csv(shared / "mzml" / "171103_PMA_TK_QC_expected_mzmine_features.csv", infer_schema_length=10000)
    a, b = (mzmine[f"datafile:171103_PMA_TK_QC_0{k}-4to5min.mzML:height"].cast(pl.Float64).to_numpy() for k in (4, 5))
    ok = (a > 0) & (b > 0)
    fwhm = mzmine["datafile:171103_PMA_TK_QC_04-4to5min.mzML:fwhm"].cast(pl.Float64).drop_nulls().to_numpy() * 60
    technical = {"mzmine_features": mzmine.height,
                 "per_injection_ln_sd": round(float(np.log(a[ok] / b[ok]).std() / np.sqrt(2)), 3),
                 "fwhm_s_q10_50_90": [round(float(v), 2) for v in np.quantile(fwhm, [0.1, 0.5, 0.9])],
                 "with_fragment_scans": round(float((mzmine["fragment_scans"].cast(pl.Float64).fill_null(0) > 0)
                                                    .mean()), 3)}
    tables = {}
    sources = {"sacurine": ("sacurine/sacurine_dataMatrix.tsv", "sacurine/sacurine_sampleMetadata.tsv", None),
               "st000291": ("st000291/features.csv", "st000291/metadata.csv", "ID"),
               "mtbls2": ("mtbls2/a_mtbl2_metabolite_profiling_mass_spectrometry_maf.csv", "mtbls2/s_MTBL2.txt",
                          "Sample Name")}
    for name, (table, sheet, id_column) in sources.items():
        samples = read_sample_sheet(shared / "outcomes" / sheet, id_column, any_format=True)
        frame, _, _ = read_sample_table(shared / "outcomes" / table, samples["sample_id"].to_list())
        values = frame.drop("sample_id").to_numpy().astype(np.float64)
        if name == "sacurine":
            values = values * np.log(10.0)  # the table holds log10 intensities
        missing = float(np.isnan(values).mean())
        values = values[:, np.isfinite(values).sum(axis=0) >= 3]  # sd and correlation need a few values
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            sd = np.nanstd(values, axis=0, ddof=1)
            centred = values - np.nanmean(values, axis=0)
            factor = np.nanmedian(centred, axis=1)
            filled = np.where(np.isnan(centred), 0.0, centred)
            singular = np.linalg.svd(filled / np.where(sd > 0, sd, 1.0), compute_uv=False)
            corr = np.corrcoef(filled.T)
        upper = corr[np.triu_indices_from(corr, 1)]
        tables[name] = {"samples": values.shape[0], "features": values.shape[1],
                        "missing": round(missing, 3),
                        "feature_ln_sd_q10_50_90": [round(float(v), 2) for v in np.nanquantile(sd, [0.1, 0.5, 0.9])],
                        "sample_factor_ln_sd": round(float(np.std(factor)), 2),
                        "pc1_variance_share": round(float(singular[0] ** 2 / (singular ** 2).sum()), 3),
                        "median_abs_correlation": round(float(np.nanmedian(np.abs(upper))), 2)}
    return {"qc_runs": runs, "simulated_realistic_run": simulated, "qc_technical": technical,
            "outcome_tables": tables}


def markdown(result: dict, estimator: str = "elastic_net") -> str:
    """The README table of a result: AUC per feature set and setting (interval-above-0.5 share in brackets when
    several studies), the nulls' false-positive rate and the issue's targets."""
    summary = result["summary"][estimator]
    names = {"embedding": "pooled embedding", "chemical_space": "bag of chemistry", "features": "feature matrix",
             "binned_spectra": "binned spectra"}
    lines = ["| samples | changed | fold | " + " | ".join(names[n] for n in FEATURE_SETS) + " | best |",
             "|---:|---:|---:|" + "---:|" * len(FEATURE_SETS) + "---|"]
    for e in summary["table"]:
        cells = []
        for n in FEATURE_SETS:
            if n not in e:
                cells.append("")
                continue
            mark = "**" if e[n]["above_chance"] >= 0.5 else ""
            share = f" ({e[n]['above_chance']:.2f})" if e["n_studies"] > 1 else ""
            cells.append(f"{mark}{e[n]['auc']:.2f}{mark}{share}")
        lines.append(f"| {e['n_samples']} | {e['n_changed']} | {e['fold_change']:g} | " + " | ".join(cells)
                     + f" | {names.get(e['best'], '')} |")
    fp = summary["null_false_positive_rate"]
    lines.append("")
    lines.append(f"Null studies ({summary['null_settings']}, one per setting): interval excludes 0.5 in "
                 f"{summary['null_false_positive_rate_all']:.1%} of set x study pairs ("
                 + ", ".join(f"{names[n]} {fp[n]:.2f}" for n in FEATURE_SETS if fp.get(n) is not None)
                 + "); mean null AUC " + ", ".join(f"{names[n]} {v:.2f}" for n, v in summary["null_auc_mean"].items())
                 + ".")
    return "\n".join(lines)


def detectable_effects(result: dict, estimator: str = "elastic_net", source: str = "") -> dict:
    """The sweep condensed for the report (``modelling.power``): per sample size and number of changed compounds,
    the smallest fold change at which some feature set's interval lay above 0.5 in at least half of that setting's
    studies, and which set (the first in FEATURE_SETS order among ties)."""
    smallest = result["summary"][estimator]["smallest_detected_fold_change"]
    table: dict[str, dict] = {}
    for n, per_set in smallest.items():
        for changed in sorted({m for values in per_set.values() for m in values}, key=int):
            found = [(per_set[name][changed], name) for name in FEATURE_SETS
                     if per_set.get(name, {}).get(changed) is not None]
            fold, name = min(found, key=lambda x: x[0]) if found else (None, None)
            table.setdefault(n, {})[changed] = {"fold_change": fold, "feature_set": name}
    return {"source": source or "benchmarks/biology.py", "estimator": estimator,
            "criterion": "95 % AUC interval above 0.5 in at least half of the setting's studies",
            "fold_changes": result["design"]["grid"]["fold_change"],
            "null_false_positive_rate": result["summary"][estimator]["null_false_positive_rate_all"],
            "by_n_samples": table}


def arguments() -> argparse.ArgumentParser:
    """The command line of the sweep (``main``)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, type=Path, help="result JSON (rewritten after every study)")
    parser.add_argument("--quick", action="store_true", help="only the 16-sample, 12-compound, 3x setting")
    parser.add_argument("--replicates", type=int, default=1, help="studies per setting (effect and null each)")
    parser.add_argument("--target-replicates", type=int, default=3,
                        help="studies of the issue's target setting (16 samples, 12 compounds, 3x)")
    parser.add_argument("--estimators", nargs="+", default=["elastic_net"],
                        help="models: estimator values to run on every study (default: the models stage's default)")
    parser.add_argument("--compare", nargs="*", default=["linear"],
                        help="estimators also run on the target setting's studies (linear: L2 on all features)")
    parser.add_argument("--prototypes", type=int, default=PROTOTYPES["k"],
                        help="k of the library prototypes (default: the pipeline's pool.prototypes.k)")
    parser.add_argument("--samples", nargs="+", type=int, default=None, help="restrict the sample sizes")
    parser.add_argument("--measure-real", action="store_true", help="only measure the real data (../shared/data)")
    parser.add_argument("--markdown", type=Path, default=None, help="print the README table of a result JSON")
    parser.add_argument("--resource", type=Path, default=None,
                        help="with --from: write the report's detectable-effect table "
                             "(resources/detectable_effects.json)")
    parser.add_argument("--from", dest="from_result", type=Path, default=None, help="a result JSON to condense")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = arguments()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if args.markdown:
        print(markdown(json.loads(args.markdown.read_text()), args.estimators[0]))
        return 0
    if args.resource:
        if not args.from_result:
            parser.error("--resource needs --from RESULT.json")
        condensed = detectable_effects(json.loads(args.from_result.read_text()), args.estimators[0],
                                       f"benchmarks/biology.py, {args.from_result.name}")
        args.resource.write_text(json.dumps(condensed, indent=2) + "\n")
        return 0
    if args.measure_real:
        args.out.write_text(json.dumps(measure_real(), indent=2) + "\n")
        return 0
    # the real-data numbers behind the realistic profile travel with the result (when ../shared/data is there)
    real = measure_real() if (SHARED / "mzml").is_dir() and (SHARED / "outcomes").is_dir() else None
    grid = QUICK_GRID if args.quick else GRID
    sizes = args.samples or grid["n_samples"]
    started = time.perf_counter()
    prototypes = library_prototypes(int(PROTOTYPES["seed"]), args.prototypes)
    plan = []
    for n in sizes:
        for m in grid["n_changed"]:
            for f in grid["fold_change"]:
                reps = max(args.replicates, args.target_replicates if (n, m, f) == (16, 12, 3.0) else 0)
                for r in range(reps):
                    plan += [(n, f, m, r, False), (n, f, m, r, True)]
    rows: list[dict] = []
    for i, (n, f, m, r, null) in enumerate(plan):
        extra = args.compare if (n, m, f) == (16, 12, 3.0) else []
        rows.append(run_study(n, f, m, r, null, prototypes, [*args.estimators, *extra]))
        row = rows[-1]
        print(f"[{i + 1}/{len(plan)}] n={n} fold={f} changed={m} rep={r} null={null}: "
              + "; ".join(f"{e} " + ", ".join(f"{k} {v['auc']:.2f}" for k, v in res.items())
                          for e, res in row["estimators"].items()) + f" ({row['seconds']} s)", flush=True)
        summary = summarize(rows)
        result = {
            "benchmark": "biology", "machine": {"cpu": cpu_model(), "python": platform.python_version()},
            "design": {"grid": {**grid, "n_samples": sizes}, "replicates": args.replicates,
                       "target_replicates": args.target_replicates, "estimators": args.estimators,
                       "compared_on_target": args.compare,
                       "prototypes": {"k": args.prototypes, "seed": int(PROTOTYPES["seed"]),
                                      "learned_on": "simulated library (270 curated compounds)",
                                      "id": prototypes.prototypes_id},
                       "model_params": MODEL_PARAMS, "feature_sets": FEATURE_SETS,
                       "studies_done": len(rows), "studies_planned": len(plan),
                       "shortcut": "features built from the simulation's truth "
                                   "(ms2study.simulate.study.simulate_features);"
                                   " embedding, pooling and models are the pipeline's own code"},
            "summary": summary,
            "targets": {e: targets(summary, rows, e) for e in [*args.estimators, *args.compare]},
            "seconds": round(time.perf_counter() - started, 1),
            "real_data": real,
            "studies": rows,
        }
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
