"""Pooling: one embedding per sample, pooled from the embeddings of its MS/MS spectra.

The default, ``abundance_share``, is the embedding of the sample's average fragmented ion: the spectra of each
LC-MS feature are first averaged (data-dependent acquisition samples a compound once, twice or five times depending
on its peak width and the duty cycle, which says nothing about the sample), and each feature is then weighted by its
share of the summed abundance of the pooled features (the feature's intensity from ``features.parquet``, or, without
that table, the largest precursor intensity among its spectra). A compound class raised threefold then raises its
weight in the pool about threefold, as it does in the sample. The older per-spectrum weightings are kept as
alternatives but are nearly blind to abundance: ``weighted_mean`` weights each spectrum by ``log1p(precursor
intensity)``, which moves by only log(3) ~ 1.1 on a base of ~12 when a compound triples, and since DDA fragments
almost every feature whatever its level, the number of spectra barely moves either (on the demo study the planted
class held 6 % of the abundance in controls and 20 % in cases, but 6 % and 7 % of the log weights); ``mean``
weights each spectrum equally, ``max_abs`` takes per dimension the signed value of largest magnitude. By default only
spectra whose precursor fell in a detected feature are used (unmapped scans are often noise or in-source fragments of
nothing measurable). The pooled vector is left unnormalised unless ``normalize`` is set. A sample with no usable
spectra gets a null embedding and ``n_spectra`` 0 with a logged warning, never a silent zero vector that would look
like a real measurement.

The bag of chemistry (``modelling.chemistry``) groups spectra per feature the same way (``per_feature_means``).
This module also holds the ``pool:`` config section (``DEFAULT_PARAMS``, ``merge_params``). Imports only ``core``.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import polars as pl

from ms2study.core.errors import InputError
from ms2study.core.params import overlay
from ms2study.core.tables import SAMPLE_EMBEDDING, conform

log = logging.getLogger(__name__)

METHODS = ("abundance_share", "weighted_mean", "mean", "max_abs")
ASSIGNMENTS = ("hard", "soft")
ABUNDANCE_SOURCES = ("auto", "feature_intensity", "precursor_intensity")

DEFAULT_PARAMS: dict[str, Any] = {
    # abundance_share: per-feature mean embedding weighted by the feature's share of the sample's abundance;
    # weighted_mean: per spectrum, weights log1p(precursor_intensity); mean; max_abs
    "method": "abundance_share",
    # abundance of a feature for abundance_share: feature_intensity (features.parquet), precursor_intensity (largest
    # of its spectra), auto (feature_intensity when the features table is given, else precursor_intensity)
    "abundance": "auto",
    "mapped_only": True,         # use only spectra mapped to a feature (feature_id not null)
    "normalize": False,          # L2-normalise the pooled vector
    # Chemical-space pooling (bag of chemistry, ``chemistry_sample``), besides the one pooled vector:
    # prototypes learned once (``learn_prototypes``) on the library's embeddings, else on the reference sample's;
    # k regions, k-means seed.
    "prototypes": {"k": 64, "seed": 0, "source": "library"},
    # each feature to its nearest prototype (hard) or spread by softmax(cosine / temperature) (soft)
    "chemistry": {"assignment": "hard", "temperature": 0.05},
}
PROTOTYPE_SOURCES = ("library", "reference_sample")


def merge_params(params: dict | None) -> dict[str, Any]:
    """``DEFAULT_PARAMS`` overlaid with ``params``; unknown keys and bad values raise ``InputError``."""
    merged = overlay(params, DEFAULT_PARAMS, "pool", nested=("prototypes", "chemistry"))
    if merged["chemistry"]["assignment"] not in ASSIGNMENTS:
        raise InputError(f"pool chemistry assignment {merged['chemistry']['assignment']!r} is not one of "
                         f"{', '.join(ASSIGNMENTS)}")
    if not float(merged["chemistry"]["temperature"]) > 0:
        raise InputError(f"pool chemistry temperature must be positive (got {merged['chemistry']['temperature']!r})")
    if merged["prototypes"]["source"] not in PROTOTYPE_SOURCES:
        raise InputError(f"pool prototypes source {merged['prototypes']['source']!r} is not one of "
                         f"{', '.join(PROTOTYPE_SOURCES)}")
    k = merged["prototypes"]["k"]
    if isinstance(k, bool) or not isinstance(k, int) or k < 2:
        raise InputError(f"pool prototypes k must be an integer >= 2 (got {k!r})")
    if merged["method"] not in METHODS:
        raise InputError(f"pool method {merged['method']!r} is not one of {', '.join(METHODS)}")
    if merged["abundance"] not in ABUNDANCE_SOURCES:
        raise InputError(f"pool abundance {merged['abundance']!r} is not one of {', '.join(ABUNDANCE_SOURCES)}")
    return merged


def _pool_matrix(matrix: np.ndarray, weights: np.ndarray, method: str) -> np.ndarray:
    if method == "max_abs":
        pick = np.abs(matrix).argmax(axis=0)
        return matrix[pick, np.arange(matrix.shape[1])]
    if method in ("weighted_mean", "abundance_share"):
        total = weights.sum()
        if total > 0:
            return (weights[:, None] * matrix).sum(axis=0) / total
        log.warning("all abundances are zero or missing: pooling with equal weights instead")
    return matrix.mean(axis=0)


def per_feature_means(usable: pl.DataFrame, matrix: np.ndarray, abundance: str,
                      features: pl.DataFrame | None, sample_id: str) -> tuple[np.ndarray, np.ndarray, int]:
    """Mean embedding and abundance of each feature (an unmapped spectrum stands for itself).

    ``usable``: the sample's spectra (feature_id, spectrum_id, precursor_intensity), one row per row of ``matrix``
    (n spectra, dim). ``abundance``: "feature_intensity" (the feature's intensity from ``features``; a feature absent
    there gets its precursor intensity scaled by the median area/precursor ratio) or "precursor_intensity" (the
    largest of its spectra). Returns (feature embeddings (f, dim), abundances (f,), number of features f). Raises
    InputError when "feature_intensity" is asked without a features table (feature_id, intensity)."""
    # Each unmapped spectrum is its own group (only with mapped_only false), keyed by its spectrum id.
    keys = usable.select(pl.coalesce("feature_id", pl.lit("spectrum:") + pl.col("spectrum_id"))).to_series()
    unique, inverse = np.unique(keys.to_numpy().astype(str), return_inverse=True)
    sums = np.zeros((len(unique), matrix.shape[1]))
    np.add.at(sums, inverse, matrix)
    counts = np.bincount(inverse, minlength=len(unique))
    means = sums / counts[:, None]
    precursor = np.clip(usable["precursor_intensity"].fill_null(0.0).fill_nan(0.0).to_numpy(), 0.0, None)
    weights = np.zeros(len(unique))
    np.maximum.at(weights, inverse, precursor)
    if abundance == "feature_intensity":
        if features is None or not {"feature_id", "intensity"} <= set(features.columns):
            raise InputError("pool abundance 'feature_intensity' needs the features table (feature_id, intensity)",
                             sample=sample_id, fix="pass --features results/samples/{sample}/features.parquet")
        lookup = dict(zip(features["feature_id"].cast(pl.Utf8).to_list(),
                          features["intensity"].cast(pl.Float64).to_list()))
        area = np.array([lookup.get(k) for k in unique], dtype=np.float64)  # None -> nan
        known = np.isfinite(area) & (area > 0)
        if (~known).any():
            # Unmapped spectra and features absent from the table keep their precursor intensity scaled to the
            # areas' median ratio, so one missing area neither vanishes nor dominates.
            ratio = np.median(area[known] / np.maximum(weights[known], 1e-12)) if known.any() else 1.0
            area = np.where(known, area, weights * ratio)
        weights = area
    return means, weights, len(unique)


def pool_sample(
    embeddings: pl.DataFrame, spectra: pl.DataFrame, sample_id: str, params: dict | None = None,
    features: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """Pool one sample's spectrum embeddings into a one-row ``tables.SAMPLE_EMBEDDING`` frame.

    ``embeddings`` is the sample's embed-stage table, ``spectra`` its spectra table (for precursor intensities
    and feature mapping), ``features`` its features table (feature abundances for ``abundance_share``; optional,
    see ``abundance``). Spectra with a null embedding (no peaks) are skipped; spectra with a missing precursor
    intensity weigh 0 in ``weighted_mean``. Extra columns: ``method``, ``n_spectra_total`` (rows offered),
    ``n_features`` (features pooled; null for per-spectrum methods), ``abundance_source`` (what weighted the
    features; null for per-spectrum methods) and ``model_id`` when the embeddings carry one.
    """
    p = merge_params(params)
    check_sample_tables(embeddings, spectra, sample_id)
    embeddings = without_excluded(embeddings, features)
    method = str(p["method"])
    source = None
    if method == "abundance_share":
        source = p["abundance"]
        if source == "auto":
            source = "feature_intensity" if features is not None else "precursor_intensity"
    rows = embeddings.join(
        spectra.select("spectrum_id", pl.col("precursor_intensity").cast(pl.Float64)), on="spectrum_id", how="left"
    )
    n_total = rows.height
    usable = rows.filter(pl.col("embedding").is_not_null())
    if p["mapped_only"]:
        usable = usable.filter(pl.col("feature_id").is_not_null())
    model_ids = embeddings["model_id"].unique().drop_nulls().to_list() if "model_id" in embeddings.columns else []
    n_features: int | None = None
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
        if method == "abundance_share":
            matrix, weights, n_features = per_feature_means(usable, matrix, str(source), features, sample_id)
        else:
            intensity = usable["precursor_intensity"].fill_null(0.0).fill_nan(0.0).to_numpy()
            weights = np.log1p(np.clip(intensity, 0.0, None))
        vector = _pool_matrix(matrix, weights, method)
        if p["normalize"]:
            norm = np.linalg.norm(vector)
            vector = vector / norm if norm > 0 else vector
        pooled = vector.astype(np.float32).tolist()
    df = pl.DataFrame(
        {
            "sample_id": [sample_id],
            "n_spectra": [usable.height],
            "embedding": [pooled],
            "method": [method],
            "n_spectra_total": [n_total],
            "n_features": [n_features],
            "abundance_source": [source],
            "model_id": [model_ids[0] if len(model_ids) == 1 else None],
        },
        schema_overrides={"embedding": pl.List(pl.Float32), "model_id": pl.Utf8, "n_features": pl.Int32,
                          "abundance_source": pl.Utf8},
    )
    return conform(df, SAMPLE_EMBEDDING)


def without_excluded(embeddings: pl.DataFrame, features: pl.DataFrame | None) -> pl.DataFrame:
    """``embeddings`` without the spectra of features that ``features`` marks ``excluded`` (the corrected features
    of ``correction.weights``: consensus features flagged by the blank filter or the QC RSD limit). Unchanged when
    there is no such column."""
    if features is None or "excluded" not in features.columns:
        return embeddings
    dropped = features.filter(pl.col("excluded").fill_null(False))["feature_id"].cast(pl.Utf8)
    if dropped.is_empty():
        return embeddings
    return embeddings.filter(~pl.col("feature_id").cast(pl.Utf8).is_in(dropped.implode()) | pl.col("feature_id").is_null())


def check_sample_tables(embeddings: pl.DataFrame, spectra: pl.DataFrame, sample_id: str) -> None:
    """Raise InputError unless the embeddings and spectra tables have the columns pooling reads and the embeddings
    hold only spectra of ``sample_id``."""
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
