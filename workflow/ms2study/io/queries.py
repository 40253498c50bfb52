"""Query spectra from a spectrum file (MGF / MSP / GNPS JSON), read exactly as library entries are.

``read_query_spectra`` gives the table the ``score`` command searches (columns ``QUERY_SCHEMA``) and the
``ReadReport`` of what was left out and why. Same reader, precursor rules, ion mode and identifier rules as the
library (ms2study.io.formats, ms2study.io.fields). Imports only ms2study.core and ms2study.io.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import polars as pl

from ms2study.core.cleaning import clean_peaks
from ms2study.io.entries import (
    RawSpectrum,
    ReadReport,
    checked_precursor,
    log_without_ion_mode,
    nothing_usable,
    record_empty,
    unique_ids,
)
from ms2study.io.fields import first_field, ion_mode_of
from ms2study.io.formats import read_library_file

# Columns of the query table returned by read_query_spectra (the columns annotate needs of a spectra table).
QUERY_SCHEMA: dict[str, pl.DataType] = {
    "spectrum_id": pl.Utf8,
    "sample_id": pl.Utf8,
    "feature_id": pl.Utf8,
    "precursor_mz": pl.Float64,
    "ion_mode": pl.Utf8,
    "mz": pl.List(pl.Float64),
    "intensity": pl.List(pl.Float32),
    "name": pl.Utf8,  # the entry's name (NAME / COMPOUNDNAME / TITLE), where it has one: the score table's query_name
}


def read_query_spectra(
    path: str | os.PathLike, *, cleaning: dict | None = None, require_any: bool = True,
    default_ion_mode: str = "positive",
) -> tuple[pl.DataFrame, ReadReport]:
    """Query spectra from an MGF / MSP / GNPS JSON file (``.gz`` allowed), read exactly as library entries are.

    Returns ``(table, report)``. ``table`` has one row per searchable query, in file order, with columns
    ``QUERY_SCHEMA``: ``spectrum_id`` (Utf8, unique: the entry's SPECTRUMID / DB# / ACCESSION / NIST# / TITLE,
    else ``"<file name>:<entry>"``; repeats get ``#2``, ``#3``... as library ids do, each rename recorded),
    ``sample_id`` and ``feature_id`` (null), ``precursor_mz`` (Float64, m/z > 0; a decimal comma is read when
    unambiguous, with a recorded note), ``ion_mode`` ("positive" / "negative" / null, from ``ion_mode_of``
    as for library spectra), ``mz`` (List Float64) and ``intensity`` (List Float32): the peaks as read, in
    file order, invalid peaks (negative / NaN / infinite intensity, m/z not finite or <= 0) dropped and
    recorded; not otherwise cleaned. Queries that state no ion mode keep a null ``ion_mode`` and are searched
    as ``default_ion_mode`` (annotate's ``ion_mode``): one WARNING line says how many, naming the first few.

    Queries that cannot be searched are left out and recorded in ``report`` (``report.skipped``: no or
    invalid precursor m/z, unreadable peaks, no peaks, truncated entries; with ``cleaning``, a dict of
    ``clean_peaks`` keyword arguments, also ``report.emptied``: no peak left after that cleaning). Each is
    logged with file, position, identifier and reason, and ``report.summary()`` is logged.

    Raises InputError for a missing file, an unknown extension or an unreadable file, and, when
    ``require_any`` (default), when no searchable query remains (the message names the file, the counts
    per reason and the fix).
    """
    path = Path(path)
    report = ReadReport(what="queries")
    kept: list[RawSpectrum] = []
    precursors: list[float] = []
    for raw in read_library_file(path, report):
        precursor = checked_precursor(raw, report)
        if precursor is None:
            continue
        if cleaning is not None and clean_peaks(raw.mz, raw.intensity, precursor, **cleaning)[0].size == 0:
            record_empty(raw, precursor, report, cleaning)
            continue
        kept.append(raw)
        precursors.append(precursor)
    ids = unique_ids(kept, report)
    modes = [ion_mode_of(raw.fields) for raw in kept]
    log_without_ion_mode(report, str(path), [i for i, mode in zip(ids, modes) if mode is None], len(kept),
                         f"searched as {default_ion_mode}; add IONMODE= (MGF) or Ion_mode: (MSP) where that is wrong")
    table = pl.DataFrame(
        {
            "spectrum_id": ids,
            "sample_id": [None] * len(kept),
            "feature_id": [None] * len(kept),
            "precursor_mz": precursors,
            "ion_mode": modes,
            "mz": [raw.mz.tolist() for raw in kept],
            "intensity": [raw.intensity.astype(np.float32).tolist() for raw in kept],
            "name": [first_field(raw.fields, "name") for raw in kept],
        },
        schema=QUERY_SCHEMA,
    )
    report.n_used = table.height
    report.log_summary()
    if table.height == 0 and require_any:
        raise nothing_usable(report, [path])
    return table, report
