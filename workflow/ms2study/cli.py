"""The ``ms2study`` command line: one subcommand per stage, plus ``run`` and ``simulate``.

Each stage module defines ``register(subparsers)``, which adds its subcommand(s) and sets
``func`` to a callable taking the parsed arguments. The Snakemake rules call these same commands, each with
``--threads {threads}`` before the command: ``ms2study --threads N COMMAND ...`` limits numba, torch, OpenMP and BLAS
to N threads (``core.threads.limit_threads``) before the command's module is imported, and inside a SLURM job given no
GPU hides the node's GPUs (``core.threads.hide_unallocated_gpus``).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import re
import socket
import sys

from ms2study import __version__
from ms2study.core.errors import InputError
from ms2study.core.threads import hide_unallocated_gpus, limit_threads

# Subcommand -> the module that registers it, in --help order. Only the module of the command given is imported,
# so a rule calling `ms2study detect` does not pay for importing torch.
COMMANDS = {
    "run": "ms2study.runner",
    "simulate": "ms2study.simulate.command",
    "detect": "ms2study.stages.detect",
    "spectra": "ms2study.stages.spectra",
    "embed": "ms2study.stages.embed",
    "train": "ms2study.stages.train",
    "embed-library": "ms2study.stages.embed",
    "learn-combined": "ms2study.stages.learn_combined",
    "index-library": "ms2study.stages.index_library",
    "prepare-library": "ms2study.stages.prepare_library",
    "annotate": "ms2study.stages.annotate",
    "score": "ms2study.stages.search",
    "calibrate-library": "ms2study.stages.calibrate",
    "pool": "ms2study.stages.pool",
    "prototypes": "ms2study.stages.pool",
    "chemistry": "ms2study.stages.pool",
    "pool-corrected": "ms2study.stages.pool",
    "link": "ms2study.stages.link",
    "gapfill": "ms2study.stages.gapfill",
    "correct": "ms2study.stages.correct",
    "identify": "ms2study.stages.identify",
    "differential": "ms2study.stages.differential",
    "qc": "ms2study.stages.qc",
    "attribution": "ms2study.stages.attribution",
    "models": "ms2study.stages.models",
    "model": "ms2study.stages.models",
    "report": "ms2study.stages.report",
    "export": "ms2study.stages.export",
}
STAGE_MODULES = list(dict.fromkeys(COMMANDS.values()))


_ROLE = re.compile(r":[a-z]+:`~?([^`]+)`")  # :mod:`x`, :func:`~x`
_LITERAL = re.compile(r"``([^`]+)``")


def plain(text: str | None) -> str | None:
    """``text`` without reST markup (``:mod:`x``` and double-backquoted literals become their text), for
    --help: the descriptions are the modules' docstrings, written in reST."""
    if not text:
        return text
    return _LITERAL.sub(r"\1", _ROLE.sub(r"\1", text))


def _plain_help(parser: argparse.ArgumentParser) -> None:
    """Strip reST markup from ``parser``'s description, epilog and option help, and from its subcommands'."""
    parser.description, parser.epilog = plain(parser.description), plain(parser.epilog)
    for action in parser._actions:
        action.help = plain(action.help)
        if isinstance(action, argparse._SubParsersAction):
            for choice in action._choices_actions:
                choice.help = plain(choice.help)
            for subparser in dict.fromkeys(action.choices.values()):
                _plain_help(subparser)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ms2study", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"ms2study {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument(
        "--threads",
        type=int,
        metavar="N",
        dest="global_threads",
        help="CPU threads of numba, torch, OpenMP and BLAS (before the command; the rules pass their {threads})",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    modules = [COMMANDS[command]] if command in COMMANDS else STAGE_MODULES
    for name in modules:
        importlib.import_module(name).register(sub)
    _plain_help(parser)
    return parser


def _global_threads(argv: list[str]) -> tuple[str | None, list[str]]:
    """(the value of ``--threads`` given before the command or None, ``argv`` without it).

    Only options before the first non-option word are global: after the command, ``--threads`` belongs to the command
    (``embed`` and ``train`` have their own).
    """
    for i, arg in enumerate(argv):
        if not arg.startswith("-"):
            break
        if arg == "--threads":
            return (argv[i + 1] if i + 1 < len(argv) else ""), argv[:i] + argv[i + 2:]
        if arg.startswith("--threads="):
            return arg.split("=", 1)[1], argv[:i] + argv[i + 1:]
    return None, argv


def slurm_job_line(environ: dict | None = None) -> str | None:
    """Inside a SLURM job, log (and return) which job, step and node runs this command, so a rule's own log
    (``logs/<rule>/<sample>.log``) names the SLURM job that ran it: a group job's comment names only its group and
    rules (an HPC admin's trial), and ``sacct -j JOB`` then gives what it asked for and used. None outside SLURM."""
    env = os.environ if environ is None else environ
    job = env.get("SLURM_JOB_ID")
    if not job:
        return None
    step = env.get("SLURM_STEP_ID")
    line = (f"SLURM job {job}{f' step {step}' if step else ''} on {env.get('SLURMD_NODENAME') or socket.gethostname()}"
            f" ({env.get('SLURM_CPUS_PER_TASK') or env.get('SLURM_CPUS_ON_NODE') or '?'} CPUs)")
    logging.getLogger("ms2study").info(line)
    return line


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    threads, argv = _global_threads(argv)
    if threads is not None:
        if not threads.isdigit() or int(threads) < 1:
            print(f"ms2study: error: --threads needs a whole number of at least 1 (got '{threads}')", file=sys.stderr)
            return 2
        limit_threads(int(threads))  # before build_parser imports the command's module (numba, torch)
        hide_unallocated_gpus()  # a rule's job on SLURM given no GPU computes on none (before torch is imported)
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
    slurm_job_line()
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
