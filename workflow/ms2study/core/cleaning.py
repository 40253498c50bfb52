"""The one spectrum-cleaning function, used for sample spectra and library spectra alike.

Cleaning decides what the scores see, so queries and references must go through the same steps:
1. drop non-finite and non-positive peaks, sort by m/z, merge peaks with identical m/z (summed);
2. remove peaks at or above the precursor (minus ``precursor_margin_da``): they are unfragmented
   precursor or isolation-window contamination and carry no structural information;
3. drop peaks below ``min_relative_intensity`` of the base peak (electronic noise floor);
4. keep the ``max_peaks`` most intense peaks (returned again in m/z order).
Intensity weighting (a power) is a property of each score and is applied by the scorers, not here.
"""

from __future__ import annotations

import numpy as np


def clean_peaks(
    mz: np.ndarray,
    intensity: np.ndarray,
    precursor_mz: float | None = None,
    *,
    remove_precursor: bool = True,
    precursor_margin_da: float = 1.6,
    min_relative_intensity: float = 0.0,
    max_peaks: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Return cleaned ``(mz float64, intensity float32)`` in ascending m/z.

    >>> clean_peaks(np.array([50.0, 80.0, 80.0, 120.0]), np.array([1.0, 5.0, 5.0, 9.0]), 121.0)
    (array([50., 80.]), array([ 1., 10.], dtype=float32))
    """
    mz = np.asarray(mz, dtype=np.float64)
    intensity = np.asarray(intensity, dtype=np.float64)
    keep = np.isfinite(mz) & np.isfinite(intensity) & (intensity > 0) & (mz > 0)
    mz, intensity = mz[keep], intensity[keep]
    if mz.size:
        order = np.argsort(mz, kind="stable")
        mz, intensity = mz[order], intensity[order]
        if mz.size > 1 and np.any(np.diff(mz) == 0):
            mz, inverse = np.unique(mz, return_inverse=True)
            intensity = np.bincount(inverse, weights=intensity)
    if remove_precursor and precursor_mz is not None and np.isfinite(precursor_mz) and precursor_mz > 0:
        keep = mz < precursor_mz - precursor_margin_da
        mz, intensity = mz[keep], intensity[keep]
    if mz.size and min_relative_intensity > 0:
        keep = intensity >= min_relative_intensity * intensity.max()
        mz, intensity = mz[keep], intensity[keep]
    if max_peaks is not None and mz.size > max_peaks:
        top = np.sort(np.argsort(-intensity, kind="stable")[:max_peaks])
        mz, intensity = mz[top], intensity[top]
    out = intensity.astype(np.float32)
    # float32 can turn extreme intensities into inf or 0 (a spectrum of zeros would score 0/0 = NaN).
    ok = np.isfinite(out) & (out > 0)
    if not ok.all():
        mz, out = mz[ok], out[ok]
    return mz, out


CLEANING_KEYS = ("remove_precursor", "precursor_margin_da", "min_relative_intensity", "max_peaks")


def parse_cleaning(text: str | None) -> dict | None:
    """The config's ``cleaning`` section from a JSON object (a stage's ``--cleaning`` argument); None when absent.

    Raises InputError for invalid JSON, a value that is not an object, or a key ``clean_peaks`` does not take.
    """
    import json

    from ms2study.core.errors import InputError

    if text is None:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise InputError(f"--cleaning is not valid JSON ({err})", fix="pass the config's cleaning section") from err
    if not isinstance(value, dict):
        raise InputError("--cleaning must be a JSON object", fix="pass the config's cleaning section")
    unknown = sorted(set(value) - set(CLEANING_KEYS))
    if unknown:
        raise InputError(f"unknown cleaning parameter(s) {unknown}", fix=f"use only {list(CLEANING_KEYS)}")
    return value


# Parquet key-value metadata of a spectra table: the cleaning its peaks went through (JSON), so a later stage that
# would apply the same cleaning (annotate) does not clean them a second time.
CLEANING_METADATA_KEY = "ms2study:cleaning"
# Parquet key-value metadata of a spectra table (JSON, ``scan_notes``): fragment scans of MS levels other than the
# one searched ("unused_levels": {"3": count}) and scans left without a fragment peak ("no_fragment_peaks": emptied
# by the precursor removal, "no_peaks": empty as acquired), read by the report so that they are said at study level.
SCAN_NOTES_KEY = "ms2study:scan_notes"


def cleaning_metadata(cleaning: dict) -> dict[str, str]:
    """Parquet metadata recording ``cleaning`` (pass to ``core.atomic.write_parquet``)."""
    import json

    return {CLEANING_METADATA_KEY: json.dumps({k: cleaning[k] for k in CLEANING_KEYS}, sort_keys=True)}


def cleaning_of(path: str) -> dict | None:
    """The cleaning recorded in a spectra table's Parquet metadata (see ``cleaning_metadata``), or None."""
    import json

    import polars as pl

    text = pl.read_parquet_metadata(path).get(CLEANING_METADATA_KEY)
    return json.loads(text) if text else None
