"""A name resting on a feature that elutes over most of its run (a background ion) is marked in evidence_note, beside
the name in the report's identification table, and counted in the Main findings; acceptance is unchanged (a fresh
user's trial, D5: "Phenazine-1-carboxylic acid" accepted in a human QC on a feature of half-height width 52 s in a
59 s run, "47 spectra" read as strong support)."""

from __future__ import annotations


import numpy as np
import polars as pl

from ms2study import cli
from ms2study.identification import background
from ms2study.reporting.findings import identification_finding
from ms2study.reporting.sections import _consensus_compounds
from test_report import _itable_header, _itable_rows


def _features(sample: str, run: tuple[float, float], rows: list[tuple[str, float, float, float]]) -> pl.DataFrame:
    """A run's features table: the given (feature, start, end, fwhm) rows plus two ordinary peaks at the run's ends,
    so that the run's RT span is ``run``."""
    ends = [("Fa", run[0], run[0] + 8.0, 3.0), ("Fb", run[1] - 8.0, run[1], 3.0)]
    all_rows = rows + ends
    return pl.DataFrame({"feature_id": [f"{sample}:{f}" for f, *_ in all_rows], "sample_id": [sample] * len(all_rows),
                         "mz": [200.0 + i for i in range(len(all_rows))],
                         "rt_s": [(a + b) / 2 for _, a, b, _ in all_rows],
                         "rt_start_s": [a for _, a, _, _ in all_rows], "rt_end_s": [b for _, _, b, _ in all_rows],
                         "fwhm_s": [w for *_, w in all_rows]})


def _study() -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """Two 60 s runs. C1: a background ion in both (as the trial's F984); C2: a sharp peak with a long tail (hull
    48 s, half-height width 2.8 s: the trial's betaine); C3: background in one of its three runs only; C4: a
    background ion whose name was not accepted."""
    runs = {"R1": (240.0, 300.0), "R2": (240.5, 300.5), "R3": (240.0, 300.0)}
    rows = {"R1": [("F1", 240.0, 299.6, 52.3), ("F2", 243.0, 291.2, 2.8), ("F3", 240.0, 300.0, 55.0),
                   ("F4", 241.0, 299.0, 40.0)],
            "R2": [("F1", 240.5, 300.5, 59.6), ("F2", 243.2, 291.6, 3.0), ("F3", 270.0, 280.0, 4.0)],
            "R3": [("F3", 265.0, 290.0, 5.0)]}
    extents = pl.concat([_features(s, runs[s], rows[s]) for s in runs])
    links = pl.DataFrame({"consensus_id": ["C1", "C1", "C2", "C2", "C3", "C3", "C3", "C4"],
                          "sample_id": ["R1", "R2", "R1", "R2", "R1", "R2", "R3", "R1"],
                          "feature_id": ["R1:F1", "R2:F1", "R1:F2", "R2:F2", "R1:F3", "R2:F3", "R3:F3", "R1:F4"]})
    ident = pl.DataFrame({
        "consensus_id": ["C1", "C2", "C3", "C4"], "name": ["phenazine", "betaine", "gamma", "delta"],
        "inchikey": ["AAAAAAAAAAAAAA-X", "BBBBBBBBBBBBBB-X", "CCCCCCCCCCCCCC-X", "DDDDDDDDDDDDDD-X"],
        "msi_level": [3, 3, 3, None], "isomer_inchikeys": [["AAAAAAAAAAAAAA-X"], ["BBBBBBBBBBBBBB-X"],
                                                           ["CCCCCCCCCCCCCC-X"], None],
        "compound_class": ["c"] * 4, "n_samples": [2, 2, 3, 1], "n_spectra": [47, 2, 3, 20],
        "n_supporting": [47, 2, 3, 20], "best_score": [0.8, 0.9, 0.85, 0.7], "best_cosine": [0.8, 0.9, 0.85, 0.7],
        "q_value": [0.008, 0.001, 0.004, 0.3], "accepted": [True, True, True, False],
        "evidence_note": [None, None, "best cosine below 0.3: accepted on the combined score (its best spectrum: "
                          "cosine 0.2)", None]}, schema_overrides={"msi_level": pl.Int8})
    return ident, links, extents


def test_a_feature_eluting_over_most_of_its_run_is_marked_in_evidence_note() -> None:
    ident, links, extents = _study()
    marked = background.mark_background(ident, links, extents)
    assert marked.columns == ident.columns and marked["accepted"].to_list() == ident["accepted"].to_list()
    got = dict(zip(marked["consensus_id"], marked["evidence_note"]))
    note = got["C1"]
    assert note.startswith(background.NOTE_START
                           + "half-height width at least 50 % of the run's RT span in 2 of the 2 run(s)")
    assert "R1: 52.3 of 60.0 s, feature 240.0-299.6 s, run 240.0-300.0 s" in note
    assert "R2: 59.6 of 60.0 s" in note and "repeated triggers of one ion, not independent evidence" in note
    # a sharp peak with a long hull is a peak; a feature background in 1 of its 3 runs is not marked (its own
    # low-cosine note kept as it was); a name not accepted gets no mark
    assert got["C2"] is None and got["C3"] == ident["evidence_note"][2] and got["C4"] is None


def test_ordinary_peaks_of_a_twenty_minute_run_are_never_marked() -> None:
    """Peaks of half-height width 2-60 s (the detect stage's max_fwhm_s) in a 1200 s run: none is a background
    ion; one flat ion of width 700 s is."""
    rng = np.random.default_rng(0)
    n = 400
    start = rng.uniform(30, 1150, n)
    fwhm = rng.uniform(2, 60, n)
    extents = pl.DataFrame({"sample_id": ["R1"] * (n + 1), "feature_id": [f"R1:F{i}" for i in range(n + 1)],
                            "rt_start_s": [*start, 0.0], "rt_end_s": [*(start + 3 * fwhm), 1200.0],
                            "fwhm_s": [*fwhm, 700.0]})
    flags = background.is_background(extents)["background"].to_list()
    assert not any(flags[:n]) and flags[n]


def test_the_identify_command_marks_with_the_features_tables(tmp_path) -> None:
    """``ms2study identify --features``: the mark comes from the detect stage's tables; without them, none."""
    _, links, extents = _study()
    spectra = [("R1:S1", "R1", "R1:F1"), ("R2:S1", "R2", "R2:F1"), ("R1:S2", "R1", "R1:F2")]
    ann = pl.DataFrame({
        "spectrum_id": [s for s, _, _ in spectra], "sample_id": [r for _, r, _ in spectra],
        "feature_id": [f for *_, f in spectra], "rank": [1, 1, 1],
        "library_id": ["L1", "L1", "L2"], "library_name": ["phenazine", "phenazine", "betaine"],
        "library_inchikey": ["AAAAAAAAAAAAAA-X-N", "AAAAAAAAAAAAAA-X-N", "BBBBBBBBBBBBBB-X-N"],
        "library_smiles": ["C", "C", "C"], "library_formula": ["C13H8N2O2", "C13H8N2O2", "C19H38N2O3"],
        "library_adduct": ["[M+H]+"] * 3, "combined": [0.8, 0.8, 0.9], "cosine": [0.8, 0.8, 0.9],
        "p_value": [1e-6, 1e-6, 1e-6], "msi_level": [3, 3, 3],
        "isomer_inchikeys": [["AAAAAAAAAAAAAA-X-N"]] * 2 + [["BBBBBBBBBBBBBB-X-N"]]},
        schema_overrides={"msi_level": pl.Int8})
    ann.write_parquet(tmp_path / "annotations.parquet")
    links.write_parquet(tmp_path / "links.parquet")
    paths = []
    for sample in ("R1", "R2"):
        paths.append(str(tmp_path / f"{sample}.features.parquet"))
        extents.filter(pl.col("sample_id") == sample).write_parquet(paths[-1])
    base = ["identify", "--annotations", str(tmp_path / "annotations.parquet"), "--links",
            str(tmp_path / "links.parquet"), "--params", '{"fdr": 0.05}']
    assert cli.main(base + ["--features", *paths, "--out", str(tmp_path / "marked.parquet")]) == 0
    assert cli.main(base + ["--out", str(tmp_path / "plain.parquet")]) == 0
    marked = {r["consensus_id"]: r for r in pl.read_parquet(tmp_path / "marked.parquet").iter_rows(named=True)}
    plain = {r["consensus_id"]: r for r in pl.read_parquet(tmp_path / "plain.parquet").iter_rows(named=True)}
    assert marked["C1"]["accepted"] and marked["C1"]["evidence_note"].startswith(background.NOTE_START)
    assert marked["C2"]["evidence_note"] is None and plain["C1"]["evidence_note"] is None
    assert [r["accepted"] for r in marked.values()] == [r["accepted"] for r in plain.values()]


def _rows(text: str, table_id: str) -> tuple[list[str], list[list]]:
    """The header and rows of the itables table ``table_id`` in ``text``."""
    return _itable_header(text, table_id), _itable_rows(text, table_id)


def test_the_report_shows_the_mark_beside_the_name_and_counts_it() -> None:
    ident, links, extents = _study()
    marked = background.mark_background(ident, links, extents)
    text = _consensus_compounds(marked, {}, "q ≤ 0.01", 0.01)
    header, rows = _rows(text, "identifications-table")
    at = header.index("background ion?")
    assert header[at - 1] == "compound"
    by_id = {r[0]: r for r in rows}
    assert by_id["C1"][at].startswith("half-height width at least 50 % of the run's RT span in 2 of the 2 run(s)")
    assert by_id["C2"][at] in (None, "")
    # the low-cosine column keeps only the low-cosine note
    why = header.index("why accepted (cosine < 0.3)")
    assert by_id["C1"][why] in (None, "") and by_id["C3"][why].startswith("best cosine below 0.3")
    assert "1 accepted feature(s) rest on a background ion" in text
    assert "1 accepted feature(s) have no spectrum with cosine 0.3 or more" in text
    finding = identification_finding(marked, 0.01)
    assert "<b>1</b> of them carries a mark the q-value does not cover (1 on a background ion)" in finding
    # unmarked, nothing is said
    assert "background ion" not in _consensus_compounds(ident, {}, "q ≤ 0.01", 0.01)
    assert "carries a mark" not in identification_finding(ident, 0.01)


def test_a_name_flagged_by_the_blank_filter_is_marked_beside_it_and_in_the_findings() -> None:
    """A trial: two phosphate esters and a benzalkonium cation, all abundant in the study's blank and flagged by the
    blank filter (blank ratio 0.77-0.88), were named with no word of it. The report now joins the corrected
    matrix's blank flag to the identifications and marks them."""
    from ms2study.reporting import marks

    ident, _, _ = _study()
    corrected = pl.DataFrame({"consensus_id": ["C1", "C2", "C3"], "blank_flag": [True, False, None],
                              "blank_ratio": [0.77, 12.0, None]})
    flagged = marks.with_blank_flags(ident, corrected)
    assert dict(zip(flagged["consensus_id"], flagged["blank_flag"])) == {"C1": True, "C2": False, "C3": None,
                                                                          "C4": None}
    text = _consensus_compounds(flagged, {}, "q ≤ 0.01", 0.01)
    header, rows = _rows(text, "identifications-table")
    at = header.index(marks.BLANK_HEADER)
    by_id = {r[0]: r for r in rows}
    assert by_id["C1"][at] == "blank ratio 0.77 (flagged)" and by_id["C3"][at] in (None, "")
    assert "1 accepted feature(s) were flagged by the blank filter" in text
    finding = identification_finding(flagged, 0.01)
    assert "1 flagged by the blank filter (as abundant in the blanks)" in finding
    # without the corrected matrix (or its columns) nothing changes and nothing is said
    assert marks.with_blank_flags(ident, None) is ident
    assert marks.with_blank_flags(ident, corrected.drop("blank_ratio")) is ident
    assert marks.BLANK_HEADER not in _consensus_compounds(ident, {}, "q ≤ 0.01", 0.01)


def test_a_split_elution_s_other_part_is_not_said_to_be_refused_by_the_adduct_check() -> None:
    """A TripleTOF trial: Fenamiphos, named once on C190, had its other part C189 listed among the matches "not
    accepted because the library spectrum's adduct contradicts ..." with every evidence column empty. Such rows
    (and names resting on blank runs only) get a note of their own; the adduct table keeps the adduct refusals."""
    ident, _, _ = _study()
    extra = pl.DataFrame({
        "consensus_id": ["C5", "C6", "C7"], "name": ["fenamiphos", "fenamiphos", "epsilon"],
        "inchikey": ["EEEEEEEEEEEEEE-X"] * 2 + ["FFFFFFFFFFFFFF-X"], "msi_level": [None, 3, None],
        "isomer_inchikeys": [None, ["EEEEEEEEEEEEEE-X"], None], "compound_class": ["c"] * 3,
        "n_samples": [3, 3, 2], "n_spectra": [4, 9, 3], "n_supporting": [4, 9, 3], "best_score": [0.9, 0.95, 0.8],
        "best_cosine": [0.9, 0.95, 0.8], "q_value": [0.002, 0.001, 0.004], "accepted": [False, True, False],
        "evidence_note": [f"{background.SPLIT_NOTE}C6 (one elution split over two consensus features)", None, None]},
        schema_overrides={"msi_level": pl.Int8})
    table = pl.concat([ident, extra], how="diagonal_relaxed").with_columns(
        adduct=pl.lit("[M+H]+"), feature_adduct=pl.lit(None, dtype=pl.Utf8),
        adduct_note=pl.when(pl.col("consensus_id") == "C7").then(pl.lit("library [M+H]+, grouped as [M+Na]+"))
        .otherwise(None))
    text = _consensus_compounds(table, {}, "q ≤ 0.01", 0.01)
    assert "1 more consensus feature(s) have a library match at q ≤ 0.01 that was not accepted, because" in text
    assert ("1 consensus feature(s) with a library match at q ≤ 0.01 are not accepted for a reason of their own: "
            "fenamiphos (C5): named once, on C6") in text


def test_a_differential_hit_on_a_background_ion_gets_a_caution(tmp_path) -> None:
    """A trial (before/after study): the largest effect among the hits was an unnamed ion present through the run,
    detected in 10 of 10 after runs and 4 of 10 before runs, marked only as resting partly on imputed values."""
    from ms2study.reporting.whatdiffers import background_ions, background_warning

    _, links, extents = _study()
    links.write_parquet(tmp_path / "links.parquet")
    paths = []
    for sample in ("R1", "R2", "R3"):
        paths.append(tmp_path / f"{sample}.parquet")
        extents.filter(pl.col("sample_id") == sample).write_parquet(paths[-1])
    notes = background_ions(tmp_path / "links.parquet", paths)
    assert set(notes) == {"C1", "C4"} and notes["C1"].startswith("background ion: half-height width")
    warnings: list = []
    background_warning(["C1", "C2", "C3"], notes, "time", warnings)
    assert len(warnings) == 1 and "1 feature(s) at q &lt; 0.05 are background ions or broad peaks (C1)" in str(warnings[0])
    assert warnings[0].concerns == ("differential:time",)
    background_warning(["C2", "C3"], notes, "time", warnings)
    assert len(warnings) == 1  # no hit on a background ion: nothing said
    assert background_ions(None, paths) == {} and background_ions(tmp_path / "links.parquet", []) == {}


def test_a_broad_peak_that_may_hold_a_compound_is_marked_with_what_it_means() -> None:
    """Trial AC: "Fenobucarb" sat on a feature of half-height width 25-32 s in 60 s excerpts whose peaks are about
    5 s wide (under half the run, so unmarked), its fold change of the wrong sign. A feature at least
    BROAD_PEAK_RATIO times its run's median width in half or more of its runs is marked, with the runs' widths; one
    twice as wide as the median is not, nor one broad in a single run of three."""
    rng = np.random.default_rng(3)
    frames, link_rows = [], []
    for run in ("R1", "R2", "R3"):
        widths = list(rng.uniform(3.0, 7.0, 40))  # the run's ordinary peaks: median about 5 s
        starts = list(rng.uniform(241.0, 280.0, 40))
        special = {"B": 28.0, "T": 10.0, "O": 26.0 if run == "R1" else 4.0}  # broad, twice the median, broad once
        rows = [(f"P{i}", a, a + 2.5 * w, w) for i, (a, w) in enumerate(zip(starts, widths))]
        rows += [(name, 250.0, 250.0 + 2.0 * w, w) for name, w in special.items()]
        frames.append(_features(run, (240.0, 300.0), rows))
        link_rows += [(f"C{name}", run, f"{run}:{name}") for name in special]
    extents = pl.concat(frames)
    links = pl.DataFrame(link_rows, schema=["consensus_id", "sample_id", "feature_id"], orient="row")
    notes = dict(background.background_notes(links, extents).iter_rows())
    assert set(notes) == {"CB"}, notes
    note = notes["CB"]
    assert note.startswith(background.NOTE_START + "a broad peak, half-height width at least 4 times its run's median "
                           "(or half the run) in 3 of the 3 run(s) detecting it (R1: 28.0 s, the run's median ")
    assert "may not be the named compound's" in note
    flags = background.is_background(extents)
    assert not flags.filter(pl.col("feature_id") == "R1:B")["background"].item()  # under half the run: not that rule
    ident = pl.DataFrame({"consensus_id": ["CB", "CT"], "accepted": [True, True], "evidence_note": [None, None]})
    marked = background.mark_background(ident, links, extents)
    assert marked["evidence_note"][0] == note and marked["evidence_note"][1] is None
