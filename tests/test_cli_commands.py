"""Every command the stage modules register is in ``cli.COMMANDS`` under its own module: a command missing there
makes ``ms2study <command>`` import every stage (torch included) before it runs, seconds of start-up in each of
thousands of jobs (measured: 6.5 s of CPU for ``pool-corrected --help`` before, 0.6 s after)."""

from __future__ import annotations

import argparse
import importlib

from ms2study import cli


def test_every_registered_command_maps_to_its_own_module() -> None:
    registered: dict[str, str] = {}
    for module in cli.STAGE_MODULES:
        parser = argparse.ArgumentParser()
        sub = parser.add_subparsers(dest="command")
        importlib.import_module(module).register(sub)
        for name in sub.choices:
            registered[name] = module
    assert registered == {name: module for name, module in cli.COMMANDS.items() if name in registered}
    assert set(registered) == set(cli.COMMANDS)


def test_a_command_builds_only_its_module_parser() -> None:
    parser = cli.build_parser("pool-corrected")
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert set(sub.choices) == {"pool", "pool-corrected", "prototypes", "chemistry"}


def test_a_command_inside_a_slurm_job_logs_its_job_id(caplog) -> None:
    """A rule's log names the SLURM job that ran it (tests/test_slurm.py checks it on a real cluster)."""
    import logging

    from ms2study.cli import slurm_job_line

    assert slurm_job_line({}) is None
    with caplog.at_level(logging.INFO, logger="ms2study"):
        line = slurm_job_line({"SLURM_JOB_ID": "4711", "SLURM_STEP_ID": "3", "SLURMD_NODENAME": "node7",
                               "SLURM_CPUS_PER_TASK": "2"})
    assert line == "SLURM job 4711 step 3 on node7 (2 CPUs)" and line in caplog.text
