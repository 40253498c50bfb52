"""Column schemas of the Parquet tables the stages exchange (the contract between stages), and their reader.

Every stage writes exactly these columns first (more columns may follow) so a later stage,
a test or a user's notebook can rely on names and types. ``conform`` casts and orders a frame;
``read_table`` reads one with the schema check and an error that names the file, the sample and the fix.
This module may import only ``ms2study.core.errors`` (and polars).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import polars as pl

from ms2study.core.errors import InputError

# results/samples/{s}/features.parquet: one row per detected LC-MS feature (FeatureFindingMetabo).
FEATURES: dict[str, pl.DataType] = {
    "feature_id": pl.Utf8,        # "{sample_id}:F{n}", unique within the study
    "sample_id": pl.Utf8,
    "mz": pl.Float64,             # monoisotopic m/z (centroid of the first mass trace)
    "rt_s": pl.Float64,           # apex retention time, seconds
    "rt_start_s": pl.Float64,     # convex hull bounds over all traces
    "rt_end_s": pl.Float64,
    "mz_min": pl.Float64,         # hull bounds of the monoisotopic trace
    "mz_max": pl.Float64,
    "intensity": pl.Float64,      # feature area as reported by pyOpenMS
    "charge": pl.Int32,           # 0 when unknown
    "n_isotopes": pl.Int32,       # number of mass traces in the feature
    "quality": pl.Float64,
}

# results/samples/{s}/spectra.parquet: one row per MS2 scan (mapped or not).
SPECTRA: dict[str, pl.DataType] = {
    "spectrum_id": pl.Utf8,       # "{sample_id}:S{scan_index}"
    "sample_id": pl.Utf8,
    "scan_index": pl.Int32,       # index of the scan in the mzML file
    "native_id": pl.Utf8,
    "rt_s": pl.Float64,
    "precursor_mz": pl.Float64,   # searched and mapped: the selected ion, or the isolation-window target when the
                                  #   selected ion lies outside its own window (converter fault); null when none
    "precursor_charge": pl.Int32,  # 0 when unknown
    "precursor_intensity": pl.Float64,
    "selected_ion_mz": pl.Float64,  # the selected-ion m/z as the file gives it (null without precursor)
    "precursor_corrected": pl.Boolean,  # True when precursor_mz is the window target, not the selected ion
    "ion_mode": pl.Utf8,          # "positive" / "negative" from the scan's polarity; null when the scan does not say
    "feature_id": pl.Utf8,        # null when the precursor fell in no feature hull (features carry no polarity)
    "mz": pl.List(pl.Float64),    # cleaned peaks, ascending m/z
    "intensity": pl.List(pl.Float32),
}

# results/samples/{s}/embeddings.parquet: one row per spectrum of spectra.parquet.
EMBEDDINGS: dict[str, pl.DataType] = {
    "spectrum_id": pl.Utf8,
    "sample_id": pl.Utf8,
    "feature_id": pl.Utf8,
    "embedding": pl.List(pl.Float32),  # L2-normalised, length = model dim
}

# results/samples/{s}/annotations.parquet: top-k library candidates per spectrum.
ANNOTATIONS: dict[str, pl.DataType] = {
    "spectrum_id": pl.Utf8,
    "sample_id": pl.Utf8,
    "feature_id": pl.Utf8,
    "rank": pl.Int32,             # 1 = best
    "library_id": pl.Utf8,
    "library_name": pl.Utf8,
    "library_inchikey": pl.Utf8,
    "library_smiles": pl.Utf8,
    "precursor_error_ppm": pl.Float64,
    "cosine": pl.Float64,
    "matched_peaks": pl.Int32,
}

# results/samples/{s}/sample_embedding.parquet: exactly one row.
SAMPLE_EMBEDDING: dict[str, pl.DataType] = {
    "sample_id": pl.Utf8,
    "n_spectra": pl.Int32,        # spectra that went into the pool
    "embedding": pl.List(pl.Float32),  # null when the sample has no MS/MS
}

# results/study/feature_matrix.parquet: consensus features x samples (wide), intensities null where absent.
FEATURE_MATRIX_KEYS: dict[str, pl.DataType] = {
    "consensus_id": pl.Utf8,      # "C{n}"
    "mz": pl.Float64,
    "rt_s": pl.Float64,           # on the reference run's time axis
    "n_detected": pl.Int32,
    # followed by one Float64 column per sample_id, in sample-sheet order
}


# results/study/gap_filled/{s}.parquet (rule gapfill): one row per consensus feature that is null in the sample's column
# of the feature matrix, re-quantified from the sample's own MS1 signal (correction.gapfill).
# results/samples/{sample}/ms1_scans.parquet: a run's centroided MS1 scans as the detect stage saw them (one row per
# scan), so that gap filling re-reads this compact table instead of parsing the run's mzML each time the study changes.
MS1_SCANS: dict[str, pl.DataType] = {
    "rt_s": pl.Float64,
    "mz": pl.List(pl.Float64),          # ascending
    "intensity": pl.List(pl.Float64),   # as read (float64, so gap filling from the table equals that from the mzML)
}

GAP_FILLED: dict[str, pl.DataType] = {
    "consensus_id": pl.Utf8,
    "sample_id": pl.Utf8,
    "intensity": pl.Float64,      # the filled value: apex height x the feature's area per height (correction.gapfill)
    "area": pl.Float64,           # the peak's area, quantified as detect quantifies a feature; null when no signal
    "height": pl.Float64,         # the peak's (smoothed) apex; null when no signal
    # rt_raw_s and n_scans are kept where the peak found was another consensus feature's (intensity null there)
    "rt_raw_s": pl.Float64,       # apex on the sample's own time axis; null when none
    "n_scans": pl.Int32,          # MS1 scans of the quantified peak; 0 when none
}

# What a feature's grouped adduct rests on (correction.adducts): the accepted pair behind its label, with the number
# of runs both were measured in and the one-sided test of their correlation (null: not tested, grouped on mass and
# retention time alone, which identification does not refuse a match on).
ADDUCT_EVIDENCE: dict[str, pl.DataType] = {
    "adduct_partner": pl.Utf8,        # consensus_id of the partner (an isotope peak: its monoisotopic feature)
    "adduct_n_runs": pl.Int32,        # runs where both were measured
    "adduct_correlation": pl.Float64,  # Pearson r of log intensities over those runs; null when not tested
    "adduct_p_value": pl.Float64,     # one-sided p of r > 0 (correction.covariation); null when not tested
}

# results/study/feature_matrix_corrected.parquet (rule correct): the key and flag columns, then one Float64 column per
# run of the sample sheet (samples, QCs and blanks, sheet order): gap-filled (correct.use_filled), internal-standard
# normalised and drift/batch-corrected intensities. Blank-flagged features stay in (flags only).
CORRECTED_MATRIX_KEYS: dict[str, pl.DataType] = {
    **FEATURE_MATRIX_KEYS,
    "blank_ratio": pl.Float64,    # sample mean / blank statistic of the blanks' detected values, undetected = 0
                                  # (correction.blank; inf: detected in no blank; null: no blank runs)
    "blank_flag": pl.Boolean,     # blank_ratio below correct.blank_ratio
    "n_blank_detected": pl.Int32, # blank runs in which feature detection found it (gap fills not counted)
    "qc_rsd_before": pl.Float64,  # sd/mean over the QC runs (fraction) before correction; null with < 2 QC values
    "qc_rsd_after": pl.Float64,   # the same after correction (in-sample: a QC-based fit was made through them)
    "qc_rsd_held_out": pl.Float64,  # the same of each QC corrected by the fit made without it (QC-RLSC only)
    "qc_rsd_predicted": pl.Float64,  # a QC run's RSD predicted at the samples' injections (QC-RLSC only; drift.qc_rlsc)
    "qc_rsd_flag": pl.Boolean,    # above correct.qc_rsd_max on correct.qc_rsd_basis; null: not judged (too few QCs)
    "qc_batches_without_value": pl.Int32,  # batches in which the QC-based fit had no QC value of it (the run's median
                                           # factor used there); null: no QC-based fit (drift.qc_rlsc)
    "qc_batches_few_values": pl.Int32,     # batches fitted by a simpler fit for too few QC values; null: likewise
    "n_filled": pl.Int32,         # cells of this row that hold a gap-filled value
    "rt_sd_s": pl.Float64,        # sd (s) of the aligned apex RT over the study samples detecting it (rtspread)
    "rt_sd_flag": pl.Boolean,     # rt_sd_s above correct.rt_sd_ratio x its study median (may sum co-eluting ions);
                                  # kept in models and tests; null: not judged (fewer than rt_sd_min_samples)
    "batch_only": pl.Utf8,        # the batch in which alone detection found it, beyond chance (correction.presence);
                                  # null: detected in several batches, too rarely to judge, or one batch in the study
    "compound_group": pl.Utf8,    # "G{n}"; a feature without partners is a group of its own
    "adduct": pl.Utf8,            # e.g. "[M+H]+", "[M+Na]+", "[M+H]+ M+1"; null when unknown
    "group_representative": pl.Boolean,  # one True per compound_group
    **ADDUCT_EVIDENCE,
    "excluded": pl.Boolean,       # blank_flag or qc_rsd_flag: left out of models and differential tests by default
}

def empty(schema: dict[str, pl.DataType]) -> pl.DataFrame:
    """An empty frame with the given schema."""
    return pl.DataFrame(schema=schema)


# Columns added to a contract after tables were first written: ``conform`` fills them with typed nulls when a
# frame lacks them (a spectra.parquet from an older run, a frame built by hand), meaning "not known".
ADDED_LATER: frozenset[str] = frozenset({"selected_ion_mz", "precursor_corrected", "ion_mode", "n_blank_detected",
                                         "area", "height", "qc_rsd_held_out", "qc_rsd_predicted",
                                         "qc_batches_without_value", "qc_batches_few_values",
                                         "rt_sd_s", "rt_sd_flag", "peak_width_s", "batch_only",
                                         *ADDUCT_EVIDENCE})


def conform(df: pl.DataFrame, schema: dict[str, pl.DataType]) -> pl.DataFrame:
    """Cast the schema's columns to their types and put them first; extra columns follow.

    Raises ``ValueError`` naming the columns the frame lacks (those of ``ADDED_LATER`` become nulls).
    """
    missing = [c for c in schema if c not in df.columns and c not in ADDED_LATER]
    if missing:
        raise ValueError(f"table lacks columns {missing}")
    head = [(pl.col(c) if c in df.columns else pl.lit(None)).cast(t).alias(c) for c, t in schema.items()]
    rest = [c for c in df.columns if c not in schema]
    return df.select(head + rest)


# Each contract's name and the ms2study command that writes it (named in read_table's errors).
_CONTRACTS: tuple[tuple[dict[str, pl.DataType], str, str], ...] = (
    (FEATURES, "features", "detect"),
    (SPECTRA, "spectra", "spectra"),
    (EMBEDDINGS, "embeddings", "embed"),
    (ANNOTATIONS, "annotations", "annotate"),
    (SAMPLE_EMBEDDING, "sample_embedding", "pool"),
    (FEATURE_MATRIX_KEYS, "feature_matrix", "link"),
    (MS1_SCANS, "ms1_scans", "detect"),
    (GAP_FILLED, "gap_filled", "gapfill"),
    (CORRECTED_MATRIX_KEYS, "feature_matrix_corrected", "correct"),
)


def read_table(
    path: str | os.PathLike,
    schema: dict[str, pl.DataType],
    sample: str | None = None,
    *,
    columns: Iterable[str] | None = None,
    only: bool = False,
) -> pl.DataFrame:
    """The Parquet table at ``path``, as written (no casting), after checking it holds the columns it must.

    ``schema`` is one of this module's contracts (e.g. ``FEATURES``); the columns required are ``columns`` when
    given, else all of the schema's, except those of ``ADDED_LATER`` (``conform`` fills those); with ``only``, just
    the ``columns`` are read (e.g. the matrix's keys and one run's column out of thousands). Raises
    ``InputError`` naming the file, ``sample`` and the fix (rerun the command that writes the table) when the file
    is missing or unreadable, or when required columns are missing (listed).
    """
    name, command = next(((n, c) for s, n, c in _CONTRACTS if s is schema), ("input", None))
    writer = f"'ms2study {command}'" if command else "the stage that writes it"
    path = Path(path)
    try:
        if only and columns is not None:  # read just the columns asked for (those the file has)
            present = pl.read_parquet_schema(path)
            df = pl.read_parquet(path, columns=[c for c in dict.fromkeys(columns) if c in present])
        else:
            df = pl.read_parquet(path)
    except Exception as err:
        raise InputError(
            f"cannot read the {name} table ({err})",
            file=str(path),
            sample=sample,
            fix=f"rerun {writer}" + (" for this sample" if sample else ""),
        ) from err
    required = list(schema) if columns is None else list(columns)
    missing = [c for c in required if c not in df.columns and c not in ADDED_LATER]
    if missing:
        raise InputError(
            f"{name} table lacks columns {missing}",
            file=str(path),
            sample=sample,
            fix=f"pass the {name}.parquet written by {writer}",
        )
    return df
