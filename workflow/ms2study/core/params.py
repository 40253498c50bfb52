"""Stage parameters: a stage's defaults overlaid with the config section it was given.

Every stage keeps its defaults in a module-level ``DEFAULT_PARAMS`` (mirrored, key by key, in config/config.yaml)
and refuses keys it does not know, naming them, so a typo in config.yaml stops the run instead of being ignored.
Sections listed in ``nested`` (e.g. annotate's ``weights``) merge key by key and check their own keys.
"""

from __future__ import annotations

import argparse
import copy
import json
from typing import Any

from ms2study.core.errors import InputError


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


def add_params_argument(parser: argparse.ArgumentParser) -> None:
    """``--params JSON``: the stage's config section (what the rule passes), as a JSON object."""
    parser.add_argument("--params", default="{}", help="stage parameters as a JSON object (config section)")


def load_params(args: argparse.Namespace) -> dict:
    """The ``--params`` JSON object as a dict; InputError when it is not valid JSON or not an object."""
    try:
        params = json.loads(args.params)
    except json.JSONDecodeError as err:
        raise InputError(f"--params is not valid JSON ({err})", fix="pass a JSON object, e.g. '{\"ppm\": 10}'") from err
    if not isinstance(params, dict):
        raise InputError("--params must be a JSON object")
    return params
