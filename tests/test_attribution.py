"""What the embedding model looks at (ms2study.modelling.attribution, ms2study.stages.attribution) on small synthetic
studies: planted features whose embeddings point one way and whose abundance triples in cases must come out on top,
and the per-feature contributions must add up to the model's own scores."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest

from ms2study import cli
from ms2study.core.errors import InputError
from ms2study.modelling.attribution import ATTRIBUTION, attribute, fit_embedding_model, model_score, pooling_terms
from ms2study.modelling.differential import read_summary
from ms2study.modelling.featuresets import align_rows, embedding_feature_set
from ms2study.modelling.pooling import pool_sample
from ms2study.stages.models import DEFAULT_PARAMS as MODELS_DEFAULTS

DIM = 16
N_FEATURES = 30
PLANTED = 4  # C1..C4
CONTRACT = ["consensus_id", "mz", "rt_s", "contribution", "direction", "rank", "name", "inchikey", "msi_level"]


def make_study(seed: int = 0, n_samples: int = 12, pool_params: dict | None = None) -> dict:
    """Per-sample embeddings/spectra/features tables, pooled embeddings, links and matrix of a synthetic study."""
    rng = np.random.default_rng(seed)
    direction = rng.normal(size=DIM)
    direction /= np.linalg.norm(direction)
    centres = rng.normal(size=(N_FEATURES, DIM))
    centres[:PLANTED] = direction + 0.05 * rng.normal(size=(PLANTED, DIM))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    base = rng.lognormal(12.0, 0.5, N_FEATURES)
    base[:PLANTED] = np.exp(12.0)  # typical abundances: a contribution also scales with the feature's share
    ids = [f"S{i:02d}" for i in range(1, n_samples + 1)]
    group = ["case" if i % 2 == 0 else "control" for i in range(n_samples)]
    age = rng.normal(50, 10, n_samples).round(1)
    tables = {}
    for i, s in enumerate(ids):
        abundance = base * rng.lognormal(0.0, 0.2, N_FEATURES)
        if group[i] == "case":
            abundance[:PLANTED] *= 3.0
        spectrum_rows, embedding_rows = [], []
        for k in range(N_FEATURES):
            for r in range(1 + k % 2):  # one or two spectra per feature
                sid = f"{s}:S{k}_{r}"
                e = centres[k] + 0.05 * rng.normal(size=DIM)
                embedding_rows.append({"spectrum_id": sid, "sample_id": s, "feature_id": f"{s}:F{k + 1}",
                                       "embedding": (e / np.linalg.norm(e)).astype(np.float32).tolist()})
                spectrum_rows.append({"spectrum_id": sid, "precursor_intensity": float(abundance[k] / 10)})
        emb = pl.DataFrame(embedding_rows, schema_overrides={"embedding": pl.List(pl.Float32)})
        spec = pl.DataFrame(spectrum_rows)
        feat = pl.DataFrame({"feature_id": [f"{s}:F{k + 1}" for k in range(N_FEATURES)], "intensity": abundance})
        tables[s] = (emb, spec, feat)
    pooled = pl.concat([pool_sample(*tables[s][:2], s, pool_params, features=tables[s][2]) for s in ids])
    links = pl.DataFrame({"consensus_id": [f"C{k + 1}" for s in ids for k in range(N_FEATURES)],
                          "sample_id": [s for s in ids for _ in range(N_FEATURES)],
                          "feature_id": [f"{s}:F{k + 1}" for s in ids for k in range(N_FEATURES)]})
    matrix = pl.DataFrame({"consensus_id": [f"C{k + 1}" for k in range(N_FEATURES)],
                           "mz": 100.0 + np.arange(N_FEATURES), "rt_s": 10.0 * np.arange(1, N_FEATURES + 1)})
    identifications = pl.DataFrame({"consensus_id": ["C1", "C9"], "name": ["planted one", "other"],
                                    "inchikey": ["AAAA", "BBBB"], "msi_level": [2, 3], "q_value": [0.001, 0.002],
                                    "accepted": [True, True]})
    samples = pl.DataFrame({"sample_id": ids, "group": group, "age": [str(a) for a in age],
                            "site": [["a", "b", "c"][i % 3] for i in range(n_samples)]})
    return {"samples": samples, "tables": tables, "pooled": pooled, "links": links, "matrix": matrix,
            "identifications": identifications}


def summary(estimator: str = "elastic_net", chosen: dict | None = None, **params) -> dict:
    models = {**MODELS_DEFAULTS, "estimator": estimator, **params}
    entry = {"regularisation_chosen": chosen} if chosen else {}
    return {"status": "done", "feature_sets": {"embedding": entry}, "params": models}


def run(study: dict, spec: dict, model_summary: dict, pool_params: dict | None = None):
    terms = {s: pooling_terms(*t, s, pool_params) for s, t in study["tables"].items()}
    return attribute(study["samples"], spec, model_summary, study["pooled"], terms, study["links"], study["matrix"],
                     study["identifications"])


GROUP = {"column": "group", "type": "binary", "positive_class": "case"}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_planted_features_rank_first_toward_cases(seed):
    study = make_study(seed)
    table, info = run(study, GROUP, summary(chosen={"lambda_ratio=0.05, l1_ratio=0.5": 3}))
    assert info["status"] == "done" and info["units"].startswith("log-odds of 'case'")
    assert info["regularisation"].startswith("lambda_ratio=0.05, l1_ratio=0.5")
    assert table.columns[: len(CONTRACT)] == CONTRACT and table.height == N_FEATURES
    top = table.head(PLANTED)
    assert sorted(top["consensus_id"].to_list()) == [f"C{k}" for k in range(1, PLANTED + 1)]
    assert top["direction"].to_list() == ["toward case"] * PLANTED and (top["contribution"] > 0).all()
    assert table["rank"].to_list() == list(range(1, N_FEATURES + 1))
    c1 = table.filter(pl.col("consensus_id") == "C1").row(0, named=True)
    assert (c1["name"], c1["inchikey"], c1["msi_level"]) == ("planted one", "AAAA", 2)
    assert table.filter(pl.col("consensus_id") == "C2")["name"][0] is None


def test_contributions_add_up_to_the_models_scores():
    study = make_study(3)
    table, info = run(study, GROUP, summary(estimator="linear", chosen={"1": 2, "0.1": 1}))
    assert info["regularisation"].startswith("1 ")
    assert info["max_split_error"] < 1e-6
    # Refit the same pipeline: the class difference of its scores is the sum of the features' contributions.
    ids = study["samples"]["sample_id"].to_list()
    X, _, _ = align_rows(embedding_feature_set(study["pooled"]), ids, "embedding")
    y = np.array([1 if g == "case" else 0 for g in study["samples"]["group"]])
    pre, model, _ = fit_embedding_model(X, np.empty((len(ids), 0)), y, "binary", summary("linear")["params"], 1.0)
    scores = model_score(model, pre.transform(X), "binary")
    assert table["contribution"].sum() == pytest.approx(scores[y == 1].mean() - scores[y == 0].mean(), abs=1e-5)
    means = table["contribution_positive"] - table["contribution_reference"]
    assert np.allclose(means.to_numpy(), table["contribution"].to_numpy())


def test_covariates_and_inner_cv_choice():
    study = make_study(4)
    table, info = run(study, GROUP, summary(covariates=["site"]))
    assert info["status"] == "done" and "inner CV" in info["regularisation"]
    assert info["max_split_error"] < 1e-6
    assert set(table.head(PLANTED)["consensus_id"]) == {f"C{k}" for k in range(1, PLANTED + 1)}


def test_continuous_outcome_and_skipped_outcomes():
    study = make_study(5)
    chosen = {"lambda_ratio=0.5, l1_ratio=0.5": 1}
    table, info = run(study, {"column": "age", "type": "continuous"}, summary(chosen=chosen))
    assert info["status"] == "done" and table.height == N_FEATURES
    assert set(table["direction"].unique()) <= {"toward higher age", "toward lower age"}
    assert table["contribution_positive"].null_count() == N_FEATURES
    assert set(table["method"]) == {"linear_split"} and table["importance_sd"].null_count() == N_FEATURES
    table, info = run(study, GROUP, {"status": "skipped", "reason": "too few", "params": MODELS_DEFAULTS})
    assert info["status"] == "skipped" and table.height == 0


@pytest.mark.parametrize("seed", [1])  # seed 0 measured too: planted 0.013-0.040, others at most 0.0012
def test_a_forest_gets_permutation_importance_on_the_models_folds(seed):
    """A random forest's score does not split over features: the planted features are found by permuting their
    part of the test samples' pooled vectors on the models stage's outer folds."""
    study = make_study(seed, n_samples=16)
    table, info = run(study, GROUP, summary(estimator="random_forest", outer_repeats=2, forest_trees=60))
    assert info["status"] == "done" and info["method"] == "permutation" and info["loss"] == "brier"
    assert info["baseline_loss"] < 0.15 and info["n_evaluations"] == 2 * 5  # repeats x shuffles
    assert table.columns == list(ATTRIBUTION) and table.height == N_FEATURES
    assert set(table["method"]) == {"permutation"} and table["direction"].null_count() == N_FEATURES
    planted = {f"C{k}" for k in range(1, PLANTED + 1)}
    top = table.head(PLANTED)
    assert set(top["consensus_id"]) == planted
    others = table.filter(~pl.col("consensus_id").is_in(list(planted)))["contribution"].to_numpy()
    assert top["contribution"].min() > 2 * np.abs(others).max() and np.abs(np.median(others)) < 0.002
    assert table["rank"].to_list() == list(range(1, N_FEATURES + 1))


def test_multiclass_outcomes_get_permutation_importance():
    study = make_study(6, n_samples=18)
    # three classes: the planted features are raised in "case" (every other sample); the rest split in two
    labels = ["case" if g == "case" else ("a" if i % 4 == 1 else "b")
              for i, g in enumerate(study["samples"]["group"])]
    multi = {**study, "samples": study["samples"].with_columns(group=pl.Series(labels))}
    table, info = run(multi, {"column": "group", "type": "multiclass"}, summary(outer_repeats=1))
    assert info["status"] == "done" and info["loss"] == "brier" and "multiclass" in info["notes"][0]
    assert {f"C{k}" for k in range(1, PLANTED + 1)} & set(table.head(PLANTED)["consensus_id"])


def test_pooling_must_match_and_be_a_weighted_sum():
    study = make_study(6)
    with pytest.raises(InputError, match="max_abs"):
        run(study, GROUP, summary(), {"method": "max_abs"})
    with pytest.raises(InputError, match="must come from one pooling"):
        run(study, GROUP, summary(), {"method": "mean"})  # pooled with abundance_share
    with pytest.raises(InputError, match="params"):
        run(study, GROUP, {"status": "done"})
    # Per-spectrum pooling is attributed as well when the vectors were pooled that way.
    other = make_study(6, pool_params={"method": "weighted_mean", "normalize": True})
    table, info = run(other, GROUP, summary(), {"method": "weighted_mean", "normalize": True})
    assert info["status"] == "done" and info["max_split_error"] < 1e-6


def _cli_args(tmp_path, paths: dict, out) -> list[str]:
    """The attribution command over the per-sample files in ``paths`` and the study files in ``tmp_path``."""
    return ["attribution", "--samples", str(tmp_path / "samples.tsv"), "--sample-embeddings", *paths["pooled"],
            "--embeddings", *paths["emb"], "--spectra", *paths["spec"], "--features", *paths["feat"],
            "--links", str(tmp_path / "links.parquet"), "--feature-matrix", str(tmp_path / "matrix.parquet"),
            "--identifications", str(tmp_path / "identifications.parquet"), "--model-summary",
            str(tmp_path / "summary.json"), "--out", str(out), "--params", json.dumps({"outcome": GROUP})]


def test_cli_writes_table_with_summary(tmp_path):
    study = make_study(7)
    ids = study["samples"]["sample_id"].to_list()
    paths = {k: [] for k in ("emb", "spec", "feat", "pooled")}
    for s in ids:
        emb, spec, feat = study["tables"][s]
        for key, frame in (("emb", emb), ("spec", spec), ("feat", feat)):
            paths[key].append(str(tmp_path / f"{s}_{key}.parquet"))
            frame.write_parquet(paths[key][-1])
        paths["pooled"].append(str(tmp_path / f"{s}_pooled.parquet"))
        study["pooled"].filter(pl.col("sample_id") == s).write_parquet(paths["pooled"][-1])
    study["samples"].write_csv(tmp_path / "samples.tsv", separator="\t")
    for name in ("links", "matrix", "identifications"):
        study[name].write_parquet(tmp_path / f"{name}.parquet")
    (tmp_path / "summary.json").write_text(json.dumps(summary(chosen={"lambda_ratio=0.05, l1_ratio=0.9": 1})))
    out = tmp_path / "attribution" / "group.parquet"
    args = _cli_args(tmp_path, paths, out)
    assert cli.main(args) == 0
    table = pl.read_parquet(out)
    assert table.columns[: len(CONTRACT)] == CONTRACT and table["rank"][0] == 1
    assert read_summary(out)["status"] == "done"
    assert cli.main(args[:-2] + ["--params", "{}"]) == 1  # no outcome: a clear error, not a traceback
    # a forest's attribution is its permutation importance, written and logged the same way
    (tmp_path / "summary.json").write_text(json.dumps(summary("random_forest", forest_trees=20, outer_repeats=1,
                                                              forest_min_samples_leaf=[1])))
    assert cli.main(args) == 0
    assert set(pl.read_parquet(out)["method"]) == {"permutation"} and read_summary(out)["loss"] == "brier"



def test_cli_attributes_vectors_pooled_without_the_flagged_features(tmp_path):
    """The corrected features of pool_corrected mark flagged features ``excluded``; pooling left them out, and the
    attribution must read that column to recompute the same pooling (it read two columns only, and a batch study
    whose blanks flagged features got no attribution and no report)."""
    study = make_study(8)
    ids = study["samples"]["sample_id"].to_list()
    flagged = {s: study["tables"][s][2].with_columns(
        pl.col("feature_id").is_in([f"{s}:F{k}" for k in (5, 17, 30)]).alias("excluded")) for s in ids}
    pooled = pl.concat([pool_sample(*study["tables"][s][:2], s, features=flagged[s]) for s in ids])
    paths = {k: [] for k in ("emb", "spec", "feat", "pooled")}
    for s in ids:
        emb, spec, _ = study["tables"][s]
        for key, frame in (("emb", emb), ("spec", spec), ("feat", flagged[s]),
                           ("pooled", pooled.filter(pl.col("sample_id") == s))):
            paths[key].append(str(tmp_path / f"{s}_{key}.parquet"))
            frame.write_parquet(paths[key][-1])
    study["samples"].write_csv(tmp_path / "samples.tsv", separator="\t")
    for name in ("links", "matrix", "identifications"):
        study[name].write_parquet(tmp_path / f"{name}.parquet")
    (tmp_path / "summary.json").write_text(json.dumps(summary()))
    out = tmp_path / "group.parquet"
    args = _cli_args(tmp_path, paths, out)
    assert cli.main(args) == 0
    table = pl.read_parquet(out)
    # the flagged consensus features were not pooled, so they carry no contribution
    assert not set(table["consensus_id"].to_list()) & {"C5", "C17", "C30"}
    assert {"C1", "C2", "C3", "C4"} <= set(table["consensus_id"].to_list())
