"""Library records without an ADDUCT field: the adduct read from the precursor m/z and the neutral formula.

Some MassBank records (e.g. RIKEN ReSpect) state no adduct. Identification then cannot compare the library ion with
the ion the study's adduct grouping gave the feature (``identification.acceptance``), and the tables show no ion.
When the record has a neutral FORMULA, a singly charged precursor m/z and an ion mode (or none), the precursor m/z
minus the formula's monoisotopic mass is compared with the common ions of that polarity (positive: [M+H]+, [M+Na]+,
[M+NH4]+, [M+K]+; negative: [M-H]-, [M+Cl]-, [M+FA-H]-, [M+Hac-H]-; ion masses: ``core.ions``); the
one within ``TOLERANCE_DA`` is taken, and the index's read report records each such record as altered
(``io.entries.ADDUCT_FROM_MASS``). No match, or a formula pyOpenMS cannot read: the adduct stays empty.

Records whose precursor m/z is written with one or two decimals (an old in-house or NIST-style library: "181.07")
are rounded by up to 0.05 Da, so an accurate query seldom falls within a ppm precursor window of them, silently (a
trial's finding). When the record's formula and ion (stated, or at 2 decimals the one ion of its polarity the
rounding allows) give an m/z that the stated value rounds to, that exact m/z replaces it (``with_exact_precursors``;
recorded as altered, ``io.entries.EXACT_PRECURSOR``); the others are returned to be counted and said. Imports
pyOpenMS when a record needs it.
"""

from __future__ import annotations

from typing import Any

from ms2study.core.ions import ION_SHIFTS, ion_label
from ms2study.io.entries import ADDUCT_FROM_MASS, EXACT_PRECURSOR, PRECURSOR_FROM_FORMULA, RawSpectrum, ReadReport
from ms2study.io.fields import first_field, precursor_text, stated_decimals

# precursor m/z minus the neutral monoisotopic mass, per ion (``core.ions``)
IONS = {polarity: tuple((label, ION_SHIFTS[label]) for label in labels) for polarity, labels in (
    ("positive", ("[M+H]+", "[M+Na]+", "[M+NH4]+", "[M+K]+")),
    ("negative", ("[M-H]-", "[M+Cl]-", "[M+FA-H]-", "[M+Hac-H]-")))}
TOLERANCE_DA = 0.003  # a theoretical or accurately measured precursor m/z; the ions differ by more than 1 Da
# A precursor m/z written with this many decimals or fewer is a rounded value: at 2 decimals up to 0.005 Da off
# (25 ppm at m/z 200), at 1 decimal 0.05 Da, beyond a precursor window of 10 ppm (whole numbers that fit no ion are
# unit-resolution records, counted apart by the index: ``core.measurement.nominal_precursor``).
ROUNDED_DECIMALS = 2


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
    if precursor_mz is None:
        return None
    exact = exact_ion_mz(formula, None, precursor_mz, ion_mode, 0.0)
    return exact[1] if exact else None


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


def exact_ion_mz(formula: str | None, adduct: str | None, precursor_mz: float, ion_mode: str | None,
                 rounding_da: float) -> tuple[float, str] | None:
    """(exact m/z, ion) of the formula's ion that ``precursor_mz`` is a rounding of (within ``rounding_da`` +
    ``TOLERANCE_DA``): the stated ``adduct`` when it is one of ``core.ions.ION_SHIFTS`` (in any common spelling:
    ``core.ions.ion_label``), else the one ion of
    ``IONS`` (``ion_mode``'s, or either polarity's) that fits; None when no formula, no ion or several ions fit."""
    mass = neutral_mass(formula)
    if mass is None:
        return None
    limit = rounding_da + TOLERANCE_DA
    if adduct:
        label = ion_label(adduct)  # trial R: "M+H" or "[M+H]" left a rounded record unrepaired
        shift = ION_SHIFTS.get(label) if label else None
        if shift is None or abs(precursor_mz - mass - shift) > limit:
            return None
        return mass + shift, adduct
    modes = [ion_mode] if ion_mode in IONS else list(IONS)
    found = [(mass + shift, name) for mode in modes for name, shift in IONS[mode]
             if abs(precursor_mz - mass - shift) <= limit]
    return found[0] if len(found) == 1 else None


def with_exact_precursors(rows: list[dict[str, Any]], raws: list[RawSpectrum], report: ReadReport) -> list[str]:
    """Replace the rounded precursor m/z (written with 1 to ``ROUNDED_DECIMALS`` decimals) of metadata rows
    with the exact m/z of their formula's ion (``exact_ion_mz``), in place (``precursor_mz``, and ``adduct`` when
    it was read from the mass), each recorded in ``report`` as altered; returns the library ids of rounded
    records that could not be replaced (no formula, no ion that fits, or a charge above 1)."""
    unresolved: list[str] = []
    for row, raw in zip(rows, raws):
        decimals = stated_decimals(raw.fields)
        precursor = row.get("precursor_mz")
        # a rounding that lands on a whole number (150.00, 157.0) is one too: only a value that fits the formula's
        # ion is replaced, so a unit-resolution record (146.0 of an ion at 146.09) stays as it is (trial R)
        if decimals is None or not 1 <= decimals <= ROUNDED_DECIMALS or precursor is None:
            continue
        if row.get("charge") is not None and abs(int(row["charge"])) > 1:
            unresolved.append(row["library_id"])
            continue
        # an ion read from the mass needs 2 decimals: within the 0.05 Da of one decimal another ion of another
        # formula fits too often (a record at 200.1 of C9H10O4 became its [M+NH4]+, 200.0917, 42 ppm away)
        exact = None if decimals < 2 and not row.get("adduct") else exact_ion_mz(
            row.get("formula"), row.get("adduct"), precursor, row.get("ion_mode"), 0.5 * 10.0 ** -decimals)
        if exact is None:
            unresolved.append(row["library_id"])
            continue
        mz, ion = exact
        report.alter(raw.source_file, raw.entry, raw.line, EXACT_PRECURSOR, row["library_id"],
                     f"{precursor:g} ({decimals} decimals) -> {mz:.6f}, {ion} of {row['formula']}")
        row["precursor_mz"] = mz
        if not row.get("adduct"):
            row["adduct"] = ion
            report.alter(raw.source_file, raw.entry, raw.line, ADDUCT_FROM_MASS, row["library_id"], ion)
    return unresolved


def precursor_from_formula(raw: RawSpectrum, report: ReadReport) -> float | None:
    """The precursor m/z of an entry that gives none (no precursor field at all) but a neutral formula and a
    single-molecule singly charged adduct (``core.ions.ION_SHIFTS``, any common spelling): the formula's
    monoisotopic mass plus the ion's shift, recorded in ``report`` as altered (``PRECURSOR_FROM_FORMULA``); None
    otherwise, and for an entry with a precursor field (read, or refused, by ``io.entries.checked_precursor``).
    Trial AF: a record with ``Formula`` and ``Precursor_type: [M+H]+`` but no precursor m/z was skipped."""
    if precursor_text(raw.fields)[0] is not None:
        return None
    label = ion_label(first_field(raw.fields, "adduct"))
    mass = neutral_mass(first_field(raw.fields, "formula"))
    if label is None or mass is None:
        return None
    mz = mass + ION_SHIFTS[label]
    report.alter(raw.source_file, raw.entry, raw.line, PRECURSOR_FROM_FORMULA, raw.identifier,
                 f"{mz:.6f}, {label} of {first_field(raw.fields, 'formula')}")
    return mz
