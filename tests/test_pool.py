"""The pool stage: abundance-share pooling per feature, the per-spectrum weightings, mapped-only filtering, null for
samples without usable spectra, CLI."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys

import numpy as np
import polars as pl
import pytest

from ms2study.core.errors import InputError
from ms2study.core.tables import SAMPLE_EMBEDDING
from ms2study.modelling import chemistry, pooling
from ms2study.modelling.pooling import pool_sample
from ms2study.stages import pool

VECTORS = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, -0.6, 0.8], None, [0.6, 0.8, 0.0]]
FEATURES = ["s:F1", "s:F2", "s:F3", "s:F4", None]        # the last spectrum is unmapped
INTENSITY = [np.e - 1, np.e**3 - 1, None, 5.0, 100.0]  # log1p weights 1, 3, 0 (missing)


def tables(sample: str = "s") -> tuple[pl.DataFrame, pl.DataFrame]:
    ids = [f"{sample}:S{i}" for i in range(len(VECTORS))]
    embeddings = pl.DataFrame(
        {"spectrum_id": ids, "sample_id": [sample] * len(ids), "feature_id": FEATURES, "embedding": VECTORS,
         "model_id": ["m1"] * len(ids)},
        schema_overrides={"embedding": pl.List(pl.Float32)},
    )
    # Spectra in another order than the embeddings: pooling joins by spectrum_id, not by position.
    spectra = pl.DataFrame({"spectrum_id": ids[::-1], "precursor_intensity": INTENSITY[::-1]})
    return embeddings, spectra


def test_weighted_mean_uses_log1p_precursor_intensity_of_mapped_spectra() -> None:
    embeddings, spectra = tables()
    out = pool_sample(embeddings, spectra, "s", {"method": "weighted_mean"})
    assert out.columns[: len(SAMPLE_EMBEDDING)] == list(SAMPLE_EMBEDDING) and out.height == 1
    assert out.schema["embedding"] == pl.List(pl.Float32) and out.schema["n_spectra"] == pl.Int32
    # Mapped with embeddings: S0 (w 1), S1 (w 3), S2 (w 0, intensity missing); S3 has no embedding.
    np.testing.assert_allclose(out["embedding"][0].to_list(), [0.25, 0.75, 0.0], atol=1e-6)
    assert out["n_spectra"][0] == 3 and out["n_spectra_total"][0] == 5
    assert out["model_id"][0] == "m1" and out["method"][0] == "weighted_mean"


def test_mean_max_abs_normalize_and_unmapped() -> None:
    embeddings, spectra = tables()
    mean = pool_sample(embeddings, spectra, "s", {"method": "mean"})["embedding"][0].to_list()
    np.testing.assert_allclose(mean, [1 / 3, 0.4 / 3, 0.8 / 3], atol=1e-6)
    max_abs = pool_sample(embeddings, spectra, "s", {"method": "max_abs"})["embedding"][0].to_list()
    np.testing.assert_allclose(max_abs, [1.0, 1.0, 0.8], atol=1e-6)
    everything = pool_sample(embeddings, spectra, "s", {"method": "mean", "mapped_only": False})
    assert everything["n_spectra"][0] == 4
    np.testing.assert_allclose(everything["embedding"][0].to_list(), [0.4, 0.3, 0.2], atol=1e-6)
    unit = pool_sample(embeddings, spectra, "s", {"method": "weighted_mean", "normalize": True})
    unit = unit["embedding"][0].to_list()
    assert np.linalg.norm(unit) == pytest.approx(1.0, abs=1e-6)


def share_tables() -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """Feature F1 sampled twice by DDA, F2 once, one unmapped scan; F2 holds three times F1's abundance."""
    ids = ["s:S1", "s:S2", "s:S3", "s:S4"]
    embeddings = pl.DataFrame(
        {"spectrum_id": ids, "sample_id": ["s"] * 4, "feature_id": ["s:F1", "s:F1", "s:F2", None],
         "embedding": [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [0.6, 0.8, 0.0]]},
        schema_overrides={"embedding": pl.List(pl.Float32)},
    )
    spectra = pl.DataFrame({"spectrum_id": ids, "precursor_intensity": [10.0, 30.0, 5.0, 50.0]})
    features = pl.DataFrame({"feature_id": ["s:F2", "s:F1", "s:F9"], "intensity": [300.0, 100.0, 7.0]})
    return embeddings, spectra, features


def test_abundance_share_averages_each_feature_and_weights_by_its_share() -> None:
    embeddings, spectra, features = share_tables()
    out = pool_sample(embeddings, spectra, "s", features=features)
    assert out["method"][0] == "abundance_share" and out["abundance_source"][0] == "feature_intensity"
    # F1 = mean of its two spectra [0.5, 0.5, 0] with weight 100; F2 = [0, 0, 1] with weight 300.
    np.testing.assert_allclose(out["embedding"][0].to_list(), [0.125, 0.125, 0.75], atol=1e-6)
    assert out["n_spectra"][0] == 3 and out["n_features"][0] == 2
    # A third spectrum of F1 (DDA sampled it again) adds no weight to F1 (acquisition is not abundance); it only
    # moves F1's mean embedding towards [0, 1, 0].
    extra = pl.concat([embeddings, embeddings[1].with_columns(pl.lit("s:S5").alias("spectrum_id"))])
    again = pool_sample(extra, pl.concat([spectra, pl.DataFrame({"spectrum_id": ["s:S5"],
                                                                  "precursor_intensity": [40.0]})]), "s",
                        features=features)
    assert again["n_spectra"][0] == 4
    np.testing.assert_allclose(again["embedding"][0].to_list(), [0.25 / 3, 0.5 / 3, 0.75], atol=1e-6)
    # Tripling F1's abundance triples its weight.
    tripled = features.with_columns(pl.when(pl.col("feature_id") == "s:F1").then(300.0).otherwise(
        pl.col("intensity")).alias("intensity"))
    np.testing.assert_allclose(pool_sample(embeddings, spectra, "s", features=tripled)["embedding"][0].to_list(),
                               [0.25, 0.25, 0.5], atol=1e-6)


def test_abundance_share_without_features_uses_the_largest_precursor_intensity() -> None:
    embeddings, spectra, features = share_tables()
    out = pool_sample(embeddings, spectra, "s")
    assert out["abundance_source"][0] == "precursor_intensity"
    # F1 weight max(10, 30) = 30, F2 weight 5.
    np.testing.assert_allclose(out["embedding"][0].to_list(), [15 / 35, 15 / 35, 5 / 35], atol=1e-6)
    forced = pool_sample(embeddings, spectra, "s", {"abundance": "precursor_intensity"}, features=features)
    np.testing.assert_allclose(forced["embedding"][0].to_list(), [15 / 35, 15 / 35, 5 / 35], atol=1e-6)
    with pytest.raises(InputError, match="needs the features table"):
        pool_sample(embeddings, spectra, "s", {"abundance": "feature_intensity"})
    with pytest.raises(InputError, match="abundance"):
        pool_sample(embeddings, spectra, "s", {"abundance": "area"})


def test_abundance_share_with_unmapped_spectra_scales_their_precursor_intensity() -> None:
    embeddings, spectra, features = share_tables()
    out = pool_sample(embeddings, spectra, "s", {"mapped_only": False}, features=features)
    assert out["n_features"][0] == 3 and out["n_spectra"][0] == 4
    # The unmapped scan weighs its precursor intensity times the median area / precursor ratio of the features.
    ratio = np.median([100.0 / 30.0, 300.0 / 5.0])
    w = np.array([100.0, 300.0, 50.0 * ratio])
    expected = (w[0] * np.array([0.5, 0.5, 0.0]) + w[1] * np.array([0.0, 0.0, 1.0])
                + w[2] * np.array([0.6, 0.8, 0.0])) / w.sum()
    np.testing.assert_allclose(out["embedding"][0].to_list(), expected, atol=1e-6)


def test_sample_without_usable_spectra_gets_null_not_zeros(caplog) -> None:
    embeddings, spectra = tables()
    only_unmapped = embeddings.filter(pl.col("feature_id").is_null())
    with caplog.at_level(logging.WARNING):
        out = pool_sample(only_unmapped, spectra, "s")
    assert out["embedding"][0] is None and out["n_spectra"][0] == 0
    assert "no usable spectra" in caplog.text
    empty = pool_sample(embeddings.clear(), spectra, "s")
    assert empty.height == 1 and empty["embedding"][0] is None and empty["n_spectra"][0] == 0


def test_zero_intensities_fall_back_to_equal_weights() -> None:
    embeddings, spectra = tables()
    zero = spectra.with_columns(pl.lit(0.0).alias("precursor_intensity"))
    out = pool_sample(embeddings, zero, "s", {"method": "weighted_mean"})["embedding"][0].to_list()
    np.testing.assert_allclose(out, [1 / 3, 0.4 / 3, 0.8 / 3], atol=1e-6)
    # abundance_share falls back the same way (every spectrum here is its own feature).
    share = pool_sample(embeddings, zero, "s")["embedding"][0].to_list()
    np.testing.assert_allclose(share, [1 / 3, 0.4 / 3, 0.8 / 3], atol=1e-6)


def test_bad_input_is_refused() -> None:
    embeddings, spectra = tables()
    with pytest.raises(InputError, match="unknown pool parameter 'weights'"):
        pool_sample(embeddings, spectra, "s", {"weights": "x"})
    with pytest.raises(InputError, match="method"):
        pool_sample(embeddings, spectra, "s", {"method": "median"})
    with pytest.raises(InputError, match="other samples"):
        pool_sample(embeddings, spectra, "t")


def test_cli(tmp_path, repo) -> None:
    embeddings, spectra = tables()
    embeddings.write_parquet(tmp_path / "e.parquet")
    spectra.write_parquet(tmp_path / "s.parquet")
    out = tmp_path / "sample_embedding.parquet"
    env = dict(os.environ, PYTHONPATH=str(repo / "workflow"))
    cmd = [sys.executable, "-m", "ms2study", "pool", "--embeddings", str(tmp_path / "e.parquet"),
           "--spectra", str(tmp_path / "s.parquet"), "--sample-id", "s", "--out", str(out),
           "--params", '{"method": "mean"}']
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert pl.read_parquet(out)["n_spectra"].to_list() == [3]
    embeddings, spectra, features = share_tables()
    for name, table in (("e", embeddings), ("s", spectra), ("f", features)):
        table.write_parquet(tmp_path / f"{name}.parquet")
    cmd = cmd[: cmd.index("--params")] + ["--features", str(tmp_path / "f.parquet")]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    pooled = pl.read_parquet(out)
    assert pooled["abundance_source"].to_list() == ["feature_intensity"]
    np.testing.assert_allclose(pooled["embedding"][0].to_list(), [0.125, 0.125, 0.75], atol=1e-6)


# ------------------------------------------------------------------------------------------ chemical-space pooling


def clusters(n_per: int = 30, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Three tight groups of 8-d vectors around orthogonal directions (labels 0, 1, 2), different norms."""
    rng = np.random.default_rng(seed)
    centres = np.eye(8)[:3]
    labels = np.repeat(np.arange(3), n_per)
    vectors = (centres[labels] + 0.05 * rng.normal(size=(labels.size, 8))) * rng.uniform(0.5, 3.0, (labels.size, 1))
    return vectors, labels


def test_prototypes_recover_the_regions_and_round_trip(tmp_path) -> None:
    vectors, labels = clusters()
    protos = chemistry.learn_prototypes(vectors, k=3, seed=1, model_id="m1", source="test")
    assert protos.centers.shape == (3, 8) and protos.centers.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(protos.centers, axis=1), 1.0, atol=1e-6)
    region = chemistry.assign_prototypes(vectors, protos).argmax(axis=1)
    # every true group maps to one prototype and no two groups share one (norm plays no part: cosine)
    assert all(len(set(region[labels == g])) == 1 for g in range(3)) and len(set(region)) == 3
    chemistry.write_prototypes(protos, tmp_path / "p.parquet")
    back = chemistry.read_prototypes(tmp_path / "p.parquet")
    assert back.prototypes_id == protos.prototypes_id and back.model_id == "m1" and back.n_spectra == 90
    np.testing.assert_array_equal(back.centers, protos.centers)
    # the same data and seed give the same prototypes; too few rows for k is refused
    assert chemistry.learn_prototypes(vectors, k=3, seed=1).prototypes_id == protos.prototypes_id
    with pytest.raises(InputError, match="2 usable spectrum embeddings for 3 prototypes"):
        chemistry.learn_prototypes(np.vstack([vectors[:2], np.zeros((5, 8))]), k=3)
    # a reference run without MS/MS (trial finding, session 21: "lower k" did not help): the cause and the fix named
    with pytest.raises(InputError, match="no MS/MS spectra") as err:
        chemistry.learn_prototypes(np.zeros((0, 8)), k=2, source="reference sample")
    assert "library" in err.value.fix and "reference sample" in err.value.message
    assert "chemical_space out of models: feature_sets" in err.value.fix  # an MS1-only study has no bags
    # too few spectra in the library itself: not "learn them on the library" (a fresh user's 5-spectrum library)
    with pytest.raises(InputError) as err:
        chemistry.learn_prototypes(vectors[:2], k=3, source="library tiny5")
    assert "at most 2" in err.value.fix and "broader library" in err.value.fix and "source: library" not in \
        err.value.fix
    with pytest.raises(InputError) as err:
        chemistry.learn_prototypes(vectors[:2], k=3, source="embeddings of S01")
    assert "source: library" in err.value.fix
    # fewer spectra than k but enough for coarser regions: k shrinks, with a warning (a second trial: a
    # 26-spectrum library stopped every study with the default k = 64, no report)
    coarse = chemistry.learn_prototypes(vectors[:26], k=64, seed=1, source="library own26")
    assert coarse.centers.shape[0] == 26 // chemistry.MIN_SPECTRA_PER_PROTOTYPE
    with pytest.raises(InputError, match="not a prototype table"):
        pl.DataFrame({"x": [1]}).write_parquet(tmp_path / "bad.parquet")
        chemistry.read_prototypes(tmp_path / "bad.parquet")


def test_soft_assignment_spreads_membership_and_hard_takes_the_nearest() -> None:
    vectors, _ = clusters()
    protos = chemistry.learn_prototypes(vectors, k=3, seed=0)
    between = np.array([[1.0, 1.0, 0, 0, 0, 0, 0, 0], [0.0] * 8])
    soft = chemistry.assign_prototypes(between, protos, "soft", temperature=0.05)
    hard = chemistry.assign_prototypes(between, protos, "hard")
    assert soft[0].sum() == pytest.approx(1.0) and np.sort(soft[0])[-2:] == pytest.approx([0.5, 0.5], abs=0.05)
    assert hard[0].sum() == 1.0 and hard[0].max() == 1.0
    assert not soft[1].any() and not hard[1].any()  # a zero vector belongs nowhere
    with pytest.raises(InputError, match="dimension"):
        chemistry.assign_prototypes(np.ones((2, 5)), protos)


def chemistry_tables(scale_f2: float = 1.0) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame, chemistry.Prototypes]:
    """Three features of a sample: F1 and F2 in region of axis 0, F3 in the region of axis 1; none in axis 2's."""
    vectors, _ = clusters()
    protos = chemistry.learn_prototypes(vectors, k=3, seed=0, model_id="m1")
    ids = ["s:S1", "s:S2", "s:S3", "s:S4"]
    embeddings = pl.DataFrame(
        {"spectrum_id": ids, "sample_id": ["s"] * 4, "feature_id": ["s:F1", "s:F2", "s:F3", None],
         "embedding": [[2.0, 0.1] + [0.0] * 6, [0.9, -0.1] + [0.0] * 6, [0.0, 1.0] + [0.0] * 6,
                       [0.0, 0.0, 1.0] + [0.0] * 5], "model_id": ["m1"] * 4},
        schema_overrides={"embedding": pl.List(pl.Float32)})
    spectra = pl.DataFrame({"spectrum_id": ids, "precursor_intensity": [10.0, 20.0, 30.0, 40.0]})
    features = pl.DataFrame({"feature_id": ["s:F1", "s:F2", "s:F3"], "intensity": [100.0, 300.0 * scale_f2, 50.0]})
    return embeddings, spectra, features, protos


def test_bag_of_chemistry_sums_abundance_per_region_and_leaves_empty_regions_null() -> None:
    embeddings, spectra, features, protos = chemistry_tables()
    out = chemistry.chemistry_sample(embeddings, spectra, "s", protos, features=features)
    assert out.columns == list(chemistry.SAMPLE_CHEMISTRY) and out["n_features"][0] == 3
    assert out["prototypes_id"][0] == protos.prototypes_id and out["model_id"][0] == "m1"
    region = {i: int(chemistry.assign_prototypes(np.eye(8)[[i]], protos).argmax()) for i in range(3)}
    values = out["abundance"][0].to_list()
    assert values[region[0]] == pytest.approx(np.log1p(400.0))
    assert values[region[1]] == pytest.approx(np.log1p(50.0))
    assert values[region[2]] is None  # only an unmapped scan lies there: nothing measured, not 0
    # tripling one compound of a region moves that region by log(700/400), the others not at all
    tripled = chemistry.chemistry_sample(embeddings, spectra, "s", protos, features=chemistry_tables(3.0)[2])
    after = tripled["abundance"][0].to_list()
    assert after[region[0]] - values[region[0]] == pytest.approx(np.log(1001.0 / 401.0), abs=1e-6)
    assert after[region[1]] == values[region[1]] and after[region[2]] is None
    # the same sample and prototypes always give the same bag, whatever else is in the study
    again = chemistry.chemistry_sample(embeddings, spectra, "s", protos, features=features)
    assert again.equals(out)
    soft = chemistry.chemistry_sample(embeddings, spectra, "s", protos, {"chemistry": {"assignment": "soft"}},
                                 features=features)
    assert all(v is not None for v in soft["abundance"][0].to_list())  # soft membership reaches every region


def test_bag_of_chemistry_refuses_other_encoders_and_bad_settings() -> None:
    embeddings, spectra, features, protos = chemistry_tables()
    other = embeddings.with_columns(pl.lit("m2").alias("model_id"))
    with pytest.raises(InputError, match="learned with m1"):
        chemistry.chemistry_sample(other, spectra, "s", protos, features=features)
    with pytest.raises(InputError, match="assignment"):
        chemistry.chemistry_sample(embeddings, spectra, "s", protos, {"chemistry": {"assignment": "fuzzy"}})
    with pytest.raises(InputError, match="unknown pool chemistry parameter"):
        pooling.merge_params({"chemistry": {"temp": 1}})
    with pytest.raises(InputError, match="k must be an integer"):
        pooling.merge_params({"prototypes": {"k": 1}})
    empty = chemistry.chemistry_sample(embeddings.filter(pl.col("feature_id").is_null()), spectra, "s", protos)
    assert empty["n_features"][0] == 0 and empty["abundance"][0].to_list() == [None] * 3


def test_prototypes_and_chemistry_commands(tmp_path) -> None:
    import argparse

    def main(argv: list[str]) -> int:
        """The commands as ms2study's CLI runs them (pool.register; without importing every other stage)."""
        parser = argparse.ArgumentParser()
        pool.register(parser.add_subparsers(dest="command"))
        try:
            return int(parser.parse_args(argv).func(parser.parse_args(argv)) or 0)
        except InputError:
            return 1

    vectors, _ = clusters()
    reference = pl.DataFrame({"spectrum_id": [f"r:{i}" for i in range(len(vectors))], "sample_id": ["r"] * 90,
                              "feature_id": [f"r:F{i}" for i in range(90)], "embedding": vectors.tolist(),
                              "model_id": ["m1"] * 90}, schema_overrides={"embedding": pl.List(pl.Float32)})
    reference.write_parquet(tmp_path / "ref.parquet")
    assert main(["prototypes", "--embeddings", str(tmp_path / "ref.parquet"), "--out", str(tmp_path / "p.parquet"),
                 "--params", '{"prototypes": {"k": 3, "seed": 0}}']) == 0
    protos = chemistry.read_prototypes(tmp_path / "p.parquet")
    assert protos.centers.shape == (3, 8) and protos.model_id == "m1"
    embeddings, spectra, features, _ = chemistry_tables()
    for name, table in (("e", embeddings), ("s", spectra), ("f", features)):
        table.write_parquet(tmp_path / f"{name}.parquet")
    assert main(["chemistry", "--embeddings", str(tmp_path / "e.parquet"), "--spectra", str(tmp_path / "s.parquet"),
                 "--features", str(tmp_path / "f.parquet"), "--prototypes", str(tmp_path / "p.parquet"),
                 "--sample-id", "s", "--out", str(tmp_path / "c.parquet")]) == 0
    bag = pl.read_parquet(tmp_path / "c.parquet")
    assert bag["prototypes_id"][0] == protos.prototypes_id and bag["abundance"].list.len()[0] == 3
    # a library index's stored embeddings serve as well
    (tmp_path / "lib" / "embeddings").mkdir(parents=True)
    np.save(tmp_path / "lib" / "embeddings" / "m1.npy", vectors.astype(np.float32))
    assert main(["prototypes", "--library-index", str(tmp_path / "lib"), "--out", str(tmp_path / "q.parquet"),
                 "--params", '{"prototypes": {"k": 3}}']) == 0
    assert chemistry.read_prototypes(tmp_path / "q.parquet").source == "library lib"
    assert main(["prototypes", "--out", str(tmp_path / "x.parquet")]) == 1  # no source given


def test_prototypes_on_the_first_run_with_enough_spectra(tmp_path, caplog) -> None:
    """A second fresh user's trial: without a library the prototypes are learned on the reference run, and a
    reference without features (one MS1 scan) stopped the study in this job. With --first-usable the job takes the
    first of the given tables (the reference, then the runs the alignment falls back to) that has enough spectra."""
    from ms2study import cli

    vectors, _ = clusters()
    paths = []
    for name, rows in (("T1", vectors[:0]), ("S02", vectors[:2]), ("S03", vectors)):
        folder = tmp_path / name
        folder.mkdir()
        pl.DataFrame({"spectrum_id": [f"{name}:{i}" for i in range(len(rows))],
                      "embedding": [list(map(float, r)) for r in rows], "model_id": ["m1"] * len(rows)},
                     schema={"spectrum_id": pl.Utf8, "embedding": pl.List(pl.Float64),
                             "model_id": pl.Utf8}).write_parquet(folder / "embeddings.parquet")
        paths.append(str(folder / "embeddings.parquet"))
    out = tmp_path / "prototypes.parquet"
    with caplog.at_level("WARNING"):
        assert cli.main(["prototypes", "--embeddings", *paths, "--first-usable", "--out", str(out), "--params",
                         json.dumps({"prototypes": {"k": 3, "seed": 0}})]) == 0
    back = chemistry.read_prototypes(out)
    assert back.source == "embeddings of S03" and back.centers.shape[0] == 3
    assert "reference run T1 has too few spectrum embeddings" in caplog.text and "learned on S03" in caplog.text
    # none usable: the reference's own refusal (the command fails with its message)
    assert cli.main(["prototypes", "--embeddings", paths[0], "--first-usable", "--out", str(tmp_path / "x.parquet")]) \
        != 0 and not (tmp_path / "x.parquet").exists()
