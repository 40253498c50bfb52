"""Features detected in one batch only: the mark's chance under the null, its power, and the corrected matrix's column
and record (correction.presence, correction.matrix)."""

from __future__ import annotations

from math import comb

import numpy as np
import polars as pl
import pytest

from ms2study.correction.matrix import correct_matrix
from ms2study.correction.presence import BATCH_ONLY_ALPHA, batch_only, expected_by_chance
from ms2study.io.samplesheet import sample_roles


def test_chance_of_a_mark_when_detection_does_not_depend_on_the_batch() -> None:
    rng = np.random.default_rng(7)
    for sizes in ((12, 12), (8, 8, 8), (4, 10, 6)):
        n_runs, n_features = sum(sizes), 20_000
        batches = [f"B{b}" for b, n in enumerate(sizes) for _ in range(n)]
        rate = rng.uniform(0.02, 0.9, n_features)[:, None]  # each feature's own detection rate, the same in all batches
        detected = np.where(rng.random((n_features, n_runs)) < rate, 1.0, np.nan)
        names, p = batch_only(detected, np.ones(n_runs, dtype=bool), batches)
        marked = np.array([n is not None for n in names])
        assert marked.mean() <= BATCH_ONLY_ALPHA  # the promise: at most alpha of null features marked
        assert np.all(p[marked] < BATCH_ONLY_ALPHA) and not np.isnan(p[marked]).any()
        # the number the report gives as expected by chance is what the null gives (Poisson spread; trial AN)
        expected = expected_by_chance(detected, np.ones(n_runs, dtype=bool), batches)
        assert 1 < expected < BATCH_ONLY_ALPHA * n_features
        assert abs(marked.sum() - expected) <= 4 * np.sqrt(expected), (sizes, marked.sum(), expected)


def test_the_chance_is_the_hypergeometric_one_and_a_real_batch_feature_is_marked() -> None:
    batches = ["A"] * 12 + ["B"] * 12
    detected = np.full((4, 24), np.nan)
    detected[0, :2] = 1.0          # 2 runs of A: common by chance
    detected[1, :6] = 1.0          # 6 runs of A
    detected[2, 12:19] = 1.0       # 7 runs of B
    detected[3, [0, 1, 12]] = 1.0  # both batches
    names, p = batch_only(detected, np.ones(24, dtype=bool), batches)
    assert p[0] == pytest.approx(2 * comb(12, 2) / comb(24, 2)) and p[1] == pytest.approx(2 * comb(12, 6) / comb(24, 6))
    assert p[2] == pytest.approx(2 * comb(12, 7) / comb(24, 7)) and np.isnan(p[3])
    assert names == [None, None, "B", None]
    # runs that do not count (blanks) neither detect nor make a batch
    counted = np.array([True] * 12 + [False] * 12)
    assert batch_only(detected, counted, batches)[0] == [None] * 4  # one counted batch: nothing to compare
    assert expected_by_chance(detected, counted, batches) == 0.0
    # only the features whose count could be marked add their chance: 6 runs (0.014) cannot, 7 (0.0046) can
    assert expected_by_chance(detected, np.ones(24, dtype=bool), batches) == pytest.approx(p[2])
    with pytest.raises(ValueError, match="disagree"):
        batch_only(detected, counted[:5], batches)


def test_the_corrected_matrix_marks_a_contaminant_of_one_batch() -> None:
    rng = np.random.default_rng(3)
    ids = [f"S{i:02d}" for i in range(24)] + ["BL1", "BL2"]
    sheet = pl.DataFrame({"sample_id": ids, "file": [f"{s}.mzML" for s in ids],
                          "batch": ["1"] * 12 + ["2"] * 12 + ["1", "2"],
                          "sample_type": [""] * 24 + ["blank", "blank"]})
    values = np.exp(rng.normal(12, 0.3, (30, 26)))
    values[:, 24:] = np.nan
    values[0, 12:24] = np.nan   # batch 1's contaminant: in every run of batch 1, no run of batch 2
    values[0, 25] = 5e4         # a blank of batch 2 detecting it does not make it a batch-2 feature
    values[1, :20] = np.nan     # 4 runs of batch 2: too few to say
    matrix = pl.DataFrame({"consensus_id": [f"C{j}" for j in range(30)], "mz": np.linspace(100, 400, 30),
                           "rt_s": np.linspace(30, 600, 30),
                           "n_detected": np.isfinite(values).sum(axis=1).astype(np.int32), **{s: values[:, j] for j, s in enumerate(ids)}})
    out = correct_matrix(matrix, sample_roles(sheet), {"adducts": False})
    assert out.matrix["batch_only"].to_list() == ["1"] + [None] * 29
    assert out.report["batch_only"] == {"1": 1}
    one = correct_matrix(matrix, sample_roles(sheet.with_columns(batch=pl.lit("1"))), {"adducts": False})
    assert one.matrix["batch_only"].null_count() == 30 and one.report["batch_only"] == {}


def test_the_report_lists_them_and_cautions_on_hits_among_them() -> None:
    from ms2study.reporting.batch import counts_table
    from ms2study.reporting.batchonly import batch_only_of, batch_only_part, batch_only_warning

    corrected = pl.DataFrame({"consensus_id": ["C1", "C2", "C3"], "mz": [100.0, 200.0, 300.0], "rt_s": [1.0, 2.0, 3.0],
                              "n_detected": [5, 9, 20], "batch_only": ["2", "1", None],
                              "excluded": [True, False, False]})
    part = batch_only_part(corrected)
    assert "2 consensus feature(s) (batch 1: 1, batch 2: 1)" in part and "less than 1%" in part
    assert part.index("C2") < part.index("C1") and "C3" not in part  # most often detected first
    assert batch_only_part(corrected.drop("batch_only")) == "" and batch_only_part(corrected.head(0)) == ""
    assert "detected in one batch only (a mark; kept)</td><td class=\"num\">2 (batch 2: 1, batch 1: 1)" in counts_table(
        {"batch_only": {"2": 1, "1": 1}}, None).replace("\n", "")
    assert ("0 (about 0.6 expected by chance if detection did not depend on the batch)" in
            counts_table({"batch_only": {}, "batch_only_expected": 0.63}, None))
    assert "a marked feature that is tested carries it" in part
    tested = pl.DataFrame({"consensus_id": ["C1", "C2", "C3"], "q_value": [0.01, 0.2, 0.001]})
    joined = batch_only_of(tested, corrected)
    assert joined["batch_only"].to_list() == ["2", "1", None]
    assert "batch_only" not in batch_only_of(tested.filter(pl.col("consensus_id") == "C3"), corrected).columns
    warnings: list = []
    batch_only_warning(joined, "group", warnings)
    assert len(warnings) == 1 and "1 of the 2 features at q &lt; 0.05 were detected in one batch only (C1 (batch 2)" in \
        warnings[0] and warnings[0].concerns == ("differential:group",)
    batch_only_warning(batch_only_of(tested.filter(pl.col("consensus_id") != "C1"), corrected), "group", warnings)
    assert len(warnings) == 1  # the marked feature C2 is no hit: nothing to say
