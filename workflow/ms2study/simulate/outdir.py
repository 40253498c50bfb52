"""The folder a simulated study is written into: built whole in a hidden sibling folder, then moved into place.

Both modes of ``ms2study simulate`` (synthetic and spike-in) write through :func:`study_folder`, so a run that
fails or is interrupted leaves no folder that looks like a finished study: until the end, OUTDIR is untouched and
the files grow in ``.OUTDIR.<random>.partial`` beside it (inside it when only OUTDIR is writable), removed on an
error, Ctrl-C or SIGTERM (the CLI's); only a killed process leaves it behind, hidden and never read. An OUTDIR
that already holds a study is refused unless ``overwrite``; then only the study's own files (``STUDY_ENTRIES``)
are replaced, and ``samples.tsv``, what the pipeline reads first, is removed first and moved in last. A new file
byte-identical to the one in place leaves that one as it was (its modification time too, so Snakemake reruns
nothing for it). Nothing else is deleted: other files in OUTDIR (the user's own, ``results/``) and files in
``mzml/`` that the new study does not write (a run the user added, or a run of an earlier, larger study) stay, and
a warning names the latter, which the new ``samples.tsv`` does not list.
"""

from __future__ import annotations

import contextlib
import filecmp
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from ms2study.core.atomic import disk_full
from ms2study.core.errors import InputError

log = logging.getLogger(__name__)

# Everything either mode writes; a folder holding any of these holds a study.
STUDY_ENTRIES = ("samples.tsv", "mzml", "ground_truth.tsv", "library.mgf", "config.yaml", "simulation.json",
                 "batch_truth.json", "contaminants.tsv", "adduct_truth.tsv")
FINISHED = "simulation.json"  # written last by both modes: a study simulate finished


def check_outdir(outdir: Path, overwrite: bool = False) -> None:
    """Raise InputError naming ``outdir`` when it cannot take a study: it (or a folder above it) is a file, or it
    holds a study (any of ``STUDY_ENTRIES``) and not ``overwrite``, or it holds one that ``ms2study simulate`` did
    not finish (no ``simulation.json``: maybe the user's own runs, never deleted here)."""
    outdir = Path(outdir)
    for folder in (outdir, *outdir.parents):
        if folder.exists() and not folder.is_dir():
            raise InputError(f"OUTDIR '{outdir}' is a file, not a folder" if folder == outdir else
                             f"OUTDIR '{outdir}' lies under '{folder}', which is a file",
                             fix="pass a folder path for OUTDIR (it is created when missing)")
        if folder.exists():
            break
    if not outdir.is_dir():
        return
    found = [name for name in STUDY_ENTRIES if (outdir / name).exists()]
    if not found:
        return
    if not (outdir / FINISHED).is_file():
        raise InputError(f"OUTDIR '{outdir}' already holds {', '.join(found)} but no {FINISHED}: not a study "
                         "that ms2study simulate wrote, so it is not overwritten",
                         fix="pass a new or empty folder as OUTDIR (or move those files away first)")
    if not overwrite:
        raise InputError(f"OUTDIR '{outdir}' already holds a simulated study ({', '.join(found)})",
                         fix="pass --overwrite to replace it, or a new or empty folder as OUTDIR")


@contextlib.contextmanager
def study_folder(outdir: Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a new empty folder beside ``outdir`` (in it, when only it is writable) to write the study into; when
    the block succeeds, move its contents into ``outdir`` (created, with missing parents; an earlier simulated
    study there replaced when ``overwrite``). On any error, KeyboardInterrupt or SystemExit, the folder and any
    parents created are removed and ``outdir`` is as it was. Raises InputError from :func:`check_outdir`, and for
    a full disk or a folder that cannot be created."""
    outdir = Path(outdir)
    check_outdir(outdir, overwrite)
    stale = sorted(outdir.parent.glob(f".{outdir.name}.*.partial")) if outdir.parent.is_dir() else []
    if stale:  # a killed run's half-written study (hidden, never read)
        log.warning("%s: half-written studies of an earlier, killed run: %s; delete them to reclaim the space",
                    outdir.parent, ", ".join(p.name for p in stale))
    created = [p for p in (outdir.parent, *outdir.parent.parents) if not p.exists()]
    try:
        outdir.parent.mkdir(parents=True, exist_ok=True)
        try:
            tmp = Path(tempfile.mkdtemp(prefix=f".{outdir.name}.", suffix=".partial", dir=outdir.parent))
        except PermissionError:
            if not outdir.is_dir():
                raise
            # an OUTDIR of the user's in a folder they cannot write to: build the study inside it instead
            tmp = Path(tempfile.mkdtemp(prefix=".simulate.", suffix=".partial", dir=outdir))
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)  # mkdtemp's folder is owner-only; OUTDIR gets a new folder's usual mode
    except OSError as err:
        _remove_empty(created)
        raise InputError(f"cannot create the study folder ({err.strerror or err})", file=str(outdir),
                         fix="pass an OUTDIR in a folder you can write to") from err
    try:
        yield tmp
        _move_into_place(tmp, outdir)
    except BaseException as err:
        shutil.rmtree(tmp, ignore_errors=True)
        _remove_empty(created)
        if isinstance(err, OSError) and disk_full(err):
            raise InputError(f"no space left on the device holding {outdir.parent}", file=str(outdir),
                             fix="free disk space (or pass an OUTDIR on a larger disk) and rerun; nothing was "
                                 "written") from err
        raise


def _move_into_place(tmp: Path, outdir: Path) -> None:
    """``tmp`` becomes ``outdir`` (a rename when ``outdir`` does not exist), else its entries replace those of
    the same names in ``outdir`` (module docstring: identical files kept as they were, folders merged file by file,
    nothing else deleted), ``samples.tsv`` removed first and moved in last."""
    if not outdir.exists():
        os.rename(tmp, outdir)
        return
    # (tmp may lie inside outdir, see study_folder; it is none of STUDY_ENTRIES)
    new = {path.name for path in tmp.iterdir()}
    sheet = outdir / "samples.tsv"
    if sheet.exists() and not _same(tmp / "samples.tsv", sheet):
        sheet.unlink()  # the folder stops looking like a study first
    changed: list[str] = []
    for name in STUDY_ENTRIES:  # the earlier study's files the new one does not write (e.g. batch_truth.json)
        path = outdir / name
        if name not in new and path.exists() and not path.is_dir():
            path.unlink()
            changed.append(name)
    left: list[str] = []
    for path in sorted(tmp.iterdir(), key=lambda p: p.name == "samples.tsv"):
        changed += _replace(path, outdir / path.name, left)
    shutil.rmtree(tmp, ignore_errors=True)
    log.info("replaced the study in %s: %s", outdir,
             f"{len(changed)} files changed ({', '.join(changed[:8])}{', ...' if len(changed) > 8 else ''})"
             if changed else "every file was identical to the one in place; nothing changed")
    if left:
        log.warning("kept %d file(s) of %s that the new study does not write and its samples.tsv does not list "
                    "(runs you added, or runs of the earlier study): %s; delete them if they are not yours",
                    len(left), outdir, ", ".join(left))
    if changed and (outdir / "results").exists():
        log.warning("%s holds results/ of the earlier study: the pipeline reruns what the changed files feed "
                    "(files left identical keep their results)", outdir)


def _same(a: Path, b: Path) -> bool:
    """Whether ``a`` and ``b`` are both plain files with the same bytes."""
    return a.is_file() and b.is_file() and not b.is_symlink() and filecmp.cmp(a, b, shallow=False)


def _replace(path: Path, target: Path, left: list[str]) -> list[str]:
    """Move ``path`` (a file or folder of the new study) to ``target``: an identical file stays as it was, a folder
    is merged file by file (files of ``target`` not in ``path`` are kept and appended to ``left``). Returns the
    names (relative to the study) of the files that changed."""
    if path.is_dir() and target.is_dir() and not target.is_symlink():
        changed = []
        theirs = {child.name for child in path.iterdir()}  # before the loop moves the changed ones out of ``path``
        for child in sorted(path.iterdir()):
            changed += [f"{target.name}/{name}" for name in _replace(child, target / child.name, left)]
        left += [f"{target.name}/{child.name}" for child in sorted(target.iterdir()) if child.name not in theirs]
        return changed
    if _same(path, target):
        return []
    if target.is_dir() and not target.is_symlink():
        shutil.rmtree(target)
    elif target.exists() or target.is_symlink():
        target.unlink()
    os.rename(path, target)
    return [target.name]


def _remove_empty(folders: list[Path]) -> None:
    """Remove the folders (deepest first) that are still empty: those created for a study that was not written."""
    for folder in folders:
        with contextlib.suppress(OSError):
            folder.rmdir()
