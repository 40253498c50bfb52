"""Reference spectral libraries and query files: read MGF / MSP / GNPS JSON, keep one indexed, cached library.

One reader serves libraries and queries (``read_library_file`` for both, ``read_query_spectra`` for a query
file), so the two read the same text the same way: the same precursor m/z rules (a decimal comma is read when
unambiguous, refused otherwise), the same ion mode (``IONMODE`` / ``Ion_mode: P/N`` / ``Ionization`` / signed
``CHARGE`` / adduct), the same invalid-peak handling and the same unique identifiers.

A library is read once into flat arrays (all peaks concatenated, float64 m/z and float32 intensity, plus
per-spectrum offsets), ordered by ion mode and precursor m/z so candidate search is a binary search, and with
its metadata (name, InChIKey, SMILES, formula, adduct, ion mode, license, ...) in a Parquet table whose row
``i`` describes spectrum ``i``. The index lives in a folder (``results/library/{name}/``) next to a manifest
that fingerprints the source files and the cleaning parameters: ``ensure_library_index`` rebuilds only when
either changed, and ``load_library_index`` memory-maps the arrays, so reuse costs milliseconds. Library
spectra go through ``ms2study.core.cleaning.clean_peaks``, the same function as the sample spectra, so queries and
references see the same cleaning.

Nothing is dropped or changed in silence. Every entry that is skipped (no precursor m/z, unreadable or no
peaks, truncated record), emptied by cleaning, or altered (invalid peaks dropped, identifier renamed, decimal
comma read) is recorded in a ``ReadReport`` as an ``EntryIssue`` (file, entry position, identifier, reason,
detail, line) and logged with those; a summary line gives the counts. Single entries never stop a run; a
library (or a query file) with no usable spectrum at all is an ``InputError`` naming the file and the fix.

Formats read (by extension, ``.gz`` allowed):

* MGF: ``BEGIN IONS`` ... ``END IONS`` records, ``KEY=value`` lines, peaks as ``m/z intensity`` (space or tab).
* MSP (NIST, MassBank, MS-DIAL, RIKEN, GOLM): ``Key: value`` lines, ``Num Peaks: n``, then peaks as
  ``m/z intensity`` per line (space, tab or colon), several pairs per line (``55 102; 56 3;``), the old NIST
  ``(55 102) (56 3)`` / ``(55,102)`` form, quoted or trailing annotations; metadata lines may sit between
  ``Num Peaks`` and the peaks; records end at a blank line or where the next one begins.
* GNPS JSON: a list of objects with ``peaks_json`` (or ``peaks``) as ``[[m/z, intensity], ...]``.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import logging
import math
import os
import re
import time
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import polars as pl

from ms2study.core.atomic import atomic_path, write_parquet, write_text
from ms2study.core.cleaning import clean_peaks
from ms2study.core.errors import InputError
from ms2study.core.params import overlay

log = logging.getLogger(__name__)

# Bump when the on-disk layout or the parsing rules change: old indexes are then rebuilt.
# 2: one reader for libraries and queries (MSP pair forms, ion mode from Ionization/signed CHARGE, invalid
#    peaks dropped and named, decimal-comma precursors, duplicate ids suffixed in file order).
INDEX_FORMAT_VERSION = 2

DEFAULT_PARAMS: dict[str, Any] = {
    # Passed to ms2study.core.cleaning.clean_peaks for every library spectrum (keep in step with the spectra stage).
    "cleaning": {
        "remove_precursor": True,
        "precursor_margin_da": 1.6,
        "min_relative_intensity": 0.0,
        "max_peaks": None,
    },
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

# Columns of the query table returned by read_query_spectra (the columns annotate needs of a spectra table).
QUERY_SCHEMA: dict[str, pl.DataType] = {
    "spectrum_id": pl.Utf8,
    "sample_id": pl.Utf8,
    "feature_id": pl.Utf8,
    "precursor_mz": pl.Float64,
    "ion_mode": pl.Utf8,
    "mz": pl.List(pl.Float64),
    "intensity": pl.List(pl.Float32),
}

ION_MODE_CODE = {"positive": 1, "negative": -1}

# Source keys (upper-cased, with spaces/underscores removed) -> metadata field; first present key wins.
_KEY_ALIASES: dict[str, tuple[str, ...]] = {
    "library_id": ("SPECTRUMID", "DB#", "DBNUMBER", "ACCESSION", "NIST#", "TITLE"),
    "name": ("NAME", "COMPOUNDNAME", "TITLE"),
    "inchikey": ("INCHIKEY", "INCHIKEYSMILES", "INCHIKEYINCHI", "INCHIAUX"),
    "smiles": ("SMILES",),
    "formula": ("FORMULA", "FORMULASMILES", "MOLECULARFORMULA"),
    "adduct": ("ADDUCT", "PRECURSORTYPE", "PRECURSORADDUCT"),
    "ion_mode": ("IONMODE", "POLARITY", "IONPOLARITY", "SCANPOLARITY"),
    "ionization": ("IONIZATION", "IONISATION"),
    "license": ("LICENSE", "LICENCE"),
    "precursor_mz": ("PRECURSORMZ", "PEPMASS", "PRECURSOR"),
    "charge": ("CHARGE", "PRECURSORCHARGE"),
    "compound_class": ("COMPOUNDCLASS", "ONTOLOGY"),
    "instrument_type": ("INSTRUMENTTYPE", "INSTRUMENT", "SOURCEINSTRUMENT"),
    "collision_energy": ("COLLISIONENERGY",),
}
_MISSING = {"", "N/A", "NA", "NAN", "NONE", "NULL", "-", "UNKNOWN"}
_INCHIKEY_RE = re.compile(r"^[A-Z]{14}-[A-Z]{10}-[A-Z]$")

# Reasons (stable texts: reports and manifests count by them; the specifics go into EntryIssue.detail).
NO_PRECURSOR = "no valid precursor m/z"
UNREADABLE_PEAKS = "unreadable peak values"
NO_PEAKS = "no peaks"
NO_VALID_PEAKS = "no valid peaks"
PEAK_COUNT = "'Num Peaks' disagrees with the peaks read"
NO_PEAK_BLOCK = "no 'Num Peaks' block"
TRUNCATED = "file ends inside an entry (no END IONS)"
NO_END = "no END IONS before the next BEGIN IONS"
NOT_OBJECT = "entry is not a JSON object"
EMPTY_AFTER_CLEANING = "no peaks left after cleaning"
INVALID_PEAKS_DROPPED = "invalid peaks dropped"
DUPLICATE_ID = "duplicate identifier renamed"
DECIMAL_COMMA = "decimal comma in precursor m/z read"

SKIPPED, EMPTIED, ALTERED = "skipped", "emptied", "altered"


class EntryIssue(NamedTuple):
    """One entry that was skipped, emptied by cleaning, or altered while reading.

    ``file``: the file as given; ``entry``: 1-based position of the entry in the file (JSON: list position);
    ``identifier``: the entry's id as the index or query table would carry it (SPECTRUMID / DB# / ACCESSION /
    TITLE ..., else ``"<file name>:<entry>"``); ``reason``: a stable category (module constants such as
    ``NO_PRECURSOR``); ``detail``: the specifics (values, counts, renamed id); ``line``: 1-based line where
    the entry starts (JSON: list position); ``action``: ``"skipped"`` (not used: malformed),
    ``"emptied"`` (not used: no peak survived cleaning) or ``"altered"`` (used, but changed).
    """

    file: str
    entry: int
    identifier: str
    reason: str
    detail: str = ""
    line: int = 0
    action: str = SKIPPED


@dataclass
class RawSpectrum:
    """One entry as read from its file, before cleaning (invalid peaks already dropped and reported).

    ``mz`` float64 and ``intensity`` float64, same length, in file order (not sorted, duplicates kept); every
    m/z is finite and > 0, every intensity finite and >= 0.
    """

    fields: dict[str, str]          # normalised keys (see _norm_key) -> raw text value
    mz: np.ndarray
    intensity: np.ndarray
    source_file: str
    entry: int                       # 1-based entry number in the file
    line: int                        # line (or JSON list position) where the entry starts

    @cached_property
    def identifier(self) -> str:
        """The entry's id (first of SPECTRUMID, DB#, ACCESSION, NIST#, TITLE) or ``"<file name>:<entry>"``."""
        return _entry_id(self.fields, self.source_file, self.entry)


@dataclass
class ReadReport:
    """What reading (and indexing) one or more files skipped, emptied or altered, and why.

    Counts: ``n_entries`` entries met in the files (complete or not); ``n_read`` entries parsed into spectra
    and handed on by the readers; ``n_used`` spectra kept at
    the end (set by ``build_library`` / ``read_query_spectra``); ``n_peaks_dropped`` invalid peaks (m/z not
    finite or <= 0, intensity negative, NaN or infinite) removed from entries that were otherwise kept or
    skipped. ``issues`` lists every affected entry as an ``EntryIssue`` (file, entry, identifier, reason,
    detail, line, action); ``skipped`` / ``emptied`` / ``altered`` select them by action, ``by_reason``
    counts them, ``to_frame`` gives a table for reports. Every issue is logged when recorded (WARNING;
    emptied: INFO) with the file, entry position, line, identifier and reason; ``summary`` is the one-line
    account.
    ``what`` ("library" or "queries") prefixes the log lines; ``files`` lists the files read.
    """

    what: str = "library"
    n_entries: int = 0
    n_read: int = 0
    n_used: int = 0
    n_peaks_dropped: int = 0
    issues: list[EntryIssue] = field(default_factory=list)
    files: list[str] = field(default_factory=list)

    # -- recording
    def _record(self, issue: EntryIssue) -> None:
        self.issues.append(issue)
        detail = f": {issue.detail}" if issue.detail else ""
        # Emptied entries are common in real libraries (precursor-only spectra): named at INFO, not WARNING.
        log.log(
            logging.INFO if issue.action == EMPTIED else logging.WARNING,
            "%s %s: %s entry %d (line %d, id '%s'): %s%s",
            self.what, issue.file, issue.action, issue.entry, issue.line, issue.identifier, issue.reason, detail,
        )

    def skip(self, file: str, entry: int, line: int, reason: str, identifier: str | None = None,
             detail: str = "") -> None:
        """Record an entry that is not used because it is malformed."""
        self._record(EntryIssue(file, entry, identifier or f"{Path(file).name}:{entry}", reason, detail, line,
                                SKIPPED))

    def empty(self, file: str, entry: int, line: int, reason: str, identifier: str | None = None,
              detail: str = "") -> None:
        """Record an entry that is not used because no peak survived cleaning."""
        self._record(EntryIssue(file, entry, identifier or f"{Path(file).name}:{entry}", reason, detail, line,
                                EMPTIED))

    def alter(self, file: str, entry: int, line: int, reason: str, identifier: str | None = None,
              detail: str = "") -> None:
        """Record an entry that is used but was changed (peaks dropped, id renamed, value reinterpreted)."""
        self._record(EntryIssue(file, entry, identifier or f"{Path(file).name}:{entry}", reason, detail, line,
                                ALTERED))

    # -- reading back
    def _select(self, action: str) -> list[EntryIssue]:
        return [i for i in self.issues if i.action == action]

    @property
    def skipped(self) -> list[EntryIssue]:
        """Entries not used because malformed (no precursor, unreadable / no peaks, truncated)."""
        return self._select(SKIPPED)

    @property
    def emptied(self) -> list[EntryIssue]:
        """Entries not used because cleaning left no peak."""
        return self._select(EMPTIED)

    @property
    def altered(self) -> list[EntryIssue]:
        """Entries used with a change (invalid peaks dropped, identifier renamed, decimal comma read)."""
        return self._select(ALTERED)

    @property
    def n_skipped(self) -> int:
        return len(self.skipped)

    @property
    def n_emptied(self) -> int:
        return len(self.emptied)

    @property
    def n_altered(self) -> int:
        return len(self.altered)

    def by_reason(self, action: str | None = None) -> dict[str, int]:
        """Number of issues per reason (of one action, or all), in order of first occurrence."""
        out: dict[str, int] = {}
        for issue in self.issues:
            if action is None or issue.action == action:
                out[issue.reason] = out.get(issue.reason, 0) + 1
        return out

    def counts(self) -> dict[str, Any]:
        """All counts as a JSON-ready dict (for manifests and reports)."""
        return {
            "files": list(self.files), "n_entries": self.n_entries, "n_read": self.n_read, "n_used": self.n_used,
            "n_skipped": self.n_skipped,
            "n_emptied": self.n_emptied, "n_altered": self.n_altered, "n_peaks_dropped": self.n_peaks_dropped,
            "skipped_by_reason": self.by_reason(SKIPPED), "emptied_by_reason": self.by_reason(EMPTIED),
            "altered_by_reason": self.by_reason(ALTERED),
        }

    def to_frame(self) -> pl.DataFrame:
        """Issues as a table: file, entry, line, identifier, action, reason, detail (one row per issue)."""
        schema = {"file": pl.Utf8, "entry": pl.Int64, "line": pl.Int64, "identifier": pl.Utf8, "action": pl.Utf8,
                  "reason": pl.Utf8, "detail": pl.Utf8}
        rows = [{"file": i.file, "entry": i.entry, "line": i.line, "identifier": i.identifier, "action": i.action,
                 "reason": i.reason, "detail": i.detail} for i in self.issues]
        return pl.DataFrame(rows, schema=schema)

    def summary(self) -> str:
        """One line: files, entries, used, skipped / emptied / altered with their reasons, peaks dropped."""

        def part(action: str, label: str) -> str:
            reasons = self.by_reason(action)
            n = sum(reasons.values())
            inner = ", ".join(f"{k} {r}" for r, k in reasons.items())
            return f"{n} {label}" + (f" ({inner})" if inner else "")

        names = ", ".join(Path(f).name for f in self.files)
        return (
            f"{self.what} {names}: {self.n_entries} entries, {self.n_used} used; {part(SKIPPED, 'skipped')}; "
            f"{part(EMPTIED, 'empty after cleaning')}; {part(ALTERED, 'altered')}; "
            f"{self.n_peaks_dropped} invalid peaks dropped"
        )

    def log_summary(self) -> None:
        """Log ``summary()``: WARNING when anything was skipped, emptied or altered, INFO otherwise."""
        log.log(logging.WARNING if self.issues else logging.INFO, "%s", self.summary())

@dataclass
class LibraryIndex:
    """A loaded library index. Arrays are memory-mapped; row ``i`` of ``metadata`` is spectrum ``i``."""

    path: Path
    metadata: pl.DataFrame
    precursor_mz: np.ndarray         # float64, sorted within each ion-mode block
    ion_mode: np.ndarray             # int8: 1 positive, -1 negative, 0 unknown
    offsets: np.ndarray              # int64, len n+1
    mz: np.ndarray                   # float64, concatenated cleaned peaks
    intensity: np.ndarray            # float32
    manifest: dict

    def __len__(self) -> int:
        return int(self.precursor_mz.shape[0])

    def peaks(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Cleaned peaks of spectrum ``i``."""
        a, b = int(self.offsets[i]), int(self.offsets[i + 1])
        return self.mz[a:b], self.intensity[a:b]

    def embeddings(self, model_id: str) -> np.ndarray | None:
        """Library embeddings for ``model_id`` (rows aligned with spectra), or None if not computed yet."""
        path = self.path / "embeddings" / f"{_safe_name(model_id)}.npy"
        return np.load(path, mmap_mode="r") if path.exists() else None



# --------------------------------------------------------------------------------------------- reading


_KEY_DROP = str.maketrans("", "", " \t\r\n\x0b\x0c_")


def _norm_key(key: str) -> str:
    """Upper case, whitespace and underscores removed: "Ion_mode" -> "IONMODE", "Num Peaks" -> "NUMPEAKS"."""
    return key.strip().upper().translate(_KEY_DROP)


def _entry_id(fields: dict[str, str], source_file: str, entry: int) -> str:
    return _first(fields, "library_id") or f"{Path(source_file).name}:{entry}"


def _open_text(path: Path) -> io.TextIOBase:
    if path.name.lower().endswith(".gz"):
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", errors="replace")
    return open(path, encoding="utf-8", errors="replace")


def _format_of(path: Path, role: str = "library") -> str:
    name = path.name.lower()
    name = name.removesuffix(".gz")
    for ext, fmt in ((".mgf", "mgf"), (".msp", "msp"), (".json", "json")):
        if name.endswith(ext):
            return fmt
    raise InputError(
        f"unknown {role} format", file=str(path), fix="use .mgf, .msp or GNPS .json (optionally .gz)"
    )


_FLOAT32_MAX = float(np.finfo(np.float32).max)
_FLOAT32_TINY = float(np.finfo(np.float32).smallest_subnormal)  # at or below half of it: 0 in float32


def _float_or_none(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _finish_entry(
    report: ReadReport, src: str, entry: int, line: int, fields: dict[str, str], mz: list[float],
    intensity: list[float],
) -> RawSpectrum | None:
    """The entry as a RawSpectrum, invalid peaks dropped and reported; None (reported) when no peak is left."""
    if len(mz) == 0:
        report.skip(src, entry, line, NO_PEAKS, _entry_id(fields, src, entry), "the entry lists no peaks")
        return None
    mz_a = np.ascontiguousarray(mz, dtype=np.float64)
    int_a = np.ascontiguousarray(intensity, dtype=np.float64)
    # NaN fails every comparison, so one chain of comparisons finds all invalid values. Intensities are
    # stored as float32: one beyond its range is as unusable as an infinite one.
    good = (mz_a > 0) & (mz_a < np.inf) & (int_a >= 0) & (int_a <= _FLOAT32_MAX)
    if not good.all():
        bad_mz = ~((mz_a > 0) & (mz_a < np.inf))
        nan_i, inf_i, neg_i = np.isnan(int_a), np.isinf(int_a), int_a < 0
        huge_i = np.isfinite(int_a) & (int_a > _FLOAT32_MAX)
        n_bad = int((~good).sum())
        parts = [f"{int(k.sum())} {what}" for k, what in (
            (neg_i, "negative intensity"), (nan_i, "NaN intensity"), (inf_i, "infinite intensity"),
            (huge_i, "intensity beyond float32 range"), (bad_mz, "m/z not finite or <= 0")) if k.any()]
        detail = f"{n_bad} of {mz_a.size} peaks dropped ({', '.join(parts)})"
        report.n_peaks_dropped += n_bad
        ident = _entry_id(fields, src, entry)
        mz_a, int_a = mz_a[good], int_a[good]
        if mz_a.size == 0:
            report.skip(src, entry, line, NO_VALID_PEAKS, ident, detail)
            return None
        report.alter(src, entry, line, INVALID_PEAKS_DROPPED, ident, detail)
    # Positive intensities too small for float32 are zero once stored: make them zero now, so that cleaning
    # drops them as it drops every zero (a spectrum of float32 zeros has no norm and cannot be scored).
    tiny = (int_a > 0) & (int_a <= _FLOAT32_TINY / 2)
    if tiny.any():
        int_a = np.where(tiny, 0.0, int_a)
    report.n_read += 1
    return RawSpectrum(fields, mz_a, int_a, src, entry, line)


def read_mgf(path: Path, report: ReadReport) -> Iterator[RawSpectrum]:
    """Entries of an MGF file (GNPS, MassBank, MZmine and the simulator's exports).

    A record is ``BEGIN IONS`` ... ``END IONS``; ``KEY=value`` lines are metadata (first occurrence wins),
    other lines are peaks ``m/z intensity`` (space or tab separated, further columns ignored; a single
    ``m/z,intensity`` token is split at its comma). Lines starting with ``#``, ``;`` or ``!`` are comments.
    Skipped (and reported): records with an unreadable peak line, no peaks, no valid peaks, or no END IONS.
    """
    src = str(path)
    entry, start_line = 0, 0
    fields: dict[str, str] | None = None
    tokens: list[str] = []       # m/z, intensity, m/z, intensity ... as text (converted at END IONS)
    token_lines: list[int] = []  # line of each peak
    bad_line = ""
    with _open_text(path) as handle:
        for line_no, raw in enumerate(handle, 1):
            line = raw.strip()
            if not line or line[0] in "#;!":
                continue
            if line[0] in "BbEe":
                upper = line.upper()
                if upper == "BEGIN IONS":
                    if fields is not None:
                        report.skip(src, entry, start_line, NO_END, _entry_id(fields, src, entry))
                    entry += 1
                    report.n_entries += 1
                    fields, tokens, token_lines, bad_line, start_line = {}, [], [], "", line_no
                    continue
                if fields is not None and upper == "END IONS":
                    values = np.zeros(0)
                    if not bad_line:
                        try:
                            values = np.array(tokens, dtype=np.float64)
                        except ValueError:
                            for k, token in enumerate(tokens):
                                if _float_or_none(token) is None:
                                    bad_line = f"line {token_lines[k // 2]}: {token[:40]!r} is not a number"
                                    break
                    if bad_line:
                        report.skip(src, entry, start_line, UNREADABLE_PEAKS, _entry_id(fields, src, entry), bad_line)
                    else:
                        spectrum = _finish_entry(report, src, entry, start_line, fields, values[0::2], values[1::2])
                        if spectrum is not None:
                            yield spectrum
                    fields = None
                    continue
            if fields is None:
                continue  # text between entries
            if "=" in line:
                key, _, value = line.partition("=")
                if key.strip():
                    fields.setdefault(_norm_key(key), value.strip())
                continue
            parts = line.split()
            if len(parts) == 1 and parts[0].count(",") == 1:
                parts = parts[0].split(",")
            if len(parts) < 2:
                bad_line = bad_line or f"line {line_no}: {line[:60]!r}"
                continue
            tokens.append(parts[0])
            tokens.append(parts[1])
            token_lines.append(line_no)
    if fields is not None:
        report.skip(src, entry, start_line, TRUNCATED, _entry_id(fields, src, entry))


_QUOTED_RE = re.compile(r'"[^"]*"')
_PAREN_RE = re.compile(r"\(([^()]*)\)")
_PAIR_SPLIT_RE = re.compile(r"[\s:]+")


def _msp_pairs(line: str) -> list[tuple[float, float]] | None:
    """Peak pairs of one MSP peak line, None when no pair can be read.

    Reads ``mz int``, ``mz<TAB>int``, ``mz:int``, ``mz,int``; several pairs per line separated by ``;`` or
    simply listed (``55 102 56 3``); the old NIST ``(55 102) (56 3)`` / ``(55,102)`` form; quoted annotations
    and trailing non-numeric annotations are ignored (a pair followed by text counts as one pair).
    """
    text = _QUOTED_RE.sub(" ", line).strip()
    chunks = _PAREN_RE.findall(text) if text.startswith("(") else text.split(";")
    pairs: list[tuple[float, float]] = []
    for chunk in chunks:
        chunk = chunk.strip().strip(",").strip()
        if not chunk:
            continue
        tokens = [t.strip(",") for t in _PAIR_SPLIT_RE.split(chunk) if t.strip(",")]
        if len(tokens) == 1 and tokens[0].count(",") == 1:
            tokens = tokens[0].split(",")
        numbers: list[float] = []
        for token in tokens:
            value = _float_or_none(token)
            if value is None:
                break  # an annotation starts here
            numbers.append(value)
        if len(numbers) < 2:
            return None
        if len(numbers) == len(tokens) and len(numbers) % 2 == 0:
            pairs.extend(zip(numbers[0::2], numbers[1::2]))
        else:
            pairs.append((numbers[0], numbers[1]))
    return pairs or None


def _looks_like_peak(line: str) -> bool:
    return line[0].isdigit() or line[0] in ".(+-"


def read_msp(path: Path, report: ReadReport) -> Iterator[RawSpectrum]:
    """Entries of an MSP file (NIST, MassBank, MS-DIAL, RIKEN, GOLM styles).

    ``Key: value`` lines are metadata (first occurrence wins); ``Num Peaks: n`` opens the peak block, whose
    lines are read by ``_msp_pairs``. Metadata lines between ``Num Peaks`` and the first peak belong to the
    record. A record ends at a blank line, at a ``Name`` line after its ``Num Peaks``, or when a key line
    follows its peaks and either the declared count is reached or no count was declared. Skipped (and
    reported): records without a ``Num Peaks`` line, with an unreadable peak line, with a peak count other
    than declared, or without (valid) peaks.
    """
    src = str(path)
    entry = 0
    fields: dict[str, str] = {}
    mz: list[float] = []
    inten: list[float] = []
    in_peaks = False
    declared = -1
    start_line = 0
    bad_line = ""

    def finish() -> Iterator[RawSpectrum]:
        ident = _entry_id(fields, src, entry)
        if not in_peaks:
            report.skip(src, entry, start_line, NO_PEAK_BLOCK, ident)
            return
        if bad_line:
            report.skip(src, entry, start_line, UNREADABLE_PEAKS, ident, bad_line)
            return
        if declared >= 0 and declared != len(mz):
            report.skip(src, entry, start_line, PEAK_COUNT, ident, f"'Num Peaks: {declared}' but {len(mz)} read")
            return
        spectrum = _finish_entry(report, src, entry, start_line, dict(fields), mz, inten)
        if spectrum is not None:
            yield spectrum

    with _open_text(path) as handle:
        for line_no, raw in enumerate(handle, 1):
            line = raw.strip()
            if not line:
                if fields or in_peaks:
                    yield from finish()
                    fields, mz, inten, in_peaks, declared, bad_line = {}, [], [], False, -1, ""
                continue
            if in_peaks and _looks_like_peak(line):
                pairs = _msp_pairs(line)
                if pairs is None:
                    bad_line = bad_line or f"line {line_no}: {line[:60]!r}"
                else:
                    for a, b in pairs:
                        mz.append(a)
                        inten.append(b)
                continue
            key, sep, value = line.partition(":")
            if not sep or not key.strip():
                if in_peaks:
                    bad_line = bad_line or f"line {line_no}: {line[:60]!r}"
                continue  # free text outside a peak block (comments, wrapped values)
            nkey = _norm_key(key)
            if in_peaks and (nkey == "NAME" or ((mz or bad_line) and (declared < 0 or len(mz) >= declared))):
                # A Name line after 'Num Peaks', or a key line after the peaks, without a blank line between
                # records: the next record begins.
                yield from finish()
                fields, mz, inten, in_peaks, declared, bad_line = {}, [], [], False, -1, ""
            if not fields and not in_peaks:
                entry += 1
                report.n_entries += 1
                start_line = line_no
            if nkey == "NUMPEAKS":
                in_peaks = True
                count = _float_or_none(value.strip())
                declared = int(count) if count is not None and count.is_integer() and count >= 0 else -1
                continue
            fields.setdefault(nkey, value.strip())
        if fields or in_peaks:
            yield from finish()


def _json_text(value: Any) -> str | None:
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, (str, int, float)):
        return str(value)
    return None


def read_gnps_json(path: Path, report: ReadReport) -> Iterator[RawSpectrum]:
    """Entries of a GNPS library JSON export: a list of objects with ``peaks_json`` (or ``peaks``) holding
    ``[[m/z, intensity], ...]`` (or that list as a JSON string); a single object, or ``{"spectra": [...]}``, is
    read as a list. Scalar values become metadata fields. Raises InputError when the file is not JSON or
    not such a list; skips (and reports) entries that are not objects or whose peaks are unreadable.
    """
    src = str(path)
    with _open_text(path) as handle:
        try:
            records = json.load(handle)
        except (json.JSONDecodeError, RecursionError) as err:
            raise InputError(f"not valid JSON ({err})", file=src, fix="export the library again from GNPS") from err
    if isinstance(records, dict):
        records = records.get("spectra", [records])
    if not isinstance(records, list):
        raise InputError(
            "JSON is not a list of spectra", file=src, fix="use a GNPS library JSON export (a list of objects)"
        )
    for entry, rec in enumerate(records, 1):
        report.n_entries += 1
        if not isinstance(rec, dict):
            report.skip(src, entry, entry, NOT_OBJECT)
            continue
        fields = {}
        for k, v in rec.items():
            text = _json_text(v)
            if text is not None:
                fields.setdefault(_norm_key(str(k)), text)
        ident = _entry_id(fields, src, entry)
        peaks = rec.get("peaks_json", rec.get("peaks"))
        try:
            if isinstance(peaks, str):
                peaks = json.loads(peaks)
            if peaks is None or (isinstance(peaks, list) and not peaks):
                arr = np.zeros((0, 2))
            elif isinstance(peaks, list):
                arr = np.asarray(peaks, dtype=np.float64)
                if arr.ndim != 2 or arr.shape[1] < 2:
                    raise ValueError(f"peaks of shape {arr.shape}, expected (n, 2)")
            else:
                raise ValueError(f"peaks are a {type(peaks).__name__}, expected a list of [m/z, intensity]")
        except (ValueError, TypeError, OverflowError, RecursionError) as err:
            report.skip(src, entry, entry, UNREADABLE_PEAKS, ident, f"unreadable peaks_json ({str(err)[:80]})")
            continue
        spectrum = _finish_entry(report, src, entry, entry, fields, arr[:, 0].tolist(), arr[:, 1].tolist())
        if spectrum is not None:
            yield spectrum


def _read_file(path: Path, report: ReadReport) -> Iterator[RawSpectrum]:
    role = "query" if report.what == "queries" else "library"
    if not path.is_file():
        fix = ("set 'library' in config to an existing file" if role == "library"
               else "pass an existing query file (.mgf, .msp, GNPS .json)")
        raise InputError(f"{role} file not found", file=str(path), fix=fix)
    reader = {"mgf": read_mgf, "msp": read_msp, "json": read_gnps_json}[_format_of(path, role)]
    report.files.append(str(path))
    try:
        yield from reader(path, report)
    except (OSError, EOFError, zlib.error) as err:
        raise InputError(
            f"cannot read the file ({type(err).__name__}: {err})", file=str(path),
            fix="check that the file is complete (a .gz must be a whole gzip file)",
        ) from err


def read_library_file(path: str | os.PathLike, report: ReadReport | None = None) -> Iterator[RawSpectrum]:
    """Entries of one spectrum file, whatever its format (MGF / MSP / GNPS JSON by extension, ``.gz`` allowed).

    Used for libraries and queries alike. Yields RawSpectrum in file order; every skipped or altered entry is
    recorded in ``report``. Raises InputError for a missing file, an unknown extension, a file that is not
    JSON (for .json) or a damaged gzip stream; never for a single bad entry.
    """
    report = report if report is not None else ReadReport()
    yield from _read_file(Path(path), report)


# ------------------------------------------------------------------------------------------ metadata


def _first(fields: dict[str, str], field_name: str) -> str | None:
    for key in _KEY_ALIASES[field_name]:
        value = fields.get(key)
        if value is not None and value.strip().upper() not in _MISSING:
            return value.strip()
    return None


def _parse_float(text: str | None) -> float | None:
    """First token of ``text`` as a finite positive float, else None (kept for callers; readers use
    ``precursor_of``, which also reads a decimal comma and says why a value is refused)."""
    if text is None:
        return None
    try:
        value = float(text.split()[0])  # PEPMASS may carry "mz intensity"
    except (ValueError, IndexError):
        return None
    return value if math.isfinite(value) and value > 0 else None


_DECIMAL_COMMA_RE = re.compile(r"^[+-]?\d+,\d+$")


def precursor_of(fields: dict[str, str]) -> tuple[float | None, str, str]:
    """Precursor m/z of an entry -> ``(value, problem, note)``.

    The first present key of PRECURSORMZ / PEPMASS / PRECURSOR is read; only its first whitespace-separated
    token is the m/z (MGF ``PEPMASS=mz [intensity]``). A decimal comma (``281,2013306``: one comma, no dot,
    digits on both sides) is read as a decimal point and explained in ``note``; any other comma is refused
    as ambiguous. ``value`` is None when there is no finite m/z > 0, and ``problem`` then says why (missing,
    not a number, 0, negative, not finite, ambiguous comma); otherwise ``problem`` is "".
    """
    key = text = None
    for candidate in _KEY_ALIASES["precursor_mz"]:
        value = fields.get(candidate)
        if value is not None and value.strip().upper() not in _MISSING:
            key, text = candidate, value.strip()
            break
    if key is None or text is None:
        return None, "no precursor m/z given (PEPMASS= in MGF, PrecursorMZ: in MSP, Precursor_MZ in JSON)", ""
    token = text.split()[0]
    note = ""
    if "," in token:
        if not _DECIMAL_COMMA_RE.match(token):
            return None, (f"{key} '{text}' is ambiguous (a comma that is not a single decimal comma): "
                          f"write the m/z with a decimal point, e.g. 281.2013"), ""
        value_f = float(token.replace(",", "."))
        note = f"{key} '{text}' has a decimal comma: read as {value_f!r}"
    else:
        parsed = _float_or_none(token)
        if parsed is None:
            return None, f"{key} '{text}' is not a number", ""
        value_f = parsed
    if not math.isfinite(value_f):
        return None, f"{key} '{text}' is not finite", ""
    if value_f == 0:
        return None, f"{key} is 0", ""
    if value_f < 0:
        return None, f"{key} '{text}' is negative", ""
    return value_f, "", note


_CHARGE_RE = re.compile(r"^\s*([+-]?)(\d+)\s*([+-]?)")


def _charge_and_sign(text: str | None) -> tuple[int | None, bool]:
    """(charge, whether a sign was written): "2+" -> (2, True), "-1" -> (-1, True), "1" -> (1, False)."""
    if not text:
        return None, False
    m = _CHARGE_RE.match(text)
    if not m:
        return None, False
    signs = m.group(1) + m.group(3)
    sign = -1 if "-" in signs else 1
    return sign * int(m.group(2)), bool(signs)


def _parse_charge(text: str | None) -> int | None:
    return _charge_and_sign(text)[0]


def _mode_from_text(text: str | None) -> str | None:
    """'positive' / 'negative' from a polarity text: Positive, POS, P, +, ESI+, neg, N, -, APCI- ... else None."""
    t = (text or "").strip().lower()
    if not t:
        return None
    if "pos" in t or t in ("p", "+", "+1", "1+"):
        return "positive"
    if "neg" in t or t in ("n", "-", "-1", "1-"):
        return "negative"
    if t.endswith("+"):
        return "positive"
    if t.endswith("-"):
        return "negative"
    return None


def ion_mode_of(fields: dict[str, str]) -> str | None:
    """Ion mode of an entry, the same for library and query spectra: "positive", "negative" or None.

    In order, the first that tells: ``IONMODE`` / ``Ion_mode`` / ``POLARITY`` (Positive, P, +, ...);
    ``Ionization`` (ESI+, APCI-, positive, ...); a signed ``CHARGE`` (``1+``, ``-1``, ``2-``); the adduct's
    trailing sign (``[M-H]-``); an unsigned positive ``CHARGE`` (MGF convention: positive). None when none
    of these says anything (e.g. ``CHARGE=0`` alone).
    """
    for name in ("ion_mode", "ionization"):
        mode = _mode_from_text(_first(fields, name))
        if mode is not None:
            return mode
    charge, signed = _charge_and_sign(_first(fields, "charge"))
    if charge and signed:
        return "positive" if charge > 0 else "negative"
    adduct = _first(fields, "adduct")
    if adduct:
        tail = adduct.rstrip(" *")[-1:]
        if tail == "+":
            return "positive"
        if tail == "-":
            return "negative"
    if charge and charge > 0:
        return "positive"
    return None


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text)


def _metadata_row(raw: RawSpectrum, precursor_mz: float, n_peaks: int) -> dict[str, Any]:
    f = raw.fields
    inchikey = _first(f, "inchikey")
    if inchikey is not None and not _INCHIKEY_RE.match(inchikey):
        inchikey = None  # INCHIAUX and friends sometimes hold free text
    charge = _parse_charge(_first(f, "charge"))
    return {
        "library_id": raw.identifier,
        "name": _first(f, "name"),
        "inchikey": inchikey,
        "smiles": _first(f, "smiles"),
        "formula": _first(f, "formula"),
        "adduct": _first(f, "adduct"),
        "ion_mode": ion_mode_of(f),
        "license": _first(f, "license"),
        "precursor_mz": precursor_mz,
        "charge": charge if charge is not None and abs(charge) < 2**31 else None,
        "compound_class": _first(f, "compound_class"),
        "instrument_type": _first(f, "instrument_type"),
        "collision_energy": _first(f, "collision_energy"),
        "source_file": Path(raw.source_file).name,
        "source_entry": raw.entry,
        "n_peaks": n_peaks,
    }


def _unique_ids(entries: list[RawSpectrum], report: ReadReport) -> list[str]:
    """Identifiers of ``entries`` made unique in order: the first keeps its id, repeats get ``#2``, ``#3``...
    (skipping suffixes that are themselves ids); every rename is recorded in ``report`` as altered."""
    ids = [raw.identifier for raw in entries]
    taken = set(ids)
    first_of: dict[str, RawSpectrum] = {}
    next_k: dict[str, int] = {}
    out: list[str] = []
    for raw, ident in zip(entries, ids):
        if ident not in first_of:
            first_of[ident] = raw
            out.append(ident)
            continue
        k = next_k.get(ident, 2)
        while f"{ident}#{k}" in taken:
            k += 1
        new = f"{ident}#{k}"
        next_k[ident] = k + 1
        taken.add(new)
        out.append(new)
        first = first_of[ident]
        report.alter(
            raw.source_file, raw.entry, raw.line, DUPLICATE_ID, ident,
            f"'{ident}' -> '{new}' (already used by entry {first.entry} of {Path(first.source_file).name})",
        )
    return out


# ----------------------------------------------------------------------------------------- indexing


def merge_params(params: dict | None) -> dict[str, Any]:
    """DEFAULT_PARAMS with ``params`` merged over them; unknown keys raise InputError."""
    return overlay(params, DEFAULT_PARAMS, "library", nested=("cleaning",))


@dataclass
class BuiltLibrary:
    """An in-memory library, as written by ``write_library_index``."""

    metadata: pl.DataFrame
    precursor_mz: np.ndarray
    ion_mode: np.ndarray
    offsets: np.ndarray
    mz: np.ndarray
    intensity: np.ndarray
    report: ReadReport
    n_empty: int


def _checked_precursor(raw: RawSpectrum, report: ReadReport) -> float | None:
    """Precursor m/z of an entry (see ``precursor_of``); None, recorded as skipped, when it has none that is
    valid; a decimal comma read is recorded as altered."""
    precursor, problem, note = precursor_of(raw.fields)
    if precursor is None:
        report.skip(raw.source_file, raw.entry, raw.line, NO_PRECURSOR, raw.identifier, problem)
        return None
    if note:
        report.alter(raw.source_file, raw.entry, raw.line, DECIMAL_COMMA, raw.identifier, note)
    return precursor


def _record_empty(raw: RawSpectrum, precursor: float, report: ReadReport, cleaning: dict) -> None:
    margin = f" minus {cleaning.get('precursor_margin_da')} Da" if cleaning.get("remove_precursor", True) else ""
    report.empty(raw.source_file, raw.entry, raw.line, EMPTY_AFTER_CLEANING, raw.identifier,
                 f"{raw.mz.size} peaks read, none left by cleaning (kept: intensity > 0, m/z below precursor "
                 f"{precursor:g}{margin})")


def build_library(
    spectra: Iterable[RawSpectrum], params: dict | None = None, report: ReadReport | None = None
) -> BuiltLibrary:
    """Clean, order (ion mode, precursor m/z) and flatten library entries.

    Entries without a valid precursor m/z are skipped, entries left without peaks by cleaning are dropped
    (unless ``keep_empty``), repeated identifiers get ``#k`` suffixes in input order; each case is recorded
    in ``report`` (and logged) with file, entry, identifier and reason, and the summary is logged. The
    result may be empty (``index_library`` refuses that; other callers decide).
    """
    p = merge_params(params)
    report = report if report is not None else ReadReport()
    kept: list[RawSpectrum] = []
    precursors: list[float] = []
    mzs: list[np.ndarray] = []
    ints: list[np.ndarray] = []
    n_empty = 0
    for raw in spectra:
        precursor = _checked_precursor(raw, report)
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
            _record_empty(raw, precursor, report, p["cleaning"])
            continue
        kept.append(raw)
        precursors.append(precursor)
        mzs.append(mz)
        ints.append(inten)
    # Library ids must be unique (they key annotations): repeats get "#k" suffixes, in file order.
    ids = _unique_ids(kept, report)
    rows = []
    for raw, lid, precursor, mz in zip(kept, ids, precursors, mzs):
        row = _metadata_row(raw, precursor, int(mz.size))
        row["library_id"] = lid
        rows.append(row)
    metadata = pl.DataFrame(rows, schema=METADATA) if rows else pl.DataFrame(schema=METADATA)
    n = metadata.height
    precursor_arr = np.asarray(precursors, dtype=np.float64)
    mode = np.array([ION_MODE_CODE.get(m, 0) for m in metadata["ion_mode"].to_list()], dtype=np.int8)
    # Order by ion mode block, then precursor: each mode is one sorted run for binary search.
    order = np.lexsort((precursor_arr, mode)) if n else np.zeros(0, dtype=np.int64)
    counts = np.array([mzs[i].size for i in order], dtype=np.int64)
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
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
    )


def _nothing_usable(report: ReadReport, paths: list[Path]) -> InputError:
    """The InputError for files that gave no usable spectrum, with the fix for the commonest reason."""
    names = ", ".join(str(p) for p in paths)
    reasons = report.by_reason()
    noun = "query" if report.what == "queries" else "library"
    if not report.issues:
        fix = ("the file holds no entries: check that it is MGF (BEGIN IONS ... END IONS), MSP (Name: ..., "
               "Num Peaks: n, peaks) or a GNPS JSON list, and that its extension says which")
    else:
        top = max(reasons, key=reasons.get)
        if top == NO_PRECURSOR:
            fix = ("every spectrum needs a precursor m/z (PEPMASS= in MGF, PrecursorMZ: in MSP, Precursor_MZ in "
                   "GNPS JSON); spectra without one (e.g. GC-EI libraries) cannot be searched by precursor")
        elif top == EMPTY_AFTER_CLEANING:
            fix = ("no fragment peak lies below the precursor m/z minus the margin: check the precursor values "
                   "and the cleaning parameters (precursor_margin_da, min_relative_intensity)")
        else:
            fix = f"every entry was unusable (see the log for each entry and its reason); commonest: {top}"
    detail = "; ".join(f"{k} {r}" for r, k in reasons.items()) or "no entries found"
    return InputError(f"no usable {noun} spectrum ({report.n_entries} entries; {detail})", file=names, fix=fix)


def index_library(
    paths: list[str | os.PathLike] | str | os.PathLike,
    out_dir: str | os.PathLike,
    params: dict | None = None,
) -> LibraryIndex:
    """Read, clean and index library files into ``out_dir`` (always rebuilds); returns the loaded index.

    Raises InputError when no file is given, a file is missing / of unknown format / unreadable, or when
    no usable spectrum remains (nothing is written then). The manifest records the counts and the first
    100 skipped, emptied and altered entries (file, entry, line, identifier, reason, detail).
    """
    paths = [Path(paths)] if isinstance(paths, (str, os.PathLike)) else [Path(p) for p in paths]
    if not paths:
        raise InputError("no library file given", fix="set 'library' in config to a file or a list of files")
    p = merge_params(params)
    t0 = time.perf_counter()
    report = ReadReport()
    spectra = (raw for path in paths for raw in read_library_file(path, report))
    built = build_library(spectra, p, report)
    if built.metadata.height == 0:
        raise _nothing_usable(report, paths)

    def first(issues: list[EntryIssue]) -> list[dict[str, Any]]:
        return [{"file": Path(i.file).name, "entry": i.entry, "line": i.line, "identifier": i.identifier,
                 "reason": i.reason, "detail": i.detail} for i in issues[:100]]

    manifest = {
        "format_version": INDEX_FORMAT_VERSION,
        "sources": [_fingerprint(path) for path in paths],
        "params": p,
        "n_spectra": int(built.metadata.height),
        "n_entries": report.n_entries,
        "n_entries_read": report.n_read,
        "n_skipped": report.n_skipped,
        "skipped_by_reason": report.by_reason(SKIPPED),
        "skipped_first": first(report.skipped),
        "n_empty_after_cleaning": built.n_empty,
        "empty_first": first(report.emptied),
        "n_altered": report.n_altered,
        "altered_by_reason": report.by_reason(ALTERED),
        "altered_first": first(report.altered),
        "n_peaks_dropped": report.n_peaks_dropped,
        "build_seconds": round(time.perf_counter() - t0, 3),
    }
    write_library_index(built, out_dir, manifest)
    log.info(
        "library index %s: %d spectra from %d entries (%d malformed skipped, %d empty after cleaning, "
        "%d altered) in %.1f s",
        out_dir, built.metadata.height, report.n_read, report.n_skipped, built.n_empty, report.n_altered,
        manifest["build_seconds"],
    )
    return load_library_index(out_dir)


def _fingerprint(path: Path) -> dict[str, Any]:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return {"path": str(path.resolve()), "size": path.stat().st_size, "sha256": digest.hexdigest()}


def _save_npy(array: np.ndarray, path: Path) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.save(handle, array)


def write_library_index(built: BuiltLibrary, out_dir: str | os.PathLike, manifest: dict) -> Path:
    """Write arrays, metadata and (last, so it marks completeness) the manifest into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name in ("precursor_mz", "ion_mode", "offsets", "mz", "intensity"):
        _save_npy(getattr(built, name), out / f"{name}.npy")
    write_parquet(built.metadata, out / "metadata.parquet")
    write_text(json.dumps(manifest, indent=2) + "\n", out / "manifest.json")
    return out


def index_is_current(paths: list[str | os.PathLike], out_dir: str | os.PathLike, params: dict | None = None) -> bool:
    """True when ``out_dir`` holds a complete index of exactly these files (same content) and parameters."""
    manifest_path = Path(out_dir) / "manifest.json"
    if not manifest_path.exists():
        return False
    try:
        manifest = json.loads(manifest_path.read_text())
    except json.JSONDecodeError:
        return False
    if manifest.get("format_version") != INDEX_FORMAT_VERSION or manifest.get("params") != merge_params(params):
        return False
    sources = manifest.get("sources", [])
    if len(sources) != len(paths):
        return False
    for src, path in zip(sources, paths):
        path = Path(path)
        # Size first (cheap); hash only when sizes agree.
        if not path.exists() or src.get("size") != path.stat().st_size:
            return False
        if src.get("sha256") != _fingerprint(path)["sha256"]:
            return False
    return True


def ensure_library_index(
    paths: list[str | os.PathLike] | str | os.PathLike,
    out_dir: str | os.PathLike,
    params: dict | None = None,
) -> LibraryIndex:
    """Load the index in ``out_dir``, rebuilding it first if the files or parameters changed."""
    paths = [Path(paths)] if isinstance(paths, (str, os.PathLike)) else [Path(p) for p in paths]
    if index_is_current(paths, out_dir, params):
        return load_library_index(out_dir)
    return index_library(paths, out_dir, params)


def load_library_index(index_dir: str | os.PathLike) -> LibraryIndex:
    """Open an index folder written by ``index_library`` (arrays memory-mapped)."""
    path = Path(index_dir)
    manifest_path = path / "manifest.json"
    if not manifest_path.exists():
        raise InputError(
            "not a library index (no manifest.json)", file=str(path),
            fix="build it with 'ms2study index-library --library FILE --out DIR'",
        )
    names = ("precursor_mz", "ion_mode", "offsets", "mz", "intensity")
    arrays = {name: np.load(path / f"{name}.npy", mmap_mode="r") for name in names}
    return LibraryIndex(
        path=path,
        metadata=pl.read_parquet(path / "metadata.parquet"),
        manifest=json.loads(manifest_path.read_text()),
        **arrays,
    )


def save_library_embeddings(index_dir: str | os.PathLike, model_id: str, embeddings: np.ndarray) -> Path:
    """Store library embeddings (rows aligned with the index; L2-normalised here) for ``model_id``."""
    index = load_library_index(index_dir)
    emb = np.asarray(embeddings, dtype=np.float32)
    if emb.ndim != 2 or emb.shape[0] != len(index):
        raise ValueError(f"embeddings must have shape ({len(index)}, d), got {emb.shape}")
    norms = np.linalg.norm(emb, axis=1, keepdims=True)
    emb = emb / np.where(norms > 0, norms, 1.0)
    target = Path(index_dir) / "embeddings" / f"{_safe_name(model_id)}.npy"
    target.parent.mkdir(parents=True, exist_ok=True)
    _save_npy(emb.astype(np.float32), target)
    return target


# ------------------------------------------------------------------------------------------- queries


def read_query_spectra(
    path: str | os.PathLike, *, cleaning: dict | None = None, require_any: bool = True
) -> tuple[pl.DataFrame, ReadReport]:
    """Query spectra from an MGF / MSP / GNPS JSON file (``.gz`` allowed), read exactly as library entries are.

    Returns ``(table, report)``. ``table`` has one row per searchable query, in file order, with columns
    ``QUERY_SCHEMA``: ``spectrum_id`` (Utf8, unique: the entry's SPECTRUMID / DB# / ACCESSION / NIST# / TITLE,
    else ``"<file name>:<entry>"``; repeats get ``#2``, ``#3``... as library ids do, each rename recorded),
    ``sample_id`` and ``feature_id`` (null), ``precursor_mz`` (Float64, m/z > 0; a decimal comma is read when
    unambiguous, with a recorded note), ``ion_mode`` ("positive" / "negative" / null, from ``ion_mode_of``
    as for library spectra), ``mz`` (List Float64) and ``intensity`` (List Float32): the peaks as read, in
    file order, invalid peaks (negative / NaN / infinite intensity, m/z not finite or <= 0) dropped and
    recorded; not otherwise cleaned.

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
        precursor = _checked_precursor(raw, report)
        if precursor is None:
            continue
        if cleaning is not None and clean_peaks(raw.mz, raw.intensity, precursor, **cleaning)[0].size == 0:
            _record_empty(raw, precursor, report, cleaning)
            continue
        kept.append(raw)
        precursors.append(precursor)
    ids = _unique_ids(kept, report)
    table = pl.DataFrame(
        {
            "spectrum_id": ids,
            "sample_id": [None] * len(kept),
            "feature_id": [None] * len(kept),
            "precursor_mz": precursors,
            "ion_mode": [ion_mode_of(raw.fields) for raw in kept],
            "mz": [raw.mz.tolist() for raw in kept],
            "intensity": [raw.intensity.astype(np.float32).tolist() for raw in kept],
        },
        schema=QUERY_SCHEMA,
    )
    report.n_used = table.height
    report.log_summary()
    if table.height == 0 and require_any:
        raise _nothing_usable(report, [path])
    return table, report


# ---------------------------------------------------------------------------------------------- CLI


def _cli_index(args: argparse.Namespace) -> int:
    from ms2study.core.params import load_params

    index = index_library(args.library, args.out, load_params(args))
    m = index.manifest
    print(
        f"{args.out}: {m['n_spectra']} spectra indexed, {m['n_skipped']} malformed entries skipped, "
        f"{m['n_empty_after_cleaning']} empty after cleaning, {m['n_altered']} altered "
        f"(each named in the log and, the first 100, in {Path(args.out) / 'manifest.json'})"
    )
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    from ms2study.core.params import add_params_argument

    p = subparsers.add_parser("index-library", help="read MGF/MSP/GNPS-JSON libraries into one cached index folder")
    p.add_argument("--library", nargs="+", required=True, help="library file(s): .mgf, .msp, GNPS .json (.gz allowed)")
    p.add_argument("--out", required=True, help="index folder, e.g. results/library/{name}/")
    add_params_argument(p)
    p.set_defaults(func=_cli_index)
