"""The ``ms2study`` command line: one subcommand per stage, plus ``run`` and ``simulate``.

Each stage module defines ``register(subparsers)``, which adds its subcommand(s) and sets
``func`` to a callable taking the parsed arguments. The Snakemake rules call these same commands.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys

from ms2study import __version__
from ms2study.errors import InputError

# Subcommand -> the module that registers it, in --help order. Only the module of the command given is imported,
# so a rule calling `ms2study detect` does not pay for importing torch.
COMMANDS = {
    "run": "ms2study.runner",
    "simulate": "ms2study.simulate",
    "detect": "ms2study.detect",
    "spectra": "ms2study.spectra",
    "embed": "ms2study.embed",
    "train": "ms2study.train",
    "embed-library": "ms2study.embed",
    "learn-combined": "ms2study.combine",
    "index-library": "ms2study.library",
    "annotate": "ms2study.annotate",
    "score": "ms2study.search",
    "calibrate-library": "ms2study.calibrate",
    "pool": "ms2study.pool",
    "prototypes": "ms2study.pool",
    "chemistry": "ms2study.pool",
    "link": "ms2study.link",
    "identify": "ms2study.identify",
    "differential": "ms2study.differential",
    "models": "ms2study.models",
    "model": "ms2study.models",
    "report": "ms2study.report",
}
STAGE_MODULES = list(dict.fromkeys(COMMANDS.values()))


def add_params_argument(parser: argparse.ArgumentParser) -> None:
    """``--params JSON``: the stage's config section (what the rule passes), as a JSON object."""
    parser.add_argument("--params", default="{}", help="stage parameters as a JSON object (config section)")


def load_params(args: argparse.Namespace) -> dict:
    try:
        params = json.loads(args.params)
    except json.JSONDecodeError as err:
        raise InputError(f"--params is not valid JSON ({err})", fix="pass a JSON object, e.g. '{\"ppm\": 10}'") from err
    if not isinstance(params, dict):
        raise InputError("--params must be a JSON object")
    return params


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ms2study", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"ms2study {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    modules = [COMMANDS[command]] if command in COMMANDS else STAGE_MODULES
    for name in modules:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as err:
            if err.name == name:  # stage not written yet
                continue
            raise
        module.register(sub)
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
