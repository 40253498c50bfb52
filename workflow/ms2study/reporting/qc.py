"""The report's quality control of the runs and the embedding model's attribution beside the differential results.

QC: the per-sample QC table (``results/study/qc.parquet``: sample_id, n_ms1_scans, n_ms2_scans, n_ms2_mapped,
share_ms2_mapped, n_features, tic_total, rt_shift_median_s, precursor_error_median_ppm, n_accepted, outlier,
outlier_score, outlier_rule; newer tables also sample_type, batch, injection_order, run_note, rt_start_s, rt_end_s,
instrument, mass_analyzers and tolerance_note) as a sortable
table with the outliers marked and their rule stated (and what its count of accepted identifications means: per
run, not the study's identifications), and each sample's chromatogram table
(``results/samples/{sample}/chromatogram.parquet``: rt_s, tic, bpc) drawn as overlaid TIC and base-peak
chromatograms. A study with pooled QC or blank runs gets one part per run type (study samples, pooled QCs, blanks),
each with its rule, charts and table; a table without sample_type is all study samples, shown as before.
Attribution: the top rows of ``results/study/attribution/{outcome}.parquet`` (consensus_id,
mz, rt_s, contribution, direction, rank, name, inchikey, msi_level; contribution toward the positive class of the
embedding model for a binary outcome, per unit of a continuous one; ``n_samples`` shown when present). Both tables
are written by other stages (``ms2study qc``, ``ms2study attribution``); here they are only read. May import
``ms2study.core``, ``ms2study.modelling`` (the outlier rule's constants) and the other ``reporting`` modules.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import polars as pl

from ms2study.core.errors import InputError
from ms2study.modelling.qc import OUTLIER_Z, QC_MIN_DISTANCE_RATIO, SAMPLE_MIN_DISTANCE_RATIO
from ms2study.modelling.replicates import REPLICATE_MARK
from ms2study.reporting.charts import chromatogram_figure, figure_html
from ms2study.reporting.html import DOUBT, QUALITY, Caution, esc
from ms2study.reporting.runnotes import run_warnings
from ms2study.reporting.tables import interactive_table

FAILED_MARK = "far fewer consensus features"  # the start of a failed run's outlier rule (modelling.qc)

QC_COLUMNS = {  # column: header, in the order shown
    "sample_id": "sample", "outlier": "outlier", "outlier_score": "outlier score", "n_ms1_scans": "MS1 scans",
    "n_ms2_scans": "MS2 scans", "n_ms2_mapped": "MS2 scans mapped", "share_ms2_mapped": "share of MS2 scans mapped",
    "n_features": "features", "tic_total": "total TIC", "rt_shift_median_s": "median RT shift (s)",
    "rt_residual_median_abs_s": "RT residual to reference (s)",
    "precursor_error_median_ppm": "median precursor error (ppm)", "mz_offset_ppm": "m/z offset to reference (ppm)",
    "precursor_recalibration_ppm": "precursor offset removed (ppm)",
    "n_accepted": "accepted identifications",
    "rt_range": "RT range (s)"}  # rt_range: text made of rt_start_s and rt_end_s (one decimal)
# Shown only when some run's file states them (a simulated run states neither) or some run was centroided here.
INSTRUMENT_COLUMNS = {"instrument": "instrument (as the file states)",
                      "mass_analyzers": "mass analyzers (as the file states)",
                      "ms1_centroiding": "MS1 centroiding (empty: as the file came)"}
CHROMATOGRAM_COLUMNS = ("rt_s", "tic", "bpc")
ATTRIBUTION_COLUMNS = {"rank": "rank", "consensus_id": "consensus feature", "name": "compound",
                       "msi_level": "level (Schymanski)", "inchikey": "InChIKey", "mz": "m/z", "rt_s": "RT (s)",
                       "contribution": "contribution", "direction": "direction", "n_samples": "samples pooled"}
TOP_ATTRIBUTION = 15  # attribution rows shown per outcome

QC_TEXT = ('<p class="note">RT shift: the median correction the alignment applied to the sample\'s retention times '
           "(aligned minus raw, s: how far the run had drifted from the reference run); RT residual: median "
           "absolute RT difference, after alignment, between the sample's features and the same consensus "
           "features in the reference run (alignment quality); precursor error: "
           "median m/z error of the accepted identifications; share of MS2 scans mapped: the share of the run's "
           "MS/MS scans assigned to a feature (of scans, not of features; how many consensus features have MS/MS "
           "is under 'Study overview'); RT range: the run's first to last MS1 scan. "
           "Chromatograms are thinned to at most 600 points per sample, "
           "keeping the highest point of each stretch (zoom to inspect); outliers are drawn thicker.</p>")


def accepted_note(qc: pl.DataFrame | None) -> str:
    """What the 'accepted identifications' column counts and why it varies between runs (HTML note), with the
    table's range per run; empty when the table has no values in ``n_accepted``. The count is per spectrum and the
    false-discovery cut is Storey-adjusted Benjamini-Hochberg over each run's own rank-1 matches
    (``identification.engine``), so the
    same match can pass in one run and fail in another: the column is not a measure of run quality, and the
    study's identifications are those of the identify stage, one per consensus feature."""
    if qc is None or "n_accepted" not in qc.columns:
        return ""
    typed = "sample_type" in qc.columns
    runs = qc.filter(pl.col("n_accepted").is_not_null() & ((pl.col("sample_type") != "blank") if typed else True))
    if not runs.height:  # blanks left out of the range: they accept next to nothing
        return ""
    counts = runs["n_accepted"].cast(pl.Int64)
    low, high = int(counts.min()), int(counts.max())
    per = "study sample or pooled QC" if typed and runs["sample_type"].n_unique() > 1 else "run"
    spread = (f"here {low} in each {per}" if low == high else f"here {low} to {high} per {per}") + (
        f", {high / low:.1f}-fold" if low and high / low >= 2 else "")
    if "n_ms2_scans" in runs.columns and (runs["n_ms2_scans"].fill_null(0) > 0).all():
        share = 100 * (counts / runs["n_ms2_scans"].cast(pl.Float64)).to_numpy()
        lo, hi = f"{share.min():.1f}", f"{share.max():.1f}"
        spread += f"; {lo} % of their MS/MS scans" if lo == hi else f"; {lo} % to {hi} % of their MS/MS scans"
    return ('<p class="note accepted">Accepted identifications: the run\'s MS/MS spectra whose best library match '
            "passed the false-discovery cut (<code>annotate: fdr</code>), counted per spectrum (a compound "
            "fragmented several times counts several times). The q-values behind the cut are computed run by run "
            "(with the default null model, Benjamini-Hochberg over that run's own matches, one ion's repeated spectra "
            "counted once, times the estimated share of wrong matches among them), so a run with fewer "
            "strong matches accepts fewer, and the same match can pass in one run and fail in another: the count "
            f"({spread}) follows what the run happened to fragment and match, and is not a measure of the run's "
            "quality. The study's identifications are those under "
            '<a href="#identifications">Identifications</a> (<code>results/study/identifications.parquet</code>): '
            "one per consensus feature, its spectra from every run combined and the cut applied once over the "
            "study; read those, not this column, for what the study identified.</p>")


RUN_TYPES = {"sample": "Study samples", "qc": "Pooled QC runs", "blank": "Blank runs"}  # sheet sample_type: heading
CHART_NOUNS = {"sample": "study samples", "qc": "pooled QCs", "blank": "blanks"}
TYPED_TEXT = ('<p class="note">Each run type is judged apart: study samples are scored among study samples and pooled '
              "QCs among QCs (a QC apart from the others points at an injection problem); blanks are never outliers "
              "by their few features, but a blank with many features is noted as possible carry-over. QC and blank "
              "runs never enter the outcome models.</p>")


def _table_id(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", text)


def read_chromatograms(paths: Sequence[Path], sample_ids: list[str],
                       warnings: list[str]) -> list[tuple[str, pl.DataFrame]]:
    """(sample id, rt_s/tic/bpc table) of each given chromatogram table, ``paths`` in the order of ``sample_ids``;
    an absent file is a warning. Raises InputError when the count differs from the samples or a table lacks a
    column."""
    if len(paths) != len(sample_ids):
        raise InputError(f"{len(paths)} chromatogram table(s) for {len(sample_ids)} samples",
                         fix="pass one chromatogram.parquet per sample of the sheet, in the order of the sheet")
    out = []
    for sample, path in zip(sample_ids, paths):
        if not Path(path).exists():
            warnings.append(f"sample <b>{esc(sample)}</b>: the chromatogram table is missing")
            continue
        missing = [c for c in CHROMATOGRAM_COLUMNS if c not in pl.read_parquet_schema(path)]
        if missing:
            raise InputError(f"the chromatogram table of sample {sample} lacks column(s) {missing}", file=str(path),
                             fix="rerun the QC stage (the table needs rt_s, tic and bpc)")
        out.append((sample, pl.read_parquet(path, columns=list(CHROMATOGRAM_COLUMNS)).drop_nulls()))
    return out


def _ordered_qc(qc_path: Path, sample_ids: list[str]) -> pl.DataFrame:
    """The QC table in sheet order, sample_id as text, a sample_type column (all "sample" in a table without one)."""
    qc = pl.read_parquet(qc_path)
    if "sample_id" not in qc.columns:
        raise InputError("the QC table has no sample_id column", file=str(qc_path), fix="rerun the QC stage")
    order = {s: i for i, s in enumerate(sample_ids)}
    qc = qc.with_columns(pl.col("sample_id").cast(pl.Utf8)).sort(
        pl.col("sample_id").replace_strict(order, default=len(order), return_dtype=pl.Int64))
    kind = pl.col("sample_type").cast(pl.Utf8).str.to_lowercase().fill_null("sample") if (
        "sample_type" in qc.columns) else pl.lit("sample")
    return qc.with_columns(kind.alias("sample_type"))


def _rule_text(qc: pl.DataFrame) -> str:
    rules = sorted({str(r) for r in qc["outlier_rule"].drop_nulls().to_list()}) if "outlier_rule" in qc.columns else []
    return "; ".join(rules) or "not stated in the QC table"


def _outlier_part(qc: pl.DataFrame, kind: str, typed: bool, warnings: list[str]) -> tuple[str, set[str]]:
    """The rule and count paragraph of one run type (warnings for sample and QC outliers, blank notes); returns it
    with the flagged ids."""
    notes = qc.filter(pl.col("run_note").is_not_null()) if "run_note" in qc.columns else qc.clear()
    if kind == "blank":
        text = (f"<p>Rule: {esc(_rule_text(qc))}. <b>{notes.height}</b> of {qc.height} blank runs noted"
                + (f": {esc(', '.join(notes['sample_id'].to_list()))}" if notes.height else "") + ".</p>")
        if notes.height:
            listed = "; ".join(f"{s}: {n}" for s, n in zip(notes["sample_id"].to_list(), notes["run_note"].to_list()))
            warnings.append(f"blank run(s) with many features ({esc(listed)}): their contaminant levels, and the "
                            "blank filtering that relies on them, may include sample material")
        return text, set()
    if "outlier" not in qc.columns:
        return "", set()
    apart = (notes.filter(pl.col("run_note").str.contains("with the reference run", literal=True))
             if "run_note" in notes.columns else notes)
    by_range = pl.col("run_note").str.contains("its RT range", literal=True) if "run_note" in apart.columns else None
    outside = apart.filter(by_range) if by_range is not None else apart.clear()
    apart = apart.filter(~by_range) if by_range is not None else apart
    if outside.height:
        listed = "; ".join(f"{s}: {n}" for s, n in zip(outside["sample_id"].to_list(), outside["run_note"].to_list()))
        warnings.append(f"run(s) acquired over an RT range that hardly overlaps the reference run's ({esc(listed)}): "
                        "their features cannot be matched with the reference run's, so the alignment and every "
                        "comparison across runs rest on little; check that the runs cover the same gradient")
    if apart.height:
        listed = "; ".join(f"{s}: {n}" for s, n in zip(apart["sample_id"].to_list(), apart["run_note"].to_list()))
        warnings.append(f"run(s) sharing few features with the reference run ({esc(listed)}): a run of another "
                        "matrix, method, polarity or instrument is aligned and compared as if it belonged; check "
                        "the QC section before reading its results")
    replicates = (notes.filter(pl.col("run_note").str.contains(REPLICATE_MARK, literal=True))
                  if kind == "sample" and "run_note" in notes.columns else notes.clear())
    if replicates.height:  # modelling.replicates: runs the sheet counts as separate samples
        warnings.append(Caution(
            f"study runs {esc(', '.join(replicates['sample_id'].to_list()))} each lie much closer to one or a few "
            "other runs than to any other run (their notes in the QC section name them): if they are replicate "
            "injections of one sample, or one subject measured under two conditions, give them one subject_id in "
            "samples.tsv (only the study-level jobs rerun): replicates counted as separate samples make the tests' "
            "p-values too small and the models' AUC too high, and one subject's conditions are compared best within "
            "the subject (a paired design)",
            DOUBT, "possible replicate injections", ("models", "differential")))
    flagged = qc.filter(pl.col("outlier").fill_null(False))
    outliers = set(flagged["sample_id"].to_list())
    rule = _rule_text(qc)
    noun = "pooled QC runs" if kind == "qc" else "samples"
    text = (f"<p>Outlier rule: {esc(rule)}. <b>{flagged.height}</b> of {qc.height} {noun} flagged"
            + (f": {esc(', '.join(sorted(outliers)))}" if outliers else "") + "."
            + _near_miss(qc, kind) + "</p>")
    if outliers and kind == "qc":
        warnings.append(f"pooled QC run(s) {esc(', '.join(sorted(outliers)))} stand apart from the other QCs "
                        f"({esc(rule)}): check those injections; drift correction and QC RSDs lean on the QCs")
    elif outliers:  # named beside the findings too: the run stays in every test and model (a trial's failed
        # injection turned 9 age hits into none and was linked from no finding); a failed run is left out of them
        # (modelling.runchecks.failed_runs) and said so apart (a trial: one sentence said both)
        failed = flagged.filter(pl.col("outlier_rule").fill_null("").str.starts_with(FAILED_MARK))
        kept = sorted(outliers - set(failed["sample_id"].to_list()))
        if failed.height:
            listed = "; ".join(f"{s}: {r}" for s, r in failed.select("sample_id", "outlier_rule").rows())
            short = failed["outlier_rule"].str.contains("shorter acquisition", literal=True).all()
            short = "short" if short else "failed"
            warnings.append(Caution(
                f"{short} {'study ' if typed else ''}run(s) left out of the tests and models ({esc(listed)}); if "
                "such a run is a real sample (far more dilute, another matrix), study it apart",
                QUALITY, f"{short} run left out", ("models", "differential")))
        if kept:
            warnings.append(Caution(
                f"outlier {'study ' if typed else ''}sample(s) {esc(', '.join(kept))} ({esc(rule)}): they "
                "stay in the tests and models; check their runs in the QC section before interpreting group "
                "differences, and if a run failed, remove its row from samples.tsv (only the study-level jobs rerun)",
                QUALITY, "outlier sample", ("models", "differential")))
    return text, outliers


def _near_miss(qc: pl.DataFrame, kind: str) -> str:
    """The runs whose score is above ``OUTLIER_Z`` but are not flagged, and why (a fresh user saw QC scores of 8.3
    and 10.4 without a mark and no reason): for pooled QCs the distance from the QCs' centre is below
    ``QC_MIN_DISTANCE_RATIO`` x the QCs' median, for study samples a nearest or second nearest sample is closer than
    ``SAMPLE_MIN_DISTANCE_RATIO`` x the typical such distance. Empty otherwise."""
    if kind == "blank" or not {"outlier", "outlier_score"} <= set(qc.columns):
        return ""
    near = qc.filter(~pl.col("outlier").fill_null(False) & (pl.col("outlier_score") > OUTLIER_Z))
    if not near.height:
        return ""
    named = ", ".join(f"{esc(s)} ({z:.1f})" for s, z in near.select("sample_id", "outlier_score").iter_rows())
    if kind != "qc":
        return (f" Scores above {OUTLIER_Z:g} without a flag ({named}): a nearest or second nearest sample lies "
                f"within {SAMPLE_MIN_DISTANCE_RATIO:g} times the typical such distance, so they sit with similar "
                "samples, only a little further apart than most.")
    return (f" Scores above {OUTLIER_Z:g} without a flag ({named}): their distance from the QCs' centre is below "
            f"{QC_MIN_DISTANCE_RATIO:g} times the QCs' median distance, so they sit among QCs that all scatter "
            "about as much.")


def _qc_table_html(qc: pl.DataFrame, kind: str, typed: bool) -> str:
    """One run type's table (``typed``: a part of a study with several run types); batch, injection order and the
    run's note are shown where they say something (several batches, an order, a note), so a plain study's table
    is the one it always was."""
    extra = {}
    if "batch" in qc.columns and qc["batch"].n_unique() > 1:
        extra["batch"] = "batch"
    if "injection_order" in qc.columns and qc["injection_order"].null_count() < qc.height:
        extra["injection_order"] = "injection order"
    shown = {"sample_id": "run" if kind != "sample" else "sample", **extra,
             **{c: h for c, h in QC_COLUMNS.items() if c != "sample_id"}}
    if kind == "blank":  # never outlier-tested: the note says what there is to say
        shown.pop("outlier", None)
        shown.pop("outlier_score", None)
    for column, header in INSTRUMENT_COLUMNS.items():
        if column in qc.columns and qc[column].null_count() < qc.height:
            shown[column] = header
    if "run_note" in qc.columns and qc["run_note"].null_count() < qc.height:
        shown["run_note"] = "note"
    if "mz_offset_note" in qc.columns and qc["mz_offset_note"].null_count() < qc.height:
        shown["mz_offset_note"] = "m/z offset note"
    if {"rt_start_s", "rt_end_s"} <= set(qc.columns):
        qc = qc.with_columns(pl.format("{}-{}", pl.col("rt_start_s").round(1), pl.col("rt_end_s").round(1))
                             .alias("rt_range"))
    tic = qc["tic_total"].drop_nulls() if "tic_total" in qc.columns else None
    if tic is not None and tic.len() and float(tic.max()) >= 1e6:
        # one power of ten for the column, in its header: DataTables printed a run's TIC as "2.0300e10"
        power = int(np.floor(np.log10(float(tic.median()))))
        qc = qc.with_columns((pl.col("tic_total") / 10.0 ** power).alias("tic_total"))
        shown["tic_total"] = f"total TIC (x 1e{power})"
    if "outlier" in qc.columns:
        qc = qc.with_columns(pl.when(pl.col("outlier").fill_null(False)).then(pl.lit("OUTLIER"))
                             .otherwise(pl.lit("")).alias("outlier"))
    columns = [c for c in shown if c in qc.columns]
    table_id = f"qc-table-{kind}" if typed and kind != "sample" else "qc-table"
    return interactive_table(qc.select(columns).rename({c: shown[c] for c in columns}), table_id, page_length=25)


def _charts(chromatograms: list[tuple[str, pl.DataFrame]], noun: str, outliers: set[str],
            batches: dict[str, str] | None = None) -> str:
    charts = []
    for column, label in (("tic", "total ion current"), ("bpc", "base peak intensity")):
        traces = [(s, t["rt_s"].to_numpy(), t[column].to_numpy()) for s, t in chromatograms if t.height]
        if traces:
            name = "TIC" if column == "tic" else "Base-peak chromatogram"
            charts.append(figure_html(chromatogram_figure(traces, f"{name}, {len(traces)} {noun}", label, outliers,
                                                                   batches)))
    return '<div class="charts">' + "".join(charts) + "</div>" if charts else ""


def qc_section(qc_path: Path | None, chromatogram_paths: Sequence[Path], sample_ids: list[str],
               warnings: list[str], chrom_fwhm_s: float | None = None) -> str:
    """The QC section: TIC and base-peak chromatograms overlaid (one line per run) and the per-run QC table (sheet
    order, outliers marked and listed among the warnings with their rule). When the QC table has run types
    (sample_type: sample, qc, blank) other than study samples, each type gets its own part: its rule and count,
    charts and table (with batch, injection order and the run's note where the table has them); QC outliers and
    blanks with a carry-over note are listed among the warnings apart from the study samples' outliers. Either input
    may be absent: the section says what is missing. Time-of-flight runs searched with a narrow precursor window
    and runs of a few minutes only are named among the warnings (``runnotes.run_warnings``; ``chrom_fwhm_s``: the
    detect stage's setting, checked against the runs' peak widths). Raises InputError for
    a QC table without sample_id or a chromatogram list that does not match the samples."""
    if qc_path is None and not chromatogram_paths:
        return ("<p>No quality-control tables were passed to the report (<code>--qc</code>, "
                "<code>--chromatograms</code>).</p>")
    qc = None
    if qc_path is not None and not Path(qc_path).exists():
        warnings.append(f"the QC table <code>{esc(Path(qc_path).name)}</code> is missing (run the pipeline to the end)")
    elif qc_path is not None:
        qc = _ordered_qc(qc_path, sample_ids)
        run_warnings(qc, warnings, chrom_fwhm_s)
    chromatograms = read_chromatograms(chromatogram_paths, sample_ids, warnings) if chromatogram_paths else []
    kinds = dict(zip(qc["sample_id"].to_list(), qc["sample_type"].to_list())) if qc is not None else {}
    batches = ({s: "" if b is None else str(b) for s, b in zip(qc["sample_id"].to_list(), qc["batch"].to_list())}
               if qc is not None and "batch" in qc.columns else {})
    typed = any(k != "sample" for k in kinds.values())
    if not typed:  # every run a study sample: one part, as before run types existed
        text, outliers = _outlier_part(qc, "sample", False, warnings) if qc is not None else ("", set())
        return QC_TEXT + accepted_note(qc) + text + _charts(chromatograms, "samples", outliers, batches) + (
            _qc_table_html(qc, "sample", False) if qc is not None else "")
    parts = [QC_TEXT, accepted_note(qc), TYPED_TEXT]
    for kind, title in RUN_TYPES.items():
        members = qc.filter(pl.col("sample_type") == kind)
        if not members.height:
            continue
        text, outliers = _outlier_part(members, kind, True, warnings)
        ids = set(members["sample_id"].to_list())
        traces = [(s, t) for s, t in chromatograms if s in ids]
        parts.append(f'<h4 id="qc-{kind}">{title} ({members.height})</h4>' + text
                     + _charts(traces, CHART_NOUNS[kind], outliers, batches)
                     + _qc_table_html(members, kind, True))
    unknown = [s for s, _ in chromatograms if s not in kinds]
    if unknown:
        parts.append(f"<h4>Runs missing from the QC table ({len(unknown)})</h4>"
                     + _charts([(s, t) for s, t in chromatograms if s in set(unknown)], "runs", set()))
    return "".join(parts)


def attribution_part(path: Path | None, outcome: str, top: int = TOP_ATTRIBUTION, caveat: str | None = None) -> str:
    """The ``top`` rows (by rank) of an outcome's attribution table, or "" when none is given; an absent file says
    so. ``caveat`` (why the model is not shown to beat chance) is shown, in the heading and above the table, so the
    contributions are not read as findings. Raises InputError when the table lacks consensus_id, contribution or
    rank."""
    if path is None:
        return ""
    title = "<h4>What the embedding model looks at</h4>"
    if caveat:
        title = ("<h4>What the embedding model looks at (a model without shown signal: not evidence)</h4>"
                 f'<p class="note caveat"><b>Read with caution</b>: {esc(caveat)}. The values below explain '
                 "that model, not a difference found in the study: do not read them as evidence about these "
                 "compounds.</p>")
    if not Path(path).exists():
        return title + f"<p>The attribution table <code>{esc(Path(path).name)}</code> is missing.</p>"
    table = pl.read_parquet(path)
    missing = [c for c in ("consensus_id", "contribution", "rank") if c not in table.columns]
    if missing:
        raise InputError(f"the attribution table of outcome {outcome} lacks column(s) {missing}", file=str(path),
                         fix="rerun the attribution stage")
    if table.height == 0:
        return title + "<p>No feature carries a contribution for this outcome.</p>"
    rows = table.sort("rank").head(top)
    permutation = "method" in table.columns and "permutation" in table["method"].drop_nulls().to_list()
    columns = ({**ATTRIBUTION_COLUMNS, "contribution": "importance", "importance_sd": "± sd"} if permutation
               else ATTRIBUTION_COLUMNS)
    shown = [c for c in columns if c in rows.columns and not (permutation and c == "direction")]
    if permutation:
        text = (f'<p class="note">The {rows.height} consensus features the embedding model relies on most, by '
                "permutation importance on the models stage's own folds (the model's score does not split over "
                "features: a random forest, or several classes): how much the out-of-fold loss (Brier score; "
                "1 − R² for a continuous outcome) grows when the feature's part of the test samples' pooled vectors "
                "is exchanged among them, averaged over shuffles and repeats (± sd). At or below 0 (slightly "
                "negative by chance): the model does not need the feature; redundant features share their "
                "importance. There is no direction (the differential table says which way the abundance moves); "
                "worth reading only where the model beats chance (under 'Outcome models': permutation p &lt; 0.05 "
                "and its interval above chance).</p>")
    else:
        total = float(np.abs(table["contribution"].cast(pl.Float64).fill_null(0.0).to_numpy()).sum())
        if total == 0:  # a trial: a top 15 of 0.0 "toward lower score" and "nan% of the absolute contribution"
            return title + (f"<p>The final embedding model kept no feature (every one of the {table.height} "
                            "features' contributions is 0: its regularisation shrank all weights to zero), so there "
                            "is nothing to attribute.</p>")
        share = float(np.abs(rows["contribution"].cast(pl.Float64).fill_null(0.0).to_numpy()).sum()) / total if (
            total > 0) else float("nan")
        text = (f'<p class="note">The {rows.height} consensus features contributing most to the embedding '
                "model's score (the sample vector is a weighted sum of its spectra's embeddings, so the model's "
                "linear score splits over the features): contribution toward the positive class (binary) or per "
                "unit of the outcome (continuous), as the attribution table gives it; ranked by its absolute "
                f"value. They carry {share:.0%} of the absolute contribution of all {table.height} features. "
                "The direction is where a feature pushes the model's score, not whether its abundance rises or "
                "falls (the differential table says that); the attribution explains the model, which is worth "
                "reading only where the model beats chance (under 'Outcome models': permutation p &lt; 0.05 and "
                "its interval above chance).</p>")
    return title + text + interactive_table(
        rows.select(shown).rename({c: columns[c] for c in shown}),
        f"attribution-{_table_id(outcome)}", order=[("rank", "asc")])
