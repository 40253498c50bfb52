"""Writers of the files other tools read: GNPS feature-based molecular networking, SIRIUS, and a plain TSV.

* GNPS FBMN (Nothias et al. 2020, Nat. Methods 17:905; GNPS documentation "Feature-Based Molecular Networking",
  MZmine section): a feature quantification table (CSV) with the columns ``row ID``, ``row m/z``,
  ``row retention time`` (minutes) and one ``<file name> Peak area`` column per sample (0 where the feature was not
  detected, as MZmine writes it), and an MGF of MS/MS spectra with one block per consensus feature that has MS/MS:
  ``FEATURE_ID``, ``PEPMASS``, ``SCANS`` (= ``FEATURE_ID`` = ``row ID``), ``RTINSECONDS``, ``CHARGE``,
  ``MSLEVEL=2``, in the order of MZmine's "Export for GNPS" module. A metadata table (``filename`` and
  ``ATTRIBUTE_<column>``) carries the sample sheet.
* SIRIUS (SIRIUS documentation "Input: MGF-Format"; its MgfParser): the same blocks with ``ION=`` the adduct of the
  feature's accepted identification when it has one (``[M+H]+``), else SIRIUS's unknown ion of the polarity
  (``[M+?]+`` / ``[M+?]-``). SIRIUS treats only singly charged ions; multiply charged features are left out.
  No ``MSLEVEL=1`` block is written: the pipeline keeps no MS1 isotope pattern per feature (only the number of
  isotope traces), and a block with just the monoisotopic peak would pretend to one.

Which MS/MS stands for a consensus feature (``representative_spectra``): among the spectra of all its sample
features that have peaks, the one with the highest precursor intensity (ties: the larger total ion current, then the
smaller ``spectrum_id``), as MZmine picks the "most intense" fragmentation scan of a row. Its peaks are the cleaned
peaks of ``spectra.parquet``. ``PEPMASS`` and ``RTINSECONDS`` are the consensus feature's m/z and RT (the values
of the quantification table's row), as MZmine writes the row's m/z and RT.

Imports only ``ms2study.core``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import polars as pl

from ms2study.core.atomic import atomic_path, write_text
from ms2study.core.errors import InputError

# Columns of the spectra tables the exports read (spectra.parquet, core.tables.SPECTRA).
SPECTRUM_COLUMNS = ("spectrum_id", "sample_id", "feature_id", "rt_s", "precursor_mz", "precursor_charge",
                    "precursor_intensity", "ion_mode", "mz", "intensity")
GNPS_ROW_ID = "row ID"
GNPS_MZ = "row m/z"
GNPS_RT = "row retention time"
GNPS_AREA_SUFFIX = " Peak area"
_ADDUCT = re.compile(r"^\[(?P<body>[^\]]+)\](?P<z>\d*)(?P<sign>[+-])$")


def gnps_row_ids(consensus_ids: Sequence[str] | pl.Series) -> pl.Series:
    """The integer GNPS ``row ID`` of each consensus feature, shape (n,), Int64, named ``row_id``.

    The number of ``C{n}`` (the link stage's ``consensus_id``) when every id has that form and the numbers are
    unique and positive, so ``row ID`` 12 is ``C12``; otherwise 1..n in the given order.
    """
    ids = pl.Series("consensus_id", list(consensus_ids), dtype=pl.Utf8)
    numbers = ids.str.extract(r"^C(\d+)$", 1).cast(pl.Int64, strict=False)
    if ids.len() and numbers.null_count() == 0 and numbers.n_unique() == ids.len() and numbers.min() >= 1:
        return numbers.alias("row_id")
    return pl.Series("row_id", np.arange(1, ids.len() + 1), dtype=pl.Int64)


def gnps_file_names(sample_ids: Sequence[str], files: Mapping[str, str] | None = None) -> dict[str, str]:
    """{sample_id: the name GNPS knows the sample by}: the base name of its run file (``S01.mzML``) when the sheet
    gives files and their base names are unique, else ``{sample_id}.mzML``. The quantification table's column is
    this name + `` Peak area``; the metadata table's ``filename`` is this name."""
    files = files or {}
    names = {s: os.path.basename(str(files[s])) for s in sample_ids if files.get(s)}
    if len(names) == len(sample_ids) and len(set(names.values())) == len(names):
        return names
    return {s: f"{s}.mzML" for s in sample_ids}


def gnps_quant_table(matrix: pl.DataFrame, sample_ids: Sequence[str], file_names: Mapping[str, str]) -> pl.DataFrame:
    """The FBMN feature quantification table of a feature matrix (``core.tables.FEATURE_MATRIX_KEYS`` + one column
    per sample), one row per consensus feature in matrix order.

    Columns: ``row ID`` (``gnps_row_ids``), ``row m/z``, ``row retention time`` (minutes: ``rt_s`` / 60, as MZmine
    writes it), then ``<file name> Peak area`` per sample of ``sample_ids`` (the feature intensity, 0 where it is
    null: GNPS reads empty cells as errors). Raises InputError when a sample has no column in the matrix.
    """
    missing = [s for s in sample_ids if s not in matrix.columns]
    if missing:
        raise InputError(f"the feature matrix has no column for samples {missing[:5]}",
                         fix="rerun the link stage with the study's sample sheet")
    return pl.DataFrame({
        GNPS_ROW_ID: gnps_row_ids(matrix["consensus_id"]),
        GNPS_MZ: matrix["mz"].cast(pl.Float64),
        GNPS_RT: matrix["rt_s"].cast(pl.Float64) / 60.0,
        **{f"{file_names[s]}{GNPS_AREA_SUFFIX}": matrix[s].cast(pl.Float64).fill_nan(None).fill_null(0.0)
           for s in sample_ids},
    })


def gnps_metadata(sheet: pl.DataFrame, file_names: Mapping[str, str]) -> pl.DataFrame:
    """The GNPS metadata table of a sample sheet (strings): ``filename`` (as in the quantification table's columns)
    and ``ATTRIBUTE_<column>`` for every sheet column but ``sample_id`` and ``file``, empty cells as ``N/A``."""
    attributes = [c for c in sheet.columns if c not in ("sample_id", "file")]
    return sheet.select(
        pl.col("sample_id").replace_strict(dict(file_names), default=None).alias("filename"),
        *[pl.col(c).cast(pl.Utf8).fill_null("N/A").replace("", "N/A").alias(f"ATTRIBUTE_{c}") for c in attributes],
    )


def representative_spectra(spectra: pl.DataFrame, links: pl.DataFrame) -> pl.DataFrame:
    """One MS/MS spectrum per consensus feature: the one with the highest precursor intensity among the spectra of
    its sample features (module docstring). ``spectra``: ``SPECTRUM_COLUMNS`` of the samples' spectra tables;
    ``links``: ``consensus_id``, ``feature_id`` (``results/study/feature_links.parquet``).

    Returns one row per consensus feature with at least one spectrum with peaks: ``consensus_id``, the spectrum's
    columns and ``n_msms`` (spectra with peaks of that feature over all samples).
    """
    mapped = (spectra.filter(pl.col("feature_id").is_not_null() & (pl.col("mz").list.len() > 0))
              .join(links.select("consensus_id", "feature_id").unique(), on="feature_id", how="inner")
              .with_columns(pl.col("intensity").list.sum().cast(pl.Float64).alias("_tic")))
    counts = mapped.group_by("consensus_id").agg(pl.len().cast(pl.Int32).alias("n_msms"))
    best = (mapped.sort(["consensus_id", "precursor_intensity", "_tic", "spectrum_id"],
                        descending=[False, True, True, False], nulls_last=True)
            .unique("consensus_id", keep="first", maintain_order=True).drop("_tic"))
    return best.join(counts, on="consensus_id", how="left")


def ion_polarity(ion_mode: str | None, default: str) -> str:
    """``positive`` or ``negative``: the scan's polarity, else ``default`` (the study's configured ion mode)."""
    mode = (ion_mode or default or "positive").lower()
    return "negative" if mode.startswith("neg") else "positive"


def sirius_ion(adduct: str | None, polarity: str) -> tuple[str, int]:
    """(the ``ION=`` value, the charge) for SIRIUS: ``adduct`` when it is a bracketed ion of that polarity
    (``[M+H]+``, ``[M+Na]+``, ``[M-H]-``), else SIRIUS's unknown ion of the polarity (``[M+?]+``, ``[M+?]-``)."""
    sign = "-" if polarity == "negative" else "+"
    match = _ADDUCT.match((adduct or "").replace(" ", ""))
    if match and match["sign"] == sign:
        return match.group(0), int(match["z"] or 1)
    return f"[M+?]{sign}", 1


def _peak_lines(mz: Iterable[float], intensity: Iterable[float]) -> list[str]:
    return [f"{float(m):.6f} {np.format_float_positional(np.float32(i), unique=True, trim='-')}"
            for m, i in zip(mz, intensity)]


def mgf_block(fields: Sequence[tuple[str, object]], mz: Iterable[float], intensity: Iterable[float]) -> str:
    """One MGF record: ``BEGIN IONS``, ``KEY=value`` lines in the given order, ``m/z intensity`` lines (m/z to
    1e-6, intensity as the shortest float32 text), ``END IONS``. Raises ValueError on a value with a line break."""
    lines = ["BEGIN IONS"]
    for key, value in fields:
        text = str(value)
        if "\n" in text or "\r" in text:
            raise ValueError(f"MGF field {key} holds a line break")
        lines.append(f"{key}={text}")
    lines += _peak_lines(mz, intensity)
    lines.append("END IONS")
    return "\n".join(lines) + "\n"


def gnps_mgf(representatives: pl.DataFrame, default_ion_mode: str = "positive") -> str:
    """The FBMN MGF text: one block per row of ``representatives`` (``representative_spectra`` joined with the
    consensus feature's ``row_id``, ``consensus_mz``, ``consensus_rt_s``), ordered by ``row_id``.

    Fields: FEATURE_ID, PEPMASS (consensus m/z), SCANS (= FEATURE_ID), RTINSECONDS (consensus RT), CHARGE (the
    spectrum's precursor charge, 1 when unknown, signed by the polarity), MSLEVEL=2.
    """
    blocks = []
    for row in representatives.sort("row_id").iter_rows(named=True):
        polarity = ion_polarity(row["ion_mode"], default_ion_mode)
        charge = int(row["precursor_charge"] or 0) or 1
        blocks.append(mgf_block([
            ("FEATURE_ID", row["row_id"]), ("PEPMASS", f"{row['consensus_mz']:.6f}"), ("SCANS", row["row_id"]),
            ("RTINSECONDS", f"{row['consensus_rt_s']:.3f}"),
            ("CHARGE", f"{charge}{'-' if polarity == 'negative' else '+'}"), ("MSLEVEL", 2),
        ], row["mz"], row["intensity"]))
    return "".join(blocks)


def sirius_mgf(representatives: pl.DataFrame, default_ion_mode: str = "positive") -> tuple[str, int]:
    """(the SIRIUS MGF text, the number of features left out as multiply charged).

    ``representatives`` as for ``gnps_mgf`` plus ``adduct`` (the accepted identification's adduct, null when none).
    Fields: FEATURE_ID (= GNPS row ID), PEPMASS, CHARGE (1+ / 1-), ION (``sirius_ion``), RTINSECONDS, MSLEVEL=2.
    No field name holds LEVEL, FORMULA or ADDUCT other than these (SIRIUS's parser matches on substrings).
    """
    blocks, left_out = [], 0
    for row in representatives.sort("row_id").iter_rows(named=True):
        polarity = ion_polarity(row["ion_mode"], default_ion_mode)
        ion, z = sirius_ion(row.get("adduct"), polarity)
        if z > 1 or int(row["precursor_charge"] or 0) > 1:
            left_out += 1
            continue
        sign = "-" if polarity == "negative" else "+"
        blocks.append(mgf_block([
            ("FEATURE_ID", row["row_id"]), ("PEPMASS", f"{row['consensus_mz']:.6f}"), ("CHARGE", f"1{sign}"),
            ("ION", ion), ("RTINSECONDS", f"{row['consensus_rt_s']:.3f}"), ("MSLEVEL", 2),
        ], row["mz"], row["intensity"]))
    return "".join(blocks), left_out


def write_csv(table: pl.DataFrame, path: str | os.PathLike, separator: str = ",") -> None:
    """Write ``table`` as delimited text (header, ``null`` as an empty cell, lists joined by ``;``) atomically."""
    lists = [c for c, t in table.schema.items() if isinstance(t, pl.List)]
    table = table.with_columns(pl.col(c).cast(pl.List(pl.Utf8)).list.join(";") for c in lists)
    with atomic_path(path) as tmp:
        table.write_csv(tmp, separator=separator)


def write_mgf(text: str, path: str | Path) -> None:
    """Write MGF text atomically (UTF-8; an empty file when there is no block)."""
    write_text(text, path)
