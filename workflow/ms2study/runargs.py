"""Options given to ``ms2study run`` that neither it nor Snakemake knows (``foreign_options``).

``ms2study run`` passes every option it does not define to Snakemake; a user who gives it an option of another
ms2study command (``--library-size`` of ``simulate``, as a trial did) got Snakemake's usage text and "unrecognized
arguments". The options are checked with Snakemake's own parser (``snakemake.cli.get_argument_parser``, with the
installed executor plugins' options), and an option of ``ms2study simulate`` is named as such. Used by
``ms2study.runner``.
"""

from __future__ import annotations

import argparse
import difflib
from functools import lru_cache

from ms2study.core.errors import InputError


@lru_cache(maxsize=1)
def _snakemake_parser() -> argparse.ArgumentParser:
    """Snakemake's command-line parser, with the installed executor plugins' options (built once)."""
    from snakemake.cli import get_argument_parser

    return get_argument_parser()


def _simulate_options() -> set[str]:
    from ms2study.cli import build_parser

    parser = build_parser("simulate")
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {o for a in sub.choices["simulate"]._actions for o in a.option_strings} - {"-h", "--help"}


def foreign_options(extra: list[str]) -> list[str]:
    """The options in ``extra`` (the arguments ``ms2study run`` passes on) that Snakemake's parser does not know,
    without their values (``--library-size=3000`` -> ``--library-size``). Empty when all are known, and when the
    parser cannot read them for another reason (a bad value: Snakemake then says what is wrong itself)."""
    try:
        unknown = _snakemake_parser().parse_known_args(list(extra))[1]
    except (SystemExit, Exception):  # noqa: BLE001 - Snakemake names a bad value better than this check could
        return []
    return [u.split("=", 1)[0] for u in unknown if u.startswith("-") and u not in ("-", "--")]


def refuse_foreign_options(extra: list[str]) -> None:
    """Raise ``InputError`` naming the options of ``extra`` that neither ``ms2study run`` nor Snakemake knows, and
    which of them belong to ``ms2study simulate`` (the study's config.yaml is what ``run`` reads). Nothing when all
    are known."""
    foreign = foreign_options(extra)
    if not foreign:
        return
    of_simulate = [o for o in foreign if o in _simulate_options()]
    names = ", ".join(f"'{o}'" for o in foreign)
    known = [o for o in _snakemake_parser()._option_string_actions if o.startswith("--")] + ["--recover"]
    near = {o: difflib.get_close_matches(o, known, n=1, cutoff=0.75) for o in foreign}
    meant = [f"'{o}' for '{m[0]}'" for o, m in near.items() if m]  # trial AW: --corse 1 got no hint
    fix = ((f"did you mean {', '.join(meant)}? Else l" if meant else "l")
           + f"eave {'it' if len(foreign) == 1 else 'them'} out: run takes --recover and Snakemake's options "
           "(snakemake --help lists them)")
    if of_simulate:
        fix = (f"{', '.join(of_simulate)} {'is an option' if len(of_simulate) == 1 else 'are options'} of "
               "'ms2study simulate', which writes the study; 'ms2study run' reads the study's config.yaml: give "
               "such settings there, or to simulate when making the study")
    raise InputError(f"{names}: not an option of 'ms2study run' nor of Snakemake, to which run passes the options it "
                     "does not take itself", fix=fix)
