"""The qc stage: quality control of the runs, one row per run of the sheet (``results/study/qc.parquet``).

Reads, per sample of the sheet (in sheet order), the chromatogram the detect stage wrote (MS1 scan count and summed
TIC in its metadata), the spectra table (MS2 scans and how many map to a feature), the features table and the
annotations (signed median precursor m/z error of the accepted rank-1 identifications), and, for the study, the link
stage's alignment (median RT shift against the reference run; from the feature links when the alignment lacks it)
and the feature matrix, on which outliers are flagged with the rule of ``modelling.qc.outlier_scores`` within each
run type of the sheet (study samples among samples, pooled QCs among QCs; blanks only get a carry-over note: see
``modelling.qc.qc_table``). Columns: ``modelling.qc.QC`` (with sample_type, batch and injection_order from the
sheet); the rule is ``workflow/rules/qc.smk``.

Also per run: its RT range (first and last point of the chromatogram table, s), the instrument model and mass
analyzers its file's header states (``io.instrument``, metadata only; the runs are given with ``--runs``), and,
for a run stating a time-of-flight analyzer searched with a precursor window narrower than config/README.md advises
for a QTOF, a note (``modelling.runchecks.tolerance_note``; the window comes with ``--search`` as JSON). The RT
ranges let the run note say when a run shares few features with the reference run because their RT ranges hardly
overlap (``modelling.runchecks.alignment_notes``). Only this study-level table changes: no per-sample output does.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from ms2study.core.atomic import write_parquet
from ms2study.core.errors import InputError
from ms2study.io.instrument import read_instrument
from ms2study.io.samplesheet import read_sample_sheet
from ms2study.modelling.qc import qc_table, read_chromatogram_summary, rt_range
from ms2study.modelling.replicates import with_replicate_notes
from ms2study.modelling.runchecks import mz_offset_note, tolerance_note, window_ppm

log = logging.getLogger(__name__)


def _existing(path: str | Path, what: str, sample: str | None, fix: str) -> Path:
    path = Path(path)
    if not path.exists():
        raise InputError(f"{what} does not exist", file=str(path), sample=sample, fix=fix)
    return path


def peak_fwhm_median(features: Path) -> float | None:
    """The median half-height width (s, ``fwhm_s``) of a features table's features with an isotope trace
    (``n_isotopes`` at least 2: compounds rather than noise traces), of all its features when none has one; None
    when the table has no ``fwhm_s`` or no positive width. For the report's check of ``detect: chrom_fwhm_s``."""
    names = pl.read_parquet_schema(features)
    if "fwhm_s" not in names:
        return None
    table = pl.read_parquet(features, columns=["fwhm_s", *(["n_isotopes"] if "n_isotopes" in names else [])])
    table = table.filter(pl.col("fwhm_s") > 0)
    if "n_isotopes" in table.columns and (table["n_isotopes"] >= 2).any():
        table = table.filter(pl.col("n_isotopes") >= 2)
    return float(table["fwhm_s"].median()) if table.height else None


def sample_run_values(sample_id: str, chromatogram: str | Path, spectra: str | Path, features: str | Path,
                      annotations: str | Path | None, run_file: str | Path | None = None,
                      search: dict[str, Any] | None = None) -> dict[str, Any]:
    """The per-sample QC values from one sample's tables (keys of ``modelling.qc.QC``); InputError naming a missing
    file. ``annotations`` None (no library): no identification values. ``run_file``: the sample's mzML/mzXML, whose
    header gives instrument and mass_analyzers (None, or a header that names neither: null). ``search``: the
    annotate stage's precursor window (precursor_tolerance_ppm, precursor_tolerance_da; "searched": false when
    no library was searched), for the time-of-flight note (None: no note)."""
    summary = read_chromatogram_summary(str(_existing(chromatogram, "chromatogram", sample_id, "run the detect stage")))
    spectra_path = _existing(spectra, "spectra table", sample_id, "run the spectra stage")
    wanted = [c for c in ("feature_id", "precursor_mz") if c in pl.read_parquet_schema(spectra_path)]
    spectra_table = pl.read_parquet(spectra_path, columns=wanted)
    features_path = _existing(features, "features table", sample_id, "run the detect stage")
    n_features = pl.scan_parquet(features_path).select(pl.len()).collect().item()
    start, end = rt_range(chromatogram)
    values: dict[str, Any] = {
        "n_ms1_scans": summary.get("n_ms1_scans"), "tic_total": summary.get("tic_total"),
        "n_ms2_scans": spectra_table.height, "n_ms2_mapped": int(spectra_table["feature_id"].is_not_null().sum()),
        "n_features": int(n_features), "rt_start_s": start, "rt_end_s": end,
        "ms1_centroiding": summary.get("ms1_centroiding"),
        "peak_fwhm_median_s": peak_fwhm_median(features_path),
    }
    if run_file is not None:
        instrument = read_instrument(run_file)
        values["instrument"], values["mass_analyzers"] = instrument.model, instrument.analyzers_text()
        if search and search.get("searched", True) and annotations is not None:
            precursors = (spectra_table["precursor_mz"].drop_nulls().drop_nans()
                          if "precursor_mz" in spectra_table.columns else pl.Series([], dtype=pl.Float64))
            values["tolerance_note"] = tolerance_note(
                instrument.time_of_flight, search.get("precursor_tolerance_ppm"), search.get("precursor_tolerance_da"),
                float(precursors.median()) if precursors.len() else None)
    if annotations is not None:
        table = pl.read_parquet(_existing(annotations, "annotations table", sample_id, "run the annotate stage"))
        if {"accepted", "precursor_error_ppm"} <= set(table.columns):
            accepted = table.filter(pl.col("accepted").fill_null(False))
            if "rank" in accepted.columns:
                accepted = accepted.filter(pl.col("rank") == 1)
            errors = accepted["precursor_error_ppm"].drop_nulls().drop_nans()
            values["n_accepted"] = accepted.height
            values["precursor_error_median_ppm"] = float(errors.median()) if errors.len() else None
        if "precursor_recalibration_ppm" in table.columns:  # the offset annotate removed (null: none)
            removed = table["precursor_recalibration_ppm"].drop_nulls()
            values["precursor_recalibration_ppm"] = float(removed[0]) if removed.len() else None
    return values


def shift_from_links(links: pl.DataFrame, features: dict[str, str | Path]) -> dict[str, float]:
    """Median (aligned - raw) RT of each sample's linked features from ``feature_links`` (sample_id, feature_id,
    rt_aligned_s) and the features tables (feature_id, rt_s); used when the alignment table has no such column."""
    shifts = {}
    for sample, path in features.items():
        raw = pl.read_parquet(path, columns=["feature_id", "rt_s"])
        joined = links.filter(pl.col("sample_id") == sample).join(raw, on="feature_id", how="inner")
        if joined.height:
            shifts[sample] = float(np.median((joined["rt_aligned_s"] - joined["rt_s"]).to_numpy()))
    return shifts


def run_qc(samples_path: str | Path, chromatograms: list[str | Path], spectra: list[str | Path],
           features: list[str | Path], annotations: list[str | Path] | None, alignment: str | Path | None,
           links: str | Path | None, feature_matrix: str | Path | None, out: str | Path,
           run_files: list[str | Path] | None = None, search: dict[str, Any] | None = None) -> pl.DataFrame:
    """The stage: per-sample lists in sheet order (one path per sheet row each); writes and returns the QC table.
    ``run_files``: the runs (mzML/mzXML) in sheet order, for the instrument their headers state (None: not read);
    ``search``: the annotate stage's precursor window (see ``sample_run_values``). Raises InputError when a list's
    length differs from the sheet's or a file is missing."""
    samples = read_sample_sheet(samples_path)
    ids = samples["sample_id"].cast(pl.Utf8).to_list()
    lists = {"--chromatograms": chromatograms, "--spectra": spectra, "--features": features}
    if annotations:
        lists["--annotations"] = annotations
    if run_files:
        lists["--runs"] = run_files
    for option, paths in lists.items():
        if len(paths) != len(ids):
            raise InputError(f"{option} has {len(paths)} path(s) for {len(ids)} sample(s)", file=str(samples_path),
                             fix="give one path per sample of the sheet, in sheet order")
    runs = {s: sample_run_values(s, chromatograms[i], spectra[i], features[i],
                                 annotations[i] if annotations else None, run_files[i] if run_files else None,
                                 search) for i, s in enumerate(ids)}
    alignment_table = pl.read_parquet(_existing(alignment, "alignment table", None, "run the link stage")) \
        if alignment else None
    if links and (alignment_table is None or "rt_shift_median_s" not in alignment_table.columns):
        shifts = shift_from_links(pl.read_parquet(_existing(links, "feature links", None, "run the link stage")),
                                  dict(zip(ids, features)))
        for s, value in shifts.items():
            runs[s]["rt_shift_median_s"] = value
    matrix = pl.read_parquet(_existing(feature_matrix, "feature matrix", None, "run the link stage")) \
        if feature_matrix else None
    table = with_replicate_notes(qc_table(samples, runs, alignment_table, matrix, str(samples_path)), samples, matrix)
    table = with_mz_offset_notes(table, search)
    write_parquet(table, out)
    for kind, part in table.group_by("sample_type", maintain_order=True):
        flagged = part.filter(pl.col("outlier"))
        noted = part.filter(pl.col("run_note").is_not_null())
        # each outlier with its own rule (a failed run's differs from the group's: trial BC read "outliers: PEST1,
        # PEST2 (not tested: fewer than 4 samples)" as a contradiction), then the rule the others were judged by
        others = part.filter(~pl.col("outlier").fill_null(False))["outlier_rule"]
        log.info("QC of %d run(s) of type %s; outliers: %s; the others: %s", part.height, kind[0],
                 "; ".join(f"{s} ({r})" for s, r in flagged.select("sample_id", "outlier_rule").rows()) or "none",
                 others[0] if others.len() else "none left")
        for s, note in zip(noted["sample_id"].to_list(), noted["run_note"].to_list()):
            log.warning("run %s (%s): %s", s, kind[0], note)
    for s, model, analyzers, note in table.select("sample_id", "instrument", "mass_analyzers",
                                                  "tolerance_note").iter_rows():
        log.info("run %s: instrument %s, mass analyzers %s (as its file states)", s, model or "not stated",
                 analyzers or "not stated")
        if note:
            log.warning("run %s: %s", s, note)
    for s, note in table.filter(pl.col("mz_offset_note").is_not_null()).select("sample_id", "mz_offset_note").rows():
        log.warning("run %s: %s", s, note)
    return table


def with_mz_offset_notes(table: pl.DataFrame, search: dict[str, Any] | None) -> pl.DataFrame:
    """``table`` (the QC table) with ``mz_offset_note`` filled (``modelling.runchecks.mz_offset_note``) from its
    ``mz_offset_ppm``, ``mz_recalibrated`` and ``precursor_recalibration_ppm``, the study scale's error against the
    library (the median over runs of their median precursor error less their offset) and the annotate stage's
    precursor window from ``search`` (None or "searched": false: no window, nothing said about identifications)."""
    window = (window_ppm(search.get("precursor_tolerance_ppm"), search.get("precursor_tolerance_da"), None)
              if search and search.get("searched", True) else None)
    both = table.filter(pl.col("precursor_error_median_ppm").is_not_null() & pl.col("mz_offset_ppm").is_not_null())
    scale = (float((both["precursor_error_median_ppm"] - both["mz_offset_ppm"]).median()) if both.height else None)
    notes = [mz_offset_note(offset, moved, window, scale, searched)
             for offset, moved, searched in table.select("mz_offset_ppm", "mz_recalibrated",
                                                         "precursor_recalibration_ppm").rows()]
    return table.with_columns(pl.Series("mz_offset_note", notes, dtype=pl.Utf8))


def _cli(args: argparse.Namespace) -> int:
    search = None
    if args.search:
        try:
            search = json.loads(args.search)
        except json.JSONDecodeError as err:
            raise InputError(f"--search is not JSON ({err})", fix='give e.g. {"precursor_tolerance_ppm": 10}') from err
    run_qc(args.samples, args.chromatograms, args.spectra, args.features, args.annotations, args.alignment,
           args.links, args.feature_matrix, args.out, args.runs or None, search)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``qc`` command to the ms2study CLI."""
    p = subparsers.add_parser("qc", help="quality control of the runs: counts, errors, RT shift, outlier samples")
    p.add_argument("--samples", required=True,
                   help="sample sheet (in the workflow its run columns, results/study/runs.tsv)")
    p.add_argument("--chromatograms", nargs="+", required=True, help="chromatogram.parquet per sample, sheet order")
    p.add_argument("--spectra", nargs="+", required=True, help="spectra.parquet per sample, sheet order")
    p.add_argument("--features", nargs="+", required=True, help="features.parquet per sample, sheet order")
    p.add_argument("--annotations", nargs="*", default=[], help="annotations.parquet per sample (optional)")
    p.add_argument("--alignment", default=None, help="results/study/alignment.parquet")
    p.add_argument("--links", default=None, help="results/study/feature_links.parquet")
    p.add_argument("--feature-matrix", default=None, help="results/study/feature_matrix.parquet (outlier rule)")
    p.add_argument("--runs", nargs="*", default=[], help="the runs (mzML/mzXML) per sample, sheet order: the "
                   "instrument and mass analyzers their headers state (optional)")
    p.add_argument("--search", default=None, help="the annotate stage's precursor window as JSON "
                   '({"precursor_tolerance_ppm": 10, "precursor_tolerance_da": null, "searched": true}; optional)')
    p.add_argument("--out", required=True, help="results/study/qc.parquet")
    p.set_defaults(func=_cli)
