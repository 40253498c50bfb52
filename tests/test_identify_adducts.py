"""The identify stage uses the study's adduct grouping: contradicting library adducts are set aside or demoted, and
the accepted members of one compound group name one compound."""

from __future__ import annotations

import json

import polars as pl
import pytest

from ms2study import cli
from ms2study.core.errors import InputError
from ms2study.stages import identify

COLS = ["spectrum_id", "sample_id", "feature_id", "rank", "library_id", "library_name", "library_inchikey",
        "library_smiles", "library_formula", "library_adduct", "combined", "cosine", "p_value", "msi_level",
        "isomer_inchikeys"]
IK = {name: name.upper()[:1] * 14 + "-X-N" for name in ("alpha", "beta", "xeno", "zeta", "omega", "kappa")}


def hit(spectrum: str, feature: str, name: str, adduct: str, p: float, score: float = 0.9) -> tuple:
    sample = spectrum.split(":")[0]
    return (spectrum, sample, f"{sample}:{feature}", 1, f"L-{name}-{adduct}", name, IK[name], "C", f"F-{name}",
            adduct, score, score, p, 2, [IK[name]])


def study() -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """Features of group G1 (C1 [M+H]+, C2 [M+Na]+, C3 its isotope, C6 [M+NH4]+), C5 ([M+Na]+, G3), C4 (singleton)."""
    rows = [
        hit("s1:1", "F1", "alpha", "[M+H]+", 1e-7), hit("s2:1", "F1", "alpha", "[M+H]+", 1e-6),
        # C2 is grouped as [M+Na]+: both library [M+H]+ spectra of beta contradict it.
        hit("s1:2", "F2", "beta", "[M+H]+", 1e-6), hit("s2:2", "F2", "beta", "[M+H]+", 1e-6),
        # C3 is an isotope peak: a library ion there is another compound.
        hit("s1:3", "F3", "omega", "[M+H]+", 1e-6),
        # C4 has no grouped adduct: nothing to contradict.
        hit("s1:4", "F4", "omega", "[M+H]+", 1e-6),
        # C5 ([M+Na]+): three [M+H]+ spectra of xeno outvote (smaller Simes p) two [M+Na]+ spectra of alpha unless
        # the adduct counts.
        hit("s1:5", "F5", "xeno", "[M+H]+", 1e-7), hit("s2:5", "F5", "xeno", "[M+H]+", 1e-7),
        hit("s3:5", "F5", "xeno", "[M+H]+", 1e-7),
        hit("s1:6", "F5", "alpha", "[M+Na]+", 1e-6), hit("s2:6", "F5", "alpha", "[M+Na]+", 1e-6),
        # C6 ([M+NH4]+ of G1) names zeta, though G1 is alpha at C1 with a lower q.
        hit("s1:7", "F6", "zeta", "[M+NH4]+", 1e-5), hit("s2:7", "F6", "zeta", "[M+NH4]+", 1e-5),
        # C7 is the "[M+NH4]+" of a group of [M+H]+ and [M+NH4]+ only: an [M+H]+ with its NH3 loss (C8) fits too.
        hit("s1:8", "F7", "kappa", "[M+H]+", 1e-6),
    ]
    ann = pl.DataFrame([dict(zip(COLS, r)) for r in rows],
                       schema_overrides={"msi_level": pl.Int8, "isomer_inchikeys": pl.List(pl.Utf8)})
    links = (ann.select("sample_id", "feature_id").unique()
             .with_columns(("C" + pl.col("feature_id").str.extract(r"F(\d+)$")).alias("consensus_id")))
    groups = pl.DataFrame({"consensus_id": ["C1", "C2", "C3", "C4", "C5", "C6", "C7", "C8"],
                           "compound_group": ["G1", "G1", "G1", "G2", "G3", "G1", "G4", "G4"],
                           "adduct": ["[M+H]+", "[M+Na]+", "[M+H]+ M+1", None, "[M+Na]+", "[M+NH4]+", "[M+NH4]+",
                                      "[M+H]+"],
                           "group_representative": [True, False, False, True, True, False, False, True]})
    return ann, links, groups


def test_identification_uses_the_grouped_adduct() -> None:
    ann, links, groups = study()
    plain = {r["consensus_id"]: r for r in identify.identify_features(ann, links, 0.05).iter_rows(named=True)}
    out = identify.identify_features(ann, links, 0.05, groups=groups)
    assert out.schema == pl.Schema(identify.IDENTIFICATIONS)
    got = {r["consensus_id"]: r for r in out.iter_rows(named=True)}
    # Without the grouping every feature's hit stands and the new columns are null.
    assert all(plain[c]["accepted"] for c in plain) and plain["C5"]["name"] == "xeno"
    assert all(plain[c]["adduct_note"] is None and plain[c]["compound_group"] is None for c in plain)
    assert got["C1"]["accepted"] and got["C1"]["name"] == "alpha" and got["C1"]["adduct_note"] is None
    assert got["C1"]["compound_group"] == "G1" and got["C1"]["feature_adduct"] == "[M+H]+"
    # A library [M+H]+ spectrum at a feature grouped as [M+Na]+: reported, not accepted, with the reason.
    c2 = got["C2"]
    assert c2["name"] == "beta" and not c2["accepted"] and c2["msi_level"] is None
    assert "[M+H]+ contradicts" in c2["adduct_note"] and "[M+Na]+" in c2["adduct_note"]
    assert not got["C3"]["accepted"] and "isotope" in got["C3"]["adduct_note"]
    assert got["C4"]["accepted"] and got["C4"]["adduct_note"] is None
    # The contradicting spectra are set aside before the vote: the [M+Na]+ library spectra win at C5.
    c5 = got["C5"]
    assert c5["name"] == "alpha" and c5["adduct"] == "[M+Na]+" and c5["accepted"]
    assert c5["n_spectra"] == 5 and c5["n_supporting"] == 2 and c5["adduct_note"].startswith("3 of 5 spectra")
    # C6 names another compound than its group's best identification: not accepted.
    c6 = got["C6"]
    assert not c6["accepted"] and "G1 is identified as alpha at C1" in c6["adduct_note"]
    accepted_g1 = out.filter(pl.col("accepted") & (pl.col("compound_group") == "G1"))
    assert accepted_g1["inchikey"].n_unique() == 1
    # C7's library [M+H]+ stands (the pair also reads as [M+H]+ with its NH3 loss), and the note says they differ
    c7 = got["C7"]
    assert c7["accepted"] and c7["feature_adduct"] == "[M+NH4]+"
    assert c7["adduct_note"].startswith("grouped as [M+NH4]+; library match is [M+H]+")
    assert "NH3 loss" in c7["adduct_note"]


def test_grouping_table_must_have_its_columns(tmp_path) -> None:
    ann, links, groups = study()
    with pytest.raises(InputError, match="lacks columns"):
        identify.identify_features(ann, links, 0.05, groups=groups.drop("adduct"))
    groups.drop("compound_group").write_parquet(tmp_path / "bad.parquet")
    with pytest.raises(InputError, match="lacks columns"):
        identify.read_adduct_groups(tmp_path / "bad.parquet")
    with pytest.raises(InputError, match="does not exist"):
        identify.read_adduct_groups(tmp_path / "missing.parquet")


def test_cli_takes_the_corrected_matrix(tmp_path, capsys, caplog) -> None:
    ann, links, groups = study()
    ann.write_parquet(tmp_path / "annotations.parquet")
    links.write_parquet(tmp_path / "links.parquet")
    corrected = groups.with_columns(pl.lit(300.0).alias("mz"), pl.lit(1.0).alias("S1"))
    corrected.write_parquet(tmp_path / "feature_matrix_corrected.parquet")
    base = ["identify", "--annotations", str(tmp_path / "annotations.parquet"), "--links",
            str(tmp_path / "links.parquet"), "--params", '{"fdr": 0.05}']
    assert cli.main(base + ["--out", str(tmp_path / "plain.parquet")]) == 0
    assert cli.main(base + ["--adduct-groups", str(tmp_path / "feature_matrix_corrected.parquet"),
                            "--out", str(tmp_path / "grouped.parquet")]) == 0
    plain, grouped = pl.read_parquet(tmp_path / "plain.parquet"), pl.read_parquet(tmp_path / "grouped.parquet")
    assert plain["accepted"].sum() == 7 and grouped["accepted"].sum() == 4
    # the level-2 model's reach is recorded for the report (trial AW: a reason was given where it had not run)
    reach = json.loads(pl.read_parquet_metadata(tmp_path / "plain.parquet")["ms2study:level2"])
    assert reach["needed"] == 20 and 0 <= reach["scorable"] <= plain.height
    from ms2study.reporting.collect import LEVEL2_UNASSESSED, level2_warning
    from ms2study.reporting.findings import identification_finding

    warned: list = []
    level2_warning(tmp_path / "plain.parquet", plain, warned)
    assert warned == []  # these annotations carry their own level 2 (no level-2 ratios): nothing to say
    from ms2study.core.atomic import write_parquet

    def reached(scorable: int) -> None:  # the identify stage's record, as a small study's
        write_parquet(pl.read_parquet(tmp_path / "plain.parquet"), tmp_path / "plain.parquet",
                      metadata={"ms2study:level2": json.dumps({"scorable": scorable, "needed": 20})})

    reached(0)  # no level-2 model in the library: the fallback rule gave the levels (trial AY), nothing to say
    level2_warning(tmp_path / "plain.parquet", plain.with_columns(msi_level=pl.lit(3, dtype=pl.Int8)), warned)
    assert warned == []
    reached(13)
    reach = {"scorable": 13, "needed": 20}
    plain = plain.with_columns(msi_level=pl.lit(3, dtype=pl.Int8))
    level2_warning(tmp_path / "plain.parquet", plain, warned)
    assert len(warned) == 1 and warned[0].label == LEVEL2_UNASSESSED
    assert f"only {reach['scorable']} could be scored (it needs 20)" in warned[0]
    said = identification_finding(plain, 0.05, warned)
    assert "none at level 2: level 2 was not assessed" in said and "does not rule out an isomer" not in said
    level2_warning(tmp_path / "plain.parquet", plain.with_columns(accepted=pl.lit(False)), warned)
    assert len(warned) == 1  # nothing accepted: nothing to say
    assert grouped.filter(pl.col("consensus_id") == "C2")["adduct_note"][0] is not None
    # the feature matrix for the in-source check: read when given (nothing marked here: the same names), and a
    # missing one is named
    # (each feature at its own RT: features named alike at one RT would be one compound's elution named once)
    rt = corrected.select("consensus_id").with_columns(rt_s=60.0 + 30.0 * pl.int_range(pl.len()))
    corrected.drop("excluded", "rt_s", strict=False).join(rt, on="consensus_id", how="left").write_parquet(
        tmp_path / "feature_matrix.parquet")
    caplog.clear()
    assert cli.main(base + ["--feature-matrix", str(tmp_path / "feature_matrix.parquet"),
                            "--out", str(tmp_path / "checked.parquet")]) == 0
    # without the sample sheet every run counts as a sample in the check: said (a fresh user's trial)
    assert "--feature-matrix without --samples" in caplog.text
    checked = pl.read_parquet(tmp_path / "checked.parquet")
    assert checked["accepted"].sum() == 7 and checked["in_source_correlation"].is_null().all()
    # the table gives each feature's m/z and RT as the feature matrix does (a trial found no m/z in it)
    assert (checked["mz"] == 300.0).all() and plain["mz"].is_null().all()
    assert checked.sort("consensus_id")["rt_s"].to_list() == pytest.approx(
        checked.sort("consensus_id").join(rt, on="consensus_id")["rt_s_right"].to_list())
    capsys.readouterr()
    assert cli.main(base + ["--feature-matrix", str(tmp_path / "nope.parquet"), "--out",
                            str(tmp_path / "x.parquet")]) != 0
    err = capsys.readouterr().err
    assert "feature matrix does not exist" in err and "nope.parquet" in err and not (tmp_path / "x.parquet").exists()


def test_only_a_tested_grouping_refuses_and_the_evidence_comes_along() -> None:
    """With the evidence columns of the correct stage, a label whose pair was tested refuses a contradicting match
    (and its row names the partner, its m/z and RT, the two adducts, r and the runs); a label judged on mass and RT
    alone (too few shared runs, p null) refuses nothing and says so."""
    ann, links, groups = study()
    evidence = pl.DataFrame({
        "consensus_id": ["C1", "C2", "C3", "C4", "C5", "C6", "C7", "C8"],
        "mz": [301.1, 323.09, 302.1, 400.0, 500.0, 318.13, 200.0, 183.0],
        "rt_s": [120.04, 120.5, 120.1, 300.0, 400.0, 121.0, 50.0, 50.2],
        "adduct_partner": ["C2", "C1", "C1", None, "C9", "C1", "C8", "C7"],
        "adduct_n_runs": [6, 6, 6, None, 3, 6, 6, 6],
        "adduct_correlation": [0.97, 0.97, 0.99, None, None, 0.95, 0.93, 0.93],
        "adduct_p_value": [0.0006, 0.0006, 0.0001, None, None, 0.002, 0.004, 0.004]},
        schema_overrides={"adduct_n_runs": pl.Int32})
    got = {r["consensus_id"]: r for r in identify.identify_features(
        ann, links, 0.05, groups=groups.join(evidence, on="consensus_id")).iter_rows(named=True)}
    c2 = got["C2"]
    assert not c2["accepted"] and c2["adduct_note"].startswith("not accepted")
    assert (c2["adduct_partner"], c2["adduct_partner_mz"], c2["adduct_partner_rt_s"]) == ("C1", 301.1, 120.04)
    assert c2["adduct_relation"] == "[M+Na]+ here, [M+H]+ at the partner"
    assert c2["adduct_correlation"] == 0.97 and c2["adduct_n_runs"] == 6
    # C5 was grouped as [M+Na]+ over 3 shared runs, untested: the [M+H]+ spectra of xeno are not set aside
    c5 = got["C5"]
    assert c5["accepted"] and c5["name"] == "xeno" and c5["n_supporting"] == 3
    assert c5["adduct_note"] == ("grouped as [M+Na]+ of C9 by mass and RT only (measured together in 3 runs, too few "
                                 "to test their correlation); library match is [M+H]+: a grouping on mass and RT alone "
                                 "refuses no match")
    assert c5["adduct_correlation"] is None and c5["adduct_partner_mz"] is None  # C9 is not in the table
    # the same grouping without its evidence columns refuses as before (labels taken as given)
    plain = {r["consensus_id"]: r for r in identify.identify_features(ann, links, 0.05, groups=groups)
             .iter_rows(named=True)}
    assert plain["C5"]["name"] == "alpha" and plain["C2"]["adduct_partner"] is None


def test_the_reader_keeps_the_evidence(tmp_path) -> None:
    _, _, groups = study()
    table = groups.with_columns(pl.lit(300.0).alias("mz"), pl.lit(60.0).alias("rt_s"),
                                pl.lit("C1").alias("adduct_partner"), pl.lit(6, dtype=pl.Int32).alias("adduct_n_runs"),
                                pl.lit(0.9).alias("adduct_correlation"), pl.lit(0.01).alias("adduct_p_value"),
                                pl.lit(1.0).alias("S1"))
    table.write_parquet(tmp_path / "corrected.parquet")
    read = identify.read_adduct_groups(tmp_path / "corrected.parquet")
    assert read.columns == ["consensus_id", "compound_group", "adduct", "mz", "rt_s", "adduct_partner",
                            "adduct_n_runs", "adduct_correlation", "adduct_p_value"]


def test_a_contradiction_is_named_as_the_refusal_only_where_q_would_have_accepted() -> None:
    """Trial finding: a feature with q far above the FDR carried "not accepted: library adduct ... contradicts",
    as if the adduct check had refused a match that q alone refuses. Within the FDR the note says "not accepted";
    above it, it says that q refuses the match anyway."""
    ann, links, groups = study()
    strong = {r["consensus_id"]: r for r in identify.identify_features(ann, links, 0.05, groups=groups)
              .iter_rows(named=True)}
    assert strong["C2"]["q_value"] <= 0.05 and strong["C2"]["adduct_note"].startswith("not accepted: ")
    weak = ann.with_columns(pl.when(pl.col("feature_id").str.ends_with(":F2")).then(0.9).otherwise(pl.col("p_value"))
                            .alias("p_value"))
    got = {r["consensus_id"]: r for r in identify.identify_features(weak, links, 0.05, groups=groups)
           .iter_rows(named=True)}
    c2 = got["C2"]
    assert c2["q_value"] > 0.05 and not c2["accepted"]
    assert not c2["adduct_note"].startswith("not accepted") and "q above the FDR" in c2["adduct_note"]
    assert "[M+H]+ contradicts" in c2["adduct_note"]


def test_evidence_columns_are_identification_columns_of_the_same_type() -> None:
    from ms2study.correction.identification_checks import EVIDENCE_OUT

    assert {c: identify.IDENTIFICATIONS[c] for c in EVIDENCE_OUT} == EVIDENCE_OUT


def test_a_name_on_two_parts_of_one_elution_is_kept_on_the_part_detected_in_more_runs() -> None:
    """A trial: Fenamiphos accepted on its feature (all 14 runs) and on a feature 6.5 s later detected only in one
    run, 150x weaker: one elution split over two consensus features by the linking, counted as two identified
    features. The name stays on the feature linked in more runs; the other is not accepted and says why. A name at
    another RT (another compound's in-source ion) or under another adduct is left as it is."""
    from ms2study.identification.samename import named_once as _named_once
    from ms2study.stages.identify import SPLIT_NOTE

    key = "FGHIJKLMNOPQRS-UHFFFAOYSA-N"
    out = pl.DataFrame({
        "consensus_id": ["C90", "C89", "C200", "C91", "C5"],
        "accepted": [True, True, True, True, True],
        "rt_s": [448.0, 454.5, 610.0, 449.0, 300.0],
        "inchikey": [key, key, key, key, "ABCDEFGHIJKLMN-UHFFFAOYSA-N"],
        "_identity": ["k1", "k1", "k1", "k1", "k2"],
        "adduct": ["[M+H]+", "[M+H]+", "[M+H]+", "[M+Na]+", "[M+H]+"],
        "n_supporting": [20, 1, 3, 4, 2],
        "msi_level": pl.Series([3, 3, 3, 3, 2], dtype=pl.Int8),
        "isomer_inchikeys": [[key], [key], [key], [key], []],
        "same_name_elsewhere": [["C200"], ["C200"], ["C89", "C90"], [], []],
        "evidence_note": [None, None, None, None, None]}, schema_overrides={"evidence_note": pl.Utf8})
    links = pl.DataFrame({"consensus_id": ["C90"] * 14 + ["C89", "C200", "C200", "C91", "C5"],
                          "sample_id": [f"S{i:02d}" for i in range(1, 15)] + ["S14", "S01", "S02", "S03", "S01"]})
    result = {r["consensus_id"]: r for r in _named_once(out, links).iter_rows(named=True)}
    assert not result["C89"]["accepted"] and result["C89"]["msi_level"] is None
    assert result["C89"]["evidence_note"].startswith(SPLIT_NOTE + "C90: the same compound and adduct 6.5 s apart")
    assert all(result[c]["accepted"] for c in ("C90", "C200", "C91", "C5"))
    assert result["C200"]["same_name_elsewhere"] == ["C90"]  # the withdrawn part is no longer listed
    assert result["C90"]["evidence_note"] is None and result["C91"]["msi_level"] == 3
    from ms2study.reporting.unaccepted import refusal_reasons  # the report's refusal reason is the note itself

    split = _named_once(out, links).filter(pl.col("consensus_id") == "C89").with_columns(
        pl.lit(0.001).alias("q_value"), pl.lit(5).alias("matched_peaks"), pl.lit(0.9).alias("best_cosine"))
    assert refusal_reasons(split, 0.01)[0] == result["C89"]["evidence_note"]
    # nothing to merge: the table comes back as it was
    assert _named_once(out.filter(pl.col("consensus_id") != "C89"), links).equals(
        out.filter(pl.col("consensus_id") != "C89"))
    assert "C90 is detected in more runs" in result["C89"]["evidence_note"]


def test_two_features_named_alike_and_detected_in_the_same_runs_are_two_peaks_not_one_split_elution() -> None:
    """Trial AU: GABA [M+H]+ (18 spectra, 12 samples) and a co-eluting [M+NH4]+ of another formula 6 s later (2
    spectra) were both named GABA; the name was moved onto the other ion as 'one elution split by the linking'
    though both were detected in the same 19 runs. Two peaks in one run are two elutions: both names stay, each
    listed in the other's same_name_elsewhere; a pair rarely detected together is still merged."""
    from ms2study.identification.samename import named_once

    key = "QWCKQJZIFLGMSD-UHFFFAOYSA-N"
    out = pl.DataFrame({
        "consensus_id": ["C204", "C210", "C300", "C301"], "accepted": [True] * 4, "rt_s": [344.2, 350.2, 500.0, 505.0],
        "inchikey": [key, key, "B" * 14 + "-UHFFFAOYSA-N", "B" * 14 + "-UHFFFAOYSA-N"],
        "_identity": ["k1", "k1", "k2", "k2"], "adduct": ["[M+H]+"] * 4, "n_supporting": [18, 2, 5, 9],
        "msi_level": pl.Series([3, 3, 3, 3], dtype=pl.Int8), "isomer_inchikeys": [[key], [key], [], []],
        "same_name_elsewhere": [[], [], [], []], "evidence_note": [None] * 4},
        schema_overrides={"evidence_note": pl.Utf8, "same_name_elsewhere": pl.List(pl.Utf8)})
    runs = [f"R{i:02d}" for i in range(1, 23)]
    # C204 in 22 runs, C210 in 19 of them; C300 and C301 in 10 runs each, together in one
    links = pl.DataFrame({"consensus_id": ["C204"] * 22 + ["C210"] * 19 + ["C300"] * 10 + ["C301"] * 10,
                          "sample_id": runs + runs[:19] + runs[:10] + runs[9:19]})
    result = {r["consensus_id"]: r for r in named_once(out, links).iter_rows(named=True)}
    assert result["C204"]["accepted"] and result["C210"]["accepted"]
    assert result["C204"]["same_name_elsewhere"] == ["C210"] and result["C210"]["same_name_elsewhere"] == ["C204"]
    assert result["C204"]["evidence_note"] is None and result["C210"]["evidence_note"] is None
    # as many runs, more supporting spectra: C301 kept, and the note says why
    assert not result["C300"]["accepted"] and result["C301"]["accepted"]
    assert result["C300"]["evidence_note"].endswith("C301 is detected in as many runs, with more supporting spectra")
