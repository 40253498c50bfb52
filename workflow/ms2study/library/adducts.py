"""Library records without an ADDUCT field: the adduct read from the precursor m/z and the neutral formula.

Some MassBank records (e.g. RIKEN ReSpect) state no adduct. Identification then cannot compare the library ion with
the ion the study's adduct grouping gave the feature (``identification.acceptance``), and the tables show no ion.
When the record has a neutral FORMULA, a singly charged precursor m/z and an ion mode (or none), the precursor m/z
minus the formula's monoisotopic mass is compared with the common ions of that polarity (positive: [M+H]+, [M+Na]+,
[M+NH4]+, [M+K]+; negative: [M-H]-, [M+Cl]-, [M+FA-H]-, [M+Hac-H]-; ion masses: ``core.ions``); the
one within ``TOLERANCE_DA`` is taken, and the index's read report records each such record as altered
(``io.entries.ADDUCT_FROM_MASS``). No match, or a formula pyOpenMS cannot read: the adduct stays empty. Imports
pyOpenMS when a record needs it.
"""

from __future__ import annotations

from typing import Any

from ms2study.core.ions import ION_SHIFTS
from ms2study.io.entries import ADDUCT_FROM_MASS, RawSpectrum, ReadReport

# precursor m/z minus the neutral monoisotopic mass, per ion (``core.ions``)
IONS = {polarity: tuple((label, ION_SHIFTS[label]) for label in labels) for polarity, labels in (
    ("positive", ("[M+H]+", "[M+Na]+", "[M+NH4]+", "[M+K]+")),
    ("negative", ("[M-H]-", "[M+Cl]-", "[M+FA-H]-", "[M+Hac-H]-")))}
TOLERANCE_DA = 0.003  # a theoretical or accurately measured precursor m/z; the ions differ by more than 1 Da


def neutral_mass(formula: str | None) -> float | None:
    """The monoisotopic mass of a neutral molecular formula (pyOpenMS ``EmpiricalFormula``), or None when there is
    none, it carries a charge or pyOpenMS cannot read it."""
    if not formula or any(c in formula for c in "+-[]"):
        return None
    import pyopenms as oms

    try:
        return float(oms.EmpiricalFormula(formula.strip()).getMonoWeight())
    except RuntimeError:  # pyOpenMS's refusal of an unreadable formula
        return None


def infer_adduct(formula: str | None, precursor_mz: float | None, ion_mode: str | None) -> str | None:
    """The ion of ``IONS`` (``ion_mode``'s, or either polarity's when None) whose mass difference matches
    ``precursor_mz`` minus the formula's neutral mass within ``TOLERANCE_DA``; None when none or more than one do."""
    mass = neutral_mass(formula)
    if mass is None or precursor_mz is None:
        return None
    modes = [ion_mode] if ion_mode in IONS else list(IONS)
    found = [name for mode in modes for name, shift in IONS[mode] if abs(precursor_mz - mass - shift) <= TOLERANCE_DA]
    return found[0] if len(found) == 1 else None


def with_adducts(rows: list[dict[str, Any]], raws: list[RawSpectrum], report: ReadReport) -> int:
    """Fill the ``adduct`` of metadata rows (``library.build.METADATA``) that have none and whose charge is 1, -1
    or unknown, with ``infer_adduct``; each filled row recorded in ``report`` as altered. Returns how many."""
    n = 0
    for row, raw in zip(rows, raws):
        if row.get("adduct") or (row.get("charge") is not None and abs(int(row["charge"])) > 1):
            continue
        adduct = infer_adduct(row.get("formula"), row.get("precursor_mz"), row.get("ion_mode"))
        if adduct:
            row["adduct"] = adduct
            report.alter(raw.source_file, raw.entry, raw.line, ADDUCT_FROM_MASS, row["library_id"], adduct)
            n += 1
    return n
