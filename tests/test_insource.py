"""Possible in-source fragments (identification.insource): co-elution and MS2 containment, the same compound's own
ions left out; the feature-level flag in identifications.parquet and the report."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from ms2study.identification import engine, insource
from ms2study.stages import identify


def _run(rows: list[tuple[float, float, list[float], list[float]]]) -> pl.DataFrame:
    return pl.DataFrame({"rt_s": [r[0] for r in rows], "precursor_mz": [r[1] for r in rows],
                         "mz": [r[2] for r in rows], "intensity": [r[3] for r in rows]},
                        schema={"rt_s": pl.Float64, "precursor_mz": pl.Float64, "mz": pl.List(pl.Float64),
                                "intensity": pl.List(pl.Float32)})


GLY = 76.0393  # glycine [M+H]+


def test_a_fragment_held_by_a_coeluting_heavier_precursor_is_marked() -> None:
    run = _run([
        (100.0, GLY, [30.034, 48.0], [100.0, 20.0]),                 # 0: the "glycine" spectrum
        (101.2, 183.0118, [GLY + 0.001, 126.0], [40.0, 100.0]),      # 1: its parent (a conjugate), 1.2 s later
        (300.0, 90.0550, [44.05], [100.0]),                          # 2: alanine-like, nothing heavier near it
        (304.0, 150.0, [90.0552], [100.0]),                          # 3: holds 90.055 but 4 s away
        (500.0, 120.0, [60.0], [100.0]),                             # 4: [M+H]+ of a compound ...
        (500.5, 120.0 + 21.981944, [120.0], [100.0]),                # 5: ... and its [M+Na]+ holding it: same compound
        (700.0, 80.0, [40.0], [100.0]),                              # 6: a weak trace in a parent's spectrum
        (700.3, 160.0, [80.0, 120.0], [10.0, 100.0]),                # 7: 10 % of its base peak: below 20 %
    ])
    parents = insource.in_source_parents(run)
    assert parents[0] == pytest.approx(183.0118)
    assert np.isnan(parents[[1, 2, 3, 4, 5, 6, 7]]).all(), parents
    # the tolerance is on m/z: a peak 0.004 Da off is another ion
    shifted = run.with_columns(pl.when(pl.int_range(pl.len()) == 1).then(pl.lit([GLY + 0.004, 126.0]))
                               .otherwise(pl.col("mz")).alias("mz"))
    assert np.isnan(insource.in_source_parents(shifted)[0])
    assert insource.in_source_parents(run.head(0)).size == 0


def test_a_cluster_of_two_coeluting_compounds_is_no_in_source_parent_of_either() -> None:
    # The fresh user's pesticide mix: myclobutanil [M+H]+ 289.1220 and fenamiphos [M+H]+ 304.1131 co-elute with
    # their cluster [A+B+H]+ 592.2278, whose MS/MS holds both monomers' ions.
    myc, fen = 289.1220, 304.1131
    cluster = myc + fen - insource.PROTON
    run = _run([
        (448.96, myc, [70.04, 125.02], [100.0, 80.0]),
        # the partner's apex 1.86 s from the fragment's, 1.54 s from the cluster's scan (a fresh user's 20 ppm run)
        (447.10, fen, [217.007, 234.036], [100.0, 60.0]),
        (448.64, cluster, [fen + 0.001, myc - 0.001, 217.007], [100.0, 45.0, 30.0]),
        # a covalent parent holding one fragment ion, whose complement is no co-eluting precursor: still marked
        (600.0, 200.0, [50.0], [100.0]),
        (600.4, 350.0, [200.0005, 120.0], [100.0, 50.0]),
    ])
    # co-elution on the features' apexes (1 s window): the partner lies 1.86 s from the fragment, within 2 s of the
    # cluster's scan (unmapped), where the cluster's partner is looked for
    run = run.with_columns(feature_id=pl.Series(["F1", "F2", None, "F3", "F4"]))
    features = pl.DataFrame({"feature_id": ["F1", "F2", "F3", "F4"], "rt_s": [448.96, 447.10, 600.0, 600.4]})
    parents = insource.in_source_parents(run, features=features)
    assert np.isnan(parents[:3]).all(), parents
    assert parents[3] == pytest.approx(350.0)
    # the cluster's MS/MS must hold the partner too: without it, the partner's mass alone proves nothing
    without = run.with_columns(pl.when(pl.int_range(pl.len()) == 2).then(pl.lit([myc - 0.001, 217.007]))
                               .otherwise(pl.col("mz")).alias("mz"),
                               pl.when(pl.int_range(pl.len()) == 2).then(pl.lit([100.0, 30.0]))
                               .otherwise(pl.col("intensity")).alias("intensity"))
    assert insource.in_source_parents(without, features=features)[0] == pytest.approx(cluster)


def test_queries_without_retention_times_are_not_marked() -> None:
    """MGF queries (``ms2study score``) have no retention time: nothing can co-elute."""
    frame = pl.DataFrame({"precursor_mz": [GLY, 183.0], "mz": [[30.0], [GLY]], "intensity": [[1.0], [1.0]]})
    assert np.isnan(engine._in_source(frame)).all()


def test_a_feature_whose_spectra_are_mostly_fragments_carries_the_parent_and_the_report_says_so() -> None:
    from ms2study.reporting.sections import _consensus_compounds

    ik = "DHMQDGOQFOQNFH-UHFFFAOYSA-N"
    rows = [("s1:1", "s1", "s1:F1", 183.01), ("s2:1", "s2", "s2:F1", 183.02), ("s3:1", "s3", "s3:F1", None),
            ("s1:2", "s1", "s1:F2", None), ("s2:2", "s2", "s2:F2", None), ("s3:2", "s3", "s3:F2", 183.0)]
    ann = pl.DataFrame({
        "spectrum_id": [r[0] for r in rows], "sample_id": [r[1] for r in rows], "feature_id": [r[2] for r in rows],
        "rank": [1] * 6, "library_id": ["L1"] * 6, "library_name": ["glycine"] * 6, "library_inchikey": [ik] * 6,
        "library_smiles": ["NCC(=O)O"] * 6, "library_formula": ["C2H5NO2"] * 6, "library_adduct": ["[M+H]+"] * 6,
        "combined": [0.99] * 6, "cosine": [0.99] * 6, "p_value": [1e-8] * 6, "msi_level": [3] * 6,
        "isomer_inchikeys": [[ik]] * 6, "in_source_parent_mz": [r[3] for r in rows]},
        schema_overrides={"msi_level": pl.Int8, "in_source_parent_mz": pl.Float64})
    links = pl.DataFrame({"consensus_id": ["C56"] * 3 + ["C57"] * 3, "sample_id": ["s1", "s2", "s3"] * 2,
                          "feature_id": ["s1:F1", "s2:F1", "s3:F1", "s1:F2", "s2:F2", "s3:F2"],
                          "rt_aligned_s": [85.0, 86.0, 85.5, 178.0, 179.0, 179.5]})
    out = identify.identify_features(ann, links, fdr=0.01).sort("consensus_id")
    assert out["accepted"].all()
    # C56: 2 of 3 spectra have a parent (median 183.015); C57: 1 of 3, below half: not marked
    assert out["in_source_of_mz"][0] == pytest.approx(183.015) and out["in_source_of_mz"][1] is None
    text = _consensus_compounds(out, {}, "q ≤ 0.01")
    assert "1 accepted feature(s) may be in-source fragments" in text and "183.015" in text
    assert "may be in-source fragments" not in _consensus_compounds(out.filter(pl.col("consensus_id") == "C57"),
                                                                    {}, "q ≤ 0.01")


def test_a_name_whose_feature_follows_its_in_source_parent_across_the_samples_is_withdrawn() -> None:
    """Study-truth finding (seed 11): the 4 wrong names marked as in-source fragments at q <= 0.01 correlated with
    their parent's feature at r 0.97-1.0 over 16-24 samples, the 3 right names marked by chance at 0.19-0.71. An
    in-source fragment is a fixed share of its parent; an ion co-eluting by chance varies on its own. QC and blank
    runs are left out: they would correlate any two ions."""
    from ms2study.reporting.sections import _consensus_compounds

    rng = np.random.default_rng(5)
    samples = [f"S{i:02d}" for i in range(1, 13)]
    parent = np.exp(rng.normal(12, 0.6, 12))
    chance_parent = np.exp(rng.normal(11, 0.6, 12))
    columns = {
        # C1 follows its parent C10 (a 5 % share with 5 % noise); C2 is independent of its parent C20;
        # C3's parent C30 is measured in 4 samples only; C4 has no feature at its parent's m/z and RT
        "C1": parent * 0.05 * np.exp(rng.normal(0, 0.05, 12)), "C10": parent,
        "C2": np.exp(rng.normal(10, 0.6, 12)), "C20": chance_parent,
        "C3": parent * 0.1 * np.exp(rng.normal(0, 0.05, 12)),
        "C30": np.where(np.arange(12) < 4, parent, np.nan),
        "C4": np.exp(rng.normal(10, 0.6, 12)),
    }
    place = {"C1": (76.0393, 100.0), "C10": (183.0118, 100.4), "C2": (90.055, 200.0), "C20": (150.0, 201.0),
             "C3": (104.07, 300.0), "C30": (250.1, 300.2), "C4": (120.0, 400.0)}
    ids = list(columns)
    matrix = pl.DataFrame({"consensus_id": ids, "mz": [place[c][0] for c in ids], "rt_s": [place[c][1] for c in ids],
                           **{s: [float(columns[c][j]) for c in ids] for j, s in enumerate(samples)},
                           # pooled QCs: every ion at its mean, which alone would correlate any pair
                           "QC01": [float(np.nanmean(columns[c])) for c in ids]})
    marked = pl.DataFrame({"consensus_id": ["C1", "C2", "C3", "C4"], "in_source_of_mz": [183.0118, 150.0, 250.1,
                                                                                        300.0]})
    r = insource.parent_correlation(marked, matrix.lazy(), samples).sort("consensus_id")
    assert r["in_source_parent_id"].to_list() == ["C10", "C20", "C30", None]
    assert r["in_source_correlation"][0] > 0.98 and abs(r["in_source_correlation"][1]) < 0.7
    assert r["in_source_n_samples"].to_list()[:3] == [12, 12, 4]
    # the identifications: C1 withdrawn (not accepted, no level), the others stay accepted with their evidence
    ident = pl.DataFrame({"consensus_id": ["C1", "C2", "C3", "C4", "C5"], "name": ["glycine", "alanine", "x", "y",
                                                                                    "z"],
                          "accepted": [True] * 5, "msi_level": [3] * 5, "isomer_inchikeys": [["A"]] * 5,
                          "evidence_note": [None] * 5, "q_value": [0.001] * 5, "best_cosine": [0.9] * 5,
                          "in_source_of_mz": [183.0118, 150.0, 250.1, 300.0, None]},
                         schema_overrides={"msi_level": pl.Int8, "evidence_note": pl.Utf8})
    out = insource.withdraw_confirmed(ident, matrix, samples).sort("consensus_id")
    assert out["accepted"].to_list() == [False, True, True, True, True]
    assert out["msi_level"][0] is None and out["isomer_inchikeys"][0] is None and out["in_source_of_mz"][0] > 183
    assert out["evidence_note"][0].startswith("not accepted: an in-source fragment of m/z 183.0118 (consensus "
                                              "feature C10; log intensities r 0.9")
    assert out["evidence_note"][1:].is_null().all()
    assert out["in_source_parent_id"][4] is None
    # C2 does not follow its marked parent (r 0.09 over 12 samples): the mark is cleared, its evidence kept (trials
    # O, X: indole and adenosine marked at r 0.09 and -0.08 and left out of their class sets); C3 (4 samples) and
    # C4 (no parent feature) cannot be judged and keep theirs
    assert out["in_source_of_mz"][1] is None and out["in_source_parent_id"][1] == "C20"
    assert out["in_source_correlation"][1] < insource.RULE_OUT_MAX_R
    assert out["in_source_of_mz"][2] == pytest.approx(250.1) and out["in_source_of_mz"][3] == pytest.approx(300.0)
    assert out.filter(insource.withdrawn(out.columns))["consensus_id"].to_list() == ["C1"]
    # a name refused before the check (q above the FDR) whose feature follows its parent is not withdrawn: it keeps
    # its refusal, and the report does not list it among the withdrawn names
    refused = insource.withdraw_confirmed(ident.with_columns(accepted=pl.Series([False, True, True, True, True])),
                                          matrix, samples)
    assert refused.filter(insource.withdrawn(refused.columns)).height == 0
    assert refused.filter(pl.col("consensus_id") == "C1")["evidence_note"].item() is None
    # with the QC run counted as a sample, C2 would correlate more: the samples given are the ones used
    with_qc = insource.parent_correlation(marked, matrix, [*samples, "QC01"]).sort("consensus_id")
    assert with_qc["in_source_n_samples"][1] == 13
    # the report lists the withdrawn name with its parent and correlation, apart from the adduct refusals
    full = out.with_columns(pl.lit(None, dtype=pl.Utf8).alias("adduct_note"), pl.lit(1).alias("n_samples"),
                            pl.lit("IK").alias("inchikey"), pl.lit(None, dtype=pl.Utf8).alias("compound_class"),
                            pl.lit(2).alias("n_spectra"), pl.lit(2).alias("n_supporting"),
                            pl.lit(0.9).alias("best_score"))
    text = _consensus_compounds(full, {}, "q ≤ 0.01", fdr=0.01)
    assert "1 more consensus feature(s) matched a library compound at the FDR but are not identified" in text
    assert "C10" in text and "library spectrum's adduct contradicts" not in text


def test_the_parent_named_is_the_one_most_spectra_name_not_an_average_of_different_parents() -> None:
    """Spectra of one feature naming different parents (386.23 in two runs, 293.25 in one) give the parent most of
    them name: the median of all three (339.74 with two) is a mass where no ion is (study-truth benchmark)."""
    assert insource.most_named(np.array([386.2335, 293.2482, 386.2341])) == pytest.approx(386.2338)
    assert insource.most_named(np.array([386.2335, 293.2482])) == pytest.approx(293.2482)  # a tie: the lighter
    assert insource.most_named(np.array([])) is None


def test_with_the_runs_features_coelution_is_judged_on_their_apexes_not_on_the_scan_times() -> None:
    """Dynamic exclusion spreads MS2 scans over a peak: a fragment's scan 6 s from its parent's is marked when their
    features' apexes lie 0.2 s apart; two ions whose scans are 1 s apart but whose apexes are 1.5 s apart (overlapping
    peaks, not one) are not; an unmapped spectrum keeps its scan time."""
    run = _run([
        (100.0, GLY, [30.034], [100.0]),                        # 0: fragment, scan at 100 s, feature apex 103.0 s
        (106.0, 183.0118, [GLY + 0.001, 126.0], [40.0, 100.0]),  # 1: parent, scan at 106 s, apex 103.2 s
        (300.0, 90.0550, [44.05], [100.0]),                      # 2: apex 300.0
        (301.0, 150.0, [90.0552], [100.0]),                      # 3: scan 1 s later, apex 301.5: another peak
        (500.0, 80.0, [40.0], [100.0]),                          # 4: unmapped, scan 500.0
        (500.8, 160.0, [80.0, 120.0], [50.0, 100.0]),            # 5: unmapped, scan 0.8 s later
    ]).with_columns(feature_id=pl.Series(["F1", "F2", "F3", "F4", None, None]))
    features = pl.DataFrame({"feature_id": ["F1", "F2", "F3", "F4"], "rt_s": [103.0, 103.2, 300.0, 301.5]})
    by_scan = insource.in_source_parents(run)
    by_apex = insource.in_source_parents(run, features=features)
    assert np.isnan(by_scan[0]) and by_apex[0] == pytest.approx(183.0118)
    assert by_scan[2] == pytest.approx(150.0) and np.isnan(by_apex[2])
    assert by_apex[4] == pytest.approx(160.0)  # unmapped: scan times, within the apex window
    assert np.isnan(by_apex[[1, 3, 5]]).all()
    # the annotate stage passes the run's features through
    assert engine._in_source(run, features)[0] == pytest.approx(183.0118) and np.isnan(engine._in_source(run)[0])


def test_a_feature_matrix_that_cannot_serve_the_check_is_named(tmp_path) -> None:
    from ms2study.core.errors import InputError

    (tmp_path / "table.tsv").write_text("consensus_id\tmz\n")
    with pytest.raises(InputError, match="not a Parquet table"):
        insource.read_matrix(tmp_path / "table.tsv")
    pl.DataFrame({"consensus_id": ["C1"], "sample_id": ["S1"]}).write_parquet(tmp_path / "links.parquet")
    with pytest.raises(InputError, match=r"lacks column\(s\) \['mz', 'rt_s'\]"):
        insource.read_matrix(tmp_path / "links.parquet")
    with pytest.raises(InputError, match="does not exist"):
        insource.read_matrix(tmp_path / "none.parquet")


def test_a_name_on_a_conjugates_in_source_fragment_is_withdrawn_when_the_conjugate_follows_it() -> None:
    """Study-truth seed 21: citric acid was named on the in-source fragment of its glycine conjugate. The conjugate was
    never fragmented, so no MS/MS held the fragment; the mark named another co-eluting ion (r 0.24), while the
    conjugate's feature, 57.0215 Da heavier, followed it at r 0.92 over 14 samples. A co-eluting feature one
    conjugate's loss heavier that follows over LOSS_MIN_SAMPLES samples or more withdraws the name; one of the same
    compound's own ions ([M+NH4]+, 17.0265 Da) does not, nor does a loss parent over too few samples."""
    rng = np.random.default_rng(11)
    samples = [f"S{i:02d}" for i in range(1, 13)]
    base = np.exp(rng.normal(12, 0.6, 12))

    def follower(share: float) -> np.ndarray:
        return base * share * np.exp(rng.normal(0, 0.04, 12))

    sulfate, glycine = 79.956815, 57.021464
    features = {  # consensus_id: (m/z, RT, intensities)
        "C1": (195.0652, 430.8, follower(0.1)), "C1P": (195.0652 + sulfate, 430.9, base),   # sulfate conjugate
        "C2": (193.0343, 67.2, follower(0.1)), "C2X": (267.0588, 67.3, np.exp(rng.normal(11, 0.6, 12))),
        "C2P": (193.0343 + glycine, 67.3, base),      # marked via C2X (does not follow); the glycine conjugate does
        "C3": (150.0, 100.0, follower(0.2)), "C3A": (150.0 + 17.026549, 100.1, base),  # its own [M+NH4]+
        "C4": (160.0, 200.0, follower(0.2)),
        "C4P": (160.0 + sulfate, 200.2, np.where(np.arange(12) < 6, base, np.nan)),     # 6 samples only
        "C5": (170.0, 300.0, follower(0.2)), "C5P": (170.0 + sulfate, 300.1, base),     # q above the FDR
    }
    ids = list(features)
    matrix = pl.DataFrame({"consensus_id": ids, "mz": [features[c][0] for c in ids],
                           "rt_s": [features[c][1] for c in ids],
                           **{s: [float(features[c][2][j]) for c in ids] for j, s in enumerate(samples)}})
    named = ["C1", "C2", "C3", "C4", "C5"]
    ident = pl.DataFrame({"consensus_id": named, "name": ["ferulic acid", "citric acid", "a", "b", "c"],
                          "accepted": [True, True, True, True, False], "msi_level": [3, 3, 3, 3, None],
                          "isomer_inchikeys": [["A"]] * 4 + [None], "evidence_note": [None] * 5,
                          "q_value": [0.001] * 4 + [0.2], "in_source_of_mz": [None, 267.0588, None, None, None]},
                         schema_overrides={"msi_level": pl.Int8, "evidence_note": pl.Utf8,
                                           "in_source_of_mz": pl.Float64})
    out = insource.withdraw_confirmed(ident, matrix, samples).sort("consensus_id")
    assert out.columns == [*ident.columns, *insource.CHECK_COLUMNS]
    assert out["accepted"].to_list() == [False, False, True, True, False]
    assert out.filter(insource.withdrawn(out.columns))["consensus_id"].to_list() == ["C1", "C2"]
    assert out["in_source_parent_id"].to_list()[:2] == ["C1P", "C2P"]
    assert out["in_source_of_mz"][0] == pytest.approx(195.0652 + sulfate, abs=1e-6)
    assert out["in_source_of_mz"][1] == pytest.approx(193.0343 + glycine, abs=1e-6)
    assert "a loss of SO3 (sulfate); log intensities r 0.99" in out["evidence_note"][0]
    assert "consensus feature C2P, a loss of C2H3NO (glycine conjugate)" in out["evidence_note"][1]
    # not withdrawn: an own-ion partner, a loss parent over 6 samples (< LOSS_MIN_SAMPLES), a name refused by its q
    assert out["evidence_note"][2:].is_null().all() and out["in_source_parent_id"][2:].is_null().all()
    assert out["in_source_of_mz"][2:].is_null().all()
    assert insource.LOSS_MIN_SAMPLES > 6
    # the report lists both withdrawn names with how their parent was found
    from ms2study.reporting.sections import _consensus_compounds

    full = out.with_columns(pl.lit(None, dtype=pl.Utf8).alias("adduct_note"), pl.lit(1).alias("n_samples"),
                            pl.lit("IK").alias("inchikey"), pl.lit(None, dtype=pl.Utf8).alias("compound_class"),
                            pl.lit(2).alias("n_spectra"), pl.lit(2).alias("n_supporting"),
                            pl.lit(0.9).alias("best_score"), pl.lit(0.9).alias("best_cosine"))
    text = _consensus_compounds(full, {}, "q ≤ 0.01", fdr=0.01)
    assert "2 more consensus feature(s) matched a library compound at the FDR but are not identified" in text
    assert "a loss of SO3 (sulfate)" in text and "a loss of C2H3NO (glycine conjugate)" in text
    # without the feature matrix nothing is checked
    assert insource.withdraw_confirmed(ident, None, samples)["accepted"].to_list() == ident["accepted"].to_list()


def test_negative_mode_adducts_and_dimers_of_one_compound_are_no_in_source_parents() -> None:
    """A trial's negative-mode study: five right [M-H]- names (steroids, a glycoside) were withdrawn as in-source
    fragments of their own formate and chloride adducts, whose MS/MS held the [M-H]- ion; only positive-mode
    differences were known. Each scan's polarity now picks its own-ion differences."""
    m_h = 359.1500  # an [M-H]- ion
    rows = [
        (100.0, m_h, [150.0, 300.0], [100.0, 50.0]),
        (100.3, m_h + 46.005479, [m_h + 0.001, 200.0], [100.0, 30.0]),   # [M+FA-H]- holding [M-H]-
        (100.5, m_h + 35.976678, [m_h, 210.0], [100.0, 40.0]),           # [M+Cl]-
        (100.6, 2 * m_h + insource.PROTON, [m_h], [100.0]),              # [2M-H]-
    ]
    negative = _run(rows).with_columns(pl.lit("negative").alias("ion_mode"))
    assert np.isnan(insource.in_source_parents(negative)).all()
    # the same masses in positive mode: a loss of HCOOH (46.005) or HCl (35.977) from a heavier co-eluting ion is a
    # real in-source fragment; a parent at 2M + H (not [2M+H]+) too
    positive = _run(rows).with_columns(pl.lit("positive").alias("ion_mode"))
    assert insource.in_source_parents(positive)[0] == pytest.approx(m_h + 35.976678)
    # scans whose file states no polarity take the stage's ion_mode; a parent of the other polarity never counts
    assert np.isnan(insource.in_source_parents(_run(rows), ion_mode="negative")).all()
    mixed = _run(rows[:2]).with_columns(pl.Series("ion_mode", ["negative", "positive"]))
    assert np.isnan(insource.in_source_parents(mixed)).all()
    fragment = _run([(100.0, m_h, [150.0], [100.0]), (100.3, m_h + 176.032088, [m_h], [100.0])])
    assert insource.in_source_parents(fragment.with_columns(pl.lit("negative").alias("ion_mode")))[0] == \
        pytest.approx(m_h + 176.032088)  # a glucuronide's [M-H]- breaking to the aglycone's: still marked
