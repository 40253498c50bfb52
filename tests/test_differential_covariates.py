"""A binary outcome with covariates (models: covariates): the differential test, the class enrichment and the
study-wide shift compare the groups at equal covariates, so a case-control study whose groups differ in age does not
call every age-related compound different."""

from __future__ import annotations

import dataclasses

import numpy as np
import polars as pl
import pytest

from ms2study.modelling.differential import differential_with_values
from ms2study.modelling.enrichment import class_enrichment, distinct_labellings, global_shift

BINARY = {"column": "group", "type": "binary", "positive_class": "case"}


def _frames(log2: np.ndarray, case: np.ndarray, age: np.ndarray) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(feature matrix of features x samples log2 intensities, sheet with group and age)."""
    n = log2.shape[1]
    ids = [f"C{i:03d}" for i in range(log2.shape[0])]
    samples = [f"S{j:02d}" for j in range(n)]
    matrix = pl.DataFrame({"consensus_id": ids, "mz": np.linspace(100, 500, len(ids)),
                           "rt_s": np.linspace(30, 600, len(ids)), "n_detected": [n] * len(ids),
                           **{s: 2.0 ** log2[:, j] for j, s in enumerate(samples)}})
    sheet = pl.DataFrame({"sample_id": samples, "group": np.where(case, "case", "control").tolist(),
                          "age": [f"{a:.1f}" for a in age]})
    return matrix, sheet


def confounded_study(seed: int = 0, n: int = 40, n_age: int = 40, n_effect: int = 10, n_other: int = 150):
    """Known truth: cases are older on average (group drawn from age plus noise), ``n_age`` compounds rise with age
    (1 log2 per 30 years) and have no group effect, ``n_effect`` compounds are 2x higher in cases at any age, the
    rest vary at random. Features are rows; the age compounds form the class "aging", the effect ones "effect"."""
    rng = np.random.default_rng(seed)
    age = rng.uniform(20, 80, n)
    case = (age + rng.normal(0, 12, n)) > np.median(age)
    log2 = rng.normal(16, 0.5, (n_age + n_effect + n_other, n))
    log2[:n_age] += (age - 50) / 30
    log2[n_age:n_age + n_effect] += case
    matrix, sheet = _frames(log2, case, age)
    ids = matrix["consensus_id"].to_list()
    classes = ["aging"] * n_age + ["effect"] * n_effect + [None] * n_other
    identifications = pl.DataFrame({"consensus_id": ids, "name": [f"compound {i}" for i in range(len(ids))],
                                    "inchikey": [f"K{i:03d}" for i in range(len(ids))], "formula": ["C1"] * len(ids),
                                    "compound_class": classes, "accepted": [True] * len(ids)})
    return matrix, sheet, identifications, n_age, n_effect


def class_q_values(plain: pl.DataFrame, plain_values, adjusted: pl.DataFrame, values) -> dict[str, dict[str, float]]:
    """The class enrichment's q-value per class path, {"plain": ..., "adjusted": ...} (200 permutations, seed 0)."""
    q = {}
    for name, table, v in (("plain", plain, plain_values), ("adjusted", adjusted, values)):
        enrichment, _ = class_enrichment(table, values=v, n_permutations=200, seed=0)
        q[name] = dict(zip(enrichment["class_path"].to_list(), enrichment["q_value"].to_list(), strict=True))
    return q


def test_age_adjusted_test_does_not_call_age_compounds_different_and_keeps_the_group_effect() -> None:
    matrix, sheet, _, n_age, n_effect = confounded_study()
    plain, plain_summary, _ = differential_with_values(matrix, sheet, BINARY, n_permutations=50)
    adjusted, summary, values = differential_with_values(matrix, sheet, BINARY, covariates=["age"],
                                                         n_permutations=50)
    age_ids = {f"C{i:03d}" for i in range(n_age)}
    effect_ids = {f"C{i:03d}" for i in range(n_age, n_age + n_effect)}

    def hits(table: pl.DataFrame) -> set[str]:
        return set(table.filter(pl.col("q_value") < 0.05)["consensus_id"].to_list())

    assert len(hits(plain) & age_ids) >= 20  # confounded: the unadjusted test calls the age compounds different
    assert len(hits(adjusted) & age_ids) <= 2
    assert len(hits(adjusted) & effect_ids) >= 8
    assert summary["covariates"] == ["cov:age"] and summary["test"] == "moderated_ols"
    assert plain_summary["test"] == "moderated_t" and "covariates" not in plain_summary
    assert not any("not adjusted" in n for n in summary["notes"])
    # the adjusted log2 fold change of the effect compounds is near the planted 1, that of the age ones near 0
    fc = dict(zip(adjusted["consensus_id"].to_list(), adjusted["log2_fold_change"].to_list(), strict=True))
    assert np.median([fc[c] for c in effect_ids]) == pytest.approx(1.0, abs=0.25)
    assert abs(np.median([fc[c] for c in age_ids])) < 0.2
    plain_fc = dict(zip(plain["consensus_id"].to_list(), plain["log2_fold_change"].to_list(), strict=True))
    assert np.median([plain_fc[c] for c in age_ids]) > 0.4
    assert values.covariates is not None and values.covariates.shape == (40, 1)
    assert set(adjusted["test"].drop_nulls().unique().to_list()) <= {"moderated_ols", "ols"}


def test_the_class_enrichment_and_the_shift_adjust_for_the_covariates_too() -> None:
    matrix, sheet, identifications, _, _ = confounded_study(seed=1)
    plain, _, plain_values = differential_with_values(matrix, sheet, BINARY, identifications, n_permutations=20)
    adjusted, _, values = differential_with_values(matrix, sheet, BINARY, identifications, covariates=["age"],
                                                   n_permutations=20)
    q = class_q_values(plain, plain_values, adjusted, values)
    assert q["plain"]["aging"] < 0.05 and q["adjusted"]["aging"] > 0.05
    assert q["adjusted"]["effect"] < 0.05
    # residual permutations: no finite set of labellings to enumerate
    few = dataclasses.replace(values, sample_ids=values.sample_ids[:10], values=values.values[:, :10],
                              y=values.y[:10], covariates=values.covariates[:10])
    assert distinct_labellings(few) is None
    assert distinct_labellings(dataclasses.replace(few, covariates=None)) is not None
    tested = adjusted.filter(pl.col("tested"))["consensus_id"].to_list()
    shift = global_shift(values, tested, 200, 0)
    plain_shift = global_shift(plain_values, plain.filter(pl.col("tested"))["consensus_id"].to_list(), 200, 0)
    assert abs(shift["median_effect"]) < abs(plain_shift["median_effect"])


def test_a_binary_outcome_with_more_covariates_than_samples_allow_is_not_tested() -> None:
    matrix, sheet, _, _, _ = confounded_study(n=4)
    sheet = sheet.with_columns(group=pl.Series(["case", "control", "case", "control"]),
                               bmi=pl.Series(["20", "25", "30", "22"]))
    table, summary, _ = differential_with_values(matrix, sheet, BINARY, covariates=["age", "bmi"])
    assert not table["tested"].any()
    assert any("no residual degrees of freedom" in n for n in summary["notes"])


def test_the_report_says_the_two_groups_are_compared_at_equal_covariates() -> None:
    from ms2study.reporting.whatdiffers import _test_text

    matrix, sheet, _, _, _ = confounded_study()
    _, summary, _ = differential_with_values(matrix, sheet, BINARY, covariates=["age"], n_permutations=20)
    text = _test_text(summary)
    assert "linear model of log2 intensity on the class, adjusted for age" in text and "cov:" not in text
    assert "higher in case at equal covariates" in text
    _, plain, _ = differential_with_values(matrix, sheet, BINARY, n_permutations=20)
    assert _test_text(plain).startswith("moderated t-test") and "adjusted" not in _test_text(plain)


def test_main_findings_say_the_adjustment_and_name_a_hit_by_its_compound_groups_identification(tmp_path) -> None:
    """Trial findings (session 20): Main findings never said the fold changes were adjusted for age, and a planted
    compound that was a hit only through its [M+Na]+ feature went unnamed although its [M+H]+ feature carried the
    accepted name; a q of 0.049957 was printed 0.05 beside "q < 0.05"."""
    from ms2study.modelling.differential import write_table
    from ms2study.reporting.collect import DifferentialFiles
    from ms2study.reporting.findings import differential_finding, q_text

    table = pl.DataFrame({"consensus_id": ["C1", "C2", "C3"], "tested": [True, True, True],
                          "q_value": [0.049957, 0.0504, 0.9], "p_value": [0.001, 0.002, 0.8],
                          "log2_fold_change": [1.9, 1.8, 0.1], "compound_group": ["G1", "G1", None],
                          "ion": ["[M+Na]+", "[M+H]+", None]})
    path = tmp_path / "differential" / "group.parquet"
    path.parent.mkdir()
    write_table(table, path, {"outcome": "group", "type": "binary", "positive_class": "case",
                              "covariates": ["cov:age"]})
    ident = pl.DataFrame({"consensus_id": ["C2"], "accepted": [True], "name": ["uracil"], "msi_level": [2]})
    _, text, _ = differential_finding(DifferentialFiles(path, None), ident)
    assert "adjusted for age" in text and "cov:" not in text
    assert "1 of the 1 carries an accepted identification (1 through another feature of its compound group)" in text
    assert "<b>uracil</b>" in text and "named on C2 of its compound group, the hit is C1" in text
    assert "differential q = 0.04996" in text
    assert q_text(0.0123) == "0.012" and q_text(0.049957) == "0.04996" and q_text(0.3) == "0.3"


def test_a_covariate_that_is_the_outcome_itself_is_said_to_be_dropped() -> None:
    matrix, sheet, _, _, _ = confounded_study()
    _, summary, _ = differential_with_values(matrix, sheet, {"column": "age", "type": "continuous"},
                                             covariates=["age"], n_permutations=0)
    assert any("the covariate age is this outcome itself" in n for n in summary["notes"])
    assert "covariates" not in summary


def test_a_name_is_shown_on_its_own_feature_when_that_one_is_a_hit(tmp_path) -> None:
    from ms2study.modelling.differential import write_table
    from ms2study.reporting.collect import DifferentialFiles
    from ms2study.reporting.findings import differential_finding

    table = pl.DataFrame({"consensus_id": ["C477", "C828"], "tested": [True, True], "q_value": [0.049957, 0.049957],
                          "p_value": [0.001, 0.001], "log2_fold_change": [2.11, 2.18],
                          "compound_group": ["G9", "G9"], "ion": ["[M+H]+", "M+1"]})
    path = tmp_path / "group.parquet"
    write_table(table, path, {"outcome": "group", "type": "binary", "positive_class": "case"})
    ident = pl.DataFrame({"consensus_id": ["C477"], "accepted": [True], "name": ["hypoxanthine"], "msi_level": [3]})
    _, text, _ = differential_finding(DifferentialFiles(path, None), ident)
    assert "<b>hypoxanthine</b>" in text and "named on" not in text and "log2 FC +2.11" in text


def test_the_export_keeps_the_adjusted_fold_change_and_imputed_cells_take_the_adjusted_ols(tmp_path) -> None:
    """Review findings: the export chose the effect column by the test name (ols -> log2_effect_per_unit) and wrote
    an all-null column for a binary outcome with covariates; the adjusted branch for features with imputed values
    had no test."""
    from ms2study.modelling.differential import write_table
    from ms2study.stages.export import differential_columns

    matrix, sheet, _, n_age, _ = confounded_study(seed=2)
    holes = matrix.with_columns(pl.when(pl.int_range(pl.len()) < 30).then(None).otherwise(pl.col("S00")).alias("S00"))
    table, summary, _ = differential_with_values(holes, sheet, BINARY, covariates=["age"], n_permutations=20)
    tests = dict(zip(table["consensus_id"].to_list(), table["test"].to_list(), strict=True))
    assert tests["C000"] == "ols" and tests["C100"] == "moderated_ols"  # imputed cell: own variance, OLS
    assert summary.get("n_imputed_permuted") == 30
    fc = dict(zip(table["consensus_id"].to_list(), table["log2_fold_change"].to_list(), strict=True))
    assert abs(np.median([fc[f"C{i:03d}"] for i in range(n_age)])) < 0.3  # the age compounds, imputed or not
    path = tmp_path / "group.parquet"
    write_table(table, path, summary)
    exported = differential_columns([path])[0]
    assert "group_log2_fold_change" in exported.columns and exported["group_log2_fold_change"].null_count() == 0


def test_a_constant_covariate_is_said_to_be_left_out() -> None:
    matrix, sheet, _, _, _ = confounded_study()
    sheet = sheet.with_columns(dose=pl.lit("1.0"))
    _, summary, values = differential_with_values(matrix, sheet, BINARY, covariates=["dose"], n_permutations=0)
    assert any("take one value over the tested samples: not adjusted for" in n for n in summary["notes"])
    assert summary["test"] == "moderated_t" and values.covariates is None


def test_the_adjusted_study_wide_shift_holds_its_level_when_age_moves_every_feature() -> None:
    """With every feature rising with age and cases older, the unadjusted shift is 'found' in most null studies;
    adjusted for age (the outcome's residual permuted) it falls below 0.05 in about 5 %."""
    from ms2study.modelling.differential import OutcomeValues

    rng = np.random.default_rng(5)
    n, features, ids = 20, 40, [f"C{i}" for i in range(40)]
    p_plain, p_adjusted = [], []
    for _ in range(150):
        age = rng.uniform(20, 80, n)
        case = ((age - age.mean()) / age.std() + 0.5 * rng.standard_normal(n)) > 0
        x = rng.normal(16, 0.5, (features, n)) + (age - 50) / 30 + 0.3 * rng.standard_normal((1, n))
        y = case.astype(np.int64)
        for covariates, out in ((None, p_plain), (age[:, None], p_adjusted)):
            values = OutcomeValues(ids, [f"S{j}" for j in range(n)], x, y, "binary", covariates)
            out.append(global_shift(values, ids, 200, int(rng.integers(1 << 30)))["p_value"])
    assert np.mean(np.array(p_plain) < 0.05) > 0.5
    assert np.mean(np.array(p_adjusted) < 0.05) <= 0.1


def test_samples_without_a_covariate_value_are_named_where_the_tests_and_the_models_differ(tmp_path) -> None:
    """A trial blanked age for two of 16 samples: the differential tests ran on 7 against 7 and lost every hit,
    the models filled the two ages and kept 16, while Main findings read "8 control, 8 case" and the models said
    nothing. Main findings now says on which samples the tests ran and which were left out; the models say they
    filled the value."""
    from ms2study.modelling.differential import write_table
    from ms2study.modelling.evaluate import model_outcome
    from ms2study.modelling.featuresets import feature_matrix_feature_set
    from ms2study.reporting.collect import DifferentialFiles
    from ms2study.reporting.findings import differential_finding

    matrix, sheet, _, _, _ = confounded_study(n=20, n_other=30)
    sheet = sheet.with_columns(pl.when(pl.col("sample_id").is_in(["S03", "S11"])).then(pl.lit("NA"))
                               .otherwise(pl.col("age")).alias("age"))
    table, summary, _ = differential_with_values(matrix, sheet, BINARY, covariates=["age"], n_permutations=0)
    assert summary["excluded_missing_covariate"] == ["S03", "S11"] and summary["n_samples"] == 18
    path = tmp_path / "group.parquet"
    write_table(table, path, summary)
    _, text, _ = differential_finding(DifferentialFiles(path, None), None)
    counts = ", ".join(f"{v} {k}" for k, v in summary["class_counts"].items())
    assert f"on 18 samples ({counts}): 2 without a covariate value left out (S03, S11)" in text, text
    params = {"covariates": ["age"], "feature_sets": ["features"], "n_permutations": 0, "outer_repeats": 1,
              "n_bootstrap": 20}
    from ms2study.stages.models import merge_params

    models = model_outcome(sheet, {"features": feature_matrix_feature_set(matrix, sheet["sample_id"].to_list())},
                           BINARY, merge_params(params))["summary"]
    assert any("2 sample(s) lack a covariate value (S03, S11): the models keep them" in n for n in models["notes"])


def collinear_study(seed: int, overlap: float, n: int = 24, n_effect: int = 10, n_other: int = 80):
    """Cases older than controls by ``overlap`` (0: both 20-80; 1: cases 55-80, controls 20-45), ``n_effect``
    compounds 2x higher in cases at any age, none with age; the rest at random."""
    rng = np.random.default_rng(seed)
    case = np.arange(n) % 2 == 1
    age = np.where(case, rng.uniform(20 + 35 * overlap, 80, n), rng.uniform(20, 80 - 35 * overlap, n))
    log2 = rng.normal(16, 0.4, (n_effect + n_other, n))
    log2[:n_effect] += case
    matrix, sheet = _frames(log2, case, age)
    return matrix, sheet


def test_a_covariate_that_follows_the_outcome_gets_the_tests_without_it_beside(tmp_path) -> None:
    """A trial (three arms, age by arm R² 0.91): adjusted for age none of 12 planted compounds was at q < 0.05,
    without it 6, and the report gave no scale of what the adjustment cost. The stage now also runs the tests
    without such a covariate and says how many features each finds; the table stays the adjusted one."""
    from ms2study.modelling.differential import read_summary
    from ms2study.reporting.confounding import explained_share
    from ms2study.stages import differential

    params = {"outcome": BINARY, "covariates": ["age"], "permutations": 0, "class_permutations": 0}
    matrix, sheet = collinear_study(seed=3, overlap=1.0)
    assert explained_share(sheet, BINARY, "age")[0] >= 0.8
    sheet.write_csv(tmp_path / "samples.tsv", separator="\t")
    matrix.write_parquet(tmp_path / "matrix.parquet")
    summary = differential.run_differential(tmp_path / "samples.tsv", tmp_path / "matrix.parquet", None,
                                            tmp_path / "group.parquet", tmp_path / "enrichment.parquet", params)
    plain, _, _ = differential_with_values(matrix, sheet, BINARY, covariates=[], n_permutations=0)
    table = pl.read_parquet(tmp_path / "group.parquet")
    adjusted = int((table["q_value"] < 0.05).sum())
    without = int((plain["q_value"] < 0.05).sum())
    entry = summary["without_collinear_covariates"]
    assert entry["n_significant_adjusted"] == adjusted and entry["n_significant_without"] == without
    assert without > adjusted and set(entry["only_without"]) <= {f"C{i:03d}" for i in range(10)}  # planted ones
    assert list(entry["left_out"]) == ["age"] and entry["left_out"]["age"] >= 0.8
    said = [w for w in summary["warnings"] if w.startswith("without adjusting for age")]
    assert len(said) == 1 and f"{without} feature(s) are at q < 0.05, {adjusted} with the adjustment" in said[0]
    assert read_summary(tmp_path / "group.parquet")["without_collinear_covariates"] == entry
    # ages that overlap: no such run, no warning
    matrix, sheet = collinear_study(seed=3, overlap=0.0)
    assert explained_share(sheet, BINARY, "age")[0] < 0.8
    sheet.write_csv(tmp_path / "samples.tsv", separator="\t")
    matrix.write_parquet(tmp_path / "matrix.parquet")
    summary = differential.run_differential(tmp_path / "samples.tsv", tmp_path / "matrix.parquet", None,
                                            tmp_path / "group.parquet", tmp_path / "enrichment.parquet", params)
    assert "without_collinear_covariates" not in summary
    assert not any(w.startswith("without adjusting") for w in summary["warnings"])
    # the outcome's own column among the covariates (trial I: "those differ with group or with group"): left out of
    # its tests with a note, and no collinearity rerun against itself
    own = {**params, "covariates": [BINARY["column"], "age"]}
    summary = differential.run_differential(tmp_path / "samples.tsv", tmp_path / "matrix.parquet", None,
                                            tmp_path / "group.parquet", tmp_path / "enrichment.parquet", own)
    assert "without_collinear_covariates" not in summary and summary["covariates"] == ["cov:age"]
    assert any(f"covariate '{BINARY['column']}' is this outcome itself" in n for n in summary["notes"])
    # trial Z: a covariate the outcome explains only in part (here about 0.6) that costs features is said too, as
    # what the adjustment takes away rather than as a design that cannot tell the two apart
    matrix, sheet = collinear_study(seed=4, overlap=0.7)
    assert 0.3 <= explained_share(sheet, BINARY, "age")[0] < 0.8
    sheet.write_csv(tmp_path / "samples.tsv", separator="\t")
    matrix.write_parquet(tmp_path / "matrix.parquet")
    summary = differential.run_differential(tmp_path / "samples.tsv", tmp_path / "matrix.parquet", None,
                                            tmp_path / "group.parquet", tmp_path / "enrichment.parquet", params)
    entry = summary["without_collinear_covariates"]
    assert entry["n_significant_without"] > entry["n_significant_adjusted"], entry
    said = [w for w in summary["warnings"] if w.startswith("without adjusting for age")]
    assert len(said) == 1 and "the adjustment removes what group shares with age, so those may differ with either" \
        in said[0] and "cannot tell apart" not in said[0]


def test_a_log_scaled_matrix_is_warned_about() -> None:
    """Trial H: sacurine's log10 values through the differential stage gave log2 fold changes 9x too small, with the
    same p-values and no word."""
    import numpy as np

    from ms2study.modelling.univariate import log_scaled_warning

    rng = np.random.default_rng(0)
    ids = [f"S{i}" for i in range(10)]
    logs = rng.normal(5, 1, (50, 10))  # log10 intensities
    logged = pl.DataFrame({"consensus_id": [f"C{j}" for j in range(50)], **{s: logs[:, k] for k, s in enumerate(ids)}})
    assert "look log-scaled" in log_scaled_warning(logged, ids)
    raw = logged.with_columns([(10 ** pl.col(s)).alias(s) for s in ids])
    assert log_scaled_warning(raw, ids) is None
