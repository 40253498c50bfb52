"""Library embeddings stored in an index folder: one L2-normalised float32 matrix per encoder model.

The matrix for model ``model_id`` lives at ``<index>/embeddings/<safe_name(model_id)>.npy`` with row ``i`` the
embedding of library spectrum ``i``. This module holds the naming rule, the reader and the writer; the index
(ms2study.library.index) reaches its embeddings through them. Imports only ms2study.core.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from ms2study.core.atomic import atomic_path


def safe_name(text: str) -> str:
    """``text`` with every run of characters other than letters, digits, ``.``, ``_`` and ``-`` made one ``_``
    (the file name a model id gets)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text)


def embedding_path(index_dir: str | os.PathLike, model_id: str) -> Path:
    """Where the embeddings of ``model_id`` are stored in the index folder ``index_dir``."""
    return Path(index_dir) / "embeddings" / f"{safe_name(model_id)}.npy"


def read_embeddings(index_dir: str | os.PathLike, model_id: str) -> np.ndarray | None:
    """The stored embeddings of ``model_id`` (memory-mapped, shape (n spectra, d)), or None if not computed."""
    path = embedding_path(index_dir, model_id)
    return np.load(path, mmap_mode="r") if path.exists() else None


def write_embeddings(index_dir: str | os.PathLike, model_id: str, embeddings: np.ndarray, n_spectra: int) -> Path:
    """Store ``embeddings`` (shape (n_spectra, d)) for ``model_id``, each row L2-normalised (zero rows kept).

    Written atomically as float32; returns the file. Raises ValueError when the shape is not (n_spectra, d).
    """
    emb = np.asarray(embeddings, dtype=np.float32)
    if emb.ndim != 2 or emb.shape[0] != n_spectra:
        raise ValueError(f"embeddings must have shape ({n_spectra}, d), got {emb.shape}")
    norms = np.linalg.norm(emb, axis=1, keepdims=True)
    emb = emb / np.where(norms > 0, norms, 1.0)
    target = embedding_path(index_dir, model_id)
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(target) as tmp, open(tmp, "wb") as handle:
        np.save(handle, emb.astype(np.float32))
    return target
