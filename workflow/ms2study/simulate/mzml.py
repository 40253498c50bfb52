"""One simulated LC-MS/MS run (DDA, positive mode) as a pyOpenMS experiment, and writing it as mzML.

A run is built from the study's compounds and one sample's abundances: a smooth retention-time drift, a per-run
calibration error, every compound's isotopes as tailed elution profiles, persistent chemical background ions,
electronic noise and intensity-dependent m/z error in MS1; data-dependent precursor choice (top-N, dynamic
exclusion, no 13C peaks) and MS2 spectra from everything co-isolated in the window, through a detector model
(``ms2_detection``, shared with :func:`ms2study.simulate.study.simulate_features`). A batch study's runs carry
``ExtraIons`` too: adducts and in-source fragments co-eluting with their compound, and eluting contaminants. With
``resolution_ppm`` > 0, MS1 ions closer than that are one centroid (``spikein_variation.merge_unresolved``), as an
instrument that cannot resolve them reports them. May import ``ms2study.core`` and the simulate modules
``params``, ``compounds`` and ``spikein_variation``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyopenms as oms

from ms2study.core.atomic import atomic_path
from ms2study.simulate.compounds import Compound
from ms2study.simulate.params import stream
from ms2study.simulate.spikein_variation import merge_unresolved

C13_SPACING = 1.0033548378  # 13C - 12C: the isotope spacing feature finders expect


def _drift(rs: np.random.Generator, p: dict) -> tuple[Callable[[np.ndarray], np.ndarray], dict]:
    """A smooth, monotonic per-run retention-time distortion: shift, stretch about the middle, and a gentle warp."""
    shift = p["rt_shift_sd_s"] * rs.standard_normal()
    stretch = p["rt_stretch_sd"] * rs.standard_normal()
    warp = p["rt_warp_sd_s"] * rs.standard_normal()
    half = p["rt_max_s"] / 2.0

    def apply(rt: np.ndarray) -> np.ndarray:
        return rt + shift + stretch * (rt - half) + warp * np.sin(np.pi * rt / p["rt_max_s"])

    return apply, {"shift_s": shift, "stretch": stretch, "warp_s": warp}


@dataclass
class ExtraIons:
    """Ions of one run beyond the compounds' own: adducts and in-source fragments of a compound (``compound`` its
    index: same apex and peak shape in the run, nothing when the compound is absent) and contaminants (``compound``
    -1: their own undrifted ``rt_s``, ``fwhm_s`` and ``tailing``; the run's RT drift applies). ``height``: apex
    height of the monoisotopic ion in this run; ``isotopes``: relative isotope heights per ion (first 1.0);
    ``spectra``: (m/z, relative intensity) of each ion's fragments when isolated."""
    mz: np.ndarray
    height: np.ndarray
    compound: np.ndarray
    rt_s: np.ndarray
    fwhm_s: np.ndarray
    tailing: np.ndarray
    isotopes: list[np.ndarray]
    spectra: list[tuple[np.ndarray, np.ndarray]]


@dataclass
class _Ions:
    """Every MS1 ion of a run, flattened: compound isotopes, then extra ions (adducts, contaminants)."""
    mz: np.ndarray
    apex: np.ndarray
    height: np.ndarray
    sigma_l: np.ndarray
    sigma_r: np.ndarray
    compound: np.ndarray   # compound index (an extra ion's: its compound's, -1 for a contaminant)
    isotope: np.ndarray    # 0 = monoisotopic
    spectrum: np.ndarray | None = None  # extra ions: index into ``spectra``; -1: the compound's own spectrum
    spectra: list | None = None


def _profile(t: float, ions: _Ions, idx: np.ndarray) -> np.ndarray:
    """Relative elution profile (apex 1.0) of ions ``idx`` at time ``t``: a Gaussian with a wider right half."""
    d = t - ions.apex[idx]
    sigma = np.where(d < 0, ions.sigma_l[idx], ions.sigma_r[idx])
    return np.exp(-0.5 * (d / sigma) ** 2)


def chemical_background(seed: int, p: dict) -> tuple[np.ndarray, np.ndarray, list[tuple[np.ndarray, np.ndarray]]]:
    """Chemical noise shared by all runs of a study: (m/z, level, fragments) of ``n_background_ions`` ions, each
    with a small fragment pattern (m/z, relative intensity), for :func:`simulate_run`'s ``background``."""
    rng = stream(seed, 3)
    n = p["n_background_ions"]
    lo, hi = p["mz_range"]
    nominal = rng.uniform(lo + 20, min(hi, 900.0), n)
    mz = nominal + 0.0005 * nominal  # typical positive mass defect of organic background (plasticisers, PEG...)
    b_lo, b_hi = p["background_intensity"]
    level = np.exp(rng.uniform(np.log(b_lo), np.log(b_hi), n))
    frags = []
    for m in mz:
        k = int(rng.integers(3, 7))
        f_mz = np.sort(rng.uniform(50.0, m - 15.0, k)).round(4)
        f_int = rng.uniform(0.1, 1.0, k)
        frags.append((f_mz, f_int))
    return mz, level, frags


def _select_precursors(obs_mz: np.ndarray, peak_int: np.ndarray, exclusion_mz: list[float], p: dict) -> list[int]:
    """Data-dependent precursor choice of one MS1 scan: indices of the ``top_n`` most intense peaks at or above
    ``dda_min_intensity`` that are neither within 10 ppm of a dynamically excluded m/z nor the 13C peak of a more
    intense peak. The exclusion and isotope tests are vectorised (thousands of candidates per scan in the realistic
    profile); the decisions are those of the one-candidate-at-a-time loop they replace."""
    cand = np.nonzero(peak_int >= p["dda_min_intensity"])[0]
    cand = cand[np.argsort(-peak_int[cand], kind="stable")]
    if cand.size and exclusion_mz:
        m = obs_mz[cand]
        excluded = (np.abs(m[:, None] - np.asarray(exclusion_mz)[None, :]) <= 10e-6 * m[:, None]).any(axis=1)
        cand = cand[~excluded]
    order = np.argsort(obs_mz, kind="stable")
    sorted_mz = obs_mz[order]
    chosen: list[int] = []
    for k in cand:
        m = obs_mz[k]
        if any(abs(m - obs_mz[c]) <= 10e-6 * m for c in chosen):
            continue
        target = m - C13_SPACING
        # a slightly wider slice by binary search, then the exact test on it
        lo, hi = np.searchsorted(sorted_mz, [target - 20e-6 * m, target + 20e-6 * m])
        near = order[lo:hi]
        lighter = near[np.abs(obs_mz[near] - target) <= 10e-6 * m]
        if np.any(peak_int[lighter] > peak_int[k]):
            continue
        chosen.append(int(k))
        if len(chosen) == p["top_n"]:
            break
    return chosen


def ms2_detection(f_mz: np.ndarray, f_int: np.ndarray, precursor_mz: float, calib_ppm: float,
                  rs: np.random.Generator, p: dict) -> tuple[np.ndarray, np.ndarray]:
    """What the detector records of a fragment ion population: (m/z, intensity) of the peaks kept.

    ``f_mz``/``f_int`` are the fragment ions entering the analyser (m/z; ion current, arbitrary units, the same
    scale as MS1 apex heights times ``ms2_gain``). Applied in order: multiplicative intensity noise
    (``ms2_intensity_cv``), counting noise that grows with sqrt(intensity x ``ms2_noise_level``) (weak fragments
    scatter more), m/z error (per-run calibration plus ``ms2_mz_error_ppm``), Poisson(``ms2_noise_peaks``) random
    noise peaks below the precursor, and the centroiding floor 0.5 x ``ms2_noise_level``. Weak precursors thus
    lose their small fragments: the few-peak spectra of low-abundance compounds. Shared by the mzML simulation and
    :func:`simulate_features`, so both give spectra of the same quality.
    """
    f_int = f_int * np.exp(p["ms2_intensity_cv"] * rs.standard_normal(f_int.size))
    # counting noise: weak fragments scatter more
    counting_sd = 0.3 * np.sqrt(np.maximum(f_int, 0.0) * p["ms2_noise_level"])
    f_int = f_int + counting_sd * rs.standard_normal(f_int.size)
    f_mz = f_mz * (1.0 + 1e-6 * (calib_ppm + p["ms2_mz_error_ppm"] * rs.standard_normal(f_mz.size)))
    n_sp = int(rs.poisson(p["ms2_noise_peaks"]))
    s_mz = rs.uniform(50.0, precursor_mz + 5.0, n_sp)
    s_int = p["ms2_noise_level"] * rs.gamma(2.0, 0.5, n_sp)
    all_mz = np.concatenate([f_mz, s_mz])
    all_int = np.concatenate([f_int, s_int])
    keep = all_int >= 0.5 * p["ms2_noise_level"]
    return all_mz[keep], all_int[keep]


def _run_ions(compounds: list[Compound], abundance: np.ndarray, apex_rt: np.ndarray,
              rs: np.random.Generator, extra: ExtraIons | None = None,
              drift: Callable[[np.ndarray], np.ndarray] | None = None) -> _Ions:
    """Every isotope ion of the compounds present in a run, with this run's peak widths (one draw per compound),
    then the ``extra`` ions (no draws: a compound's adducts share its peak; contaminants elute at ``drift(rt)``)."""
    mz_l, apex_l, h_l, sl_l, sr_l, comp_l, iso_l = [], [], [], [], [], [], []
    sigma_of: dict[int, float] = {}
    for i, c in enumerate(compounds):
        if abundance[i] <= 0:
            continue
        fwhm = c.fwhm_s * float(np.exp(0.05 * rs.standard_normal()))
        sigma_l = fwhm / (1.17741 * (2.0 + c.tailing))
        sigma_of[i] = sigma_l
        for k, ratio in enumerate(c.isotope_ratios):
            mz_l.append(c.mz + k * C13_SPACING)
            apex_l.append(apex_rt[i])
            h_l.append(abundance[i] * ratio)
            sl_l.append(sigma_l)
            sr_l.append(sigma_l * (1.0 + c.tailing))
            comp_l.append(i)
            iso_l.append(k)
    if extra is None:
        return _Ions(np.array(mz_l), np.array(apex_l), np.array(h_l), np.array(sl_l), np.array(sr_l),
                     np.array(comp_l, dtype=np.int64), np.array(iso_l, dtype=np.int64))
    spec_l = [-1] * len(mz_l)
    own_apex = drift(np.asarray(extra.rt_s, dtype=np.float64)) if drift is not None else extra.rt_s
    for e in range(len(extra.mz)):
        i = int(extra.compound[e])
        if extra.height[e] <= 0 or (i >= 0 and i not in sigma_of):
            continue
        if i >= 0:
            apex, sigma_l, tail = apex_rt[i], sigma_of[i], compounds[i].tailing
        else:
            apex, tail = own_apex[e], extra.tailing[e]
            sigma_l = extra.fwhm_s[e] / (1.17741 * (2.0 + tail))
        for k, ratio in enumerate(extra.isotopes[e]):
            mz_l.append(extra.mz[e] + k * C13_SPACING)
            apex_l.append(apex)
            h_l.append(extra.height[e] * ratio)
            sl_l.append(sigma_l)
            sr_l.append(sigma_l * (1.0 + tail))
            comp_l.append(i)
            iso_l.append(k)
            spec_l.append(e)
    return _Ions(np.array(mz_l), np.array(apex_l), np.array(h_l), np.array(sl_l), np.array(sr_l),
                 np.array(comp_l, dtype=np.int64), np.array(iso_l, dtype=np.int64),
                 np.array(spec_l, dtype=np.int64), extra.spectra)


def _spectrum(scan_no: int, level: int, rt: float, mz: np.ndarray, inten: np.ndarray) -> oms.MSSpectrum:
    """A positive-mode centroid spectrum ``scan={scan_no}`` with its peaks sorted by m/z."""
    spec = oms.MSSpectrum()
    spec.setMSLevel(level)
    spec.setRT(float(rt))
    spec.setNativeID(f"scan={scan_no}")
    spec.setType(oms.SpectrumSettings.SpectrumType.CENTROID)
    settings = spec.getInstrumentSettings()
    settings.setPolarity(oms.IonSource.Polarity.POSITIVE)
    spec.setInstrumentSettings(settings)
    order = np.argsort(mz, kind="stable")
    spec.set_peaks((mz[order].astype(np.float64), inten[order].astype(np.float32)))
    return spec


def _precursor(mz: float, intensity: float, half_window: float) -> oms.Precursor:
    """The HCD (30) precursor of an MS2 scan, charge 1, isolation window ``mz`` +- ``half_window``."""
    precursor = oms.Precursor()
    precursor.setMZ(float(mz))
    precursor.setCharge(1)
    precursor.setIntensity(float(intensity))
    precursor.setIsolationWindowLowerOffset(half_window)
    precursor.setIsolationWindowUpperOffset(half_window)
    precursor.setActivationMethods({oms.Precursor.ActivationMethod.HCD})
    precursor.setActivationEnergy(30.0)
    return precursor


def _isolated_fragments(prec: float, t: float, active: np.ndarray, ions: _Ions, compounds: list[Compound],
                        background: tuple, bg_int: np.ndarray, p: dict) -> tuple[np.ndarray, np.ndarray, int]:
    """Fragment ions entering the analyser when ``prec`` is isolated at time ``t``: every co-isolated compound ion
    (monoisotopic only unless ``coisolate_isotopes``) and background ion, scaled by its current intensity, the
    window's edge transmission and ``ms2_gain``. Returns (m/z, ion current, index of the compound contributing
    most or -1)."""
    half_window = p["isolation_window_da"] / 2.0
    bg_mz, _, bg_frags = background
    frag_mz, frag_int = [], []
    mono = (ions.isotope[active] == 0) | bool(p.get("coisolate_isotopes", False))
    near = active[mono & (np.abs(ions.mz[active] - prec) <= half_window)]
    now = ions.height[near] * _profile(t, ions, near)
    best, best_int = -1, 0.0
    for ion, amount in zip(near, now, strict=True):
        d = abs(ions.mz[ion] - prec)
        trans = 1.0 if d <= 0.35 else max(0.0, 1.0 - (d - 0.35) / 0.3)
        scale = amount * trans * p["ms2_gain"]
        own = ions.spectrum is None or ions.spectrum[ion] < 0
        if own:
            c = compounds[ions.compound[ion]]
            frag_mz.append(c.spectrum_mz)
            frag_int.append(scale * c.spectrum_intensity)
        else:  # an adduct, in-source fragment or contaminant: its own fragments
            s_mz, s_int = ions.spectra[ions.spectrum[ion]]
            frag_mz.append(s_mz)
            frag_int.append(scale * s_int)
        if own and scale > best_int:
            best, best_int = int(ions.compound[ion]), scale
    for b in np.nonzero((bg_mz >= prec - half_window) & (bg_mz <= prec + half_window))[0]:
        f_mz, f_int = bg_frags[b]
        frag_mz.append(np.append(f_mz, bg_mz[b]))
        frag_int.append(bg_int[b] * p["ms2_gain"] * np.append(f_int, 0.3))
    f_mz = np.concatenate(frag_mz) if frag_mz else np.empty(0)
    f_int = np.concatenate(frag_int) if frag_int else np.empty(0)
    return f_mz, f_int, best


def simulate_run(compounds: list[Compound], abundance: np.ndarray, seed: int, sample_index: int, p: dict,
                 background: tuple, extra: ExtraIons | None = None,
                 rs: np.random.Generator | None = None) -> tuple[oms.MSExperiment, dict]:
    """One LC-MS/MS run of ``compounds`` at ``abundance`` (monoisotopic apex heights, 0 when absent) with the
    study's ``background`` (:func:`chemical_background`): MS1 scans every ``ms1_scan_time_s`` and up to ``top_n``
    MS2 scans after each, on the drifted retention times. Returns the pyOpenMS experiment and the truth: ``apex_rt``
    (s) and ``ms2_count`` per compound, ``drift`` and ``calibration_ppm`` of the run, and with ``extra`` ions
    (:class:`ExtraIons`) ``extra_apex_rt`` (s, per extra ion). Draws come from the stream (seed, 4,
    ``sample_index``), or from ``rs`` when given (QC and blank runs of a batch study)."""
    rs = stream(seed, 4, sample_index) if rs is None else rs
    drift, drift_info = _drift(rs, p)
    calib_ppm = p["calibration_error_ppm"] * rs.standard_normal()
    apex_rt = drift(np.array([c.rt_s for c in compounds]))
    ions = _run_ions(compounds, abundance, apex_rt, rs, extra, drift)
    bg_mz, bg_level, _ = background
    reach = 6.0 * ions.sigma_r
    mz_lo, mz_hi = p["mz_range"]
    floor = p["centroid_floor"]
    exp = oms.MSExperiment()
    exclusion_mz: list[float] = []
    exclusion_until: list[float] = []
    ms2_count = np.zeros(len(compounds), dtype=np.int64)
    t = 0.0
    while t < p["rt_max_s"]:
        # --- MS1
        active = np.nonzero(np.abs(t - ions.apex) < reach)[0]
        inten = ions.height[active] * _profile(t, ions, active) * np.exp(0.04 * rs.standard_normal(active.size))
        keep = inten >= floor
        active, inten = active[keep], inten[keep]
        bg_int = bg_level * (1.0 + 0.15 * rs.standard_normal(bg_level.size)).clip(0.2)
        n_noise = int(rs.poisson(p["electronic_noise_peaks"]))
        noise_mz = rs.uniform(mz_lo, mz_hi, n_noise)
        noise_int = p["electronic_noise_level"] * rs.gamma(2.0, 0.5, n_noise)
        keep = noise_int >= floor
        true_mz = np.concatenate([ions.mz[active], bg_mz])
        peak_int = np.concatenate([inten, bg_int])
        if p["resolution_ppm"] > 0:  # unresolved ions (isomers, isobars) are one profile peak, one centroid
            true_mz, peak_int = merge_unresolved(true_mz, peak_int, p["resolution_ppm"])
        # m/z error grows as intensity falls (fewer ions, poorer centroid)
        sd_ppm = np.minimum(4.0, p["mz_error_ppm"] * (1.0 + np.sqrt(1e4 / peak_int)))
        obs_mz = true_mz * (1.0 + 1e-6 * (calib_ppm + sd_ppm * rs.standard_normal(true_mz.size)))
        all_mz = np.concatenate([obs_mz, noise_mz[keep]])
        all_int = np.concatenate([peak_int, noise_int[keep]])
        exp.addSpectrum(_spectrum(exp.getNrSpectra() + 1, 1, t, all_mz, all_int))

        # --- precursor selection: top N above threshold, not excluded, not an isotope of a stronger peak
        live = [k for k, until in enumerate(exclusion_until) if until > t]
        exclusion_mz = [exclusion_mz[k] for k in live]
        exclusion_until = [exclusion_until[k] for k in live]
        chosen = _select_precursors(obs_mz, peak_int, exclusion_mz, p)
        for k in chosen:
            exclusion_mz.append(float(obs_mz[k]))
            exclusion_until.append(t + p["dynamic_exclusion_s"])

        # --- MS2 scans
        t_ms2 = t + p["ms1_scan_time_s"]
        for k in chosen:
            f_mz, f_int, best = _isolated_fragments(obs_mz[k], t_ms2, active, ions, compounds, background, bg_int, p)
            if best >= 0:
                ms2_count[best] += 1
            spec = _spectrum(exp.getNrSpectra() + 1, 2, t_ms2, *ms2_detection(f_mz, f_int, obs_mz[k], calib_ppm, rs, p))
            spec.setPrecursors([_precursor(obs_mz[k], peak_int[k], p["isolation_window_da"] / 2.0)])
            exp.addSpectrum(spec)
            t_ms2 += p["ms2_scan_time_s"]
        t = t_ms2
    truth = {"apex_rt": apex_rt, "ms2_count": ms2_count, "drift": drift_info, "calibration_ppm": calib_ppm}
    if extra is not None:
        own = drift(np.asarray(extra.rt_s, dtype=np.float64))
        truth["extra_apex_rt"] = np.where(extra.compound >= 0, apex_rt[np.maximum(extra.compound, 0)], own)
    return exp, truth


def write_mzml(exp: oms.MSExperiment, path: Path) -> None:
    """Write ``exp`` to ``path`` atomically: zlib-compressed, 32-bit intensities (pyOpenMS ``MzMLFile``)."""
    mzml = oms.MzMLFile()
    options = mzml.getOptions()
    options.setCompression(True)        # zlib: keeps a 12-sample study at a few MB per file
    options.setIntensity32Bit(True)
    mzml.setOptions(options)
    with atomic_path(path) as tmp:
        mzml.store(str(tmp), exp)
