"""The train stage: ``ms2study train`` fits the spectrum encoder on a reference library (see
``ms2study.encoder.training`` for the method) and writes a checkpoint folder."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from ms2study.core.errors import InputError
from ms2study.core.cleaning import parse_cleaning
from ms2study.core.params import add_params_argument, load_params
from ms2study.encoder.training import DEFAULT_PARAMS, merge_params, train  # noqa: F401  (the train section's parameters)


def _cli_train(args: argparse.Namespace) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    for path in args.library:
        if not Path(path).exists():
            raise InputError("library file does not exist", file=str(path))
    record = train(args.library, args.out, load_params(args), parse_cleaning(args.cleaning))
    print(f"{args.out}: trained {record['steps']} steps in {record['seconds']} s; validation {record['best_val']}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("train", help="train the spectrum encoder on a reference library (contrastive)")
    p.add_argument("--library", nargs="+", required=True, help="library file(s): .mgf/.msp/.json, .gz allowed")
    p.add_argument("--out", required=True, help="model folder to write (model.safetensors, config.json)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--cleaning", default=None,
                   help="the config's cleaning section as JSON (as for sample spectra and the index); default: the library defaults")
    add_params_argument(p)
    p.set_defaults(func=_cli_train)
