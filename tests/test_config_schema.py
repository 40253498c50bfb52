"""The config schema, config/config.yaml, config/README.md and the stages' defaults cannot drift apart, and every bad
value is refused at the door with its key path, the file that set it and the fix."""

from __future__ import annotations

import dataclasses
import importlib
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from ms2study import study
from ms2study.core.errors import InputError
from ms2study.core.params import schema_defaults

REPO = Path(__file__).resolve().parents[1]
SCHEMA = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())
CONFIG = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
README = (REPO / "config" / "README.md").read_text()
STAGES = ["detect", "spectra", "embed", "annotate", "pool", "link", "models", "report", "train"]

# Stage parameters a rule sets itself (never user keys: the schema refuses them).
SET_BY_RULES = {
    "spectra": set(CONFIG["cleaning"]),  # the cleaning section is handed to the spectra stage
    "annotate": {"cleaning", "model", "embed"},  # cleaned like the library; the encoder and its settings: embed's
    "report": {"config_used"},  # the whole configuration, shown in the report
}
# Schema keys a stage may not (yet) have (none today).
SCHEMA_ONLY: dict[str, set[str]] = {}


def resolve(node: dict) -> dict:
    while "$ref" in node:
        target = SCHEMA["$defs"][node["$ref"].rsplit("/", 1)[-1]]
        node = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
    return node


def section_properties(section: str) -> dict[str, dict]:
    return {k: resolve(v) for k, v in SCHEMA["properties"][section]["properties"].items()}


def test_schema_is_valid_and_config_yaml_validates() -> None:
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    errors = list(jsonschema.Draft202012Validator(SCHEMA).iter_errors(CONFIG))
    assert not errors, [f"{list(e.absolute_path)}: {e.message}" for e in errors]
    study.validate_config(CONFIG)  # the function the runner and the Snakefile call


def test_every_stage_section_is_typed_closed_and_has_defaults() -> None:
    for section in ["cleaning", *STAGES]:
        schema = SCHEMA["properties"][section]
        assert schema.get("additionalProperties") is False, section
        for key, prop in section_properties(section).items():
            assert {"type", "enum", "anyOf", "oneOf", "const"} & set(prop), f"{section}.{key} has no type"
            assert "default" in prop, f"{section}.{key} has no default in the schema"


@pytest.mark.parametrize("section", [s for s, v in CONFIG.items() if isinstance(v, dict) and s != "resources"])
def test_config_yaml_defaults_equal_schema_defaults(section: str) -> None:
    props = section_properties(section)
    for key, value in CONFIG[section].items():
        assert key in props, f"config/config.yaml {section}.{key} is not in the schema"
        assert "default" in props[key], f"{section}.{key}: no default in the schema"
        assert props[key]["default"] == value, f"{section}.{key}: schema default {props[key]['default']!r}, " \
                                               f"config/config.yaml {value!r}"
    for key in set(props) - set(CONFIG[section]):
        assert key in SCHEMA_ONLY.get(section, set()), f"{section}.{key} is in the schema but not in config.yaml"


def test_top_level_defaults_equal_schema_defaults() -> None:
    for key, value in CONFIG.items():
        if isinstance(value, dict):
            continue
        assert resolve(SCHEMA["properties"][key]).get("default") == value, key


# The module that defines each section's parameters (its DEFAULT_PARAMS).
PARAMS_MODULES = {
    "cleaning": "ms2study.library.build",  # DEFAULT_PARAMS["cleaning"]
    "detect": "ms2study.stages.detect",
    "spectra": "ms2study.stages.spectra",
    "embed": "ms2study.encoder.inference",
    "annotate": "ms2study.identification.engine",
    "pool": "ms2study.modelling.pooling",
    "link": "ms2study.stages.link",
    "models": "ms2study.stages.models",
    "report": "ms2study.stages.report",
    "train": "ms2study.encoder.training",
}


def _stage_defaults(section: str) -> dict[str, Any]:
    defaults = importlib.import_module(PARAMS_MODULES[section]).DEFAULT_PARAMS
    return defaults["cleaning"] if section == "cleaning" else defaults


@pytest.mark.parametrize("section", ["cleaning", *STAGES])
def test_stage_defaults_and_schema_hold_the_same_keys(section: str) -> None:
    """Every parameter a stage knows is in the schema (or set by its rule), and the schema offers no key the stage
    would refuse; shared keys have the same default."""
    defaults = _stage_defaults(section)
    props = section_properties(section)
    user_keys = set(defaults) - SET_BY_RULES.get(section, set())
    assert not user_keys - set(props), f"{section}: stage parameters missing from the schema"
    assert not set(props) & SET_BY_RULES.get(section, set()), f"{section}: a rule-set key is open to users"
    extra = set(props) - set(defaults) - SCHEMA_ONLY.get(section, set())
    assert not extra, f"{section}: schema keys the stage does not know: {sorted(extra)}"
    for key in user_keys & set(props):
        assert props[key]["default"] == defaults[key], f"{section}.{key}: schema {props[key]['default']!r}, " \
                                                       f"stage {defaults[key]!r}"


def test_nested_keys_and_enums_follow_the_code() -> None:
    from ms2study.encoder import model as encoder
    from ms2study.identification.combined import SCORE_NAMES
    from ms2study.io import msio
    from ms2study.encoder import training as train
    from ms2study.modelling import pooling as pool
    from ms2study.modelling.estimators import ESTIMATORS

    train_props = section_properties("train")
    assert set(train_props["architecture"]["properties"]) == {f.name for f in dataclasses.fields(encoder.EncoderConfig)}
    assert set(train_props["augment"]["properties"]) == set(train.DEFAULT_PARAMS["augment"])
    annotate_props = section_properties("annotate")
    assert set(annotate_props["weights"]["properties"]) == set(SCORE_NAMES)
    assert annotate_props["rank_by"]["enum"] == ["combined", *SCORE_NAMES]
    pool_props = section_properties("pool")
    assert tuple(pool_props["method"]["enum"]) == pool.METHODS
    assert tuple(pool_props["abundance"]["enum"]) == pool.ABUNDANCE_SOURCES
    assert tuple(section_properties("models")["estimator"]["enum"]) == ESTIMATORS
    for section in ("detect", "spectra"):
        assert tuple(section_properties(section)["centroid"]["enum"]) == msio.CENTROID_MODES


@pytest.mark.parametrize("section", ["cleaning", *STAGES])
def test_schema_defaults_reads_each_section_in_schema_order(section: str) -> None:
    """``core.params.schema_defaults``, where the stages take their DEFAULT_PARAMS from, is the schema's defaults."""
    defaults = schema_defaults(section)
    assert list(defaults) == list(section_properties(section))
    assert defaults == {k: p["default"] for k, p in section_properties(section).items()}
    defaults[next(iter(defaults))] = "changed"  # a copy: the next caller gets the schema's value again
    assert schema_defaults(section) == {k: p["default"] for k, p in section_properties(section).items()}
    with pytest.raises(KeyError):
        schema_defaults("samples")  # not a section of keys



def test_the_schema_cache_reads_back_as_the_yaml_and_follows_an_edit(tmp_path: Path, monkeypatch) -> None:
    """Jobs read the schema from a JSON cache (no PyYAML import): it must give exactly what the YAML gives, types
    included, and an edited schema must be parsed again, not served from the old cache."""
    from ms2study.core import params

    schema = tmp_path / "config.schema.yaml"
    schema.write_text((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())
    monkeypatch.setattr(params, "SCHEMA_PATH", schema)
    monkeypatch.setattr(params, "SCHEMA_CACHE_DIR", tmp_path / "cache")
    want = yaml.safe_load(schema.read_text())["properties"]
    params._schema_sections.cache_clear()
    try:
        assert repr(params._schema_sections()) == repr(want)  # parsed, and the cache written
        [cached] = (tmp_path / "cache").glob("config.schema.*.json")
        params._schema_sections.cache_clear()
        assert repr(params._schema_sections()) == repr(want)  # read from the cache
        schema.write_text(schema.read_text().replace("default: 10.0", "default: 12.5", 1))
        params._schema_sections.cache_clear()
        edited = params._schema_sections()
        assert repr(edited) == repr(yaml.safe_load(schema.read_text())["properties"]) != repr(want)
        assert not cached.exists() and len(list((tmp_path / "cache").glob("*"))) == 1
        schema.write_text(schema.read_text() + "\nx-released: 2024-01-01\n")  # a date: JSON cannot hold it
        params._schema_sections.cache_clear()
        assert repr(params._schema_sections()) == repr(edited)
        assert len(list((tmp_path / "cache").glob("*"))) == 1
    finally:
        params._schema_sections.cache_clear()

def _readme_block(section: str) -> str:
    """The part of config/README.md under a heading naming `section` (or headed `section` itself, as
    "Top-level keys"); the whole page when there is none."""
    lines = README.splitlines()
    for i, line in enumerate(lines):
        match = re.match(r"^(#+) (.*`" + re.escape(section) + "`|" + re.escape(section) + "$)", line)
        if match:
            level = len(match.group(1))
            end = next((j for j in range(i + 1, len(lines))
                        if re.match(rf"^#{{1,{level}}} ", lines[j])), len(lines))
            return "\n".join(lines[i:end])
    return README


@pytest.mark.parametrize("section", list(CONFIG))
def test_every_config_key_is_documented_in_the_readme(section: str) -> None:
    assert f"`{section}`" in README, f"config/README.md does not mention `{section}`"
    if not isinstance(CONFIG[section], dict) or section == "resources":
        return
    block = _readme_block(section)
    missing = [k for k in CONFIG[section] if f"`{k}`" not in block and f"`{section}.{k}`" not in README]
    assert not missing, f"config/README.md does not document {section} key(s) {missing}"


def _readme_row(block: str, key: str) -> list[str] | None:
    """The cells after the key of the README table row documenting ``key`` (None when there is no such row)."""
    for line in block.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 2 and cells[0] == f"`{key}`":
            return cells[1:]
    return None


def _readme_value(cell: str) -> Any:
    """A README default cell read as YAML: `1.6`, null, `[a, b]`, `{k: 64}`, `metabolites (5% RMS)`."""
    return yaml.safe_load(cell.replace("`", ""))


@pytest.mark.parametrize("section", [s for s in SCHEMA["properties"] if s != "resources"])
def test_readme_states_each_schema_default_and_allowed_word(section: str) -> None:
    """Each key's README row gives the schema's default, and every word of an enum among its allowed values."""
    if "properties" in SCHEMA["properties"][section]:
        block, props = _readme_block(section), section_properties(section)
    else:  # a top-level key: its row in the "Top-level keys" table
        block, props = _readme_block("Top-level keys"), {section: resolve(SCHEMA["properties"][section])}
    wrong = []
    for key, prop in props.items():
        row = _readme_row(block, key)
        if row is None:
            wrong.append(f"{key}: no table row")
            continue
        if _readme_value(row[0]) != prop["default"]:
            wrong.append(f"{key}: README default {row[0]!r}, schema {prop['default']!r}")
        for word in prop.get("enum", []):
            if str(word) not in " ".join(row[1:]):
                wrong.append(f"{key}: allowed value {word!r} not listed")
    assert not wrong, f"config/README.md, section `{section}`: " + "; ".join(wrong)


# --------------------------------------------------------------------------------------------- bad values


def _leaves() -> list[tuple[str, str, dict]]:
    out = []
    for section in ["cleaning", *STAGES]:
        for key, prop in section_properties(section).items():
            out.append((section, key, prop))
    return out


def _wrong_value(prop: dict) -> Any:
    """A value of the wrong kind for ``prop``: text where a number, flag, list or choice is expected."""
    types = prop.get("type", [])
    types = types if isinstance(types, list) else [types]
    if "string" in types and "enum" not in prop:
        return 12345
    return "not-a-valid-value"


@pytest.mark.parametrize(("section", "key", "prop"), _leaves(), ids=[f"{s}.{k}" for s, k, _ in _leaves()])
def test_a_wrong_kind_of_value_is_refused_with_its_key_path(section: str, key: str, prop: dict,
                                                            tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({section: {key: _wrong_value(prop)}}))
    with pytest.raises(InputError) as err:
        study.load_config(tmp_path)
    message = str(err.value)
    assert f"key '{section}.{key}'" in message
    assert str(tmp_path / "config.yaml") in message and "config/README.md" in message


def _outside(prop: dict) -> list[tuple[Any, str]]:
    """Values of the right kind that the schema's enum, range or pattern refuses, each with the word the refusal
    names (jsonschema's own message)."""
    types = prop.get("type", [])
    types = types if isinstance(types, list) else [types]
    step = 1 if "integer" in types else 0.5
    out: list[tuple[Any, str]] = []
    if "enum" in prop:
        out.append(("not-a-listed-word", "is not one of"))
    if "minimum" in prop:
        out.append((prop["minimum"] - step, "minimum"))
    if "exclusiveMinimum" in prop:
        out.append((prop["exclusiveMinimum"], "minimum"))
    if "maximum" in prop:
        out.append((prop["maximum"] + step, "maximum"))
    if "exclusiveMaximum" in prop:
        out.append((prop["exclusiveMaximum"], "maximum"))
    if "pattern" in prop:
        out.append(("has space!", "does not match"))
    return out


RANGED = [(s, k, v, hint) for s, k, prop in _leaves() for v, hint in _outside(prop)]


@pytest.mark.parametrize(("section", "key", "value", "hint"), RANGED,
                         ids=[f"{s}.{k}={v!r}" for s, k, v, _ in RANGED])
def test_every_enum_range_and_pattern_refuses_a_value_outside_it(section: str, key: str, value: Any, hint: str,
                                                                  tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({section: {key: value}}))
    with pytest.raises(InputError) as err:
        study.load_config(tmp_path)
    message = str(err.value)
    assert f"key '{section}.{key}'" in message and hint in message, message


@pytest.mark.parametrize(
    ("text", "key", "hint"),
    [
        ("annotate: {fdr: high}", "annotate.fdr", "not of type 'number'"),
        ("annotate: {fdr: 0}", "annotate.fdr", "less than or equal to the minimum of 0"),
        ("annotate: {fdr: 1.5}", "annotate.fdr", "greater than the maximum of 1"),
        ("annotate: {top_k: 0}", "annotate.top_k", "minimum of 1"),
        ("annotate: {top_k: 2.5}", "annotate.top_k", "not of type 'integer'"),
        ("annotate: {mode: fuzzy}", "annotate.mode", "'identity', 'analogue'"),
        ("annotate: {confidence: maybe}", "annotate.confidence", "null_model"),
        ("annotate: {isomer_margin: 2}", "annotate.isomer_margin", "'auto'"),
        ("annotate: {isomer_margin: auto}", None, None),
        ("annotate: {isomer_margin: 0.05, calibration_queries: 50, calibration_seed: 3}", None, None),
        ("annotate: {calibration_queries: 49}", "annotate.calibration_queries", "minimum of 50"),
        ("annotate: {weights: {cosine: 1, spectral: 1}}", "annotate.weights.spectral", "unknown key"),
        ("annotate: {confidence: high}", "annotate.confidence", "is not one of"),
        ("annotate: {fdrr: 0.05}", "annotate.fdrr", "did you mean 'fdr'"),
        ("annotate: {fdr_threshold: 0.05}", "annotate.fdr_threshold", "did you mean 'fdr'"),  # not a longer key
        ("annotate: {FDR: 0.05}", "annotate.FDR", "did you mean 'fdr'"),  # letter case
        ("detect: {width_filtering: off}", "detect.width_filtering", "quote the word"),
        ("detect: {width_filtering: 'off'}", None, None),
        ("detect: {elements: chnops}", "detect.elements", "does not match"),
        ("detect: {min_sample_rate: 1.5}", "detect.min_sample_rate", "maximum of 1"),
        ("embed: {device: gpu}", "embed.device", "does not match"),
        ("embed: {device: 'cuda:1'}", None, None),
        ("embed: {precision: fp64}", "embed.precision", "fp32"),
        ("cleaning: {max_peaks: 0}", "cleaning.max_peaks", "minimum of 1"),
        ("link: {align_min_pairs: 1}", "link.align_min_pairs", "minimum of 2"),
        ("models: {outer_splits: 1}", "models.outer_splits", "minimum of 2"),
        ("models: {ci_level: 1}", "models.ci_level", "maximum of 1"),
        ("models: {feature_sets: [embedding, peaks]}", "models.feature_sets.1", "is not one of"),
        ("models: {imputation: {features: zero}}", "models.imputation.features", "half_minimum"),
        ("report: {map_method: tsne}", "report.map_method", "umap"),
        ("train: {architecture: {pooling: max}}", "train.architecture.pooling", "cls"),
        ("train: {augment: {dropout: 0.1}}", "train.augment.dropout", "unknown key"),
        ("train: {name: 'my model'}", "train.name", "does not match"),
        ("resources: {embed: {mem_mb: 10}}", "resources.embed.mem_mb", "minimum of 100"),
        ("libary: lib.mgf", "libary", "did you mean 'library'"),
        # a section's key written at the top (a trial: 'outcomes:', '--config fdr=0.05'): name the section
        ("outcomes: [{column: group, type: binary}]", "outcomes", "'outcomes' is a key of section 'models'"),
        ("fdr: 0.05", "fdr", "is a key of section 'annotate': write it indented under 'annotate:'"),
    ],
)
def test_bad_values_are_refused_naming_key_file_and_fix(text: str, key: str | None, hint: str | None,
                                                        tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text(text + "\n")
    if key is None:
        study.load_config(tmp_path)  # allowed
        return
    with pytest.raises(InputError) as err:
        study.load_config(tmp_path)
    message = str(err.value)
    assert f"key '{key}'" in message, message
    assert hint in message, message
    assert str(tmp_path / "config.yaml") in message and "config/README.md" in message


def test_the_file_that_set_a_bad_value_is_named(tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text("annotate: {top_k: 3}\nembed: {batch_size: 0}\n")
    with pytest.raises(InputError) as err:
        study.load_config(tmp_path, {"annotate": {"top_k": -1}})
    message = str(err.value)
    assert "key 'annotate.top_k'" in message and "[set in --config on the command line]" in message
    assert "key 'embed.batch_size'" in message and f"[set in {tmp_path / 'config.yaml'}]" in message


def test_snakemake_refuses_a_bad_value_before_any_job(tmp_path: Path) -> None:
    """Run directly (`snakemake -d STUDY`), the workflow validates the same way and names the study's file."""
    import subprocess
    import sys

    (tmp_path / "a.mzML").write_text("<mzML></mzML>")
    (tmp_path / "config.yaml").write_text("annotate: {fdr: high}\n")
    result = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(tmp_path),
                             "--dry-run"], check=False, capture_output=True, text=True)
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "key 'annotate.fdr'" in output and str(tmp_path / "config.yaml") in output
    assert not (tmp_path / "results").exists()
