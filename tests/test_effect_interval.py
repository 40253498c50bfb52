"""The differential analysis's effect-size intervals (ms2study.modelling.effect_interval) on simulated studies
where the true log2 fold change is known: coverage near 95 % on features measured in every sample, none given where
a value was filled, and far below 95 % if one were computed on filled values (why none is given)."""

from __future__ import annotations

import numpy as np
import pytest

from ms2study.modelling.effect_interval import effect_intervals
from ms2study.modelling.univariate import fill_missing


def _study(seed: int, n_per_class: int, m: int = 400) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """m features x 2n samples of log2 intensities: feature variances from a scaled inverse chi-square (the prior
    limma assumes, 4 df around 0.3^2), a third of the features with a true log2 fold change in [-1.5, 1.5]."""
    rng = np.random.default_rng(seed)
    n = 2 * n_per_class
    case = np.arange(n) < n_per_class
    sd = np.sqrt(4 * 0.3 ** 2 / rng.chisquare(4, m))
    truth = np.where(rng.random(m) < 1 / 3, rng.uniform(-1.5, 1.5, m), 0.0)
    values = rng.normal(16, 2, m)[:, None] + truth[:, None] * case[None, :] + rng.normal(0, 1, (m, n)) * sd[:, None]
    design = np.column_stack([np.ones(n), case.astype(float)])
    return values, design, truth


@pytest.mark.parametrize("n_per_class", [4, 6, 12])
def test_intervals_cover_the_true_fold_change_where_every_value_was_measured(n_per_class: int) -> None:
    covered = total = 0
    for seed in range(5):
        values, design, truth = _study(seed, n_per_class)
        low, high = effect_intervals(values, design, np.zeros(values.shape[0], dtype=int))
        assert np.isfinite(low).all() and (high > low).all()
        covered += int(((low <= truth) & (truth <= high)).sum())
        total += truth.size
    assert 0.93 <= covered / total <= 0.97


def test_no_interval_where_a_value_was_filled_and_one_on_filled_values_would_not_hold() -> None:
    covered = total = 0
    for seed in range(5):
        values, design, truth = _study(seed, 6)
        limit = np.quantile(values, 0.25)  # a quarter of the cells below the instrument's detection limit
        log2 = np.where(values >= limit, values, np.nan)
        seen = (~np.isnan(log2)).sum(axis=1) >= 2  # the differential analysis tests detected features only
        log2, truth = log2[seen], truth[seen]
        filled, _ = fill_missing(log2, "half_minimum", 0.0)
        n_filled = np.isnan(log2).sum(axis=1)
        low, _ = effect_intervals(filled, design, n_filled)
        assert np.isnan(low[n_filled > 0]).all() and np.isfinite(low[n_filled == 0]).all()
        # computed anyway on the filled values (what the module refuses to report):
        some = n_filled > 0
        naive_low, naive_high = effect_intervals(filled[some], design, np.zeros(int(some.sum()), dtype=int))
        covered += int(((naive_low <= truth[some]) & (truth[some] <= naive_high)).sum())
        total += int(some.sum())
    assert total > 100 and covered / total < 0.92  # 90 % on 20 such studies
