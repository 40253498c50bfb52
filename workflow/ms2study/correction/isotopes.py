"""Isotope peaks for the adduct grouping (``correction.adducts``): the mass steps and intensity-ratio bounds that make
a co-eluting heavier consensus feature an isotope peak of a lighter (monoisotopic) one, and the labels it gets.

Readings of the heavier peak (edge kind and label suffix; mass above the monoisotopic ion), in the order a
monoisotopic feature tries them (:data:`READINGS`; it takes at most one peak per reading):

* 13C: ``M+1`` (+1.003355 Da); 13C2 ``M+2`` (+2.006710).
* one 15N or 33S, ``M+1``: ``15N`` (+0.997035), ``33S`` (+0.999388): 6.3 and 4.0 mDa below 13C, so a feature finder
  that folds the 13C peak into its feature (an isotope trace 1.003355 Da up) leaves them as features of their own
  (a spike-in study: five spiked compounds' 15N peaks were unlabelled compound groups, one a differential "hit").
* one heavy atom, ``M+2``: ``37Cl`` (+1.997050), ``81Br`` (+1.997953), ``34S`` (+1.995796), ``30Si`` (+1.996844).
* 13C and one heavy atom, ``M+3``: ``13C 37Cl`` (+3.000405), ``13C 81Br`` (+3.001308), ``13C 34S`` (+2.999151),
  ``13C 30Si`` (+3.000199).
* two heavy halogens, ``M+4``: ``37Cl2`` (+3.994100), ``37Cl81Br`` (+3.995003), ``81Br2`` (+3.995906).
* 13C2 and one heavy atom, ``M+4``: ``13C2 37Cl`` (+4.003760), ``13C2 81Br`` (+4.004663), ``13C2 34S`` (+4.002506),
  ``13C2 30Si`` (+4.003554).

Ratio bounds on intensity(peak) / intensity(monoisotopic) (the median over the runs where both are measured). The
ratio per atom rho = heavy / light abundance, IUPAC representative isotopic compositions (Meija et al., "Isotopic
compositions of the elements 2013", Pure Appl. Chem. 88, 293-306, 2016): 13C 0.0107 per carbon (as used), 37Cl/35Cl
0.2424/0.7576 = 0.320, 81Br/79Br 0.4931/0.5069 = 0.973, 34S/32S 0.0425/0.9499 = 0.0447, 30Si/28Si 0.03092/0.92223 =
0.0335, 15N/14N 0.00364/0.99636 = 0.00365, 33S/32S 0.0075/0.9499 = 0.0079. An ion of m/z holds at most C = m/z / 12
carbons (c = 0.0107 * C) and n = m/z / 35 Cl, m/z / 79 Br (perhalogenated compounds come close: hexachlorobenzene, 6
Cl at m/z 282 under 8; decabromodiphenyl ether, 10 Br at m/z 959 under 12), m/z / 60 S (thiram, C6H12N2S4, 4 S at m/z
241; sulfur-richer ions such as S8 are not covered) or m/z / 74 Si (the Si(CH3)2O unit of the siloxanes that are
common LC-MS background ions; silicon-containing drugs and pesticides, e.g. simeconazole C14H20FN3OSi, hold one); m/z
/ 14 N for 15N. Bounds (unchanged for 13C): M+1 within [0.002, 1.3 * c + 0.05]; 13C2 at most 1.3 * c^2 / 2 + 0.05; one
heavy atom within [0.75 * rho, 1.3 * n * rho + 0.05]; 13C and one heavy atom within [0.75 * rho * 0.0107, 1.3 * n *
rho * c + 0.05]; 13C2 and one heavy atom at most 1.3 * n * rho * c^2 / 2 + 0.05; two heavy atoms within [0.75 * rho1 *
rho2, 1.3 * s^2 / 2 + 0.05], s = m/z * max(rho / (Da per atom)) over the two elements (heavy atoms of any mix give an
M+4 of at most (sum of their rho)^2 / 2). The factors 0.75 and 1.3 and the 0.05 are slack for quantification noise;
0.75 keeps a dichlorinated M+2 (0.64) below one Br (0.73). A peak with a heavy atom beyond M+2 (M+3, M+4) is claimed
only for a monoisotopic feature that took a one-heavy-atom M+2 (the larger peak), and only as that M+2 reads
(:func:`follow`: its isotopes; two heavy halogens at M+4 as the Cl and Br count that best explains both ratios names
them, :func:`halogen_pairs`).

Telling them apart: the 37Cl, 81Br, 34S and 30Si steps lie within 2.2 mDa of one another (7 ppm at m/z 300), so at a
10 ppm tolerance the mass seldom says which; the label names every composition of the reading whose step fits the mass
and whose bound holds the ratio (``"37Cl/34S M+2"``: one Cl or, within the slack, five or more S, from m/z ~280;
``"37Cl/81Br M+2"``: three Cl or one Br; ``"34S/30Si M+2"``: one S or one Si, 1.0 mDa apart). 13C2 lies 8.8-10.9 mDa
above the one-heavy-atom steps: apart at 10 ppm below m/z ~440 (81Br), ~480 (37Cl), ~500 (30Si), ~550 (34S). Above,
one difference can fit both, and the ratio decides: where a 13C2 peak can have it, the peak is ``M+2`` (13C2, which
every organic ion has; the smaller claim, tried first), else a heavy-atom peak. At M+4 the two-heavy-atom reading
(tried first, and only where a Cl/Br count fits both ratios) and 13C2 with one heavy atom lie 8.4-9.7 mDa apart and
overlap likewise above m/z ~420-480. Either way the peak is grouped as an isotope peak. Not claimed: 13C3 and heavier
13C peaks, 18O (+2.004246) apart from what the 13C2 tolerance covers, two S or Si, S or Si with a halogen at M+4, M+5
and beyond, 29Si at M+1 (3.8 mDa below 13C, unresolved: one M+1 peak), other elements (metals).

Labels end in ``M+k`` (``"37Cl M+2"``, ``"13C 37Cl M+3"``, ``"37Cl2 M+4"``), the form identification reads as an
isotope peak (``adduct_notation.adduct_contradiction``), so none can be read as an adduct.

Layer 4: imports nothing of the package.
"""

from __future__ import annotations

import numpy as np

C13_STEP = 1.003355              # 13C - 12C, Da
C13_PER_CARBON = 0.0107          # natural 13C abundance
LOW, HIGH, SLACK = 0.75, 1.3, 0.05  # ratio slack; module docstring
# isotope: (mass step heavy - light in Da, abundance ratio heavy / light, least Da of ion per atom); module docstring
HEAVY: dict[str, tuple[float, float, float]] = {
    "37Cl": (1.997050, 0.2424 / 0.7576, 35.0),
    "81Br": (1.997953, 0.4931 / 0.5069, 79.0),
    "34S": (1.995796, 0.0425 / 0.9499, 60.0),
    "30Si": (1.996844, 0.03092 / 0.92223, 74.0),
}
# Heavy atoms one nominal mass up (M+1 without 13C), same fields: 15N/14N 0.00364/0.99636, 33S/32S 0.0075/0.9499
HEAVY_M1: dict[str, tuple[float, float, float]] = {
    "15N": (0.997035, 0.00364 / 0.99636, 14.0),
    "33S": (0.999388, 0.0075 / 0.9499, 60.0),
}
_ATOMS = {**HEAVY, **HEAVY_M1}
# Monoisotopic masses of the light isotopes (IUPAC), for the mass-defect check (defect_allows)
LIGHT_MASS = {"37Cl": 34.968853, "81Br": 78.918337, "34S": 31.972071, "30Si": 27.976927, "15N": 14.003074,
              "33S": 31.972071}
MAX_DEFECT_PER_DA, DEFECT_SLACK = 0.0016, 0.005  # Da of mass defect per Da of ion, and its slack: defect_allows
# The readings of a peak, in the order a monoisotopic feature tries them: (nominal step k of "M+k", 13C atoms).
# 13C before 15N/33S at M+1; 13C2 before one heavy atom at M+2 (the ratio decides, module docstring); two heavy atoms
# before 13C2 with one at M+4.
READINGS: tuple[tuple[int, int], ...] = ((1, 1), (1, 0), (2, 2), (2, 0), (3, 1), (4, 0), (4, 2))
_ONE = tuple((h,) for h in HEAVY)
_HEAVY_SETS = {(1, 1): ((),), (1, 0): tuple((h,) for h in HEAVY_M1), (2, 2): ((),), (2, 0): _ONE, (3, 1): _ONE,
               (4, 0): (("37Cl", "37Cl"), ("37Cl", "81Br"), ("81Br", "81Br")),  # no 34S or 30Si pair: < 0.2 % per pair
               (4, 2): _ONE}


def _heavy_name(heavy: tuple[str, ...]) -> str:
    return f"{heavy[0]}2" if len(heavy) == 2 and heavy[0] == heavy[1] else "".join(heavy)


def _kind(k: int, c: int, heavy: tuple[str, ...]) -> str:
    prefix = {0: "", 1: "13C ", 2: "13C2 "}[c] if heavy else ""
    return f"{prefix}{_heavy_name(heavy)} M+{k}" if heavy else f"M+{k}"


# edge kind ("M+1", "37Cl M+2", "13C 37Cl M+3", "37Cl2 M+4", ...): (reading index, k, 13C atoms, heavy atoms)
KINDS: dict[str, tuple[int, int, int, tuple[str, ...]]] = {
    _kind(k, c, heavy): (i, k, c, heavy)
    for i, (k, c) in enumerate(READINGS) for heavy in _HEAVY_SETS[(k, c)]}
HEAVY_KINDS: tuple[str, ...] = tuple(k for k, v in KINDS.items() if v[3])
STEPS: dict[str, float] = {kind: c * C13_STEP + sum(_ATOMS[h][0] for h in heavy)
                           for kind, (_, _, c, heavy) in KINDS.items()}


def reading(kind: str) -> int:
    """Index in :data:`READINGS` of an isotope edge kind: one peak per reading and monoisotopic feature."""
    return KINDS[kind][0]


def after_heavy_m2(kind: str) -> bool:
    """Whether a peak of ``kind`` (a heavy atom beyond M+2) needs its feature's one-heavy-atom M+2 first."""
    return bool(KINDS[kind][3]) and KINDS[kind][1] > 2


def is_heavy_m2(kind: str) -> bool:
    """Whether ``kind`` is a one-heavy-atom M+2 (37Cl, 81Br, 34S, 30Si)."""
    return KINDS[kind][1] == 2 and bool(KINDS[kind][3])


def label(kinds: list[str]) -> str:
    """One label for the compositions of one reading that fit one peak, in :data:`KINDS` order: ``["37Cl M+2",
    "34S M+2"]`` -> ``"37Cl/34S M+2"``, ``["13C 37Cl M+3"]`` -> ``"13C 37Cl M+3"``; 13C peaks keep ``"M+1"`` and
    ``"M+2"``."""
    ordered = [k for k in KINDS if k in set(kinds)]
    _, k, c, heavy = KINDS[ordered[0]]
    if not heavy:
        return f"M+{k}"
    prefix = {0: "", 1: "13C ", 2: "13C2 "}[c]
    return f"{prefix}{'/'.join(_heavy_name(KINDS[x][3]) for x in ordered)} M+{k}"


def follow(kinds: list[str], m2_kinds: list[str], m2_ratio: float, ratio: float) -> list[str]:
    """The compositions among ``kinds`` of an M+3 / M+4 peak (intensity ratio ``ratio`` to its monoisotopic feature)
    that agree with that feature's one-heavy-atom M+2 (compositions ``m2_kinds``, ratio ``m2_ratio``): only heavy
    isotopes the M+2 named, and two heavy atoms at M+4 only as :func:`halogen_pairs` reads both ratios."""
    named = {h for k in m2_kinds for h in KINDS[k][3]}
    pairs = halogen_pairs(named, m2_ratio, ratio)
    return [kind for kind in kinds
            if set(KINDS[kind][3]) <= named and (len(KINDS[kind][3]) < 2 or KINDS[kind][3] in pairs)]


def halogen_pairs(named: set[str], m2_ratio: float, m4_ratio: float) -> set[tuple[str, str]]:
    """The two-atom M+4 compositions ((``"37Cl"``, ``"37Cl"``), (``"37Cl"``, ``"81Br"``), (``"81Br"``, ``"81Br"``))
    that the best count of a Cl and b Br atoms (of the elements in ``named``) explains. A count's M+2 ratio is
    a rho_Cl + b rho_Br and its M+4 ratio C(a, 2) rho_Cl^2 + a b rho_Cl rho_Br + C(b, 2) rho_Br^2 (binomial isotope
    pattern; 13C and 34S parts left to the slack); it fits when both hold the measured ratios within [0.75x, 1.3x +
    0.05]. Of the fitting counts, those whose misfit |log(measured M+2 / its M+2)| + |log(measured M+4 / its M+4)|
    is at most log 1.3 (the slack factor) are kept, or the best one when none is; each names its largest M+4 part
    (1:2:1 for Br2, 9:6:1 for Cl2, a Cl3Br M+4 mostly 37Cl81Br). Both ratios are read against one count, not the M+4
    against the count the M+2 ratio implies: a dibrominated ion's M+2 measured at 2.2 (not 1.95) must not make its
    81Br2 M+4 (0.95) too small for 81Br2 (Ambroxol in a spike-in study)."""
    return {pair for _, _, pair in halogen_counts(named, m2_ratio, m4_ratio)}


def halogen_counts(named: set[str], m2_ratio: float, m4_ratio: float) -> list[tuple[int, int, tuple[str, str]]]:
    """The Cl and Br counts :func:`halogen_pairs` keeps, as (Cl atoms, Br atoms, the largest M+4 part)."""
    rho = {h: HEAVY[h][1] for h in ("37Cl", "81Br")}
    top = {h: int(m2_ratio / (LOW * rho[h])) + 1 if h in named and m2_ratio > 0 else 0 for h in rho}
    fits: list[tuple[float, int, int, tuple[str, str]]] = []
    for a in range(top["37Cl"] + 1):
        for b in range(top["81Br"] + 1):
            m2 = a * rho["37Cl"] + b * rho["81Br"]
            parts = {("37Cl", "37Cl"): a * (a - 1) / 2 * rho["37Cl"] ** 2,
                     ("37Cl", "81Br"): a * b * rho["37Cl"] * rho["81Br"],
                     ("81Br", "81Br"): b * (b - 1) / 2 * rho["81Br"] ** 2}
            m4 = sum(parts.values())
            if a + b >= 2 and LOW * m2 <= m2_ratio <= HIGH * m2 + SLACK and LOW * m4 <= m4_ratio <= HIGH * m4 + SLACK:
                misfit = abs(np.log(m2_ratio / m2)) + abs(np.log(m4_ratio / m4))
                fits.append((float(misfit), a, b, max(parts, key=parts.get)))
    limit = max(min((m for m, *_ in fits), default=0.0), float(np.log(HIGH)))
    return [(a, b, pair) for m, a, b, pair in fits if m <= limit]


def assign(a: np.ndarray, b: np.ndarray, kind: np.ndarray, score: np.ndarray, ratio: np.ndarray,
           mz_a: np.ndarray) -> list[tuple[int, int, int, str]]:
    """The isotope edges taken, in the order taken: (edge index into the arrays, monoisotopic feature a, isotope
    peak b, label suffix). The arrays (one entry per candidate isotope edge: features ``a`` -> ``b``, its ``kind``
    of :data:`KINDS`, ``score``, intensity ``ratio`` b / a, ``mz_a`` the m/z of a) are read lightest feature first,
    readings in :data:`READINGS` order, best score first; a feature is one isotope peak of one monoisotopic feature,
    never itself monoisotopic then, and a monoisotopic feature takes one peak per reading. A peak's label names every
    composition of its reading that fits it (:func:`label`); M+3 / M+4 heavy-atom peaks only follow the feature's
    one-heavy-atom M+2 (:func:`follow`). When an M+4 reads as two heavy halogens, the Cl and Br counts behind that
    reading (:func:`halogen_counts`) also narrow the labels of the M+2 and M+3 taken before it: a trichlorinated
    ion's M+2 (0.96 x M) fits one Br by its ratio, but its M+4 (0.31 x M) fits three Cl only, so the M+2 reads
    "37Cl M+2", not "37Cl/81Br M+2" beside a "37Cl2 M+4" (Fluopicolide in a spike-in study)."""
    reading_of = np.array([reading(k) for k in kind], dtype=np.int64)
    order = np.lexsort((-score, reading_of, mz_a))
    fits: dict[tuple[int, int, int], list[str]] = {}  # every composition of one reading that fits one peak
    for e in range(kind.size):
        fits.setdefault((int(a[e]), int(b[e]), int(reading_of[e])), []).append(str(kind[e]))
    taken: list[list] = []  # [edge, a, b, compositions]
    peak_of, readings_taken, monos = {}, set(), set()
    heavy_m2: dict[int, tuple[list[str], float]] = {}  # a one-heavy-atom M+2 taken: its compositions and ratio
    heavy_rows: dict[int, list[int]] = {}  # rows of ``taken`` holding a heavy-atom M+2 / M+3 of a feature
    for e in order.tolist():
        ia, ib, k, r = int(a[e]), int(b[e]), str(kind[e]), int(reading_of[e])
        if ia in peak_of or ib in peak_of or ib in monos or (ia, r) in readings_taken:
            continue
        kinds = fits[(ia, ib, r)]
        if after_heavy_m2(k):  # M+3 / M+4 only after the one-heavy-atom M+2, and as it reads
            kinds = follow(kinds, *heavy_m2[ia], float(ratio[e])) if ia in heavy_m2 else []
            if not kinds:
                continue
            if any(len(KINDS[kn][3]) == 2 for kn in kinds):  # two heavy halogens: narrow the M+2 / M+3 labels
                named = {h for kn in heavy_m2[ia][0] for h in KINDS[kn][3]}
                counts = halogen_counts(named, heavy_m2[ia][1], float(ratio[e]))
                present = {h for ca, cb, _ in counts for h, n in (("37Cl", ca), ("81Br", cb)) if n}
                for row in heavy_rows.get(ia, []):
                    narrowed = [kn for kn in taken[row][3] if set(KINDS[kn][3]) & {"37Cl", "81Br"} <= present]
                    taken[row][3] = narrowed or taken[row][3]
        elif is_heavy_m2(k):
            heavy_m2[ia] = (kinds, float(ratio[e]))
        if KINDS[k][3] and KINDS[k][1] in (2, 3):
            heavy_rows.setdefault(ia, []).append(len(taken))
        taken.append([e, ia, ib, kinds])
        peak_of[ib] = ia
        readings_taken.add((ia, r))
        monos.add(ia)
    return [(e, ia, ib, label(kinds)) for e, ia, ib, kinds in taken]


def _bounds(kind: str, mz_mono: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(least, largest) ratio a peak of ``kind`` can have over a monoisotopic ion of m/z ``mz_mono``."""
    _, _, c, heavy = KINDS[kind]
    carbon_ratio = C13_PER_CARBON * mz_mono / 12.0
    c13 = {0: np.ones(mz_mono.shape), 1: carbon_ratio, 2: carbon_ratio ** 2 / 2}[c]  # largest 13C part
    c13_least = {0: 1.0, 1: C13_PER_CARBON, 2: 0.0}[c]
    if not heavy:
        return np.full(mz_mono.shape, 0.002 if c == 1 else -np.inf), HIGH * c13 + SLACK
    rho = [_ATOMS[h][1] for h in heavy]
    if len(heavy) == 2:
        s = mz_mono * max(HEAVY[h][1] / HEAVY[h][2] for h in heavy)
        return np.full(mz_mono.shape, LOW * rho[0] * rho[1]), HIGH * s ** 2 / 2 + SLACK
    atoms = np.maximum(1.0, mz_mono / _ATOMS[heavy[0]][2])
    return np.full(mz_mono.shape, LOW * rho[0] * c13_least), HIGH * atoms * rho[0] * c13 + SLACK


def defect_allows(heavy: tuple[str, ...], mz_mono: np.ndarray, atoms: np.ndarray | int = 1) -> np.ndarray:
    """Whether a singly charged ion of monoisotopic m/z ``mz_mono`` can hold the light isotopes of the atoms
    ``heavy`` (``atoms`` of each, per ion: the least the peak's ratio implies) by its mass defect: what is left, m/z
    minus their masses (:data:`LIGHT_MASS`), has a mass defect (its distance to the nearest integer) of at most
    ``MAX_DEFECT_PER_DA`` x its mass + ``DEFECT_SLACK``. The hydrogen-richest organic ions, saturated
    alkylammonium (e.g. C8H20N+, 130.159), carry 0.0012 Da per Da; Cl, Br, S and Si lower the defect (79Br -0.082
    Da), so an ion of m/z 141.092 cannot hold a Br (the rest, 62.17 Da, would need +0.17 Da): a co-eluting ion 2 Da
    above it at Br's ratio is no 81Br peak (seen on background ions of spike-in studies on a real QC run). Above a
    rest of about 300 Da the bound allows every defect."""
    rest = mz_mono - np.asarray(atoms) * sum(LIGHT_MASS[h] for h in heavy)
    return (rest > 0) & (rest - np.round(rest) <= MAX_DEFECT_PER_DA * rest + DEFECT_SLACK)


def implausible(kind: np.ndarray, ratio: np.ndarray, mz_mono: np.ndarray) -> np.ndarray:
    """True for isotope edges (``kind`` in :data:`KINDS`; adduct edges are False) whose intensity ratio to the
    monoisotopic feature of m/z ``mz_mono`` their composition cannot have (NaN ratios included), or whose heavy
    atoms that ion's mass defect cannot hold (:func:`defect_allows`)."""
    bad = np.zeros(kind.size, dtype=bool)
    for name in KINDS:
        rows = np.flatnonzero(kind == name)
        if rows.size:
            lo, hi = _bounds(name, mz_mono[rows])
            bad[rows] = ~((ratio[rows] >= lo) & (ratio[rows] <= hi))
            _, k, c, heavy = KINDS[name]
            if heavy:  # a one-heavy-atom M+2 holds at least the atoms its ratio needs within the slack
                rho = _ATOMS[heavy[0]][1]
                least = (np.maximum(1, np.ceil((ratio[rows] - SLACK) / (HIGH * rho))) if k == 2 and c == 0
                         else np.ones(rows.size))
                bad[rows] |= ~defect_allows(heavy, mz_mono[rows], np.nan_to_num(least, nan=1.0))
    return bad
