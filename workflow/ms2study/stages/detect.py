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
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np
import polars as pl
import pyopenms as oms

from ms2study.core import tables
from ms2study.core.atomic import write_parquet
from ms2study.core.errors import InputError
from ms2study.io.msio import is_profile, load_experiment, scan_ion_mode
from ms2study.core.params import overlay

log = logging.getLogger(__name__)

DEFAULT_PARAMS: dict = {
    # auto: centroid when the MS1 scans are profile data; always / never: force it.
    "centroid": "auto",
    "peak_picker_snr": 0.0,  # PeakPickerHiRes signal_to_noise (0 keeps every local maximum)
    # MassTraceDetection
    "mass_error_ppm": 10.0,  # allowed m/z scatter of one trace
    "noise_threshold_int": 1000.0,  # centroids below this intensity never seed or extend a trace
    "chrom_peak_snr": 3.0,  # minimum S/N of a trace apex (also used by elution peak detection)
    "min_trace_length_s": 3.0,  # UHPLC peaks are often only a few seconds wide
    "max_trace_length_s": -1.0,  # -1: unlimited
    "min_sample_rate": 0.5,  # fraction of scans in a trace's span that must carry a centroid
    # ElutionPeakDetection
    "chrom_fwhm_s": 5.0,  # expected chromatographic peak width (also guides isotope grouping)
    "width_filtering": "fixed",  # fixed | auto | off
    "min_fwhm_s": 1.0,
    "max_fwhm_s": 60.0,
    # FeatureFindingMetabo
    "local_rt_range_s": 10.0,  # isotope traces must elute within this of the monoisotopic one
    "local_mz_range": 6.5,  # m/z window searched for isotope traces
    "charge_lower_bound": 1,
    "charge_upper_bound": 3,
    "isotope_filtering_model": "metabolites (5% RMS)",  # metabolites (2%/5% RMS) | peptides | none
    "mz_scoring_13C": False,
    "mz_scoring_by_elements": False,
    "elements": "CHNOPS",
    "remove_single_traces": False,  # True drops features without an isotope trace
    "use_smoothed_intensities": True,
    "report_summed_ints": False,  # False: feature intensity from the monoisotopic trace (area)
    "enable_rt_filtering": True,
}

CENTROID_MODES = ("auto", "always", "never")

# MassTraceDetection and FeatureFindingMetabo raise "too few MS1 spectra (less than 3!)" below this.
MIN_MS1_SCANS = 3


def merge_params(params: dict | None, defaults: dict, stage: str) -> dict:
    """Defaults overlaid by the user's values; an unknown key is an error that names it."""
    return overlay(params, defaults, stage)


def _set(alg, values: dict) -> None:
    """Set pyOpenMS algorithm parameters (strings for booleans, as the Param system wants)."""
    p = alg.getParameters()
    for key, value in values.items():
        if isinstance(value, bool):
            value = "true" if value else "false"
        elif isinstance(value, int):
            value = int(value)
        p.setValue(key, value)
    alg.setParameters(p)


def ms1_experiment(exp: oms.MSExperiment) -> oms.MSExperiment:
    """A copy holding only the MS1 scans (the trace detection must not see fragment scans)."""
    ms1 = oms.MSExperiment()
    for spec in exp:
        if spec.getMSLevel() == 1:
            ms1.addSpectrum(spec)
    ms1.updateRanges()
    return ms1


def centroid(exp: oms.MSExperiment, snr: float = 0.0, ms_levels: list[int] | None = None) -> oms.MSExperiment:
    """Centroid profile scans with PeakPickerHiRes; returns a new experiment."""
    picker = oms.PeakPickerHiRes()
    _set(picker, {"signal_to_noise": float(snr)})
    if ms_levels:
        p = picker.getParameters()
        p.setValue("ms_levels", [int(x) for x in ms_levels])
        picker.setParameters(p)
    # check_spectrum_type=False: we decided ourselves (files often declare nothing or the wrong type).
    return picker.pickExperiment(exp, False)


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
    _set(
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
    _set(
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
    _set(
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


def detect_features(mzml: str | Path, sample_id: str, params: dict | None = None) -> pl.DataFrame:
    """Detect the LC-MS features of one run; returns a ``tables.FEATURES`` frame (maybe empty).

    Empty, with a WARNING naming the file and the sample, when the run has fewer than ``MIN_MS1_SCANS``
    MS1 scans. Raises ``InputError`` (naming file and sample) for an unreadable run, a run without MS1
    scans, a bad parameter, or a pyOpenMS failure during detection.
    """
    params = merge_params(params, DEFAULT_PARAMS, "detect")
    if params["centroid"] not in CENTROID_MODES:
        raise InputError(f"detect parameter centroid='{params['centroid']}' is not one of {list(CENTROID_MODES)}")
    exp = load_experiment(mzml, sample_id)
    ms1 = ms1_experiment(exp)
    file = Path(mzml).name
    if ms1.getNrSpectra() < MIN_MS1_SCANS:
        log.warning(
            "sample '%s', file '%s': only %d MS1 scan(s); feature detection needs at least %d, so the feature "
            "table is empty and this sample's MS2 scans map to no feature",
            sample_id, file, ms1.getNrSpectra(), MIN_MS1_SCANS,
        )
        return featuremap_to_frame(oms.FeatureMap(), sample_id)
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
    elif profile:
        log.warning("%s: MS1 scans look like profile data but centroid='never'; features will be poor", sample_id)
    try:
        fmap = find_features(ms1, params)
    except RuntimeError as err:  # pyOpenMS reports its refusals as RuntimeError; name the run, no traceback
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise InputError(
            f"feature detection failed in pyOpenMS ({reason})",
            file=str(mzml),
            sample=sample_id,
            fix="check the run's MS1 scans and the detect parameters, or remove the sample from the sheet",
        ) from err
    df = featuremap_to_frame(fmap, sample_id)
    log.info("%s: %d features from %d MS1 scans", sample_id, df.height, ms1.getNrSpectra())
    return df


def features_to_featuremap(df: pl.DataFrame) -> oms.FeatureMap:
    """A features table back as a pyOpenMS FeatureMap (for alignment and linking).

    Each feature's unique id is its row number + 1 (0 means 'unset' in OpenMS), and its convex hull is
    the rectangle of its RT and monoisotopic m/z bounds.
    """
    fmap = oms.FeatureMap()
    cols = df.select("feature_id", "mz", "rt_s", "rt_start_s", "rt_end_s", "mz_min", "mz_max", "intensity", "charge")
    for i, (fid, mz, rt, rt_lo, rt_hi, mz_lo, mz_hi, inten, charge) in enumerate(cols.iter_rows()):
        f = oms.Feature()
        f.setMZ(float(mz))
        f.setRT(float(rt))
        f.setIntensity(float(inten or 0.0))
        f.setCharge(int(charge or 0))
        f.setUniqueId(i + 1)
        f.setMetaValue("feature_id", str(fid))
        hull = oms.ConvexHull2D()
        rt_lo = rt if rt_lo is None else rt_lo
        rt_hi = rt if rt_hi is None else rt_hi
        mz_lo = mz if mz_lo is None else mz_lo
        mz_hi = mz if mz_hi is None else mz_hi
        hull.setHullPoints(np.array([[rt_lo, mz_lo], [rt_hi, mz_lo], [rt_hi, mz_hi], [rt_lo, mz_hi]], dtype=np.float64))
        f.setConvexHulls([hull])
        fmap.push_back(f)
    fmap.updateRanges()
    return fmap


def _cli(args: argparse.Namespace) -> int:
    from ms2study.core.params import load_params

    df = detect_features(args.mzml, args.sample_id, load_params(args))
    write_parquet(df, args.out)
    return 0


def register(subparsers) -> None:
    from ms2study.core.params import add_params_argument

    p = subparsers.add_parser("detect", help="detect LC-MS features of one run (pyOpenMS)")
    p.add_argument("--mzml", required=True, type=Path, help="the run (mzML or mzXML)")
    p.add_argument("--sample-id", required=True)
    p.add_argument("--out", required=True, type=Path, help="features.parquet")
    add_params_argument(p)
    p.set_defaults(func=_cli)
