"""Issue 5, item 7 on the demo study: the planted effect is found by the pooled embeddings, and permuted labels are not.

One 12-sample study is simulated exactly as ``ms2study simulate DIR --samples 12 --seed 0`` makes the demo (cases
carry one chemical class raised threefold), and the per-sample stages run through their function API (detect,
spectra, embed with the configured default encoder, pool with the default abundance-share method), which is what the
pipeline's rules call; the study stages are skipped because only the pooled embeddings are modelled here.

Calibration under permuted labels is checked on 20 random relabelings of the same samples, balanced and independent
of the true labels (each true class split evenly between the new classes), so they carry none of the planted effect.
Rerunning the whole permutation test 20 times costs 20 × 20 nested cross-validations; instead the cross-validated
metric of 60 relabelings is computed once, each of the first 20 serves as the "observed" one and 19 others drawn at
random from the remaining 59 serve as its null. Relabelings are exchangeable under the null, so this is the p-value
``model_outcome`` computes, with other permutations; one relabeling also goes through ``model_outcome`` itself.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from ms2study.stages import models
from ms2study.stages.detect import detect_features
from ms2study.encoder.inference import embed_spectra
from ms2study.modelling.crossval import cross_validate
from ms2study.modelling.featuresets import embedding_feature_set
from ms2study.modelling.metrics import bootstrap_weights, metric_values, summarise_metric
from ms2study.modelling.outcomes import encode_outcome
from ms2study.modelling.pooling import pool_sample
from ms2study.simulate.study import simulate_study
from ms2study.stages.spectra import extract_spectra

pytestmark = pytest.mark.slow

OUTCOME = {"column": "group", "type": "binary", "positive_class": "case"}
N_RELABELINGS = 20
N_POOL = 60
N_NULL = 19  # smallest p is 1/20 = 0.05, so "p > 0.05" can fail


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(sample sheet, pooled sample embeddings) of the simulated demo study."""
    root = tmp_path_factory.mktemp("demo")
    simulate_study(root, n_samples=12, seed=0)
    sheet = pl.read_csv(root / "samples.tsv", separator="\t", infer_schema_length=0)
    pooled = []
    for sample, file in zip(sheet["sample_id"], sheet["file"]):
        features = detect_features(root / file, sample)
        spectra = extract_spectra(root / file, features, sample)
        pooled.append(pool_sample(embed_spectra(spectra), spectra, sample, features=features))
    return sheet, pl.concat(pooled, how="diagonal_relaxed")


def test_pooled_embeddings_find_the_planted_effect(demo: tuple[pl.DataFrame, pl.DataFrame], tmp_path: Path) -> None:
    sheet, pooled = demo
    assert pooled["embedding"].null_count() == 0 and (pooled["n_features"] > 100).all()
    assert set(pooled["abundance_source"]) == {"feature_intensity"}
    sets = {"embedding": embedding_feature_set(pooled)}
    summary = models.model_outcomes(sheet, sets, [OUTCOME], tmp_path, {"n_permutations": 19, "n_bootstrap": 500})
    entry = summary["group"]["feature_sets"]["embedding"]
    assert entry["metric"] == "roc_auc" and entry["n_samples"] == 12
    assert entry["value"] >= 0.9, entry
    assert entry["value"] > entry["permutation_null_mean"] + 0.2
    assert (tmp_path / "group" / "summary.json").exists()


def _labelings_independent_of(y: np.ndarray, n: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Balanced relabelings that carry no information about ``y``: half of each true class goes to each new class.

    A plain permutation of 6 cases and 6 controls often keeps 4 or 5 cases together, and with a real effect in the
    data such a labeling is partly true, so its small p is right, not a false positive. Splitting each true class
    evenly makes the new labels orthogonal to the planted effect: the null that item 7 asks about.
    """
    out = []
    for _ in range(n):
        labels = np.empty_like(y)
        for value in np.unique(y):
            members = rng.permutation(np.flatnonzero(y == value))
            half = len(members) // 2
            labels[members[:half]] = y.min()
            labels[members[half:]] = y.max()
        out.append(labels)
    return out


def test_permuted_labels_give_chance_intervals_and_large_p(demo: tuple[pl.DataFrame, pl.DataFrame],
                                                           tmp_path: Path) -> None:
    sheet, pooled = demo
    params = models.merge_params({"n_bootstrap": 500})
    X = embedding_feature_set(pooled).drop("sample_id").to_numpy()
    y = encode_outcome(sheet, OUTCOME)["y"]
    labelings = _labelings_independent_of(y, N_POOL, np.random.default_rng(2024))
    observed, covers = [], []
    for labels in labelings:
        cv = cross_validate(X, labels, "binary", "mean", params, n_repeats=1)
        observed.append(metric_values("roc_auc", labels, cv["scores"][0], cv["fold"][0])[0])
        if len(covers) < N_RELABELINGS:
            boot = bootstrap_weights(labels, "binary", int(params["n_bootstrap"]), int(params["seed"]))
            stats = summarise_metric("roc_auc", labels, cv["scores"], cv["fold"], boot, 0.95)
            covers.append(stats["ci_low"] <= 0.5 <= stats["ci_high"])
    observed = np.array(observed)
    good = 0
    for i in range(N_RELABELINGS):
        others = np.delete(np.arange(N_POOL), i)
        null = observed[np.random.default_rng(i).choice(others, size=N_NULL, replace=False)]
        p = (1 + np.sum(null >= observed[i] - 1e-12)) / (1 + N_NULL)
        good += bool(covers[i] and p > 0.05)
    assert good >= 0.9 * N_RELABELINGS, (good, observed[:N_RELABELINGS].round(2).tolist(), covers)
    assert abs(float(np.mean(observed)) - 0.5) < 0.15  # chance level 0.5

    # The stage function itself on one relabeling: its interval covers chance and its null sits near 0.5 (its p-value
    # is one draw of what the 20 above check).
    shuffled = sheet.with_columns(pl.Series("group", sheet["group"].to_numpy()[np.random.default_rng(7).permutation(
        sheet.height)]))
    summary = models.model_outcomes(shuffled, {"embedding": embedding_feature_set(pooled)}, [OUTCOME],
                                    tmp_path, {"n_permutations": 19, "n_bootstrap": 500, "outer_repeats": 2})
    entry = summary["group"]["feature_sets"]["embedding"]
    assert entry["ci_low"] <= 0.5 <= entry["ci_high"], entry
    assert abs(entry["permutation_null_mean"] - 0.5) < 0.2 and entry["permutation_p"] is not None


# ------------------------------------------------------------------------------------------------ issue 12
# Realistic studies (simulate --profile realistic): a sparse effect among ~2,800 compounds. Feature sets are built as
# benchmarks/biology.py builds them (features from the simulation's truth; embedding, pooling, bags of chemistry and
# models are the pipeline's code), for the target setting: 12 compounds 3x higher in 8 of 16 samples.

def _biology():
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import biology

    return biology


@pytest.fixture(scope="module")
def target_studies() -> list[dict]:
    """The sweep's target setting, replicates 0-2 (the studies benchmarks/measured/biology.json reports), with the
    default estimator and L2 for comparison, and one null study of the same design."""
    from ms2study.simulate import study as simulate

    biology = _biology()
    # the pipeline's k (biology.PROTOTYPES, 64), as in the committed sweep since session 15 (measured/biology.json)
    prototypes = biology.library_prototypes(0, biology.PROTOTYPES["k"])
    out = []
    for replicate, null in ((0, False), (1, False), (2, False), (0, True)):
        seed = biology.study_seed(16, 3.0, 12, replicate, null)
        known = simulate.simulate_features(16, seed=seed, params={"fold_change": 3.0, "n_changed": 0 if null else 12})
        sets = biology.feature_sets(known, prototypes)
        out.append({"null": null, "seed": seed,
                    "elastic_net": biology.evaluate(known, sets, {}),
                    "linear": biology.evaluate(known, {"features": sets["features"]}, {"estimator": "linear",
                                                                                        "univariate_top_k": None})})
    return out


def test_sparse_effect_is_found_in_the_feature_matrix_by_the_default_estimator(target_studies: list[dict]) -> None:
    """12 of ~2,800 compounds 3x higher in 8 of 16 samples, modelled on the corrected intensities as a pipeline run
    does. Measured (benchmarks/measured/biology.json, the same three studies): elastic net on the feature matrix AUC
    0.92, 0.96, 0.89; L2 on all features 0.42, 0.62, 0.60; the embedding-based sets 0.29-0.75. Issue 12's target
    (AUC >= 0.9 with an interval above 0.5) is reached by one of the three: the others' intervals start at 0.5
    (see benchmarks/README.md)."""
    effect = [s for s in target_studies if not s["null"]]
    sparse = [s["elastic_net"]["features"]["auc"] for s in effect]
    dense = [s["linear"]["features"]["auc"] for s in effect]
    assert all(max(s["elastic_net"], key=lambda n: s["elastic_net"][n]["auc"]) == "features" for s in effect)
    assert np.mean(sparse) >= 0.87, sparse  # measured 0.92
    assert np.mean(sparse) >= np.mean(dense) + 0.15, (sparse, dense)


def test_null_study_intervals_cover_chance(target_studies: list[dict]) -> None:
    """The same design without an effect: no feature set's interval excludes 0.5 (the sweep's false-positive
    criterion)."""
    (null,) = [s for s in target_studies if s["null"]]
    for name, entry in null["elastic_net"].items():
        assert entry["ci"][0] <= 0.5 <= entry["ci"][1], (name, entry)
