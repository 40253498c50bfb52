"""A SLURM job cancelled by a user reads as failed to the executor plugin (ms2study.slurmstates): the plugin's own
status query runs a real command whose output is sacct's, ``<job id>|<state>``."""

from __future__ import annotations

import asyncio
import logging

import pytest

from ms2study import slurmstates

plugin = pytest.importorskip("snakemake_executor_plugin_slurm")


def test_a_cancelled_job_reads_cancelled_and_other_states_are_kept() -> None:
    assert slurmstates.read_cancelled_as_failed() and slurmstates.read_cancelled_as_failed()  # idempotent
    query = plugin.query_job_status
    assert query._ms2study_states
    command = "printf '31|COMPLETED\\n34|CANCELLED by 0\\n35|RUNNING\\n36|CANCELLED\\n37|OUT_OF_MEMORY\\n'"
    states, duration = asyncio.run(query(command, logging.getLogger("test")))
    assert states == {"31": "COMPLETED", "34": "CANCELLED", "35": "RUNNING", "36": "CANCELLED",
                      "37": "OUT_OF_MEMORY"} and duration >= 0
    # unwrapped, the plugin keeps sacct's text, which its list of failed states does not hold (the hang it fixes)
    raw, _ = asyncio.run(query.__wrapped__(command, logging.getLogger("test")))
    assert raw["34"] == "CANCELLED by 0"
    # a failed query stays a failed query
    assert asyncio.run(query("false", logging.getLogger("test"))) == (None, None)
    assert slurmstates.normalised_state(" CANCELLED by 1234 ") == "CANCELLED"
    assert slurmstates.normalised_state("NODE_FAIL") == "NODE_FAIL"
