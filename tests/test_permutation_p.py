"""The models' label-permutation p-value: Besag & Clifford's sequential Monte Carlo p holds its level on data where
the null is true, stops early only when p is clearly large, and keeps the full resolution 1/(n+1) for a strong
model; "auto" gives small studies 100 permutations."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from ms2study.core.paths import models_runtime_minutes, permutation_budget
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
    assert strong == {"p": pytest.approx(1 / 101), "drawn": 100, "reaching": 0, "stopped_early": False,
                      "null_mean": pytest.approx(np.mean([0.5 + 0.001 * k % 0.4 for k in range(100)]))}
    # every third permutation reaches the observed value: stop at the 10th reaching one, the 30th drawn
    weak = evaluate.sequential_permutation_p(0.7, lambda k: 0.9 if k % 3 == 2 else 0.1, 100, 10)
    assert (weak["drawn"], weak["reaching"], weak["stopped_early"]) == (30, 10, True)
    assert weak["p"] == pytest.approx(10 / 30)
    # stop_after 0: the plain Monte Carlo p over all permutations
    full = evaluate.sequential_permutation_p(0.7, lambda k: 0.9 if k % 3 == 2 else 0.1, 100, 0)
    assert (full["drawn"], full["reaching"]) == (100, 33) and full["p"] == pytest.approx(34 / 101)
    with pytest.raises(ValueError):
        evaluate.sequential_permutation_p(0.7, lambda k: 0.0, 0, 10)


def test_auto_gives_20_permutations_per_feature_set_and_small_studies_at_least_100() -> None:
    assert permutation_budget("auto", 16) == 100 and permutation_budget("auto", 100) == 100
    assert permutation_budget("auto", 101) == 20 and permutation_budget("auto", 1000) == 20
    # per feature set compared, so the best of 4 can pass Bonferroni (a trial: 147 samples, 20 permutations, 4 sets:
    # "suggestive only" at AUC 0.98 [0.945, 0.996] as 4 / 21 = 0.19); 6 sets need more than 100 in small studies too
    assert permutation_budget("auto", 147, 4) == 80 and 4 / (80 + 1) < 0.05
    assert permutation_budget("auto", 16, 4) == 100 and permutation_budget("auto", 16, 6) == 120
    assert permutation_budget(7, 16) == 7 and permutation_budget(0, 16) == 0
    for bad in (-1, "all", 2.5, True):
        with pytest.raises(ValueError):
            permutation_budget(bad, 16)
    # the models job's runtime request counts the permutations "auto" gives (random forests only)
    forest = {"models": {"estimator": "random_forest", "n_permutations": "auto"}}
    assert models_runtime_minutes(forest, 16, 1, 30) == models_runtime_minutes(
        {"models": {"estimator": "random_forest", "n_permutations": 100}}, 16, 1, 30)
    from ms2study.core.params import schema_defaults

    n_sets = len(schema_defaults("models")["feature_sets"])
    assert models_runtime_minutes(forest, 200, 1, 30) == models_runtime_minutes(
        {"models": {"estimator": "random_forest", "n_permutations": 20 * n_sets}}, 200, 1, 30)


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
    params = {"n_permutations": 40, "outer_repeats": 1, "n_bootstrap": 200, "feature_sets": ["features"]}
    samples, sets = _sets(y, effect=3.0, seed=0)
    strong = models.model_outcomes(samples, sets, [GROUP], tmp_path / "strong", params)["group"]
    entry = strong["feature_sets"]["features"]
    assert entry["value"] >= 0.9 and entry["permutations_drawn"] == 40 and not entry["permutations_stopped_early"]
    assert entry["permutation_p"] == pytest.approx((1 + entry["permutations_reaching"]) / 41)
    assert strong["params"]["n_permutations"] == 40
    samples, sets = _sets(y, effect=0.0, seed=3)
    null = models.model_outcomes(samples, sets, [GROUP], tmp_path / "null", params)["group"]
    entry = null["feature_sets"]["features"]
    assert entry["permutations_stopped_early"] and entry["permutations_drawn"] < 40
    assert entry["permutation_p"] == pytest.approx(10 / entry["permutations_drawn"]) and entry["permutation_p"] > 0.25
    # "auto" is resolved by the outcome's sample count and written as the integer used
    auto = models.model_outcomes(samples, sets, [GROUP], tmp_path / "auto",
                                 {**params, "n_permutations": "auto"})["group"]
    assert auto["params"]["n_permutations"] == 100 and auto["n_permutations"] == 100
