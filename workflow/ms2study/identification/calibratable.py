"""Before any job: can a small library calibrate identification confidence at all?

The calibrate stage measures q-values against the library's own wrong candidates (``identification.calibration``):
leave-structure-out searches of its spectra need records of another structure, in the same ion mode, within
``WIDE_WINDOW_DA`` of each query's precursor. A lab library of two records had none: detection, spectra, embedding,
linking and correction all ran, then the calibrate job stopped ("no leave-structure-out search found a wrong
candidate"; a trial). ``calibration_problem`` reads a small library (all files together under ``SMALL_LIBRARY_BYTES``:
a broad reference library always has such records, and reading it would cost a minute) exactly as the index job will
(``library.build.build_library``: cleaning, InChIKeys from SMILES) and says why it cannot calibrate. Imports
``core``, ``io``, ``library.build`` and ``identification.confidence`` (its window).
"""

from __future__ import annotations

import itertools
import logging
from pathlib import Path

import numpy as np

from ms2study.core.errors import InputError
from ms2study.identification.confidence import WIDE_WINDOW_DA
from ms2study.io.entries import ReadReport
from ms2study.io.formats import read_library_file
from ms2study.library.build import build_library

SMALL_LIBRARY_BYTES = 1_000_000  # ~300-1,000 records; a library that cannot calibrate has a few dozen


def calibration_problem(paths: list[Path], cleaning: dict | None = None) -> str | None:
    """Why the libraries at ``paths`` (together) cannot calibrate confidence, or None when they can or are too large
    to read here (``SMALL_LIBRARY_BYTES``): no record with both a structure (InChIKey or SMILES) and an ion mode, or
    no two such records of different structures in one ion mode within ``WIDE_WINDOW_DA`` of each other."""
    if not paths or sum(Path(p).stat().st_size for p in paths) > SMALL_LIBRARY_BYTES:
        return None
    # the index job logs the reading, each skipped record and the counts; here they would come before any job, and
    # a trial read this check's partial count ("library : 0 entries, 325 used") beside the index job's
    quiet = logging.getLogger("ms2study")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    report = ReadReport()
    try:
        built = build_library(itertools.chain.from_iterable(read_library_file(p, report) for p in paths),
                              {"cleaning": cleaning} if cleaning else None, report=report)
    finally:
        quiet.setLevel(level)
    meta = built.metadata
    keys = meta["inchikey"].str.slice(0, 14).to_list()
    modes = meta["ion_mode"].to_list()
    mz = meta["precursor_mz"].to_numpy()
    usable = [i for i in range(meta.height) if keys[i] and modes[i]]
    if not usable:
        return (f"none of its {meta.height} usable record(s) has both a structure (InChIKey or SMILES) and an ion "
                "mode")
    for mode in {modes[i] for i in usable}:
        rows = [i for i in usable if modes[i] == mode]
        values = mz[rows]
        for i in rows:
            if any(keys[rows[j]] != keys[i] for j in np.flatnonzero(np.abs(values - mz[i]) <= WIDE_WINDOW_DA)):
                return None
    structures = len({keys[i] for i in usable})
    return (f"its {len(usable)} record(s) with a structure and an ion mode ({structures} structure(s)) have no record "
            f"of another structure within {WIDE_WINDOW_DA:g} Da in the same ion mode, so no wrong candidate to measure "
            "confidence against")


def refuse_uncalibratable(paths: list[Path], config: dict, source: str = "config.yaml") -> None:
    """Raise InputError (naming ``source``, the study's config.yaml) when ``annotate: confidence`` is null_model and
    ``calibration_problem`` finds the library cannot calibrate it; the fix names both ways out."""
    if ((config.get("annotate") or {}).get("confidence") or "null_model") != "null_model":
        return
    problem = calibration_problem(paths, config.get("cleaning"))
    if problem:
        names = ", ".join(Path(p).name for p in paths)
        raise InputError(f"the library ({names}) cannot calibrate identification confidence: {problem}", file=source,
                         fix="list a broad reference library beside it (e.g. MassBank's MGF or MSP export) under "
                             "'library' in config.yaml, or set annotate: confidence: none (names without q-values)")
