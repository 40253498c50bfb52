"""An accepted name resting on fewer than half of its feature's spectra is marked beside it and counted in the Main
findings (trial AX: 2-isopropylaniline named on 1 of 10 spectra, one run's, off the apex of a feature that was mostly
an unlisted isomer; that isomer's 3.9-fold change was reported under the name)."""

from __future__ import annotations

import polars as pl
from test_contaminants import _ident
from test_report import _itable_header, _itable_rows

from ms2study.reporting import marks
from ms2study.reporting.findings import identification_finding
from ms2study.reporting.sections import _consensus_compounds


def test_a_name_on_a_minority_of_its_features_spectra_is_marked_and_counted():
    ident = _ident().with_columns(n_spectra=pl.Series([10, 5, 3, 10]), n_supporting=pl.Series([1, 3, 1, 1]))
    got = dict(zip(ident["consensus_id"], marks.minority_marks(ident)))
    # 1 of 10: marked; 3 of 5: a majority; 1 of 3: too few spectra to judge; 1 of 10 but not accepted: nothing
    assert got == {"C1": "1 of 10 spectra support it", "C2": None, "C3": None, "C4": None}
    text = _consensus_compounds(ident, {}, "q ≤ 0.01", 0.01)
    header, rows = _itable_header(text, "identifications-table"), _itable_rows(text, "identifications-table")
    by_id = {r[0]: r for r in rows}
    assert by_id["C1"][header.index(marks.MINORITY_HEADER)] == "1 of 10 spectra support it"
    assert "1 accepted feature(s) are named on a minority of their spectra" in text
    assert "1 resting on a minority of its feature's spectra" in identification_finding(ident, 0.01)
    half = ident.with_columns(n_spectra=pl.Series([4, 5, 3, 10]), n_supporting=pl.Series([2, 3, 1, 1]))
    assert marks.minority_marks(half).null_count() == half.height  # 2 of 4 is half: not a minority
    assert marks.minority_marks(ident.drop("n_spectra")).null_count() == ident.height


def test_no_name_at_level_2_says_how_near_the_nearest_came():
    """Trial AX: 20 names at level 3, 12 of them right to the structure; the lowest structure q-value (0.039) was
    nowhere in the report."""
    ident = _ident().with_columns(msi_level=pl.lit(3, dtype=pl.Int8),
                                  structure_q_value=pl.Series([0.2, 0.039, None, 0.5]))
    text = _consensus_compounds(ident, {}, "q ≤ 0.01", 0.01)
    assert "No name reaches level 2: the lowest structure q-value is 0.039 (L-Tryptophan), above the FDR 0.01" in text
    level2 = ident.with_columns(msi_level=pl.Series([2, 3, 3, 3], dtype=pl.Int8))
    assert "No name reaches level 2" not in _consensus_compounds(level2, {}, "q ≤ 0.01", 0.01)


def test_a_hits_marks_and_a_one_peak_name_reach_main_findings():
    """Trial BM: the top differing name, at two retention times (the hit truly its isomer), was marked in the tables
    only; a wrong isomer named on one shared fragment peak was left out of Main findings' count of marks."""
    from ms2study.reporting.findings import _named

    ident = _ident().with_columns(same_name_elsewhere=pl.Series([[], ["C9"], [], []]),
                                  matched_peaks=pl.Series([4, 6, 1, 3]))
    assert marks.single_peak_marks(ident).to_list() == [None, None, "yes", None]
    text = identification_finding(ident, 0.01)
    assert "1 named at several retention times" in text and "1 resting on one shared fragment peak" in text
    hits = pl.DataFrame({"consensus_id": ["C2", "C3"], "q_value": [0.01, 0.02], "log2_fold_change": [1.5, -1.0]})
    named = _named(hits, ident, "log2_fold_change")
    assert "<b>L-Tryptophan</b> (Schymanski level 2, probable structure; marked: named at several retention " \
           "times; differential q = 0.01" in named
    assert "<b>Pentaethylene glycol</b> (Schymanski level 3, tentative: isomers plausible; marked: resting on one " \
           "shared fragment peak; sharing a common contaminant&#x27;s formula; differential q = 0.02" in named
    assert "marked" not in _named(hits.head(1), _ident(), "log2_fold_change")  # an unmarked name: nothing added
