"""A spiked compound's MS/MS scan as a DDA instrument records it, not as the library holds it.

Three departures from the reference pattern, each larger the weaker the precursor (a chemist's trial found spiked
MS/MS to be the library pattern itself at any intensity: a compound at 1,200 counts was named at cosine 0.94 and
q 6e-4, as confidently as one at 300,000, so a spike-in study could not show how names hold up at low abundance):

- **Co-isolated background.** The quadrupole passes every ion within the isolation window (the background run's
  own MS2 window, ``isolation_half_widths``: +/-0.5 Da in the Q Exactive and TripleTOF runs of ../shared/data/mzml)
  at the scan's time, and they fragment beside the compound. Their intensity is the background's MS1 centroids in
  the window in the survey scan before the MS2 scan (as this sample acquired it); their fragments are a real MS/MS
  scan of the background (``chimeric_source``: within 30 s, the one whose precursor lies closest to the window's
  most intense background ion, so a co-isolated ion that the run fragmented brings its own spectrum; otherwise the
  nearest in time), scaled to that intensity times the run's MS2 gain, its peaks above the window dropped. The
  share of the isolated intensity that is background is written to the truth (``ms2_coisolated``). Real DDA spectra
  are often chimeric in this way (Houel et al. 2010, J. Proteome Res. 9:4152, for peptides); the model assumes the
  co-isolated ions fragment as efficiently as the compound.
- **Ion statistics.** Each fragment's intensity gets multiplicative noise of log-sd sqrt(0.1^2 + 0.25 x floor /
  intensity), ``floor`` the run's MS2 detection floor: 0.1 for strong peaks (the shot-to-shot noise used before),
  0.5 at the floor, as counting noise of a few ions there would give. An assumption, not measured on the runs.
- **Noise peaks.** The low peaks (below ``NOISE_PEAK_FLOORS`` x the floor) of the background MS/MS scan nearest in
  time, at their own intensities: a real scan's noise does not scale with the precursor, so it weighs more in a weak
  compound's spectrum (Q Exactive QC run: a median 22 peaks per MS2 scan, most of them near the floor).
- **Fragment m/z error.** Each fragment's m/z gets the background's measured MS1 m/z jitter at its intensity
  (``Background.mz_jitter_ppm``), as the precursor already did; the MS2 analyser's own error is assumed alike.

Peaks below the run's MS2 floor are then dropped, as before. Imports only numpy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DEFAULT_HALF_WIDTH_DA = 0.5   # a window the file does not state: the common 1 m/z isolation width
CHIMERIC_RT_S = 30.0          # how far in time a background MS/MS scan may lie to stand for a co-isolated ion
SHOT_NOISE_LOG_SD = 0.1       # strong peaks' shot-to-shot intensity noise (ln)
FLOOR_LOG_VARIANCE = 0.25     # ln-variance added at the MS2 floor, falling as floor / intensity
NOISE_PEAK_FLOORS = 3.0       # a background MS/MS peak below this many MS2 floors is taken as noise


@dataclass
class SampleScans:
    """The background's scans as one sample acquired them: MS1 (``ms1_rt`` ascending, ``ms1_peaks`` m/z and
    intensity arrays) and MS2 (``ms2_rt``, ``ms2_precursor`` m/z, ``ms2_peaks``)."""
    ms1_rt: np.ndarray
    ms1_peaks: list[tuple[np.ndarray, np.ndarray]]
    ms2_rt: np.ndarray
    ms2_precursor: np.ndarray
    ms2_peaks: list[tuple[np.ndarray, np.ndarray]]


def isolation_half_widths(template) -> tuple[float, float]:
    """The isolation window's (lower, upper) offsets in Da from a pyOpenMS MS2 spectrum's first precursor, or
    ``DEFAULT_HALF_WIDTH_DA`` each where the file states none (offsets 0)."""
    precursor = template.getPrecursors()[0]
    lower, upper = precursor.getIsolationWindowLowerOffset(), precursor.getIsolationWindowUpperOffset()
    return (lower, upper) if lower > 0 and upper > 0 else (DEFAULT_HALF_WIDTH_DA, DEFAULT_HALF_WIDTH_DA)


def chimeric_source(scans: SampleScans, t: float, ion_mz: float) -> int | None:
    """Index of the background MS/MS scan standing for the fragments of a co-isolated ion at ``ion_mz`` (m/z) at
    time ``t`` (s): among scans within ``CHIMERIC_RT_S``, the one whose precursor is closest to ``ion_mz``; else the
    scan nearest in time; None when the background has none."""
    if scans.ms2_rt.size == 0:
        return None
    near = np.flatnonzero(np.abs(scans.ms2_rt - t) <= CHIMERIC_RT_S)
    if near.size:
        return int(near[np.argmin(np.abs(scans.ms2_precursor[near] - ion_mz))])
    return int(np.argmin(np.abs(scans.ms2_rt - t)))


def recorded_fragments(bg, scans: SampleScans, precursor_mz: float, precursor_intensity: float, t: float,
                       frag_mz: np.ndarray, frag_rel: np.ndarray, window: tuple[float, float],
                       rs: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """The peaks of one spiked MS/MS scan (module docstring). ``bg``: the ``spikein_background.Background``
    (``ms2_gain``, ``ms2_floor``, ``mz_jitter_ppm``); ``precursor_mz``, ``precursor_intensity``: the compound's
    ion and its MS1 intensity at ``t`` (s); ``frag_mz``, ``frag_rel``: its reference pattern (relative
    intensities); ``window``: the isolation window's (lower, upper) offsets (Da).
    Returns (m/z ascending, intensity, mask of the compound's own peaks, co-isolated share 0-1), every peak at or
    above the MS2 floor; the compound's own peaks may all be below it (the caller then writes no scan)."""
    own = frag_rel / frag_rel.sum() * precursor_intensity * bg.ms2_gain
    log_sd = np.sqrt(SHOT_NOISE_LOG_SD ** 2 + FLOOR_LOG_VARIANCE * bg.ms2_floor / np.maximum(own, 1e-9))
    own = own * np.exp(log_sd * rs.standard_normal(own.size))
    mz = frag_mz * (1.0 + bg.mz_jitter_ppm(own) * 1e-6 * rs.standard_normal(own.size))
    keep = own >= bg.ms2_floor
    parts = [(mz[keep], own[keep], True)]  # (m/z, intensity, the compound's own) of each source of peaks
    share = 0.0
    j = int(np.searchsorted(scans.ms1_rt, t, side="right")) - 1
    if j >= 0:
        ms1_mz, ms1_int = scans.ms1_peaks[j]
        inside = (ms1_mz >= precursor_mz - window[0]) & (ms1_mz <= precursor_mz + window[1])
        coisolated = float(ms1_int[inside].sum())
        share = coisolated / (coisolated + precursor_intensity)
        source = chimeric_source(scans, t, float(ms1_mz[inside][np.argmax(ms1_int[inside])])) \
            if coisolated > 0 else None
        if source is not None and scans.ms2_peaks[source][1].size:
            other_mz, other_int = scans.ms2_peaks[source]
            other_int = other_int.astype(np.float64) * (coisolated * bg.ms2_gain / float(other_int.sum()))
            take = (other_int >= bg.ms2_floor) & (other_mz <= precursor_mz + window[1])
            parts.append((other_mz[take], other_int[take], False))
    if scans.ms2_rt.size:  # the noise of the nearest background scan, at its own level
        noise_mz, noise_int = scans.ms2_peaks[int(np.argmin(np.abs(scans.ms2_rt - t)))]
        take = (noise_int < NOISE_PEAK_FLOORS * bg.ms2_floor) & (noise_int >= bg.ms2_floor) & (
            noise_mz <= precursor_mz + window[1])
        parts.append((noise_mz[take], noise_int[take].astype(np.float64), False))
    mz = np.concatenate([m for m, _, _ in parts])
    inten = np.concatenate([i for _, i, _ in parts])
    is_own = np.concatenate([np.full(m.size, own_peaks) for m, _, own_peaks in parts])
    order = np.argsort(mz, kind="stable")
    return mz[order], inten[order], is_own[order], share
