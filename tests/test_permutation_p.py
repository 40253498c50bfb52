"""The models' label-permutation p-value: Besag & Clifford's sequential Monte Carlo p holds its level on data where
the null is true, stops early only when p is clearly large, and keeps the full resolution 1/(n+1) for a strong
model; "auto" gives small studies 100 permutations; the choice of the best of several feature sets is adjusted by
the max-statistic over their shared permutations, which holds the family-wise level where every set is null."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from ms2study.core.paths import family_permutations, models_runtime_minutes, permutation_budget
from ms2study.modelling import evaluate, featuresets
from ms2study.stages import models

GROUP = {"column": "group", "type": "binary", "positive_class": "case"}


def _null_p_values(n_studies: int, max_permutations: int, stop_after: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """p and permutations drawn for ``n_studies`` statistics whose observed value is exchangeable with its
    permutation values (the null is true): a continuous statistic, so no ties."""
    rng = np.random.default_rng(seed)
    ps, drawn = np.empty(n_studies), np.empty(n_studies)
    for i in range(n_studies):
        values = rng.random(max_permutations + 1)
        test = evaluate.sequential_permutation_p(values[0], lambda k, v=values: v[k + 1], max_permutations,
                                                 stop_after)
        ps[i], drawn[i] = test["p"], test["drawn"]
    return ps, drawn


def test_sequential_p_holds_its_level_when_the_null_is_true() -> None:
    ps, drawn = _null_p_values(6000, 100, 10, seed=1)
    se = np.sqrt(0.05 * 0.95 / ps.size)
    for level in (0.02, 0.05, 0.1, 0.2, 0.5):
        # valid: P(p <= a) <= a (3 standard errors of the Monte Carlo share), and not needlessly conservative where
        # the grid has a value (1/101 steps below the stopping region, 10/L above it)
        assert np.mean(ps <= level) <= level + 3 * np.sqrt(level * (1 - level) / ps.size), level
    assert np.mean(ps <= 0.05) >= 0.05 - 4 * se
    # under the null most p are large, so the sequential test stops after about 10 / p permutations: ~20 at the median
    assert np.median(drawn) <= 25 and np.mean(drawn) < 40


def test_a_strong_statistic_uses_every_permutation_and_a_weak_one_stops_early() -> None:
    strong = evaluate.sequential_permutation_p(1.0, lambda k: 0.5 + 0.001 * k % 0.4, 100, 10)
    null = [0.5 + 0.001 * k % 0.4 for k in range(100)]
    assert strong == {"p": pytest.approx(1 / 101), "drawn": 100, "reaching": 0, "stopped_early": False,
                      "null_mean": pytest.approx(np.mean(null)), "null": pytest.approx(null)}
    # every third permutation reaches the observed value: stop at the 10th reaching one, the 30th drawn
    weak = evaluate.sequential_permutation_p(0.7, lambda k: 0.9 if k % 3 == 2 else 0.1, 100, 10)
    assert (weak["drawn"], weak["reaching"], weak["stopped_early"]) == (30, 10, True)
    assert weak["p"] == pytest.approx(10 / 30)
    # stop_after 0: the plain Monte Carlo p over all permutations
    full = evaluate.sequential_permutation_p(0.7, lambda k: 0.9 if k % 3 == 2 else 0.1, 100, 0)
    assert (full["drawn"], full["reaching"]) == (100, 33) and full["p"] == pytest.approx(34 / 101)
    with pytest.raises(ValueError):
        evaluate.sequential_permutation_p(0.7, lambda k: 0.0, 0, 10)


def test_auto_gives_small_studies_100_permutations_and_larger_ones_40_whatever_the_number_of_sets() -> None:
    assert permutation_budget("auto", 16) == 100 and permutation_budget("auto", 100) == 100
    assert permutation_budget("auto", 101) == 40 and permutation_budget("auto", 1000) == 40
    assert permutation_budget(7, 16) == 7 and permutation_budget(0, 16) == 0
    for bad in (-1, "all", 2.5, True):
        with pytest.raises(ValueError):
            permutation_budget(bad, 16)
    # every set draws the first 40 (or all when drawing never stops early) before it may stop: the adjustment reads them
    assert family_permutations(100, 10) == 40 and family_permutations(100, 0) == 100
    assert family_permutations(20, 10) == 20 and family_permutations(40, 10) == 40
    # the models job's runtime request counts the permutations "auto" gives (random forests only)
    forest = {"models": {"estimator": "random_forest", "n_permutations": "auto"}}
    assert models_runtime_minutes(forest, 16, 1, 30) == models_runtime_minutes(
        {"models": {"estimator": "random_forest", "n_permutations": 100}}, 16, 1, 30)
    assert models_runtime_minutes(forest, 200, 1, 30) == models_runtime_minutes(
        {"models": {"estimator": "random_forest", "n_permutations": 40}}, 200, 1, 30)


def test_drawing_never_stops_before_the_permutations_the_adjustment_reads() -> None:
    weak = evaluate.sequential_permutation_p(0.7, lambda k: 0.9 if k % 3 == 2 else 0.1, 100, 10, min_draws=40)
    assert (weak["drawn"], weak["reaching"], weak["stopped_early"]) == (40, 13, True)
    assert weak["p"] == pytest.approx(13 / 40) and len(weak["null"]) == 40


def _family_null(n_studies: int, n_sets: int, m: int, correlation: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The smallest max-statistic adjusted p and the smallest Bonferroni-adjusted p over ``n_sets`` feature sets in
    each of ``n_studies`` studies where every set is null: the observed statistics and the m permutations' are
    exchangeable rows of one draw, correlated across the sets (as sets built from one study's samples are)."""
    rng = np.random.default_rng(seed)
    smallest, bonferroni = np.empty(n_studies), np.empty(n_studies)
    for i in range(n_studies):
        shared = rng.normal(size=(m + 1, 1))
        table = np.sqrt(correlation) * shared + np.sqrt(1 - correlation) * rng.normal(size=(m + 1, n_sets))
        names = [f"set{k}" for k in range(n_sets)]
        adjusted = evaluate.family_adjusted_p({k: table[0, j] for j, k in enumerate(names)},
                                              {k: list(table[1:, j]) for j, k in enumerate(names)}, m)
        smallest[i] = min(a["p"] for a in adjusted.values())
        own = [(1 + np.sum(table[1:, j] >= table[0, j])) / (1 + m) for j in range(n_sets)]
        bonferroni[i] = min(1.0, n_sets * min(own))
    return smallest, bonferroni


def test_the_max_statistic_holds_the_family_wise_level_and_is_not_weaker_than_bonferroni() -> None:
    for correlation in (0.0, 0.7):
        smallest, bonferroni = _family_null(4000, 4, 40, correlation, seed=int(10 * correlation))
        for level in (2 / 41, 0.1, 0.25):
            # family-wise: P(the best set's adjusted p <= a) <= a when all sets are null (3 Monte Carlo standard errors)
            assert np.mean(smallest <= level) <= level + 3 * np.sqrt(level * (1 - level) / smallest.size), level
            assert np.mean(smallest <= level) >= np.mean(bonferroni <= level)
        # exact under the global null: 2/41 is reached in about 2/41 of the studies, not far fewer
        assert abs(np.mean(smallest <= 2 / 41) - 2 / 41) < 4 * np.sqrt(0.05 * 0.95 / smallest.size)
    # with correlated sets Bonferroni spends the level on sets that say the same thing: at 0.1 it rejects less often
    smallest, bonferroni = _family_null(4000, 4, 40, 0.7, seed=3)
    assert np.mean(bonferroni <= 0.1) < 0.8 * np.mean(smallest <= 0.1)
    with pytest.raises(ValueError, match="fewer than the 40"):
        evaluate.family_adjusted_p({"a": 1.0}, {"a": [0.0] * 39}, 40)
    assert evaluate.family_adjusted_p({"a": 1.0}, {"a": []}, 0) == {}


def _sets(y: np.ndarray, effect: float, seed: int) -> tuple[pl.DataFrame, dict]:
    rng = np.random.default_rng(seed)
    ids = [f"S{i:02d}" for i in range(len(y))]
    intensities = np.exp(rng.normal(12, 1, size=(30, len(y))))
    intensities[:6] *= np.exp(effect * y)[None, :]
    matrix = pl.DataFrame({"consensus_id": [f"C{i}" for i in range(30)], "mz": np.linspace(100, 500, 30),
                           "rt_s": np.linspace(30, 600, 30), "n_detected": [len(ids)] * 30,
                           **{s: intensities[:, j] for j, s in enumerate(ids)}})
    samples = pl.DataFrame({"sample_id": ids, "file": [f"{s}.mzML" for s in ids],
                            "group": ["case" if v else "control" for v in y]})
    return samples, {"features": featuresets.feature_matrix_feature_set(matrix, ids)}


def test_models_report_how_the_permutation_p_was_reached(tmp_path: Path) -> None:
    y = np.repeat([0, 1], 10)
    params = {"n_permutations": 40, "outer_repeats": 1, "n_bootstrap": 200, "feature_sets": ["features"],
              "permutation_stop_after": 5}
    samples, sets = _sets(y, effect=3.0, seed=0)
    strong = models.model_outcomes(samples, sets, [GROUP], tmp_path / "strong", params)["group"]
    entry = strong["feature_sets"]["features"]
    assert entry["value"] >= 0.9 and entry["permutations_drawn"] == 40 and not entry["permutations_stopped_early"]
    assert entry["permutation_p"] == pytest.approx((1 + entry["permutations_reaching"]) / 41)
    assert strong["params"]["n_permutations"] == 40
    samples, sets = _sets(y, effect=0.0, seed=3)
    null = models.model_outcomes(samples, sets, [GROUP], tmp_path / "null", params)["group"]
    entry = null["feature_sets"]["features"]
    # one set: nothing to adjust for, so it may stop as soon as 5 permutations reached its value
    assert entry["permutations_stopped_early"] and entry["permutations_drawn"] < 40
    assert entry["permutation_p"] == pytest.approx(5 / entry["permutations_drawn"]) and entry["permutation_p"] > 0.2
    # "auto" is resolved by the outcome's sample count and written as the integer used
    auto = models.model_outcomes(samples, sets, [GROUP], tmp_path / "auto",
                                 {**params, "n_permutations": "auto"})["group"]
    assert auto["params"]["n_permutations"] == 100 and auto["n_permutations"] == 100


def test_every_set_draws_the_shared_permutations_and_the_best_is_adjusted_for_the_choice(tmp_path: Path) -> None:
    y = np.repeat([0, 1], 10)
    samples, sets = _sets(y, effect=3.0, seed=0)
    rng = np.random.default_rng(5)
    sets["noise"] = pl.DataFrame({"sample_id": samples["sample_id"],
                                  **{f"n{j}": rng.normal(size=20) for j in range(8)}})
    params = {"n_permutations": 100, "outer_repeats": 1, "n_bootstrap": 200, "feature_sets": ["features", "noise"],
              "imputation": {"noise": "mean"}}
    summary = models.model_outcomes(samples, sets, [GROUP], tmp_path / "two", params)["group"]
    strong, noise = summary["feature_sets"]["features"], summary["feature_sets"]["noise"]
    assert summary["p_adjustment"]["permutations"] == 40 and summary["p_adjustment"]["feature_sets"] == 2
    # the noise set's p is clearly large, yet it drew the 40 shared permutations before stopping
    assert noise["permutation_p"] > 0.1 and noise["permutations_drawn"] >= 40
    assert strong["permutations_drawn"] == 100 and strong["value"] >= 0.9
    # adjusted on the 40 shared permutations, never below the set's own p; the noise set's is at least its own
    assert strong["permutation_p_adjusted"] == pytest.approx(
        max((1 + strong["permutations_reaching_adjusted"]) / 41, strong["permutation_p"]))
    assert strong["permutation_p_adjusted"] < 0.05 and noise["permutation_p_adjusted"] >= noise["permutation_p"]
    assert "permutation_null" not in strong and "permutation_null" not in noise
    written = json.loads((tmp_path / "two" / "group" / "summary.json").read_text())
    assert written["feature_sets"]["features"]["permutation_p_adjusted"] == strong["permutation_p_adjusted"]


def test_the_score_the_p_tests_is_recorded_beside_the_mean_over_repeats(tmp_path: Path) -> None:
    """A fresh-user trial read "AUC 0.92 ... permutation p = 0.45 (18 of 40 permutations reached it)" as 18
    permutations reaching 0.92, while p tests the first repeat's AUC (0.70; metrics.parquet's per_repeat). The summary
    now records that score, ``permutation_observed``, for the report to name; p itself is unchanged."""
    y = np.repeat([0, 1], 8)
    samples, sets = _sets(y, effect=0.6, seed=4)
    params = {"n_permutations": 20, "outer_repeats": 3, "n_bootstrap": 50, "feature_sets": ["features"]}
    entry = models.model_outcomes(samples, sets, [GROUP], tmp_path / "m", params)["group"]["feature_sets"]["features"]
    per_repeat = pl.read_parquet(tmp_path / "m" / "group" / "metrics.parquet").filter(
        pl.col("primary"))["per_repeat"][0].to_list()
    assert len(per_repeat) == 3 and entry["value"] == pytest.approx(np.mean(per_repeat))
    assert entry["permutation_observed"] == pytest.approx(per_repeat[0])
    written = json.loads((tmp_path / "m" / "group" / "summary.json").read_text())
    assert written["feature_sets"]["features"]["permutation_observed"] == pytest.approx(per_repeat[0])
