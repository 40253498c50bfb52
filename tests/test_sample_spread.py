"""What the correction did to the study samples (reporting.samplespread): trial F's report gave the QCs' RSD, in-sample
to the QC fit, and only a PCA for the samples."""

from __future__ import annotations

import numpy as np
import polars as pl

from ms2study.io.samplesheet import sample_roles
from ms2study.reporting.samplespread import sample_effects, sample_effects_part


def _matrices(seed: int, batch_sd: float, drift: float, n_batches: int = 3, per_batch: int = 8, p: int = 300):
    rng = np.random.default_rng(seed)
    n = n_batches * per_batch
    ids = [f"S{i:02d}" for i in range(n)]
    batch = np.repeat(np.arange(n_batches), per_batch)
    order = np.arange(n) + 1
    biology = rng.normal(15, 2, (p, 1)) + rng.normal(0, 0.4, (p, n))
    technical = rng.normal(0, batch_sd, (p, n_batches))[:, batch] + drift * rng.normal(0, 1, (p, 1)) * (
        (order - order.mean()) / n)
    sheet = pl.DataFrame({"sample_id": ids, "file": [f"{s}.mzML" for s in ids],
                          "batch": [str(b + 1) for b in batch], "injection_order": order.tolist()})
    def make(logs: np.ndarray) -> pl.DataFrame:
        return pl.DataFrame({"consensus_id": [f"C{j}" for j in range(p)],
                             **{s: np.exp(logs[:, k]) for k, s in enumerate(ids)}})

    return make(biology + technical), make(biology), sample_roles(sheet)


def test_batch_and_order_effects_removed_from_the_samples_are_measured():
    raw, corrected, roles = _matrices(0, batch_sd=0.6, drift=3.0)
    found = sample_effects(raw, corrected, roles)
    (b_before, b_after, b_chance), (o_before, o_after, o_chance) = found["batch"], found["order"]
    assert found["n_samples"] == 24 and found["n_features"] == 300
    assert b_before > 0.5 and b_after < 1.6 * b_chance and o_before > 0.35 and o_after < 1.3 * o_chance
    text = sample_effects_part(raw, corrected, roles)
    assert "the batch explains a median" in text and "% by chance with these batch sizes)" in text
    assert "dilute these numbers" in text and "RSDs measure the drift itself" in text


def test_the_stated_chance_levels_hold_on_null_data():
    """Medians over features of eta² and |rho| on data with no batch or order effect, 20 studies: near the stated
    chance levels (what a reader compares the 'after' numbers with)."""
    batch_ratio, order_ratio = [], []
    for seed in range(20):
        raw, corrected, roles = _matrices(seed, batch_sd=0.0, drift=0.0)
        found = sample_effects(raw, corrected, roles)
        batch_ratio.append(found["batch"][0] / found["batch"][2])
        order_ratio.append(found["order"][0] / found["order"][2])
    assert 0.85 < np.mean(batch_ratio) < 1.15 and 0.85 < np.mean(order_ratio) < 1.15


def test_a_correction_that_raises_the_order_dependence_is_a_caution():
    """Trial G: the sheet's injection orders swapped within batches; the drift fitted at the QCs' positions made the
    samples follow the order more (|rho| 0.14 before, 0.24 after) and 21 false hits followed, with no warning."""
    from ms2study.reporting.html import DOUBT

    corrected, raw, roles = _matrices(4, batch_sd=0.0, drift=3.0)  # "raw" without drift, "corrected" with it
    warnings: list = []
    sample_effects_part(raw, corrected, roles, warnings)
    assert len(warnings) == 1 and warnings[0].kind == DOUBT and "more, not less" in warnings[0]
    raw, corrected, roles = _matrices(4, batch_sd=0.0, drift=3.0)  # the drift removed: nothing
    warnings = []
    sample_effects_part(raw, corrected, roles, warnings)
    assert warnings == []


def test_nothing_without_batches_or_orders_or_with_few_samples():
    raw, corrected, roles = _matrices(1, 0.5, 1.0)
    plain = roles.with_columns(batch=pl.lit("1"), injection_order=pl.lit(None, dtype=pl.Int64))
    assert sample_effects(raw, corrected, plain) is None and sample_effects_part(raw, corrected, plain) == ""
    assert sample_effects(raw, corrected, roles.head(5)) is None
