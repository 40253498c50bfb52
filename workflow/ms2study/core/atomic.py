"""Atomic output writing: write under a temporary name in the same folder, then rename.

A job that fails half-way leaves only a hidden ``.tmp`` file, never a file that looks finished.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import polars as pl

from ms2study.core.errors import InputError


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    # mkstemp creates owner-only files; outputs get the usual permissions (0666 minus the umask).
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp_path, 0o666 & ~umask)
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    except BaseException as err:
        tmp_path.unlink(missing_ok=True)
        if disk_full(err):
            raise InputError(f"no space left on the device holding {target.parent} while writing {target.name}",
                             file=str(target), fix="free disk space (or move the study to a larger disk) and rerun; "
                             "nothing was written, earlier results are untouched") from err
        raise


def disk_full(err: BaseException) -> bool:
    """True for a write that failed because the device is full (ENOSPC, or the same error as text from a writer
    implemented outside Python, e.g. polars' "No space left on device (os error 28)")."""
    if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    text = str(err)
    return "No space left on device" in text or "os error 28" in text or "Disk quota exceeded" in text


def write_parquet(df: pl.DataFrame, path: str | os.PathLike, metadata: dict[str, str] | None = None) -> None:
    """Write ``df`` to ``path`` as Parquet (zstd), atomically; ``metadata``: key-value pairs stored in the file."""
    with atomic_path(path) as tmp:
        df.write_parquet(tmp, compression="zstd", metadata=metadata)


def write_text(text: str, path: str | os.PathLike) -> None:
    """Write text to ``path`` atomically (UTF-8)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_text_if_changed(text: str, path: str | os.PathLike) -> bool:
    """Write ``text`` to ``path`` atomically (UTF-8) unless the file already holds exactly these bytes; returns
    whether it wrote. An unchanged file keeps its modification time, so what reads it is not rerun for nothing."""
    data = text.encode("utf-8")
    target = Path(path)
    try:
        if target.read_bytes() == data:
            return False
    except FileNotFoundError:
        pass
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)
    return True
