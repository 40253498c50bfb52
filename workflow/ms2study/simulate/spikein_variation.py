"""Per-sample variation of a spike-in study (:mod:`ms2study.simulate.spikein`): the intensity field over m/z and
retention time with per-feature sds, the retention-time drift and mass calibration offset of each sample, the
check that a drift keeps the scans in order, and the merging of ions the instrument cannot resolve. The numbers and
their sources are in the docstring of :mod:`ms2study.simulate.spikein`. Imports ``core`` and ``simulate.params``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ms2study.core.errors import InputError
from ms2study.simulate.params import DEFAULT_PARAMS, REALISTIC_PARAMS, stream

_REALISTIC = {**DEFAULT_PARAMS, **REALISTIC_PARAMS}  # the mzML simulator's realistic profile
SAMPLE_FACTOR_LOG_SD = _REALISTIC["sample_factor_log_sd"]   # 0.2
FIELD_LOG_SD = _REALISTIC["biological_log_sd"]              # 0.45: median of the per-feature ln-sds
FIELD_SD_SPREAD = _REALISTIC["biological_log_sd_spread"]    # 0.4: their ln-sd (10-90 %: 0.27-0.75)
# Correlation length of the field in m/z: ions 0.05 Da or more apart vary independently (correlation < 0.05), as
# different compounds of a real study do; a compound's isotope peaks share its factor through isotope_keys (the
# field is read at the monoisotopic m/z of each centroid's isotope chain). Until session 13 it was 5 Da, which made
# every co-eluting ion within a few Da co-vary like one compound's isotopes (benchmarks/README.md, "Adduct check").
FIELD_LENGTH_DA = 0.02
FIELD_LENGTH_S = 10.0           # and in RT: a feature (FWHM 2-4 s) keeps its shape, features 10 s apart differ
# Isotope steps a background centroid's chain follows down to its monoisotopic peak (Da): 13C, 13C2, 34S, 37Cl, 81Br
ISOTOPE_STEPS_DA = (1.003355, 2.006710, 1.995796, 1.997050, 1.997953)
ISOTOPE_KEY_PPM = 10.0          # tolerance of a step (the runs' scan-to-scan m/z jitter is 0.7-2.8 ppm)
RT_DRIFT_S = _REALISTIC["rt_shift_sd_s"]            # sd of the per-sample RT shift (s); stretch and warp scale with it
CALIBRATION_PPM = _REALISTIC["calibration_error_ppm"]  # sd of the per-sample m/z calibration offset (ppm)
# In a sparse run, ions closer than this are never taken as one centroid, whatever its spacings say (its closest pairs
# are far apart by chance; a dense run's own spacings decide: spikein_background.DENSE_SCAN_CENTROIDS): about one
# peak width at m/z 200 of an Orbitrap at 35k-70k resolution (14-29 ppm) or below.
MAX_RESOLUTION_PPM = 20.0
# Purposes of ms2study.simulate.params.stream used here (numbers free in that list).
_SAMPLE, _STUDY = 41, 43
log = logging.getLogger(__name__)


def _field(rs: np.random.Generator, n_terms: int = 200):
    """A smooth random field over (m/z, RT s): unit variance, Gaussian correlation with lengths FIELD_LENGTH_DA and
    FIELD_LENGTH_S (random Fourier features, Rahimi & Recht 2007). Returns g(mz, rt) (broadcast shapes)."""
    omega_mz = rs.standard_normal(n_terms) / FIELD_LENGTH_DA
    omega_rt = rs.standard_normal(n_terms) / FIELD_LENGTH_S
    phase = rs.uniform(0, 2 * np.pi, n_terms)

    def g(mz, rt):
        mz, rt = np.broadcast_arrays(np.asarray(mz, dtype=np.float64), np.asarray(rt, dtype=np.float64))
        return np.sqrt(2.0 / n_terms) * np.cos(np.multiply.outer(mz, omega_mz) + np.multiply.outer(rt, omega_rt)
                                               + phase).sum(axis=-1)
    return g


def isotope_keys(mz: np.ndarray, intensity: np.ndarray) -> np.ndarray:
    """For each centroid of one MS1 scan (``mz`` in Da, ``intensity``; same shape, any order) the m/z of the
    monoisotopic peak of its isotope chain: a centroid with a more intense one ``ISOTOPE_STEPS_DA`` below it (within
    ``ISOTOPE_KEY_PPM``) takes that one's key, in ascending m/z, so M+1, M+2, ... of a compound all key to its M.
    The rest key to themselves. The per-sample field is read at the keys, so one compound's isotopes share one
    factor while other ions vary independently. Which background ions are one compound is not known; this reads it
    from the scan as an isotope-pattern finder would (chance chains need a weaker ion exactly one step above: at
    ~1 centroid per Da and 10 ppm, under 1 % of ions)."""
    mz = np.asarray(mz, dtype=np.float64)
    intensity = np.asarray(intensity, dtype=np.float64)
    order = np.argsort(mz, kind="stable")
    sorted_mz, sorted_int = mz[order], intensity[order]
    n = sorted_mz.size
    parent = np.full(n, -1)
    for step in ISOTOPE_STEPS_DA:  # the first step that finds a more intense peak below wins
        target = sorted_mz - step
        right = np.clip(np.searchsorted(sorted_mz, target), 0, max(n - 1, 0))
        best = np.full(n, -1)
        for cand in (np.clip(right - 1, 0, None), right):
            ok = ((np.abs(sorted_mz[cand] - target) <= ISOTOPE_KEY_PPM * 1e-6 * sorted_mz)
                  & (sorted_int[cand] > sorted_int) & (cand < np.arange(n)))
            better = ok & ((best < 0) | (sorted_int[cand] > sorted_int[np.maximum(best, 0)]))
            best = np.where(better, cand, best)
        parent = np.where((parent < 0) & (best >= 0), best, parent)
    root = np.where(parent >= 0, parent, np.arange(n))
    for _ in range(64):  # follow each chain down to its monoisotopic peak (pointer jumping)
        nxt = root[root]
        if np.array_equal(nxt, root):
            break
        root = nxt
    out = np.empty(n)
    out[order] = sorted_mz[root]
    return out


@dataclass
class Variation:
    """One sample's variation (see the module docstring): ``log_factor(mz, rt)`` the ln of its intensity factor at
    an undrifted location, ``drift(rt)`` its acquired RT (s) of an undrifted one, ``calibration_ppm`` its m/z
    offset, and the drift's parts (``drift_info``: shift_s, stretch, warp_s) for simulation.json."""
    factor: float
    log_factor: Callable
    drift: Callable
    calibration_ppm: float
    drift_info: dict


def variation(seed: int, sample_index: int, rt_range: tuple[float, float], rt_drift_s: float = RT_DRIFT_S,
               calibration_ppm: float = CALIBRATION_PPM) -> tuple[np.random.Generator, Variation]:
    """(the sample's random stream after its variation was drawn, its Variation). The per-feature ln-sd field is
    the study's (seed only), so a feature varies by the same sd in every sample."""
    rs = stream(seed, _SAMPLE, sample_index)
    factor = float(np.exp(SAMPLE_FACTOR_LOG_SD * rs.standard_normal()))
    g = _field(rs)
    spread = _field(stream(seed, _STUDY))
    shift, stretch, warp = rt_drift_s * rs.standard_normal(3) * np.array([1.0, 0.002, 0.5])
    calibration = calibration_ppm * float(rs.standard_normal())
    lo, hi = rt_range
    middle, span = (lo + hi) / 2.0, max(hi - lo, 1.0)

    def log_factor(mz, rt):
        return np.log(factor) + FIELD_LOG_SD * np.exp(FIELD_SD_SPREAD * spread(mz, rt)) * g(mz, rt)

    def drift(rt):
        rt = np.asarray(rt, dtype=np.float64)
        return rt + shift + stretch * (rt - middle) + warp * np.sin(np.pi * (rt - lo) / span)

    return rs, Variation(factor, log_factor, drift, calibration,
                         {"shift_s": float(shift), "stretch": float(stretch), "warp_s": float(warp)})


def check_drift(scan_rts: np.ndarray, rt_range: tuple[float, float], ids: list[str], seed: int, rt_drift_s: float,
                calibration_ppm: float) -> None:
    """Refuse (InputError naming --rt-drift-s and the sample) a drift that would put a sample's scans (``scan_rts``, s)
    out of order or before 0 s; warn when the calibration offset's sd exceeds ``MAX_RESOLUTION_PPM`` (no mass
    spectrometer the pipeline's 10-ppm tolerances are meant for drifts that far)."""
    rts = np.sort(np.asarray(scan_rts, dtype=np.float64))
    for i, sid in enumerate(ids):
        drifted = variation(seed, i, rt_range, rt_drift_s, calibration_ppm)[1].drift(rts)
        if np.any(np.diff(drifted) < 0) or drifted.min() < 0:
            span = rt_range[1] - rt_range[0]
            raise InputError(f"--rt-drift-s {rt_drift_s:g} moves sample {sid}'s scans out of order or before 0 s on "
                             f"this {span:.0f}-s run", fix=f"use a smaller --rt-drift-s (a few percent of the run "
                                                           f"length, e.g. {max(span / 30, 0.1):.1f})")
    if calibration_ppm > MAX_RESOLUTION_PPM:
        log.warning("--calibration-ppm %g: a mass calibration that drifts by tens of ppm between runs is far "
                    "outside an accurate-mass instrument's (1-3 ppm); linking and identification use 10-ppm windows",
                    calibration_ppm)


def merge_unresolved(mz: np.ndarray, intensity: np.ndarray, resolution_ppm: float) -> tuple[np.ndarray, np.ndarray]:
    """Centroids (any order) with neighbours closer than ``resolution_ppm`` merged into one, as an instrument that
    cannot resolve them reports a single centroid: intensities summed, m/z their intensity-weighted mean. Neighbours
    chain (single linkage: three ions 15 ppm apart in a row become one centroid), and the width is one ppm value at
    every m/z (an Orbitrap's ppm width grows with m/z): both simplifications. Returns (m/z ascending, intensity)."""
    order = np.argsort(mz, kind="stable")
    mz, intensity = np.asarray(mz, np.float64)[order], np.asarray(intensity, np.float64)[order]
    if mz.size < 2:
        return mz, intensity
    new_cluster = np.r_[True, np.diff(mz) > resolution_ppm * 1e-6 * mz[1:]]
    label = np.cumsum(new_cluster) - 1
    total = np.bincount(label, weights=intensity)
    centre = np.bincount(label, weights=intensity * mz) / np.where(total > 0, total, 1.0)
    first, size = mz[new_cluster], np.bincount(label)
    return np.where((size > 1) & (total > 0), centre, first), total  # a lone centroid keeps its m/z exactly
