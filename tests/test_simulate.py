"""The study simulator: curated compounds, file contents, determinism, and what a pipeline must be able to find."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import polars as pl
import pyopenms as oms
import pytest
from conftest import digest_without_appended
import yaml
from rdkit import Chem
from rdkit.Chem.rdMolDescriptors import CalcMolFormula

from ms2study.cli import main
from ms2study.core.cleaning import clean_peaks
from ms2study.core.errors import InputError
from ms2study.kernels import cosine
from ms2study.simulate import ions
from ms2study.simulate.compounds import build_compounds, load_compounds
from ms2study.simulate.derivatives import BACKGROUND_MZ_RANGE, background_compounds, realistic_compounds
from ms2study.simulate.design import design_realistic, design_study
from ms2study.simulate.params import merge_params
from ms2study.simulate.study import CONFIG_YAML, simulate_features, simulate_study

N_SAMPLES = 2
SEED = 3

ISOMER_SETS = [
    ["L-leucine", "L-isoleucine", "L-norleucine"],
    ["citric acid", "isocitric acid"],
    ["D-glucose", "D-galactose", "D-mannose", "D-fructose"],
    ["glucose 6-phosphate", "glucose 1-phosphate", "fructose 6-phosphate"],
    ["2-hydroxybenzoic acid", "3-hydroxybenzoic acid", "4-hydroxybenzoic acid"],
    ["L-alanine", "sarcosine", "beta-alanine"],
    ["L-threonine", "L-homoserine"],
    ["L-valine", "L-norvaline", "betaine"],
    ["gamma-aminobutyric acid", "L-2-aminobutyric acid", "3-aminoisobutyric acid", "N,N-dimethylglycine"],
    ["theobromine", "theophylline", "paraxanthine"],
    ["valeryl-L-carnitine", "isovaleryl-L-carnitine", "2-methylbutyryl-L-carnitine"],
    ["chenodeoxycholic acid", "deoxycholic acid", "ursodeoxycholic acid"],
]


def greedy_cosine(m1: np.ndarray, i1: np.ndarray, m2: np.ndarray, i2: np.ndarray, tol: float = 0.01) -> float:
    """Greedy cosine with the pipeline's scoring kernel (matchms semantics)."""
    return cosine.cosine_pair(m1, i1.astype(np.float64), m2, i2.astype(np.float64), tol, 0.0, 1.0, 0.0, False)[0]


def read_mgf(path: Path) -> list[dict]:
    entries, current = [], None
    for line in path.read_text().splitlines():
        line = line.strip()
        if line == "BEGIN IONS":
            current = {"mz": [], "intensity": []}
        elif line == "END IONS":
            entries.append(current)
        elif "=" in line:
            key, value = line.split("=", 1)
            current[key] = value
        elif line and current is not None:
            mz, inten = line.split()
            current["mz"].append(float(mz))
            current["intensity"].append(float(inten))
    return entries


def load_mzml(path: Path) -> oms.MSExperiment:
    exp = oms.MSExperiment()
    oms.MzMLFile().load(str(path), exp)
    return exp


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Path:
    outdir = tmp_path_factory.mktemp("study") / "sim"
    summary = simulate_study(outdir, n_samples=N_SAMPLES, seed=SEED)
    assert summary["n_samples"] == N_SAMPLES
    return outdir


# ---------------------------------------------------------------------------------------------- compound list


def test_compound_list_is_valid_and_canonical():
    table = load_compounds()
    assert table.columns == ["compound_id", "name", "smiles", "chemical_class"]
    assert table.height >= 150
    assert table["compound_id"].n_unique() == table["name"].n_unique() == table.height
    keys = set()
    for row in table.iter_rows(named=True):
        mol = Chem.MolFromSmiles(row["smiles"])
        assert mol is not None, row["name"]
        assert Chem.MolToSmiles(mol) == row["smiles"], f"{row['name']}: SMILES not canonical"
        keys.add(Chem.MolToInchiKey(mol))
    assert len(keys) == table.height, "two entries are the same structure"
    assert table["chemical_class"].n_unique() >= 10


def test_isomer_sets_share_a_formula_and_differ_in_structure():
    table = load_compounds()
    smiles = dict(zip(table["name"], table["smiles"], strict=True))
    for names in ISOMER_SETS:
        mols = [Chem.MolFromSmiles(smiles[n]) for n in names]
        formulas = {CalcMolFormula(m) for m in mols}
        assert len(formulas) == 1, (names, formulas)
        assert len({Chem.MolToInchiKey(m) for m in mols}) == len(names)
    assert CalcMolFormula(Chem.MolFromSmiles(smiles["L-leucine"])) == "C6H13NO2"


# ---------------------------------------------------------------------------------------------- files


def test_study_files_and_tables(study):
    assert (study / "config.yaml").read_text() == CONFIG_YAML
    config = yaml.safe_load((study / "config.yaml").read_text())
    assert config == {"library": "library.mgf", "models": {"outcomes": [
        {"column": "group", "type": "binary", "positive_class": "case"},
        {"column": "age", "type": "continuous"}]}}
    sheet = pl.read_csv(study / "samples.tsv", separator="\t")
    assert sheet.columns == ["sample_id", "file", "group", "age"]
    assert sheet["sample_id"].to_list() == ["S01", "S02"]
    assert sorted(sheet["group"].to_list()) == ["case", "control"]
    assert all((study / f).exists() for f in sheet["file"])
    truth = pl.read_csv(study / "ground_truth.tsv", separator="\t")
    n_compounds = load_compounds().height
    assert truth.height == N_SAMPLES * n_compounds
    for column in ("sample_id", "compound_id", "name", "inchikey", "chemical_class", "mz", "rt_s", "abundance",
                   "present", "above_noise", "in_library"):
        assert column in truth.columns
    assert truth["in_library"].all()
    assert (truth.filter(~pl.col("present"))["abundance"] == 0).all()
    assert truth.filter(pl.col("above_noise"))["abundance"].min() >= 10_000
    assert 0.5 < truth["above_noise"].mean() < 1.0  # most compounds are visible, some are not
    meta = json.loads((study / "simulation.json").read_text())
    assert meta["seed"] == SEED and meta["fold_change"] == 3.0
    assert meta["planted_class"] in set(truth["chemical_class"])


def test_library_mgf(study):
    entries = read_mgf(study / "library.mgf")
    table = load_compounds()
    assert len(entries) == table.height
    for entry, row in zip(entries, table.iter_rows(named=True), strict=True):
        assert entry["SPECTRUM_ID"] == f"SIM{row['compound_id']}"
        assert entry["CHARGE"] == "1+" and entry["IONMODE"] == "positive"
        assert entry["INCHIKEY"] == ions.inchikey(row["smiles"])
        assert float(entry["PEPMASS"]) == pytest.approx(ions.precursor_mz(row["smiles"]), abs=1e-6)
        assert entry["ADDUCT"] in ("[M+H]+", "[M]+") and entry["COMPOUND_CLASS"] == row["chemical_class"]
        assert len(entry["mz"]) >= 3 and max(entry["intensity"]) == pytest.approx(1000.0)


def test_isobaric_compounds_elute_apart(study):
    truth = pl.read_csv(study / "ground_truth.tsv", separator="\t")
    for _, run in truth.group_by("sample_id"):
        mz, rt = run["mz"].to_numpy(), run["rt_s"].to_numpy()
        close = np.abs(mz[:, None] - mz[None, :]) <= 20e-6 * mz[:, None]
        np.fill_diagonal(close, False)
        i, j = np.nonzero(close)
        assert i.size > 20  # isomers are there...
        assert np.all(np.abs(rt[i] - rt[j]) >= 30.0)  # ...and separable
        assert rt.min() > 0 and rt.max() < 600


def test_mzml_structure(study):
    exp = load_mzml(study / "mzml" / "S01.mzML")
    spectra = list(exp)
    assert [s.getNativeID() for s in spectra] == [f"scan={k}" for k in range(1, len(spectra) + 1)]
    rts = np.array([s.getRT() for s in spectra])
    assert np.all(np.diff(rts) > 0) and rts[0] >= 0 and rts[-1] <= 601
    ms2 = [s for s in spectra if s.getMSLevel() == 2]
    assert 200 < len(ms2) < len(spectra)
    assert spectra[0].getType() == oms.SpectrumSettings.SpectrumType.CENTROID
    for s in ms2:
        (p,) = s.getPrecursors()
        assert p.getCharge() == 1 and p.getIntensity() >= 25_000
        assert p.getIsolationWindowLowerOffset() == p.getIsolationWindowUpperOffset() == 0.5
    assert (study / "mzml" / "S01.mzML").stat().st_size < 15e6


def test_same_seed_same_bytes_other_seed_other_bytes(study, tmp_path):
    again = tmp_path / "again"
    assert main(["simulate", str(again), "--samples", str(N_SAMPLES), "--seed", str(SEED)]) == 0
    for name in ("mzml/S01.mzML", "mzml/S02.mzML", "samples.tsv", "ground_truth.tsv", "library.mgf",
                 "simulation.json", "config.yaml"):
        assert (again / name).read_bytes() == (study / name).read_bytes(), name
    other = tmp_path / "other"
    simulate_study(other, n_samples=N_SAMPLES, seed=SEED + 1)
    assert (other / "mzml/S01.mzML").read_bytes() != (study / "mzml/S01.mzML").read_bytes()


def test_bad_parameters_are_named(tmp_path):
    with pytest.raises(InputError, match="bogus"):
        simulate_study(tmp_path / "x", n_samples=2, params={"bogus": 1})
    assert main(["simulate", str(tmp_path / "y"), "--params", '{"fold_chnge": 2}']) == 1
    assert not (tmp_path / "y").exists()


def test_planted_effect_and_variation():
    compounds = build_compounds(load_compounds(), merge_params(None))
    design = design_study(compounds, 40, seed=11, p=merge_params({"planted_class": "acylcarnitine"}))
    groups = np.array([s["group"] for s in design["samples"]])
    assert (groups == "case").sum() == 20
    log_ab = np.log(np.where(design["present"], design["abundance"], np.nan))
    diff = np.nanmean(log_ab[groups == "case"], axis=0) - np.nanmean(log_ab[groups == "control"], axis=0)
    planted = np.array([c.chemical_class == "acylcarnitine" for c in compounds])
    assert np.exp(diff[planted].mean()) == pytest.approx(3.0, rel=0.25)
    assert abs(diff[~planted].mean()) < 0.1
    assert 0.25 < np.nanstd(log_ab, axis=0).mean() < 0.5  # biological variation
    assert 0 < (~design["present"]).sum() < 0.05 * design["present"].size


# ---------------------------------------------------------------------------------------------- acceptance


def test_features_ms2_and_library_matches_are_findable(study):
    truth = pl.read_csv(study / "ground_truth.tsv", separator="\t").filter(pl.col("sample_id") == "S01")
    exp = load_mzml(study / "mzml" / "S01.mzML")
    ms1 = oms.MSExperiment()
    for s in exp:
        if s.getMSLevel() == 1:
            ms1.addSpectrum(s)
    mtd = oms.MassTraceDetection()
    params = mtd.getParameters()
    params.setValue("noise_threshold_int", 3000.0)
    mtd.setParameters(params)
    traces = mtd.run(ms1, 0)
    features = oms.FeatureMap()
    oms.FeatureFindingMetabo().run(oms.ElutionPeakDetection().detectPeaks(traces), features)
    f_mz = np.array([f.getMZ() for f in features])
    f_rt = np.array([f.getRT() for f in features])
    visible = truth.filter(pl.col("above_noise"))
    found = [np.any((np.abs(f_mz - r["mz"]) <= 10e-6 * r["mz"]) & (np.abs(f_rt - r["rt_s"]) <= 5.0))
             for r in visible.iter_rows(named=True)]
    assert np.mean(found) >= 0.9
    assert (visible["n_ms2"] > 0).mean() >= 0.8

    library = read_mgf(study / "library.mgf")
    lib_mz = np.array([float(e["PEPMASS"]) for e in library])
    lib_peaks = [clean_peaks(np.array(e["mz"]), np.array(e["intensity"]), float(e["PEPMASS"])) for e in library]
    present = truth.filter(pl.col("present"))
    n = hits = 0
    for s in exp:
        if s.getMSLevel() != 2:
            continue
        prec, rt = s.getPrecursors()[0].getMZ(), s.getRT()
        here = present.filter(((pl.col("mz") - prec).abs() <= 10e-6 * prec) & ((pl.col("rt_s") - rt).abs() <= 10))
        if here.height == 0:
            continue  # background ion
        true_name = here.sort("abundance", descending=True)["name"][0]
        query = clean_peaks(*s.get_peaks(), prec)
        candidates = np.nonzero(np.abs(lib_mz - prec) <= 0.01)[0]
        scores = [greedy_cosine(query[0], query[1], *lib_peaks[c]) for c in candidates]
        n += 1
        hits += library[candidates[int(np.argmax(scores))]]["NAME"] == true_name
    assert n >= 150
    assert 0.8 <= hits / n < 1.0  # noisy enough that isomers are sometimes confused, clean enough to identify


# ---------------------------------------------------------------------------------------------- realistic profile
# Small realistic studies here (a few hundred background compounds); the full-size one is in the slow tests.

SMALL = {"n_background_compounds": 300}


def test_demo_truth_has_the_planted_fold_and_the_realised_one(study):
    """Trial AP: the demo's truth lacked the spike-in truth's changed / fold / realised_fold; the realised fold is
    recomputed here from the abundances (absent runs left out) and the sheet's groups."""
    truth = pl.read_csv(study / "ground_truth.tsv", separator="\t")
    planted = json.loads((study / "simulation.json").read_text())["planted_class"]
    assert truth["changed"].to_list() == (truth["chemical_class"] == planted).to_list() and truth["changed"].any()
    assert set(truth.filter("changed")["fold"].to_list()) == {3.0}
    assert set(truth.filter(~pl.col("changed"))["fold"]) == {1.0}
    np.testing.assert_allclose(truth["log_fold"].to_numpy(), np.log(truth["fold"].to_numpy()), atol=1e-6)
    group = dict(pl.read_csv(study / "samples.tsv", separator="\t").select("sample_id", "group").iter_rows())
    checked = 0
    for cid, rows in truth.group_by("compound_id"):
        ln = {g: [np.log(a) for s, a in zip(rows["sample_id"], rows["abundance"]) if group[s] == g and a > 0]
              for g in ("case", "control")}
        got = rows["realised_fold"][0]
        if ln["case"] and ln["control"]:
            assert got == pytest.approx(np.exp(np.mean(ln["case"]) - np.mean(ln["control"])), rel=1e-5)
            checked += 1
        else:
            assert got is None
    assert checked > 0.5 * truth["compound_id"].n_unique()


def test_demo_is_unchanged_by_the_realistic_profile(study):
    """The demo's truth and summary are those of the simulator before the realistic profile existed (seed 3,
    2 samples; hashes taken from commit 6cef79f's code)."""
    digest = {name: hashlib.sha256((study / name).read_bytes()).hexdigest() for name in
              ("simulation.json", "samples.tsv")}
    digest["ground_truth.tsv"] = digest_without_appended(study / "ground_truth.tsv", "demo")
    assert digest == {
        "ground_truth.tsv": "6f7293e86ab2f3218a8e48150ef3c984bf38273d31801297e9b6a45c3513962e",
        "simulation.json": "be421e726d4739bdbfeda9b41502dfb89817472b2b01fb0b0e954173ecdb74d3",
        "samples.tsv": "9aaac04cf9b3c0e6aef5fb29fa5af80d35c7993c2f2cb903faf30c53d4b41e35",
    }


def test_profiles_and_their_parameters_are_checked():
    with pytest.raises(InputError, match="belong to the realistic profile"):
        merge_params({"n_changed": 5})
    with pytest.raises(InputError, match="unknown simulation profile"):
        merge_params(None, "semi-real")
    with pytest.raises(InputError, match="effect_direction"):
        merge_params({"effect_direction": "sideways"}, "realistic")
    with pytest.raises(InputError, match="n_changed"):
        merge_params({"n_changed": -1}, "realistic")
    p = merge_params(None, "realistic")
    assert p["n_background_compounds"] >= 1000 and p["abundance_log_sd"] >= 1.4  # thousands, 3+ decades


def test_background_compounds_are_derivatives_outside_the_library():
    p = merge_params(SMALL, "realistic")
    reference = build_compounds(load_compounds(), p)
    background = background_compounds(reference, 300, seed=4, p=p)
    assert len(background) == 300 and not any(c.in_library for c in background)
    keys = [c.inchikey.split("-")[0] for c in background]
    # no skeleton twice, none a library compound's (stereoisomers of a library compound included)
    assert len(set(keys)) == len(keys) and not set(keys) & {c.inchikey.split("-")[0] for c in reference}
    by_id = {c.compound_id: c for c in reference}
    for c in background[:50]:
        parent = by_id[c.parent]
        assert c.chemical_class == parent.chemical_class and c.transformation in c.name
        assert BACKGROUND_MZ_RANGE[0] <= c.mz <= BACKGROUND_MZ_RANGE[1]
        assert c.spectrum_mz.size >= 1 and c.spectrum_intensity.max() == pytest.approx(1.0)
        # a derivative's spectrum shares peaks with its parent's, unshifted or shifted by the mass difference
        shared = [np.any(np.abs(parent.spectrum_mz - m) < 0.01) or np.any(
            np.abs(parent.spectrum_mz + (c.mz - parent.mz) - m) < 0.01) for m in c.spectrum_mz]
        assert np.mean(shared) >= 0.5, c.name
    again = background_compounds(reference, 300, seed=4, p=p)
    assert [c.smiles for c in again] == [c.smiles for c in background]
    assert [c.smiles for c in background_compounds(reference, 300, seed=5, p=p)] != [
        c.smiles for c in background]


@pytest.mark.parametrize(("direction", "effect_set"), [("up", "class"), ("mixed", "pathway"), ("down", "class")])
def test_realistic_design_plants_a_sparse_effect(direction, effect_set):
    p = merge_params({**SMALL, "n_changed": 10, "fold_change": 2.0, "effect_direction": direction,
                               "effect_set": effect_set, "planted_class": "amino_acid"}, "realistic")
    compounds = realistic_compounds(seed=2, p=p)
    design = design_realistic(compounds, 60, seed=2, p=p)
    changed = design["changed"]
    assert len(changed) == 10 and all(compounds[i].chemical_class == "amino_acid" for i in changed)
    assert all(compounds[i].in_library for i in changed) == (effect_set == "class")
    groups = np.array([s["group"] for s in design["samples"]])
    assert (groups == "case").sum() == 30
    log_ab = np.log(np.where(design["present"], design["abundance"], np.nan))
    diff = np.nanmean(log_ab[groups == "case"], axis=0) - np.nanmean(log_ab[groups == "control"], axis=0)
    signs = np.sign(design["log_fold"][changed])
    assert set(signs) == {"up": {1.0}, "down": {-1.0}, "mixed": {-1.0, 1.0}}[direction]
    assert np.mean(diff[changed] * signs) == pytest.approx(np.log(2.0), abs=0.25)
    others = np.setdiff1d(np.arange(len(compounds)), changed)
    assert abs(np.nanmean(diff[others])) < 0.05 and np.nanstd(diff[others]) < 0.5
    # realistic spread: abundances over 3+ decades, per-compound variation about the profile's
    base = np.nanmean(log_ab, axis=0)
    assert np.log10(np.exp(np.quantile(base, 0.99) - np.quantile(base, 0.01))) > 3.0
    assert 0.4 < np.median(np.nanstd(log_ab[groups == "control"], axis=0)) < 0.8
    # variation shared by all compounds of a sample (the sample factor) is there
    assert np.std(np.nanmedian(log_ab - np.nanmean(log_ab, axis=0), axis=1)) > 0.1


def test_planted_set_must_fit_its_class():
    p = merge_params({**SMALL, "n_changed": 20, "planted_class": "bile_acid"}, "realistic")
    compounds = realistic_compounds(seed=0, p=p)
    with pytest.raises(InputError, match="bile_acid"):
        design_realistic(compounds, 8, seed=0, p=p)


def test_simulate_features_matches_the_study_and_shares_spectra():
    known = simulate_features(6, seed=7, params={**SMALL, "n_changed": 5})
    p = merge_params({**SMALL, "n_changed": 5}, "realistic")
    compounds = realistic_compounds(7, p)
    design = design_realistic(compounds, 6, 7, p)
    assert known.features["compound_id"].to_list() == [c.compound_id for c in compounds]
    assert known.features["changed"].sum() == 5 and known.samples.height == 6
    detected = np.isfinite(known.intensity)
    assert np.nanmin(known.intensity) >= p["detection_limit"]
    ratio = np.log(known.intensity[detected] / design["abundance"][detected])
    assert abs(ratio.mean()) < 0.02 and ratio.std() == pytest.approx(p["technical_log_sd"], rel=0.2)
    assert 0.05 < 1 - detected.mean() < 0.4  # below the detection limit: missing, as in real tables
    # fragmented only above the DDA threshold; equal keys, equal peaks; the precursor is cleaned away
    spectra = known.spectra
    j = np.array([int(f[1:]) for f in spectra["feature_id"]])
    s = np.array([known.samples["sample_id"].to_list().index(x) for x in spectra["sample_id"]])
    assert np.all(design["abundance"][s, j] * np.exp(4 * p["technical_log_sd"]) >= p["dda_min_intensity"])
    for _, group in spectra.group_by("spectrum_key"):
        assert all(m == group["mz"][0].to_list() for m in group["mz"].to_list())
    assert (spectra["mz"].list.max() < spectra["precursor_mz"] - 1.5).all()
    table = known.features_table("S02")
    assert table.height == int(detected[1].sum()) and table["intensity"].min() >= p["detection_limit"]


@pytest.mark.slow
def test_realistic_study_looks_like_a_real_run(tmp_path):
    """A full-size realistic study of 2 samples through the detect and spectra stages: statistics in the ranges
    measured on the real Q Exactive QC runs (module docstring), in well under a few minutes."""
    import time

    from ms2study.stages.detect import detect_features
    from ms2study.stages.spectra import extract_spectra

    started = time.perf_counter()
    assert main(["simulate", str(tmp_path / "real"), "--realistic", "--samples", "2", "--seed", "1"]) == 0
    assert time.perf_counter() - started < 120
    summary = json.loads((tmp_path / "real" / "simulation.json").read_text())
    assert summary["profile"] == "realistic"
    assert summary["n_background_compounds"] >= 2000 and len(summary["changed_compounds"]) == 12
    library = read_mgf(tmp_path / "real" / "library.mgf")
    assert len(library) == load_compounds().height  # background compounds are unknowns
    truth = pl.read_csv(tmp_path / "real" / "ground_truth.tsv", separator="\t")
    assert truth.filter(pl.col("changed"))["compound_id"].n_unique() == 12
    features = detect_features(tmp_path / "real" / "mzml" / "S01.mzML", "S01")
    spectra = extract_spectra(tmp_path / "real" / "mzml" / "S01.mzML", features, "S01")
    assert features.height > 1500  # thousands of compounds, most detected
    # the Orbitrap resolves ~19.5 ppm (QC run 04's closest centroids): co-eluting isomers and isobars closer than
    # that are one centroid, never two (as two, detection split one ion's trace into two features: session 19)
    exp = oms.MSExperiment()
    oms.MzMLFile().load(str(tmp_path / "real" / "mzml" / "S01.mzML"), exp)
    p = merge_params(None, "realistic")
    closest = []
    for spectrum in exp:
        if spectrum.getMSLevel() != 1:
            continue
        mz, inten = spectrum.get_peaks()
        mz = np.sort(mz[inten >= 10 * p["electronic_noise_level"]])  # ions, not random electronic noise
        if mz.size > 1:
            closest.append((np.diff(mz) / mz[1:] * 1e6).min())
    # centroids carry their own m/z error (1.5-4 ppm), so merged neighbours can land a little closer than 19.5
    assert np.quantile(closest, 0.01) > p["resolution_ppm"] - 8, np.quantile(closest, 0.01)
    mz, rt = features["mz"].to_numpy(), features["rt_s"].to_numpy()
    same = (np.abs(mz[:, None] - mz[None, :]) < 5e-6 * mz[:, None]) & (np.abs(rt[:, None] - rt[None, :]) < 1.0)
    assert (same.sum() - len(mz)) / 2 < 0.01 * len(mz)  # one ion, one feature (was ~7 % of features paired)
    height = np.log10(features["height"].to_numpy())
    assert 2.0 < np.quantile(height, 0.99) - np.quantile(height, 0.01) < 4.0
    peaks = spectra["mz"].list.len().to_numpy()
    assert 10 <= np.median(peaks) <= 30 and np.quantile(peaks, 0.1) < 10  # QC runs: median 20; few-peak spectra
    assert 0.3 < spectra["feature_id"].is_not_null().mean()


_ISOTOPES = """
import sys, hashlib
import numpy as np
junk = [np.empty(k % 64) for k in range(int(sys.argv[1]))]
del junk[::2]
from ms2study.simulate import compounds
digest = hashlib.sha256()
for smiles in compounds.load_compounds()["smiles"].to_list():
    digest.update(np.asarray(compounds.isotope_ratios(smiles), dtype=np.float64).tobytes())
print(digest.hexdigest())
"""


def test_isotope_patterns_are_the_same_in_every_process():
    """pyOpenMS's coarse isotope generator convolves the elements in the order of their addresses in memory: under
    another heap layout its ratios differed by up to 6e-8, and one seed gave other mzML files in another process.
    The simulator's own convolution (alphabetical order) gives the same bytes whatever the layout, and agrees with
    pyOpenMS's pattern to 1e-6."""
    import os
    import subprocess
    import sys

    workflow = str(Path(__file__).parents[1] / "workflow")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([workflow, os.environ.get("PYTHONPATH", "")])}
    digests = {subprocess.run([sys.executable, "-c", _ISOTOPES, str(holes)], env={**env, "PYTHONHASHSEED": str(k)},
                              check=True, capture_output=True, text=True, timeout=120).stdout
               for k, holes in enumerate((0, 5000, 2000))}
    assert len(digests) == 1
    from ms2study.simulate.compounds import isotope_ratios

    for smiles in load_compounds()["smiles"].to_list()[:40]:
        formula = ions.ion_formula(smiles)
        dist = oms.EmpiricalFormula(formula).getIsotopeDistribution(oms.CoarseIsotopePatternGenerator(4))
        probs = np.array([p.getIntensity() for p in dist.getContainer()])
        theirs = (probs / probs[0])[probs / probs[0] >= 0.005]
        ours = isotope_ratios(smiles)
        assert ours.shape == theirs.shape and np.allclose(ours, theirs, rtol=0, atol=1e-6)


def test_a_realistic_study_without_a_planted_effect_says_what_it_still_plants(tmp_path):
    """Trial P: `--params '{"n_changed": 0}'` printed "no planted effect" while 4 compounds still rose with age, and
    simulation.json kept a fold change and direction for no changed compound."""
    from ms2study.simulate.command import summary_text

    summary = simulate_study(tmp_path / "null", n_samples=4, seed=5, profile="realistic",
                             params={**SMALL, "n_changed": 0})
    assert summary["changed_compounds"] == [] and summary["fold_change"] is None
    assert summary["effect_direction"] is None and len(summary["age_compounds"]) == 4
    said = summary_text(summary, tmp_path / "null")
    assert "no planted effect; 4 compounds rise with the sheet's age (params key n_age_compounds, 0 for none)" in said
    # named, without the truth's id (trial AP read "C237" as the report's consensus feature C237; trial AY followed
    # "(ground_truth compound_id C237)" to the report's C237, another compound)
    first = summary["age_compounds"][0]
    assert summary["age_compound_names"][0] in said and first not in said
    assert "ground_truth.tsv's compound ids are not the report's consensus feature ids" in said
    quiet = simulate_study(tmp_path / "none", n_samples=4, seed=5, profile="realistic",
                           params={**SMALL, "n_changed": 0, "n_age_compounds": 0})
    assert "rise with" not in summary_text(quiet, tmp_path / "none")
