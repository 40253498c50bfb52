"""Which feature a fragment scan maps to when several co-elute at its precursor m/z (spectra.map_precursors).

The first case is the one a spike-in study of a real Q Exactive run showed (sample S04): the planted compound's
scan at 288.6 s lay inside its big feature's hull and inside a small neighbour's hull only through the 3 s
widening; the small one, 0.4 ppm nearer in m/z, took the scan.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from ms2study.stages.spectra import MappingCounts, map_precursors, map_precursors_counted

RT_TOL, PPM = 3.0, 10.0


def _features(**extra) -> pl.DataFrame:
    """S04's two features at m/z 152.107: BIG (the compound), SMALL (eluting just before, its hull ends at 285.9)."""
    rows = {
        "feature_id": ["S04:SMALL", "S04:BIG"],
        "mz": [152.106814, 152.106887],
        "rt_s": [282.55, 289.56],
        "rt_start_s": [277.39, 286.36],
        "rt_end_s": [285.90, 295.29],
        "mz_min": [152.106413, 152.106587],
        "mz_max": [152.107130, 152.107017],
        "intensity": [2.0e4, 1.65e6],
        "height": [4.0e3, 3.0e5],
        "fwhm_s": [4.0, 4.5],
    }
    return pl.DataFrame(rows | extra)


def test_scan_on_the_big_peak_is_not_taken_by_a_small_neighbour_reached_through_the_widening():
    # S04's scan: 288.6 s, precursor 152.106821 (0.05 ppm from SMALL, 0.43 ppm from BIG)
    got, counts = map_precursors_counted(np.array([152.106821]), np.array([288.63]), _features(), RT_TOL, PPM)
    assert got == ["S04:BIG"]
    assert counts == MappingCounts(mapped=1, ambiguous=1, by_hull=1, by_intensity=0)


def test_scan_inside_only_the_small_features_own_hull_goes_to_the_small_one():
    # 284.0 s: inside SMALL's hull; BIG (hull from 286.36) reaches it only through the widening, and BIG is the
    # nearer in m/z and far more intense
    assert map_precursors(np.array([152.106887]), np.array([284.0]), _features(), RT_TOL, PPM) == ["S04:SMALL"]


def test_inside_both_hulls_the_feature_most_intense_at_the_scans_rt_wins():
    # overlapping hulls (isomers 7 s apart, both hulls span 286.4-291 s): a scan 1.5 s from the small one's apex
    # goes to it, not to the big one's tail 5.5 s (2.75 FWHM) from its apex; one 1.5 s from the big one's apex
    # goes to the big one
    f = _features(rt_end_s=[291.0, 295.29], rt_s=[285.5, 292.5], fwhm_s=[2.0, 2.0], height=[5e4, 3e5])
    got = map_precursors(np.array([152.1069, 152.1069]), np.array([287.0, 291.0]), f, RT_TOL, PPM)
    assert got == ["S04:SMALL", "S04:BIG"]
    # without height and FWHM columns: area / (1.064 FWHM) and half the hull width stand in, same answer here
    assert map_precursors(np.array([152.1069]), np.array([288.63]), f.drop("height", "fwhm_s"), RT_TOL, PPM) == [
        "S04:BIG"
    ]


def test_outside_every_hull_the_nearer_apex_scaled_by_width_wins():
    # 296.5 s: no hull holds it, the widening reaches BIG (ends 295.29) and a later small feature (starts 297.0);
    # the small one's apex is 0.7 s (0.35 FWHM) away, BIG's 6.9 s (1.5 FWHM): the small one, 15 times smaller
    f = pl.concat([_features(), _features().tail(1).with_columns(
        feature_id=pl.lit("S04:LATE"), rt_s=pl.lit(297.2), rt_start_s=pl.lit(297.0), rt_end_s=pl.lit(300.0),
        intensity=pl.lit(5e4), height=pl.lit(2e4), fwhm_s=pl.lit(2.0))])
    got, counts = map_precursors_counted(np.array([152.1069]), np.array([296.5]), f, RT_TOL, PPM)
    assert got == ["S04:LATE"]
    assert counts == MappingCounts(mapped=1, ambiguous=1, by_hull=0, by_intensity=1)
