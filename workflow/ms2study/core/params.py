"""Stage parameters: a stage's defaults overlaid with the config section it was given, and the ``--params`` option.

The defaults, types and allowed values of every config key live in one place, the config schema
(``workflow/schemas/config.schema.yaml``); ``schema_defaults(section)`` reads a section's defaults from it, and a
stage's module-level ``DEFAULT_PARAMS`` is built from that (plus the keys its rule sets itself). ``overlay`` lays
the given values over the defaults and refuses keys it does not know, naming them, so a typo in config.yaml stops
the run instead of being ignored; sections listed in ``nested`` (e.g. annotate's ``weights``) merge key by key and
check their own keys. The parsed schema is cached as JSON (``_schema_sections``), so a job imports PyYAML only
when the schema changed. This module may import only ``ms2study.core.errors`` (and PyYAML).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import difflib
import functools
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from ms2study.core.errors import InputError

# The config schema shipped with the workflow: <repo>/workflow/schemas/, beside this package (<repo>/workflow/ms2study).
SCHEMA_PATH = Path(__file__).resolve().parents[2] / "schemas" / "config.schema.yaml"


# The parsed schema as JSON, named by a hash of the schema's bytes (like a .pyc beside its source).
SCHEMA_CACHE_DIR = Path(__file__).resolve().parent / "__pycache__"


@functools.cache
def _schema_sections() -> dict[str, dict]:
    """The ``properties`` of the config schema, read once per process.

    Importing PyYAML and parsing the schema costs ~45 ms, a sixth of the lightest jobs' start-up, so the parsed
    schema is kept as JSON in ``SCHEMA_CACHE_DIR``, named by a hash of the schema's bytes: an edited schema is
    parsed again. The JSON is written only when it reads back exactly as parsed (types included); where that
    folder cannot be written, the YAML is parsed each time.
    """
    if not SCHEMA_PATH.is_file():
        raise FileNotFoundError(
            f"the config schema {SCHEMA_PATH} is missing; ms2study must run from its repository (or a copy that "
            "keeps workflow/schemas beside workflow/ms2study)"
        )
    text = SCHEMA_PATH.read_bytes()
    cached = SCHEMA_CACHE_DIR / f"config.schema.{hashlib.sha256(text).hexdigest()[:24]}.json"
    try:
        return json.loads(cached.read_bytes())["properties"]
    except (OSError, ValueError, KeyError, TypeError):
        pass
    schema = _parse_yaml(text)
    _write_cache(schema, cached)
    return schema["properties"]


def _parse_yaml(text: bytes) -> dict:
    import yaml  # here, not at the top: with the schema cached a job never imports it

    return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def _write_cache(schema: dict, path: Path) -> None:
    """``schema`` as JSON at ``path`` (written whole, then renamed: parallel jobs never read half a file), when
    JSON holds it exactly; older caches of the schema are removed. Failures leave no cache and raise nothing."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        text = json.dumps(schema)
        if repr(json.loads(text)) != repr(schema):  # e.g. a YAML date, or 1 and 1.0 told apart
            return
        path.parent.mkdir(exist_ok=True)
        tmp.write_text(text)
        os.replace(tmp, path)
        for old in path.parent.glob("config.schema.*.json"):
            if old != path:
                old.unlink(missing_ok=True)
    except (OSError, TypeError, ValueError):
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)


def schema_defaults(section: str) -> dict[str, Any]:
    """The defaults of config ``section`` (e.g. "detect") as the schema states them, in the schema's key order.

    Returns a new dict on every call (nested values deep-copied), so a caller may change it. Raises ``KeyError``
    for a section the schema does not have or that is not an object of keys, ``ValueError`` for a key without
    a default, ``FileNotFoundError`` when the schema file is missing.
    """
    sections = _schema_sections()
    if section not in sections or "properties" not in sections[section]:
        raise KeyError(f"the config schema has no section '{section}' with keys")
    defaults = {}
    for key, prop in sections[section]["properties"].items():
        if "default" not in prop:
            raise ValueError(f"config schema key '{section}.{key}' has no default")
        defaults[key] = copy.deepcopy(prop["default"])
    return defaults


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


def suggest_key(key: str, known: list[str]) -> str | None:
    """The known key an unknown ``key`` meant: itself in other case, one among its ``_``-words or having it as one
    (``fdr_threshold`` -> ``fdr``), or the closest by ``difflib``; None when nothing is close."""
    lower, low = {k.lower(): k for k in known}, key.lower()
    words = [lower[w] for w in low.split("_") if w in lower] + [k for k in known if low in k.lower().split("_")]
    return lower.get(low) or next(iter(words), None) or next(
        (lower[c] for c in difflib.get_close_matches(low, list(lower), n=1)), None)


# The m/z tolerances that follow the instrument's mass accuracy (config section, key); all 10 ppm by default.
MASS_TOLERANCES = (("detect", "mass_error_ppm"), ("spectra", "mz_tolerance_ppm"), ("link", "mz_tol_ppm"),
                   ("link", "align_pair_mz_max_ppm"), ("annotate", "precursor_tolerance_ppm"),
                   ("correct", "gap_fill_mz_ppm"), ("correct", "adduct_mz_ppm"))


def mass_tolerance_warning(config: dict) -> str | None:
    """A warning when the ``MASS_TOLERANCES`` of ``config`` are not all equal (e.g. a TOF user set 20 ppm for
    detection and linking and left gap filling at 10): each stage would look for an ion with a different tolerance.
    The keys are listed by value. With ``annotate.precursor_tolerance_da`` set, annotation searches a window in Da
    and its ppm key is left out. None when all are equal (the defaults are)."""
    by_value: dict[float, list[str]] = {}
    da = (config.get("annotate") or {}).get("precursor_tolerance_da")
    for section, key in MASS_TOLERANCES:
        if section == "annotate" and da is not None:
            continue
        by_value.setdefault(float((config.get(section) or {}).get(key)), []).append(f"{section}.{key}")
    if len(by_value) < 2:
        return None
    groups = "; ".join(f"{v:g} ppm: {', '.join(keys)}" for v, keys in sorted(by_value.items(), key=lambda kv: -kv[0]))
    return (f"m/z tolerances differ ({groups}"
            + (f"; annotation uses precursor_tolerance_da = {da} Da" if da is not None else "")
            + "); when they should follow the instrument's mass accuracy, set them together (config/README.md, "
            "'Instrument settings')")
