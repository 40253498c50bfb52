"""The report's library matches that were not accepted: the best of them with why each was refused, shown when a
study accepted no name (the user sees how close the matches came, instead of an empty compound table), and the
names withdrawn as in-source fragments. May import ``ms2study.core`` and the other ``reporting`` modules.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from ms2study.identification.background import BLANK_ONLY_NOTE, SPLIT_NOTE
from ms2study.reporting import marks
from ms2study.reporting.html import esc, html_table, q_cell

SHOWN = 20  # best matches listed at most (the rest are in identifications.parquet)


def _one_decimal(value: float | None) -> str | None:
    return None if value is None else fixed_decimals(round(value, 1) + 0.0, 1)  # + 0.0: never "-0.0"


# Below this best cosine a refused match is said to barely match (only its precursor m/z agrees).
BARELY = 0.05


def refusal_reasons(ident: pl.DataFrame, fdr: float | None, p_floor: float | None = None,
                    min_matched_peaks: int = 1) -> pl.Series:
    """Per row of ``ident`` (identifications.parquet; unaccepted rows), Utf8: why the match is not a name, in the
    order identify applies the rules: withdrawn as an in-source fragment; supported by blank runs only; named once,
    on another part of its elution; no
    supporting spectrum shares
    ``min_matched_peaks`` fragment peaks with the library spectrum (column ``matched_peaks``: never an
    identification); its q-value above ``fdr``, with the library's floor ``p_floor`` (the smallest p-value its
    calibration can give) when that is above ``fdr``, or that its spectra barely match (best cosine below
    ``BARELY``); the adduct check's note; else "not accepted"."""
    columns = ident.columns

    def column(name: str, dtype: pl.DataType) -> list:
        return (ident[name].fill_nan(None) if dtype == pl.Float64 else ident[name]).to_list() if name in columns \
            else [None] * ident.height

    withdrawn = ident.with_columns(marks.withdrawn(columns).alias("w"))["w"].fill_null(False).to_list()
    needed = "a fragment peak" if min_matched_peaks <= 1 else f"{min_matched_peaks} fragment peaks"
    out = []
    for w, qv, peaks, note, cos, evidence in zip(
            withdrawn, column("q_value", pl.Float64), column("matched_peaks", pl.Int32), column("adduct_note", pl.Utf8),
            column("best_cosine", pl.Float64), column("evidence_note", pl.Utf8)):
        if w:
            out.append("withdrawn: an in-source fragment of a co-eluting ion")
        elif evidence and evidence.startswith(BLANK_ONLY_NOTE):
            out.append("only blank runs' spectra support it")
        elif evidence and evidence.startswith(SPLIT_NOTE):
            out.append(evidence)  # part of an elution whose name is on another consensus feature
        elif peaks is not None and peaks < min_matched_peaks:
            out.append(f"no spectrum shares {needed} with the library spectrum (annotate: min_matched_peaks): "
                       "never an identification")
        elif qv is None:
            out.append("no q-value")
        elif fdr is not None and qv > fdr and cos is not None and cos < BARELY:
            # a trial: "q above the FDR" for spectra matching at cosine 0.0004, as if the match had nearly passed
            out.append(f"q above the FDR {fdr:g}: its spectra barely match the library spectrum (best cosine "
                       f"{cos:.2g}); only the precursor m/z agrees")
        elif fdr is not None and qv > fdr and p_floor is not None:
            out.append(f"q above the FDR {fdr:g}: no p-value can fall below {p_floor:.2g} with this library "
                       "(the warning above)")
        elif fdr is not None and qv > fdr:
            out.append(f"q above the FDR {fdr:g}")
        else:
            out.append(note or "not accepted")
    return pl.Series("reason", out, dtype=pl.Utf8)


def best_unaccepted_section(ident: pl.DataFrame, fdr: float | None, at: str, p_floor: float | None = None,
                            min_matched_peaks: int = 1) -> str:
    """HTML: a paragraph and a table of the ``SHOWN`` unaccepted consensus-feature matches with the lowest q-value
    (then the highest best score), with their scores, m/z error and the reason each was refused
    (``refusal_reasons``; ``p_floor`` and ``min_matched_peaks`` as there). ``ident``: identifications.parquet
    (columns consensus_id, name, inchikey, n_samples, n_spectra, best_score, best_cosine, q_value, accepted; rt_s,
    matched_peaks and precursor_error_ppm where present). Empty string when every row is accepted or ``ident`` is
    empty."""
    rest = ident.filter(~pl.col("accepted").fill_null(False))
    if rest.is_empty():
        return ""
    rest = rest.with_columns(refusal_reasons(rest, fdr, p_floor, min_matched_peaks)).sort(
        [pl.col("q_value").fill_nan(None), "best_score"], descending=[False, True], nulls_last=True)
    shown = rest.head(SHOWN)
    has_rt = "rt_s" in shown.columns
    has_ppm = "precursor_error_ppm" in shown.columns
    header = (["consensus feature"] + (["RT (s)"] if has_rt else []) + ["best match (not accepted)", "InChIKey",
              "samples", "spectra", "best score", "best cosine"] + (["m/z error (ppm)"] if has_ppm else [])
              + ["q", "why not accepted"])
    rows = []
    for r in shown.iter_rows(named=True):
        rows.append([r["consensus_id"]] + ([_one_decimal(r["rt_s"])] if has_rt else [])
                    + [r["name"], r["inchikey"], r["n_samples"], r["n_spectra"], r["best_score"], r["best_cosine"]]
                    + ([_one_decimal(r["precursor_error_ppm"])] if has_ppm else [])
                    + [q_cell(r["q_value"]), r["reason"]])
    numeric = {i for i, h in enumerate(header) if h in {"RT (s)", "samples", "spectra", "best score", "best cosine",
                                                         "m/z error (ppm)", "q"}}
    intro = (f"<h3>Best library matches, none accepted</h3><p>No consensus feature has a name at {at}. The "
             f"{shown.height} best of the {rest.height} matches that were not accepted are listed to be checked by "
             "hand: they are not identifications. "
             + ("With this library no match can reach the FDR, however well it matches (the warning above): their "
                "q-values are bounded by the library's size, not by the matches. " if p_floor is not None else
                "A q-value is the lowest FDR at which the match would be accepted; a library too small to calibrate "
                "well (see the warnings) makes q-values coarse. ")
             + "All of them are in <code>results/study/identifications.parquet</code> (column accepted false).</p>")
    return intro + html_table(header, rows, numeric=numeric)


def fixed_decimals(value: float | None, decimals: int) -> str | None:
    """``value`` with a fixed number of decimals (m/z 4, retention time 1), None when missing."""
    return None if value is None or not np.isfinite(value) else f"{value:.{decimals}f}"


def in_source_withdrawn(ident: pl.DataFrame, fdr: float | None) -> list[str]:
    """A note and a table of the matches that passed ``fdr`` but were withdrawn as in-source fragments."""
    if fdr is None:
        return []
    gone = ident.filter(marks.withdrawn(ident.columns) & (pl.col("q_value") <= float(fdr))).sort("q_value")
    if gone.height == 0:
        return []
    from ms2study.identification.insource import (CONFIRM_MIN_R, CONFIRM_MIN_SAMPLES, CONJUGATE_LOSSES,
                                                  LOSS_MIN_SAMPLES, withdrawing_loss)

    losses = ", ".join(name.split(" (")[1].rstrip(")") for name in CONJUGATE_LOSSES)
    note = (f"<p>{gone.height} more consensus feature(s) matched a library compound at the FDR but are not "
            "identified: they are in-source fragments of a co-eluting heavier ion. That ion's MS/MS holds the "
            f"feature's m/z, or the ion lies one conjugate's loss above it ({losses}; then over at least "
            f"{LOSS_MIN_SAMPLES} samples), and across the study samples the feature's intensity follows the ion's "
            f"(correlation of log intensities at least {CONFIRM_MIN_R} over at least {CONFIRM_MIN_SAMPLES} samples). "
            "The library compound then names a piece of the heavier compound, not a compound in the sample (glycine "
            "from a glycine conjugate). On two simulated studies with known truth all 11 such names at q 0.01 were "
            "in-source fragments, and the 15 right names marked by chance correlated at -0.03 to 0.71 "
            "(benchmarks/README.md, study truth). "
            "Look up the parent feature: its own identification, if any, is the compound.</p>")
    found = gone.select(withdrawing_loss().alias("loss"))["loss"].to_list()
    table = html_table(["consensus feature", "library match", "q", "best cosine", "parent m/z", "parent feature",
                        "found by", "correlation", "samples"],
                       [[r["consensus_id"], r["name"], q_cell(r["q_value"]), r["best_cosine"],
                         fixed_decimals(r["in_source_of_mz"], 4), r["in_source_parent_id"],
                         "its MS/MS" if loss is None else f"a loss of {loss}",
                         fixed_decimals(r["in_source_correlation"], 3), r["in_source_n_samples"]]
                        for r, loss in zip(gone.iter_rows(named=True), found)],
                       numeric={2, 3, 4, 7, 8})
    return [note, table]


def set_apart(columns) -> pl.Expr:
    """Unaccepted rows of an identifications table with ``columns`` refused for a reason of their own, not by the
    adduct check: supported by blank runs only, or named once on another part of their elution (``evidence_note``,
    ``identification.background``)."""
    if "evidence_note" not in columns:
        return pl.lit(False)
    note = pl.col("evidence_note").fill_null("")
    return note.str.starts_with(BLANK_ONLY_NOTE) | note.str.starts_with(SPLIT_NOTE)


def set_apart_note(ident: pl.DataFrame, fdr: float, at: str) -> str:
    """HTML: the consensus features with a match at ``at`` (q <= ``fdr``) not accepted for such a reason of their
    own (``set_apart``), each with its reason (``refusal_reasons``), so that none is said to be refused by the adduct
    check (a TripleTOF trial: one part of a split elution listed there, every evidence column empty); "" when none."""
    rows = ident.filter(~pl.col("accepted").fill_null(False) & (pl.col("q_value") <= fdr)
                        & set_apart(ident.columns)).sort("q_value")
    if not rows.height:
        return ""
    reasons = refusal_reasons(rows, fdr).to_list()
    said = "; ".join(f"{r['name']} ({r['consensus_id']}): {why}" for r, why in zip(rows.iter_rows(named=True), reasons))
    return (f'<p class="note">{rows.height} consensus feature(s) with a library match at {at} are not accepted for a '
            f"reason of their own: {esc(said)}.</p>")
