"""The pool stage: one embedding per sample, pooled from the embeddings of its MS/MS spectra.

By default only spectra whose precursor fell in a detected feature are used (unmapped scans are often noise or
in-source fragments of nothing measurable), and each spectrum is weighted by ``log1p(precursor_intensity)`` so
abundant compounds count more without one dominant ion swamping the rest. ``mean`` (unweighted) and ``max_abs``
(per dimension, the signed value of largest magnitude) are the alternatives. The pooled vector is left
unnormalised unless ``normalize`` is set: its length shrinks as the sample's spectra point in more different
directions, which is information. A sample with no usable spectra gets a null embedding and ``n_spectra`` 0
with a logged warning, never a silent zero vector that would look like a real measurement.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from ms2study.atomic import write_parquet
from ms2study.errors import InputError
from ms2study.tables import SAMPLE_EMBEDDING, conform

log = logging.getLogger(__name__)

METHODS = ("weighted_mean", "mean", "max_abs")

DEFAULT_PARAMS: dict[str, Any] = {
    "method": "weighted_mean",   # weighted_mean (weights log1p(precursor_intensity)) | mean | max_abs
    "mapped_only": True,         # use only spectra mapped to a feature (feature_id not null)
    "normalize": False,          # L2-normalise the pooled vector
}


def merge_params(params: dict | None) -> dict[str, Any]:
    """``DEFAULT_PARAMS`` overlaid with ``params``; unknown keys and bad values raise ``InputError``."""
    merged = dict(DEFAULT_PARAMS)
    for key, value in (params or {}).items():
        if key not in DEFAULT_PARAMS:
            raise InputError(f"unknown pool parameter '{key}'", fix=f"use only {sorted(DEFAULT_PARAMS)}")
        merged[key] = value
    if merged["method"] not in METHODS:
        raise InputError(f"pool method {merged['method']!r} is not one of {', '.join(METHODS)}")
    return merged


def _pool_matrix(matrix: np.ndarray, weights: np.ndarray, method: str) -> np.ndarray:
    if method == "max_abs":
        pick = np.abs(matrix).argmax(axis=0)
        return matrix[pick, np.arange(matrix.shape[1])]
    if method == "weighted_mean":
        total = weights.sum()
        if total > 0:
            return (weights[:, None] * matrix).sum(axis=0) / total
        log.warning("all precursor intensities are zero or missing: pooling with equal weights instead")
    return matrix.mean(axis=0)


def pool_sample(
    embeddings: pl.DataFrame, spectra: pl.DataFrame, sample_id: str, params: dict | None = None
) -> pl.DataFrame:
    """Pool one sample's spectrum embeddings into a one-row ``tables.SAMPLE_EMBEDDING`` frame.

    ``embeddings`` is the sample's embed-stage table, ``spectra`` its spectra table (for precursor intensities
    and feature mapping). Spectra with a null embedding (no peaks) are skipped; spectra with a missing precursor
    intensity weigh 0 in ``weighted_mean``. Extra columns: ``method``, ``n_spectra_total`` (rows offered) and
    ``model_id`` when the embeddings carry one.
    """
    p = merge_params(params)
    for name, table, needed in (
        ("embeddings", embeddings, ("spectrum_id", "sample_id", "feature_id", "embedding")),
        ("spectra", spectra, ("spectrum_id", "precursor_intensity")),
    ):
        missing = [c for c in needed if c not in table.columns]
        if missing:
            raise InputError(f"{name} table lacks columns {missing}", sample=sample_id)
    others = embeddings.filter(pl.col("sample_id") != sample_id)["sample_id"].unique().to_list()
    if others:
        raise InputError(
            f"embeddings table holds spectra of other samples {sorted(others)[:3]}", sample=sample_id,
            fix="pass the embeddings.parquet of this sample",
        )
    rows = embeddings.join(
        spectra.select("spectrum_id", pl.col("precursor_intensity").cast(pl.Float64)), on="spectrum_id", how="left"
    )
    n_total = rows.height
    usable = rows.filter(pl.col("embedding").is_not_null())
    if p["mapped_only"]:
        usable = usable.filter(pl.col("feature_id").is_not_null())
    model_ids = embeddings["model_id"].unique().drop_nulls().to_list() if "model_id" in embeddings.columns else []
    if usable.height == 0:
        log.warning(
            "sample '%s': no usable spectra (%d offered; mapped_only=%s): its embedding is null",
            sample_id, n_total, p["mapped_only"],
        )
        pooled: list[float] | None = None
    else:
        widths = usable["embedding"].list.len().unique().to_list()
        if len(widths) != 1:
            raise InputError(f"embeddings of different lengths {sorted(widths)}", sample=sample_id,
                             fix="embed all spectra of the sample with one encoder")
        matrix = np.stack(usable["embedding"].to_list()).astype(np.float64)
        intensity = usable["precursor_intensity"].fill_null(0.0).fill_nan(0.0).to_numpy()
        weights = np.log1p(np.clip(intensity, 0.0, None))
        vector = _pool_matrix(matrix, weights, str(p["method"]))
        if p["normalize"]:
            norm = np.linalg.norm(vector)
            vector = vector / norm if norm > 0 else vector
        pooled = vector.astype(np.float32).tolist()
    df = pl.DataFrame(
        {
            "sample_id": [sample_id],
            "n_spectra": [usable.height],
            "embedding": [pooled],
            "method": [str(p["method"])],
            "n_spectra_total": [n_total],
            "model_id": [model_ids[0] if len(model_ids) == 1 else None],
        },
        schema_overrides={"embedding": pl.List(pl.Float32), "model_id": pl.Utf8},
    )
    return conform(df, SAMPLE_EMBEDDING)


def _cli_pool(args: argparse.Namespace) -> int:
    from ms2study.cli import load_params

    params = load_params(args)
    tables = {}
    for name in ("embeddings", "spectra"):
        path = Path(getattr(args, name))
        if not path.exists():
            raise InputError(f"{name} table does not exist", file=str(path), sample=args.sample_id)
        tables[name] = pl.read_parquet(path)
    write_parquet(pool_sample(tables["embeddings"], tables["spectra"], args.sample_id, params), args.out)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    from ms2study.cli import add_params_argument

    p = subparsers.add_parser("pool", help="pool a sample's spectrum embeddings into one sample embedding")
    p.add_argument("--embeddings", required=True, help="embeddings.parquet of the sample")
    p.add_argument("--spectra", required=True, help="spectra.parquet of the sample")
    p.add_argument("--sample-id", required=True, help="the sample's id")
    p.add_argument("--out", required=True, help="sample_embedding.parquet to write")
    add_params_argument(p)
    p.set_defaults(func=_cli_pool)
