"""Identification confidence: null-model p-values, BH q-values, isomer margin, and whether the FDR holds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from ms2study.identification import confidence
from ms2study.stages import identify
from ms2study.core.errors import InputError


def test_bh_q_values_match_the_textbook_example() -> None:
    p = np.array([0.01, 0.04, 0.03, 0.005, np.nan, 0.5])
    q = confidence.bh_q_values(p)
    # m = 5 finite p-values; sorted 0.005, 0.01, 0.03, 0.04, 0.5 -> 0.025, 0.025, 0.05, 0.05, 0.5
    np.testing.assert_allclose(q[[3, 0, 2, 1, 5]], [0.025, 0.025, 0.05, 0.05, 0.5])
    assert np.isnan(q[4])


def test_null_survival_is_monotone_and_extrapolates_the_tail() -> None:
    rng = np.random.default_rng(0)
    null = rng.beta(2, 5, 20000)
    dist = confidence.NullDistribution.from_scores(null)
    assert dist.n == 20000 and dist.top.size == confidence.STORED_TOP
    s = np.array([0.0, 0.2, 0.5, null.max(), 0.97, 0.999])
    g = dist.survival(s)
    assert np.all(np.diff(g) <= 1e-12) and g[0] == pytest.approx(1.0, abs=1e-3)
    assert g[1] == pytest.approx(((null >= 0.2).sum() + 1) / 20001, rel=2e-3)  # from the stored quantiles
    assert g[2] == pytest.approx(((null >= 0.5).sum() + 1) / 20001, rel=1e-9)  # exact upper part
    # Beyond the largest null score the exponential tail gives survival below 1/(N+1), still positive.
    assert 0 < g[-1] < g[-2] < 1 / 20001


def test_a_null_without_graded_scores_is_not_extrapolated() -> None:
    """Zeros and a few chance matches say nothing about how fast a tail falls: G stays >= 1/(N+1)."""
    dist = confidence.NullDistribution.from_scores(np.r_[np.zeros(500), [0.03, 0.2, 0.3]])
    assert dist.survival(np.array([0.99]))[0] == pytest.approx(1 / 504)


def test_null_p_values_are_valid_under_the_null() -> None:
    """For best-of-n scores drawn from the null itself, P(p <= a) <= a (up to noise)."""
    rng = np.random.default_rng(1)
    dist = confidence.NullDistribution.from_scores(rng.gamma(2.0, 0.1, 30000).clip(0, 1))
    for n in (1, 4, 16):
        best = rng.gamma(2.0, 0.1, (20000, n)).clip(0, 1).max(axis=1)
        p = dist.p_values(best, np.full(20000, n))
        for a in (0.001, 0.01, 0.05, 0.2):
            assert (p <= a).mean() <= a * 1.3 + 0.0005, (n, a)


def test_more_candidates_give_a_larger_p_value() -> None:
    dist = confidence.NullDistribution.from_scores(np.random.default_rng(2).beta(2, 6, 5000))
    p1, p64 = dist.p_values(np.array([0.6, 0.6]), np.array([1, 64]))
    assert p1 < 0.05 < p64
    with pytest.raises(InputError, match="wrong candidate"):
        confidence.Calibration.from_null(np.zeros(0), np.zeros(0), 0.0, {})


def test_calibration_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    cal = confidence.Calibration.from_null(np.r_[rng.random(9000), [-np.inf] * 10], rng.random(800), 0.07,
                                           {"rank_by": "combined", "plan": "fixed"}, {"n_queries": 800})
    back = confidence.Calibration.load(cal.save(tmp_path / "cal.json"))
    s, k = rng.random(50), rng.integers(1, 40, 50)
    # Scores are stored with 7 decimals.
    np.testing.assert_allclose(back.p_formula(s, k), cal.p_formula(s, k), rtol=1e-5)
    np.testing.assert_allclose(back.p_structure(s, k), cal.p_structure(s, k), rtol=1e-5)
    assert back.isomer_margin == 0.07 and back.scoring == cal.scoring and back.formula.n == 9000
    assert np.all(back.p_structure(s, k) >= back.p_formula(s, k))
    (tmp_path / "bad.json").write_text('{"format": "something else"}')
    with pytest.raises(InputError, match="calibration"):
        confidence.Calibration.load(tmp_path / "bad.json")


def test_bh_on_null_model_p_values_controls_the_fdr() -> None:
    """Known truth: queries are true matches (their right candidate scores high) or unknowns (all n candidates
    wrong, scores from the null). Over many simulated searches the mean false-discovery proportion stays at or
    below the nominal level."""
    rng = np.random.default_rng(4)
    cal = confidence.Calibration.from_null(rng.beta(2, 4, 20000), rng.beta(2, 4, 20000), 0.0, {})
    for alpha in (0.01, 0.05, 0.1):
        fdps = []
        for _ in range(200):
            n = rng.integers(1, 20, 300)
            unknown = rng.random(300) < 0.4
            wrong_best = np.array([rng.beta(2, 4, k).max() for k in n])
            scores = np.where(unknown, wrong_best, np.maximum(rng.beta(8, 2, 300), wrong_best))
            q = confidence.bh_q_values(cal.p_formula(scores, n))
            acc = q <= alpha
            fdps.append(unknown[acc].mean() if acc.any() else 0.0)
        assert np.mean(fdps) <= alpha * 1.1


def test_adaptive_q_values_control_the_fdr_and_find_more_when_many_hits_are_right() -> None:
    """Known truth, as above, at several shares of unknowns (wrong hits) and search sizes: Storey's q-values keep
    the mean false-discovery proportion at or below the nominal level, find more than Benjamini-Hochberg when
    most queries are in the library, and stay near BH's when every query is unknown (pi0 estimated near 1; any
    acceptance is then false)."""
    rng = np.random.default_rng(11)
    cal = confidence.Calibration.from_null(rng.beta(2, 4, 20000), rng.beta(2, 4, 20000), 0.0, {})
    for unknown_share, m in ((0.2, 300), (0.5, 300), (0.2, 30), (0.8, 60), (1.0, 100)):
        fdps, gained, pi0s = {a: [] for a in (0.01, 0.05, 0.1)}, [], []
        for _ in range(200):
            n = rng.integers(1, 20, m)
            unknown = rng.random(m) < unknown_share
            wrong_best = np.array([rng.beta(2, 4, k).max() for k in n])
            scores = np.where(unknown, wrong_best, np.maximum(rng.beta(8, 2, m), wrong_best))
            p = cal.p_formula(scores, n)
            q, pi0 = confidence.adaptive_q_values(p)
            pi0s.append(pi0)
            for alpha, values in fdps.items():
                acc = q <= alpha
                values.append(unknown[acc].mean() if acc.any() else 0.0)
            gained.append(int((q <= 0.05).sum()) - int((confidence.bh_q_values(p) <= 0.05).sum()))
        for alpha, values in fdps.items():
            assert np.mean(values) <= alpha * 1.1, (unknown_share, m, alpha, np.mean(values))
        assert min(gained) >= 0  # never fewer than BH
        assert np.mean(pi0s) >= min(unknown_share, 0.9)  # the estimate errs high (conservative)
        if unknown_share == 0.2 and m == 300:
            assert np.mean(pi0s) < 0.5 and np.mean(gained) > 5
    every_unknown = rng.random(200)
    q, pi0 = confidence.adaptive_q_values(every_unknown)
    assert pi0 > 0.8 and np.allclose(q, np.minimum(confidence.bh_q_values(every_unknown) * pi0, 1.0))
    assert confidence.adaptive_q_values(np.array([np.nan, np.nan]))[1] == 1.0
    assert confidence.storey_pi0(np.array([0.9, 0.01, 0.02, 0.03])) == pytest.approx(1.0)  # (1 + 1) / (4 * 0.5)


def test_isomer_margin_is_the_smallest_gap_meeting_the_target() -> None:
    gap = np.r_[np.zeros(20), np.full(10, 0.02), np.full(100, 0.3)]
    wrong = np.r_[np.r_[np.ones(10), np.zeros(10)], np.r_[np.ones(5), np.zeros(5)], np.zeros(100)]
    # gap > 0: 5 wrong of 110 (4.5%) > 2%; gap > 0.02: 0 of 100 -> margin 0.02
    assert confidence.learn_isomer_margin(gap, wrong.astype(bool), 0.02) == pytest.approx(0.02)
    assert confidence.learn_isomer_margin(gap, wrong.astype(bool), 0.05) == 0.0
    assert confidence.learn_isomer_margin(np.array([]), np.array([], dtype=bool)) == confidence.NO_MARGIN
    # 12 self-searches (the demo's calibration), 1 wrong at gap 0.008: 0 of 11 above it shows no 2 % rate
    few = np.r_[0.008, np.linspace(0.05, 0.5, 11)]
    assert confidence.learn_isomer_margin(few, np.r_[True, np.zeros(11, bool)], 0.02) == confidence.NO_MARGIN


def test_an_isomer_that_can_never_be_identified_is_no_competitor_of_the_isomer_margin() -> None:
    from ms2study.identification import calibration

    # Three self-searches (query structure 0 or 3). Search 0: structure 0 (0.9) beats isomer 1, which shares too few
    # peaks to be identified (-inf); search 1: isomer 1 (0.8) beats the right structure 0 (0.6); search 2: every
    # candidate unidentifiable. Only search 1 has a competing isomer: gap 0.2, wrong.
    off = np.array([0, 2, 4, 6])
    cand = np.array([0, 1, 2, 3, 4, 5])
    structure = np.array([0, 1, 0, 1, 3, 4])
    formula = np.array([7, 7, 7, 7, 8, 8])
    key = np.array([0.9, -np.inf, 0.6, 0.8, np.nan, -np.inf])
    truth = np.array([0, 0, 0, 0, 3, 3])
    search_key, null_key = calibration.search_and_null_keys(key)
    gap, wrong = calibration._isomer_gaps(off, cand, search_key, structure, formula, truth)
    assert gap.tolist() == pytest.approx([0.2]) and wrong.tolist() == [True]
    # the nulls keep such a candidate as a finite score no hit reaches: the Sidak n counts it
    null = confidence.NullDistribution.from_scores(null_key[[1, 4, 5, 3]])
    assert null.n == 4 and null.survival(np.array([0.4]))[0] == pytest.approx(2 / 5)


def test_library_codes_use_the_first_inchikey_block_and_formula() -> None:
    meta = pl.DataFrame({"inchikey": ["AAAAAAAAAAAAAA-BBBBBBBBBB-N", "AAAAAAAAAAAAAA-CCCCCCCCCC-N", None, None],
                         "name": ["a", "a2", "Glucose", "glucose"], "formula": ["C6H12O6", "C6H12O6", "", None]})
    structure, formula = confidence.library_codes(meta)
    assert structure[0] == structure[1] and structure[2] == structure[3] and structure[0] != structure[2]
    assert formula[0] == formula[1] >= 0 and formula[2] == formula[3] == -1


def _annotations(rows: list[tuple]) -> pl.DataFrame:
    cols = ["spectrum_id", "sample_id", "feature_id", "rank", "library_id", "library_name", "library_inchikey",
            "library_smiles", "library_formula", "library_adduct", "combined", "cosine", "p_value", "msi_level",
            "isomer_inchikeys"]
    return pl.DataFrame([dict(zip(cols, r)) for r in rows],
                        schema_overrides={"msi_level": pl.Int8, "isomer_inchikeys": pl.List(pl.Utf8)})


IK_A, IK_B, IK_C = "AAAAAAAAAAAAAA-X-N", "BBBBBBBBBBBBBB-X-N", "CCCCCCCCCCCCCC-X-N"


def test_the_identity_with_the_strongest_evidence_names_the_feature() -> None:
    """Trial: a spiked compound, rank-1 in 6 runs with strong matches, shared its feature with 12 weaker spectra of
    an isomer triggered in every run; counting spectra named the feature after the isomer (study q 0.041, not
    accepted at 0.01). The smallest Simes p over the feature's spectra now decides; its q is the feature's."""
    strong = [(f"s{i}:1", f"s{i}", f"s{i}:F1", 1, "LA", "alpha", IK_A, "C", "C9H11NO2", "[M+H]+", 0.95, 0.95, 2e-4,
               3, [IK_A, IK_C]) for i in range(6)]
    weak = [(f"s{i}:2", f"s{i}", f"s{i}:F1", 1, "LC", "gamma", IK_C, "C", "C9H11NO2", "[M+H]+", 0.6, 0.97, 2e-2, 3,
             [IK_C, IK_A]) for i in range(12)]
    other = [(f"s{i}:3", f"s{i}", f"s{i}:F2", 1, "LB", "beta", IK_B, "C", "C5H6O", "[M+H]+", 0.9, 0.9, 1e-5, 2,
              [IK_B]) for i in range(3)]
    ann = _annotations(strong + weak + other)
    links = ann.select("sample_id", "feature_id").unique().with_columns(
        pl.when(pl.col("feature_id").str.ends_with("F1")).then(pl.lit("C1")).otherwise(pl.lit("C2"))
        .alias("consensus_id"))
    c1 = identify.identify_features(ann, links, fdr=0.01).filter(pl.col("consensus_id") == "C1").row(0, named=True)
    assert c1["inchikey"] == IK_A and c1["n_supporting"] == 6 and c1["n_spectra"] == 18
    assert c1["p_value"] == pytest.approx(18 * 2e-4 / 6) and c1["accepted"] and c1["msi_level"] == 3
    assert IK_C in c1["isomer_inchikeys"]  # the outvoted isomer is named among the isomers


def test_one_identification_per_consensus_feature() -> None:
    ann = _annotations([
        # C1: three spectra in two samples agree on A (level 2), a fourth picks B of another formula.
        ("s1:1", "s1", "s1:F1", 1, "LA", "alpha", IK_A, "C", "C6H6", "[M+H]+", 0.95, 0.9, 1e-6, 2, [IK_A]),
        ("s1:2", "s1", "s1:F1", 1, "LA", "alpha", IK_A, "C", "C6H6", "[M+H]+", 0.90, 0.85, 1e-4, 2, [IK_A]),
        ("s2:1", "s2", "s2:F7", 1, "LA", "alpha", IK_A, "C", "C6H6", "[M+H]+", 0.92, 0.88, 1e-5, 2, [IK_A]),
        ("s2:2", "s2", "s2:F7", 1, "LB", "beta", IK_B, "C", "C5H6O", "[M+H]+", 0.40, 0.3, 0.2, None, None),
        ("s2:2", "s2", "s2:F7", 2, "LA", "alpha", IK_A, "C", "C6H6", "[M+H]+", 0.30, 0.2, None, None, None),
        # C2: two spectra disagree between isomers A' and C of one formula -> level 3 naming both.
        ("s1:3", "s1", "s1:F2", 1, "LC", "gamma", IK_C, "C", "C7H8", "[M+H]+", 0.97, 0.95, 1e-6, 2, [IK_C]),
        ("s2:3", "s2", "s2:F8", 1, "LD", "delta", IK_B.replace("X", "Y"), "C", "C7H8", "[M+H]+", 0.96, 0.9, 1e-6,
         2, None),
        # C3: one weak spectrum: not accepted.
        ("s1:4", "s1", "s1:F3", 1, "LB", "beta", IK_B, "C", "C5H6O", "[M+H]+", 0.2, 0.1, 0.6, None, None),
        # A spectrum without a feature never reaches the study table.
        ("s1:5", "s1", None, 1, "LA", "alpha", IK_A, "C", "C6H6", "[M+H]+", 0.99, 0.99, 1e-9, 2, [IK_A]),
    ])
    links = pl.DataFrame({"consensus_id": ["C1", "C1", "C2", "C2", "C3"],
                          "sample_id": ["s1", "s2", "s1", "s2", "s1"],
                          "feature_id": ["s1:F1", "s2:F7", "s1:F2", "s2:F8", "s1:F3"]})
    out = identify.identify_features(ann, links, fdr=0.01).sort("consensus_id")
    assert out["consensus_id"].to_list() == ["C1", "C2", "C3"]
    c1, c2, c3 = out.row(0, named=True), out.row(1, named=True), out.row(2, named=True)
    assert c1["inchikey"] == IK_A and c1["n_spectra"] == 4 and c1["n_supporting"] == 3 and c1["n_samples"] == 2
    # Simes over 4 spectra with p (1e-6, 1e-5, 1e-4) for A: min(4e-6, 2e-5, 1.33e-4) = 4e-6.
    assert c1["p_value"] == pytest.approx(4e-6) and c1["accepted"] and c1["msi_level"] == 2
    assert c1["isomer_inchikeys"] == [IK_A] and c1["best_score"] == pytest.approx(0.95)
    assert c1["median_score"] == pytest.approx(0.92)
    assert c2["accepted"] and c2["msi_level"] == 3
    assert set(c2["isomer_inchikeys"]) == {IK_C, IK_B.replace("X", "Y")}
    assert not c3["accepted"] and c3["msi_level"] is None and c3["q_value"] == pytest.approx(0.6)
    assert out.schema == pl.Schema(identify.IDENTIFICATIONS)
    assert (c1["n_qc_runs"], c1["n_blank_runs"]) == (0, 0)  # without run types every run is a sample
    # the median precursor m/z error of the supporting spectra (a second trial: a known unknown named with another
    # formula at 12.8 ppm, where the others lay within 1 ppm, and the error was shown nowhere)
    errors = {"s1:1": 1.0, "s1:2": 2.0, "s2:1": 12.0, "s2:2": -40.0}
    with_error = ann.with_columns(pl.col("spectrum_id").replace_strict(errors, default=0.0).alias(
        "precursor_error_ppm"))
    assert identify.identify_features(with_error, links, fdr=0.01).sort("consensus_id")[
        "precursor_error_ppm"][0] == pytest.approx(2.0)
    # With the sheet's run types, s2 a pooled QC: the compound is in 1 study sample and 1 QC run; nothing else moves
    typed = identify.identify_features(ann, links, fdr=0.01, run_types={"s1": "sample", "s2": "qc"}).sort(
        "consensus_id")
    t1 = typed.row(0, named=True)
    assert (t1["n_samples"], t1["n_qc_runs"], t1["n_blank_runs"]) == (1, 1, 0)
    assert typed.drop("n_samples", "n_qc_runs").equals(out.drop("n_samples", "n_qc_runs"))
    blank = identify.identify_features(ann, links, fdr=0.01, run_types={"s2": "blank"}).sort("consensus_id")
    assert (blank["n_samples"][0], blank["n_blank_runs"][0]) == (1, 1)
    assert blank["accepted"].to_list() == out["accepted"].to_list()  # a study sample supports each name
    # every spectrum from blank runs: a trial's blank peak, linked alone to a consensus feature, was named from that
    # one spectrum and counted among the findings; such a name is refused and says why (q is kept)
    blanks = identify.identify_features(ann, links, fdr=0.01, run_types={"s1": "blank", "s2": "blank"}).sort(
        "consensus_id")
    assert not blanks["accepted"].any() and blanks["msi_level"].null_count() == 3
    assert blanks["evidence_note"].to_list() == [identify.BLANK_ONLY_NOTE] * 2 + [None]
    assert blanks["q_value"].to_list() == out["q_value"].to_list()
    # the most fragment peaks a supporting spectrum shares (s2:2 named B and does not support A: its 9 is not counted)
    peaks = {"s1:1": 1, "s1:2": 3, "s2:1": 1, "s2:2": 9, "s1:3": 1, "s2:3": 1}
    with_peaks = identify.identify_features(ann.with_columns(pl.col("spectrum_id").replace_strict(
        peaks, default=2, return_dtype=pl.Int32).alias("matched_peaks")), links, fdr=0.01).sort("consensus_id")
    assert with_peaks["matched_peaks"].to_list() == [3, 1, 2]
    assert out["matched_peaks"].null_count() == 3  # annotations without the column


def test_an_accepted_feature_below_cosine_0_3_says_which_scores_carried_it() -> None:
    """Issue 10: no low-cosine hit accepted without the report being able to say why. A feature whose spectra all
    score cosine < 0.3 but pass on the combined score carries ``evidence_note`` with its best spectrum's entropy,
    embedding and modified cosine; a feature with a cosine >= 0.3 spectrum, or not accepted, carries none."""
    ann = _annotations([
        ("s1:1", "s1", "s1:F1", 1, "LA", "alpha", IK_A, "C", "C6H6", "[M+H]+", 0.81, 0.22, 1e-7, 3, [IK_A]),
        ("s2:1", "s2", "s2:F7", 1, "LA", "alpha", IK_A, "C", "C6H6", "[M+H]+", 0.70, 0.18, 1e-5, 3, [IK_A]),
        ("s1:2", "s1", "s1:F2", 1, "LC", "gamma", IK_C, "C", "C7H8", "[M+H]+", 0.9, 0.25, 1e-7, 3, [IK_C]),
        ("s2:2", "s2", "s2:F8", 1, "LC", "gamma", IK_C, "C", "C7H8", "[M+H]+", 0.9, 0.55, 1e-6, 3, [IK_C]),
        ("s1:3", "s1", "s1:F3", 1, "LB", "beta", IK_B, "C", "C5H6O", "[M+H]+", 0.2, 0.1, 0.6, None, None),
    ]).with_columns(entropy=pl.Series([0.71, 0.6, 0.8, 0.8, 0.1]), embedding=pl.Series([0.93, 0.9, 0.9, 0.9, 0.2]),
                    modified_cosine=pl.Series([0.41, 0.3, 0.5, 0.6, 0.1]))
    links = pl.DataFrame({"consensus_id": ["C1", "C1", "C2", "C2", "C3"], "sample_id": ["s1", "s2", "s1", "s2", "s1"],
                          "feature_id": ["s1:F1", "s2:F7", "s1:F2", "s2:F8", "s1:F3"]})
    out = identify.identify_features(ann, links, fdr=0.01).sort("consensus_id")
    notes = dict(zip(out["consensus_id"], out["evidence_note"]))
    assert out["accepted"].to_list() == [True, True, False]
    assert notes["C1"] == ("best cosine below 0.3: accepted on the combined score (its best spectrum: cosine 0.22, "
                           "entropy 0.71, embedding 0.93, modified cosine 0.41)")
    assert notes["C2"] is None and notes["C3"] is None  # C2 has a spectrum at 0.55; C3 is not accepted
    # trial AF: when no spectral score agrees and the embedding alone is high, the note says the name rests on it
    weak = identify.identify_features(ann.with_columns(entropy=pl.Series([0.2, 0.6, 0.8, 0.8, 0.1]),
                                                       modified_cosine=pl.Series([0.05, 0.3, 0.5, 0.6, 0.1])),
                                      links, fdr=0.01)
    note = weak.filter(pl.col("consensus_id") == "C1")["evidence_note"][0]
    assert note.startswith("best cosine below 0.3: accepted on the combined score (its best spectrum: cosine 0.22, "
                           "entropy 0.2, embedding 0.93, modified cosine 0.05); the fragment peaks barely agree")
    assert "the name rests on the encoder's embedding similarity" in note
    assert "barely agree" not in notes["C1"]
    # tables without the score columns (spectral scores only) still get the note, with what there is
    bare = identify.identify_features(ann.drop("entropy", "embedding", "modified_cosine"), links, fdr=0.01)
    assert bare.filter(pl.col("consensus_id") == "C1")["evidence_note"][0] == (
        "best cosine below 0.3: accepted on the combined score (its best spectrum: cosine 0.22)")


def test_one_compound_named_at_two_retention_times_is_marked_on_both() -> None:
    """A compound elutes once: two accepted features named alike more than SAME_COMPOUND_RT_S apart each list the
    other in ``same_name_elsewhere`` (a scientist's trial: glycine named on its own peak at 179 s and on a taurine
    conjugate's in-source fragment at 86 s); features of one compound at one RT (an adduct) are not marked; rt_s is
    the median aligned RT of the feature's linked features."""
    row = ("LA", "alpha", IK_A, "C", "C6H6", "[M+H]+", 0.95, 0.9, 1e-7, 3, [IK_A])
    # C3 is the compound's sodium adduct beside C2's protonated ion (the same adduct at one RT would be one elution
    # split over two features, named once: test_identify_adducts)
    sodium = ("LA2", "alpha", IK_A, "C", "C6H6", "[M+Na]+", 0.95, 0.9, 1e-7, 3, [IK_A])
    ann = _annotations([
        ("s1:1", "s1", "s1:F1", 1, *row), ("s2:1", "s2", "s2:F1", 1, *row),
        ("s1:2", "s1", "s1:F2", 1, *row), ("s2:2", "s2", "s2:F2", 1, *row),
        ("s1:3", "s1", "s1:F3", 1, *sodium), ("s2:3", "s2", "s2:F3", 1, *sodium),
        ("s1:4", "s1", "s1:F4", 1, "LB", "beta", IK_B, "C", "C5H6O", "[M+H]+", 0.9, 0.9, 1e-7, 3, [IK_B]),
    ])
    links = pl.DataFrame({
        "consensus_id": ["C1", "C1", "C2", "C2", "C3", "C3", "C4"], "sample_id": ["s1", "s2"] * 3 + ["s1"],
        "feature_id": ["s1:F1", "s2:F1", "s1:F2", "s2:F2", "s1:F3", "s2:F3", "s1:F4"],
        "rt_aligned_s": [85.0, 86.2, 178.0, 179.6, 180.5, 181.0, 300.0]})
    out = identify.identify_features(ann, links, fdr=0.01).sort("consensus_id")
    assert out["accepted"].all()
    elsewhere = dict(zip(out["consensus_id"], out["same_name_elsewhere"].to_list()))
    # C2 and C3 (one compound's two ions at 179-181 s) do not mark each other; both mark C1 (85.6 s), and C1 both
    assert elsewhere == {"C1": ["C2", "C3"], "C2": ["C1"], "C3": ["C1"], "C4": []}
    assert out["rt_s"].to_list() == pytest.approx([85.6, 178.8, 180.75, 300.0])
    # stereoisomers share the first InChIKey block but are different compounds (glucose 72 s, mannose 104 s): with
    # whole InChIKeys they do not mark each other
    glucose, mannose = "WQZGKKKJIJFFOK-GASJEMHNSA-N", "WQZGKKKJIJFFOK-QTVWNMPRSA-N"
    stereo = ann.with_columns(library_inchikey=pl.when(pl.col("feature_id").str.ends_with("F1")).then(pl.lit(glucose))
                              .when(pl.col("library_id").is_in(["LA", "LA2"])).then(pl.lit(mannose))
                              .otherwise(pl.col("library_inchikey")))
    marked = identify.identify_features(stereo, links, fdr=0.01).sort("consensus_id")
    assert dict(zip(marked["consensus_id"], marked["same_name_elsewhere"].to_list())) == {
        "C1": [], "C2": [], "C3": [], "C4": []}
    # without retention times nothing can be said: no feature is marked
    bare = identify.identify_features(ann, links.drop("rt_aligned_s"), fdr=0.01)
    assert bare["rt_s"].is_null().all() and all(v == [] for v in bare["same_name_elsewhere"].to_list())
    # with the corrected matrix (adduct groups) rt_s is the matrix's consensus RT, as the report's other sections show
    # it (a trial read 274.9 s in one section and 272.0 s in another); a feature the matrix lacks keeps the links'
    groups = pl.DataFrame({"consensus_id": ["C1", "C2", "C3"], "compound_group": ["G1", "G2", "G2"],
                           "adduct": ["[M+H]+", "[M+H]+", "[M+Na]+"], "rt_s": [85.9, 179.0, 180.9]})
    matrix_rt = identify.identify_features(ann, links, fdr=0.01, groups=groups).sort("consensus_id")
    assert matrix_rt["rt_s"].to_list() == pytest.approx([85.9, 179.0, 180.9, 300.0])


def test_simes_rewards_agreeing_spectra() -> None:
    assert identify.simes([0.01, 0.01, 0.01, 0.01], 4) == pytest.approx(0.01)
    assert identify.simes([0.01], 4) == pytest.approx(0.04)
    assert identify.simes([0.3, 0.001], 10) == pytest.approx(0.01)
    assert np.isnan(identify.simes([], 3)) and identify.simes([0.9, 0.8], 2) == pytest.approx(0.9)


def test_identifications_without_hits_are_an_empty_table() -> None:
    empty = identify.identify_features(pl.DataFrame(schema={"rank": pl.Int32}), pl.DataFrame(), 0.01)
    assert empty.height == 0 and empty.schema == pl.Schema(identify.IDENTIFICATIONS)


def test_structure_null_per_chemical_class() -> None:
    """Isomers of one class (lipid-like: identical spectra) must not make level 2 impossible for another class."""
    rng = np.random.default_rng(5)
    lipid = np.clip(rng.normal(0.95, 0.02, 600), 0, 1)     # wrong isomers score as high as the truth
    drug = rng.beta(2, 6, 600)                              # wrong isomers are told apart
    cal = confidence.Calibration.from_null(rng.beta(2, 8, 5000), np.r_[lipid, drug], 0.0, {},
                                           structure_classes=np.array(["Lipids"] * 600 + ["Benzenoids"] * 600))
    assert set(cal.structure_by_class) == {"Lipids", "Benzenoids"}
    s, n = np.array([0.97, 0.97]), np.array([1, 1])
    p_lipid, p_drug = cal.p_structure(s, n, np.array(["Lipids", "Benzenoids"], dtype=object))
    assert p_drug < 0.01 < 0.1 < p_lipid
    # An unknown class falls back to the pooled null, never below the formula p-value.
    pooled = cal.p_structure(s[:1], n[:1], np.array(["Alkaloids"], dtype=object))[0]
    assert p_drug < pooled < p_lipid and pooled >= cal.p_formula(s[:1], n[:1])[0]


def test_superclass_of_chemont_paths() -> None:
    assert confidence.superclass("CHEMONTID:0000279; Organic compounds; Alkaloids and derivatives") == \
        "Alkaloids and derivatives"
    assert confidence.superclass("Organic compounds/Lipids and lipid-like molecules/Fatty Acyls") == \
        "Lipids and lipid-like molecules"
    assert confidence.superclass("amino_acid") == "amino_acid" and confidence.superclass(None) is None


def test_too_few_wrong_structures_single_out_no_hit() -> None:
    """A library whose searches met fewer than MIN_STRUCTURE_NULL wrong structures of a hit's formula gives no
    structure-level p-value (so no MSI level 2), instead of borrowing the wrong-formula null."""
    rng = np.random.default_rng(0)
    formula_scores = rng.beta(1, 8, 500)
    few = rng.beta(2, 3, confidence.MIN_STRUCTURE_NULL - 1)
    cal = confidence.Calibration.from_null(formula_scores, few, 0.05, {"rank_by": "combined"})
    s, n = np.array([0.9, 0.99]), np.array([3, 3])
    assert np.isnan(cal.p_structure(s, n)).all()
    assert np.isfinite(cal.p_formula(s, n)).all()
    enough = confidence.Calibration.from_null(formula_scores, rng.beta(2, 3, 200), 0.05, {"rank_by": "combined"})
    assert np.isfinite(enough.p_structure(s, n)).all()


def test_level_2_is_decided_over_the_study_s_features_from_the_model_s_likelihood_ratios() -> None:
    """One sample's search holds few rank-1 hits, so its share of right structures is held down by the pseudo-count
    of wrong hits and no spectrum of a 16-sample spike-in study reached level 2. The study's features, each with its
    best spectrum's log likelihood ratio (``structure_log_lr``), are pooled into one estimate: strong evidence gives
    level 2, weak evidence or a rival isomer level 3; annotations without the ratios keep each spectrum's level."""
    rows, links = [], []
    for k in range(40):  # 40 features, each seen by one spectrum in each of two samples, all accepted (p 1e-6)
        strong = k < 30
        for s in ("s1", "s2"):
            ik = f"{chr(65 + k % 26)}{chr(65 + k // 26)}AAAAAAAAAAAA-X-N"
            listed = {0: [ik, ik.replace("-X-", "-Y-")], 1: [ik, "ZZZZZZZZZZZZZZ-X-N"]}.get(k, [ik])
            rows.append((f"{s}:{k}", s, f"{s}:F{k}", 1, f"L{k}", f"c{k}", ik, "C", f"C{k + 3}H8", "[M+H]+", 0.95,
                         0.9, 1e-6, 3, listed, 6.0 if strong else -1.0))
            links.append((f"C{k}", s, f"{s}:F{k}"))
    cols = ["spectrum_id", "sample_id", "feature_id", "rank", "library_id", "library_name", "library_inchikey",
            "library_smiles", "library_formula", "library_adduct", "combined", "cosine", "p_value", "msi_level",
            "isomer_inchikeys", "structure_log_lr"]
    ann = pl.DataFrame([dict(zip(cols, r)) for r in rows],
                       schema_overrides={"msi_level": pl.Int8, "isomer_inchikeys": pl.List(pl.Utf8)})
    link = pl.DataFrame(links, schema=["consensus_id", "sample_id", "feature_id"], orient="row")
    out = identify.identify_features(ann, link, fdr=0.01)
    level = dict(zip(out["consensus_id"], out["msi_level"]))
    assert out["accepted"].all()
    # every spectrum was level 3 in its own sample; over the study, the 30 strong features are level 2
    assert sorted(c for c, lv in level.items() if lv == 2) == sorted(f"C{k}" for k in range(30))
    strong = out.filter(pl.col("consensus_id").is_in([f"C{k}" for k in range(30)]))
    assert strong["structure_q_value"].max() <= 0.01
    # level 2 names the hit and its stereoisomers among the candidates (same first block), no other skeleton
    lists = dict(zip(strong["consensus_id"], strong["isomer_inchikeys"].to_list()))
    assert lists["C0"] == ["AAAAAAAAAAAAAA-X-N", "AAAAAAAAAAAAAA-Y-N"] and lists["C1"] == ["BAAAAAAAAAAAAA-X-N"]
    assert all(len(v) == 1 for c, v in lists.items() if c not in ("C0", "C1"))
    # q-values are set-level: one weak feature joining the 30 strong ones makes their mean error 0.026
    weak = out.filter(~pl.col("consensus_id").is_in(strong["consensus_id"].to_list()))
    assert weak["structure_q_value"].min() > 0.02
    # nor when no spectrum of the feature reaches cosine 0.3 (a structure claim needs matching spectra)
    low = identify.identify_features(ann.with_columns(pl.lit(0.25).alias("cosine")), link, fdr=0.01)
    assert not (low["msi_level"] == 2).any() and low["accepted"].all()
    # without the ratios: each spectrum's own level (all 3 here)
    older = identify.identify_features(ann.drop("structure_log_lr"), link, fdr=0.01)
    assert (older["msi_level"] == 3).all() and older["structure_q_value"].is_null().all()


def test_a_library_too_small_to_calibrate_well_is_said_in_the_main_findings(tmp_path) -> None:
    """A fresh user's 21-pesticide library: its calibration measured 34 wrong candidates, 5 of them scoring 0.86-0.95
    against another compound's spectrum, and six right matches (cosine 0.97-1.00) sat at q 0.17-0.22 with only a
    processing note saying why. A calibration of fewer than 1000 wrong candidates is now a quality warning with the
    fix; where even the best possible score cannot reach the FDR (no tail to extrapolate: 1 / (n + 1)), the warning
    says no name can be accepted; a large calibration says nothing."""
    from ms2study.identification.confidence import Calibration
    from ms2study.reporting.collect import calibration_warnings
    from ms2study.reporting.html import QUALITY, kind_of

    rng = np.random.default_rng(0)

    def saved(wrong: np.ndarray, name: str) -> object:
        cal = Calibration.from_null(wrong, wrong, 0.1, {"rank_by": "cosine"},
                                    {"n_wrong_formula_candidates": wrong.size})
        return cal, cal.save(tmp_path / f"{name}.json")

    # no real spectral agreement among the wrong candidates: no tail to extrapolate, p never below 1 / 35
    floor, floor_path = saved(rng.uniform(0, 0.04, 34), "floor")
    assert floor.smallest_p() == pytest.approx(1 / 35)
    warnings: list[str] = []
    calibration_warnings([floor_path], warnings, 0.01)
    (only,) = warnings
    assert kind_of(only) == QUALITY and only.label == "no name can be accepted with this library"
    assert "only 34 wrong candidates were measured, so no p-value can fall below 0.0286, above the FDR 0.01" in only
    assert "MassBank" in only and "confidence: none" in only
    # the fix for `ms2study score` too (trial L: the message named the config file's setting only)
    assert "--params &#x27;{&quot;confidence&quot;: &quot;none&quot;}&#x27; with ms2study score" in only, only
    # the user's: a few look-alike wrong candidates
    small, small_path = saved(np.r_[rng.uniform(0, 0.5, 29), [0.86, 0.90, 0.91, 0.92, 0.95]], "pesticides")
    assert small.p_formula(np.array([0.93]), np.array([1]))[0] > 0.01  # a right match at 0.93 cannot pass
    warnings = []
    calibration_warnings([small_path], warnings, 0.01)
    (only,) = warnings
    assert kind_of(only) == QUALITY and only.label == "small library: coarse q-values"
    assert "only 34 wrong candidates were measured (5 of them scoring 0.8 or more" in only and "MassBank" in only
    large, large_path = saved(rng.uniform(0, 0.6, 5000), "large")
    assert large.smallest_p() < 1e-3
    warnings = []
    calibration_warnings([large_path], warnings, 0.01)
    assert warnings == []


def test_unit_q_values_count_each_ion_once_and_hold_their_fdr_where_per_spectrum_counting_does_not() -> None:
    """Known truth on simulated runs: 20 right ions triggered 5-19 times (p 1e-6 to 1e-2) and 150 wrong ions
    triggered 1-3 times (near-identical uniform p-values per ion). Accepting at q 0.05, the share of wrong ions
    among the ions accepted holds near 5 % with units (the mapped feature) and not with each spectrum counted (it
    was about 24 %). With every spectrum a unit of its own the q-values are the plain adaptive ones."""
    from ms2study.identification.confidence import adaptive_q_values, unit_q_values

    rng = np.random.default_rng(0)
    fdp = {"units": [], "spectra": []}
    for _ in range(200):
        p, units, right = [], [], []
        for u in range(170):
            k, base = ((rng.integers(5, 20), 10 ** rng.uniform(-6, -2)) if u < 20
                       else (rng.integers(1, 4), rng.uniform()))
            noise = 0.3 if u < 20 else 0.1
            p += [min(1.0, base * np.exp(rng.normal(0, noise))) for _ in range(k)]
            units += [u] * k
            right += [u < 20] * k
        p, units, right = np.array(p), np.array(units), np.array(right)
        for name, q in (("units", unit_q_values(p, units)[0]), ("spectra", adaptive_q_values(p)[0])):
            accepted = np.unique(units[q <= 0.05])
            fdp[name].append(np.isin(accepted, units[~right]).sum() / max(accepted.size, 1))
    assert np.mean(fdp["units"]) <= 0.07, np.mean(fdp["units"])
    assert np.mean(fdp["spectra"]) >= 0.15, np.mean(fdp["spectra"])
    p = rng.uniform(size=60) ** 2
    p[5] = np.nan
    single, pi0 = unit_q_values(p, np.arange(60))
    plain, plain_pi0 = adaptive_q_values(p)
    assert np.allclose(single, plain, equal_nan=True) and pi0 == plain_pi0
    assert np.allclose(unit_q_values(p, None)[0], plain, equal_nan=True)
    assert np.isnan(unit_q_values(np.full(3, np.nan), np.arange(3))[0]).all()


def test_an_unmapped_ions_repeated_triggers_form_one_unit() -> None:
    """A fresh user's excerpt: 18 triggers of one ion that detection found no feature for, each a discovery. Mapped
    spectra take their feature; unmapped ones chain on precursor m/z (within ppm) and RT (gaps up to 30 s); the same
    m/z eluting again a minute later, another m/z, or a spectrum without m/z or RT is a unit of its own."""
    from ms2study.identification.confidence import ion_units

    features = ["S1:F1", "S1:F1", None, None, None, None, None, None]
    mz = np.array([200.0, 200.0, 150.0, 150.0009, 150.0015, 150.0, 150.01, np.nan])
    rt = np.array([10.0, 12.0, 40.0, 55.0, 75.0, 160.0, 50.0, 60.0])
    units = ion_units(features, mz, rt, ppm=10.0)
    assert units[0] == units[1] == "S1:F1"
    assert units[2] == units[3] == units[4]  # 6 and 4 ppm steps, 15 and 20 s apart: one ion's triggers
    assert len({units[2], units[5], units[6], units[7]}) == 4  # a minute later; 67 ppm off; no m/z
    assert all(u is not None for u in units)


def test_a_spectrum_hit_carried_by_the_embedding_alone_says_so() -> None:
    """Trial AF: the per-spectrum note (annotations.parquet) of a hit accepted at cosine 0.03, entropy 0.2 and
    embedding 0.9 read like the others; it now says that the fragment peaks barely agree."""
    from ms2study.identification.acceptance import evidence_notes

    ranked = pl.DataFrame({"rank": [1, 1, 1], "accepted": [True, True, False], "cosine": [0.03, 0.2, 0.03],
                           "entropy": [0.2, 0.6, 0.2], "embedding": [0.9, 0.9, 0.9],
                           "modified_cosine": [0.05, 0.2, 0.05], "matched_peaks": [2, 3, 2]})
    notes = evidence_notes(ranked, with_embedding=True).to_list()
    assert notes[0].startswith("cosine below 0.3: accepted on the combined score (entropy 0.2, embedding 0.9, "
                               "modified cosine 0.05); the fragment peaks barely agree")
    assert "barely agree" not in notes[1] and notes[2] is None
    assert "barely agree" not in evidence_notes(ranked, with_embedding=False).to_list()[0]
