"""What the feature-matrix model looks at (modelling.matrix_attribution, reporting.explained; trial AP: the verdict
rested on the feature matrix, whose model nothing explained)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import polars as pl
import pytest

from ms2study.modelling.attribution import fit_embedding_model, model_score
from ms2study.modelling.differential import read_summary
from ms2study.modelling.matrix_attribution import FILE, matrix_attribution
from ms2study.reporting.collect import OutcomeFiles
from ms2study.reporting.explained import matrix_part, matrix_tables
from ms2study.stages.models import model_outcomes

PLANTED = 4
FAST = {"n_permutations": 10, "outer_repeats": 1, "n_bootstrap": 50}


def _study(n: int = 24, p: int = 60, seed: int = 1, shift: float = 2.5) -> tuple[pl.DataFrame, pl.DataFrame,
                                                                                np.ndarray]:
    """Log intensities with a tenth missing; the first PLANTED features raised in cases; an age covariate."""
    rng = np.random.default_rng(seed)
    y = np.array([1, 0] * (n // 2))
    X = rng.normal(12.0, 1.0, (n, p))
    X[y == 1, :PLANTED] += shift
    X[rng.random((n, p)) < 0.1] = np.nan
    ids = [f"S{i:02d}" for i in range(n)]
    samples = pl.DataFrame({"sample_id": ids, "group": ["case" if v else "control" for v in y],
                            "diet": ["a", "b", "c"] * (n // 3), "age": rng.normal(50, 10, n).round(1)})
    table = pl.DataFrame({"sample_id": ids, **{f"CF{j:04d}": X[:, j] for j in range(p)}})
    return samples, table, X


def test_the_split_adds_up_to_the_refitted_models_scores(tmp_path):
    """Independent of the split's own check: the refitted pipeline's class difference of mean scores (at the
    covariates' mean) equals the sum of the features' contributions, and the planted features lead."""
    samples, table, X = _study()
    params = {**FAST, "feature_sets": ["features"], "estimator": "linear", "covariates": ["age"],
              "seed": 3}
    model_outcomes(samples, {"features": table}, [{"column": "group", "type": "binary", "positive_class": "case"}],
                   tmp_path, params)
    info, out = read_summary(tmp_path / "group" / FILE), pl.read_parquet(tmp_path / "group" / FILE)
    assert info["status"] == "done" and info["max_split_error"] < 1e-8 and info["positive_class"] == "case"
    assert set(out.head(PLANTED)["consensus_id"]) == {f"CF{j:04d}" for j in range(PLANTED)}
    assert (out.head(PLANTED)["direction"] == "score toward case").all()
    # the feature's own level beside where it pushes the score (trial AT: "toward M" read as higher in M)
    y = (samples["group"] == "case").to_numpy()
    first = out.row(0, named=True)
    column = X[:, int(first["consensus_id"][2:])]
    assert first["value_difference"] == pytest.approx(np.nanmean(column[y]) - np.nanmean(column[~y]))
    assert out["share"].sum() == pytest.approx(1.0)
    # refit as the stage did (its recorded strength) and score every sample with age held at its mean
    summary = json.loads((tmp_path / "group" / "summary.json").read_text())
    y = (samples["group"] == "case").to_numpy().astype(int)
    C = samples.select("age").to_numpy().astype(float)
    from ms2study.modelling.attribution import chosen_strength
    from ms2study.stages.models import merge_params
    merged = merge_params(params)
    strength = chosen_strength(summary, "binary", merged, "features")
    pre, model, _ = fit_embedding_model(X, C, y, "binary", merged, strength, "features")
    scores = model_score(model, pre.transform(np.hstack([X, np.full_like(C, C.mean())])), "binary")
    assert out["contribution"].sum() == pytest.approx(scores[y == 1].mean() - scores[y == 0].mean(), rel=1e-6)
    assert info["score_difference"] == pytest.approx(out["contribution"].sum())
    half = np.searchsorted(np.cumsum(out["contribution"].abs().to_numpy()), out["contribution"].abs().sum() / 2) + 1
    assert info["n_carrying_half"] == half


def test_continuous_outcomes_split_the_slope_and_multiclass_ones_say_why(tmp_path):
    samples, table, X = _study()
    samples = samples.with_columns(score=pl.Series(np.nan_to_num(X[:, 0], nan=12.0) * 2.0 + 1.0))
    model_outcomes(samples, {"features": table}, [{"column": "score", "type": "continuous"},
                                                 {"column": "diet", "type": "multiclass"}],
                   tmp_path, {**FAST, "feature_sets": ["features"], "estimator": "linear"})
    continuous = pl.read_parquet(tmp_path / "score" / FILE)
    assert continuous["consensus_id"][0] == "CF0000" and continuous["direction"][0] == "score toward higher score"
    assert read_summary(tmp_path / "score" / FILE)["max_split_error"] < 1e-8
    info = read_summary(tmp_path / "diet" / FILE)
    assert info["status"] == "skipped" and "multiclass" in info["reason"]
    assert pl.read_parquet(tmp_path / "diet" / FILE).height == 0


def test_a_non_linear_estimator_and_an_unmodelled_set_are_not_split(tmp_path):
    samples, table, X = _study(p=30)
    spec = [{"column": "group", "type": "binary", "positive_class": "case"}]
    y = (samples["group"] == "case").to_numpy().astype(int)
    forest = matrix_attribution(["a", "b"], X[:, :2], np.empty((len(X), 0)), y, "binary",
                                {"estimator": "random_forest"}, {}, "mean", "case")
    assert forest[0].height == 0 and "not linear" in forest[1]["reason"]
    pooled = pl.DataFrame({"sample_id": table["sample_id"], **{f"emb_{j}": X[:, j] for j in range(8)}})
    model_outcomes(samples, {"embedding": pooled}, spec, tmp_path / "emb",
                   {**FAST, "feature_sets": ["embedding"]})
    assert "not modelled" in read_summary(tmp_path / "emb" / "group" / FILE)["reason"]
    direct = matrix_attribution(["a", "b"], X[:, :2], np.empty((len(X), 0)), y, "multiclass", {"estimator": "linear"},
                                {}, "mean", "case")
    assert direct[1]["status"] == "skipped"


def test_the_report_shows_the_features_with_their_differential_rows(tmp_path):
    samples, table, _ = _study(shift=6.0)
    model_outcomes(samples, {"features": table}, [{"column": "group", "type": "binary", "positive_class": "case"}],
                   tmp_path, {**FAST, "feature_sets": ["features"], "estimator": "linear"})
    path = matrix_tables([OutcomeFiles(tmp_path / "group" / "summary.json")])["group"]
    top = pl.read_parquet(path)["consensus_id"][0]
    second = pl.read_parquet(path)["consensus_id"][1]
    tested = pl.DataFrame({"consensus_id": [top, second], "name": ["sebacic acid", None], "msi_level": [2, None],
                           "mz": [203.1, 150.2], "rt_s": [301.0, 20.0], "log2_fold_change": [3.1, None],
                           "q_value": [0.002, None]})
    html = matrix_part(path, "group", tested, "log2_fold_change", "log2 fold")
    assert "What the feature-matrix model looks at" in html and "sebacic acid" in html and "log2 fold" in html
    assert "q (differential)" in html and "of 24" in html and "not tested" in html and "150.2" in html
    info = read_summary(path)
    assert f"{info['n_carrying_half']} carry at least half" in html
    assert ("Half of the model rests on" in html) == (info["n_carrying_half"] <= 2)
    caveat = matrix_part(path, "group", tested, None, "", caveat="the features model of group is not shown to beat "
                                                                 "chance")
    assert "not evidence" in caveat and "Read with caution" in caveat and "do not read them as evidence" in caveat
    # the direction cell says both where the feature pushes the score and its own level (a fresh user read "score
    # toward case" beside a negative log2 fold as raised in cases)
    assert "score toward case; higher in case" in html and "at least half" in html
    assert "no sign that it does not differ" in html
    assert "is missing" in matrix_part(tmp_path / "nowhere" / FILE, "group", tested, None, "")


def test_one_feature_carrying_the_model_is_named(tmp_path):
    """A model that rests on one feature says so, naming it (the verdict stands or falls with it)."""
    rng = np.random.default_rng(4)
    n = 24
    y = np.array([1, 0] * (n // 2))
    X = rng.normal(10.0, 1.0, (n, 40))
    X[y == 1, 0] += 8.0
    ids = [f"S{i:02d}" for i in range(n)]
    samples = pl.DataFrame({"sample_id": ids, "group": ["case" if v else "control" for v in y]})
    table = pl.DataFrame({"sample_id": ids, **{f"CF{j:04d}": X[:, j] for j in range(40)}})
    model_outcomes(samples, {"features": table}, [{"column": "group", "type": "binary", "positive_class": "case"}],
                   tmp_path, {**FAST, "feature_sets": ["features"]})
    path = tmp_path / "group" / FILE
    assert read_summary(path)["n_carrying_half"] == 1
    html = matrix_part(path, "group", pl.DataFrame({"consensus_id": ["CF0000"], "name": ["kynurenine"]}), None, "")
    assert "Half of the model rests on kynurenine" in html


def test_ms2study_model_prints_what_the_table_model_looks_at(tmp_path, repo):
    samples, table, _ = _study(shift=4.0)
    samples.write_csv(tmp_path / "sheet.tsv", separator="\t")
    table.write_csv(tmp_path / "table.csv")
    run = subprocess.run([sys.executable, "-m", "ms2study", "model", "--table", str(tmp_path / "table.csv"),
                          "--samples", str(tmp_path / "sheet.tsv"), "--outcome", "group", "--type", "binary",
                          "--positive-class", "case", "--out", str(tmp_path / "out"), "--params",
                          json.dumps(FAST)],
                         capture_output=True, text=True, env={"PYTHONPATH": str(repo / "workflow"),
                                                              "PATH": "/usr/bin:/bin"}, check=False)
    assert run.returncode == 0, run.stderr
    line = next(ln for ln in run.stdout.splitlines() if ln.startswith("what the model looks at"))
    leaders = line.split(": ", 1)[1]
    assert sum(f"CF{j:04d}" in leaders for j in range(PLANTED)) >= 3
    assert "of the model, score toward case; higher in case)" in leaders and "may differ from whether" in line
    assert read_summary(tmp_path / "out" / "group" / FILE)["feature_set"] == "table"


def test_a_one_class_outcome_counts_its_samples(tmp_path):
    """Trial AQ: an outcome with one class left was skipped rightly, but its summary said class_counts {"M": 0} beside
    n_samples 183 (the one class is coded 1, the positive one)."""
    samples, table, _ = _study(n=12, p=5)
    samples = samples.with_columns(group=pl.lit("M"))
    summary = model_outcomes(samples, {"features": table}, [{"column": "group", "type": "binary"}], tmp_path,
                             {**FAST, "feature_sets": ["features"]})["group"]
    assert summary["status"] == "skipped" and summary["class_counts"] == {"M": 12} and summary["n_samples"] == 12
    assert read_summary(tmp_path / "group" / FILE)["status"] == "skipped"
