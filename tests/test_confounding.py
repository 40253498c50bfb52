"""Two configured outcomes that go together in the study samples are a caution on both outcomes' findings (a
second trial: in the demo, cases were older than controls, Welch p 0.018, and the vitamins planted for the group
came out among the age findings with no word of it)."""

from __future__ import annotations

import numpy as np
import polars as pl

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
