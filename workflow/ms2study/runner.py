"""``ms2study run STUDY_DIR``: run the Snakemake workflow on a study folder.

Any further arguments (``--cores``, ``--profile``, ``--dry-run``, targets...) are passed to Snakemake unchanged.
Without ``--profile`` the repository's ``profiles/default`` is used; without ``--cores``/``--jobs`` all cores are.
The study is validated first, so a bad sample sheet or config stops here with the key or row named.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from ms2study import study
from ms2study.errors import InputError


def snakemake_command(study_dir: Path, extra: list[str]) -> list[str]:
    """The Snakemake command line for ``study_dir`` (used by ``run`` and by the tests)."""
    snakefile = study.REPO_ROOT / "Snakefile"
    if not snakefile.exists():
        raise InputError(
            f"the workflow's Snakefile is not at {snakefile}",
            fix="install ms2study from its source tree (pip install -e <repo>) so the workflow files are found",
        )
    command = [sys.executable, "-m", "snakemake", "-s", str(snakefile), "-d", str(study_dir)]
    if not any(a == "--profile" or a.startswith("--profile=") or a == "--workflow-profile" for a in extra):
        command += ["--workflow-profile", str(study.REPO_ROOT / "profiles" / "default")]
    if not any(a in ("-c", "--cores", "-j", "--jobs") or a.startswith(("--cores=", "--jobs=")) for a in extra):
        command += ["--cores", "all"]
    return command + list(extra)


def run_study(study_dir: Path, extra: list[str]) -> int:
    study_dir = Path(study_dir).resolve()
    if not study_dir.is_dir():
        raise InputError("study folder does not exist", file=str(study_dir),
                         fix="give the folder that holds samples.tsv (or the mzML files)")
    config = study.load_config(study_dir)
    sheet = study.load_sample_sheet(study_dir, config)
    study.check_outcomes(sheet, config, str(study_dir / config["samples"]))
    command = snakemake_command(study_dir, extra)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(study.REPO_ROOT / "workflow"), env.get("PYTHONPATH")]))
    print("+ " + " ".join(command), file=sys.stderr, flush=True)
    return subprocess.call(command, env=env)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "run",
        help="run the pipeline on a study folder (extra options go to Snakemake)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("study_dir", type=Path, help="folder with samples.tsv (or mzML files) and optional config.yaml")
    p.set_defaults(func=lambda args: run_study(args.study_dir, args.extra), accepts_extra=True)
