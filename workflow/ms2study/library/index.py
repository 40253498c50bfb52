"""The on-disk library index: one folder of flat arrays, a metadata table and a manifest, built once and reused.

A library is read once (ms2study.io.formats), built into flat arrays (ms2study.library.build: all peaks
concatenated, float64 m/z and float32 intensity, per-spectrum offsets, ordered by ion mode and precursor m/z) and
written with its metadata (``metadata.parquet``, row ``i`` describes spectrum ``i``) into a folder
(``results/library/{name}/``) next to ``manifest.json``, which fingerprints the source files and the cleaning
parameters and records what was skipped, emptied or altered. ``ensure_library_index`` rebuilds only when either
changed, and ``load_library_index`` memory-maps the arrays, so reuse costs milliseconds. ``LibraryIndex`` is the
loaded (or in-memory) index; its ``spectra`` are a ``core.flat.FlatSpectra``. Embeddings per encoder model are
stored beside the arrays (ms2study.library.embeddings). Imports ms2study.core, ms2study.io and ms2study.library.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from ms2study.core.atomic import atomic_path, write_parquet, write_text
from ms2study.core.errors import InputError
from ms2study.core.flat import FlatSpectra
from ms2study.core.measurement import nominal_precursor
from ms2study.library.embeddings import read_embeddings, write_embeddings

if TYPE_CHECKING:
    from ms2study.io.entries import EntryIssue
    from ms2study.library.build import BuiltLibrary

log = logging.getLogger(__name__)

# Bump when the on-disk layout or the parsing rules change: old indexes are then rebuilt.
# 2: one reader for libraries and queries (MSP pair forms, ion mode from Ionization/signed CHARGE, invalid
#    peaks dropped and named, decimal-comma precursors, duplicate ids suffixed in file order).
# 3: precursor m/z rounded to 1-2 decimals replaced by the exact m/z of the record's formula and ion (library.adducts);
#    also the rules added since 2 without a bump (adducts read from the mass, InChIKeys from SMILES, huge
#    intensities rescaled).
INDEX_FORMAT_VERSION = 3

# The arrays of an index folder, one .npy file each.
ARRAYS = ("precursor_mz", "ion_mode", "offsets", "mz", "intensity")


@dataclass
class LibraryIndex:
    """A library index. Loaded from a folder, arrays are memory-mapped; row ``i`` of ``metadata`` is spectrum ``i``.

    An index built in memory (``from_built``) has ``path`` None and no stored embeddings.
    """

    metadata: pl.DataFrame
    precursor_mz: np.ndarray         # float64, sorted within each ion-mode block
    ion_mode: np.ndarray             # int8: 1 positive, -1 negative, 0 unknown
    offsets: np.ndarray              # int64, len n+1
    mz: np.ndarray                   # float64, concatenated cleaned peaks
    intensity: np.ndarray            # float32
    manifest: dict = field(default_factory=dict)
    path: Path | None = None         # the index folder; None for an index held in memory only

    @classmethod
    def from_built(cls, built: BuiltLibrary, manifest: dict | None = None) -> LibraryIndex:
        """An in-memory index of a ``BuiltLibrary`` (no folder: ``path`` None, arrays shared, not copied)."""
        return cls(metadata=built.metadata, precursor_mz=built.precursor_mz, ion_mode=built.ion_mode,
                   offsets=built.offsets, mz=built.mz, intensity=built.intensity, manifest=manifest or {})

    def __len__(self) -> int:
        return int(self.precursor_mz.shape[0])

    @property
    def spectra(self) -> FlatSpectra:
        """All spectra as ``FlatSpectra`` (``rows`` = 0..n-1; the arrays themselves, still memory-mapped)."""
        return FlatSpectra.whole(self.offsets, self.mz, self.intensity, self.precursor_mz, self.ion_mode)

    def peaks(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Cleaned peaks of spectrum ``i``."""
        a, b = int(self.offsets[i]), int(self.offsets[i + 1])
        return self.mz[a:b], self.intensity[a:b]

    def embeddings(self, model_id: str) -> np.ndarray | None:
        """Library embeddings for ``model_id`` (rows aligned with spectra), or None if not computed yet (always
        None for an index held in memory only)."""
        return read_embeddings(self.path, model_id) if self.path is not None else None


def as_paths(paths: list[str | os.PathLike] | str | os.PathLike) -> list[Path]:
    """One path or a list of paths as a list of ``Path`` (the library files of an index, in the order given)."""
    return [Path(paths)] if isinstance(paths, (str, os.PathLike)) else [Path(p) for p in paths]


def index_library(
    paths: list[str | os.PathLike] | str | os.PathLike,
    out_dir: str | os.PathLike,
    params: dict | None = None,
) -> LibraryIndex:
    """Read, clean and index library files into ``out_dir`` (always rebuilds); returns the loaded index.

    Raises InputError when no file is given, a file is missing / of unknown format / unreadable, or when
    no usable spectrum remains (nothing is written then). The manifest records the counts, the first 100
    skipped, emptied and altered entries (file, entry, line, identifier, reason, detail) and notes on whole
    files (``file_notes``: e.g. read as Windows-1252 because not UTF-8).
    """
    # The readers and the builder are imported here: a job that only loads an index (annotate, once per sample)
    # would otherwise compile and import them for nothing.
    from ms2study.io.entries import ALTERED, SKIPPED, ReadReport, nothing_usable
    from ms2study.io.formats import read_library_file
    from ms2study.library.build import build_library, merge_params

    paths = as_paths(paths)
    if not paths:
        raise InputError("no library file given", fix="set 'library' in config to a file or a list of files")
    p = merge_params(params)
    t0 = time.perf_counter()
    report = ReadReport()
    spectra = (raw for path in paths for raw in read_library_file(path, report))
    built = build_library(spectra, p, report)
    if built.metadata.height == 0:
        raise nothing_usable(report, paths)

    # unit-resolution records ("146.0"): an accurate query precursor lies outside a ppm window of a whole number,
    # so they are hardly ever candidates; a query of whole-number precursor gets no q-value (identification.engine)
    prec = np.asarray(built.precursor_mz, dtype=np.float64)
    whole = np.flatnonzero(nominal_precursor(prec))
    whole_ids = built.metadata["library_id"].gather(whole[:10]).to_list() if whole.size else []
    if whole.size:
        log.warning("library: %d of %d spectra have a whole-number precursor m/z (unit resolution, e.g. %s): a query "
                    "measured at accurate mass hardly ever falls within the precursor window of a whole number, so "
                    "they are seldom candidates", whole.size, prec.size, ", ".join(whole_ids[:5]))

    def first(issues: list[EntryIssue]) -> list[dict[str, Any]]:
        return [{"file": Path(i.file).name, "entry": i.entry, "line": i.line, "identifier": i.identifier,
                 "reason": i.reason, "detail": i.detail, **({"name": i.name} if i.name else {})} for i in issues[:100]]

    manifest = {
        "format_version": INDEX_FORMAT_VERSION,
        "sources": [fingerprint(path) for path in paths],
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
        "n_name_as_structure": report.n_name_as_structure,
        "n_whole_number_precursor": int(whole.size),
        "whole_number_precursor_first": whole_ids,
        "n_rounded_precursor": len(built.rounded_precursor_ids),
        "rounded_precursor_first": built.rounded_precursor_ids[:10],
        "file_notes": [{"file": Path(file).name, "note": note} for file, note in report.file_notes],
        "build_seconds": round(time.perf_counter() - t0, 3),
    }
    write_library_index(built, out_dir, manifest)
    log.info(
        "library index %s: %d spectra from %d entries (%d skipped, %d empty after cleaning, %d altered) in %.1f s",
        out_dir, built.metadata.height, report.n_entries, report.n_skipped, built.n_empty, report.n_altered,
        manifest["build_seconds"],
    )
    return load_library_index(out_dir)


def fingerprint(path: Path) -> dict[str, Any]:
    """Resolved path, size in bytes and SHA-256 of a source file, as the manifest records them."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return {"path": str(path.resolve()), "size": path.stat().st_size, "sha256": digest.hexdigest()}


def save_npy(array: np.ndarray, path: Path) -> None:
    """Write ``array`` to ``path`` (``.npy``) atomically."""
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.save(handle, array)


def write_library_index(built: BuiltLibrary, out_dir: str | os.PathLike, manifest: dict) -> Path:
    """Write arrays, metadata and (last, so it marks completeness) the manifest into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name in ARRAYS:
        save_npy(getattr(built, name), out / f"{name}.npy")
    write_parquet(built.metadata, out / "metadata.parquet")
    write_text(json.dumps(manifest, indent=2) + "\n", out / "manifest.json")
    return out


def index_is_current(paths: list[str | os.PathLike], out_dir: str | os.PathLike, params: dict | None = None) -> bool:
    """True when ``out_dir`` holds a complete index of exactly these files (same content) and parameters."""
    from ms2study.library.build import merge_params

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
        if src.get("sha256") != fingerprint(path)["sha256"]:
            return False
    return True


def ensure_library_index(
    paths: list[str | os.PathLike] | str | os.PathLike,
    out_dir: str | os.PathLike,
    params: dict | None = None,
) -> LibraryIndex:
    """Load the index in ``out_dir``, rebuilding it first if the files or parameters changed."""
    paths = as_paths(paths)
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
    arrays = {name: np.load(path / f"{name}.npy", mmap_mode="r") for name in ARRAYS}
    return LibraryIndex(
        path=path,
        metadata=pl.read_parquet(path / "metadata.parquet"),
        manifest=json.loads(manifest_path.read_text()),
        **arrays,
    )


def save_library_embeddings(index_dir: str | os.PathLike, model_id: str, embeddings: np.ndarray) -> Path:
    """Store library embeddings (rows aligned with the index; L2-normalised here) for ``model_id``.

    Raises InputError when ``index_dir`` is not an index and ValueError when the rows do not match its spectra.
    """
    return write_embeddings(index_dir, model_id, embeddings, len(load_library_index(index_dir)))
