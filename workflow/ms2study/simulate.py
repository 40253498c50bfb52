"""``ms2study simulate OUTDIR``: a deterministic synthetic LC-MS/MS (DDA, positive mode) study with known truth.

The study is built from the curated metabolites in ``resources/compounds.tsv`` (real structures with isomer sets).
Each compound gets a reversed-phase-like retention time (from its Crippen logP, spaced so that compounds within
20 ppm elute at least 30 s apart), an isotope pattern from its formula, a slightly tailed elution profile and a
log-normal abundance that varies between samples; in the cases one chemical class is raised. Every run adds
chemical background ions, electronic noise, m/z error and a smooth retention-time drift, and acquires MS2 spectra
data-dependently (top-N with dynamic exclusion, 1 Da isolation with co-isolation) from the in-silico spectra of
:mod:`ms2study.fragment`. The same seed gives byte-identical files; sample ``k`` depends only on the seed and ``k``.
Outputs: ``mzml/*.mzML``, ``samples.tsv``, ``library.mgf``, ``ground_truth.tsv``, ``simulation.json``,
``config.yaml``.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import pyopenms as oms
from rdkit import Chem
from rdkit.Chem import Crippen

from ms2study import fragment
from ms2study.atomic import atomic_path, write_text
from ms2study.cli import add_params_argument, load_params
from ms2study.errors import InputError
from ms2study.params import overlay

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
COMPOUNDS_TSV = REPO_ROOT / "resources" / "compounds.tsv"
C13_SPACING = 1.0033548378  # 13C - 12C: the isotope spacing feature finders expect

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

CONFIG_YAML = """library: library.mgf
models:
  outcomes:
    - {column: group, type: binary, positive_class: case}
    - {column: age, type: continuous}
"""


def merge_params(params: dict | None) -> dict:
    """DEFAULT_PARAMS updated by ``params``; unknown keys are an InputError naming the key."""
    return overlay(params, DEFAULT_PARAMS, "simulate")


# ---------------------------------------------------------------------------------------------------------------
# Compounds


@dataclass
class Compound:
    compound_id: str
    name: str
    smiles: str
    chemical_class: str
    adduct: str
    formula: str
    inchikey: str
    mz: float
    isotope_ratios: np.ndarray    # relative to the monoisotopic peak (first element 1.0)
    rt_s: float                   # retention time before per-run drift
    fwhm_s: float
    tailing: float
    spectrum_mz: np.ndarray
    spectrum_intensity: np.ndarray


def load_compounds(path: Path = COMPOUNDS_TSV) -> pl.DataFrame:
    """The curated compound table (compound_id, name, smiles, chemical_class)."""
    if not Path(path).exists():
        raise InputError("compound list not found", file=str(path), fix="run from the ms2study source tree")
    return pl.read_csv(path, separator="\t", quote_char=None)


def _ion_formula(smiles: str) -> str:
    """Element formula of the precursor ion (for the isotope pattern), without charge sign."""
    mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
    counts: dict[str, int] = {}
    for atom in mol.GetAtoms():
        counts[atom.GetSymbol()] = counts.get(atom.GetSymbol(), 0) + 1
    if fragment.default_adduct(smiles) == "[M+H]+":
        counts["H"] = counts.get("H", 0) + 1
    return "".join(f"{el}{n}" for el, n in sorted(counts.items()))


def _isotope_ratios(smiles: str) -> np.ndarray:
    dist = oms.EmpiricalFormula(_ion_formula(smiles)).getIsotopeDistribution(oms.CoarseIsotopePatternGenerator(4))
    probs = np.array([p.getIntensity() for p in dist.getContainer()], dtype=np.float64)
    ratios = probs / probs[0]
    return ratios[ratios >= 0.005]


def _assign_retention_times(mz: np.ndarray, logp: np.ndarray, keys: list[str], p: dict) -> np.ndarray:
    """Spread compounds over the gradient by logP rank, then move near-isobaric ones apart."""
    n = len(mz)
    lo, hi = p["rt_margin_s"], p["rt_max_s"] - p["rt_margin_s"]
    order = np.lexsort((np.array(keys), logp))
    desired = np.empty(n)
    desired[order] = lo + (hi - lo) * np.arange(n) / max(n - 1, 1)
    # a little compound-specific scatter so the spacing is not a perfect grid
    desired += np.array([3.0 * fragment.stable_normal("rt|" + k) for k in keys])
    desired = np.clip(desired, lo, hi)
    placed: list[int] = []
    rt = np.full(n, np.nan)
    sep, tol = p["min_rt_separation_s"], p["isomer_ppm"] * 1e-6
    for i in np.argsort(desired, kind="stable"):
        clash = [j for j in placed if abs(mz[j] - mz[i]) <= tol * mz[i]]
        taken = np.array([rt[j] for j in clash])
        candidate = None
        for step in range(int(hi - lo) + 1):
            for t in (desired[i] + step, desired[i] - step):
                if lo <= t <= hi and (taken.size == 0 or np.all(np.abs(taken - t) >= sep)):
                    candidate = t
                    break
            if candidate is not None:
                break
        if candidate is None:
            raise ValueError(f"no room on the gradient for compound {keys[i]} (too many isobars)")
        rt[i] = candidate
        placed.append(i)
    return rt


def build_compounds(table: pl.DataFrame, params: dict) -> list[Compound]:
    """Compounds with exact m/z, isotope pattern, retention time, peak shape and reference spectrum."""
    rows = table.to_dicts()
    mz = np.array([fragment.precursor_mz(r["smiles"]) for r in rows])
    logp = np.array([Crippen.MolLogP(Chem.MolFromSmiles(r["smiles"])) for r in rows])
    keys = [fragment.inchikey(r["smiles"]) for r in rows]
    rts = _assign_retention_times(mz, logp, keys, params)
    f_lo, f_hi = params["fwhm_s"]
    t_lo, t_hi = params["tailing"]
    out = []
    for r, m, rt, key in zip(rows, mz, rts, keys, strict=True):
        spec_mz, spec_int = fragment.predict_spectrum(r["smiles"])
        u = 0.5 * (1.0 + math.erf(fragment.stable_normal("shape|" + key) / math.sqrt(2.0)))
        v = 0.5 * (1.0 + math.erf(fragment.stable_normal("tail|" + key) / math.sqrt(2.0)))
        out.append(Compound(
            compound_id=r["compound_id"], name=r["name"], smiles=r["smiles"], chemical_class=r["chemical_class"],
            adduct=fragment.default_adduct(r["smiles"]), formula=fragment.formula(r["smiles"]), inchikey=key,
            mz=float(m), isotope_ratios=_isotope_ratios(r["smiles"]), rt_s=float(rt),
            fwhm_s=f_lo + (f_hi - f_lo) * u, tailing=t_lo + (t_hi - t_lo) * v,
            spectrum_mz=spec_mz, spectrum_intensity=spec_int,
        ))
    return out


# ---------------------------------------------------------------------------------------------------------------
# Study design: groups, covariates, abundances


def _rng(seed: int, *keys: int) -> np.random.Generator:
    """An independent stream per (seed, purpose, sample): adding samples leaves earlier ones unchanged."""
    return np.random.default_rng([seed, *keys])


def design_study(compounds: list[Compound], n_samples: int, seed: int, p: dict) -> dict:
    """Sample sheet, planted effect and per-sample abundances (monoisotopic apex heights, 0 when absent)."""
    n_c = len(compounds)
    rng = _rng(seed, 1)
    classes = sorted({c.chemical_class for c in compounds})
    planted = p["planted_class"]
    if planted is None:
        eligible = [k for k in classes if sum(c.chemical_class == k for c in compounds) >= 10]
        planted = eligible[int(rng.integers(len(eligible)))]
    elif planted not in classes:
        raise InputError(f"planted_class '{planted}' is not a class of the compound list", fix=f"use one of {classes}")
    base = np.log(p["median_abundance"]) + p["abundance_log_sd"] * rng.standard_normal(n_c)
    age_compounds = sorted(rng.choice(n_c, size=min(p["n_age_compounds"], n_c), replace=False).tolist())
    groups = np.array(["case"] * (n_samples // 2) + ["control"] * (n_samples - n_samples // 2))
    rng.shuffle(groups)
    in_class = np.array([c.chemical_class == planted for c in compounds])
    samples, abundance, present = [], np.zeros((n_samples, n_c)), np.ones((n_samples, n_c), dtype=bool)
    for s in range(n_samples):
        rs = _rng(seed, 2, s)
        age = round(float(p["age_mean"] + p["age_sd"] * rs.standard_normal()), 1)
        level = base + p["biological_log_sd"] * rs.standard_normal(n_c)
        if groups[s] == "case":
            effect = np.log(p["fold_change"]) + p["fold_change_log_sd"] * rs.standard_normal(n_c)
            level = level + np.where(in_class, effect, 0.0)
        level[age_compounds] += p["age_log_slope"] * (age - p["age_mean"])
        present[s] = rs.random(n_c) >= p["absent_fraction"]
        abundance[s] = np.where(present[s], np.exp(level), 0.0)
        samples.append({"sample_id": f"S{s + 1:02d}", "file": f"mzml/S{s + 1:02d}.mzML", "group": str(groups[s]),
                        "age": age})
    return {"samples": samples, "abundance": abundance, "present": present, "planted_class": planted,
            "age_compounds": [compounds[i].compound_id for i in age_compounds]}


def _drift(rs: np.random.Generator, p: dict) -> tuple[Callable[[np.ndarray], np.ndarray], dict]:
    """A smooth, monotonic per-run retention-time distortion: shift, stretch about the middle, and a gentle warp."""
    shift = p["rt_shift_sd_s"] * rs.standard_normal()
    stretch = p["rt_stretch_sd"] * rs.standard_normal()
    warp = p["rt_warp_sd_s"] * rs.standard_normal()
    half = p["rt_max_s"] / 2.0

    def apply(rt: np.ndarray) -> np.ndarray:
        return rt + shift + stretch * (rt - half) + warp * np.sin(np.pi * rt / p["rt_max_s"])

    return apply, {"shift_s": shift, "stretch": stretch, "warp_s": warp}


# ---------------------------------------------------------------------------------------------------------------
# One run: MS1 scans and data-dependent MS2


@dataclass
class _Ions:
    """Every MS1 ion of a run, flattened: compound isotopes, then background ions."""
    mz: np.ndarray
    apex: np.ndarray
    height: np.ndarray
    sigma_l: np.ndarray
    sigma_r: np.ndarray
    compound: np.ndarray   # compound index, -1 for background ions
    isotope: np.ndarray    # 0 = monoisotopic


def _profile(t: float, ions: _Ions, idx: np.ndarray) -> np.ndarray:
    d = t - ions.apex[idx]
    sigma = np.where(d < 0, ions.sigma_l[idx], ions.sigma_r[idx])
    return np.exp(-0.5 * (d / sigma) ** 2)


def _background(seed: int, p: dict) -> tuple[np.ndarray, np.ndarray, list[tuple[np.ndarray, np.ndarray]]]:
    """Chemical noise shared by all runs of a study: m/z, level and a small fragment pattern per ion."""
    rng = _rng(seed, 3)
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


def simulate_run(compounds: list[Compound], abundance: np.ndarray, seed: int, sample_index: int, p: dict,
                 background: tuple) -> tuple[oms.MSExperiment, dict]:
    """One LC-MS/MS run; returns the experiment and per-compound truth (apex RT, apex height, MS2 count)."""
    rs = _rng(seed, 4, sample_index)
    drift, drift_info = _drift(rs, p)
    calib_ppm = p["calibration_error_ppm"] * rs.standard_normal()
    n_c = len(compounds)
    apex_rt = drift(np.array([c.rt_s for c in compounds]))

    mz_l, apex_l, h_l, sl_l, sr_l, comp_l, iso_l = [], [], [], [], [], [], []
    for i, c in enumerate(compounds):
        if abundance[i] <= 0:
            continue
        fwhm = c.fwhm_s * float(np.exp(0.05 * rs.standard_normal()))
        sigma_l = fwhm / (1.17741 * (2.0 + c.tailing))
        for k, ratio in enumerate(c.isotope_ratios):
            mz_l.append(c.mz + k * C13_SPACING)
            apex_l.append(apex_rt[i])
            h_l.append(abundance[i] * ratio)
            sl_l.append(sigma_l)
            sr_l.append(sigma_l * (1.0 + c.tailing))
            comp_l.append(i)
            iso_l.append(k)
    ions = _Ions(np.array(mz_l), np.array(apex_l), np.array(h_l), np.array(sl_l), np.array(sr_l),
                 np.array(comp_l, dtype=np.int64), np.array(iso_l, dtype=np.int64))
    bg_mz, bg_level, bg_frags = background
    reach = 6.0 * ions.sigma_r

    mz_lo, mz_hi = p["mz_range"]
    noise = p["electronic_noise_level"]
    floor = p["centroid_floor"]
    half_window = p["isolation_window_da"] / 2.0
    exp = oms.MSExperiment()
    exclusion_mz: list[float] = []
    exclusion_until: list[float] = []
    ms2_count = np.zeros(n_c, dtype=np.int64)
    t = 0.0
    scan_no = 0

    def new_spectrum(level: int, rt: float, mz: np.ndarray, inten: np.ndarray) -> oms.MSSpectrum:
        nonlocal scan_no
        scan_no += 1
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

    while t < p["rt_max_s"]:
        # --- MS1
        active = np.nonzero(np.abs(t - ions.apex) < reach)[0]
        inten = ions.height[active] * _profile(t, ions, active) * np.exp(0.04 * rs.standard_normal(active.size))
        keep = inten >= floor
        active, inten = active[keep], inten[keep]
        bg_int = bg_level * (1.0 + 0.15 * rs.standard_normal(bg_level.size)).clip(0.2)
        n_noise = int(rs.poisson(p["electronic_noise_peaks"]))
        noise_mz = rs.uniform(mz_lo, mz_hi, n_noise)
        noise_int = noise * rs.gamma(2.0, 0.5, n_noise)
        keep = noise_int >= floor
        true_mz = np.concatenate([ions.mz[active], bg_mz])
        peak_int = np.concatenate([inten, bg_int])
        # m/z error grows as intensity falls (fewer ions, poorer centroid)
        sd_ppm = np.minimum(4.0, p["mz_error_ppm"] * (1.0 + np.sqrt(1e4 / peak_int)))
        obs_mz = true_mz * (1.0 + 1e-6 * (calib_ppm + sd_ppm * rs.standard_normal(true_mz.size)))
        all_mz = np.concatenate([obs_mz, noise_mz[keep]])
        all_int = np.concatenate([peak_int, noise_int[keep]])
        exp.addSpectrum(new_spectrum(1, t, all_mz, all_int))

        # --- precursor selection: top N above threshold, not excluded, not an isotope of a stronger peak
        n_ions = obs_mz.size
        cand = np.nonzero(peak_int >= p["dda_min_intensity"])[0]
        cand = cand[np.argsort(-peak_int[cand], kind="stable")]
        live = [k for k, until in enumerate(exclusion_until) if until > t]
        exclusion_mz = [exclusion_mz[k] for k in live]
        exclusion_until = [exclusion_until[k] for k in live]
        chosen: list[int] = []
        for k in cand:
            m = obs_mz[k]
            if any(abs(m - e) <= 10e-6 * m for e in exclusion_mz):
                continue
            lighter = np.abs(obs_mz[:n_ions] - (m - C13_SPACING)) <= 10e-6 * m
            if np.any(lighter & (peak_int > peak_int[k])):
                continue
            chosen.append(int(k))
            exclusion_mz.append(float(m))
            exclusion_until.append(t + p["dynamic_exclusion_s"])
            if len(chosen) == p["top_n"]:
                break

        # --- MS2 scans
        t_ms2 = t + p["ms1_scan_time_s"]
        for k in chosen:
            prec = obs_mz[k]
            lo_w, hi_w = prec - half_window, prec + half_window
            frag_mz, frag_int = [], []
            # co-isolated compound ions (monoisotopic) and background ions, with edge transmission
            near = active[(ions.isotope[active] == 0) & (np.abs(ions.mz[active] - prec) <= half_window)]
            now = ions.height[near] * _profile(t_ms2, ions, near)
            best, best_int = -1, 0.0
            for ion, amount in zip(near, now, strict=True):
                d = abs(ions.mz[ion] - prec)
                trans = 1.0 if d <= 0.35 else max(0.0, 1.0 - (d - 0.35) / 0.3)
                scale = amount * trans * p["ms2_gain"]
                c = compounds[ions.compound[ion]]
                frag_mz.append(c.spectrum_mz)
                frag_int.append(scale * c.spectrum_intensity)
                if scale > best_int:
                    best, best_int = int(ions.compound[ion]), scale
            for b in np.nonzero((bg_mz >= lo_w) & (bg_mz <= hi_w))[0]:
                f_mz, f_int = bg_frags[b]
                frag_mz.append(np.append(f_mz, bg_mz[b]))
                frag_int.append(bg_int[b] * p["ms2_gain"] * np.append(f_int, 0.3))
            if best >= 0:
                ms2_count[best] += 1
            f_mz = np.concatenate(frag_mz) if frag_mz else np.empty(0)
            f_int = np.concatenate(frag_int) if frag_int else np.empty(0)
            f_int = f_int * np.exp(p["ms2_intensity_cv"] * rs.standard_normal(f_int.size))
            # counting noise: weak fragments scatter more
            counting_sd = 0.3 * np.sqrt(np.maximum(f_int, 0.0) * p["ms2_noise_level"])
            f_int = f_int + counting_sd * rs.standard_normal(f_int.size)
            f_mz = f_mz * (1.0 + 1e-6 * (calib_ppm + p["ms2_mz_error_ppm"] * rs.standard_normal(f_mz.size)))
            n_sp = int(rs.poisson(p["ms2_noise_peaks"]))
            s_mz = rs.uniform(50.0, prec + 5.0, n_sp)
            s_int = p["ms2_noise_level"] * rs.gamma(2.0, 0.5, n_sp)
            all_mz = np.concatenate([f_mz, s_mz])
            all_int = np.concatenate([f_int, s_int])
            keep = all_int >= 0.5 * p["ms2_noise_level"]
            spec = new_spectrum(2, t_ms2, all_mz[keep], all_int[keep])
            precursor = oms.Precursor()
            precursor.setMZ(float(prec))
            precursor.setCharge(1)
            precursor.setIntensity(float(peak_int[k]))
            precursor.setIsolationWindowLowerOffset(half_window)
            precursor.setIsolationWindowUpperOffset(half_window)
            precursor.setActivationMethods({oms.Precursor.ActivationMethod.HCD})
            precursor.setActivationEnergy(30.0)
            spec.setPrecursors([precursor])
            exp.addSpectrum(spec)
            t_ms2 += p["ms2_scan_time_s"]
        t = t_ms2
    truth = {"apex_rt": apex_rt, "ms2_count": ms2_count, "drift": drift_info, "calibration_ppm": calib_ppm}
    return exp, truth


def _write_mzml(exp: oms.MSExperiment, path: Path) -> None:
    mzml = oms.MzMLFile()
    options = mzml.getOptions()
    options.setCompression(True)        # zlib: keeps a 12-sample study at a few MB per file
    options.setIntensity32Bit(True)
    mzml.setOptions(options)
    with atomic_path(path) as tmp:
        mzml.store(str(tmp), exp)


def _library_mgf(compounds: list[Compound]) -> str:
    blocks = []
    for c in compounds:
        lines = [
            "BEGIN IONS", f"TITLE={c.name}", f"PEPMASS={c.mz:.6f}", "CHARGE=1+", "IONMODE=positive",
            f"ADDUCT={c.adduct}", f"NAME={c.name}", f"FORMULA={c.formula}", f"SMILES={c.smiles}",
            f"INCHIKEY={c.inchikey}", f"COMPOUND_CLASS={c.chemical_class}", f"SPECTRUM_ID=SIM{c.compound_id}",
        ]
        lines += [f"{m:.6f} {i * 1000.0:.2f}" for m, i in zip(c.spectrum_mz, c.spectrum_intensity, strict=True)]
        lines.append("END IONS")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n"


def simulate_study(outdir: Path, n_samples: int = 12, seed: int = 0, params: dict | None = None) -> dict:
    """Write a synthetic study into ``outdir`` and return a summary (see the module docstring for the files)."""
    if n_samples < 2:
        raise InputError("a study needs at least 2 samples", fix="pass --samples 2 or more")
    p = merge_params(params)
    outdir = Path(outdir)
    compounds = build_compounds(load_compounds(), p)
    design = design_study(compounds, n_samples, seed, p)
    background = _background(seed, p)
    noise = p["electronic_noise_level"]
    truth_rows = []
    n_ms2_total = 0
    runs = {}
    for s, sample in enumerate(design["samples"]):
        exp, truth = simulate_run(compounds, design["abundance"][s], seed, s, p, background)
        _write_mzml(exp, outdir / sample["file"])
        n_ms2 = sum(1 for spec in exp if spec.getMSLevel() == 2)
        n_ms2_total += n_ms2
        runs[sample["sample_id"]] = {"n_spectra": exp.getNrSpectra(), "n_ms2": n_ms2,
                                     "calibration_ppm": truth["calibration_ppm"], **truth["drift"]}
        for i, c in enumerate(compounds):
            height = float(design["abundance"][s, i])
            truth_rows.append({
                "sample_id": sample["sample_id"], "compound_id": c.compound_id, "name": c.name,
                "inchikey": c.inchikey, "chemical_class": c.chemical_class, "mz": c.mz,
                "rt_s": float(truth["apex_rt"][i]), "abundance": height,
                "present": bool(design["present"][s, i]), "above_noise": bool(height >= 10.0 * noise),
                "in_library": True, "adduct": c.adduct, "formula": c.formula, "n_ms2": int(truth["ms2_count"][i]),
            })
        log.info("simulated %s: %d spectra (%d MS2)", sample["sample_id"], exp.getNrSpectra(), n_ms2)
    sheet = pl.DataFrame(design["samples"])
    with atomic_path(outdir / "samples.tsv") as tmp:
        sheet.write_csv(tmp, separator="\t")
    truth_df = pl.DataFrame(truth_rows)
    with atomic_path(outdir / "ground_truth.tsv") as tmp:
        truth_df.write_csv(tmp, separator="\t", float_precision=6)
    write_text(_library_mgf(compounds), outdir / "library.mgf")
    write_text(CONFIG_YAML, outdir / "config.yaml")
    summary = {
        "seed": seed,
        "n_samples": n_samples,
        "n_compounds": len(compounds),
        "planted_class": design["planted_class"],
        "fold_change": p["fold_change"],
        "cases": [r["sample_id"] for r in design["samples"] if r["group"] == "case"],
        "age_compounds": design["age_compounds"],
        "electronic_noise_level": noise,
        "above_noise_threshold": 10.0 * noise,
        "ms2_noise_level": p["ms2_noise_level"],
        "n_background_ions": p["n_background_ions"],
        "n_ms2_spectra": n_ms2_total,
        "runs": runs,
        "parameters": p,
    }
    write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n", outdir / "simulation.json")
    return {"outdir": str(outdir), **{k: v for k, v in summary.items() if k not in ("parameters", "runs")}}


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "simulate",
        help="write a synthetic LC-MS/MS study with known truth (mzML, samples.tsv, library.mgf, config.yaml)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("outdir", type=Path, help="folder to write the study into (created if missing)")
    p.add_argument("--samples", type=int, default=12, help="number of samples (default 12, half of them cases)")
    p.add_argument("--seed", type=int, default=0, help="random seed; the same seed gives identical files")
    add_params_argument(p)

    def run(args: argparse.Namespace) -> int:
        summary = simulate_study(args.outdir, n_samples=args.samples, seed=args.seed, params=load_params(args))
        print(json.dumps(summary, indent=2))
        return 0

    p.set_defaults(func=run)
