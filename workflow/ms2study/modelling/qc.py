"""Quality control of the runs: chromatograms, per-sample counts and errors, and the outlier rule.

``chromatogram`` turns a run's MS1 scans into the total-ion (TIC) and base-peak (BPC) chromatograms the report
overlays (``CHROMATOGRAM``), downsampled to at most ``MAX_POINTS`` points by the maximum within bins of consecutive
scans, so a peak is never flattened. ``qc_table`` gathers one row per sample (``QC``) from the per-sample tables
(chromatogram metadata, spectra, features, annotations) and the link stage's alignment, and flags outlier samples
with ``outlier_scores``: a robust distance of each sample from the study's centre in a PCA of the log feature
matrix, turned into an Iglewicz & Hoaglin modified z-score (flag above 3.5). Imports only ``core`` and numpy.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import numpy as np
import polars as pl

from ms2study.core.errors import InputError
from ms2study.core.missing import is_missing

log = logging.getLogger(__name__)

# Parquet metadata key of the chromatogram's run summary (n_ms1_scans, n_ms2_scans, tic_total).
METADATA_KEY = "ms2study"
MAX_POINTS = 2000
CHROMATOGRAM: dict[str, pl.DataType] = {
    "rt_s": pl.Float64,   # retention time (s): the mean of the bin's scans
    "tic": pl.Float64,    # total ion current: summed intensity of an MS1 scan (the bin's largest)
    "bpc": pl.Float64,    # base peak: the most intense peak of an MS1 scan (the bin's largest)
}
QC: dict[str, pl.DataType] = {
    "sample_id": pl.Utf8,
    "n_ms1_scans": pl.Int32,
    "n_ms2_scans": pl.Int32,               # rows of spectra.parquet: every MS2 scan of the run
    "n_ms2_mapped": pl.Int32,              # of them, mapped to a detected feature
    "share_ms2_mapped": pl.Float64,
    "n_features": pl.Int32,
    "tic_total": pl.Float64,               # summed TIC over every MS1 scan
    "rt_shift_median_s": pl.Float64,       # median (aligned - raw) RT of the sample's features (0 for the reference)
    "precursor_error_median_ppm": pl.Float64,  # signed median over accepted rank-1 identifications
    "n_accepted": pl.Int32,                # accepted rank-1 identifications (spectra)
    "outlier": pl.Boolean,
    "outlier_score": pl.Float64,           # modified z-score of the robust distance (null: not tested)
    "outlier_rule": pl.Utf8,
}

OUTLIER_Z = 3.5          # Iglewicz & Hoaglin (1993): |modified z| > 3.5 is a potential outlier
MAX_COMPONENTS = 5       # PCA components kept (fewer with fewer samples)
NOT_TESTED_TYPES_NOTE = "sample_type is not 'sample' (QC/blank rows are not outlier-tested)"


def chromatogram(rt_s: np.ndarray, tic: np.ndarray, bpc: np.ndarray, max_points: int = MAX_POINTS) -> pl.DataFrame:
    """TIC and BPC of a run as a ``CHROMATOGRAM`` frame of at most ``max_points`` rows.

    ``rt_s``, ``tic``, ``bpc``: (n,) per MS1 scan in RT order (s, summed intensity, largest peak). Longer runs are cut
    into ``max_points`` bins of consecutive scans; each bin keeps its mean RT and the largest TIC and BPC of its
    scans (the maximum keeps every peak's apex, which a mean would flatten). Raises ValueError when the arrays differ
    in length or ``max_points`` < 1."""
    rt_s, tic, bpc = (np.asarray(a, dtype=np.float64) for a in (rt_s, tic, bpc))
    if not (rt_s.shape == tic.shape == bpc.shape) or rt_s.ndim != 1:
        raise ValueError(f"rt_s, tic and bpc must be 1-d of one length (got {rt_s.shape}, {tic.shape}, {bpc.shape})")
    if max_points < 1:
        raise ValueError(f"max_points must be at least 1 (got {max_points})")
    if rt_s.size > max_points:
        starts = np.linspace(0, rt_s.size, max_points + 1).astype(np.int64)[:-1]
        counts = np.diff(np.append(starts, rt_s.size))
        rt_s = np.add.reduceat(rt_s, starts) / counts
        tic = np.maximum.reduceat(tic, starts)
        bpc = np.maximum.reduceat(bpc, starts)
    return pl.DataFrame({"rt_s": rt_s, "tic": tic, "bpc": bpc}, schema=CHROMATOGRAM)


def chromatogram_metadata(n_ms1_scans: int, n_ms2_scans: int, tic_total: float) -> dict[str, str]:
    """The Parquet metadata stored with a chromatogram: the run's scan counts and summed TIC (before binning)."""
    return {METADATA_KEY: json.dumps({"n_ms1_scans": int(n_ms1_scans), "n_ms2_scans": int(n_ms2_scans),
                                      "tic_total": float(tic_total)})}


def read_chromatogram_summary(path: str) -> dict[str, Any]:
    """The run summary stored by the detect stage with ``chromatogram.parquet`` ({} when there is none)."""
    text = pl.read_parquet_metadata(path).get(METADATA_KEY)
    return json.loads(text) if text else {}


def log_feature_matrix(feature_matrix: pl.DataFrame, sample_ids: list[str],
                       min_detected_fraction: float = 0.5) -> np.ndarray:
    """samples × features of log(intensity) for the outlier rule: (len(sample_ids), kept features).

    Features detected (intensity > 0) in fewer than ``min_detected_fraction`` of ``sample_ids`` are dropped; a missing
    value in a kept feature is filled with half the feature's smallest detected intensity (as the models do), so an
    undetected compound counts as below the detection limit. Raises InputError when a sample has no column."""
    missing = [s for s in sample_ids if s not in feature_matrix.columns]
    if missing:
        raise InputError(f"feature matrix has no column for sample(s) {missing[:5]}",
                         fix="rerun the link stage with every sample of the sheet")
    if not sample_ids:
        return np.empty((0, 0))
    values = feature_matrix.select([pl.col(s).cast(pl.Float64) for s in sample_ids]).to_numpy().T
    values = np.where(np.isfinite(values) & (values > 0), values, np.nan)
    detected = np.isfinite(values)
    keep = detected.mean(axis=0) >= max(min_detected_fraction, 1e-12)
    values = values[:, keep]
    if values.size == 0:
        return values
    fill = np.nanmin(values, axis=0) / 2.0
    return np.log(np.where(np.isfinite(values), values, fill))


def outlier_scores(X: np.ndarray) -> tuple[np.ndarray, np.ndarray, str]:
    """Flag outlier samples in X (n samples × p features, log intensities, no NaN): (score (n,), flag (n,), rule).

    The features are centred on their medians and projected on the first k = min(5, n - 1, p) principal components
    (SVD); the distance is the Euclidean distance to the coordinate-wise median sample in that space. A robust
    Mahalanobis distance (minimum covariance determinant, scikit-learn ``MinCovDet``) was tried for n >= 20 and
    dropped: a study's groups make the samples bimodal, the MCD fits one group, and on clean synthetic studies of 20
    samples it flagged 88 of 1,200 samples (7 %; the Euclidean distance: none). The score is the modified z-score of the distances raised to the power
    2/3, 0.6745 (t - median t) / MAD(t) with t = d^(2/3), and a sample is an outlier when it exceeds 3.5 (Iglewicz &
    Hoaglin 1993, How to Detect and Handle Outliers, ASQC). The power: d² over k components is roughly a scaled
    chi-square, whose cube root is nearly normal (Wilson & Hilferty 1931, PNAS 17:684), so the median/MAD z-score,
    made for a symmetric distribution, is not inflated by the long right tail of raw distances. On clean synthetic
    studies with a group effect (60 each of 8, 12 and 16 samples) it flagged 0.1-0.2 % of the samples, and every
    corrupted run; on the demo study the largest score is 2.9. With fewer than 3 samples, or distances without
    spread (MAD 0), nothing is flagged and the scores are NaN or 0. ``rule`` states what was done."""
    X = np.asarray(X, dtype=np.float64)
    n = X.shape[0]
    if n < 3 or X.ndim != 2 or X.shape[1] == 0:
        return np.full(n, np.nan), np.zeros(n, dtype=bool), "not tested: fewer than 3 samples or no feature"
    centred = X - np.median(X, axis=0)
    k = int(min(MAX_COMPONENTS, n - 1, X.shape[1]))
    u, s, _ = np.linalg.svd(centred, full_matrices=False)
    scores = u[:, :k] * s[:k]
    distance = np.linalg.norm(scores - np.median(scores, axis=0), axis=1)
    how = f"Euclidean distance to the median sample on {k} principal components"
    t = distance ** (2.0 / 3.0)  # Wilson-Hilferty: nearly normal where d² is chi-square-like
    mad = np.median(np.abs(t - np.median(t)))
    z = 0.6745 * (t - np.median(t)) / mad if mad > 0 else np.zeros(n)
    rule = (f"{how} of the log feature matrix (features detected in >= 50% of the tested samples); outlier when "
            f"the modified z-score of t = d^(2/3), 0.6745 (t - median t) / MAD(t), exceeds {OUTLIER_Z} "
            "(Iglewicz & Hoaglin 1993; Wilson-Hilferty power)")
    return z, z > OUTLIER_Z, rule


def tested_samples(samples: pl.DataFrame) -> list[bool]:
    """Which sheet rows are outlier-tested: all, unless a ``sample_type`` column marks a row as other than 'sample'
    (QC, blank, ...); an empty cell counts as a sample."""
    if "sample_type" not in samples.columns:
        return [True] * samples.height
    return [is_missing(v) or str(v).strip().lower() == "sample" for v in samples["sample_type"].to_list()]


def qc_table(samples: pl.DataFrame, runs: dict[str, dict[str, Any]], alignment: pl.DataFrame | None,
             feature_matrix: pl.DataFrame | None) -> pl.DataFrame:
    """One ``QC`` row per sheet row, in sheet order.

    ``runs``: per sample id, the values gathered from its tables (keys of ``QC`` from n_ms1_scans to n_accepted;
    absent keys are null). ``alignment``: the link stage's table (sample_id, rt_shift_median_s), or None.
    ``feature_matrix``: consensus features × samples, for the outlier rule (None: no outlier test)."""
    ids = samples["sample_id"].cast(pl.Utf8).to_list()
    shift = {}
    if alignment is not None and {"sample_id", "rt_shift_median_s"} <= set(alignment.columns):
        shift = dict(zip(alignment["sample_id"].cast(pl.Utf8).to_list(), alignment["rt_shift_median_s"].to_list()))
    tested = tested_samples(samples)
    tested_ids = [s for s, t in zip(ids, tested) if t]
    score = {s: None for s in ids}
    flag = {s: False for s in ids}
    rule = "not tested: no feature matrix"
    if feature_matrix is not None:
        z, flags, rule = outlier_scores(log_feature_matrix(feature_matrix, tested_ids))
        for s, value, f in zip(tested_ids, z, flags):
            score[s] = None if not np.isfinite(value) else float(value)
            flag[s] = bool(f)
    rows = []
    for s, t in zip(ids, tested):
        run = runs.get(s, {})
        n_ms2, mapped = run.get("n_ms2_scans"), run.get("n_ms2_mapped")
        rows.append({
            **{c: run.get(c) for c in ("n_ms1_scans", "n_ms2_scans", "n_ms2_mapped", "n_features", "tic_total",
                                       "precursor_error_median_ppm", "n_accepted")},
            "sample_id": s,
            "share_ms2_mapped": (mapped / n_ms2) if n_ms2 and mapped is not None else None,
            "rt_shift_median_s": shift.get(s, run.get("rt_shift_median_s")),
            "outlier": flag[s], "outlier_score": score[s],
            "outlier_rule": rule if t else f"not tested: {NOT_TESTED_TYPES_NOTE}",
        })
    return pl.DataFrame(rows, schema=QC)
