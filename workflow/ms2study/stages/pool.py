"""The pool stage and its companions: ``ms2study pool`` pools a sample's spectrum embeddings into one vector
(``modelling.pooling``: abundance share by default), ``ms2study pool-corrected`` pools them again with the study's
drift/batch-corrected feature intensities as weights (``correction.weights``; what the models use by default),
``ms2study prototypes`` learns the chemical-space prototypes once (k-means on library or reference-sample
embeddings) and ``ms2study chemistry`` summarises a sample as a bag of chemistry over them (``modelling.chemistry``). This module reads the per-sample tables, calls those functions and
writes their outputs atomically. The ``pool:`` config section (``DEFAULT_PARAMS``) is defined with the pooling it
configures, in ``modelling.pooling``.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import polars as pl

from ms2study.core.atomic import write_parquet
from ms2study.core.errors import InputError
from ms2study.core.params import add_params_argument, load_params
from ms2study.core.runs import add_run_arguments, check_run_inputs, run_paths
from ms2study.modelling.pooling import pool_sample

# The corrected intensities and the chemistry (prototypes, bags of chemistry) are imported by the commands that use
# them: the per-sample `pool` job, one per sample, needs neither.

log = logging.getLogger(__name__)

# The per-run tables the study-phase commands read, and the command that writes each.
PER_RUN_WRITERS = {"embeddings": "ms2study embed", "spectra": "ms2study spectra", "features": "ms2study detect"}


def _cli_pool(args: argparse.Namespace) -> int:
    params = load_params(args)
    tables: dict[str, pl.DataFrame | None] = {"features": None}
    for name in ("embeddings", "spectra", "features"):
        if getattr(args, name) is None:
            continue
        path = Path(getattr(args, name))
        if not path.exists():
            raise InputError(f"{name} table does not exist", file=str(path), sample=args.sample_id)
        tables[name] = pl.read_parquet(path)
    pooled = pool_sample(tables["embeddings"], tables["spectra"], args.sample_id, params, features=tables["features"])
    write_parquet(pooled, args.out)
    return 0


def _cli_pool_corrected(args: argparse.Namespace) -> int:
    from ms2study.correction.weights import corrected_feature_intensities

    params = load_params(args)
    runs = run_paths(args, ("embeddings", "spectra", "features", "out_features", "out"))
    check_run_inputs(runs, PER_RUN_WRITERS)
    # The study tables are read once for all runs: the links split by run, the matrices one run's column at a time.
    if not Path(args.links).exists():
        raise InputError("feature links table does not exist", file=str(args.links))
    wanted_runs = [sample for sample, _ in runs]
    links = pl.scan_parquet(args.links).filter(pl.col("sample_id").is_in(wanted_runs)).collect()
    by_run = {key[0]: part for key, part in links.partition_by("sample_id", as_dict=True).items()}
    raw_columns = _columns(args.feature_matrix, "feature matrix")
    corrected_columns = _columns(args.corrected_matrix, "corrected feature matrix")
    for sample in wanted_runs:  # every run checked before any is written
        _need_column(raw_columns, args.feature_matrix, sample, "feature matrix")
        _need_column(corrected_columns, args.corrected_matrix, sample, "corrected feature matrix")
    raw_all = corrected_all = None
    if len(runs) > 1:  # one read of the columns wanted; a single run reads only its own column
        raw_all = pl.read_parquet(args.feature_matrix, columns=["consensus_id", *[
            s for s in wanted_runs if s in raw_columns]])
        corrected_all = pl.read_parquet(args.corrected_matrix, columns=["consensus_id", *[
            s for s in wanted_runs if s in corrected_columns]] + (["excluded"] if args.exclude_flagged else []))
    for sample, paths in runs:
        features = _read_table(paths["features"], "features", sample)
        run_links = by_run.get(sample, links.clear())
        wanted = ["consensus_id", sample] + (["excluded"] if args.exclude_flagged else [])
        raw = (raw_all.select("consensus_id", sample) if raw_all is not None else
               pl.read_parquet(args.feature_matrix, columns=["consensus_id", sample]))
        corrected = (corrected_all.select(wanted) if corrected_all is not None else
                     pl.read_parquet(args.corrected_matrix, columns=wanted))
        table = corrected_feature_intensities(features, run_links, raw, corrected, sample, args.exclude_flagged)
        pooled = pool_sample(_read_table(paths["embeddings"], "embeddings", sample),
                             _read_table(paths["spectra"], "spectra", sample), sample, params, features=table)
        write_parquet(table, paths["out_features"])
        write_parquet(pooled, paths["out"])
    log.info("pooled %d run(s) with their corrected feature intensities", len(runs))
    return 0


def _columns(path: str, name: str) -> set[str]:
    """The column names of the Parquet table at ``path``; InputError naming the file when it is absent."""
    if not Path(path).exists():
        raise InputError(f"{name} table does not exist", file=str(path))
    return set(pl.read_parquet_schema(path))


def _need_column(columns: set[str], path: str, column: str, name: str) -> None:
    """InputError naming the file and the run when the table at ``path`` has no column for run ``column``."""
    if column not in columns:
        raise InputError(f"{name} has no column for run '{column}'", file=str(path), sample=column,
                         fix="rerun the link and correct stages of this study (ms2study run)")


def _read_table(path: str, name: str, sample_id: str | None = None) -> pl.DataFrame:
    """The Parquet table at ``path``; InputError naming the file and the run when it is missing or unreadable (a
    command over many runs then stops with the bad run named, not a traceback)."""
    if not Path(path).exists():
        raise InputError(f"{name} table does not exist", file=str(path), sample=sample_id)
    try:
        return pl.read_parquet(path)
    except Exception as err:  # polars raises several kinds for a truncated or foreign file
        writer = PER_RUN_WRITERS.get(name, "the stage that writes it")
        raise InputError(f"cannot read the {name} table ({err})", file=str(path), sample=sample_id,
                         fix=f"rerun '{writer}' for this run ('ms2study run' reruns what is missing)") from err


def _first_usable(paths: list[str], params: dict):
    """Prototypes learned on the first of ``paths`` (the reference run's embeddings, then the runs the alignment
    would fall back to) that has enough spectra for them, with a warning when it is not the first. A second fresh
    user's trial: a reference run without features stopped a study without a library in this job."""
    from ms2study.modelling.chemistry import prototypes_from_embeddings

    first_error = None
    for i, path in enumerate(paths):
        try:
            prototypes = prototypes_from_embeddings([_read_table(path, "embeddings")], params,
                                                    source=f"embeddings of {Path(path).parent.name}")
        except InputError as err:
            first_error = first_error or err
            continue
        if i:
            log.warning("the reference run %s has too few spectrum embeddings for the prototypes (%s); learned on %s "
                        "instead", Path(paths[0]).parent.name, first_error.message if first_error else "",
                        Path(path).parent.name)
        return prototypes
    raise first_error or InputError("no embeddings table given", fix="give --embeddings")


def _cli_prototypes(args: argparse.Namespace) -> int:
    from ms2study.modelling.chemistry import prototypes_from_embeddings, prototypes_from_library, write_prototypes

    params = load_params(args)
    if bool(args.library_index) == bool(args.embeddings):
        raise InputError("give either --library-index or --embeddings", fix="one source of spectrum embeddings")
    if args.library_index:
        prototypes = prototypes_from_library(args.library_index, params, args.model_id)
    elif args.first_usable:
        prototypes = _first_usable(args.embeddings, params)
    else:
        prototypes = prototypes_from_embeddings([_read_table(p, "embeddings") for p in args.embeddings], params,
                                                source=f"embeddings of {', '.join(Path(p).parent.name for p in args.embeddings)}")
    write_prototypes(prototypes, args.out)
    log.info("learned %d prototypes (%s) on %d spectra of %s", prototypes.centers.shape[0], prototypes.prototypes_id,
             prototypes.n_spectra, prototypes.source)
    return 0


def _cli_chemistry(args: argparse.Namespace) -> int:
    from ms2study.modelling.chemistry import chemistry_sample, read_prototypes

    params = load_params(args)
    prototypes = read_prototypes(args.prototypes)
    runs = run_paths(args, ("embeddings", "spectra", "features", "out"))
    check_run_inputs(runs, PER_RUN_WRITERS)
    for sample, paths in runs:
        features = _read_table(paths["features"], "features", sample) if paths["features"] else None
        frame = chemistry_sample(_read_table(paths["embeddings"], "embeddings", sample),
                                 _read_table(paths["spectra"], "spectra", sample), sample, prototypes, params,
                                 features=features)
        write_parquet(frame, paths["out"])
    log.info("bags of chemistry of %d run(s) over %d prototypes", len(runs), prototypes.centers.shape[0])
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``prototypes``, ``chemistry`` and ``pool`` commands to the ms2study CLI."""
    q = subparsers.add_parser("prototypes", help="learn the chemical-space prototypes once (k-means on embeddings)")
    q.add_argument("--library-index", default=None, help="library index folder with stored embeddings")
    q.add_argument("--model-id", default=None, help="encoder id of the library embeddings (default: the only one)")
    q.add_argument("--embeddings", nargs="+", default=None,
                   help="embeddings.parquet table(s) to learn on instead (e.g. the reference sample's)")
    q.add_argument("--first-usable", action="store_true",
                   help="learn on the first --embeddings table with enough spectra, not on all of them together")
    q.add_argument("--out", required=True, help="prototypes.parquet to write")
    add_params_argument(q)
    q.set_defaults(func=_cli_prototypes)

    c = subparsers.add_parser("chemistry", help="a sample's bag of chemistry: log abundance per prototype region "
                              "(or several samples' in one process: --sample-ids and {sample} path templates)")
    c.add_argument("--embeddings", required=True, help="embeddings.parquet of the sample")
    c.add_argument("--spectra", required=True, help="spectra.parquet of the sample")
    c.add_argument("--features", default=None, help="features.parquet of the sample (feature abundances)")
    c.add_argument("--prototypes", required=True, help="prototypes.parquet ('ms2study prototypes')")
    add_run_arguments(c)
    c.add_argument("--out", required=True, help="sample_chemistry.parquet to write")
    add_params_argument(c)
    c.set_defaults(func=_cli_chemistry)

    r = subparsers.add_parser("pool-corrected", help="pool a sample's spectrum embeddings with its corrected "
                              "feature intensities (drift/batch-corrected study matrix) as weights (or several "
                              "samples' in one process: --sample-ids and {sample} path templates)")
    r.add_argument("--embeddings", required=True, help="embeddings.parquet of the sample")
    r.add_argument("--spectra", required=True, help="spectra.parquet of the sample")
    r.add_argument("--features", required=True, help="features.parquet of the sample (raw intensities)")
    r.add_argument("--links", required=True, help="feature_links.parquet of the study (link stage)")
    r.add_argument("--feature-matrix", required=True, help="feature_matrix.parquet of the study (raw)")
    r.add_argument("--corrected-matrix", required=True, help="feature_matrix_corrected.parquet (correct stage)")
    r.add_argument("--exclude-flagged", action=argparse.BooleanOptionalAction, default=True,
                   help="leave the spectra of flagged consensus features out (default; as the models do)")
    add_run_arguments(r)
    r.add_argument("--out-features", required=True, help="the sample's corrected features table to write")
    r.add_argument("--out", required=True, help="the corrected sample embedding (.parquet) to write")
    add_params_argument(r)
    r.set_defaults(func=_cli_pool_corrected)

    p = subparsers.add_parser("pool", help="pool a sample's spectrum embeddings into one sample embedding")
    p.add_argument("--embeddings", required=True, help="embeddings.parquet of the sample")
    p.add_argument("--spectra", required=True, help="spectra.parquet of the sample")
    p.add_argument("--features", default=None,
                   help="features.parquet of the sample (feature abundances for method abundance_share)")
    p.add_argument("--sample-id", required=True, help="the sample's id")
    p.add_argument("--out", required=True, help="sample_embedding.parquet to write")
    add_params_argument(p)
    p.set_defaults(func=_cli_pool)
