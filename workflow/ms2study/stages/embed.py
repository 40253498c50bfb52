"""The embed stage: a sample's spectra (or a library index) through the spectrum encoder, written as a table.

The batching, peak selection and device/precision choices are in ``ms2study.encoder.inference``. Spectra without
peaks get a null embedding in the table (an embedding of the precursor mass alone would make every empty spectrum
of similar mass look alike); in library embedding matrices their rows are all zeros, so they are similar to nothing.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import polars as pl

from ms2study.core.atomic import write_parquet, write_text
from ms2study.core.errors import InputError
from ms2study.core.params import add_params_argument, load_params
from ms2study.encoder.inference import DEFAULT_PARAMS, embed_library, embed_spectra, get_model, merge_params, set_threads  # noqa: F401

log = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------------- CLI


def _cli_embed(args: argparse.Namespace) -> int:
    params = load_params(args)
    set_threads(args.threads)
    path = Path(args.spectra)
    if not path.exists():
        raise InputError("spectra table does not exist", file=str(path), fix="run the spectra stage first")
    table = embed_spectra(pl.read_parquet(path), params)
    write_parquet(table, args.out)
    if args.info:
        _model, info, device = get_model(params)
        info = dict(info, device=str(device), n_spectra=table.height,
                    n_null=int(table["embedding"].null_count()))
        write_text(json.dumps(info, indent=2, default=str) + "\n", args.info)
    return 0


def _cli_embed_library(args: argparse.Namespace) -> int:
    set_threads(args.threads)
    model_id, path = embed_library(args.index, load_params(args))
    print(f"{args.index}: embeddings for {model_id} in {path}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("embed", help="embed a sample's spectra with the spectrum encoder")
    p.add_argument("--spectra", required=True, help="spectra.parquet of one sample")
    p.add_argument("--out", required=True, help="embeddings.parquet to write")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (Snakemake's {threads})")
    p.add_argument("--info", default=None, help="optional JSON file describing the encoder and the run")
    add_params_argument(p)
    p.set_defaults(func=_cli_embed)

    q = subparsers.add_parser("embed-library", help="embed every spectrum of a library index (stored in the index)")
    q.add_argument("--index", required=True, help="library index folder written by 'ms2study index-library'")
    q.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    add_params_argument(q)
    q.set_defaults(func=_cli_embed_library)
