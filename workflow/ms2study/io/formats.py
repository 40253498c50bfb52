"""Readers of the spectrum files users bring: MGF, MSP and GNPS JSON (``.gz`` allowed), for libraries and queries.

One reader serves libraries and queries (``read_library_file`` for both), so the two read the same text the same
way: the same precursor m/z rules, the same ion mode, the same invalid-peak handling and the same identifiers.
Nothing is dropped or changed in silence: every entry that is skipped (unreadable or no peaks, truncated record)
or altered (invalid peaks dropped) is recorded in the ``ReadReport`` passed in (see ms2study.io.entries). Single
entries never stop a read; a missing, unknown or damaged file is an ``InputError`` naming the file and the fix.

Formats read (by extension, ``.gz`` allowed):

* MGF: ``BEGIN IONS`` ... ``END IONS`` records, ``KEY=value`` lines, peaks as ``m/z intensity`` (space or tab).
* MSP (NIST, MassBank, MS-DIAL, RIKEN, GOLM): ``Key: value`` lines, ``Num Peaks: n``, then peaks as
  ``m/z intensity`` per line (space, tab or colon), several pairs per line (``55 102; 56 3;``), the old NIST
  ``(55 102) (56 3)`` / ``(55,102)`` form, quoted or trailing annotations; metadata lines may sit between
  ``Num Peaks`` and the peaks; records end at a blank line or where the next one begins.
* GNPS JSON: a list of objects with ``peaks_json`` (or ``peaks``) as ``[[m/z, intensity], ...]``.

Text is UTF-8, with or without a byte-order mark, with LF, CRLF or CR line ends; text that is not UTF-8 is read as
Windows-1252 (Latin-1), the file named once in the log (``ReadReport.note_file``); UTF-16 with its mark is read.

Imports only ms2study.core and the io modules ``fields`` and ``entries``.
"""

from __future__ import annotations

import codecs
import gzip
import io
import json
import math
import os
import re
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from ms2study.core.errors import InputError
from ms2study.io.entries import (
    INTENSITIES_RESCALED,
    INVALID_PEAKS_DROPPED,
    NO_END,
    NO_PEAK_BLOCK,
    NO_PEAKS,
    NO_VALID_PEAKS,
    NOT_OBJECT,
    PEAK_COUNT,
    TRUNCATED,
    UNREADABLE_PEAKS,
    RawSpectrum,
    ReadReport,
)
from ms2study.io.fields import entry_id, float_or_none, norm_key

# Text encodings. Files are UTF-8 (a byte-order mark, as Windows editors write, is dropped: it once hid the first
# MGF record and the first MSP Name). A file whose bytes are not UTF-8 is almost always Windows-1252 / Latin-1
# (Excel, old NIST exports): it is read as such, named once in the log, rather than with replacement characters
# in names and ids. A UTF-16 byte-order mark (Notepad's "Unicode") is honoured.
NOT_UTF8 = "not UTF-8; read as Windows-1252 (Latin-1)"
_LATIN1_ERRORS = "ms2study.latin1"


def _latin1_for_undefined(err: UnicodeError) -> tuple[str, int]:
    # The five bytes Windows-1252 leaves undefined read as their Latin-1 code points, as browsers read them.
    if not isinstance(err, UnicodeDecodeError):
        raise err
    return err.object[err.start:err.end].decode("latin-1"), err.end


codecs.register_error(_LATIN1_ERRORS, _latin1_for_undefined)


def _open_binary(path: Path) -> BinaryIO:
    return gzip.open(path, "rb") if path.name.lower().endswith(".gz") else open(path, "rb")


def _utf16(path: Path) -> bool:
    with _open_binary(path) as handle:
        return handle.read(2) in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)


def _note_not_utf8(path: Path, report: ReadReport, line_no: int, line: str) -> None:
    where = f" (first at line {line_no}: {line.strip()[:60]!r})" if line_no else ""
    report.note_file(str(path), f"{NOT_UTF8}{where}; save it as UTF-8 to silence this")


def _text_lines(path: Path, report: ReadReport) -> Iterator[str]:
    """Lines of a text file (``.gz`` allowed; LF, CRLF or CR line ends; a byte-order mark dropped), read as UTF-8.

    From the first stretch that is not UTF-8 on, each line that is not UTF-8 is read as Windows-1252 (its five
    undefined bytes as Latin-1), noted once in ``report`` with the first such line; lines that are UTF-8 stay so
    (files joined from both). A UTF-16 file (byte-order mark) is read as UTF-16.
    """
    if _utf16(path):
        with io.TextIOWrapper(_open_binary(path), encoding="utf-16", errors="replace") as handle:
            yield from handle
        return
    n_read = 0
    try:
        with io.TextIOWrapper(_open_binary(path), encoding="utf-8-sig") as handle:
            for line in handle:
                n_read += 1
                yield line
        return
    except UnicodeDecodeError:
        pass
    # The lines already given were UTF-8. The rest is read again line by line: Latin-1 maps each byte to one
    # character, so the lines (split at the ASCII line ends) are the same and their bytes come back unchanged.
    noted = False
    with io.TextIOWrapper(_open_binary(path), encoding="latin-1") as handle:
        for line_no, text in enumerate(handle, 1):
            if line_no <= n_read:
                continue
            raw = text.encode("latin-1")
            if line_no == 1:
                raw = raw.removeprefix(codecs.BOM_UTF8)
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                line = raw.decode("cp1252", errors=_LATIN1_ERRORS)
                if not noted:
                    _note_not_utf8(path, report, line_no, line)
                    noted = True
            yield line


def _whole_text(path: Path, report: ReadReport) -> str:
    """The text of a whole file (for JSON) decoded as ``_text_lines`` decodes it, but as one: all UTF-8 or, when
    it is not (noted once in ``report``), all Windows-1252."""
    with _open_binary(path) as handle:
        data = handle.read()
    if data[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE):
        return data.decode("utf-16", errors="replace")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        bad = data.rfind(b"\n", 0, err.start) + 1
        end = data.find(b"\n", err.start)
        line = data[bad:end if end >= 0 else len(data)].decode("cp1252", errors=_LATIN1_ERRORS)
        _note_not_utf8(path, report, data.count(b"\n", 0, err.start) + 1, line)
        return data.removeprefix(codecs.BOM_UTF8).decode("cp1252", errors=_LATIN1_ERRORS)


def _format_of(path: Path, role: str = "library") -> str:
    name = path.name.lower()
    name = name.removesuffix(".gz")
    for ext, fmt in ((".mgf", "mgf"), (".msp", "msp"), (".json", "json")):
        if name.endswith(ext):
            return fmt
    if name.endswith((".mzml", ".mzxml", ".mzdata", ".raw", ".d", ".wiff")):
        # a whole LC-MS run: its MS/MS must first be detected, mapped and cleaned by the pipeline
        raise InputError(
            f"an LC-MS run is not a {role} spectrum file: {role} spectra are MGF, MSP or GNPS JSON entries",
            file=str(path),
            fix=("run the pipeline on the run's study folder (ms2study run STUDY_DIR) and identify its "
                 "results/samples/<sample>/spectra.parquet (ms2study score --queries .../spectra.parquet); or "
                 "export its MS/MS scans to MGF (e.g. msconvert --mgf)"
                 if role == "query" else "use a spectral library in MGF, MSP or GNPS JSON"),
        )
    raise InputError(
        f"unknown {role} format", file=str(path), fix="use .mgf, .msp or GNPS .json (optionally .gz)"
    )


_FLOAT32_TINY = float(np.finfo(np.float32).smallest_subnormal)  # at or below half of it: 0 in float32
# A spectrum whose largest intensity exceeds this is divided by a power of ten to bring it below: the scoring kernels
# sum and normalise float32 intensities, and a trial's spectra of 1e30-1e37 summed to infinity (a ZeroDivisionError
# deep in the entropy preparation). Only relative intensities matter to MS/MS scoring; 1e20 scored right there.
MAX_INTENSITY = 1e20


def _finish_entry(
    report: ReadReport, src: str, entry: int, line: int, fields: dict[str, str], mz: list[float],
    intensity: list[float],
) -> RawSpectrum | None:
    """The entry as a RawSpectrum, invalid peaks dropped and reported; None (reported) when no peak is left."""
    if len(mz) == 0:
        report.skip(src, entry, line, NO_PEAKS, entry_id(fields, src, entry), "the entry lists no peaks", fields)
        return None
    mz_a = np.ascontiguousarray(mz, dtype=np.float64)
    int_a = np.ascontiguousarray(intensity, dtype=np.float64)
    # NaN fails every comparison, so one chain of comparisons finds all invalid values. Intensities beyond
    # float32's range (they are stored as float32) are kept: the spectrum is rescaled below (a trial's peaks of
    # 1e36-1e39 had been dropped, the rest rescaled, and its cosine fell from 1.0 to 0.01).
    good = (mz_a > 0) & (mz_a < np.inf) & (int_a >= 0) & (int_a < np.inf)
    if not good.all():
        bad_mz = ~((mz_a > 0) & (mz_a < np.inf))
        nan_i, inf_i, neg_i = np.isnan(int_a), np.isinf(int_a), int_a < 0
        n_bad = int((~good).sum())
        parts = [f"{int(k.sum())} {what}" for k, what in (
            (neg_i, "negative intensity"), (nan_i, "NaN intensity"), (inf_i, "infinite intensity"),
            (bad_mz, "m/z not finite or <= 0")) if k.any()]
        detail = f"{n_bad} of {mz_a.size} peaks dropped ({', '.join(parts)})"
        report.n_peaks_dropped += n_bad
        ident = entry_id(fields, src, entry)
        mz_a, int_a = mz_a[good], int_a[good]
        if mz_a.size == 0:
            report.skip(src, entry, line, NO_VALID_PEAKS, ident, detail, fields)
            return None
        report.alter(src, entry, line, INVALID_PEAKS_DROPPED, ident, detail)
    # Positive intensities too small for float32 are zero once stored: make them zero now, so that cleaning
    # drops them as it drops every zero (a spectrum of float32 zeros has no norm and cannot be scored).
    largest = float(int_a.max())
    if largest > MAX_INTENSITY:
        divisor = 10.0 ** math.ceil(math.log10(largest / MAX_INTENSITY))
        int_a = int_a / divisor
        report.alter(src, entry, line, INTENSITIES_RESCALED, entry_id(fields, src, entry),
                     f"intensities up to {largest:.3g} divided by {divisor:.0e} (relative intensities unchanged; sums "
                     "of such values overflow the scoring's float32)")
    tiny = (int_a > 0) & (int_a <= _FLOAT32_TINY / 2)
    if tiny.any():
        int_a = np.where(tiny, 0.0, int_a)
    report.n_read += 1
    return RawSpectrum(fields, mz_a, int_a, src, entry, line)



DECIMAL_COMMA_HINT = " (a decimal comma? peaks need a decimal point: save the file with '.' as the decimal separator)"


def _bad_peak_line(line_no: int, line: str) -> str:
    """The detail of an unreadable peak line: its number and start, and the decimal-comma hint when a comma stands
    between digits (trial AF: a library's '216,1022 6.94719e+06' got no hint, the same fault in a query file did)."""
    return f"line {line_no}: {line[:60]!r}" + (DECIMAL_COMMA_HINT if re.search(r"\d,\d", line) else "")

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
    for line_no, raw in enumerate(_text_lines(path, report), 1):
        line = raw.strip()
        if not line or line[0] in "#;!":
            continue
        if line[0] in "BbEe\ufeff":
            upper = line.lstrip("\ufeff").upper()  # a byte-order mark inside: files joined with cat
            if upper == "BEGIN IONS":
                if fields is not None:
                    report.skip(src, entry, start_line, NO_END, entry_id(fields, src, entry), fields=fields)
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
                            if float_or_none(token) is None:
                                bad_line = (f"line {token_lines[k // 2]}: {token[:40]!r} is not a number"
                                            + (DECIMAL_COMMA_HINT if "," in token else ""))
                                break
                if bad_line:
                    report.skip(src, entry, start_line, UNREADABLE_PEAKS, entry_id(fields, src, entry), bad_line,
                                fields)
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
                fields.setdefault(norm_key(key), value.strip())
            continue
        parts = line.split()
        if len(parts) == 1 and parts[0].count(",") == 1:
            parts = parts[0].split(",")
        if len(parts) < 2:
            bad_line = bad_line or _bad_peak_line(line_no, line)
            continue
        tokens.append(parts[0])
        tokens.append(parts[1])
        token_lines.append(line_no)
    if fields is not None:
        report.skip(src, entry, start_line, TRUNCATED, entry_id(fields, src, entry), fields=fields)


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
            value = float_or_none(token)
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
        ident = entry_id(fields, src, entry)
        if not in_peaks:
            report.skip(src, entry, start_line, NO_PEAK_BLOCK, ident, fields=fields)
            return
        if bad_line:
            report.skip(src, entry, start_line, UNREADABLE_PEAKS, ident, bad_line, fields)
            return
        if declared >= 0 and declared != len(mz):
            report.skip(src, entry, start_line, PEAK_COUNT, ident, f"'Num Peaks: {declared}' but {len(mz)} read",
                        fields)
            return
        spectrum = _finish_entry(report, src, entry, start_line, dict(fields), mz, inten)
        if spectrum is not None:
            yield spectrum

    for line_no, raw in enumerate(_text_lines(path, report), 1):
        line = raw.strip()
        if not line:
            if fields or in_peaks:
                yield from finish()
                fields, mz, inten, in_peaks, declared, bad_line = {}, [], [], False, -1, ""
            continue
        if in_peaks and _looks_like_peak(line):
            pairs = _msp_pairs(line)
            if pairs is None:
                bad_line = bad_line or _bad_peak_line(line_no, line)
            else:
                for a, b in pairs:
                    mz.append(a)
                    inten.append(b)
            continue
        key, sep, value = line.partition(":")
        if not sep or not key.strip():
            if in_peaks:
                bad_line = bad_line or _bad_peak_line(line_no, line)
            continue  # free text outside a peak block (comments, wrapped values)
        nkey = norm_key(key)
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
            count = float_or_none(value.strip())
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
    try:
        records = json.loads(_whole_text(path, report))
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
                fields.setdefault(norm_key(str(k)), text)
        ident = entry_id(fields, src, entry)
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
            report.skip(src, entry, entry, UNREADABLE_PEAKS, ident, f"unreadable peaks_json ({str(err)[:80]})",
                        fields)
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

