"""Mass shifts of the common singly charged ions of one molecule: m/z = k * M + delta (delta in Da, electron mass
included) for an ion of k molecules of neutral monoisotopic mass M. One table for the ions the library's records are
given from their precursor m/z (``library.adducts``) and those the study's adduct grouping labels
(``correction.adducts``). Imports nothing of ms2study.
"""

from __future__ import annotations

import re

# delta of the one-molecule ion; a k-molecule ion ([2M+H]+) shares its one-molecule ion's delta
ION_SHIFTS: dict[str, float] = {
    "[M+H]+": 1.007276, "[M+Na]+": 22.989218, "[M+NH4]+": 18.033823, "[M+K]+": 38.963158, "[M+H-H2O]+": -17.003288,
    "[M-H]-": -1.007276, "[M+Cl]-": 34.969402, "[M+FA-H]-": 44.998201, "[M+Hac-H]-": 59.013851,
    "[M-H-H2O]-": -19.01839,
}


_SPELLED = re.compile(r"\[?(M[+-][^\]]*?)\]?(1?[+-])?")


def ion_label(text: str | None) -> str | None:
    """The ``ION_SHIFTS`` label that ``text`` writes another way, as libraries and tools do ("M+H", "[M+H]", "M+H+",
    "[M+H]1+", "M-H" for [M+H]+ and [M-H]-); None when it names none of them, or more than one."""
    if not text:
        return None
    text = text.strip()
    if text in ION_SHIFTS:
        return text
    spelled = _SPELLED.fullmatch(text)
    if spelled is None:
        return None
    inner, sign = spelled.group(1), (spelled.group(2) or "")[-1:]
    found = [k for k in ION_SHIFTS if k[1:k.index("]")] == inner and (not sign or k.endswith(sign))]
    return found[0] if len(found) == 1 else None


def ion_shift(label: str) -> float:
    """``ION_SHIFTS`` of ``label``, a k-molecule ion ("[2M+H]+") read as its one-molecule ion. KeyError for an ion
    not in the table."""
    return ION_SHIFTS[re.sub(r"^\[\d+M", "[M", label)]
