"""A contaminant's isotope peaks share its blank flag (correction.blank.isotopes_of_flagged): trial F's batch study
left five contaminant M+1 features in the tests, two of them grouped as the isotope of a flagged feature."""

from __future__ import annotations

from ms2study.correction.blank import isotopes_of_flagged


def test_isotopes_of_a_flagged_ion_are_flagged_and_nothing_else():
    groups = ["G1", "G1", "G2", "G2", "G2", "G2", "G3", "G3", None]
    adducts = [None, "M+1", "[M+H]+", "[M+H]+ M+1", "[M+Na]+", "[M+Na]+ 34S/30Si M+2", "[M+H]+", "37Cl M+2", "M+1"]
    flags = [True, False, True, False, False, False, False, False, True]
    got = isotopes_of_flagged(groups, adducts, flags).tolist()
    # G1's unlabelled ion is flagged: its M+1; G2's [M+H]+ is flagged: its M+1, not the [M+Na]+ nor that ion's M+2;
    # G3's 37Cl M+2 belongs to the unlabelled ion, which G3 lacks; a feature without a group is never touched
    assert got == [False, True, False, True, False, False, False, False, False]
    assert not isotopes_of_flagged(groups, adducts, [False] * 9).any()
