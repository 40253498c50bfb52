"""pyOpenMS plumbing: loading LC-MS runs (mzML, mzXML), telling profile from centroid data, and the small helpers
every pyOpenMS stage shares.

Every stage that reads a raw run goes through ``load_experiment`` so that a missing, unreadable or
MS1-less file fails the same way: an ``InputError`` that names the file, the sample and what to do,
instead of a bare C++ exception from deep inside pyOpenMS. ``is_profile`` decides whether the MS1
scans must be centroided before feature detection; it trusts the file's declared spectrum type and
falls back to the spacing of the peaks when the file does not say. ``scan_ion_mode`` and
``read_precursor`` read a scan's polarity and its precursor (selected ion checked against its own
isolation window). ``set_params`` sets an OpenMS algorithm's parameters, ``error_reason`` gives the first line of a
pyOpenMS error for a message, ``ms1_experiment`` and ``centroid`` prepare scans for feature detection or spectrum
extraction (``CENTROID_MODES`` are the modes a stage may be given), and ``features_to_featuremap`` turns a
``tables.FEATURES`` frame back into a FeatureMap for alignment and linking.
This module may import ``ms2study.core`` only (besides pyOpenMS, numpy and polars).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyopenms as oms

from ms2study.core.errors import InputError
from ms2study.io.runfiles import FORMAT_NAMES, content_problem, gzip_truncated, run_format

# Extensions we can read, lower-cased, mapped to the pyOpenMS reader class.
READERS = {".mzml": oms.MzMLFile, ".mzxml": oms.MzXMLFile}

# A scan's declared polarity (mzML "positive scan" / "negative scan", mzXML polarity="+"/"-"); POLNULL: not stated.
ION_MODES = {oms.IonSource.Polarity.POSITIVE: "positive", oms.IonSource.Polarity.NEGATIVE: "negative"}

# pyOpenMS keeps the isolation-window target as this precursor meta value when it differs from the selected
# ion (it writes and reads MS:1000827 so; when the two are equal it stores no meta value). mzXML has no target.
ISOLATION_TARGET_KEY = "isolation window target m/z"
# A selected ion this far (Da) beyond its window's edge is outside it; below it, rounding in the file.
WINDOW_EDGE_TOLERANCE_DA = 0.01

# Profile data samples each peak at many points: neighbouring points lie a few mDa apart, while
# centroids of one scan rarely do. 0.01 Da separates the two for Orbitrap, TOF and ion-trap data.
PROFILE_MAX_MEDIAN_SPACING_DA = 0.01

# A stage's "centroid" parameter: auto centroids scans that look like profile data; always / never force it.
CENTROID_MODES = ("auto", "always", "never")


def error_reason(err: BaseException) -> str:
    """The first line of a pyOpenMS error's text (its C++ message), or the error's type when it has none."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _reader_for(path: Path, sample_id: str | None):
    fmt = run_format(path)  # .mzml / .mzxml, also gzip-compressed (.mzML.gz): pyOpenMS decompresses it
    if fmt in READERS:
        return READERS[fmt]()
    raise InputError(
        f"unsupported file type '{path.suffix or '(none)'}'",
        file=str(path),
        sample=sample_id,
        fix="convert the run to mzML (e.g. with ProteoWizard msconvert) or give a .mzML / .mzXML (or .mzML.gz) file",
    )


def load_experiment(
    path: str | os.PathLike,
    sample_id: str | None = None,
    *,
    require_ms1: bool = True,
    sort_by_rt: bool = True,
) -> oms.MSExperiment:
    """Read an mzML or mzXML file (also gzip-compressed, ``.mzML.gz``) into an ``MSExperiment``.

    With ``sort_by_rt`` the spectra are put in retention-time order (trace detection needs it); without
    it they keep the file's order, so a spectrum's position is its scan index in the file.
    Raises ``InputError`` naming the file and the sample when the file is missing, of an unknown
    type, empty (0 bytes), not XML, of the other format than its name says, truncated (no closing tag),
    unreadable, without spectra, holding impossible values (``impossible_values``: damaged binary data), or (with
    ``require_ms1``) holds no MS1 scans.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(
            "file not found" if not path.exists() else "path is not a file",
            file=str(path),
            sample=sample_id,
            fix="check the sample sheet's path (relative paths are resolved from the study folder)",
        )
    reader = _reader_for(path, sample_id)
    problem = content_problem(path)
    if problem:
        raise InputError(problem[0], file=str(path), sample=sample_id, fix=problem[1])
    exp = oms.MSExperiment()
    try:
        reader.load(str(path), exp)
    except Exception as err:  # pyOpenMS raises RuntimeError with the parser's text
        cut = gzip_truncated(path)
        if cut:
            raise InputError(cut[0], file=str(path), sample=sample_id, fix=cut[1]) from err
        raise InputError(
            f"cannot read the file as {FORMAT_NAMES[run_format(path)]} ({error_reason(err)})",
            file=str(path),
            sample=sample_id,
            fix="the file is corrupt or truncated; re-export or re-convert it from the vendor raw file",
        ) from err
    if exp.getNrSpectra() == 0:
        raise InputError(
            "the file holds no spectra",
            file=str(path),
            sample=sample_id,
            fix="re-convert the run; check that the conversion did not filter out all scans",
        )
    if require_ms1 and not any(spec.getMSLevel() == 1 for spec in exp):
        raise InputError(
            "the file holds no MS1 scans, so no LC-MS features can be detected",
            file=str(path),
            sample=sample_id,
            fix="convert the run with its MS1 (survey) scans included, or remove the sample from the sheet",
        )
    damaged = impossible_values(exp)
    if damaged:
        raise InputError(damaged, file=str(path), sample=sample_id,
                         fix="the binary data were altered (a damaged copy or transfer): copy or convert the run "
                             "again from the vendor raw file")
    if sort_by_rt and not exp.isSorted(False):
        exp.sortSpectra(True)
    exp.updateRanges()
    return exp


def impossible_values(exp: oms.MSExperiment) -> str | None:
    """What is wrong when scans of ``exp`` hold values no instrument writes, else None: an m/z that is not finite or
    not above 0, an intensity that is not finite, above ``MAX_INTENSITY`` or below ``MIN_INTENSITY``. Damaged
    base64 data decode to such values: a fresh user's copy with 15 characters of one MS1 scan overwritten read
    intensities of 1.0e31 and -1.0e6 and went into the feature matrix with no error. The message counts the scans
    and names the first (native id, RT)."""
    first, n_scans = None, 0
    for spec in exp:
        mz, intensity = spec.get_peaks()
        if not mz.size:
            continue
        bad = (~np.isfinite(mz) | (mz <= 0) | ~np.isfinite(intensity) | (intensity > MAX_INTENSITY)
               | (intensity < MIN_INTENSITY))
        if bad.any():
            n_scans += 1
            if first is None:
                k = int(np.flatnonzero(bad)[0])
                first = (spec.getNativeID(), spec.getRT(), float(mz[k]), float(intensity[k]))
    if first is None:
        return None
    native, rt, mz_bad, value = first
    return (f"{n_scans} scan(s) hold values no instrument writes, e.g. scan '{native}' at RT {rt:.1f} s: "
            f"m/z {mz_bad:.6g}, intensity {value:.4g}")


# Beyond these an intensity is no measurement (detectors saturate near 1e10-1e11; baseline-corrected profile data
# dip a little below 0): a decoded value outside them means damaged binary data (``impossible_values``).
MAX_INTENSITY = 1e20
MIN_INTENSITY = -1e3


def spectrum_is_profile(spec: oms.MSSpectrum) -> bool | None:
    """True/False from the declared type or the peak spacing; None when the scan has too few points to tell."""
    declared = spec.getType(False)
    if declared == oms.SpectrumSettings.SpectrumType.PROFILE:
        return True
    if declared == oms.SpectrumSettings.SpectrumType.CENTROID:
        return False
    mz, _ = spec.get_peaks()
    if mz.size < 10:
        return None
    spacing = np.diff(np.sort(mz))
    return bool(np.median(spacing) < PROFILE_MAX_MEDIAN_SPACING_DA)


def is_profile(exp: oms.MSExperiment, ms_level: int = 1, max_scans: int = 20) -> bool:
    """Whether the run's scans of ``ms_level`` are profile data (majority vote over up to ``max_scans`` scans)."""
    scans = [s for s in exp if s.getMSLevel() == ms_level and s.size() > 0]
    if not scans:
        return False
    # Sample scans spread over the run: the first scans of a gradient are often nearly empty.
    picks = np.unique(np.linspace(0, len(scans) - 1, num=min(max_scans, len(scans))).astype(int))
    votes = [v for v in (spectrum_is_profile(scans[i]) for i in picks) if v is not None]
    return bool(votes) and sum(votes) * 2 > len(votes)


def scan_ion_mode(spec: oms.MSSpectrum) -> str | None:
    """"positive" or "negative" from the scan's declared polarity; None when the scan does not say."""
    return ION_MODES.get(spec.getInstrumentSettings().getPolarity())


@dataclass(frozen=True)
class PrecursorInfo:
    """A fragment scan's precursor as the pipeline uses it (m/z in Th; None where the file gives none)."""

    precursor_mz: float | None  # searched and mapped: the selected ion, or the window target when corrected
    selected_ion_mz: float | None  # the selected ion as the file gives it
    charge: int  # 0 when unknown
    intensity: float | None
    corrected: bool  # True: the selected ion lay outside its own isolation window, the target is used


NO_PRECURSOR = PrecursorInfo(None, None, 0, None, False)


def _positive(value) -> float | None:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) and v > 0 else None


def read_precursor(spec: oms.MSSpectrum) -> PrecursorInfo:
    """The first precursor of ``spec``, with the selected ion checked against its isolation window.

    The window is [target - lower offset, target + upper offset], the target being the precursor's
    ``ISOLATION_TARGET_KEY`` meta value, or the selected ion itself when the file stores none. A selected
    ion outside its own window (more than ``WINDOW_EDGE_TOLERANCE_DA`` beyond an edge) is a known converter
    fault: the window target becomes ``precursor_mz`` and ``corrected`` is True (MZmine does the same).
    A window of width 0 (not stated) is never judged; a precursor with a target but no selected ion uses the
    target (not counted as a correction). A scan without precursor gives ``NO_PRECURSOR``.
    """
    precs = spec.getPrecursors()
    if not precs:
        return NO_PRECURSOR
    prec = precs[0]
    selected = _positive(prec.getMZ())
    target = _positive(prec.getMetaValue(ISOLATION_TARGET_KEY)) if prec.metaValueExists(ISOLATION_TARGET_KEY) else None
    lower = max(float(prec.getIsolationWindowLowerOffset()), 0.0)
    upper = max(float(prec.getIsolationWindowUpperOffset()), 0.0)
    used, corrected = selected, False
    if selected is None:
        used = target
    elif target is not None and lower + upper > 0:
        inside = target - lower - WINDOW_EDGE_TOLERANCE_DA <= selected <= target + upper + WINDOW_EDGE_TOLERANCE_DA
        if not inside:
            used, corrected = target, True
    intensity = float(prec.getIntensity())
    return PrecursorInfo(
        precursor_mz=used,
        selected_ion_mz=selected,
        charge=int(prec.getCharge()),
        intensity=intensity if math.isfinite(intensity) else None,
        corrected=corrected,
    )


def check_centroid_mode(mode: str, stage: str) -> None:
    """InputError unless ``mode`` is one of ``CENTROID_MODES`` (the message names the stage's parameter)."""
    if mode not in CENTROID_MODES:
        raise InputError(f"{stage} parameter centroid='{mode}' is not one of {list(CENTROID_MODES)}")


def set_params(algorithm: Any, values: Mapping[str, Any]) -> None:
    """Set OpenMS parameters of ``algorithm`` (any object with get/setParameters), keys as OpenMS names them.

    Keys may be nested with ':' (``"superimposer:max_shift"``). Booleans become "true"/"false", as the OpenMS
    Param system wants; other values (numbers, strings, lists) are set as given. An unknown key raises the
    pyOpenMS error (RuntimeError) unchanged.
    """
    p = algorithm.getParameters()
    for key, value in values.items():
        if isinstance(value, bool):
            value = "true" if value else "false"
        p.setValue(key, value)
    algorithm.setParameters(p)


def ms1_experiment(exp: oms.MSExperiment) -> oms.MSExperiment:
    """A copy holding only the MS1 scans (the trace detection must not see fragment scans)."""
    ms1 = oms.MSExperiment()
    for spec in exp:
        if spec.getMSLevel() == 1:
            ms1.addSpectrum(spec)
    ms1.updateRanges()
    return ms1


def centroid(exp: oms.MSExperiment, snr: float = 0.0, ms_levels: list[int] | None = None) -> oms.MSExperiment:
    """Centroid profile scans with PeakPickerHiRes (``snr``: its signal_to_noise; ``ms_levels``: the levels picked,
    None for its default); returns a new experiment. The file's declared spectrum type is not checked."""
    picker = oms.PeakPickerHiRes()
    set_params(picker, {"signal_to_noise": float(snr)})
    if ms_levels:
        set_params(picker, {"ms_levels": [int(x) for x in ms_levels]})
    # check_spectrum_type=False: the caller decided (files often declare nothing or the wrong type).
    return picker.pickExperiment(exp, False)


def features_to_featuremap(df: pl.DataFrame) -> oms.FeatureMap:
    """A features table (``tables.FEATURES`` columns) back as a pyOpenMS FeatureMap (for alignment and linking).

    Each feature's unique id is its row number + 1 (0 means 'unset' in OpenMS), its meta value ``feature_id`` the
    table's id, and its convex hull the rectangle of its RT (s) and monoisotopic m/z bounds (null bounds: the
    feature's own RT / m/z). Missing intensity or charge become 0.
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
