"""Adduct labels never contradict an accepted identification in silence: a pairing on mass and RT alone needs the
partner in about half the feature's runs or in the runs where the stronger ion is most intense (correction.adducts /
covariation.unsupported_sparse), every disagreement of a
chosen library adduct with the grouped label is written in ``adduct_note`` (stages.identify), and the report shows
the accepted identification's adduct first (reporting.whatdiffers.identified_ions). A tested, correlated adduct is
still labelled and still refuses a contradicting library match."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from ms2study.correction import adducts, covariation
from ms2study.correction.adduct_notation import same_ion
from ms2study.reporting import cautions, whatdiffers
from ms2study.stages import identify

PARAMS = {"adduct_rt_tol_s": 3.0, "adduct_mz_ppm": 10.0, "adduct_min_correlation": 0.6}
MASS = 250.1
ION = {"[M+H]+": MASS + 1.007276, "[M+Na]+": MASS + 22.989218, "[M+K]+": MASS + 38.963158}
RUNS = [f"S{i:02d}" for i in range(16)]


def pair(first: np.ndarray, second: np.ndarray, second_ion: str = "[M+K]+") -> pl.DataFrame:
    """Two co-eluting features, A at [M+H]+ and B at ``second_ion`` of one neutral mass, over ``RUNS`` (NaN: not
    measured in that run)."""
    return pl.DataFrame({"consensus_id": ["A", "B"], "mz": [ION["[M+H]+"], ION[second_ion]], "rt_s": [300.0, 300.6],
                         **{s: [float(a), float(b)] for s, a, b in zip(RUNS, first, second)}})


def detected_in(values: np.ndarray, runs: int) -> np.ndarray:
    out = values.copy()
    out[runs:] = np.nan
    return out


def test_a_partner_in_few_of_the_features_runs_gives_no_mass_and_rt_label() -> None:
    """The trial's case: a spiked [M+H]+ measured in 12 runs and a background ion at the [M+K]+ difference measured
    with it in 3 (too few to test): the pair was grouped, the [M+H]+ feature labelled [M+K]+. Not any more; the same
    pair measured together in 4 of the feature's 6 runs is still grouped on mass and RT (and says it is untested)."""
    rng = np.random.default_rng(1)
    level = np.exp(rng.normal(13, 0.5, 16))
    partner = np.full(16, np.nan)
    partner[:3] = level[:3] * 0.2
    sparse = adducts.adduct_grouping(pair(detected_in(level, 12), partner), RUNS, PARAMS)
    assert sparse.table["adduct"].to_list() == [None, None]
    assert sparse.table["compound_group"].n_unique() == 2
    assert sparse.counts["n_rejected_sparse_partner"] == 1 and sparse.counts["n_untested_correlation"] == 0
    assert any("untested candidate pairs not grouped" in n for n in sparse.notes)
    partner[3] = level[3] * 0.2
    together = adducts.adduct_grouping(pair(detected_in(level, 6), partner), RUNS, PARAMS)
    assert together.table["adduct"].to_list() == ["[M+H]+", "[M+K]+"]
    assert together.table["adduct_p_value"].is_null().all() and together.table["adduct_n_runs"].to_list() == [4, 4]
    assert together.counts["n_rejected_sparse_partner"] == 0 and together.counts["n_untested_correlation"] == 1


def test_the_rule_reads_the_runs_of_each_labelled_feature() -> None:
    """An adduct pair labels both features, so both must share half their runs; an isotope pair labels only its
    heavier peak, which a weak M+1 measured in few runs of its monoisotopic feature does."""
    shared, n_a, n_b = np.array([3, 3, 4, 3]), np.array([12, 3, 6, 16]), np.array([3, 12, 4, 3])
    adduct_pair = covariation.sparse_partner(shared, n_a, n_b, np.array([True, True, True, False]))
    assert adduct_pair.tolist() == [True, True, False, False]
    assert covariation.MIN_UNTESTED_CO_DETECTION == 0.5


def test_a_weak_adduct_measured_only_where_its_compound_is_most_intense_is_grouped_again() -> None:
    """A weak [M+K]+ crossing the detection limit only in the 4 runs where its [M+H]+ is most intense (of 16) is too
    sparse for the correlation test and for the half-the-runs rule, but its runs are the top of the [M+H]+ ranking
    (Mann-Whitney p 1/1820): grouped on mass and RT (untested, refuses nothing). The same partner in 4 runs from the
    middle of the ranking is not."""
    rng = np.random.default_rng(5)
    level = np.exp(rng.normal(13, 0.8, 16))
    top = np.argsort(-level)[:4]
    weak = np.full(16, np.nan)
    weak[top] = level[top] * 0.02
    grouped = adducts.adduct_grouping(pair(level, weak), RUNS, PARAMS)
    assert grouped.table["adduct"].to_list() == ["[M+H]+", "[M+K]+"]
    assert grouped.table["adduct_p_value"].is_null().all() and grouped.counts["n_rejected_sparse_partner"] == 0
    middle = np.argsort(-level)[6:10]
    chance = np.full(16, np.nan)
    chance[middle] = level[middle] * 0.02
    apart = adducts.adduct_grouping(pair(level, chance), RUNS, PARAMS)
    assert apart.table["adduct"].to_list() == [None, None] and apart.counts["n_rejected_sparse_partner"] == 1
    p = covariation.detection_pattern_p(np.log(np.vstack([level, weak, chance])), np.array([0, 0, 1]),
                                        np.array([1, 2, 2]))
    assert p[0] == pytest.approx(1 / 1820) and p[1] > 0.2 and np.isnan(p[2])  # never measured together: no test


def test_the_detection_pattern_test_holds_its_level_for_chance_partners() -> None:
    """Partners measured in runs drawn at random (2-7 of the 16 runs of the other ion, as a chance ion near its own
    detection limit would be): p <= alpha in at most a share alpha of pairs (3 standard errors), at 0.01 and 0.05."""
    rng = np.random.default_rng(7)
    n_pairs = 4000
    logx = np.full((2 * n_pairs, 16), np.nan)
    logx[0::2] = rng.normal(13, 1, (n_pairs, 16))
    for i in range(n_pairs):
        runs = rng.choice(16, int(rng.integers(2, 8)), replace=False)
        logx[2 * i + 1, runs] = rng.normal(9, 1, runs.size)
    p = covariation.detection_pattern_p(logx, np.arange(0, 2 * n_pairs, 2), np.arange(1, 2 * n_pairs, 2))
    assert np.isfinite(p).all()
    for alpha in (0.01, 0.05):
        assert np.mean(p <= alpha) <= alpha + 3 * np.sqrt(alpha * (1 - alpha) / n_pairs)
    assert np.mean(p <= 0.05) >= 0.03  # exact, not needlessly conservative


def test_a_correlated_sodium_adduct_is_still_labelled_and_still_refuses_a_protonated_match() -> None:
    """Tested pairs are not touched by the co-detection rule: a real [M+Na]+ measured in 7 of the [M+H]+ feature's
    16 runs (under half) and co-varying with it is labelled, tested, and identification refuses a library [M+H]+
    spectrum at it."""
    rng = np.random.default_rng(2)
    level = np.exp(rng.normal(13, 0.8, 16))
    sodium = detected_in(level * 0.3 * np.exp(rng.normal(0, 0.05, 16)), 7)
    grouping = adducts.adduct_grouping(pair(level, sodium, "[M+Na]+"), RUNS, PARAMS)
    table = grouping.table
    assert table["adduct"].to_list() == ["[M+H]+", "[M+Na]+"] and table["compound_group"].n_unique() == 1
    assert table["adduct_n_runs"].to_list() == [7, 7] and table["adduct_p_value"][1] < 0.01
    assert grouping.counts["n_rejected_sparse_partner"] == 0
    ann, links = annotations([("B", "beta", "[M+H]+", 1e-7), ("B", "beta", "[M+H]+", 1e-7)])
    got = identify.identify_features(ann, links, 0.05, groups=table).row(0, named=True)
    assert not got["accepted"] and got["adduct_note"].startswith("not accepted: library adduct [M+H]+ contradicts")


COLUMNS = ["spectrum_id", "sample_id", "feature_id", "rank", "library_id", "library_name", "library_inchikey",
           "library_smiles", "library_formula", "library_adduct", "combined", "cosine", "p_value", "msi_level",
           "isomer_inchikeys"]


def annotations(hits: list[tuple[str, str, str, float]]) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Rank-1 annotations, one spectrum per (consensus feature, compound, library adduct, p) in its own run, and the
    links that put each on its consensus feature."""
    rows = []
    for k, (feature, name, adduct, p) in enumerate(hits):
        key = name.upper()[:1] * 14 + "-X-N"
        rows.append((f"r{k}:{k}", f"r{k}", f"r{k}:{feature}", 1, f"L-{name}", name, key, "C", "CxHy", adduct,
                     0.9, 0.9, p, 2, [key]))
    ann = pl.DataFrame([dict(zip(COLUMNS, r)) for r in rows],
                       schema_overrides={"msi_level": pl.Int8, "isomer_inchikeys": pl.List(pl.Utf8)})
    links = ann.select("sample_id", "feature_id").with_columns(
        pl.col("feature_id").str.split(":").list.last().alias("consensus_id"))
    return ann, links


def grouping(rows: list[tuple]) -> pl.DataFrame:
    """A corrected-matrix grouping table: (consensus_id, group, adduct, partner, shared runs, r, p, n_detected)."""
    return pl.DataFrame(rows, orient="row", schema={
        "consensus_id": pl.Utf8, "compound_group": pl.Utf8, "adduct": pl.Utf8, "adduct_partner": pl.Utf8,
        "adduct_n_runs": pl.Int32, "adduct_correlation": pl.Float64, "adduct_p_value": pl.Float64,
        "n_detected": pl.Int32}).with_columns(pl.lit(True).alias("group_representative"))


@pytest.mark.parametrize("rows, feature, expected", [
    # untested [M+K]+ label on an [M+H]+ match (the trial's benzimidazole)
    ([("A", "G1", "[M+K]+", "P", 3, None, None, 4), ("P", "G1", "[M+H]+", "A", 3, None, None, 3)], "A",
     "grouped as [M+K]+ of P by mass and RT only (measured together in 3 of the 4 runs that detected it, too few "
     "to test their correlation); library match is [M+H]+: a grouping on mass and RT alone refuses no match"),
    # tested [M+H]+ / [M+NH4]+ pair that also reads as an NH3 loss (the trial's Phantolide: its note was null)
    ([("A", "G1", "[M+NH4]+", "P", 12, 0.95, 1e-5, 12), ("P", "G1", "[M+H]+", "A", 12, 0.95, 1e-5, 12)], "A",
     "grouped as [M+NH4]+ of P (r 0.95 over 12 runs); library match is [M+H]+, which the pair also fits: [M+H]+ "
     "here, its in-source NH3 loss at the partner"),
    # untested isotope label on a monoisotopic match
    ([("A", "G1", "[M+H]+ M+1", "P", 2, None, None, 3), ("P", "G1", None, None, None, None, None, 16)], "A",
     "grouped as [M+H]+ M+1 of P by mass and RT only"),
])
def test_every_disagreement_of_a_standing_match_is_noted(rows: list[tuple], feature: str, expected: str) -> None:
    ann, links = annotations([(feature, "alpha", "[M+H]+", 1e-7), (feature, "alpha", "[M+H]+", 1e-7)])
    got = identify.identify_features(ann, links, 0.05, groups=grouping(rows)).row(0, named=True)
    assert got["accepted"] and got["adduct"] == "[M+H]+"
    assert got["adduct_note"] is not None and got["adduct_note"].startswith(expected), got["adduct_note"]


def test_no_accepted_identification_disagrees_with_its_label_without_a_note() -> None:
    """Over labels of every kind (adducts, isotope peaks, tested and not, with and without evidence columns), an
    accepted identification whose library adduct names another ion than its feature's label always has a note that
    names both; one that agrees has none."""
    labels = ["[M+H]+", "[M+Na]+", "[M+NH4]+", "[M+K]+", "[M+H]+ M+1", "[M+H-H2O]+", None]
    for tested in (True, False, None):
        for label in labels:
            evidence = {True: ("P", 8, 0.9, 1e-4, 10), False: ("P", 3, None, None, 5), None: (None,) * 5}[tested]
            rows = [("A", "G1", label, *evidence), ("P", "G1", "[M+H]+" if label != "[M+H]+" else "[M+Na]+",
                                                    *evidence)]
            groups = grouping(rows)
            if tested is None:
                groups = groups.drop("adduct_partner", "adduct_n_runs", "adduct_correlation", "adduct_p_value")
            ann, links = annotations([("A", "alpha", "[M+H]+", 1e-7), ("A", "alpha", "[M+H]+", 1e-7)])
            got = identify.identify_features(ann, links, 0.05, groups=groups).row(0, named=True)
            if got["accepted"] and same_ion(label, "[M+H]+") is False:
                assert got["adduct_note"] and label in got["adduct_note"] and "[M+H]+" in got["adduct_note"], (
                    tested, label, got["adduct_note"])
            elif got["accepted"]:
                assert got["adduct_note"] is None, (tested, label, got["adduct_note"])
            else:  # refused: only a tested (or evidence-less) contradicting label refuses
                assert tested is not False and got["adduct_note"].startswith("not accepted"), (tested, label)


def test_the_report_shows_the_accepted_identifications_adduct_first() -> None:
    tested = pl.DataFrame({"consensus_id": ["A", "B", "C", "D"],
                           "ion": ["[M+K]+", "[M+H]+", "[M+Na]+", None], "ion_tested": [False, True, True, None]})
    ident = pl.DataFrame({"consensus_id": ["A", "B", "C", "D"], "adduct": ["[M+H]+", "[M+H]+", "[M+H]+", "[M+H]+"],
                          "accepted": [True, True, False, True]})
    shown = whatdiffers.identified_ions(cautions.mark_untested_ions(tested, None), ident)
    assert shown["ion"].to_list() == ["[M+H]+ (library match); grouped as [M+K]+ (mass and RT only)", "[M+H]+",
                                      "[M+Na]+", None]
    assert shown.columns == tested.columns
    assert whatdiffers.identified_ions(tested, None).equals(tested)
    # trial AW: a quaternary ammonium matched as [M]+ and grouped as [M+Na]+, a label no permanent ion can carry
    permanent = whatdiffers.identified_ions(tested.head(1).with_columns(pl.lit("[M+Na]+").alias("ion")),
                                            ident.head(1).with_columns(pl.lit("[M]+").alias("adduct")))
    assert permanent["ion"][0] == "[M]+ (library match); grouped as [M+Na]+, which a permanent ion cannot be"
