"""What fresh users' trials of the identification part found in the report (session 26): with no accepted name the
best unaccepted matches and why each was refused (a small lab library accepted nothing and the compound table was
empty), names resting on one shared fragment peak, the in-source correlation's sample count, tiny RT residuals."""

from __future__ import annotations

import html
import re

import polars as pl

from ms2study.identification.insource import WITHDRAWN_NOTE
from ms2study.reporting.marks import SINGLE_PEAK_HEADER
from ms2study.reporting.sections import _consensus_compounds
from ms2study.reporting.unaccepted import SHOWN


def _ident(n: int = 25) -> pl.DataFrame:
    """n unaccepted consensus features: C0 withdrawn as an in-source fragment (q 0.001), C1 refused by the adduct
    check (q 0.004), the others above the FDR with q rising from 0.02."""
    q = [0.001, 0.004] + [0.02 * (k + 1) for k in range(n - 2)]
    notes = [f"{WITHDRAWN_NOTE} of m/z 250.0557 (C9), r 0.95 over 12 samples"] + [None] * (n - 1)
    adduct = [None, "library [M+Na]+ but grouped as [M+H]+"] + [None] * (n - 2)
    return pl.DataFrame({
        "consensus_id": [f"C{k}" for k in range(n)], "name": [f"compound {k}" for k in range(n)],
        "inchikey": [f"KEY{k:011d}-UHFFFAOYSA-N" for k in range(n)], "msi_level": [3] * n,
        "isomer_inchikeys": [[f"KEY{k:011d}-UHFFFAOYSA-N"] for k in range(n)], "compound_class": ["x"] * n,
        "n_samples": [4] * n, "n_spectra": [6] * n, "n_supporting": [3] * n,
        "best_score": [0.9 - 0.01 * k for k in range(n)], "best_cosine": [0.95] * n,
        "precursor_error_ppm": [1.04] * n, "rt_s": [100.0 + k for k in range(n)],
        "adduct": ["[M+H]+"] * n, "feature_adduct": [None] * n,
        "q_value": q, "accepted": [False] * n, "adduct_note": adduct, "evidence_note": notes,
        "in_source_correlation": [0.95] + [None] * (n - 1), "in_source_n_samples": [12] + [None] * (n - 1),
        "in_source_of_mz": [250.0557] + [None] * (n - 1), "in_source_parent_id": ["C9"] + [None] * (n - 1),
    })


def _table_rows(text: str) -> list[list[str]]:
    body = text.split("Best library matches, none accepted")[1]
    return [re.findall(r"<td[^>]*>(.*?)</td>", row) for row in re.findall(r"<tr>(.*?)</tr>", body, re.DOTALL)[1:]]


def test_with_no_accepted_name_the_best_matches_are_listed_with_the_reason_each_was_refused() -> None:
    text = _consensus_compounds(_ident(), {}, "q ≤ 0.01", fdr=0.01)
    assert "Best library matches, none accepted" in text
    assert f"The {SHOWN} best of the 25 matches" in text
    rows = _table_rows(text)
    assert len(rows) == SHOWN
    assert [r[0] for r in rows[:3]] == ["C0", "C1", "C2"]  # lowest q first
    assert rows[0][-1].startswith("withdrawn: an in-source fragment")
    assert rows[1][-1] == "library [M+Na]+ but grouped as [M+H]+"
    assert rows[2][-1] == "q above the FDR 0.01"
    assert rows[0][1] == "100.0" and "1.0" in rows[0]  # RT and m/z error with one decimal


def test_the_reasons_name_a_match_without_shared_peaks_and_a_library_too_small_to_reach_the_fdr() -> None:
    # a trial's 25-record library: cosine 0.99 at q 0.05 was "q above the FDR" though no p could fall below 0.013,
    # and matches sharing no fragment peak were given the same reason; a second trial: a feature at p 1 by Simes over
    # its spectra, one of which shares a peak, must not be said to share none
    ident = _ident().with_columns(pl.Series("p_value", [0.001, 0.004, 0.013] + [1.0] * 22),
                                  pl.Series("matched_peaks", [3, 3, 3, 0] + [1] * 21, dtype=pl.Int32))
    rows = {r[0]: r for r in _table_rows(_consensus_compounds(ident, {}, "q ≤ 0.01", fdr=0.01))}
    assert rows["C3"][-1] == ("no spectrum shares a fragment peak with the library spectrum (annotate: "
                              "min_matched_peaks): never an identification")
    assert rows["C4"][-1] == rows["C2"][-1] == "q above the FDR 0.01"  # C4: p 1 with one shared peak
    two = {"config_used": {"annotate": {"min_matched_peaks": 2}}}
    rows = {r[0]: r for r in _table_rows(_consensus_compounds(ident, two, "q ≤ 0.01", fdr=0.01))}
    assert rows["C4"][-1].startswith("no spectrum shares 2 fragment peaks with the library spectrum")
    text = _consensus_compounds(ident, {}, "q ≤ 0.01", fdr=0.01, p_floor=0.013)
    assert "no match can reach the FDR" in text and "makes q-values coarse" not in text
    rows = {r[0]: r for r in _table_rows(text)}
    assert rows["C2"][-1] == "q above the FDR 0.01: no p-value can fall below 0.013 with this library (the warning " \
        "above)"
    assert "no match can reach the FDR" not in _consensus_compounds(ident, {}, "q ≤ 0.01", fdr=0.01)


def test_the_list_is_not_shown_once_a_name_is_accepted() -> None:
    ident = _ident().with_columns(pl.when(pl.col("consensus_id") == "C2").then(True).otherwise(pl.col("accepted"))
                                  .alias("accepted"))
    text = _consensus_compounds(ident, {}, "q ≤ 0.01", fdr=0.01)
    assert "none accepted" not in text and "identifications-table" in text


def test_an_accepted_name_resting_on_one_shared_fragment_peak_is_marked_and_explained() -> None:
    # a trial: L-tert-leucine accepted on the m/z 86.096 ion that leucine and isoleucine share, with nothing saying so
    from test_report import _itable_header, _itable_rows

    ident = _ident().with_columns(pl.col("consensus_id").is_in(["C2", "C3"]).alias("accepted"),
                                  pl.Series("matched_peaks", [1] * 3 + [4] + [1] * 21, dtype=pl.Int32))
    text = _consensus_compounds(ident, {}, "q ≤ 0.01", fdr=0.01)
    header, rows = _itable_header(text, "identifications-table"), _itable_rows(text, "identifications-table")
    mark = {r[0]: r[header.index(SINGLE_PEAK_HEADER)] for r in rows}
    assert mark["C2"] == "yes" and mark["C3"] in (None, "")
    assert "1 accepted feature(s) rest on one shared fragment peak" in text
    plain = _consensus_compounds(ident.drop("matched_peaks"), {}, "q ≤ 0.01", fdr=0.01)
    assert SINGLE_PEAK_HEADER not in plain and "rest on one shared fragment peak" not in plain


def test_the_in_source_correlation_is_shown_with_its_number_of_samples() -> None:
    # a trial: "r with that ion 1.0" beside a kept name, over 3 samples (below the 5 the rule needs), n not shown
    from test_report import _itable_header, _itable_rows

    ident = _ident().with_columns(
        pl.col("consensus_id").is_in(["C2", "C3"]).alias("accepted"),
        pl.when(pl.col("consensus_id") == "C2").then(1.0).otherwise(pl.col("in_source_correlation"))
        .alias("in_source_correlation"),
        pl.when(pl.col("consensus_id") == "C2").then(3).otherwise(pl.col("in_source_n_samples"))
        .alias("in_source_n_samples"),
        pl.when(pl.col("consensus_id") == "C2").then(359.2798).otherwise(pl.col("in_source_of_mz"))
        .alias("in_source_of_mz"))
    text = _consensus_compounds(ident, {}, "q ≤ 0.01", fdr=0.01)
    header, rows = _itable_header(text, "identifications-table"), _itable_rows(text, "identifications-table")
    cell = {r[0]: r[header.index("r with that ion (samples)")] for r in rows}
    assert cell["C2"] == "1.0 (3)" and cell["C3"] in (None, "")


def test_a_vanishing_rt_residual_prints_as_zero_not_in_e_notation() -> None:
    # a trial: a run aligned to a byte-identical copy of itself showed "RT residual to reference (s)" 2.2700e-13
    from test_report import _itable_rows

    from ms2study.reporting.tables import interactive_table

    text = interactive_table(pl.DataFrame({"run": ["a", "b"], "RT residual to reference (s)": [2.27e-13, 0.4567]}),
                             "residuals")
    assert [r[1] for r in _itable_rows(text, "residuals")] == [0.0, 0.46]


def test_the_feature_table_says_measured_and_gap_filled_and_the_qc_table_scales_the_tic() -> None:
    """Session 27's trial: "detected (control) 1.0" stood beside a feature that detection never found in a control
    (all its control values were gap-filled), and the QC table printed a TIC as "2.0300e10"."""
    from ms2study.reporting.qc import _qc_table_html
    from ms2study.reporting.whatdiffers import _feature_table

    tested = pl.DataFrame({"consensus_id": ["C3197"], "mz": [150.05], "rt_s": [61.2], "p_value": [0.001],
                           "q_value": [0.02], "log2_fold_change": [1.5], "detection_rate_positive": [1.0],
                           "detection_rate_reference": [1.0], "gap_filled_rate_positive": [0.38],
                           "gap_filled_rate_reference": [1.0]})
    html = _feature_table(tested, {"type": "binary", "positive_class": "case", "reference_class": "control"},
                          "log2_fold_change", "log2 FC", "t1")
    assert "measured (control)" in html and "gap-filled (control)" in html and "detected (control)" not in html
    qc = pl.DataFrame({"sample_id": ["S1", "S2"], "tic_total": [2.03e10, 9.1e9], "n_features": [100, 90]})
    html = _qc_table_html(qc, "sample", False)
    assert "total TIC (x 1e10)" in html and "e10" not in html.replace("(x 1e10)", "")


def test_class_p_values_at_their_permutation_floor_are_said_to_be() -> None:
    """Session 27's trial: a class enrichment p of 0.000999 was not marked as the 1/1001 floor."""
    from ms2study.reporting.whatdiffers import class_floor_note

    enrichment = pl.DataFrame({"class_path": ["A", "B"], "p_value": [1 / 1001, 0.2]})
    note = class_floor_note({"class_permutations": 1000}, enrichment)
    assert "1 class p-value(s) are 0.000999 = 1/(1000 + 1)" in note
    assert class_floor_note({"class_permutations": 1000}, enrichment.filter(pl.col("class_path") == "B")) == ""


def test_a_refused_match_whose_spectra_barely_agree_says_so() -> None:
    """A trial: Tolterodine, its spectra sharing one tiny peak with the library spectrum (cosine 0.0004, p 1), was
    refused as "q above the FDR 0.01", as if it had nearly passed."""
    ident = _ident().with_columns(pl.Series("best_cosine", [0.9, 0.9, 0.9, 0.9, 0.0004] + [0.6] * 20))
    rows = {r[0]: r for r in _table_rows(_consensus_compounds(ident, {}, "q ≤ 0.01", fdr=0.01))}
    assert rows["C4"][-1] == ("q above the FDR 0.01: its spectra barely match the library spectrum (best cosine "
                              "0.0004); only the precursor m/z agrees")
    assert rows["C2"][-1] == "q above the FDR 0.01"


def test_a_name_refused_for_resting_on_blank_runs_says_so() -> None:
    from ms2study.stages.identify import BLANK_ONLY_NOTE

    ident = _ident().with_columns(pl.when(pl.col("consensus_id") == "C2").then(pl.lit(BLANK_ONLY_NOTE))
                                  .otherwise(None).alias("evidence_note"))
    rows = {r[0]: r for r in _table_rows(_consensus_compounds(ident, {}, "q ≤ 0.01", fdr=0.01))}
    assert html.unescape(rows["C2"][-1]) == "only blank runs' spectra support it"


def test_an_accepted_name_with_a_low_cosine_is_not_said_to_be_the_right_compound() -> None:
    """A fresh user's trial: an accepted name resting on a spectrum of cosine < 0.3 was explained as "typical of a
    noisy or chimeric spectrum of the right compound", and it was a wrong structure (an isomer not in the library).
    The note now gives both readings and calls the name tentative."""
    from ms2study.reporting.sections import identifications_section

    annotations = pl.DataFrame({"spectrum_id": ["a"], "sample_id": ["S1"], "rank": [1], "library_name": ["y"],
                                "library_inchikey": ["Y"], "cosine": [0.14], "q_value": [0.0099], "accepted": [True]})
    ident = pl.DataFrame({
        "consensus_id": ["C1"], "name": ["y"], "msi_level": [3], "isomer_inchikeys": [["Y"]], "inchikey": ["Y"],
        "compound_class": ["c"], "n_samples": [6], "n_spectra": [6], "n_supporting": [6], "best_score": [0.75],
        "best_cosine": [0.14], "q_value": [0.0099], "accepted": [True],
        "evidence_note": [("best cosine below 0.3: accepted on the combined score (its best spectrum: cosine 0.125, "
                           "entropy 0.404, embedding 0.92, modified cosine 0.125)")]},
        schema_overrides={"msi_level": pl.Int8})
    text = html.unescape(identifications_section(annotations, ident, ["S1"],
                                                 {"config_used": {"annotate": {"fdr": 0.01}}}, []))
    assert "1 accepted feature(s) have no spectrum with cosine 0.3 or more" in text
    assert "typical of" not in text and "of the right compound" in text
    assert ("may be a noisy or chimeric spectrum of the right compound, or a related compound (an isomer or analogue) "
            "that is not in the library: read these names as tentative") in text
