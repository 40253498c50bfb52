"""Does the detectable change the report states hold for paired and covariate-adjusted designs? On simulated studies
with known truth (``ms2study.modelling.power.detectable_log2_fold_change``, the differential analysis of
``ms2study.modelling.differential``).

Each study: ``features`` log intensities per run with variances drawn from the prior limma assumes (scaled inverse
chi-square, 4 degrees of freedom around 0.3² in natural log units); feature 0 has the prior's median variance. Design
``paired``: 8 subjects measured before and after, a subject offset per feature (sd 1, which the pairing removes);
``covariate``: 8 + 8 samples and an age covariate (sd 10) that moves every feature (0.02 per year times a feature
slope); ``continuous``: 16 samples with a 0-10 score as the outcome, the stated change a slope (log2 per unit,
``detectable_log2_slope``) that feature 0 then follows; ``multiclass``: three diets of 6, 6 and 5 samples, the stated
change that of the smallest class against the others (``detectable_log2_class_shift``, the moderated F-test). The
stated change is computed from the study's own values and model; feature 0 is then raised by that change
(and by half of it) in the positive class (by the slope times the score), and the real test (moderated, ``permutations`` permutations,
Benjamini-Hochberg) is run: written per design, how many studies found it at q < 0.05 (power 0.8 is stated) and how
many at half the change, and the median stated change (log2). Usage:

  PYTHONPATH=workflow python benchmarks/detectable_change.py --out R.json [--studies 100] [--permutations 200]
      [--designs paired covariate continuous multiclass]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import machine_record

from ms2study.modelling import differential
from ms2study.modelling.power import detectable_log2_class_shift, detectable_log2_fold_change, detectable_log2_slope
from ms2study.modelling.subjects import SUBJECT_COLUMN


def study(design: str, seed: int, features: int) -> tuple[np.ndarray, np.ndarray, pl.DataFrame, dict, list[str]]:
    """(natural-log values features x runs, positive class per run, sheet, outcome spec, covariates)."""
    rng = np.random.default_rng(seed)
    if design == "paired":
        ids = [f"P{i}{t}" for i in range(8) for t in "ab"]
        positive = np.tile([False, True], 8)
        sheet = pl.DataFrame({"sample_id": ids, "time": np.where(positive, "after", "before").tolist(),
                              SUBJECT_COLUMN: [f"P{i}" for i in range(8) for _ in "ab"]})
        spec, covariates = {"column": "time", "type": "binary", "positive_class": "after"}, [SUBJECT_COLUMN]
        shared = rng.normal(0, 1.0, (features, 8)).repeat(2, axis=1)
    elif design == "multiclass":  # three unordered classes; the change is the smallest class's (the last)
        ids = [f"S{i:02d}" for i in range(17)]
        diet = np.repeat(["a", "b", "c"], (6, 6, 5))
        positive = diet == "c"
        sheet = pl.DataFrame({"sample_id": ids, "diet": diet.tolist()})
        spec, covariates = {"column": "diet", "type": "multiclass"}, []
        shared = np.zeros((features, 1))
    elif design == "continuous":  # the outcome itself a number: a 0-10 score, no covariate
        ids = [f"S{i:02d}" for i in range(16)]
        positive = np.round(rng.uniform(0, 10, 16), 1)  # the score (the column the change multiplies)
        sheet = pl.DataFrame({"sample_id": ids, "score": [f"{v:.1f}" for v in positive]})
        spec, covariates = {"column": "score", "type": "continuous"}, []
        shared = np.zeros((features, 1))
    else:
        ids = [f"S{i:02d}" for i in range(16)]
        positive, age = np.arange(16) < 8, rng.normal(50, 10, 16)
        sheet = pl.DataFrame({"sample_id": ids, "group": np.where(positive, "case", "control").tolist(), "age": age})
        spec, covariates = {"column": "group", "type": "binary", "positive_class": "case"}, ["age"]
        shared = rng.normal(0, 0.02, (features, 1)) * (age - 50)[None, :]
    sd = np.sqrt(4 * 0.3 ** 2 / rng.chisquare(4, features))
    sd[0] = np.sqrt(4 * 0.3 ** 2 / 3.357)  # the prior's median
    logs = rng.normal(12, 1.5, features)[:, None] + shared + rng.normal(0, 1, (features, len(ids))) * sd[:, None]
    return logs, positive, sheet, spec, covariates


def matrix(logs: np.ndarray, ids: list[str]) -> pl.DataFrame:
    return pl.DataFrame({"consensus_id": [f"C{j:03d}" for j in range(logs.shape[0])],
                         **{s: np.exp(logs[:, k]) for k, s in enumerate(ids)}})


def one_study(design: str, seed: int, features: int, permutations: int) -> tuple[float, bool, bool, tuple]:
    """(stated change in log2, found at it, found at half of it, the covariates' shape) of one simulated study."""
    logs, positive, sheet, spec, covariates = study(design, seed, features)
    ids = sheet["sample_id"].to_list()
    _, _, seen = differential.differential_with_values(matrix(logs, ids), sheet, spec, None, covariates,
                                                       "half_minimum", 0.5, "moderated", 0, seed)
    if design == "continuous":
        change = detectable_log2_slope(seen.values[1:], seen.y, features)
    elif design == "multiclass":
        change = detectable_log2_class_shift(seen.values[1:], seen.y, features)
    else:
        change = detectable_log2_fold_change(seen.values[1:], seen.y == 1, features, covariates=seen.covariates)
    hits = []
    for factor in (1.0, 0.5):
        shifted = logs.copy()
        shifted[0] += factor * change * np.log(2) * positive
        table, _ = differential.differential_analysis(matrix(shifted, ids), sheet, spec, None, covariates,
                                                      n_permutations=permutations, seed=seed)
        hits.append(bool(table.filter(pl.col("consensus_id") == "C000")["q_value"][0] < 0.05))
    return change, hits[0], hits[1], None if seen.covariates is None else seen.covariates.shape


def run(design: str, studies: int, permutations: int, features: int) -> dict:
    outcomes = [one_study(design, seed, features, permutations) for seed in range(studies)]
    return {"studies": studies, "found_at_stated": sum(o[1] for o in outcomes),
            "found_at_half": sum(o[2] for o in outcomes),
            "median_stated_log2": round(float(np.median([o[0] for o in outcomes])), 4)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--studies", type=int, default=100)
    parser.add_argument("--permutations", type=int, default=200)
    parser.add_argument("--features", type=int, default=600)
    parser.add_argument("--designs", nargs="+", default=["paired", "covariate", "continuous"],
                        choices=["paired", "covariate", "continuous", "multiclass"])
    args = parser.parse_args()
    started = time.time()
    result = {"design": {"studies": args.studies, "permutations": args.permutations, "features": args.features},
              **{design: run(design, args.studies, args.permutations, args.features)
                 for design in args.designs},
              "benchmark_wall_s": round(time.time() - started, 1), "machine": machine_record()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "machine"}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
