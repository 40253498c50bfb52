"""The ``ms2study`` command line: one subcommand per stage, plus ``run`` and ``simulate``.

Each stage module defines ``register(subparsers)``, which adds its subcommand(s) and sets
``func`` to a callable taking the parsed arguments. The Snakemake rules call these same commands.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from ms2study import __version__
from ms2study.core.errors import InputError

# Subcommand -> the module that registers it, in --help order. Only the module of the command given is imported,
# so a rule calling `ms2study detect` does not pay for importing torch.
COMMANDS = {
    "run": "ms2study.runner",
    "simulate": "ms2study.simulate.study",
    "detect": "ms2study.stages.detect",
    "spectra": "ms2study.stages.spectra",
    "embed": "ms2study.stages.embed",
    "train": "ms2study.stages.train",
    "embed-library": "ms2study.stages.embed",
    "learn-combined": "ms2study.stages.learn_combined",
    "index-library": "ms2study.stages.index_library",
    "annotate": "ms2study.stages.annotate",
    "score": "ms2study.stages.search",
    "calibrate-library": "ms2study.stages.calibrate",
    "pool": "ms2study.stages.pool",
    "prototypes": "ms2study.stages.pool",
    "chemistry": "ms2study.stages.pool",
    "link": "ms2study.stages.link",
    "identify": "ms2study.stages.identify",
    "differential": "ms2study.stages.differential",
    "models": "ms2study.stages.models",
    "model": "ms2study.stages.models",
    "report": "ms2study.stages.report",
}
STAGE_MODULES = list(dict.fromkeys(COMMANDS.values()))


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ms2study", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"ms2study {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    modules = [COMMANDS[command]] if command in COMMANDS else STAGE_MODULES
    for name in modules:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    command = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(command)
    args, extra = parser.parse_known_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    if extra and not getattr(args, "accepts_extra", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if getattr(args, "accepts_extra", False):
        args.extra = extra
    try:
        result = args.func(args)
    except InputError as err:
        print(f"ms2study {args.command}: error: {err}", file=sys.stderr)
        return 1
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
