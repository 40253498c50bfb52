"""The calibrate-library stage: ``ms2study calibrate-library`` measures the null model of a library index once and
writes it as JSON (method: ``ms2study.identification.calibration``)."""

from __future__ import annotations

import argparse
import logging

from ms2study.core.params import add_params_argument, load_params
from ms2study.identification.calibration import calibrate_index

log = logging.getLogger(__name__)


def _cli(args: argparse.Namespace) -> int:
    cal = calibrate_index(args.index, load_params(args))
    cal.save(args.out)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("calibrate-library",
                              help="measure a library's identification null and isomer margin (q-values, Schymanski "
                                   "levels)")
    p.add_argument("--index", required=True, help="index folder from 'ms2study index-library' (with embeddings)")
    p.add_argument("--out", required=True, help="calibration JSON to write")
    add_params_argument(p)
    p.set_defaults(func=_cli)
