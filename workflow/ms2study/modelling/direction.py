"""Which classes of a multiclass outcome a feature differs between, and which way: the F-test of
``modelling.differential`` says only that the class means differ."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import polars as pl

__all__ = ["class_extremes"]


def class_extremes(values: np.ndarray, y: np.ndarray, classes: Sequence[str] | None) -> list[pl.Series]:
    """Per feature (rows of ``values``, features x samples, log2 after the fill) of a multiclass outcome (``y``:
    class index per sample into ``classes``): the class with the highest mean, the one with the lowest, and the
    difference of those means; null series of ``values``' length without ``classes``."""
    n = values.shape[0]
    if not classes or values.shape[1] == 0:
        return [pl.Series("highest_class", [None] * n, dtype=pl.Utf8), pl.Series("lowest_class", [None] * n,
                dtype=pl.Utf8), pl.Series("log2_class_range", [None] * n, dtype=pl.Float64)]
    present = [k for k in range(len(classes)) if (y == k).any()]
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        means = np.column_stack([np.nanmean(values[:, y == k], axis=1) for k in present])
    ok = np.isfinite(means).all(axis=1)
    filled = np.where(np.isfinite(means), means, 0.0)
    high, low = np.argmax(filled, axis=1), np.argmin(filled, axis=1)
    names = np.array([classes[k] for k in present], dtype=object)
    spread = filled[np.arange(n), high] - filled[np.arange(n), low]
    return [pl.Series("highest_class", np.where(ok, names[high], None).tolist(), dtype=pl.Utf8),
            pl.Series("lowest_class", np.where(ok, names[low], None).tolist(), dtype=pl.Utf8),
            pl.Series("log2_class_range", np.where(ok, spread, np.nan), dtype=pl.Float64).fill_nan(None)]
