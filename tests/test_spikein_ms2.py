"""A spiked MS/MS scan as the instrument records it (ms2study.simulate.spikein_ms2): co-isolated background ions'
fragments, ion statistics, noise peaks and fragment m/z error, each weighing more the weaker the precursor; on the
real Q Exactive and TripleTOF runs a spectrum at the DDA trigger agrees less with its reference than one 100x above
(a chemist's trial: spiked MS/MS were the reference itself at any intensity)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from ms2study.simulate.spikein_ms2 import SampleScans, chimeric_source, isolation_half_widths, recorded_fragments

SHARED = Path(__file__).parents[2] / "shared" / "data"
FLOOR = 100.0
BG = SimpleNamespace(ms2_gain=0.5, ms2_floor=FLOOR, mz_jitter_ppm=lambda i: np.full(np.shape(i), 2.0))
WINDOW = (0.5, 0.5)


def _scans() -> SampleScans:
    """One survey scan at 10 s with a background ion at 300.2 (inside the window of a precursor at 300.0) and one
    at 310; two background MS/MS scans: of 300.25 at 12 s (peaks up to 305, one noise peak at 120) and of 500 at
    10.5 s (nearest in time; a noise peak at 90)."""
    return SampleScans(
        ms1_rt=np.array([10.0]),
        ms1_peaks=[(np.array([300.2, 310.0]), np.array([3e5, 1e6]))],
        ms2_rt=np.array([12.0, 10.5]),
        ms2_precursor=np.array([300.25, 500.0]),
        ms2_peaks=[(np.array([120.0, 150.0, 250.0, 305.0]), np.array([150.0, 4e4, 6e4, 5e4])),
                   (np.array([90.0, 400.0]), np.array([200.0, 9e4]))])


def test_a_weak_precursor_gets_the_co_isolated_ions_fragments_and_the_noise() -> None:
    scans, rs = _scans(), np.random.default_rng(0)
    frag, rel = np.array([80.0, 110.0, 200.0]), np.array([0.2, 1.0, 0.5])
    mz, inten, own, share = recorded_fragments(BG, scans, 300.0, 1e5, 10.2, frag, rel, WINDOW, rs)
    assert share == pytest.approx(3e5 / (3e5 + 1e5))  # the ion at 310 lies outside the window
    assert chimeric_source(scans, 10.2, 300.2) == 0  # the scan of the co-isolated ion, not the nearest one
    others = mz[~own]
    # its fragments (scaled to 3e5 x gain), not those above the window (305), plus the nearest scan's noise peak
    assert np.any(np.abs(others - 150.0) < 0.01) and np.any(np.abs(others - 250.0) < 0.01)
    assert not np.any(np.abs(others - 305.0) < 0.01) and np.any(np.abs(others - 90.0) < 0.01)
    chimeric = inten[~own][np.abs(others - 250.0) < 0.01][0]
    assert chimeric == pytest.approx(6e4 / 150150.0 * 3e5 * 0.5)
    assert np.all(inten >= FLOOR) and np.all(np.diff(mz) >= 0)
    # the compound's own fragments: every one kept here, each within a few ppm of its m/z
    assert own.sum() == 3 and np.all(np.abs(mz[own] - frag) / frag < 2e-5)
    # a precursor whose window holds no background ion: no co-isolation, only its peaks and the noise
    mz, inten, own, share = recorded_fragments(BG, scans, 400.0, 1e7, 10.2, frag, rel, WINDOW, rs)
    assert share == 0.0 and own.sum() == 3 and mz[~own].tolist() == [90.0]


def test_ion_statistics_noise_grows_toward_the_floor() -> None:
    rs = np.random.default_rng(1)
    empty = SampleScans(np.zeros(0), [], np.zeros(0), np.zeros(0), [])
    rel = np.array([1.0, 1.0])
    ratios = {}
    for level in (2e3, 2e6):  # each peak at 20 and 20,000 floors (gain 0.5, two equal fragments)
        draws = [recorded_fragments(BG, empty, 300.0, level * 4, 0.0, np.array([100.0, 200.0]), rel, WINDOW, rs)[1]
                 for _ in range(2000)]
        ratios[level] = np.log(np.concatenate([d for d in draws if d.size == 2]) / level)
    sd_weak, sd_strong = np.std(ratios[2e3]), np.std(ratios[2e6])
    assert sd_strong == pytest.approx(0.1, abs=0.01)
    assert sd_weak == pytest.approx(np.sqrt(0.01 + 0.25 / 20), abs=0.01) and sd_weak > 1.4 * sd_strong


def test_the_window_is_the_runs_own() -> None:
    import pyopenms as oms

    spectrum, precursor = oms.MSSpectrum(), oms.Precursor()
    precursor.setIsolationWindowLowerOffset(0.7), precursor.setIsolationWindowUpperOffset(0.8)
    spectrum.setPrecursors([precursor])
    assert isolation_half_widths(spectrum) == (0.7, 0.8)
    spectrum.setPrecursors([oms.Precursor()])
    assert isolation_half_widths(spectrum) == (0.5, 0.5)


@pytest.mark.parametrize("run", ["171103_PMA_TK_QC_04-4to5min.mzML", "AssayGeneratorMetabo_input.mzML"])
def test_on_real_runs_a_spectrum_at_the_trigger_agrees_less_with_its_reference(run: str) -> None:
    path = SHARED / "mzml" / run
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    from ms2study.simulate.spikein_background import read_background

    bg = read_background(path)
    ms1 = [s for s in bg.exp if s.getMSLevel() == 1]
    ms2 = [s for s in bg.exp if s.getMSLevel() == 2 and s.getPrecursors()]
    scans = SampleScans(np.array([s.getRT() for s in ms1]), [s.get_peaks() for s in ms1],
                        np.array([s.getRT() for s in ms2]), np.array([s.getPrecursors()[0].getMZ() for s in ms2]),
                        [s.get_peaks() for s in ms2])
    rs = np.random.default_rng(0)

    def cosine(mz, inten, frag, rel) -> float:
        """Cosine of the spectrum with its reference, peaks matched within 0.01 Da."""
        matched = sum(inten[np.abs(mz - m) <= 0.01].sum() * r for m, r in zip(frag, rel, strict=True))
        return matched / np.sqrt((inten ** 2).sum() * (rel ** 2).sum())

    median = {}
    for factor in (1, 100):
        scores = []
        for _ in range(200):
            precursor_mz = rs.uniform(150, 600)
            frag, rel = np.sort(rs.uniform(50, precursor_mz - 5, 8)), rs.uniform(0.05, 1, 8)
            t = rs.uniform(bg.rt_range[0] + 5, bg.rt_range[1] - 5)
            mz, inten, own, _ = recorded_fragments(bg, scans, precursor_mz, bg.dda_threshold * factor, t, frag, rel,
                                                   isolation_half_widths(bg.template), rs)
            if own.any():
                scores.append(cosine(mz, inten, frag, rel))
        median[factor] = (np.median(scores), np.quantile(scores, 0.1))
    assert median[100][0] > 0.99 and median[100][1] > 0.95
    assert median[1][0] < median[100][0] and median[1][1] < median[100][1] - 0.1, median
