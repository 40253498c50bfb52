"""SLURM job states as the SLURM executor plugin reads them: a cancelled job must read as failed.

``sacct`` reports a job cancelled by a user or an administrator as ``CANCELLED by <uid>``. The executor plugin
(snakemake-executor-plugin-slurm 2.8.0, the version pyproject.toml pins and the newest on PyPI) compares each state
with its list of failed states word for word, so ``CANCELLED by 0`` matched none of them: the job was taken as still
queued and waited on for ever, with an empty queue and no message (a fresh-user trial, after ``scancel``). The SLURM
documentation (sacct, JOB STATE CODES) lists ``CANCELLED`` as the state; the ``by <uid>`` suffix is sacct's.

``read_cancelled_as_failed`` wraps the plugin's status query so that such a state reads ``CANCELLED``, which the
plugin reports as a failed job (retried per ``retries`` / ``restart-times``, then named in the run's failure
summary). The Snakefile calls it when Snakemake reads the workflow, in the process that polls SLURM. Nothing
happens when the plugin is not installed or no longer has that function.
"""

from __future__ import annotations

import functools
import logging

log = logging.getLogger(__name__)


def normalised_state(state: str) -> str:
    """A SLURM job state with sacct's ``by <uid>`` suffix removed: ``"CANCELLED by 0"`` -> ``"CANCELLED"``; any
    other state unchanged."""
    text = str(state).strip()
    return "CANCELLED" if text.startswith("CANCELLED") else text


def read_cancelled_as_failed() -> bool:
    """Wrap ``snakemake_executor_plugin_slurm.query_job_status`` (the name the plugin's status check calls) so its
    states pass through ``normalised_state``. Returns True when wrapped now or before, False when the plugin or the
    function is absent. Idempotent."""
    try:
        import snakemake_executor_plugin_slurm as plugin
    except ImportError:
        return False
    original = getattr(plugin, "query_job_status", None)
    if original is None:
        return False
    if getattr(original, "_ms2study_states", False):
        return True

    @functools.wraps(original)
    async def query_job_status(*args, **kwargs):
        states, duration = await original(*args, **kwargs)
        if states:
            states = {job: normalised_state(state) for job, state in states.items()}
        return states, duration

    query_job_status._ms2study_states = True
    plugin.query_job_status = query_job_status
    return True
