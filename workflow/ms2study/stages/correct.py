"""The corrected study feature matrix (the ``correct`` stage): gap-filled, blank-flagged, drift- and batch-corrected.

Reads the raw feature matrix of ``link``, the validated sample sheet's run columns (``results/study/runs.tsv``; the
runs' roles from ``io.samplesheet.sample_roles``: sample_type, injection_order, batch) and, when gap filling is on, the
``gapfill`` stage's table of every run; writes ``results/study/feature_matrix_corrected.parquet``
(``tables.CORRECTED_MATRIX_KEYS`` + one column per run of the sheet) and ``results/study/correction.json`` (what was
done, with counts, a note and warnings). The work is ``correction.matrix.correct_matrix``; the raw matrix is left as
it is.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import polars as pl

from ms2study.core import tables
from ms2study.core.atomic import write_parquet, write_text
from ms2study.correction.matrix import DEFAULT_PARAMS, Corrected, correct_matrix
from ms2study.io.samplesheet import read_sample_sheet, sample_roles
from ms2study.modelling.subjects import subject_groups, subject_of_runs

log = logging.getLogger(__name__)

__all__ = ["DEFAULT_PARAMS", "correct_study", "register", "rule_params", "gap_fill_on"]

POLARITIES = ("positive", "negative")
# the columns of feature_links.parquet (stages.link.LINKS) the RT spread flag reads
LINK_COLUMNS = {"consensus_id": pl.Utf8, "sample_id": pl.Utf8, "rt_aligned_s": pl.Float64}
# ... and the peak width, read where the file has it (links written before it was added lack it)
LINK_WIDTH = "peak_width_s"

# What the rules pass to gapfill and correct (core.paths: light, the rule files import it at every Snakemake start).
from ms2study.core.paths import GAPFILL_KEYS, LATER_STAGE_KEYS, gap_fill_on, rule_params  # noqa: E402,F401

# a polarity holding at least this share of the runs' MS/MS scans beside the other: a polarity-switching study
MIXED_SHARE = 0.05


def runs_polarity(spectra: list[str | Path] | None, default: str = "positive") -> tuple[str, str | None]:
    """The ion mode of the study's runs for adduct grouping, from their MS/MS scans' ``ion_mode``
    (``results/samples/<id>/spectra.parquet``; scans whose file states none count as ``default``, annotate's
    ``ion_mode``), and a warning or None. The polarity of most scans wins; when the other holds at least
    ``MIXED_SHARE`` of them (polarity switching) the warning says its ions are grouped as the majority's. Without
    ``spectra`` (or scans): ``default``. A trial's negative-mode study was grouped as positive ions, because the rule
    passed annotate's ``ion_mode`` (positive by default), and right names were marked as contradicting their
    features' "[M+K]+" labels. Raises InputError naming a missing table."""
    counts = {"positive": 0, "negative": 0}
    for path in spectra or []:
        scans = tables.read_table(path, tables.SPECTRA, columns=["spectrum_id", "ion_mode"], only=True)
        modes = scans["ion_mode"] if "ion_mode" in scans.columns else pl.Series([None] * scans.height, dtype=pl.Utf8)
        negative = modes.cast(pl.Utf8).fill_null(default).str.to_lowercase().str.starts_with("neg")
        n_negative = int(negative.sum())
        counts["negative"] += n_negative
        counts["positive"] += scans.height - n_negative
    total = sum(counts.values())
    if not total:
        return default, None
    polarity = "negative" if counts["negative"] > counts["positive"] else "positive"
    other = "positive" if polarity == "negative" else "negative"
    if counts[other] >= MIXED_SHARE * total:
        return polarity, (f"the runs' MS/MS scans mix polarities ({counts['positive']} positive, {counts['negative']} "
                          f"negative): adducts are grouped as {polarity} ions only, so the {other} ions' adduct labels "
                          "and groups are not to be trusted")
    return polarity, None


def correct_study(feature_matrix: str | Path, samples: str | Path, gap_filled: list[str | Path] | None = None,
                  params: dict | None = None, polarity: str = "positive",
                  links: str | Path | None = None, spectra: list[str | Path] | None = None) -> Corrected:
    """Read the inputs and run ``correction.matrix.correct_matrix``.

    ``gap_filled``: the runs' ``results/study/gap_filled/{sample}.parquet`` tables (None or empty: no gap filling);
    ``links``: ``results/study/feature_links.parquet`` (None: the RT spread flag is not judged); ``spectra``: the
    runs' spectra tables, whose scans' polarity sets the adduct grouping's (``runs_polarity``; ``polarity`` is the
    mode of scans whose file states none; without ``spectra`` it is used as it is). The sheet's ``subject_id``
    (``modelling.subjects.subject_groups``) gives the run-level normalisation its subjects.
    Raises ``InputError`` naming the file for an unreadable or incomplete table or sheet (and as ``correct_matrix``).
    """
    polarity, mixed = runs_polarity(spectra, polarity) if spectra else (polarity, None)
    matrix = tables.read_table(feature_matrix, tables.FEATURE_MATRIX_KEYS)
    sheet = read_sample_sheet(samples)
    roles = sample_roles(sheet, str(samples))
    groups = subject_groups(sheet)
    subject_of = subject_of_runs(groups)
    subjects = [subject_of.get(sid) for sid in roles["sample_id"].to_list()] if groups else None
    filled = None
    if gap_filled:
        parts = [tables.read_table(p, tables.GAP_FILLED) for p in gap_filled]
        filled = pl.concat([tables.conform(p, tables.GAP_FILLED).select(list(tables.GAP_FILLED)) for p in parts])
    link_table = (tables.read_table(links, LINK_COLUMNS, only=True, columns=[*LINK_COLUMNS, LINK_WIDTH])
                  if links else None)
    result = correct_matrix(matrix, roles, params, filled, polarity, link_table, subjects)
    if mixed:
        log.warning(mixed)
        result.report["warnings"] = [*(result.report.get("warnings") or []), mixed]
    return result


def _cli(args: argparse.Namespace) -> int:
    from ms2study.core.params import load_params

    result = correct_study(args.feature_matrix, args.samples, args.gap_filled, load_params(args), args.polarity,
                           args.links, args.spectra or None)
    report_out = args.report_out or Path(args.out).with_name("correction.json")
    write_parquet(result.matrix, args.out)
    write_text(json.dumps(result.report, indent=2) + "\n", report_out)
    return 0


def register(subparsers) -> None:
    from ms2study.core.params import add_params_argument

    p = subparsers.add_parser("correct", help="gap-filled, blank-flagged, drift/batch-corrected feature matrix")
    p.add_argument("--feature-matrix", required=True, type=Path, help="results/study/feature_matrix.parquet")
    p.add_argument("--samples", required=True, type=Path,
                   help="the validated sheet (in the workflow its run columns, results/study/runs.tsv)")
    p.add_argument("--gap-filled", nargs="*", type=Path, default=[],
                   help="results/study/gap_filled/{sample}.parquet of the runs (none: no gap filling)")
    p.add_argument("--links", type=Path, default=None,
                   help="results/study/feature_links.parquet (the RT spread flag; without it: not judged)")
    p.add_argument("--polarity", choices=POLARITIES, default="positive",
                   help="ion mode of scans whose file states none (the rule passes annotate.ion_mode); without "
                        "--spectra, the ion mode of the adduct grouping")
    p.add_argument("--spectra", nargs="*", type=Path, default=[],
                   help="results/samples/<id>/spectra.parquet of the runs: their scans' polarity sets the adduct "
                        "grouping's")
    p.add_argument("--out", required=True, type=Path, help="results/study/feature_matrix_corrected.parquet")
    p.add_argument("--report-out", type=Path, default=None,
                   help="correction.json (default: beside --out)")
    add_params_argument(p)
    p.set_defaults(func=_cli)
