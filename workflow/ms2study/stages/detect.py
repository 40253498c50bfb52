"""Per-sample LC-MS feature detection with pyOpenMS (the ``detect`` stage).

One run in, one features table out (``tables.FEATURES``). Profile MS1 scans are first centroided with
PeakPickerHiRes (``centroid``: auto decides from the file, always/never force it). Then the OpenMS
metabolomics chain: MassTraceDetection finds m/z-stable traces, ElutionPeakDetection splits them into
chromatographic peaks, FeatureFindingMetabo groups co-eluting isotope traces into features. Each
feature keeps its convex-hull bounds (RT over all its traces, m/z of the monoisotopic trace) because
the ``spectra`` stage maps MS2 precursors into those hulls. Feature ids are assigned in ascending m/z
so the same input always gives the same ids.

A run with fewer than ``MIN_MS1_SCANS`` MS1 scans (pyOpenMS refuses it) gives an empty feature table and
a warning naming the file and the sample, so one short run never stops a study; its MS2 scans then map to
no feature. Features carry no polarity: the MS1 scans of a polarity-switching run are detected together
(a warning says so).

Because the run is loaded here anyway, the stage also writes the run's total-ion and base-peak chromatograms of
its MS1 scans (``modelling.qc.CHROMATOGRAM``, at most 2,000 points, with the scan counts and summed TIC in the
Parquet metadata) for the quality control of the runs; the features do not depend on it.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np
import polars as pl
import pyopenms as oms

from ms2study.core import badinput, tables
from ms2study.core.atomic import write_parquet
from ms2study.core.errors import InputError
from ms2study.core.params import overlay, schema_defaults
from ms2study.correction.gapfill import Ms1Scans
from ms2study.io.msio import (
    centroid,
    check_centroid_mode,
    error_reason,
    is_profile,
    load_experiment,
    ms1_experiment,
    scan_ion_mode,
    set_params,
)
from ms2study.modelling.qc import (
    FORCED_CENTROIDED,
    PROFILE_CENTROIDED,
    PROFILE_NOT_CENTROIDED,
    chromatogram,
    chromatogram_metadata,
    with_centroiding,
)

log = logging.getLogger(__name__)

# Defaults, types and allowed values: the config schema's "detect" section (workflow/schemas/config.schema.yaml).
# Names follow the OpenMS parameters of PeakPickerHiRes, MassTraceDetection, ElutionPeakDetection and
# FeatureFindingMetabo (``find_features`` maps them); times in seconds.
DEFAULT_PARAMS: dict = schema_defaults("detect")

# MassTraceDetection and FeatureFindingMetabo raise "too few MS1 spectra (less than 3!)" below this.
MIN_MS1_SCANS = 3


# MassTraceDetection skips scans left empty by the noise threshold without counting them as misses, but
# counts them in the trace's sample rate: a compound eluting alone (sparse or simulated data, blanks) then
# gets a trace that runs to the end of the file and is rejected for a low sample rate. One sentinel peak
# per scan, far below any real m/z, keeps every scan non-empty; it is never accepted into a real trace
# (too far in m/z) and traces it seeds itself are dropped.
SENTINEL_MZ = 0.5


def _with_sentinels(ms1: oms.MSExperiment, noise_threshold: float) -> oms.MSExperiment:
    padded = oms.MSExperiment()
    level = max(noise_threshold, 0.0) * 1.01 + 1.0
    for spec in ms1:
        mz, inten = spec.get_peaks()
        s = oms.MSSpectrum(spec)
        s.set_peaks((np.concatenate(([SENTINEL_MZ], mz)), np.concatenate(([level], inten)).astype(np.float32)))
        padded.addSpectrum(s)
    return padded


def find_features(ms1: oms.MSExperiment, params: dict) -> oms.FeatureMap:
    """The MassTraceDetection -> ElutionPeakDetection -> FeatureFindingMetabo chain on centroided MS1 scans."""
    mtd = oms.MassTraceDetection()
    set_params(
        mtd,
        {
            "mass_error_ppm": float(params["mass_error_ppm"]),
            "noise_threshold_int": float(params["noise_threshold_int"]),
            "chrom_peak_snr": float(params["chrom_peak_snr"]),
            "min_trace_length": float(params["min_trace_length_s"]),
            "max_trace_length": float(params["max_trace_length_s"]),
            "min_sample_rate": float(params["min_sample_rate"]),
        },
    )
    traces = [
        t
        for t in mtd.run(_with_sentinels(ms1, float(params["noise_threshold_int"])), 0)
        if t.getCentroidMZ() > SENTINEL_MZ * 2
    ]
    epd = oms.ElutionPeakDetection()
    set_params(
        epd,
        {
            "chrom_fwhm": float(params["chrom_fwhm_s"]),
            "chrom_peak_snr": float(params["chrom_peak_snr"]),
            "width_filtering": str(params["width_filtering"]),
            "min_fwhm": float(params["min_fwhm_s"]),
            "max_fwhm": float(params["max_fwhm_s"]),
        },
    )
    split = epd.detectPeaks(traces) if traces else []
    ffm = oms.FeatureFindingMetabo()
    set_params(
        ffm,
        {
            "local_rt_range": float(params["local_rt_range_s"]),
            "local_mz_range": float(params["local_mz_range"]),
            "charge_lower_bound": int(params["charge_lower_bound"]),
            "charge_upper_bound": int(params["charge_upper_bound"]),
            "chrom_fwhm": float(params["chrom_fwhm_s"]),
            "isotope_filtering_model": str(params["isotope_filtering_model"]),
            "mz_scoring_13C": bool(params["mz_scoring_13C"]),
            "mz_scoring_by_elements": bool(params["mz_scoring_by_elements"]),
            "elements": str(params["elements"]),
            "remove_single_traces": bool(params["remove_single_traces"]),
            "use_smoothed_intensities": bool(params["use_smoothed_intensities"]),
            "report_summed_ints": bool(params["report_summed_ints"]),
            "enable_RT_filtering": bool(params["enable_rt_filtering"]),
            # The hulls are the features' extent; the spectra stage maps precursors into them.
            "report_convex_hulls": True,
        },
    )
    fmap = oms.FeatureMap()
    if split:
        ffm.run(split, fmap)
    return fmap


def featuremap_to_frame(fmap: oms.FeatureMap, sample_id: str) -> pl.DataFrame:
    """A FeatureMap as a ``tables.FEATURES`` frame, ids assigned in ascending m/z (then RT)."""
    rows: dict[str, list] = {c: [] for c in (*tables.FEATURES, "fwhm_s", "height")}
    for f in fmap:
        hulls = f.getConvexHulls()
        if hulls:
            mono = hulls[0].getHullPoints()
            rt_all = np.concatenate([h.getHullPoints()[:, 0] for h in hulls])
            rt_lo, rt_hi = float(rt_all.min()), float(rt_all.max())
            mz_lo, mz_hi = float(mono[:, 1].min()), float(mono[:, 1].max())
        else:  # no hull reported: the feature is a point
            rt_lo = rt_hi = f.getRT()
            mz_lo = mz_hi = f.getMZ()
        rows["sample_id"].append(sample_id)
        rows["mz"].append(f.getMZ())
        rows["rt_s"].append(f.getRT())
        rows["rt_start_s"].append(rt_lo)
        rows["rt_end_s"].append(rt_hi)
        rows["mz_min"].append(mz_lo)
        rows["mz_max"].append(mz_hi)
        rows["intensity"].append(float(f.getIntensity()))
        rows["charge"].append(int(f.getCharge()))
        rows["n_isotopes"].append(
            int(f.getMetaValue("num_of_masstraces")) if f.metaValueExists("num_of_masstraces") else len(hulls)
        )
        rows["quality"].append(float(f.getOverallQuality()))
        rows["fwhm_s"].append(float(f.getMetaValue("FWHM")) if f.metaValueExists("FWHM") else None)
        rows["height"].append(float(f.getMetaValue("max_height")) if f.metaValueExists("max_height") else None)
    rows["feature_id"] = [""] * len(rows["mz"])
    schema = {**tables.FEATURES, "fwhm_s": pl.Float64, "height": pl.Float64}
    df = pl.DataFrame(rows, schema=schema).sort(["mz", "rt_s", "intensity"], descending=[False, False, True])
    df = df.with_columns(
        feature_id=pl.format("{}:F{}", pl.col("sample_id"), pl.int_range(1, pl.len() + 1)),
    )
    return tables.conform(df, tables.FEATURES)


def run_chromatogram(exp: oms.MSExperiment) -> tuple[pl.DataFrame, dict[str, str]]:
    """TIC and BPC of the MS1 scans of ``exp`` (as read, before centroiding): (``modelling.qc.CHROMATOGRAM`` frame
    of at most ``modelling.qc.MAX_POINTS`` rows, its Parquet metadata with n_ms1_scans, n_ms2_scans, tic_total)."""
    rt, tic, bpc = [], [], []
    n_ms2 = 0
    for spec in exp:
        level = spec.getMSLevel()
        if level == 2:
            n_ms2 += 1
        if level != 1:
            continue
        _, inten = spec.get_peaks()
        rt.append(spec.getRT())
        tic.append(float(np.sum(inten, dtype=np.float64)) if len(inten) else 0.0)
        bpc.append(float(np.max(inten)) if len(inten) else 0.0)
    order = np.argsort(np.asarray(rt, dtype=np.float64), kind="stable")
    rt_a, tic_a, bpc_a = (np.asarray(a, dtype=np.float64)[order] for a in (rt, tic, bpc))
    return chromatogram(rt_a, tic_a, bpc_a), chromatogram_metadata(len(rt), n_ms2, float(tic_a.sum()))


def detect_features(mzml: str | Path, sample_id: str, params: dict | None = None) -> pl.DataFrame:
    """Detect the LC-MS features of one run; returns a ``tables.FEATURES`` frame (maybe empty).

    Empty, with a WARNING naming the file and the sample, when the run has fewer than ``MIN_MS1_SCANS``
    MS1 scans. Raises ``InputError`` (naming file and sample) for an unreadable run, a run without MS1
    scans, a bad parameter, or a pyOpenMS failure during detection.
    """
    return detect_run(mzml, sample_id, params)[0]


def detect_run(mzml: str | Path, sample_id: str,
               params: dict | None = None) -> tuple[pl.DataFrame, pl.DataFrame, dict[str, str], Ms1Scans]:
    """``detect_features`` plus, from the same reading of the file, the run's chromatogram (``run_chromatogram``)
    and its centroided MS1 scans as feature detection saw them (``correction.gapfill.Ms1Scans``: what gap filling
    re-reads instead of the mzML): (features, chromatogram, chromatogram metadata, MS1 scans). Raises as
    ``detect_features``."""
    params = overlay(params, DEFAULT_PARAMS, "detect")
    check_centroid_mode(params["centroid"], "detect")
    exp = load_experiment(mzml, sample_id)
    chrom, chrom_meta = run_chromatogram(exp)
    ms1 = ms1_experiment(exp)
    file = Path(mzml).name
    if ms1.getNrSpectra() < MIN_MS1_SCANS:
        log.warning(
            "sample '%s', file '%s': only %d MS1 scan(s); feature detection needs at least %d, so the feature "
            "table is empty and this sample's MS2 scans map to no feature",
            sample_id, file, ms1.getNrSpectra(), MIN_MS1_SCANS,
        )
        return featuremap_to_frame(oms.FeatureMap(), sample_id), chrom, chrom_meta, Ms1Scans(np.empty(0), [], [])
    modes = [scan_ion_mode(s) for s in ms1]
    n_pos, n_neg = modes.count("positive"), modes.count("negative")
    if n_pos and n_neg:
        log.warning(
            "sample '%s', file '%s': MS1 scans mix polarities (%d positive, %d negative); features are detected "
            "over all of them together and carry no polarity",
            sample_id, file, n_pos, n_neg,
        )
    profile = is_profile(ms1)
    if params["centroid"] == "always" or (params["centroid"] == "auto" and profile):
        log.info("%s: centroiding %d MS1 scans (profile=%s)", sample_id, ms1.getNrSpectra(), profile)
        ms1 = centroid(ms1, params["peak_picker_snr"])
        chrom_meta = with_centroiding(chrom_meta, PROFILE_CENTROIDED if profile else FORCED_CENTROIDED)
    elif profile:
        log.warning("%s: MS1 scans look like profile data but centroid='never'; features will be poor", sample_id)
        chrom_meta = with_centroiding(chrom_meta, PROFILE_NOT_CENTROIDED)
    scans = Ms1Scans.from_experiment(ms1)
    try:
        fmap = find_features(ms1, params)
    except RuntimeError as err:  # pyOpenMS reports its refusals as RuntimeError; name the run, no traceback
        raise InputError(
            f"feature detection failed in pyOpenMS ({error_reason(err)})",
            file=str(mzml),
            sample=sample_id,
            fix="check the run's MS1 scans and the detect parameters, or remove the sample from the sheet",
        ) from err
    df = featuremap_to_frame(fmap, sample_id)
    log.info("%s: %d features from %d MS1 scans", sample_id, df.height, ms1.getNrSpectra())
    return df, chrom, chrom_meta, scans


def bad_input_mark(out: str | Path) -> Path:
    """Where ``ms2study detect`` remembers that its run's file is bad: a hidden file beside ``out``."""
    return badinput.mark_for(out)


def _cli(args: argparse.Namespace) -> int:
    """Detect one run. The profiles retry a failed job (once locally, twice on SLURM, with more memory and time),
    which Snakemake cannot limit to some errors; a bad file would only fail again, so its error is remembered beside
    the output (``bad_input_mark``) and a retry on the unchanged file repeats it without reading the file again."""
    from ms2study.core.params import load_params

    mark, params = bad_input_mark(args.out), load_params(args)
    known = badinput.known_refusal(mark, args.mzml, params)
    if known is not None:
        log.info("%s is unchanged since an earlier attempt found it bad: not read again", args.mzml)
        raise known
    try:
        df, chrom, chrom_meta, scans = detect_run(args.mzml, args.sample_id, params)
    except InputError as err:
        if err.file is not None and Path(err.file) == Path(args.mzml) and Path(args.mzml).is_file():
            badinput.remember_refusal(mark, args.mzml, params, err)
        raise
    mark.unlink(missing_ok=True)
    if args.chromatogram_out:
        write_parquet(chrom, args.chromatogram_out, metadata=chrom_meta)
    if args.ms1_out:
        write_parquet(scans.to_frame(), args.ms1_out)
    write_parquet(df, args.out)
    return 0


def register(subparsers) -> None:
    from ms2study.core.params import add_params_argument

    p = subparsers.add_parser("detect", help="detect LC-MS features of one run (pyOpenMS)")
    p.add_argument("--mzml", required=True, type=Path, help="the run (mzML or mzXML)")
    p.add_argument("--sample-id", required=True)
    p.add_argument("--out", required=True, type=Path, help="features.parquet")
    p.add_argument("--chromatogram-out", type=Path, default=None,
                   help="also write the run's MS1 TIC and base-peak chromatogram (chromatogram.parquet)")
    p.add_argument("--ms1-out", type=Path, default=None,
                   help="also write the run's centroided MS1 scans (ms1_scans.parquet), which gap filling reads "
                        "instead of the mzML")
    add_params_argument(p)
    p.set_defaults(func=_cli)
