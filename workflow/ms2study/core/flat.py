"""Spectra as flat arrays: the ``FlatSpectra`` type that queries, library peaks and the numba kernels share.

A set of n spectra is stored CSR-style: ``offsets`` (n + 1 int64) cut the concatenated peak arrays ``mz``
(float64, Da) and ``intensity`` (float32) into spectra, so spectrum i has peaks ``offsets[i]:offsets[i + 1]``.
Per-spectrum arrays (``precursor_mz``, ``ion_mode``, ``rows``) have n entries. The helpers here build, subset
and index such sets. This module belongs to the bottom layer (core) and imports only numpy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


def offsets_from_counts(counts: Sequence[int] | np.ndarray) -> np.ndarray:
    """CSR offsets (n + 1 int64, starting at 0) of n consecutive blocks of ``counts[i]`` items each."""
    counts = np.asarray(counts, dtype=np.int64)
    offsets = np.zeros(counts.size + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    return offsets


def owner_of(offsets: np.ndarray) -> np.ndarray:
    """Block number of every item of a CSR layout: ``offsets`` (n + 1) -> int64 array of ``offsets[-1]`` entries.

    Used for candidate pairs (the query each pair belongs to) as well as for peaks (the spectrum of each peak).
    """
    offsets = np.asarray(offsets)
    return np.repeat(np.arange(offsets.size - 1, dtype=np.int64), np.diff(offsets))


@dataclass
class FlatSpectra:
    """Query spectra as flat arrays (see ms2study.kernels); row i of ``ids`` is spectrum i."""

    offsets: np.ndarray
    mz: np.ndarray
    intensity: np.ndarray
    precursor_mz: np.ndarray
    ion_mode: np.ndarray
    rows: np.ndarray          # row numbers in the input frame

    @classmethod
    def from_lists(cls, mz_lists: Sequence[np.ndarray], intensity_lists: Sequence[np.ndarray],
                   precursor_mz: Sequence[float] | np.ndarray, ion_mode: Sequence[int] | np.ndarray,
                   rows: Sequence[int] | np.ndarray) -> FlatSpectra:
        """Flat spectra from one peak array pair per spectrum.

        ``mz_lists[i]`` (Da) and ``intensity_lists[i]`` are the peaks of spectrum i; m/z is stored as float64,
        intensity as float32, precursor m/z as float64, ion-mode codes as int8 and rows as int64. An empty
        input gives a set of zero spectra with ``offsets == [0]``.
        """
        mzs = [np.asarray(m, dtype=np.float64) for m in mz_lists]
        ints = [np.asarray(x, dtype=np.float32) for x in intensity_lists]
        if len(mzs) != len(ints):
            raise ValueError(f"{len(mzs)} m/z arrays but {len(ints)} intensity arrays")
        return cls(
            offsets=offsets_from_counts([m.size for m in mzs]),
            mz=np.concatenate(mzs) if mzs else np.zeros(0, dtype=np.float64),
            intensity=np.concatenate(ints) if ints else np.zeros(0, dtype=np.float32),
            precursor_mz=np.asarray(precursor_mz, dtype=np.float64),
            ion_mode=np.asarray(ion_mode, dtype=np.int8),
            rows=np.asarray(rows, dtype=np.int64),
        )

    @classmethod
    def whole(cls, offsets: np.ndarray, mz: np.ndarray, intensity: np.ndarray, precursor_mz: np.ndarray,
              ion_mode: np.ndarray) -> FlatSpectra:
        """Every spectrum of a flat set (a library index, a built library) with ``rows`` = 0..n-1.

        The arrays are used as they are (no copy, no dtype change), so memory-mapped arrays stay mapped.
        """
        return cls(offsets, mz, intensity, precursor_mz, ion_mode, np.arange(np.asarray(offsets).size - 1,
                                                                              dtype=np.int64))

    @property
    def n_spectra(self) -> int:
        """Number of spectra (``offsets.size - 1``)."""
        return int(self.offsets.size) - 1

    @property
    def n_peaks(self) -> np.ndarray:
        """Peaks per spectrum (int64, n entries)."""
        return np.diff(self.offsets)

    def peaks(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """(m/z, intensity) views of spectrum ``i``."""
        a, b = int(self.offsets[i]), int(self.offsets[i + 1])
        return self.mz[a:b], self.intensity[a:b]

    def take(self, sel: np.ndarray) -> FlatSpectra:
        """The spectra at positions ``sel`` (in that order) as a new set; ``rows`` follow the selection."""
        sel = np.asarray(sel, dtype=np.int64)
        offsets = offsets_from_counts(np.diff(self.offsets)[sel])
        idx = (np.concatenate([np.arange(self.offsets[i], self.offsets[i + 1]) for i in sel])
               if sel.size else np.zeros(0, int))
        return FlatSpectra(offsets, self.mz[idx], self.intensity[idx], self.precursor_mz[sel],
                           self.ion_mode[sel], self.rows[sel])
