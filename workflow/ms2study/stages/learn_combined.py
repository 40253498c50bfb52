"""The learn-combined stage: ``ms2study learn-combined`` fits the combined score's weights for an encoder
checkpoint and writes ``combined.json`` beside it (method: ``ms2study.identification.learning``)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from ms2study.core.errors import InputError
from ms2study.core.cleaning import parse_cleaning
from ms2study.core.params import add_params_argument, load_params
from ms2study.identification.combined import COMBINED_FILE
from ms2study.identification.learning import DEFAULT_PARAMS, NotEnoughData, learn_combined, merge_params  # noqa: F401  (the learn-combined parameters)

log = logging.getLogger(__name__)


def _cli_learn(args: argparse.Namespace) -> int:
    for path in args.library:
        if not Path(path).exists():
            raise InputError("library file does not exist", file=str(path))
    if not Path(args.model).is_dir():
        raise InputError("model folder does not exist", file=str(args.model), fix="train one with 'ms2study train'")
    try:
        record = learn_combined(args.library, args.model, load_params(args), parse_cleaning(args.cleaning))
    except NotEnoughData as err:
        if not args.optional:
            raise
        log.warning("combined score not learned (%s); annotate will use the fixed weights", err)
        print(f"{args.model}: no {COMBINED_FILE} written: {err}")
        return 0
    print(f"{Path(args.model) / COMBINED_FILE}: validation top-1 {record['validation_top1']}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("learn-combined",
                              help="learn the combined score's weights for an encoder (writes combined.json)")
    p.add_argument("--library", nargs="+", required=True, help="the library the encoder was trained on")
    p.add_argument("--model", required=True, help="encoder folder (from 'ms2study train'); combined.json goes here")
    p.add_argument("--optional", action="store_true",
                   help="when the library is too small to learn from, warn and exit 0 (annotate then uses fixed weights)")
    p.add_argument("--cleaning", default=None,
                   help="the config's cleaning section as JSON (as for sample spectra and the index); default: the library defaults")
    add_params_argument(p)
    p.set_defaults(func=_cli_learn)
