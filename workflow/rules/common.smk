# Sample sheet, validation, wildcard constraints and small input functions shared by all rules.
import json
import re
import shlex
import sys

sys.path.insert(0, str(REPO / "workflow"))

from ms2study import __version__ as MS2STUDY_VERSION
from ms2study.core.errors import InputError
from ms2study import study as _study

try:
    _study.validate_config(config)
    SHEET = _study.load_sample_sheet(Path("."), config)
    _study.check_outcomes(SHEET, config, config["samples"])
    LIBRARIES = _study.library_paths(Path("."), config)
except InputError as _err:
    raise WorkflowError(f"ms2study: {_err}")

SAMPLES = SHEET["sample_id"].to_list()
SAMPLE_FILES = dict(zip(SHEET["sample_id"], SHEET["file"]))
LIBRARY_NAME = _study.library_name(LIBRARIES, config) if LIBRARIES else "none"
REFERENCE = config.get("reference_sample") or SAMPLES[0]
if REFERENCE not in SAMPLE_FILES:
    raise WorkflowError(
        f"ms2study: reference_sample '{REFERENCE}' is not in the sample sheet; "
        f"set reference_sample in config.yaml to one of: {', '.join(SAMPLES[:10])}"
    )

# Rules call the package through its CLI (`python -m ms2study`), importable from the repository without installation
# (so a conda environment that holds only the dependencies works too). Outside conda, `python` is the interpreter
# running Snakemake, so the rules see the same environment.
_exports = f"export PYTHONPATH={shlex.quote(str(REPO / 'workflow'))}${{{{PYTHONPATH:+:$PYTHONPATH}}}}; "
if "conda" not in str(getattr(workflow.deployment_settings, "deployment_method", "")).lower():
    _exports += f"export PATH={shlex.quote(str(Path(sys.executable).parent))}:$PATH; "
shell.prefix(f"set -euo pipefail; {_exports}")
ENV = str(REPO / "envs" / "ms2study.yaml")


wildcard_constraints:
    sample="|".join(map(re.escape, SAMPLES)) if SAMPLES else "[^/]+",


def get_mzml(wildcards):
    return SAMPLE_FILES[wildcards.sample]


def stage_params(section, **extra):
    """The stage's config section as a shell-quoted JSON argument (a change reruns that stage only)."""
    params = dict(config.get(section) or {}) if section else {}
    params.update(extra)
    return shlex.quote(json.dumps(params, sort_keys=True))


def res(stage, key):
    """Resource ``key`` for ``stage`` scaled by the attempt number (retries get more)."""
    table = config.get("resources", {})
    base = table.get(stage, {}).get(key, table.get("default", {}).get(key, 0))
    return lambda wildcards, attempt: base * attempt if key != "gpu" else base


def library_index():
    return f"results/library/{LIBRARY_NAME}" if LIBRARIES else []


def library_calibration():
    """The library's confidence calibration (only with a library and confidence: null_model)."""
    wanted = LIBRARIES and (config.get("annotate") or {}).get("confidence", "null_model") == "null_model"
    return f"results/confidence/{LIBRARY_NAME}.json" if wanted else []


def per_sample(table):
    return expand("results/samples/{sample}/{table}.parquet", sample=SAMPLES, table=table)


def get_train_library(wildcards):
    paths = config.get("train_library")
    if not paths:
        raise WorkflowError(
            "ms2study: set 'train_library' in config.yaml (MGF/MSP/JSON with InChIKeys) to train an encoder"
        )
    return [paths] if isinstance(paths, str) else list(paths)
