"""``ms2study simulate OUTDIR``: a deterministic synthetic LC-MS/MS (DDA, positive mode) study with known truth.

The study is built from the curated metabolites in ``resources/compounds.tsv`` (real structures with isomer sets).
Each compound gets a reversed-phase-like retention time (from its Crippen logP, spaced so that compounds within
20 ppm elute at least 30 s apart), an isotope pattern from its formula, a slightly tailed elution profile and a
log-normal abundance that varies between samples; in the cases one chemical class is raised. Every run adds
chemical background ions, electronic noise, m/z error and a smooth retention-time drift, and acquires MS2 spectra
data-dependently (top-N with dynamic exclusion, 1 Da isolation with co-isolation) from the in-silico spectra of
:mod:`ms2study.simulate.fragment`. The same seed gives byte-identical files; sample ``k`` depends only on the seed and ``k``.
Outputs: ``mzml/*.mzML``, ``samples.tsv``, ``library.mgf``, ``ground_truth.tsv``, ``simulation.json``,
``config.yaml``.

That default (``--profile demo``) is kind on purpose: 270 compounds, one whole class tripled. ``--profile
realistic`` (or ``--realistic``) makes a study whose background looks like a biological run, so that a sparse effect
is as hard to find as in real data: the 270 curated compounds (the library) plus ``n_background_compounds`` (2,500)
derivatives of them made by 17 phase I/II biotransformations (hydroxylation, glucuronidation, sulfation, glycine
conjugation, ...; real masses, isotope patterns, classes), which are not in the library and whose MS/MS derives from
their parent's (shared and mass-shifted fragments, the labile group lost whole; ``derived_spectrum``). Abundances are
log-normal over 3+ decades; every compound varies between samples by a per-sample factor shared by all compounds, a
module shared by ~1/20 of them and its own heterogeneous term, and isotopes follow their compound; the planted
effect changes ``n_changed`` (5-30) compounds of one class (``effect_set: class``) or of a class and its derivatives
(``pathway``), by ``fold_change`` (1.5-4), ``effect_direction`` up, down or mixed. ``simulate_features`` builds the
same study from its truth without mzML (measured heights, detection, DDA, MS/MS), for sweeps.

Realistic parameters and their sources. "QC runs": the two Q Exactive injections of a pooled QC in
../shared/data/mzml (ESI+, DDA, 60 s excerpts), measured by ``benchmarks/biology.py --measure-real`` (which also
measures a simulated run the same way; both are in ``benchmarks/measured/biology.json``); "tables": the outcome
tables in ../shared/data/outcomes.

=========================== ================ =====================================================================
parameter                   realistic        source (real value) -> simulated run, measured the same way
=========================== ================ =====================================================================
median_abundance            25,000           QC runs: detected feature height median 10^4.51 -> 10^4.55
abundance_log_sd            1.7 (ln)         QC runs: sd of ln height 1.43, of ln intensity 1.64 (detected, so
                                             truncated); 1-99 %: 10^3.83-10^6.76 -> 10^3.61-10^6.03
biological_log_sd           0.45 median      tables: per-feature sd of ln abundance, median 0.38 (plant, MTBLS2),
biological_log_sd_spread    0.4              0.78 (human urine, sacurine), 1.22 (urine, ST000291, unnormalised);
module_log_sd, n_modules    0.3, 20          here the total is ~0.6 (between controlled and free-living), with
sample_factor_log_sd        0.2              tables: per-sample factor sd 0.09 / 0.26 / 0.52; PC1 15-36 % of
                                             variance, median abs correlation 0.13-0.31
technical_log_sd            0.07             QC runs: the two injections, per-injection sd of ln height 0.067
fwhm_s                      2.0-4.5          QC runs (MZmine list): FWHM 2.1-3.8 s (10-90 %)
ms1/ms2_scan_time_s         0.25 / 0.075     QC runs: 128 MS1 + 385 MS2 scans per min -> 197 + 145 (fewer precursors
top_n, dda_min_intensity    5, 20,000        above the trigger: our run is ~10x less intense than the pooled QC)
ms2_gain, ms2_noise_level   0.3, 1,200       QC runs: MS2 peaks 12 / 22 / 52 (5 / 50 / 95 %) -> 8 / 15 / 36 (the
                                             floor is scaled to our weaker precursors to keep the peak counts)
electronic_noise_*          2,500, 800/scan  QC runs: smallest MS1 centroid ~2,800-4,000, ~1,150 centroids per scan
coisolate_isotopes          true             QC runs: 19-21 % of MS2 with precursor purity < 0.8 -> 11 %
detection_limit             4,000            simulate_features only: the detect stage on the mzML simulation found
                                             49 % of compounds at apex 10^3.5-3.75 and 90 % at 10^4-4.25
ms2_coverage                0.7              simulate_features only: 56-75 % of compounds above the DDA threshold
                                             were fragmented in the mzML simulation
chimeric_fraction, _purity  0.2, 0.5-0.8     simulate_features only: QC runs' purity (< 0.8 in 20 %, < 0.5 in 1 %)
=========================== ================ =====================================================================

A 16-sample realistic study simulates in about a minute on 2 cores (compounds ~20 s once, ~2-4 s per run).
"""

from __future__ import annotations

import argparse
import functools
import hashlib
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
from rdkit.Chem import Crippen, Descriptors
from rdkit.Chem.rdMolDescriptors import CalcMolFormula

from ms2study.simulate import fragment
from ms2study.core.atomic import atomic_path, write_text
from ms2study.core.cleaning import clean_peaks
from ms2study.core.params import add_params_argument, load_params
from ms2study.core.errors import InputError
from ms2study.core.params import overlay

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[3]
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

PROFILES = ("demo", "realistic")
EFFECT_SETS = ("class", "pathway")
EFFECT_DIRECTIONS = ("up", "down", "mixed")

# The realistic profile: overrides of DEFAULT_PARAMS and its own keys. Every number's source is in the module
# docstring's table ("QC runs": the two Q Exactive injections in ../shared/data/mzml, measured by
# benchmarks/biology.py --measure-real; "outcome tables": ../shared/data/outcomes).
REALISTIC_PARAMS: dict = {
    "ms1_scan_time_s": 0.25,          # QC runs: 126 MS1 + 381 MS2 scans per 60 s
    "ms2_scan_time_s": 0.075,
    "fwhm_s": [2.0, 4.5],             # QC runs (MZmine list): FWHM 2.1-3.8 s (10-90 %)
    "electronic_noise_level": 2500.0,  # QC runs: smallest MS1 centroid of a scan ~2,800-4,000
    "electronic_noise_peaks": 800,     # QC runs: ~1,150 centroids per MS1 scan
    "centroid_floor": 2500.0,
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

CONFIG_YAML = """library: library.mgf
models:
  outcomes:
    - {column: group, type: binary, positive_class: case}
    - {column: age, type: continuous}
"""


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
        return overlay(params, DEFAULT_PARAMS, "simulate")
    merged = overlay(params, {**DEFAULT_PARAMS, **REALISTIC_PARAMS}, "simulate")
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
    in_library: bool = True       # curated compounds are; realistic background derivatives are not
    parent: str | None = None     # background derivative: compound_id of the curated compound it derives from
    transformation: str | None = None


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


# ---------------------------------------------------------------------------------------------------------------
# Realistic profile: background compounds, abundances with shared and compound-specific variation, sparse effects

# Phase I/II biotransformations as reaction SMARTS: the background metabolome is made of derivatives of the curated
# compounds, so its masses, mass defects, isotope patterns and MS/MS look like metabolites and embed near their
# parents' chemistry (a chemical space with structure, which pooling per region is meant to exploit).
BIOTRANSFORMATIONS: dict[str, str] = {
    "hydroxylation (aromatic)": "[cH:1]>>[c:1]O",
    "hydroxylation": "[CH2;!R;!$(C[O,N,S]):1]>>[C:1]O",
    "O-methylation": "[OH:1][c:2]>>C[O:1][c:2]",
    "N-methylation": "[NX3;H2,H1;!$(NC=O):1]>>[N:1]C",
    "N-acetylation": "[NX3;H2;!$(NC=O):1]>>[N:1]C(C)=O",
    "glucuronidation": "[OH;!$(OC=O):1]>>[O:1][C@@H]1O[C@H](C(=O)O)[C@@H](O)[C@H](O)[C@H]1O",
    "sulfation": "[OH;!$(OC=O);!$(OS):1]>>[O:1]S(=O)(=O)O",
    "glycine conjugation": "[CX3:1](=O)[OH]>>[C:1](=O)NCC(=O)O",
    "taurine conjugation": "[CX3:1](=O)[OH]>>[C:1](=O)NCCS(=O)(=O)O",
    "methyl ester": "[CX3:1](=O)[OH]>>[C:1](=O)OC",
    "dehydrogenation": "[CH2;!R:1][CH2;!R:2]>>[CH:1]=[CH:2]",
    "hydrogenation": "[CH;!R:1]=[CH;!R:2]>>[CH2:1][CH2:2]",
    "chain elongation": "[CH3:1][CH2:2]>>[CH3][CH2:1][CH2:2]",
    "alcohol oxidation": "[CH2;!R:1][OH]>>[CH:1]=O",
    "decarboxylation": "[C:1][CX3](=O)[OH]>>[C:1]",
    "hexosylation": "[OH;!$(OC=O);!$(O[c]):1]>>[O:1][C@@H]1O[C@H](CO)[C@@H](O)[C@H](O)[C@H]1O",
    "demethylation": "[CH3][O,N:1]>>[*:1]",
}
BACKGROUND_MZ_RANGE = (60.0, 1000.0)


def _derive(smiles: str) -> list[tuple[str, str]]:
    """(transformation, canonical SMILES) of every single-site product of each biotransformation."""
    mol = Chem.MolFromSmiles(smiles)
    out = []
    for name, smarts in BIOTRANSFORMATIONS.items():
        for products in _reaction(smarts).RunReactants((mol,)):
            try:
                product = products[0]
                Chem.SanitizeMol(product)
                canonical = Chem.MolToSmiles(product)
            except (Chem.rdchem.MolSanitizeException, ValueError, RuntimeError):
                continue  # a product RDKit cannot sanitise is not a molecule: not a derivative
            if Chem.MolFromSmiles(canonical) is not None:
                out.append((name, canonical))
    return out


@functools.cache
def _reaction(smarts: str):
    from rdkit.Chem import AllChem

    return AllChem.ReactionFromSmarts(smarts)


@functools.lru_cache(maxsize=2)
def derivative_universe(path: Path = COMPOUNDS_TSV) -> tuple[tuple[str, str, str], ...]:
    """Every one-step biotransformation product of the curated compounds: ``(smiles, parent compound_id,
    transformation)``, in a fixed order (compound list order, then ``BIOTRANSFORMATIONS`` order), each structure
    once, curated structures (by SMILES) left out. About 3,000 entries; ~2.5 s, cached per process."""
    table = load_compounds(path)
    curated = set(table["smiles"].to_list())
    seen: dict[str, tuple[str, str]] = {}
    for compound_id, smiles in zip(table["compound_id"].to_list(), table["smiles"].to_list(), strict=True):
        for name, product in _derive(smiles):
            if product not in curated and product not in seen:
                seen[product] = (compound_id, name)
    return tuple((smiles, parent, name) for smiles, (parent, name) in seen.items())


# Transformations that add a labile group: in MS/MS the conjugate mostly loses it whole, so the ion of the
# unconjugated molecule (the "aglycone") is a major peak and most fragments are the parent's, unshifted.
LABILE = ("glucuronidation", "sulfation", "hexosylation", "glycine conjugation", "taurine conjugation",
          "N-acetylation", "methyl ester")
PROTON = 1.007276467


def _ion_mz(mol: Chem.Mol) -> float:
    """[M+H]+ of a neutral (or zwitterionic) molecule, [M]+ of a net cation (RDKit's exact mass counts electrons)."""
    return float(Descriptors.ExactMolWt(mol)) + (PROTON if Chem.GetFormalCharge(mol) == 0 else 0.0)


def derived_spectrum(source_mz: np.ndarray, source_intensity: np.ndarray, source_precursor_mz: float,
                     precursor_mz: float, transformation: str, key: str) -> tuple[np.ndarray, np.ndarray]:
    """MS/MS of a derivative from the spectrum of the structure it derives from (m/z, relative intensity).

    A fragment of the source either keeps the modified site and moves by the mass difference, or does not and stays
    (the shared and shifted peaks that modified-cosine and molecular networking rely on). Each source fragment is
    kept with probability 0.85 and shifted with probability 0.45 (0.15 for labile conjugates), its intensity times
    a log-normal factor (sd 0.3); labile conjugates add the unconjugated ion (neutral loss of the group) at 0.4-1.0
    of the base peak. The precursor ion is kept at 0.05-0.3. Peaks below 40 or above the precursor are dropped.
    All draws are keyed to ``key`` (the structure), so a structure always gets the same spectrum. Cost: tens of
    microseconds, against ~50 ms for :func:`ms2study.simulate.fragment.predict_spectrum` on conjugates (too slow for
    thousands of background compounds).
    """
    rng = np.random.default_rng(int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "little"))
    delta = precursor_mz - source_precursor_mz
    labile = any(transformation.startswith(t) or f", {t}" in transformation for t in LABILE)
    is_precursor = np.abs(source_mz - source_precursor_mz) < 0.01
    mz, inten = source_mz[~is_precursor], source_intensity[~is_precursor].astype(np.float64)
    keep = rng.random(mz.size) < 0.85
    shift = rng.random(mz.size) < (0.15 if labile else 0.45)
    mz = np.where(shift, mz + delta, mz)[keep]
    inten = (inten * np.exp(0.3 * rng.standard_normal(inten.size)))[keep]
    extra_mz = [precursor_mz]
    extra_int = [float(rng.uniform(0.05, 0.3))]
    if labile and delta > 0:
        extra_mz.append(source_precursor_mz)
        extra_int.append(float(rng.uniform(0.4, 1.0)))
    mz = np.concatenate([mz, extra_mz])
    inten = np.concatenate([inten, extra_int])
    ok = (mz >= 40.0) & (mz <= precursor_mz + 0.01) & (inten > 0)
    mz, inten = mz[ok], inten[ok]
    if mz.size == 0:
        return mz, inten.astype(np.float32)
    order = np.argsort(mz, kind="stable")
    mz, inten = np.round(mz[order], 5), inten[order]
    # identical m/z from a shifted and an unshifted peak: merge
    unique, first = np.unique(mz, return_index=True)
    if unique.size < mz.size:
        inten = np.add.reduceat(inten, first)
        mz = unique
    return mz, (inten / inten.max()).astype(np.float32)


@functools.cache
def _curated_chemistry(smiles: str) -> tuple:
    """(m/z, logP, spectrum m/z, spectrum intensity) of a curated structure, fragmenter spectrum; cached."""
    spec_mz, spec_int = fragment.predict_spectrum(smiles)
    return (float(fragment.precursor_mz(smiles)), float(Crippen.MolLogP(Chem.MolFromSmiles(smiles))), spec_mz,
            spec_int)


_DERIVATIVES: dict[tuple[str, str, float], tuple | None] = {}


def _derivative(smiles: str, source: tuple, transformation: str) -> tuple | None:
    """Cached :func:`_derive_chemistry` (the benchmark builds many studies over one universe)."""
    key = (smiles, transformation, round(float(source[0]), 6))
    if key not in _DERIVATIVES:
        _DERIVATIVES[key] = _derive_chemistry(smiles, source, transformation)
    return _DERIVATIVES[key]


def _derive_chemistry(smiles: str, source: tuple, transformation: str) -> tuple | None:
    """Chemistry of a derivative: (adduct, formula, InChIKey, m/z, isotope ratios, logP, spectrum m/z, spectrum
    intensity), its spectrum derived from ``source`` = (m/z, spectrum m/z, spectrum intensity); None when RDKit
    cannot handle the structure."""
    mol = Chem.MolFromSmiles(smiles)
    if mol is None or Chem.GetFormalCharge(mol) not in (0, 1):
        return None
    try:
        mz = _ion_mz(mol)
        iso = _isotope_ratios(smiles)
    except (ValueError, RuntimeError):  # pyOpenMS / RDKit refuse odd formulas: no such background compound
        return None
    spec_mz, spec_int = derived_spectrum(source[1], source[2], source[0], mz, transformation, smiles)
    if spec_mz.size == 0:
        return None
    adduct = "[M]+" if Chem.GetFormalCharge(mol) == 1 else "[M+H]+"
    return (adduct, CalcMolFormula(mol), Chem.MolToInchiKey(mol), mz, iso, float(Crippen.MolLogP(mol)), spec_mz,
            spec_int)


def background_compounds(reference: list[Compound], n: int, seed: int, p: dict) -> list[Compound]:
    """``n`` background compounds: derivatives of the curated ones (``derivative_universe``) drawn by ``seed``.

    Each keeps its parent's chemical class, is absent from the library (``in_library`` False), has the MS/MS of
    :func:`derived_spectrum` and elutes where compounds of its logP elute (interpolated on the curated compounds'
    logP -> retention-time relation, +- 15 s), with no separation rule: isobars may co-elute and share an
    isolation window, as in real runs. When ``n`` exceeds the one-step universe, two-step derivatives of randomly
    chosen one-step products fill the rest. Raises InputError when not even that yields ``n`` structures.
    """
    if n <= 0:
        return []
    rng = _rng(seed, 10)
    by_id = {c.compound_id: c for c in reference}
    taken = {c.inchikey.split("-")[0] for c in reference}
    universe = derivative_universe()
    ref_logp = np.array([_curated_chemistry(c.smiles)[1] for c in reference])
    ref_rt = np.array([c.rt_s for c in reference])
    by_logp = np.argsort(ref_logp, kind="stable")
    lo_rt, hi_rt = p["rt_margin_s"], p["rt_max_s"] - p["rt_margin_s"]
    f_lo, f_hi = p["fwhm_s"]
    t_lo, t_hi = p["tailing"]
    # (smiles, parent id, transformation, source chemistry), one-step products first, in the seed's order
    queue = [(universe[j][0], universe[j][1], universe[j][2], None) for j in rng.permutation(len(universe))]
    second = iter(rng.permutation(len(universe)).tolist())
    out: list[Compound] = []
    while len(out) < n:
        if not queue:
            j = next(second, None)
            if j is None:
                raise InputError(f"only {len(out)} background structures could be derived",
                                 fix="lower n_background_compounds")
            base, parent, how0 = universe[j]
            base_chem = _derivative(base, _source(by_id[parent]), how0)
            if base_chem is not None:
                queue = [(d, parent, f"{how0}, {how}", (base_chem[3], base_chem[6], base_chem[7]))
                         for how, d in _derive(base)]
            continue
        smiles, parent, how, source = queue.pop(0)
        chem = _derivative(smiles, source or _source(by_id[parent]), how)
        if chem is None:
            continue
        adduct, formula, key, mz, iso, logp, spec_mz, spec_int = chem
        if not BACKGROUND_MZ_RANGE[0] <= mz <= BACKGROUND_MZ_RANGE[1] or key.split("-")[0] in taken:
            continue
        taken.add(key.split("-")[0])
        rt = float(np.interp(logp, ref_logp[by_logp], ref_rt[by_logp]) + 15.0 * rng.standard_normal())
        out.append(Compound(
            compound_id=f"B{len(out) + 1:05d}", name=f"{how} of {by_id[parent].name}", smiles=smiles,
            chemical_class=by_id[parent].chemical_class, adduct=adduct, formula=formula, inchikey=key, mz=mz,
            isotope_ratios=iso, rt_s=float(np.clip(rt, lo_rt, hi_rt)),
            fwhm_s=float(f_lo + (f_hi - f_lo) * rng.random()), tailing=float(t_lo + (t_hi - t_lo) * rng.random()),
            spectrum_mz=spec_mz, spectrum_intensity=spec_int, in_library=False, parent=parent, transformation=how,
        ))
    return out


def _source(compound: Compound) -> tuple[float, np.ndarray, np.ndarray]:
    return compound.mz, compound.spectrum_mz, compound.spectrum_intensity


def realistic_compounds(seed: int, p: dict) -> list[Compound]:
    """The curated compounds (the library) followed by ``n_background_compounds`` derivatives (not in it)."""
    reference = build_compounds(load_compounds(), p)
    return reference + background_compounds(reference, int(p["n_background_compounds"]), seed, p)


def choose_changed(compounds: list[Compound], rng: np.random.Generator, p: dict) -> tuple[np.ndarray, str]:
    """Indices of the compounds the planted effect changes, and the name of the set.

    ``effect_set: class``: ``n_changed`` curated compounds of ``planted_class`` (or of a class with at least
    ``n_changed`` curated members drawn by the seed). ``pathway``: ``n_changed`` compounds drawn from that class's
    curated members together with their background derivatives (a pathway-like family: parent metabolites and
    their conjugates). Raises InputError when the class is unknown or too small.
    """
    n = int(p["n_changed"])
    curated = [i for i, c in enumerate(compounds) if c.in_library]
    classes = sorted({compounds[i].chemical_class for i in curated})
    size = {k: sum(compounds[i].chemical_class == k for i in curated) for k in classes}
    planted = p["planted_class"]
    if planted is None:
        eligible = [k for k in classes if size[k] >= n]
        if not eligible:
            raise InputError(f"no chemical class has {n} curated compounds", fix="lower n_changed")
        planted = eligible[int(rng.integers(len(eligible)))]
    elif planted not in classes:
        raise InputError(f"planted_class '{planted}' is not a class of the compound list", fix=f"use one of {classes}")
    if p["effect_set"] == "class":
        members = [i for i in curated if compounds[i].chemical_class == planted]
    else:
        members = [i for i, c in enumerate(compounds) if c.chemical_class == planted]
    if len(members) < n:
        raise InputError(f"class '{planted}' has {len(members)} compounds for effect_set {p['effect_set']}, "
                         f"n_changed is {n}", fix="lower n_changed or choose another planted_class")
    return np.sort(rng.choice(np.array(members), size=n, replace=False)), planted


def design_realistic(compounds: list[Compound], n_samples: int, seed: int, p: dict) -> dict:
    """Sample sheet, planted effect and per-sample true abundances (monoisotopic apex heights, 0 when absent).

    ln abundance of compound j in sample s = base_j + sample factor_s + module_{s, m(j)} + sd_j * e_{sj}
    + effect_j * case_s + age term; base ~ N(ln median_abundance, abundance_log_sd), sample factor ~ N(0,
    sample_factor_log_sd), module ~ N(0, module_log_sd) for each of n_modules modules (each compound in one, drawn
    at random), sd_j = biological_log_sd * exp(biological_log_sd_spread * N(0, 1)), e ~ N(0, 1). effect_j =
    +-(ln fold_change + fold_change_log_sd * N(0, 1)) for the changed compounds (sign by effect_direction), 0
    otherwise. Isotopes follow their compound (the whole ion population scales). Per-sample draws come from a
    stream of (seed, sample), so adding samples leaves earlier ones unchanged. Raises InputError (via
    ``choose_changed``) when the planted set cannot be drawn.
    """
    n_c = len(compounds)
    rng = _rng(seed, 11)
    changed, planted = choose_changed(compounds, rng, p) if int(p["n_changed"]) > 0 else (
        np.empty(0, dtype=np.int64), None)
    base = np.log(p["median_abundance"]) + p["abundance_log_sd"] * rng.standard_normal(n_c)
    bio_sd = p["biological_log_sd"] * np.exp(p["biological_log_sd_spread"] * rng.standard_normal(n_c))
    module = rng.integers(0, max(int(p["n_modules"]), 1), n_c)
    sign = np.ones(len(changed))
    if p["effect_direction"] == "down":
        sign[:] = -1.0
    elif p["effect_direction"] == "mixed":
        sign[1::2] = -1.0
        rng.shuffle(sign)
    effect = np.zeros(n_c)
    effect[changed] = sign * (np.log(p["fold_change"]) + p["fold_change_log_sd"] * rng.standard_normal(len(changed)))
    age_compounds = sorted(rng.choice(n_c, size=min(p["n_age_compounds"], n_c), replace=False).tolist())
    n_cases = n_samples // 2 if p["n_cases"] is None else int(p["n_cases"])
    if not 1 <= n_cases < n_samples:
        raise InputError(f"n_cases is {n_cases} of {n_samples} samples", fix="leave at least one control and one case")
    groups = np.array(["case"] * n_cases + ["control"] * (n_samples - n_cases))
    rng.shuffle(groups)
    samples, abundance, present = [], np.zeros((n_samples, n_c)), np.ones((n_samples, n_c), dtype=bool)
    for s in range(n_samples):
        rs = _rng(seed, 12, s)
        age = round(float(p["age_mean"] + p["age_sd"] * rs.standard_normal()), 1)
        modules = p["module_log_sd"] * rs.standard_normal(max(int(p["n_modules"]), 1))
        level = (base + p["sample_factor_log_sd"] * rs.standard_normal() + modules[module]
                 + bio_sd * rs.standard_normal(n_c))
        if groups[s] == "case":
            level = level + effect
        level[age_compounds] += p["age_log_slope"] * (age - p["age_mean"])
        present[s] = rs.random(n_c) >= p["absent_fraction"]
        abundance[s] = np.where(present[s], np.exp(level), 0.0)
        samples.append({"sample_id": f"S{s + 1:02d}", "file": f"mzml/S{s + 1:02d}.mzML", "group": str(groups[s]),
                        "age": age})
    return {"samples": samples, "abundance": abundance, "present": present, "planted_class": planted,
            "changed": changed, "log_fold": effect, "biological_log_sd": bio_sd, "module": module,
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
            prec = obs_mz[k]
            lo_w, hi_w = prec - half_window, prec + half_window
            frag_mz, frag_int = [], []
            # co-isolated compound ions (monoisotopic) and background ions, with edge transmission
            mono = (ions.isotope[active] == 0) | bool(p.get("coisolate_isotopes", False))
            near = active[mono & (np.abs(ions.mz[active] - prec) <= half_window)]
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
            spec = new_spectrum(2, t_ms2, *ms2_detection(f_mz, f_int, prec, calib_ppm, rs, p))
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


def simulate_study(outdir: Path, n_samples: int = 12, seed: int = 0, params: dict | None = None,
                   profile: str = "demo") -> dict:
    """Write a synthetic study into ``outdir`` and return a summary (see the module docstring for the files).

    ``profile``: ``demo`` (the curated compounds, one class raised in cases; unchanged, byte-identical per seed) or
    ``realistic`` (thousands of background compounds, measured intensity and variation, sparse effect; see the
    module docstring). Raises InputError for fewer than 2 samples or bad parameters."""
    if n_samples < 2:
        raise InputError("a study needs at least 2 samples", fix="pass --samples 2 or more")
    p = merge_params(params, profile)
    outdir = Path(outdir)
    realistic = profile == "realistic"
    if realistic:
        compounds = realistic_compounds(seed, p)
        design = design_realistic(compounds, n_samples, seed, p)
    else:
        compounds = build_compounds(load_compounds(), p)
        design = design_study(compounds, n_samples, seed, p)
    changed = set(design.get("changed", np.empty(0)).tolist())
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
                "in_library": c.in_library, "adduct": c.adduct, "formula": c.formula,
                "n_ms2": int(truth["ms2_count"][i]),
                **({"changed": i in changed, "log_fold": float(design["log_fold"][i]), "parent": c.parent}
                   if realistic else {}),
            })
        log.info("simulated %s: %d spectra (%d MS2)", sample["sample_id"], exp.getNrSpectra(), n_ms2)
    sheet = pl.DataFrame(design["samples"])
    with atomic_path(outdir / "samples.tsv") as tmp:
        sheet.write_csv(tmp, separator="\t")
    truth_df = pl.DataFrame(truth_rows, infer_schema_length=None)
    with atomic_path(outdir / "ground_truth.tsv") as tmp:
        truth_df.write_csv(tmp, separator="\t", float_precision=6)
    write_text(_library_mgf([c for c in compounds if c.in_library]), outdir / "library.mgf")
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
    if realistic:
        summary.update(profile=profile, n_background_compounds=int(p["n_background_compounds"]),
                       effect_set=p["effect_set"], effect_direction=p["effect_direction"],
                       changed_compounds=[compounds[i].compound_id for i in sorted(changed)])
    write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n", outdir / "simulation.json")
    return {"outdir": str(outdir), **{k: v for k, v in summary.items() if k not in ("parameters", "runs")}}


# ---------------------------------------------------------------------------------------------------------------
# The same study without mzML: features known from the truth (for sweeps that cannot afford the pipeline)


@dataclass
class KnownFeatures:
    """A realistic study as the pipeline's per-sample stages would see it, built from the simulation's truth.

    ``samples``: the sample sheet (sample_id, file, group, age). ``features``: one row per compound in feature
    order (feature_id ``F{j}``, compound_id, name, chemical_class, mz, rt_s, in_library, changed, log_fold).
    ``intensity``: samples x features apex heights as measured (technical noise applied), NaN where the feature
    is not detected. ``spectra``: the MS/MS acquired, one row per (sample, fragmented feature) in the layout of
    ``tables.SPECTRA`` (spectrum_id, sample_id, feature_id, precursor_mz, precursor_intensity, mz, intensity)
    plus ``spectrum_key``: rows with equal keys hold identical peaks (the same feature fragmented at the same
    precursor-intensity level), so an encoder needs to embed each key once. ``summary``: the design.
    """

    samples: pl.DataFrame
    features: pl.DataFrame
    intensity: np.ndarray
    spectra: pl.DataFrame
    summary: dict

    def features_table(self, sample_id: str) -> pl.DataFrame:
        """The detected features of one sample as the detect stage writes them (feature_id, sample_id, mz, rt_s,
        intensity); raises KeyError for an unknown sample."""
        s = self.samples["sample_id"].to_list().index(sample_id)
        detected = np.isfinite(self.intensity[s])
        return pl.DataFrame({
            "feature_id": self.features["feature_id"].filter(pl.Series(detected)),
            "sample_id": [sample_id] * int(detected.sum()),
            "mz": self.features["mz"].filter(pl.Series(detected)),
            "rt_s": self.features["rt_s"].filter(pl.Series(detected)),
            "intensity": self.intensity[s, detected],
        })


def simulate_features(n_samples: int, seed: int = 0, params: dict | None = None) -> KnownFeatures:
    """A realistic-profile study built from its truth, without writing or reading mzML.

    Same compounds, design and planted effect as ``simulate_study(..., profile="realistic")`` with the same seed
    and params; then, instead of simulating scans: a feature's measured height is its true apex height times
    exp(``technical_log_sd`` x N(0, 1)) and it is detected when that is at least ``detection_limit``; a feature is
    fragmented when its height reaches ``dda_min_intensity``, with probability ``ms2_coverage`` (top-N competition
    and exclusion); the precursor intensity at the trigger is the height times U(0.3, 1); the spectrum is the
    compound's fragments scaled by ``ms2_gain`` x precursor intensity, chimeric with probability
    ``chimeric_fraction`` (a co-eluting compound's fragments mixed in at precursor purity U(``chimeric_purity``)),
    then :func:`ms2_detection` (noise, centroid floor: weak precursors give few peaks). Precursor intensities are
    binned to 0.5 log10 units for the spectrum (``spectrum_key``), so identical keys share one spectrum. The
    detection limit and coverage were measured on the mzML simulation run through the detect stage (module
    docstring). Cost: ~20 s of compound building (cached per process), then well under a second per sample.
    Raises InputError for fewer than 2 samples or bad parameters.
    """
    if n_samples < 2:
        raise InputError("a study needs at least 2 samples", fix="pass 2 or more samples")
    p = merge_params(params, "realistic")
    compounds = realistic_compounds(seed, p)
    design = design_realistic(compounds, n_samples, seed, p)
    n_c = len(compounds)
    rt = np.array([c.rt_s for c in compounds])
    mz = np.array([c.mz for c in compounds])
    measured = np.full((n_samples, n_c), np.nan)
    rows: dict[str, list] = {k: [] for k in ("spectrum_id", "sample_id", "feature_id", "precursor_mz",
                                             "precursor_intensity", "mz", "intensity", "spectrum_key")}
    cache: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}
    for s, sample in enumerate(design["samples"]):
        rs = _rng(seed, 13, s)
        height = design["abundance"][s] * np.exp(p["technical_log_sd"] * rs.standard_normal(n_c))
        detected = height >= p["detection_limit"]
        measured[s, detected] = height[detected]
        fragmented = (height >= p["dda_min_intensity"]) & (rs.random(n_c) < p["ms2_coverage"])
        trigger = height * rs.uniform(0.3, 1.0, n_c)
        for j in np.flatnonzero(fragmented):
            level = int(np.floor(2.0 * np.log10(max(trigger[j], p["dda_min_intensity"]))))
            if (j, level) not in cache:
                cache[(j, level)] = _known_spectrum(compounds, j, level, rt, seed, p)
            peaks_mz, peaks_int = cache[(j, level)]
            rows["spectrum_id"].append(f"{sample['sample_id']}:F{j}")
            rows["sample_id"].append(sample["sample_id"])
            rows["feature_id"].append(f"F{j}")
            rows["precursor_mz"].append(float(mz[j]))
            rows["precursor_intensity"].append(float(trigger[j]))
            rows["mz"].append(peaks_mz)
            rows["intensity"].append(peaks_int)
            rows["spectrum_key"].append(f"F{j}@{level}")
    changed = set(design["changed"].tolist())
    features = pl.DataFrame({
        "feature_id": [f"F{j}" for j in range(n_c)], "compound_id": [c.compound_id for c in compounds],
        "name": [c.name for c in compounds], "chemical_class": [c.chemical_class for c in compounds],
        "mz": mz, "rt_s": rt, "in_library": [c.in_library for c in compounds],
        "changed": [j in changed for j in range(n_c)], "log_fold": design["log_fold"],
    })
    spectra = pl.DataFrame(rows, schema={
        "spectrum_id": pl.Utf8, "sample_id": pl.Utf8, "feature_id": pl.Utf8, "precursor_mz": pl.Float64,
        "precursor_intensity": pl.Float64, "mz": pl.List(pl.Float64), "intensity": pl.List(pl.Float32),
        "spectrum_key": pl.Utf8})
    summary = {"seed": seed, "n_samples": n_samples, "n_features": n_c, "planted_class": design["planted_class"],
               "changed_compounds": [compounds[j].compound_id for j in sorted(changed)],
               "n_cases": sum(r["group"] == "case" for r in design["samples"]), "parameters": p}
    return KnownFeatures(pl.DataFrame(design["samples"]), features, measured, spectra, summary)


def _known_spectrum(compounds: list[Compound], j: int, level: int, rt: np.ndarray, seed: int,
                    p: dict) -> tuple[np.ndarray, np.ndarray]:
    """The spectrum of compound ``j`` fragmented at precursor intensity 10^(level / 2) (see simulate_features)."""
    rs = _rng(seed, 14, j, level)
    c = compounds[j]
    precursor = 10.0 ** ((level + 0.5) / 2.0)
    frag_mz = [c.spectrum_mz]
    frag_int = [precursor * p["ms2_gain"] * c.spectrum_intensity.astype(np.float64)]
    if rs.random() < p["chimeric_fraction"]:
        co_eluting = np.flatnonzero((np.abs(rt - rt[j]) <= 5.0) & (np.arange(len(rt)) != j))
        if co_eluting.size:
            other = compounds[int(rs.choice(co_eluting))]
            purity = rs.uniform(*p["chimeric_purity"])
            frag_mz.append(other.spectrum_mz)
            frag_int.append(precursor * (1.0 - purity) / purity * p["ms2_gain"]
                            * other.spectrum_intensity.astype(np.float64))
    peaks_mz, peaks_int = ms2_detection(np.concatenate(frag_mz), np.concatenate(frag_int), c.mz, 0.0, rs, p)
    return clean_peaks(peaks_mz, peaks_int, c.mz)  # as the spectra stage does, with the default cleaning


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
    p.add_argument("--profile", choices=PROFILES, default="demo",
                   help="demo (default: curated compounds, one class raised) or realistic (thousands of background "
                        "compounds, measured intensity distribution and variation, a sparse planted effect)")
    p.add_argument("--realistic", dest="profile", action="store_const", const="realistic",
                   help="same as --profile realistic")
    add_params_argument(p)

    def run(args: argparse.Namespace) -> int:
        summary = simulate_study(args.outdir, n_samples=args.samples, seed=args.seed, params=load_params(args),
                                 profile=args.profile)
        print(json.dumps(summary, indent=2))
        return 0

    p.set_defaults(func=run)
