"""The study simulator: curated compounds, file contents, determinism, and what a pipeline must be able to find."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pyopenms as oms
import pytest
import yaml
from rdkit import Chem
from rdkit.Chem.rdMolDescriptors import CalcMolFormula

from ms2study import fragment, scoring, simulate
from ms2study.cleaning import clean_peaks
from ms2study.cli import main
from ms2study.errors import InputError

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
    return scoring.cosine_pair(m1, i1.astype(np.float64), m2, i2.astype(np.float64), tol, 0.0, 1.0, 0.0, False)[0]


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
    summary = simulate.simulate_study(outdir, n_samples=N_SAMPLES, seed=SEED)
    assert summary["n_samples"] == N_SAMPLES
    return outdir


# ---------------------------------------------------------------------------------------------- compound list


def test_compound_list_is_valid_and_canonical():
    table = simulate.load_compounds()
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
    table = simulate.load_compounds()
    smiles = dict(zip(table["name"], table["smiles"], strict=True))
    for names in ISOMER_SETS:
        mols = [Chem.MolFromSmiles(smiles[n]) for n in names]
        formulas = {CalcMolFormula(m) for m in mols}
        assert len(formulas) == 1, (names, formulas)
        assert len({Chem.MolToInchiKey(m) for m in mols}) == len(names)
    assert CalcMolFormula(Chem.MolFromSmiles(smiles["L-leucine"])) == "C6H13NO2"


# ---------------------------------------------------------------------------------------------- files


def test_study_files_and_tables(study):
    assert (study / "config.yaml").read_text() == simulate.CONFIG_YAML
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
    n_compounds = simulate.load_compounds().height
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
    table = simulate.load_compounds()
    assert len(entries) == table.height
    for entry, row in zip(entries, table.iter_rows(named=True), strict=True):
        assert entry["SPECTRUM_ID"] == f"SIM{row['compound_id']}"
        assert entry["CHARGE"] == "1+" and entry["IONMODE"] == "positive"
        assert entry["INCHIKEY"] == fragment.inchikey(row["smiles"])
        assert float(entry["PEPMASS"]) == pytest.approx(fragment.precursor_mz(row["smiles"]), abs=1e-6)
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
    simulate.simulate_study(other, n_samples=N_SAMPLES, seed=SEED + 1)
    assert (other / "mzml/S01.mzML").read_bytes() != (study / "mzml/S01.mzML").read_bytes()


def test_bad_parameters_are_named(tmp_path):
    with pytest.raises(InputError, match="bogus"):
        simulate.simulate_study(tmp_path / "x", n_samples=2, params={"bogus": 1})
    assert main(["simulate", str(tmp_path / "y"), "--params", '{"fold_chnge": 2}']) == 1
    assert not (tmp_path / "y").exists()


def test_planted_effect_and_variation():
    compounds = simulate.build_compounds(simulate.load_compounds(), simulate.merge_params(None))
    design = simulate.design_study(compounds, 40, seed=11, p=simulate.merge_params({"planted_class": "acylcarnitine"}))
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
