"""Feature counts that fall with injection order are a data-quality warning (reporting.runnotes.order_trend_warning):
a trial's sequence lost a third of its features from the first to the last injection and the report said nothing."""

from __future__ import annotations

import numpy as np
import polars as pl

from ms2study.reporting.html import QUALITY, kind_of
from ms2study.reporting.runnotes import feature_count_trend, order_trend_warning, run_warnings


def _qc(counts: np.ndarray, kind: str = "sample", order: np.ndarray | None = None) -> pl.DataFrame:
    n = len(counts)
    return pl.DataFrame({"sample_id": [f"S{i + 1:02d}" for i in range(n)], "sample_type": [kind] * n,
                         "injection_order": (np.arange(1, n + 1) if order is None else order).astype(np.int64),
                         "n_features": np.round(counts).astype(np.int32)})


def test_a_sequence_losing_a_third_of_its_features_is_named_with_its_numbers():
    rng = np.random.default_rng(0)
    counts = np.linspace(3000, 2000, 20) * rng.lognormal(0, 0.03, 20)
    warnings: list[str] = []
    run_warnings(_qc(counts), warnings)
    assert len(warnings) == 1 and kind_of(warnings[0]) == QUALITY
    text = warnings[0]
    assert "study samples' feature counts fall with injection order (20 runs" in text
    assert "from injection 1 to 20" in text and "first run S01" in text and "randomised" in text
    lost = float(text.split("loses ")[1].split(" %")[0])
    assert 30 <= lost <= 50, text  # planted: 1000 of a median 2500 (40 %), measured by the fitted line


def test_qcs_are_judged_apart_from_the_samples_and_blanks_not_at_all():
    rng = np.random.default_rng(1)
    samples = _qc(rng.normal(2500, 60, 16), "sample", np.arange(2, 34, 2))
    qcs = _qc(np.linspace(2600, 1800, 8), "qc", np.arange(1, 33, 4)).with_columns(
        pl.col("sample_id").str.replace("S", "QC"))
    blanks = _qc(np.linspace(900, 100, 6), "blank", np.arange(40, 46))
    warnings: list[str] = []
    order_trend_warning(pl.concat([samples, qcs, blanks]), warnings)
    assert len(warnings) == 1 and "pooled QCs' feature counts fall" in warnings[0], warnings


def test_no_warning_for_a_small_or_flat_or_rising_sequence_or_without_injection_order():
    rng = np.random.default_rng(2)
    for counts in (np.linspace(3000, 2800, 20),                      # 7 % lost: within a stable instrument's drift
                   np.linspace(2000, 3000, 20),                      # rising
                   rng.normal(2500, 100, 20),                        # flat
                   np.linspace(3000, 1000, 5)):                      # too few runs to judge
        warnings: list[str] = []
        order_trend_warning(_qc(counts), warnings)
        assert warnings == [], (counts, warnings)
    warnings = []
    order_trend_warning(_qc(np.linspace(3000, 1000, 20)).with_columns(pl.lit(None, pl.Int64).alias(
        "injection_order")), warnings)
    order_trend_warning(_qc(np.linspace(3000, 1000, 20)).drop("injection_order"), warnings)
    assert warnings == []


def test_its_rate_on_sequences_without_a_trend_is_below_one_percent():
    """Null sequences: counts independent of the order, with run-to-run spread from 3 to 40 % (a noisy lab's)."""
    rng = np.random.default_rng(3)
    fired = 0
    n_null = 600
    for i in range(n_null):
        n = int(rng.integers(6, 60))
        spread = float(rng.uniform(0.03, 0.4))
        counts = 2500 * rng.lognormal(0, spread, n)
        trend = feature_count_trend(np.arange(1, n + 1, dtype=float), counts)
        fired += trend is not None and trend["rho"] <= -0.5 and trend["p"] < 0.01 and trend["drop"] <= -0.2
    assert fired / n_null <= 0.01, fired
    # and the planted fall of the first test is found at these spreads when the sequence is long enough
    found = 0
    for i in range(100):
        counts = np.linspace(3000, 2000, 30) * rng.lognormal(0, 0.1, 30)
        trend = feature_count_trend(np.arange(1, 31, dtype=float), counts)
        found += trend["rho"] <= -0.5 and trend["p"] < 0.01 and trend["drop"] <= -0.2
    assert found >= 90, found
