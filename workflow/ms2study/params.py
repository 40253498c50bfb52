"""Stage parameters: a stage's defaults overlaid with the config section it was given.

Every stage keeps its defaults in a module-level ``DEFAULT_PARAMS`` (mirrored, key by key, in config/config.yaml)
and refuses keys it does not know, naming them, so a typo in config.yaml stops the run instead of being ignored.
Sections listed in ``nested`` (e.g. annotate's ``weights``) merge key by key and check their own keys.
"""

from __future__ import annotations

import copy
from typing import Any

from ms2study.errors import InputError


def overlay(params: dict | None, defaults: dict, stage: str, nested: tuple[str, ...] = ()) -> dict[str, Any]:
    """A deep copy of ``defaults`` with ``params`` over it; an unknown key raises InputError naming it."""
    merged = copy.deepcopy(defaults)
    for key, value in (params or {}).items():
        if key not in defaults:
            raise InputError(
                f"unknown {stage} parameter '{key}'",
                fix=f"use one of {sorted(defaults)} in the config's '{stage}' section",
            )
        if key in nested and isinstance(defaults[key], dict):
            for inner in value or {}:
                if inner not in defaults[key]:
                    raise InputError(
                        f"unknown {stage} {key} parameter '{inner}'", fix=f"use one of {sorted(defaults[key])}"
                    )
            merged[key].update(value or {})
        else:
            merged[key] = value
    return merged
