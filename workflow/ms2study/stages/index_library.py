"""``ms2study index-library``: read library files (MGF / MSP / GNPS JSON) into one cached index folder.

A thin stage: the command-line arguments go to ``ms2study.library.index.index_library``, which reads, cleans,
orders and writes the index (see that module); this module prints the one-line account. Imports ms2study.core
and ms2study.library only.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ms2study.core.params import add_params_argument, load_params
from ms2study.library.index import index_library


def _cli(args: argparse.Namespace) -> int:
    index = index_library(args.library, args.out, load_params(args))
    m = index.manifest
    print(
        f"{args.out}: {m['n_spectra']} spectra indexed, {m['n_skipped']} malformed entries skipped, "
        f"{m['n_empty_after_cleaning']} empty after cleaning, {m['n_altered']} altered "
        f"(each named in the log and, the first 100, in {Path(args.out) / 'manifest.json'})"
    )
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``index-library`` subcommand (``--library FILE...``, ``--out DIR``, ``--params``)."""
    p = subparsers.add_parser("index-library", help="read MGF/MSP/GNPS-JSON libraries into one cached index folder")
    p.add_argument("--library", nargs="+", required=True, help="library file(s): .mgf, .msp, GNPS .json (.gz allowed)")
    p.add_argument("--out", required=True, help="index folder, e.g. results/library/{name}/")
    add_params_argument(p)
    p.set_defaults(func=_cli)
