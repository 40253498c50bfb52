"""A name whose consensus feature's m/z lies away from the named ion's: the feature may hold more than that ion.

MS/MS scans are mapped to a feature when their precursor m/z lies within ``spectra: mz_tolerance_ppm`` of the
feature's m/z or of its m/z bounds (``stages.spectra``), so a feature whose mass trace also took in another ion (a
neighbour's isotope peak a few mDa away, merged by the feature finder) still receives the named compound's scans and
is named, while its m/z, an intensity-weighted mean over the trace, is pulled away, and its intensities (what the
tests and models use) are partly the other ion's. A trial on a SCIEX TripleTOF study: a right name on a feature 32 ppm
from the named ion, its quantity wrong, unflagged. The check compares the feature's m/z error against the library
ion (``feature_mz_error_ppm``) with its own MS/MS precursors' (``precursor_error_ppm``, the median over the
supporting spectra): the instrument's calibration offset moves both alike, a merged ion moves the feature alone. A
difference beyond the mapping tolerance is marked (``feature_mz_note``); the name is kept (the spectra matched).

A second check reads the mass itself: an accepted name whose feature and MS/MS precursors both lie far from the named
ion while the study's other accepted names lie close (``with_mass_outlier_note``; trial AM: Tiamulin at +5.8 ppm, the
other 22 names within 1.8 ppm, "another structure of the formula is as likely" said of it while the formula itself
was in doubt) gets a clause in its ``evidence_note``: a compound of nearly the same mass may fit better.
Imports numpy and polars.
"""

from __future__ import annotations

import logging

import numpy as np
import polars as pl

log = logging.getLogger(__name__)

DEFAULT_TOLERANCE_PPM = 10.0  # spectra: mz_tolerance_ppm's default
# the mass outlier: at least this many accepted names set the study's scale; a name is marked when its feature's m/z
# error is beyond OUTLIER_SDS robust sds (1.4826 x MAD) of their median and OUTLIER_MIN_PPM from it, its precursors'
# error OUTLIER_MIN_PPM from theirs on the same side
OUTLIER_MIN_NAMES, OUTLIER_SDS, OUTLIER_MIN_PPM = 10, 4.0, 3.0
MASS_APART = "apart from the study's other accepted names"  # in the clause; the report counts the names marked so


def with_feature_mz_check(out: pl.DataFrame, tolerance_ppm: float = DEFAULT_TOLERANCE_PPM) -> pl.DataFrame:
    """``out`` (identifications being built, with ``mz``, ``precursor_error_ppm``, ``accepted`` and ``_lib_mz``, the
    best supporting spectrum's library precursor m/z) with ``feature_mz_error_ppm`` ((feature m/z - library ion
    m/z) / library ion m/z x 1e6; null where either is unknown) and ``feature_mz_note`` (Utf8): on an accepted name
    whose feature's error differs from its MS/MS precursors' by more than ``tolerance_ppm``, e.g. "the feature's m/z
    is 32.1 ppm from the named ion's, its MS/MS precursors 1.2 ppm: the feature may merge another ion (a
    neighbour's isotope), so its intensities may not be this compound's alone"; null elsewhere. With a
    ``_study_error`` column (the precursors' median error less their runs' m/z offsets, which the link stage removed
    from the consensus m/z) that is what the feature's error is compared with (a trial: a right name whose only
    spectrum came from a run 10.6 ppm off was marked)."""
    error = ((pl.col("mz") - pl.col("_lib_mz")) / pl.col("_lib_mz") * 1e6)
    out = out.with_columns(error.alias("feature_mz_error_ppm"))
    ms2 = (pl.coalesce(pl.col("_study_error"), pl.col("precursor_error_ppm")) if "_study_error" in out.columns
           else pl.col("precursor_error_ppm")).fill_null(0.0)
    shift = (pl.col("feature_mz_error_ppm") - ms2).abs()
    note = pl.format("the feature's m/z is {} ppm from the named ion's, its MS/MS precursors {} ppm (more than "
                     "{} ppm apart): the feature may merge another ion (a neighbour's isotope peak), so its "
                     "intensities may not be this compound's alone",
                     pl.col("feature_mz_error_ppm").round(1), ms2.round(1), pl.lit(f"{tolerance_ppm:g}"))
    return out.with_columns(
        pl.when(pl.col("accepted").fill_null(False) & (shift > tolerance_ppm).fill_null(False)).then(note)
        .otherwise(None).cast(pl.Utf8).alias("feature_mz_note"))


def shifted_sentence(out: pl.DataFrame) -> str | None:
    """The identify log's sentence on the names ``with_feature_mz_check`` marked (None when none): how many and the
    first five with their feature's and precursors' errors."""
    if "feature_mz_note" not in out.columns:
        return None
    marked = out.filter(pl.col("feature_mz_note").is_not_null())
    if marked.is_empty():
        return None
    shown = "; ".join(f"{r['name']} ({r['consensus_id']}: feature {r['feature_mz_error_ppm']:+.1f} ppm, MS/MS "
                      f"{(r['precursor_error_ppm'] or 0.0):+.1f} ppm)" for r in marked.head(5).iter_rows(named=True))
    more = f" and {marked.height - 5} more" if marked.height > 5 else ""
    return (f"{marked.height} accepted name(s) sit on a feature whose m/z lies farther from the named ion than its "
            f"own MS/MS precursors do (beyond the mapping tolerance): {shown}{more}. The feature may merge another "
            "ion; its intensities may not be this compound's alone (identifications.parquet: feature_mz_note)")


def with_mass_outlier_note(out: pl.DataFrame) -> pl.DataFrame:
    """``out`` (identifications being built: ``accepted``, ``feature_mz_error_ppm`` from ``with_feature_mz_check``,
    ``precursor_error_ppm``, ``evidence_note``, optionally ``_study_error``, the precursors' error less their runs'
    m/z offsets) with a clause added to the ``evidence_note`` ("; " after any note there) of each accepted name whose
    mass stands apart from the study's other accepted names: its feature's m/z error lies more than ``OUTLIER_SDS``
    robust sds (1.4826 x the median absolute deviation) and ``OUTLIER_MIN_PPM`` from the median of the accepted
    names' and its MS/MS precursors' error more than ``OUTLIER_MIN_PPM`` from theirs on the same side, e.g. "its
    feature and MS/MS precursors lie +7.6 and +5.8 ppm from the named ion, apart from the study's other accepted
    names (feature median +0.2 ppm, robust sd 0.2 ppm): a compound of nearly the same mass may fit better". Both
    must agree: the feature's m/z, averaged over its trace and runs, is the precise one (on a realistic simulated
    study single precursors of right names lay 3-4 ppm off while their features lay within 0.6 ppm), and a feature
    moved alone is ``feature_mz_note``'s merged ion. With fewer than ``OUTLIER_MIN_NAMES`` accepted names with both
    errors ``out`` is returned unchanged (no scale to judge by). The name stays accepted."""
    precursor = (pl.coalesce(pl.col("_study_error"), pl.col("precursor_error_ppm")) if "_study_error" in out.columns
                 else pl.col("precursor_error_ppm"))
    names = out.filter(pl.col("accepted").fill_null(False)).select(
        pl.col("feature_mz_error_ppm").alias("f"), precursor.alias("p")).drop_nulls().drop_nans()
    if names.height < OUTLIER_MIN_NAMES:
        if names.height:  # trial AN: a study of one name had no word that the check was not made
            log.info("mass-outlier check not made: %d accepted name(s) with feature and precursor m/z errors, %d "
                     "needed to judge what is apart", names.height, OUTLIER_MIN_NAMES)
        return out
    f, p = names["f"].to_numpy(), names["p"].to_numpy()
    f_centre, p_centre = float(np.median(f)), float(np.median(p))
    spread = 1.4826 * float(np.median(np.abs(f - f_centre)))
    limit = max(OUTLIER_SDS * spread, OUTLIER_MIN_PPM)
    f_off, p_off = pl.col("feature_mz_error_ppm") - f_centre, precursor - p_centre
    far = (pl.col("accepted").fill_null(False) & (f_off.abs() > limit) & (p_off.abs() > OUTLIER_MIN_PPM)
           & (f_off * p_off > 0)).fill_null(False)

    def signed(e: pl.Expr) -> pl.Expr:
        return pl.when(e >= 0).then(pl.lit("+")).otherwise(pl.lit("")) + e.round(1).cast(pl.Utf8)

    clause = pl.format(f"its feature and MS/MS precursors lie {{}} and {{}} ppm from the named ion, {MASS_APART} "
                       "(feature median {} ppm, robust sd {} ppm): a compound of nearly the same mass may fit better",
                       signed(pl.col("feature_mz_error_ppm")), signed(precursor),
                       pl.lit(f"{f_centre:+.1f}"), pl.lit(f"{spread:.1f}"))
    return out.with_columns(
        pl.when(far).then(pl.concat_str(pl.col("evidence_note"), clause, separator="; ", ignore_nulls=True))
        .otherwise(pl.col("evidence_note")).alias("evidence_note"))
