"""Library arrays that depend only on the library and the search parameters, prepared once per library.

An annotate job searches one sample against the whole library. What it needs from the library beyond the cleaned
peaks is the same for every sample: the entropy-prepared peaks (noise removed, close peaks merged, intensities
entropy-weighted; Li et al. 2021, Nat. Methods 18:1524) and, for the legacy target-decoy confidence, the
random-fragment decoy spectra and their entropy-prepared peaks. ``prepare_index`` computes them once (the
``index_library`` rule runs it through ``ms2study prepare-library``, which also compiles the numba kernels before
the annotate jobs fan out) and stores them in the index folder under ``prepared/``, one subfolder per parameter
set, so annotate jobs only load them. A job whose parameters were not prepared computes them itself and says so in
its log. Imports core, kernels and library.index.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

import numpy as np

from ms2study.core.atomic import write_text
from ms2study.kernels.entropy import prepare_entropy_peaks
from ms2study.library.index import LibraryIndex, load_library_index, save_npy

log = logging.getLogger(__name__)

PREPARED_DIR = "prepared"
ARRAYS = ("offsets", "mz", "intensity")


def entropy_merge_da(tolerance_da: float, merge_da: float | None) -> float:
    """Centroiding distance of the entropy preparation: ``merge_da``, or 2 x the matching tolerance (ms_entropy)."""
    return float(merge_da) if merge_da is not None else 2.0 * float(tolerance_da)


def _key(kind: str, **params: float | int | None) -> str:
    text = json.dumps({"kind": kind, **params}, sort_keys=True)
    return f"{kind}-{hashlib.sha256(text.encode()).hexdigest()[:12]}"


def _entropy_key(noise_threshold: float, merge_da: float, decoys: tuple[int, float] | None) -> str:
    """The folder name of one entropy-prepared array set: the same for the rule that stores it and the job that
    loads it."""
    return _key("entropy", noise=float(noise_threshold), merge_da=float(merge_da),
                decoy_seed=None if decoys is None else int(decoys[0]),
                decoy_margin=None if decoys is None else float(decoys[1]))


def entropy_peaks(offsets: np.ndarray, mz: np.ndarray, intensity: np.ndarray, noise_threshold: float,
                  merge_da: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Entropy-prepared, weighted peaks of flat spectra: (offsets int64 n + 1, m/z float64, intensity float32)."""
    return prepare_entropy_peaks(np.asarray(offsets), np.asarray(mz), np.asarray(intensity),
                                 float(noise_threshold), float(merge_da), True)


def decoy_peaks(
    offsets: np.ndarray, mz: np.ndarray, intensity: np.ndarray, precursor_mz: np.ndarray, ion_mode: np.ndarray,
    seed: int = 0, margin_da: float = 1.6,
) -> tuple[np.ndarray, np.ndarray]:
    """Random-fragment decoy peaks (m/z float64, intensity float32) aligned with ``offsets``.

    Decoy ``i`` keeps spectrum ``i``'s peak count and intensity profile; its fragment m/z are drawn (seeded) from
    the pooled fragment m/z of all library spectra of the same ion mode below its precursor minus ``margin_da``
    (the "naive" random-fragment decoys of Scheubert et al., Nat. Commun. 2017; see
    ``ms2study.identification.decoys``). The library must be sorted by ion mode.
    """
    offsets = np.asarray(offsets, dtype=np.int64)
    mz = np.asarray(mz, dtype=np.float64)
    intensity = np.asarray(intensity, dtype=np.float32)
    precursor_mz = np.asarray(precursor_mz, dtype=np.float64)
    # Imported here: an annotate job loads the decoys the library stage stored and never draws any.
    from ms2study.kernels.peaks import random_fragment_decoys

    ion_mode = np.asarray(ion_mode)
    out_mz = np.empty_like(mz)
    out_int = np.empty_like(intensity)
    for k, code in enumerate((-1, 0, 1)):
        rows = np.flatnonzero(ion_mode == code)
        if rows.size == 0:
            continue
        lo, hi = int(rows[0]), int(rows[-1]) + 1  # the library is sorted by ion mode: a contiguous block
        a, b = int(offsets[lo]), int(offsets[hi])
        pool = np.sort(mz[a:b])
        d_mz, d_int = random_fragment_decoys(
            offsets[lo:hi + 1] - a, intensity[a:b], precursor_mz[lo:hi], pool, float(margin_da), int(seed) + k
        )
        out_mz[a:b] = d_mz
        out_int[a:b] = d_int
    return out_mz, out_int


def cleaning_margin_da(index: LibraryIndex) -> float:
    """The precursor margin (Da) the index was cleaned with; decoy fragments stay below precursor minus it."""
    return float(index.manifest.get("params", {}).get("cleaning", {}).get("precursor_margin_da", 1.6) or 0.0)


def _save(folder: Path, arrays: dict[str, np.ndarray], record: dict) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, array in arrays.items():
        save_npy(np.ascontiguousarray(array), folder / f"{name}.npy")
    # written last: a folder without it (an interrupted job) is never read
    write_text(json.dumps(record, indent=2) + "\n", folder / "prepared.json")


def _load(folder: Path, names: tuple[str, ...]) -> dict[str, np.ndarray] | None:
    if not (folder / "prepared.json").is_file():
        return None
    return {name: np.load(folder / f"{name}.npy", mmap_mode="r") for name in names}


def load_entropy(index: LibraryIndex, noise_threshold: float, merge_da: float, decoys: tuple[int, float] | None = None
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Stored entropy-prepared peaks of the index (or of its decoys, ``decoys=(seed, margin_da)``), or None."""
    if index.path is None:
        return None
    got = _load(Path(index.path) / PREPARED_DIR / _entropy_key(noise_threshold, merge_da, decoys), ARRAYS)
    return None if got is None else (got["offsets"], got["mz"], got["intensity"])


def load_decoys(index: LibraryIndex, seed: int, margin_da: float) -> tuple[np.ndarray, np.ndarray] | None:
    """Stored decoy peaks (m/z, intensity) of the index for ``seed`` and ``margin_da``, or None."""
    if index.path is None:
        return None
    got = _load(Path(index.path) / PREPARED_DIR / _key("decoys", seed=int(seed), margin=float(margin_da)),
                ("mz", "intensity"))
    return None if got is None else (got["mz"], got["intensity"])


def prepare_for_params(index_dir: str | os.PathLike, p: dict) -> list[Path]:
    """``prepare_index`` for annotate parameters ``p`` (merged): their entropy noise threshold and merge distance,
    and the decoys of ``decoy_seed`` when ``confidence`` is decoys: what annotate then loads. Returns the folders
    written."""
    return prepare_index(index_dir, float(p["entropy_noise_threshold"]),
                         entropy_merge_da(p["entropy_tolerance_da"], p["entropy_merge_da"]),
                         int(p["decoy_seed"]) if p["confidence"] == "decoys" else None)


def prepare_index(index_dir: str | os.PathLike, noise_threshold: float, merge_da: float,
                  decoy_seed: int | None = None) -> list[Path]:
    """Compute and store the entropy-prepared peaks (and, with ``decoy_seed``, the decoys and theirs).

    Returns the folders written under ``index_dir/prepared``. Folders already complete are kept. Raises
    InputError (from ``load_library_index``) when ``index_dir`` is not a library index.
    """
    index = load_library_index(index_dir)
    root = Path(index_dir) / PREPARED_DIR
    written = []
    decoy_sets = [None]
    if decoy_seed is not None:
        margin = cleaning_margin_da(index)
        d_folder = root / _key("decoys", seed=int(decoy_seed), margin=margin)
        if _load(d_folder, ("mz", "intensity")) is None:
            d_mz, d_int = decoy_peaks(index.offsets, index.mz, index.intensity, index.precursor_mz, index.ion_mode,
                                      seed=int(decoy_seed), margin_da=margin)
            _save(d_folder, {"mz": d_mz, "intensity": d_int}, {"kind": "decoys", "seed": int(decoy_seed),
                                                                "margin_da": margin})
            written.append(d_folder)
        decoy_sets.append((int(decoy_seed), margin))
    for decoys in decoy_sets:
        folder = root / _entropy_key(noise_threshold, merge_da, decoys)
        if _load(folder, ARRAYS) is not None:
            continue
        if decoys is None:
            mz, inten = index.mz, index.intensity
        else:
            mz, inten = load_decoys(index, *decoys)
        off, e_mz, e_int = entropy_peaks(index.offsets, mz, inten, noise_threshold, merge_da)
        _save(folder, {"offsets": off, "mz": e_mz, "intensity": e_int},
              {"kind": "entropy", "noise_threshold": float(noise_threshold), "merge_da": float(merge_da),
               "decoys": None if decoys is None else {"seed": decoys[0], "margin_da": decoys[1]},
               "n_spectra": len(index)})
        written.append(folder)
    return written
