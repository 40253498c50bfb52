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

Peak width. An apex is located to a fraction of its peak's width (its jitter grows with the FWHM at a given signal to
noise), so a broad peak (a contaminant eluting over 20 s, a tailing acid) wanders more in seconds than a sharp one
without being a mixture: a fresh user's study flagged such broad single peaks. Where ``feature_links.parquet`` carries
``peak_width_s`` (each sample feature's FWHM), a feature is flagged only when its spread is also above ``ratio`` times
the study median of spread / median peak width: two unresolved ions move the apex by a sizeable share of the width
(the ions of ``tests/test_rt_spread.py`` 2 peak sd or more apart move it by 0.1-0.3 FWHM), jitter by a small one.
This applies to peaks more than ``BROAD_WIDTH_RATIO`` times as wide as the study's median only: two unresolved ions
also widen their merged peak, and judging every peak per second of its width withdrew true flags on a realistic
simulated study (``benchmarks/study_truth.py`` seed 11, session 30: recall 0.56 -> 0.45 with the same precision).
"""

from __future__ import annotations

import numpy as np
import polars as pl

# the least median spread the threshold is built on (s): about a tenth of a scan cycle of 1 s; a study whose apexes
# fall on whole scans can have a median spread of 0, and any movement would then be flagged
MIN_MEDIAN_S = 0.1
# a peak wider than this many times the study's median peak width (FWHM) is judged against its width too: two ions
# unresolved by the column (the flag's target) lie within about a peak width, so their merged peak is at most about
# twice as wide as one; background ions and contaminants eluting over 14-20 s beside 3.5 s peaks were flagged
BROAD_WIDTH_RATIO = 2.0


def rt_spread(links: pl.DataFrame, consensus_ids: list[str], samples: list[str], min_samples: int = 5) -> np.ndarray:
    """Per consensus feature (in ``consensus_ids`` order) the sd (ddof 1, seconds) of ``rt_aligned_s`` over the
    ``samples`` where ``links`` (``feature_links.parquet`` rows: consensus_id, sample_id, rt_aligned_s) places it
    (where a sample holds several pieces of it, ``link: merge_split``, the piece nearest the feature's median apex);
    NaN with fewer than ``min_samples`` (>= 2) of them. Shape (len(consensus_ids),). Raises ``ValueError`` when
    ``links`` lacks a column or ``min_samples`` is below 2."""
    missing = {"consensus_id", "sample_id", "rt_aligned_s"} - set(links.columns)
    if missing:
        raise ValueError(f"feature links lack column(s) {', '.join(sorted(missing))}")
    if min_samples < 2:
        raise ValueError(f"min_samples must be at least 2, got {min_samples}")
    rows = links.filter(pl.col("sample_id").is_in(samples) & pl.col("rt_aligned_s").is_finite())
    # merged pieces of one sample (link: merge_split): the piece nearest the feature's median apex over all pieces
    # stands for the sample (a trial: the mean with a small tail piece 15 s off moved one sample's apex by 7 s and
    # flagged a single compound as two co-eluting ions); sorted so that the sums run in one order (the same file
    # twice gave sds 5e-14 apart)
    spread = (rows.with_columns((pl.col("rt_aligned_s") - pl.col("rt_aligned_s").median().over("consensus_id"))
                                .abs().alias("_off"))
              .sort("consensus_id", "sample_id", "_off", "rt_aligned_s")
              .group_by("consensus_id", "sample_id", maintain_order=True).agg(pl.col("rt_aligned_s").first())
              .group_by("consensus_id", maintain_order=True)
              .agg(pl.col("rt_aligned_s").std(ddof=1).alias("sd"), pl.len().alias("n"))
              .filter(pl.col("n") >= min_samples))
    lookup = dict(zip(spread["consensus_id"].cast(pl.Utf8).to_list(), spread["sd"].to_list(), strict=True))
    return np.array([lookup.get(c, np.nan) for c in consensus_ids], dtype=np.float64)


def peak_width(links: pl.DataFrame, consensus_ids: list[str], samples: list[str]) -> np.ndarray:
    """Per consensus feature (in ``consensus_ids`` order) the median ``peak_width_s`` (seconds) of its sample features
    in ``samples``; NaN where none has a positive width or ``links`` has no ``peak_width_s`` column (links written
    before it was added). Shape (len(consensus_ids),)."""
    if "peak_width_s" not in links.columns:
        return np.full(len(consensus_ids), np.nan)
    width = (links.filter(pl.col("sample_id").is_in(samples) & (pl.col("peak_width_s") > 0))
             .group_by("consensus_id").agg(pl.col("peak_width_s").median()))
    lookup = dict(zip(width["consensus_id"].cast(pl.Utf8).to_list(), width["peak_width_s"].to_list(), strict=True))
    return np.array([lookup.get(c, np.nan) for c in consensus_ids], dtype=np.float64)


def rt_spread_flags(spread: np.ndarray, ratio: float, width: np.ndarray | None = None
                    ) -> tuple[list[bool | None], float | None, float | None]:
    """(flag per feature: True above ``ratio`` x the median of the finite ``spread`` values (the median taken as at
    least ``MIN_MEDIAN_S``), None where the spread is NaN (not judged); that median; the threshold in seconds).
    With ``width`` (per feature peak width in s, ``peak_width``; NaN where unknown) a feature wider than
    ``BROAD_WIDTH_RATIO`` x the median width must also have its spread / width above ``ratio`` x the median of that
    ratio over the features of known width (module docstring: a broad single peak wanders more in seconds); other
    features are judged in seconds only. ``ratio`` 0 turns the flag off
    (every judged feature False, threshold None). With no finite spread: every flag None and both numbers None.
    Raises ``ValueError`` when ``width`` is not of ``spread``'s shape."""
    finite = np.isfinite(spread)
    if not finite.any():
        return [None] * spread.size, None, None
    median = float(np.median(spread[finite]))
    # apexes quantised to whole scans can give a median of 0, which would flag any movement: never below the floor
    threshold = ratio * max(median, MIN_MEDIAN_S) if ratio > 0 else None
    above = finite & (spread > threshold) if threshold is not None else np.zeros(spread.shape, dtype=bool)
    if width is not None and threshold is not None:
        if width.shape != spread.shape:
            raise ValueError(f"width has shape {width.shape}, spread {spread.shape}")
        known = finite & np.isfinite(width) & (width > 0)
        if known.any():
            typical = float(np.median(width[known]))
            relative = np.divide(spread, width, out=np.full(spread.shape, np.nan), where=known)
            # the same floor, in units of the study's median width
            relative_threshold = ratio * max(float(np.median(relative[known])), MIN_MEDIAN_S / typical)
            # only broad peaks are judged per second of width: two unresolved ions widen their merged peak too, so
            # judging every peak so withdrew true flags (realistic study: recall 0.56 -> 0.45, precision unchanged)
            broad = known & (width > BROAD_WIDTH_RATIO * typical)
            above &= ~broad | (relative > relative_threshold)
    return [bool(a) if ok else None for a, ok in zip(above, finite, strict=True)], median, threshold
