"""Compounds of a simulated study: the curated list, their ions, isotope patterns, retention times and peak shapes.

``build_compounds`` turns ``resources/compounds.tsv`` (real structures with isomer sets) into :class:`Compound`
records: exact precursor m/z, formula and InChIKey (:mod:`ms2study.simulate.ions`), reference spectrum
(:mod:`ms2study.simulate.fragment`), isotope pattern from the ion's formula (pyOpenMS), a reversed-phase-like
retention time from the Crippen logP rank with near-isobars moved apart, and a per-compound peak width and
tailing. May import ``ms2study.core`` and the simulate modules ``ions`` and ``fragment``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
from rdkit import Chem
from rdkit.Chem import Crippen

from ms2study.core.errors import InputError
from ms2study.simulate import fragment, ions
from ms2study.simulate.formula_mass import coarse_isotope_distribution

REPO_ROOT = Path(__file__).resolve().parents[3]
COMPOUNDS_TSV = REPO_ROOT / "resources" / "compounds.tsv"


@dataclass
class Compound:
    """One simulated compound: identity, ion, chromatography and reference MS/MS (m/z ascending, base peak 1.0)."""

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


def isotope_ratios(smiles: str) -> np.ndarray:
    """Isotope pattern of the precursor ion: intensities relative to the monoisotopic peak (first element 1.0),
    peaks of at least 0.005 of it, at most 4 (``formula_mass.coarse_isotope_distribution`` of
    :func:`ions.ion_formula`: pyOpenMS's coarse generator gave other values in another process). Raises ValueError or
    RuntimeError when RDKit or pyOpenMS refuse the structure."""
    probs = coarse_isotope_distribution(ions.ion_formula(smiles), 4)
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
            raise InputError(
                f"simulation parameters: no room on the gradient for compound {keys[i]}: it cannot elute "
                f"min_rt_separation_s ({sep:g} s) from each of its {len(clash)} isobars between rt_margin_s and "
                f"rt_max_s - rt_margin_s ({lo:g}-{hi:g} s)",
                fix=f"raise rt_max_s (now {p['rt_max_s']:g} s; the default 600 s fits every curated compound) or "
                    "lower min_rt_separation_s")
        rt[i] = candidate
        placed.append(i)
    return rt


def build_compounds(table: pl.DataFrame, params: dict) -> list[Compound]:
    """Compounds with exact m/z, isotope pattern, retention time, peak shape and reference spectrum."""
    rows = table.to_dicts()
    mz = np.array([ions.precursor_mz(r["smiles"]) for r in rows])
    logp = np.array([Crippen.MolLogP(Chem.MolFromSmiles(r["smiles"])) for r in rows])
    keys = [ions.inchikey(r["smiles"]) for r in rows]
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
            adduct=ions.default_adduct(r["smiles"]), formula=ions.formula(r["smiles"]), inchikey=key,
            mz=float(m), isotope_ratios=isotope_ratios(r["smiles"]), rt_s=float(rt),
            fwhm_s=f_lo + (f_hi - f_lo) * u, tailing=t_lo + (t_hi - t_lo) * v,
            spectrum_mz=spec_mz, spectrum_intensity=spec_int,
        ))
    return out
