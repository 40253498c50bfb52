"""Remembering a refusal of bad input, so that a retry on the same input repeats it without redoing the work.

The profiles retry a failed job (``retries: 1`` locally, 2 on SLURM, with more memory and time), and Snakemake cannot
limit retries to some errors. A bad file would only fail again: the job that refused it writes the refusal beside its
output (``mark_for``), and a retry whose input files and parameters are unchanged raises the same ``InputError`` at
once (``known_refusal``). A replaced or edited input, or a changed setting, is read again. Used by ``ms2study detect``
(one run) and ``ms2study calibrate-library`` (one library index folder).
"""

from __future__ import annotations

import json
from pathlib import Path

from ms2study.core.atomic import write_text
from ms2study.core.errors import InputError


def mark_for(out: str | Path) -> Path:
    """Where a stage remembers that its input is bad: a hidden file beside its output ``out``."""
    return Path(out).with_name(f".{Path(out).name}.bad-input.json")


def input_key(path: str | Path) -> list:
    """What changes when an input is replaced or written: size, mtime, ctime (not settable, so a copy with the old
    mtime still counts as new) and inode; for a folder, the same for each file under it with its relative path.
    Raises OSError when ``path`` does not exist."""
    path = Path(path)
    if not path.is_dir():
        st = path.stat()
        return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]
    return [[str(f.relative_to(path)), *input_key(f)] for f in sorted(path.rglob("*")) if f.is_file()]


def known_refusal(mark: Path, inputs: str | Path, params: dict) -> InputError | None:
    """The error an earlier attempt raised for ``inputs`` (a file or folder), when neither it nor ``params`` has
    changed since; None otherwise (no mark, an unreadable mark, or a change: a changed setting may read the same file
    differently)."""
    try:
        record = json.loads(mark.read_text(encoding="utf-8"))
        if record.get("key") != json.loads(json.dumps(input_key(inputs))) or \
                record.get("params") != json.dumps(params, sort_keys=True, default=str):
            return None
        return InputError(record["message"], file=record.get("file"), sample=record.get("sample"),
                          fix=record.get("fix"))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def remember_refusal(mark: Path, inputs: str | Path, params: dict, err: InputError) -> None:
    """Write ``err`` to ``mark`` with the key of ``inputs`` and ``params`` (``known_refusal`` reads it back)."""
    write_text(json.dumps({"key": input_key(inputs), "params": json.dumps(params, sort_keys=True, default=str),
                           "message": err.message, "file": err.file, "sample": err.sample, "fix": err.fix}), mark)
