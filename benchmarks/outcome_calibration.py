"""Do the p- and q-values of multiclass and continuous outcomes hold on real data, with and without covariates?

(Binary outcomes: ``differential_calibration.py``.)

A multiclass outcome (three or more groups) is tested per feature as the F of its class indicators in a linear model
(``modelling.differential``): the moderated F (limma) with permutation p-values for features measured in every
sample, the ordinary F (one-way ANOVA; ANCOVA beside covariates) with permutation p-values pooled within fill
strata for features with filled values. Until session 21 it was one-way ANOVA with the F distribution's p-values
for every feature, and covariates were not adjusted for.

Real studies (``../shared/data/outcomes``: sacurine, 109 metabolites x 183 urine samples; ST000291, 1,541 LC-MS
features x 45 urine samples), prepared as ``differential_calibration.py`` prepares them (PQN, then the differential
stage itself). Per draw, 3 x n random samples in three groups:

- null: the groups are a random split; the share of features at p < 0.05 (about 0.05 expected) and whether any
  feature has q < 0.05 (BH holds this near 0.05 under the complete null);
- spike-in: ``n_spiked`` random features x ``fold`` in the third group; the share of them at q < 0.05 and the
  false-discovery proportion among the others;

for three arms: ``moderated`` (the default), ``ordinary`` (``differential: test: welch``: the ordinary F, its
filled features' p from permutations) and ``anova_fdist`` (the ordinary F with the F distribution's p-values for
every feature: the test before session 21).

Covariates (``--covariates``; sacurine with its samples' ages): confounded splits, the groups the terciles of age
plus noise (so they differ in age and in nothing else about the metabolites): per arm (unadjusted, adjusted for age)
the features' share at p < 0.05, whether any q < 0.05, the classes' share at p < 0.05 and whether any class
q < 0.05 (``class_enrichment`` with 1,000 permutations), and with ``n_spiked`` features x 2 in the third group the
share of them found and the false-discovery proportion.

Continuous outcomes (``--continuous``): never measured before session 21. Per draw, N random samples and an outcome
unrelated to them (sacurine: the ages of N other random samples; ST000291: N(50, 15^2)); the test is the slope of a
linear model (moderated for features measured in every sample, permutation p-values): per arm (``moderated``,
``ordinary`` = ``test: welch``, ``ols_tdist`` = no permutations at all) the null shares as above, the class
enrichment's (sacurine: classes at p < 0.05, any class q < 0.05) and the study-wide shift's p < 0.05
(``global_shift``); spike-in: ``n_spiked`` features x ``fold`` per outcome sd (log-linear), recall and FDP.

Usage: python benchmarks/outcome_calibration.py --out result.json [--draws 100] [--sizes 4 6 8]
       [--covariates] [--covariate-draws 100] [--covariate-sizes 10 20]
       [--continuous] [--continuous-draws 100] [--continuous-sizes 12 24 48] [--multiclass-off]
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
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "workflow"))

from differential_calibration import (  # noqa: E402
    DEFAULT_DATA,
    as_study,
    load_studies,
    median_normalise,
    sacurine_ages,
    sacurine_classes,
)
from ms2study.modelling.differential import differential_with_values  # noqa: E402
from ms2study.modelling.enrichment import class_enrichment, global_shift  # noqa: E402

MULTICLASS = {"column": "group", "type": "multiclass"}
ARMS = {"moderated": ("moderated", None), "ordinary": ("welch", None), "anova_fdist": ("welch", 0)}
GROUPS = np.array(["a", "b", "c"])


def split(raw: np.ndarray, labels: np.ndarray, spiked: np.ndarray, fold: float) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(matrix, sheet) of one draw: the ``spiked`` features x ``fold`` in group c, PQN, the sheet's group column."""
    x = raw.copy()
    x[np.ix_(spiked, labels == "c")] *= fold
    x = median_normalise(np.where(x > 0, x, np.nan), np.ones(x.shape[1], dtype=bool))[0]
    frame, sheet = as_study(x, np.zeros(x.shape[1], dtype=bool))
    return frame, sheet.with_columns(group=pl.Series(labels.tolist()))


def scored(table: pl.DataFrame, spiked: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(p, q, truth) of the tested features in the matrix's row order."""
    tested = table.filter(pl.col("tested")).sort("consensus_id")
    rows = np.array([int(c[1:]) for c in tested["consensus_id"]])
    return tested["p_value"].to_numpy(), tested["q_value"].to_numpy(), spiked[rows]


def record(out: dict, arm: str, scenario: str, p: np.ndarray, q: np.ndarray, truth: np.ndarray,
           spike: str = "") -> None:
    """Null scenario: ``{arm}_null_p05`` and ``{arm}_null_any_q05``; spike-in: ``{arm}_{spike}recall`` and
    ``{arm}_{spike}fdp`` at q < 0.05."""
    if scenario == "null":
        out[f"{arm}_null_p05"] = float(np.mean(p < 0.05))
        out[f"{arm}_null_any_q05"] = bool((q < 0.05).any())
    else:
        hit = q < 0.05
        out[f"{arm}_{spike}recall"] = float(hit[truth].mean()) if truth.any() else float("nan")
        out[f"{arm}_{spike}fdp"] = float((hit & ~truth).sum() / max(hit.sum(), 1))


def one_draw(matrix: np.ndarray, n: int, rng: np.random.Generator, n_spiked: int, fold: float,
             permutations: int) -> dict:
    cols = rng.choice(matrix.shape[1], 3 * n, replace=False)
    labels = np.repeat(GROUPS, n)
    out: dict = {}
    for scenario in ("null", "spike"):
        spiked = np.zeros(matrix.shape[0], dtype=bool)
        if scenario == "spike":
            spiked[rng.choice(matrix.shape[0], n_spiked, replace=False)] = True
        frame, sheet = split(matrix[:, cols], labels, spiked, fold)
        for arm, (test, arm_permutations) in ARMS.items():
            table, _, _ = differential_with_values(
                frame, sheet, MULTICLASS, test=test, seed=int(rng.integers(1 << 30)),
                n_permutations=permutations if arm_permutations is None else arm_permutations)
            record(out, arm, scenario, *scored(table, spiked))
    return out


def covariate_draw(matrix: np.ndarray, age: np.ndarray, classes: list[str | None], n: int,
                   rng: np.random.Generator, permutations: int, n_spiked: int, fold: float) -> dict:
    """One confounded split: 3 n random samples, grouped by the terciles of standardised age + N(0, 0.5^2)."""
    cols = rng.choice(matrix.shape[1], 3 * n, replace=False)
    a = age[cols]
    score = (a - a.mean()) / a.std() + 0.5 * rng.standard_normal(a.size)
    labels = np.empty(3 * n, dtype=object)
    labels[np.argsort(score)] = np.repeat(GROUPS, n)
    labels = labels.astype(str)
    out: dict = {"age_difference_years": float(a[labels == "c"].mean() - a[labels == "a"].mean())}
    names = pl.DataFrame({"consensus_id": [f"C{i:05d}" for i in range(len(classes))],
                          "name": [f"metabolite {i}" for i in range(len(classes))], "compound_class": classes})
    for scenario in ("null", "spike"):
        spiked = np.zeros(matrix.shape[0], dtype=bool)
        if scenario == "spike":
            spiked[rng.choice(matrix.shape[0], n_spiked, replace=False)] = True
        frame, sheet = split(matrix[:, cols], labels, spiked, fold)
        sheet = sheet.with_columns(age=pl.Series([f"{v:g}" for v in a]))
        for arm, covariates in (("unadjusted", ()), ("adjusted", ("age",))):
            table, _, values = differential_with_values(frame, sheet, MULTICLASS, covariates=covariates,
                                                        n_permutations=permutations,
                                                        seed=int(rng.integers(1 << 30)))
            record(out, arm, scenario, *scored(table, spiked), spike="spike_")
            if scenario == "null":
                table = table.drop("name", "compound_class").join(names, on="consensus_id", how="left")
                enrichment, _ = class_enrichment(table, values=values, n_permutations=1000,
                                                 seed=int(rng.integers(1 << 30)))
                out[f"{arm}_class_null_p05"] = float(np.mean(enrichment["p_value"].to_numpy() < 0.05))
                out[f"{arm}_class_null_any_q05"] = bool((enrichment["q_value"] < 0.05).any())
    return out


CONTINUOUS = {"column": "age", "type": "continuous"}
CONTINUOUS_ARMS = {"moderated": ("moderated", None), "ordinary": ("welch", None), "ols_tdist": ("welch", 0)}


def continuous_draw(matrix: np.ndarray, outcome_pool: np.ndarray | None, classes: list[str | None] | None, n: int,
                    rng: np.random.Generator, permutations: int, n_spiked: int, fold: float) -> dict:
    """One draw of ``n`` random samples with an outcome unrelated to them (module docstring)."""
    cols = rng.choice(matrix.shape[1], n, replace=False)
    x = (rng.choice(outcome_pool, n, replace=False) if outcome_pool is not None
         else rng.normal(50.0, 15.0, n))
    z = (x - x.mean()) / x.std()
    out: dict = {}
    for scenario in ("null", "spike"):
        raw = matrix[:, cols].copy()
        spiked = np.zeros(matrix.shape[0], dtype=bool)
        if scenario == "spike":
            spiked[rng.choice(matrix.shape[0], n_spiked, replace=False)] = True
            raw[spiked] *= fold ** z[None, :]
        y = median_normalise(np.where(raw > 0, raw, np.nan), np.ones(n, dtype=bool))[0]
        frame, sheet = as_study(y, np.zeros(n, dtype=bool))
        sheet = sheet.with_columns(age=pl.Series([f"{v:.4f}" for v in x]))
        for arm, (test, arm_permutations) in CONTINUOUS_ARMS.items():
            table, _, values = differential_with_values(
                frame, sheet, CONTINUOUS, test=test, seed=int(rng.integers(1 << 30)),
                n_permutations=permutations if arm_permutations is None else arm_permutations)
            record(out, arm, scenario, *scored(table, spiked))
            if scenario == "null" and arm == "moderated":  # the class and shift tests of the default
                shift = global_shift(values, table.filter(pl.col("tested"))["consensus_id"].to_list(), 1000,
                                     int(rng.integers(1 << 30)))
                out["shift_null_p05"] = bool(shift is not None and shift["p_value"] < 0.05)
                if classes is not None:
                    names = pl.DataFrame({"consensus_id": [f"C{i:05d}" for i in range(len(classes))],
                                          "name": [f"metabolite {i}" for i in range(len(classes))],
                                          "compound_class": classes})
                    named = table.drop("name", "compound_class").join(names, on="consensus_id", how="left")
                    enrichment, _ = class_enrichment(named, values=values, n_permutations=1000,
                                                     seed=int(rng.integers(1 << 30)))
                    out["class_null_p05"] = float(np.mean(enrichment["p_value"].to_numpy() < 0.05))
                    out["class_null_any_q05"] = bool((enrichment["q_value"] < 0.05).any())
    return out


def mean_of(rows: list[dict]) -> dict:
    return {k: round(float(np.nanmean([r[k] for r in rows])), 4) for k in rows[0]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--draws", type=int, default=100)
    ap.add_argument("--sizes", type=int, nargs="+", default=[4, 6, 8])
    ap.add_argument("--permutations", type=int, default=50, help="permutations per test (the product's: 200)")
    ap.add_argument("--n-spiked", type=int, default=15)
    ap.add_argument("--fold", type=float, default=3.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--covariates", action="store_true", help="the confounded-split part (sacurine with ages)")
    ap.add_argument("--covariate-draws", type=int, default=100)
    ap.add_argument("--covariate-sizes", type=int, nargs="+", default=[10, 20])
    ap.add_argument("--continuous", action="store_true", help="the continuous-outcome part")
    ap.add_argument("--continuous-draws", type=int, default=100)
    ap.add_argument("--continuous-sizes", type=int, nargs="+", default=[12, 24, 48])
    ap.add_argument("--multiclass-off", action="store_true", help="skip the multiclass parts")
    args = ap.parse_args()
    started = time.perf_counter()
    studies = load_studies(args.data)
    if not studies:
        raise SystemExit(f"no study tables under {args.data}/outcomes")
    result: dict = {"draws": args.draws, "permutations": args.permutations, "n_spiked": args.n_spiked,
                    "fold": args.fold, "seed": args.seed, "groups": 3, "studies": {}}
    for name, matrix in ({} if args.multiclass_off else studies).items():
        for n in args.sizes:
            rng = np.random.default_rng([args.seed, n, len(name), 3])
            rows = [one_draw(matrix, n, rng, args.n_spiked, args.fold, args.permutations) for _ in range(args.draws)]
            result["studies"][f"{name}_n{n}"] = mean_of(rows)
            print(name, n, json.dumps(result["studies"][f"{name}_n{n}"]), flush=True)
    if args.continuous:
        part = {"draws": args.continuous_draws, "n_spiked": args.n_spiked, "fold_per_sd": 2.0, "studies": {}}
        for name, matrix in studies.items():
            pool = sacurine_ages(args.data) if name == "sacurine" else None
            classes = sacurine_classes(args.data) if name == "sacurine" else None
            for n in args.continuous_sizes:
                if n > matrix.shape[1]:
                    continue
                rng = np.random.default_rng([args.seed, n, len(name), 5])
                rows = [continuous_draw(matrix, pool, classes, n, rng, args.permutations, args.n_spiked, 2.0)
                        for _ in range(args.continuous_draws)]
                part["studies"][f"{name}_n{n}"] = mean_of(rows)
                print("continuous", name, n, json.dumps(part["studies"][f"{name}_n{n}"]), flush=True)
        result["continuous"] = part
    if args.covariates and not args.multiclass_off and "sacurine" in studies:
        age, classes = sacurine_ages(args.data), sacurine_classes(args.data)
        part: dict = {"study": "sacurine", "draws": args.covariate_draws, "n_spiked": 10, "fold": 2.0,
                      "confounding": "groups: terciles of standardised age + 0.5 x N(0, 1) over 3 n random samples",
                      "sizes": {}}
        for n in args.covariate_sizes:
            rng = np.random.default_rng([args.seed, n, 13])
            rows = [covariate_draw(studies["sacurine"], age, classes, n, rng, args.permutations, 10, 2.0)
                    for _ in range(args.covariate_draws)]
            part["sizes"][f"n{n}"] = mean_of(rows)
            print("covariates", n, json.dumps(part["sizes"][f"n{n}"]), flush=True)
        result["covariates"] = part
    result["seconds"] = round(time.perf_counter() - started, 1)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
