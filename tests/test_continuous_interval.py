"""The MAE and R² interval of the models stage: the corrected resampled t interval (Nadeau & Bengio 2003, on the
log scale) checked against numbers derived by hand, and its hull with the bootstrap interval in ``summarise_metric``
(coverage on simulated studies: benchmarks/auc_interval.py --continuous-only)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ms2study.modelling import metrics

# Student t with 2 degrees of freedom, 0.975 quantile, in closed form (2p - 1) / sqrt(2p(1 - p)); tables: 4.303
T_2 = 0.95 / math.sqrt(2 * 0.975 * 0.025)


def _three_folds_of_two() -> np.ndarray:
    return np.array([[0, 0, 1, 1, 2, 2]])


def test_mae_interval_by_hand() -> None:
    """Absolute errors 1, 1, 2, 2, 3, 3 in three test folds of two (one repeat): MAE A = 2, influence values a/A
    = 0.5, 0.5, 1, 1, 1.5, 1.5, fold means 0.5, 1, 1.5 with variance 0.25; n_test/n_train = 2/4, J = 3, so
    var = (1/3 + 1/2) 0.25 = 0.208333, and the interval is 2 exp(-/+ t_2 sqrt(var)) = [0.280625, 14.253899]."""
    y = np.zeros(6)
    scores = np.array([[1.0, -1.0, 2.0, -2.0, 3.0, -3.0]])
    low, high = metrics.corrected_t_interval("mae", y, scores, _three_folds_of_two(), 0.95)
    half = T_2 * math.sqrt((1 / 3 + 1 / 2) * 0.25)
    assert (low, high) == pytest.approx((2 * math.exp(-half), 2 * math.exp(half)), rel=1e-9)
    assert (low, high) == pytest.approx((0.280625, 14.253899), abs=1e-6)


def test_r2_interval_by_hand_and_never_above_one() -> None:
    """R²: log(1 - R²) = log(A / B), influence a/A - b/B; the same arithmetic, mapped back by 1 - exp."""
    y = np.array([0.0, 1.0, 2.0, 3.0, 4.0, 5.0])
    errors = np.array([0.5, -0.5, 1.0, -0.2, 0.3, -0.8])
    folds = _three_folds_of_two()
    a, b = errors ** 2, (y - y.mean()) ** 2
    psi = a / a.mean() - b / b.mean()
    fold_means = [psi[folds[0] == f].mean() for f in range(3)]
    half = T_2 * math.sqrt((1 / 3 + 1 / 2) * np.var(fold_means, ddof=1))
    centre = math.log(a.mean() / b.mean())
    low, high = metrics.corrected_t_interval("r2", y, (y + errors)[None, :], folds, 0.95)
    assert (low, high) == pytest.approx((1 - math.exp(centre + half), 1 - math.exp(centre - half)), rel=1e-9)
    assert high < 1.0 and low < 1 - a.mean() / b.mean() < high
    # near-perfect predictions: the whole reported interval stays at or below 1
    rng = np.random.default_rng(0)
    yy = rng.normal(size=16)
    folds16 = np.stack([rng.permutation(np.arange(16) % 4) for _ in range(3)])
    scores = yy + 1e-3 * rng.normal(size=(3, 16))
    stats = metrics.summarise_metric("r2", yy, scores, folds16, metrics.bootstrap_weights(yy, "continuous", 300, 0),
                                     0.95)
    assert stats["value"] > 0.999 and stats["ci_high"] <= 1.0 and stats["ci_corrected_t"][1] < 1.0


def test_hull_is_never_narrower_than_the_bootstrap() -> None:
    """The reported interval holds the bootstrap interval and the corrected t interval; on small noisy studies the
    corrected t interval reaches beyond the bootstrap (what the old, bootstrap-only interval lacked)."""
    rng = np.random.default_rng(1)
    wider = {"mae": 0, "r2": 0}
    for seed in range(10):
        y = rng.normal(size=16)
        folds = np.stack([rng.permutation(np.arange(16) % 5) for _ in range(5)])
        scores = 0.5 * y + rng.normal(size=(5, 16))
        boot = metrics.bootstrap_weights(y, "continuous", 300, seed)
        for name in ("mae", "r2"):
            stats = metrics.summarise_metric(name, y, scores, folds, boot, 0.95, seed)
            (b_low, b_high), (t_low, t_high) = stats["ci_bootstrap"], stats["ci_corrected_t"]
            cap = 1.0 if name == "r2" else math.inf  # R² is at most 1; the hull of two intervals below 1 is too
            assert stats["ci_low"] == min(b_low, t_low) and stats["ci_high"] == min(max(b_high, t_high), cap)
            assert stats["ci_low"] <= stats["value"] <= stats["ci_high"]
            wider[name] += stats["ci_high"] - stats["ci_low"] > b_high - b_low + 1e-9
    assert wider["mae"] >= 5 and wider["r2"] >= 5


def test_undefined_cases_fall_back_to_the_bootstrap() -> None:
    y = np.linspace(0.0, 1.0, 6)
    folds = _three_folds_of_two()
    boot = metrics.bootstrap_weights(y, "continuous", 100, 0)
    # perfect predictions: no error to take the log of
    assert metrics.corrected_t_interval("mae", y, y[None, :], folds, 0.95) is None
    stats = metrics.summarise_metric("mae", y, y[None, :], folds, boot, 0.95)
    assert "ci_corrected_t" not in stats and [stats["ci_low"], stats["ci_high"]] == stats["ci_bootstrap"] == [0, 0]
    # a constant outcome has no R²; a single test fold no split variance; other metrics have their own intervals
    assert metrics.corrected_t_interval("r2", np.ones(6), np.zeros((1, 6)), folds, 0.95) is None
    assert metrics.corrected_t_interval("mae", y, y[None, :] + [1, 2, 3, 1, 2, 3], np.zeros((1, 6), int), 0.95) is None
    assert metrics.corrected_t_interval("roc_auc", y, y[None, :], folds, 0.95) is None
    # a constant error: every fold mean alike, the interval is the point
    low, high = metrics.corrected_t_interval("mae", y, y[None, :] + 0.5, folds, 0.95)
    assert low == pytest.approx(0.5) and high == pytest.approx(0.5)
