"""Per-job start-up: every Snakemake job is a fresh ``python -m ms2study --threads N COMMAND`` process, so what a
command imports before it reads its inputs is paid once per sample (issue 15). Each per-sample and per-run command
must start without the heavy modules it does not use; the tests check which modules are imported, not how long that
takes. Measured with ``python -X importtime`` on this machine's 2 cores: torch ~1.7 s, numba ~0.3 s to import plus
~0.7 s to load its first cached kernel (numba's own registries, scipy.linalg among them), pyOpenMS ~0.2 s, PyYAML
with the schema parse ~0.05 s, against 0.3-0.5 s for a whole pool or chemistry job."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from ms2study.core.tables import SPECTRA, conform

# Never needed by a per-sample or per-run job: model fitting, plots, the workflow engine, the config validator.
NEVER = ("sklearn", "plotly", "matplotlib", "pandas", "jsonschema", "snakemake")
# The modules each command may not import to build its parser (its module and what that imports at the top).
NOT_IMPORTED = {
    "detect": (*NEVER, "torch", "numba", "scipy"),
    "spectra": (*NEVER, "torch", "numba", "scipy"),
    "embed": (*NEVER, "numba", "scipy", "pyopenms"),  # torch it needs; numba only for inputs over 1 M peaks
    "annotate": (*NEVER, "torch", "pyopenms"),  # its scores are numba kernels (numba imports scipy)
    "pool": (*NEVER, "torch", "numba", "scipy", "pyopenms", "pyarrow"),
    "gapfill": (*NEVER, "torch", "numba", "scipy"),  # pyOpenMS quantifies the gaps
    "pool-corrected": (*NEVER, "torch", "numba", "scipy", "pyopenms", "pyarrow"),
    "chemistry": (*NEVER, "torch", "numba", "scipy", "pyopenms", "pyarrow"),
}

# Runs in a fresh interpreter; prints the listed modules that the code before it imported, after a marker line.
REPORT = "\nprint('IMPORTED:' + ','.join(m for m in {modules!r} if m in sys.modules))\n"


def _imported(repo: Path, code: str, modules: tuple[str, ...]) -> list[str]:
    env = dict(os.environ, PYTHONPATH=str(repo / "workflow"))
    done = subprocess.run([sys.executable, "-c", "import sys\n" + code + REPORT.format(modules=modules)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    line = next(x for x in done.stdout.splitlines() if x.startswith("IMPORTED:"))
    return [m for m in line.removeprefix("IMPORTED:").split(",") if m]


@pytest.mark.parametrize("command", sorted(NOT_IMPORTED))
def test_a_per_sample_command_starts_without_heavy_modules(command: str, repo: Path) -> None:
    code = ("import contextlib, io\nfrom ms2study import cli\n"
            "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
            f"    cli.main(['--threads', '1', {command!r}, '--help'])\n")
    assert _imported(repo, code, NOT_IMPORTED[command]) == []


def test_an_embed_job_runs_without_numba(tmp_path: Path, repo: Path) -> None:
    """The whole embed command on one sample's spectra (peak selection included) never starts numba."""
    rng = np.random.default_rng(3)
    rows = []
    for i in range(30):
        k = int(rng.integers(0, 80))
        rows.append({"spectrum_id": f"s1:S{i}", "sample_id": "s1", "scan_index": i, "native_id": f"scan={i}",
                     "rt_s": 10.0 + i, "precursor_mz": 500.0, "precursor_charge": 1, "precursor_intensity": 1e5,
                     "feature_id": f"s1:F{i}", "mz": np.sort(rng.uniform(50, 490, k)).tolist(),
                     "intensity": rng.uniform(1, 1000, k).astype(np.float32).tolist()})
    spectra = tmp_path / "spectra.parquet"
    conform(pl.DataFrame(rows, schema_overrides=SPECTRA), SPECTRA).write_parquet(spectra)
    out = tmp_path / "embeddings.parquet"
    args = ["--threads", "1", "embed", "--spectra", str(spectra), "--out", str(out),
            "--params", json.dumps({"model": None, "batch_size": 8})]
    code = f"from ms2study import cli\nassert cli.main({args!r}) == 0\n"
    assert _imported(repo, code, ("numba", "scipy", "sklearn")) == []
    assert pl.read_parquet(out).height == 30


def test_with_the_schema_cached_a_job_does_not_import_yaml(tmp_path: Path, repo: Path) -> None:
    """The stages' defaults come from the config schema; once its JSON cache exists, reading them imports no
    PyYAML (the first reader writes the cache)."""
    code = ("from pathlib import Path\nfrom ms2study.core import params\n"
            f"params.SCHEMA_CACHE_DIR = Path({str(tmp_path)!r})\n"
            "assert params.schema_defaults('detect')['mass_error_ppm'] > 0\n")
    _imported(repo, code, ("yaml",))
    assert len(list(tmp_path.glob("config.schema.*.json"))) == 1
    assert _imported(repo, code, ("yaml",)) == []


def test_a_slurm_job_given_no_gpu_does_not_see_the_nodes_gpus(repo: Path) -> None:
    """An HPC admin's review: the library index job embeds with device auto and asks for no GPU; on a node whose GPUs
    SLURM does not hide (no cgroup device constraint), torch would compute on a GPU given to another job. A rule's
    command (``--threads``) inside a SLURM job without CUDA_VISIBLE_DEVICES (SLURM sets it where it allocated GPUs)
    hides them; one that holds GPUs, and anything outside SLURM, keeps what it sees."""
    from ms2study.core.threads import hide_unallocated_gpus

    env = {"SLURM_JOB_ID": "42"}
    assert hide_unallocated_gpus(env) and env["CUDA_VISIBLE_DEVICES"] == ""
    given = {"SLURM_JOB_ID": "42", "CUDA_VISIBLE_DEVICES": "0"}
    assert not hide_unallocated_gpus(given) and given["CUDA_VISIBLE_DEVICES"] == "0"
    local: dict[str, str] = {}
    assert not hide_unallocated_gpus(local) and "CUDA_VISIBLE_DEVICES" not in local
    # through the command line, as a rule calls it: what the command's process (and torch in it) sees
    code = ("import os, sys; from ms2study.cli import main; sys.argv = ['ms2study', '--threads', '1', 'pool', "
            "'--help']\ntry:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
            "print('CVD=' + repr(os.environ.get('CUDA_VISIBLE_DEVICES')))")
    cases = (({"SLURM_JOB_ID": "7"}, "''"), ({}, "None"), ({"SLURM_JOB_ID": "7", "CUDA_VISIBLE_DEVICES": "1"}, "'1'"))
    for extra, want in cases:
        env = {k: v for k, v in os.environ.items() if k not in ("SLURM_JOB_ID", "CUDA_VISIBLE_DEVICES")}
        done = subprocess.run([sys.executable, "-c", code], env={**env, **extra, "PYTHONPATH": str(repo / "workflow")},
                              capture_output=True, text=True, timeout=300)
        assert f"CVD={want}" in done.stdout, (extra, done.stdout[-500:], done.stderr[-2000:])
