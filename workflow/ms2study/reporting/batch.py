"""The report's "Batch, blanks and drift" section: what the correct stage did to the feature matrix and whether it
helped.

Reads the correct stage's record (``results/study/correction.json``: drift_method, note, counts, medians of the QC
relative standard deviation before and after, warnings) and the corrected matrix
(``results/study/feature_matrix_corrected.parquet``: key columns, the flag columns blank_ratio, blank_flag,
qc_rsd_before, qc_rsd_after, qc_rsd_held_out, qc_rsd_predicted, qc_rsd_flag, n_filled, compound_group, adduct,
group_representative, excluded, then one column per run of the sheet), beside the linked raw matrix
(``feature_matrix.parquet``). Sample columns are taken by the sheet's ids, never by position. Shows the runs by type and
batch (QCs and blanks apart from the samples), the drift method and its note (a study without pooled QCs says plainly
that drift was not corrected from QCs), the flagged and filled counts, the QC RSD before and after (distribution and
median; ``reporting.qcrsd``), the QCs' intensity against injection order before and after (three example features and
the median over features), a PCA of the samples and QCs before and after correction coloured by batch, and the flagged
features in a sortable table. A QC-based correction is fitted to the pooled QCs, so what the section measures on them
after correction (QC RSD, the QCs' drift chart and their cluster in the PCA) is said to be in-sample, with the method
``auto`` chose and why; the correct stage's notes on its fits are given with their share of the feature-batch pairs or
features and what happened to those features. May import ``ms2study.core``, ``ms2study.io``, ``ms2study.correction``
(its QC limits) and the other ``reporting`` modules.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from ms2study.correction.drift import LINE_MIN_QC, SPLINE_MIN_QC
from ms2study.io.samplesheet import sample_roles
from ms2study.reporting.batchonly import batch_only_counts, batch_only_part
from ms2study.reporting.charts import batch_scatter_figure, figure_html
from ms2study.reporting.html import QUALITY, Caution, esc, html_table
from ms2study.reporting.maps import standardised
from ms2study.reporting.qcfits import fit_note, fits_part
from ms2study.reporting.qcrsd import (
    BASIS,
    QC_DRIFT_METHODS,
    blank_exclusion_caution,
    exclusion_caution,
    fewest_per_batch,
    rsd_part,
    rt_spread_part,
    rt_spread_warning,
)
from ms2study.reporting.samplespread import aligned_log2, sample_effects_part
from ms2study.reporting.shift import amount_outliers, amount_text
from ms2study.reporting.tables import interactive_table, marked_features_table

N_EXAMPLES = 3  # example features drawn against injection order
MAX_FLAGGED_ROWS = 2000  # flagged features listed (worst QC RSD first)
MIN_COMPLETE = 10  # features detected in every run a PCA needs before it falls back to imputation
FLAG_COLUMNS = {"consensus_id": "consensus feature", "mz": "m/z", "rt_s": "RT (s)", "blank_ratio": "sample / blank",
                "blank_flag": "blank flag", "n_blank_detected": "blanks detecting it",
                "qc_rsd_before": "QC RSD before", "qc_rsd_after": "QC RSD after",
                "qc_rsd_predicted": "QC RSD predicted", "qc_rsd_held_out": "QC RSD held out",
                "qc_rsd_flag": "QC RSD flag", "n_filled": "filled values", "adduct": "adduct",
                "compound_group": "compound group"}


def read_correction(path: Path | None, warnings: list[str]) -> dict[str, Any] | None:
    """The correct stage's record (``correction.json``) as a dict, or None when no path is given; a named file that
    is absent or unreadable is a warning (and None)."""
    if path is None:
        return None
    if not Path(path).exists():
        warnings.append(f"the batch-correction record <code>{esc(Path(path).name)}</code> is missing (run the "
                        "pipeline to the end)")
        return None
    try:
        record = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        warnings.append(f"the batch-correction record <code>{esc(Path(path).name)}</code> cannot be read: rerun "
                        "the correct stage")
        return None
    return record if isinstance(record, dict) else None


def runs_table(roles: pl.DataFrame) -> str:
    """Runs per batch and type with their injection orders, and the QC and blank runs named apart."""
    rows = []
    for batch in sorted(roles["batch"].unique().to_list()):
        part = roles.filter(pl.col("batch") == batch)
        counts = {k: int((part["sample_type"] == k).sum()) for k in ("sample", "qc", "blank")}
        orders = part["injection_order"].drop_nulls()
        span = f"{orders.min()}–{orders.max()}" if orders.len() else "not given"
        rows.append([batch, counts["sample"], counts["qc"], counts["blank"], span])
    parts = [html_table(["batch", "samples", "pooled QCs", "blanks", "injection orders"], rows, numeric={1, 2, 3})]
    for kind, label in (("qc", "Pooled QC runs"), ("blank", "Blank runs")):
        ids = roles.filter(pl.col("sample_type") == kind)["sample_id"].to_list()
        parts.append(f"<p>{label} ({len(ids)}): {esc(', '.join(ids)) if ids else 'none'}.</p>")
    return "".join(parts)


def qcs_per_batch(roles: pl.DataFrame) -> dict[str, int]:
    """Pooled QC runs per batch of the sheet, batches in order of first appearance."""
    counts: dict[str, int] = {}
    for batch, kind in zip(roles["batch"].cast(pl.Utf8).to_list(), roles["sample_type"].to_list()):
        counts[batch] = counts.get(batch, 0) + int(kind == "qc")
    return counts


def method_reason(method: str, counts: dict[str, int], requested: str | None) -> str:
    """Why a QC-based ``method`` was applied, as HTML: which method ``requested`` (``correct: drift_method``; None:
    not known) asked for and, for ``auto``, the QC runs per batch (``counts``) that chose it: the spline needs
    ``SPLINE_MIN_QC`` in every batch, a line ``LINE_MIN_QC``. Empty for another method or without QC runs."""
    if method not in QC_DRIFT_METHODS or not counts or not any(counts.values()):
        return ""
    fewest, where = fewest_per_batch(counts)
    several = where.startswith("batches")
    holds = (f"{esc(where)} hold{'' if several else 's'} only {fewest} pooled QC run{'s' * (fewest != 1)}"
             + (" each" if several else ""))
    limits = f"the smoothing spline (qc_spline) needs at least {SPLINE_MIN_QC} in every batch, a line {LINE_MIN_QC}"
    # the choice is explained only where the sheet's QC counts agree with it (a record of another sheet: not)
    if requested == "auto" and method == "qc_linear" and LINE_MIN_QC <= fewest < SPLINE_MIN_QC:
        return (f"<code>correct: drift_method</code> auto chose qc_linear (a straight line per feature and batch) "
                f"because {holds}: {limits}.")
    if requested == "auto" and method == "qc_spline" and fewest >= SPLINE_MIN_QC:
        return (f"<code>correct: drift_method</code> auto chose qc_spline: every batch holds at least "
                f"{SPLINE_MIN_QC} pooled QC runs (the fewest: {esc(where)}, {fewest}).")
    asked = f"{esc(method)} was asked for (<code>correct: drift_method</code>); " if requested == method else ""
    return f"{asked}The fewest pooled QC runs in a batch: {fewest} ({esc(where)}); {limits}."


def _drift_text(record: dict, n_qc: int, warnings: list[str], acquisition: bool = True,
                reason: str = "") -> str:
    """The drift method with its note, said once: when drift was not corrected from pooled QCs, the plain statement
    leads the note (which says why and what was done instead) or, without a note, gives the reason and the method's
    effect itself. That is also a warning when the sheet describes the acquisition (QC runs, more than one batch, or
    injection orders: ``acquisition``), and only a statement in the section for a plain study without any of them.
    ``reason`` (HTML, ``method_reason``) says why a QC-based method was applied."""
    method = str(record.get("drift_method", "unknown"))
    note = str(record.get("note") or "")
    if method in QC_DRIFT_METHODS:
        return f"<p>Drift correction: <b>{esc(method)}</b>. {reason + ' ' if reason else ''}{esc(note)}</p>"
    reason = ("the study has no pooled QC runs (sample_type qc in the sample sheet)" if n_qc == 0 else
              f"the study has {n_qc} pooled QC runs, but drift_method is {method}")
    if note:
        said = esc(note)
    else:
        fallback = {"median": "each run was scaled to the median intensity of the runs (median normalisation), which "
                              "evens out overall intensity but not feature-specific drift",
                    "none": "intensities are left as measured"}.get(method, f"method '{method}' was used")
        said = (f"{esc(reason)}; {esc(fallback)}. Intensity drift with injection order and batch offsets may remain "
                "in the matrix the models use.")
    text = f"<p>Drift correction: <b>{esc(method)}</b>. <b>Drift was not corrected from pooled QCs</b>: {said}</p>"
    # the note's first sentence says why (the whole note is in the section)
    why = reason if n_qc == 0 or not note else note.split(". ")[0]
    if acquisition:
        warnings.append(f"drift was <b>not corrected from pooled QCs</b> (drift method {esc(method)}; {esc(why)}): "
                        "check the batch section before reading group differences")
    return text


def counts_table(record: dict, corrected: pl.DataFrame | None, exclude_flagged: bool = True) -> str:
    """The flagged, filled and grouped counts of the correction (from the record; the flagged count from the
    corrected matrix, left out of models and tests only when ``exclude_flagged``, ``correct: exclude_flagged``)."""
    n_features = record.get("n_features", corrected.height if corrected is not None else None)
    excluded = (int(corrected["excluded"].fill_null(False).sum()) if corrected is not None
                and "excluded" in corrected.columns else None)
    share = record.get("filled_share")
    standards = record.get("internal_standards") or []
    names = ", ".join(str(s.get("name", s)) if isinstance(s, dict) else str(s) for s in standards)
    rows = [["consensus features", n_features], ["flagged by the blank filter", record.get("n_blank_flagged")],
            ["flagged by the QC RSD threshold", record.get("n_qc_rsd_flagged") if not record.get("n_qc_rsd_unassessed")
             else f"{record.get('n_qc_rsd_flagged')} ({record['n_qc_rsd_unassessed']} not judged: too few QC values)"],
            ["flagged in all (excluded column)", excluded],
            ["apex RT wandering over the samples (RT spread flag; not a reason to leave out)",
             record.get("n_rt_sd_flagged")],
            ["detected in one batch only (a mark; kept)", batch_only_counts(record)],
            ["left out of models and tests", (excluded if exclude_flagged else
                                              ("html", "0 (<code>correct: exclude_flagged</code> is false)"))],
            ["filled values (gap filling)", record.get("n_filled")],
            ["filled share of the matrix cells", ("html", f"{float(share):.1%}") if isinstance(share, (int, float))
             else None],
            ["compound groups (adducts, isotopes)", record.get("n_compound_groups")],
            ["features in adduct groups", record.get("n_features_in_adduct_groups")],
            ["internal standards", names or "none"]]
    return html_table(["", ""], [[k, "NA" if v is None else v] for k, v in rows], numeric={1})


def drift_part(raw: pl.DataFrame, corrected: pl.DataFrame, roles: pl.DataFrame, method: str | None = None) -> str:
    """The QCs' log2 intensity against injection order, before (open) and after (filled) correction, coloured by
    batch: the median over the features detected in every QC (each centred on its QC median) and three example
    features (high, middle and low QC intensity). After a QC-based ``method`` the QCs are flat by construction:
    said."""
    qcs = roles.filter(pl.col("sample_type") == "qc")
    runs = [r for r in qcs["sample_id"].to_list() if r in raw.columns and r in corrected.columns]
    if len(runs) < 2:
        return "<p>Intensity against injection order: fewer than two pooled QC runs, nothing to draw.</p>"
    qcs = qcs.filter(pl.col("sample_id").is_in(runs))
    orders = qcs["injection_order"]
    sheet_order = orders.null_count() > 0
    position = {sid: i + 1 for i, sid in enumerate(roles["sample_id"].to_list())}
    x = (np.array([position[r] for r in runs], dtype=np.float64) if sheet_order
         else orders.cast(pl.Float64).to_numpy())
    xlabel = "position in the sample sheet (no injection_order)" if sheet_order else "injection order"
    batches = qcs["batch"].to_list()
    ids, before, after = aligned_log2(raw, corrected, runs)
    complete = np.isfinite(before).all(axis=1) & np.isfinite(after).all(axis=1)
    if not complete.any():
        return "<p>Intensity against injection order: no feature is detected in every pooled QC run.</p>"
    charts = []

    def chart(y_before: np.ndarray, y_after: np.ndarray, title: str, ylabel: str) -> str:
        hover = [f"{r} (batch {b}, {xlabel} {int(v)})" for r, b, v in zip(runs, batches, x)]
        fig = batch_scatter_figure(np.concatenate([x, x]), np.concatenate([y_before, y_after]), batches * 2,
                                   ["before"] * len(runs) + ["after"] * len(runs), hover * 2, title, xlabel, ylabel,
                                   {"before": "circle-open", "after": "circle"})
        return figure_html(fig)

    centred_before = before[complete] - np.median(before[complete], axis=1, keepdims=True)
    centred_after = after[complete] - np.median(after[complete], axis=1, keepdims=True)
    charts.append(chart(np.median(centred_before, axis=0), np.median(centred_after, axis=0),
                        f"QCs: median over {int(complete.sum())} features", "log2 intensity / feature's QC median"))
    rows = np.flatnonzero(complete)
    level = np.median(before[rows], axis=1)
    ranked = rows[np.argsort(-level, kind="stable")]
    picks = list(dict.fromkeys(ranked[int(q * (len(ranked) - 1))] for q in (0.1, 0.5, 0.9)))[:N_EXAMPLES]
    for row in picks:
        charts.append(chart(before[row], after[row], f"QCs: feature {ids[row]}", "log2 intensity"))
    return ('<p class="note">Pooled QC runs only, before (open circles) and after (filled) correction, coloured by '
            "batch. The first chart is the median over the features detected in every QC run, each centred on its "
            "own QC median, so a flat line means no drift left; the others are three example features, picked by "
            "their QC intensity (high, middle, low) among those, not by how well they were corrected."
            + (f" The {esc(method)} correction was fitted to these QCs, so after it they lie flat largely by "
               "construction: the charts show the drift it removed, not how well it corrected the study samples."
               if method in QC_DRIFT_METHODS else "") + "</p>"
            + '<div class="charts">' + "".join(charts) + "</div>")


def pca_coordinates(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, str]:
    """2-D PCA (scikit-learn) of runs × features log2 intensities (NaN: no value; the corrected matrix's gap-filled
    values count as values, so "after" covers more features than "before"): (coordinates, explained variance ratios,
    how the features were chosen). The features with a value in every run are used when there are at least
    ``MIN_COMPLETE``; otherwise those with a value in at least half the runs, each missing value filled with half
    that feature's smallest value. Features are centred and scaled to unit variance."""
    from sklearn.decomposition import PCA

    complete = np.isfinite(values).all(axis=0)
    if complete.sum() >= MIN_COMPLETE:
        X = values[:, complete]
        how = f"the {int(complete.sum())} features with a value (detected or gap-filled) in every run"
    else:
        common = np.isfinite(values).mean(axis=0) >= 0.5
        X = values[:, common]
        with np.errstate(all="ignore"):
            floor = np.nanmin(X, axis=0) - 1.0  # log2 of half the smallest value
        X = np.where(np.isfinite(X), X, floor)
        how = (f"the {int(common.sum())} features with a value in at least half the runs (only {int(complete.sum())} "
               "in every run), a missing value filled with half the feature's smallest value")
    X = standardised(X)
    if X.shape[1] < 2 or X.shape[0] < 3:
        return np.zeros((values.shape[0], 2)), np.zeros(2), how
    pca = PCA(n_components=2, random_state=0).fit(X)
    return pca.transform(X), pca.explained_variance_ratio_, how


def pca_part(raw: pl.DataFrame, corrected: pl.DataFrame, roles: pl.DataFrame, method: str | None = None) -> str:
    """PCA of the samples and pooled QCs (blanks left out) before and after correction, coloured by batch, QCs as
    diamonds; after a QC-based ``method`` the QCs' cluster is said to be no independent check."""
    runs_frame = roles.filter(pl.col("sample_type").is_in(["sample", "qc"]) & pl.col("sample_id").is_in(
        [c for c in raw.columns if c in corrected.columns]))
    runs = runs_frame["sample_id"].to_list()
    if len(runs) < 3:
        return "<p>PCA: fewer than three samples and QCs in both matrices.</p>"
    _, before, after = aligned_log2(raw, corrected, runs)
    kinds = ["QC" if k == "qc" else "sample" for k in runs_frame["sample_type"].to_list()]
    batches = runs_frame["batch"].to_list()
    hover = [f"{r} ({k}, batch {b}, injection {o if o is not None else 'NA'})" for r, k, b, o in
             zip(runs, kinds, batches, runs_frame["injection_order"].to_list())]
    charts, notes = [], []
    for label, values in (("before", before), ("after", after)):
        xy, explained, how = pca_coordinates(values.T)
        notes.append(f"{label}: {how}")
        fig = batch_scatter_figure(xy[:, 0], xy[:, 1], batches, kinds, hover,
                                   f"PCA of samples and QCs, {label} correction",
                                   f"PC1 ({explained[0]:.0%})", f"PC2 ({explained[1]:.0%})",
                                   {"sample": "circle", "QC": "diamond"})
        charts.append(figure_html(fig))
    return ('<p class="note">Principal components (scikit-learn PCA) of the log2 intensities of the samples and pooled '
            "QCs (blanks left out), each feature centred and scaled to unit variance; coloured by batch, QCs drawn "
            "as diamonds. After a good correction the study samples' batches overlap. "
            + ("The QCs cluster tightly after it too, but the correction was fitted to them, so their cluster is not "
               "an independent check: judge it by the study samples. " if method in QC_DRIFT_METHODS else
               "The QCs should cluster tightly. ") + "Features used: "
            f"{esc('; '.join(notes))}.</p>" + '<div class="charts">' + "".join(charts) + "</div>")


def flagged_table(corrected: pl.DataFrame, exclude_flagged: bool = True, basis: str = "in_sample") -> str:
    """The features flagged by the blank filter or the QC RSD threshold, worst first by the QC RSD the flag read
    (``basis``: correction.json ``qc_rsd_basis``)."""
    if "excluded" not in corrected.columns:
        return ""
    flagged = corrected.filter(pl.col("excluded").fill_null(False))
    if flagged.height == 0:
        return "<p>No feature is flagged by the blank filter or the QC RSD threshold.</p>"  # not the RT spread flag
    shown = [c for c in FLAG_COLUMNS if c in flagged.columns and not (c.startswith("qc_rsd_") and
                                                                      flagged[c].is_null().all())]
    rows = flagged.select(shown)
    key = next((c for c in (BASIS.get(basis, BASIS["in_sample"])[0], "qc_rsd_after") if c in shown), None)
    if key:
        rows = rows.sort(key, descending=True, nulls_last=True)
    more = f" (the first {MAX_FLAGGED_ROWS} of {rows.height})" if rows.height > MAX_FLAGGED_ROWS else ""
    rows = rows.head(MAX_FLAGGED_ROWS)
    bools = [c for c in ("blank_flag", "qc_rsd_flag") if c in shown]
    rows = rows.with_columns([pl.when(pl.col(c).fill_null(False)).then(pl.lit("yes")).otherwise(pl.lit(""))
                              .alias(c) for c in bools]).rename({c: FLAG_COLUMNS[c] for c in shown})
    order = [(FLAG_COLUMNS[key], "desc")] if key else []
    use = ("Left out of the outcome models, differential tests and pooling (<code>correct: exclude_flagged</code> "
           "is true, the default)" if exclude_flagged else "Kept in the outcome models, differential tests and "
           "pooling: <code>correct: exclude_flagged</code> is false")
    return (f"<h3>Flagged features{more}</h3><p class=\"note\">{use}; still in the matrices.</p>"
            + interactive_table(rows, "batch-flagged-table", order=order))


def rt_spread_table(corrected: pl.DataFrame) -> str:
    """The features with the RT spread flag (``rt_sd_flag``; kept in the models and tests), widest spread first,
    with their adduct label and whether another flag leaves them out; empty when none is flagged."""
    if "rt_sd_flag" not in corrected.columns:
        return ""
    flagged = corrected.filter(pl.col("rt_sd_flag").fill_null(False)).sort("rt_sd_s", descending=True)
    if flagged.height == 0:
        return ""
    more = f" (the first {MAX_FLAGGED_ROWS} of {flagged.height})" if flagged.height > MAX_FLAGGED_ROWS else ""
    columns = {"consensus_id": "consensus feature", "mz": "m/z", "rt_s": "RT (s)", "rt_sd_s": "RT sd over samples (s)",
               "n_detected": "runs detecting it", "adduct": "adduct", "excluded": "left out by another flag"}
    return (f"<h3>Features whose apex RT wanders over the samples{more}</h3><p class=\"note\">Kept in the models and "
            "tests; each may sum two co-eluting ions (see the RT spread above).</p>"
            + marked_features_table(flagged.head(MAX_FLAGGED_ROWS), columns, "batch-rt-spread-table", "rt_sd_s"))


def batch_section(correction_path: Path | None, corrected_path: Path | None, raw: pl.DataFrame | None,
                  sheet: pl.DataFrame, params: dict, warnings: list[str], tested: dict | None = None) -> str:
    """The "Batch, blanks and drift" section from the correct stage's record and corrected matrix (either may be
    absent: the section says so) and the raw matrix. ``params``: the report's parameters (``config_used`` gives
    ``correct: qc_rsd_max``, default 0.3, and ``drift_method``, default auto: the method asked for, which the
    section names with why a QC-based one was applied). Warnings of the record (its notes on the QC fits with their
    share, ``fit_note``, and on each outcome's ``tested`` features, ``tested_share``) and a drift not corrected from
    QCs are appended to ``warnings``."""
    roles = sample_roles(sheet)
    parts = [runs_table(roles)]
    if correction_path is None and corrected_path is None:
        return "".join(parts) + ("<p>No batch-correction outputs were passed to the report (<code>--correction</code>, "
                                 "<code>--corrected-matrix</code>).</p>")
    record = read_correction(correction_path, warnings) or {}
    corrected = None
    if corrected_path is not None and not Path(corrected_path).exists():
        warnings.append(f"the corrected feature matrix <code>{esc(Path(corrected_path).name)}</code> is missing")
    elif corrected_path is not None:
        corrected = pl.read_parquet(corrected_path)
    n_qc = int(record.get("n_qc", int((roles["sample_type"] == "qc").sum())))
    acquisition = bool(n_qc) or roles["batch"].n_unique() > 1 or roles["injection_order"].is_not_null().any()
    config = params.get("config_used")
    correct = ((config or {}).get("correct") or {})
    # the method asked for: the stage's default (auto) under a config that names none; unknown without a config
    requested = str(correct.get("drift_method", "auto")) if isinstance(config, dict) else None
    counts = qcs_per_batch(roles)
    method = str(record.get("drift_method")) if record else None
    if record:
        reason = method_reason(str(method), counts, requested)
        parts.append(_drift_text(record, n_qc, warnings, acquisition, reason))
        if record.get("n_subjects_normalised_within"):  # correction.normalise: paired designs, replicate injections
            parts.append(f"<p>The run-level normalisation aligned the runs of each of the "
                         f"{int(record['n_subjects_normalised_within'])} subjects with several runs (sample sheet's "
                         "<code>subject_id</code>) with one another before the subjects with each other, so that "
                         "compounds changing between a subject's runs do not shift that subject's other compounds."
                         "</p>")
        far = amount_outliers(record)
        if far:  # named beside the findings: imputation turns a dilute run into a shift (a trial's 1/10 re-injection)
            warnings.append(Caution(
                f"{amount_text(far)} (the run-level normalisation's factors): such a run, e.g. a re-injection with "
                "little material, keeps its detected features' levels after normalisation, but the features it "
                "missed are filled as below detection, which tilts the tests and models; check its injection, and "
                "remove its row from samples.tsv if it failed (only the study-level jobs rerun)",
                QUALITY, "run with far less material", ("differential", "models")))
    exclude = bool(correct.get("exclude_flagged", True))
    if record:
        parts.append(fits_part(record))
        for text in record.get("warnings") or []:
            warnings.append(f"batch correction: {fit_note(str(text), record, corrected, tested) or esc(text)}")
    threshold = float(correct.get("qc_rsd_max", 0.3))
    parts.append(counts_table(record, corrected, exclude))
    study_samples = roles.filter(pl.col("sample_type") == "sample")["sample_id"].to_list()
    blank_runs = roles.filter(pl.col("sample_type") == "blank")["sample_id"].to_list()
    for caution in (exclusion_caution(record, corrected, raw, study_samples, exclude, threshold),
                    blank_exclusion_caution(record, raw, blank_runs, study_samples, exclude),
                    rt_spread_warning(record)):
        if caution is not None:
            warnings.append(caution)
    parts.append(rsd_part(corrected, record, threshold, counts))
    parts.append(rt_spread_part(record, float(correct.get("rt_sd_ratio", 3.0))))
    if corrected is not None and raw is not None:
        parts.append(drift_part(raw, corrected, roles, method))
        parts.append(sample_effects_part(raw, corrected, roles, warnings))
        parts.append(pca_part(raw, corrected, roles, method))
    if corrected is not None:
        parts.append(flagged_table(corrected, exclude, str(record.get("qc_rsd_basis") or "in_sample")))
        parts.append(rt_spread_table(corrected))
        parts.append(batch_only_part(corrected))
    return "".join(parts)
