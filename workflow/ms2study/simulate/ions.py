"""Precursor ions of structures: parsing, charge state, element counts, exact m/z, formulas and InChIKeys.

The simulator's ions are ``[M+H]+`` for neutral molecules (zwitterions included: their anionic sites are
protonated) and ``[M]+`` for net cations (choline, thiamine). Masses are exact: monoisotopic atoms (RDKit's
periodic table) minus the electron. :mod:`ms2study.simulate.fragment` builds its fragments on ``prepare`` and
``formula_counts``; the compound builders take masses, formulas and isotope-pattern formulas from here. May import
RDKit only.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from rdkit import Chem, RDLogger
from rdkit.Chem.rdMolDescriptors import CalcMolFormula

RDLogger.DisableLog("rdApp.*")

ELECTRON_MASS = 0.000548579909
_PT = Chem.GetPeriodicTable()
H_MASS = _PT.GetMostCommonIsotopeMass("H")
SUPPORTED_ADDUCTS = ("[M+H]+", "[M]+")


@dataclass(frozen=True)
class Molecule:
    """A neutralised molecule: heavy-atom graph with hydrogen counts, and how it carries its charge."""

    mol: Chem.Mol
    symbols: tuple[str, ...]
    n_h: tuple[int, ...]
    neighbours: tuple[tuple[int, ...], ...]
    charge_atom: int | None     # atom holding a fixed positive charge (quaternary N, pyridinium...), else None
    extra_h: int                # hydrogens added to the neutral molecule to make the precursor (1 for [M+H]+)
    inchikey: str


def _parse(smiles: str) -> Chem.Mol:
    """The RDKit molecule of ``smiles``; raises ValueError when RDKit cannot parse it."""
    mol = Chem.MolFromSmiles(smiles)
    if mol is None:
        raise ValueError(f"RDKit cannot parse SMILES {smiles!r}")
    return mol


def ion_adduct(mol: Chem.Mol) -> str:
    """The positive-mode ion a molecule is observed as: ``[M]+`` for a net cation (choline, thiamine),
    ``[M+H]+`` otherwise (zwitterions such as carnitines and betaine are neutral molecules)."""
    return "[M]+" if Chem.GetFormalCharge(mol) == 1 else "[M+H]+"


def prepare(smiles: str, adduct: str | None = None) -> Molecule:
    """The neutralised molecule of ``smiles`` as its precursor ion carries it: anionic sites (carboxylate,
    phosphate, N-oxide of zwitterions) protonated, at most one fixed positive charge. ``adduct`` must be the
    structure's own ion (:func:`ion_adduct`) when given. Raises ValueError for a SMILES RDKit cannot parse, an
    unsupported or unfitting adduct, or another charge state."""
    if adduct is not None and adduct not in SUPPORTED_ADDUCTS:
        raise ValueError(f"adduct {adduct} is not supported; use one of {', '.join(SUPPORTED_ADDUCTS)}")
    mol = _parse(smiles)
    key = Chem.MolToInchiKey(mol)
    natural = ion_adduct(mol)
    rw = Chem.RWMol(mol)
    # Anionic sites of zwitterions (carboxylate, phosphate, N-oxide) are protonated in the positive-mode ion.
    for atom in rw.GetAtoms():
        if atom.GetFormalCharge() < 0:
            atom.SetNumExplicitHs(atom.GetTotalNumHs() - atom.GetFormalCharge())
            atom.SetFormalCharge(0)
            atom.SetNoImplicit(True)
    neutral = rw.GetMol()
    Chem.SanitizeMol(neutral)
    positive = [a.GetIdx() for a in neutral.GetAtoms() if a.GetFormalCharge() > 0]
    if len(positive) > 1 or sum(a.GetFormalCharge() for a in neutral.GetAtoms()) not in (0, 1):
        raise ValueError(f"unsupported charge state in {smiles!r}")
    charge_atom = positive[0] if positive else None
    if adduct is not None and adduct != natural:
        raise ValueError(f"adduct {adduct} does not fit {smiles!r}; its ion is {natural}")
    return Molecule(
        mol=neutral,
        symbols=tuple(a.GetSymbol() for a in neutral.GetAtoms()),
        n_h=tuple(a.GetTotalNumHs() for a in neutral.GetAtoms()),
        neighbours=tuple(tuple(n.GetIdx() for n in a.GetNeighbors()) for a in neutral.GetAtoms()),
        charge_atom=charge_atom,
        extra_h=0 if charge_atom is not None else 1,
        inchikey=key,
    )


def default_adduct(smiles: str) -> str:
    """``[M]+`` for net cations (choline, thiamine), ``[M+H]+`` otherwise (zwitterions included); see
    :func:`ion_adduct`. Raises ValueError for a SMILES RDKit cannot parse."""
    return ion_adduct(_parse(smiles))


def formula_counts(m: Molecule, atoms: frozenset[int] | range, extra_h: int) -> Counter:
    """Element counts of the ``atoms`` of ``m`` with their hydrogens, plus ``extra_h`` hydrogens."""
    counts: Counter = Counter()
    for i in atoms:
        counts[m.symbols[i]] += 1
        counts["H"] += m.n_h[i]
    counts["H"] += extra_h
    return counts


def counts_mz(counts: Counter) -> float:
    """Exact m/z of a singly charged cation of these element counts (monoisotopic masses minus one electron)."""
    return sum(n * (_PT.GetMostCommonIsotopeMass(el) if el != "H" else H_MASS) for el, n in counts.items() if n) \
        - ELECTRON_MASS


def hill_formula(counts: Counter) -> str:
    """Element counts as a Hill-order formula (C, H, then alphabetical; counts of 1 left out)."""
    order = ["C", "H"] + sorted(el for el in counts if el not in ("C", "H"))
    return "".join(f"{el}{counts[el] if counts[el] > 1 else ''}" for el in order if counts.get(el, 0) > 0)


def _ion_counts(smiles: str, adduct: str | None) -> Counter:
    """Element counts of the whole precursor ion (anionic sites protonated, plus the adduct's hydrogen)."""
    m = prepare(smiles, adduct)
    return formula_counts(m, range(len(m.symbols)), m.extra_h)


def precursor_mz(smiles: str, adduct: str | None = None) -> float:
    """Exact m/z of the precursor ion (``[M+H]+``, or ``[M]+`` for intrinsic cations).

    Raises ValueError for a SMILES RDKit cannot parse, an adduct that does not fit, or a charge state other than
    neutral (zwitterions included) or one fixed positive charge.

    >>> round(precursor_mz("CC(C)C[C@H](N)C(=O)O"), 4)
    132.1019
    """
    return counts_mz(_ion_counts(smiles, adduct))


def ion_formula(smiles: str, adduct: str | None = None) -> str:
    """Element formula of the precursor ion in Hill order, without charge sign (for its isotope pattern).

    The atoms are those :func:`precursor_mz` weighs. Raises ValueError as :func:`precursor_mz` does.

    >>> ion_formula("CC(C)C[C@H](N)C(=O)O")
    'C6H14NO2'
    """
    return hill_formula(_ion_counts(smiles, adduct))


def formula(smiles: str) -> str:
    """Molecular formula as RDKit writes it (Hill order; a trailing ``+`` for intrinsic cations)."""
    return CalcMolFormula(_parse(smiles))


def inchikey(smiles: str) -> str:
    """Standard InChIKey of the structure."""
    return Chem.MolToInchiKey(_parse(smiles))
