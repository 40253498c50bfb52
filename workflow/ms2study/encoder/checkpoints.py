"""Where encoder checkpoints live and which one a ``model`` parameter names, without importing torch.

A checkpoint is a folder holding ``model.safetensors`` and ``config.json`` (written by ``ms2study train``; the
config records the training parameters, among them the structure split). ``"default"`` names the trained encoder
shipped in ``resources/models/default``; null names the seeded untrained placeholder. Every stage resolves the
parameter here (``resolve_model_dir``), so "default" has one meaning. Imports only core.
"""

from __future__ import annotations

import json
import logging
import os
from functools import lru_cache
from pathlib import Path
from typing import Any

from ms2study.core.errors import InputError
from ms2study.encoder.splits import SPLIT_DEFAULTS

log = logging.getLogger(__name__)


WEIGHTS_FILE = "model.safetensors"


CONFIG_FILE = "config.json"


# Where a trained default encoder ships (the repository's resources/ folder, beside workflow/).
SHIPPED_MODELS_DIR = Path(__file__).resolve().parents[3] / "resources" / "models"


SHIPPED_MODEL_NAME = "default"


def shipped_model_dir() -> Path | None:
    """The trained default encoder shipped in ``resources/models/default``, or None if it is not there."""
    path = SHIPPED_MODELS_DIR / SHIPPED_MODEL_NAME
    return path if (path / WEIGHTS_FILE).exists() and (path / CONFIG_FILE).exists() else None


@lru_cache(maxsize=1)
def _warn_no_shipped_model() -> None:
    # Once per process: embedding a library and a sample in one process should not repeat it.
    log.warning(
        "no trained encoder is shipped in %s: using the UNTRAINED placeholder (seeded random weights); "
        "embeddings carry no learned chemistry", SHIPPED_MODELS_DIR / SHIPPED_MODEL_NAME,
    )


def resolve_model_dir(model: str | os.PathLike | None) -> Path | None:
    """The checkpoint folder a ``model`` parameter names (None: the untrained placeholder)."""
    if model is None:
        return None
    if str(model) == "default":
        shipped = shipped_model_dir()
        if shipped is None:
            _warn_no_shipped_model()
        return shipped
    path = Path(model)
    if not path.is_dir():
        raise InputError(
            "encoder checkpoint folder does not exist", file=str(path),
            fix="set embed: model to a folder written by 'ms2study train', 'default', or null",
        )
    return path


def model_split_settings(model_dir: str | Path | None) -> dict[str, Any]:
    """Seed, fractions and licenses of the encoder's training split, from its ``config.json`` (defaults else)."""
    out = dict(SPLIT_DEFAULTS)
    if model_dir is not None and (Path(model_dir) / CONFIG_FILE).is_file():
        meta = json.loads((Path(model_dir) / CONFIG_FILE).read_text(encoding="utf-8"))
        recorded = (meta.get("training") or {}).get("params") or {}
        out.update({k: recorded[k] for k in out if k in recorded})
    return out
