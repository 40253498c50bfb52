"""Feature sets: each study table turned into samples × columns of numbers that the outcome models can compare.

Every builder returns a frame of ``sample_id`` + one Float64 column per feature, with null where a sample has no
value (filled later inside the cross-validation folds, never here): pooled spectrum embeddings (``embedding``), bags
of chemistry (``chemical_space``), the linked feature matrix (``features``, log1p intensities) and MS/MS spectra
binned by fragment m/z (``binned_spectra``, the model-free baseline). The readers stack the per-sample Parquet
tables the pipeline writes, and ``align_rows`` puts any feature set into a given sample order as a matrix. Imports
only ``core``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from ms2study.core.errors import InputError


def embedding_feature_set(sample_embeddings: pl.DataFrame) -> pl.DataFrame:
    """Pooled sample embeddings (``tables.SAMPLE_EMBEDDING`` rows) as sample_id + one Float64 column per dimension.

    A sample without MS/MS (null embedding) keeps its row with nulls in every column: it stays in the folds and the
    model fills it inside each training fold with the training mean (``imputation: mean``), which is neutral and
    leaks nothing; the summary lists such samples. It is never turned into a zero vector here.
    """
    for column in ("sample_id", "embedding"):
        if column not in sample_embeddings.columns:
            raise InputError(f"sample embedding table lacks column '{column}'", fix="produce it with 'ms2study pool'")
    lengths = sample_embeddings["embedding"].list.len()
    present = lengths.drop_nulls()
    dim = int(present.max()) if present.len() else 0
    bad = sample_embeddings.filter(lengths.is_not_null() & (lengths != dim))
    if bad.height:
        raise InputError(
            f"embedding has {bad['embedding'].list.len()[0]} values, others have {dim}",
            sample=str(bad["sample_id"][0]), fix="pool every sample with the same encoder (rerun 'ms2study pool')",
        )
    ids = sample_embeddings["sample_id"].cast(pl.Utf8)
    if dim == 0:
        return pl.DataFrame({"sample_id": ids})
    matrix = np.full((sample_embeddings.height, dim), np.nan)
    for i, value in enumerate(sample_embeddings["embedding"].to_list()):
        if value is not None:
            matrix[i] = np.asarray(value, dtype=np.float64)
    # NaN (e.g. from an empty pool) counts as missing too, like null.
    columns = {f"emb_{j}": pl.Series(matrix[:, j]).fill_nan(None) for j in range(dim)}
    return pl.DataFrame({"sample_id": ids, **columns})


def chemical_space_feature_set(sample_chemistry: pl.DataFrame) -> pl.DataFrame:
    """Bags of chemistry (``modelling.chemistry.SAMPLE_CHEMISTRY`` rows, one per sample) as sample_id + one Float64 column per
    prototype region (``proto_{r}``: log1p of the summed abundance there; null where the sample has no feature).

    Every sample must have been summarised with the same prototypes (one ``prototypes_id``): raises InputError
    naming a sample that was not, or when columns are missing or lengths differ.
    """
    for column in ("sample_id", "abundance", "prototypes_id"):
        if column not in sample_chemistry.columns:
            raise InputError(f"sample chemistry table lacks column '{column}'", fix="produce it with 'ms2study chemistry'")
    ids = sample_chemistry["prototypes_id"].unique().drop_nulls().to_list()
    if len(ids) > 1:
        first = sample_chemistry.filter(pl.col("prototypes_id") != ids[0])["sample_id"][0]
        raise InputError(f"samples were summarised with different prototypes {sorted(ids)}", sample=str(first),
                         fix="rerun 'ms2study chemistry' for every sample with the study's prototypes")
    lengths = sample_chemistry["abundance"].list.len().unique().drop_nulls().to_list()
    if len(lengths) > 1:
        raise InputError(f"bags of chemistry of different lengths {sorted(lengths)}",
                         fix="rerun 'ms2study chemistry' for every sample with the study's prototypes")
    k = int(lengths[0]) if lengths else 0
    matrix = np.full((sample_chemistry.height, k), np.nan)
    for i, row in enumerate(sample_chemistry["abundance"].to_list()):
        if row is not None:
            matrix[i] = [np.nan if v is None else v for v in row]
    columns = {f"proto_{r}": pl.Series(matrix[:, r]).fill_nan(None) for r in range(k)}
    return pl.DataFrame({"sample_id": sample_chemistry["sample_id"].cast(pl.Utf8), **columns})


def feature_matrix_feature_set(feature_matrix: pl.DataFrame, sample_ids: list[str]) -> pl.DataFrame:
    """The linked feature matrix (consensus features × samples) as samples × features of log1p(intensity).

    A feature not detected in a sample (null, or an intensity <= 0) stays null here. It is filled INSIDE each
    training fold with half of that feature's smallest training intensity (``imputation: half_minimum``; below the
    detection limit is the likely truth), after features detected in fewer than ``min_detected_fraction`` of the
    training samples are dropped. Doing both before the split would let test samples shape the training data
    (leakage), so they are pipeline steps. log1p itself is per value and needs no fitting.
    """
    if "consensus_id" not in feature_matrix.columns:
        raise InputError("feature matrix lacks column 'consensus_id'", fix="produce it with 'ms2study link'")
    missing = [s for s in sample_ids if s not in feature_matrix.columns]
    if missing:
        raise InputError(
            f"feature matrix has no column for sample(s) {missing[:5]}",
            fix="rerun 'ms2study link' with every sample of the sheet",
        )
    ids = feature_matrix["consensus_id"].cast(pl.Utf8).to_list()
    values = feature_matrix.select([pl.col(s).cast(pl.Float64) for s in sample_ids]).to_numpy()  # features × samples
    with np.errstate(invalid="ignore"):
        logged = np.where(values > 0, np.log1p(np.where(values > 0, values, 0.0)), np.nan)
    columns = {cid: pl.Series(cid, logged[j], dtype=pl.Float64).fill_nan(None) for j, cid in enumerate(ids)}
    return pl.DataFrame({"sample_id": pl.Series(list(sample_ids), dtype=pl.Utf8), **columns})


def binned_spectra_feature_set(spectra: pl.DataFrame, sample_ids: list[str], bin_width: float = 1.0) -> pl.DataFrame:
    """The model-free MS/MS baseline: each sample's spectra binned by fragment m/z and averaged.

    Each spectrum's intensities are scaled to sum 1 (so every spectrum counts once, whatever its total ion
    current), summed into ``bin_width`` m/z bins, and the sum is divided by the sample's number of spectra. A bin
    without peaks in a sample is 0 (a real zero: no fragment there). A sample without spectra keeps its row with
    nulls, filled inside the folds like a missing embedding. Columns are ``mz_{bin start}``.
    """
    for column in ("sample_id", "mz", "intensity"):
        if column not in spectra.columns:
            raise InputError(f"spectra table lacks column '{column}'", fix="produce it with 'ms2study spectra'")
    if bin_width <= 0:
        raise InputError(f"spectra bin width must be positive (got {bin_width})")
    peaks = (
        spectra.select(pl.col("sample_id").cast(pl.Utf8), "mz", pl.col("intensity").cast(pl.List(pl.Float64)))
        .with_row_index("spectrum")
        .filter(pl.col("mz").list.len() > 0)
        .explode("mz", "intensity")
        .filter(pl.col("intensity") > 0)
        .with_columns((pl.col("intensity") / pl.col("intensity").sum().over("spectrum")).alias("share"),
                      (pl.col("mz") / bin_width).floor().cast(pl.Int64).alias("bin"))
    )
    n_spectra = peaks.group_by("sample_id").agg(pl.col("spectrum").n_unique().alias("n"))
    binned = (peaks.group_by("sample_id", "bin").agg(pl.col("share").sum())
              .join(n_spectra, on="sample_id").with_columns(pl.col("share") / pl.col("n")))
    bins = sorted(binned["bin"].unique().to_list())
    frame = pl.DataFrame({"sample_id": pl.Series(list(sample_ids), dtype=pl.Utf8)})
    if not bins:
        return frame
    wide = binned.pivot(on="bin", index="sample_id", values="share")
    names = {str(b): f"mz_{b * bin_width:g}" for b in bins}
    wide = wide.rename(names).select("sample_id", *names.values()).with_columns(
        [pl.col(c).fill_null(0.0) for c in names.values()])
    return frame.join(wide, on="sample_id", how="left", maintain_order="left")


def read_spectra_tables(paths: list[str | Path]) -> pl.DataFrame:
    """The spectra tables (``spectra.parquet``) of the samples stacked: sample_id, mz and intensity (lists of
    Float64); an empty frame of those columns for no paths. Raises InputError naming a file that does not exist."""
    frames = []
    for path in paths:
        if not Path(path).exists():
            raise InputError("spectra table does not exist", file=str(path), fix="run the spectra stage")
        frames.append(pl.read_parquet(path, columns=["sample_id", "mz", "intensity"]).with_columns(
            pl.col("sample_id").cast(pl.Utf8), pl.col("mz").cast(pl.List(pl.Float64)),
            pl.col("intensity").cast(pl.List(pl.Float64))))
    return pl.concat(frames) if frames else pl.DataFrame(
        schema={"sample_id": pl.Utf8, "mz": pl.List(pl.Float64), "intensity": pl.List(pl.Float64)})


def read_sample_embeddings(paths: list[str | Path]) -> pl.DataFrame:
    """The pooled sample embeddings (``sample_embedding.parquet``) stacked: sample_id and embedding (list of
    Float32, null for a sample without usable spectra). Raises InputError naming a file that does not exist."""
    frames = []
    for path in paths:
        if not Path(path).exists():
            raise InputError("sample embedding table does not exist", file=str(path), fix="run the pool stage")
        frames.append(pl.read_parquet(path).select(
            pl.col("sample_id").cast(pl.Utf8), pl.col("embedding").cast(pl.List(pl.Float32))))
    return pl.concat(frames) if frames else pl.DataFrame(schema={"sample_id": pl.Utf8,
                                                                "embedding": pl.List(pl.Float32)})


def read_sample_chemistry(paths: list[str | Path]) -> pl.DataFrame:
    """The per-sample bag-of-chemistry tables (``modelling.chemistry.SAMPLE_CHEMISTRY``) stacked; InputError for a
    missing file."""
    frames = []
    for path in paths:
        if not Path(path).exists():
            raise InputError("sample chemistry table does not exist", file=str(path), fix="run 'ms2study chemistry'")
        frames.append(pl.read_parquet(path).select(
            pl.col("sample_id").cast(pl.Utf8), pl.col("prototypes_id").cast(pl.Utf8),
            pl.col("abundance").cast(pl.List(pl.Float32))))
    return pl.concat(frames)


def study_feature_sets(samples: pl.DataFrame, sample_embedding_paths: list[str | Path],
                       feature_matrix_path: str | Path | None, spectra_paths: list[str | Path] | None = None,
                       bin_width: float = 1.0, sample_chemistry_paths: list[str | Path] | None = None,
                       ) -> dict[str, pl.DataFrame]:
    """The pipeline's feature sets: "embedding" (pooled spectrum embeddings), "features" (linked matrix) and,
    when their tables are given, "binned_spectra" (spectra) and "chemical_space" (bags of chemistry)."""
    sets: dict[str, pl.DataFrame] = {}
    if sample_chemistry_paths:
        sets["chemical_space"] = chemical_space_feature_set(read_sample_chemistry(sample_chemistry_paths))
    if spectra_paths:
        sets["binned_spectra"] = binned_spectra_feature_set(read_spectra_tables(spectra_paths),
                                                            samples["sample_id"].to_list(), bin_width)
    if sample_embedding_paths:
        sets["embedding"] = embedding_feature_set(read_sample_embeddings(sample_embedding_paths))
    if feature_matrix_path:
        if not Path(feature_matrix_path).exists():
            raise InputError("feature matrix does not exist", file=str(feature_matrix_path), fix="run the link stage")
        sets["features"] = feature_matrix_feature_set(pl.read_parquet(feature_matrix_path),
                                                      samples["sample_id"].to_list())
    return sets


def align_rows(feature_set: pl.DataFrame, sample_ids: list[str], name: str) -> tuple[np.ndarray, list[str], list[str]]:
    """A feature set as a matrix in a given sample order: (X, column names, samples without any value).

    X is (len(sample_ids), columns) float64 with the rows of ``feature_set`` (sample_id + numeric columns) in
    ``sample_ids`` order; a sample absent from the set and every null is NaN (filled inside the folds, never here).
    The samples whose row is all NaN are listed (the summary names them). Raises InputError when ``feature_set``
    (called ``name`` in the message) has no sample_id column."""
    if "sample_id" not in feature_set.columns:
        raise InputError(f"feature set '{name}' lacks a sample_id column")
    columns = [c for c in feature_set.columns if c != "sample_id"]
    frame = pl.DataFrame({"sample_id": sample_ids}).join(
        feature_set.with_columns(pl.col("sample_id").cast(pl.Utf8)), on="sample_id", how="left", maintain_order="left")
    X = frame.select([pl.col(c).cast(pl.Float64) for c in columns]).to_numpy() if columns else np.empty(
        (len(sample_ids), 0))
    X = np.asarray(X, dtype=np.float64)
    empty = [s for s, row in zip(sample_ids, X) if columns and np.isnan(row).all()]
    return X, columns, empty
