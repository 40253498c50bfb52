"""Experiment behind benchmarks/README.md (AUC interval): does the models stage's AUC interval (and that of its
balanced accuracy, and of MAE and R² for a continuous outcome) cover the value its models really reach, on small
studies where the truth is known?

Each study: n samples (half cases), ``N_FEATURES`` independent standard-normal features of which the first
``N_INFORMATIVE`` are shifted by delta in the cases, delta set so that the best possible (Bayes, linear) AUC is the
setting's ``bayes_auc`` = Phi(delta sqrt(N_INFORMATIVE) / sqrt(2)); 0.5 is the null. The models stage's own code
runs on it: ``crossval.cross_validate`` (the stage's default parameters, read from config/config.yaml's ``models:``
section through ``stages.models.merge_params``: elastic net, 5 x 5-fold outer CV, inner 3-fold), then
``metrics.bootstrap_weights`` and ``metrics.summarise_metric`` exactly as ``evaluate._evaluate_set`` calls them.

The target. Every outer-fold model the cross-validation fitted (outer_splits x outer_repeats of them, recorded as
``cross_validate`` fits them; nothing is refitted) scores a large independent test sample from the same
distribution (``TEST_PER_CLASS`` per class); its AUC there is that model's true AUC. The cross-validated value is a
mean of fold-wise AUCs, each an unbiased estimate of its fold model's true AUC, so its honest target is
- ``conditional``: the mean true AUC of this study's fold models (what the models fitted on these samples reach);
- ``expected``: the mean of ``conditional`` over the setting's studies, i.e. the expected AUC of the procedure at
  this n and effect (what the study size and effect let such a model reach; Bates, Hastie & Tibshirani 2023, JASA,
  show that cross-validation tracks this one better than the conditional one).
Coverage is reported against both. Per setting: coverage of the old interval (percentile bootstrap), of Newcombe's
score interval alone and of the new interval (their hull, what the stage now reports); the share of intervals
excluding 0.5 (on the null settings the false-positive rate, which must stay at or below 5 %); mean widths; and how
often the old interval was degenerate (zero width).

Balanced accuracy (the secondary metric of a binary outcome) is measured on the same studies the same way: each
fold model's true balanced accuracy is that of its class predictions (P(case) >= 0.5, as the stage thresholds) on
the test sample; old: the bootstrap interval, score: Wilson + MOVER (``balanced_accuracy_score_interval``), new:
their hull; chance is 0.5 here too.

MAE and R² (the metrics of a continuous outcome): studies of n samples whose outcome is the sum of the
``N_INFORMATIVE`` informative features times b plus standard-normal noise, b set so that the best possible (Bayes)
R² is the setting's ``bayes_r2`` (0: the null). Each fold model's true MAE is its mean absolute error on
2 x ``TEST_PER_CLASS`` test samples, its true R² 1 - (its mean squared error there) / (the test outcome's
variance); conditional and expected as above. Intervals: old (the percentile bootstrap), corrected_t (the corrected
resampled t interval on the log scale, ``metrics.corrected_t_interval``) and new (their hull, what the stage now
reports); coverage, widths and zero-width intervals as above, and for R² how often the low end lies above 0 (a claim
of signal; on the null the false positives). No chance line for MAE.

Usage:
  PYTHONPATH=workflow nice python benchmarks/auc_interval.py --out R.json [--studies 60] [--quick]
  PYTHONPATH=workflow nice python benchmarks/auc_interval.py --continuous-only --merge OLD.json --out R.json
      (the continuous settings only, the binary part kept from OLD.json, which may be R.json itself)
  python benchmarks/auc_interval.py --markdown R.json     (the tables of benchmarks/README.md)
(2,132 s for the 600 binary and 360 continuous studies of measured/auc_interval.json on 2 cores shared with other
work, load 4-8; 834 s for the binary ones alone on a quieter machine; 1,337 s for the continuous ones alone at load
11-13; --quick: 8 studies per setting, about 4 minutes.)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from statistics import NormalDist

import numpy as np
import yaml
from sklearn.metrics import balanced_accuracy_score, roc_auc_score

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "workflow"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from machine import machine_record  # noqa: E402

from ms2study.modelling import crossval  # noqa: E402
from ms2study.modelling.estimators import predict_scores  # noqa: E402
from ms2study.modelling.metrics import bootstrap_weights, summarise_metric  # noqa: E402
from ms2study.stages import models  # noqa: E402

N_FEATURES = 200
N_INFORMATIVE = 5
TEST_PER_CLASS = 2000
SIZES = (16, 40)
BAYES_AUC = (0.5, 0.75, 0.9, 0.98, 0.999)
BAYES_R2 = (0.0, 0.5, 0.9)
CONTINUOUS_INTERVALS = ("old", "corrected_t", "new")


def stage_params(overrides: dict | None = None) -> dict:
    """The models stage's parameters as config/config.yaml sets them (the pipeline's defaults), with ``overrides``;
    permutations off (they do not enter the interval)."""
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text(encoding="utf-8"))["models"]
    config = {k: v for k, v in config.items() if k != "outcomes"}
    return models.merge_params({**config, "n_permutations": 0, **(overrides or {})})


def shift(bayes_auc: float) -> float:
    """Mean shift per informative feature (in sd) giving a linear Bayes AUC of ``bayes_auc``."""
    return math.sqrt(2.0) * NormalDist().inv_cdf(bayes_auc) / math.sqrt(N_INFORMATIVE)


def draw(n_per_class: int, bayes_auc: float, rng: np.random.Generator,
         n_features: int = N_FEATURES) -> tuple[np.ndarray, np.ndarray]:
    """(X, y) with ``n_per_class`` samples per class in random order; cases (y = 1) shifted on the informative
    features."""
    y = rng.permutation(np.repeat([0, 1], n_per_class))
    X = rng.normal(size=(len(y), n_features))
    X[y == 1, :N_INFORMATIVE] += shift(bayes_auc)
    return X, y


def draw_continuous(n_samples: int, bayes_r2: float, rng: np.random.Generator,
                    n_features: int = N_FEATURES) -> tuple[np.ndarray, np.ndarray]:
    """(X, y) with y = b (sum of the informative features) + standard-normal noise, b giving a Bayes R² of
    ``bayes_r2`` (the signal's variance is N_INFORMATIVE b²)."""
    b = math.sqrt(bayes_r2 / (1.0 - bayes_r2) / N_INFORMATIVE)
    X = rng.normal(size=(n_samples, n_features))
    return X, b * X[:, :N_INFORMATIVE].sum(axis=1) + rng.normal(size=n_samples)


@contextlib.contextmanager
def recording_fits() -> Iterator[list]:
    """While active, every ``crossval.fit_nested`` call (one per outer split, in the splitter's order) appends its
    (preprocessor, model) to the yielded list; the procedure itself is unchanged."""
    fitted: list = []
    original = crossval.fit_nested

    def record(*args, **kwargs):
        out = original(*args, **kwargs)
        fitted.append(out[:2])
        return out

    crossval.fit_nested = record
    try:
        yield fitted
    finally:
        crossval.fit_nested = original


def run_study(n_samples: int, bayes_auc: float, seed: int, params: dict,
              test_per_class: int = TEST_PER_CLASS, n_features: int = N_FEATURES) -> dict:
    """One simulated study through the stage's cross-validation and interval, with the true AUC of its fold
    models on an independent test sample."""
    rng = np.random.default_rng(seed)
    X, y = draw(n_samples // 2, bayes_auc, rng, n_features)
    X_test, y_test = draw(test_per_class, bayes_auc, rng, n_features)
    with recording_fits() as fitted:
        cv = crossval.cross_validate(X, y, "binary", "mean", params)
    test_scores = [predict_scores(model, pre.transform(X_test), "binary", 2)[:, 1] for pre, model in fitted]
    true_auc = [roc_auc_score(y_test, s) for s in test_scores]
    true_ba = [balanced_accuracy_score(y_test, (s >= 0.5).astype(np.int64)) for s in test_scores]
    boot = bootstrap_weights(y, "binary", int(params["n_bootstrap"]), int(params["seed"]))
    rows = {}
    for metric, true in (("roc_auc", true_auc), ("balanced_accuracy", true_ba)):
        stats = summarise_metric(metric, y, cv["scores"], cv["fold"], boot, float(params["ci_level"]),
                                 int(params["seed"]))
        rows[metric] = {"value": stats["value"], "old": stats["ci_bootstrap"], "score": stats["ci_score"],
                        "new": [stats["ci_low"], stats["ci_high"]], "conditional": float(np.mean(true))}
    return {"seed": seed, **rows["roc_auc"], "balanced_accuracy": rows["balanced_accuracy"],
            "fold_models": len(true_auc), "k": cv["k"]}


def run_continuous_study(n_samples: int, bayes_r2: float, seed: int, params: dict,
                         test_samples: int = 2 * TEST_PER_CLASS, n_features: int = N_FEATURES) -> dict:
    """One simulated continuous study through the stage's cross-validation and its MAE and R² intervals, with the
    true MAE and R² of its fold models on an independent test sample (R²: 1 - mean squared error / variance of
    the test outcome)."""
    rng = np.random.default_rng(seed)
    X, y = draw_continuous(n_samples, bayes_r2, rng, n_features)
    X_test, y_test = draw_continuous(test_samples, bayes_r2, rng, n_features)
    with recording_fits() as fitted:
        cv = crossval.cross_validate(X, y, "continuous", "mean", params)
    errors = [y_test - predict_scores(model, pre.transform(X_test), "continuous", 0) for pre, model in fitted]
    truth = {"mae": [float(np.mean(np.abs(e))) for e in errors],
             "r2": [float(1.0 - np.mean(e ** 2) / np.var(y_test)) for e in errors]}
    boot = bootstrap_weights(y, "continuous", int(params["n_bootstrap"]), int(params["seed"]))
    rows = {}
    for metric in ("mae", "r2"):
        stats = summarise_metric(metric, y, cv["scores"], cv["fold"], boot, float(params["ci_level"]),
                                 int(params["seed"]))
        rows[metric] = {"value": stats["value"], "old": stats["ci_bootstrap"],
                        "corrected_t": stats.get("ci_corrected_t", [None, None]),
                        "new": [stats["ci_low"], stats["ci_high"]], "conditional": float(np.mean(truth[metric]))}
    return {"seed": seed, **rows, "fold_models": len(errors), "k": cv["k"]}


def study_seed(n_samples: int, effect: float, replicate: int) -> int:
    """A seed of its own per (size, effect, replicate); continuous studies pass their Bayes R² + 2 as ``effect``."""
    return n_samples * 1_000_000 + int(round(effect * 1000)) * 1000 + replicate


def _covers(interval: list, target: float) -> bool:
    return interval[0] is not None and interval[0] - 1e-12 <= target <= interval[1] + 1e-12


def summarize(rows: list[dict], target: str = "auc", intervals: tuple[str, ...] = ("old", "score", "new"),
              chance: float | None = 0.5, above: float | None = None) -> dict:
    """Per-setting figures of one setting's studies (see the module docstring): ``rows`` hold value, conditional
    and the ``intervals`` ([low, high]) of one metric, ``target`` names it in the keys (expected_auc), ``chance``
    is the line whose exclusion is counted (None: not counted), ``above`` a line whose exclusion from below only
    (the interval's low end above it; R²: 0, a claim of signal) is counted as ``low_above``."""
    expected = float(np.mean([r["conditional"] for r in rows]))
    out = {"studies": len(rows), f"expected_{target}": round(expected, 4),
           f"expected_{target}_se": round(float(np.std([r["conditional"] for r in rows], ddof=1)
                                                / math.sqrt(len(rows))), 4) if len(rows) > 1 else None,
           "mean_value": round(float(np.mean([r["value"] for r in rows])), 4),
           "old_degenerate": round(float(np.mean([r["old"][1] - r["old"][0] <= 1e-12 for r in rows])), 3)}
    if chance is not None:  # a share (AUC, balanced accuracy): how often it read exactly 1
        out["value_is_1"] = round(float(np.mean([r["value"] >= 1 - 1e-12 for r in rows])), 3)
    for name in intervals:
        out[name] = {
            "coverage_expected": round(float(np.mean([_covers(r[name], expected) for r in rows])), 3),
            "coverage_conditional": round(float(np.mean([_covers(r[name], r["conditional"]) for r in rows])), 3),
            "mean_width": round(float(np.mean([r[name][1] - r[name][0] for r in rows])), 3),
        }
        if chance is not None:
            out[name]["excludes_half"] = round(float(np.mean([r[name][0] > chance or r[name][1] < chance
                                                              for r in rows])), 3)
        if above is not None:
            out[name]["low_above"] = round(float(np.mean([r[name][0] > above for r in rows])), 3)
    degenerate = [r for r in rows if r["old"][1] - r["old"][0] <= 1e-12]
    if degenerate and "new" in intervals:
        out["where_old_degenerate"] = {
            "studies": len(degenerate),
            "old_coverage_expected": round(float(np.mean([_covers(r["old"], expected) for r in degenerate])), 3),
            "new_coverage_expected": round(float(np.mean([_covers(r["new"], expected) for r in degenerate])), 3),
            "new_coverage_conditional": round(float(np.mean([_covers(r["new"], r["conditional"])
                                                            for r in degenerate])), 3)}
    return out


def run(sizes: tuple[int, ...], effects: tuple[float, ...], studies: int, params: dict,
        test_per_class: int = TEST_PER_CLASS, n_features: int = N_FEATURES, log: bool = True,
        r2_effects: tuple[float, ...] = BAYES_R2) -> dict:
    """Every binary setting (size x effect) and continuous one (size x ``r2_effects``), ``studies`` studies each;
    returns the result JSON's content."""
    started = time.perf_counter()
    settings, continuous = [], []
    for n in sizes:
        for effect in effects:
            t0 = time.perf_counter()
            rows = [run_study(n, effect, study_seed(n, effect, r), params, test_per_class, n_features)
                    for r in range(studies)]
            setting = {"n_samples": n, "bayes_auc": effect, "null": effect == 0.5, **summarize(rows),
                       "balanced_accuracy": summarize([r["balanced_accuracy"] for r in rows], "balanced_accuracy"),
                       "seconds": round(time.perf_counter() - t0, 1), "rows": rows}
            settings.append(setting)
            if log:
                print(json.dumps({k: v for k, v in setting.items() if k != "rows"}), flush=True)
        for r2 in r2_effects:
            t0 = time.perf_counter()
            rows = [run_continuous_study(n, r2, study_seed(n, r2 + 2.0, r), params, 2 * test_per_class, n_features)
                    for r in range(studies)]
            setting = {"n_samples": n, "bayes_r2": r2, "null": r2 == 0.0,
                       "mae": summarize([r["mae"] for r in rows], "mae", CONTINUOUS_INTERVALS, None),
                       "r2": summarize([r["r2"] for r in rows], "r2", CONTINUOUS_INTERVALS, None, above=0.0),
                       "seconds": round(time.perf_counter() - t0, 1), "rows": rows}
            continuous.append(setting)
            if log:
                print(json.dumps({k: v for k, v in setting.items() if k != "rows"}), flush=True)
    nulls = [s for s in settings if s["null"]]
    return {
        "benchmark": "auc_interval", "machine": machine_record(),
        "design": {"n_features": n_features, "n_informative": N_INFORMATIVE, "test_per_class": test_per_class,
                   "studies_per_setting": studies, "level": float(params["ci_level"]),
                   "params": {k: params[k] for k in ("estimator", "outer_splits", "outer_repeats", "inner_splits",
                                                     "univariate_top_k", "n_bootstrap", "ci_level", "seed",
                                                     "elastic_net_lambda_ratio", "l1_ratio")}},
        "null_false_positive": {name: max((s[name]["excludes_half"] for s in nulls), default=None)
                                for name in ("old", "score", "new")},
        "null_false_positive_balanced_accuracy": {
            name: max((s["balanced_accuracy"][name]["excludes_half"] for s in nulls), default=None)
            for name in ("old", "score", "new")},
        "settings": settings, "continuous_settings": continuous, "seconds": round(time.perf_counter() - started, 1)}


def _table(settings: list[dict], target: str, label: str) -> list[str]:
    """Rows of one metric's table: per setting, coverage of the expected (and conditional) value, old -> new."""
    header = (f"| n | Bayes AUC | expected {label} | mean CV {label} | old interval of zero width | coverage old / new "
              "(expected) | coverage old / new (conditional) | excludes 0.5 old / new | mean width old / new |")
    lines = [header, "|---:|---:|---:|---:|---:|---|---|---|---|"]
    for s in settings:
        o, n = s["old"], s["new"]
        lines.append(
            f"| {s['n_samples']} | {s['bayes_auc']} | {s[f'expected_{target}']:.3f} | {s['mean_value']:.3f} | "
            f"{100 * s['old_degenerate']:.0f} % | "
            f"{100 * o['coverage_expected']:.0f} / {100 * n['coverage_expected']:.0f} % | "
            f"{100 * o['coverage_conditional']:.0f} / {100 * n['coverage_conditional']:.0f} % | "
            f"{100 * o['excludes_half']:.0f} / {100 * n['excludes_half']:.0f} % | "
            f"{o['mean_width']:.2f} / {n['mean_width']:.2f} |")
    return lines


def _continuous_table(settings: list[dict], metric: str, label: str) -> list[str]:
    """Rows of the MAE or R² table (continuous studies): coverage and width of the old (bootstrap) and new (hull
    with the corrected t) interval; for R² also how often the low end lay above 0."""
    r2 = metric == "r2"
    header = (f"| n | Bayes R² | expected {label} | mean CV {label} | coverage old / new (expected) | coverage old / "
              "new (conditional) | mean width old / new |" + (" low end > 0 old / new |" if r2 else ""))
    lines = [f"{label} (continuous studies):", "", header, "|---:|---:|---:|---:|---|---|---|" + ("---|" if r2 else "")]
    for s in settings:
        m = s[metric]
        o, n = m["old"], m["new"]
        line = (f"| {s['n_samples']} | {s['bayes_r2']} | {m[f'expected_{metric}']:.3f} | {m['mean_value']:.3f} | "
                f"{100 * o['coverage_expected']:.0f} / {100 * n['coverage_expected']:.0f} % | "
                f"{100 * o['coverage_conditional']:.0f} / {100 * n['coverage_conditional']:.0f} % | "
                f"{o['mean_width']:.2f} / {n['mean_width']:.2f} |")
        if r2:
            line += f" {100 * o['low_above']:.0f} / {100 * n['low_above']:.0f} % |"
        lines.append(line)
    return lines


def merge_continuous(base: dict, result: dict) -> dict:
    """``base`` (an earlier result JSON's content) with its continuous settings replaced by those of ``result``
    (a ``--continuous-only`` run); the binary settings and their figures are kept as they were, the continuous
    run's machine, time and study count recorded under ``continuous_run``."""
    merged = {k: v for k, v in base.items() if k != "continuous_settings"}
    merged["continuous_settings"] = result["continuous_settings"]
    merged["continuous_run"] = {"studies_per_setting": result["design"]["studies_per_setting"],
                                "machine": result["machine"], "seconds": result["seconds"]}
    return merged


def markdown(result: dict) -> str:
    """The README tables: AUC, then balanced accuracy (same studies), then MAE and R² (continuous studies)."""
    lines = _table(result["settings"], "auc", "AUC")
    with_ba = [{"n_samples": s["n_samples"], "bayes_auc": s["bayes_auc"], **s["balanced_accuracy"]}
               for s in result["settings"] if "balanced_accuracy" in s]
    if with_ba:
        lines += ["", "Balanced accuracy (same studies):", "", *_table(with_ba, "balanced_accuracy", "bal. acc.")]
    for metric, label in (("mae", "MAE"), ("r2", "R²")):
        rows = [s for s in result.get("continuous_settings", []) if metric in s and "new" in s[metric]]
        if rows:
            lines += ["", *_continuous_table(rows, metric, label)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, help="result JSON")
    parser.add_argument("--studies", type=int, default=60, help="studies per setting")
    parser.add_argument("--quick", action="store_true", help="8 studies per setting")
    parser.add_argument("--markdown", type=Path, help="print the README table of a result JSON and exit")
    parser.add_argument("--continuous-only", action="store_true", help="run the continuous (MAE, R²) settings only")
    parser.add_argument("--merge", type=Path, help="an earlier result JSON whose binary settings the output keeps "
                        "(with --continuous-only); may be the --out file itself")
    args = parser.parse_args(argv)
    if args.markdown:
        print(markdown(json.loads(args.markdown.read_text())))
        return 0
    if not args.out:
        parser.error("--out is required (or --markdown)")
    if args.merge and not args.continuous_only:
        parser.error("--merge keeps the binary part of an earlier run: use it with --continuous-only")
    base = json.loads(args.merge.read_text()) if args.merge else None
    result = run(SIZES, () if args.continuous_only else BAYES_AUC, 8 if args.quick else args.studies, stage_params())
    if base is not None:
        result = merge_continuous(base, result)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
