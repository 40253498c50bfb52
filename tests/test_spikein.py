"""Spike-in simulation into a real run (ms2study.simulate.spikein) on a small background and library made here."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pyopenms as oms
import pytest

from ms2study.cli import main
from ms2study.core.errors import InputError
from ms2study.io.msio import read_precursor
from ms2study.simulate.spikein import isotope_envelope, simulate_spikein
from ms2study.simulate.spikein_background import MZ_JITTER_PPM, read_background
from ms2study.simulate.spikein_library import PROTON, read_mgf_records
from ms2study.simulate.spikein_variation import isotope_keys, merge_unresolved, variation

SHARED = Path(__file__).parents[2] / "shared" / "data"
SEED = 5
# name, formula, class, records: a structure with 2 records gets MS2 from the other one
STRUCTURES = [
    ("glucose", "C6H12O6", "Organic compounds; Organooxygen compounds", 2),
    ("tyrosine", "C9H11NO3", "Organic compounds; Organic acids and derivatives", 2),
    ("phenylalanine", "C9H11NO2", "Organic compounds; Organic acids and derivatives", 2),
    ("leucine", "C6H13NO2", "Organic compounds; Organic acids and derivatives", 1),
    ("tryptophan", "C11H12N2O2", "Organic compounds; Organic acids and derivatives", 2),
    ("glutamate", "C5H9NO4", "Organic compounds; Organic acids and derivatives", 2),
    ("caffeine", "C8H10N4O2", "Organic compounds; Organoheterocyclic compounds", 2),
    ("adenine", "C5H5N5", "Organic compounds; Organoheterocyclic compounds", 1),
    ("cholesterol", "C27H46O", "Organic compounds; Lipids and lipid-like molecules", 2),
]


def _key(k: int) -> str:
    letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    return f"{letters[k] * 14}-UHFFFAOYSA-N"


def sample_variation(seed: int, sample_index: int, mz, rt, rt_range: tuple[float, float]) -> np.ndarray:
    """The multiplicative intensity factor of a sample at undrifted (mz, rt), as the simulator applies it."""
    return np.exp(variation(seed, sample_index, rt_range)[1].log_factor(mz, rt))


def write_library(path: Path, structures=STRUCTURES, license_="CC BY", extra_fields: str = "",
                  drop: tuple[str, ...] = ()) -> None:
    """An MGF of ``structures`` (1-2 records each, 6 fragments), without the fields named in ``drop``."""
    rs = np.random.default_rng(0)
    blocks = []
    for k, (name, formula, klass, n_records) in enumerate(structures):
        mz = oms.EmpiricalFormula(formula).getMonoWeight() + PROTON
        for r in range(n_records):
            frags = np.sort(rs.uniform(50, mz - 5, 6))
            lines = ["BEGIN IONS", f"TITLE=REC-{k}-{r}", f"PEPMASS={mz:.6f}", "CHARGE=1+", "IONMODE=positive",
                     "ADDUCT=[M+H]+", f"NAME={name}", f"FORMULA={formula}", f"INCHIKEY={_key(k)}",
                     f"COMPOUND_CLASS=CHEMONTID:0000000; {klass}", f"LICENSE={license_}"]
            lines = [x for x in lines if x.split("=")[0] not in drop] + [x for x in extra_fields.split("\n") if x]
            lines += [f"{m:.5f} {i:.1f}" for m, i in zip(frags, rs.uniform(10, 1000, 6), strict=True)]
            lines.append("END IONS")
            blocks.append("\n".join(lines))
    path.write_text("\n\n".join(blocks) + "\n")


def positive(s: oms.MSSpectrum) -> None:
    settings = s.getInstrumentSettings()  # a copy: set it back
    settings.setPolarity(oms.IonSource.Polarity.POSITIVE)
    s.setInstrumentSettings(settings)


def write_background(path: Path, profile: bool = False, ms1: bool = True, ions: np.ndarray | None = None,
                     mz_jitter_ppm: float = 0.0, scan_window: tuple[float, float] | None = None,
                     levels: np.ndarray | None = None) -> None:
    """40 MS1 scans (0.5 s apart; ``ions``, by default 30 random ions in m/z 100-600, at flat random levels (or
    ``levels``, one per ion in ascending m/z), each centroid's m/z off by N(0, ``mz_jitter_ppm``); ``scan_window``
    stated in the file when given) each followed by 2 MS2 scans of its top ions."""
    rs = np.random.default_rng(1)
    ions = np.sort(rs.uniform(100, 600, 30)) if ions is None else np.sort(np.asarray(ions, dtype=np.float64))
    drawn = 10 ** rs.uniform(4, 6.5, ions.size)
    levels = drawn if levels is None else np.asarray(levels, dtype=np.float64)
    exp = oms.MSExperiment()
    scan = 1
    for j in range(40):
        t = 10.0 + 0.5 * j
        inten = levels * (0.8 + 0.4 * rs.random(ions.size))
        if ms1:
            s = oms.MSSpectrum()
            s.setMSLevel(1)
            s.setRT(t)
            s.setNativeID(f"controllerType=0 controllerNumber=1 scan={scan}")
            scan += 1
            if profile:
                mz = np.concatenate([m + np.linspace(-0.005, 0.005, 11) for m in ions])
                s.set_peaks((mz, np.repeat(inten, 11).astype(np.float32)))
                s.setType(oms.SpectrumSettings.SpectrumType.PROFILE)
            else:
                mz = ions * (1.0 + mz_jitter_ppm * 1e-6 * rs.standard_normal(ions.size)) if mz_jitter_ppm else ions
                s.set_peaks((mz.copy(), inten.astype(np.float32)))
                s.setType(oms.SpectrumSettings.SpectrumType.CENTROID)
            if scan_window is not None:
                window = oms.ScanWindow()
                window.begin, window.end = scan_window
                settings = s.getInstrumentSettings()  # a copy: set it back
                settings.setScanWindows([window])
                s.setInstrumentSettings(settings)
            positive(s)
            exp.addSpectrum(s)
        for q in np.argsort(inten)[::-1][:2]:
            s = oms.MSSpectrum()
            s.setMSLevel(2)
            s.setRT(t + 0.1 + 0.1 * len(exp.getSpectra()) % 2)
            s.setNativeID(f"controllerType=0 controllerNumber=1 scan={scan}")
            scan += 1
            p = oms.Precursor()
            p.setMZ(float(ions[q]))
            p.setCharge(1)
            p.setIsolationWindowLowerOffset(0.5)
            p.setIsolationWindowUpperOffset(0.5)
            p.setMetaValue("isolation window target m/z", float(ions[q]))  # as some converters write it
            s.setPrecursors([p])
            s.set_peaks((np.sort(rs.uniform(50, ions[q], 8)), rs.uniform(3e3, 1e5, 8).astype(np.float32)))
            s.setType(oms.SpectrumSettings.SpectrumType.CENTROID)
            positive(s)
            exp.addSpectrum(s)
    exp.sortSpectra(True)
    oms.MzMLFile().store(str(path), exp)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("spikein_inputs")
    write_background(d / "bg.mzML")
    write_library(d / "lib.mgf")
    return d / "bg.mzML", d / "lib.mgf"


def make(out: Path, inputs, **kw) -> dict:
    kw = {"n_samples": 4, "n_compounds": 6, "n_changed": 2, "fold_change": 3.0, "seed": SEED, **kw}
    return simulate_spikein(out, inputs[0], inputs[1], **kw)


@pytest.fixture(scope="module")
def study(tmp_path_factory, inputs) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("spikein_study")
    return out, make(out, inputs)


def is_spiked(s: oms.MSSpectrum) -> bool:
    return s.getMSLevel() == 2 and str(s.getMetaValue("spectrum title") or "").startswith("spiked")


def load(path: Path) -> oms.MSExperiment:
    exp = oms.MSExperiment()
    oms.MzMLFile().load(str(path), exp)
    return exp


def test_layout_and_truth(study):
    out, summary = study
    for name in ("samples.tsv", "config.yaml", "library.mgf", "ground_truth.tsv", "simulation.json"):
        assert (out / name).is_file()
    sheet = pl.read_csv(out / "samples.tsv", separator="\t")
    assert sheet["group"].to_list() == ["control", "control", "case", "case"]
    truth = pl.read_csv(out / "ground_truth.tsv", separator="\t")
    assert truth.height == 4 * 6
    for col in ("inchikey", "formula", "chemical_class", "mz", "rt_s", "in_library", "changed", "fold"):
        assert col in truth.columns
    first = truth.filter(pl.col("sample_id") == "S01")
    assert first["inchikey"].str.split("-").list.first().n_unique() == 6
    assert first["changed"].sum() == 2 and first.filter("changed")["chemical_class"].n_unique() == 1
    assert first["in_library"].sum() == 4  # a third are known unknowns
    assert summary["planted_class"] == first.filter("changed")["chemical_class"][0]


def _runs(out: Path) -> tuple[dict, tuple[float, float]]:
    info = json.loads((out / "simulation.json").read_text())
    return info["runs"], tuple(info["background_measured"]["rt_range_s"])


def test_spiked_peaks_at_mz_rt_with_fold(study, inputs):
    out, _ = study
    truth = pl.read_csv(out / "ground_truth.tsv", separator="\t")
    runs, rt_range = _runs(out)
    undrifted = np.array([s.getRT() for s in load(inputs[0]) if s.getMSLevel() == 1])
    for i, sid in enumerate(["S01", "S02", "S03", "S04"]):
        exp = load(out / "mzml" / f"{sid}.mzML")
        ms1 = [s for s in exp if s.getMSLevel() == 1]
        rts = np.array([s.getRT() for s in ms1])
        rows = truth.filter(pl.col("sample_id") == sid)
        variation = sample_variation(SEED, i, rows["mz"].to_numpy(), rows["rt_s_undrifted"].to_numpy(), rt_range)
        scale = 1.0 + runs[sid]["calibration_ppm"] * 1e-6
        for row, var in zip(rows.iter_rows(named=True), variation, strict=True):
            j = int(np.argmin(np.abs(rts - row["rt_s"])))  # scans and apex drifted alike
            mz, inten = ms1[j].get_peaks()
            assert row["mz_acquired"] == pytest.approx(row["mz"] * scale, abs=1e-6)  # TSV: 6 decimals
            hit = np.abs(mz - row["mz_acquired"]) <= 5e-6 * row["mz"]
            assert hit.any(), (sid, row["name"])
            sigma = row["fwhm_s"] / 2.3548
            expected = row["height"] * var * np.exp(-0.5 * ((undrifted[j] - row["rt_s_undrifted"]) / sigma) ** 2)
            fold = 3.0 if (row["changed"] and row["group"] == "case") else 1.0
            assert row["fold"] == (3.0 if row["changed"] else 1.0)
            assert inten[hit].max() == pytest.approx(expected * fold, rel=1e-3)


def test_background_varies_per_sample_with_isotopes_sharing_the_factor(study, inputs):
    out, _ = study
    _, rt_range = _runs(out)
    first = next(s for s in load(inputs[0]) if s.getMSLevel() == 1)
    bg = first.get_peaks()
    s1 = next(s for s in load(out / "mzml" / "S01.mzML") if s.getMSLevel() == 1).get_peaks()
    ratio = np.array([s1[1][np.argmin(np.abs(s1[0] - m))] / i for m, i in zip(*bg, strict=True)])
    keys = isotope_keys(*bg)  # the field is read at each centroid's monoisotopic m/z
    assert ratio == pytest.approx(sample_variation(SEED, 0, keys, first.getRT(), rt_range), rel=1e-3)
    # Over 40 samples: an ion 1 Da or 0.1 Da away at the same RT varies on its own (another compound), as does the
    # same ion 30 s later; the same m/z a few ppm off (scan-to-scan jitter) moves with it.
    log = np.log([sample_variation(SEED, i, np.array([300.0, 301.003, 300.1, 300.0, 300.0006]),
                                   np.array([40.0, 40.0, 40.0, 70.0, 40.0]), (0.0, 100.0)) for i in range(40)])
    r = np.corrcoef(log.T)[0]
    assert abs(r[1]) < 0.5 and abs(r[2]) < 0.5 and abs(r[3]) < 0.5 and r[4] > 0.99


def test_a_background_compounds_isotopes_keep_their_ratio_in_every_sample(tmp_path, inputs):
    # ions 250 (M), 251.003 (its 13C) and 252.006 (13C2) of one compound, and an unrelated ion 1.05 Da above 400
    ions = np.array([150.0, 250.0, 251.003355, 252.00671, 400.0, 401.05, 520.0])
    write_background(tmp_path / "bg.mzML", ions=ions, levels=[3e5, 1e6, 1.5e5, 1.2e4, 4e5, 2e5, 5e5])
    out = tmp_path / "study"
    simulate_spikein(out, tmp_path / "bg.mzML", inputs[1], n_samples=6, n_compounds=4, n_changed=0, fold_change=1.0,
                     seed=SEED)
    bg = next(s for s in load(tmp_path / "bg.mzML") if s.getMSLevel() == 1).get_peaks()
    per_sample = []
    for sid in ("S01", "S02", "S03", "S04", "S05", "S06"):
        mz, inten = next(s for s in load(out / "mzml" / f"{sid}.mzML") if s.getMSLevel() == 1).get_peaks()
        per_sample.append([inten[np.argmin(np.abs(mz - m))] / i for m, i in zip(*bg, strict=True)])
    factor = np.log(np.array(per_sample))  # samples x ions: each ion's ln factor
    assert factor[:, 2] == pytest.approx(factor[:, 1], abs=1e-3) and factor[:, 3] == pytest.approx(factor[:, 1],
                                                                                                       abs=1e-3)
    assert np.abs(factor[:, 5] - factor[:, 4]).max() > 0.05  # 401.05 is no isotope of 400 (weaker, 1.05 Da up)


def test_isotope_keys_follow_each_chain_to_its_monoisotopic_peak():
    mz = np.array([301.00336, 300.0, 302.00671, 150.0, 151.00336, 400.0, 401.99795, 399.0, 500.0, 501.5])
    intensity = np.array([20.0, 100.0, 3.0, 50.0, 60.0, 10.0, 9.0, 1.0, 10.0, 5.0])
    keys = isotope_keys(mz, intensity)
    # 13C and 13C2 of 300 key to 300; 151.003 is more intense than 150 (no isotope of it); 81Br M+2 of 400 keys to
    # 400; 501.5 is no isotope step from 500
    assert keys.tolist() == [300.0, 300.0, 300.0, 150.0, 151.00336, 400.0, 400.0, 399.0, 500.0, 501.5]
    # Features differ in how much they vary (the study's field of per-feature sds): 0.25-0.80 holds 80 % of them.
    grid = np.log([sample_variation(SEED, i, np.linspace(100, 1000, 200)[:, None], np.linspace(0, 600, 30)[None, :],
                                    (0.0, 600.0)) for i in range(40)])
    sds = (grid - grid.mean(axis=(1, 2), keepdims=True)).std(axis=0).ravel()
    assert 0.15 < np.quantile(sds, 0.1) < np.median(sds) < np.quantile(sds, 0.9) < 1.2
    assert np.quantile(sds, 0.9) / np.quantile(sds, 0.1) > 2.0


def test_rt_drift_and_calibration_move_every_scan_alike(study, inputs):
    out, _ = study
    runs, _ = _runs(out)
    bg = load(inputs[0])
    by_id = {s.getNativeID(): s for s in bg}
    shifts = []
    for sid in ("S01", "S02", "S03", "S04"):
        moved = [(s, by_id[s.getNativeID()]) for s in load(out / "mzml" / f"{sid}.mzML") if s.getNativeID() in by_id]
        assert len(moved) == bg.getNrSpectra()
        delta = np.array([a.getRT() - b.getRT() for a, b in moved])
        # one smooth, monotone drift: MS1 and MS2 on the same curve, the scan order kept
        order = np.argsort([b.getRT() for _, b in moved], kind="stable")
        before = np.array([b.getRT() for _, b in moved])[order]
        assert np.all(np.abs(np.diff(delta[order])) <= 0.3 * np.diff(before) + 1e-9)
        shifts.append(delta.mean())
        scale = 1.0 + runs[sid]["calibration_ppm"] * 1e-6
        for a, b in moved[:20]:
            written, expected = a.get_peaks()[0], b.get_peaks()[0] * scale  # MS1 also holds the spiked ions
            nearest = written[np.clip(np.searchsorted(written, expected), 0, written.size - 1)]
            assert nearest == pytest.approx(expected, rel=1e-9)
            if b.getMSLevel() == 2:
                assert a.getPrecursors()[0].getMZ() == pytest.approx(b.getPrecursors()[0].getMZ() * scale, rel=1e-9)
                info = read_precursor(a)  # the isolation target moved with the selected ion
                assert not info.corrected and info.precursor_mz == pytest.approx(a.getPrecursors()[0].getMZ())
    assert np.std(shifts) > 0.1  # the samples drift differently
    assert len({round(r["calibration_ppm"], 6) for r in runs.values()}) == 4


def test_no_drift_no_offset_keeps_the_background_times_and_masses(tmp_path, inputs):
    make(tmp_path / "s", inputs, n_samples=2, rt_drift_s=0.0, calibration_ppm=0.0)
    bg = {s.getNativeID(): s for s in load(inputs[0])}
    for s in load(tmp_path / "s" / "mzml" / "S02.mzML"):
        if s.getNativeID() in bg:
            assert s.getRT() == bg[s.getNativeID()].getRT()
            assert np.all(np.isin(bg[s.getNativeID()].get_peaks()[0], s.get_peaks()[0]))  # MS1: + spiked ions
    with pytest.raises(InputError, match="rt-drift-s"):
        make(tmp_path / "t", inputs, rt_drift_s=-1.0)


def test_every_spiked_compound_can_be_left_out_of_the_library(tmp_path, inputs):
    """Trial O: --unknown-fraction 1 was refused, so a study where every name on a spiked compound is wrong by
    construction could not be built."""
    make(tmp_path / "s", inputs, unknown_fraction=1.0)
    truth = pl.read_csv(tmp_path / "s" / "ground_truth.tsv", separator="\t")
    blocks = {r.block for r in read_mgf_records(tmp_path / "s" / "library.mgf")}
    assert not truth["in_library"].any()
    assert not blocks & {k.split("-")[0] for k in truth["inchikey"].to_list()}


def test_library_without_unknowns_and_ms2_differs_from_library(study, inputs):
    out, _ = study
    truth = pl.read_csv(out / "ground_truth.tsv", separator="\t").filter(pl.col("sample_id") == "S01")
    lib = read_mgf_records(out / "library.mgf")
    blocks = {r.block for r in lib}
    for row in truth.iter_rows(named=True):
        assert (row["inchikey"].split("-")[0] in blocks) == row["in_library"]
    titles = {r.fields["TITLE"] for r in lib}
    used = truth.filter(pl.col("ms2_source") == "other_record")["ms2_record"].to_list()
    assert not titles & set(used)  # a query is never scored against its own record
    spectra = [np.round(r.mz, 4) for r in lib]
    n_ms2 = 0
    for sid in ("S01", "S02", "S03", "S04"):
        for s in load(out / "mzml" / f"{sid}.mzML"):
            if s.getMSLevel() == 2 and is_spiked(s):
                n_ms2 += 1
                mz = np.round(s.get_peaks()[0], 4)
                assert not any(m.size == mz.size and np.array_equal(m, mz) for m in spectra)
    assert n_ms2 >= 1


def test_native_ids_unique_sorted_and_precursors_set(study):
    out, _ = study
    exp = load(out / "mzml" / "S03.mzML")
    ids = [s.getNativeID() for s in exp]
    assert len(ids) == len(set(ids))
    rts = [s.getRT() for s in exp]
    assert rts == sorted(rts)
    truth = pl.read_csv(out / "ground_truth.tsv", separator="\t").filter(pl.col("sample_id") == "S03")
    spiked = [s for s in exp if s.getMSLevel() == 2 and is_spiked(s)]
    assert len(spiked) == truth["n_ms2"].sum()
    for s in spiked:
        p = s.getPrecursors()[0]
        assert p.getCharge() == 1 and p.getIsolationWindowLowerOffset() == 0.5
        assert s.getInstrumentSettings().getPolarity() == oms.IonSource.Polarity.POSITIVE
        scale = 1.0 + _runs(out)[0]["S03"]["calibration_ppm"] * 1e-6
        assert np.min(np.abs(truth["mz"].to_numpy() * scale - p.getMZ())) < 1e-6
        info = read_precursor(s)  # as the spectra stage reads it: the selected ion, not a copied window target
        assert not info.corrected and info.precursor_mz == pytest.approx(p.getMZ())


def _digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.suffix != ".json"}


def test_deterministic_for_a_seed(tmp_path, inputs):
    make(tmp_path / "a", inputs)
    make(tmp_path / "b", inputs)
    make(tmp_path / "c", inputs, seed=SEED + 1)
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    assert _digest(tmp_path / "a") != _digest(tmp_path / "c")


# One process per PYTHONHASHSEED, each with its heap laid out otherwise before pyOpenMS is imported (its element
# table then lies elsewhere, as another process's history leaves it; a PYTHONHASHSEED alone changed the layout only
# by chance), and two small studies each.
_MAKE_TWO = """
import sys
from pathlib import Path
import numpy as np
junk = [np.empty(k % 64) for k in range(int(sys.argv[4]))]
del junk[::2]
from ms2study.simulate.spikein import simulate_spikein
bg, lib, out = (Path(a) for a in sys.argv[1:4])
for seed in (0, 1):
    simulate_spikein(out / str(seed), bg, lib, n_samples=2, n_compounds=6, n_changed=2, seed=seed)
"""


def test_deterministic_across_processes(tmp_path, inputs):
    """The same seed gives byte-identical files in other processes (other PYTHONHASHSEED, other heap layout): the
    [M+H]+ m/z came from pyOpenMS's getMonoWeight, which adds the elements in the order of their addresses in
    memory, so its last bit differed between processes (PYTHONHASHSEED 1, 3, 4 gave one set of mzML files, 2, 5, 6
    another); ms2study.simulate.formula_mass sums them exactly."""
    workflow = str(Path(__file__).parents[1] / "workflow")
    digests = []
    for hash_seed, holes in (("1", 0), ("2", 5000), ("3", 2000)):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed,
               "PYTHONPATH": os.pathsep.join([workflow, os.environ.get("PYTHONPATH", "")])}
        out = tmp_path / f"h{hash_seed}"
        subprocess.run([sys.executable, "-c", _MAKE_TWO, str(inputs[0]), str(inputs[1]), str(out), str(holes)],
                       env=env, check=True, timeout=120)
        digests.append({str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest()
                        for p in sorted(out.rglob("*")) if p.is_file()})
    assert len(digests[0]) == 2 * 7  # 5 tables and files + 2 mzML per study
    for other in digests[1:]:
        assert other == digests[0]


def test_cli_dispatch(tmp_path, inputs):
    assert main(["simulate", str(tmp_path / "s"), "--background", str(inputs[0]), "--library", str(inputs[1]),
                 "--samples", "2", "--compounds", "4", "--n-changed", "2", "--seed", "1"]) == 0
    assert (tmp_path / "s" / "mzml" / "S02.mzML").is_file()


def test_the_compounds_abundance_range_is_chosen_by_quantile(tmp_path, inputs, capsys):
    """Trial AM could not build a low-abundance spike-in study without wrapping the module; trial AN's got no spiked
    MS/MS at all, unsaid."""
    from ms2study.simulate.spikein_background import read_background

    assert main(["simulate", str(tmp_path / "low"), "--background", str(inputs[0]), "--library", str(inputs[1]),
                 "--samples", "2", "--compounds", "4", "--n-changed", "2", "--seed", "1",
                 "--height-quantiles", "0.05", "0.3"]) == 0
    printed = capsys.readouterr().out
    measured = json.loads((tmp_path / "low" / "simulation.json").read_text())["background_measured"]
    assert 0.3 < measured["dda_threshold_quantile"] < 1  # the trigger lies above every spiked apex here
    assert ("0 MS/MS scans of spiked compounds written: every spiked apex lies below the run's DDA trigger (at the "
            f"{measured['dda_threshold_quantile']:.3f} quantile") in printed, printed
    bg = read_background(inputs[0])
    low, high = bg.heights_at(0.05, 0.3)
    assert bg.heights_at(0.05, 0.995) == pytest.approx(bg.height_range) and low < high < bg.height_range[1]
    sim = json.loads((tmp_path / "low" / "simulation.json").read_text())
    assert sim["parameters"]["height_quantiles"] == [0.05, 0.3]
    assert sim["background_measured"]["height_range"] == pytest.approx([low, high])
    # the same draws mapped onto the lower range: every compound in every sample lower than at the default range
    assert main(["simulate", str(tmp_path / "default"), "--background", str(inputs[0]), "--library", str(inputs[1]),
                 "--samples", "2", "--compounds", "4", "--n-changed", "2", "--seed", "1"]) == 0
    written = json.loads((tmp_path / "default" / "simulation.json").read_text())["n_spiked_ms2"]
    assert written > 0 and f"{written} MS/MS scans of spiked compounds written\n" in capsys.readouterr().out
    truth = [pl.read_csv(tmp_path / s / "ground_truth.tsv", separator="\t").sort("sample_id", "inchikey")
             for s in ("low", "default")]
    assert truth[0]["inchikey"].to_list() == truth[1]["inchikey"].to_list()
    assert (truth[0]["abundance"] < truth[1]["abundance"]).all()
    with pytest.raises(InputError, match="bad --height-quantiles 0.5 0.2"):
        simulate_spikein(tmp_path / "bad", inputs[0], inputs[1], n_samples=2, n_compounds=3, n_changed=1,
                         height_quantiles=(0.5, 0.2))
    assert main(["simulate", str(tmp_path / "syn"), "--height-quantiles", "0.1", "0.2"]) != 0  # spike-in mode only


def test_profile_background_refused(tmp_path, inputs):
    write_background(tmp_path / "profile.mzML", profile=True)
    with pytest.raises(InputError, match="profile.mzML.*profile data"):
        simulate_spikein(tmp_path / "o", tmp_path / "profile.mzML", inputs[1], n_samples=2, n_compounds=3,
                         n_changed=1)


def test_ms1_less_background_refused(tmp_path, inputs):
    write_background(tmp_path / "ms2only.mzML", ms1=False)
    with pytest.raises(InputError, match="ms2only.mzML.*no MS1"):
        simulate_spikein(tmp_path / "o", tmp_path / "ms2only.mzML", inputs[1], n_samples=2, n_compounds=3,
                         n_changed=1)


def test_too_few_usable_records_refused(tmp_path, inputs):
    with pytest.raises(InputError, match="lib.mgf.*only 9 structures.*usable"):
        make(tmp_path / "o", inputs, n_compounds=20)
    write_library(tmp_path / "nc.mgf", license_="CC BY-NC")  # no commercial licence: nothing usable
    with pytest.raises(InputError, match="nc.mgf.*only 0 structures"):
        simulate_spikein(tmp_path / "o", inputs[0], tmp_path / "nc.mgf", n_samples=2, n_compounds=3, n_changed=1)
    with pytest.raises(InputError, match="no chemical class has 7"):
        make(tmp_path / "o", inputs, n_compounds=8, n_changed=7)


def test_negative_library_size_or_seed_refused_before_writing(tmp_path, inputs):
    for kw in ({"library_size": -5}, {"seed": -1}):
        with pytest.raises(InputError, match="--library-size 1 or more"):
            make(tmp_path / "o", inputs, **kw)
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_real_qc_run_spiked_compounds_detected(tmp_path):
    bg = SHARED / "mzml" / "171103_PMA_TK_QC_04-4to5min.mzML"
    lib = SHARED / "massbank" / "massbank_dev.mgf.gz"
    if not (bg.is_file() and lib.is_file()):
        pytest.skip(f"real data not available under {SHARED}")
    from ms2study.stages.detect import detect_features

    simulate_spikein(tmp_path, bg, lib, n_samples=2, library_size=2000, seed=0)
    truth = pl.read_csv(tmp_path / "ground_truth.tsv", separator="\t").filter(pl.col("sample_id") == "S02")
    features = detect_features(tmp_path / "mzml" / "S02.mzML", "S02")
    mz, rt = features["mz"].to_numpy(), features["rt_s"].to_numpy()
    strong = truth.filter(pl.col("abundance") >= 1e5)
    found = [bool(np.any((np.abs(mz - r["mz"]) <= 1e-5 * r["mz"]) & (np.abs(rt - r["rt_s"]) <= 5)))
             for r in strong.iter_rows(named=True)]
    assert strong.height >= 10 and np.mean(found) >= 0.8
    assert len(read_mgf_records(tmp_path / "library.mgf")) <= 2000


def test_ions_the_run_cannot_resolve_become_one_centroid(study):
    mz = np.array([300.0, 300.0 + 300e-6 * 3, 301.0, 150.0])  # 3 ppm apart: one centroid; 1 Da: two
    inten = np.array([100.0, 300.0, 50.0, 10.0])
    merged_mz, merged_int = merge_unresolved(mz, inten, 10.0)
    assert merged_mz.tolist() == pytest.approx([150.0, 300.0 + 300e-6 * 3 * 0.75, 301.0])
    assert merged_int.tolist() == [10.0, 400.0, 50.0]
    assert merge_unresolved(mz, inten, 1.0)[0].size == 4
    # the limit is the run's own: the background's closest centroid pairs
    out, _ = study
    limit = json.loads((out / "simulation.json").read_text())["background_measured"]["resolution_ppm"]
    assert 0 < limit < 1e4
    for sid in ("S01", "S04"):
        for s in load(out / "mzml" / f"{sid}.mzML"):
            if s.getMSLevel() == 1 and s.size() > 1:
                m = s.get_peaks()[0]
                assert (np.diff(m) / m[1:] * 1e6 >= limit * 0.999).all()


def test_a_drift_that_reorders_scans_is_refused_before_writing(tmp_path, inputs, caplog):
    with pytest.raises(InputError, match="rt-drift-s 500 moves sample S0.'s scans"):
        make(tmp_path / "s", inputs, rt_drift_s=500.0)
    assert not (tmp_path / "s").exists()
    with caplog.at_level("WARNING"):
        make(tmp_path / "t", inputs, n_samples=2, calibration_ppm=50.0)
    assert any("--calibration-ppm 50" in r.getMessage() for r in caplog.records)


CL37_SHIFT = 36.965902602 - 34.968852682  # 37Cl - 35Cl (AME 2020): where a chlorinated ion's M+2 lies
ETHIPROLE = ("ethiprole", "C13H9Cl2F3N4OS", "Organic compounds; Organoheterocyclic compounds", 2)


def _ppm(a, b) -> np.ndarray:
    return (np.asarray(a) - b) / b * 1e6


def test_isotopes_at_their_true_masses_merged_at_the_run_resolution():
    mono = oms.EmpiricalFormula(ETHIPROLE[1]).getMonoWeight() + PROTON
    for resolution in (1.0, 20.0, 85.0):
        offset, rel = isotope_envelope(ETHIPROLE[1], resolution)
        assert offset[0] == 0.0 and rel[0] == 1.0
        m2 = np.flatnonzero(np.rint(offset) == 2)
        main = m2[np.argmax(rel[m2])]  # 37Cl, not 13C2 (24 ppm higher)
        assert abs(_ppm(mono + offset[main], mono + CL37_SHIFT)) < 2.0, resolution
        assert 0.6 < rel[main] < 0.75  # two Cl: M+2 about 2 x 32 %
        assert np.all(np.diff(mono + offset) / (mono + offset[1:]) * 1e6 > resolution)
        assert m2.size == (1 if resolution > 25 else 2 if resolution > 3.5 else 3)  # 34S apart only at 1 ppm
    # a CHNO compound keeps its 13C ladder
    offset, _ = isotope_envelope("C9H11NO2", 20.0)
    assert offset[1] == pytest.approx(1.00335, abs=3e-4)


def test_spiked_chlorine_isotope_lands_at_its_mass(tmp_path, inputs):
    write_library(tmp_path / "cl.mgf", STRUCTURES + [ETHIPROLE])
    simulate_spikein(tmp_path / "s", inputs[0], tmp_path / "cl.mgf", n_samples=2, n_compounds=len(STRUCTURES) + 1,
                     n_changed=0, rt_drift_s=0.0, calibration_ppm=0.0)
    row = pl.read_csv(tmp_path / "s" / "ground_truth.tsv", separator="\t").filter(
        (pl.col("sample_id") == "S01") & (pl.col("name") == "ethiprole")).row(0, named=True)
    ms1 = [s for s in load(tmp_path / "s" / "mzml" / "S01.mzML") if s.getMSLevel() == 1]
    mz, inten = ms1[int(np.argmin([abs(s.getRT() - row["rt_s"]) for s in ms1]))].get_peaks()
    near = np.flatnonzero(np.abs(mz - row["mz"] - 2.0) < 0.05)
    m2 = mz[near[np.argmax(inten[near])]]
    assert abs(_ppm(m2, row["mz"] + CL37_SHIFT)) < 2.0
    assert abs(_ppm(m2, row["mz"] + 2 * 1.0033548)) > 20.0  # where a 13C ladder would put it


def test_mz_jitter_measured_from_the_background(tmp_path, inputs):
    write_background(tmp_path / "jitter.mzML", mz_jitter_ppm=2.0)
    bg = read_background(tmp_path / "jitter.mzML")
    assert bg.sources["mz_jitter"].startswith("measured") and bg.n_persistent_ions == 30
    assert bg.jitter_ppm == pytest.approx(np.full(bg.jitter_ppm.size, 2.0), rel=0.2)
    assert bg.mz_jitter_ppm([1.0, 1e9]) == pytest.approx(bg.jitter_ppm[[0, -1]])
    assert read_background(inputs[0]).jitter_ppm.max() < 1e-3  # the default background has none
    # the spiked ions carry it: their m/z over the scans of their peaks
    write_library(tmp_path / "lib.mgf")
    simulate_spikein(tmp_path / "s", tmp_path / "jitter.mzML", tmp_path / "lib.mgf", n_samples=2, n_compounds=9,
                     n_changed=2, rt_drift_s=0.0, calibration_ppm=0.0)
    info = json.loads((tmp_path / "s" / "simulation.json").read_text())["background_measured"]
    assert info["mz_jitter_ppm_by_intensity"]["ppm"] == pytest.approx(bg.jitter_ppm.tolist())
    truth = pl.read_csv(tmp_path / "s" / "ground_truth.tsv", separator="\t").filter(pl.col("sample_id") == "S01")
    ms1 = [s for s in load(tmp_path / "s" / "mzml" / "S01.mzML") if s.getMSLevel() == 1]
    errors = []
    for row in truth.iter_rows(named=True):
        for s in ms1:
            if abs(s.getRT() - row["rt_s"]) <= row["fwhm_s"] / 2:
                mz = s.get_peaks()[0]
                nearest = mz[np.argmin(np.abs(mz - row["mz"]))]
                if abs(_ppm(nearest, row["mz"])) < 15:
                    errors.append(_ppm(nearest, row["mz"]))
    assert len(errors) >= 30
    assert 1.3 < 1.4826 * np.median(np.abs(errors)) < 2.8
    # and the spiked MS2 scans' precursors too, as the instrument reports the ion it measured (trials K, M: they were
    # exact, which made the spiked compounds easier to name than the run's own)
    # (a background of even levels, so its DDA threshold lets the spiked compounds be fragmented)
    write_background(tmp_path / "even.mzML", mz_jitter_ppm=2.0, levels=np.full(30, 1e5))
    simulate_spikein(tmp_path / "e", tmp_path / "even.mzML", tmp_path / "lib.mgf", n_samples=2, n_compounds=9,
                     n_changed=2, rt_drift_s=0.0, calibration_ppm=0.0)
    spiked = [s for s in load(tmp_path / "e" / "mzml" / "S01.mzML") if is_spiked(s)]
    true_mz = pl.read_csv(tmp_path / "e" / "ground_truth.tsv", separator="\t")["mz"].unique().to_numpy()
    prec = [_ppm(p.getMZ(), true_mz[np.argmin(np.abs(true_mz - p.getMZ()))]) for s in spiked
            for p in s.getPrecursors()]
    assert len(prec) >= 5 and max(abs(e) for e in prec) < 10 and np.std(prec) > 0.5
    # the isolation target moves with it: the spectra stage reads the precursor as written, no correction
    assert all(not read_precursor(s).corrected and read_precursor(s).precursor_mz == pytest.approx(
        s.getPrecursors()[0].getMZ()) for s in spiked)
    # too few persistent ions: the fixed Orbitrap value
    write_background(tmp_path / "few.mzML", ions=np.linspace(150, 550, 8))
    few = read_background(tmp_path / "few.mzML")
    assert few.jitter_ppm.tolist() == [MZ_JITTER_PPM] and few.sources["mz_jitter"].startswith("fallback")


def test_mz_range_follows_the_ions_not_the_scan_window(tmp_path, caplog):
    ions = np.r_[300.2, 399.8, np.random.default_rng(3).uniform(300.2, 399.8, 28)]
    write_background(tmp_path / "narrow.mzML", ions=ions, scan_window=(100.0, 1000.0))
    with caplog.at_level("WARNING"):
        bg = read_background(tmp_path / "narrow.mzML")
    assert ions.min() - 1e-6 <= bg.mz_range[0] < ions.min() + 2 and ions.max() - 2 < bg.mz_range[1] <= ions.max()
    assert "scan window 100-1000" in bg.sources["mz_range"]
    assert any("span m/z 300-400" in r.getMessage() and "scan window 100-1000" in r.getMessage()
               for r in caplog.records)
    caplog.clear()
    write_background(tmp_path / "wide.mzML", ions=np.linspace(120, 980, 30), scan_window=(100.0, 1000.0))
    with caplog.at_level("WARNING"):
        assert read_background(tmp_path / "wide.mzML").mz_range == pytest.approx((120.0, 980.0), abs=1.0)
    assert not caplog.records


def _pairs_85_ppm(n_ions: int) -> np.ndarray:
    """``n_ions`` ions over m/z 100-600 whose 10 closest pairs are 85 ppm apart, the others far apart."""
    base = np.geomspace(100, 600, n_ions - 10)
    return np.concatenate([base, base[:10] * (1 + 85e-6)])


def test_low_resolution_background_merges_at_its_own_spacing(tmp_path):
    write_background(tmp_path / "tof.mzML", ions=_pairs_85_ppm(150))  # dense: 150 centroids per scan
    bg = read_background(tmp_path / "tof.mzML")
    assert bg.resolution_ppm == pytest.approx(85.0, rel=1e-3) and "quantile" in bg.sources["resolution_ppm"]
    write_background(tmp_path / "sparse.mzML", ions=_pairs_85_ppm(40))  # the same spacings in a sparse run: capped
    sparse = read_background(tmp_path / "sparse.mzML")
    assert sparse.resolution_ppm == 20.0 and "sparse" in sparse.sources["resolution_ppm"]
    write_library(tmp_path / "cl.mgf", STRUCTURES + [ETHIPROLE])
    simulate_spikein(tmp_path / "s", tmp_path / "tof.mzML", tmp_path / "cl.mgf", n_samples=2,
                     n_compounds=len(STRUCTURES) + 1, n_changed=0)
    info = json.loads((tmp_path / "s" / "simulation.json").read_text())["background_measured"]
    assert info["resolution_ppm"] == pytest.approx(85.0, rel=1e-3)
    for s in load(tmp_path / "s" / "mzml" / "S02.mzML"):
        if s.getMSLevel() == 1:
            m = s.get_peaks()[0]
            assert (np.diff(m) / m[1:] * 1e6 >= 85.0 * 0.999).all()


def test_several_backgrounds_alternate_over_the_samples(tmp_path, inputs, capsys):
    """Two injections of one sample (here two different runs): sample i copies background i mod 2, so each group of
    two holds both; the CLI takes several --background files."""
    other = tmp_path / "bg2.mzML"
    write_background(other, ions=np.linspace(150, 550, 25))
    summary = simulate_spikein(tmp_path / "s", [inputs[0], other], inputs[1], n_samples=4, n_compounds=6,
                               n_changed=2, seed=SEED, rt_drift_s=0.0, calibration_ppm=0.0)
    assert summary["backgrounds"] == ["bg.mzML", "bg2.mzML"]
    runs = json.loads((tmp_path / "s" / "simulation.json").read_text())["runs"]
    assert [runs[s]["background"] for s in ("S01", "S02", "S03", "S04")] == ["bg.mzML", "bg2.mzML"] * 2
    # the sheet says it too: a source the samples share beyond the outcome, for the hidden-structure caution
    sheet = pl.read_csv(tmp_path / "s" / "samples.tsv", separator="\t")
    assert sheet["background"].to_list() == ["bg", "bg2", "bg", "bg2"]
    # and config.yaml offers it as a covariate (trial AM: the report named a column the config never mentioned)
    import yaml

    config = (tmp_path / "s" / "config.yaml").read_text()
    assert "  # covariates: [background]" in config and yaml.safe_load(config)["models"]["outcomes"][0]["column"] == \
        "group"
    assert yaml.safe_load(config.replace("  # covariates", "  covariates"))["models"]["covariates"] == ["background"]
    for sid, path in (("S01", inputs[0]), ("S02", other), ("S03", inputs[0]), ("S04", other)):
        written = {s.getNativeID(): s for s in load(tmp_path / "s" / "mzml" / f"{sid}.mzML")}
        for s in load(path):  # every background scan is there, with the background's own MS1 ions among its peaks
            assert s.getNativeID() in written
            if s.getMSLevel() == 1:
                assert np.all(np.isin(s.get_peaks()[0], written[s.getNativeID()].get_peaks()[0]))
    assert main(["simulate", str(tmp_path / "c"), "--background", str(inputs[0]), str(other), "--library",
                 str(inputs[1]), "--samples", "2", "--compounds", "4", "--n-changed", "2", "--seed", "1"]) == 0
    assert json.loads((tmp_path / "c" / "simulation.json").read_text())["backgrounds"] == ["bg.mzML", "bg2.mzML"]
    assert "spiked into copies of bg.mzML and bg2.mzML" in capsys.readouterr().out  # the summary names both


def test_spiked_runs_keep_the_backgrounds_instrument(tmp_path, inputs):
    """A second fresh user's trial on a TripleTOF background: the spiked runs carried no instrument, so the qc
    stage's TOF window check could not be tried on a spike-in study. Each sample keeps the background's model and
    mass analyzers."""
    from ms2study.io.instrument import read_instrument

    exp = load(inputs[0])
    instrument = oms.Instrument()
    instrument.setName("TripleTOF 6600")
    analyzer = oms.MassAnalyzer()
    analyzer.setType(oms.MassAnalyzer.AnalyzerType.TOF)
    instrument.setMassAnalyzers([analyzer])
    exp.setInstrument(instrument)
    background = tmp_path / "tof.mzML"
    oms.MzMLFile().store(str(background), exp)
    out = tmp_path / "study"
    simulate_spikein(out, background, inputs[1], n_samples=2, n_compounds=4, n_changed=1, fold_change=3.0, seed=SEED)
    assert read_instrument(background).analyzers == ("time-of-flight",)
    assert read_instrument(out / "mzml" / "S01.mzML") == read_instrument(background)


def test_a_continuous_outcome_can_carry_the_planted_effect(tmp_path, inputs, capsys):
    """effect "score": the changed compounds follow the sheet's continuous ``score`` (0-10, evenly spaced, in a
    seeded order of its own), fold_change x from its lowest to its highest value; config.yaml names the outcome
    (a trial had to edit mzML files to plant a continuous relation)."""
    out = tmp_path / "score"
    summary = make(out, inputs, n_samples=5, effect="score")
    assert summary["effect"] == "score"
    sheet = pl.read_csv(out / "samples.tsv", separator="\t")
    assert sorted(sheet["score"].to_list()) == pytest.approx([0.0, 2.5, 5.0, 7.5, 10.0])
    assert "{column: score, type: continuous}" in (out / "config.yaml").read_text()
    truth = pl.read_csv(out / "ground_truth.tsv", separator="\t")
    runs, rt_range = _runs(out)
    undrifted = np.array([s.getRT() for s in load(inputs[0]) if s.getMSLevel() == 1])
    for i, sid in enumerate(sheet["sample_id"].to_list()):
        ms1 = [s for s in load(out / "mzml" / f"{sid}.mzML") if s.getMSLevel() == 1]
        rts = np.array([s.getRT() for s in ms1])
        rows = truth.filter(pl.col("sample_id") == sid)
        variation = sample_variation(SEED, i, rows["mz"].to_numpy(), rows["rt_s_undrifted"].to_numpy(), rt_range)
        for row, var in zip(rows.iter_rows(named=True), variation, strict=True):
            exponent = (row["score"] - 5.0) / 10.0 if row["changed"] else 0.0
            assert row["log_fold"] == pytest.approx(np.log(3.0) * exponent, abs=1e-6)
            j = int(np.argmin(np.abs(rts - row["rt_s"])))
            mz, inten = ms1[j].get_peaks()
            hit = np.abs(mz - row["mz_acquired"]) <= 5e-6 * row["mz"]
            sigma = row["fwhm_s"] / 2.3548
            expected = row["height"] * var * np.exp(-0.5 * ((undrifted[j] - row["rt_s_undrifted"]) / sigma) ** 2)
            assert inten[hit].max() == pytest.approx(expected * 3.0 ** exponent, rel=1e-3)
    with pytest.raises(InputError, match="unknown effect"):
        make(tmp_path / "bad", inputs, effect="age")
    capsys.readouterr()
    assert main(["simulate", str(tmp_path / "cli"), "--background", str(inputs[0]), "--library", str(inputs[1]),
                 "--samples", "3", "--compounds", "4", "--n-changed", "2", "--effect", "score"]) == 0
    assert "score" in pl.read_csv(tmp_path / "cli" / "samples.tsv", separator="\t").columns
    # a trial read "3.0x higher in the cases" for an effect that follows the score, and group as carrying it
    said = capsys.readouterr().out
    assert "follow the sheet's score (0 to 10)" in said and "group (case / control) carries no planted effect" in said
    assert "higher in the cases" not in said
    assert "# group carries no planted effect" in (tmp_path / "cli" / "config.yaml").read_text()
    # with nothing planted the config says so of both outcomes (trial AZ read it as score carrying the effect)
    null = make(tmp_path / "null", inputs, n_samples=3, n_compounds=4, n_changed=0, effect="score")
    assert not null["planted_class"] and "# neither group nor score carries a planted effect" in (
        tmp_path / "null" / "config.yaml").read_text()
    assert main(["simulate", str(tmp_path / "syn"), "--effect", "score"]) != 0  # spike-in mode only


def test_the_truth_records_the_realised_fold_and_no_fold_change_when_nothing_changed(study, tmp_path, inputs):
    """A fresh user's trial: ground_truth.tsv marked a compound changed with fold 2.5 whose abundances differed
    0.99x between cases and controls (its per-sample variation is large), and simulation.json recorded fold_change
    3.0 with --n-changed 0. The truth now has the realised fold beside the planted one, and no fold without a change."""
    out, summary = study
    truth = pl.read_csv(out / "ground_truth.tsv", separator="\t")
    assert truth.columns[truth.columns.index("fold") + 1] == "realised_fold"
    log = truth.with_columns(pl.col("abundance").log().alias("ln"))
    for k in range(6):
        rows = log.filter(pl.col("compound_id") == k)
        expected = np.exp(rows.filter(pl.col("group") == "case")["ln"].mean()
                          - rows.filter(pl.col("group") == "control")["ln"].mean())
        assert rows["realised_fold"].n_unique() == 1
        assert rows["realised_fold"][0] == pytest.approx(expected, rel=1e-5)  # TSV: 6 significant digits
    assert summary["fold_change"] == 3.0
    assert json.loads((out / "simulation.json").read_text())["fold_change"] == 3.0
    none = make(tmp_path / "none", inputs, n_changed=0)
    assert none["fold_change"] is None and json.loads((tmp_path / "none" / "simulation.json").read_text())[
        "fold_change"] is None
    unchanged = pl.read_csv(tmp_path / "none" / "ground_truth.tsv", separator="\t")
    assert not unchanged["changed"].any() and (unchanged["fold"] == 1.0).all()
    # effect "score": the realised fold runs from the lowest to the highest score, as fold does there
    scored = make(tmp_path / "score", inputs, n_samples=5, effect="score")
    assert scored["fold_change"] == 3.0
    rows = pl.read_csv(tmp_path / "score" / "ground_truth.tsv", separator="\t").filter(pl.col("compound_id") == 0)
    slope = np.polyfit(rows["score"].to_numpy(), np.log(rows["abundance"].to_numpy()), 1)[0]
    assert rows["realised_fold"][0] == pytest.approx(np.exp(10 * slope), rel=1e-4)
