"""Bags of chemistry: where in chemical space a sample's abundance lies. One pooled vector (``modelling.pooling``)
averages a change of a few compounds among thousands away; a bag of chemistry keeps where it lies (the
visual-vocabulary encoding of image retrieval, Sivic & Zisserman 2003, with spectra as the local descriptors):
``learn_prototypes`` runs spherical k-means once on spectrum embeddings of the library (or of the fixed reference
sample), ``write_prototypes`` stores the k centers with a content hash, and ``chemistry_sample`` summarises each
sample as log1p(summed feature abundance) per prototype region (a region with no feature of the sample is null:
nothing measured there). The prototypes never see the study's samples together, so adding a sample changes no
earlier sample's bag. CLI: ``ms2study prototypes`` and ``ms2study chemistry``; the models read the bags as the
feature set ``chemical_space``.

Imports ``core`` and ``modelling.pooling``.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from ms2study.core.atomic import write_parquet
from ms2study.core.errors import InputError
from ms2study.modelling.pooling import (
    ASSIGNMENTS,
    check_sample_tables,
    merge_params,
    per_feature_means,
    without_excluded,
)

log = logging.getLogger(__name__)

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


MIN_SPECTRA_PER_PROTOTYPE = 4  # with fewer usable spectra than k, k shrinks to this many spectra per prototype


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
    With fewer than ``k`` usable rows, k shrinks to one prototype per MIN_SPECTRA_PER_PROTOTYPE rows (a warning).
    Returns :class:`Prototypes`. Raises InputError when that leaves fewer than 2 prototypes or k < 2.
    """
    from sklearn.cluster import KMeans
    from threadpoolctl import threadpool_limits

    matrix, _ = _unit_rows(np.asarray(embeddings, dtype=np.float64))
    if k < 2:
        raise InputError(f"prototypes need k >= 2 (got {k})")
    if matrix.shape[0] == 0:
        raise InputError(f"no spectrum embeddings to learn the chemical-space prototypes on ({source or 'input'}): "
                         "it has no MS/MS spectra (an MS1-only or DIA run, or no MS2 scan mapped to a feature)",
                         fix="add a spectral library to the study (config 'library:'; the prototypes are then "
                             "learned on its spectra), make a run with DDA MS/MS the reference run, or leave "
                             "chemical_space out of models: feature_sets (a study without MS/MS has no bags of "
                             "chemistry)")
    if matrix.shape[0] < k:
        larger = ("add a broader library beside it (config 'library:' takes a list)" if (source or "").startswith(
            "library") else "learn them on the library (pool: prototypes: source: library)")
        fewer = matrix.shape[0] // MIN_SPECTRA_PER_PROTOTYPE
        if fewer < 2:
            raise InputError(f"{matrix.shape[0]} usable spectrum embeddings for {k} prototypes ({source or 'input'})",
                             fix=f"lower pool: prototypes: k to at most {matrix.shape[0]}, or {larger}")
        # a second fresh user's trial: a 26-spectrum library stopped every study with default settings (no report)
        log.warning("%d usable spectrum embeddings for %d prototypes (%s): %d prototypes learned instead (%d spectra "
                    "each); the bags of chemistry are coarse: %s", matrix.shape[0], k, source or "input", fewer,
                    MIN_SPECTRA_PER_PROTOTYPE, larger)
        k = fewer
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


def chemistry_terms(embeddings: pl.DataFrame, spectra: pl.DataFrame, sample_id: str, prototypes: Prototypes,
                    params: dict | None = None, features: pl.DataFrame | None = None,
                    ) -> tuple[list[str], np.ndarray, np.ndarray, list[str] | None]:
    """How one sample's bag of chemistry is made, per pooled unit: (keys, abundance (u,), weights (u, k), model ids).

    Keys are the sample's feature ids (or ``spectrum:<id>`` for an unmapped spectrum pooled alone, with
    ``mapped_only`` false), sorted; ``abundance`` is each unit's abundance (``pooling.per_feature_means``: the
    feature's intensity from ``features``, or its largest precursor intensity; NaN possible) and ``weights`` its
    membership in each of the k prototype regions (:func:`assign_prototypes` of the mean embedding of its spectra).
    The bag is ``log1p(weights.T @ clip(abundance, 0))`` over the regions some unit reaches (:func:`chemistry_sample`);
    ``modelling.regions`` reuses the terms to say which features make a region's difference. A sample without usable
    spectra gives empty arrays. Raises InputError as :func:`chemistry_sample`."""
    p = merge_params(params)
    check_sample_tables(embeddings, spectra, sample_id)
    embeddings = without_excluded(embeddings, features)
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
        return [], np.zeros(0), np.zeros((0, k)), model_ids
    matrix = np.stack(usable["embedding"].to_list()).astype(np.float64)
    means, abundance, _ = per_feature_means(usable, matrix, str(source), features, sample_id)
    keys = usable.select(pl.coalesce("feature_id", pl.lit("spectrum:") + pl.col("spectrum_id"))).to_series()
    weights = assign_prototypes(means, prototypes, p["chemistry"]["assignment"], float(p["chemistry"]["temperature"]))
    return [str(key) for key in np.unique(keys.to_numpy().astype(str))], abundance, weights, model_ids


def chemistry_sample(embeddings: pl.DataFrame, spectra: pl.DataFrame, sample_id: str, prototypes: Prototypes,
                     params: dict | None = None, features: pl.DataFrame | None = None) -> pl.DataFrame:
    """One sample's bag of chemistry: log abundance per prototype region (``SAMPLE_CHEMISTRY`` one-row frame).

    The sample's spectra are grouped per feature as in ``abundance_share`` (mean embedding of the feature's
    spectra; abundance = the feature's intensity from ``features``, or its largest precursor intensity), each
    feature is assigned to prototype regions (:func:`assign_prototypes`), and the abundances are summed per region:
    ``abundance[r] = log1p(sum_f weight[f, r] * abundance[f])`` (:func:`chemistry_terms`). A region without any
    feature of the sample is null (nothing measured there: the models fill it inside the folds like an undetected
    feature, ``half_minimum``), never 0. Where one pooled vector averages a change of a few compounds away, their
    region's total moves by their own fold change diluted only by the other features of that region. Columns:
    sample_id, n_features (pooled), prototypes_id, model_id, abundance (list of k Float32, nulls for empty
    regions). ``params`` is the pool section (its ``chemistry``, ``abundance`` and ``mapped_only`` apply). Raises
    InputError for bad parameters, missing columns, spectra of other samples or an encoder/prototype mismatch.
    """
    keys, abundance, weights, model_ids = chemistry_terms(embeddings, spectra, sample_id, prototypes, params,
                                                          features)
    k = prototypes.centers.shape[0]
    if not keys:
        log.warning("sample '%s': no usable spectra: its bag of chemistry is all null", sample_id)
        values: list[float | None] = [None] * k
    else:
        totals = weights.T @ np.clip(np.nan_to_num(abundance), 0.0, None)
        covered = weights.sum(axis=0) > 0
        values = [float(np.log1p(t)) if c else None for t, c in zip(totals, covered)]
    frame = pl.DataFrame({
        "sample_id": [sample_id], "n_features": [len(keys)], "prototypes_id": [prototypes.prototypes_id],
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
