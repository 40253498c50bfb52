"""Background compounds of the realistic profile: one- and two-step biotransformation products of the curated ones.

The realistic background metabolome is made of derivatives of the curated compounds (17 phase I/II reactions as
reaction SMARTS), not in the library, so that their masses, mass defects, isotope patterns and MS/MS look like
metabolites and embed near their parents' chemistry. Their MS/MS is derived from the parent's spectrum
(``derived_spectrum``: shared and mass-shifted fragments, labile groups lost whole) because the in-silico
fragmenter is too slow for thousands of conjugates. May import ``ms2study.core`` and the simulate modules
``ions``, ``fragment``, ``params`` and ``compounds``.
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

import numpy as np
from rdkit import Chem
from rdkit.Chem import Crippen, Descriptors
from rdkit.Chem.rdMolDescriptors import CalcMolFormula

from ms2study.core.errors import InputError
from ms2study.simulate import fragment, ions
from ms2study.simulate.compounds import COMPOUNDS_TSV, Compound, build_compounds, isotope_ratios, load_compounds
from ms2study.simulate.params import stream

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
    """The RDKit reaction of a SMARTS string, compiled once per process."""
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
    return (float(ions.precursor_mz(smiles)), float(Crippen.MolLogP(Chem.MolFromSmiles(smiles))), spec_mz,
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
        iso = isotope_ratios(smiles)
    except (ValueError, RuntimeError):  # pyOpenMS / RDKit refuse odd formulas: no such background compound
        return None
    spec_mz, spec_int = derived_spectrum(source[1], source[2], source[0], mz, transformation, smiles)
    if spec_mz.size == 0:
        return None
    return (ions.ion_adduct(mol), CalcMolFormula(mol), Chem.MolToInchiKey(mol), mz, iso, float(Crippen.MolLogP(mol)),
            spec_mz, spec_int)


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
    rng = stream(seed, 10)
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
    """(precursor m/z, spectrum m/z, spectrum intensity) of a compound, the source of its derivatives' spectra."""
    return compound.mz, compound.spectrum_mz, compound.spectrum_intensity


def realistic_compounds(seed: int, p: dict) -> list[Compound]:
    """The curated compounds (the library) followed by ``n_background_compounds`` derivatives (not in it)."""
    reference = build_compounds(load_compounds(), p)
    return reference + background_compounds(reference, int(p["n_background_compounds"]), seed, p)
