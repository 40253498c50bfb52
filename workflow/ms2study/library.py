"""Reference spectral libraries: read MGF / MSP / GNPS JSON and keep one indexed, cached copy on disk.

A library is read once into flat arrays (all peaks concatenated, float64 m/z and float32 intensity, plus
per-spectrum offsets), ordered by ion mode and precursor m/z so candidate search is a binary search, and with
its metadata (name, InChIKey, SMILES, formula, adduct, ion mode, license, ...) in a Parquet table whose row
``i`` describes spectrum ``i``. The index lives in a folder (``results/library/{name}/``) next to a manifest
that fingerprints the source files and the cleaning parameters: ``ensure_library_index`` rebuilds only when
either changed, and ``load_library_index`` memory-maps the arrays, so reuse costs milliseconds. Library
spectra go through ``ms2study.cleaning.clean_peaks``, the same function as the sample spectra, so queries and
references see the same cleaning. Malformed entries (no precursor m/z, unreadable peaks, truncated records)
are skipped and reported with their file, entry number and line; they never stop the run.
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
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from ms2study.atomic import atomic_path, write_parquet, write_text
from ms2study.cleaning import clean_peaks
from ms2study.errors import InputError
from ms2study.params import overlay

log = logging.getLogger(__name__)

# Bump when the on-disk layout or the parsing rules change: old indexes are then rebuilt.
INDEX_FORMAT_VERSION = 1

DEFAULT_PARAMS: dict[str, Any] = {
    # Passed to ms2study.cleaning.clean_peaks for every library spectrum (keep in step with the spectra stage).
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

ION_MODE_CODE = {"positive": 1, "negative": -1}

# Source keys (upper-cased, with spaces/underscores removed) -> metadata field; first present key wins.
_KEY_ALIASES: dict[str, tuple[str, ...]] = {
    "library_id": ("SPECTRUMID", "DB#", "DBNUMBER", "ACCESSION", "TITLE"),
    "name": ("NAME", "COMPOUNDNAME", "TITLE"),
    "inchikey": ("INCHIKEY", "INCHIKEYSMILES", "INCHIKEYINCHI", "INCHIAUX"),
    "smiles": ("SMILES",),
    "formula": ("FORMULA", "FORMULASMILES", "MOLECULARFORMULA"),
    "adduct": ("ADDUCT", "PRECURSORTYPE", "PRECURSORADDUCT"),
    "ion_mode": ("IONMODE", "POLARITY"),
    "license": ("LICENSE", "LICENCE"),
    "precursor_mz": ("PRECURSORMZ", "PEPMASS", "PRECURSOR"),
    "charge": ("CHARGE",),
    "compound_class": ("COMPOUNDCLASS", "ONTOLOGY"),
    "instrument_type": ("INSTRUMENTTYPE", "INSTRUMENT", "SOURCEINSTRUMENT"),
    "collision_energy": ("COLLISIONENERGY",),
}
_MISSING = {"", "N/A", "NA", "NAN", "NONE", "NULL", "-", "UNKNOWN"}
_INCHIKEY_RE = re.compile(r"^[A-Z]{14}-[A-Z]{10}-[A-Z]$")


@dataclass
class RawSpectrum:
    """One library entry as read from its file, before cleaning."""

    fields: dict[str, str]          # normalised keys (see _norm_key) -> raw text value
    mz: np.ndarray
    intensity: np.ndarray
    source_file: str
    entry: int                       # 1-based entry number in the file
    line: int                        # line (or JSON list position) where the entry starts


@dataclass
class ReadReport:
    """What reading one or more library files skipped, and why (entries are never fatal)."""

    n_read: int = 0
    skipped: list[tuple[str, int, int, str]] = field(default_factory=list)  # (file, entry, line, reason)

    def skip(self, file: str, entry: int, line: int, reason: str) -> None:
        self.skipped.append((file, entry, line, reason))
        log.warning("library %s: skipped entry %d (line %d): %s", file, entry, line, reason)


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


def _norm_key(key: str) -> str:
    return re.sub(r"[\s_]", "", key.strip().upper())


def _open_text(path: Path) -> io.TextIOBase:
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", errors="replace")
    return open(path, encoding="utf-8", errors="replace")


def _format_of(path: Path) -> str:
    name = path.name.lower()
    name = name.removesuffix(".gz")
    for ext, fmt in ((".mgf", "mgf"), (".msp", "msp"), (".json", "json")):
        if name.endswith(ext):
            return fmt
    raise InputError(
        "unknown library format", file=str(path), fix="use .mgf, .msp or GNPS .json (optionally .gz)"
    )


def _peaks_from_text(tokens: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Peaks from 'mz intensity' lines already split into per-line token lists joined as text."""
    values = np.array(tokens, dtype=np.float64)
    return values[0::2].copy(), values[1::2].copy()


def read_mgf(path: Path, report: ReadReport) -> Iterator[RawSpectrum]:
    """Entries of an MGF file (GNPS, MassBank, MZmine and the simulator's exports)."""
    src = str(path)
    entry, start_line = 0, 0
    fields: dict[str, str] | None = None
    tokens: list[str] = []
    bad_peaks = False
    with _open_text(path) as handle:
        for line_no, raw in enumerate(handle, 1):
            line = raw.strip()
            if not line or line[0] in "#;!":
                continue
            if line == "BEGIN IONS":
                if fields is not None:
                    report.skip(src, entry, start_line, "no END IONS before the next BEGIN IONS")
                entry += 1
                fields, tokens, bad_peaks, start_line = {}, [], False, line_no
                continue
            if fields is None:
                continue  # text between entries
            if line == "END IONS":
                if bad_peaks:
                    report.skip(src, entry, start_line, "unreadable peak line")
                else:
                    try:
                        mz, inten = _peaks_from_text(tokens)
                    except ValueError:
                        report.skip(src, entry, start_line, "unreadable peak values")
                    else:
                        report.n_read += 1
                        yield RawSpectrum(fields, mz, inten, src, entry, start_line)
                fields = None
                continue
            first = line[0]
            if first.isdigit() or first == ".":
                parts = line.replace("\t", " ").split()
                if len(parts) < 2:
                    bad_peaks = True
                else:
                    tokens.append(parts[0])
                    tokens.append(parts[1])
            elif "=" in line:
                key, _, value = line.partition("=")
                fields.setdefault(_norm_key(key), value.strip())
            else:
                bad_peaks = True
    if fields is not None:
        report.skip(src, entry, start_line, "file ends inside an entry (no END IONS)")


_MSP_PAIR_RE = re.compile(r"([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)[\s:,]+([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)")


def read_msp(path: Path, report: ReadReport) -> Iterator[RawSpectrum]:
    """Entries of an MSP file (NIST, MassBank and RIKEN/MS-DIAL styles; records split by blank lines)."""
    src = str(path)
    entry = 0
    fields: dict[str, str] = {}
    tokens: list[str] = []
    in_peaks = False
    declared = -1
    start_line = 0

    def finish() -> Iterator[RawSpectrum]:
        if not fields and not tokens:
            return
        if not in_peaks:
            report.skip(src, entry, start_line, "no 'Num Peaks' block")
            return
        mz, inten = _peaks_from_text(tokens)
        if declared >= 0 and declared != mz.size:
            report.skip(src, entry, start_line, f"'Num Peaks: {declared}' but {mz.size} peaks read")
            return
        report.n_read += 1
        yield RawSpectrum(dict(fields), mz, inten, src, entry, start_line)

    with _open_text(path) as handle:
        for line_no, raw in enumerate(handle, 1):
            line = raw.strip()
            if not line:
                if fields or tokens:
                    yield from finish()
                    fields, tokens, in_peaks, declared = {}, [], False, -1
                continue
            first = line[0]
            if in_peaks and (first.isdigit() or first == "."):
                # NIST puts several "mz int;" pairs on one line and may add quoted annotations.
                for a, b in _MSP_PAIR_RE.findall(re.sub(r'"[^"]*"', " ", line)):
                    tokens.append(a)
                    tokens.append(b)
                continue
            key, sep, value = line.partition(":")
            if not sep:
                continue
            nkey = _norm_key(key)
            if in_peaks:  # a key line right after peaks without a blank line: a new record begins
                yield from finish()
                fields, tokens, in_peaks, declared = {}, [], False, -1
            if not fields:
                entry += 1
                start_line = line_no
            if nkey == "NUMPEAKS":
                in_peaks = True
                try:
                    declared = int(value.strip())
                except ValueError:
                    declared = -1
                continue
            fields.setdefault(nkey, value.strip())
        yield from finish()


def read_gnps_json(path: Path, report: ReadReport) -> Iterator[RawSpectrum]:
    """Entries of a GNPS library JSON export (a list of objects with ``peaks_json``)."""
    src = str(path)
    with _open_text(path) as handle:
        try:
            records = json.load(handle)
        except json.JSONDecodeError as err:
            raise InputError(f"not valid JSON ({err})", file=src, fix="export the library again from GNPS") from err
    if isinstance(records, dict):
        records = records.get("spectra", [records])
    for entry, rec in enumerate(records, 1):
        if not isinstance(rec, dict):
            report.skip(src, entry, entry, "entry is not a JSON object")
            continue
        peaks = rec.get("peaks_json", rec.get("peaks"))
        try:
            if isinstance(peaks, str):
                peaks = json.loads(peaks)
            arr = np.asarray(peaks, dtype=np.float64).reshape(-1, 2) if peaks else np.zeros((0, 2))
        except (ValueError, TypeError):
            report.skip(src, entry, entry, "unreadable peaks_json")
            continue
        fields = {_norm_key(k): str(v) for k, v in rec.items() if isinstance(v, (str, int, float))}
        report.n_read += 1
        yield RawSpectrum(fields, arr[:, 0].copy(), arr[:, 1].copy(), src, entry, entry)


def read_library_file(path: str | os.PathLike, report: ReadReport | None = None) -> Iterator[RawSpectrum]:
    """Entries of one library file, whatever its format (by extension, ``.gz`` allowed)."""
    path = Path(path)
    if not path.is_file():
        raise InputError("library file not found", file=str(path), fix="set 'library' in config to an existing file")
    report = report if report is not None else ReadReport()
    reader = {"mgf": read_mgf, "msp": read_msp, "json": read_gnps_json}[_format_of(path)]
    yield from reader(path, report)


# ------------------------------------------------------------------------------------------ metadata


def _first(fields: dict[str, str], field_name: str) -> str | None:
    for key in _KEY_ALIASES[field_name]:
        value = fields.get(key)
        if value is not None and value.strip().upper() not in _MISSING:
            return value.strip()
    return None


def _parse_float(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        value = float(text.split()[0])  # PEPMASS may carry "mz intensity"
    except (ValueError, IndexError):
        return None
    return value if math.isfinite(value) and value > 0 else None


def _parse_charge(text: str | None) -> int | None:
    if not text:
        return None
    m = re.match(r"^\s*([+-]?)(\d+)([+-]?)", text)
    if not m:
        return None
    sign = -1 if "-" in (m.group(1) + m.group(3)) else 1
    return sign * int(m.group(2))


def _ion_mode(fields: dict[str, str], adduct: str | None, charge: int | None) -> str | None:
    text = (_first(fields, "ion_mode") or "").lower()
    if text.startswith("pos") or text == "p" or text == "+":
        return "positive"
    if text.startswith("neg") or text == "n" or text == "-":
        return "negative"
    # Fall back on the adduct's trailing sign, then on the charge sign.
    if adduct:
        tail = adduct.rstrip()[-1:]
        if tail == "+":
            return "positive"
        if tail == "-":
            return "negative"
    if charge:
        return "positive" if charge > 0 else "negative"
    return None


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text)


def _metadata_row(raw: RawSpectrum, precursor_mz: float, n_peaks: int) -> dict[str, Any]:
    f = raw.fields
    adduct = _first(f, "adduct")
    charge = _parse_charge(_first(f, "charge"))
    inchikey = _first(f, "inchikey")
    if inchikey is not None and not _INCHIKEY_RE.match(inchikey):
        inchikey = None  # INCHIAUX and friends sometimes hold free text
    library_id = _first(f, "library_id") or f"{Path(raw.source_file).name}:{raw.entry}"
    return {
        "library_id": library_id,
        "name": _first(f, "name"),
        "inchikey": inchikey,
        "smiles": _first(f, "smiles"),
        "formula": _first(f, "formula"),
        "adduct": adduct,
        "ion_mode": _ion_mode(f, adduct, charge),
        "license": _first(f, "license"),
        "precursor_mz": precursor_mz,
        "charge": charge,
        "compound_class": _first(f, "compound_class"),
        "instrument_type": _first(f, "instrument_type"),
        "collision_energy": _first(f, "collision_energy"),
        "source_file": Path(raw.source_file).name,
        "source_entry": raw.entry,
        "n_peaks": n_peaks,
    }


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


def build_library(
    spectra: Iterable[RawSpectrum], params: dict | None = None, report: ReadReport | None = None
) -> BuiltLibrary:
    """Clean, order (ion mode, precursor m/z) and flatten library entries."""
    p = merge_params(params)
    report = report if report is not None else ReadReport()
    rows: list[dict[str, Any]] = []
    mzs: list[np.ndarray] = []
    ints: list[np.ndarray] = []
    n_empty = 0
    for raw in spectra:
        precursor = _parse_float(_first(raw.fields, "precursor_mz"))
        if precursor is None:
            report.skip(raw.source_file, raw.entry, raw.line, "no valid precursor m/z")
            continue
        mz, inten = clean_peaks(raw.mz, raw.intensity, precursor, **p["cleaning"])
        if mz.size == 0 and not p["keep_empty"]:
            n_empty += 1
            continue
        rows.append(_metadata_row(raw, precursor, int(mz.size)))
        mzs.append(mz)
        ints.append(inten)
    metadata = pl.DataFrame(rows, schema=METADATA) if rows else pl.DataFrame(schema=METADATA)
    n = metadata.height
    precursor = metadata["precursor_mz"].to_numpy().astype(np.float64) if n else np.zeros(0)
    mode = np.array([ION_MODE_CODE.get(m, 0) for m in metadata["ion_mode"].to_list()], dtype=np.int8)
    # Order by ion mode block, then precursor: each mode is one sorted run for binary search.
    order = np.lexsort((precursor, mode)) if n else np.zeros(0, dtype=np.int64)
    counts = np.array([mzs[i].size for i in order], dtype=np.int64)
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    flat_mz = np.concatenate([mzs[i] for i in order]) if n else np.zeros(0, dtype=np.float64)
    flat_int = np.concatenate([ints[i] for i in order]) if n else np.zeros(0, dtype=np.float32)
    metadata = metadata[order.tolist()] if n else metadata
    # Library ids must be unique (they key annotations); repeated ids get "#k" suffixes.
    ids = metadata["library_id"].to_list()
    seen: dict[str, int] = {}
    for i, lid in enumerate(ids):
        k = seen.get(lid, 0)
        if k:
            ids[i] = f"{lid}#{k + 1}"
        seen[lid] = k + 1
    metadata = metadata.with_columns(pl.Series("library_id", ids, dtype=pl.Utf8))
    return BuiltLibrary(
        metadata=metadata,
        precursor_mz=precursor[order].astype(np.float64),
        ion_mode=mode[order],
        offsets=offsets,
        mz=flat_mz.astype(np.float64),
        intensity=flat_int.astype(np.float32),
        report=report,
        n_empty=n_empty,
    )


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


def index_library(
    paths: list[str | os.PathLike] | str | os.PathLike,
    out_dir: str | os.PathLike,
    params: dict | None = None,
) -> LibraryIndex:
    """Read, clean and index library files into ``out_dir`` (always rebuilds); returns the loaded index."""
    paths = [Path(paths)] if isinstance(paths, (str, os.PathLike)) else [Path(p) for p in paths]
    if not paths:
        raise InputError("no library file given", fix="set 'library' in config to a file or a list of files")
    p = merge_params(params)
    t0 = time.perf_counter()
    report = ReadReport()
    spectra = (raw for path in paths for raw in read_library_file(path, report))
    built = build_library(spectra, p, report)
    reasons: dict[str, int] = {}
    for _, _, _, reason in report.skipped:
        reasons[reason] = reasons.get(reason, 0) + 1
    manifest = {
        "format_version": INDEX_FORMAT_VERSION,
        "sources": [_fingerprint(path) for path in paths],
        "params": p,
        "n_spectra": int(built.metadata.height),
        "n_entries_read": report.n_read,
        "n_skipped": len(report.skipped),
        "skipped_by_reason": reasons,
        "skipped_first": [
            {"file": Path(f).name, "entry": e, "line": ln, "reason": r} for f, e, ln, r in report.skipped[:100]
        ],
        "n_empty_after_cleaning": built.n_empty,
        "build_seconds": round(time.perf_counter() - t0, 3),
    }
    write_library_index(built, out_dir, manifest)
    log.info(
        "library index %s: %d spectra from %d entries (%d malformed skipped, %d empty after cleaning) in %.1f s",
        out_dir, built.metadata.height, report.n_read, len(report.skipped), built.n_empty, manifest["build_seconds"],
    )
    return load_library_index(out_dir)


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


# ---------------------------------------------------------------------------------------------- CLI


def _cli_index(args: argparse.Namespace) -> int:
    from ms2study.cli import load_params

    index = index_library(args.library, args.out, load_params(args))
    m = index.manifest
    print(
        f"{args.out}: {m['n_spectra']} spectra indexed, {m['n_skipped']} malformed entries skipped, "
        f"{m['n_empty_after_cleaning']} empty after cleaning"
    )
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    from ms2study.cli import add_params_argument

    p = subparsers.add_parser("index-library", help="read MGF/MSP/GNPS-JSON libraries into one cached index folder")
    p.add_argument("--library", nargs="+", required=True, help="library file(s): .mgf, .msp, GNPS .json (.gz allowed)")
    p.add_argument("--out", required=True, help="index folder, e.g. results/library/{name}/")
    add_params_argument(p)
    p.set_defaults(func=_cli_index)
