"""Atomic output writing: write under a temporary name in the same folder, then rename.

A job that fails half-way leaves only a hidden ``.tmp`` file, never a file that looks finished.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import polars as pl


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
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def write_parquet(df: pl.DataFrame, path: str | os.PathLike, metadata: dict[str, str] | None = None) -> None:
    """Write ``df`` to ``path`` as Parquet (zstd), atomically; ``metadata``: key-value pairs stored in the file."""
    with atomic_path(path) as tmp:
        df.write_parquet(tmp, compression="zstd", metadata=metadata)


def write_text(text: str, path: str | os.PathLike) -> None:
    """Write text to ``path`` atomically (UTF-8)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
