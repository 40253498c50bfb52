"""The exports for other tools, read back with independent readers: the GNPS FBMN quantification table (polars CSV)
and MGF (pyteomics), the SIRIUS MGF (pyteomics), the plain TSV (polars); the representative spectrum, the ion
written for SIRIUS, the row ID rule, bad input, the command, and why there is no mzTab-M."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import polars as pl
import pyopenms
import pytest
from pyteomics import mgf

from ms2study.cli import main as cli_main
from ms2study.core.errors import InputError
from ms2study.io import exports
from ms2study.stages import export as stage

SAMPLES = ["S1", "S2", "S3"]
FILES = {"S1": "runs/a.mzML", "S2": "runs/b.mzML", "S3": "other/c.mzML"}
# consensus feature -> (m/z, RT s, intensities per sample; None = not detected)
MATRIX = {
    "C1": (150.0712, 61.5, [1.0e5, 2.0e5, None]),
    "C2": (220.1180, 300.25, [3.0e4, None, 5.0e4]),
    "C3": (331.2841, 521.0, [None, 7.0e3, 8.0e3]),
    "C4": (412.5000, 640.0, [9.0e3, 1.0e4, 1.1e4]),
    "C5": (500.7700, 700.0, [None, None, 4.0e4]),
}
LINKS = [("C1", "S1", "S1:F1"), ("C1", "S2", "S2:F1"), ("C2", "S1", "S1:F2"), ("C2", "S3", "S3:F1"),
         ("C3", "S2", "S2:F2"), ("C3", "S3", "S3:F2"), ("C4", "S1", "S1:F3"), ("C4", "S2", "S2:F3"),
         ("C4", "S3", "S3:F3"), ("C5", "S3", "S3:F4")]


def _spectrum(sample: str, scan: int, feature: str | None, precursor_intensity: float | None, peaks: list,
              charge: int = 1, ion_mode: str | None = "positive") -> dict:
    return {"spectrum_id": f"{sample}:S{scan}", "sample_id": sample, "scan_index": scan, "native_id": f"scan={scan}",
            "rt_s": 60.0 + scan, "precursor_mz": 100.0 + scan, "precursor_charge": charge,
            "precursor_intensity": precursor_intensity, "selected_ion_mz": 100.0 + scan,
            "precursor_corrected": False, "ion_mode": ion_mode, "feature_id": feature,
            "mz": [p[0] for p in peaks], "intensity": [p[1] for p in peaks]}


# C1: S2's spectrum has the higher precursor intensity (chosen); C2: two spectra of S1 tie on precursor intensity,
# the larger TIC wins; C3: only an empty spectrum (no MS/MS); C4: precursor intensity unknown in S1, known in S3
# (whose scan states no polarity); C5: doubly charged (in the GNPS MGF, not in SIRIUS'); one spectrum maps to no feature.
SPECTRA = {
    "S1": [_spectrum("S1", 10, "S1:F1", 1.0e4, [(55.05, 10.0), (107.07, 100.0)]),
           _spectrum("S1", 11, "S1:F2", 5.0e3, [(81.0, 20.0)]),
           _spectrum("S1", 12, "S1:F2", 5.0e3, [(81.0, 20.0), (133.1, 300.0)]),
           _spectrum("S1", 13, "S1:F3", None, [(90.0, 1.0)]),
           _spectrum("S1", 14, None, 9.9e9, [(60.0, 1.0)])],
    "S2": [_spectrum("S2", 20, "S2:F1", 4.0e4, [(55.05, 12.5), (89.06, 3.25), (107.07, 100.0)]),
           _spectrum("S2", 21, "S2:F2", 9.0e4, [])],
    "S3": [_spectrum("S3", 30, "S3:F1", 1.0e3, [(81.0, 1.0)]),
           _spectrum("S3", 31, "S3:F3", 2.0e3, [(90.0, 2.0), (120.0, 4.0)], ion_mode=None),
           _spectrum("S3", 32, "S3:F4", 3.0e3, [(250.0, 5.0)], charge=2)],
}


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> dict:
    """A three-sample study's tables as the pipeline writes them, and the export of it."""
    root = tmp_path_factory.mktemp("export")
    matrix = pl.DataFrame({
        "consensus_id": list(MATRIX), "mz": [v[0] for v in MATRIX.values()], "rt_s": [v[1] for v in MATRIX.values()],
        "n_detected": pl.Series([sum(x is not None for x in v[2]) for v in MATRIX.values()], dtype=pl.Int32),
        **{s: pl.Series([v[2][j] for v in MATRIX.values()], dtype=pl.Float64) for j, s in enumerate(SAMPLES)}})
    matrix.write_parquet(root / "feature_matrix.parquet")
    pl.DataFrame(LINKS, schema=["consensus_id", "sample_id", "feature_id"], orient="row").with_columns(
        rt_aligned_s=pl.lit(0.0)).write_parquet(root / "feature_links.parquet")
    spectra = []
    for sample, rows in SPECTRA.items():
        path = root / sample / "spectra.parquet"
        path.parent.mkdir()
        pl.DataFrame(rows, schema_overrides={"mz": pl.List(pl.Float64), "intensity": pl.List(pl.Float32)}
                     ).write_parquet(path)
        spectra.append(path)
    pl.DataFrame({"consensus_id": ["C1", "C2", "C5"], "name": ["alanine", "serine", "charged"],
                  "inchikey": ["QNAYBMKLOCPYGJ-REOHCLBHSA-N", "MTCFGRXMJLQNBG-REOHCLBHSA-N", "X"],
                  "formula": ["C3H7NO2", "C3H7NO3", "C"], "adduct": ["[M+H]+", "[M+H]+", "[M+2H]2+"],
                  "compound_class": ["amino_acid", "amino_acid", "x"], "msi_level": pl.Series([2, 3, 3], dtype=pl.Int8),
                  "q_value": [0.001, 0.4, 0.002], "accepted": [True, False, True],
                  "in_source_of_mz": [None, None, 359.279], "evidence_note": [None, None, "cosine below 0.3: ..."],
                  "library_id": ["MSBNK-A-1", "MSBNK-B-2", "MSBNK-C-3"],
                  "isomer_inchikeys": [["QNAYBMKLOCPYGJ-REOHCLBHSA-N"], None, ["X", "Y"]]}
                 ).write_parquet(root / "identifications.parquet")
    (root / "differential").mkdir()
    from ms2study.modelling.differential import write_table

    write_table(pl.DataFrame({"consensus_id": list(MATRIX), "test": ["welch_t"] * 5,
                              "log2_fold_change": [1.5, -0.5, None, 0.1, None], "log2_effect_per_unit": [None] * 5,
                              "effect_ci_low": [0.9, -1.2, None, -0.4, None],
                              "effect_ci_high": [2.1, 0.2, None, 0.6, None],
                              "statistic": [4.0, -1.0, None, 0.2, None], "p_value": [0.001, 0.3, None, 0.9, None],
                              "q_value": [0.005, 0.45, None, 0.9, None]},
                             schema_overrides={"log2_effect_per_unit": pl.Float64}),
                root / "differential/group.parquet",
                {"outcome": "group", "type": "binary", "positive_class": "case", "reference_class": "control",
                 "test": "moderated_t", "covariates": ["cov:site=north"], "n_samples": 3})
    pl.DataFrame({"consensus_id": list(MATRIX), "test": ["ols"] * 5, "log2_fold_change": [None] * 5,
                  "log2_effect_per_unit": [0.02, 0.0, -0.01, None, None], "p_value": [0.04, 0.9, 0.5, None, None],
                  "q_value": [0.2, 0.9, 0.9, None, None]},
                 schema_overrides={"log2_fold_change": pl.Float64}).write_parquet(root / "differential/age.parquet")
    sheet = root / "samples.tsv"
    sheet.write_text("sample_id\tfile\tgroup\tage\n" + "".join(
        f"{s}\t{FILES[s]}\t{g}\t{a}\n" for s, g, a in zip(SAMPLES, ["case", "control", "case"], ["40", "", "61"])))
    out = root / "export"
    summary = stage.run_export(root / "feature_matrix.parquet", root / "feature_links.parquet", spectra, sheet, out,
                               root / "identifications.parquet",
                               [root / "differential/group.parquet", root / "differential/age.parquet"])
    return {"root": root, "out": out, "summary": summary, "matrix": matrix, "spectra": spectra, "sheet": sheet}


def _read_mgf(path: Path) -> list[dict]:
    with mgf.MGF(str(path)) as reader:  # pyteomics, not our reader; no TITLE lines, so no index
        return list(reader)


def test_gnps_quantification_table_reads_back_as_fbmn_documents_it(study) -> None:
    table = pl.read_csv(study["out"] / "gnps_quant.csv")
    names = ["a.mzML", "b.mzML", "c.mzML"]
    assert table.columns == ["row ID", "row m/z", "row retention time", *[f"{n} Peak area" for n in names]]
    assert table["row ID"].to_list() == [1, 2, 3, 4, 5]  # C{n} -> n
    assert np.allclose(table["row m/z"], [v[0] for v in MATRIX.values()], rtol=0, atol=1e-9)
    assert np.allclose(table["row retention time"], [v[1] / 60 for v in MATRIX.values()])  # minutes
    for j, name in enumerate(names):
        assert table[f"{name} Peak area"].to_list() == [v[2][j] or 0.0 for v in MATRIX.values()]
    assert table.null_count().sum_horizontal().item() == 0
    metadata = pl.read_csv(study["out"] / "gnps_metadata.tsv", separator="\t", infer_schema_length=0)
    assert metadata.columns == ["filename", "ATTRIBUTE_group", "ATTRIBUTE_age"]
    assert metadata["filename"].to_list() == names
    assert metadata["ATTRIBUTE_age"].to_list() == ["40", "N/A", "61"]


def test_gnps_mgf_has_one_representative_msms_per_feature_keyed_to_the_table(study) -> None:
    spectra = _read_mgf(study["out"] / "gnps_msms.mgf")
    table = pl.read_csv(study["out"] / "gnps_quant.csv")
    rows = dict(zip(table["row ID"], zip(table["row m/z"], table["row retention time"])))
    ids = [int(s["params"]["feature_id"]) for s in spectra]
    assert ids == [1, 2, 4, 5]  # C3 has only an empty spectrum
    assert study["summary"]["with_msms"] == 4 and study["summary"]["consensus_features"] == 5
    for s, feature in zip(spectra, ids):
        params = s["params"]
        assert int(params["scans"]) == feature and feature in rows
        assert params["pepmass"][0] == pytest.approx(rows[feature][0], abs=1e-6)
        assert params["rtinseconds"] == pytest.approx(rows[feature][1] * 60, abs=1e-3)
        assert int(params["mslevel"]) == 2
        assert list(params) == ["feature_id", "pepmass", "scans", "rtinseconds", "charge", "mslevel"]
    # C1: S2's spectrum (precursor intensity 4e4 over 1e4), its peaks as stored
    assert np.allclose(spectra[0]["m/z array"], [55.05, 89.06, 107.07])
    assert np.allclose(spectra[0]["intensity array"], [12.5, 3.25, 100.0])
    assert len(spectra[1]["m/z array"]) == 2  # C2: tie on precursor intensity, the larger TIC
    assert np.allclose(spectra[2]["m/z array"], [90.0, 120.0])  # C4: a known precursor intensity beats none
    assert [int(c) for s in spectra for c in s["params"]["charge"]] == [1, 1, 1, 2]


def test_sirius_mgf_carries_the_identified_ion_or_the_unknown_ion_of_the_polarity(study) -> None:
    spectra = _read_mgf(study["out"] / "sirius.mgf")
    by_id = {int(s["params"]["feature_id"]): s["params"] for s in spectra}
    assert sorted(by_id) == [1, 2, 4]  # C5 is doubly charged: SIRIUS takes singly charged ions only
    assert study["summary"]["sirius_multiply_charged_left_out"] == 1
    assert by_id[1]["ion"] == "[M+H]+"   # accepted identification
    assert by_id[2]["ion"] == "[M+?]+"   # its hit was not accepted
    assert by_id[4]["ion"] == "[M+?]+"   # the scan states no polarity: the configured one (positive)
    assert all(int(p["mslevel"]) == 2 and list(p["charge"]) == [1] for p in by_id.values())
    assert not any("level" in k and k != "mslevel" or "formula" in k or "adduct" in k for p in by_id.values()
                   for k in p)
    gnps = {int(s["params"]["feature_id"]): s for s in _read_mgf(study["out"] / "gnps_msms.mgf")}
    for s in spectra:
        assert np.array_equal(s["m/z array"], gnps[int(s["params"]["feature_id"])]["m/z array"])


def test_sirius_ion_rules() -> None:
    assert exports.sirius_ion("[M+Na]+", "positive") == ("[M+Na]+", 1)
    assert exports.sirius_ion("[M-H]-", "negative") == ("[M-H]-", 1)
    assert exports.sirius_ion("[M+H]+", "negative") == ("[M+?]-", 1)  # the polarity rules
    assert exports.sirius_ion("M+H", "positive") == ("[M+?]+", 1)
    assert exports.sirius_ion("[M+2H]2+", "positive") == ("[M+2H]2+", 2)
    assert exports.sirius_ion(None, "positive") == ("[M+?]+", 1)


def test_plain_tsv_has_one_row_per_feature_with_identification_and_differential_results(study) -> None:
    table = pl.read_csv(study["out"] / "consensus_features.tsv", separator="\t")
    assert table.height == 5 and table["consensus_id"].to_list() == list(MATRIX)
    assert table["row_id"].to_list() == [1, 2, 3, 4, 5]
    assert np.allclose(table["mz"], [v[0] for v in MATRIX.values()]) and np.allclose(
        table["rt_s"], [v[1] for v in MATRIX.values()])
    assert table["n_msms"].to_list() == [2, 3, 0, 2, 1]
    assert table["msms_spectrum_id"].to_list() == ["S2:S20", "S1:S12", None, "S3:S31", "S3:S32"]
    # only accepted identifications
    assert table["name"].to_list() == ["alanine", None, None, None, "charged"]
    assert table["inchikey"][0] == "QNAYBMKLOCPYGJ-REOHCLBHSA-N" and table["msi_level"][0] == 2
    assert table["identification_q_value"][0] == pytest.approx(0.001)
    assert table["in_source_of_mz"].to_list() == [None, None, None, None, 359.279]
    assert "in_source_correlation" in table.columns  # null here: the identifications carry none
    assert table["evidence_note"][4] == "cosine below 0.3: ..."
    assert table["group_log2_fold_change"].to_list()[:2] == [1.5, -0.5]
    assert table["group_q_value"][0] == pytest.approx(0.005) and table["group_p_value"][1] == pytest.approx(0.3)
    assert table["age_log2_effect_per_unit"][0] == pytest.approx(0.02)
    assert "age_log2_fold_change" not in table.columns and "group_log2_effect_per_unit" not in table.columns
    assert math.isclose(table["age_q_value"][2], 0.9)
    # trial AC: the matched record, the isomers, the interval and the test, for a collaborator or a repository
    assert table["library_id"].to_list() == ["MSBNK-A-1", None, None, None, "MSBNK-C-3"]
    assert table["isomer_inchikeys"][4] == "X;Y" and table["isomer_inchikeys"][0] == "QNAYBMKLOCPYGJ-REOHCLBHSA-N"
    assert table["group_effect_ci_low"][0] == pytest.approx(0.9) and table["group_effect_ci_high"][0] == 2.1
    assert table["group_test"][0] == "welch_t" and table["age_test"][0] == "ols"
    readme = (study["out"] / "README.txt").read_text()
    assert "Exported by ms2study " in readme and "from feature_matrix.parquet (as detected and linked" in readme
    assert ("  group: outcome 'group' (binary, case against control); test moderated_t; effects and p-values "
            "adjusted for site=north; 3 samples") in readme
    assert "  age: no summary in its table (not written by the differential stage)" in readme


def test_row_ids_fall_back_to_positions_when_ids_are_not_c_numbers() -> None:
    assert exports.gnps_row_ids(["C3", "C10", "C7"]).to_list() == [3, 10, 7]
    assert exports.gnps_row_ids(["C1", "X", "C3"]).to_list() == [1, 2, 3]
    assert exports.gnps_row_ids(["C000", "C001"]).to_list() == [1, 2]
    assert exports.gnps_file_names(["A", "B"], {"A": "x/run.mzML", "B": "y/run.mzML"}) == {
        "A": "A.mzML", "B": "B.mzML"}  # same base name twice: sample ids instead


def test_bad_input_names_the_file_and_the_fix(study, tmp_path) -> None:
    root = study["root"]
    with pytest.raises(InputError, match="feature_links.parquet.*link|does not exist|cannot read"):
        stage.run_export(root / "feature_matrix.parquet", tmp_path / "feature_links.parquet", study["spectra"],
                         study["sheet"], tmp_path / "out")
    study["matrix"].drop("S3").write_parquet(tmp_path / "fm.parquet")
    with pytest.raises(InputError, match=r"no column for samples \['S3'\]"):
        stage.run_export(tmp_path / "fm.parquet", root / "feature_links.parquet", study["spectra"], study["sheet"],
                         tmp_path / "out")
    with pytest.raises(InputError, match="unknown export parameter"):
        stage.run_export(root / "feature_matrix.parquet", root / "feature_links.parquet", study["spectra"],
                         study["sheet"], tmp_path / "out", params={"ppm": 5})
    assert not (tmp_path / "out" / "gnps_quant.csv").exists()


def test_command_writes_every_output(study, tmp_path) -> None:
    root = study["root"]
    code = cli_main(["export", "--feature-matrix", str(root / "feature_matrix.parquet"),
                     "--links", str(root / "feature_links.parquet"), "--spectra", *map(str, study["spectra"]),
                     "--samples", str(study["sheet"]), "--outdir", str(tmp_path), "--params", '{"ion_mode": "negative"}'])
    assert code == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(stage.OUTPUTS.values())
    charges = {int(s["params"]["feature_id"]): list(s["params"]["charge"])
               for s in _read_mgf(tmp_path / "gnps_msms.mgf")}
    assert charges[4] == [-1] and charges[1] == [1]  # C4's scan states no polarity: the configured negative applies
    sirius = {int(s["params"]["feature_id"]): s["params"]["ion"] for s in _read_mgf(tmp_path / "sirius.mgf")}
    assert sirius[4] == "[M+?]-" and sirius[1] == "[M+?]+"  # no identifications passed


def test_mztab_m_is_not_written_because_pyopenms_cannot_carry_the_study() -> None:
    """pyOpenMS 3.6 writes mzTab-M only from one FeatureMap (one assay) and takes identifications only from its
    IdentificationData, which it does not expose. When that changes, this fails: then write mzTab-M with it."""
    assert hasattr(pyopenms, "MzTabM") and hasattr(pyopenms, "MzTabMFile")
    assert not hasattr(pyopenms, "IdentificationData")
    assert not hasattr(pyopenms.Feature, "addIDMatch")
    assert not hasattr(pyopenms.MzTabMFile, "load")  # and it could not be read back with pyOpenMS either


def test_the_table_carries_the_reports_grouped_as_another_ion_mark(tmp_path) -> None:
    # a fresh user saw "grouped as another ion?" beside epsilon-decalactone in the report, not in the export
    path = tmp_path / "identifications.parquet"
    pl.DataFrame({"consensus_id": ["C1", "C2"], "accepted": [True, True], "q_value": [0.006, 0.002],
                  "name": ["epsilon-Decalactone", "acid"], "adduct": ["[M+H]+", "[M+H]+"],
                  "feature_adduct": ["[M+H-H2O]+", "[M+H]+"], "adduct_partner": ["C9", None],
                  "adduct_partner_mz": [189.1485, None], "adduct_correlation": [None, None],
                  "adduct_n_runs": [2, None]},
                 schema_overrides={"adduct_correlation": pl.Float64, "adduct_n_runs": pl.Int32}).write_parquet(path)
    got = stage.accepted_identifications(path).sort("consensus_id")
    assert got["grouped_as_another_ion"][0].startswith("[M+H-H2O]+ of m/z 189.1485 (C9)")
    assert got["grouped_as_another_ion"][1] is None
