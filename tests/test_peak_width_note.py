"""The report says when the runs' peaks are far wider or narrower than ``detect: chrom_fwhm_s`` (trial AE: at 5 s on
Q Exactive peaks of 1.6-3.3 s, same-m/z isomers 3.5-5 s apart were summed into one feature, unsaid)."""

from __future__ import annotations

import polars as pl

from ms2study.reporting.html import DOUBT, kind_of
from ms2study.reporting.runnotes import run_warnings
from ms2study.stages.qc import peak_fwhm_median


def _qc(widths: list[float | None]) -> pl.DataFrame:
    return pl.DataFrame({"sample_id": [f"S{i}" for i in range(len(widths))], "sample_type": ["sample"] * len(widths),
                         "peak_fwhm_median_s": widths}, schema_overrides={"peak_fwhm_median_s": pl.Float64})


def test_peaks_far_from_the_smoothing_width_are_said_with_the_value_to_set() -> None:
    warnings: list[str] = []
    run_warnings(_qc([14.0, 16.0, 15.0, None]), warnings, chrom_fwhm_s=3.0)  # HILIC-like peaks, UHPLC setting
    assert len(warnings) == 1 and kind_of(warnings[0]) == DOUBT  # shown, and printed at the end (AG)
    assert "median <b>15.0 s</b> wide at half height" in warnings[0] and "over 3 run(s)" in warnings[0]
    assert "cuts a broad peak into pieces" in warnings[0] and "near 15.0" in warnings[0]
    warnings = []
    run_warnings(_qc([1.5, 1.8]), warnings, chrom_fwhm_s=5.0)
    assert len(warnings) == 1 and "merges neighbouring peaks of one m/z" in warnings[0]
    for widths, setting in (([2.5, 3.2], 3.0), ([6.0], 3.0), ([2.0], 5.0)):  # within 2.5x: nothing
        warnings = []
        run_warnings(_qc(widths), warnings, chrom_fwhm_s=setting)
        assert warnings == [], (widths, setting)
    blanks = _qc([3.0, 3.2, 11.0, 11.5, 12.0]).with_columns(  # blank runs' broad background does not count (AG)
        sample_type=pl.Series(["sample", "sample", "blank", "blank", "blank"]))
    run_warnings(blanks, warnings, chrom_fwhm_s=3.0)
    run_warnings(_qc([15.0]), warnings)  # the setting unknown: nothing
    run_warnings(_qc([None]), warnings, chrom_fwhm_s=3.0)
    run_warnings(pl.DataFrame({"sample_id": ["S"], "sample_type": ["sample"]}), warnings, chrom_fwhm_s=3.0)
    assert warnings == []


def test_the_qc_value_is_the_median_width_of_isotope_confirmed_features(tmp_path) -> None:
    path = tmp_path / "features.parquet"
    pl.DataFrame({"fwhm_s": [2.0, 3.0, 4.0, 40.0, 50.0, 0.0], "n_isotopes": [2, 3, 2, 1, 1, 2]}).write_parquet(path)
    assert peak_fwhm_median(path) == 3.0  # the single-trace (noise-like) features and the zero width left out
    pl.DataFrame({"fwhm_s": [40.0, 50.0], "n_isotopes": [1, 1]}).write_parquet(path)
    assert peak_fwhm_median(path) == 45.0  # none with an isotope: all of them
    pl.DataFrame({"n_isotopes": [1]}).write_parquet(path)
    assert peak_fwhm_median(path) is None
