"""Blank filtering: consensus features that are not clearly above the solvent / process blanks.

A feature seen in the blanks at a level close to its level in the samples is a contaminant or carry-over (solvent,
plasticisers, column bleed), not biology. A feature is flagged when

    blank_ratio = sample mean / blank statistic  <  threshold (config correct.blank_ratio, default 3)

The rule follows MS-DIAL's blank filter (MsdialWorkbench, ``AlignmentRefiner.FilterByBlank``, parameter "Sample max /
blank average", default fold change 5): the blank average there is the sum of the blanks' peak heights divided by the
number of blank files, so a blank without the feature counts as 0. Here:
- Blank side: the intensities DETECTED in the blank runs (the feature matrix before gap filling); a blank where
  feature detection did not find the feature counts as 0, not as missing. The statistic (correct.blank_statistic)
  is the mean over all blank runs or their maximum. Unlike MS-DIAL, gap-filled blank cells do not count: a fill
  re-quantifies whatever lies at the consensus position, in a blank mostly a 3-4 scan noise trace (on a simulated
  3-batch study with 6 blanks, such fills flagged 82 real sample ions that no blank had detected).
  ``blank_detections`` counts the blanks that detected the feature (``n_blank_detected``, "detected in k of n
  blanks"; MZmine's feature list blank subtraction counts the same thing for its "Minimum # of detection in blanks").
- Sample side: the mean over the sample runs that hold a value (detected or gap-filled); a sample without one does
  not count. Kept as it was: the question is how high the ion is where the samples have it, and counting absent
  samples as 0 would dilute an ion confined to one outcome group toward the blank level (MS-DIAL's default, too,
  compares the sample maximum, not an average over all samples). A sample's gap-filled value is the value the study
  uses downstream, and, re-quantified where detection failed, it typically lowers the sample mean: a stricter flag.
- A feature detected in no blank has blank statistic 0: blank_ratio +inf, never flagged.
- A feature detected in blanks but with no sample value has sample mean 0: blank_ratio 0, always flagged.
- A feature with neither has blank_ratio NaN (null), not flagged; without blank runs blank_ratio is NaN for all.
- An isotope peak that the adduct grouping places under a flagged ion of its compound group is flagged with it
  (``isotopes_of_flagged``): at a fraction of the contaminant's intensity it is often not detected in the blanks.
QC runs take no part. Flags only: the feature stays in the corrected matrix (``excluded`` tells models to skip it).
"""

from __future__ import annotations

import re
import warnings

import numpy as np

STATISTICS = ("mean", "max")


def _blank_columns(detected: np.ndarray, is_blank: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The blank columns of ``detected`` with undetected cells (NaN or <= 0) as 0, and the mask of detected cells."""
    blanks = np.asarray(detected, dtype=np.float64)[:, np.asarray(is_blank, dtype=bool)]
    found = np.isfinite(blanks) & (blanks > 0)
    return np.where(found, blanks, 0.0), found


def blank_detections(detected: np.ndarray, is_blank: np.ndarray) -> np.ndarray:
    """Per feature, the number of blank runs in which feature detection found it (``detected``: features x runs
    before gap filling, NaN where not detected; ``is_blank``: bool per run). Shape (n_features,), int."""
    return _blank_columns(detected, is_blank)[1].sum(axis=1)


def blank_ratio(values: np.ndarray, detected: np.ndarray, is_sample: np.ndarray, is_blank: np.ndarray,
                statistic: str = "mean") -> np.ndarray:
    """Per feature, the sample mean over the blank statistic (see the module docstring for the rule).

    ``values``: (n_features, n_runs) as the study uses them (gap-filled cells included), NaN where absent; the
    sample side reads it. ``detected``: the same shape before gap filling; the blank side reads only it, an
    undetected blank counting 0. ``is_sample`` / ``is_blank``: bool per run. Returns shape (n_features,): +inf for
    a feature detected in no blank, 0 for one detected in blanks but without a sample value, NaN when there is no
    blank run or the feature has neither. Raises ``ValueError`` for a statistic not in ``STATISTICS`` or for
    ``values`` and ``detected`` of different shapes.
    """
    if statistic not in STATISTICS:
        raise ValueError(f"blank statistic '{statistic}' is not one of {STATISTICS}")
    values = np.asarray(values, dtype=np.float64)
    if np.shape(detected) != values.shape:
        raise ValueError(f"detected values of shape {np.shape(detected)} do not match values of shape {values.shape}")
    n = values.shape[0]
    if not np.any(is_blank):
        return np.full(n, np.nan)
    blanks, _ = _blank_columns(detected, is_blank)
    blank_stat = blanks.mean(axis=1) if statistic == "mean" else blanks.max(axis=1)
    samples = values[:, np.asarray(is_sample, dtype=bool)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows
        sample_mean = np.nanmean(samples, axis=1) if samples.shape[1] else np.full(n, np.nan)
    sample_mean = np.where(np.isfinite(sample_mean), sample_mean, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = sample_mean / blank_stat  # x/0 -> inf, 0/0 -> nan
    return ratio


def blank_flags(ratio: np.ndarray, threshold: float) -> np.ndarray:
    """True where ``blank_ratio`` is below ``threshold`` (NaN, i.e. no blanks or no signal anywhere: False)."""
    ratio = np.asarray(ratio, dtype=np.float64)
    return np.isfinite(ratio) & (ratio < threshold)


# an isotope label of the adduct grouping: "M+1", "[M+H]+ M+1", "[M+Na]+ 34S/30Si M+2", "37Cl M+2"; what precedes
# the isotope part names the ion it belongs to (empty: the group's unlabelled feature)
_ISOTOPE_LABEL = re.compile(r"^(?P<ion>.*?)\s*(?:\d+[A-Z][a-z]?(?:/\d+[A-Z][a-z]?)*\s+)?M\+\d+$")


def isotopes_of_flagged(compound_group: list, adduct: list, blank_flag: list) -> np.ndarray:
    """Per feature (three lists in one order, as the corrected matrix's columns): whether it is an isotope peak
    (``adduct`` an isotope label) of a feature of its ``compound_group`` that the blank filter flagged, its
    monoisotopic ion (the label's ion part; no part: the group's unlabelled feature). A contaminant's isotope is the
    contaminant, but at a fraction of its intensity it falls below detection in the blanks, whose mean then counts 0
    and the isotope's own ratio passes (trial F: five contaminant M+1 features, two grouped with their flagged
    monoisotopic ion, stayed in the tests). Shape (n,) boolean."""
    flagged_ions = {(g, a) for g, a, f in zip(compound_group, adduct, blank_flag) if f and g is not None}
    out = np.zeros(len(compound_group), dtype=bool)
    for i, (g, a, f) in enumerate(zip(compound_group, adduct, blank_flag)):
        match = _ISOTOPE_LABEL.match(a) if (a and g is not None and not f) else None
        if match:
            out[i] = (g, match.group("ion") or None) in flagged_ions
    return out
