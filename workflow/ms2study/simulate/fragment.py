"""In-silico MS/MS spectra from structure (RDKit), used by the study simulator and its library.

The model is a small, deterministic rule set in the spirit of combinatorial fragmenters: the protonated molecule
(or the intrinsic cation) breaks one acyclic single bond, or two bonds of the same ring (ring opening); the charge
stays on the side with the higher proton affinity; one hydrogen moves to or from the charged side (even-electron
ions), and common neutral losses (H2O, NH3, CO, CO2, HCOOH, H3PO4, HPO3, SO3) follow where their groups exist.
Intensities depend on the broken bond's environment (heteroatoms, carbonyls, amides, esters, glycosidic and
phosphate bonds), on which side keeps the charge and on fragment size, plus a small per-compound variation keyed to
the full InChIKey, so that isomers (even stereoisomers) get related but different spectra. Masses are exact
(monoisotopic atoms minus the electron, :mod:`ms2study.simulate.ions`); identical fragment formulas from
different routes are merged. May import RDKit and :mod:`ms2study.simulate.ions`.
"""

from __future__ import annotations

import functools
import hashlib
from collections import Counter

import numpy as np
from rdkit import Chem

from ms2study.simulate.ions import Molecule, counts_mz, formula_counts, hill_formula, prepare

# Neutral losses: formula, weight when the group exists. Weights are relative to a typical bond cleavage.
NEUTRAL_LOSSES: dict[str, tuple[dict[str, int], float]] = {
    "H2O": ({"H": 2, "O": 1}, 0.45),
    "NH3": ({"H": 3, "N": 1}, 0.40),
    "CO": ({"C": 1, "O": 1}, 0.15),
    "CO2": ({"C": 1, "O": 2}, 0.20),
    "HCOOH": ({"C": 1, "H": 2, "O": 2}, 0.45),
    "H3PO4": ({"H": 3, "P": 1, "O": 4}, 0.90),
    "HPO3": ({"H": 1, "P": 1, "O": 3}, 0.30),
    "SO3": ({"S": 1, "O": 3}, 0.50),
}

MIN_FRAGMENT_MZ = 40.0


# ---------------------------------------------------------------------------------------------------------------
# Chemistry of bonds and charge sites


def _is_carbonyl_carbon(atom: Chem.Atom) -> bool:
    return atom.GetSymbol() == "C" and any(
        b.GetBondType() == Chem.BondType.DOUBLE and b.GetOtherAtom(atom).GetSymbol() in ("O", "S")
        for b in atom.GetBonds()
    )


def _is_carboxyl_carbon(atom: Chem.Atom) -> bool:
    return _is_carbonyl_carbon(atom) and any(
        b.GetBondType() == Chem.BondType.SINGLE and b.GetOtherAtom(atom).GetSymbol() == "O"
        and b.GetOtherAtom(atom).GetTotalNumHs() > 0 for b in atom.GetBonds()
    )


def _is_amide_n(atom: Chem.Atom) -> bool:
    return atom.GetSymbol() == "N" and not atom.GetIsAromatic() and any(
        _is_carbonyl_carbon(n) for n in atom.GetNeighbors()
    )


def _proton_affinity(atom: Chem.Atom) -> float:
    """How strongly a site holds the charge (arbitrary units; only ratios matter)."""
    symbol = atom.GetSymbol()
    if atom.GetFormalCharge() > 0:
        return 60.0
    if symbol == "N":
        if atom.GetIsAromatic():
            return 1.5 if atom.GetTotalNumHs() > 0 else 6.0
        if _is_amide_n(atom):
            return 2.0
        imine_carbon = any(
            n.GetSymbol() == "C" and any(
                b.GetBondType() == Chem.BondType.DOUBLE and b.GetOtherAtom(n).GetSymbol() == "N" for b in n.GetBonds()
            )
            for n in atom.GetNeighbors()
        )
        if imine_carbon or any(b.GetBondType() == Chem.BondType.DOUBLE for b in atom.GetBonds()):
            return 10.0  # guanidine / amidine
        if any(n.GetSymbol() == "S" for n in atom.GetNeighbors()):
            return 2.5
        return 8.0 if not any(n.GetIsAromatic() for n in atom.GetNeighbors()) else 5.0
    if symbol == "O":
        if any(b.GetBondType() == Chem.BondType.DOUBLE for b in atom.GetBonds()):
            return 2.0
        if any(n.GetSymbol() in ("P", "S") for n in atom.GetNeighbors()):
            return 0.8
        return 1.2
    if symbol == "S":
        return 1.5
    if atom.GetIsAromatic():
        return 0.9
    return 0.3


def _bond_factor(bond: Chem.Bond) -> float:
    """Relative lability of a bond from its environment."""
    a, b = bond.GetBeginAtom(), bond.GetEndAtom()
    sa, sb = a.GetSymbol(), b.GetSymbol()
    pair = {sa, sb}
    if a.GetFormalCharge() > 0 or b.GetFormalCharge() > 0:
        # the chain bond of a quaternary ammonium breaks readily; its N-methyl bonds do not
        return 0.12 if min(a.GetDegree(), b.GetDegree()) == 1 else 2.0
    if "P" in pair:
        return 1.6
    if pair == {"C", "O"}:
        c, o = (a, b) if sa == "C" else (b, a)
        if any(n.GetSymbol() in ("P", "S") for n in o.GetNeighbors()):
            return 1.3  # phosphate / sulfate ester
        if _is_carbonyl_carbon(c):
            return 1.5 if o.GetDegree() == 2 else 0.5  # ester bond; a free acid's C-OH is stronger
        if sum(n.GetSymbol() == "O" for n in c.GetNeighbors()) >= 2 and o.GetDegree() == 2:
            return 1.7  # glycosidic bond
        if c.GetIsAromatic():
            return 0.5
        return 1.0 if o.GetDegree() == 2 else 0.9
    if pair == {"C", "N"}:
        c, n = (a, b) if sa == "C" else (b, a)
        if _is_carbonyl_carbon(c):
            return 1.6  # amide
        if any(x.GetSymbol() == "O" and x.IsInRing() for x in c.GetNeighbors()) and c.IsInRing():
            return 1.8  # N-glycosidic bond of nucleosides
        if c.GetIsAromatic() or n.GetIsAromatic():
            return 0.7 if (c.GetIsAromatic() != n.GetIsAromatic()) else 0.4
        return 1.1
    if "S" in pair:
        return 1.0
    if pair == {"C"}:
        if a.GetIsAromatic() and b.GetIsAromatic():
            return 0.15
        if a.GetIsAromatic() or b.GetIsAromatic():
            return 0.8  # benzylic
        if _is_carboxyl_carbon(a) or _is_carboxyl_carbon(b):
            return 1.1
        if _is_carbonyl_carbon(a) or _is_carbonyl_carbon(b):
            return 0.7
        hetero = sum(n.GetSymbol() in ("N", "O", "S") for x in (a, b) for n in x.GetNeighbors())
        return 0.15 + 0.06 * min(hetero, 3)
    return 0.6


def _cation_stabilised(atom: Chem.Atom, piece: frozenset[int]) -> bool:
    """Can ``atom`` carry a positive charge after heterolysis (iminium, oxonium, acylium, benzylic)?"""
    if atom.GetIsAromatic() or _is_carbonyl_carbon(atom):
        return True
    return any(n.GetIdx() in piece and (n.GetSymbol() in ("N", "O", "S") or n.GetIsAromatic())
               for n in atom.GetNeighbors())


def stable_normal(key: str) -> float:
    """A deterministic standard-normal number for ``key`` (stable across runs and platforms)."""
    digest = hashlib.blake2b(key.encode(), digest_size=16).digest()
    u1 = (int.from_bytes(digest[:8], "little") + 0.5) / 2.0**64
    u2 = (int.from_bytes(digest[8:], "little") + 0.5) / 2.0**64
    return float(np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2))


def _pieces(m: Molecule, cut: set[frozenset[int]]) -> list[frozenset[int]]:
    """Connected components of the heavy-atom graph after removing the ``cut`` bonds (pairs of atoms)."""
    seen: set[int] = set()
    parts = []
    for start in range(len(m.symbols)):
        if start in seen:
            continue
        stack, comp = [start], {start}
        while stack:
            i = stack.pop()
            for j in m.neighbours[i]:
                if j not in comp and frozenset((i, j)) not in cut:
                    comp.add(j)
                    stack.append(j)
        seen |= comp
        parts.append(frozenset(comp))
    return parts


def _loss_groups(m: Molecule, piece: frozenset[int]) -> dict[str, float]:
    """Neutral losses possible from ``piece`` with their group multiplicity factor."""
    mol = m.mol
    n_oh = n_nh2 = n_cooh = n_co = n_po = n_so = 0
    for i in piece:
        atom = mol.GetAtomWithIdx(i)
        s = atom.GetSymbol()
        if s == "O" and m.n_h[i] > 0:
            n_oh += 1
        elif s == "N" and m.n_h[i] >= 2:
            n_nh2 += 1
        elif s == "C" and _is_carbonyl_carbon(atom):
            n_co += 1
            if _is_carboxyl_carbon(atom) and all(n.GetIdx() in piece for n in atom.GetNeighbors()):
                n_cooh += 1
        elif s == "P":
            n_po += 1
        elif s == "S" and sum(n.GetSymbol() == "O" for n in atom.GetNeighbors()) >= 3:
            n_so += 1
    groups = {}
    if n_oh:
        groups["H2O"] = min(n_oh, 4) ** 0.5
    if n_nh2:
        groups["NH3"] = min(n_nh2, 3) ** 0.5
    if n_cooh:
        groups["HCOOH"] = 1.0
        groups["CO2"] = 1.0
    if n_co:
        groups["CO"] = 1.0
    if n_po:
        groups["H3PO4"] = 1.0
        groups["HPO3"] = 1.0
    if n_so:
        groups["SO3"] = 1.0
    return groups


def _side_variants(m: Molecule, piece: frozenset[int], ends: list[int], ends_other: list[int], ring_opening: bool,
                   pa_piece: float, pa_other: float, h_piece: int, h_other: int,
                   ) -> tuple[float, list[tuple[int, float, bool]]] | None:
    """How ``piece`` of a cleavage can carry the charge: (charge weight, variants), each variant (hydrogens moved
    onto the piece, weight, the leaving neutral must form a new bond); None when it cannot. ``ends`` and
    ``ends_other`` are the cut bonds' atoms on either side; ``pa_*`` the sides' proton affinities."""
    mol = m.mol
    hetero_end = any(m.symbols[i] in ("N", "O", "S") for i in ends)
    stabilised = any(_cation_stabilised(mol.GetAtomWithIdx(i), piece) for i in ends)
    # a carbon end becomes a stabilised cation (iminium, oxonium, acylium, benzylic); a heteroatom end
    # would be a nitrenium/oxenium ion, so there the piece takes a hydrogen instead
    minus_w = 0.1 if hetero_end else (1.0 if stabilised else 0.35)
    if m.charge_atom is not None:
        if m.charge_atom in piece:
            charge_w = 1.0
            if ring_opening:
                variants = [(0, 1.0, True)]
            else:
                variants = [(-1, minus_w, False)] if h_piece > 0 else []
                if h_other > 0:
                    variants.append((+1, 1.0 if hetero_end else 0.25, True))
        elif ring_opening or m.charge_atom not in ends_other:
            return None
        else:
            # the fixed-charge group leaves as a neutral (trimethylamine from carnitines and choline)
            charge_w, variants = 0.6, [(0, 1.0, False)]
    else:
        charge_w = pa_piece ** 2 / (pa_piece ** 2 + pa_other ** 2)
        if ring_opening:
            variants = [(0, 1.0, True)]
        else:
            variants = [(-1, minus_w, False)]
            if h_other > 0:
                variants.append((+1, 1.0 if hetero_end else 0.25, True))
    if charge_w < 1e-3:
        return None
    return charge_w, variants


def _ring_openings(mol: Chem.Mol) -> list[tuple[list[Chem.Bond], float]]:
    """Pairs of bonds of one ring (rings of at most 7 bonds, molecules of at most 8 rings) whose cleavage opens it,
    with the pair's weight; carbocyclic aromatic rings are left closed."""
    out = []
    ring_info = mol.GetRingInfo()
    if ring_info.NumRings() > 8:
        return out
    for ring in ring_info.BondRings():
        if len(ring) > 7:
            continue
        bonds = [mol.GetBondWithIdx(i) for i in ring]
        for x in range(len(bonds)):
            for y in range(x + 1, len(bonds)):
                b1, b2 = bonds[x], bonds[y]
                if any(b.GetBondType() not in (Chem.BondType.SINGLE, Chem.BondType.AROMATIC) for b in (b1, b2)):
                    continue
                aromatic = b1.GetIsAromatic() or b2.GetIsAromatic()
                hetero = any(at.GetSymbol() != "C" for b in (b1, b2) for at in (b.GetBeginAtom(), b.GetEndAtom()))
                if aromatic and not hetero:
                    continue  # carbocyclic aromatic rings hardly open at usual collision energies
                scale = 0.12 if aromatic else 0.35
                out.append(([b1, b2], scale * (_bond_factor(b1) * _bond_factor(b2)) ** 0.5))
    return out


def _neutral_losses(m: Molecule, precursor_counts: Counter,
                    primary: list[tuple[frozenset[int], Counter, float]]) -> list[tuple[Counter, float]]:
    """(counts, weight) of the neutral losses from the precursor (strong) and once from each primary fragment of
    weight at least 0.02 (weaker), where the lost group exists."""
    out = []
    total_primary = sum(w for _, _, w in primary) or 1.0
    for name, mult in _loss_groups(m, frozenset(range(len(m.symbols)))).items():
        loss, base = NEUTRAL_LOSSES[name]
        counts = precursor_counts.copy()
        counts.subtract(loss)
        out.append((counts, base * mult * 0.35 * total_primary / max(len(primary), 1) * 3.0))
    for piece, counts0, w in primary:
        if w < 0.02:
            continue
        for name, mult in _loss_groups(m, piece).items():
            loss, base = NEUTRAL_LOSSES[name]
            counts = counts0.copy()
            counts.subtract(loss)
            out.append((counts, 0.4 * w * base * mult))
    return out


@functools.lru_cache(maxsize=4096)
def _fragment_table(smiles: str, adduct: str | None) -> tuple[tuple[str, float, float], ...]:
    """(formula, m/z, raw weight) of every predicted ion, precursor included; cached per structure."""
    m = prepare(smiles, adduct)
    mol = m.mol
    n_atoms = len(m.symbols)
    peaks: dict[str, list] = {}

    def add(counts: Counter, weight: float) -> None:
        if weight <= 0 or any(v < 0 for v in counts.values()):
            return
        mz = counts_mz(counts)
        if mz < MIN_FRAGMENT_MZ:
            return
        key = hill_formula(counts)
        if key in peaks:
            peaks[key][1] += weight
        else:
            peaks[key] = [mz, weight, counts]

    def pa(piece: frozenset[int]) -> float:
        best = max(_proton_affinity(mol.GetAtomWithIdx(i)) for i in piece)
        return best * (1.0 + 0.03 * len(piece))

    total_h = sum(m.n_h)
    size_total = float(n_atoms)
    primary: list[tuple[frozenset[int], Counter, float]] = []

    def neutral_ok(other: frozenset[int], ends_other: list[int], needs_bond: bool) -> bool:
        """Can the leaving piece close its shell? A new double bond needs two heavy atoms (CO excepted)."""
        if not needs_bond or len(other) >= 2:
            return True
        atom = mol.GetAtomWithIdx(ends_other[0])
        return atom.GetSymbol() == "C" and any(b.GetBondType() == Chem.BondType.DOUBLE for b in atom.GetBonds())

    def cleave(cut_bonds: list[Chem.Bond], factor: float) -> None:
        cut = {frozenset((b.GetBeginAtomIdx(), b.GetEndAtomIdx())) for b in cut_bonds}
        parts = _pieces(m, cut)
        if len(parts) != 2:
            return
        pa_parts = [pa(p) for p in parts]
        for side in (0, 1):
            piece, other = parts[side], parts[1 - side]
            ends = [i for b in cut_bonds for i in (b.GetBeginAtomIdx(), b.GetEndAtomIdx()) if i in piece]
            ends_other = [i for b in cut_bonds for i in (b.GetBeginAtomIdx(), b.GetEndAtomIdx()) if i in other]
            h_piece = sum(m.n_h[i] for i in piece)
            charge = _side_variants(m, piece, ends, ends_other, len(cut_bonds) == 2, pa_parts[side],
                                    pa_parts[1 - side], h_piece, total_h - h_piece)
            if charge is None:
                continue
            charge_w, variants = charge
            # fragment size: mid-sized ions dominate; very small ones are rarely intense
            frac = len(piece) / size_total
            size_w = (0.35 + frac) * (1.0 - 0.45 * frac)
            for delta, hw, needs_bond in variants:
                if not neutral_ok(other, ends_other, needs_bond):
                    continue
                counts = formula_counts(m, piece, m.extra_h + delta)
                w = factor * charge_w * hw * size_w
                add(counts, w)
                primary.append((piece, counts, w))

    for bond in mol.GetBonds():
        if bond.IsInRing() or bond.GetBondType() != Chem.BondType.SINGLE:
            continue
        cleave([bond], _bond_factor(bond))
    for bonds, factor in _ring_openings(mol):
        cleave(bonds, factor)

    precursor_counts = formula_counts(m, frozenset(range(n_atoms)), m.extra_h)
    for counts, weight in _neutral_losses(m, precursor_counts, primary):
        add(counts, weight)

    # the surviving precursor: small, rigid ions survive more often
    mass = counts_mz(precursor_counts)
    survive = float(np.clip(0.55 - mass / 900.0, 0.04, 0.5))
    fragment_total = sum(v[1] for v in peaks.values()) or 1.0
    add(precursor_counts, survive * fragment_total / 3.0)

    table = []
    for key, (mz, weight, _) in peaks.items():
        # compound-specific variation keyed by the full InChIKey: stereoisomers differ, re-runs do not
        jitter = float(np.exp(0.38 * stable_normal(f"{m.inchikey}|{key}")))
        table.append((key, mz, weight * jitter))
    table.sort(key=lambda t: t[1])
    return tuple(table)


def predict_fragments(smiles: str, adduct: str | None = None) -> list[tuple[str, float, float]]:
    """All predicted ions as ``(formula, m/z, relative intensity)``, base peak 1.0, ascending m/z."""
    table = _fragment_table(smiles, adduct)
    top = max(w for _, _, w in table)
    return [(f, mz, w / top) for f, mz, w in table]


def predict_spectrum(
    smiles: str,
    adduct: str | None = None,
    max_peaks: int = 40,
    min_relative_intensity: float = 0.005,
) -> tuple[np.ndarray, np.ndarray]:
    """Predicted MS/MS spectrum: ``(m/z float64, intensity float32)``, ascending m/z, base peak 1.0.

    ``adduct`` is ``"[M+H]+"`` (neutral molecules) or ``"[M]+"`` (intrinsic cations); None picks the right one.
    The precursor ion is part of the spectrum (as in reference libraries), usually as a minor peak.

    >>> mz, inten = predict_spectrum("CC(C)C[C@H](N)C(=O)O")
    >>> bool(np.any(np.abs(mz - 86.0964) < 1e-4))
    True
    """
    frags = predict_fragments(smiles, adduct)
    mz = np.array([f[1] for f in frags], dtype=np.float64)
    inten = np.array([f[2] for f in frags], dtype=np.float64)
    keep = inten >= min_relative_intensity
    mz, inten = mz[keep], inten[keep]
    if mz.size > max_peaks:
        top = np.sort(np.argsort(-inten, kind="stable")[:max_peaks])
        mz, inten = mz[top], inten[top]
    return mz, (inten / inten.max()).astype(np.float32)
