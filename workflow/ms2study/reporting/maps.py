"""The 2-D sample maps of the report: PCA, or UMAP when umap-learn is importable.

The maps are pictures, not models: missing values are filled over all samples and the matrix standardised before
PCA (numpy SVD) or UMAP. May import ``ms2study.core`` and ``ms2study.modelling``.
"""

from __future__ import annotations

import warnings

import numpy as np

from ms2study.modelling.preprocessing import HalfMinimumImputer


def _prepared(X: np.ndarray, imputation: str) -> np.ndarray:
    """Missing values filled over all samples (a picture, not a model: the models fill inside their folds) as
    the models fill them (``half_minimum``: the models' imputer; else the column mean), constant columns dropped,
    standardised."""
    X = np.array(X, dtype=np.float64)
    if imputation == "half_minimum":
        X = HalfMinimumImputer().fit_transform(X)  # columns never detected are dropped
    else:
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a column without any value: filled with 0, dropped
            fill = np.nan_to_num(np.nanmean(X, axis=0))
        X = np.where(np.isnan(X), fill, X)
    return standardised(X)


def standardised(X: np.ndarray) -> np.ndarray:
    """X (samples x columns, finite) less its constant columns, each column centred and scaled to unit (population)
    standard deviation. Constant columns are judged on one computation of the mean and spread, with a tolerance
    (spread <= 1e-9 x max(1, |mean|)): a column of copies has a spread of rounding (1e-17), and a second std over the
    kept columns, summed in another order, can be exactly 0 (a trial's runs with identical MS/MS: 0 / 0, then "SVD
    did not converge" ended the report)."""
    mean, spread = X.mean(axis=0), X.std(axis=0)
    keep = spread > 1e-9 * np.maximum(1.0, np.abs(mean))
    return (X[:, keep] - mean[keep]) / spread[keep]


def _pca_2d(X: np.ndarray, imputation: str) -> tuple[np.ndarray, np.ndarray]:
    """Descriptive 2-D PCA of all samples (missing values filled over all samples: a picture, not a model)."""
    X = _prepared(X, imputation)
    if X.shape[1] == 0:
        return np.zeros((X.shape[0], 2)), np.zeros(2)
    u, s, _ = np.linalg.svd(X, full_matrices=False)
    coords = u[:, :2] * s[:2]
    if coords.shape[1] < 2:
        coords = np.hstack([coords, np.zeros((coords.shape[0], 2 - coords.shape[1]))])
    explained = (s**2 / (s**2).sum())[:2] if s.size else np.zeros(2)
    return coords, np.pad(explained, (0, 2 - len(explained)))


def umap_available() -> bool:
    """Whether umap-learn (optional, not a dependency) can be imported."""
    try:
        import umap  # noqa: F401  (umap-learn; optional, not a dependency)
    except ImportError:
        return False
    return True


def map_2d(X: np.ndarray, imputation: str, method: str = "auto", seed: int = 0) -> tuple[np.ndarray, str, list[str]]:
    """2-D coordinates of the samples for a picture: (coords n × 2, method used, axis labels).

    ``X`` is samples × features with NaN where missing; ``imputation`` is "half_minimum" (``X`` is log1p intensity:
    half the smallest raw value) or anything else (the column mean). ``auto`` uses UMAP when umap-learn is
    importable (it is not a dependency; install it to get UMAP maps), else PCA; ``umap`` without the package, or
    with fewer than 6 samples (too few neighbours), also falls back to PCA, and the method used is returned so the
    chart says which it is. Both start from the same filled, standardised matrix.
    """
    coords, explained = _pca_2d(X, imputation)
    pca = (coords, "PCA", [f"PC1 ({explained[0]:.0%})", f"PC2 ({explained[1]:.0%})"])
    if method == "pca" or X.shape[0] < 6 or not umap_available():
        return pca
    import umap

    prepared = _prepared(X, imputation)
    if prepared.shape[1] < 2:
        return pca
    reducer = umap.UMAP(n_components=2, n_neighbors=min(15, X.shape[0] - 1), random_state=seed, init="random")
    return np.asarray(reducer.fit_transform(prepared)), "UMAP", ["UMAP 1", "UMAP 2"]
