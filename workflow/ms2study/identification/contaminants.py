"""Names that share their formula with a common LC-MS contaminant (``resources/contaminants.tsv``).

A disinfectant, a plasticiser or a polymer additive in the solvents, tubing, vials or gloves gives a real ion whose
MS/MS matches its library spectrum well, so its name is accepted at a low q-value: the q-value measures confusion
with the library's other spectra, not where the compound came from. Blank runs tell (``correction.blank``); a
study without them cannot, and a trial's only accepted name on a human plasma QC was a benzalkonium disinfectant.
This module marks accepted names whose formula is on a curated list of contaminant kinds (Keller et al. 2008, Anal.
Chim. Acta 627:71-81, reviews them) or in the polymer series generated here: polyethylene glycol H(OC2H4)nOH and
polypropylene glycol H(OC3H6)nOH (n 3-30), cyclic dimethylsiloxanes (D3-D12). The formula is compared as a set of
element counts, so a library's "[C21H38N]+" and "C21H38N" are the same. A mark is a hint to check a blank, never a
refusal: some of these are also compounds of the samples (oleamide is an endogenous lipid). May import
``ms2study.core``.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

import polars as pl

CONTAMINANTS_TSV = Path(__file__).resolve().parents[3] / "resources" / "contaminants.tsv"
# "[C21H38N]+" / "[C2H4O2]2-": the bracketed formula; a charge after an unbracketed one ("C21H38N+") pyOpenMS reads
_BRACKETED = re.compile(r"^\[([^\]]+)\]\d*[+-]*\d*$")


@lru_cache(maxsize=4096)
def element_counts(formula: str | None) -> tuple[tuple[str, int], ...] | None:
    """The element counts of a molecular formula as written in libraries ("[C21H38N]+", "C21H38N+", "C6H12Cl3O4P"),
    sorted by symbol: (("C", 21), ("H", 38), ("N", 1)). Read with pyOpenMS's ``EmpiricalFormula`` (its charge left
    out). None for an empty or unreadable formula, and for salts and hydrates written with a dot (not compared).
    Raises nothing."""
    import pyopenms as oms

    text = (formula or "").strip()
    bracketed = _BRACKETED.match(text)
    text = bracketed.group(1) if bracketed else text
    if not text:
        return None
    try:
        counts = oms.EmpiricalFormula(text).getElementalComposition()
    except RuntimeError:  # pyOpenMS: "Unknown element ..."
        return None
    return tuple(sorted((str(k.decode() if isinstance(k, bytes) else k), int(v)) for k, v in counts.items())) or None


def _series() -> dict[tuple[tuple[str, int], ...], tuple[str, str]]:
    out = {}
    for n in range(3, 31):
        out[element_counts(f"C{2 * n}H{4 * n + 2}O{n + 1}")] = (f"polyethylene glycol (n = {n})", "polymer (PEG)")
        out[element_counts(f"C{3 * n}H{6 * n + 2}O{n + 1}")] = (f"polypropylene glycol (n = {n})", "polymer (PPG)")
    for n in range(3, 13):
        out[element_counts(f"C{2 * n}H{6 * n}O{n}Si{n}")] = (f"cyclic dimethylsiloxane D{n}", "siloxane")
    return out


@lru_cache(maxsize=1)
def contaminant_formulas() -> dict[tuple[tuple[str, int], ...], tuple[str, str]]:
    """Element counts -> (name, kind) of every listed contaminant: ``resources/contaminants.tsv`` and the polymer
    series. Raises FileNotFoundError when the resource file is missing (an incomplete installation)."""
    table = pl.read_csv(CONTAMINANTS_TSV, separator="\t", comment_prefix="#")
    out = _series()
    for formula, name, kind in table.select("formula", "name", "kind").iter_rows():
        out[element_counts(formula)] = (name, kind)
    return out


def contaminant_marks(ident: pl.DataFrame, header: str) -> pl.Series:
    """Per row of ``ident`` (identifications.parquet), Utf8 named ``header``: for an accepted name whose ``formula``
    is a listed contaminant's, "kind: name" ("disinfectant (quaternary ammonium): benzyldimethyldodecylammonium
    (benzalkonium C12) or cetylpyridinium"); null elsewhere and without the columns."""
    if not {"formula", "accepted"} <= set(ident.columns):
        return pl.Series(header, [None] * ident.height, dtype=pl.Utf8)
    known = contaminant_formulas()
    out = []
    for formula, ok in zip(ident["formula"].cast(pl.Utf8).to_list(), ident["accepted"].fill_null(False).to_list()):
        hit = known.get(element_counts(formula)) if ok else None
        out.append(f"{hit[1]}: {hit[0]}" if hit else None)
    return pl.Series(header, out, dtype=pl.Utf8)
