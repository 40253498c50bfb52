"""An accepted name whose feature the study's adduct grouping labels another ion (on mass and RT alone, so the
grouping refused nothing) is marked beside the name in the report's identification table and counted in the Main
findings (a fresh user's trial, D4: "epsilon-Decalactone" accepted at q 0.006 on the [M+H-H2O]+ of a co-eluting
m/z 189.1485, said only in the parquet's adduct_note); the Main findings' counts are singular for one (D10)."""

from __future__ import annotations


import polars as pl

from ms2study.correction.adduct_notation import adduct_contradiction
from ms2study.reporting.findings import identification_finding
from ms2study.reporting.marks import ion_label_marks
from ms2study.reporting.sections import _consensus_compounds
from ms2study.stages import identify
from test_report import _itable_header, _itable_rows

IK = {"lactone": "LLLLLLLLLLLLLL-X-N", "acid": "AAAAAAAAAAAAAA-X-N", "amine": "MMMMMMMMMMMMMM-X-N"}


def _hit(spectrum: str, feature: str, name: str) -> dict:
    sample = spectrum.split(":")[0]
    return {"spectrum_id": spectrum, "sample_id": sample, "feature_id": f"{sample}:{feature}", "rank": 1,
            "library_id": f"L-{name}", "library_name": name, "library_inchikey": IK[name], "library_smiles": "C",
            "library_formula": f"F-{name}", "library_adduct": "[M+H]+", "combined": 0.9, "cosine": 0.9,
            "p_value": 1e-6, "msi_level": 3, "isomer_inchikeys": [IK[name]]}


def _identified() -> pl.DataFrame:
    """Two runs. C1 (m/z 171.138) is labelled [M+H-H2O]+ of C2 (m/z 189.1485) on mass and RT only (2 runs, no
    p-value): its library [M+H]+ match stands. C3 is [M+NH4]+ of C4 (the NH3-loss reading: no mark). C5 is [M+H]+
    (the library's own ion: no mark)."""
    ann = pl.DataFrame([_hit("R1:1", "F1", "lactone"), _hit("R2:1", "F1", "lactone"), _hit("R1:3", "F3", "amine"),
                        _hit("R1:5", "F5", "acid")],
                       schema_overrides={"msi_level": pl.Int8, "isomer_inchikeys": pl.List(pl.Utf8)})
    links = (ann.select("sample_id", "feature_id").unique()
             .with_columns(("C" + pl.col("feature_id").str.extract(r"F(\d+)$")).alias("consensus_id")))
    groups = pl.DataFrame({
        "consensus_id": ["C1", "C2", "C3", "C4", "C5"], "compound_group": ["G1", "G1", "G2", "G2", "G3"],
        "adduct": ["[M+H-H2O]+", "[M+H]+", "[M+NH4]+", "[M+H]+", "[M+H]+"],
        "mz": [171.138, 189.1485, 200.0, 183.0, 300.0], "rt_s": [292.9, 292.9, 50.0, 50.1, 100.0],
        "n_detected": [2, 2, 1, 1, 1], "adduct_partner": ["C2", "C1", "C4", "C3", None],
        "adduct_n_runs": [2, 2, 1, 1, None], "adduct_correlation": [None, None, None, None, None],
        "adduct_p_value": [None, None, None, None, None]},
        schema_overrides={"adduct_n_runs": pl.Int32, "adduct_correlation": pl.Float64,
                          "adduct_p_value": pl.Float64})
    return identify.identify_features(ann, links, 0.05, groups=groups)


def _rows(text: str, table_id: str) -> tuple[list[str], list[list]]:
    """The header and rows of the itables table ``table_id`` in ``text``."""
    return _itable_header(text, table_id), _itable_rows(text, table_id)


def test_a_name_on_another_ion_of_an_untested_grouping_is_marked_beside_it() -> None:
    ident = _identified()
    got = {r["consensus_id"]: r for r in ident.iter_rows(named=True)}
    assert got["C1"]["accepted"] and "refuses no match" in got["C1"]["adduct_note"]  # identify said it, the report not
    marks = dict(zip(ident["consensus_id"], ion_label_marks(ident)))
    assert marks["C1"] == ("[M+H-H2O]+ of m/z 189.1485 (C2) on mass and RT only (2 runs measured both); library "
                           "match [M+H]+: refuses nothing")
    assert marks["C3"] is None and marks["C5"] is None
    text = _consensus_compounds(ident, {}, "q ≤ 0.05", 0.05)
    header, rows = _rows(text, "identifications-table")
    at = header.index("grouped as another ion?")
    assert header[at - 1] == "compound"
    by_id = {r[0]: r for r in rows}
    assert by_id["C1"][at] == marks["C1"] and by_id["C5"][at] in (None, "")
    assert "1 accepted feature(s) were labelled by the study's adduct grouping as another ion" in text
    assert "rests on mass and retention time alone and refuses no match" in text
    finding = identification_finding(ident, 0.05)
    assert ("<b>1</b> of them carries a mark the q-value does not cover (1 grouped as another ion than its match "
            "on mass and RT only)") in finding and "check those first" in finding
    assert "a name without a mark is not thereby confirmed" in finding  # trial Y: 18 of 21 wrong isomers unmarked
    # a label that names the library's own ion marks nothing and says nothing
    same = ident.filter(pl.col("consensus_id") == "C5")
    assert "grouped as another ion" not in _consensus_compounds(same, {}, "q ≤ 0.05", 0.05)
    assert "carries a mark" not in identification_finding(same, 0.05)


def test_main_findings_counts_are_singular_for_one() -> None:
    """D10: "1 have another structure of their formula", "1 of them carry a mark", "1 possible in-source
    fragments"."""
    ident = pl.DataFrame({"consensus_id": ["C1", "C2", "C3", "C4"], "name": ["a", "b", "c", "d"],
                          "accepted": [True, True, True, False], "msi_level": [3, 3, 3, None],
                          "isomer_inchikeys": [["A", "B"], ["C"], ["D", "E"], None],
                          "in_source_of_mz": [241.05, None, None, 300.0],
                          "in_source_correlation": [0.3, None, None, 0.99],
                          "in_source_n_samples": [12, None, None, 12],
                          "evidence_note": [None, None, None, "not accepted: an in-source fragment of m/z 300.0"],
                          "same_name_elsewhere": [[], [], [], None]},
                         schema_overrides={"msi_level": pl.Int8, "same_name_elsewhere": pl.List(pl.Utf8)})
    text = identification_finding(ident, 0.01)
    assert "none at level 2: 2 have another structure of their formula" in text
    assert "1 has none among the candidates" in text
    assert "1 more matched at this FDR but was withdrawn as an in-source fragment (its intensity" in text
    assert "<b>1</b> of them carries a mark the q-value does not cover (1 possible in-source fragment):" in text
    one = identification_finding(ident.with_columns(isomer_inchikeys=pl.Series([["A", "B"], ["C"], ["D"], None])),
                                 0.01)
    assert "none at level 2: 1 has another structure of its formula among its library candidates" in one
    assert "2 have none among the candidates" in one
    two = identification_finding(ident.with_columns(in_source_of_mz=pl.Series([241.05, 183.0, None, 300.0]),
                                                    same_name_elsewhere=pl.Series([["C9"], [], [], None])), 0.01)
    assert "<b>2</b> of them carry a mark the q-value does not cover (2 possible in-source fragments, 1 named at " \
           "several retention times, 1 with both)" in two


def test_a_permanent_cation_is_not_marked_as_another_ions_sodium_adduct() -> None:
    # A quaternary ammonium (library [M]+) grouped as [M+Na]+ of a weak ion: no reading of a permanent cation, so no
    # mark; its in-source water loss would be one; a protonated match grouped as [M+Na]+ stays marked.
    ident = pl.DataFrame({"accepted": [True, True, True, True],
                          "feature_adduct": ["[M+Na]+", "[M+H-H2O]+", "[M+Na]+", "[M+K]+"],
                          "adduct": ["[M]+", "[M]+", "[M+H]+", "[M+]"],
                          "adduct_partner": ["C9", "C9", "C9", "C9"], "adduct_partner_mz": [327.37] * 4,
                          "adduct_correlation": [None] * 4, "adduct_n_runs": [1] * 4},
                         schema_overrides={"adduct_correlation": pl.Float64, "adduct_n_runs": pl.Int32})
    marks = ion_label_marks(ident).to_list()
    assert marks[0] is None and marks[3] is None
    assert marks[1].startswith("[M+H-H2O]+ of m/z 327.3700") and marks[2].startswith("[M+Na]+ of m/z 327.3700")
    # nor does such a label refuse the match where the grouping was tested
    assert adduct_contradiction("[M+Na]+", "[M]+") is None
    assert adduct_contradiction("[M+Na]+", "[M+H]+") is not None
