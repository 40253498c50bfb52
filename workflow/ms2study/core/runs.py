"""Commands that cover one run or many in one process: ``--sample-id S`` with plain paths, or ``--sample-ids S1 S2
...`` with every per-run path a template holding ``{sample}`` (pool-corrected, chemistry, gapfill): one start-up and
one read of the study tables for many runs. The pipeline runs each of them as one job over every run of the sheet,
whose output is the folder of the per-run files (a Snakemake ``directory()``: one output, so Snakemake checksums the
job's inputs once, not once per run as it would for an output file per run).

Layer 0: imports ``core.errors`` only.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ms2study.core.errors import InputError


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """``--sample-id`` (one run) or ``--sample-ids`` (several, with ``{sample}`` in every per-run path)."""
    parser.add_argument("--sample-id", default=None, help="the sample's id (one run)")
    parser.add_argument("--sample-ids", nargs="+", default=None,
                        help="several runs in one process: every per-run path option is then a template holding "
                             "{sample}, e.g. results/samples/{sample}/embeddings.parquet")


def run_paths(args: argparse.Namespace, options: tuple[str, ...]) -> list[tuple[str, dict[str, str | None]]]:
    """The runs a per-run command of the study phase covers, each with its paths: ``[(sample_id, {option: path})]``.

    One run: ``--sample-id S`` and plain paths. Many runs in one process (one start-up and one read of the study
    tables): ``--sample-ids S1 S2 ...`` and each path option a template holding ``{sample}``. Raises InputError
    when a template lacks ``{sample}`` with several runs, or when neither or both of ``--sample-id`` /
    ``--sample-ids`` is given."""
    if bool(args.sample_id) == bool(args.sample_ids):
        raise InputError("give either --sample-id (one run) or --sample-ids (several runs, path templates with "
                         "{sample})")
    samples = [args.sample_id] if args.sample_id else list(dict.fromkeys(args.sample_ids))
    runs = []
    for sample in samples:
        paths: dict[str, str | None] = {}
        for option in options:
            value = getattr(args, option)
            value = None if value is None else str(value)
            if value is not None and args.sample_ids and "{sample}" not in value:
                raise InputError(f"--{option.replace('_', '-')} '{value}' has no {{sample}} placeholder",
                                 fix="with --sample-ids, give each per-run path as a template, e.g. "
                                     "results/samples/{sample}/embeddings.parquet")
            paths[option] = value.replace("{sample}", sample) if value is not None else None
        runs.append((sample, paths))
    return runs


def check_run_inputs(runs: list[tuple[str, dict[str, str | None]]], writers: dict[str, str]) -> None:
    """Before any output is written: every run's input file of the options in ``writers`` (option -> the command
    that writes it) exists. Raises InputError naming the first missing file, its run and the command to rerun, so a
    command over many runs never stops half-way with some runs' outputs written and others not."""
    for sample, paths in runs:
        for option, writer in writers.items():
            path = paths.get(option)
            if path is not None and not Path(path).is_file():
                raise InputError(f"the {option.replace('_', ' ')} file does not exist", file=path, sample=sample,
                                 fix=f"rerun '{writer}' for this run ('ms2study run' reruns what is missing)")
