"""The background run of a spike-in study (:mod:`ms2study.simulate.spikein`), read and measured, so that spiked ions
behave as the user's instrument does, Orbitrap or TOF: its m/z range (where its MS1 ions are, not what the scan
window allows), its resolution (closest MS1 centroid pairs, :func:`resolution_ppm`), the scan-to-scan m/z jitter of
its persistent ions by intensity and their chromatographic peak widths (:func:`persistent_traces`,
:func:`mz_jitter`, :func:`peak_widths`), and the intensity levels the spike-in uses (apex heights, noise floors, the
DDA threshold and MS2 gain). Where the run has too few persistent ions or peaks, fixed Orbitrap numbers are used
instead; :attr:`Background.sources` says which. Imports ``core``, ``io`` and ``simulate.spikein_variation``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyopenms as oms

from ms2study.core.errors import InputError
from ms2study.io.msio import is_profile, load_experiment
from ms2study.simulate.spikein_variation import MAX_RESOLUTION_PPM

# Fallbacks when the run cannot tell (too few persistent ions or peaks), from the Q Exactive QC runs in
# ../shared/data/mzml: FWHM 2.1-3.8 s (MZmine's aligned list, 10-90 %), m/z jitter 1 ppm (Orbitrap).
FWHM_S = (2.1, 3.8)
MZ_JITTER_PPM = 1.0
MIN_TRACE_SCANS = 5             # an ion seen in this many consecutive MS1 scans is persistent
MIN_PERSISTENT_IONS = 20        # fewer: the jitter is not measured
MIN_PEAKS = 20                  # fewer complete chromatographic peaks: the widths are not measured
# The 20-ppm cap on the measured resolution holds for sparse runs only (fewer than this many centroids per MS1 scan,
# median). The same ions recur scan after scan, so a run's closest pairs are those among its distinct ions: in a
# sparse run they are set by which compounds happen to lie close, not by the instrument (a 32-centroid Q Exactive
# excerpt, FeatureFindingMetabo_input1, has no pair closer than 107 ppm; an 8-centroid TripleTOF excerpt, SiriusExport,
# none closer than 33), so the cap keeps such a run from merging ions an Orbitrap resolves. A dense run's closest
# pairs show what the instrument cannot resolve: QC run 04 (1,144 per scan) 19.5 ppm, the TripleTOF 6600 run
# AssayGeneratorMetabo (150 per scan) 75 ppm, there no cap applies.
DENSE_SCAN_CENTROIDS = 100
WIDE_WINDOW = 2.0               # a scan window this many times wider than the ions' m/z span is warned about
log = logging.getLogger(__name__)


HEIGHT_GRID = np.linspace(0.0, 1.0, 1001)  # quantiles of the MS1 centroid intensities kept for the heights' range


@dataclass
class Background:
    """What the run says about itself: ranges, thresholds, resolution, m/z jitter by intensity (``jitter_intensity``
    and ``jitter_ppm``, ascending intensities; one entry: the fallback) and the spiked peaks' FWHM range; ``sources``
    says how each was found (measured or fallback). See the module docstrings for each quantile."""
    exp: oms.MSExperiment
    mz_range: tuple[float, float]
    rt_range: tuple[float, float]
    height_range: tuple[float, float]
    ms1_floor: float
    ms2_floor: float
    dda_threshold: float
    ms2_gain: float
    template: oms.MSSpectrum
    resolution_ppm: float
    jitter_intensity: np.ndarray = field(default_factory=lambda: np.array([1.0]))
    jitter_ppm: np.ndarray = field(default_factory=lambda: np.array([MZ_JITTER_PPM]))
    fwhm_s: tuple[float, float] = FWHM_S
    sources: dict[str, str] = field(default_factory=dict)
    n_persistent_ions: int = 0
    intensity_quantiles: np.ndarray = field(default_factory=lambda: np.zeros(0))  # at HEIGHT_GRID of MS1 centroids

    def heights_at(self, low: float, high: float) -> tuple[float, float]:
        """The MS1 centroid intensities at quantiles ``low`` and ``high`` (0-1) of the run's, interpolated on
        ``HEIGHT_GRID``: the spiked apex heights' range (``simulate_spikein``'s ``height_quantiles``)."""
        return (float(np.interp(low, HEIGHT_GRID, self.intensity_quantiles)),
                float(np.interp(high, HEIGHT_GRID, self.intensity_quantiles)))

    def mz_jitter_ppm(self, intensity) -> np.ndarray:
        """The sd (ppm) of a centroid's m/z error at ``intensity``: interpolated in log intensity between the
        measured bins, the end bins' value beyond them."""
        return np.interp(np.log10(np.maximum(np.asarray(intensity, dtype=np.float64), 1e-9)),
                         np.log10(np.maximum(self.jitter_intensity, 1e-9)), self.jitter_ppm)

    def measured(self) -> dict:
        """The ``background_measured`` entry of simulation.json."""
        return {"mz_range": self.mz_range, "rt_range_s": self.rt_range, "height_range": self.height_range,
                "ms1_floor": self.ms1_floor, "ms2_floor": self.ms2_floor, "dda_threshold": self.dda_threshold,
                "ms2_gain": self.ms2_gain, "resolution_ppm": self.resolution_ppm,
                # where the DDA trigger lies among the MS1 centroid intensities (0-1): no spiked apex below it gets
                # MS/MS (trial AN: --height-quantiles 0.05 0.5 gave none)
                "dda_threshold_quantile": (float(np.interp(self.dda_threshold, self.intensity_quantiles, HEIGHT_GRID))
                                           if self.intensity_quantiles.size else None),
                "mz_jitter_ppm_by_intensity": {"intensity": self.jitter_intensity.tolist(),
                                               "ppm": self.jitter_ppm.tolist()},
                "fwhm_s": list(self.fwhm_s), "n_persistent_ions": self.n_persistent_ions, "sources": self.sources}


def read_background(path: Path) -> Background:
    """Load a centroided DDA mzML and measure it. Raises InputError (naming the file) for a missing or unreadable
    file, one without MS1 or MS2 scans, profile-mode MS1 or fewer than 10 MS1 scans."""
    if not Path(path).is_file():  # load_experiment's advice is about the sample sheet
        raise InputError("the --background run " + ("was not found" if not Path(path).exists() else "is not a file"),
                         file=str(path), fix="pass --background RUN.mzML, one centroided DDA run of yours (e.g. a "
                                             "pooled QC) as mzML")
    try:
        exp = load_experiment(path, require_ms1=True)
    except InputError as err:  # say which option the file came from
        raise InputError(f"the --background run: {err.message}", file=str(path), fix=err.fix) from err
    ms1 = [s for s in exp if s.getMSLevel() == 1]
    ms2 = [s for s in exp if s.getMSLevel() == 2 and s.getPrecursors()]
    if is_profile(exp, 1):
        raise InputError("the background's MS1 scans are profile data", file=str(path),
                         fix="centroid the run first (e.g. msconvert --filter 'peakPicking vendor' or OpenMS "
                             "PeakPickerHiRes) and pass the centroided mzML")
    if len(ms1) < 10 or not ms2:
        raise InputError(f"the background has {len(ms1)} MS1 and {len(ms2)} MS2 scans; a DDA run with at least 10 MS1 "
                         "scans and MS2 scans is needed", file=str(path), fix="pass a DDA run with MS1 and MS2 scans")
    peaks = [s.get_peaks() for s in ms1]
    windows = [(w.begin, w.end) for w in ms1[0].getInstrumentSettings().getScanWindows() if w.end > w.begin]
    window = (min(w[0] for w in windows), max(w[1] for w in windows)) if windows else None
    mz_range, range_source = ms1_mz_range([m for m, _ in peaks], window)
    intensities = np.concatenate([i for _, i in peaks])
    lo, hi = np.quantile(intensities, [0.05, 0.995])
    ms1_floor = float(np.quantile([i.min() for _, i in peaks if i.size], 0.05))
    ms2_floor = float(np.quantile([s.get_peaks()[1].min() for s in ms2 if s.size()], 0.05))
    precursor, gain, last, k = [], [], None, 0
    for s in exp:
        if s.getMSLevel() == 1:
            last, k = peaks[k], k + 1
        elif s.getMSLevel() == 2 and s.getPrecursors() and last is not None and last[0].size:
            pmz = s.getPrecursors()[0].getMZ()
            j = int(np.argmin(np.abs(last[0] - pmz)))
            if abs(last[0][j] - pmz) <= 1e-5 * pmz and s.size():
                precursor.append(last[1][j])
                gain.append(s.get_peaks()[1].sum() / last[1][j])
    if len(precursor) < 3:
        raise InputError("no MS2 precursor of the background is found in its MS1 scans", file=str(path),
                         fix="pass a DDA run whose MS2 precursors were picked from its MS1 scans")
    template = next((s for s in ms2 if s.getPrecursors()[0].getCharge() == 1), ms2[0])
    rts = np.array([s.getRT() for s in ms1])
    resolution, resolution_source = resolution_ppm([m for m, _ in peaks])
    traces = persistent_traces(peaks, resolution)
    jitter_intensity, jitter_ppm, jitter_source = mz_jitter(traces)
    fwhm, fwhm_source = peak_widths(traces, rts, float(np.quantile(intensities, 0.9)))
    return Background(exp, mz_range, (float(rts.min()), float(rts.max())), (float(lo), float(hi)), ms1_floor,
                      ms2_floor, float(np.quantile(precursor, 0.01)), float(np.median(gain)), template, resolution,
                      jitter_intensity, jitter_ppm, fwhm,
                      {"mz_range": range_source, "resolution_ppm": resolution_source, "mz_jitter": jitter_source,
                       "fwhm_s": fwhm_source}, len(traces), np.quantile(intensities, HEIGHT_GRID))


def ms1_mz_range(mzs: list[np.ndarray], window: tuple[float, float] | None) -> tuple[tuple[float, float], str]:
    """The m/z range the run's MS1 ions fill: the 0.1-99.9 % quantiles of all MS1 centroid m/z (``mzs``, one array per
    scan), within the scan window when the file states one. Warns when the window is more than ``WIDE_WINDOW`` times
    wider than that range (compounds are then spiked only where the run has ions). Returns (range, its source)."""
    ions = tuple(float(q) for q in np.quantile(np.concatenate(mzs), [0.001, 0.999]))
    if window is None:
        return ions, "0.1-99.9 % quantiles of the MS1 centroid m/z (no scan window in the file)"
    lo, hi = max(ions[0], window[0]), min(ions[1], window[1])
    source = f"0.1-99.9 % quantiles of the MS1 centroid m/z, within the scan window {window[0]:g}-{window[1]:g}"
    if hi <= lo:  # ions outside their own window: the window is wrong, the ions are what the run has
        lo, hi = ions
        source = (f"0.1-99.9 % quantiles of the MS1 centroid m/z (outside the stated scan window {window[0]:g}-"
                  f"{window[1]:g})")
    elif window[1] - window[0] > WIDE_WINDOW * (hi - lo):
        log.warning("the background's MS1 ions span m/z %.0f-%.0f, %.2g %% of its scan window %g-%g: compounds are "
                    "spiked only at m/z %.0f-%.0f (library records outside are not used)", lo, hi,
                    100 * (hi - lo) / (window[1] - window[0]), window[0], window[1], lo, hi)
    return (lo, hi), source


def resolution_ppm(mzs: list[np.ndarray]) -> tuple[float, str]:
    """How close two ions may lie and still be two centroids in this run (ppm), and how it was found: the 0.1 %
    quantile of neighbouring MS1 centroid spacings (``mzs``: one ascending array per scan), at most
    ``MAX_RESOLUTION_PPM`` for a sparse run (see ``DENSE_SCAN_CENTROIDS``)."""
    spacing = np.concatenate([np.diff(m) / m[1:] * 1e6 for m in mzs if m.size > 1] or [np.array([20.0])])
    measured = float(np.quantile(spacing, 0.001))
    per_scan = float(np.median([m.size for m in mzs]))
    source = f"0.1 % quantile of neighbouring MS1 centroid spacings ({per_scan:.0f} centroids per scan, median)"
    if per_scan < DENSE_SCAN_CENTROIDS and measured > MAX_RESOLUTION_PPM:
        return MAX_RESOLUTION_PPM, (f"{MAX_RESOLUTION_PPM:g} ppm cap: a sparse run ({per_scan:.0f} centroids per MS1 "
                                    f"scan, median, < {DENSE_SCAN_CENTROIDS}) whose closest pairs ({measured:.1f} "
                                    "ppm) say which compounds it holds, not what it resolves")
    return measured, source


def persistent_traces(peaks: list[tuple[np.ndarray, np.ndarray]], tolerance_ppm: float) -> list[np.ndarray]:
    """Ions followed over consecutive MS1 scans (``peaks``: (m/z ascending, intensity) per scan): a centroid joins
    the trace of the previous scan's centroid when each is the other's nearest and they lie within
    ``tolerance_ppm`` (the run's resolution: closer ions would be one centroid). Returns the traces seen in at least
    ``MIN_TRACE_SCANS`` scans, each an array of rows (scan index, m/z, intensity)."""
    rows, prev_mz, prev_id, n_ids = [], np.empty(0), np.empty(0, dtype=int), 0
    for j, (mz, inten) in enumerate(peaks):
        ids = np.full(mz.size, -1)
        if mz.size and prev_mz.size:
            back = _nearest(prev_mz, mz)    # for each centroid, the previous scan's nearest
            ahead = _nearest(mz, prev_mz)   # and the other way round
            linked = (ahead[back] == np.arange(mz.size)) & (np.abs(prev_mz[back] - mz) <= tolerance_ppm * 1e-6 * mz)
            ids[linked] = prev_id[back[linked]]
        new = ids < 0
        ids[new] = np.arange(n_ids, n_ids + new.sum())
        n_ids += int(new.sum())
        rows.append(np.column_stack([ids, np.full(mz.size, j), mz, inten]))
        prev_mz, prev_id = mz, ids
    table = np.concatenate(rows) if rows else np.empty((0, 4))
    table = table[np.lexsort((table[:, 1], table[:, 0]))]
    starts = np.flatnonzero(np.r_[True, np.diff(table[:, 0]) != 0]) if table.size else np.empty(0, dtype=int)
    return [t[:, 1:] for t in np.split(table, starts[1:]) if len(t) >= MIN_TRACE_SCANS]


def _nearest(ref: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Index into ascending ``ref`` of each ``query`` value's nearest neighbour."""
    k = np.clip(np.searchsorted(ref, query), 1, max(ref.size - 1, 1))
    if ref.size == 1:
        return np.zeros(query.size, dtype=int)
    return np.where(np.abs(ref[k - 1] - query) <= np.abs(ref[k] - query), k - 1, k)


def mz_jitter(traces: list[np.ndarray], n_bins: int = 4) -> tuple[np.ndarray, np.ndarray, str]:
    """The scan-to-scan m/z jitter of persistent ions by intensity: (bin intensities ascending, sd in ppm per bin,
    source). The ppm differences of an ion's m/z between consecutive scans, in ``n_bins`` intensity quantile bins
    (intensity: geometric mean of the two centroids'); each bin's robust sd (1.4826 x MAD) / sqrt 2 is one
    centroid's. Fewer than ``MIN_PERSISTENT_IONS`` traces: the fallback ``MZ_JITTER_PPM`` alone."""
    if len(traces) < MIN_PERSISTENT_IONS:
        return (np.array([1.0]), np.array([MZ_JITTER_PPM]),
                f"fallback {MZ_JITTER_PPM:g} ppm (Orbitrap): {len(traces)} persistent ions (< {MIN_PERSISTENT_IONS})")
    diff, level = [], []
    for t in traces:  # a trace's rows are consecutive scans
        diff.append(np.diff(t[:, 1]) / t[:-1, 1] * 1e6)
        level.append(np.sqrt(t[1:, 2] * t[:-1, 2]))
    diff, level = np.concatenate(diff), np.concatenate(level)
    edges = np.quantile(level, np.linspace(0, 1, n_bins + 1))
    which = np.clip(np.searchsorted(edges, level, side="right") - 1, 0, n_bins - 1)
    mid, sd = [], []
    for b in range(n_bins):
        d = diff[which == b]
        if d.size:
            mid.append(float(np.median(level[which == b])))
            sd.append(float(1.4826 * np.median(np.abs(d - np.median(d))) / np.sqrt(2)))
    return np.array(mid), np.array(sd), (f"measured: {len(traces)} persistent ions (>= {MIN_TRACE_SCANS} consecutive "
                                         "MS1 scans), robust sd of scan-to-scan ppm differences / sqrt 2 in "
                                         f"{len(mid)} intensity bins")


def peak_widths(traces: list[np.ndarray], rts: np.ndarray, min_apex: float) -> tuple[tuple[float, float], str]:
    """FWHM range (s) of the run's chromatographic peaks: the 10-90 % quantiles over persistent ions (``traces``;
    ``rts``: the MS1 scans' RTs) whose trace rises from and falls below half its apex, with the apex at least
    ``min_apex`` (the 90 % quantile of MS1 centroid intensities: noise traces are excluded) and at least 3 scans
    at or above half height (a narrower peak's width is not measurable). Half-height crossings are interpolated
    linearly. Fewer than ``MIN_PEAKS`` such peaks: the fallback ``FWHM_S``."""
    widths = []
    for t in traces:
        inten, rt = t[:, 2], rts[t[:, 0].astype(int)]
        top = int(np.argmax(inten))
        half = inten[top] / 2.0
        if inten[top] < min_apex or inten[0] >= half or inten[-1] >= half:
            continue
        below = np.flatnonzero(inten < half)
        left, right = below[below < top].max(), below[below > top].min()  # the apex's half-height neighbours
        if right - left - 1 < 3:
            continue
        t_left = rt[left] + (half - inten[left]) / (inten[left + 1] - inten[left]) * (rt[left + 1] - rt[left])
        t_right = rt[right - 1] + (inten[right - 1] - half) / (inten[right - 1] - inten[right]) * (
            rt[right] - rt[right - 1])
        widths.append(t_right - t_left)
    if len(widths) < MIN_PEAKS:
        return FWHM_S, (f"fallback {FWHM_S[0]:g}-{FWHM_S[1]:g} s (Q Exactive QC runs): {len(widths)} complete "
                        f"peaks (< {MIN_PEAKS})")
    lo, hi = np.quantile(widths, [0.1, 0.9])
    return (float(lo), float(hi)), (f"measured: 10-90 % quantiles of the FWHM of {len(widths)} peaks of persistent "
                                    "ions (apex >= the 90 % quantile of MS1 centroid intensities)")


# the share of the first background's RT range every other background must also cover (outside it a run has no MS1
# scan to hold a spiked compound), and of its MS1 ions' m/z range (which follows the sample's composition as well as
# the scan window, so only a far narrower one is refused)
SHARED_RANGE = 0.9
SHARED_MZ_RANGE = 0.5


def check_backgrounds_match(backgrounds: list[Background], paths: list[Path]) -> None:
    """Raise InputError naming the runs when a background covers less than ``SHARED_RANGE`` of the first one's RT
    range or ``SHARED_MZ_RANGE`` of its MS1 m/z range: the compounds are placed on the first run's ranges and spiked
    into every sample, so a run of another method holds spiked MS/MS without MS1 behind it and the truth calls them
    present (trial AI: a 39 s TripleTOF excerpt paired with one of 18 s at m/z 288-297, half the samples' truth
    wrong)."""
    first = backgrounds[0]

    def covered(a: tuple[float, float], b: tuple[float, float]) -> float:
        return max(0.0, min(a[1], b[1]) - max(a[0], b[0])) / max(a[1] - a[0], 1e-9)

    for other, path in zip(backgrounds[1:], paths[1:], strict=True):
        rt, mz = covered(first.rt_range, other.rt_range), covered(first.mz_range, other.mz_range)
        if rt < SHARED_RANGE or mz < SHARED_MZ_RANGE:
            raise InputError(
                f"the --background runs are not of one method: {Path(paths[0]).name} spans RT "
                f"{first.rt_range[0]:.0f}-{first.rt_range[1]:.0f} s and m/z {first.mz_range[0]:.0f}-"
                f"{first.mz_range[1]:.0f}, {Path(path).name} RT {other.rt_range[0]:.0f}-{other.rt_range[1]:.0f} s "
                f"and m/z {other.mz_range[0]:.0f}-{other.mz_range[1]:.0f} ({rt:.0%} and {mz:.0%} of the first's "
                "ranges); the compounds are placed on the first run's ranges and spiked into every sample",
                file=str(path), fix="pass injections of one method (e.g. repeated injections of one pooled QC), or "
                                    "one background")


def warn_tof_calibration(paths: list[Path], calibration_ppm: float, default: float) -> None:
    """Log a warning when a background's header states a time-of-flight analyzer and ``calibration_ppm`` is the
    ``default`` (1 ppm, measured on the Q Exactive QC pair): a TOF without lock mass drifts by several ppm between
    runs, so the default tests the pipeline at an Orbitrap's calibration (trial AI: the real TripleTOF runs sat 3-5 ppm
    off, the spiked ions within 1)."""
    from ms2study.io.instrument import read_instrument

    tof = [Path(p).name for p in paths if read_instrument(p).time_of_flight]
    if tof and calibration_ppm == default:
        log.warning("the background run(s) %s state a time-of-flight analyzer, but --calibration-ppm is the default "
                    "%g ppm, an Orbitrap's run-to-run offset (the Q Exactive QC pair); a TOF without lock mass is "
                    "often 3-10 ppm off between runs: pass e.g. --calibration-ppm 5 to test the pipeline at your "
                    "instrument's calibration", ", ".join(tof), default)
