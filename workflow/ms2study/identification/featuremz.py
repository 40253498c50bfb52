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
Imports only polars.
"""

from __future__ import annotations

import polars as pl

DEFAULT_TOLERANCE_PPM = 10.0  # spectra: mz_tolerance_ppm's default


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
