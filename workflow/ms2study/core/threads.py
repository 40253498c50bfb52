"""How many CPU threads a command may use: one call that limits numba, torch, polars, OpenMP and BLAS together.

``ms2study --threads N COMMAND`` (what every rule passes as its declared ``{threads}``) calls ``limit_threads``
before the command's module is imported. Numba sizes its thread pool from ``NUMBA_NUM_THREADS`` when it is first
imported, polars from ``POLARS_MAX_THREADS``, torch and the OpenMP/BLAS libraries (pyOpenMS, scikit-learn, numpy)
read ``OMP_NUM_THREADS`` and the BLAS variables likewise, so setting the environment first is enough; a library already imported in this process is
limited through its own call instead. Snakemake exports the OpenMP/BLAS variables for each job itself, but not
numba's, whose kernels would otherwise use every core whatever the rule declares. This module imports nothing from
ms2study.
"""

from __future__ import annotations

import os
import sys

# The variables Snakemake sets from a job's threads, plus numba's and polars' own.
THREAD_VARIABLES = (
    "NUMBA_NUM_THREADS",
    "OMP_NUM_THREADS",
    "GOTO_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    # polars sizes its thread pool once, at import (an HPC admin's review: 16 threads in a --threads 1 job; harmless
    # under CPU affinity, which polars follows, but not every cluster binds jobs to their cores)
    "POLARS_MAX_THREADS",
)


def limit_threads(threads: int) -> None:
    """Let numba, torch, OpenMP and BLAS in this process (and its children) use at most ``threads`` threads.

    Sets ``THREAD_VARIABLES`` in the environment; when numba or torch is already imported, calls
    ``numba.set_num_threads`` (capped by the pool numba started with; NUMBA_NUM_THREADS is then left alone) and
    ``torch.set_num_threads``.
    Raises ``ValueError`` for a count below 1.
    """
    threads = int(threads)
    if threads < 1:
        raise ValueError(f"threads must be at least 1 (got {threads})")
    numba_imported = "numba" in sys.modules
    for name in THREAD_VARIABLES:
        # Once numba is imported its pool size is fixed: changing NUMBA_NUM_THREADS then makes its next compile fail.
        if not (numba_imported and name == "NUMBA_NUM_THREADS"):
            os.environ[name] = str(threads)
    if numba_imported:
        import numba

        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    if "torch" in sys.modules:
        import torch

        torch.set_num_threads(threads)


def hide_unallocated_gpus(environ: dict | None = None) -> bool:
    """Inside a SLURM job that was allocated no GPU, hide the node's GPUs from this process and its children.

    SLURM sets ``CUDA_VISIBLE_DEVICES`` for a job (or job step) that holds GPUs; a job that asked for none sees every
    GPU of its node unless the cluster constrains devices with cgroups (``ConstrainDevices``), and torch's device
    ``auto`` would then compute on a GPU the scheduler gave to another job (an HPC admin's review: the library index's
    embedding). So where ``SLURM_JOB_ID`` is set and ``CUDA_VISIBLE_DEVICES`` is not, it is set to the empty string.
    Outside SLURM nothing changes. ``environ``: the environment to change (default ``os.environ``). Returns True when
    it hid them.
    """
    env = os.environ if environ is None else environ
    if env.get("SLURM_JOB_ID") and "CUDA_VISIBLE_DEVICES" not in env:
        env["CUDA_VISIBLE_DEVICES"] = ""
        return True
    return False
