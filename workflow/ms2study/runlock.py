"""Snakemake's lock in a study folder: who holds it, and the one command that recovers from a killed run.

A run that was killed (SIGKILL, a lost node, a closed laptop) leaves Snakemake's lock in ``.snakemake/locks``.
``check_lock`` tells a live run (a Snakemake or ms2study process working in the folder on this machine, found
through /proc) from a stale lock, and ``remove_partial_files`` deletes the hidden temporary files killed jobs left.
Used by ``ms2study.runner``; imports the standard library only.
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path


def lock_files(study_dir: Path) -> list[Path]:
    """Snakemake's lock files in the study folder (present while a run works there, or left by a killed one)."""
    folder = Path(study_dir) / ".snakemake" / "locks"
    return sorted(p for p in folder.iterdir() if p.is_file()) if folder.is_dir() else []


def _own_lineage() -> set[int]:
    """This process and its ancestors (they work in the folder because they started this check)."""
    pids, pid = set(), os.getpid()
    while pid > 1 and pid not in pids:
        pids.add(pid)
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            pid = int(stat.rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            break
    return pids


def _directory_argument(args: list[str], cwd: Path) -> Path | None:
    for i, arg in enumerate(args):
        value = None
        if arg in ("-d", "--directory") and i + 1 < len(args):
            value = args[i + 1]
        elif arg.startswith("--directory="):
            value = arg.split("=", 1)[1]
        if value:
            return (cwd / value).resolve()
    return None


def processes_in(study_dir: Path) -> list[tuple[int, str]] | None:
    """(pid, command line) of Snakemake or ms2study processes working in ``study_dir`` on this machine: a
    Snakemake run (its working directory, or ``-d``) or one of its jobs. None where processes cannot be listed
    (no /proc); this process and its parents are left out."""
    proc = Path("/proc")
    if not proc.is_dir():
        return None
    study_dir = Path(study_dir).resolve()
    mine = _own_lineage()
    found = []
    for entry in proc.iterdir():
        if not entry.name.isdigit() or int(entry.name) in mine:
            continue
        try:
            args = [a.decode(errors="replace") for a in (entry / "cmdline").read_bytes().split(b"\0") if a]
            cwd = Path(os.readlink(entry / "cwd"))
        except OSError:  # gone meanwhile, a zombie, or another user's process
            continue
        text = " ".join(args)
        if "snakemake" not in text and "ms2study" not in text:
            continue
        if cwd == study_dir or _directory_argument(args, cwd) == study_dir:
            found.append((int(entry.name), text))
    return sorted(found)


def recover_command(study_dir: Path, extra: list[str]) -> str:
    return shlex.join(["ms2study", "run", str(study_dir), "--recover", *extra])


def check_lock(study_dir: Path, extra: list[str], recover: bool) -> str | None:
    """None when the run may start; otherwise the message saying why not and the command that recovers."""
    locks = lock_files(study_dir)
    if not locks:
        return None
    live = processes_in(study_dir)
    command = recover_command(study_dir, extra)
    if live:
        pid, text = live[0]
        return (
            f"another run is working in this study folder (pid {pid}: {text[:160]}).\n"
            f"Wait for it to finish. If it hangs, stop it (kill {pid}), then recover with:\n    {command}"
        )
    if recover:
        return None
    unknown = " (processes cannot be listed here)" if live is None else ""
    return (
        f"the study folder is locked by an earlier run that did not finish (killed, or its machine went down): "
        f"{locks[0].parent} holds its lock, and no Snakemake process works in this folder on this machine{unknown}.\n"
        f"Recover in one command (removes the lock, then reruns the unfinished jobs; finished outputs are kept):\n"
        f"    {command}\n"
        f"(If a run on another machine still works in this folder, wait for it to finish instead.)"
    )


def remove_partial_files(study_dir: Path) -> list[Path]:
    """Delete the hidden temporary files (``results/**/.NAME.XXXX.tmp``, see ms2study.core.atomic) that killed jobs left
    beside their outputs. Only called when no process works in the folder."""
    results = Path(study_dir) / "results"
    partial = sorted(results.rglob(".*.tmp")) if results.is_dir() else []
    for path in partial:
        if path.is_file():
            path.unlink(missing_ok=True)
    return partial
