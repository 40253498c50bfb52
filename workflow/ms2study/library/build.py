"""Building a reference library in memory: clean, order and flatten the entries the readers yield.

``build_library`` takes ``RawSpectrum`` entries (ms2study.io.formats), skips those without a valid precursor
m/z, cleans the peaks with ``ms2study.core.cleaning.clean_peaks`` (the same function as the sample spectra, with
``DEFAULT_PARAMS["cleaning"]`` merged with the caller's), drops spectra left empty, makes identifiers unique and
orders the spectra by (ion mode, precursor m/z) so candidate search is a binary search per ion-mode block. The
result, ``BuiltLibrary``, is flat arrays (float64 m/z, float32 intensity, per-spectrum offsets) plus the
``METADATA`` table whose row ``i`` describes spectrum ``i``; ms2study.library.index writes it to disk. Every
entry skipped, emptied or altered is recorded in the ``ReadReport``. Imports only ms2study.core and ms2study.io.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from ms2study.core.cleaning import clean_peaks
from ms2study.core.flat import FlatSpectra, offsets_from_counts
from ms2study.core.params import overlay, schema_defaults
from ms2study.io.entries import (
    INCHIKEY_FROM_SMILES,
    INVALID_PEAKS_DROPPED,
    RawSpectrum,
    ReadReport,
    checked_precursor,
    log_without_ion_mode,
    record_empty,
    unique_ids,
)
from ms2study.io.fields import ION_MODE_CODE, charge_of, first_field, ion_mode_of
from ms2study.library.adducts import precursor_from_formula, with_adducts, with_exact_precursors

log = logging.getLogger(__name__)

DEFAULT_PARAMS: dict[str, Any] = {
    # Passed to ms2study.core.cleaning.clean_peaks for every library spectrum: the config's cleaning section, the
    # same the spectra stage applies to sample spectra (defaults from the config schema).
    "cleaning": schema_defaults("cleaning"),
    # Spectra left without peaks after cleaning can never match; they are dropped (and counted) unless kept.
    "keep_empty": False,
}

# Metadata columns of metadata.parquet, in this order (row i = spectrum i of the flat arrays).
METADATA: dict[str, pl.DataType] = {
    "library_id": pl.Utf8,
    "name": pl.Utf8,
    "inchikey": pl.Utf8,
    "smiles": pl.Utf8,
    "formula": pl.Utf8,
    "adduct": pl.Utf8,
    "ion_mode": pl.Utf8,          # "positive" / "negative" / null when unknown
    "license": pl.Utf8,
    "precursor_mz": pl.Float64,
    "charge": pl.Int32,
    "compound_class": pl.Utf8,
    "instrument_type": pl.Utf8,
    "collision_energy": pl.Utf8,
    "source_file": pl.Utf8,
    "source_entry": pl.Int32,     # 1-based entry number in its source file
    "n_peaks": pl.Int32,          # after cleaning
}

_INCHIKEY_RE = re.compile(r"^[A-Z]{14}-[A-Z]{10}-[A-Z]$")


def metadata_row(raw: RawSpectrum, precursor_mz: float, n_peaks: int) -> dict[str, Any]:
    """Row of the ``METADATA`` table for one entry: its fields read with ms2study.io.fields, the given precursor
    m/z and peak count after cleaning; an InChIKey that is not one (free text in INCHIAUX) becomes null, a
    charge beyond int32 null."""
    f = raw.fields
    inchikey = first_field(f, "inchikey")
    if inchikey is not None and not _INCHIKEY_RE.match(inchikey):
        inchikey = None  # INCHIAUX and friends sometimes hold free text
    charge = charge_of(first_field(f, "charge"))
    return {
        "library_id": raw.identifier,
        "name": first_field(f, "name"),
        "inchikey": inchikey,
        "smiles": first_field(f, "smiles"),
        "formula": first_field(f, "formula"),
        "adduct": first_field(f, "adduct"),
        "ion_mode": ion_mode_of(f),
        "license": first_field(f, "license"),
        "precursor_mz": precursor_mz,
        "charge": charge if charge is not None and abs(charge) < 2**31 else None,
        "compound_class": first_field(f, "compound_class"),
        "instrument_type": first_field(f, "instrument_type"),
        "collision_energy": first_field(f, "collision_energy"),
        "source_file": Path(raw.source_file).name,
        "source_entry": raw.entry,
        "n_peaks": n_peaks,
    }


def with_structure(rows: list[dict[str, Any]], raws: list[RawSpectrum], report: ReadReport) -> None:
    """Give every metadata row without an InChIKey the one of its SMILES (RDKit, ``Chem.MolToInchiKey``), recorded
    in ``report`` as altered; a row with neither keeps its name as its structure (``identification.confidence.
    library_codes``): counted in ``report.n_name_as_structure`` and logged once. Identification counts candidate
    structures by the InChIKey's first block: a fresh user's library without InChIKeys lost 2 of 6 right names,
    because synonyms ("Azinphos methyl", "Azinphos-methyl") counted as different structures and doubled the
    p-values."""
    missing = [i for i, row in enumerate(rows) if not row.get("inchikey")]
    if not missing:
        return
    from rdkit import Chem, RDLogger

    RDLogger.DisableLog("rdApp.*")
    keys: dict[str, str | None] = {}
    unnamed: list[str] = []  # the records whose names stand for their structures, named in the warning (trial L)
    for i in missing:
        smiles, raw = rows[i].get("smiles"), raws[i]
        if smiles and smiles not in keys:
            mol = Chem.MolFromSmiles(smiles)
            key = Chem.MolToInchiKey(mol) if mol is not None else ""
            keys[smiles] = key if key and _INCHIKEY_RE.match(key) else None
        if smiles and keys[smiles]:
            rows[i]["inchikey"] = keys[smiles]
            report.alter(raw.source_file, raw.entry, raw.line, INCHIKEY_FROM_SMILES, rows[i]["library_id"],
                         keys[smiles])
        else:
            report.n_name_as_structure += 1
            unnamed.append(f"{rows[i].get('name') or '(no name)'} ({rows[i]['library_id']})")
    if report.n_name_as_structure:
        log.warning("%d library spectra have no InChIKey and no parsable SMILES: their names stand for their "
                    "structures, so synonyms count as different compounds (add InChIKeys or SMILES to the library): "
                    "%s", report.n_name_as_structure, ", ".join(unnamed[:10]) + (", ..." if len(unnamed) > 10 else ""))


def merge_params(params: dict | None) -> dict[str, Any]:
    """DEFAULT_PARAMS with ``params`` merged over them; unknown keys raise InputError."""
    return overlay(params, DEFAULT_PARAMS, "library", nested=("cleaning",))


@dataclass
class BuiltLibrary:
    """An in-memory library, as written by ``write_library_index``: the arrays of ``LibraryIndex`` (flat peaks
    ordered by ion mode and precursor m/z), the ``METADATA`` table, the read report and the number of spectra
    dropped as empty after cleaning."""

    metadata: pl.DataFrame
    precursor_mz: np.ndarray
    ion_mode: np.ndarray
    offsets: np.ndarray
    mz: np.ndarray
    intensity: np.ndarray
    report: ReadReport
    n_empty: int
    rounded_precursor_ids: list[str] = field(default_factory=list)  # rounded m/z left as given (library.adducts)

    @property
    def spectra(self) -> FlatSpectra:
        """All spectra as ``FlatSpectra`` (``rows`` = 0..n-1; arrays shared, not copied)."""
        return FlatSpectra.whole(self.offsets, self.mz, self.intensity, self.precursor_mz, self.ion_mode)


def build_library(
    spectra: Iterable[RawSpectrum], params: dict | None = None, report: ReadReport | None = None
) -> BuiltLibrary:
    """Clean, order (ion mode, precursor m/z) and flatten library entries.

    Entries without a valid precursor m/z are skipped, entries left without peaks by cleaning are dropped
    (unless ``keep_empty``), repeated identifiers get ``#k`` suffixes in input order; each case is recorded
    in ``report`` (and logged) with file, entry, identifier and reason, and the summary is logged. Entries that
    state no ion mode keep a null ``ion_mode`` (compared with queries of either mode), counted per file at INFO.
    The result may be empty (``index_library`` refuses that; other callers decide).
    """
    p = merge_params(params)
    report = report if report is not None else ReadReport()
    kept: list[RawSpectrum] = []
    precursors: list[float] = []
    mzs: list[np.ndarray] = []
    ints: list[np.ndarray] = []
    n_empty = 0
    for raw in spectra:
        precursor = precursor_from_formula(raw, report) or checked_precursor(raw, report)
        if precursor is None:
            continue
        mz, inten = clean_peaks(raw.mz, raw.intensity, precursor, **p["cleaning"])
        if not np.all(inten < np.inf):  # peaks merged at one m/z can sum beyond float32
            over = ~(inten < np.inf)
            report.n_peaks_dropped += int(over.sum())
            report.alter(raw.source_file, raw.entry, raw.line, INVALID_PEAKS_DROPPED, raw.identifier,
                         f"{int(over.sum())} merged peaks beyond float32 range dropped after cleaning")
            mz, inten = mz[~over], inten[~over]
        if mz.size == 0 and not p["keep_empty"]:
            n_empty += 1
            record_empty(raw, precursor, report, p["cleaning"])
            continue
        kept.append(raw)
        precursors.append(precursor)
        mzs.append(mz)
        ints.append(inten)
    # Library ids must be unique (they key annotations): repeats get "#k" suffixes, in file order.
    ids = unique_ids(kept, report)
    rows = []
    for raw, lid, precursor, mz in zip(kept, ids, precursors, mzs):
        row = metadata_row(raw, precursor, int(mz.size))
        row["library_id"] = lid
        rows.append(row)
    with_structure(rows, kept, report)
    rounded = with_exact_precursors(rows, kept, report)
    precursors = [row["precursor_mz"] for row in rows]
    if rounded:
        log.warning("library: %d spectra have a precursor m/z rounded to 1-2 decimals and no formula and ion that "
                    "give its exact m/z (e.g. %s): an accurate query seldom falls within a ppm precursor window of "
                    "them; give the precursor m/z to 4 or more decimals, or FORMULA and ADDUCT", len(rounded),
                    ", ".join(rounded[:5]))
    n_adducts = with_adducts(rows, kept, report)
    if n_adducts:
        log.info("%d library spectra without an adduct field: adduct read from their precursor m/z and formula",
                 n_adducts)
    metadata = pl.DataFrame(rows, schema=METADATA) if rows else pl.DataFrame(schema=METADATA)
    for (source,), group in metadata.group_by("source_file", maintain_order=True):
        log_without_ion_mode(report, str(source), group.filter(pl.col("ion_mode").is_null())["library_id"].to_list(),
                             group.height, "compared with queries of either ion mode", logging.INFO)
    n = metadata.height
    precursor_arr = np.asarray(precursors, dtype=np.float64)
    mode = np.array([ION_MODE_CODE.get(m, 0) for m in metadata["ion_mode"].to_list()], dtype=np.int8)
    # Order by ion mode block, then precursor: each mode is one sorted run for binary search.
    order = np.lexsort((precursor_arr, mode)) if n else np.zeros(0, dtype=np.int64)
    offsets = offsets_from_counts([mzs[i].size for i in order])
    flat_mz = np.concatenate([mzs[i] for i in order]) if n else np.zeros(0, dtype=np.float64)
    flat_int = np.concatenate([ints[i] for i in order]) if n else np.zeros(0, dtype=np.float32)
    metadata = metadata[order.tolist()] if n else metadata
    report.n_used = n
    report.log_summary()
    return BuiltLibrary(
        metadata=metadata,
        precursor_mz=precursor_arr[order].astype(np.float64),
        ion_mode=mode[order],
        offsets=offsets,
        mz=flat_mz.astype(np.float64),
        intensity=flat_int.astype(np.float32),
        report=report,
        n_empty=n_empty,
        rounded_precursor_ids=rounded,
    )
