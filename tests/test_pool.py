"""The pool stage: weighting, methods, mapped-only filtering, null for samples without usable spectra, CLI."""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import numpy as np
import polars as pl
import pytest

from ms2study.errors import InputError
from ms2study.pool import pool_sample
from ms2study.tables import SAMPLE_EMBEDDING

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
    out = pool_sample(embeddings, spectra, "s")
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
    unit = pool_sample(embeddings, spectra, "s", {"normalize": True})["embedding"][0].to_list()
    assert np.linalg.norm(unit) == pytest.approx(1.0, abs=1e-6)


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
    out = pool_sample(embeddings, zero, "s")["embedding"][0].to_list()
    np.testing.assert_allclose(out, [1 / 3, 0.4 / 3, 0.8 / 3], atol=1e-6)


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
