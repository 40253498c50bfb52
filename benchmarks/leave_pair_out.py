"""Experiment behind benchmarks/README.md (Biology): does a leave-pair-out AUC with a pair bootstrap give a
calibrated interval on small realistic studies?

For each study (``biology.study_seed(16, 3.0, 12, replicate, null)``, the sweep's target setting and its nulls), the
feature matrix is modelled twice: by the models stage (``modelling.evaluate.model_outcome``: 5 x k-fold nested CV,
bootstrap interval) and by leave-pair-out (Airola et al. 2011, Comput Stat Data Anal 55:1828): every case-control
pair is held out once, the same nested elastic net (``crossval.fit_nested``) is fitted on the other samples and the
pair counts as correct when the case scores higher (ties 0.5); the interval is the 2.5-97.5 % range of the pairs'
mean under a stratified bootstrap of the samples (2,000 draws). A null study's interval that excludes 0.5 is a false
positive. Usage:
  PYTHONPATH=workflow python benchmarks/leave_pair_out.py --effect 0 1 2 --null $(seq 0 22) --out R.json
(about 10-60 s per study here.)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import polars as pl
from sklearn.exceptions import ConvergenceWarning
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "workflow"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import biology  # noqa: E402

from ms2study.modelling.crossval import fit_nested  # noqa: E402
from ms2study.modelling.estimators import predict_scores  # noqa: E402
from ms2study.modelling.evaluate import model_outcome  # noqa: E402
from ms2study.modelling.featuresets import align_rows, feature_matrix_feature_set  # noqa: E402
from ms2study.modelling.metrics import bootstrap_weights  # noqa: E402
from ms2study.simulate import study as simulate  # noqa: E402
from ms2study.stages import models  # noqa: E402


def pair_outcomes(X: np.ndarray, y: np.ndarray, params: dict, imputation: str) -> np.ndarray:
    """(n, n) matrix, [i, j] = 1 / 0.5 / 0 when case i scores above / equal to / below control j with the pair
    held out; NaN elsewhere."""
    pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    outcome = np.full((len(y), len(y)), np.nan)
    with warnings.catch_warnings(), threadpool_limits(limits=1):
        warnings.simplefilter("ignore", ConvergenceWarning)
        for a, i in enumerate(pos):
            for b, j in enumerate(neg):
                train = np.setdiff1d(np.arange(len(y)), [i, j])
                pre, model, _ = fit_nested(X[train], y[train], "binary", imputation, params,
                                           int(params["seed"]) + a * 100 + b)
                s = predict_scores(model, pre.transform(X[[i, j]]), "binary", 2)[:, 1]
                outcome[i, j] = 1.0 if s[0] > s[1] else (0.5 if s[0] == s[1] else 0.0)
    return outcome


def pair_interval(outcome: np.ndarray, y: np.ndarray, draws: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """Leave-pair-out AUC and its stratified-bootstrap 95 % interval."""
    pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    M = outcome[np.ix_(pos, neg)]
    boot = bootstrap_weights(y, "binary", draws, seed)
    wp, wn = boot[:, pos], boot[:, neg]
    auc = np.einsum("bi,ij,bj->b", wp, M, wn) / (wp.sum(1) * wn.sum(1))
    low, high = np.quantile(auc, [0.025, 0.975])
    return float(M.mean()), float(low), float(high)


def run(replicate: int, null: bool, n_samples: int = 16) -> dict:
    """One study of the target setting (or its null): both estimates with their intervals."""
    seed = biology.study_seed(n_samples, 3.0, 12, replicate, null)
    started = time.perf_counter()
    known = simulate.simulate_features(n_samples, seed=seed, params={"fold_change": 3.0, "n_changed": 0 if null else 12})
    ids = known.samples["sample_id"].to_list()
    matrix = pl.DataFrame({"consensus_id": known.features["feature_id"], "mz": known.features["mz"],
                           "rt_s": known.features["rt_s"], **{s: known.intensity[i] for i, s in enumerate(ids)}}
                          ).with_columns([pl.col(s).fill_nan(None) for s in ids])
    features = feature_matrix_feature_set(matrix, ids)
    params = models.merge_params({**biology.MODEL_PARAMS, "feature_sets": ["features"]})
    result = model_outcome(known.samples.with_columns(pl.col("age").cast(pl.Utf8)), {"features": features},
                           biology.OUTCOME, params)
    entry = result["summary"]["feature_sets"]["features"]
    y = (known.samples["group"] == "case").cast(pl.Int64).to_numpy()
    X, _, _ = align_rows(features, ids, "features")
    lpo = pair_interval(pair_outcomes(X, y, params, params["imputation"]["features"]), y)
    return {"null": null, "replicate": replicate, "seed": seed,
            "kfold": [entry["value"], entry["ci_low"], entry["ci_high"]], "leave_pair_out": list(lpo),
            "seconds": round(time.perf_counter() - started, 1)}


def summarize(rows: list[dict]) -> dict:
    """False-positive rate of each interval on the null studies, and the effect studies' estimates."""
    nulls = [r for r in rows if r["null"]]

    def fp(key: str) -> int:
        return sum(1 for r in nulls if r[key][1] > 0.5 or r[key][2] < 0.5)

    return {"n_null": len(nulls), "kfold_false_positives": fp("kfold"),
            "leave_pair_out_false_positives": fp("leave_pair_out"),
            "null_kfold_auc_sorted": sorted(round(r["kfold"][0], 3) for r in nulls),
            "effect": [{k: r[k] for k in ("replicate", "kfold", "leave_pair_out")} for r in rows if not r["null"]]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--effect", nargs="*", type=int, default=[0, 1, 2], help="replicates of the effect studies")
    parser.add_argument("--null", nargs="*", type=int, default=list(range(23)), help="replicates of the null studies")
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args(argv)
    rows = []
    for null, reps in ((False, args.effect), (True, args.null)):
        for r in reps:
            rows.append(run(r, null))
            print(json.dumps(rows[-1]), flush=True)
            args.out.write_text(json.dumps({"benchmark": "leave_pair_out", "summary": summarize(rows), "studies": rows},
                                           indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
