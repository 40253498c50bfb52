"""Adduct and isotope grouping (ms2study.correction.adducts) on synthetic study matrices with planted adducts."""

from __future__ import annotations

import itertools

import numpy as np
import polars as pl
import pytest
from scipy import stats

from ms2study.core.errors import InputError
from ms2study.correction import adducts, isotopes

PARAMS = {"adduct_rt_tol_s": 3.0, "adduct_mz_ppm": 10.0, "adduct_min_correlation": 0.6}
SHIFT = {"[M+H]+": 1.007276, "[M+Na]+": 22.989218, "[M+NH4]+": 18.033823, "[M+K]+": 38.963158,
         "[M-H]-": -1.007276, "[M+Cl]-": 34.969402, "[M+FA-H]-": 44.998201}


def planted_study(seed: int = 0, n_compounds: int = 80, n_samples: int = 20, n_decoys: int = 120,
                  polarity: str = "positive", ion_noise: float = 0.3
                  ) -> tuple[pl.DataFrame, list[str], pl.DataFrame]:
    """A feature matrix with planted ions of known compounds (truth: consensus_id, compound, ion) and co-eluting
    decoys of unrelated mass and independent intensity. Each compound: the protonated (deprotonated) ion, often a
    sodium/ammonium (chloride/formate) adduct, and the M+1 (sometimes M+2) 13C isotope of the main ion."""
    rng = np.random.default_rng(seed)
    samples = [f"S{i:02d}" for i in range(n_samples)]
    main, others = (("[M+H]+", ("[M+Na]+", "[M+NH4]+")) if polarity == "positive"
                    else ("[M-H]-", ("[M+Cl]-", "[M+FA-H]-")))
    rows, truth = [], []

    def add(ion_mz: float, rt: float, values: np.ndarray, compound: str | None, ion: str | None) -> None:
        cid = f"C{len(rows):04d}"
        values = values.copy()
        values[rng.random(n_samples) < 0.08] = np.nan          # missed detections
        rows.append({"consensus_id": cid, "mz": ion_mz * (1 + rng.normal(0, 2e-6)), "rt_s": rt + rng.normal(0, 0.4),
                     **dict(zip(samples, values.tolist()))})
        truth.append({"consensus_id": cid, "compound": compound, "ion": ion})

    for c in range(n_compounds):
        mass, rt = rng.uniform(120, 700), rng.uniform(60, 1100)
        abundance = np.exp(rng.normal(np.log(1e6), 1.0, n_samples))   # biological variation across samples
        ions = [main] + [o for o, p in zip(others, (0.8, 0.6)) if rng.random() < p]
        for ion in ions:
            level = abundance * rng.uniform(0.1, 1.0) * np.exp(rng.normal(0, ion_noise, n_samples))
            add(mass + SHIFT[ion], rt, level, f"K{c}", ion)
            if ion == main:
                carbons = mass / 14
                add(mass + SHIFT[ion] + isotopes.C13_STEP, rt, level * 0.0107 * carbons
                    * np.exp(rng.normal(0, 0.1, n_samples)), f"K{c}", f"{main} M+1")
                if rng.random() < 0.4:
                    add(mass + SHIFT[ion] + 2 * isotopes.C13_STEP, rt, level * (0.0107 * carbons) ** 2 / 2
                        * np.exp(rng.normal(0, 0.15, n_samples)), f"K{c}", f"{main} M+2")
    anchors = [r["rt_s"] for r in rows]
    for _ in range(n_decoys):      # co-eluting with a planted compound, unrelated mass, own intensities
        add(rng.uniform(100, 900), float(rng.choice(anchors)) + rng.uniform(-2, 2),
            np.exp(rng.normal(np.log(3e5), 1.0, n_samples)), None, None)
    matrix = pl.DataFrame(rows).with_columns(pl.lit(n_samples, dtype=pl.Int32).alias("n_detected"))
    matrix = matrix.select("consensus_id", "mz", "rt_s", "n_detected", *samples)
    return matrix, samples, pl.DataFrame(truth, schema={"consensus_id": pl.Utf8, "compound": pl.Utf8, "ion": pl.Utf8})


def pair_stats(groups: pl.DataFrame, truth: pl.DataFrame) -> tuple[float, int, int]:
    """(recall of planted same-compound pairs grouped together, planted pairs, false pairs grouped); asserts that
    every adduct label given is the planted ion (a group of one ion and its isotopes cannot name the adduct: null for
    the ion and "M+1" for the isotope are right there)."""
    t = truth.join(groups, on="consensus_id")
    labelled = t.filter(pl.col("adduct").is_not_null() & pl.col("ion").is_not_null())
    right = (labelled["adduct"] == labelled["ion"]) | labelled["ion"].str.ends_with(" " + labelled["adduct"])
    assert right.all(), labelled.filter(~right)
    assert t.filter(pl.col("ion").is_null())["adduct"].null_count() >= 0.95 * t["ion"].null_count()
    planted = grouped = 0
    for _, part in t.filter(pl.col("compound").is_not_null()).group_by("compound"):
        for x, y in itertools.combinations(part.iter_rows(named=True), 2):
            planted += 1
            grouped += x["compound_group"] == y["compound_group"]
    false = 0
    for _, part in t.group_by("compound_group"):
        for x, y in itertools.combinations(part.iter_rows(named=True), 2):
            false += x["compound"] is None or x["compound"] != y["compound"]
    return grouped / planted, planted, false


def test_planted_adducts_and_isotopes_are_grouped() -> None:
    matrix, samples, truth = planted_study(seed=1)
    result = adducts.adduct_grouping(matrix, samples, PARAMS)
    groups = result.table
    assert groups.columns == list(adducts.GROUP_COLUMNS) and groups.height == matrix.height
    assert groups["consensus_id"].to_list() == matrix["consensus_id"].to_list()
    recall, planted, false = pair_stats(groups, truth)
    assert planted > 150 and recall >= 0.9 and false <= 0.02 * planted, (recall, planted, false)
    # The planted [M+Na]+ / [M+NH4]+ ions are named as such.
    named = truth.join(groups, on="consensus_id").filter(pl.col("ion").is_in(["[M+Na]+", "[M+NH4]+"]))
    assert (named["adduct"] == named["ion"]).mean() >= 0.9
    # One representative per group, the [M+H]+ member where there is one.
    per_group = groups.group_by("compound_group").agg(pl.col("group_representative").sum().alias("n"),
                                                      (pl.col("adduct") == "[M+H]+").any().alias("has_h"))
    assert (per_group["n"] == 1).all()
    reps = groups.filter(pl.col("group_representative")).join(per_group, on="compound_group")
    assert reps.filter(pl.col("has_h"))["adduct"].eq("[M+H]+").all()
    assert result.pairs.height > 0 and set(result.pairs["kind"]) <= {"adduct", "M+1", "M+2"}
    assert any("in-source fragments" in n for n in result.notes)


def test_group_ids_follow_representative_mz_and_are_deterministic() -> None:
    matrix, samples, _ = planted_study(seed=2, n_compounds=30, n_decoys=20)
    groups = adducts.group_adducts(matrix, samples, PARAMS)
    again = adducts.group_adducts(matrix.reverse(), samples, PARAMS)
    assert groups.sort("consensus_id").equals(again.sort("consensus_id"))
    reps = groups.filter(pl.col("group_representative")).join(matrix.select("consensus_id", "mz"), on="consensus_id")
    numbers = reps.sort("mz")["compound_group"].str.slice(1).cast(pl.Int64).to_list()
    assert numbers == list(range(1, groups["compound_group"].n_unique() + 1))


def test_negative_mode() -> None:
    matrix, samples, truth = planted_study(seed=3, polarity="negative", n_compounds=50)
    groups = adducts.group_adducts(matrix, samples, PARAMS, polarity="negative")
    recall, planted, false = pair_stats(groups, truth)
    assert recall >= 0.9 and false <= 0.02 * planted, (recall, false)
    assert "[M-H]-" in set(groups["adduct"].drop_nulls()) and "[M+H]+" not in set(groups["adduct"].drop_nulls())


def _pair_matrix(values_a: np.ndarray, values_b: np.ndarray, samples: list[str]) -> pl.DataFrame:
    mass = 300.1
    return pl.DataFrame({"consensus_id": ["A", "B"], "mz": [mass + SHIFT["[M+H]+"], mass + SHIFT["[M+Na]+"]],
                         "rt_s": [500.0, 501.0], "n_detected": [len(samples)] * 2,
                         **{s: [float(a), float(b)] for s, a, b in zip(samples, values_a, values_b)}})


def test_uncorrelated_pair_of_right_mass_is_not_grouped() -> None:
    rng = np.random.default_rng(4)
    samples = [f"S{i}" for i in range(12)]
    a = np.exp(rng.normal(12, 1, 12))
    independent = adducts.adduct_grouping(_pair_matrix(a, np.exp(rng.normal(12, 1, 12)), samples), samples, PARAMS)
    assert independent.table["compound_group"].n_unique() == 2 and independent.table["adduct"].null_count() == 2
    assert independent.counts["n_rejected_correlation"] == 1
    correlated = adducts.group_adducts(_pair_matrix(a, a * 0.3 * np.exp(rng.normal(0, 0.1, 12)), samples),
                                       samples, PARAMS)
    assert correlated["compound_group"].n_unique() == 1
    assert correlated["adduct"].to_list() == ["[M+H]+", "[M+Na]+"]
    assert correlated["group_representative"].to_list() == [True, False]
    # Outside the RT window: not a pair.
    far = _pair_matrix(a, a * 0.3, samples).with_columns(pl.Series("rt_s", [500.0, 510.0]))
    assert adducts.group_adducts(far, samples, PARAMS)["compound_group"].n_unique() == 2


def test_few_samples_rely_on_rt_and_mass_and_say_so() -> None:
    samples = ["S1", "S2", "S3"]
    rng = np.random.default_rng(5)
    result = adducts.adduct_grouping(_pair_matrix(np.exp(rng.normal(12, 1, 3)), np.exp(rng.normal(12, 1, 3)),
                                                  samples), samples, PARAMS)
    assert result.table["compound_group"].n_unique() == 1
    assert result.counts["n_untested_correlation"] == 1 and any("mass alone" in n for n in result.notes)
    # Never detected together: rejected.
    apart = _pair_matrix(np.array([1e5, np.nan, np.nan]), np.array([np.nan, 1e5, 1e5]), samples)
    assert adducts.group_adducts(apart, samples, PARAMS)["compound_group"].n_unique() == 2


def test_implausible_isotope_ratio_is_not_an_isotope() -> None:
    rng = np.random.default_rng(6)
    samples = [f"S{i}" for i in range(10)]
    base = np.exp(rng.normal(12, 1, 10))
    mz = 250.1

    def matrix(ratio: float) -> pl.DataFrame:
        values = {s: [float(v), float(v * ratio)] for s, v in zip(samples, base)}
        return pl.DataFrame({"consensus_id": ["A", "B"], "mz": [mz, mz + isotopes.C13_STEP], "rt_s": [300.0, 300.2],
                             "n_detected": [10, 10], **values})

    iso = adducts.group_adducts(matrix(0.15), samples, PARAMS)
    assert iso["adduct"].to_list() == [None, "M+1"] and iso["compound_group"].n_unique() == 1
    assert iso["group_representative"].to_list() == [True, False]
    assert adducts.group_adducts(matrix(2.0), samples, PARAMS)["compound_group"].n_unique() == 2


def test_one_feature_one_group_and_one_adduct_per_group() -> None:
    matrix, samples, _ = planted_study(seed=7, n_compounds=120, n_decoys=300)
    groups = adducts.group_adducts(matrix, samples, PARAMS)
    assert groups["consensus_id"].n_unique() == groups.height
    dup = groups.drop_nulls("adduct").group_by("compound_group", "adduct").len().filter(pl.col("len") > 1)
    assert dup.height == 0


def test_collapse_keeps_the_representative_rows() -> None:
    matrix, samples, _ = planted_study(seed=8, n_compounds=20, n_decoys=10)
    groups = adducts.group_adducts(matrix, samples, PARAMS)
    corrected = matrix.join(groups, on="consensus_id", maintain_order="left").with_columns(
        pl.lit(False).alias("blank_flag"))
    collapsed = adducts.collapse_groups(corrected, samples)
    assert collapsed.height == groups["compound_group"].n_unique() and collapsed.columns == corrected.columns
    assert collapsed["group_representative"].all() and collapsed["compound_group"].n_unique() == collapsed.height
    with pytest.raises(InputError, match="exactly one representative"):
        adducts.collapse_groups(corrected.with_columns(pl.lit(True).alias("group_representative")), samples)
    with pytest.raises(InputError, match="lacks columns"):
        adducts.collapse_groups(matrix, samples)


def test_bad_input_names_the_fix() -> None:
    matrix, samples, _ = planted_study(seed=9, n_compounds=3, n_decoys=0)
    with pytest.raises(InputError, match="polarity"):
        adducts.group_adducts(matrix, samples, PARAMS, polarity="both")
    with pytest.raises(InputError, match="lacks columns"):
        adducts.group_adducts(matrix.drop("rt_s"), samples, PARAMS)
    empty = adducts.group_adducts(matrix.clear(), samples, PARAMS)
    assert empty.height == 0 and empty.schema == pl.Schema(adducts.GROUP_COLUMNS)


@pytest.mark.parametrize("library, feature, contradicts", [
    ("[M+H]+", "[M+H]+", False), ("[M+H]+", "[M+Na]+", True), ("[M+HCOO]-", "[M+FA-H]-", False),
    ("[M-H2O+H]+", "[M+H-H2O]+", False), ("[M]+", "[M+H]+", False), ("[M+H]+", "[M+H]+ M+1", True),
    (None, "[M+Na]+", False), ("[M+H]+", None, False), ("weird", "[M+Na]+", False), ("[2M+H]+", "[M+H]+", True),
    ("M+NH4", "[M+NH4]+", False), ("[M+Na]1+", "[M+Na]+", False),
    # MZmine writes the formate and acetate ions [M+FA]- and [M+Ac]- (trial L: read as another ion)
    ("[M+FA]-", "[M+FA-H]-", False), ("[M+FA]-", "[M+HCOO]-", False), ("[M+Ac]-", "[M+CH3COO]-", False),
    ("[M+FA]-", "[M-H]-", True), ("[M+FA+H]+", "[M+FA+H]+", False),
])
def test_adduct_contradiction(library: str | None, feature: str | None, contradicts: bool) -> None:
    assert (adducts.adduct_contradiction(feature, library) is not None) == contradicts


def test_an_ammonium_pair_alone_may_be_an_nh3_loss() -> None:
    """[M+H]+ / [M+NH4]+ alone is also an amine's [M+H]+ with its in-source NH3 loss: a library [M+H]+ at the
    "[M+NH4]+" member is then no contradiction; with a sodium adduct in the group it is."""
    assert adducts.adduct_contradiction("[M+NH4]+", "[M+H]+", ["[M+H]+", "[M+NH4]+", "[M+H]+ M+1"]) is None
    assert adducts.adduct_contradiction("[M+NH4]+", "[M+H]+", ["[M+H]+", "[M+NH4]+", "[M+Na]+"]) is not None
    assert adducts.adduct_contradiction("[M+NH4]+", "[M+Na]+", ["[M+H]+", "[M+NH4]+"]) is not None


def test_blocks_do_not_change_the_result(monkeypatch: pytest.MonkeyPatch) -> None:
    matrix, samples, _ = planted_study(seed=10, n_compounds=40, n_decoys=60)
    whole = adducts.group_adducts(matrix, samples, PARAMS)
    monkeypatch.setattr(adducts, "_PAIRS_PER_CHUNK", 37)
    monkeypatch.setattr(adducts, "_CELLS_PER_BLOCK", 100)
    assert adducts.group_adducts(matrix, samples, PARAMS).equals(whole)


def _independent_pairs(n_pairs: int, n_samples: int, seed: int) -> tuple[pl.DataFrame, list[str]]:
    """``n_pairs`` pairs of unrelated ions 21.98 Da apart ([M+H]+ / [M+Na]+ of one mass), co-eluting, each pair far
    from the others in retention time, with independent intensities: every grouping is a chance pairing."""
    rng = np.random.default_rng(seed)
    samples = [f"S{i}" for i in range(n_samples)]
    rows = []
    for k in range(n_pairs):
        mass = 200.0 + k * 0.37
        for j, ion in enumerate(("[M+H]+", "[M+Na]+")):
            rows.append({"consensus_id": f"P{k:03d}{'ab'[j]}", "mz": mass + SHIFT[ion], "rt_s": 100.0 + 20.0 * k,
                         "n_detected": n_samples, **dict(zip(samples, np.exp(rng.normal(12, 0.5, n_samples))))})
    return pl.DataFrame(rows), samples


def test_the_correlation_asked_for_grows_as_the_runs_shrink() -> None:
    """A fixed r >= 0.6 lets unrelated ions through at 6 runs about once in ten (the fresh user's 6-run study had 2
    right matches vetoed on such pairings); the one-sided test at adduct_alpha asks more of few runs."""
    from ms2study.correction import covariation

    assert covariation.critical_correlation(6, 0.01) == pytest.approx(0.882, abs=1e-3)
    assert covariation.critical_correlation(16, 0.05) == pytest.approx(0.426, abs=1e-3)
    need = covariation.required_correlation(np.array([2, 4, 6, 16, 40]), 0.01, 0.6, 5)
    assert np.isnan(need[:2]).all() and need[2] == pytest.approx(0.882, abs=1e-3) and need[3] == need[4] == 0.6
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(2, 8))
    expected = stats.pearsonr(x, y, alternative="greater").pvalue
    assert covariation.correlation_p_value(np.corrcoef(x, y)[0, 1], 8) == pytest.approx(expected, rel=1e-9)
    with pytest.raises(InputError, match="adduct_alpha"):
        covariation.critical_correlation(6, 1.0)

    matrix, samples = _independent_pairs(400, 6, seed=11)
    fixed = adducts.adduct_grouping(matrix, samples, {**PARAMS, "adduct_alpha": 1 - 1e-12, "adduct_min_runs": 4})
    tested = adducts.adduct_grouping(matrix, samples, PARAMS)
    chance_fixed = fixed.pairs.filter(pl.col("kind") == "adduct").height / 400
    chance_tested = tested.pairs.filter(pl.col("kind") == "adduct").height / 400
    assert 0.05 <= chance_fixed <= 0.2 and chance_tested <= 0.02, (chance_fixed, chance_tested)
    # over 16 runs the floor binds and unrelated ions rarely reach it
    many, samples16 = _independent_pairs(400, 16, seed=12)
    assert adducts.adduct_grouping(many, samples16, PARAMS).pairs.height / 400 <= 0.02


def test_each_label_carries_the_evidence_it_rests_on() -> None:
    rng = np.random.default_rng(13)
    samples = [f"S{i}" for i in range(8)]
    a = np.exp(rng.normal(12, 1, 8))
    grouped = adducts.group_adducts(_pair_matrix(a, a * 0.3 * np.exp(rng.normal(0, 0.05, 8)), samples), samples,
                                    PARAMS)
    assert grouped["adduct"].to_list() == ["[M+H]+", "[M+Na]+"]
    assert grouped["adduct_partner"].to_list() == ["B", "A"] and grouped["adduct_n_runs"].to_list() == [8, 8]
    assert grouped["adduct_correlation"][0] > 0.9
    assert grouped["adduct_p_value"][0] < 0.01 and grouped["adduct_p_value"][0] == grouped["adduct_p_value"][1]
    # three shared runs: grouped on mass and RT alone, no test, so nothing for identification to refuse on
    few = ["S1", "S2", "S3"]
    untested = adducts.group_adducts(_pair_matrix(a[:3], a[:3] * 0.3, few), few, PARAMS)
    assert untested["compound_group"].n_unique() == 1 and untested["adduct_n_runs"].to_list() == [3, 3]
    assert untested["adduct_p_value"].is_null().all() and untested["adduct_correlation"].is_null().all()


def test_the_study_wide_level_holds_over_many_candidate_pairs() -> None:
    """Per pair, a level of 0.01 over 400 unrelated candidate pairs still groups a few (about 1 in 100); the
    Benjamini-Hochberg q over the study's tested pairs (the default) groups none of them, and a pair tested under
    two mass hypotheses counts once."""
    from ms2study.correction import covariation

    p = np.array([0.001, 0.001, 0.02, np.nan, 0.04])
    a, b = np.array([0, 0, 1, 2, 3]), np.array([5, 5, 6, 7, 8])
    q = covariation.pair_q_values(p, a, b)
    assert np.isnan(q[3]) and q[0] == q[1]
    assert np.allclose(q[[0, 2, 4]], stats.false_discovery_control([0.001, 0.02, 0.04]))
    matrix, samples = _independent_pairs(400, 8, seed=11)
    per_pair = adducts.adduct_grouping(matrix, samples, {**PARAMS, "adduct_multiple_testing": "none"})
    study_wide = adducts.adduct_grouping(matrix, samples, PARAMS)
    assert per_pair.pairs.height >= 3 and study_wide.pairs.height == 0, (per_pair.pairs.height,
                                                                          study_wide.pairs.height)
    with pytest.raises(InputError, match="adduct_multiple_testing"):
        adducts.adduct_grouping(matrix, samples, {**PARAMS, "adduct_multiple_testing": "holm"})


def test_a_study_where_no_tested_pair_co_varies_says_so_in_the_warnings() -> None:
    """Copies of a few injections: 30 compounds' [M+H]+ and [M+Na]+ ions whose levels vary over 12 runs by
    independent noise only (no biological variation the two ions share). Every tested pair is refused; the log note
    counts them and the report's warnings say what that usually means. Two compounds that do co-vary make the
    refusal partial: counted in the log only."""
    from ms2study.correction import covariation
    from ms2study.correction.matrix import DEFAULT_PARAMS, _groups

    rng = np.random.default_rng(8)
    samples = [f"S{i}" for i in range(12)]

    def study(n_covarying: int) -> pl.DataFrame:
        rows = []
        for c in range(30):
            mass, rt = 150.0 + 7.3 * c, 60.0 + 20.0 * c
            shared = rng.normal(0, 1.0, 12) if c < n_covarying else np.zeros(12)
            for adduct, level in (("[M+H]+", 14.0), ("[M+Na]+", 12.5)):
                values = np.exp(level + shared + rng.normal(0, 0.05, 12))
                rows.append({"consensus_id": f"C{len(rows) + 1}", "mz": mass + SHIFT[adduct], "rt_s": rt,
                             "n_detected": 12, **dict(zip(samples, values.tolist()))})
        return pl.DataFrame(rows)

    grouping = adducts.adduct_grouping(study(0), samples, PARAMS)
    assert grouping.counts["n_tested_correlation"] >= 30 and covariation.all_refused(grouping.counts)
    assert grouping.table["compound_group"].n_unique() == 60
    note = next(n for n in grouping.notes if "were not grouped" in n)
    assert note.startswith(f"{grouping.counts['n_rejected_correlation']} of {grouping.counts['n_tested_correlation']}")
    assert "none passed" in note and "adduct_min_runs" in note
    warnings: list[str] = []
    _groups(study(0), samples, DEFAULT_PARAMS | {"adducts": True}, "positive", warnings)
    assert len(warnings) == 1 and "none passed" in warnings[0]
    partial = adducts.adduct_grouping(study(2), samples, PARAMS)
    assert not covariation.all_refused(partial.counts) and partial.counts["n_rejected_correlation"] > 0
    assert all("none passed" not in n for n in partial.notes)
    quiet: list[str] = []
    _groups(study(2), samples, DEFAULT_PARAMS | {"adducts": True}, "positive", quiet)
    assert quiet == []
