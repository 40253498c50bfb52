"""The balanced accuracy interval of the models stage: Wilson's score interval for each class's recall combined by
MOVER (Zou & Donner 2008, Stat Med 27:1693) into an interval for their mean, checked against numbers worked out by
hand from the formulas, and its hull with the bootstrap interval in ``summarise_metric``."""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np
import pytest
from test_auc_interval import _cv_layout

from ms2study.modelling import metrics

Z = NormalDist().inv_cdf(0.975)


def _wilson_by_hand(x: float, n: float) -> tuple[float, float]:
    """Wilson (1927): (p + z²/2n ± z sqrt(p(1-p)/n + z²/4n²)) / (1 + z²/n), p = x/n."""
    p, z2 = x / n, Z * Z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = Z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return centre - half, centre + half


def _mover_by_hand(recalls: list[float], sizes: list[int]) -> tuple[float, float]:
    """MOVER for the mean of k independent proportions: mean -/+ sqrt(sum of squared distances to the Wilson ends)
    / k."""
    k = len(recalls)
    ends = [_wilson_by_hand(r * n, n) for r, n in zip(recalls, sizes)]
    mean = sum(recalls) / k
    return (mean - math.sqrt(sum((r - lo) ** 2 for r, (lo, _) in zip(recalls, ends))) / k,
            mean + math.sqrt(sum((hi - r) ** 2 for r, (_, hi) in zip(recalls, ends))) / k)


def _recalls_by_hand(y: np.ndarray, predicted: np.ndarray, folds: np.ndarray, n_classes: int) -> np.ndarray:
    """Per-class recall, averaged over the test folds of each repeat and then over repeats."""
    out = np.zeros(n_classes)
    for r in range(folds.shape[0]):
        for c in range(n_classes):
            per_fold = [np.mean(predicted[r][(folds[r] == f) & (y == c)] == c) for f in np.unique(folds[r])]
            out[c] += np.mean(per_fold) / folds.shape[0]
    return out


def test_wilson_interval_is_the_textbook_one() -> None:
    for x, n in ((8, 8), (0, 8), (4, 8), (7, 20), (3.4, 9)):
        low, high = metrics.wilson_interval(x, n, 0.95)
        assert (float(low), float(high)) == pytest.approx(_wilson_by_hand(x, n), abs=1e-12), (x, n)
    # all correct: the lower end is n / (n + z²), 0.676 for 8 of 8
    assert float(metrics.wilson_interval(8, 8, 0.95)[0]) == pytest.approx(8 / (8 + Z * Z), abs=1e-12)
    assert float(metrics.wilson_interval(8, 8, 0.95)[0]) == pytest.approx(0.6756, abs=1e-4)
    # vectorised, undefined without trials, wider at a higher level
    low, high = metrics.wilson_interval(np.array([1.0, 2.0, 0.0]), np.array([2.0, 4.0, 0.0]), 0.95)
    assert low.shape == (3,) and math.isnan(low[2]) and math.isnan(high[2])
    assert metrics.wilson_interval(6, 8, 0.99)[0] < metrics.wilson_interval(6, 8, 0.95)[0]


def test_mover_interval_for_the_mean_of_recalls() -> None:
    # perfect separation, 8 vs 8: 1 - (1 - 8/(8 + z²)) / sqrt(2) = 0.771
    low, high = metrics.balanced_accuracy_score_interval(np.array([1.0, 1.0]), np.array([8, 8]), 0.95)
    expected_low = 1 - (1 - 8 / (8 + Z * Z)) / math.sqrt(2)
    assert low == pytest.approx(expected_low, abs=1e-12) and high == pytest.approx(1.0)
    assert low == pytest.approx(0.7706, abs=1e-4)
    # unequal recalls and class sizes, three classes
    for recalls, sizes in (([0.75, 0.5], [8, 8]), ([0.9, 0.6], [10, 5]), ([1.0, 0.8, 0.5], [4, 5, 6])):
        got = metrics.balanced_accuracy_score_interval(np.array(recalls), np.array(sizes), 0.95)
        assert got == pytest.approx(_mover_by_hand(recalls, sizes), abs=1e-12), (recalls, sizes)
    # one class: Wilson's interval itself; an empty class or an undefined recall is left out
    assert metrics.balanced_accuracy_score_interval(np.array([0.75]), np.array([8]), 0.95) == pytest.approx(
        _wilson_by_hand(6, 8), abs=1e-12)
    assert metrics.balanced_accuracy_score_interval(np.array([0.75, 0.2, np.nan]), np.array([8, 0, 3]),
                                                    0.95) == pytest.approx(_wilson_by_hand(6, 8), abs=1e-12)
    assert all(math.isnan(v) for v in metrics.balanced_accuracy_score_interval(np.array([0.5]), np.array([0]), 0.95))
    with pytest.raises(ValueError, match="shape"):
        metrics.balanced_accuracy_score_interval(np.array([0.5, 0.5]), np.array([8]), 0.95)


def test_perfect_separation_no_longer_gives_one_one() -> None:
    """8 vs 8, every test fold perfectly separated in every repeat: the bootstrap interval is [1, 1]; the reported
    one keeps the width 8 samples per class imply (the repeats reuse the samples, so 8, not 40, trials per class)."""
    y = np.repeat([0, 1], 8)
    folds = _cv_layout(y)
    scores = np.stack([0.1 + 0.8 * y + 0.01 * np.random.default_rng(r).random(16) for r in range(5)])
    boot = metrics.bootstrap_weights(y, "binary", 500, 0)
    stats = metrics.summarise_metric("balanced_accuracy", y, scores, folds, boot, 0.95)
    assert stats["value"] == 1.0 and stats["ci_bootstrap"] == [1.0, 1.0]
    expected_low = 1 - (1 - 8 / (8 + Z * Z)) / math.sqrt(2)
    assert stats["ci_low"] == pytest.approx(expected_low, abs=1e-12) and stats["ci_high"] == 1.0
    assert stats["ci_low"] < 0.8 and stats["ci_score"] == [stats["ci_low"], 1.0]


def test_interval_holds_the_estimate_and_is_never_narrower_than_the_bootstrap() -> None:
    y = np.repeat([0, 1], [7, 9])
    folds = _cv_layout(y)
    boot = metrics.bootstrap_weights(y, "binary", 400, 0)
    covered = 0
    for seed in range(20):
        rng = np.random.default_rng(seed)
        # predictions unrelated to the labels (seeds 0-9) or informative (10-19)
        scores = rng.random((5, 16)) if seed < 10 else np.clip(0.3 * y + 0.7 * rng.random((5, 16)), 0, 1)
        stats = metrics.summarise_metric("balanced_accuracy", y, scores, folds, boot, 0.95)
        (b_low, b_high), (s_low, s_high) = stats["ci_bootstrap"], stats["ci_score"]
        assert stats["ci_low"] == min(b_low, s_low) and stats["ci_high"] == max(b_high, s_high)
        assert stats["ci_low"] <= b_low and stats["ci_high"] >= b_high
        assert stats["ci_low"] <= stats["value"] <= stats["ci_high"]
        assert s_low <= stats["value"] <= s_high
        # the score interval is MOVER on the per-class recalls averaged over folds and repeats, class sizes 7 and 9
        recalls = _recalls_by_hand(y, (scores >= 0.5).astype(int), folds, 2)
        assert recalls.mean() == pytest.approx(stats["value"], abs=1e-12)
        assert (s_low, s_high) == pytest.approx(_mover_by_hand(list(recalls), [7, 9]), abs=1e-12)
        covered += seed >= 10 or stats["ci_low"] <= 0.5 <= stats["ci_high"]
    assert covered == 20


def test_multiclass_balanced_accuracy_interval() -> None:
    y = np.repeat([0, 1, 2], [4, 5, 6])
    folds = _cv_layout(y, "multiclass")
    boot = metrics.bootstrap_weights(y, "multiclass", 300, 0)
    # perfect: the mean of three recalls of 1 from 4, 5 and 6 samples
    perfect = np.stack([np.eye(3)[y] * 0.9 + 0.05 for _ in range(5)])
    stats = metrics.summarise_metric("balanced_accuracy", y, perfect, folds, boot, 0.95)
    expected_low = 1 - math.sqrt(sum((1 - n / (n + Z * Z)) ** 2 for n in (4, 5, 6))) / 3
    assert stats["ci_bootstrap"] == [1.0, 1.0]
    assert stats["ci_low"] == pytest.approx(expected_low, abs=1e-12) and stats["ci_high"] == 1.0
    # noisy: three recalls averaged over folds and repeats, the hull never narrower than the bootstrap
    rng = np.random.default_rng(3)
    proba = rng.dirichlet(np.ones(3), size=(5, 15)) + 0.6 * np.eye(3)[y][None]
    stats = metrics.summarise_metric("balanced_accuracy", y, proba, folds, boot, 0.95)
    recalls = _recalls_by_hand(y, proba.argmax(axis=2), folds, 3)
    assert recalls.mean() == pytest.approx(stats["value"], abs=1e-12)
    assert stats["ci_score"] == pytest.approx(list(_mover_by_hand(list(recalls), [4, 5, 6])), abs=1e-12)
    assert stats["ci_low"] <= min(stats["ci_bootstrap"][0], stats["value"])
    assert stats["ci_high"] >= max(stats["ci_bootstrap"][1], stats["value"])


def test_mae_and_r2_hull_the_bootstrap_with_the_corrected_t_interval() -> None:
    yc = np.linspace(0, 1, 16)
    folds = _cv_layout(np.repeat([0, 1], 8))
    boot = metrics.bootstrap_weights(yc, "continuous", 200, 0)
    for name in ("mae", "r2"):
        stats = metrics.summarise_metric(name, yc, yc[None, :] + 0.1 * np.sin(np.arange(5))[:, None], folds, boot,
                                         0.95)
        assert "ci_score" not in stats and "ci_corrected_t" in stats
        assert stats["ci_low"] <= stats["ci_bootstrap"][0] and stats["ci_high"] >= stats["ci_bootstrap"][1]
