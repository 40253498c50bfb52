"""Blank filtering: consensus features that are not clearly above the solvent / process blanks.

A feature seen in the blanks at a level close to its level in the samples is a contaminant or carry-over (solvent,
plasticisers, column bleed), not biology. As in MZmine's blank subtraction (a minimum fold change of the samples over
the blanks) and the use of extraction blanks discussed by Broadhurst et al. 2018 (Metabolomics 14:72), a feature is
flagged when

    blank_ratio = mean over the sample runs / blank statistic  <  threshold (config correct.blank_ratio, default 3)

with the blank statistic the mean or the maximum (correct.blank_statistic) over the blank runs. Choices:
- A run where the feature is absent (null) does not count, in the samples' mean and in the blanks' statistic alike
  (absent is not zero: a missed detection says nothing about the level).
- A feature never seen in any blank has blank statistic 0: blank_ratio +inf, never flagged.
- A feature seen in blanks but in no sample run has sample mean 0: blank_ratio 0, always flagged.
- Without blank runs blank_ratio is null (NaN here) and nothing is flagged.
QC runs take no part. Flags only: the feature stays in the corrected matrix (``excluded`` tells models to skip it).
"""

from __future__ import annotations

import warnings

import numpy as np

STATISTICS = ("mean", "max")


def blank_ratio(values: np.ndarray, is_sample: np.ndarray, is_blank: np.ndarray,
                statistic: str = "mean") -> np.ndarray:
    """Per feature, the mean over the sample runs divided by the blank statistic (see the module docstring).

    ``values``: (n_features, n_runs), NaN where absent; ``is_sample`` / ``is_blank``: bool per run. Returns shape
    (n_features,): +inf for a feature in no blank, 0 for one in blanks but no sample, NaN when there is no blank run
    or the feature is in neither. Raises ``ValueError`` for a statistic not in ``STATISTICS``.
    """
    if statistic not in STATISTICS:
        raise ValueError(f"blank statistic '{statistic}' is not one of {STATISTICS}")
    values = np.asarray(values, dtype=np.float64)
    n = values.shape[0]
    if not np.any(is_blank):
        return np.full(n, np.nan)
    blanks = values[:, np.asarray(is_blank, dtype=bool)]
    samples = values[:, np.asarray(is_sample, dtype=bool)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows
        blank_stat = np.nanmean(blanks, axis=1) if statistic == "mean" else np.nanmax(blanks, axis=1)
        sample_mean = np.nanmean(samples, axis=1) if samples.shape[1] else np.full(n, np.nan)
    blank_stat = np.where(np.isfinite(blank_stat), blank_stat, 0.0)
    sample_mean = np.where(np.isfinite(sample_mean), sample_mean, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = sample_mean / blank_stat  # x/0 -> inf, 0/0 -> nan
    return ratio


def blank_flags(ratio: np.ndarray, threshold: float) -> np.ndarray:
    """True where ``blank_ratio`` is below ``threshold`` (NaN, i.e. no blanks or no signal anywhere: False)."""
    ratio = np.asarray(ratio, dtype=np.float64)
    return np.isfinite(ratio) & (ratio < threshold)
