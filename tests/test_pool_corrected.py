"""Pooling with the study's corrected intensities (correction.weights, ms2study pool-corrected): each feature takes
its consensus feature's correction factor, unlinked features the run's median, flagged features are left out of the
pooled vector and of the bag of chemistry."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from test_pool import chemistry_tables, share_tables

from ms2study.core.errors import InputError
from ms2study.correction.weights import CORRECTED_FEATURES, corrected_feature_intensities
from ms2study.modelling import chemistry
from ms2study.modelling.pooling import pool_sample

REPO = Path(__file__).resolve().parents[1]


def study_tables() -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """Run s: F1 in consensus C1 (corrected 2x), F2 in C2 (corrected 0.5x, flagged), F9 in none; another run t."""
    features = pl.DataFrame({"feature_id": ["s:F2", "s:F1", "s:F9"], "intensity": [300.0, 100.0, 7.0]})
    links = pl.DataFrame({"consensus_id": ["C1", "C2", "C1"], "sample_id": ["s", "s", "t"],
                          "feature_id": ["s:F1", "s:F2", "t:F1"]})
    raw = pl.DataFrame({"consensus_id": ["C1", "C2", "C3"], "s": [100.0, 300.0, None], "t": [50.0, None, 9.0]})
    corrected = pl.DataFrame({"consensus_id": ["C1", "C2", "C3"], "excluded": [False, True, False],
                              "s": [200.0, 150.0, 4.0], "t": [60.0, 1.0, 9.0]})
    return features, links, raw, corrected


def test_each_feature_takes_its_consensus_factor_and_unlinked_ones_the_median() -> None:
    features, links, raw, corrected = study_tables()
    out = corrected_feature_intensities(features, links, raw, corrected, "s")
    assert out.columns == list(CORRECTED_FEATURES) and out["feature_id"].to_list() == ["s:F2", "s:F1", "s:F9"]
    # factors: C1 200/100 = 2, C2 150/300 = 0.5; C3 was not detected in s (raw null: a filled value, no factor);
    # F9 is in no consensus feature and takes the median of the run's factors, 1.25
    np.testing.assert_allclose(out["factor"].to_numpy(), [0.5, 2.0, 1.25])
    np.testing.assert_allclose(out["intensity"].to_numpy(), [150.0, 200.0, 8.75])
    assert out["excluded"].to_list() == [True, False, False]
    kept = corrected_feature_intensities(features, links, raw, corrected, "s", exclude_flagged=False)
    assert not kept["excluded"].any()


def test_missing_columns_and_runs_are_refused_naming_the_run() -> None:
    features, links, raw, corrected = study_tables()
    with pytest.raises(InputError, match="lacks column.*'u'"):
        corrected_feature_intensities(features, links, raw, corrected, "u")
    with pytest.raises(InputError, match="feature links"):
        corrected_feature_intensities(features, links.drop("consensus_id"), raw, corrected, "s")


def test_flagged_features_leave_the_pooled_vector_and_the_bag() -> None:
    embeddings, spectra, features = share_tables()
    before = pool_sample(embeddings, spectra, "s", features=features)
    flagged = features.with_columns((pl.col("feature_id") == "s:F2").alias("excluded"))
    after = pool_sample(embeddings, spectra, "s", features=flagged)
    # F2 (its one spectrum) is gone: only F1's two spectra are pooled, its mean embedding alone
    assert (before["n_spectra"][0], after["n_spectra"][0]) == (3, 2)
    np.testing.assert_allclose(after["embedding"][0].to_list(), [0.5, 0.5, 0.0], atol=1e-6)
    embeddings, spectra, features, protos = chemistry_tables()
    bag = chemistry.chemistry_sample(embeddings, spectra, "s", protos, features=features)
    flagged = features.with_columns((pl.col("feature_id") == "s:F3").alias("excluded"))
    without = chemistry.chemistry_sample(embeddings, spectra, "s", protos, features=flagged)
    assert without["n_features"][0] == bag["n_features"][0] - 1
    assert sum(v is None for v in without["abundance"][0]) == sum(v is None for v in bag["abundance"][0]) + 1


def test_pool_corrected_command_writes_both_tables(tmp_path: Path) -> None:
    features, links, raw, corrected = study_tables()
    embeddings, spectra, _ = share_tables()
    paths = {}
    for name, frame in (("features", features), ("links", links), ("raw", raw), ("corrected", corrected),
                        ("embeddings", embeddings), ("spectra", spectra)):
        paths[name] = tmp_path / f"{name}.parquet"
        frame.write_parquet(paths[name])
    env = dict(os.environ, PYTHONPATH=str(REPO / "workflow"))
    command = [sys.executable, "-m", "ms2study", "pool-corrected", "--embeddings", str(paths["embeddings"]),
               "--spectra", str(paths["spectra"]), "--features", str(paths["features"]), "--links", str(paths["links"]),
               "--feature-matrix", str(paths["raw"]), "--corrected-matrix", str(paths["corrected"]), "--sample-id", "s",
               "--out-features", str(tmp_path / "out_features.parquet"), "--out", str(tmp_path / "pooled.parquet")]
    subprocess.run(command, check=True, env=env, capture_output=True)
    pooled = pl.read_parquet(tmp_path / "pooled.parquet")
    # F2 flagged and dropped; F1 alone remains
    assert pooled["n_spectra"][0] == 2 and pooled["abundance_source"][0] == "feature_intensity"
    assert pl.read_parquet(tmp_path / "out_features.parquet")["excluded"].to_list() == [True, False, False]
    kept = subprocess.run([*command, "--no-exclude-flagged"], check=True, env=env, capture_output=True)
    assert kept.returncode == 0 and pl.read_parquet(tmp_path / "pooled.parquet")["n_spectra"][0] == 3
    # a run the matrix does not hold: a clear error naming the run and the file, no output
    bad = subprocess.run([*command[:-6], "--sample-id", "zz", "--out-features", str(tmp_path / "zz_f.parquet"),
                          "--out", str(tmp_path / "zz.parquet")], env=env, capture_output=True, text=True)
    assert bad.returncode != 0 and "zz" in bad.stderr and "raw.parquet" in bad.stderr and "Traceback" not in bad.stderr
    assert not (tmp_path / "zz.parquet").exists() and not (tmp_path / "zz_f.parquet").exists()


def test_one_process_pools_every_run_as_single_run_commands_do(tmp_path: Path) -> None:
    """The pipeline's study jobs run pool-corrected and chemistry once for all runs (--sample-ids and {sample}
    path templates): each run's outputs equal those of the one-run command; a template without {sample} and a run
    whose table is missing are refused with the option or the run named."""
    features, links, raw, corrected = study_tables()
    embeddings, spectra, _ = share_tables()
    chem_embeddings, chem_spectra, chem_features, protos = chemistry_tables()
    chemistry.write_prototypes(protos, tmp_path / "prototypes.parquet")
    t_features = pl.DataFrame({"feature_id": ["t:F1"], "intensity": [50.0]})
    def relabel(frame: pl.DataFrame, run: str) -> pl.DataFrame:
        return frame.with_columns(pl.col(c).str.replace("^s", run) for c in frame.columns if frame[c].dtype == pl.Utf8)

    for run, frame in (("s", features), ("t", t_features)):
        (tmp_path / run).mkdir()
        frame.write_parquet(tmp_path / run / "features.parquet")
        relabel(embeddings, run).write_parquet(tmp_path / run / "embeddings.parquet")
        relabel(spectra, run).write_parquet(tmp_path / run / "spectra.parquet")
    for name, frame in (("links", links), ("raw", raw), ("corrected", corrected)):
        frame.write_parquet(tmp_path / f"{name}.parquet")
    env = dict(os.environ, PYTHONPATH=str(REPO / "workflow"))
    study = ["--links", str(tmp_path / "links.parquet"), "--feature-matrix", str(tmp_path / "raw.parquet"),
             "--corrected-matrix", str(tmp_path / "corrected.parquet")]

    def per_run(name: str) -> list[str]:
        return ["--embeddings", str(tmp_path / name / "embeddings.parquet"),
                "--spectra", str(tmp_path / name / "spectra.parquet"),
                "--features", str(tmp_path / name / "features.parquet")]

    pool = [sys.executable, "-m", "ms2study", "pool-corrected"]
    subprocess.run([*pool, *per_run("{sample}"), *study, "--sample-ids", "s", "t",
                    "--out-features", str(tmp_path / "{sample}" / "cf.parquet"),
                    "--out", str(tmp_path / "{sample}" / "pooled.parquet")], check=True, env=env, capture_output=True)
    for run in ("s", "t"):
        subprocess.run([*pool, *per_run(run), *study, "--sample-id", run,
                        "--out-features", str(tmp_path / run / "cf1.parquet"),
                        "--out", str(tmp_path / run / "pooled1.parquet")], check=True, env=env, capture_output=True)
        for many, one in (("cf", "cf1"), ("pooled", "pooled1")):
            assert pl.read_parquet(tmp_path / run / f"{many}.parquet").equals(
                pl.read_parquet(tmp_path / run / f"{one}.parquet")), (run, many)
    assert pl.read_parquet(tmp_path / "t" / "cf.parquet")["feature_id"].to_list() == ["t:F1"]
    # bags of chemistry for both runs in one process, each equal to the function's result for that run
    for run in ("s", "t"):
        relabel(chem_embeddings, run).write_parquet(tmp_path / run / "chem_e.parquet")
        relabel(chem_spectra, run).write_parquet(tmp_path / run / "chem_s.parquet")
        relabel(chem_features, run).write_parquet(tmp_path / run / "chem_f.parquet")
    subprocess.run([sys.executable, "-m", "ms2study", "chemistry", "--sample-ids", "s", "t",
                    "--embeddings", str(tmp_path / "{sample}" / "chem_e.parquet"),
                    "--spectra", str(tmp_path / "{sample}" / "chem_s.parquet"),
                    "--features", str(tmp_path / "{sample}" / "chem_f.parquet"),
                    "--prototypes", str(tmp_path / "prototypes.parquet"),
                    "--out", str(tmp_path / "{sample}" / "bag.parquet")], check=True, env=env, capture_output=True)
    for run in ("s", "t"):
        expected = chemistry.chemistry_sample(relabel(chem_embeddings, run), relabel(chem_spectra, run), run,
                                              chemistry.read_prototypes(tmp_path / "prototypes.parquet"),
                                              features=relabel(chem_features, run))
        assert pl.read_parquet(tmp_path / run / "bag.parquet").equals(expected), run
    # a per-run path without {sample} cannot name several runs' files
    bad = subprocess.run([*pool, *per_run("s"), *study, "--sample-ids", "s", "t", "--out-features", "x{sample}",
                          "--out", "y{sample}"], env=env, capture_output=True, text=True)
    assert bad.returncode != 0 and "--embeddings" in bad.stderr and "{sample}" in bad.stderr
    assert "Traceback" not in bad.stderr
    # a run whose table is missing is named, and the job fails (Snakemake then removes all of its outputs)
    (tmp_path / "t" / "embeddings.parquet").unlink()
    missing = subprocess.run([*pool, *per_run("{sample}"), *study, "--sample-ids", "s", "t",
                              "--out-features", str(tmp_path / "{sample}" / "cf.parquet"),
                              "--out", str(tmp_path / "{sample}" / "pooled.parquet")],
                             env=env, capture_output=True, text=True)
    assert missing.returncode != 0 and "embeddings" in missing.stderr and "'t'" in missing.stderr, missing.stderr
    # a run whose table is unreadable (truncated) stops the command with the file and the run named, no traceback;
    # the earlier run's outputs were written (Snakemake removes the job's folders when it fails)
    (tmp_path / "t" / "embeddings.parquet").write_bytes(
        (tmp_path / "s" / "embeddings.parquet").read_bytes()[:100])
    truncated = subprocess.run([*pool, *per_run("{sample}"), *study, "--sample-ids", "s", "t",
                                "--out-features", str(tmp_path / "{sample}" / "cf.parquet"),
                                "--out", str(tmp_path / "{sample}" / "pooled.parquet")],
                               env=env, capture_output=True, text=True)
    assert truncated.returncode == 1 and "Traceback" not in truncated.stderr, truncated.stderr
    assert "sample 't'" in truncated.stderr and str(tmp_path / "t" / "embeddings.parquet") in truncated.stderr
    (tmp_path / "t" / "chem_e.parquet").write_bytes((tmp_path / "s" / "chem_e.parquet").read_bytes()[:100])
    bag = subprocess.run([sys.executable, "-m", "ms2study", "chemistry", "--sample-ids", "s", "t",
                          "--embeddings", str(tmp_path / "{sample}" / "chem_e.parquet"),
                          "--spectra", str(tmp_path / "{sample}" / "chem_s.parquet"),
                          "--prototypes", str(tmp_path / "prototypes.parquet"),
                          "--out", str(tmp_path / "{sample}" / "bag2.parquet")], env=env, capture_output=True,
                         text=True)
    assert bag.returncode == 1 and "Traceback" not in bag.stderr and "sample 't'" in bag.stderr, bag.stderr
