"""The study-truth benchmark's matching and scoring on tables built here: truth-ion choice by m/z and RT, verdicts
of accepted names, the marks' precision/recall, blank flags, differential hits, the gap-fill ratio and the
simulator's RT drift and isotope pattern it re-derives."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

import study_truth  # noqa: E402

KEY = {k: f"{k * 14}-UHFFFAOYSA-N" for k in "ABCDEFG"}


def _comp() -> pl.DataFrame:
    """Compounds: A (library), B an isomer of A absent from the library, C (library) and its isomer D (library),
    E a conjugate whose in-source fragment sits at A's m/z, F and G planted (changed)."""
    return pl.DataFrame({
        "compound_id": ["A", "B", "C", "D", "E", "F", "G"],
        "name": ["a", "b", "c", "d", "e", "f", "g"],
        "inchikey": [KEY[k] for k in "ABCDEFG"],
        "formula": ["C6H12O6", "C6H12O6", "C4H6O4", "C4H6O4", "C8H15NO8", "C5H9NO2", "C9H11NO2"],
        "in_library": [True, False, True, True, False, True, True],
        "changed": [False, False, False, False, False, True, True],
        "log_fold": [0.0, 0.0, 0.0, 0.0, 0.0, np.log(2.0), np.log(4.0)],
        "abundance": [1e5, 1e5, 1e5, 1e5, 1e6, 1e5, 1e5],
        "present_share": [1.0] * 7,
        "rt_ref_s": [100.0, 130.0, 200.0, 260.0, 300.0, 400.0, 450.0],
    })


def _ions() -> pl.DataFrame:
    rows = [
        ("A|[M+H]+|M+0", "A", "main", "[M+H]+", 0, 181.0707, 100.0, 1.0, 1e5),
        ("A|[M+H]+|M+1", "A", "main", "[M+H]+", 1, 182.0741, 100.0, 0.07, 7e3),
        ("A|[M+Na]+|M+0", "A", "adduct", "[M+Na]+", 0, 203.0526, 100.0, 0.3, 3e4),
        ("B|[M+H]+|M+0", "B", "main", "[M+H]+", 0, 181.0707, 130.0, 1.0, 1e5),
        ("C|[M+H]+|M+0", "C", "main", "[M+H]+", 0, 119.0339, 200.0, 1.0, 1e5),
        ("D|[M+H]+|M+0", "D", "main", "[M+H]+", 0, 119.0339, 260.0, 1.0, 1e5),
        ("E|in-source|M+0", "E", "in_source", "in-source", 0, 181.0707, 300.0, 0.2, 2e5),
        ("F|[M+H]+|M+0", "F", "main", "[M+H]+", 0, 116.0706, 400.0, 1.0, 1e5),
        ("G|[M+H]+|M+0", "G", "main", "[M+H]+", 0, 166.0863, 450.0, 1.0, 1e5),
        ("G|[M+Na]+|M+0", "G", "adduct", "[M+Na]+", 0, 188.0682, 450.0, 0.3, 3e4),
        ("CONT01|contaminant|M+0", "CONT01", "contaminant", "contaminant", 0, 391.2843, 350.0, 1.0, 5e4),
        ("CONT01|contaminant|M+1", "CONT01", "contaminant", "contaminant", 1, 392.2877, 350.0, 0.3, 1.5e4),
        ("BG01|background|M+0", "BG01", "background", "background", 0, 445.1200, None, 1.0, 1e5),
        ("X|[M+H]+|M+0", "X", "main", "[M+H]+", 0, 250.0000, 500.0, 1.0, 1e6),
        ("Y|[M+H]+|M+0", "Y", "main", "[M+H]+", 0, 250.0010, 505.0, 1.0, 1e4),
    ]
    return pl.DataFrame(rows, schema=study_truth.EMPTY_IONS, orient="row")


def _features() -> pl.DataFrame:
    return pl.DataFrame({
        "consensus_id": ["fA", "fA1", "fANa", "fB", "fC", "fD", "fE", "fF", "fG", "fGNa", "fK", "fK1", "fBG",
                         "fX", "fY", "fXY", "fFar", "fOff"],
        "mz": [181.0712, 182.0745, 203.0530, 181.0700, 119.0340, 119.0338, 181.0709, 116.0707, 166.0860,
               188.0685, 391.2850, 392.2880, 445.1210, 250.0002, 250.0011, 250.0005, 181.0707, 181.0707 * (1 + 15e-6)],
        "rt_s": [100.5, 100.4, 99.8, 131.0, 201.0, 259.0, 300.2, 400.0, 450.3, 450.1, 351.0, 350.5, 20.0,
                 500.2, 505.1, 503.5, 115.0, 100.0],
    })


def test_matching_by_ppm_rt_and_choice() -> None:
    m = study_truth.match_features(_features(), _ions())
    got = dict(zip(m["consensus_id"].to_list(), m["ion_id"].to_list()))
    assert got["fA"] == "A|[M+H]+|M+0" and got["fA1"] == "A|[M+H]+|M+1" and got["fANa"] == "A|[M+Na]+|M+0"
    assert got["fB"] == "B|[M+H]+|M+0" and got["fE"] == "E|in-source|M+0"
    assert got["fBG"] == "BG01|background|M+0"          # persistent ion: m/z alone, any RT
    # X is 100x more abundant but 5 s away: the feature on Y's own apex is Y; the one on X's apex is X
    assert got["fX"] == "X|[M+H]+|M+0" and got["fY"] == "Y|[M+H]+|M+0"
    assert got["fXY"] == "X|[M+H]+|M+0"                 # 3.5 s from X, 1.5 s from Y: X's tail still dominates
    assert got["fFar"] is None                           # 15 s from A, 15 s from B: outside 8 s
    assert got["fOff"] is None                           # 15 ppm off
    row = m.filter(pl.col("consensus_id") == "fA").row(0, named=True)
    assert row["ppm_error"] == pytest.approx((181.0712 - 181.0707) / 181.0707 * 1e6)
    assert row["rt_error_s"] == pytest.approx(0.5)
    s = study_truth.match_summary(m, _comp())
    assert s["n_matched"] == 16 and s["matched_share"] == pytest.approx(16 / 18, abs=1e-4)
    assert s["by_ion_kind"]["isotopologue"] == 2 and s["by_ion_kind"]["in_source"] == 1
    assert s["ions_with_several_features"] == 1 and s["features_on_ions_with_several"] == 2  # fX and fXY: one ion


def _ids() -> pl.DataFrame:
    rows = [  # consensus_id, named key, formula, level, isomers, q, in-source mark, same-name mark, note
        ("fA", "A", "C6H12O6", 3, ["A"], 0.001, None, [], None),          # right
        ("fANa", "A", "C6H12O6", 3, ["A"], 0.002, None, [], None),        # right (its adduct)
        ("fB", "A", "C6H12O6", 3, ["A"], 0.003, None, ["fA"], None),      # isomer absent from library, level 3
        ("fC", "D", "C4H6O4", 3, ["D", "C"], 0.004, None, [], None),      # library isomer, named among isomers
        ("fD", "C", "C4H6O4", 2, ["C"], 0.004, None, [], None),           # library isomer at level 2: wrong
        ("fE", "A", "C6H12O6", 3, ["A"], 0.005, 500.1, ["fA"], None),     # in-source fragment of E
        ("fGNa", "F", "C5H9NO2", 3, ["F"], 0.006, None, [], "cosine"),    # another compound's adduct
        ("fFar", "A", "C6H12O6", 3, ["A"], 0.007, 300.0, [], None),       # unmatched: not judged
        ("fF", "F", "C5H9NO2", 3, ["F"], 0.2, None, [], None),            # not accepted
    ]
    return pl.DataFrame({
        "consensus_id": [r[0] for r in rows], "name": [r[1] for r in rows],
        "inchikey": [KEY[r[1]] for r in rows], "formula": [r[2] for r in rows],
        "msi_level": [r[3] for r in rows], "isomer_inchikeys": [[KEY[k] for k in r[4]] for r in rows],
        "q_value": [r[5] for r in rows], "accepted": [r[5] <= 0.01 for r in rows],
        "in_source_of_mz": [r[6] for r in rows], "same_name_elsewhere": [r[7] for r in rows],
        "evidence_note": [r[8] for r in rows],
    }, schema_overrides={"msi_level": pl.Int8, "same_name_elsewhere": pl.List(pl.String)})


def test_identification_verdicts_and_marks() -> None:
    m = study_truth.match_features(_features(), _ions())
    judged = study_truth.judge_identifications(_ids(), m, _comp())
    v = dict(zip(judged["consensus_id"].to_list(), judged["verdict"].to_list()))
    assert v == {"fA": "right", "fANa": "right", "fB": "isomer_absent_from_library", "fC": "isomer_in_library",
                 "fD": "isomer_in_library", "fE": "in_source", "fGNa": "adduct", "fFar": "unmatched",
                 "fF": "right"}
    s = study_truth.identification_summary(judged)
    assert s["n_accepted"] == 8 and s["n_accepted_judged"] == 7
    assert s["right_structure"] == 2
    assert s["level3_correct"] == 2                      # fB, fC; fD is level 2
    assert s["wrong_structure"] == 5 and s["wrong"] == 3  # wrong at level: fD, fE, fGNa
    assert s["library_isomer_named_in_isomer_column"] == 1  # fC names C; fD does not
    assert s["by_msi_level"]["2"] == {"n": 1, "right": 0, "level3_correct": 0, "wrong": 1,
                                      "by_verdict": {"isomer_in_library": 1}}
    mk = s["marks"]
    # in-source mark: on fE only among judged names (fFar unmatched): 1 marked, right about it
    assert mk["in_source_of_mz"]["vs_in_source_fragments"] == {"marked": 1, "marked_positive": 1, "positives": 1,
                                                               "precision": 1.0, "recall": 1.0}
    # same-name mark on fB (isomer: wrong structure, level-3-correct) and fE (wrong)
    assert mk["same_name_elsewhere"]["vs_wrong_structure"]["precision"] == 1.0
    assert mk["same_name_elsewhere"]["vs_wrong_structure"]["recall"] == pytest.approx(2 / 5, abs=1e-3)
    assert mk["same_name_elsewhere"]["vs_wrong"]["precision"] == 0.5
    assert mk["same_name_elsewhere"]["vs_wrong"]["recall"] == pytest.approx(1 / 3, abs=1e-3)
    assert mk["in_source_or_same_name"]["vs_wrong"]["marked"] == 2
    assert mk["any_mark"]["vs_wrong"] == {"marked": 3, "marked_positive": 2, "positives": 3,
                                          "precision": pytest.approx(0.667, abs=1e-3),
                                          "recall": pytest.approx(0.667, abs=1e-3)}


def test_blank_flags_and_differential() -> None:
    m = study_truth.match_features(_features(), _ions())
    ids = m["consensus_id"].to_list()
    flagged = {"fK", "fBG", "fA"}                       # two blank-borne, one real compound
    corrected = pl.DataFrame({"consensus_id": ids, "blank_flag": [c in flagged for c in ids],
                              "excluded": [c in flagged for c in ids]})
    b = study_truth.blank_summary(corrected, m)
    assert b["n_blank_flagged"] == 3 and b["flagged_contaminant_features"] == 1
    assert b["flagged_background_features"] == 1 and b["flagged_other"] == {"main": 1}
    assert b["blank_borne_features"] == 3 and b["precision"] == pytest.approx(0.667, abs=1e-3)
    assert b["contaminants_with_a_feature"] == 1 and b["contaminants_flagged"] == 1
    assert [r["consensus_id"] for r in b["contaminant_features_not_flagged"]] == ["fK1"]

    q = {"fF": 0.01, "fGNa": 0.03, "fA": 0.04, "fOff": 0.001, "fC": 0.2, "fG": 0.5}
    lfc = {"fF": 1.2, "fGNa": 2.5, "fA": 0.8, "fOff": 3.0, "fC": 0.1, "fG": 0.2}
    diff = pl.DataFrame({"consensus_id": list(q), "mz": [0.0] * 6, "rt_s": [0.0] * 6,
                         "q_value": list(q.values()), "tested": [True] * 6,
                         "log2_fold_change": [lfc[k] for k in q]})
    comp = _comp()
    sets = {"F", "G"}
    d = study_truth.differential_summary(diff, m, sets, {"F": 1.0, "G": 2.0})
    assert d["n_hits"] == 4 and d["true_hits"] == 2 and d["false_hits"] == 1 and d["unmatched_hits"] == 1
    assert d["false_discovery_proportion"] == pytest.approx(1 / 3, abs=1e-3)
    assert d["planted_found"] == 2 and d["recall"] == 1.0 and d["planted_with_tested_feature"] == 2
    assert d["true_hits_log2_fold_change"]["median_abs_error"] == pytest.approx(0.35)
    assert comp.height == 7
    assert "false_hits_with_realized_difference" not in d
    # the false hit (compound A) with its true group difference in these samples: real, though not planted
    false_id = d["false_hits_list"][0]["compound_id"]
    real = study_truth.differential_summary(diff, m, sets, {"F": 1.0, "G": 2.0}, realized={false_id: -1.4})
    assert real["false_hits_list"][0]["realized_log2_difference"] == -1.4
    assert real["false_hits_with_realized_difference"] == 1
    chance = study_truth.differential_summary(diff, m, sets, {"F": 1.0, "G": 2.0}, realized={false_id: 0.3})
    assert chance["false_hits_with_realized_difference"] == 0


def test_realized_group_difference_is_the_difference_of_mean_log2_truth() -> None:
    truth = pl.DataFrame({"sample_id": ["S1", "S2", "S3", "S4"] * 2, "compound_id": ["K1"] * 4 + ["K2"] * 4,
                          "abundance_undrifted": [8.0, 2.0, 1.0, 1.0, 4.0, 4.0, 0.0, 4.0]})
    sheet = pl.DataFrame({"sample_id": ["S1", "S2", "S3", "S4", "QC1"], "group": ["case", "case", "control",
                                                                                 "control", None]})
    got = study_truth.realized_group_difference(truth, sheet)
    assert got == {"K1": pytest.approx(2.0)}  # (3 + 1) / 2 - 0; K2 is absent from S3: left out
    assert study_truth.realized_group_difference(truth, sheet.drop("group")) == {}


def test_gapfill_ratio_at_equal_true_abundance() -> None:
    """Filled values read half the detected ones at equal true abundance; the per-feature and the paired
    estimates both say 0.5, and the noisier filled values show a larger spread."""
    rng = np.random.default_rng(0)
    rows = []
    for f in range(20):
        scale = 10 ** rng.uniform(0, 2)  # the feature's own response (area per apex height)
        for r in range(12):
            true = 1e4 * 2 ** (r % 6)
            detected = r < 8
            noise = np.exp(rng.normal(0, 0.05 if detected else 0.2))
            value = scale * true * noise * (1.0 if detected else 0.5)
            rows.append((f"f{f}", f"S{r:02d}", value if detected else None, None if detected else value, true,
                         detected, value))
    pairs = pl.DataFrame(rows, orient="row", schema=["consensus_id", "sample_id", "detected_value",
                                                     "filled_value", "true_abundance", "detected", "value"])
    g = study_truth.gapfill_summary(pairs)
    assert g["n_features"] == 20
    assert g["filled_over_detected_per_feature"]["median"] == pytest.approx(0.5, rel=0.15)
    assert g["filled_over_detected_at_equal_true_abundance"]["median"] == pytest.approx(0.5, rel=0.15)
    assert g["sd_log_ratio_to_truth_median"]["filled"] > 2 * g["sd_log_ratio_to_truth_median"]["detected"]
    bins = g["by_true_abundance"]
    assert [b["n_filled"] for b in bins] == [40, 20, 20]
    assert all(b["filled_over_feature_response"] == pytest.approx(0.5, rel=0.2) for b in bins)
    assert all(b["detected_over_feature_response"] == pytest.approx(1.0, rel=0.1) for b in bins)


def test_intensity_pairs_use_the_ion_ratio_and_skip_absent() -> None:
    m = study_truth.match_features(_features(), _ions()).filter(pl.col("consensus_id").is_in(["fA", "fANa"]))
    raw = pl.DataFrame({"consensus_id": ["fA", "fANa"], "S1": [2e5, None], "S2": [None, 1e4]})
    filled = pl.DataFrame({"consensus_id": ["fANa", "fA"], "sample_id": ["S1", "S2"], "intensity": [3e4, None]})
    truth = pl.DataFrame({"sample_id": ["S1", "S2"], "compound_id": ["A", "A"], "abundance": [1e5, 0.0]})
    p = study_truth.intensity_pairs(raw, filled, m, truth, ["S1", "S2"])
    got = {(r["consensus_id"], r["sample_id"]): r for r in p.iter_rows(named=True)}
    assert set(got) == {("fA", "S1"), ("fANa", "S1")}  # S2: A absent
    assert got[("fANa", "S1")]["true_abundance"] == pytest.approx(3e4)  # 0.3 x 1e5
    assert not got[("fANa", "S1")]["detected"] and got[("fANa", "S1")]["value"] == 3e4


def test_rsd() -> None:
    assert study_truth.rsd(np.array([1.0, 2.0, 3.0])) == pytest.approx(0.5)
    assert np.isnan(study_truth.rsd(np.array([1.0, np.nan, 3.0])))


def test_drift_and_isotopes_follow_the_simulator() -> None:
    """The benchmark re-derives two things of the simulator; both must stay what the simulator does."""
    from ms2study.simulate import mzml
    from ms2study.simulate.compounds import isotope_ratios
    from ms2study.simulate.params import merge_params
    p = merge_params(None, "realistic")
    drift, info = mzml._drift(np.random.default_rng(3), p)
    rt = np.array([35.0, 200.0, 575.0])
    assert study_truth.drift_rt(rt, info, p["rt_max_s"]) == pytest.approx(drift(rt))
    assert study_truth.isotope_pattern("C2H5NO2", "[M+H]+") == pytest.approx(
        list(isotope_ratios("NCC(=O)O")), rel=1e-9)
    assert study_truth.isotope_pattern("C5H14NO+", "[M]+") == pytest.approx(
        list(isotope_ratios("C[N+](C)(C)CCO")), rel=1e-9)


def test_qc_summary_scores_each_rsd_column_against_the_samples_true_error() -> None:
    """Three features matched to compounds' own ions, 6 samples: K1 measured with a 50 % scatter around its truth,
    K3 with a 10 % scatter, K2 exactly (no error, so no ratio). The in-sample column calls all quiet; the predicted
    one flags K1 (right) and K3 (wrong): recall, false flags and the share of right flags follow."""
    samples = [f"S{i}" for i in range(6)]
    wide = np.array([1.0, 1.6, 0.5, 1.4, 0.6, 1.5])
    narrow = np.array([1.0, 1.1, 0.9, 1.05, 0.95, 1.12])
    truth = pl.DataFrame({"sample_id": samples * 3, "compound_id": ["K1"] * 6 + ["K2"] * 6 + ["K3"] * 6,
                          "abundance_undrifted": [1e5] * 18})
    raw = pl.DataFrame({"consensus_id": ["C1", "C2", "C3"],
                        **{s: [1e5 * wide[i], 2e5, 1e5 * narrow[i]] for i, s in enumerate(samples)}})
    corrected = raw.with_columns(qc_rsd_after=pl.Series([0.05, 0.04, 0.03]),
                                 qc_rsd_predicted=pl.Series([0.45, 0.1, 0.35]))
    matches = pl.DataFrame({"consensus_id": ["C1", "C2", "C3"], "compound_id": ["K1", "K2", "K3"],
                            "kind": ["main"] * 3, "isotope": [0, 0, 0]})
    out = study_truth.qc_summary({"qc_rsd_basis": "predicted"}, raw, corrected, matches, truth, samples)
    assert out["n_features_true_rsd"] == 3 and out["qc_rsd_basis"] == "predicted"
    after, predicted = out["per_feature_vs_true"]["qc_rsd_after"], out["per_feature_vs_true"]["qc_rsd_predicted"]
    assert after["recall_above_threshold"] == 0.0 and after["flags_right_share"] is None
    assert after["false_flag_share_below"] == 0.0
    assert predicted["n"] == 2 and predicted["recall_above_threshold"] == 1.0
    assert predicted["false_flag_share_below"] == 1.0 and predicted["flags_right_share"] == 0.5
    ratios = [0.45 / study_truth.rsd(wide), 0.35 / study_truth.rsd(narrow)]
    assert predicted["median_ratio_to_true"] == pytest.approx(np.median(ratios), rel=1e-3)


def test_skip_run_only_scores_and_never_simulates_over_a_study(tmp_path: Path) -> None:
    """A fresh user's --skip-run with the wrong --workdir simulated a new study inside theirs, and with other
    settings it would have simulated over it (--overwrite): --skip-run now only scores, and says what is wrong."""
    import json

    with pytest.raises(SystemExit, match="no study simulated with these settings"):
        study_truth.main(["--out", str(tmp_path / "r.json"), "--workdir", str(tmp_path), "--skip-run"])
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing simulated, no log or timing written
    study = tmp_path / "study"
    study.mkdir()
    (study / "simulation.json").write_text(json.dumps({
        "seed": 41, "n_samples": 16, "profile": "realistic",
        "acquisition": {"batches": 2, "qc_every": 5, "blanks": 2, "adducts": True}}))
    with pytest.raises(SystemExit, match="no study simulated with these settings"):  # --batches 3 by default
        study_truth.main(["--out", str(tmp_path / "r.json"), "--workdir", str(tmp_path), "--skip-run",
                          "--samples", "16", "--seed", "41"])
    with pytest.raises(SystemExit, match="no results to score"):
        study_truth.main(["--out", str(tmp_path / "r.json"), "--workdir", str(tmp_path), "--skip-run",
                          "--samples", "16", "--seed", "41", "--batches", "2"])
    assert sorted(p.name for p in study.iterdir()) == ["simulation.json"]


def test_class_summary_scores_the_planted_class_and_the_others(tmp_path: Path) -> None:
    """A fresh user's trial: two unplanted classes were called enriched and the benchmark scored no class at all."""
    table = pl.DataFrame({"class_path": ["sugar", "organic_acid", "amino_acid"],
                          "class_name": ["sugar", "organic_acid", "amino_acid"],
                          "q_value": [0.01, 0.013, 0.2], "q_value_shift_removed": [0.3, 0.012, 0.5]})
    table.write_parquet(tmp_path / "group.parquet")
    result = study_truth.class_summary(tmp_path / "group.parquet", "organic_acid")
    assert result["planted_rank"] == 2 and result["planted_q"] == 0.013 and result["planted_q_shift_removed"] == 0.012
    assert result["other_classes_q05"] == ["sugar"] and result["other_classes_q05_shift_removed"] == []
    assert study_truth.class_summary(tmp_path / "absent.parquet", "x") is None
    assert study_truth.class_summary(tmp_path / "group.parquet", "lipid")["planted_tested"] is False
