"""The export stage: the study's consensus features in the files other tools read (``ms2study export``).

Reads the feature matrix, the feature links, every sample's ``spectra.parquet``, the identifications, the
differential tables and the sample sheet, and writes into one folder (``results/study/export/``):

* ``gnps_quant.csv`` and ``gnps_msms.mgf``: GNPS feature-based molecular networking input (MZmine format: the
  quantification table and one representative MS/MS per consensus feature, ``SCANS`` = ``row ID``);
  ``gnps_metadata.tsv``: the sample sheet as GNPS metadata (``filename``, ``ATTRIBUTE_*``).
* ``sirius.mgf``: the same MS/MS for SIRIUS, with the ion (``ION=``) of the accepted identification when known.
* ``consensus_features.tsv``: one row per consensus feature: ``consensus_id``, ``row_id`` (the GNPS ``row ID`` and
  SIRIUS ``FEATURE_ID``), ``mz``, ``rt_s``, ``n_detected``, ``n_msms``, ``msms_spectrum_id`` (the exported
  spectrum), the accepted identification (``name``, ``inchikey``, ``formula``, ``adduct``, ``compound_class``,
  ``msi_level``, ``identification_q_value``, the matched record's ``library_id`` and the ``isomer_inchikeys``,
  ";"-separated; empty when none) and, per outcome (the differential file's stem),
  ``{outcome}_log2_fold_change`` (binary, adjusted for the covariates when set), ``{outcome}_log2_effect_per_unit``
  (continuous) or
  ``{outcome}_statistic`` (multiclass: F, with ``{outcome}_highest_class`` and ``{outcome}_lowest_class``), with
  its 95 % interval (``{outcome}_effect_ci_low`` / ``_high``, none where a value was imputed), the ``{outcome}_test``,
  ``{outcome}_p_value`` and ``{outcome}_q_value``.
* ``README.txt``: what the folder holds, the ms2study version, and per outcome its type, test and the covariates its
  tests are adjusted for (trial AC: adjusted and unadjusted tables looked the same).

The formats, and which spectrum represents a feature, are described in ``ms2study.io.exports``. mzTab-M is not
written: pyOpenMS 3.6 builds it only from one FeatureMap (``MzTabM.exportFeatureMapToMzTabM``: one assay, and
identifications only through IdentificationData, which pyOpenMS does not expose), so neither the per-sample
abundances of a consensus feature nor its identification could be expressed.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path
from typing import Any

import polars as pl

from ms2study.core.atomic import write_text
from ms2study.core.errors import InputError
from ms2study.core.params import add_params_argument, load_params, overlay
from ms2study.core.tables import FEATURE_MATRIX_KEYS, SPECTRA, read_table
from ms2study.io import exports
from ms2study.io.samplesheet import read_sample_sheet
from ms2study.modelling.differential import read_summary
from ms2study.reporting.marks import ion_label_marks

log = logging.getLogger(__name__)

DEFAULT_PARAMS: dict[str, Any] = {
    "ion_mode": "positive",   # annotate.ion_mode: the polarity of scans whose mzML does not state one
}
OUTPUTS = {
    "gnps_quant": "gnps_quant.csv",
    "gnps_mgf": "gnps_msms.mgf",
    "gnps_metadata": "gnps_metadata.tsv",
    "sirius_mgf": "sirius.mgf",
    "features": "consensus_features.tsv",
    "readme": "README.txt",
}
IDENTIFICATION_COLUMNS: dict[str, pl.DataType] = {
    "name": pl.Utf8, "inchikey": pl.Utf8, "formula": pl.Utf8, "adduct": pl.Utf8, "compound_class": pl.Utf8,
    "msi_level": pl.Int8, "identification_q_value": pl.Float64,
    # the matched library record (its accession, e.g. MassBank's) and the library's isomers that scored, rank-1's
    # included, ";"-separated: a level-3 name reads "this compound or one of these" (trial AC: neither was exported)
    "library_id": pl.Utf8, "isomer_inchikeys": pl.Utf8,
    # the median precursor m/z error of the supporting spectra (ppm): shown in the report beside the name
    "precursor_error_ppm": pl.Float64,
    # what the report says beside the name: a possible in-source fragment (the heavier ion's m/z) and why a
    # low-cosine name was accepted (a fresh user found both in the report and neither in this table)
    "in_source_of_mz": pl.Float64, "evidence_note": pl.Utf8,
    # how closely a marked feature follows that ion over the study samples (identify's in-source check)
    "in_source_correlation": pl.Float64,
    # the report's "grouped as another ion?" mark: the study's ion grouping labels the feature another ion than the
    # library match's, on mass and RT alone (a fresh user found it in the report and not here)
    "grouped_as_another_ion": pl.Utf8,
}
# the effect column of each outcome type of the differential stage, and of each test for a table without a summary
EFFECT_OF_TYPE = {"binary": "log2_fold_change", "continuous": "log2_effect_per_unit", "multiclass": "statistic"}
EFFECT_COLUMN = {"moderated_t": "log2_fold_change", "welch_t": "log2_fold_change",
                 "moderated_ols": "log2_effect_per_unit", "ols": "log2_effect_per_unit", "moderated_f": "statistic",
                 "anova": "statistic"}


def read_spectra(paths: list[str | Path]) -> pl.DataFrame:
    """The ``exports.SPECTRUM_COLUMNS`` of every sample's spectra table, stacked. Raises InputError naming a file
    that is missing or lacks columns (``ion_mode``, added later to the contract, is null when absent)."""
    frames = []
    for path in paths:
        df = read_table(path, SPECTRA, columns=[c for c in exports.SPECTRUM_COLUMNS if c != "ion_mode"])
        if "ion_mode" not in df.columns:
            df = df.with_columns(pl.lit(None, dtype=pl.Utf8).alias("ion_mode"))
        frames.append(df.select([pl.col(c).cast(SPECTRA[c]) for c in exports.SPECTRUM_COLUMNS]))
    if not frames:
        return pl.DataFrame(schema={c: SPECTRA[c] for c in exports.SPECTRUM_COLUMNS})
    return pl.concat(frames, how="vertical")


def accepted_identifications(path: str | Path | None) -> pl.DataFrame:
    """One accepted identification per consensus feature (``IDENTIFICATION_COLUMNS``; ``q_value`` named
    ``identification_q_value``); an empty frame without a file. Columns the table lacks are null."""
    schema = {"consensus_id": pl.Utf8, **IDENTIFICATION_COLUMNS}
    if not path:
        return pl.DataFrame(schema=schema)
    if not Path(path).exists():
        raise InputError("identifications table does not exist", file=str(path), fix="run the identify stage")
    frame = pl.read_parquet(path)
    frame = frame.filter(pl.col("accepted").fill_null(False)) if "accepted" in frame.columns else frame.clear()
    frame = frame.with_columns(ion_label_marks(frame).alias("grouped_as_another_ion"))
    frame = frame.rename({"q_value": "identification_q_value"}) if "q_value" in frame.columns else frame
    if frame.schema.get("isomer_inchikeys") == pl.List(pl.Utf8):
        frame = frame.with_columns(pl.col("isomer_inchikeys").list.join(";"))
    frame = frame.with_columns(pl.lit(None, dtype=t).alias(c) for c, t in schema.items() if c not in frame.columns)
    return (frame.select([pl.col(c).cast(t) for c, t in schema.items()])
            .sort("identification_q_value", nulls_last=True).unique("consensus_id", keep="first", maintain_order=True))


def differential_columns(paths: list[str | Path]) -> list[pl.DataFrame]:
    """Per differential table: ``consensus_id`` and ``{stem}_{effect}``, ``{stem}_p_value``, ``{stem}_q_value``
    (stem: the file's name without ``.parquet``; effect: ``EFFECT_OF_TYPE`` of the outcome type in the file's summary,
    else ``EFFECT_COLUMN`` of the table's test)."""
    frames = []
    for path in paths:
        stem = Path(path).name.removesuffix(".parquet")
        if not Path(path).exists():
            raise InputError("differential table does not exist", file=str(path), fix="run the differential stage")
        table = pl.read_parquet(path)
        missing = [c for c in ("consensus_id", "test", "p_value", "q_value") if c not in table.columns]
        if missing:
            raise InputError(f"differential table lacks columns {missing}", file=str(path),
                             fix="rerun the differential stage")
        # the outcome type decides the effect (a binary outcome with covariates is tested by OLS, its effect is still
        # a log2 fold change); a table without the stage's summary falls back on its test's name
        tests = table["test"].drop_nulls().unique().to_list()
        effect = EFFECT_OF_TYPE.get(str(read_summary(path).get("type")),
                                    EFFECT_COLUMN.get(tests[0] if tests else "", "log2_fold_change"))
        # a multiclass outcome's F has no direction: its highest and lowest class say which way (a three-arm trial)
        extremes = ("highest_class", "lowest_class") if effect == "statistic" else ()
        # the effect's 95 % interval and the test each row used (trial AC: a collaborator could not tell them)
        interval = ("effect_ci_low", "effect_ci_high") if effect != "statistic" else ()  # an F has no interval
        columns = [c for c in (effect, *interval, *extremes, "test", "p_value", "q_value") if c in table.columns]
        frames.append(table.select("consensus_id", *[pl.col(c).alias(f"{stem}_{c}") for c in columns]))
    return frames


def feature_table(matrix: pl.DataFrame, representatives: pl.DataFrame, identifications: pl.DataFrame,
                  differential: list[pl.DataFrame]) -> pl.DataFrame:
    """The plain TSV's table (module docstring), one row per consensus feature in matrix order."""
    table = matrix.select(
        "consensus_id", exports.gnps_row_ids(matrix["consensus_id"]), pl.col("mz").cast(pl.Float64),
        pl.col("rt_s").cast(pl.Float64), pl.col("n_detected").cast(pl.Int32))
    table = table.join(representatives.select("consensus_id", "n_msms",
                                              pl.col("spectrum_id").alias("msms_spectrum_id")),
                       on="consensus_id", how="left", maintain_order="left")
    table = table.with_columns(pl.col("n_msms").fill_null(0))
    table = table.join(identifications, on="consensus_id", how="left", maintain_order="left")
    for frame in differential:
        table = table.join(frame, on="consensus_id", how="left", maintain_order="left")
    return table


def readme_text(matrix_path: str | Path, differential_paths: list[str | Path]) -> str:
    """The export folder's README.txt: what each file holds, the ms2study version, the matrix the quantities come
    from, and per outcome (its differential summary) the type, the classes compared, the test and the covariates
    its effects and p-values are adjusted for."""
    from ms2study import __version__

    source = Path(matrix_path).name
    what = {"feature_matrix.parquet": " (as detected and linked: before gap filling, drift correction and "
                                      "normalisation)"}.get(source, "")
    lines = [f"Exported by ms2study {__version__} (ms2study export) from {source}{what}.", "",
             ("gnps_quant.csv, gnps_msms.mgf, gnps_metadata.tsv: GNPS feature-based molecular networking input (MZmine "
             "layout); the quantities are the consensus features' values in that matrix, 0 where a sample has none "
             "(GNPS reads empty cells as errors): not a measured zero."),
             ("sirius.mgf: one representative MS/MS per consensus feature for SIRIUS (ION= from the accepted "
             "identification when known)."),
             ("consensus_features.tsv: one row per consensus feature; the accepted identification (Schymanski et al. "
             "2014 level in msi_level: 3 reads 'this compound or one of isomer_inchikeys'; library_id is the matched "
             "library record; identification_q_value bounds matches of a wrong formula) and per outcome its effect, "
             "95 % interval, test, p-value and Benjamini-Hochberg q-value."), "", "Outcomes:"]
    for path in differential_paths:
        summary = read_summary(path)
        stem = Path(path).name.removesuffix(".parquet")
        if not summary:
            lines.append(f"  {stem}: no summary in its table (not written by the differential stage): its test is in "
                         "the table's test column; which covariates it was adjusted for is not known")
            continue
        covariates = [str(c).removeprefix("cov:") for c in summary.get("covariates") or []]
        compared = (f", {summary.get('positive_class')} against {summary.get('reference_class')}"
                    if summary.get("positive_class") else "")
        lines.append(f"  {stem}: outcome '{summary.get('outcome', stem)}' ({summary.get('type', 'unknown type')}"
                     f"{compared}); test {summary.get('test', 'as in the table')}; "
                     + (f"effects and p-values adjusted for {', '.join(covariates)}" if covariates
                        else "not adjusted for covariates") + f"; {summary.get('n_samples', '?')} samples")
    if not differential_paths:
        lines.append("  none")
    return "\n".join(lines) + "\n"


def run_export(matrix_path: str | Path, links_path: str | Path, spectra_paths: list[str | Path],
               samples_path: str | Path, outdir: str | Path, identifications_path: str | Path | None = None,
               differential_paths: list[str | Path] | None = None, params: dict | None = None) -> dict:
    """Write the export folder (module docstring); returns a summary (counts and seconds), also logged.

    Raises InputError naming the file for a missing or malformed input, or when the matrix lacks a sample of the
    sheet.
    """
    start = time.perf_counter()
    params = overlay(params, DEFAULT_PARAMS, "export")
    outdir = Path(outdir)
    matrix = read_table(matrix_path, FEATURE_MATRIX_KEYS)
    links = read_table(links_path, {"consensus_id": pl.Utf8, "feature_id": pl.Utf8})
    sheet = read_sample_sheet(samples_path)
    sample_ids = sheet["sample_id"].to_list()
    files = dict(zip(sheet["sample_id"], sheet["file"])) if "file" in sheet.columns else {}
    names = exports.gnps_file_names(sample_ids, files)

    identifications = accepted_identifications(identifications_path)
    row_ids = matrix.select("consensus_id", exports.gnps_row_ids(matrix["consensus_id"]),
                            pl.col("mz").alias("consensus_mz"), pl.col("rt_s").alias("consensus_rt_s"))
    representatives = (exports.representative_spectra(read_spectra(spectra_paths), links)
                       .join(row_ids, on="consensus_id", how="inner")
                       .join(identifications.select("consensus_id", "adduct"), on="consensus_id", how="left"))

    exports.write_csv(exports.gnps_quant_table(matrix, sample_ids, names), outdir / OUTPUTS["gnps_quant"])
    exports.write_mgf(exports.gnps_mgf(representatives, params["ion_mode"]), outdir / OUTPUTS["gnps_mgf"])
    exports.write_csv(exports.gnps_metadata(sheet, names), outdir / OUTPUTS["gnps_metadata"], separator="\t")
    sirius_text, multiply_charged = exports.sirius_mgf(representatives, params["ion_mode"])
    exports.write_mgf(sirius_text, outdir / OUTPUTS["sirius_mgf"])
    table = feature_table(matrix, representatives, identifications, differential_columns(differential_paths or []))
    exports.write_csv(table, outdir / OUTPUTS["features"], separator="\t")
    write_text(readme_text(matrix_path, differential_paths or []), outdir / OUTPUTS["readme"])

    summary = {
        "consensus_features": matrix.height, "with_msms": representatives.height,
        "identified": int(table["name"].is_not_null().sum()), "sirius_multiply_charged_left_out": multiply_charged,
        "outcomes": [Path(p).name.removesuffix(".parquet") for p in differential_paths or []],
        "seconds": round(time.perf_counter() - start, 3),
    }
    log.info("export: %d consensus features, %d with MS/MS (GNPS and SIRIUS MGF), %d identified, outcomes %s; "
             "%d multiply charged left out of the SIRIUS MGF; %.2f s", summary["consensus_features"],
             summary["with_msms"], summary["identified"], summary["outcomes"], multiply_charged, summary["seconds"])
    return summary


def _cli(args: argparse.Namespace) -> int:
    run_export(args.feature_matrix, args.links, args.spectra, args.samples, args.outdir, args.identifications,
               args.differential, load_params(args))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``export`` command to the ms2study CLI."""
    p = subparsers.add_parser("export", help="GNPS FBMN, SIRIUS and TSV exports of the study's consensus features")
    p.add_argument("--feature-matrix", required=True, help="results/study/feature_matrix.parquet")
    p.add_argument("--links", required=True, help="results/study/feature_links.parquet")
    p.add_argument("--spectra", nargs="+", required=True, help="every sample's spectra.parquet")
    p.add_argument("--samples", required=True, help="sample sheet (results/study/samples.tsv)")
    p.add_argument("--identifications", default=None, help="results/study/identifications.parquet (optional)")
    p.add_argument("--differential", nargs="*", default=[],
                   help="results/study/differential/{outcome}.parquet (optional, any number)")
    p.add_argument("--outdir", required=True, help="folder to write (results/study/export)")
    add_params_argument(p)
    p.set_defaults(func=_cli)
