"""Two configured outcomes that go together in the study samples are a caution on both outcomes' findings (a
second trial: in the demo, cases were older than controls, Welch p 0.018, and the vitamins planted for the group
came out among the age findings with no word of it)."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from ms2study.reporting.confounding import association, association_cautions
from ms2study.reporting.html import DOUBT, kind_of

GROUP = {"column": "group", "type": "binary", "positive_class": "case"}
AGE = {"column": "age", "type": "continuous"}
SITE = {"column": "site", "type": "multiclass"}


def _sheet(age_shift: float, seed: int = 0, n: int = 12) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    group = ["case"] * (n // 2) + ["control"] * (n // 2)
    age = np.concatenate([rng.normal(47 + age_shift, 8, n // 2), rng.normal(47, 8, n // 2)])
    site = (["a", "b", "c"] * n)[:n]
    return pl.DataFrame({"sample_id": [f"S{i}" for i in range(n)], "group": group,
                         "age": [f"{a:.1f}" for a in age], "site": site})


def test_associated_outcomes_are_a_caution_on_both() -> None:
    sheet = _sheet(age_shift=18.0)
    cautions = association_cautions(sheet, [GROUP, AGE], [])
    assert len(cautions) == 1 and kind_of(cautions[0]) == DOUBT
    assert set(cautions[0].concerns) == {"models:group", "differential:group", "models:age", "differential:age"}
    assert "outcomes <b>group</b> and <b>age</b> go together" in cautions[0] and "Welch's t" in cautions[0]
    assert "<code>models: covariates: [age]</code>" in cautions[0]
    # trial BH: the remedy named the wrong outcome as the one left unadjusted and, copied, dropped the configured
    # covariates; it keeps them now, and the outcome not adjusted for age is age's own
    assert "adjusts every outcome's tests and models for age, age's own excepted" in cautions[0]
    kept = association_cautions(sheet.with_columns(bmi=pl.lit("22")), [GROUP, AGE], ["bmi"])
    assert "<code>models: covariates: [bmi, age]</code>" in kept[0]
    # already a covariate: no caution; unrelated outcomes: none either
    assert association_cautions(sheet, [GROUP, AGE], ["age"]) == []
    assert association_cautions(_sheet(age_shift=0.0, seed=3), [GROUP, AGE], []) == []


def test_each_kind_of_pair_is_tested_and_the_null_holds_its_level() -> None:
    sheet = _sheet(age_shift=0.0)
    assert association(sheet, GROUP, SITE)[1].startswith("chi-square test of independence over 12 samples")
    assert "ANOVA" in association(sheet, AGE, SITE)[1]
    both = sheet.with_columns(pl.col("age").alias("age2"))
    assert association(both, AGE, {"column": "age2", "type": "continuous"})[0] < 1e-6
    assert association(sheet.head(3), GROUP, AGE) is None  # too few samples
    # 400 null studies of 16 samples: the caution's rate stays near its 5 % level
    rates = [bool(association_cautions(_sheet(0.0, seed=s, n=16), [GROUP, AGE], [])) for s in range(400)]
    assert np.mean(rates) <= 0.05 + 3 * np.sqrt(0.05 * 0.95 / 400)


def test_a_covariate_that_follows_the_outcome_leaves_the_adjustment_little_overlap() -> None:
    """A three-arm trial: age 70, 40 and 55 by arm (sd 4) adjusted for without a word; the adjusted F called the
    right compounds but the arms share hardly any ages. Overlapping ages, or age a little different, stay silent."""
    from ms2study.reporting.confounding import explained_share, overlap_cautions

    rng = np.random.default_rng(3)
    arm = np.repeat(["control", "disease_A", "disease_B"], 8)
    spec = {"column": "arm", "type": "multiclass"}

    def sheet(ages: np.ndarray, sex: list[str] | None = None) -> pl.DataFrame:
        columns = {"sample_id": [f"S{j}" for j in range(24)], "arm": arm.tolist(), "age": [f"{a:.1f}" for a in ages]}
        return pl.DataFrame({**columns, "sex": sex or ["M", "F"] * 12})

    confounded = sheet(np.concatenate([rng.normal(m, 4, 8) for m in (70, 40, 55)]))
    share, said = explained_share(confounded, spec, "age")
    assert share > 0.8 and "mean age control 68" in said
    cautions = overlap_cautions(confounded, [spec], ["age", "sex"])
    assert len(cautions) == 1 and "covariate <b>age</b> follows outcome <b>arm</b>" in str(cautions[0])
    assert cautions[0].concerns == ("models:arm", "differential:arm")
    assert "compare the groups at values of age few of their samples have" in str(cautions[0])
    # trial Z: a continuous outcome has no groups to compare
    scored = confounded.with_columns(pl.Series("score", [f"{a / 7 + d:.2f}" for a, d in zip(
        [float(v) for v in confounded["age"]], rng.normal(0, 0.3, 24))]))
    said = str(overlap_cautions(scored, [{"column": "score", "type": "continuous"}], ["age"])[0])
    assert "the tests and models separate score from age, which barely vary apart in these samples" in said
    assert "the groups" not in said
    overlapping = sheet(np.concatenate([rng.normal(m, 12, 8) for m in (60, 50, 55)]))
    assert overlap_cautions(overlapping, [spec], ["age"]) == []
    # a categorical covariate the arms determine (every control male, every case female) is caught too
    aliased = sheet(rng.normal(50, 10, 24), ["M"] * 8 + ["F"] * 16)
    assert [c.label for c in overlap_cautions(aliased, [spec], ["sex"])] == ["sex follows arm"]
    # a continuous outcome and the covariate it is (nearly)
    score = {"column": "score", "type": "continuous"}
    both = confounded.with_columns(score=pl.col("age").cast(pl.Float64) * 2 + 1)
    assert explained_share(both, score, "age")[0] == pytest.approx(1.0)
