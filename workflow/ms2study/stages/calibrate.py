"""The calibrate-library stage: ``ms2study calibrate-library`` measures the null model of a library index once and
writes it as JSON (method: ``ms2study.identification.calibration``)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from ms2study.core import badinput
from ms2study.core.errors import InputError
from ms2study.core.params import add_params_argument, load_params
from ms2study.identification.calibration import calibrate_index

log = logging.getLogger(__name__)


def _cli(args: argparse.Namespace) -> int:
    """Calibrate one library index. A library refused as bad input (too few structures to measure a null) is
    remembered beside the output (``core.badinput``): the profile's retry on the unchanged index and parameters
    repeats the refusal at once instead of repeating the searches."""
    params = load_params(args)
    mark = badinput.mark_for(args.out)
    known = badinput.known_refusal(mark, args.index, params)
    if known is not None:
        log.info("library index %s is unchanged since an earlier attempt refused it: not searched again", args.index)
        raise known
    try:
        cal = calibrate_index(args.index, params)
    except InputError as err:
        if Path(args.index).is_dir():
            badinput.remember_refusal(mark, args.index, params, err)
        raise
    mark.unlink(missing_ok=True)
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
