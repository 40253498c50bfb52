"""How a measured spectrum differs from a library record in its precursor m/z.

A library record's precursor is the ion's exact m/z; a sample's is measured and carries the instrument's error
(about 1-3 ppm on an Orbitrap, 5-15 ppm on a QTOF). Everything that learns from library spectra searched as queries
(the encoder's training views and validation, the combined score, the confidence calibration) gives its queries
such an error, or what it learns holds for exact precursors only: ms2study-encoder-v2, trained without it, moved a
spectrum's embedding to a median cosine of 0.89 of itself for a 3 ppm error (600 MassBank spectra), so every
measured spectrum looked less like its own compound's library spectra than the calibration assumed.
Imports numpy only.
"""

from __future__ import annotations

import numpy as np

# A precursor tolerance is commonly set to 3-4 standard deviations of the instrument's mass error; the error given
# to calibration queries is the ppm tolerance divided by this.
TOLERANCE_PER_SD = 4.0


def measured_precursor(precursor_mz: float | np.ndarray, error_ppm: float,
                       rng: np.random.Generator) -> float | np.ndarray:
    """``precursor_mz`` (Da; scalar or array) as an instrument would measure it: each value times 1 + e * 1e-6 with
    e ~ N(0, ``error_ppm``^2) drawn independently; unchanged when ``error_ppm`` is 0. Returns a float for a scalar,
    else a float64 array of the same shape. Raises ValueError for a negative ``error_ppm``."""
    if error_ppm < 0:
        raise ValueError(f"error_ppm must be >= 0, got {error_ppm}")
    values = np.asarray(precursor_mz, dtype=np.float64)
    error = rng.normal(0.0, error_ppm, values.shape) if error_ppm > 0 else np.zeros(values.shape)
    out = values * (1.0 + error * 1e-6)
    return float(out) if out.ndim == 0 else out


def error_sd_for_tolerance(tolerance_ppm: float | None) -> float:
    """The precursor error (sd, ppm) given to library spectra searched as queries under a search tolerance of
    ``tolerance_ppm`` (``tolerance_ppm / TOLERANCE_PER_SD``); 0 without a ppm tolerance."""
    return float(tolerance_ppm) / TOLERANCE_PER_SD if tolerance_ppm else 0.0


def nominal_precursor(precursor_mz: float | np.ndarray) -> np.ndarray:
    """Whether each precursor m/z (Da) is a whole number, as unit-resolution records give it (e.g. MassBank records
    of older instruments, "146.0"): an accurate m/z is a whole number to 1e-6 Da about once in a million. Shape as
    the input, bool. Such a query gets no q-value (``identification.engine``); such library spectra are counted in
    the index manifest (``library.index``)."""
    mz = np.asarray(precursor_mz, dtype=np.float64)
    return (mz > 0) & (np.abs(mz - np.round(mz)) < 1e-6)


def recalibrated(mz: float | np.ndarray, offset_ppm: float) -> np.ndarray:
    """``mz`` (any shape) with a calibration offset of ``offset_ppm`` removed: mz / (1 + offset_ppm x 1e-6), the
    inverse of an error measured as (measured - true) / true x 1e6. Used for a run's offset against the study
    (``correction.mzoffset``, the link stage) and against the library (``identification.recalibration``)."""
    return np.asarray(mz, dtype=np.float64) / (1.0 + offset_ppm * 1e-6)
