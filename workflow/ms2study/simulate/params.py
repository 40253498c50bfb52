"""Parameters of a simulated study and its random streams.

Holds the two profiles' settings (``DEFAULT_PARAMS`` for the demo, ``REALISTIC_PARAMS`` layered on top for
``--profile realistic``; the realistic numbers' sources are tabulated in the docstring of
:mod:`ms2study.simulate.study`), the batch-acquisition keys both profiles accept (``BATCH_PARAMS``; their defaults
switch the acquisition off, so default studies are those of before), their validation (``merge_params``) and
``stream``, the one way the simulator derives an independent random stream from the seed. May import
``ms2study.core`` only.
"""

from __future__ import annotations

import numpy as np

from ms2study.core.errors import InputError
from ms2study.core.params import overlay

DEFAULT_PARAMS: dict = {
    "rt_max_s": 600.0,               # run length
    "rt_margin_s": 30.0,             # no compound elutes within this distance of either end
    "min_rt_separation_s": 32.0,     # compounds within isomer_ppm elute at least this far apart
    "isomer_ppm": 20.0,
    "mz_range": [50.0, 1000.0],      # MS1 scan range
    "ms1_scan_time_s": 0.4,
    "ms2_scan_time_s": 0.12,
    "top_n": 5,
    "dynamic_exclusion_s": 10.0,
    "isolation_window_da": 1.0,
    "dda_min_intensity": 25000.0,    # precursor selection threshold
    "electronic_noise_level": 1000.0,  # mean intensity of random MS1 noise peaks; above_noise = 10x this
    "electronic_noise_peaks": 60,      # mean number of random noise peaks per MS1 scan
    "centroid_floor": 300.0,           # peaks below this are not written (instrument's centroiding threshold)
    "n_background_ions": 60,           # chemical noise: ions present throughout the run
    "background_intensity": [3000.0, 15000.0],
    "mz_error_ppm": 1.5,             # random MS1 m/z error of intense peaks (grows at low intensity)
    "resolution_ppm": 0.0,           # MS1 ions closer than this are one centroid (summed); 0: every ion its own
    "calibration_error_ppm": 1.0,    # per-run systematic m/z offset (standard deviation)
    "ms2_mz_error_ppm": 3.0,
    "ms2_intensity_cv": 0.25,        # multiplicative fragment intensity noise
    "ms2_gain": 0.3,                 # fragment ion current per unit of isolated precursor intensity
    "ms2_noise_level": 100.0,
    "ms2_noise_peaks": 15,
    "fwhm_s": [4.0, 8.0],
    "tailing": [0.15, 0.6],          # right half-width exceeds the left by this fraction
    "rt_shift_sd_s": 2.0,            # per-run RT drift: shift, stretch (relative), smooth warp amplitude
    "rt_stretch_sd": 0.004,
    "rt_warp_sd_s": 1.0,
    "median_abundance": 200000.0,    # apex height of the monoisotopic peak (study median)
    "abundance_log_sd": 1.2,         # spread of compound abundances (natural log)
    "biological_log_sd": 0.35,       # between-sample variation of each compound (natural log)
    "planted_class": None,           # chemical class raised in cases; None: drawn from the seed
    "fold_change": 3.0,
    "fold_change_log_sd": 0.2,
    "absent_fraction": 0.02,         # chance that a compound is missing from a sample
    "age_mean": 55.0,
    "age_sd": 12.0,
    "n_age_compounds": 4,            # compounds whose level rises with age
    "age_log_slope": 0.03,           # per year (natural log)
}

# Batch acquisition (ms2study.simulate.batch), accepted by both profiles. The defaults (1 batch, no QCs, no blanks,
# no adducts) leave a study as it was without these keys: no random number is drawn and no key is written.
BATCH_PARAMS: dict = {
    "batches": 1,                     # injection batches; > 1 turns on the acquisition model
    "qc_every": 0,                    # a pooled QC after every K study samples, plus one at each batch's start; 0: none
    "blanks": 0,                      # solvent blanks per batch (first at the start, second at the end, ...)
    "adducts": False,                 # [M+Na]+, [M+NH4]+ and in-source fragment ions beside every [M+H]+
    "batch_offset_log_sd": 0.3,       # per-batch intensity factor exp(N(0, sd)), shared by all compounds
    "batch_compound_log_sd": 0.1,     # per-(batch, compound) part of the offset, so batches differ per feature
    "drift_end": [0.6, 0.75],         # factor of a typical compound at a batch's last injection, U(range) per batch
    "drift_curvature": [0.7, 1.6],    # shape x^c of the drift over the position x in the batch (0..1), per batch
    "drift_compound_spread": 0.5,     # per-compound drift amplitude U(1 - s, 1 + s) (ln of the factor scales)
    "n_contaminants": 30,             # eluting contaminants in blanks and every run (with any acquisition option)
    "contaminant_intensity": [20000.0, 400000.0],  # apex height, log-uniform
    "contaminant_fwhm_s": [6.0, 20.0],
    "contaminant_run_log_sd": 0.15,   # run-to-run variation of a contaminant's level (ln)
    "na_ratio": [0.1, 0.5],           # [M+Na]+ / [M+H]+ per compound, U(range)
    "nh4_fraction": 0.3,              # share of compounds with an [M+NH4]+ ion
    "nh4_ratio": [0.05, 0.3],
    "in_source_fraction": 0.3,        # share of compounds with an in-source fragment ion
    "in_source_ratio": [0.05, 0.4],
}

PROFILES = ("demo", "realistic")
EFFECT_SETS = ("class", "pathway")
EFFECT_DIRECTIONS = ("up", "down", "mixed")

# The realistic profile: overrides of DEFAULT_PARAMS and its own keys. Every number's source is in the table of
# ms2study.simulate.study's docstring ("QC runs": the two Q Exactive injections in ../shared/data/mzml, measured by
# benchmarks/biology.py --measure-real; "outcome tables": ../shared/data/outcomes).
REALISTIC_PARAMS: dict = {
    "ms1_scan_time_s": 0.25,          # QC runs: 126 MS1 + 381 MS2 scans per 60 s
    "ms2_scan_time_s": 0.075,
    "fwhm_s": [2.0, 4.5],             # QC runs (MZmine list): FWHM 2.1-3.8 s (10-90 %)
    "electronic_noise_level": 2500.0,  # QC runs: smallest MS1 centroid of a scan ~2,800-4,000
    "electronic_noise_peaks": 800,     # QC runs: ~1,150 centroids per MS1 scan
    "centroid_floor": 2500.0,
    "resolution_ppm": 19.5,           # QC run 04: closest MS1 centroid pairs (0.1 % quantile of their spacing)
    "n_background_ions": 20,          # persistent chemical noise ions (solvent, plasticisers)
    "dynamic_exclusion_s": 20.0,
    "background_intensity": [5000.0, 1000000.0],  # log-uniform
    "dda_min_intensity": 20000.0,     # chosen so MS2 rate and coverage approach the QC runs' (see table)
    "ms2_gain": 0.3,                  # QC runs: MS2 total ion current ~ precursor MS1 intensity (both ~10^6.1)
    "ms2_noise_level": 1200.0,        # floor 0.5x this; chosen so MS2 peak counts match the QC runs' (median 22)
    "ms2_noise_peaks": 8,
    "coisolate_isotopes": True,       # isotope ions of other compounds in the window fragment too
    "median_abundance": 25000.0,      # QC runs: pyOpenMS feature heights, median 10^4.5 (of those detected)
    "abundance_log_sd": 1.7,          # QC runs: sd of ln height 1.43 (detected, truncated) - 1.64 (intensity)
    "biological_log_sd": 0.45,        # median per-compound sd (ln) of the compound-specific part; see table
    "n_age_compounds": 4,
    # keys of the realistic profile only
    "n_background_compounds": 2500,   # derivatives of the curated compounds, not in the library
    "biological_log_sd_spread": 0.4,  # ln-sd of the per-compound biological sd (heterogeneous variances)
    "sample_factor_log_sd": 0.2,      # per-sample factor shared by every compound (dilution, amount)
    "n_modules": 20,                  # co-varying modules (pathway-like correlation)
    "module_log_sd": 0.3,
    "technical_log_sd": 0.07,         # QC runs: two injections of one QC, per-injection sd of ln height 0.067
    "n_changed": 12,                  # planted effect: compounds changed in cases
    "effect_set": "class",            # class: curated compounds of one class | pathway: a class and its derivatives
    "effect_direction": "up",         # up | down | mixed (alternating)
    "n_cases": None,                  # None: half of the samples
    "detection_limit": 4000.0,        # simulate_features: detect stage on the mzML simulation found 49 % of
                                      # compounds at apex 10^3.5-3.75, 90 % at 10^4-4.25
    "ms2_coverage": 0.7,              # simulate_features: mzML simulation: 56-75 % of compounds above the DDA
                                      # threshold were fragmented (top-N competition, exclusion)
    "chimeric_fraction": 0.2,         # simulate_features: QC runs: 19-21 % of MS2 scans have precursor purity < 0.8
    "chimeric_purity": [0.5, 0.8],    # ... and 1 % below 0.5
}


def merge_params(params: dict | None, profile: str = "demo") -> dict:
    """The profile's parameters updated by ``params``.

    ``profile`` is ``demo`` (``DEFAULT_PARAMS``) or ``realistic`` (``DEFAULT_PARAMS`` overridden and extended by
    ``REALISTIC_PARAMS``). Raises InputError for an unknown profile, an unknown key (naming it; keys of the
    realistic profile given to the demo say so) or a realistic setting outside its allowed values.
    """
    if profile not in PROFILES:
        raise InputError(f"unknown simulation profile '{profile}'", fix=f"use one of {', '.join(PROFILES)}")
    if profile == "demo":
        extra = sorted(set(params or {}) & (set(REALISTIC_PARAMS) - set(DEFAULT_PARAMS)))
        if extra:
            raise InputError(f"simulate parameter(s) {extra} belong to the realistic profile",
                             fix="add --profile realistic, or drop them")
        return _check_batch(overlay(params, {**DEFAULT_PARAMS, **BATCH_PARAMS}, "simulate"))
    merged = _check_batch(overlay(params, {**DEFAULT_PARAMS, **REALISTIC_PARAMS, **BATCH_PARAMS}, "simulate"))
    if merged["effect_set"] not in EFFECT_SETS:
        raise InputError(f"simulate effect_set is '{merged['effect_set']}'", fix=f"use one of {EFFECT_SETS}")
    if merged["effect_direction"] not in EFFECT_DIRECTIONS:
        raise InputError(f"simulate effect_direction is '{merged['effect_direction']}'",
                         fix=f"use one of {EFFECT_DIRECTIONS}")
    for key in ("n_changed", "n_background_compounds", "n_modules"):
        if isinstance(merged[key], bool) or not isinstance(merged[key], int) or merged[key] < 0:
            raise InputError(f"simulate {key} must be a non-negative integer (got {merged[key]!r})")
    if not float(merged["fold_change"]) > 0:
        raise InputError(f"simulate fold_change must be positive (got {merged['fold_change']!r})")
    return merged


def _check_batch(p: dict) -> dict:
    """``p`` after checking its batch keys (whole numbers, shares in 0..1, ranges of two increasing numbers);
    raises InputError naming the key."""
    for key, low in (("batches", 1), ("qc_every", 0), ("blanks", 0), ("n_contaminants", 0)):
        if isinstance(p[key], bool) or not isinstance(p[key], int) or p[key] < low:
            raise InputError(f"simulate {key} must be a whole number of at least {low} (got {p[key]!r})")
    if isinstance(p["resolution_ppm"], bool) or not isinstance(p["resolution_ppm"], int | float) \
            or not 0.0 <= float(p["resolution_ppm"]) <= 100.0:
        raise InputError(f"simulate resolution_ppm must lie between 0 and 100 (got {p['resolution_ppm']!r})",
                         fix="an Orbitrap resolves about 5-30 ppm at m/z 200; 0 writes every ion as its own centroid")
    if not isinstance(p["adducts"], bool):
        raise InputError(f"simulate adducts must be true or false (got {p['adducts']!r})")
    for key in ("nh4_fraction", "in_source_fraction"):
        if not 0.0 <= float(p[key]) <= 1.0:
            raise InputError(f"simulate {key} must be a share between 0 and 1 (got {p[key]!r})")
    for key in ("drift_end", "drift_curvature", "contaminant_intensity", "contaminant_fwhm_s", "na_ratio",
                "nh4_ratio", "in_source_ratio"):
        value = p[key]
        if not (isinstance(value, list | tuple) and len(value) == 2 and 0 < float(value[0]) <= float(value[1])):
            raise InputError(f"simulate {key} must be [low, high] with 0 < low <= high (got {value!r})")
    return p


def batch_mode(p: dict) -> bool:
    """Whether the parameters ask for a batch acquisition (injection order, drift, QCs, blanks, contaminants):
    more than one batch, pooled QCs or blanks. ``adducts`` alone adds ions but no acquisition model."""
    return int(p["batches"]) > 1 or int(p["qc_every"]) > 0 or int(p["blanks"]) > 0


def stream(seed: int, *keys: int) -> np.random.Generator:
    """An independent stream per (seed, purpose, ...): adding samples leaves earlier ones unchanged.

    Purposes in use (first key): 1 demo design, 2 demo sample, 3 chemical background ions, 4 run (sample), 10
    background compounds, 11 realistic design, 12 realistic sample, 13 known features (sample), 14 known spectrum
    (compound, intensity level); batch acquisition (``ms2study.simulate.batch``): 20 injection order, 21 QC run,
    22 blank run, 23 adduct ions, 24 contaminants, 25 drift, 26 known features of QC runs, 27 of blank runs, 28
    known extra-ion heights (run). A new purpose takes a new number so that no existing stream changes.
    """
    return np.random.default_rng([seed, *keys])
