"""Heavy-isotope peaks (37Cl, 81Br, 34S, 30Si) in the adduct grouping (ms2study.correction.isotopes, used by
ms2study.correction.adducts) on small matrices of one compound's peaks that co-vary across runs.

The isotope patterns below were computed for these formulas from IUPAC masses and abundances (pyOpenMS
FineIsotopePatternGenerator, peaks closer than 2 mDa merged as a feature finder at 10 ppm would merge them)."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from ms2study.correction import adducts, isotopes

PARAMS = {"adduct_rt_tol_s": 3.0, "adduct_mz_ppm": 10.0, "adduct_min_correlation": 0.6}
NA = 22.989218 - 1.007276            # [M+Na]+ - [M+H]+
CL = 34.969402 + 1.007276            # [M+Cl]- - [M-H]-


def compound(mono_mz: float, peaks: dict[str, tuple[float, float]], n_runs: int = 12, seed: int = 0,
             noise: float = 0.03) -> tuple[pl.DataFrame, list[str]]:
    """A feature matrix of one compound: feature "M" at ``mono_mz`` and one feature per ``peaks`` entry (name:
    (m/z above M, intensity ratio to M)), co-eluting, their intensities following M's across ``n_runs`` runs with
    ``noise`` (log sd) of their own."""
    rng = np.random.default_rng(seed)
    runs = [f"S{i:02d}" for i in range(n_runs)]
    abundance = np.exp(rng.normal(13, 1, n_runs))
    rows = []
    for i, (name, (shift, ratio)) in enumerate({"M": (0.0, 1.0), **peaks}.items()):
        values = abundance * ratio * np.exp(rng.normal(0, noise, n_runs))
        rows.append({"consensus_id": name, "mz": mono_mz + shift, "rt_s": 300.0 + 0.2 * i,
                     "n_detected": n_runs, **dict(zip(runs, values.tolist()))})
    return pl.DataFrame(rows), runs


def labels(matrix: pl.DataFrame, runs: list[str], polarity: str = "positive") -> dict[str, str | None]:
    table = adducts.group_adducts(matrix, runs, PARAMS, polarity)
    assert table["compound_group"].n_unique() == 1, table
    return dict(zip(table["consensus_id"], table["adduct"]))


def test_a_monochlorinated_compound_is_one_group_with_its_37cl_peak() -> None:
    """M+2 at 32 % of M, +1.997050 Da: before, a separate feature (and a second 'hit' in a fresh user's study)."""
    matrix, runs = compound(250.0, {"M+1": (isotopes.C13_STEP, 0.12), "M+2": (1.997050, 0.32),
                                    "Na": (NA, 0.4)})
    assert labels(matrix, runs) == {"M": "[M+H]+", "M+1": "[M+H]+ M+1", "M+2": "[M+H]+ 37Cl M+2",
                                    "Na": "[M+Na]+"}
    result = adducts.adduct_grouping(matrix, runs, PARAMS)
    heavy = result.pairs.filter(pl.col("kind") == "37Cl M+2")
    assert heavy["consensus_id_a"].to_list() == ["M"] and heavy["consensus_id_b"].to_list() == ["M+2"]
    assert heavy["p_value"][0] < 0.01 and result.counts["n_heavy_isotope_peaks"] == 1


def test_ethiprole_its_37cl_peaks_up_to_m_plus_4() -> None:
    """Ethiprole, C13H9Cl2F3N4OS, [M+H]+ 396.9899 (the fresh user's case): 2 Cl and 1 S; M+2 (37Cl with 34S merged)
    68.5 %, M+3 (13C 37Cl) 9.6 %, M+4 (37Cl2 with 37Cl 34S) 13.1 %."""
    matrix, runs = compound(396.989898, {"M+1": (1.003355, 0.1406), "M+2": (1.996967, 0.685),
                                         "M+3": (3.000320, 0.0964), "M+4": (3.993824, 0.1313), "Na": (NA, 0.4)})
    got = labels(matrix, runs)
    assert got["M+2"] == "[M+H]+ 37Cl M+2" and got["M+3"] == "[M+H]+ 13C 37Cl M+3"
    assert got["M+4"] == "[M+H]+ 37Cl2 M+4" and got["Na"] == "[M+Na]+"


def test_a_dibrominated_compound_its_m_plus_2_and_m_plus_4() -> None:
    """C8H7Br2NO, [M+H]+ 291.8967: M+2 194.6 % (+1.997953), M+3 16.8 %, M+4 94.6 % (+3.995906). The M+2 alone is
    also six Cl (or three Cl and a Br); of the Cl/Br counts that fit both ratios, two Br fits them exactly, five Cl
    (M+2 1.60, M+4 1.02) and three Cl with a Br (1.93, 1.24) lie beyond the slack factor of that fit; the M+4's
    reading then narrows the M+2 and M+3 labels to Br."""
    matrix, runs = compound(291.896714, {"M+1": (1.003355, 0.0865), "M+2": (1.997953, 1.9456),
                                         "M+3": (3.001308, 0.1683), "M+4": (3.995906, 0.9463)})
    got = labels(matrix, runs)
    assert got == {"M": None, "M+1": "M+1", "M+2": "81Br M+2", "M+3": "13C 81Br M+3", "M+4": "81Br2 M+4"}


def test_ambroxol_its_m_plus_4_reads_81br2_when_its_m_plus_2_is_measured_high() -> None:
    """Ambroxol, C13H18Br2N2O, [M+H]+ 376.9859 (spike-in study, seed 0): the M+2 was measured at 2.23 x M (1.95
    expected) and the M+4 at 0.95 x (0.95). Read from the M+2 ratio alone, 2.23 would be 2.3 Br and predict an M+4 of
    1.40, too large for the 0.95 seen, and the M+4 was labelled "37Cl81Br" (no Cl in ambroxol)."""
    matrix, runs = compound(376.985864, {"M+1": (1.003357, 0.141), "M+2": (1.997953, 2.23),
                                         "M+3": (3.001311, 0.2743), "M+4": (3.995907, 0.95)})
    got = labels(matrix, runs)
    assert got["M+4"] == "81Br2 M+4" and got["M+2"] == "81Br M+2" and got["M+3"] == "13C 81Br M+3"
    assert isotopes.halogen_pairs({"37Cl", "81Br"}, 2.23, 0.95) == {("81Br", "81Br")}


@pytest.mark.parametrize("m2, m4, pairs", [(0.64, 0.1024, {("37Cl", "37Cl")}),       # two Cl
                                           (1.293, 0.311, {("37Cl", "81Br")}),       # one Cl, one Br
                                           (1.613, 0.725, {("37Cl", "81Br")}),       # two Cl, one Br: mostly ClBr
                                           (0.64, 0.95, set())])                     # a Br2-sized M+4 on a Cl2 M+2
def test_halogen_pairs_read_both_ratios_against_one_count(m2: float, m4: float, pairs: set) -> None:
    assert isotopes.halogen_pairs({"37Cl", "81Br"}, m2, m4) == pairs


def test_simeconazole_its_30si_m_plus_2_is_not_called_sulfur() -> None:
    """Simeconazole, C14H20FN3OSi (no S), [M+H]+ 294.1432: 30Si at +1.996844 (3.35 % per Si, IUPAC 2013), 1.0 mDa
    from 34S, was labelled "34S M+2" in a spike-in study; 13C2, 13C 29Si and 18O merge 8 mDa higher (2.1 %). 29Si
    (5.1 %) merges with 13C at M+1 (the module docstring's pattern generator)."""
    matrix, runs = compound(294.143243, {"M+1": (1.00222, 0.216), "30Si": (1.996844, 0.0335),
                                         "13C2": (2.00530, 0.021)})
    got = labels(matrix, runs)
    assert got["30Si"] in ("34S/30Si M+2", "30Si M+2") and got["13C2"] == "M+2" and got["M+1"] == "M+1"
    assert isotopes.STEPS["30Si M+2"] == pytest.approx(29.973770 - 27.976927, abs=2e-6)


def test_a_monochlorinated_m_plus_4_is_13c2_with_37cl() -> None:
    """Pyraclostrobin, C19H18ClN3O4, [M+H]+ 388.1059: its M+4 is 13C2 37Cl (+4.003760, 0.64 %), no 37Cl2; its 13C2
    M+2 (2 %, +2.006710) and 37Cl M+2 (32 %) are both taken."""
    matrix, runs = compound(388.105861, {"M+1": (1.003355, 0.2055), "37Cl": (1.997050, 0.32),
                                         "13C2": (2.006710, 0.02), "M+3": (3.000405, 0.0658),
                                         "M+4": (4.003760, 0.0064)})
    got = labels(matrix, runs)
    assert got["13C2"] == "M+2" and got["37Cl"].endswith(" M+2") and "37Cl" in got["37Cl"]
    assert got["M+3"].startswith("13C 37Cl") and got["M+4"].startswith("13C2 37Cl") and got["M+4"].endswith(" M+4")


@pytest.mark.parametrize("ratio", [0.01, 8.0])
def test_a_feature_2_da_up_with_a_ratio_no_isotope_has_is_not_grouped(ratio: float) -> None:
    """+1.99705 Da, co-varying, but at 1 % (below one S, 4.5 %; 13C2 is 32 ppm away) or at 8x (more than the Br an
    ion of m/z 300 can hold, at most 4.9x): not an isotope, and no adduct either."""
    matrix, runs = compound(300.0, {"X": (1.997050, ratio)})
    table = adducts.group_adducts(matrix, runs, PARAMS)
    assert table["compound_group"].n_unique() == 2 and table["adduct"].null_count() == 2


def test_an_m_plus_4_needs_its_heavy_m_plus_2() -> None:
    matrix, runs = compound(300.0, {"M+4": (3.994100, 0.10)})
    assert adducts.group_adducts(matrix, runs, PARAMS)["compound_group"].n_unique() == 2
    with_m2, runs = compound(300.0, {"M+2": (1.997050, 0.64), "M+4": (3.994100, 0.10)})
    assert labels(with_m2, runs)["M+4"] == "37Cl2 M+4"
    # a dichlorinated M+2 with a Br2-sized M+4 (1:2:1) does not read as 37Cl2
    misfit, runs = compound(300.0, {"M+2": (1.997050, 0.64), "M+4": (3.994100, 0.95)})
    assert adducts.group_adducts(misfit, runs, PARAMS).filter(pl.col("consensus_id") == "M+4")["adduct"][0] is None


@pytest.mark.parametrize("ratio, label", [(0.10, "M+2"), (0.50, "37Cl/34S M+2")])
def test_where_13c2_and_a_heavy_atom_both_fit_the_ratio_decides(ratio: float, label: str) -> None:
    """At m/z 700 a difference of +2.00125 Da is within 10 ppm of 13C2 (+2.00671) and of 34S (+1.99580) and 37Cl:
    a 13C2 peak can be 10 % of M there (at most 30 %), not 50 %."""
    matrix, runs = compound(700.0, {"X": (2.001253, ratio)})
    assert labels(matrix, runs)["X"] == label


def test_13c_peaks_of_a_compound_without_heavy_atoms_keep_their_labels() -> None:
    matrix, runs = compound(450.2, {"M+1": (isotopes.C13_STEP, 0.25), "M+2": (2 * isotopes.C13_STEP, 0.035)})
    assert labels(matrix, runs) == {"M": None, "M+1": "M+1", "M+2": "M+2"}
    assert adducts.adduct_grouping(matrix, runs, PARAMS).counts["n_heavy_isotope_peaks"] == 0


def test_the_37cl_peak_of_a_chloride_adduct_in_negative_mode() -> None:
    matrix, runs = compound(200.1, {"Cl": (CL, 0.5), "Cl M+2": (CL + 1.997050, 0.5 * 0.32)})
    assert labels(matrix, runs, "negative") == {"M": "[M-H]-", "Cl": "[M+Cl]-", "Cl M+2": "[M+Cl]- 37Cl M+2"}


@pytest.mark.parametrize("label", ["[M+H]+ 37Cl M+2", "[M+H]+ 37Cl/34S M+2", "[M+H]+ 13C 37Cl/81Br M+3",
                                   "[M+Na]+ 37Cl2 M+4", "37Cl81Br/81Br2 M+4", "[M+H]+ 13C2 37Cl M+4",
                                   "[M+H]+ 34S/30Si M+2", "[M+H]+ 13C 30Si M+3"])
def test_identification_reads_every_heavy_isotope_label_as_an_isotope_peak(label: str) -> None:
    note = adducts.adduct_contradiction(label, "[M+H]+")
    assert note is not None and "isotope peak" in note
    assert adducts.adduct_contradiction("[M+H]+", "[M+H]+", ["[M+H]+", label, "[M+Na]+"]) is None


def test_steps_and_readings() -> None:
    # steps from IUPAC atomic masses (37Cl 36.965903, 35Cl 34.968853; 81Br 80.916291, 79Br 78.918337)
    assert isotopes.STEPS["37Cl M+2"] == pytest.approx(36.965903 - 34.968853, abs=2e-6)
    assert isotopes.STEPS["81Br2 M+4"] == pytest.approx(2 * (80.916291 - 78.918337), abs=4e-6)
    assert isotopes.STEPS["13C 34S M+3"] == pytest.approx(1.003355 + 1.995796, abs=2e-6)
    assert isotopes.label(["34S M+2", "37Cl M+2"]) == "37Cl/34S M+2"
    assert isotopes.label(["81Br2 M+4", "37Cl2 M+4"]) == "37Cl2/81Br2 M+4"
    assert all(k.rsplit(" ", 1)[-1] == f"M+{v[1]}" for k, v in isotopes.KINDS.items())
    # 13C2 is tried before a heavy atom at M+2; two heavy atoms before 13C2 with one at M+4
    assert isotopes.reading("M+2") < isotopes.reading("37Cl M+2")
    assert isotopes.reading("37Cl2 M+4") < isotopes.reading("13C2 37Cl M+4")


def test_a_15n_peak_left_apart_by_the_feature_finder_is_an_isotope_peak() -> None:
    """Scientist's trial (24-run spike-in study): the feature finder folds the 13C peak (+1.003355) into its feature
    and leaves the 15N peak, 6.3 mDa lower, a feature of its own; five spiked compounds' 15N peaks were unlabelled
    compound groups, one of them a differential 'hit'. Four N at m/z 218: 15N 1.5 % of M (IUPAC 0.365 % per N)."""
    matrix, runs = compound(218.02111, {"15N": (0.997035, 0.0146), "Na": (NA, 0.3)})
    assert labels(matrix, runs) == {"M": "[M+H]+", "15N": "[M+H]+ 15N M+1", "Na": "[M+Na]+"}
    # with the 13C peak as a feature too, each takes its own reading
    matrix, runs = compound(218.02111, {"M+1": (1.003355, 0.12), "15N": (0.997035, 0.0146)})
    assert labels(matrix, runs) == {"M": None, "M+1": "M+1", "15N": "15N M+1"}
    assert isotopes.STEPS["15N M+1"] == pytest.approx(15.000109 - 14.003074, abs=2e-6)
    assert isotopes.STEPS["33S M+1"] == pytest.approx(32.971459 - 31.972071, abs=2e-6)
    assert isotopes.reading("M+1") < isotopes.reading("15N M+1") < isotopes.reading("M+2")
    # a peak 0.997 Da up at 30 % of M is no 15N (at most 1.3 x 15 N x 0.365 % + 5 % at m/z 218)
    matrix, runs = compound(218.02111, {"X": (0.997035, 0.30)})
    assert adducts.group_adducts(matrix, runs, PARAMS)["compound_group"].n_unique() == 2


def test_a_trichlorinated_compound_reads_37cl_at_m_plus_2_once_its_m_plus_4_says_so() -> None:
    """Fluopicolide, C14H8Cl3F3N2O, [M+H]+ 382.9727 (pattern: the module docstring's generator): its M+2 (96 %) also
    fits one Br by its ratio, so alone it reads "37Cl/81Br M+2"; its M+4 (30.7 %) fits three Cl only, and the group
    read "37Cl/81Br M+2" beside "37Cl2 M+4" (scientist's trial). The M+4's counts narrow the M+2 and M+3 labels."""
    peaks = {"M+1": (1.003357, 0.1518), "M+2": (1.99705, 0.9599), "M+3": (3.000407, 0.1457), "M+4": (3.9941, 0.3071)}
    matrix, runs = compound(382.972707, peaks, noise=0.005)
    got = labels(matrix, runs)
    assert got == {"M": None, "M+1": "M+1", "M+2": "37Cl M+2", "M+3": "13C 37Cl M+3", "M+4": "37Cl2 M+4"}
    # one Cl and one Br give the same M+4 (0.311) and an M+2 of 1.29: measured 4 % high (1.00), the M+2 sits at the
    # edge of that count's slack and both readings stay named, at M+2 and M+4 alike
    noisy, runs = compound(382.972707, peaks)
    got = labels(noisy, runs)
    assert got["M+2"] == "37Cl/81Br M+2" and got["M+4"] == "37Cl2/37Cl81Br M+4"
    alone, runs = compound(382.972707, {"M+1": (1.003357, 0.1518), "M+2": (1.99705, 0.9599)})
    assert labels(alone, runs)["M+2"] == "37Cl/81Br M+2"  # without an M+4, one Br stays possible


def test_an_ion_whose_mass_defect_cannot_hold_a_br_gets_no_81br_peak() -> None:
    """Spike-in studies on a real QC run: a background ion at m/z 141.092 and one 1.998 Da above at Br's ratio
    (0.97) were labelled "81Br M+2"; the rest of the ion without a 79Br (62.17 Da) would need a mass defect of
    +0.17 Da, more than the hydrogen-richest organic ions carry."""
    matrix, runs = compound(141.091833, {"X": (1.997953, 0.97)})
    table = adducts.group_adducts(matrix, runs, PARAMS)
    assert table["compound_group"].n_unique() == 2 and table["adduct"].null_count() == 2
    assert not isotopes.defect_allows(("81Br",), np.array([141.091833]))[0]
    # real halogenated ions pass: ambroxol's [M+H]+ (Br2), ethiprole's (Cl2 S), a 30Si ion of simeconazole
    assert isotopes.defect_allows(("81Br", "81Br"), np.array([376.985864]))[0]
    assert isotopes.defect_allows(("37Cl", "37Cl"), np.array([396.989898]))[0]
    assert isotopes.defect_allows(("30Si",), np.array([294.143243]))[0]
    # the alkylammonium bound: C8H20N+ (130.159) holds no Br but could, by its defect, hold what a 130 Da rest can
    assert isotopes.defect_allows(("15N",), np.array([130.159024]))[0]
