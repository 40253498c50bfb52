"""Which cells of a feature matrix (features x samples) hold a measurement: the ones feature detection found (not
gap-filled, ``detection_mask``), and the ones a run could not measure at all because the feature elutes outside the
run's acquisition (``not_measured_mask``: a run acquired over a shorter gradient, or stopped early). A cell of the
second kind says nothing about the compound's abundance; the differential tests fill it with the feature's mean over
the runs that measured it (``fill_not_measured``) instead of imputing it as below detection, and give such a feature
a permutation p-value as for any filled value. Imports numpy, polars and ``modelling.univariate``.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence

import numpy as np
import polars as pl

from ms2study.core.errors import InputError
from ms2study.modelling.univariate import log2_intensities


def detection_mask(detected: pl.DataFrame, consensus_ids: Sequence[str], sample_ids: Sequence[str]) -> np.ndarray:
    """Which cells feature detection found: features (``consensus_ids`` order) × samples (``sample_ids`` order),
    true where the linked matrix ``detected`` (consensus_id + one column per sample, null = not detected) holds an
    intensity > 0. Gap filling writes its values into the corrected matrix only, so this is what marks a cell as
    detected rather than filled. Raises InputError when ``detected`` lacks consensus_id, a sample's column or one of
    ``consensus_ids`` (tables from different runs of the link stage)."""
    if "consensus_id" not in detected.columns:
        raise InputError("the detection table lacks column 'consensus_id'", file="feature_matrix.parquet",
                         fix="pass the link stage's results/study/feature_matrix.parquet")
    order = pl.DataFrame({"consensus_id": pl.Series(list(consensus_ids), dtype=pl.Utf8)})
    frame = detected.with_columns(pl.col("consensus_id").cast(pl.Utf8))
    lacking = order.join(frame.select("consensus_id"), on="consensus_id", how="anti")
    if lacking.height:
        raise InputError(f"{lacking.height} consensus feature(s) of the matrix are not in the detection table, e.g. "
                         f"{lacking['consensus_id'][0]}", file="feature_matrix.parquet",
                         fix="rerun the correct stage after link (both matrices must come from the same link run)")
    aligned = order.join(frame.unique("consensus_id", keep="first"), on="consensus_id", how="left",
                         maintain_order="left")
    values = log2_intensities(aligned, sample_ids)  # raises InputError for a missing sample column
    return ~np.isnan(values)


def not_measured_mask(rt_s: np.ndarray, sample_ids: Sequence[str],
                      ranges: Mapping[str, tuple[float, float]]) -> np.ndarray:
    """Cells (features x ``sample_ids``) whose feature elutes outside its run's acquisition: ``rt_s`` (shape
    (features,), the consensus retention time, s; NaN: never outside) before the run's first or after its last scan
    in ``ranges`` (sample id -> (start, end) s; a sample without a range: every cell measured). Returns bool, shape
    (len(rt_s), len(sample_ids))."""
    rt = np.asarray(rt_s, dtype=np.float64)[:, None]
    start = np.array([ranges.get(s, (-np.inf, np.inf))[0] for s in sample_ids], dtype=np.float64)[None, :]
    end = np.array([ranges.get(s, (-np.inf, np.inf))[1] for s in sample_ids], dtype=np.float64)[None, :]
    with np.errstate(invalid="ignore"):
        return (rt < start) | (rt > end)


def fill_not_measured(log2_values: np.ndarray, not_measured: np.ndarray) -> np.ndarray:
    """``log2_values`` (features x samples, NaN = no value) with each ``not_measured`` cell set to the mean of its
    feature over the cells that hold a value and were measured (NaN when there is none): a value that carries no
    information on the outcome, where half the minimum would claim the compound was nearly absent. Same shape."""
    values = np.asarray(log2_values, dtype=np.float64)
    usable = np.where(not_measured, np.nan, values)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a feature measured nowhere: mean of nothing, NaN
        mean = np.nanmean(usable, axis=1)
    return np.where(not_measured, mean[:, None], values)


def fill_matrix_not_measured(matrix: pl.DataFrame, sample_ids: Sequence[str],
                             ranges: Mapping[str, tuple[float, float]]) -> tuple[pl.DataFrame, int]:
    """The wide feature ``matrix`` (``rt_s`` and one intensity column per sample, null = no value) with each empty
    cell of ``sample_ids`` whose feature elutes outside its run's range (``not_measured_mask``) set to the feature's
    geometric mean over the cells that were measured (``fill_not_measured`` on the log2 scale), for the outcome
    models, which impute the remaining empty cells as below detection inside their folds. The mean spans all
    samples: it carries no outcome label. Returns (matrix, number of cells filled); unchanged without ``rt_s``."""
    ids = [s for s in sample_ids if s in matrix.columns and s in ranges]
    if not ids or "rt_s" not in matrix.columns or matrix.height == 0:
        return matrix, 0
    raw = log2_intensities(matrix, ids)
    gone = not_measured_mask(matrix["rt_s"].cast(pl.Float64).to_numpy(), ids, ranges) & np.isnan(raw)
    if not gone.any():
        return matrix, 0
    filled = 2.0 ** fill_not_measured(raw, gone)
    return matrix.with_columns([pl.Series(s, np.where(gone[:, j], filled[:, j], matrix[s].cast(pl.Float64)
                                                      .fill_null(np.nan).to_numpy())).fill_nan(None)
                                for j, s in enumerate(ids)]), int(gone.sum())
