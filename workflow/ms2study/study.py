"""Study folders: the configuration (defaults + the study's config.yaml) and the sample sheet, validated at the edge.

A study folder holds ``samples.tsv`` (sample_id, file, outcome columns...) and optionally ``config.yaml``, which
overrides the defaults in the repository's ``config/config.yaml``. Without a sample sheet, every mzML/mzXML file in
the folder is a sample named after its file. Both are checked against JSON schemas in ``workflow/schemas``, and every
message names the key or the row and says what to do.
"""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import polars as pl
import yaml

from ms2study.core.errors import InputError
from ms2study.core.params import MASS_TOLERANCES, mass_tolerance_warning, suggest_key  # noqa: F401 (tests)
from ms2study.core.yamlio import read_config_file, read_yaml
from ms2study.identification.calibratable import refuse_uncalibratable
from ms2study.io.runfiles import checked_run_files, identical_run_warnings
from ms2study.io.samplesheet import (
    ACQUISITION_COLUMNS,
    SAMPLE_TYPES,
    batch_label_warnings,
    read_sample_sheet,
    role_name_warnings,
    run_format,
    run_stem,
    sample_roles,
    tidy_sheet,
    typed_rows_with_outcomes,
    unlisted_runs,
)
from ms2study.modelling.outcomes import check_covariate_values, encode_outcome
from ms2study.modelling.subjects import check_study_subjects, lone_subject_warnings

REPO_ROOT = Path(__file__).resolve().parents[2]
SCHEMA_DIR = REPO_ROOT / "workflow" / "schemas"
DEFAULT_CONFIG = REPO_ROOT / "config" / "config.yaml"
SAMPLE_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@functools.lru_cache(maxsize=8)
def _cached_yaml(path: Path, mtime_ns: int) -> Any:
    return read_yaml(path)


def _load_schema(name: str) -> dict:
    return _cached_yaml(SCHEMA_DIR / name, (SCHEMA_DIR / name).stat().st_mtime_ns)


def _where(error: jsonschema.ValidationError) -> str:
    return ".".join(str(p) for p in error.absolute_path) or "(top level)"


def _resolve(root: dict, node: dict) -> dict:
    """``node`` with a local ``$ref`` (``#/$defs/name``) replaced by its target (sibling keys win)."""
    while isinstance(node, dict) and "$ref" in node:
        target: Any = root
        for part in node["$ref"].lstrip("#/").split("/"):
            target = target[part]
        node = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
    return node


def _subschema(root: dict, path: list) -> dict:
    """The schema governing the value at ``path`` (through properties, items and additionalProperties)."""
    node = _resolve(root, root)
    for part in path:
        if isinstance(part, int):
            node = node.get("items", {})
        elif part in node.get("properties", {}):
            node = node["properties"][part]
        elif isinstance(node.get("additionalProperties"), dict):
            node = node["additionalProperties"]
        else:
            return {}
        node = _resolve(root, node)
    return node


def _lookup(data: Any, path: list) -> tuple[bool, Any]:
    for part in path:
        in_list = isinstance(part, int) and isinstance(data, list) and part < len(data)
        if in_list or (isinstance(part, str) and isinstance(data, dict) and part in data):
            data = data[part]
        else:
            return False, None
    return True, data


def _origin(path: list, value: Any, origins: list[tuple[str, dict]]) -> str:
    """The last configuration source (defaults, study config.yaml, overrides) that sets ``path`` to ``value``."""
    for label, data in reversed(origins):
        found, there = _lookup(data or {}, path)
        if found and there == value:
            return label
    return "--config on the command line"


def _dotted(path: list) -> str:
    return ".".join(str(p) for p in path)


def _explain(error: jsonschema.ValidationError, root: dict) -> tuple[list, str]:
    """(key path, sentence) for one schema error: what is wrong and what is allowed."""
    path = list(error.absolute_path)
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        known = sorted(error.schema.get("properties", {}))
        unknown = sorted(k for k in error.instance if k not in known)
        key = unknown[0] if unknown else "?"
        close = suggest_key(str(key), known)
        hint = f"did you mean '{close}'? " if close else ""
        if not close and not path:  # a section's key at the top (a trial: 'outcomes:', '--config fdr=0.05')
            owners = [name for name, sub in root.get("properties", {}).items()
                      if isinstance(sub, dict) and str(key) in (sub.get("properties") or {})]
            if owners:
                hint = (f"'{key}' is a key of section {' or '.join(repr(o) for o in owners)}: write it indented "
                        f"under '{owners[0]}:' in config.yaml (--config sets top-level keys only). ")
        section = f" of '{_dotted(path)}'" if path else ""
        return path + [key], f"unknown key{section}: {hint}known keys: {', '.join(known)}"
    if error.validator == "required":
        return path, error.message.replace("is a required property", "is missing (a required key)")
    sub = _subschema(root, path)
    message = error.message
    if error.validator in ("anyOf", "oneOf"):
        message = f"{error.instance!r} is not allowed here"
    if isinstance(error.instance, bool) and error.validator in ("enum", "type", "anyOf", "oneOf"):
        message += " (YAML reads unquoted off/on/yes/no as true/false: quote the word, e.g. 'off')"
    details = []
    if sub.get("description"):
        details.append(str(sub["description"]))
    if "default" in sub:
        details.append(f"default {json.dumps(sub['default'])}")
    return path, message + (f" ({'; '.join(details)})" if details else "")


def validate_config(config: dict, source: str = "config", origins: list[tuple[str, dict]] | None = None) -> None:
    """Raise InputError naming the key path, the file that set it and the fix when ``config`` breaks
    workflow/schemas/config.schema.yaml.

    ``origins``: the sources merged into ``config`` in order (label, mapping), used to say which file set a bad
    value. Without them the repository's config/config.yaml and ./config.yaml (the study folder under Snakemake)
    are looked at; a value found in neither came from ``--config``.
    """
    schema = _load_schema("config.schema.yaml")
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: [str(p) for p in e.absolute_path])
    if not errors:
        return
    if origins is None:
        origins = [(str(DEFAULT_CONFIG), read_yaml(DEFAULT_CONFIG) or {})]
        if source == "config" and Path("config.yaml").is_file():
            try:
                origins.append((str(Path("config.yaml").resolve()), read_yaml(Path("config.yaml"))))
            except yaml.YAMLError:
                pass
    lines, files = [], []
    for error in errors[:10]:
        path, sentence = _explain(error, schema)
        found, value = _lookup(config, path)
        where = _origin(path, value, origins) if found else source
        files.append(where)
        if where.startswith("--config") and isinstance(value, str) and error.validator == "type":
            sentence += (" [Snakemake's --config reads values inside a mapping as text: set this key in the study's "
                         "config.yaml instead]")
        lines.append((_dotted(path) or "(top level)", sentence, where))
    if len(errors) > 10:
        lines.append(("...", f"and {len(errors) - 10} more", files[0]))
    several = len(set(files)) > 1
    text = "\n  ".join(f"key '{key}': {sentence}" + (f" [set in {where}]" if several else "")
                       for key, sentence, where in lines)
    sections = sorted({str(e.absolute_path[0]) for e in errors if e.absolute_path
                       and _subschema(schema, [e.absolute_path[0]]).get("type") == "object"})
    readme = "config/README.md" + (f" (section {', '.join(sections)})" if sections else "")
    raise InputError(
        f"invalid configuration:\n  {text}\n",
        file=files[0],
        fix=f"correct the key(s) named above in {files[0]}; every key, its allowed values and default: {readme}",
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


def load_config(study_dir: Path, overrides: dict | None = None,
                overrides_label: str = "--config on the command line") -> dict:
    """Defaults, then ``study_dir/config.yaml``, then ``overrides`` (named ``overrides_label`` in messages);
    validated."""
    defaults = read_yaml(DEFAULT_CONFIG) or {}
    config = defaults
    study_config = Path(study_dir) / "config.yaml"
    if study_config.exists():
        local = read_config_file(study_config)
        config = deep_update(config, local)
    origins = [(str(DEFAULT_CONFIG), defaults)]
    if study_config.exists():
        origins.append((str(study_config), local))
    if overrides:
        config = deep_update(config, overrides)
        origins.append((overrides_label, overrides))
    validate_config(config, str(study_config if study_config.exists() else DEFAULT_CONFIG), origins)
    return config


def _sheet_from_folder(study_dir: Path) -> pl.DataFrame:
    files = sorted(p for p in study_dir.iterdir() if p.is_file() and run_format(p))
    if not files:
        raise InputError(
            "no samples.tsv and no .mzML/.mzXML files in the study folder",
            file=str(study_dir),
            fix="add a samples.tsv (columns sample_id, file) or put the runs' mzML files in the folder",
        )
    ids = [re.sub(r"[^A-Za-z0-9._-]", "_", run_stem(p)) for p in files]
    by_id: dict[str, list[str]] = {}
    for sample_id, path in zip(ids, files, strict=True):
        by_id.setdefault(sample_id, []).append(path.name)
    clashes = {sample_id: names for sample_id, names in by_id.items() if len(names) > 1}
    if clashes:
        sample_id, names = next(iter(clashes.items()))
        raise InputError(
            f"no samples.tsv, so each run is named after its file, and {len(names)} files give the same sample_id "
            f"'{sample_id}': {', '.join(repr(n) for n in names)} (characters other than letters, digits, '.', '_' "
            "and '-' become '_', and the extension is dropped)"
            + (f"; {len(clashes) - 1} more such clash(es)" if len(clashes) > 1 else ""),
            file=str(study_dir),
            fix="rename one of the files, or add a samples.tsv (columns sample_id, file) that names each run",
        )
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
        sheet = read_sample_sheet(sheet_path, required=("sample_id", "file"))
    sheet = tidy_sheet(sheet)
    validator = jsonschema.Draft202012Validator(_load_schema("samples.schema.yaml"))
    seen: set[str] = set()
    for row_number, row in enumerate(sheet.iter_rows(named=True), start=2):  # line 1 is the header
        errors = list(validator.iter_errors({k: v for k, v in row.items() if v is not None}))
        if errors:
            column = _where(errors[0])
            what, fix = _ROW_PROBLEMS.get(column, (errors[0].message, _ROW_FIX))
            value = row.get(column)
            raise InputError(
                f"row {row_number} (sample '{row.get('sample_id')}'): column '{column}': "
                + (what.format(value=value) if column in _ROW_PROBLEMS else what),
                file=source, fix=fix)
        sample_id = row["sample_id"]
        if sample_id in seen:
            raise InputError(f"row {row_number}: sample_id '{sample_id}' appears twice", file=source,
                             fix="give every sample a unique sample_id")
        seen.add(sample_id)
    if sheet.height == 0:
        raise InputError("the sample sheet has no rows", file=source, fix="add one row per sample")
    renamed = checked_run_files(study_dir, sheet, source)
    check_sample_roles(sheet, source)
    return sheet.with_columns(pl.col("file").replace(renamed))


_ROW_FIX = ("sample_id: letters, digits, '.', '_' or '-' (starting with a letter or digit); file: path to an "
            "mzML/mzXML")
# The optional acquisition columns: (what is wrong, with the cell as {value}; the fix).
_ROW_PROBLEMS = {
    "sample_type": (f"'{{value}}' is not one of {', '.join(SAMPLE_TYPES)}",
                    "write sample, qc (a pooled QC injection) or blank (or leave the cell empty for a sample)"),
    "injection_order": ("'{value}' is not a whole number of at least 1",
                        "number the injections 1, 2, 3, ... in the order they were run (or leave the column out)"),
}


def check_sample_roles(sheet: pl.DataFrame, source: str = "samples.tsv") -> pl.DataFrame:
    """Each run's role (``io.samplesheet.sample_roles``: sample_id, sample_type, injection_order, batch), with the
    sheet's row numbers (line 1 is the header) added to its message when a row is refused: an unknown sample_type,
    an injection_order that is not a whole number >= 1, or one shared by two runs. Raises InputError naming
    ``source``, the row(s) and the sample(s)."""
    try:
        return sample_roles(sheet, source)
    except InputError as err:
        rows = {s: i for i, s in enumerate(sheet["sample_id"].to_list(), start=2)}
        named = [rows[s] for s in re.findall(r"'([^']*)'", err.message) if s in rows]
        where = (f"row {named[0]}: " if len(named) == 1 else
                 f"rows {', '.join(map(str, sorted(set(named))))}: " if named else "")
        raise InputError(where + err.message, file=err.file or source, fix=err.fix) from err


def check_reference_sample(sheet: pl.DataFrame, config: dict) -> str:
    """The reference run of the alignment: ``reference_sample`` when set, else the sheet's first study sample (its
    first pooled QC when it has no study sample; a blank, with only contaminants to align on, never by default).

    Raises InputError naming the key when the configured one is not in the sheet (listing the study samples as
    candidates, and the pooled QCs as the alternative; never the blanks) and when it is a blank run.
    """
    samples = sheet["sample_id"].to_list()
    roles = check_sample_roles(sheet)
    kinds = dict(zip(roles["sample_id"].to_list(), roles["sample_type"].to_list(), strict=True))
    default = next((s for kind in ("sample", "qc") for s in samples if kinds.get(s) == kind),
                   samples[0] if samples else None)
    reference = config.get("reference_sample") or default
    if reference not in samples:
        raise InputError(f"reference_sample '{reference}' is not in the sample sheet",
                         fix="set reference_sample (config.yaml, or leave it unset for the first study sample) to "
                             + _reference_candidates(samples, kinds))
    if kinds.get(reference) == "blank":
        raise InputError(f"reference_sample '{reference}' is a blank run: a blank holds few features (contaminants) "
                         "to align the other runs on", fix="set reference_sample to a study sample or a pooled QC, "
                                                           "or leave it unset for the first study sample")
    return reference


def reference_fallbacks(sheet: pl.DataFrame, reference: str) -> list[str]:
    """The runs the alignment falls back to, in order, when ``reference`` has no features: the other study samples,
    then the pooled QCs (never blanks)."""
    kinds = dict(check_sample_roles(sheet).select("sample_id", "sample_type").iter_rows())
    return [s for k in ("sample", "qc") for s in sheet["sample_id"].to_list() if kinds.get(s) == k and s != reference]


def _reference_candidates(samples: list[str], kinds: dict[str, str]) -> str:
    """The runs to name as reference candidates: the study samples (sample_type sample), then the pooled QCs as an
    alternative; blanks never (refused as reference). At most 20 of each are named."""
    def shown(ids: list[str]) -> str:
        return ", ".join(ids[:20]) + (f", ... ({len(ids)} in all)" if len(ids) > 20 else "")

    study = [s for s in samples if kinds.get(s, "sample") == "sample"]
    qcs = [s for s in samples if kinds.get(s) == "qc"]
    if not study:
        return f"one of the pooled QCs: {shown(qcs)}" if qcs else "a run of the sheet that is not a blank"
    return f"one of the study samples: {shown(study)}" + (f" (or a pooled QC: {shown(qcs)})" if qcs else "")


def check_correction(sheet: pl.DataFrame, config: dict, source: str = "config.yaml") -> None:
    """A drift method asked for explicitly (``correct: drift_method`` qc_spline or qc_linear) must be possible with
    this sheet's QC runs, batches and injection orders: refused here, before any job, rather than by the correct job
    after detection. Raises InputError naming ``source`` and the key."""
    from ms2study.correction.drift import choose_method

    requested = (config.get("correct") or {}).get("drift_method", "auto")
    if requested not in ("qc_spline", "qc_linear"):
        return
    roles = check_sample_roles(sheet)
    orders = roles["injection_order"].cast(pl.Float64).fill_null(float("nan")).to_numpy()
    try:
        choose_method(requested, (roles["sample_type"] == "qc").to_numpy(), orders, roles["batch"].to_list(),
                      roles["sample_id"].to_list())
    except InputError as err:
        raise InputError(f"correct: drift_method {requested}: {err.message}", file=source, fix=err.fix) from err


def check_outcomes(sheet: pl.DataFrame, config: dict, source: str = "samples.tsv",
                   config_source: str = "config.yaml") -> None:
    """Each configured outcome/covariate column must exist in the sample sheet, and each outcome must be modelable.

    An acquisition column (sample_type, injection_order, batch) is refused as an outcome or covariate. An outcome
    is encoded exactly as the models job will encode it (``modelling.outcomes.encode_outcome``: QC and blank runs
    left out), so a value that would
    stop that job (a positive_class not among the column's values, a binary outcome with three classes, text in a
    continuous outcome) stops the run here, before any job starts; so does a binary or multiclass outcome whose
    samples all share one class (nothing to model). Messages name the key path (``models.outcomes.N``) and the file
    to correct: ``config_source`` for a positive_class that is not a class of the column (listing the classes the
    sheet holds), else the sheet, ``source``.
    """
    models = config.get("models", {}) or {}
    outcomes = models.get("outcomes", []) or []
    wanted = [("outcome", o["column"], f"models.outcomes.{i}") for i, o in enumerate(outcomes)]
    wanted += [("covariate", c, "models.covariates") for c in models.get("covariates", []) or []]
    for kind, column, key in wanted:
        if column in ACQUISITION_COLUMNS:
            raise InputError(
                f"{kind} column '{column}' (config {key}) describes how the runs were acquired (sample_type, "
                "injection_order and batch), not the biology: it is never an outcome or a covariate", file=source,
                fix=f"remove it from {key.rsplit('.', 1)[0] if kind == 'outcome' else key} in config.yaml; QCs and "
                "blanks are left out of the models and drift and batch are corrected by the correct stage"
                + ("" if kind == "outcome" or column == "sample_type" else
                   ", with pooled QCs in every batch; without them it only normalises each run's total, so to adjust "
                   f"the tests and models for {column}, copy it under another name (e.g. 'plate', values b1, b2: "
                   "not numbers, so each batch is its own level) and list that under models: covariates"))
    missing = [(kind, column, key) for kind, column, key in wanted if column not in sheet.columns]
    if missing:  # all of them at once, each with a near column name (a trial: 'Group' for 'group', one per run)
        named = "; ".join(f"{kind} column '{column}' (config {key})" + (
            f", did you mean '{near}'?" if (near := suggest_key(str(column), sheet.columns)) else "")
            for kind, column, key in missing)
        raise InputError(f"not in the sample sheet (columns: {', '.join(sheet.columns)}): {named}", file=source,
                         fix="add the column(s) to samples.tsv or correct or remove them in config.yaml")
    check_covariate_values(sheet, [c for kind, c, _ in wanted if kind == "covariate"], source)  # 52,0 beside 48.5
    if not outcomes:
        return
    for i, spec in enumerate(outcomes):
        key, column = f"models.outcomes.{i}", spec["column"]
        try:
            target = encode_outcome(sheet, spec)
        except InputError as err:
            if "positive_class" in err.message:  # the value to correct is in the configuration, not the sheet
                # the column's classes among the study samples, in sorted order (read as multiclass: no reordering)
                found = encode_outcome(sheet, {**spec, "type": "multiclass"})
                if len(found["classes"]) < 2:  # no class to choose: the sheet, not the configuration, is short
                    _single_class(column, key, spec, found, source)
                classes = ", ".join(found["classes"])
                raise InputError(f"config {key}.positive_class is '{spec.get('positive_class')}', which is not a "
                                 f"class of the sample sheet's column '{column}' ({source}); its study samples have: "
                                 f"{classes}", file=config_source,
                                 fix=f"set {key}.positive_class (models: outcomes in config.yaml) to one of: "
                                     f"{classes}") from err
            raise InputError(f"config {key}.type (outcome '{column}'): {err.message}", file=source,
                             sample=err.sample, fix=err.fix) from err
        if spec["type"] != "continuous" and len(target["classes"]) < 2:
            _single_class(column, key, spec, target, source)


def _single_class(column: str, key: str, spec: dict, target: dict, source) -> None:
    """Raise the InputError of an outcome whose study samples all have one class (``target``: encode_outcome's)."""
    classes = target["classes"]
    where = (f"config {key}.positive_class is '{spec['positive_class']}'"
             if spec.get("positive_class") is not None else f"config {key}")
    values = f"'{classes[0]}'" if classes else "no value"
    raise InputError(
        f"outcome '{column}' ({where}) has a single class: every sample with a value has {values} "
        f"({len(target['sample_ids'])} samples, {len(target['excluded_missing_outcome'])} without a value); "
        "a model needs at least two classes", file=source,
        fix=f"add samples of another class to the sheet, correct the '{column}' column, or remove the outcome "
        f"from models.outcomes in config.yaml",
    )


def library_paths(study_dir: Path, config: dict) -> list[Path]:
    """The configured library file(s), resolved against the study folder, then the repository."""
    value: Any = config.get("library")
    if not value:
        return []
    paths = [value] if isinstance(value, str) else list(value)
    # the file that names the library (a trial: the error was labelled with the missing library's own name)
    setting = Path(study_dir) / "config.yaml" if (Path(study_dir) / "config.yaml").is_file() else Path(study_dir)
    resolved = []
    for item in paths:
        candidate = Path(study_dir) / item
        if not candidate.exists() and (REPO_ROOT / item).exists():
            candidate = REPO_ROOT / item
        if not candidate.exists():
            near = suggest_key(Path(item).name, [f.name for f in candidate.parent.glob("*") if f.is_file()]
                               if candidate.parent.is_dir() else [])
            raise InputError(f"library file '{item}' not found (looked in {study_dir} and {REPO_ROOT})"
                             + (f"; did you mean '{Path(item).with_name(near)}'?" if near else ""),
                             file=str(setting), fix="set 'library' in config.yaml to an existing MGF/MSP/JSON file")
        resolved.append(candidate)
    return resolved


def library_name(paths: list[Path], config: dict) -> str:
    if config.get("library_name"):
        return str(config["library_name"])
    stem = re.sub(r"(\.(mgf|msp|json))?(\.gz)?$", "", paths[0].name, flags=re.IGNORECASE)  # lib.mgf.gz -> lib
    name = re.sub(r"[^A-Za-z0-9._-]", "_", stem) or "library"
    return name if len(paths) == 1 else f"{name}_plus{len(paths) - 1}"


def check_study(study_dir: Path, config: dict, sheet: pl.DataFrame) -> list[str]:
    """Every check of a study before it runs (outcomes, subjects, reference sample, correction, library paths, one
    injection under several ids with different outcomes or covariates), all: ``InputError`` naming the file and the
    fix, several problems numbered in one; returns the warnings (``mass_tolerance_warning``, identical runs...)."""
    sheet_path, config_path = study_dir / config["samples"], str(study_dir / "config.yaml")
    source, errors, found = str(sheet_path if sheet_path.exists() else study_dir), [], []
    models = config.get("models") or {}
    outcomes = [o.get("column") for o in (models.get("outcomes") or []) if isinstance(o, dict)]
    modelled = [str(c) for c in outcomes + list(models.get("covariates") or []) if c]
    for check in (lambda: found.extend(identical_run_warnings(study_dir, sheet, modelled)),
                  lambda: check_outcomes(sheet, config, source, config_path),
                  lambda: check_study_subjects(sheet, config, source), lambda: check_reference_sample(sheet, config),
                  lambda: check_correction(sheet, config, config_path),
                  lambda: refuse_uncalibratable(library_paths(study_dir, config), config, config_path)):
        try:
            check()
        except InputError as err:
            errors.append(err)
    if errors:  # a fresh user fixed an outcome column only to meet the library path's typo next
        raise errors[0] if len(errors) == 1 else InputError(f"{len(errors)} problems with this study: " + "; ".join(
            f"({i}) {err}" for i, err in enumerate(errors, 1)), fix="correct each of them, then run again")
    return ([w for w in [mass_tolerance_warning(config)] if w] + found + unlisted_runs(study_dir, sheet["file"].to_list())
            + typed_rows_with_outcomes(sheet, [str(c) for c in outcomes if c], name := str(
                sheet_path.name if sheet_path.exists() else "samples.tsv")) + role_name_warnings(sheet, name)
            + batch_label_warnings(sheet, name) + lone_subject_warnings(sheet, [str(c) for c in outcomes if c], name))
