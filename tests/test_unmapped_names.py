"""Names accepted on MS/MS scans that map to no MS1 feature (identification.unmapped): a TripleTOF trial saw
methyl anthranilate accepted in 12 of 12 samples vanish from the identifications and the report without a word (its
4-scan MS1 peak shorter than detect: min_trace_length_s). The identify stage's log and the report now name them."""

from __future__ import annotations

import logging

import polars as pl

from ms2study import cli
from ms2study.identification.unmapped import unmapped_names, unmapped_sentence
from ms2study.reporting.collect import read_annotations
from ms2study.reporting.sections import identifications_section

ANTHRANILATE, BETAINE = "VAMXMNNIEUEQDV-UHFFFAOYSA-N", "KWIUHFFTVRNATP-UHFFFAOYSA-N"


def annotations() -> pl.DataFrame:
    """Methyl anthranilate accepted on unmapped scans of three runs (and once not accepted), betaine accepted on a
    mapped scan, a third compound accepted unmapped but also named on a feature elsewhere (betaine again)."""
    rows = [("R1:S1", "R1", None, "methyl anthranilate", ANTHRANILATE, 0.001, True),
            ("R2:S1", "R2", None, "methyl anthranilate", ANTHRANILATE, 0.0004, True),
            ("R3:S1", "R3", None, "methyl anthranilate", ANTHRANILATE, 0.002, True),
            ("R3:S2", "R3", None, "methyl anthranilate", ANTHRANILATE, 0.3, False),
            ("R1:S3", "R1", "R1:F1", "betaine", BETAINE, 0.001, True),
            ("R2:S4", "R2", None, "betaine", BETAINE, 0.003, True)]
    return pl.DataFrame(rows, schema={"spectrum_id": pl.Utf8, "sample_id": pl.Utf8, "feature_id": pl.Utf8,
                                      "library_name": pl.Utf8, "library_inchikey": pl.Utf8, "q_value": pl.Float64,
                                      "accepted": pl.Boolean}, orient="row").with_columns(
        rank=pl.lit(1), cosine=pl.lit(0.9), library_id=pl.lit("L"), combined=pl.lit(0.9), p_value=pl.lit(1e-5),
        msi_level=pl.lit(3, dtype=pl.Int8), library_smiles=pl.lit("C"), library_formula=pl.lit("C8H9NO2"),
        library_adduct=pl.lit("[M+H]+"))


def identifications() -> pl.DataFrame:
    return pl.DataFrame({"consensus_id": ["C1"], "name": ["betaine"], "inchikey": [BETAINE], "accepted": [True]})


def test_the_unmapped_names_are_those_the_study_names_on_no_feature() -> None:
    names = unmapped_names(annotations(), identifications())
    assert names.to_dicts() == [{"name": "methyl anthranilate", "inchikey": ANTHRANILATE, "n_spectra": 3,
                                 "n_runs": 3, "best_q": 0.0004, "best_cosine": 0.9}]
    assert unmapped_names(annotations(), None)["name"].to_list() == ["methyl anthranilate", "betaine"]
    said = unmapped_sentence(names)
    assert said.startswith("1 compound(s) accepted by their runs' searches on MS/MS scans that map to no MS1 "
                           "feature have no row in the study's identifications and no quantity: methyl "
                           "anthranilate (3 spectra in 3 runs, q 0.0004)") and "detect: min_trace_length_s" in said
    assert unmapped_sentence(names.clear()) is None
    # trial O: a compound the study refused on its consensus features is not "accepted with no row"
    refused = pl.DataFrame({"consensus_id": ["C1", "C7"], "name": ["betaine", "methyl anthranilate"],
                            "inchikey": [BETAINE, ANTHRANILATE], "accepted": [True, False]})
    assert unmapped_names(annotations(), refused).is_empty()
    assert unmapped_names(annotations().drop("feature_id")).is_empty()


def test_the_identify_command_and_the_report_name_them(tmp_path, caplog) -> None:
    ann = annotations()
    ann.write_parquet(tmp_path / "annotations.parquet")
    pl.DataFrame({"consensus_id": ["C1"], "sample_id": ["R1"], "feature_id": ["R1:F1"]}).write_parquet(
        tmp_path / "links.parquet")
    with caplog.at_level(logging.WARNING):
        assert cli.main(["identify", "--annotations", str(tmp_path / "annotations.parquet"), "--links",
                         str(tmp_path / "links.parquet"), "--out", str(tmp_path / "ident.parquet")]) == 0
    assert "1 compound(s) accepted by their runs' searches on MS/MS scans that map to no MS1 feature" in caplog.text
    assert "methyl anthranilate (3 spectra in 3 runs" in caplog.text and "betaine (" not in caplog.text
    ident = pl.read_parquet(tmp_path / "ident.parquet")
    assert ident["name"].to_list() == ["betaine"]
    # the report reads the annotations with their feature ids and says it among the cautions
    read = read_annotations([tmp_path / "annotations.parquet"])
    assert "feature_id" in read.columns
    warnings: list = []
    identifications_section(read, ident, ["R1", "R2", "R3"], {"config_used": {"annotate": {"fdr": 0.01}},
                                                              "min_cosine": 0.5, "top_compounds": 20}, warnings)
    said = [w for w in warnings if "map to no MS1 feature" in str(w)]
    assert len(said) == 1 and "<code>detect: min_trace_length_s</code>" in said[0]
    assert "merged with a co-eluting ion a few mDa away" in said[0]  # trial AI: a neighbour's 13C peak on a TOF
    assert said[0].label == "accepted names without a feature"
