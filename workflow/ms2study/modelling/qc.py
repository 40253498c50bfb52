"""Quality control of the runs: chromatograms, per-run counts and errors, and the outlier rule by run type.

``chromatogram`` turns a run's MS1 scans into the total-ion (TIC) and base-peak (BPC) chromatograms the report
overlays (``CHROMATOGRAM``), downsampled to at most ``MAX_POINTS`` points by the maximum within bins of consecutive
scans, so a peak is never flattened. ``qc_table`` gathers one row per run (``QC``) from the per-sample tables
(chromatogram metadata, spectra, features, annotations) and the link stage's alignment, with the run's type, batch
and injection order from the sample sheet (``io.samplesheet.sample_roles``), and flags outliers on the log feature
matrix (each run's median removed; the features detected in every run of the type, ``group_outliers``) with an
Iglewicz & Hoaglin modified z-score (flag above 3.5) of a distance: for study samples the distance to their second
nearest other sample (``neighbour_outliers``: a study's groups are no outliers), for pooled QCs the distance from
the QCs' centre in a PCA (``outlier_scores``). The groups are the run types: study samples are
judged among study samples and pooled QCs among QCs (a QC apart from the other QCs points at an injection problem);
solvent blanks are never outliers (few features is what a blank should have), but a blank with many features is
noted as possible carry-over (``carryover_note``). With runs in several batches, each batch is centred on its own
median first (``batch_centred``). A sheet without sample_type is all study samples, as before.

Why the extra condition for QCs: replicate injections of one material give distances that hardly vary, so the
median/MAD z-score turns small differences into large scores. On synthetic QC sets (300 features, replicate log-sd
0.1-0.3, with and without a linear drift of 0.3 over the run) the z-score alone warned about a clean set in 1-18 %
of studies (3-12 QCs); requiring also a distance of at least 1.5 times the QCs' median cut that to below 1 %, and a
QC at half intensity was still flagged in 93-100 % with 4 or more QCs. A QC with added noise (log-sd 0.5) was found
in 55-99 % with 5 or more QCs but rarely with 4 under drift: a study needs about 6 QCs for this check to see much.
Imports ``core``, ``io`` (the sheet's roles) and numpy.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from ms2study.core.errors import InputError
from ms2study.io.samplesheet import sample_roles
from ms2study.modelling import runchecks
from ms2study.modelling.runchecks import alignment_notes, coverage_note, rt_coverage, rt_overlap

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
    "sample_type": pl.Utf8,                # sample | qc | blank (sheet column; absent: sample)
    "batch": pl.Utf8,                      # sheet column; absent: "1"
    "injection_order": pl.Int64,           # sheet column; null when absent
    "n_ms1_scans": pl.Int32,
    "n_ms2_scans": pl.Int32,               # rows of spectra.parquet: every MS2 scan of the run
    "n_ms2_mapped": pl.Int32,              # of them, mapped to a detected feature
    "share_ms2_mapped": pl.Float64,
    "n_features": pl.Int32,
    "tic_total": pl.Float64,               # summed TIC over every MS1 scan
    "rt_shift_median_s": pl.Float64,       # median (aligned - raw) RT of the sample's features (0 for the reference)
    "rt_residual_median_abs_s": pl.Float64,  # median |aligned RT - reference RT| over features shared with the reference
    "precursor_error_median_ppm": pl.Float64,  # signed median over accepted rank-1 identifications
    "n_accepted": pl.Int32,                # accepted rank-1 identifications (spectra)
    "outlier": pl.Boolean,
    "outlier_score": pl.Float64,           # modified z-score of the robust distance (null: not tested)
    "outlier_rule": pl.Utf8,               # the rule of the run's type (samples among samples, QCs among QCs)
    "run_note": pl.Utf8,                   # a blank's possible carry-over, a QC apart from the QCs (null: none)
    "rt_start_s": pl.Float64,              # first MS1 scan's RT (s; the chromatogram's first point)
    "rt_end_s": pl.Float64,                # last MS1 scan's RT (s)
    "instrument": pl.Utf8,                 # the model the run's file states (null: not stated)
    "mass_analyzers": pl.Utf8,             # the analyzers the run's file states, in order (null: not stated)
    "tolerance_note": pl.Utf8,             # a time-of-flight run searched with a narrow window (modelling.runchecks)
    # How the detect stage centroided the run's MS1 scans (null: the file's scans were used as written, centroided
    # by the instrument's software or converter): PROFILE_CENTROIDED, FORCED_CENTROIDED or PROFILE_NOT_CENTROIDED.
    "ms1_centroiding": pl.Utf8,
    # the run's m/z offset against the study's median run (ppm; link stage, correction.mzoffset; null: not measured),
    # whether link removed it before linking, and what it means for the run's identifications (stage qc)
    "mz_offset_ppm": pl.Float64,
    "mz_recalibrated": pl.Boolean,
    "mz_offset_note": pl.Utf8,
    # the precursor m/z offset the annotate stage measured on the run's own matches and removed (null: none)
    "precursor_recalibration_ppm": pl.Float64,
    # median half-height width (s) of the run's features with an isotope trace (compounds rather than noise traces;
    # all features when none has one); null: the features table has no fwhm_s (stage qc, peak_fwhm_median)
    "peak_fwhm_median_s": pl.Float64,
}
PROFILE_CENTROIDED = "profile data centroided here (PeakPickerHiRes)"
FORCED_CENTROIDED = "centroided again here (PeakPickerHiRes, centroid: always)"
PROFILE_NOT_CENTROIDED = "profile data used as profile (centroid: never)"

OUTLIER_Z = 3.5          # Iglewicz & Hoaglin (1993): |modified z| > 3.5 is a potential outlier
MAX_COMPONENTS = 5       # PCA components kept (fewer with fewer samples)
MIN_BATCH_RUNS = 3       # runs of one type per batch needed to centre each batch on its own median
QC_MIN_DISTANCE_RATIO = 1.5  # a QC outlier is also this far from the QCs' centre, relative to their median distance
SAMPLE_MIN_DISTANCE_RATIO = 1.25  # a sample outlier is this far from its neighbours, relative to the median
# Features detected in every run of a type that the outlier rule needs before it uses those alone (module docstring)
MIN_COMPLETE_FEATURES = 50
CARRYOVER_SHARE = 0.5    # a blank with this share of the study samples' median feature count is noted
BLANK_RULE = (f"not tested: blank run (blanks are never outliers by their features; one with at least "
              f"{CARRYOVER_SHARE:.0%} of the study samples' median feature count is noted as possible carry-over)")


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


def chromatogram_metadata(n_ms1_scans: int, n_ms2_scans: int, tic_total: float,
                          ms1_centroiding: str | None = None) -> dict[str, str]:
    """The Parquet metadata stored with a chromatogram: the run's scan counts and summed TIC (before binning), and
    how its MS1 scans were centroided before feature detection (``ms1_centroiding``, see ``QC``: None when the file's
    scans were used as written)."""
    return {METADATA_KEY: json.dumps({"n_ms1_scans": int(n_ms1_scans), "n_ms2_scans": int(n_ms2_scans),
                                      "tic_total": float(tic_total), "ms1_centroiding": ms1_centroiding})}


def with_centroiding(metadata: dict[str, str], ms1_centroiding: str) -> dict[str, str]:
    """``chromatogram_metadata``'s output with its ``ms1_centroiding`` set."""
    return {METADATA_KEY: json.dumps({**json.loads(metadata[METADATA_KEY]), "ms1_centroiding": ms1_centroiding})}


def rt_range(chromatogram: str | Path) -> tuple[float | None, float | None]:
    """(first, last) RT (s) of a chromatogram table (``CHROMATOGRAM``: the mean RT of the first and
    last bin of MS1 scans, within a few scans of the acquisition's ends); (None, None) for a table without rt_s
    values."""
    rt = pl.read_parquet(chromatogram, columns=["rt_s"])["rt_s"].drop_nulls().drop_nans()
    return (float(rt.min()), float(rt.max())) if rt.len() else (None, None)


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


def outlier_scores(X: np.ndarray, features: str = "features detected in >= 50% of the tested samples"
                   ) -> tuple[np.ndarray, np.ndarray, str]:
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
    spread (MAD 0), nothing is flagged and the scores are NaN or 0. ``rule`` states what was done (``features``:
    which features X holds)."""
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
    rule = (f"{how} of the log feature matrix ({features}); outlier when "
            f"the modified z-score of t = d^(2/3), 0.6745 (t - median t) / MAD(t), exceeds {OUTLIER_Z} "
            "(Iglewicz & Hoaglin 1993; Wilson-Hilferty power)")
    return z, z > OUTLIER_Z, rule


def neighbour_outliers(X: np.ndarray, features: str) -> tuple[np.ndarray, np.ndarray, str]:
    """Flag study samples far from every other sample in X (n samples × p features, log intensities, no NaN):
    (score (n,), flag (n,), rule).

    The score is the Iglewicz & Hoaglin modified z-score (as in ``outlier_scores``, with the Wilson-Hilferty power
    2/3) of each sample's Euclidean distance to its SECOND nearest other sample. A sample is flagged when the score
    exceeds ``OUTLIER_Z``, that distance is at least ``SAMPLE_MIN_DISTANCE_RATIO`` times its median over the samples,
    and so is its distance to its nearest sample (a pair of similar samples, e.g. a class of two, is no outlier).
    Why not the distance to the study's centre (``outlier_scores``): study samples form groups (cases and controls,
    classes, technical duplicates, runs copied from two injections), the centre lies between them, every sample is
    about equally far from it and the median/MAD z-score turns small differences into alarms while hiding a failed
    run. Measured on synthetic studies (600 log-normal features, biological log-sd 0.2 and 0.4, 6-48 samples, 150
    studies per setting; one sample with added log-sd 0.5 noise, or a third of its features scrambled): one group,
    two groups with 30 features 3x, two clusters, three classes, a drift, duplicates. The centre rule warned about
    clean studies in up to 17 % of studies and found the noisy run in 3-100 % (0-43 % with two clusters); this rule
    (ratio 1.25) warned in none, found the noisy run in 97-100 % with 8 or more samples (43-100 % with 6) and the
    scrambled one in 100 %, except where a class holds two samples (three classes in 8 samples: 0-3 % and 73-100 %)
    or two clusters hold 3 samples each (0-11 %). A ratio of 1.5 also warned in none but missed added noise of the
    size of the biological variation (log-sd 0.4) everywhere. On real tables: ST000291 (45 urine samples) none;
    MTBLS2 (16) the same two as the centre rule; sacurine (183) two
    samples whose nearest other sample is 1.7x the typical distance (the centre rule: none). Fewer than 4 samples:
    nothing is flagged and the scores are NaN."""
    X = np.asarray(X, dtype=np.float64)
    n = X.shape[0]
    if n < 4 or X.ndim != 2 or X.shape[1] == 0:
        return np.full(n, np.nan), np.zeros(n, dtype=bool), "not tested: fewer than 4 samples or no feature"
    distance = run_distances(X)
    nearest = np.sort(distance, axis=1)[:, :2]
    t = nearest[:, 1] ** (2.0 / 3.0)
    mad = np.median(np.abs(t - np.median(t)))
    z = 0.6745 * (t - np.median(t)) / mad if mad > 0 else np.zeros(n)
    far = (nearest >= SAMPLE_MIN_DISTANCE_RATIO * np.median(nearest, axis=0)).all(axis=1)
    rule = (f"Euclidean distance to the second nearest other sample in the log feature matrix ({features}); outlier "
            f"when the modified z-score of t = d^(2/3), 0.6745 (t - median t) / MAD(t), exceeds {OUTLIER_Z} "
            "(Iglewicz & Hoaglin 1993; Wilson-Hilferty power) and both its nearest and second nearest distances are "
            f"at least {SAMPLE_MIN_DISTANCE_RATIO:g} times their medians (groups and pairs of similar samples are "
            "no outliers)")
    return z, (z > OUTLIER_Z) & far, rule


def run_distances(X: np.ndarray) -> np.ndarray:
    """Euclidean distances between the rows of X (n runs x p values), shape (n, n), the diagonal +inf (a run is not
    its own neighbour)."""
    square = (X * X).sum(axis=1)
    distance = np.sqrt(np.maximum(square[:, None] + square[None, :] - 2.0 * X @ X.T, 0.0))
    np.fill_diagonal(distance, np.inf)
    return distance


RUN_CENTRED_RULE = "; each run's median log intensity removed first (an overall intensity factor is no outlier)"


def run_centred(X: np.ndarray) -> np.ndarray:
    """X (n runs × p log intensities) with each run's median removed: an overall intensity factor of a run
    (dilution, injection volume; normalisation removes it) does not make it an outlier. Empty X is returned as is."""
    X = np.asarray(X, dtype=np.float64)
    return X - np.median(X, axis=1, keepdims=True) if X.size else X


def batch_centred(X: np.ndarray, batches: list[str]) -> tuple[np.ndarray, bool]:
    """X (n runs × p log intensities) with each batch's runs centred on that batch's per-feature median, so a batch
    offset (the instrument's response jumping between batches) does not make a small batch look like outliers.

    Done only when the runs span two or more batches and every batch has at least ``MIN_BATCH_RUNS`` of them (the
    median of one or two runs would absorb the very run it should judge); otherwise X is returned unchanged.
    Returns (X, whether it was centred)."""
    X = np.asarray(X, dtype=np.float64)
    labels = np.asarray(batches, dtype=object)
    kinds, counts = np.unique(labels, return_counts=True) if labels.size else (np.array([]), np.array([]))
    if X.ndim != 2 or X.shape[0] != labels.size or X.shape[1] == 0 or kinds.size < 2 or counts.min() < MIN_BATCH_RUNS:
        return X, False
    out = X.copy()
    for kind in kinds:
        rows = labels == kind
        out[rows] -= np.median(X[rows], axis=0)
    return out, True


def group_outliers(feature_matrix: pl.DataFrame, ids: list[str], batches: list[str],
                   what: str) -> tuple[np.ndarray, np.ndarray, str]:
    """The outlier rule (``outlier_scores``) among the runs ``ids`` of one type only, on their log feature matrix
    (``log_feature_matrix``) with each run's median removed (a run that differs only by an overall factor, e.g. more
    sample injected, is no outlier: a fresh-user trial saw the three runs of largest overall factor in 16 copies of
    one run flagged) and batch-centred (``batch_centred``). The features are those detected in every one of these
    runs when there are at least ``MIN_COMPLETE_FEATURES``: a value filled in for a missing cell (half the feature's
    smallest) sits below what the runs that detected it measured, and which runs miss a feature near the detection
    limit follows their overall factor, so with features missing in some runs the three runs of largest factor of a
    24-run spike-in study were flagged again after run-centring (Spearman rho 0.67 between score and factor; on the
    features detected in all runs -0.18, none flagged). Fewer complete features: those detected in half the runs,
    missing values filled (``log_feature_matrix``). ``what`` is "samples" or "qc": study samples are judged by
    their distance to their neighbours (``neighbour_outliers``: groups of samples are no outliers); pooled QCs
    are one material injected again and again, so a QC is flagged only when, besides the modified z-score, its
    distance is at least ``QC_MIN_DISTANCE_RATIO`` times the QCs' median distance (see the module docstring for
    why). Returns (score, flag, rule) for ``ids`` in order."""
    X = log_feature_matrix(feature_matrix, ids, min_detected_fraction=1.0)
    features = f"the {X.shape[1]} features detected in every one of these runs"
    if X.shape[1] < MIN_COMPLETE_FEATURES:
        X = log_feature_matrix(feature_matrix, ids)
        features = (f"{X.shape[1]} features detected in >= 50% of these runs, as fewer than "
                    f"{MIN_COMPLETE_FEATURES} are detected in all; a missing value at half the feature's smallest")
    X, centred = batch_centred(run_centred(X), batches)
    z, flags, rule = outlier_scores(X, features) if what == "qc" else neighbour_outliers(X, features)
    if what == "qc" and len(ids) >= 3 and not rule.startswith("not tested"):
        distance = _distances(X)
        flags = flags & (distance >= QC_MIN_DISTANCE_RATIO * np.median(distance))
        rule = (f"among the {len(ids)} pooled QC runs only: {rule}, and its distance is at least "
                f"{QC_MIN_DISTANCE_RATIO:g} times the QCs' median distance")
    elif what == "qc":
        rule = f"among the {len(ids)} pooled QC run(s) only: {rule}"
    if centred:
        rule += "; each batch's runs centred on the batch's median log intensities first (a batch offset is no outlier)"
    if X.size:
        rule += RUN_CENTRED_RULE
    return z, flags, rule


def complete_log_matrix(feature_matrix: pl.DataFrame, ids: list[str], batches: list[str] | None = None
                        ) -> np.ndarray | None:
    """Runs x features log intensities of the features every one of ``ids`` detected (``log_feature_matrix``), each
    run's median removed (``run_centred``) and, with ``batches``, each batch centred (``batch_centred``); None when
    fewer than ``MIN_COMPLETE_FEATURES`` are detected in all. The matrix the replicate and hidden-structure checks
    read (``modelling.replicates``, ``modelling.structure``)."""
    X = log_feature_matrix(feature_matrix, ids, min_detected_fraction=1.0)
    if X.shape[1] < MIN_COMPLETE_FEATURES:
        return None
    X = run_centred(X)
    return batch_centred(X, batches)[0] if batches is not None else X


def _distances(X: np.ndarray) -> np.ndarray:
    """The PCA distances of ``outlier_scores`` (same centring and components)."""
    n = X.shape[0]
    k = int(min(MAX_COMPONENTS, n - 1, X.shape[1]))
    u, s, _ = np.linalg.svd(X - np.median(X, axis=0), full_matrices=False)
    scores = u[:, :k] * s[:k]
    return np.linalg.norm(scores - np.median(scores, axis=0), axis=1)


def carryover_note(n_features: int | None, sample_median: float | None) -> str | None:
    """The note for a blank run with many features (possible carry-over from the run injected before it), or None.

    A blank is noted when it has at least ``CARRYOVER_SHARE`` of the study samples' median feature count: a
    solvent blank should hold little besides background ions, so half a study sample's features means sample
    material reached it (a heuristic threshold of this pipeline, not from a paper). None without counts."""
    if n_features is None or sample_median is None or not np.isfinite(sample_median) or sample_median <= 0:
        return None
    share = n_features / sample_median
    if share < CARRYOVER_SHARE:
        return None
    return (f"possible carry-over: {n_features} features, {share:.0%} of the study samples' median "
            f"({sample_median:g}); check the injection before it and the wash")


REFERENCE_NOTE = "the alignment's reference run: the other runs' retention times are aligned onto it"


def reference_run(path: str | Path | None) -> str | None:
    """The sample id of the alignment's reference run: the QC table's (``qc.parquet``) row whose ``run_note`` holds
    ``REFERENCE_NOTE``; None without the table, the column or such a row (for the report's Methods draft)."""
    if path is None or not Path(path).exists():
        return None
    try:
        table = pl.read_parquet(path, columns=["sample_id", "run_note"])
    except (OSError, pl.exceptions.PolarsError):
        return None
    hit = table.filter(pl.col("run_note").fill_null("").str.contains(REFERENCE_NOTE, literal=True))
    return str(hit["sample_id"][0]) if hit.height else None


def _span_s(run: dict[str, Any]) -> float | None:
    """A run's retention-time span in seconds (last minus first scan, from its spectra metadata), None if unknown."""
    start, end = run.get("rt_start_s"), run.get("rt_end_s")
    return None if start is None or end is None else float(end) - float(start)


def qc_table(samples: pl.DataFrame, runs: dict[str, dict[str, Any]], alignment: pl.DataFrame | None,
             feature_matrix: pl.DataFrame | None, source: str = "samples.tsv") -> pl.DataFrame:
    """One ``QC`` row per sheet row, in sheet order, with each run's type, batch and injection order.

    ``samples``: the sample sheet (text cells; its optional sample_type, injection_order and batch columns are
    read with ``io.samplesheet.sample_roles``, which raises InputError naming ``source`` for a bad cell; without
    them every run is a study sample in batch "1"). ``runs``: per sample id, the values gathered from its tables
    (keys of ``QC`` from n_ms1_scans to n_accepted, and rt_start_s to tolerance_note; absent keys are null; the RT
    ranges also feed ``alignment_notes``). ``alignment``: the link stage's table (sample_id, rt_shift_median_s), or
    None. ``feature_matrix``: consensus features × runs, for the outlier rule
    (None: no outlier test). Study samples are scored among study samples, pooled QCs among QCs
    (``group_outliers``); blanks are never outliers (they hold few features by design) but one with many features
    gets a carry-over note (``carryover_note``)."""
    roles = sample_roles(samples, source)
    ids = roles["sample_id"].cast(pl.Utf8).to_list()
    types, batches = roles["sample_type"].to_list(), roles["batch"].to_list()
    shift, residual = {}, {}
    if alignment is not None and {"sample_id", "rt_shift_median_s"} <= set(alignment.columns):
        shift = dict(zip(alignment["sample_id"].cast(pl.Utf8).to_list(), alignment["rt_shift_median_s"].to_list()))
    offsets = ({r["sample_id"]: (r["mz_offset_ppm"], r["mz_recalibrated"]) for r in alignment.iter_rows(named=True)}
               if alignment is not None and {"mz_offset_ppm", "mz_recalibrated"} <= set(alignment.columns) else {})
    if alignment is not None and "rt_residual_median_abs_s" in alignment.columns:  # older alignment tables lack it
        residual = dict(zip(alignment["sample_id"].cast(pl.Utf8).to_list(),
                            alignment["rt_residual_median_abs_s"].to_list()))
    score: dict[str, float | None] = {s: None for s in ids}
    flag = {s: False for s in ids}
    rules_failed: dict[str, str] = {}
    short_runs: set[str] = set()  # failed by their feature count, but a shorter acquisition (short_run_clause)
    rules = {"sample": "not tested: no feature matrix", "qc": "not tested: no feature matrix",
             "blank": BLANK_RULE}
    for kind in ("sample", "qc"):
        members = [i for i, t in enumerate(types) if t == kind]
        if feature_matrix is None or not members:
            continue
        # a run with a small part of its type's features (a failed injection, an MS1-only excerpt) is an outlier by
        # that alone, and is left out of the others' scoring: it would empty the set of features detected in every
        # run and change every other run's score (a trial: a 26-feature run among runs of ~2,400 scored -1.92, the
        # most typical, and every other score moved)
        detected = runchecks.detected_counts(feature_matrix, [ids[i] for i in members])  # as the tests and models count
        counts = {i: detected[ids[i]] for i in members}
        failed, median = runchecks.failed_runs(counts)
        spans = {i: _span_s(runs.get(ids[i], {})) for i in members}
        for i in failed:
            flag[ids[i]] = True
            share = runchecks.FAILED_RUN_SHARE
            clause = runchecks.short_run_clause(spans[i], list(spans.values()))
            short_runs |= {ids[i]} if clause else set()
            rules_failed[ids[i]] = (f"far fewer consensus features than the other runs of its type ({counts[i]} "
                                    f"against a median of {median:.0f}; under {share:.0%}): a failed or different "
                                    "run, left out of the other runs' scoring"
                                    + (", the tests and the models" if kind == "sample" else "") + clause)
        members = [i for i in members if i not in failed]
        if not members:
            continue
        z, flags, rules[kind] = group_outliers(feature_matrix, [ids[i] for i in members],
                                               [batches[i] for i in members], kind)
        for i, value, f in zip(members, z, flags):
            score[ids[i]] = None if not np.isfinite(value) else float(value)
            flag[ids[i]] = bool(f)
    counts = [runs.get(s, {}).get("n_features") for s, t in zip(ids, types) if t == "sample"]
    counts = [c for c in counts if c is not None]
    sample_median = float(np.median(counts)) if counts else None
    rows = []
    ranges = {s: (float(r["rt_start_s"]), float(r["rt_end_s"])) for s, r in runs.items()
              if r.get("rt_start_s") is not None and r.get("rt_end_s") is not None}
    apart = alignment_notes(alignment, ranges)
    # a run cut short: what the tests and models do with it, judged as they judge it: against the typical range of
    # the runs they keep (trial AS: a failed 1-scan run set the range, and three usable runs were said left out)
    usable = {s: r for s, r in ranges.items() if s not in rules_failed and runs.get(s, {}).get("n_features") != 0}
    typical, _ = rt_coverage(usable)
    coverage = {s: rt_overlap(typical, r)[1] for s, r in ranges.items()} if typical is not None else {}
    for s, share in coverage.items():
        cut = coverage_note(ranges[s], share, typical)
        if cut:
            apart[s] = f"{apart[s]}; {cut}" if s in apart else cut
    # the reference named in the report (a second trial: the link stage's switch to another run, when the sheet's
    # first sample had too few features, showed only in its log)
    reference = (set(alignment.filter(pl.col("model") == "reference")["sample_id"].cast(pl.Utf8).to_list())
                 if alignment is not None and {"sample_id", "model"} <= set(alignment.columns) else set())
    for s, kind, batch, order in zip(ids, types, batches, roles["injection_order"].to_list()):
        run = runs.get(s, {})
        n_ms2, mapped = run.get("n_ms2_scans"), run.get("n_ms2_mapped")
        note = None
        if kind == "blank":
            note = carryover_note(run.get("n_features"), sample_median)
        elif kind == "qc" and flag[s]:
            note = "pooled QC apart from the other QCs: check this injection (autosampler, needle, spray)"
        if kind == "sample" and s in rules_failed:
            short = s in short_runs
            # a short run's note on its retention-time range (``apart``) already says it is left out
            note = (None if short and s in apart
                    else f"{'short' if short else 'failed'} run: left out of the tests and models")
        if kind != "blank" and s in apart:
            note = apart[s] if note is None else f"{note}; {apart[s]}"
        if s in reference:
            note = REFERENCE_NOTE if note is None else f"{note}; {REFERENCE_NOTE}"
        rows.append({
            **{c: run.get(c) for c in ("n_ms1_scans", "n_ms2_scans", "n_ms2_mapped", "n_features", "tic_total",
                                       "precursor_error_median_ppm", "n_accepted", "rt_start_s", "rt_end_s",
                                       "instrument", "mass_analyzers", "tolerance_note", "ms1_centroiding",
                                       "precursor_recalibration_ppm", "peak_fwhm_median_s")},
            "sample_id": s, "sample_type": kind, "batch": batch, "injection_order": order,
            "share_ms2_mapped": (mapped / n_ms2) if n_ms2 and mapped is not None else None,
            "rt_shift_median_s": shift.get(s, run.get("rt_shift_median_s")),
            "rt_residual_median_abs_s": residual.get(s),
            "outlier": flag[s], "outlier_score": score[s], "outlier_rule": rules_failed.get(s, rules[kind]),
            "run_note": note, "mz_offset_ppm": offsets.get(s, (None, None))[0],
            "mz_recalibrated": offsets.get(s, (None, None))[1],
        })
    return pl.DataFrame(rows, schema=QC)
