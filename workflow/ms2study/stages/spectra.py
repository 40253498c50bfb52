"""MS2 scans of one run, mapped onto its LC-MS features and cleaned (the ``spectra`` stage).

Every MS2 scan becomes one row of ``tables.SPECTRA``, mapped or not. A scan is mapped to a feature when
its precursor lies inside the feature's extent: retention time within the feature's convex hull widened
by ``rt_tolerance_s``, and precursor m/z within ``mz_tolerance_ppm`` of the feature's monoisotopic
m/z or of its monoisotopic trace's m/z bounds. When several features qualify (co-eluting near-isobars,
a peak split in two) the scan goes to the feature whose own hull holds the scan's RT, then to the one
most intense at the scan's RT (``map_precursors_counted`` says why); the log counts such scans. We map
onto hulls ourselves because ``FeatureMapping.assignMS2IndexToFeature`` assigns nothing when called from
Python (see FACTS.md). Peaks go through ``ms2study.core.cleaning.clean_peaks``, the same cleaning the library
spectra get.

Each row carries its scan's polarity (``ion_mode``; annotate searches a scan only against library spectra
of that polarity), so a polarity-switching run is processed per scan polarity (with a warning). Features
carry no polarity: a scan maps to a feature by m/z and RT alone, whatever the polarity of the MS1 scans
the feature came from. ``precursor_mz`` is the selected ion unless it lies outside its own isolation
window (a converter fault): then the window target is searched and mapped, the file's value is kept in
``selected_ion_mz`` and ``precursor_corrected`` is True (see ``msio.read_precursor``).
"""

from __future__ import annotations

import argparse
import json
import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import pyopenms as oms

from ms2study.core import tables
from ms2study.core.atomic import write_parquet
from ms2study.core.cleaning import CLEANING_KEYS, SCAN_NOTES_KEY, clean_peaks, cleaning_metadata
from ms2study.core.errors import InputError
from ms2study.core.params import overlay, schema_defaults
from ms2study.io.msio import (
    centroid,
    check_centroid_mode,
    is_profile,
    load_experiment,
    read_precursor,
    scan_ion_mode,
)

log = logging.getLogger(__name__)

# The config schema's "spectra" section, then its "cleaning" section (ms2study.core.cleaning.clean_peaks): the rule
# hands the cleaning keys to this stage, because queries and library references must be cleaned alike.
DEFAULT_PARAMS: dict = schema_defaults("spectra") | schema_defaults("cleaning")


# The features columns precursor mapping reads.
FEATURE_COLUMNS = ("feature_id", "mz", "rt_s", "rt_start_s", "rt_end_s", "mz_min", "mz_max", "intensity")


def _require_feature_columns(features: pl.DataFrame, sample_id: str) -> None:
    missing = [c for c in FEATURE_COLUMNS if c not in features.columns]
    if missing:
        raise InputError(
            f"features table lacks columns {missing}",
            sample=sample_id,
            fix="pass the features.parquet written by 'ms2study detect'",
        )


@dataclass(frozen=True)
class MappingCounts:
    """How the scans of one run were mapped: ``ambiguous`` had several candidate features; of those, ``by_hull``
    were decided because just one candidate's own RT hull holds the scan, ``by_intensity`` by the intensity
    modelled at the scan's RT (no hull, or several, held it)."""

    mapped: int = 0
    ambiguous: int = 0
    by_hull: int = 0
    by_intensity: int = 0


def map_precursors(
    precursor_mz: np.ndarray,
    rt_s: np.ndarray,
    features: pl.DataFrame,
    rt_tolerance_s: float,
    mz_tolerance_ppm: float,
) -> list[str | None]:
    """The feature id each precursor (m/z, RT) falls into, or None (``map_precursors_counted`` without counts)."""
    return map_precursors_counted(precursor_mz, rt_s, features, rt_tolerance_s, mz_tolerance_ppm)[0]


def map_precursors_counted(
    precursor_mz: np.ndarray,
    rt_s: np.ndarray,
    features: pl.DataFrame,
    rt_tolerance_s: float,
    mz_tolerance_ppm: float,
) -> tuple[list[str | None], MappingCounts]:
    """The feature id each precursor (m/z, RT) falls into, or None, and how many scans had several candidates.

    Candidates: precursor m/z within ``mz_tolerance_ppm`` of the feature's m/z or of its m/z bounds, scan RT within
    the feature's RT hull widened by ``rt_tolerance_s``. Among several candidates the scan goes to

    1. a feature whose own hull (not widened) holds the scan's RT, before one reached only through the widening:
       a DDA scan is triggered by an ion seen in the survey scan just before it, so it sits on that ion's elution
       peak; the widening is there for scans fired on a rising edge before the detected trace starts, and must
       not let a small neighbour (a tail, a split peak) take the scan from the peak it was fired on;
    2. then the feature most intense at the scan's RT, modelled as a Gaussian from the feature's apex, height
       and FWHM (``height`` and ``fwhm_s`` when the table has them, else area / (1.064 FWHM) and half the hull
       width): the quadrupole's isolation window (0.4 Da or more) passes every candidate at once, so the
       spectrum is the fragments of whichever dominates at that moment, and the instrument chose the precursor
       by its MS1 intensity. A big feature thus wins over a small co-eluting one, but a small isomer at its
       apex wins over a big one's far tail;
    3. then the nearest in m/z (within the tolerance m/z says nothing more: candidates are one ion or ions
       isolated together), then the first in feature table order (deterministic).
    """
    out: list[str | None] = [None] * len(precursor_mz)
    if features.height == 0 or len(precursor_mz) == 0:
        return out, MappingCounts()
    width = (pl.col("rt_end_s") - pl.col("rt_start_s")).cast(pl.Float64)
    fwhm = pl.col("fwhm_s").cast(pl.Float64) if "fwhm_s" in features.columns else pl.lit(None, pl.Float64)
    fwhm = pl.when(fwhm > 0).then(fwhm).when(width > 0).then(width / 2).otherwise(1.0)
    height = pl.col("height").cast(pl.Float64) if "height" in features.columns else pl.lit(None, pl.Float64)
    area = pl.col("intensity").fill_null(0.0).cast(pl.Float64)
    f = features.with_row_index("_order").select(
        "feature_id",
        "_order",
        mz=pl.col("mz").cast(pl.Float64),
        lo=pl.min_horizontal(pl.col("mz_min").fill_null(pl.col("mz")), pl.col("mz")).cast(pl.Float64),
        hi=pl.max_horizontal(pl.col("mz_max").fill_null(pl.col("mz")), pl.col("mz")).cast(pl.Float64),
        rt_start=pl.col("rt_start_s").fill_null(pl.col("rt_s")).cast(pl.Float64),
        rt_end=pl.col("rt_end_s").fill_null(pl.col("rt_s")).cast(pl.Float64),
        apex=pl.col("rt_s").fill_null((pl.col("rt_start_s") + pl.col("rt_end_s")) / 2).cast(pl.Float64),
        fwhm=fwhm,
        height=pl.when(height > 0).then(height).otherwise(area / (1.0645 * fwhm)),
    ).sort("lo", "_order")
    ids = f["feature_id"].to_list()
    order = f["_order"].to_numpy()
    fmz, lo, hi = f["mz"].to_numpy(), f["lo"].to_numpy(), f["hi"].to_numpy()
    rt_start, rt_end = f["rt_start"].to_numpy(), f["rt_end"].to_numpy()
    rt_lo, rt_hi = rt_start - rt_tolerance_s, rt_end + rt_tolerance_s
    apex, fw = f["apex"].to_numpy(), f["fwhm"].to_numpy()
    with np.errstate(divide="ignore"):
        log_height = np.log(np.nan_to_num(f["height"].to_numpy(), nan=0.0).clip(min=0.0))
    # Features sorted by their lower m/z bound: a precursor's candidates all have lo <= p + tol and,
    # since no hull is wider than the widest one, lo >= p - tol - widest; a slice, not a full scan.
    widest = float(np.max(hi - lo))
    mapped = ambiguous = by_hull = 0
    for k, (p, rt) in enumerate(zip(precursor_mz, rt_s, strict=True)):
        if not np.isfinite(p) or p <= 0:
            continue
        tol = p * mz_tolerance_ppm * 1e-6
        a = np.searchsorted(lo, p - tol - widest, side="left")
        b = np.searchsorted(lo, p + tol, side="right")
        if a >= b:
            continue
        sl = slice(a, b)
        ok = (lo[sl] - tol <= p) & (p <= hi[sl] + tol) & (rt_lo[sl] <= rt) & (rt <= rt_hi[sl])
        if not ok.any():
            continue
        cand = np.flatnonzero(ok) + a
        mapped += 1
        if cand.size > 1:
            ambiguous += 1
            inside = (rt_start[cand] <= rt) & (rt <= rt_end[cand])
            # log of the Gaussian height at the scan's RT: log h - 4 ln 2 ((t - apex) / fwhm)^2
            at_rt = log_height[cand] - 4 * np.log(2) * ((rt - apex[cand]) / fw[cand]) ** 2
            at_rt = np.nan_to_num(at_rt, nan=-np.inf)
            by_hull += int(inside.sum() == 1)
            # lexsort: last key is primary -> inside the own hull, then most intense at rt, nearest m/z, order.
            cand = cand[np.lexsort((order[cand], np.abs(fmz[cand] - p), -at_rt, ~inside))]
        out[k] = ids[cand[0]]
    return out, MappingCounts(mapped, ambiguous, by_hull, ambiguous - by_hull)


def extract_spectra(
    mzml: str | Path,
    features: pl.DataFrame,
    sample_id: str,
    params: dict | None = None,
    unused_levels: dict[int, int] | None = None,
) -> pl.DataFrame:
    """Every MS2 scan of ``mzml`` as a ``tables.SPECTRA`` row: precursor, its feature (or null), cleaned peaks.

    The precursor is window-checked (``msio.read_precursor``), ``ion_mode`` is the scan's polarity. Logs per
    sample the scans of each polarity, warns (naming file and sample) on mixed polarities, on corrected
    precursors, on an empty feature table and on fragment scans of another MS level (MS3 and up, or MS2 when
    ``ms_level`` is 3), which are not used; ``unused_levels``, when given, is filled with their counts
    ({MS level: scans}). Raises ``InputError`` for an unreadable run or bad parameters.
    """
    params = overlay(params, DEFAULT_PARAMS, "spectra")
    check_centroid_mode(params["centroid"], "spectra")
    _require_feature_columns(features, sample_id)
    # File order kept: a spectrum's position in the experiment is its scan index in the file.
    exp = load_experiment(mzml, sample_id, require_ms1=False, sort_by_rt=False)
    level = int(params["ms_level"])
    index = [i for i, s in enumerate(exp) if s.getMSLevel() == level]
    other = Counter(s.getMSLevel() for s in exp if s.getMSLevel() not in (1, level))
    if other:
        log.warning(
            "sample '%s', file '%s': %s not used: only MS%d scans are searched (spectra option ms_level)",
            sample_id, Path(mzml).name, ", ".join(f"{n} MS{lv} scans" for lv, n in sorted(other.items())), level,
        )
    if unused_levels is not None:
        unused_levels.update(other)
    frag = oms.MSExperiment()
    for i in index:
        frag.addSpectrum(exp.getSpectrum(i))
    profile = is_profile(frag, ms_level=level)
    if params["centroid"] == "always" or (params["centroid"] == "auto" and profile):
        log.info("%s: centroiding %d MS%d scans", sample_id, len(index), level)
        frag = centroid(frag, params["peak_picker_snr"], ms_levels=[level])

    cols: dict[str, list] = {c: [] for c in tables.SPECTRA}
    cols["n_peaks_raw"] = []
    for k, i in enumerate(index):
        spec = frag.getSpectrum(k)
        # A fragment scan without precursor information is kept, but it cannot be mapped.
        prec = read_precursor(spec)
        mz, inten = spec.get_peaks()
        cmz, cint = clean_peaks(
            mz,
            inten,
            prec.precursor_mz,
            remove_precursor=bool(params["remove_precursor"]),
            precursor_margin_da=float(params["precursor_margin_da"]),
            min_relative_intensity=float(params["min_relative_intensity"]),
            max_peaks=None if params["max_peaks"] in (None, 0) else int(params["max_peaks"]),
        )
        cols["spectrum_id"].append(f"{sample_id}:S{i}")
        cols["sample_id"].append(sample_id)
        cols["scan_index"].append(i)
        cols["native_id"].append(spec.getNativeID())
        cols["rt_s"].append(float(spec.getRT()))
        cols["precursor_mz"].append(prec.precursor_mz)
        cols["precursor_charge"].append(prec.charge)
        cols["precursor_intensity"].append(prec.intensity)
        cols["selected_ion_mz"].append(prec.selected_ion_mz)
        cols["precursor_corrected"].append(prec.corrected)
        cols["ion_mode"].append(scan_ion_mode(spec))
        cols["mz"].append(cmz)
        cols["intensity"].append(cint)
        cols["n_peaks_raw"].append(int(mz.size))

    pmz_arr = np.array([np.nan if v is None else v for v in cols["precursor_mz"]], dtype=np.float64)
    cols["feature_id"], counts = map_precursors_counted(
        pmz_arr,
        np.asarray(cols["rt_s"], dtype=np.float64),
        features,
        float(params["rt_tolerance_s"]),
        float(params["mz_tolerance_ppm"]),
    )
    df = pl.DataFrame(
        {
            **{c: cols[c] for c in tables.SPECTRA if c not in ("mz", "intensity")},
            "mz": pl.Series("mz", cols["mz"], dtype=pl.List(pl.Float64)),
            "intensity": pl.Series("intensity", cols["intensity"], dtype=pl.List(pl.Float32)),
            "n_peaks_raw": cols["n_peaks_raw"],
        },
        schema_overrides={c: t for c, t in tables.SPECTRA.items()} | {"n_peaks_raw": pl.Int32},
    )
    n_mapped = int(df["feature_id"].is_not_null().sum())
    log.info("%s: %d MS%d scans, %d mapped to features", sample_id, df.height, level, n_mapped)
    log.info(
        "%s: %d of the %d mapped scans had several candidate features (co-eluting at the precursor m/z): %d went to "
        "the one whose own RT hull holds the scan, %d to the one most intense at the scan's RT",
        sample_id, counts.ambiguous, counts.mapped, counts.by_hull, counts.by_intensity,
    )
    _log_scan_checks(df, Path(mzml).name, sample_id, level, features.height)
    return tables.conform(df, tables.SPECTRA)


def _without_peaks(df: pl.DataFrame) -> tuple[int, int]:
    """Scans of a spectra table left without a peak by the cleaning (all at or above the precursor), and scans
    acquired without any peak."""
    left = df["mz"].list.len().fill_null(0)
    raw = df["n_peaks_raw"] if "n_peaks_raw" in df.columns else left
    return int(((left == 0) & (raw > 0)).sum()), int((raw == 0).sum())


def scan_notes(df: pl.DataFrame, unused_levels: dict[int, int]) -> dict:
    """What the spectra table's metadata records for the report (``SCAN_NOTES_KEY``): ``unused_levels`` ({"3":
    scans}), ``no_fragment_peaks`` and ``no_peaks`` (``_without_peaks``) with ``ms2_scans``; empty when nothing is
    to be said."""
    emptied, raw = _without_peaks(df)
    notes: dict = {}
    if unused_levels:
        notes["unused_levels"] = {str(k): v for k, v in sorted(unused_levels.items())}
    if emptied or raw:
        notes.update(no_fragment_peaks=emptied, no_peaks=raw, ms2_scans=df.height)
    return notes


def _log_scan_checks(df: pl.DataFrame, file: str, sample_id: str, level: int, n_features: int) -> None:
    """Log the polarity counts, a mixed-polarity warning, the precursor corrections, scans without fragment peaks and
    an empty feature table."""
    if df.height == 0:
        return
    emptied, raw = _without_peaks(df)
    if emptied or raw:
        log.warning(
            "sample '%s', file '%s': %d of %d MS%d scans hold no fragment peak: %d only peaks at or above the "
            "precursor m/z minus precursor_margin_da (the unfragmented precursor: collision energy too low, or a "
            "scan range starting near the precursor), %d no peak at all; they cannot be searched or embedded",
            sample_id, file, emptied + raw, df.height, level, emptied, raw,
        )
    modes = df["ion_mode"]
    n_pos, n_neg = int((modes == "positive").sum()), int((modes == "negative").sum())
    n_none = int(modes.null_count())
    log.info(
        "%s: MS%d scan polarity: %d positive, %d negative, %d not stated", sample_id, level, n_pos, n_neg, n_none
    )
    if n_pos and n_neg:
        log.warning(
            "sample '%s', file '%s': the run mixes polarities (%d positive, %d negative MS%d scans); it is processed "
            "per scan polarity (each scan is searched only against library spectra of its own polarity; features "
            "carry no polarity)",
            sample_id, file, n_pos, n_neg, level,
        )
    n_fixed = int(df["precursor_corrected"].sum())
    if n_fixed:
        log.warning(
            "sample '%s', file '%s': %d of %d scans: selected ion outside isolation window, window target used",
            sample_id, file, n_fixed, df.height,
        )
    if n_features == 0:
        log.warning(
            "sample '%s', file '%s': the feature table is empty, so none of the %d MS%d scans is mapped to a "
            "feature (the detect log says why)",
            sample_id, file, df.height, level,
        )


def _cli(args: argparse.Namespace) -> int:
    from ms2study.core.params import load_params

    features = tables.read_table(args.features, tables.FEATURES, args.sample_id, columns=FEATURE_COLUMNS)
    params = overlay(load_params(args), DEFAULT_PARAMS, "spectra")
    unused: dict[int, int] = {}
    df = extract_spectra(args.mzml, features, args.sample_id, params, unused_levels=unused)
    # The cleaning the peaks went through, recorded in the file: annotate, which would apply the same, skips it.
    applied = {k: params[k] for k in CLEANING_KEYS}
    applied["max_peaks"] = None if applied["max_peaks"] in (None, 0) else int(applied["max_peaks"])
    metadata = cleaning_metadata(applied)
    notes = scan_notes(df, unused)
    if notes:
        metadata[SCAN_NOTES_KEY] = json.dumps(notes)
    write_parquet(df, args.out, metadata=metadata)
    return 0


def register(subparsers) -> None:
    from ms2study.core.params import add_params_argument

    p = subparsers.add_parser("spectra", help="MS2 scans of one run, mapped to its features, cleaned")
    p.add_argument("--mzml", required=True, type=Path, help="the run (mzML or mzXML)")
    p.add_argument("--features", required=True, type=Path, help="features.parquet from 'ms2study detect'")
    p.add_argument("--sample-id", required=True)
    p.add_argument("--out", required=True, type=Path, help="spectra.parquet")
    add_params_argument(p)
    p.set_defaults(func=_cli)
