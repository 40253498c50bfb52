"""The report's quality control of the runs and the embedding model's attribution beside the differential results.

QC: the per-sample QC table (``results/study/qc.parquet``: sample_id, n_ms1_scans, n_ms2_scans, n_ms2_mapped,
share_ms2_mapped, n_features, tic_total, rt_shift_median_s, precursor_error_median_ppm, n_accepted, outlier,
outlier_score, outlier_rule) as a sortable table with the outliers marked and their rule stated, and each sample's
chromatogram table (``results/samples/{sample}/chromatogram.parquet``: rt_s, tic, bpc) drawn as overlaid TIC and
base-peak chromatograms. Attribution: the top rows of ``results/study/attribution/{outcome}.parquet`` (consensus_id,
mz, rt_s, contribution, direction, rank, name, inchikey, msi_level; contribution toward the positive class of the
embedding model for a binary outcome, per unit of a continuous one; ``n_samples`` shown when present). Both tables
are written by other stages (``ms2study qc``, ``ms2study attribution``); here they are only read. May import
``ms2study.core`` and the other ``reporting`` modules.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import polars as pl

from ms2study.core.errors import InputError
from ms2study.reporting.charts import chromatogram_figure, figure_html
from ms2study.reporting.html import esc
from ms2study.reporting.tables import interactive_table

QC_COLUMNS = {  # column: header, in the order shown
    "sample_id": "sample", "outlier": "outlier", "outlier_score": "outlier score", "n_ms1_scans": "MS1 scans",
    "n_ms2_scans": "MS2 scans", "n_ms2_mapped": "MS2 mapped", "share_ms2_mapped": "share MS2 mapped",
    "n_features": "features", "tic_total": "total TIC", "rt_shift_median_s": "median RT shift (s)",
    "precursor_error_median_ppm": "median precursor error (ppm)", "n_accepted": "accepted identifications"}
CHROMATOGRAM_COLUMNS = ("rt_s", "tic", "bpc")
ATTRIBUTION_COLUMNS = {"rank": "rank", "consensus_id": "consensus feature", "name": "compound",
                       "msi_level": "MSI", "inchikey": "InChIKey", "mz": "m/z", "rt_s": "RT (s)",
                       "contribution": "contribution", "direction": "direction", "n_samples": "samples pooled"}
TOP_ATTRIBUTION = 15  # attribution rows shown per outcome

QC_TEXT = ('<p class="note">RT shift: median retention-time difference of the sample\'s features to the reference '
           "run after alignment; precursor error: median m/z error of the accepted identifications; share MS2 "
           "mapped: MS/MS scans assigned to a feature. Chromatograms are thinned to at most 600 points per sample, "
           "keeping the highest point of each stretch (zoom to inspect); outliers are drawn thicker.</p>")


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


def qc_section(qc_path: Path | None, chromatogram_paths: Sequence[Path], sample_ids: list[str],
               warnings: list[str]) -> str:
    """The QC section: TIC and base-peak chromatograms overlaid (one line per sample) and the per-sample QC table
    (sheet order, outliers marked and listed among the warnings with their rule). Either input may be absent: the
    section says what is missing. Raises InputError for a QC table without sample_id or a chromatogram list that
    does not match the samples."""
    if qc_path is None and not chromatogram_paths:
        return ("<p>No quality-control tables were passed to the report (<code>--qc</code>, "
                "<code>--chromatograms</code>).</p>")
    parts = [QC_TEXT]
    outliers: set[str] = set()
    table_html = ""
    if qc_path is not None and not Path(qc_path).exists():
        warnings.append(f"the QC table <code>{esc(Path(qc_path).name)}</code> is missing (run the pipeline to the end)")
    elif qc_path is not None:
        qc = pl.read_parquet(qc_path)
        if "sample_id" not in qc.columns:
            raise InputError("the QC table has no sample_id column", file=str(qc_path), fix="rerun the QC stage")
        order = {s: i for i, s in enumerate(sample_ids)}
        qc = qc.with_columns(pl.col("sample_id").cast(pl.Utf8)).sort(
            pl.col("sample_id").replace_strict(order, default=len(order), return_dtype=pl.Int64))
        if "outlier" in qc.columns:
            flagged = qc.filter(pl.col("outlier").fill_null(False))
            outliers = set(flagged["sample_id"].to_list())
            rules = sorted({str(r) for r in qc["outlier_rule"].drop_nulls().to_list()}) if (
                "outlier_rule" in qc.columns) else []
            rule = "; ".join(rules) or "not stated in the QC table"
            parts.append(f"<p>Outlier rule: {esc(rule)}. <b>{flagged.height}</b> of {qc.height} samples flagged"
                         + (f": {esc(', '.join(sorted(outliers)))}" if outliers else "") + ".</p>")
            if outliers:
                warnings.append(f"outlier sample(s) {esc(', '.join(sorted(outliers)))} ({esc(rule)}): check their "
                                "runs in the QC section before interpreting group differences")
            qc = qc.with_columns(pl.when(pl.col("outlier").fill_null(False)).then(pl.lit("OUTLIER"))
                                 .otherwise(pl.lit("")).alias("outlier"))
        shown = [c for c in QC_COLUMNS if c in qc.columns]
        table_html = interactive_table(qc.select(shown).rename({c: QC_COLUMNS[c] for c in shown}), "qc-table",
                                       page_length=25)
    if chromatogram_paths:
        chromatograms = read_chromatograms(chromatogram_paths, sample_ids, warnings)
        charts = []
        for column, label in (("tic", "total ion current"), ("bpc", "base peak intensity")):
            traces = [(s, t["rt_s"].to_numpy(), t[column].to_numpy()) for s, t in chromatograms if t.height]
            if traces:
                name = "TIC" if column == "tic" else "Base-peak chromatogram"
                charts.append(figure_html(chromatogram_figure(traces, f"{name}, {len(traces)} samples", label,
                                                              outliers)))
        if charts:
            parts.append('<div class="charts">' + "".join(charts) + "</div>")
    parts.append(table_html)
    return "".join(parts)


def attribution_part(path: Path | None, outcome: str, top: int = TOP_ATTRIBUTION) -> str:
    """The ``top`` rows (by rank) of an outcome's attribution table, or "" when none is given; an absent file says
    so. Raises InputError when the table lacks consensus_id, contribution or rank."""
    if path is None:
        return ""
    title = "<h4>What the embedding model looks at</h4>"
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
    shown = [c for c in ATTRIBUTION_COLUMNS if c in rows.columns]
    total = float(np.abs(table["contribution"].cast(pl.Float64).fill_null(0.0).to_numpy()).sum())
    share = float(np.abs(rows["contribution"].cast(pl.Float64).fill_null(0.0).to_numpy()).sum()) / total if (
        total > 0) else float("nan")
    return title + (f'<p class="note">The {rows.height} consensus features contributing most to the embedding '
                    "model's score (the sample vector is a weighted sum of its spectra's embeddings, so the model's "
                    "linear score splits over the features): contribution toward the positive class (binary) or per "
                    "unit of the outcome (continuous), as the attribution table gives it; ranked by its absolute "
                    f"value. They carry {share:.0%} of the absolute contribution of all {table.height} features. "
                    "The direction is where a feature pushes the model's score, not whether its abundance rises or "
                    "falls (the differential table says that); the attribution explains the model, which is worth "
                    "reading only where the model's interval above beats chance.</p>") + interactive_table(
        rows.select(shown).rename({c: ATTRIBUTION_COLUMNS[c] for c in shown}),
        f"attribution-{_table_id(outcome)}", order=[("rank", "asc")])
