"""The report's study-wide sections: overview, per-sample results, identifications, encoder, feature matrix and
software; pooled QCs and blanks (sheet ``sample_type``) are listed apart from the samples. Each function returns
the section's HTML body and appends plain warnings (HTML, user text escaped) to the list it is given. The
per-outcome sections (models, what differs) are in ``reporting.outcomes``, the batch section in
``reporting.batch``. May import ``ms2study.core``, ``ms2study.io`` and the other ``reporting`` modules.
"""

from __future__ import annotations

import functools
import json
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

import ms2study
from ms2study import __version__
from ms2study.identification.unmapped import unmapped_names, unmapped_sentence
from ms2study.io.samplesheet import sample_roles
from ms2study.reporting import marks
from ms2study.reporting.cautions import library_isomers
from ms2study.reporting.charts import bar_figure, figure_html
from ms2study.reporting.html import DOUBT, QUALITY, Caution, esc, html_table, q_cell, run_table, warning_box
from ms2study.reporting.tables import class_path, interactive_table
from ms2study.reporting.unaccepted import (best_unaccepted_section, fixed_decimals as _fixed, in_source_withdrawn,
                                           set_apart, set_apart_note)

# the declared dependencies that shape the results (pyproject.toml); pyarrow is not one of them
PACKAGES = ["ms2study", "polars", "numpy", "scikit-learn", "scipy", "torch", "pyopenms", "numba", "snakemake",
            "rdkit", "plotly", "itables"]

CONFIDENCE_TEXT = (
    "q-values come from an empirical null measured on the library itself (<code>ms2study calibrate-library</code>): "
    "library spectra were searched with every spectrum of their own structure removed, which is what a compound "
    "absent from the library looks like, and the scores of the wrong candidates were kept. A hit's p-value is the "
    "chance that the best of its n candidate structures scores as high if all of them are of a wrong formula; "
    "Benjamini-Hochberg, times Storey's estimate of the share of wrong hits among the p-values (near 1 where most "
    "spectra are unknowns), turns p-values into q-values. So q bounds the share of names whose formula is wrong: "
    "an isomer of the compound (same formula, often a near-identical spectrum) scores as a right match, and only "
    "the level says whether the structure itself is supported. A level-3 name reads 'this compound or an isomer'; "
    "its isomer list holds the library's isomers that scored, and an isomer absent from the library may be the "
    "true compound (in a test of 40 held-out MassBank spectra of library structures and 40 of structures "
    "absent from the library but with a candidate at their mass, mostly isomers: of 44 names accepted at q 0.01, "
    "14 were such isomers, all at level 3, and 1 had a wrong formula). Levels are those of Schymanski et al. (2014, Environ. Sci. Technol. 48:2097) "
    "for high-resolution MS (column msi_level), not the Metabolomics Standards Initiative's of Sumner et al. (2007), "
    "on which any library match is level 2. Level 2 (probable structure) is given only when the structure itself, "
    "not only the formula, is right at the FDR (column structure_q_value): a model learned on the library's own "
    "searches (right structure present against removed) weighs the scores, the gap to the best isomer and how well "
    "the library's isomers of that formula separate, and the share of right structures is estimated over the "
    "study's features (with a library too small for that model: the null of wrong structures and an isomer margin "
    "learned on the library). Otherwise level 3 (tentative: isomers are plausible), with the isomers named. "
    "Whether these q-values hold is measured by <code>benchmarks/fdr_calibration.py</code> on held-out MassBank "
    "structures."
)
# Above this annotate: fdr the report says what a looser cut costs on a realistic study (benchmarks/measured/
# study_truth_session19.json, identifications_q_0.01_to_0.05: 68 of 91 names the wrong structure).
LOOSE_FDR = 0.01


ROLE_TITLES = {"sample": "Samples", "qc": "Pooled QC runs", "blank": "Blank runs"}


def run_roles(sheet: pl.DataFrame) -> dict[str, str]:
    """Each run's sample_type (sample, qc or blank; ``io.samplesheet.sample_roles``) by sample id."""
    roles = sample_roles(sheet)
    return dict(zip(roles["sample_id"].to_list(), roles["sample_type"].to_list()))


def _apart(ids: list[str], roles: dict[str, str] | None) -> list[tuple[str | None, list[int]]]:
    """Row indices grouped by role (samples, then QCs, then blanks) with a heading each, or one untitled group when
    every run is a sample."""
    kinds = [(roles or {}).get(s, "sample") for s in ids]
    if all(k == "sample" for k in kinds):
        return [(None, list(range(len(ids))))]
    return [(f"{ROLE_TITLES[k]} ({kinds.count(k)})", [i for i, x in enumerate(kinds) if x == k])
            for k in ROLE_TITLES if k in kinds]


def overview_section(sheet: pl.DataFrame, sheet_label: str) -> str:
    """The sample sheet as a table (every column but sample_id and file is shown as given); pooled QCs and blanks
    (``sample_type``) in tables of their own after the samples."""
    sample_ids = sheet["sample_id"].to_list()
    files = sheet["file"].to_list() if "file" in sheet.columns else [None] * len(sample_ids)
    outcome_columns = [c for c in sheet.columns if c not in ("sample_id", "file")]
    groups = _apart(sample_ids, run_roles(sheet))
    counts = "; ".join(f"{esc(title)}" for title, _ in groups if title)
    overview = [(f"<p><b>{len(sample_ids)}</b> {'runs (' + counts + ')' if counts else 'samples'}; sheet "
                 f"<code>{esc(sheet_label)}</code>; further columns: {esc(', '.join(outcome_columns)) or 'none'}.</p>")]
    for title, rows in groups:
        if title:
            overview.append(f"<h3>{esc(title)}</h3>")
        overview.append(run_table(["sample", "file", *outcome_columns], [[sample_ids[i], files[i], *[
            sheet[c][i] for c in outcome_columns]] for i in rows], f"sheet-{len(overview)}"))
    return "".join(overview)


def samples_section(stats: list[dict], warnings: list[str], roles: dict[str, str] | None = None) -> str:
    """One row of counts per sample (``collect.sample_stats``); samples without MS/MS, and study samples without a
    pooled embedding, are warnings (a pooled QC without one too, worded for a run that is not modelled). ``roles``
    (``run_roles``): pooled QCs and blanks get tables of their own; blanks without a pooled embedding (as a rule:
    none of their MS/MS maps to a feature) are listed in a note, not warned of: they never enter models or maps."""
    rows = []
    blanks: list[str] = []  # blank runs without a pooled embedding: expected, a note rather than a warning
    for s in stats:
        rows.append([s["sample_id"], s.get("features", "NA"), s.get("ms2_scans", "NA"), s.get("mapped_spectra", "NA"),
                     s.get("embedded", "NA"), s.get("annotated_spectra", "NA"), s.get("n_spectra_pooled", "NA")])
        if s.get("features") == 0:  # a fresh user's mzXML with one MS1 scan "finished" without a word
            warnings.append(f"run <b>{esc(s['sample_id'])}</b> has no features: detection found none (fewer than 3 "
                            "MS1 scans, no MS1 at all, or nothing above the noise threshold; its detect log, "
                            f"<code>logs/detect/{esc(s['sample_id'])}.log</code>, says which). It adds nothing to the "
                            "feature matrix and is left out of the differential tests and the models")
        role = (roles or {}).get(s["sample_id"], "sample")
        if s.get("ms2_scans") == 0 and role != "blank":  # a blank without MS/MS is as expected (a trial: a warning)
            warnings.append(f"{'pooled QC' if role == 'qc' else 'sample'} <b>{esc(s['sample_id'])}</b> has no MS/MS "
                            "scans")
        if "has_sample_embedding" in s and not s["has_sample_embedding"]:
            if role == "sample":
                warnings.append(f"sample <b>{esc(s['sample_id'])}</b> has no pooled embedding (no usable MS/MS): it "
                                "has missing values in the embedding models, never a zero vector")
            elif role == "qc":  # not modelled, but a pooled QC holds the study's compounds
                warnings.append(f"pooled QC <b>{esc(s['sample_id'])}</b> has no pooled embedding (no MS/MS mapped to "
                                "a feature): QCs are not modelled, but check its acquisition")
            else:
                blanks.append(s["sample_id"])
    header = ["sample", "features", "MS2 scans", "mapped spectra", "embedded spectra", "annotated spectra",
              "spectra pooled"]
    parts = []
    for title, indices in _apart([s["sample_id"] for s in stats], roles):
        if title:
            parts.append(f"<h3>{esc(title)}</h3>")
        parts.append(run_table(header, [rows[i] for i in indices], f"runs-{len(parts)}", numeric={1, 2, 3, 4, 5, 6}))
    if blanks:
        parts.append(f'<p class="note">{len(blanks)} blank run(s) without a pooled embedding, as expected (none of '
                     f"their MS/MS maps to a feature): {esc(', '.join(blanks))}. Blanks are never modelled or mapped."
                     "</p>")
    return "".join(parts)


def identifications_section(annotations: pl.DataFrame, ident: pl.DataFrame | None, sample_ids: list[str],
                            params: dict, warnings: list[str], p_floor: float | None = None) -> str:
    """Identification section: per-sample counts from the rank-1 annotations (accepted at the FDR when they carry
    q-values, else cosine ≥ ``params["min_cosine"]``), compounds per consensus feature from identifications.parquet
    (all accepted, sortable) or, without q-values, the top ``params["top_compounds"]`` study-wide compounds from the
    annotations. ``p_floor``: the smallest p-value the library's calibration can give, when above the FDR."""
    if annotations.is_empty() or "cosine" not in annotations.columns:
        return ("<p>No library annotations: no library is configured, no run has MS/MS spectra (the Samples table "
                "counts each run's MS2 scans), or no spectrum had a library candidate of its precursor m/z and "
                "polarity.</p>")
    with_q = ("q_value" in annotations.columns and "accepted" in annotations.columns
              and annotations["q_value"].fill_nan(None).drop_nulls().len() > 0)
    fdr = ((params.get("config_used") or {}).get("annotate") or {}).get("fdr")
    at = f"q ≤ {float(fdr):g}" if isinstance(fdr, (int, float)) else "q ≤ the configured <code>annotate: fdr</code>"
    if with_q:
        hits = annotations.filter(pl.col("accepted").fill_null(False))
        intro = (f"<p>Identifications are rank-1 library hits accepted at a false discovery rate: {at} "
                 f"({hits.height} of {annotations.height} rank-1 spectrum hits). {CONFIDENCE_TEXT} Cosine is shown "
                 "for reference; a high cosine alone is not an identification.</p>")
        if isinstance(fdr, (int, float)) and float(fdr) > LOOSE_FDR:
            intro += (f'<p class="note">Accepted above q 0.01 (<code>annotate: fdr: {float(fdr):g}</code>): the '
                      "q-values hold on library spectra, but a study's features also include in-source fragments, "
                      "adducts and isomers absent from the library, which the study's checks catch only in part. On "
                      "two realistic simulated batch studies (benchmarks/study_truth.py; benchmarks/README.md), "
                      "q ≤ 0.05 gave 238 and 243 names against 160 and 189 at q ≤ 0.01; 2.5 % and 4.1 % of them "
                      "were wrong (0 and 1.1 % at 0.01), and a further 24 % and 19 % named a compound of the right "
                      "formula but another structure at level 3, mostly isomers absent from the library "
                      "(config/README.md, <code>fdr</code>).</p>")
            # in Warnings too, so that the findings' "(q ≤ 0.05)" links to it (a trial found it only in this section)
            warnings.append(Caution(
                f"identifications are accepted at <code>annotate: fdr: {float(fdr):g}</code>, above the default 0.01: "
                "on realistic simulated studies 2.5-4.1 % of the names accepted at q ≤ 0.05 were wrong (0-1.1 % at "
                "0.01), and 19-24 % more named an isomer of the compound at level 3; read the names with q above 0.01 "
                "as candidates. Level 2 is given at the same FDR, so names that were level 3 at 0.01 can be level 2 "
                "here (the Identifications section says more)", DOUBT, "names accepted above q 0.01",
                ("identifications",)))
        low = hits.filter(pl.col("cosine") < 0.3) if "cosine" in hits.columns else hits.clear()
        if low.height:
            resting = (int(marks.other_evidence(ident.filter(pl.col("accepted").fill_null(False))).is_not_null()
                           .sum()) if ident is not None and "evidence_note" in ident.columns else None)
            where = ("" if resting is None else
                     f"; {resting} of the study's identified consensus features rest on such spectra alone (column "
                     "'why accepted (cosine &lt; 0.3)' of the compound table)" if resting else
                     "; none of the study's identified consensus features rests on them alone (each has a spectrum "
                     "with cosine 0.3 or more)")
            warnings.append(Caution(
                f"{low.height} accepted spectrum {'hit has' if low.height == 1 else 'hits have'} cosine &lt; 0.3: "
                "they passed on the combined score (entropy "
                "and embedding agreement with the library spectrum), not on peak-by-peak cosine (spectrum by "
                f"spectrum: annotations.parquet, column evidence_note){where}", QUALITY,
                "accepted hits with low cosine" if resting or resting is None else "",
                ("identifications",) if resting or resting is None else ()))
    else:
        threshold = float(params["min_cosine"])
        hits = annotations.filter(pl.col("cosine") >= threshold)
        intro = (f"<p>No q-values in the annotations (<code>annotate: confidence: none</code>), so rank-1 library "
                 f"hits with cosine ≥ {threshold:g} are listed ({hits.height} of {annotations.height} rank-1 hits); "
                 "their error rate is unknown.</p>")
        warnings.append(Caution("identifications have <b>no q-values</b> (annotate confidence: none): their error "
                                "rate is unknown", DOUBT, "identifications without q-values",
                                ("identifications", "differential")))
    said = unmapped_sentence(unmapped_names(annotations, ident), html=True) if with_q else None
    if said:  # accepted names on scans that map to no feature: not in the compound table (a TripleTOF trial)
        warnings.append(Caution(said, QUALITY, "accepted names without a feature", ("identifications",)))
    key = "library_inchikey" if "library_inchikey" in hits.columns else "library_name"
    aggregations = [pl.col("spectrum_id").n_unique().alias("spectra"), pl.col(key).n_unique().alias("compounds"),
                    pl.col("cosine").max().alias("best")]
    if with_q:
        aggregations.append(pl.col("q_value").min().alias("q"))
    per_sample = {r["sample_id"]: r for r in hits.group_by("sample_id").agg(aggregations).iter_rows(named=True)}
    header = ["sample", "identified spectra", "distinct compounds", "best cosine"] + (["lowest q"] if with_q else [])
    rows = []
    for s in sample_ids:
        r = per_sample.get(s, {})
        rows.append([s, r.get("spectra", 0), r.get("compounds", 0), r.get("best")]
                    + ([q_cell(r.get("q"))] if with_q else []))
    parts = [intro, html_table(header, rows, numeric=set(range(1, len(header))))]
    if ident is not None and ident.height and with_q:
        parts.append(_consensus_compounds(ident, params, at, fdr if isinstance(fdr, (int, float)) else None, p_floor))
    elif hits.height:
        compounds = hits.group_by(key).agg(
            pl.col("library_name").first().alias("name"), pl.col("sample_id").n_unique().alias("samples"),
            pl.col("spectrum_id").n_unique().alias("spectra"), pl.col("cosine").max().alias("best"),
            pl.col("cosine").median().alias("median")).sort(["samples", "best"], descending=True).head(
            int(params["top_compounds"]))
        parts.append(f"<h3>Study-wide compounds (top {int(params['top_compounds'])})</h3>")
        header = ["compound", "InChIKey" if key == "library_inchikey" else "name", "samples", "spectra",
                  "best cosine", "median cosine"]
        parts.append(html_table(header, [[r["name"], r[key], r["samples"], r["spectra"], r["best"], r["median"]]
                                         for r in compounds.iter_rows(named=True)], numeric={2, 3, 4, 5}))
    return "".join(parts)


# identifications.parquet columns shown only where some accepted feature has them (report header: column)
FLAG_COLUMNS = {"why accepted (cosine < 0.3)": "evidence_note", "in-source fragment of m/z?": "in_source_of_mz",
                "r with that ion (samples)": "in_source_correlation"}


def _consensus_compounds(ident: pl.DataFrame, params: dict, at: str, fdr: float | None = None,
                         p_floor: float | None = None) -> str:
    """Every accepted identification of a consensus feature (identifications.parquet) in a sortable, filterable
    table, best first (Schymanski level, q, samples); then the features whose match passed ``fdr`` but was not
    accepted (the adduct check), with the reason, so none is dropped from the report in silence. With none accepted:
    the best unaccepted matches and why each was refused (``reporting.unaccepted``)."""
    acc = ident.filter(pl.col("accepted")).sort(["msi_level", "q_value", "n_samples"], descending=[False, False, True])
    if acc.is_empty():  # a trial's small library accepted nothing: show how close the best matches came, and why
        needed = ((params.get("config_used") or {}).get("annotate") or {}).get("min_matched_peaks", 1)
        return best_unaccepted_section(ident, fdr, at, p_floor, int(needed))
    # the marks beside the name (reporting.marks); evidence_note is then shown without its background mark
    beside = marks.mark_columns(acc)
    if "evidence_note" in acc.columns:
        acc = acc.with_columns(marks.other_evidence(acc))
    if {"in_source_correlation", "in_source_n_samples"} <= set(acc.columns):  # a trial: "r 1.0" over 3 samples
        acc = acc.with_columns(pl.format("{} ({})", pl.col("in_source_correlation").round(2),
                                         pl.col("in_source_n_samples")).alias("in_source_correlation"))
    n2, n3 = int((acc["msi_level"] == 2).sum()), int((acc["msi_level"] == 3).sum())
    parts = [("<h3>Compounds per consensus feature (sort by any column, filter with the search box)</h3>"
              f"<p>{acc.height} of {ident.height} consensus features with a library hit are identified at "
              f"{at}: {n2} at level 2 (probable structure), {n3} at level 3 (tentative: isomers plausible) of "
              "Schymanski et al. 2014. The spectra of a feature (all samples) vote for "
              "one compound; its p-value combines the spectra's p-values (Simes). 'samples' counts study "
              "samples; pooled-QC and blank runs are counted apart when the sheet has them (a compound found in "
              "blanks may be background or carry-over); 'runs' names the runs with a supporting spectrum (the "
              "first five).</p>")]
    unseen = int(((acc["msi_level"] == 3) & (library_isomers(acc) <= 1)).sum())
    if unseen:
        parts.append(f"<p>{unseen} of the level-3 features have no other structure of their formula among "
                     "their candidates that could be identified (the library may hold isomers sharing too few "
                     "peaks): they are level 3 because the evidence for their structure, as measured on the "
                     "library's own searches, does not rule out an isomer at this FDR, including isomers absent from "
                     "the library. Their "
                     "isomer column says so.</p>")
    best = acc.filter(pl.col("structure_q_value").is_not_null()).sort("structure_q_value").head(1) \
        if "structure_q_value" in acc.columns and fdr is not None and not n2 else pl.DataFrame()
    if best.height and best["structure_q_value"][0] > fdr:  # trial AX: level 3 everywhere, the nearest unsaid
        parts.append(f"<p>No name reaches level 2: the lowest structure q-value is {best['structure_q_value'][0]:.2g} "
                     f"({esc(best['name'][0])}), above the FDR {fdr:g}. It weighs the spectra's evidence for the "
                     "structure against the share of right structures estimated over the study's features (held low "
                     "when they are few), so even a spectrum matching one structure well may stay level 3 (column "
                     "structure_q_value of identifications.parquet).</p>")
    def isomers(r: dict) -> str:
        keys = [k for k in (r["isomer_inchikeys"] or []) if k]
        if r["msi_level"] != 3:
            return r["inchikey"] or ""
        if len(keys) <= 1:
            return f"{r['inchikey'] or ''} (no isomer among its candidates; isomers not ruled out)"
        return ", ".join(keys)

    parts.extend(_same_name_sets(acc))
    marked = {c: int(acc[c].is_not_null().sum()) if c in acc.columns else 0 for c in FLAG_COLUMNS.values()}
    shown = pl.DataFrame({
        "consensus feature": acc["consensus_id"],
        **({"m/z": acc["mz"].round(4)} if "mz" in acc.columns and acc["mz"].is_not_null().any() else {}),
        **({"RT (s)": acc["rt_s"]} if "rt_s" in acc.columns and acc["rt_s"].is_not_null().any() else {}),
        "compound": acc["name"], **beside, "level (Schymanski)": acc["msi_level"],
        "InChIKey / isomers": [isomers(r) for r in acc.iter_rows(named=True)],
        "class": acc.select(class_path())["compound_class"], "samples": acc["n_samples"],
        **({"runs": [", ".join(r[:5]) + (f" +{len(r) - 5}" if len(r) > 5 else "") for r in acc["supporting_runs"]
                     .fill_null([]).to_list()]} if "supporting_runs" in acc.columns else {}),  # trial AW: which run?
        **({"QC runs": acc["n_qc_runs"]} if "n_qc_runs" in acc.columns and acc["n_qc_runs"].sum() else {}),
        **({"blank runs": acc["n_blank_runs"]} if "n_blank_runs" in acc.columns and acc["n_blank_runs"].sum() else {}),
        "spectra": acc["n_spectra"],
        "supporting": acc["n_supporting"], "best score": acc["best_score"], "best cosine": acc["best_cosine"],
        # a second fresh user's trial: a known unknown named with another formula at 12.8 ppm (TOF, 20 ppm window)
        # where the other names lay within 1 ppm; the error was nowhere to be seen
        **({"m/z error (ppm)": acc["precursor_error_ppm"].round(1)} if "precursor_error_ppm" in acc.columns
           and acc["precursor_error_ppm"].is_not_null().any() else {}),
        "q": acc["q_value"], **{label: acc[column] for label, column in FLAG_COLUMNS.items() if marked[column]}},
        strict=False)
    if marked["in_source_of_mz"]:
        parts.append(f"<p>{marked['in_source_of_mz']} accepted feature(s) may be in-source fragments: in half or "
                     "more of their spectra, a heavier precursor whose feature's apex lies within 1 s of theirs holds "
                     "the feature's m/z in its own MS/MS (co-elution and MS2 containment, as ISFrag, Guo et al. "
                     "2021, tests them; isotope, "
                     "adduct and dimer partners left out). The MS/MS of such an ion can match a library compound "
                     "(glycine from a glycine conjugate) while the compound in the sample is the heavier one: "
                     "column 'in-source fragment of m/z?' names the precursor to check. A mark is evidence, not "
                     "proof: right names of ions co-eluting by chance in a crowded chromatogram are marked too. "
                     "Marked names whose intensity followed the parent's across the samples were withdrawn (listed "
                     "below, when there are any); these did not follow it ('r with that ion (samples)': correlation "
                     "of log intensities over the study samples measuring both, raw feature matrix), or too few "
                     "samples "
                     "measured both. Not following is no proof either: on a simulated study one such name was an "
                     "in-source fragment of a glycine conjugate that was never fragmented; the mark named another "
                     "co-eluting ion (r 0.24). Names like it are withdrawn when a co-eluting feature one conjugate's "
                     "loss heavier follows them (listed below too).</p>")
    parts.extend(marks.mark_paragraphs(beside))
    if marked["evidence_note"]:
        parts.append(f"<p>{marked['evidence_note']} accepted feature(s) have no spectrum with cosine 0.3 or more: "
                     "they passed on the combined score (entropy, embedding, modified cosine), and the column 'why "
                     "accepted (cosine &lt; 0.3)' gives the scores of the spectrum each rests on. A low cosine with "
                     "high entropy or embedding agreement may be a noisy or chimeric spectrum of the right compound, "
                     "or a related compound (an isomer or analogue) that is not in the library: read these names as "
                     "tentative and check the spectra by eye.</p>")
    parts.append(interactive_table(shown, "identifications-table",
                                   order=[("level (Schymanski)", "asc"), ("q", "asc"), ("samples", "desc")]))
    if "m/z error (ppm)" in shown.columns:
        parts.append('<p class="note">m/z error: the median over the supporting spectra of (measured - library) '
                     "precursor m/z, in ppm. The q-value does not weigh it inside the precursor window; a name whose "
                     "error stands apart from the others' may be a compound of another formula.</p>")
    withdrawn = in_source_withdrawn(ident, fdr)
    if withdrawn:
        parts.extend(withdrawn)
    if fdr is not None and "adduct_note" in ident.columns:
        refused = ident.filter(~pl.col("accepted") & (pl.col("q_value") <= float(fdr))
                               & ~marks.withdrawn(ident.columns) & ~set_apart(ident.columns)).sort("q_value")
        parts.append(set_apart_note(ident, float(fdr), at))  # blank-only, or named on another part of its elution
        if refused.height:
            parts.append(warning_box(
                f"{refused.height} more consensus feature(s) have a library match at {at} that was not "
                "accepted, because the library spectrum's adduct contradicts the adduct the feature was grouped as "
                "(a co-eluting ion at an adduct's mass difference whose intensities co-vary with it across the runs "
                "both were measured in: a one-sided test of the correlation, corrected over the study's candidate "
                "pairs, at <code>correct: adduct_alpha</code>) or its compound group is identified as another "
                "compound. The table gives "
                "the evidence: the partner feature, the two adducts, and the correlation with the number of runs "
                "it was computed on (a high correlation over few runs is weak evidence). A chance pairing can veto "
                "a right match: check these by hand."))
            parts.append(html_table(
                ["consensus feature", "compound", "library adduct", "grouped as", "q", "best cosine",
                 "partner feature", "partner m/z", "partner RT (s)", "adduct relation", "correlation", "runs",
                 "reason"],
                [[r["consensus_id"], r["name"], r["adduct"], r["feature_adduct"], q_cell(r["q_value"]),
                  r["best_cosine"], r.get("adduct_partner"), _fixed(r.get("adduct_partner_mz"), 4),
                  _fixed(r.get("adduct_partner_rt_s"), 1), r.get("adduct_relation"), r.get("adduct_correlation"),
                  r.get("adduct_n_runs"), r["adduct_note"] or "not accepted"]
                 for r in refused.iter_rows(named=True)],
                numeric={4, 5, 7, 8, 10, 11}))
    return "".join(parts)


def _same_name_sets(acc: pl.DataFrame) -> list[str]:
    """A warning and a table when accepted features named one compound lie at several retention times
    (identifications.parquet ``same_name_elsewhere``): a compound elutes once, so at most one of each set is it."""
    if "same_name_elsewhere" not in acc.columns:
        return []
    marked = acc.filter(pl.col("same_name_elsewhere").list.len() > 0)
    if not marked.height:
        return []
    key = pl.col("inchikey").fill_null(pl.col("name")) if "inchikey" in marked.columns else pl.col("name")
    sets = (marked.sort("rt_s").group_by(key.alias("_compound"), maintain_order=True)
            .agg(pl.col("name").first(), pl.col("consensus_id"), pl.col("rt_s"), pl.col("q_value").min().alias("q"))
            .sort("name"))
    rows = [[r["name"], len(r["consensus_id"]),
             ", ".join(f"{c} ({t:.1f} s)" if t is not None else c for c, t in zip(r["consensus_id"], r["rt_s"])),
             q_cell(r["q"])] for r in sets.iter_rows(named=True)]
    box = warning_box(
        f"{sets.height} compound(s) are each named on features more than 10 s apart in retention time "
        f"({marked.height} features in all; one InChIKey, stereoisomers counted apart). A compound elutes once, so "
        "at most one retention time of each set is that compound; the others are isomers (ones the library lacks, "
        "or library isomers whose spectra match this one about as well), in-source fragments of other compounds or "
        "their adducts, which the same spectrum match cannot tell apart. The q-value "
        "of each match measures confusion with the library's other spectra of another formula, not with isomers. "
        "Check these retention times against a standard before reporting the names.")
    return [box, html_table(["compound", "features", "features (RT)", "lowest q"], rows, numeric={1, 3})]


def encoder_section(encoder: dict) -> str:
    """The encoder's model id(s), whether it was trained, and the fields of its info JSON (``collect.encoder_info``)."""
    if not encoder["model_ids"] and "sidecar" not in encoder:
        return "<p>No embedding tables found.</p>"
    trained = {True: "yes (a trained checkpoint)", False: "<b>NO: untrained placeholder</b>", None: "unknown"}
    rows = [["model id(s)", ("html", esc(", ".join(encoder["model_ids"])) or "unknown")],
            ["trained", ("html", trained[encoder["trained"]])]]
    for key, value in (encoder.get("sidecar") or {}).items():
        if key not in ("model_id", "trained"):
            rows.append([key, value if not isinstance(value, (dict, list)) else json.dumps(value, default=str)])
    return html_table(["", ""], rows)


def matrix_section(matrix: pl.DataFrame | None, sample_ids: list[str], warnings: list[str],
                   matrix_label: str | None = None, roles: dict[str, str] | None = None) -> str:
    """Detection counts of the consensus feature matrix (null, NaN or ≤ 0: not detected), with a bar chart of
    features by number of samples detected; a missing matrix (``matrix_label``: its path) is a warning. With
    ``roles`` (sample id -> sample, qc or blank) the counts are over the study samples, pooled QCs and blanks named
    apart (counting blanks as samples made "detected in every sample" the list of contaminants); the per-run table
    lists every run."""
    if matrix is None:
        warnings.append(Caution(f"the feature matrix ({esc(matrix_label)}) is missing" if matrix_label else
                                "the feature matrix was not passed to the report", DOUBT))
        return "<p>No feature matrix.</p>"
    present = [s for s in sample_ids if s in matrix.columns]
    n = matrix.height
    if n == 0 or not present:
        return f"<p>{n} consensus features.</p>"
    # null is the contract for "not detected"; NaN and non-positive intensities are treated the same way
    detected = matrix.select([(pl.col(s).cast(pl.Float64).fill_nan(None) > 0).fill_null(False) for s in present]
                             ).to_numpy()
    kinds = [(roles or {}).get(s, "sample") for s in present]
    study = np.array([k == "sample" for k in kinds])
    if not study.any():  # no study sample in the sheet: count every run
        study[:] = True
    counts = np.bincount(detected[:, study].sum(axis=1), minlength=int(study.sum()) + 1)
    others = {k: kinds.count(k) for k in ("qc", "blank") if k in kinds}
    runs = (f"{len(present)} runs ({int(study.sum())} study samples"
            + "".join(f", {c} {'pooled QCs' if k == 'qc' else 'blanks'}" for k, c in others.items()) + ")"
            if others else f"{len(present)} samples")
    scope = " study" if others else ""
    parts = [(f"<p><b>{n}</b> consensus features across {runs}; detection rate over the{scope} samples "
             f"{float(detected[:, study].mean()):.1%}; detected in every{scope} sample (before gap filling): "
             f"{int(counts[-1])}; in one{scope} sample only: {int(counts[1])}."
             + (" Pooled QCs and blanks are left out of these counts (a contaminant is detected in every run, "
                "blanks included)." if others else "") + "</p>")]
    chart = bar_figure([str(k) for k in range(1, len(counts))], [float(c) for c in counts[1:]],
                       f"Consensus features by number of{scope} samples detected", f"{scope.strip()} samples detected"
                       .strip(), "features")
    per_sample = detected.sum(axis=0)
    parts.append(f'<div class="charts">{figure_html(chart)}</div>')
    parts.append('<p class="note">Per run: the consensus features it has a detected value in. Linking can join two '
                 "of a run's features into one consensus feature (the pieces of one peak split by detection), which "
                 "then count once, so a run's number here can be a little below its own feature count in the QC "
                 "table.</p>")
    parts.append(run_table(["sample", "consensus features detected", "detection rate"],
                           [[s, int(per_sample[i]), f"{per_sample[i] / n:.1%}"] for i, s in enumerate(present)],
                           "detected-per-run", numeric={1}))
    return "".join(parts)


@functools.cache
def code_origin() -> str:
    """Where the running ms2study code comes from: its workflow folder and, when that folder is in a git checkout,
    the commit and whether files tracked there were changed since (``git rev-parse HEAD``, ``git status
    --porcelain --untracked-files=no``); "not a git checkout" otherwise. Two runs of one version from different
    checkouts can differ, so the report names the code itself."""
    folder = Path(ms2study.__file__).resolve().parents[1]
    try:
        commit = subprocess.run(["git", "-C", str(folder), "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=10, check=True).stdout.strip()
        changed = subprocess.run(["git", "-C", str(folder), "status", "--porcelain", "--untracked-files=no"],
                                 capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return f"{folder} (not a git checkout)"
    return f"{folder}, git commit {commit[:12]}" + (" with uncommitted changes" if changed else "")


def versions() -> list[list[str]]:
    """[name, version] rows: Python, the platform, the ms2study code's origin (``code_origin``) and each package in
    ``PACKAGES`` ("not installed" when absent)."""
    rows = [["python", platform.python_version()], ["platform", platform.platform()],
            ["ms2study code", code_origin()]]
    for package in PACKAGES:
        try:
            version = __version__ if package == "ms2study" else metadata.version(package)
        except metadata.PackageNotFoundError:
            version = "not installed"
        rows.append([package, version])
    return rows


def software_section(config: Any, methods: str = "") -> str:
    """Software versions, ``methods`` (HTML: the Methods draft of ``reporting.methods``, placed between them) and
    the workflow configuration used, verbatim (None: not passed)."""
    config_html = (f"<h3>Configuration used</h3><pre>{esc(json.dumps(config, indent=2, default=str))}</pre>"
                   if config is not None else "<p>The configuration was not passed to the report.</p>")
    return html_table(["software", "version"], versions()) + methods + config_html
