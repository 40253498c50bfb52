"""The annotate stage: one sample's spectra searched against the library index, written as annotations.parquet.

The search, scores and confidence are in ``ms2study.identification.engine``; without a configured library the
stage writes the empty contract table so the study stages run unchanged.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import polars as pl

from ms2study.core.atomic import write_parquet
from ms2study.core.cleaning import cleaning_of
from ms2study.core.params import add_params_argument, load_params
from ms2study.identification.engine import ANNOTATION_SCHEMA, DEFAULT_PARAMS, annotate_spectra, merge_params  # noqa: F401  (the annotate section's parameters)

log = logging.getLogger(__name__)


def _cli_annotate(args: argparse.Namespace) -> int:
    params = load_params(args)
    if args.library_index is None:
        # No library configured: the contract table still exists (empty), so the study stages run unchanged.
        log.warning("no library configured (config 'library'): %s has no identifications", args.out)
        write_parquet(pl.DataFrame(schema=ANNOTATION_SCHEMA), args.out)
        return 0
    spectra = pl.read_parquet(args.spectra)
    embeddings = pl.read_parquet(args.embeddings) if args.embeddings else None
    features = (pl.read_parquet(args.features, columns=["feature_id", "rt_s"]) if args.features else None)
    out = annotate_spectra(spectra, Path(args.library_index), params, embeddings, args.calibration,
                           cleaned_with=cleaning_of(args.spectra), features=features)
    write_parquet(out, args.out)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("annotate", help="score a sample's spectra against a library index (top-k candidates)")
    p.add_argument("--spectra", required=True, help="spectra.parquet of one sample")
    p.add_argument("--library-index", default=None,
                   help="index folder from 'ms2study index-library' (without it: an empty table, no library)")
    p.add_argument("--embeddings", default=None, help="embeddings.parquet of the same sample (optional)")
    p.add_argument("--calibration", default=None,
                   help="the library's calibration JSON from 'ms2study calibrate-library' (confidence: null_model)")
    p.add_argument("--features", default=None, help="features.parquet of the same sample (optional): co-elution of "
                   "possible in-source fragments and their parents is judged on the features' apexes")
    p.add_argument("--out", required=True, help="annotations.parquet to write")
    add_params_argument(p)
    p.set_defaults(func=_cli_annotate)
