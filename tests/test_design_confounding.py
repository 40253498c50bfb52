"""An outcome tied to a sheet column that is neither an outcome nor a covariate (reporting.confounding.design_cautions).

A trial relabelled a spike-in study of real Q Exactive runs so that the groups equalled the batch and the source
injection each sample copies: 461 features "differed" (all run-to-run differences, none planted) and nothing said the
design could not separate them."""

from __future__ import annotations

import numpy as np
import polars as pl

from ms2study.reporting.confounding import design_cautions, design_ties
from ms2study.reporting.html import DOUBT

GROUP = {"column": "group", "type": "binary", "positive_class": "case"}


def _sheet(n: int = 16, **columns) -> pl.DataFrame:
    ids = [f"S{i:02d}" for i in range(n)]
    return pl.DataFrame({"sample_id": ids, "file": [f"mzml/{s}.mzML" for s in ids], **columns})


def test_groups_equal_to_the_batch_and_the_source_run_are_a_caution():
    case = np.arange(16) >= 8
    sheet = _sheet(group=np.where(case, "case", "control").tolist(), batch=np.where(case, "B1", "B2").tolist(),
                   background=np.where(case, "QC_04", "QC_05").tolist(),
                   injection_order=np.random.default_rng(0).permutation(16) + 1,
                   subject_id=[f"P{i // 2}" for i in range(16)], note=[f"n{i}" for i in range(16)])
    found = design_cautions(sheet, [GROUP], [])
    assert len(found) == 1 and found[0].kind == DOUBT
    text = found[0]
    assert "<b>batch</b>" in text and "<b>background</b>" in text and "Cramér's V² 1.00" in text
    assert "batch B1: 8 case, 0 control" in text and "every group in every batch" in text
    # a column splitting the samples exactly as the outcome: a copy of it, or a design factor (trial AQ)
    assert "Background splits the samples exactly as group does" in text and "covariates: [" not in text
    # the run order was randomised, the subject is no design factor, a note per sample is no factor
    assert "injection_order" not in text and "<b>subject_id</b>" not in text and "note" not in found[0].label
    assert found[0].concerns == ("models:group", "differential:group")
    assert found[0].label == "group confounded with batch, background"
    # a column already configured as a covariate is judged by overlap_cautions, an outcome by association_cautions
    assert "background" not in design_cautions(sheet, [GROUP], ["background"])[0]
    score = {"column": "background", "type": "binary", "positive_class": "QC_04"}
    by_outcome = {c.label.split(" ")[0]: c for c in design_cautions(sheet, [GROUP, score], [])}
    assert by_outcome["group"].label == "group confounded with batch"
    assert by_outcome["background"].label == "background confounded with batch"


def test_groups_run_one_after_the_other_are_a_caution():
    order = np.arange(16) + 1
    sheet = _sheet(group=np.where(order <= 8, "case", "control").tolist(), injection_order=order)
    found = design_cautions(sheet, [GROUP], [])
    assert len(found) == 1 and "<b>injection_order</b>" in found[0] and "rank-biserial r 1.00" in found[0]
    assert "case 1-8; control 9-16" in found[0] and "randomise the run order" in found[0]
    # a run order with the groups alternating: nothing
    assert design_cautions(_sheet(group=np.where(order % 2 == 0, "case", "control").tolist(),
                                  injection_order=order), [GROUP], []) == []


def test_continuous_and_multiclass_outcomes():
    rng = np.random.default_rng(1)
    batch = np.repeat(["A", "B", "C"], 6)
    score = np.where(batch == "A", 1.0, np.where(batch == "B", 5.0, 9.0)) + rng.normal(0, 0.3, 18)
    sheet = _sheet(18, score=score, batch=batch.tolist(), injection_order=rng.permutation(18) + 1)
    found = design_cautions(sheet, [{"column": "score", "type": "continuous"}], [])
    assert len(found) == 1 and "eta²" in found[0] and "<b>batch</b>" in found[0]
    arm = {"column": "arm", "type": "multiclass"}
    sheet = _sheet(18, arm=np.repeat(["low", "mid", "high"], 6).tolist(), injection_order=np.arange(18) + 1)
    tie = design_ties(sheet, arm, "injection_order")
    assert tie is not None and tie[0] >= 1 and "Kruskal-Wallis" in tie[1]
    assert design_ties(sheet, arm, "arm") is not None  # the function itself compares any two columns


def test_designs_randomised_as_a_lab_does_are_not_flagged():
    """Groups dealt evenly over the batches and the run order shuffled within each batch (blocked randomisation):
    no caution in 99 % or more of 400 draws of 2 x 8, 3 x 4, 4 x 2, 4 x 4, 3 x 8, 2 x 12 and 4 x 10 layouts
    (batches x samples per batch; measured once, 6 of 2,800 flagged); here 100 draws each, at most 2 flagged."""
    rng = np.random.default_rng(11)
    for batches, per in ((2, 8), (3, 4), (4, 2), (4, 4), (3, 8), (2, 12), (4, 10)):
        flagged = 0
        for _ in range(100):
            group = np.concatenate([rng.permutation(np.repeat(["case", "control"], per // 2)) for _ in range(batches)])
            order = np.concatenate([rng.permutation(per) + 1 + b * per for b in range(batches)])
            sheet = _sheet(batches * per, group=group.tolist(),
                           batch=np.repeat([str(b + 1) for b in range(batches)], per).tolist(), injection_order=order)
            flagged += bool(design_cautions(sheet, [GROUP], []))
        assert flagged <= 2, (batches, per, flagged)


def test_random_designs_are_rarely_flagged():
    """Groups drawn freely (not dealt evenly) over batches and the run order, an unrelated categorical column (a
    plate of 2-4 levels) and an unrelated number: a caution in under 5 % of the draws, and then the draw is truly
    unbalanced (7 of 8 cases in one batch is Cramér's V² 0.56)."""
    rng = np.random.default_rng(7)
    flagged, n_designs = 0, 1000
    for i in range(n_designs):
        n = (16, 24)[i % 2]
        group = rng.permutation(np.repeat(["case", "control"], n // 2))
        sheet = _sheet(n, group=group.tolist(), batch=rng.choice(["1", "2", "3"][:2 + i % 2], n).tolist(),
                       plate=rng.choice(list("ABCD")[:2 + i % 3], n).tolist(), injection_order=rng.permutation(n) + 1,
                       weight=rng.normal(70, 10, n))
        flagged += bool(design_cautions(sheet, [GROUP], []))
    assert flagged / n_designs < 0.05


def test_groups_run_first_within_every_batch_are_a_caution():
    """Trial G: the cases were the first 4 of 8 runs in each of 3 batches; the study-wide order correlation was 0.33
    and nothing was said, while a drift corrected at the sheet's (wrong) positions made 21 false hits."""
    order = np.arange(24) + 1
    batch = np.repeat(["1", "2", "3"], 8)
    first = (np.arange(24) % 8) < 4
    sheet = _sheet(24, group=np.where(first, "case", "control").tolist(), batch=batch.tolist(), injection_order=order)
    found = design_cautions(sheet, [GROUP], [])
    assert len(found) == 1 and "<b>injection_order</b>" in found[0]
    assert "within its 3 batches, rank correlation 1.00" in found[0]
    # alternating within the batches: nothing (and the random designs test keeps its under-1 % rate)
    sheet = _sheet(24, group=np.where(np.arange(24) % 2 == 0, "case", "control").tolist(), batch=batch.tolist(),
                   injection_order=order)
    assert design_cautions(sheet, [GROUP], []) == []


def test_near_complete_confounding_numeric_factors_and_a_class_named_x():
    """Trial J: 7 of 8 cases in one batch passed (V² 0.56 under the old 0.8); plate 1/2/3 written as numbers was read
    as a number, not a factor; a class called 'x' crashed the report (a pivot's column clash)."""
    group = ["case"] * 8 + ["control"] * 8
    near = _sheet(group=group, batch=["1"] * 7 + ["2"] + ["1"] + ["2"] * 7)
    assert "Cramér's V² 0.56" in design_cautions(near, [GROUP], [])[0]
    plates = _sheet(group=group, plate=[1, 3] * 4 + [2] * 8)
    assert "<b>plate</b>" in design_cautions(plates, [GROUP], [])[0]
    named_x = _sheet(group=["x"] * 8 + ["y"] * 8, batch=["1"] * 8 + ["2"] * 8)
    found = design_cautions(named_x, [{"column": "group", "type": "binary", "positive_class": "x"}], [])
    assert "batch 1: 8 x, 0 y" in found[0]


def test_a_copy_of_the_outcome_is_told_apart_from_a_partial_tie():
    """Trial AQ: a 0/1 copy of the outcome and a contrast column made from a 3-class outcome (the README's advice for
    paired designs) were cautioned as confounds with no word that they may be the outcome itself."""
    case = np.arange(18) % 3
    treatment = np.array(["apple", "baseline", "cranberry"])[case]
    contrast = np.where(case == 0, "apple", np.where(case == 1, "baseline", "")).tolist()
    plate = np.where(np.arange(18) < 12, "P1", "P2")
    plate[[0, 4]] = ["P2", "P2"]
    sheet = _sheet(18, treatment=treatment.tolist(), apple_vs_base=contrast, plate=plate.tolist())
    found = design_cautions(sheet, [{"column": "apple_vs_base", "type": "binary", "positive_class": "apple"}], [])
    assert len(found) == 1 and "Treatment splits the samples exactly as apple_vs_base does" in found[0]
    copy = _sheet(group=np.where(np.arange(16) >= 8, "case", "control").tolist(),
                  male=np.where(np.arange(16) >= 8, "1", "0").tolist())
    assert "Male splits the samples exactly" in design_cautions(copy, [GROUP], [])[0]


def test_an_outcome_partly_tied_to_the_batch_is_a_data_quality_caution():
    """Trial BA: age 41.9 vs 56.9 years between two batches of 8 (eta² 0.39, under the 0.5 of the design caution)
    was said nowhere, while 78 % of features falling with age read as a dilution. Now a caution on the conclusions
    (trial BD: as a data-quality note the run's summary never showed it) names the outcome per batch and how to
    adjust for the batch; a weaker or chance-level tie, and a full one (the design caution's), give none."""
    from ms2study.reporting.confounding import partial_batch_caution

    rng = np.random.default_rng(3)
    batch = np.repeat(["1", "2"], 8)
    age = np.where(batch == "1", 42.0, 57.0) + rng.normal(0, 9, 16)
    age_spec = {"column": "age", "type": "continuous"}
    sheet = _sheet(group=np.tile(["case", "control"], 8).tolist(), age=age.round(0).tolist(), batch=batch.tolist(),
                   injection_order=np.arange(16) + 1)
    tie = design_ties(sheet, age_spec, "batch")
    assert 0.6 <= tie[0] < 1, tie  # eta² in [0.3, 0.5)
    found = [c for c in design_cautions(sheet, [GROUP, age_spec], []) if c.label == "age partly tied to batch"]
    assert len(found) == 1 and found[0].kind == DOUBT and found[0].concerns == ("models:age", "differential:age")
    assert "copy the sheet's batch column under another name (e.g. batch_factor" in found[0]
    assert "outcome <b>age</b> differs between the batches (mean " in found[0] and " in batch 1, " in found[0]
    assert "one-way ANOVA p " in found[0] and "(a study-wide shift with age among them)" in found[0]
    # the group dealt evenly over the batches: nothing; a full tie is the design caution's, not this one's
    assert partial_batch_caution(sheet, GROUP) is None
    full = sheet.with_columns(pl.Series("age", np.where(batch == "1", 40.0, 60.0) + rng.normal(0, 1, 16)))
    assert partial_batch_caution(full, age_spec) is None
    assert any("confounded with batch" in c.label for c in design_cautions(full, [age_spec], []))
    # an age drawn at random over the batches: a caution in under 5 % of 400 draws
    flagged = sum(partial_batch_caution(sheet.with_columns(pl.Series("age", rng.normal(50, 10, 16))), age_spec)
                  is not None for _ in range(400))
    assert flagged / 400 < 0.05, flagged
