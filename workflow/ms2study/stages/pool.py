"""The pool stage: one embedding per sample, pooled from the embeddings of its MS/MS spectra.

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

One pooled vector averages a change of a few compounds among thousands away. The second representation here keeps
where in chemical space the abundance lies, a bag of chemistry (the visual-vocabulary encoding of image retrieval,
Sivic & Zisserman 2003, with spectra as the local descriptors): ``learn_prototypes`` runs spherical k-means once on
spectrum embeddings of the library (or of the fixed reference sample), ``write_prototypes`` stores the k centers with
a content hash, and ``chemistry_sample`` summarises each sample as log1p(summed feature abundance) per prototype
region (a region with no feature of the sample is null: nothing measured there). The prototypes never see the
study's samples together, so adding a sample changes no earlier sample's bag. CLI: ``ms2study prototypes`` and
``ms2study chemistry``; the models read the bags as the feature set ``chemical_space``.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from ms2study.core.atomic import write_parquet
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


def _per_feature(usable: pl.DataFrame, matrix: np.ndarray, abundance: str,
                 features: pl.DataFrame | None, sample_id: str) -> tuple[np.ndarray, np.ndarray, int]:
    """Mean embedding and abundance of each feature (an unmapped spectrum stands for itself).

    Returns (feature embeddings, abundances, number of features)."""
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
    _check_tables(embeddings, spectra, sample_id)
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
            matrix, weights, n_features = _per_feature(usable, matrix, str(source), features, sample_id)
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


# ------------------------------------------------------------------------------------------------------------------
# Chemical-space pooling: a bag of chemistry over prototypes learned once

PROTOTYPE_COLUMNS: dict[str, pl.DataType] = {
    "prototype": pl.Int32,            # 0 .. k-1
    "center": pl.List(pl.Float32),    # unit-length prototype vector (embedding dimension)
    "prototypes_id": pl.Utf8,         # content hash of all centers: which prototypes a sample was summarised with
    "model_id": pl.Utf8,              # encoder whose embeddings the prototypes were learned on (null if unknown)
    "source": pl.Utf8,                # what they were learned on (e.g. the library index, a reference sample)
    "n_spectra": pl.Int32,            # spectra used for learning
    "seed": pl.Int32,
}


@dataclass(frozen=True)
class Prototypes:
    """Prototype vectors of a chemical space: ``centers`` (k x dim float32, unit rows), ``prototypes_id`` (hash of
    the centers), the encoder's ``model_id``, the ``source`` and number of spectra they were learned on, and the
    ``seed``."""

    centers: np.ndarray
    prototypes_id: str
    model_id: str | None
    source: str
    n_spectra: int
    seed: int


def _safe_name(text: str) -> str:
    """The path-safe form of a model id that ``ms2study.library.index`` names embedding files with."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text)


def _unit_rows(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    norms = np.linalg.norm(matrix, axis=1)
    ok = np.isfinite(norms) & (norms > 0)
    return matrix[ok] / norms[ok, None], ok


def learn_prototypes(embeddings: np.ndarray, k: int = 64, seed: int = 0, model_id: str | None = None,
                     source: str = "", max_spectra: int = 100_000) -> Prototypes:
    """Prototypes of a chemical space: spherical k-means on spectrum embeddings, learned once and stored.

    ``embeddings`` is an (n, dim) array (rows with zero or non-finite norm are ignored); each row is scaled to unit
    length and k-means (scikit-learn, k-means++, 4 initialisations, ``seed``) runs on at most ``max_spectra`` rows
    drawn with ``seed``; the centers are scaled to unit length again, so "nearest prototype" is "highest cosine",
    as spectrum similarity is measured in embedding space. Method: the visual-vocabulary / bag-of-words encoding of
    image retrieval (Sivic & Zisserman 2003; Csurka et al. 2004), here with spectra as local descriptors and the
    sample as the image. Learn them on library embeddings (``results/library/{name}``) or on a fixed reference
    sample, never on the study's samples together: then adding a sample changes no earlier sample's summary.
    Returns :class:`Prototypes`. Raises InputError when fewer than ``k`` usable rows are given or k < 2.
    """
    from sklearn.cluster import KMeans
    from threadpoolctl import threadpool_limits

    matrix, _ = _unit_rows(np.asarray(embeddings, dtype=np.float64))
    if k < 2:
        raise InputError(f"prototypes need k >= 2 (got {k})")
    if matrix.shape[0] < k:
        raise InputError(f"{matrix.shape[0]} usable spectrum embeddings for {k} prototypes",
                         fix="lower k or learn the prototypes on a larger set (e.g. the library)")
    rng = np.random.default_rng(seed)
    if matrix.shape[0] > max_spectra:
        matrix = matrix[np.sort(rng.choice(matrix.shape[0], size=max_spectra, replace=False))]
    with threadpool_limits(limits=1):  # small problems: OpenMP threads only contend on a shared machine
        kmeans = KMeans(n_clusters=k, n_init=4, random_state=seed).fit(matrix)
    centers, _ = _unit_rows(kmeans.cluster_centers_)
    centers = centers.astype(np.float32)
    digest = hashlib.sha256(centers.tobytes()).hexdigest()[:16]
    return Prototypes(centers, digest, model_id, source, int(matrix.shape[0]), int(seed))


def write_prototypes(prototypes: Prototypes, path: str | Path) -> None:
    """Store prototypes as Parquet (``PROTOTYPE_COLUMNS``, one row per prototype), atomically."""
    k = prototypes.centers.shape[0]
    frame = pl.DataFrame({
        "prototype": np.arange(k, dtype=np.int32), "center": prototypes.centers.tolist(),
        "prototypes_id": [prototypes.prototypes_id] * k, "model_id": [prototypes.model_id] * k,
        "source": [prototypes.source] * k, "n_spectra": [prototypes.n_spectra] * k, "seed": [prototypes.seed] * k,
    }, schema=PROTOTYPE_COLUMNS)
    write_parquet(frame, path)


def read_prototypes(path: str | Path) -> Prototypes:
    """Read prototypes written by :func:`write_prototypes`; raises InputError naming the file when it is missing or
    is not a prototype table."""
    path = Path(path)
    if not path.exists():
        raise InputError("prototype table does not exist", file=str(path), fix="run 'ms2study prototypes' first")
    frame = pl.read_parquet(path)
    missing = [c for c in PROTOTYPE_COLUMNS if c not in frame.columns]
    if missing or frame.height < 2:
        raise InputError(f"not a prototype table (missing {missing}, {frame.height} rows)", file=str(path))
    frame = frame.sort("prototype")
    centers = np.array(frame["center"].to_list(), dtype=np.float32)
    return Prototypes(centers, str(frame["prototypes_id"][0]), frame["model_id"][0], str(frame["source"][0]),
                      int(frame["n_spectra"][0]), int(frame["seed"][0]))


def assign_prototypes(vectors: np.ndarray, prototypes: Prototypes, assignment: str = "hard",
                      temperature: float = 0.05) -> np.ndarray:
    """Membership of each vector in each prototype region: (n, k) weights, each row summing to 1.

    ``hard``: 1 for the prototype of highest cosine (ties: the lower index). ``soft``: softmax of cosine /
    ``temperature`` over the prototypes (a smooth version: features between two regions are shared). Rows of zero
    norm get all-zero weights. Raises InputError for a dimension mismatch or an unknown assignment.
    """
    vectors = np.asarray(vectors, dtype=np.float64)
    if vectors.ndim != 2 or vectors.shape[1] != prototypes.centers.shape[1]:
        raise InputError(f"embeddings of dimension {vectors.shape[-1]} for prototypes of dimension "
                         f"{prototypes.centers.shape[1]}", fix="learn the prototypes with the same encoder")
    if assignment not in ASSIGNMENTS:
        raise InputError(f"prototype assignment '{assignment}' is not one of {', '.join(ASSIGNMENTS)}")
    unit, ok = _unit_rows(vectors)
    cosine = unit @ prototypes.centers.T.astype(np.float64)
    weights = np.zeros((vectors.shape[0], prototypes.centers.shape[0]))
    if assignment == "hard":
        weights[np.flatnonzero(ok), cosine.argmax(axis=1)] = 1.0
    else:
        logits = cosine / float(temperature)
        logits -= logits.max(axis=1, keepdims=True)
        soft = np.exp(logits)
        weights[ok] = soft / soft.sum(axis=1, keepdims=True)
    return weights


def chemistry_sample(embeddings: pl.DataFrame, spectra: pl.DataFrame, sample_id: str, prototypes: Prototypes,
                     params: dict | None = None, features: pl.DataFrame | None = None) -> pl.DataFrame:
    """One sample's bag of chemistry: log abundance per prototype region (``SAMPLE_CHEMISTRY`` one-row frame).

    The sample's spectra are grouped per feature as in ``abundance_share`` (mean embedding of the feature's
    spectra; abundance = the feature's intensity from ``features``, or its largest precursor intensity), each
    feature is assigned to prototype regions (:func:`assign_prototypes`), and the abundances are summed per region:
    ``abundance[r] = log1p(sum_f weight[f, r] * abundance[f])``. A region without any feature of the sample is null
    (nothing measured there: the models fill it inside the folds like an undetected feature, ``half_minimum``),
    never 0. Where one pooled vector averages a change of a few compounds away, their region's total moves by their
    own fold change diluted only by the other features of that region. Columns: sample_id, n_features (pooled),
    prototypes_id, model_id, abundance (list of k Float32, nulls for empty regions). ``params`` is the pool
    section (its ``chemistry``, ``abundance`` and ``mapped_only`` apply). Raises InputError for bad parameters,
    missing columns, spectra of other samples or an encoder/prototype mismatch.
    """
    p = merge_params(params)
    _check_tables(embeddings, spectra, sample_id)
    model_ids = embeddings["model_id"].unique().drop_nulls().to_list() if "model_id" in embeddings.columns else []
    # library embedding files are named by a path-safe form of the model id: compare in that form
    if prototypes.model_id and model_ids and [_safe_name(m) for m in model_ids] != [_safe_name(prototypes.model_id)]:
        raise InputError(f"embeddings of encoder {model_ids} but prototypes learned with {prototypes.model_id}",
                         sample=sample_id, fix="learn the prototypes again with this encoder")
    source = p["abundance"]
    if source == "auto":
        source = "feature_intensity" if features is not None else "precursor_intensity"
    usable = embeddings.join(spectra.select("spectrum_id", pl.col("precursor_intensity").cast(pl.Float64)),
                             on="spectrum_id", how="left").filter(pl.col("embedding").is_not_null())
    if p["mapped_only"]:
        usable = usable.filter(pl.col("feature_id").is_not_null())
    k = prototypes.centers.shape[0]
    if usable.height == 0:
        log.warning("sample '%s': no usable spectra: its bag of chemistry is all null", sample_id)
        values: list[float | None] = [None] * k
        n_features = 0
    else:
        matrix = np.stack(usable["embedding"].to_list()).astype(np.float64)
        means, abundance, n_features = _per_feature(usable, matrix, str(source), features, sample_id)
        weights = assign_prototypes(means, prototypes, p["chemistry"]["assignment"],
                                    float(p["chemistry"]["temperature"]))
        totals = weights.T @ np.clip(np.nan_to_num(abundance), 0.0, None)
        covered = weights.sum(axis=0) > 0
        values = [float(np.log1p(t)) if c else None for t, c in zip(totals, covered)]
    frame = pl.DataFrame({
        "sample_id": [sample_id], "n_features": [n_features], "prototypes_id": [prototypes.prototypes_id],
        "model_id": [model_ids[0] if len(model_ids) == 1 else None], "abundance": [values],
    }, schema=SAMPLE_CHEMISTRY)
    return frame


SAMPLE_CHEMISTRY: dict[str, pl.DataType] = {
    "sample_id": pl.Utf8,
    "n_features": pl.Int32,                # features pooled (with a usable spectrum)
    "prototypes_id": pl.Utf8,              # the prototypes used (all samples of a study must share it)
    "model_id": pl.Utf8,
    "abundance": pl.List(pl.Float32),      # log1p(summed abundance) per prototype region; null: nothing there
}


def _check_tables(embeddings: pl.DataFrame, spectra: pl.DataFrame, sample_id: str) -> None:
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


def _cli_pool(args: argparse.Namespace) -> int:
    from ms2study.core.params import load_params

    params = load_params(args)
    tables: dict[str, pl.DataFrame | None] = {"features": None}
    for name in ("embeddings", "spectra", "features"):
        if getattr(args, name) is None:
            continue
        path = Path(getattr(args, name))
        if not path.exists():
            raise InputError(f"{name} table does not exist", file=str(path), sample=args.sample_id)
        tables[name] = pl.read_parquet(path)
    pooled = pool_sample(tables["embeddings"], tables["spectra"], args.sample_id, params, features=tables["features"])
    write_parquet(pooled, args.out)
    return 0


def prototypes_from_library(index_dir: str | Path, params: dict | None = None,
                            model_id: str | None = None) -> Prototypes:
    """Prototypes learned on a library index's stored embeddings (``ms2study embed-library``).

    ``model_id`` picks the encoder's matrix under ``{index}/embeddings``; None takes the only one there. ``params``
    is the pool section (``prototypes: {k, seed}``). Raises InputError when the index has no (or, without
    ``model_id``, several) embedding matrices."""
    p = merge_params(params)
    folder = Path(index_dir) / "embeddings"
    files = sorted(folder.glob("*.npy")) if folder.is_dir() else []
    if model_id is None:
        if len(files) != 1:
            raise InputError(f"library index has {len(files)} embedding matrices", file=str(index_dir),
                             fix="run 'ms2study embed-library' first, or pass --model-id")
        path = files[0]
    else:
        matches = [f for f in files if f.stem == _safe_name(model_id)]
        if not matches:
            raise InputError(f"library index has no embeddings of encoder '{model_id}'", file=str(index_dir),
                             fix="run 'ms2study embed-library' with that encoder")
        path = matches[0]
    matrix = np.load(path)
    return learn_prototypes(matrix, k=int(p["prototypes"]["k"]), seed=int(p["prototypes"]["seed"]),
                            model_id=model_id or path.stem, source=f"library {Path(index_dir).name}")


def prototypes_from_embeddings(tables: list[pl.DataFrame], params: dict | None = None,
                               source: str = "reference sample") -> Prototypes:
    """Prototypes learned on spectrum embedding tables (``tables.EMBEDDINGS``; e.g. the reference sample's), with
    the pool section's ``prototypes: {k, seed}``. Raises InputError for several encoders or too few spectra."""
    p = merge_params(params)
    frame = pl.concat([t.select("embedding", *(["model_id"] if "model_id" in t.columns else [])) for t in tables],
                      how="diagonal_relaxed").filter(pl.col("embedding").is_not_null())
    model_ids = frame["model_id"].unique().drop_nulls().to_list() if "model_id" in frame.columns else []
    if len(model_ids) > 1:
        raise InputError(f"embeddings of several encoders {sorted(model_ids)}", fix="embed with one encoder")
    matrix = np.array(frame["embedding"].to_list(), dtype=np.float64) if frame.height else np.empty((0, 1))
    return learn_prototypes(matrix, k=int(p["prototypes"]["k"]), seed=int(p["prototypes"]["seed"]),
                            model_id=model_ids[0] if model_ids else None, source=source)


def _read_table(path: str, name: str, sample_id: str | None = None) -> pl.DataFrame:
    if not Path(path).exists():
        raise InputError(f"{name} table does not exist", file=str(path), sample=sample_id)
    return pl.read_parquet(path)


def _cli_prototypes(args: argparse.Namespace) -> int:
    from ms2study.core.params import load_params

    params = load_params(args)
    if bool(args.library_index) == bool(args.embeddings):
        raise InputError("give either --library-index or --embeddings", fix="one source of spectrum embeddings")
    if args.library_index:
        prototypes = prototypes_from_library(args.library_index, params, args.model_id)
    else:
        prototypes = prototypes_from_embeddings([_read_table(p, "embeddings") for p in args.embeddings], params,
                                                source=f"embeddings of {', '.join(Path(p).parent.name for p in args.embeddings)}")
    write_prototypes(prototypes, args.out)
    log.info("learned %d prototypes (%s) on %d spectra of %s", prototypes.centers.shape[0], prototypes.prototypes_id,
             prototypes.n_spectra, prototypes.source)
    return 0


def _cli_chemistry(args: argparse.Namespace) -> int:
    from ms2study.core.params import load_params

    params = load_params(args)
    features = _read_table(args.features, "features", args.sample_id) if args.features else None
    frame = chemistry_sample(_read_table(args.embeddings, "embeddings", args.sample_id),
                             _read_table(args.spectra, "spectra", args.sample_id), args.sample_id,
                             read_prototypes(args.prototypes), params, features=features)
    write_parquet(frame, args.out)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    from ms2study.core.params import add_params_argument

    q = subparsers.add_parser("prototypes", help="learn the chemical-space prototypes once (k-means on embeddings)")
    q.add_argument("--library-index", default=None, help="library index folder with stored embeddings")
    q.add_argument("--model-id", default=None, help="encoder id of the library embeddings (default: the only one)")
    q.add_argument("--embeddings", nargs="+", default=None,
                   help="embeddings.parquet table(s) to learn on instead (e.g. the reference sample's)")
    q.add_argument("--out", required=True, help="prototypes.parquet to write")
    add_params_argument(q)
    q.set_defaults(func=_cli_prototypes)

    c = subparsers.add_parser("chemistry", help="a sample's bag of chemistry: log abundance per prototype region")
    c.add_argument("--embeddings", required=True, help="embeddings.parquet of the sample")
    c.add_argument("--spectra", required=True, help="spectra.parquet of the sample")
    c.add_argument("--features", default=None, help="features.parquet of the sample (feature abundances)")
    c.add_argument("--prototypes", required=True, help="prototypes.parquet ('ms2study prototypes')")
    c.add_argument("--sample-id", required=True, help="the sample's id")
    c.add_argument("--out", required=True, help="sample_chemistry.parquet to write")
    add_params_argument(c)
    c.set_defaults(func=_cli_chemistry)

    p = subparsers.add_parser("pool", help="pool a sample's spectrum embeddings into one sample embedding")
    p.add_argument("--embeddings", required=True, help="embeddings.parquet of the sample")
    p.add_argument("--spectra", required=True, help="spectra.parquet of the sample")
    p.add_argument("--features", default=None,
                   help="features.parquet of the sample (feature abundances for method abundance_share)")
    p.add_argument("--sample-id", required=True, help="the sample's id")
    p.add_argument("--out", required=True, help="sample_embedding.parquet to write")
    add_params_argument(p)
    p.set_defaults(func=_cli_pool)
