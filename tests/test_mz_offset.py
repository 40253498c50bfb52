"""A run's m/z calibration offset against the reference run: measured, removed before linking, and said.

Trial K (session 37): a spike-in study on a real Q Exactive run with per-run calibration offsets of up to 20 ppm.
Five runs 14-20 ppm off linked to no other run's features, lost every identification and, with them, the planted
difference; the report said "0 of 2623 tested features differ" and blamed a dilution, with no word on calibration."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from ms2study.core.measurement import recalibrated
from ms2study.correction.mzoffset import RECALIBRATE_MIN_PPM, mz_offset_ppm
from ms2study.modelling.runchecks import MZ_OFFSET_MARK, mz_offset_note
from ms2study.reporting.html import DOUBT, PROCESSING, QUALITY, kind_of
from ms2study.reporting.runnotes import mz_offset_warning
from ms2study.stages import link

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mzml"


def _run(rng: np.random.Generator, n: int = 1500) -> pl.DataFrame:
    """A run's features: m/z 100-1000 (log-uniform), RT 30-900 s, log-normal intensities."""
    mz = np.exp(rng.uniform(np.log(100.0), np.log(1000.0), n))
    return pl.DataFrame({"feature_id": [f"F{i}" for i in range(n)], "mz": mz, "rt_s": rng.uniform(30, 900, n),
                         "intensity": np.exp(rng.normal(12, 1.5, n))})


def _copy(reference: pl.DataFrame, rng: np.random.Generator, offset_ppm: float, shared: float = 0.7,
          rt_shift_s: float = 6.0) -> pl.DataFrame:
    """Another run of the same sample: ``shared`` of the reference's ions (1.5 ppm jitter, an RT shift) measured
    ``offset_ppm`` off, plus ions of its own."""
    keep = reference.sample(fraction=shared, seed=int(rng.integers(1 << 30)))
    mz = keep["mz"].to_numpy() * (1 + offset_ppm * 1e-6) * (1 + rng.normal(0, 1.5e-6, keep.height))
    own = _run(rng, reference.height - keep.height)
    return pl.concat([keep.with_columns(mz=pl.Series(mz), rt_s=pl.col("rt_s") + rt_shift_s
                                        + pl.Series(rng.normal(0, 1.0, keep.height))), own])


@pytest.mark.parametrize("offset", [-30.0, -12.5, -3.0, 0.0, 4.0, 17.7, 25.0])
def test_the_offset_is_measured_within_half_a_ppm(offset: float) -> None:
    rng = np.random.default_rng(int(abs(offset) * 10))
    ref = _run(rng)
    run = _copy(ref, rng, offset)
    measured, pairs = mz_offset_ppm(run["mz"].to_numpy(), run["rt_s"].to_numpy(), run["intensity"].to_numpy(),
                                    ref["mz"].to_numpy(), ref["rt_s"].to_numpy(), 60.0)
    assert measured is not None and abs(measured - offset) < 0.5 and pairs >= 500, (measured, pairs)
    back = recalibrated(run["mz"].to_numpy(), measured)
    assert np.allclose(back[:3] / (run["mz"].to_numpy()[:3] / (1 + offset * 1e-6)), 1.0, atol=1e-6)


def test_unrelated_runs_give_no_offset() -> None:
    """Two runs without shared ions (another matrix, or nothing in common): no window of votes stands out."""
    calls = []
    for seed in range(20):
        run, ref = _run(np.random.default_rng(seed)), _run(np.random.default_rng(seed + 100))
        calls.append(mz_offset_ppm(run["mz"].to_numpy(), run["rt_s"].to_numpy(), run["intensity"].to_numpy(),
                                   ref["mz"].to_numpy(), ref["rt_s"].to_numpy(), 60.0))
    assert all(offset is None for offset, _ in calls), calls
    assert mz_offset_ppm(np.array([]), np.array([]), np.array([]), np.array([200.0]), np.array([60.0]), 60.0) == (
        None, 0)
    with pytest.raises(ValueError, match="differ in length"):
        mz_offset_ppm(np.array([1.0]), np.array([]), np.array([1.0]), np.array([200.0]), np.array([60.0]), 60.0)


def _features(frame: pl.DataFrame, sample: str) -> pl.DataFrame:
    n = frame.height
    return frame.with_columns(
        sample_id=pl.lit(sample), rt_start_s=pl.col("rt_s") - 3, rt_end_s=pl.col("rt_s") + 3,
        mz_min=pl.col("mz") * (1 - 2e-6), mz_max=pl.col("mz") * (1 + 2e-6), charge=pl.lit(1, dtype=pl.Int32),
        n_isotopes=pl.lit(1, dtype=pl.Int32), quality=pl.lit(1.0), fwhm_s=pl.lit(3.0),
        height=pl.col("intensity") / 5, feature_id=pl.Series([f"{sample}_{i}" for i in range(n)]))


def test_link_removes_the_offset_and_the_runs_link_again() -> None:
    """A run 18 ppm off the others shares almost no consensus feature with them at link: mz_tol_ppm 10; with the
    offset removed (the default) it shares as many as a run without offset. The scale is the runs' median: when
    the reference run is the one off, it is moved, not the others (trial M: a reference 15 ppm off moved the good
    runs onto its scale, and every consensus m/z followed it)."""
    rng = np.random.default_rng(7)
    ref = _run(rng, 1200)
    runs = {"R": _features(ref, "R"), "A": _features(_copy(ref, rng, 0.5), "A"),
            "B": _features(_copy(ref, rng, 18.0), "B"), "C": _features(_copy(ref, rng, -0.5), "C")}
    shared = {}
    for on in (True, False):
        result = link.link_features_full(runs, "R", {"recalibrate_mz": on})
        matrix, alignment = result.matrix, result.alignment
        both = matrix.filter(pl.col("R").is_not_null())
        shared[on] = {s: both[s].is_not_null().sum() for s in ("A", "B")}
        row = alignment.filter(pl.col("sample_id") == "B").row(0, named=True)
        assert abs(row["mz_offset_ppm"] - 18.0) < 0.5 and row["mz_recalibrated"] is on
        assert alignment.filter(pl.col("sample_id") == "A")["mz_recalibrated"][0] is False  # 0.5 ppm: left as is
    assert shared[False]["B"] < 0.2 * shared[False]["A"], shared
    assert shared[True]["B"] > 0.9 * shared[True]["A"], shared
    assert abs(shared[True]["A"] - shared[False]["A"]) <= 2  # the run without offset links as before
    # the reference run 15 ppm off: it is moved onto the others' scale, and the consensus m/z stay theirs
    off = {"R": _features(ref.with_columns(pl.col("mz") * (1 + 15e-6)), "R"), **{s: runs[s] for s in ("A", "C")}}
    result = link.link_features_full(off, "R", {})
    moved = dict(zip(result.alignment["sample_id"], result.alignment["mz_recalibrated"]))
    offsets = dict(zip(result.alignment["sample_id"], result.alignment["mz_offset_ppm"]))
    assert moved == {"R": True, "A": False, "C": False} and abs(offsets["R"] - 15.0) < 0.6, offsets
    linked = result.matrix.filter(pl.col("R").is_not_null() & pl.col("A").is_not_null())["mz"].to_numpy()
    true_mz = _nearest(ref["mz"].to_numpy(), linked)  # the ions' own m/z (A and C are measured within 1 ppm)
    ppm = np.abs((linked - true_mz) / true_mz * 1e6)
    assert linked.size > 500 and float(np.median(ppm)) < 2.0, (linked.size, float(np.median(ppm)))


def _nearest(values: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """The element of ``values`` nearest each of ``queries``."""
    order = np.sort(values)
    i = np.clip(np.searchsorted(order, queries), 1, order.size - 1)
    return np.where(np.abs(order[i] - queries) < np.abs(order[i - 1] - queries), order[i], order[i - 1])


def test_the_note_says_when_identifications_are_lost_and_the_report_cautions() -> None:
    assert mz_offset_note(1.5, False, 10.0) is None  # under RECALIBRATE_MIN_PPM: nothing to say
    assert RECALIBRATE_MIN_PPM == 2.0
    small = mz_offset_note(3.0, True, 10.0)
    assert small.startswith("m/z offset +3.0 ppm against the study's median run: its features were moved onto that "
                            "m/z scale") and MZ_OFFSET_MARK not in small
    far = mz_offset_note(17.7, True, 10.0, scale_error_ppm=-5.7)
    assert "searched against the library about +12.0 ppm off (the study's median run lies -5.7 ppm off), with a " \
           "precursor window of ±10 ppm, so its identifications are lost" in far
    assert "part of its identifications are lost" in mz_offset_note(7.5, True, 10.0)
    assert MZ_OFFSET_MARK not in mz_offset_note(10.8, True, 10.0, scale_error_ppm=-5.7)  # 5.1 ppm: kept
    assert MZ_OFFSET_MARK not in mz_offset_note(17.7, True, None)  # no library searched: nothing lost
    # the annotate stage measured the run's own offset and searched with it removed: nothing lost, and said so
    searched = mz_offset_note(17.7, True, 10.0, -5.7, searched_at_ppm=12.1)
    assert MZ_OFFSET_MARK not in searched and searched.endswith(
        "the annotate stage measured its precursor offset on its own library matches (+12.1 ppm) and searched its "
        "MS/MS with it removed")
    qc = pl.DataFrame({"sample_id": ["R", "A", "B"], "n_accepted": [40, 38, 0], "mz_offset_ppm": [0.0, 3.0, 17.7],
                       "mz_recalibrated": [False, True, True], "mz_offset_note": [None, small, far]})
    warnings: list[str] = []
    mz_offset_warning(qc, warnings)
    assert [kind_of(w) for w in warnings] == [DOUBT, PROCESSING]
    assert "run(s) measured off in m/z</b>: B (+17.7 ppm, 0 accepted); the other runs' median 39" in warnings[0]
    assert warnings[0].concerns == ("identifications", "differential", "models")
    assert "A (+3.0 ppm); removed before linking" in warnings[1]
    # runs whose precursor offset the annotate stage removed: data quality from 5 ppm, a processing note below
    for removed, kind in ((12.1, QUALITY), (3.4, PROCESSING)):
        warnings = []
        mz_offset_warning(qc.with_columns(pl.Series("precursor_recalibration_ppm", [None, None, removed])), warnings)
        assert kind_of(warnings[0]) == kind and warnings[0].startswith(
            f"precursor m/z measured off against the library in 1 of 3 run(s): B ({removed:+.1f} ppm)")
        assert ("wants checking" in warnings[0]) is (kind == QUALITY)
    # a time-of-flight run is judged from 10 ppm (trial AI: 5 of 10 TripleTOF runs 5-8 ppm off were called off)
    tof = qc.with_columns(pl.Series("precursor_recalibration_ppm", [None, None, 7.5]),
                          pl.Series("mass_analyzers", [None, None, "quadrupole, time-of-flight"]))
    warnings = []
    mz_offset_warning(tof, warnings)
    assert kind_of(warnings[0]) == PROCESSING and "wants checking" not in warnings[0]
    warnings = []
    mz_offset_warning(tof.with_columns(pl.Series("precursor_recalibration_ppm", [None, None, 11.0])), warnings)
    assert kind_of(warnings[0]) == QUALITY and "10 on a time-of-flight run" in warnings[0]


@pytest.mark.skipif(not (SHARED / "171103_PMA_TK_QC_04-4to5min.mzML").exists(), reason="../shared/data is absent")
def test_two_real_runs_of_one_day_have_no_offset_to_remove(tmp_path: Path) -> None:
    """The two real Q Exactive QC runs (one day, one calibration): their offset is measured and under the threshold,
    so linking them is unchanged; the same runs with one moved 15 ppm are measured at 15 +- 0.5."""
    from ms2study.stages.detect import detect_features

    found = {s: detect_features(SHARED / f"171103_PMA_TK_QC_0{k}-4to5min.mzML", s) for s, k in (("Q4", 4), ("Q5", 5))}
    a, b = found["Q4"], found["Q5"]
    offset, pairs = mz_offset_ppm(b["mz"].to_numpy(), b["rt_s"].to_numpy(), b["intensity"].to_numpy(),
                                  a["mz"].to_numpy(), a["rt_s"].to_numpy(), 60.0)
    assert offset is not None and abs(offset) < RECALIBRATE_MIN_PPM and pairs > 200, (offset, pairs)
    moved, _ = mz_offset_ppm(b["mz"].to_numpy() * (1 + 15e-6), b["rt_s"].to_numpy(), b["intensity"].to_numpy(),
                             a["mz"].to_numpy(), a["rt_s"].to_numpy(), 60.0)
    assert abs(moved - offset - 15.0) < 0.5
