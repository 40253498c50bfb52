"""A multiclass outcome (three or more groups): the F-test of the class indicators (one-way ANOVA; ANCOVA beside
covariates), moderated for features measured in every sample, its p-values from permutations where values were
filled, the covariates adjusted for in the test and in the class enrichment. The calibration on real urine studies
is measured by benchmarks/differential_calibration.py --multiclass."""

from __future__ import annotations

import dataclasses

import numpy as np
import polars as pl
import pytest
from scipy import stats

from ms2study.modelling.differential import differential_with_values
from ms2study.modelling.enrichment import distinct_labellings
from ms2study.modelling.univariate import (
    bh_q_values,
    fill_missing,
    multiclass_design,
    moderated_f_test,
    permutation_f_test,
    permutation_moderated_test,
)
from test_differential_covariates import class_q_values
from test_moderated import _censored_null

MULTICLASS = {"column": "group", "type": "multiclass"}


def test_the_f_test_without_moderation_is_one_way_anova_and_ancova_partial_f() -> None:
    rng = np.random.default_rng(0)
    values = rng.normal(10, 1, (30, 15))
    y = np.repeat([0, 1, 2], 5)
    design, tested = multiclass_design(y, None)
    out = moderated_f_test(values, design, tested, np.zeros(30, dtype=bool))
    anova = stats.f_oneway(*[values[:, y == g] for g in range(3)], axis=1)
    assert out["statistic"] == pytest.approx(anova.statistic) and out["p_value"] == pytest.approx(anova.pvalue)
    # beside a covariate: the partial F from the residual sums of squares of the nested models
    age = rng.uniform(20, 80, 15)
    design, tested = multiclass_design(y, age[:, None])
    out = moderated_f_test(values, design, tested, np.zeros(30, dtype=bool))
    assert tested == [1, 2] and design.shape == (15, 4)

    def rss(d: np.ndarray) -> np.ndarray:
        beta, *_ = np.linalg.lstsq(d, values.T, rcond=None)
        return ((values.T - d @ beta) ** 2).sum(axis=0)

    full, reduced = rss(design), rss(design[:, [0, 3]])
    f = ((reduced - full) / 2) / (full / (15 - 4))
    assert out["statistic"] == pytest.approx(f)
    assert out["p_value"] == pytest.approx(stats.f.sf(f, 2, 11))
    # moderated: the variance shrunk, more degrees of freedom; the permutation p-values lie in (0, 1]
    moderated = permutation_moderated_test(values, design, tested, 20, 0)
    assert moderated["prior_df"][0] > 0 and (moderated["df_total"] > 11).all()
    assert ((moderated["p_value"] > 0) & (moderated["p_value"] <= 1)).all()


def test_filled_features_anova_p_from_the_f_distribution_is_too_small_in_the_tail_and_permutations_hold() -> None:
    # Null studies of 16 samples in three groups with left-censored features: among features with filled values the
    # F distribution's p falls below 1e-4 and 1e-5 about 2-3x as often as it should; the Freedman-Lane permutation
    # null pooled within fill strata does not. Measured with these seeds (72,964 features): F distribution 16 below
    # 1e-4, 2 below 1e-5 (7.3 and 0.73 expected); permutations 704 / 71 / 7 below 1e-2 / 1e-3 / 1e-4.
    classic, permuted = [], []
    for seed in range(12):
        raw, _ = _censored_null(20000, seed)
        y = np.random.default_rng(seed).permutation(np.repeat([0, 1, 2], [6, 5, 5]))
        values, keep = fill_missing(raw, "half_minimum", 0.5)
        rows = keep & np.isnan(raw).any(axis=1)
        n_filled = np.isnan(raw[rows]).sum(axis=1)
        design, tested = multiclass_design(y, None)
        out = permutation_f_test(values[rows], design, tested, n_filled, 50, seed)
        classic.append(moderated_f_test(values[rows], design, tested, np.zeros(rows.sum(), dtype=bool))["p_value"])
        permuted.append(out["p_value"])
    classic, permuted = np.concatenate(classic), np.concatenate(permuted)
    assert classic.size > 70000
    assert (classic < 1e-4).mean() >= 1.8e-4  # the defect the permutation null removes
    for level, slack in ((1e-2, 1.15), (1e-3, 1.3), (1e-4, 1.7)):
        assert (permuted < level).mean() <= slack * level, level
    assert (permuted < 1e-2).mean() >= 0.7 * 1e-2  # and it is not merely conservative


def test_a_feature_found_in_one_class_only_is_not_a_discovery_among_thousands() -> None:
    raw, _ = _censored_null(3000, 11)
    y = np.repeat([0, 1, 2], [8, 4, 4])  # detected in the 8 of class 0 (half of all samples: kept) and nowhere else
    raw[0] = np.where(y == 0, 1.0 + 0.3 * np.random.default_rng(0).normal(size=16), np.nan)
    values, keep = fill_missing(raw, "half_minimum", 0.5)
    n_filled = np.isnan(raw).sum(axis=1)
    design, tested = multiclass_design(y, None)
    classic = moderated_f_test(values[:1], design, tested, np.zeros(1, dtype=bool))["p_value"][0]
    assert classic < 1e-6 and bh_q_values(np.r_[classic, np.full(2999, 0.5)])[0] < 0.05
    out = permutation_f_test(values[keep], design, tested, n_filled[keep], 200, 0)
    full = np.full(3000, np.nan)
    full[keep] = out["p_value"]
    assert full[0] > 1e-5 and bh_q_values(full)[0] > 0.05


def confounded_three_groups(seed: int = 0, n: int = 45, n_age: int = 40, n_effect: int = 10, n_other: int = 150):
    """Known truth: three groups that differ in age (terciles of age plus noise), ``n_age`` compounds rising with
    age (1 log2 per 30 years) and no group effect, ``n_effect`` compounds 2x higher in group c at any age, the rest
    random. Their classes: "aging", "effect", none."""
    rng = np.random.default_rng(seed)
    age = rng.uniform(20, 80, n)
    score = age + rng.normal(0, 10, n)
    group = np.array(["a", "b", "c"])[np.searchsorted(np.quantile(score, [1 / 3, 2 / 3]), score)]
    log2 = rng.normal(16, 0.5, (n_age + n_effect + n_other, n))
    log2[:n_age] += (age - 50) / 30
    log2[n_age:n_age + n_effect] += group == "c"
    ids = [f"C{i:03d}" for i in range(log2.shape[0])]
    samples = [f"S{j:02d}" for j in range(n)]
    matrix = pl.DataFrame({"consensus_id": ids, "mz": np.linspace(100, 500, len(ids)),
                           "rt_s": np.linspace(30, 600, len(ids)),
                           **{s: 2.0 ** log2[:, j] for j, s in enumerate(samples)}})
    sheet = pl.DataFrame({"sample_id": samples, "group": group.tolist(), "age": [f"{a:.1f}" for a in age]})
    classes = ["aging"] * n_age + ["effect"] * n_effect + [None] * n_other
    identifications = pl.DataFrame({"consensus_id": ids, "name": [f"compound {i}" for i in range(len(ids))],
                                    "inchikey": [f"K{i:03d}" for i in range(len(ids))], "formula": ["C1"] * len(ids),
                                    "compound_class": classes, "accepted": [True] * len(ids)})
    return matrix, sheet, identifications, set(ids[:n_age]), set(ids[n_age:n_age + n_effect])


def test_three_groups_that_differ_in_age_are_compared_at_equal_age() -> None:
    from ms2study.reporting.whatdiffers import _test_text

    matrix, sheet, identifications, age_ids, effect_ids = confounded_three_groups()
    plain, plain_summary, plain_values = differential_with_values(matrix, sheet, MULTICLASS, identifications,
                                                                  n_permutations=50)
    adjusted, summary, values = differential_with_values(matrix, sheet, MULTICLASS, identifications,
                                                         covariates=["age"], n_permutations=50)

    def hits(table: pl.DataFrame) -> set[str]:
        return set(table.filter(pl.col("q_value") < 0.05)["consensus_id"].to_list())

    assert len(hits(plain) & age_ids) >= 20  # confounded: the unadjusted F calls the age compounds different
    assert len(hits(adjusted) & age_ids) <= 2
    assert len(hits(adjusted) & effect_ids) >= 8
    assert summary["test"] == "moderated_f" and summary["covariates"] == ["cov:age"]
    assert "covariates" not in plain_summary
    assert not any("not adjusted" in n for n in summary["notes"])
    assert set(adjusted["test"].drop_nulls().unique().to_list()) <= {"moderated_f", "anova"}
    assert adjusted["log2_fold_change"].is_null().all()
    assert values.covariates is not None and values.covariates.shape == (45, 1)
    text = _test_text(summary)
    assert "F-test of the classes beside age (ANCOVA)" in text and "moderated F" in text
    assert _test_text(plain_summary).startswith("one-way ANOVA")
    # the class enrichment permutes the class indicators' residuals from age: "aging" is no class difference
    q = class_q_values(plain, plain_values, adjusted, values)
    assert q["plain"]["aging"] < 0.05 and q["adjusted"]["aging"] > 0.05
    assert q["adjusted"]["effect"] < 0.05
    few = dataclasses.replace(values, sample_ids=values.sample_ids[:9], values=values.values[:, :9], y=values.y[:9],
                              covariates=values.covariates[:9])
    assert distinct_labellings(few) is None  # residual permutations: no finite set of labellings
    assert distinct_labellings(dataclasses.replace(few, covariates=None)) is not None


def test_welch_setting_gives_the_ordinary_f_test_and_too_few_samples_for_the_covariates_are_not_tested() -> None:
    matrix, sheet, _, _, _ = confounded_three_groups()
    table, summary, _ = differential_with_values(matrix, sheet, MULTICLASS, test="welch", n_permutations=0)
    assert summary["test"] == "anova" and set(table["test"].drop_nulls().to_list()) == {"anova"}
    small = sheet.head(4).with_columns(group=pl.Series(["a", "b", "c", "a"]))
    table, summary, _ = differential_with_values(matrix.select("consensus_id", *small["sample_id"].to_list()),
                                                 small, MULTICLASS, covariates=["age"])
    assert not table["tested"].any()
    assert any("no residual degrees of freedom" in n for n in summary["notes"])


def test_a_three_group_table_says_which_groups_differ_and_which_way() -> None:
    """A trial's three-group study found its planted changes with "no direction" anywhere: the table now names the
    class with the highest and the lowest mean and the log2 difference of those means. Known truth: 10 compounds
    2x higher in group c (log2 +1); the rest random. Binary outcomes leave the columns null."""
    matrix, sheet, identifications, _, effect_ids = confounded_three_groups(n_age=0)
    table, _, _ = differential_with_values(matrix, sheet, MULTICLASS, identifications, n_permutations=0)
    effect = table.filter(pl.col("consensus_id").is_in(list(effect_ids)))
    assert (effect["highest_class"] == "c").all()
    assert effect["log2_class_range"].median() == pytest.approx(1.0, abs=0.35)
    assert table["lowest_class"].null_count() == 0 and (table["highest_class"] != table["lowest_class"]).all()
    assert (table["log2_class_range"] >= 0).all()
    binary = sheet.filter(pl.col("group") != "b")
    two, _, _ = differential_with_values(matrix, binary, {"column": "group", "type": "binary"}, identifications,
                                         n_permutations=0)
    assert two["highest_class"].is_null().all() and two["log2_class_range"].is_null().all()


def test_main_findings_say_which_class_is_highest_for_a_three_group_outcome(tmp_path) -> None:
    from ms2study.modelling.differential import write_table
    from ms2study.reporting.collect import DifferentialFiles
    from ms2study.reporting.findings import differential_finding

    matrix, sheet, identifications, _, _ = confounded_three_groups(n_age=0)
    table, summary, _ = differential_with_values(matrix, sheet, MULTICLASS, identifications, n_permutations=0)
    write_table(table, tmp_path / "group.parquet", summary)
    _, text, _ = differential_finding(DifferentialFiles(tmp_path / "group.parquet", None), None)
    hits = table.filter(pl.col("q_value") < 0.05)
    top = hits.filter(pl.col("highest_class") == "c").height
    assert top >= 8 and f"{top} highest in c (lowest in a: " in text, text


def test_the_class_table_of_a_three_group_outcome_has_no_direction_columns(tmp_path) -> None:
    """Trial: the chemical-class table of a multiclass outcome showed 'up' and 'down' at 0 for every class, under a
    legend explaining them; an F-test has no direction, so they are left out and a note says why."""
    from ms2study.reporting.whatdiffers import _enrichment_part

    enrichment = pl.DataFrame({"class_path": ["A; B"], "class_name": ["B"], "class_level": [2], "n_compounds": [4], "n_significant": [2],
                               "n_up": [0], "n_down": [0], "direction": [None], "median_effect": [None],
                               "p_value": [0.01], "q_value": [0.02], "compounds": ["x, y"]},
                              schema_overrides={"direction": pl.Utf8, "median_effect": pl.Float64})
    enrichment.write_parquet(tmp_path / "group.parquet")
    three, _ = _enrichment_part(tmp_path / "group.parquet", {"type": "multiclass"}, "F", "group", 0)
    two, _ = _enrichment_part(tmp_path / "group.parquet", {"type": "binary"}, "log2 FC", "group", 1)
    assert "have no direction" in three and ">up</th>" not in three and ">down</th>" not in three
    assert ">up</th>" in two and ">down</th>" in two and "have no direction" not in two
    # trial AU: glucose 6-phosphate named on two features; the members column says which one stood for it
    listed = enrichment.with_columns(compounds=pl.Series([["glucose 6-phosphate", "ribose"]]),
                                     consensus_ids=pl.Series([["C3822", "C17"]]))
    listed.write_parquet(tmp_path / "listed.parquet")
    html, _ = _enrichment_part(tmp_path / "listed.parquet", {"type": "binary"}, "log2 FC", "group", 2)
    assert "members (the consensus feature standing for each)" in html
    assert "glucose 6-phosphate (C3822)" in html and "ribose (C17)" in html


def test_the_sample_map_marks_a_left_out_class_of_one() -> None:
    """Trial finding: the class of one sample the models left out was coloured on the sample maps like a modelled
    class, with no mark."""
    import numpy as np

    from ms2study.modelling.featuresets import feature_matrix_feature_set
    from ms2study.reporting.outcomes import outcome_maps

    ids = [f"S{i}" for i in range(7)]
    sheet = pl.DataFrame({"sample_id": ids, "grp": ["a", "a", "b", "b", "c", "c", "d"]})
    values = np.random.default_rng(0).uniform(1e4, 1e6, (20, 7))
    matrix = pl.DataFrame({"consensus_id": [f"C{j}" for j in range(20)], **dict(zip(ids, values.T))})
    summary = {"outcome": "grp", "type": "multiclass", "feature_sets": {"features": {}},
               "excluded_small_class": {"d": ["S6"]}}
    chart = outcome_maps(sheet, {"features": feature_matrix_feature_set(matrix, ids)}, summary, "pca")[0]
    assert "d (left out)" in chart and "a (left out)" not in chart
    plain = outcome_maps(sheet, {"features": feature_matrix_feature_set(matrix, ids)},
                         {**summary, "excluded_small_class": {}}, "pca")[0]
    assert "left out" not in plain


def test_with_covariates_the_highest_and_lowest_class_are_those_the_adjusted_test_compares(tmp_path) -> None:
    """A trial (three arms, age confounded with the arm: control ~70 years, disease_A ~40, disease_B ~55; 5 compounds
    2 log2 lower in disease_A at any age, all falling 0.1 log2 a year): the ANCOVA F found the 5, but the table said
    highest disease_B, lowest control from raw class means, the opposite of the adjusted model. The class means
    are now taken at the covariates' mean."""
    from ms2study.modelling.direction import class_means

    rng = np.random.default_rng(4)
    arm = np.repeat(["control", "disease_A", "disease_B"], 8)
    age = np.concatenate([rng.normal(70, 4, 8), rng.normal(40, 4, 8), rng.normal(55, 4, 8)])
    log2 = rng.normal(16, 0.3, (60, 24))
    log2[:5] += -2.0 * (arm == "disease_A") - 0.1 * (age - 55)
    samples = [f"S{j:02d}" for j in range(24)]
    matrix = pl.DataFrame({"consensus_id": [f"C{i:02d}" for i in range(60)], "mz": np.linspace(100, 500, 60),
                           "rt_s": np.linspace(30, 600, 60), **{s: 2.0 ** log2[:, j] for j, s in enumerate(samples)}})
    sheet = pl.DataFrame({"sample_id": samples, "arm": arm.tolist(), "age": [f"{a:.2f}" for a in age]})
    outcome = {"column": "arm", "type": "multiclass"}
    adjusted, summary, _ = differential_with_values(matrix, sheet, outcome, covariates=["age"], n_permutations=0)
    plain, _, _ = differential_with_values(matrix, sheet, outcome, n_permutations=0)
    planted = [f"C{i:02d}" for i in range(5)]
    hits = adjusted.filter(pl.col("consensus_id").is_in(planted))
    assert (hits["q_value"] < 0.05).all()
    assert set(hits["lowest_class"].to_list()) == {"disease_A"}
    # the adjusted difference is imprecise where age and arm go together (30 years between control and disease_A,
    # a slope known to about 0.015 log2 a year): its mean over the 5 compounds
    assert float(hits["log2_class_range"].mean()) == pytest.approx(2.0, abs=0.5)
    # the export carries the direction beside the F (a trial: consensus_features.tsv had the F, p and q only)
    from ms2study.modelling.differential import write_table
    from ms2study.stages.export import differential_columns

    path = tmp_path / "arm.parquet"
    write_table(adjusted, path, summary)
    exported = differential_columns([path])[0].filter(pl.col("consensus_id").is_in(planted))
    assert exported.columns == ["consensus_id", "arm_statistic", "arm_highest_class", "arm_lowest_class",
                                "arm_test", "arm_p_value", "arm_q_value"]
    assert set(exported["arm_lowest_class"].to_list()) == {"disease_A"}
    # raw means: lowest in control (oldest), the trial's reversed reading
    assert set(plain.filter(pl.col("consensus_id").is_in(planted))["lowest_class"].to_list()) == {"control"}
    # class_means: at the covariates' mean, a feature with a missing value fitted on its own samples, a covariate
    # the classes explain gives none
    y = np.searchsorted(["control", "disease_A", "disease_B"], arm)
    values = log2[:5].copy()
    values[0, 3] = np.nan
    means = class_means(values, y, [0, 1, 2], age[:, None])
    assert float(np.mean(means[:, 1] - means[:, 0])) == pytest.approx(-2.0, abs=0.5)
    assert np.isfinite(means).all()
    collinear = class_means(values, y, [0, 1, 2], (y == 1).astype(float)[:, None])
    assert np.isnan(collinear).all()
