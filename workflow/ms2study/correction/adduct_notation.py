"""Adduct notation: parsing a library spectrum's adduct (``[M+H]+``, ``[M+HCOO]-``, ``[2M+Na]+``, ...) into what it
means for the ion, and whether it contradicts the adduct a feature was grouped as (``correction.adducts``), which
is how identification uses the study's adduct grouping.

Layer 4: imports nothing of the package.
"""

from __future__ import annotations

import re

_ELEMENT_MASS = {"H": 1.00782503207, "C": 12.0, "N": 14.0030740048, "O": 15.99491461956, "Na": 22.9897692809,
                 "K": 38.96370668, "Cl": 34.96885268, "Br": 78.9183371, "F": 18.99840322, "S": 31.97207100,
                 "P": 30.97376163, "Li": 7.01600455, "Ag": 106.905097, "Ca": 39.96259098, "Fe": 55.9349375,
                 "Mg": 23.9850417, "I": 126.904473}
_GROUP_ALIAS = {"FA": "CH2O2", "HCOOH": "CH2O2", "HCOO": "CHO2", "AC": "C2H4O2", "HAC": "C2H4O2",
                "CH3COOH": "C2H4O2", "CH3COO": "C2H3O2", "ACN": "C2H3N", "CH3CN": "C2H3N", "MEOH": "CH4O",
                "CH3OH": "CH4O", "TFA": "C2HF3O2", "DMSO": "C2H6OS", "IPA": "C3H8O", "NH4": "NH4"}
# A neutral acid written as the only added group of a negative ion ([M+FA]-, MZmine's notation) means its anion
_NEUTRAL_ACIDS = frozenset({"FA", "HCOOH", "AC", "HAC", "CH3COOH"})
_ADDUCT_RE = re.compile(r"^\[?(\d*)M((?:[+-]\d*[A-Za-z][A-Za-z0-9]*)*)\]?(\d*)([+-]*)$")
_ISOTOPE_RE = re.compile(r"(?:^|\s)M\+(\d)$")
_GROUP_RE = re.compile(r"([+-])(\d*)([A-Za-z][A-Za-z0-9]*)")  # one added or lost group of an adduct: sign, count


def _formula_mass(group: str) -> float | None:
    """Monoisotopic mass of a small formula or named group (FA, ACN, ...); None when not parseable."""
    group = _GROUP_ALIAS.get(group.upper(), group)
    parts = re.findall(r"([A-Z][a-z]?)(\d*)", group)
    if not parts or "".join(e + c for e, c in parts) != group or any(e not in _ELEMENT_MASS for e, _ in parts):
        return None
    return sum(_ELEMENT_MASS[e] * (int(c) if c else 1) for e, c in parts)


def adduct_signature(label: str | None) -> tuple[int, float, int | None] | None:
    """(molecules per ion, mass shift of the added/lost groups in Da, signed charge or None) of an adduct written
    like ``[M+H]+``, ``[M+HCOO]-``, ``[M-H2O+H]+``, ``[2M+Na]+``, ``M+NH4``; None when it cannot be parsed (so
    synonyms compare equal: [M+FA-H]- and [M+HCOO]- give one signature, and so does MZmine's [M+FA]-)."""
    if not label:
        return None
    m = _ADDUCT_RE.match(label.replace(" ", "").rstrip("*"))
    if not m:
        return None
    k = int(m.group(1) or 1)
    shift = 0.0
    groups = _GROUP_RE.findall(m.group(2))
    for sign, count, group in groups:
        mass = _formula_mass(group)
        if mass is None:
            return None
        shift += (1 if sign == "+" else -1) * (int(count) if count else 1) * mass
    signs = m.group(4)
    charge = None
    if signs:
        charge = (int(m.group(3)) if m.group(3) else len(signs)) * (1 if signs[0] == "+" else -1)
    if (charge is not None and charge < 0 and len(groups) == 1 and groups[0][0] == "+" and not groups[0][1]
            and groups[0][2].upper() in _NEUTRAL_ACIDS):
        shift -= _ELEMENT_MASS["H"]  # MZmine's [M+FA]- / [M+Ac]-: the formate (acetate) ion, M + acid - H
    return k, shift, charge


def same_ion(feature_adduct: str | None, library_adduct: str | None) -> bool | None:
    """Whether a feature grouped as ``feature_adduct`` and a library spectrum of ``library_adduct`` name the same ion:
    False for an isotope peak ("[M+H]+ M+1": its precursor is not a monoisotopic ion), True for synonyms ([M+FA-H]-
    and [M+HCOO]-) and for an intrinsic ion ([M]+, [M]-) against [M+H]+ / [M-H]- (grouping cannot tell them apart);
    None when either is missing or cannot be parsed."""
    if not feature_adduct or not library_adduct:
        return None
    lib = adduct_signature(library_adduct)
    if lib is None:
        return None
    if _ISOTOPE_RE.search(feature_adduct.strip()):
        return False
    feat = adduct_signature(feature_adduct)
    if feat is None:
        return None

    def plain(sig: tuple[int, float, int | None]) -> tuple[int, float, int | None]:
        k, shift, z = sig
        if abs(shift) < 1e-6 and z in (1, -1):  # intrinsic ion [M]+ / [M]-: compare as [M+H]+ / [M-H]-
            shift = z * _ELEMENT_MASS["H"]
        return k, shift, z

    (kf, sf, zf), (kl, sl, zl) = plain(feat), plain(lib)
    return kf == kl and abs(sf - sl) < 2e-3 and (zf is None or zl is None or zf == zl)


def nh3_loss_reading(feature_adduct: str | None, library_adduct: str | None,
                     group_adducts: list[str] | None = None) -> bool:
    """Whether a library ``library_adduct`` at a feature grouped as ``feature_adduct`` fits the other reading of its
    group: when the group's labels (``group_adducts``) are only [M+H]+ and [M+NH4]+, the [M+NH4]+ member may be an
    [M+H]+ ion whose in-source NH3 loss is the "[M+H]+" member (the common case for amines), so a library [M+H]+
    there is no contradiction."""
    lib = adduct_signature(library_adduct)
    if feature_adduct != "[M+NH4]+" or lib is None:
        return False
    labels = {g for g in (group_adducts or []) if g and not _ISOTOPE_RE.search(g)}
    k, shift, z = lib
    return labels <= {"[M+H]+", "[M+NH4]+"} and k == 1 and z in (None, 1) and abs(shift - _ELEMENT_MASS["H"]) < 2e-3


# charge carriers other than the proton: a permanent ion (library adduct [M]+ / [M]-) cannot carry one more
CARRIERS = frozenset({"Na", "K", "Li", "NH4", "Cl", "Br", "HCOO", "FA", "CH3COO", "Ac"})


def impossible_for_intrinsic_ion(label: str | None, library_adduct: str | None) -> bool:
    """True when the library match is an intrinsic ion ([M]+, [M]-: a quaternary ammonium, a phosphonium) and the
    grouping's label makes it carry another charge carrier ([M+Na]+, [M+Cl]-): the grouping reads mass differences as
    if the molecule were neutral, and such a label is no reading of a permanent ion (a fresh user's benzalkonium
    labelled [M+Na]+ of an ion seen in one run). A neutral loss ([M+H-H2O]+) stays possible. False when either is
    missing or cannot be parsed."""
    spelled = (library_adduct or "").replace(" ", "").replace("[M+]", "[M]+").replace("[M-]", "[M]-")
    lib = adduct_signature(spelled)
    if lib is None or not label or abs(lib[1]) > 1e-6 or lib[2] not in (1, -1):
        return False
    # "[M+Na]+ M+1" (an isotope label): its ion
    m = _ADDUCT_RE.match(_ISOTOPE_RE.sub("", label.strip()).replace(" ", "").rstrip("*"))
    return bool(m) and any(sign == "+" and group in CARRIERS
                           for sign, _count, group in _GROUP_RE.findall(m.group(2)))


def adduct_contradiction(feature_adduct: str | None, library_adduct: str | None,
                         group_adducts: list[str] | None = None) -> str | None:
    """Why a library spectrum of ``library_adduct`` cannot be the compound of a feature grouped as ``feature_adduct``,
    or None when they name the same ion (:func:`same_ion`), either is unknown, the library ion fits the group's
    other reading (:func:`nh3_loss_reading`: ``group_adducts`` are the labels of the feature's compound group), or
    the label is no reading of the library's permanent ion (:func:`impossible_for_intrinsic_ion`)."""
    same = same_ion(feature_adduct, library_adduct)
    if same is None or same:
        return None
    iso = _ISOTOPE_RE.search(feature_adduct.strip())
    if iso:
        return f"the feature is the M+{iso.group(1)} isotope peak of another feature, not a {library_adduct} ion"
    if nh3_loss_reading(feature_adduct, library_adduct, group_adducts) or \
            impossible_for_intrinsic_ion(feature_adduct, library_adduct):
        return None
    return f"library adduct {library_adduct} contradicts the feature's grouped adduct {feature_adduct}"
