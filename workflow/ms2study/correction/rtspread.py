"""How far a consensus feature's apex retention time wanders over the study samples (``correct`` stage): the RT
spread flag.

Why. A feature measures everything at its m/z and retention time. When two ions too close in m/z for the instrument
to resolve (isomers of one formula, or formulas a few ppm apart) co-elute within a peak width, detection reports one
peak whose height is their sum and whose apex lies between theirs, nearer the larger. Where the two vary
independently over the study samples, the feature's value follows neither compound, and its apex moves from sample to
sample towards whichever dominates. Pooled QCs are one material injected again and again: the mixture, and so the
apex, is the same in each, so no QC RSD can see this error. Measured on two realistic simulated batch studies of
``benchmarks/study_truth.py`` (seeds 11 and 23, session 20; measured/study_truth_session20*.json): of the 207 and 240
features whose true error after correction exceeded 0.3 (the RSD of corrected / true abundance of their compound over
the samples), 97 % and 88 % had another compound's ion within 20 ppm and 8 s (32 % of the other features), the QC RSD
flag caught 3 % of them, and the sd of the aligned apex RT over the samples ranked them above the rest with ROC AUC
0.89 and 0.85.

What. ``rt_spread``: per consensus feature the sample standard deviation (s) of its aligned apex RT
(``feature_links.parquet``'s ``rt_aligned_s``, the reference run's axis) over the study samples (``sample_type``
sample; QCs and blanks are left out: QCs repeat one mixture, blanks hold background) where detection found it;
null with fewer than ``min_samples`` such samples. ``rt_spread_flags``: a feature is flagged when its spread is
above ``ratio`` times the median spread of the judged features (the study's own apex jitter, which depends on the
instrument, the peak widths and the alignment, sets the scale; a fixed number of seconds would not carry from one
chromatography to another). Flagged features stay in the matrices, the models and the tests: their values are real
signal at that m/z and RT, but may not be one compound's, so a fold change or a name on them may belong to part of
the signal.
"""

from __future__ import annotations

import numpy as np
import polars as pl

# the least median spread the threshold is built on (s): about a tenth of a scan cycle of 1 s; a study whose apexes
# fall on whole scans can have a median spread of 0, and any movement would then be flagged
MIN_MEDIAN_S = 0.1


def rt_spread(links: pl.DataFrame, consensus_ids: list[str], samples: list[str], min_samples: int = 5) -> np.ndarray:
    """Per consensus feature (in ``consensus_ids`` order) the sd (ddof 1, seconds) of ``rt_aligned_s`` over the
    ``samples`` where ``links`` (``feature_links.parquet`` rows: consensus_id, sample_id, rt_aligned_s) places it
    (the mean where a sample holds several pieces of it, ``link: merge_split``);
    NaN with fewer than ``min_samples`` (>= 2) of them. Shape (len(consensus_ids),). Raises ``ValueError`` when
    ``links`` lacks a column or ``min_samples`` is below 2."""
    missing = {"consensus_id", "sample_id", "rt_aligned_s"} - set(links.columns)
    if missing:
        raise ValueError(f"feature links lack column(s) {', '.join(sorted(missing))}")
    if min_samples < 2:
        raise ValueError(f"min_samples must be at least 2, got {min_samples}")
    spread = (links.filter(pl.col("sample_id").is_in(samples) & pl.col("rt_aligned_s").is_finite())
              .group_by("consensus_id", "sample_id").agg(pl.col("rt_aligned_s").mean())  # merged pieces: one apex
              .group_by("consensus_id").agg(pl.col("rt_aligned_s").std(ddof=1).alias("sd"), pl.len().alias("n"))
              .filter(pl.col("n") >= min_samples))
    lookup = dict(zip(spread["consensus_id"].cast(pl.Utf8).to_list(), spread["sd"].to_list(), strict=True))
    return np.array([lookup.get(c, np.nan) for c in consensus_ids], dtype=np.float64)


def rt_spread_flags(spread: np.ndarray, ratio: float) -> tuple[list[bool | None], float | None, float | None]:
    """(flag per feature: True above ``ratio`` x the median of the finite ``spread`` values (the median taken as at
    least ``MIN_MEDIAN_S``), None where the spread is NaN (not judged); that median; the threshold in seconds).
    ``ratio`` 0 turns the flag off (every judged feature False, threshold None). With no finite spread: every flag
    None and both numbers None."""
    finite = np.isfinite(spread)
    if not finite.any():
        return [None] * spread.size, None, None
    median = float(np.median(spread[finite]))
    # apexes quantised to whole scans can give a median of 0, which would flag any movement: never below the floor
    threshold = ratio * max(median, MIN_MEDIAN_S) if ratio > 0 else None
    above = finite & (spread > threshold) if threshold is not None else np.zeros(spread.shape, dtype=bool)
    return [bool(a) if ok else None for a, ok in zip(above, finite, strict=True)], median, threshold
