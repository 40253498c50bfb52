"""YAML files of a study (its config.yaml) and of the workflow (defaults, schema), read safely and strictly: PyYAML
keeps the last of a key repeated in one mapping in silence, so a second ``models:`` block in a study's config.yaml
would drop the first block's outcomes and the study would run without them. Here a repeated key is an error naming
the file and both lines. Imports ``core.errors`` only (and PyYAML).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from ms2study.core.errors import InputError


class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # the C parser reads the schema 10x faster
    """A safe loader that refuses a key repeated in one mapping (PyYAML keeps the last one in silence, so a second
    ``models:`` block would drop the first one's outcomes)."""


class RepeatedKeyError(yaml.YAMLError):
    """A key given twice in one mapping (``key``, the two 1-based ``lines``, ``top_level``)."""

    def __init__(self, key: Any, lines: tuple[int, int], top_level: bool):
        where = "at the top level" if top_level else "in one section"
        super().__init__(f"key '{key}' appears twice {where} (lines {lines[0]} and {lines[1]}): the second would "
                         "silently replace the first")


def _unique_mapping(loader: _Loader, node: yaml.MappingNode, deep: bool = False) -> dict:
    lines: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in lines:
            raise RepeatedKeyError(key, (lines[key], key_node.start_mark.line + 1), node.start_mark.column == 0)
        lines[key] = key_node.start_mark.line + 1
    return loader.construct_mapping(node, deep=deep)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _unique_mapping)


def read_yaml(path: Path) -> Any:
    """The YAML document of ``path`` (safe loading; a key repeated in one mapping raises yaml.YAMLError)."""
    return yaml.load(path.read_text(), Loader=_Loader)


def read_config_file(path: Path) -> dict:
    """A study's config.yaml as a dict ({} when empty). Raises InputError naming the file for invalid YAML, a key
    repeated in one section (YAML keeps only the last one) or a document that is not a mapping."""
    try:
        local = read_yaml(Path(path)) or {}
    except RepeatedKeyError as err:
        raise InputError(str(err), file=str(path), fix="merge the repeated blocks into one") from err
    except yaml.YAMLError as err:
        raise InputError(f"not valid YAML ({err})", file=str(path), fix="fix the YAML syntax") from err
    if not isinstance(local, dict):
        raise InputError("must be a mapping of config keys", file=str(path))
    return local
