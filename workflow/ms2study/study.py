"""Study folders: the configuration (defaults + the study's config.yaml) and the sample sheet, validated at the edge.

A study folder holds ``samples.tsv`` (sample_id, file, outcome columns...) and optionally ``config.yaml``, which
overrides the defaults in the repository's ``config/config.yaml``. Without a sample sheet, every mzML/mzXML file in
the folder is a sample named after its file. Both are checked against JSON schemas in ``workflow/schemas``, and every
message names the key or the row and says what to do.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import jsonschema
import polars as pl
import yaml

from ms2study.errors import InputError

REPO_ROOT = Path(__file__).resolve().parents[2]
SCHEMA_DIR = REPO_ROOT / "workflow" / "schemas"
DEFAULT_CONFIG = REPO_ROOT / "config" / "config.yaml"
SPECTRUM_SUFFIXES = (".mzml", ".mzxml")
SAMPLE_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def _load_schema(name: str) -> dict:
    return yaml.safe_load((SCHEMA_DIR / name).read_text())


def _where(error: jsonschema.ValidationError) -> str:
    return ".".join(str(p) for p in error.absolute_path) or "(top level)"


def validate_config(config: dict, source: str = "config") -> None:
    """Raise InputError naming the offending key when ``config`` breaks workflow/schemas/config.schema.yaml."""
    validator = jsonschema.Draft202012Validator(_load_schema("config.schema.yaml"))
    errors = sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path))
    if errors:
        lines = [f"key '{_where(e)}': {e.message}" for e in errors[:10]]
        raise InputError(
            "invalid configuration:\n  " + "\n  ".join(lines),
            file=source,
            fix="see config/README.md for the keys and their allowed values",
        )


def deep_update(base: dict, override: dict) -> dict:
    """Recursively merge ``override`` into a copy of ``base`` (mappings merge, everything else replaces)."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_update(merged[key], value)
        else:
            merged[key] = value
    return merged


def load_config(study_dir: Path, overrides: dict | None = None) -> dict:
    """Defaults, then ``study_dir/config.yaml``, then ``overrides``; validated."""
    config = yaml.safe_load(DEFAULT_CONFIG.read_text()) or {}
    study_config = Path(study_dir) / "config.yaml"
    if study_config.exists():
        try:
            local = yaml.safe_load(study_config.read_text()) or {}
        except yaml.YAMLError as err:
            raise InputError(f"not valid YAML ({err})", file=str(study_config), fix="fix the YAML syntax") from err
        if not isinstance(local, dict):
            raise InputError("must be a mapping of config keys", file=str(study_config))
        config = deep_update(config, local)
    if overrides:
        config = deep_update(config, overrides)
    validate_config(config, str(study_config if study_config.exists() else DEFAULT_CONFIG))
    return config


def _sheet_from_folder(study_dir: Path) -> pl.DataFrame:
    files = sorted(p for p in study_dir.iterdir() if p.is_file() and p.suffix.lower() in SPECTRUM_SUFFIXES)
    if not files:
        raise InputError(
            "no samples.tsv and no .mzML/.mzXML files in the study folder",
            file=str(study_dir),
            fix="add a samples.tsv (columns sample_id, file) or put the runs' mzML files in the folder",
        )
    ids = [re.sub(r"[^A-Za-z0-9._-]", "_", p.stem) for p in files]
    return pl.DataFrame({"sample_id": ids, "file": [p.name for p in files]})


def load_sample_sheet(study_dir: Path, config: dict) -> pl.DataFrame:
    """Read and validate the sample sheet; ``file`` is returned relative to the study folder as written."""
    study_dir = Path(study_dir)
    sheet_path = study_dir / config.get("samples", "samples.tsv")
    if not sheet_path.exists():
        if config.get("samples", "samples.tsv") != "samples.tsv":
            raise InputError("sample sheet not found", file=str(sheet_path), fix="check the 'samples' key in config.yaml")
        sheet = _sheet_from_folder(study_dir)
        source = str(study_dir)
    else:
        source = str(sheet_path)
        try:
            sheet = pl.read_csv(sheet_path, separator="\t", infer_schema_length=0, comment_prefix="#")
        except Exception as err:  # polars raises several error types for malformed text
            raise InputError(f"cannot read as a tab-separated table ({err})", file=source) from err
    sheet = sheet.rename({c: c.strip() for c in sheet.columns})
    for required in ("sample_id", "file"):
        if required not in sheet.columns:
            raise InputError(
                f"missing column '{required}' (columns found: {', '.join(sheet.columns)})",
                file=source,
                fix="the sample sheet is tab-separated with at least the columns sample_id and file",
            )
    sheet = sheet.with_columns(pl.col("sample_id").str.strip_chars(), pl.col("file").str.strip_chars())
    validator = jsonschema.Draft202012Validator(_load_schema("samples.schema.yaml"))
    seen: set[str] = set()
    for row_number, row in enumerate(sheet.iter_rows(named=True), start=2):  # line 1 is the header
        errors = list(validator.iter_errors({k: v for k, v in row.items() if v is not None}))
        if errors:
            raise InputError(
                f"row {row_number} (sample '{row.get('sample_id')}'): column '{_where(errors[0])}': {errors[0].message}",
                file=source,
                fix="sample_id: letters, digits, '.', '_' or '-' (starting with a letter or digit); file: path to an mzML/mzXML",
            )
        sample_id = row["sample_id"]
        if sample_id in seen:
            raise InputError(f"row {row_number}: sample_id '{sample_id}' appears twice", file=source,
                             fix="give every sample a unique sample_id")
        seen.add(sample_id)
        path = study_dir / row["file"]
        if not path.exists():
            raise InputError(f"row {row_number}: file '{row['file']}' does not exist (looked for {path})",
                             file=source, sample=sample_id, fix="correct the path (relative to the study folder)")
        if path.suffix.lower() not in SPECTRUM_SUFFIXES:
            raise InputError(f"row {row_number}: file '{row['file']}' is not .mzML or .mzXML", file=source,
                             sample=sample_id, fix="convert the vendor file with msconvert (ProteoWizard) to mzML")
    if sheet.height == 0:
        raise InputError("the sample sheet has no rows", file=source, fix="add one row per sample")
    return sheet


def check_outcomes(sheet: pl.DataFrame, config: dict, source: str = "samples.tsv") -> None:
    """Each configured outcome/covariate column must exist in the sample sheet."""
    models = config.get("models", {}) or {}
    wanted = [("outcome", o["column"], "models.outcomes") for o in models.get("outcomes", []) or []]
    wanted += [("covariate", c, "models.covariates") for c in models.get("covariates", []) or []]
    for kind, column, key in wanted:
        if column not in sheet.columns:
            raise InputError(
                f"{kind} column '{column}' (config {key}) is not in the sample sheet "
                f"(columns: {', '.join(sheet.columns)})",
                file=source,
                fix=f"add the column to samples.tsv or remove the {kind} from config.yaml",
            )


def library_paths(study_dir: Path, config: dict) -> list[Path]:
    """The configured library file(s), resolved against the study folder, then the repository."""
    value: Any = config.get("library")
    if not value:
        return []
    paths = [value] if isinstance(value, str) else list(value)
    resolved = []
    for item in paths:
        candidate = Path(study_dir) / item
        if not candidate.exists() and (REPO_ROOT / item).exists():
            candidate = REPO_ROOT / item
        if not candidate.exists():
            raise InputError(f"library file '{item}' not found (looked in {study_dir} and {REPO_ROOT})",
                             file=str(item), fix="set 'library' in config.yaml to an existing MGF/MSP/JSON file")
        resolved.append(candidate)
    return resolved


def library_name(paths: list[Path], config: dict) -> str:
    if config.get("library_name"):
        return str(config["library_name"])
    stem = paths[0].name
    for suffix in (".gz", ".mgf", ".msp", ".json"):
        if stem.lower().endswith(suffix):
            stem = stem[: -len(suffix)]
    name = re.sub(r"[^A-Za-z0-9._-]", "_", stem) or "library"
    return name if len(paths) == 1 else f"{name}_plus{len(paths) - 1}"
