"""Accepted names that share their formula with a common LC-MS contaminant are marked beside the name and counted in
the Main findings; acceptance is unchanged (trial AS: the only accepted name on a human QC run without blanks was a
benzalkonium disinfectant, and nothing said that names may be contaminants)."""

from __future__ import annotations

import polars as pl
import pytest
from test_report import _itable_header, _itable_rows

from ms2study.identification.contaminants import CONTAMINANTS_TSV, contaminant_formulas, element_counts
from ms2study.reporting import marks
from ms2study.reporting.findings import identification_finding
from ms2study.reporting.sections import _consensus_compounds


@pytest.mark.parametrize(("text", "expected"), [
    ("[C21H38N]+", (("C", 21), ("H", 38), ("N", 1))),
    ("C21H38N+", (("C", 21), ("H", 38), ("N", 1))),
    ("C38H76N2O2", (("C", 38), ("H", 76), ("N", 2), ("O", 2))),
    ("C6H12Cl3O4P", (("C", 6), ("Cl", 3), ("H", 12), ("O", 4), ("P", 1))),
    ("[C2H3O2]-", (("C", 2), ("H", 3), ("O", 2))),
    ("C21H38N.Cl", None), ("", None), (None, None), ("unknown", None)])
def test_library_formulas_are_read_as_element_counts(text, expected):
    assert element_counts(text) == expected


def test_every_listed_contaminant_formula_is_read_and_listed_once():
    table = pl.read_csv(CONTAMINANTS_TSV, separator="\t", comment_prefix="#")
    counts = [element_counts(f) for f in table["formula"]]
    assert None not in counts and len(set(counts)) == table.height >= 40
    known = contaminant_formulas()
    assert known[element_counts("C24H38O4")][1] == "plasticiser"
    assert known[element_counts("C10H22O6")] == ("polyethylene glycol (n = 5)", "polymer (PEG)")
    assert known[element_counts("C10H30O5Si5")] == ("cyclic dimethylsiloxane D5", "siloxane")
    # common metabolites are not on it: glucose, citrate, carnitine, palmitic acid, cholesterol, ferulic acid
    for formula in ("C6H12O6", "C6H8O7", "C7H15NO3", "C16H32O2", "C27H46O", "C10H10O4"):
        assert element_counts(formula) not in known, formula


def _ident() -> pl.DataFrame:
    return pl.DataFrame({
        "consensus_id": ["C1", "C2", "C3", "C4"],
        "name": ["Benzyldimethyldodecylammonium", "L-Tryptophan", "Pentaethylene glycol", "Tributyl phosphate"],
        "formula": ["[C21H38N]+", "C11H12N2O2", "C10H22O6", "C12H27O4P"],
        "inchikey": ["AAAAAAAAAAAAAA-X", "BBBBBBBBBBBBBB-X", "CCCCCCCCCCCCCC-X", "DDDDDDDDDDDDDD-X"],
        "msi_level": [2, 2, 3, 3], "isomer_inchikeys": [None, None, ["CCCCCCCCCCCCCC-X"], None],
        "compound_class": ["c"] * 4, "n_samples": [4, 4, 3, 1], "n_spectra": [9, 5, 3, 2],
        "n_supporting": [9, 5, 3, 2], "best_score": [0.9, 0.9, 0.8, 0.6], "best_cosine": [0.95, 0.9, 0.8, 0.6],
        "q_value": [0.001, 0.001, 0.004, 0.3], "accepted": [True, True, True, False],
        "supporting_runs": [["QC04", "QC05"], ["S1", "S2", "S3", "S4", "S5", "S6", "S7"], ["S2"], ["S3"]]},
        schema_overrides={"msi_level": pl.Int8})


def test_a_name_with_a_contaminant_formula_is_marked_beside_it_and_counted():
    ident = _ident()
    got = dict(zip(ident["consensus_id"], marks.contaminant_marks(ident)))
    assert got["C1"] == ("disinfectant (quaternary ammonium): benzyldimethyldodecylammonium (benzalkonium C12) or "
                         "cetylpyridinium")
    assert got["C3"] == "polymer (PEG): polyethylene glycol (n = 5)"
    assert got["C2"] is None and got["C4"] is None  # a metabolite; a contaminant's formula but not accepted
    text = _consensus_compounds(ident, {}, "q ≤ 0.01", 0.01)
    header, rows = _itable_header(text, "identifications-table"), _itable_rows(text, "identifications-table")
    at = header.index(marks.CONTAMINANT_HEADER)
    by_id = {r[0]: r for r in rows}
    assert by_id["C1"][at].startswith("disinfectant") and by_id["C2"][at] in (None, "")
    assert "2 accepted feature(s) share their formula with a common LC-MS contaminant" in text
    assert "2 sharing common contaminants' formulas" in identification_finding(ident, 0.01)
    assert by_id["C1"][header.index("q")] == 0.001  # a mark, not a refusal: acceptance and q unchanged
    # trial AW: which run a name came from (a pesticide mix or the human QC) was nowhere
    runs = header.index("runs")
    assert by_id["C1"][runs] == "QC04, QC05" and by_id["C2"][runs] == "S1, S2, S3, S4, S5 +2"
    # without a formula column, or with no such name, nothing is shown or said
    plain = ident.filter(pl.col("consensus_id") == "C2")
    assert marks.CONTAMINANT_HEADER not in _consensus_compounds(plain, {}, "q ≤ 0.01", 0.01)
    assert "contaminant" not in identification_finding(plain, 0.01)
    assert marks.contaminant_marks(ident.drop("formula")).null_count() == ident.height
