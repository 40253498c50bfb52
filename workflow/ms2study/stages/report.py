"""The study report: one self-contained HTML file that says what was found and how far to trust it.

It reads only the files it is handed (``ReportInputs``: the sample sheet, each sample's tables, the feature matrix, the
identifications, each configured outcome's model summary and differential tables, and the correct stage's corrected
matrix and record; the report rule names them all; and, for the share of features with MS/MS, the link stage's feature
links), so results left on disk by an outcome no longer configured never show, and it can be rebuilt at any time without
rerunning a stage. Everything is inline: CSS, plotly charts with plotly.js embedded once, and DataTables tables
(itables' offline bundle embedded once); no external address is named, so the file opens offline, can be mailed, and
archives as it is. The main findings come first (``reporting.findings``: per outcome the models' verdict, what differs
and the enriched classes, then the identifications, each linked to its section and to the warnings that bear on it),
then the warnings, ranked by what they mean for the conclusions: those that cast doubt on a result (an untrained
placeholder encoder, few samples per class, a local intensity effect behind the hits), then data-quality notes (samples
without MS/MS, skipped outcomes, missing tables), then processing details in a collapsed block; each is stated plainly
rather than left for the reader to infer. Every string that comes from the user's data is escaped. The pieces are in
``ms2study.reporting``; this module puts them in order and holds the ``ms2study report`` command.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as _dt
import logging
from pathlib import Path
from collections.abc import Callable, Sequence
from typing import Any

import polars as pl

from ms2study import __version__
from ms2study.core.atomic import write_text
from ms2study.core.errors import InputError
from ms2study.core.params import overlay, schema_defaults
from ms2study.io.samplesheet import read_sample_sheet
from ms2study.modelling.differential import outcome_filename
from ms2study.modelling.outcomes import drop_flagged
from ms2study.modelling.matrix_attribution import SET as MATRIX_SET
from ms2study.modelling.regions import SET as REGION_SET
from ms2study.reporting import (
    batch,
    cautions,
    collect,
    confounding,
    copies,
    explained,
    findings,
    marks,
    methods,
    outcomes,
    qc,
    qcfits,
    sections,
    spectra,
    whatdiffers,
)
from ms2study.reporting.collect import DifferentialFiles, OutcomeFiles, ReportInputs
from ms2study.reporting.html import DOUBT, PROCESSING, Caution, esc, kind_of, page, plain_text, tier_summary

log = logging.getLogger(__name__)

# The report section (defaults, types and allowed values in workflow/schemas/config.schema.yaml); the rule adds
# the whole configuration, shown verbatim at the end.
DEFAULT_PARAMS: dict[str, Any] = {**schema_defaults("report"), "config_used": None}


def merge_params(params: dict | None) -> dict:
    """The report's parameters over ``DEFAULT_PARAMS``; InputError for an unknown key or map method."""
    merged = overlay(params, DEFAULT_PARAMS, "report")
    if merged["map_method"] not in ("auto", "pca", "umap"):
        raise InputError(f"report.map_method is '{merged['map_method']}'", fix="use auto, pca or umap")
    return merged


def build_report(inputs: ReportInputs, out: Path, params: dict | None = None) -> None:
    """Write the study report (one self-contained HTML file) to ``out`` from the files named in ``inputs``.

    Raises InputError for bad parameters, an unreadable sample sheet, or per-sample tables that do not match the
    sheet (see ``ReportInputs.per_sample``); a named file that is absent is a warning in the report.
    """
    params = merge_params(params)
    inputs = in_configured_order(inputs, params.get("config_used"))
    sheet = read_sample_sheet(inputs.sheet)
    sample_ids = sheet["sample_id"].to_list()
    tables = inputs.per_sample(sample_ids)
    warnings: list[str] = []
    stats = [collect.sample_stats(s, t, warnings) for s, t in zip(sample_ids, tables)]
    encoder = collect.encoder_info(stats, inputs.encoder_info)
    roles = sections.run_roles(sheet)
    matrix = collect.read_table(inputs.feature_matrix)
    corrected = collect.read_table(inputs.corrected_matrix)
    with_ms2 = cautions.features_with_ms2(inputs.feature_links, [t["spectra"] for t in tables])
    coverage = (len(with_ms2), matrix.height) if with_ms2 is not None and matrix is not None and matrix.height else None
    overview = sections.overview_section(sheet, str(inputs.sheet))
    if coverage:
        overview += (f"<p>{cautions.coverage_sentence(with_ms2, coverage[1])}: only these can be identified or "
                     "enter the embedding and chemical_space models.</p>")
        cautions.coverage_warning(with_ms2, coverage[1], warnings)

    parts: list[tuple[str, str, str]] = [  # (anchor, title, body)
        ("overview", "Study overview", overview),
        ("samples", "Per-sample results", sections.samples_section(stats, warnings, roles)),
        ("qc", "Quality control of the runs", qc.qc_section(
            inputs.qc, inputs.chromatograms, sample_ids, warnings,
            ((params.get("config_used") or {}).get("detect") or {}).get("chrom_fwhm_s"))),
        ("batch", "Batch, blanks and drift", batch.batch_section(
            inputs.correction, inputs.corrected_matrix, matrix, sheet, params, warnings,
            qcfits.tested_features([d.table for d in inputs.differential]))),
    ]
    cautions.label_warning(corrected, _adduct_min_runs(params), warnings)
    annotations = collect.read_annotations([t["annotations"] for t in tables])
    p_floor = collect.calibration_warnings(inputs.calibrations, warnings,
                                           ((params.get("config_used") or {}).get("annotate") or {}).get("fdr"))
    ident = marks.with_blank_flags(collect.read_table(inputs.identifications), corrected)
    collect.level2_warning(inputs.identifications, ident, warnings)
    mirrors = spectra.mirror_plots(ident, annotations, {s: t["spectra"] for s, t in zip(sample_ids, tables)},
                                   inputs.library_indexes)
    parts.append(("identifications", "Top identifications",
                  collect.library_summary(inputs.library_indexes, warnings)
                  + sections.identifications_section(annotations, ident, sample_ids, params, warnings, p_floor)
                  + mirrors))
    attribution = {Path(p).stem: Path(p) for p in inputs.attribution}
    parts.append(("differential", "What differs",
                  whatdiffers.differential_section(inputs.differential, warnings, attribution,
                                                    outcomes.attribution_caveats(inputs.models), with_ms2, corrected,
                                                    identifications=ident, background=whatdiffers.background_ions(
                                                        inputs.feature_links, [t["features"] for t in tables]),
                                                    regions=({Path(p).stem: Path(p) for p in inputs.region_attribution},
                                                             outcomes.attribution_caveats(inputs.models,
                                                                                          REGION_SET)),
                                                    explained=(explained.matrix_tables(inputs.models),
                                                               outcomes.attribution_caveats(inputs.models, MATRIX_SET,
                                                                                            unpaired_refit=False)))))
    collect.scan_warnings(stats, warnings, collect.library_ion_modes(inputs.library_indexes))
    collect.unmatched_library_files(stats, inputs.library_indexes, warnings)
    parts.append(("encoder", "Spectrum encoder", sections.encoder_section(encoder)))
    if encoder["trained"] is False:
        warnings.insert(0, Caution("the spectrum encoder is the <b>UNTRAINED placeholder</b> (random weights): "
                                   "embeddings, embedding-based models and maps below carry no learned chemistry. "
                                   "Train or install an encoder (embed: model) before interpreting them.", DOUBT,
                                   "untrained encoder", ("models",)))
    # the models' feature sets rebuilt from the same tables and matrix, for the maps; only study samples are mapped
    feature_sets = collect.map_feature_sets(sample_ids, tables, _modelled_matrix(corrected, matrix, params))
    study_samples = sheet.filter(pl.col("sample_id").is_in([s for s in sample_ids if roles[s] == "sample"]))
    parts.append(("models", "Outcome models", outcomes.models_section(inputs.models, study_samples, feature_sets,
                                                                      warnings, str(params["map_method"]), coverage)))
    configured = (params.get("config_used") or {}).get("models") or {}
    for check in (confounding.association_cautions, confounding.overlap_cautions, confounding.design_cautions):
        warnings.extend(check(study_samples, list(configured.get("outcomes") or []),
                              list(configured.get("covariates") or [])))
    gone = sorted(p.name for p in (Path.cwd() / "results" / "samples").glob("*") if p.is_dir() and p.name not in
                  set(sample_ids))  # trial AV: a sample removed from the sheet was said in the terminal only
    if gone:
        warnings.append(Caution(f"results/samples/ holds the folders of {len(gone)} sample(s) no longer in the sheet "
                                f"({esc(', '.join(gone[:10]))}{', ...' if len(gone) > 10 else ''}): this report "
                                "leaves them out, and no result uses them", PROCESSING))
    byte_copies = copies.identical_run_cautions(study_samples, Path.cwd())  # files relative to the study
    warnings.extend(byte_copies)
    warnings.extend(copies.identical_value_cautions(matrix, study_samples["sample_id"].cast(pl.Utf8).to_list(),
                                                    byte_copies))  # trial AS: copies whose files differ by a byte
    parts.append(("matrix", "Feature matrix", sections.matrix_section(
        matrix, sample_ids, warnings, str(inputs.feature_matrix) if inputs.feature_matrix is not None else None,
        roles)))
    parts.append(("software", "Software and configuration", sections.software_section(
        params.get("config_used"), methods.methods_section(inputs, params.get("config_used"), encoder))))

    note = (f'<p class="note">Generated {esc(_dt.datetime.now().astimezone().isoformat(timespec="seconds"))} by '
            f"ms2study {esc(__version__)} ({esc(sections.code_origin())}) in <code>{esc(Path.cwd().resolve())}</code>."
            "</p>")
    fdr = ((params.get("config_used") or {}).get("annotate") or {}).get("fdr")
    box = findings.findings_section(inputs.models, inputs.differential, ident,
                                    float(fdr) if isinstance(fdr, (int, float)) else None, warnings, with_ms2)
    write_text(page(params["title"], note, parts, warnings, box), out)
    for warning in (w for w in warnings if kind_of(w) == DOUBT):
        log.warning("caution on the conclusions: %s", plain_text(warning))
    # the counts ms2study run prints at its end (runlog.report_warnings reads this line)
    log.info("report written to %s: %s", out, tier_summary(warnings))


def in_configured_order(inputs: ReportInputs, config: dict | None) -> ReportInputs:
    """``inputs`` with its model summaries and differential tables in the order of the configuration's ``models:
    outcomes``, so that "What differs" and "Outcome models" list the outcomes alike. An outcome is known by its
    folder (``models/{outcome}/summary.json``) or file stem (``differential/{outcome}.parquet``); one that the
    configuration does not name keeps its place after the configured ones. Without a configuration, the order
    given (the report rule's, which is the configured one)."""
    outcomes = ((config or {}).get("models") or {}).get("outcomes") or []
    rank = {outcome_filename(str(o["column"])): i for i, o in enumerate(outcomes) if isinstance(o, dict)
            and "column" in o}
    if not rank:
        return inputs

    def ordered(entries: Sequence, name: Callable[[Any], str]) -> list:
        return sorted(entries, key=lambda e: rank.get(name(e), len(rank)))  # stable: unnamed ones keep their order

    return dataclasses.replace(
        inputs, models=ordered(inputs.models, lambda f: Path(f.summary).parent.name),
        differential=ordered(inputs.differential, lambda f: Path(f.table).stem))


def _adduct_min_runs(params: dict) -> int:
    """``correct: adduct_min_runs`` of the configuration used, else its default."""
    correct = (params.get("config_used") or {}).get("correct") or {}
    return int(correct.get("adduct_min_runs") or schema_defaults("correct")["adduct_min_runs"])


def _modelled_matrix(corrected: pl.DataFrame | None, raw: pl.DataFrame | None,
                     params: dict) -> pl.DataFrame | None:
    """The matrix the models read: the ``corrected`` one when it is given and ``correct: use_corrected`` (default
    true), else the raw one; without the flagged features when ``correct: exclude_flagged`` (default true)."""
    correct = (params.get("config_used") or {}).get("correct") or {}
    matrix = corrected if corrected is not None and correct.get("use_corrected", True) else raw
    if matrix is None or corrected is None or not correct.get("exclude_flagged", True):
        return matrix
    matrix, _ = drop_flagged(matrix, corrected.select("consensus_id", "excluded") if "excluded" in
                             corrected.columns else None)
    return matrix


# ------------------------------------------------------------------------------------------- CLI


def _paired(first: list[str], second: list[str], what: str, option: str) -> list[Path | None]:
    """``second`` matched to ``first`` by position (empty: none given); InputError when the counts differ."""
    if not second:
        return [None] * len(first)
    if len(second) != len(first):
        raise InputError(f"{len(second)} {option} file(s) for {len(first)} {what}",
                         fix=f"pass one {option} file per {what[:-1]}, in the same order")
    return [Path(p) for p in second]


def inputs_from_args(args: argparse.Namespace) -> ReportInputs:
    """The report's inputs from the ``ms2study report`` options."""
    predictions = _paired(args.model_summaries, args.model_predictions, "model summaries", "--model-predictions")
    enrichment = _paired(args.differential, args.class_enrichment, "differential tables", "--class-enrichment")
    return ReportInputs(
        sheet=Path(args.samples),
        sample_tables={kind: [Path(p) for p in getattr(args, kind)] for kind in collect.TABLES
                       if getattr(args, kind) is not None},
        feature_matrix=Path(args.feature_matrix) if args.feature_matrix else None,
        identifications=Path(args.identifications) if args.identifications else None,
        models=[OutcomeFiles(Path(s), p) for s, p in zip(args.model_summaries, predictions)],
        differential=[DifferentialFiles(Path(t), e) for t, e in zip(args.differential, enrichment)],
        calibrations=[Path(p) for p in args.calibration],
        encoder_info=Path(args.encoder_info) if args.encoder_info else None,
        library_indexes=[Path(p) for p in args.library_index],
        qc=Path(args.qc) if args.qc else None,
        chromatograms=[Path(p) for p in args.chromatograms],
        attribution=[Path(p) for p in args.attribution],
        region_attribution=[Path(p) for p in args.region_attribution],
        corrected_matrix=Path(args.corrected_matrix) if args.corrected_matrix else None,
        correction=Path(args.correction) if args.correction else None,
        feature_links=Path(args.feature_links) if args.feature_links else None,
    )


def _cli_report(args: argparse.Namespace) -> int:
    from ms2study.core.params import load_params

    build_report(inputs_from_args(args), Path(args.out), load_params(args))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    from ms2study.core.params import add_params_argument

    p = subparsers.add_parser(
        "report", help="the study report: one self-contained HTML file",
        description="Only the files named here are read. Per-sample tables: one per sample, in sheet order.")
    p.add_argument("--samples", required=True, help="the sample sheet (results/study/samples.tsv)")
    for kind in collect.TABLES:
        p.add_argument(f"--{kind.replace('_', '-')}", dest=kind, nargs="*", default=None,
                       help=f"{kind}.parquet of each sample, in sheet order")
    p.add_argument("--feature-matrix", default=None, help="the consensus feature matrix (feature_matrix.parquet)")
    p.add_argument("--identifications", default=None, help="identifications.parquet of the consensus features")
    p.add_argument("--model-summaries", nargs="*", default=[], help="summary.json of each configured outcome")
    p.add_argument("--model-predictions", nargs="*", default=[],
                   help="predictions.parquet of each outcome, in the order of --model-summaries (ROC curves)")
    p.add_argument("--differential", nargs="*", default=[], help="the differential table of each outcome")
    p.add_argument("--class-enrichment", nargs="*", default=[],
                   help="the class enrichment table of each outcome, in the order of --differential")
    p.add_argument("--calibration", nargs="*", default=[], help="the library calibration JSON (calibrate-library)")
    p.add_argument("--encoder-info", default=None, help="the JSON written by 'ms2study embed --info' (optional)")
    p.add_argument("--library-index", nargs="*", default=[],
                   help="the library index folder(s) (results/library/NAME), for the mirror plots")
    p.add_argument("--qc", default=None, help="the per-sample QC table (results/study/qc.parquet)")
    p.add_argument("--chromatograms", nargs="*", default=[],
                   help="chromatogram.parquet (rt_s, tic, bpc) of each sample, in sheet order")
    p.add_argument("--attribution", nargs="*", default=[],
                   help="results/study/attribution/OUTCOME.parquet of each outcome (matched by the file's name)")
    p.add_argument("--region-attribution", nargs="*", default=[],
                   help="results/study/attribution/chemical_space/OUTCOME.parquet of each outcome (the "
                        "bag-of-chemistry model's regions; matched by the file's name)")
    p.add_argument("--corrected-matrix", default=None,
                   help="results/study/feature_matrix_corrected.parquet (the correct stage; batch section, model maps)")
    p.add_argument("--correction", default=None, help="results/study/correction.json (the correct stage's record)")
    p.add_argument("--feature-links", default=None,
                   help="results/study/feature_links.parquet (the link stage): how many consensus features have MS/MS")
    p.add_argument("--out", required=True, help="HTML file to write (results/study/report.html)")
    add_params_argument(p)
    p.set_defaults(func=_cli_report)
