"""The attribution stage: what the embedding model of one outcome looks at
(``results/study/attribution/{outcome}.parquet``).

Reads the samples' pooled embeddings and, per sample, the spectrum embeddings, spectra and features the pool stage
used (to recompute each feature's pooling weight), the feature links and matrix (consensus ids, m/z, RT), the
identifications and the models stage's ``summary.json`` of the outcome (its settings and chosen regularisation);
refits the outcome's linear model on all study samples' pooled embeddings (QC and blank runs, sheet ``sample_type``,
are left out and counted in the summary) and writes each consensus feature's
contribution (``modelling.attribution``, where the method is described). The run's summary (units, regularisation,
notes, or why the outcome was not attributed) is stored in the Parquet metadata (``modelling.differential
.read_summary`` reads it). When the models use the bags of chemistry (feature set ``chemical_space``), the same
job also writes what that model looks at, per prototype region and with the features that make each region's
difference (``results/study/attribution/chemical_space/{outcome}.parquet``; ``modelling.regions``), from the bags,
the prototypes and the same per-sample tables. The rule is ``workflow/rules/attribution.smk``.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

import polars as pl

from ms2study.core.errors import InputError
from ms2study.core.params import add_params_argument, load_params, overlay
from ms2study.io.samplesheet import read_sample_sheet
from ms2study.modelling.attribution import attribute, pooling_terms
from ms2study.modelling.chemistry import chemistry_terms, read_prototypes
from ms2study.modelling.differential import write_table
from ms2study.modelling.featuresets import read_sample_chemistry, read_sample_embeddings
from ms2study.modelling.outcomes import not_sample_note, not_study_samples
from ms2study.modelling.regions import region_attribution
from ms2study.modelling.subjects import subject_groups

log = logging.getLogger(__name__)

DEFAULT_PARAMS: dict[str, Any] = {
    "outcome": None,   # one entry of models.outcomes: {column, type, positive_class}
    "pool": {},        # the pool: config section (how the sample vectors were pooled)
}


def _read(path: str | Path, what: str, sample: str | None, fix: str, **kwargs: Any) -> pl.DataFrame:
    if not Path(path).exists():
        raise InputError(f"{what} does not exist", file=str(path), sample=sample, fix=fix)
    return pl.read_parquet(path, **kwargs)


def run_attribution(samples_path: str | Path, sample_embeddings: list[str | Path], embeddings: list[str | Path],
                    spectra: list[str | Path], features: list[str | Path], links_path: str | Path,
                    matrix_path: str | Path, identifications_path: str | Path | None, summary_path: str | Path,
                    out: str | Path, params: dict | None = None, chemistry: list[str | Path] | None = None,
                    prototypes_path: str | Path | None = None, regions_out: str | Path | None = None) -> dict:
    """The stage for one outcome: per-sample lists in sheet order; writes ``out`` and returns its summary. With
    ``regions_out`` (and the samples' bags of chemistry ``chemistry`` in sheet order and the study's
    ``prototypes_path``) it also writes what the bag-of-chemistry model looks at (``modelling.regions``). Raises
    InputError for a missing file, lists of the wrong length, or no outcome in ``params``."""
    params = overlay(params, DEFAULT_PARAMS, "attribution")
    if not params["outcome"]:
        raise InputError("no outcome given", fix="pass --params '{\"outcome\": {\"column\": ..., \"type\": ...}}'")
    samples = read_sample_sheet(samples_path)
    ids = samples["sample_id"].cast(pl.Utf8).to_list()
    for option, paths in {"--embeddings": embeddings, "--spectra": spectra, "--features": features}.items():
        if len(paths) != len(ids):
            raise InputError(f"{option} has {len(paths)} path(s) for {len(ids)} sample(s)", file=str(samples_path),
                             fix="give one path per sample of the sheet, in sheet order")
    if regions_out and (len(chemistry or []) != len(ids) or not prototypes_path):
        raise InputError(f"--regions-out needs --chemistry (one per sample: {len(ids)}, got {len(chemistry or [])}) "
                         "and --prototypes", file=str(samples_path), fix="give both, in sheet order")
    if not Path(summary_path).exists():
        raise InputError("models summary does not exist", file=str(summary_path), fix="run the models stage")
    summary = json.loads(Path(summary_path).read_text())
    prototypes = read_prototypes(prototypes_path) if regions_out else None
    terms, chemistry_terms_ = {}, {}
    for i, s in enumerate(ids):
        emb = _read(embeddings[i], "embeddings table", s, "run the embed stage")
        spec = _read(spectra[i], "spectra table", s, "run the spectra stage",
                     columns=["spectrum_id", "precursor_intensity"])
        # the corrected features (pool_corrected) also mark the flagged features that pooling left out: keep it
        wanted = ["feature_id", "intensity"] + (["excluded"] if Path(features[i]).exists() and "excluded" in
                                                 pl.read_parquet_schema(features[i]) else [])
        feat = _read(features[i], "features table", s, "run the detect stage", columns=wanted)
        terms[s] = pooling_terms(emb, spec, feat, s, params["pool"])
        if prototypes is not None:
            chemistry_terms_[s] = chemistry_terms(emb, spec, s, prototypes, params["pool"], feat)[:3]
    links = _read(links_path, "feature links", None, "run the link stage")
    matrix = _read(matrix_path, "feature matrix", None, "run the link stage")
    identifications = None
    if identifications_path:
        identifications = _read(identifications_path, "identifications table", None, "run the identify stage")
    table, result = attribute(samples, params["outcome"], summary, read_sample_embeddings(sample_embeddings), terms,
                              links, matrix, identifications)
    result.setdefault("notes", [])
    excluded = not_study_samples(samples)
    result["excluded_not_sample"] = excluded
    result["feature_matrix"] = Path(matrix_path).name
    if not_sample_note(excluded):
        result["notes"].insert(0, not_sample_note(excluded))
    if subject_groups(samples):  # descriptive: the refit stays on runs (each run's spectra carry the contributions)
        result["notes"].append("The contributions come from the embedding model refitted on the runs; the models "
                               + ("compared each subject's runs with one another (a paired design, sample sheet's "
                                  "subject_id), which this refit does not" if summary.get("paired_by") else
                                  "and tests averaged the runs of each subject (sample sheet's subject_id)"))
    if "excluded" in matrix.columns and table.height:
        flagged = set(matrix.filter(pl.col("excluded").fill_null(False))["consensus_id"].cast(pl.Utf8).to_list())
        n_flagged = int(table["consensus_id"].cast(pl.Utf8).is_in(list(flagged)).sum())
        result["n_flagged_attributed"] = n_flagged
        if n_flagged:
            result["notes"].append(
                f"{n_flagged} of the {table.height} attributed consensus features are flagged (blank filter or QC "
                "RSD) in the corrected matrix: their spectra still enter the pooled embeddings, so they are kept here")
    if regions_out:
        _write_regions(samples, params["outcome"], summary, [str(p) for p in chemistry or []], chemistry_terms_,
                       links, matrix, identifications, regions_out)
    write_table(table, out, result)
    if result["status"] == "done":
        top = ", ".join(f"{r['name'] or r['consensus_id']} ({r['contribution']:+.3g})"
                        for r in table.head(5).iter_rows(named=True))
        log.info("outcome %s: %d consensus features attributed (%s, %s); top: %s", result["outcome"], table.height,
                 result["units"], result.get("regularisation") or result.get("method"), top)
    else:
        log.warning("outcome %s not attributed: %s", result["outcome"], result["reason"])
    return result


def _write_regions(samples: pl.DataFrame, outcome: dict, summary: dict, chemistry: list[str], terms: dict,
                   links: pl.DataFrame, matrix: pl.DataFrame, identifications: pl.DataFrame | None,
                   out: str | Path) -> None:
    table, result = region_attribution(samples, outcome, summary, read_sample_chemistry(chemistry), terms, links,
                                       matrix, identifications)
    write_table(table, out, result)
    if result["status"] == "done":
        log.info("outcome %s: %d of %d prototype regions used by the bag-of-chemistry model; regions with a "
                 "placement note carry %.0f%% of it (%s)", result["outcome"], result["regions_used"],
                 result["n_regions"], 100 * result["noted_share"], result["noted_regions"] or "none")
    else:
        log.warning("outcome %s: bag-of-chemistry regions not explained: %s", result["outcome"], result["reason"])


def _cli(args: argparse.Namespace) -> int:
    run_attribution(args.samples, args.sample_embeddings, args.embeddings, args.spectra, args.features, args.links,
                    args.feature_matrix, args.identifications, args.model_summary, args.out, load_params(args),
                    args.chemistry, args.prototypes, args.regions_out)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``attribution`` command to the ms2study CLI."""
    p = subparsers.add_parser("attribution", help="each consensus feature's contribution to an outcome's "
                                                  "embedding model")
    p.add_argument("--samples", required=True, help="sample sheet (results/study/samples.tsv)")
    p.add_argument("--sample-embeddings", nargs="+", required=True, help="sample_embedding.parquet per sample")
    p.add_argument("--embeddings", nargs="+", required=True, help="embeddings.parquet per sample, sheet order")
    p.add_argument("--spectra", nargs="+", required=True, help="spectra.parquet per sample, sheet order")
    p.add_argument("--features", nargs="+", required=True, help="features.parquet per sample, sheet order")
    p.add_argument("--links", required=True, help="results/study/feature_links.parquet")
    p.add_argument("--feature-matrix", required=True,
                   help="results/study/feature_matrix_corrected.parquet (its flags are counted) or feature_matrix.parquet")
    p.add_argument("--identifications", default=None, help="results/study/identifications.parquet (optional)")
    p.add_argument("--model-summary", required=True, help="results/study/models/{outcome}/summary.json")
    p.add_argument("--out", required=True, help="results/study/attribution/{outcome}.parquet")
    p.add_argument("--chemistry", nargs="*", default=None,
                   help="results/study/chemistry/{sample}.parquet per sample, sheet order (with --regions-out)")
    p.add_argument("--prototypes", default=None, help="results/study/prototypes.parquet (with --regions-out)")
    p.add_argument("--regions-out", default=None,
                   help="also write what the bag-of-chemistry model looks at: "
                        "results/study/attribution/chemical_space/{outcome}.parquet")
    add_params_argument(p)
    p.set_defaults(func=_cli)
