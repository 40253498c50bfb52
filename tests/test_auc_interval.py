"""The AUC interval of the models stage: Newcombe's score interval (2006, Stat Med 25:559, method 5) checked against
numbers derived by hand, its hull with the bootstrap interval in ``summarise_metric``, and the logic of
benchmarks/auc_interval.py on a tiny setting (the benchmark itself: ``python benchmarks/auc_interval.py --quick``)."""

from __future__ import annotations

import math
import sys
from pathlib import Path
from statistics import NormalDist

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from ms2study.modelling import crossval, metrics  # noqa: E402
from ms2study.stages import models  # noqa: E402

Z = NormalDist().inv_cdf(0.975)


def _cubic_lower_bound_at_one(m: int, n: int) -> float:
    """The lower end at AUC 1, by hand: (1 - A)^2 = z^2 V(A) with V = A(1-A)[1 + N*(1-A)/(2-A) + N*A/(1+A)]/(mn),
    divided by (1 - A) and multiplied by (2 - A)(1 + A), with c = z^2/(mn), is the cubic
    (1 + c(1+2N*)) A^3 - (2 + c(1+2N*)) A^2 - (1 + c(2+N*)) A + 2 = 0; its root in (0, 1)."""
    c, s = Z * Z / (m * n), (m + n) / 2 - 1
    roots = np.roots([1 + c * (1 + 2 * s), -(2 + c * (1 + 2 * s)), -(1 + c * (2 + s)), 2.0])
    (root,) = [r.real for r in roots if abs(r.imag) < 1e-12 and 0 < r.real < 1]
    return float(root)


def test_perfect_separation_keeps_a_lower_bound_below_one() -> None:
    low, high = metrics.auc_score_interval(1.0, 8, 8, 0.95)
    assert high == 1.0
    assert low == pytest.approx(_cubic_lower_bound_at_one(8, 8), abs=1e-9)
    assert low == pytest.approx(0.7556, abs=1e-4)  # 8 vs 8: the cubic's root, 0.75565
    # above 0.5 at 8 vs 8, because the method says so (and not at 2 vs 2, where N* = 1)
    assert 0.5 < low < 1.0
    low2, _ = metrics.auc_score_interval(1.0, 2, 2, 0.95)
    assert low2 == pytest.approx(_cubic_lower_bound_at_one(2, 2), abs=1e-9) and low2 < 0.5
    # more samples, a tighter bound; unequal classes use the same formula
    assert metrics.auc_score_interval(1.0, 20, 20, 0.95)[0] == pytest.approx(_cubic_lower_bound_at_one(20, 20))
    assert metrics.auc_score_interval(1.0, 5, 11, 0.95)[0] == pytest.approx(_cubic_lower_bound_at_one(5, 11))


def test_one_sample_per_class_is_the_wilson_interval_of_one_trial() -> None:
    """With m = n = 1, N* = 0 and V(A) = A(1 - A): the interval is Wilson's (1927) score interval for a proportion
    from one trial, whose textbook form is (p + z²/2 ± z sqrt(p(1-p) + z²/4)) / (1 + z²)."""
    for p in (0.0, 0.5, 1.0, 0.3):
        centre, half = (p + Z * Z / 2) / (1 + Z * Z), Z * math.sqrt(p * (1 - p) + Z * Z / 4) / (1 + Z * Z)
        low, high = metrics.auc_score_interval(p, 1, 1, 0.95)
        assert (low, high) == pytest.approx((centre - half, centre + half), abs=1e-9), p
    assert metrics.auc_score_interval(1.0, 1, 1, 0.95)[0] == pytest.approx(1 / (1 + Z * Z))  # 0.2065


def test_hanley_mcneil_variance_in_newcombes_form() -> None:
    """Equal classes: N* = m - 1 = n - 1, so it is Hanley & McNeil's (1982) own formula with Q1 = A/(2-A),
    Q2 = 2A²/(1+A); unequal classes: N* is the mean of m - 1 and n - 1, so the variance lies between the two
    ways of assigning them."""
    def hanley_mcneil(a: float, m: int, n: int) -> float:
        q1, q2 = a / (2 - a), 2 * a * a / (1 + a)
        return (a * (1 - a) + (m - 1) * (q1 - a * a) + (n - 1) * (q2 - a * a)) / (m * n)

    for a in (0.5, 0.7, 0.93, 1.0):
        assert metrics.hanley_mcneil_variance(a, 8, 8) == pytest.approx(hanley_mcneil(a, 8, 8), abs=1e-15)
    for a in (0.6, 0.893):
        both = sorted([hanley_mcneil(a, 51, 58), hanley_mcneil(a, 58, 51)])
        assert both[0] < metrics.hanley_mcneil_variance(a, 51, 58) < both[1]
    # symmetric under swapping the classes (A -> 1 - A), zero at the ends
    assert metrics.hanley_mcneil_variance(0.2, 5, 11) == pytest.approx(metrics.hanley_mcneil_variance(0.8, 11, 5))
    assert metrics.hanley_mcneil_variance(1.0, 8, 8) == 0.0 == metrics.hanley_mcneil_variance(0.0, 8, 8)


def test_score_interval_contains_the_estimate_and_solves_the_equation() -> None:
    for m, n in ((8, 8), (4, 12), (20, 20), (3, 3)):
        for a in np.linspace(0, 1, 21):
            low, high = metrics.auc_score_interval(float(a), m, n, 0.95)
            assert 0.0 <= low <= a <= high <= 1.0
            # each end inside (0, 1) is a root of |A - a| = z sqrt(V(A))
            for end in (low, high):
                if 0 < end < 1 and abs(end - a) > 1e-9:
                    gap = abs(end - a) - Z * math.sqrt(float(metrics.hanley_mcneil_variance(end, m, n)))
                    assert abs(gap) < 1e-8, (m, n, a, end)
            # mirror image: the interval of 1 - a is 1 minus the interval of a, classes swapped
            mirrored = metrics.auc_score_interval(float(1 - a), n, m, 0.95)
            assert mirrored == pytest.approx((1 - high, 1 - low), abs=1e-9)
    # a wider level, a wider interval; undefined without a class
    assert metrics.auc_score_interval(0.8, 8, 8, 0.99)[0] < metrics.auc_score_interval(0.8, 8, 8, 0.95)[0]
    assert all(math.isnan(v) for v in metrics.auc_score_interval(0.8, 0, 8, 0.95))


def _cv_layout(y: np.ndarray, kind: str = "binary", repeats: int = 5) -> np.ndarray:
    params = models.merge_params({"outer_repeats": repeats})
    splitter, k = crossval.outer_splitter(y, kind, params)
    folds = np.full((repeats, len(y)), -1)
    for i, (_, test) in enumerate(splitter.split(np.zeros((len(y), 1)), y)):
        folds[i // k, test] = i % k
    return folds


def test_perfectly_separated_folds_no_longer_give_one_one() -> None:
    """The defect: every test fold perfectly separated, every bootstrap draw 1, the interval [1, 1]."""
    y = np.repeat([0, 1], 8)
    folds = _cv_layout(y)
    scores = np.stack([y + 0.01 * np.random.default_rng(r).random(16) for r in range(5)])
    boot = metrics.bootstrap_weights(y, "binary", 500, 0)
    stats = metrics.summarise_metric("roc_auc", y, scores, folds, boot, 0.95)
    assert stats["value"] == 1.0 and stats["ci_bootstrap"] == [1.0, 1.0]
    assert stats["ci_score"][0] == pytest.approx(_cubic_lower_bound_at_one(8, 8), abs=1e-9)
    assert stats["ci_low"] == stats["ci_score"][0] < 1.0 and stats["ci_high"] == 1.0
    # balanced accuracy is widened too (Wilson + MOVER, tests/test_balanced_accuracy_interval.py)
    ba = metrics.summarise_metric("balanced_accuracy", y, scores, folds, boot, 0.95)
    assert ba["ci_bootstrap"] == [1.0, 1.0] and ba["ci_low"] == ba["ci_score"][0] < 0.8
    # multiclass: the smallest class against the rest (3 of 12 here), lower than 8 vs 8's bound
    y3 = np.repeat([0, 1, 2], [3, 4, 5])
    folds3 = _cv_layout(y3, "multiclass")
    proba = np.stack([np.eye(3)[y3] * 0.9 + 0.05 for _ in range(5)])
    stats3 = metrics.summarise_metric("macro_roc_auc", y3, proba, folds3,
                                      metrics.bootstrap_weights(y3, "multiclass", 300, 0), 0.95)
    assert metrics.auc_sample_sizes("macro_roc_auc", y3) == (3, 9)
    assert stats3["value"] == 1.0 and stats3["ci_bootstrap"] == [1.0, 1.0]
    assert stats3["ci_low"] == pytest.approx(_cubic_lower_bound_at_one(3, 9), abs=1e-9)


def test_the_interval_is_the_hull_and_null_scores_still_cover_half() -> None:
    y = np.repeat([0, 1], 8)
    folds = _cv_layout(y)
    boot = metrics.bootstrap_weights(y, "binary", 500, 0)
    covered = 0
    for seed in range(20):
        scores = np.random.default_rng(seed).random((5, 16))  # predictions unrelated to the labels
        stats = metrics.summarise_metric("roc_auc", y, scores, folds, boot, 0.95)
        (b_low, b_high), (s_low, s_high) = stats["ci_bootstrap"], stats["ci_score"]
        assert stats["ci_low"] == min(b_low, s_low) and stats["ci_high"] == max(b_high, s_high)
        assert stats["ci_low"] <= stats["value"] <= stats["ci_high"]
        assert (s_low, s_high) == metrics.auc_score_interval(stats["value"], 8, 8, 0.95)
        covered += stats["ci_low"] <= 0.5 <= stats["ci_high"]
    assert covered >= 19
    # R² and MAE have no score interval; their bootstrap interval is widened by the corrected t interval instead
    # (tests/test_continuous_interval.py)
    yc = np.linspace(0, 1, 16)
    r2 = metrics.summarise_metric("r2", yc, yc[None, :] + 0.1, folds, metrics.bootstrap_weights(
        yc, "continuous", 200, 0), 0.95)
    assert "ci_score" not in r2 and "ci_corrected_t" in r2
    assert r2["ci_low"] <= r2["ci_bootstrap"][0] and r2["ci_high"] >= r2["ci_bootstrap"][1]


# ------------------------------------------------------------------------------------------ the benchmark


def test_benchmark_design_targets_and_summary() -> None:
    import auc_interval as bench

    # the shift gives the stated Bayes AUC: the oracle score (sum of the informative features) on a large sample
    rng = np.random.default_rng(0)
    X, y = bench.draw(20000, 0.9, rng, n_features=8)
    from sklearn.metrics import roc_auc_score

    assert roc_auc_score(y, X[:, :bench.N_INFORMATIVE].sum(axis=1)) == pytest.approx(0.9, abs=0.005)
    assert bench.shift(0.5) == 0.0

    # recording the fitted fold models changes nothing in the procedure, and records one model per outer split
    params = bench.stage_params({"outer_repeats": 2, "n_bootstrap": 100})
    assert params["estimator"] == "elastic_net" and params["outer_splits"] == 5
    X, y = bench.draw(8, 0.98, np.random.default_rng(1), n_features=30)
    plain = crossval.cross_validate(X, y, "binary", "mean", params)
    with bench.recording_fits() as fitted:
        recorded = crossval.cross_validate(X, y, "binary", "mean", params)
    assert crossval.fit_nested.__name__ == "fit_nested"  # restored
    np.testing.assert_array_equal(plain["scores"], recorded["scores"])
    assert len(fitted) == 2 * plain["k"]

    # a tiny setting end to end: the null's fold models are at chance on the independent sample
    row = bench.run_study(16, 0.5, 3, params, test_per_class=300, n_features=30)
    assert row["fold_models"] == 10 and row["k"] == 5
    assert abs(row["conditional"] - 0.5) < 0.08
    assert row["new"][0] == min(row["old"][0], row["score"][0]) and row["new"][1] == max(row["old"][1],
                                                                                         row["score"][1])
    ba = row["balanced_accuracy"]  # the same fold models' class predictions, thresholded at 0.5 as the stage does
    assert abs(ba["conditional"] - 0.5) < 0.08 and ba["new"][0] <= ba["old"][0] and ba["new"][1] >= ba["old"][1]
    assert ba["new"] == [min(ba["old"][0], ba["score"][0]), max(ba["old"][1], ba["score"][1])]
    strong = bench.run_study(16, 0.999, 4, params, test_per_class=300, n_features=30)
    assert strong["conditional"] > 0.85 and strong["value"] > 0.8
    assert strong["balanced_accuracy"]["conditional"] > 0.75

    # continuous: the outcome's Bayes R² as designed, and the fold models' true MAE near the noise's 0.80 at R² 0
    Xc, yc = bench.draw_continuous(50000, 0.5, np.random.default_rng(2), n_features=8)
    assert 1 - np.var(yc - math.sqrt(0.2) * Xc[:, :5].sum(axis=1)) / np.var(yc) == pytest.approx(0.5, abs=0.01)
    study = bench.run_continuous_study(16, 0.0, 5, params, test_samples=2000, n_features=30)
    mae, r2 = study["mae"], study["r2"]
    assert study["fold_models"] == 10 and 0.75 < mae["conditional"] < 1.2 and mae["old"][0] < mae["value"]
    # on the null no model beats the mean: the true R² of the fold models is at or below 0 (their own noise)
    assert -0.6 < r2["conditional"] <= 0.01 and r2["new"][1] <= 1.0
    for row in (mae, r2):  # the new interval is the hull of the bootstrap and the corrected t interval
        assert row["new"] == [min(row["old"][0], row["corrected_t"][0]), max(row["old"][1], row["corrected_t"][1])]

    # the summary's arithmetic on rows made up by hand: target 0.8 (mean of the conditional AUCs)
    rows = [{"value": 1.0, "old": [1.0, 1.0], "score": [0.75, 1.0], "new": [0.75, 1.0], "conditional": 0.7},
            {"value": 0.8, "old": [0.6, 0.9], "score": [0.55, 0.95], "new": [0.55, 0.95], "conditional": 0.9},
            {"value": 0.4, "old": [0.2, 0.45], "score": [0.15, 0.7], "new": [0.15, 0.7], "conditional": 0.8}]
    s = bench.summarize(rows)
    assert s["expected_auc"] == pytest.approx(0.8)
    third, two_thirds = pytest.approx(1 / 3, abs=1e-3), pytest.approx(2 / 3, abs=1e-3)  # rounded to 3 decimals
    assert s["old_degenerate"] == third and s["value_is_1"] == third
    assert s["old"]["coverage_expected"] == third                       # only [0.6, 0.9] holds 0.8
    assert s["new"]["coverage_expected"] == two_thirds                   # [0.75, 1] and [0.55, 0.95]
    assert s["new"]["coverage_conditional"] == third  # 0.9 in [0.55, 0.95]; not 0.7 in [0.75, 1], 0.8 in [0.15, 0.7]
    assert s["old"]["excludes_half"] == 1.0 and s["new"]["excludes_half"] == two_thirds
    assert s["old"]["mean_width"] == pytest.approx(round((0 + 0.3 + 0.25) / 3, 3))
    assert s["where_old_degenerate"] == {"studies": 1, "old_coverage_expected": 0.0, "new_coverage_expected": 1.0,
                                         "new_coverage_conditional": 0.0}
    # another metric's rows (MAE: no chance line)
    m = bench.summarize([{"value": 1.0, "old": [0.8, 1.2], "conditional": 1.1},
                         {"value": 0.9, "old": [0.5, 0.7], "conditional": 0.9}], "mae", ("old",), None)
    assert m["expected_mae"] == pytest.approx(1.0) and m["old"]["coverage_expected"] == 0.5
    assert m["old"]["coverage_conditional"] == 0.5 and "excludes_half" not in m["old"] and "new" not in m
    # R²: the expected value is the mean of the conditional ones; low_above counts low ends above 0 only
    r = bench.summarize([{"value": 0.3, "old": [0.1, 0.5], "new": [0.05, 0.5], "conditional": 0.2},
                         {"value": -0.2, "old": [-0.6, -0.1], "new": [-0.7, 0.15], "conditional": 0.0}],
                        "r2", ("old", "new"), None, above=0.0)
    assert r["expected_r2"] == pytest.approx(0.1) and r["old"]["coverage_expected"] == 0.5
    assert r["new"]["coverage_expected"] == 1.0 and r["new"]["coverage_conditional"] == 1.0
    assert r["old"]["low_above"] == 0.5 and r["new"]["low_above"] == 0.5 and "excludes_half" not in r["new"]
    # --continuous-only --merge: the binary part of the earlier result is kept, the continuous part replaced
    base = {"settings": [{"n_samples": 16, "bayes_auc": 0.9, **s}], "seconds": 9.0, "continuous_settings": ["x"]}
    cont = {"continuous_settings": [{"n_samples": 16, "bayes_r2": 0.5, "mae": m | {"new": m["old"]}, "r2": r}],
            "machine": {"cores": 2}, "seconds": 3.0, "design": {"studies_per_setting": 2}}
    merged = bench.merge_continuous(base, cont)
    assert merged["settings"] == base["settings"] and merged["seconds"] == 9.0
    assert merged["continuous_settings"] == cont["continuous_settings"]
    assert merged["continuous_run"] == {"studies_per_setting": 2, "machine": {"cores": 2}, "seconds": 3.0}
    lines = bench.markdown(merged).splitlines()
    assert "| 16 | 0.5 | 0.100 | 0.050 | 50 / 100 % | 50 / 100 % | 0.45 / 0.65 | 50 / 50 % |" in lines
    assert "| 16 | 0.5 | 1.000 | 0.950 | 50 / 50 % | 50 / 50 % | 0.30 / 0.30 |" in lines
    with pytest.raises(SystemExit):
        bench.main(["--out", "unused.json", "--merge", "unused.json"])  # --merge needs --continuous-only
    table = bench.markdown({"settings": [{"n_samples": 16, "bayes_auc": 0.9, **s}]})
    assert table.splitlines()[2].startswith("| 16 | 0.9 | 0.800 | 0.733 | 33 % | 33 / 67 % |")
