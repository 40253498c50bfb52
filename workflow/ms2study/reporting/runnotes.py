"""Warnings about the runs themselves, from the QC table (``results/study/qc.parquet``, written by ``ms2study qc``).

Two warnings, both read from columns the qc stage fills: time-of-flight runs searched with a precursor window
narrower than config/README.md advises for a QTOF (``tolerance_note``, with the runs' ``instrument`` and
``mass_analyzers`` as their files state them: a caution on the identifications, since compounds just outside the
window are missed and the accepted matches' median precursor error, taken inside the window, cannot show it), and
runs whose acquisition spans less than ``modelling.runchecks.SHORT_RUN_S`` (``rt_start_s``, ``rt_end_s``: one plain
data-quality line, features at the edges are truncated and the RT alignment has little to fit). A QC table without
these columns (older runs) gives neither. May import ``ms2study.core``, ``ms2study.modelling`` and the other
``reporting`` modules.
"""

from __future__ import annotations

import polars as pl

from ms2study.modelling.runchecks import SHORT_RUN_S, short_run
from ms2study.reporting.html import DOUBT, QUALITY, Caution, esc

TOF_LABEL = "time-of-flight runs searched with a narrow precursor window"


def _described(rows: list[dict]) -> str:
    """Run ids with their instrument: "AGM, SIR (TripleTOF 6600; mass analyzers quadrupole, time-of-flight)" when
    they share one description, each with its own otherwise (escaped HTML)."""
    def what(row: dict) -> str:
        model = row.get("instrument") or "model not stated"
        analyzers = row.get("mass_analyzers")
        return f"{model}; mass analyzers {analyzers}" if analyzers else model
    kinds = {what(r) for r in rows}
    if len(kinds) == 1:
        return f"{esc(', '.join(str(r['sample_id']) for r in rows))} ({esc(kinds.pop())}, as their files state)"
    return "; ".join(f"{esc(r['sample_id'])} ({esc(what(r))})" for r in rows) + " (as their files state)"


def tof_warning(qc: pl.DataFrame, warnings: list[str]) -> None:
    """Append one caution on the identifications naming the runs whose ``tolerance_note`` is set (a time-of-flight
    analyzer searched with a precursor window narrower than advised; ``modelling.runchecks.tolerance_note``), with
    their instrument and analyzers and what to set. Nothing when the table has no such column or note."""
    if "tolerance_note" not in qc.columns:
        return
    noted = qc.filter(pl.col("tolerance_note").is_not_null())
    if not noted.height:
        return
    rows = noted.to_dicts()
    notes = sorted({r["tolerance_note"] for r in rows})
    said = esc("; ".join(n.removeprefix("time-of-flight analyzer ") for n in notes))
    warnings.append(Caution(
        f"<b>time-of-flight data searched with a narrow precursor window</b>: run(s) {_described(rows)} {said}, then "
        "rerun. The median precursor error in the QC table cannot show this: it is taken over the accepted matches, "
        "which lie inside the window by construction.",
        DOUBT, TOF_LABEL, ("identifications",)))


def short_run_warning(qc: pl.DataFrame, warnings: list[str]) -> None:
    """Append one data-quality line naming the runs whose acquisition (rt_start_s to rt_end_s) spans less than
    ``SHORT_RUN_S``, with their ranges. Nothing when the table has no such columns or no such run."""
    if not {"rt_start_s", "rt_end_s"} <= set(qc.columns):
        return
    short = [r for r in qc.select("sample_id", "rt_start_s", "rt_end_s").to_dicts()
             if short_run(r["rt_start_s"], r["rt_end_s"])]
    if not short:
        return
    listed = ", ".join(f"{esc(r['sample_id'])} {r['rt_start_s']:.1f}-{r['rt_end_s']:.1f} s" for r in short)
    warnings.append(Caution(
        f"run(s) spanning less than {SHORT_RUN_S / 60:g} min of acquisition ({listed}): excerpts of longer runs? "
        "Features at the edges of such a window are truncated (their area and apex RT are not the compound's), and "
        "the RT alignment has few features to fit.", QUALITY))


def run_warnings(qc: pl.DataFrame, warnings: list[str]) -> None:
    """Both warnings of this module for a QC table (``tof_warning``, ``short_run_warning``), appended to
    ``warnings``."""
    tof_warning(qc, warnings)
    short_run_warning(qc, warnings)
