"""What reading a spectrum file yields, and the account of what it skipped, emptied or altered.

``RawSpectrum`` is one entry as read (metadata texts and peaks, before cleaning); ``ReadReport`` collects an
``EntryIssue`` (file, entry position, identifier, reason, detail, line, action) for every entry that was
skipped (malformed), emptied (no peak left by cleaning) or altered (invalid peaks dropped, identifier renamed,
decimal comma read), logs each and gives the counts and a one-line summary. The per-entry checks shared by the
library build and the query reader live here too: ``checked_precursor``, ``record_empty``, ``unique_ids``,
``log_without_ion_mode`` and ``nothing_usable`` (the InputError for files with no usable spectrum). Imports only
ms2study.core and ms2study.io.fields.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import polars as pl

from ms2study.core.errors import InputError
from ms2study.io.fields import entry_id, first_field, ion_mode_conflict, precursor_of

log = logging.getLogger(__name__)

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
INTENSITIES_RESCALED = "intensities rescaled"
DUPLICATE_ID = "duplicate identifier renamed"
DECIMAL_COMMA = "decimal comma in precursor m/z read"
ION_MODE_CONFLICT = "ion mode fields disagree"
INCHIKEY_FROM_SMILES = "InChIKey derived from the SMILES"
ADDUCT_FROM_MASS = "adduct read from the precursor m/z and the formula"
EXACT_PRECURSOR = "rounded precursor m/z replaced by the ion's exact m/z"
PRECURSOR_FROM_FORMULA = "precursor m/z computed from the formula and the adduct"

SKIPPED, EMPTIED, ALTERED = "skipped", "emptied", "altered"


class EntryIssue(NamedTuple):
    """One entry that was skipped, emptied by cleaning, or altered while reading.

    ``file``: the file as given; ``entry``: 1-based position of the entry in the file (JSON: list position);
    ``identifier``: the entry's id as the index or query table would carry it (SPECTRUMID / DB# / ACCESSION /
    TITLE ..., else ``"<file name>:<entry>"``); ``reason``: a stable category (module constants such as
    ``NO_PRECURSOR``); ``detail``: the specifics (values, counts, renamed id); ``line``: 1-based line where
    the entry starts (JSON: list position); ``action``: ``"skipped"`` (not used: malformed),
    ``"emptied"`` (not used: no peak survived cleaning) or ``"altered"`` (used, but changed); ``name``: the entry's
    compound name where a skipped entry had one (NAME, COMPOUNDNAME), so a report can say which compound went
    missing (trial BI: "SIMC003" alone hid that sarcosine was gone, and its isomer took its name).
    """

    file: str
    entry: int
    identifier: str
    reason: str
    detail: str = ""
    line: int = 0
    action: str = SKIPPED
    name: str = ""


@dataclass
class RawSpectrum:
    """One entry as read from its file, before cleaning (invalid peaks already dropped and reported).

    ``mz`` float64 and ``intensity`` float64, same length, in file order (not sorted, duplicates kept); every
    m/z is finite and > 0, every intensity finite and >= 0.
    """

    fields: dict[str, str]          # normalised keys (see io.fields.norm_key) -> raw text value
    mz: np.ndarray
    intensity: np.ndarray
    source_file: str
    entry: int                       # 1-based entry number in the file
    line: int                        # line (or JSON list position) where the entry starts

    @cached_property
    def identifier(self) -> str:
        """The entry's id (first of SPECTRUMID, DB#, ACCESSION, NIST#, TITLE) or ``"<file name>:<entry>"``."""
        return entry_id(self.fields, self.source_file, self.entry)


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
    ``what`` ("library" or "queries") prefixes the log lines; ``files`` lists the files read; ``file_notes``
    holds (file, note) for what concerns a whole file (e.g. read as Windows-1252 because it is not UTF-8).
    """

    what: str = "library"
    n_entries: int = 0
    n_read: int = 0
    n_used: int = 0
    n_peaks_dropped: int = 0
    n_name_as_structure: int = 0  # library spectra without InChIKey or parsable SMILES: the name is the structure
    issues: list[EntryIssue] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    file_notes: list[tuple[str, str]] = field(default_factory=list)

    # -- recording
    def _record(self, issue: EntryIssue) -> None:
        self.issues.append(issue)
        detail = f": {issue.detail}" if issue.detail else ""
        # Emptied entries are common in real libraries (precursor-only spectra): named at INFO, not WARNING.
        log.log(
            logging.INFO if issue.action == EMPTIED else logging.WARNING,
            "%s %s: %s entry %d (line %d, id '%s'%s): %s%s",
            self.what, issue.file, issue.action, issue.entry, issue.line, issue.identifier,
            f", name '{issue.name}'" if issue.name else "", issue.reason, detail,
        )

    def skip(self, file: str, entry: int, line: int, reason: str, identifier: str | None = None,
             detail: str = "", fields: dict[str, str] | None = None) -> None:
        """Record an entry that is not used because it is malformed; ``fields`` (its metadata as read) give the
        compound's name (NAME, COMPOUNDNAME; not a TITLE that is the identifier itself)."""
        ident = identifier or f"{Path(file).name}:{entry}"
        name = (first_field(fields, "name") or "") if fields else ""
        self._record(EntryIssue(file, entry, ident, reason, detail, line, SKIPPED, "" if name == ident else name))

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

    def note_file(self, file: str, note: str) -> None:
        """Record, and log (WARNING) once, a note on a whole file (how it was decoded, not one entry)."""
        self.file_notes.append((file, note))
        log.warning("%s %s: %s", self.what, file, note)

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


# ------------------------------------------------------------------------------- shared entry checks


def checked_precursor(raw: RawSpectrum, report: ReadReport) -> float | None:
    """Precursor m/z of an entry (see ``precursor_of``); None, recorded as skipped, when it has none that is
    valid; a decimal comma read, and ion-mode fields that contradict each other (``fields.ion_mode_conflict``),
    are recorded as altered."""
    precursor, problem, note = precursor_of(raw.fields)
    if precursor is None:
        report.skip(raw.source_file, raw.entry, raw.line, NO_PRECURSOR, raw.identifier, problem, raw.fields)
        return None
    if note:
        report.alter(raw.source_file, raw.entry, raw.line, DECIMAL_COMMA, raw.identifier, note)
    conflict = ion_mode_conflict(raw.fields)
    if conflict:
        report.alter(raw.source_file, raw.entry, raw.line, ION_MODE_CONFLICT, raw.identifier, conflict)
    return precursor


def record_empty(raw: RawSpectrum, precursor: float, report: ReadReport, cleaning: dict) -> None:
    """Record ``raw`` as emptied: cleaning (``clean_peaks`` keyword arguments ``cleaning``) left no peak."""
    margin = f" minus {cleaning.get('precursor_margin_da')} Da" if cleaning.get("remove_precursor", True) else ""
    report.empty(raw.source_file, raw.entry, raw.line, EMPTY_AFTER_CLEANING, raw.identifier,
                 f"{raw.mz.size} peaks read, none left by cleaning (kept: intensity > 0, m/z below precursor "
                 f"{precursor:g}{margin})")


def unique_ids(entries: list[RawSpectrum], report: ReadReport) -> list[str]:
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


def log_without_ion_mode(report: ReadReport, file: str, ids: list[str], n_records: int, how: str,
                         level: int = logging.WARNING) -> None:
    """Log one line for ``file`` when some of its ``n_records`` used records state no ion mode (``ids``: their
    identifiers, the first three shown) and ``how`` they are searched; nothing when ``ids`` is empty."""
    if not ids:
        return
    shown = ", ".join(f"'{i}'" for i in ids[:3]) + (", ..." if len(ids) > 3 else "")
    log.log(level, "%s %s: %d of %d records state no ion mode (no IONMODE / Ion_mode, Ionization, CHARGE or adduct "
            "sign): %s (%s)", report.what, file, len(ids), n_records, how, shown)


def nothing_usable(report: ReadReport, paths: list[Path]) -> InputError:
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

