"""Spike-in backgrounds must be runs of one method (trial AI: a TripleTOF excerpt of 39 s paired with one of 18 s at
m/z 288-297; every compound was spiked into both and the truth called it present where no MS1 scan was)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ms2study.core.errors import InputError
from ms2study.simulate.spikein_background import Background, check_backgrounds_match


def _bg(rt: tuple[float, float], mz: tuple[float, float]) -> Background:
    return Background(exp=None, mz_range=mz, rt_range=rt, height_range=(1e3, 1e6), ms1_floor=1e3, ms2_floor=1e2,
                      dda_threshold=1e5, ms2_gain=0.5, template=None, resolution_ppm=10.0)


def test_backgrounds_of_another_method_are_refused_naming_both_runs() -> None:
    paths = [Path("a.mzML"), Path("b.mzML"), Path("c.mzML")]
    same = [_bg((240.0, 300.0), (120.0, 1460.0)), _bg((240.5, 299.6), (121.0, 1455.0))]
    check_backgrounds_match(same, paths[:2])  # two injections of one QC: accepted
    with pytest.raises(InputError) as err:
        check_backgrounds_match([_bg((430.0, 470.0), (100.0, 750.0)), _bg((402.0, 420.0), (288.0, 297.0))],
                                paths[:2])
    text = str(err.value)
    assert "not of one method" in text and "a.mzML spans RT 430-470 s" in text and "b.mzML RT 402-420 s" in text
    assert "b.mzML" in text and "one background" in text
    with pytest.raises(InputError, match="c.mzML"):  # a third run of a shorter gradient
        check_backgrounds_match([*same, _bg((240.0, 260.0), (120.0, 1460.0))], paths)


def test_a_time_of_flight_background_with_the_orbitrap_calibration_default_is_warned(shared_data, caplog) -> None:
    """Trial AI: the spike-in's 1 ppm calibration sd comes from the Q Exactive pair; on a TripleTOF background the
    spiked ions sat within 1 ppm where the run's own ions were 3-5 ppm off, unsaid."""
    import logging

    from ms2study.simulate.spikein_background import warn_tof_calibration

    tof = [shared_data / "mzml" / "AssayGeneratorMetabo_input.mzML"]
    orbitrap = [shared_data / "mzml" / "171103_PMA_TK_QC_04-4to5min.mzML"]
    with caplog.at_level(logging.WARNING, logger="ms2study"):
        warn_tof_calibration(orbitrap, 1.0, 1.0)
        warn_tof_calibration(tof, 5.0, 1.0)  # set by the user: nothing to say
        assert not caplog.records
        warn_tof_calibration(tof, 1.0, 1.0)
    assert len(caplog.records) == 1 and "AssayGeneratorMetabo_input.mzML state a time-of-flight" in caplog.text
    assert "--calibration-ppm 5" in caplog.text
