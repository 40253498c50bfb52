"""The bag of chemistry's benchmarks: biology.py learns the prototypes the pipeline ships (k and seed of
config/config.yaml's pool.prototypes), and the issue-12 probe (benchmarks/chemical_space_probe.py) measures a
region's dilution and its Welch t correctly. The bag itself is tested in test_pool.py and test_models.py."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from scipy import stats

REPO = Path(__file__).resolve().parents[1]


def _benchmark(name: str):
    sys.path.insert(0, str(REPO / "benchmarks"))
    return __import__(name)


def test_biology_benchmark_learns_the_shipped_prototypes() -> None:
    """The sweep measured k = 32 while a pipeline run learns k = 64 (issue 12 follow-up): the benchmark now takes k
    and the k-means seed from the pool section's defaults, which config/config.yaml states."""
    biology = _benchmark("biology")
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())["pool"]["prototypes"]
    args = biology.arguments().parse_args(["--out", "x.json"])
    assert args.prototypes == config["k"] and biology.PROTOTYPES["seed"] == config["seed"]
    assert biology.arguments().parse_args(["--out", "x.json", "--prototypes", "128"]).prototypes == 128


def test_region_dilution_counts_the_planted_share_of_each_region() -> None:
    """Four features, two regions: region 0 holds a planted feature of abundance 10 among 990 of others (share 1 %),
    region 1 a planted one alone; NaN and negative abundances count 0, as in chemistry_sample. Tripling the planted
    feature of region 0 moves that region's log total by log(1 + 0.01 * 2), about 0.02: the dilution the probe
    reports."""
    probe = _benchmark("chemical_space_probe")
    weights = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.5, 0.5]])
    abundance = np.array([10.0, 990.0, 40.0, np.nan])
    planted = np.array([True, False, True, False])
    out = probe.region_dilution(weights, abundance, planted)
    np.testing.assert_allclose(out["total"], [1000.0, 40.0])
    np.testing.assert_allclose(out["planted"] / out["total"], [0.01, 1.0])
    np.testing.assert_allclose(out["n_features"], [2.5, 1.5])
    np.testing.assert_allclose(out["n_planted"], [1.0, 1.0])
    tripled = probe.region_dilution(weights, np.array([30.0, 990.0, 120.0, -5.0]), planted)
    shift = np.log(tripled["total"] / out["total"])
    assert shift == pytest.approx([np.log(1.02), np.log(3.0)])


def test_welch_t_matches_scipy_and_leaves_out_missing_values() -> None:
    probe = _benchmark("chemical_space_probe")
    rng = np.random.default_rng(0)
    matrix = rng.normal(size=(16, 3))
    matrix[:8, 0] += 2.0
    matrix[3, 1] = np.nan
    matrix[:, 2] = 1.0  # no spread: no t
    case = np.arange(16) < 8
    t = probe.welch_t(matrix, case)
    expected = [stats.ttest_ind(matrix[case, 0], matrix[~case, 0], equal_var=False).statistic,
                stats.ttest_ind(np.delete(matrix[case, 1], 3), matrix[~case, 1], equal_var=False).statistic]
    np.testing.assert_allclose(t[:2], expected)
    assert t[0] > 2 and np.isnan(t[2])
