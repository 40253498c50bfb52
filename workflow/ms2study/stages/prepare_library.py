"""The prepare-library stage: ``ms2study prepare-library`` stores in a library index what every annotate job would
otherwise recompute from it (entropy-prepared peaks; decoys with ``confidence: decoys``), for the annotate
parameters it is given (method: ``ms2study.library.prepared``)."""

from __future__ import annotations

import argparse
import logging
import time

from ms2study.core.params import add_params_argument, load_params
from ms2study.identification.engine import merge_params
from ms2study.library.prepared import prepare_for_params

log = logging.getLogger(__name__)


def _cli(args: argparse.Namespace) -> int:
    p = merge_params(load_params(args))
    started = time.perf_counter()
    written = prepare_for_params(args.index, p)
    print(f"{args.index}: {len(written)} prepared array set(s) written in {time.perf_counter() - started:.1f} s "
          f"({', '.join(w.name for w in written) or 'all present already'})")
    # compile (and cache) the in-source kernel once here, before the annotate jobs fan out and each compiles it
    from ms2study.identification.insource import warm_up

    warm_up()
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("prepare-library",
                              help="store entropy-prepared peaks (and decoys) in a library index, once per library")
    p.add_argument("--index", required=True, help="library index folder written by 'ms2study index-library'")
    add_params_argument(p)  # the annotate section (its entropy and confidence parameters are used)
    p.set_defaults(func=_cli)
