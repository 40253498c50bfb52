# Sample sheet, validation, wildcard constraints and small input functions shared by all rules.
import json
import math
import os
import re
import shlex
import sys

sys.path.insert(0, str(REPO / "workflow"))

# Each rule carries params.version (MS2STUDY_VERSION), so a new package version reruns the jobs it may change.
from ms2study import __version__ as MS2STUDY_VERSION
from ms2study.core.errors import InputError
from ms2study import study as _study
from ms2study.slurmstates import read_cancelled_as_failed
from ms2study.io.runfiles import content_size_bytes

# A job cancelled on the cluster (scancel: sacct's "CANCELLED by <uid>") reads as failed, not as queued for ever.
read_cancelled_as_failed()
from ms2study.core.paths import (
    CALIBRATION_FORMAT_VERSION,
    CORRECTED_MATRIX,
    STUDY_FOLDERS,
    matrix_inputs,
    models_runtime_minutes,
)

try:
    if Path("config.yaml").is_file():  # Snakemake's own reading keeps the last of a repeated key in silence
        _study.read_config_file(Path("config.yaml"))
    _study.validate_config(config)
    SHEET = _study.load_sample_sheet(Path("."), config)
    _study.check_outcomes(SHEET, config, config["samples"])
    LIBRARIES = _study.library_paths(Path("."), config)
except InputError as _err:
    raise WorkflowError(f"ms2study: {_err}")

# The matrix the models, the differential tests and the attribution read (config section correct; the correct stage
# writes it, rules/correct.smk): the drift/batch-corrected, gap-filled matrix unless correct.use_corrected is false;
# with correct.exclude_flagged the features it flags (blank filter, QC RSD) are left out of models and tests. Also the
# sample embeddings and feature intensities they pool with (corrected: rule pool_corrected).
MATRIX_INPUTS = matrix_inputs(config)
SAMPLES = SHEET["sample_id"].to_list()
SAMPLE_FILES = dict(zip(SHEET["sample_id"], SHEET["file"]))
LIBRARY_NAME = _study.library_name(LIBRARIES, config) if LIBRARIES else "none"
try:
    REFERENCE = _study.check_reference_sample(SHEET, config)
    REFERENCE_FALLBACKS = _study.reference_fallbacks(SHEET, REFERENCE)
    _study.check_correction(SHEET, config)
except InputError as _err:
    raise WorkflowError(f"ms2study: {_err}")

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
    """The sample's run (mzML or mzXML) as the sheet names it."""
    return SAMPLE_FILES[wildcards.sample]


def stage_params(section, **extra):
    """The stage's config section as a shell-quoted JSON argument (a change reruns that stage only)."""
    params = dict(config.get(section) or {}) if section else {}
    params.update(extra)
    return shlex.quote(json.dumps(params, sort_keys=True))


def section_params(section):
    """A params function giving config ``section`` as JSON. A function, not the string itself: Snakemake reads
    ``{name}`` in a string param as a wildcard, and a config value may hold braces."""
    return lambda wildcards: stage_params(section)


def spectra_params(wildcards):
    """The spectra section plus the cleaning section: sample spectra are cleaned exactly as the library's."""
    return stage_params("spectra", **config["cleaning"])


def index_params(wildcards):
    """The library index is built with the cleaning section, as the sample spectra are cleaned."""
    return stage_params(None, cleaning=config["cleaning"])


def annotate_params(wildcards):
    """The annotate section plus embed's model (queries and the library are compared in that encoder's space) and
    settings (a run whose precursor offset is removed is embedded again as the embed stage embeds)."""
    return stage_params("annotate", model=config["embed"]["model"], embed=config["embed"])


# annotate keys that decide which hits are kept or accepted, never how they are scored: the library calibration
# (the null of the scores) does not depend on them, so changing them must not recalibrate.
NOT_CALIBRATED = ("top_k", "fdr", "min_score", "analogue_chunk_mb", "recalibrate_precursors")


def calibration_params(wildcards):
    """annotate_params without NOT_CALIBRATED: a new FDR reruns annotate, not the library calibration."""
    section = {k: v for k, v in (config.get("annotate") or {}).items() if k not in NOT_CALIBRATED}
    return stage_params(None, **section, model=config["embed"]["model"])


def identify_params(wildcards):
    """annotate's fdr (the per-feature identifications are accepted at the same q-value as the spectra) and the
    spectra stage's mz_tolerance_ppm (a feature whose m/z strays further from its named ion is marked)."""
    return stage_params(None, fdr=(config.get("annotate") or {}).get("fdr", 0.01),
                        mz_tolerance_ppm=(config.get("spectra") or {}).get("mz_tolerance_ppm", 10.0))


def train_params(wildcards):
    """The train section, the model named after the requested folder."""
    return stage_params("train", name=wildcards.name)


def learn_combined_params(wildcards):
    """learn-combined embeds on the training device (train.device), not on embed's."""
    return stage_params(None, embed={"device": config["train"].get("device", "auto")})


def res(stage, key):
    """Resource ``key`` for ``stage``: the configured base plus ``<key>_per_input_mb`` times the job's input size
    (MB; a .mzML.gz run decompressed: ``runfiles.content_size_bytes``) plus ``<key>_per_run`` times the sheet's runs
    (the study jobs: their memory follows the study matrix's columns, and for gapfill, pool_corrected and
    chemistry, which read one run's tables at a time, their time the runs), times the attempt number (retries get
    more); gpu is taken as configured."""
    table = config.get("resources", {})
    entry, default = table.get(stage, {}), table.get("default", {})
    base = entry.get(key, default.get(key, 0))
    if key == "gpu":
        return base
    slope = entry.get(f"{key}_per_input_mb", default.get(f"{key}_per_input_mb", 0))
    per_run = entry.get(f"{key}_per_run", 0) * len(SAMPLES)

    def scaled(wildcards, input, attempt):
        # Only the inputs that exist count: a job of a SLURM group is sized when the group is submitted, before its
        # upstream members (e.g. detect for spectra) have written their outputs; input.size_mb would fail there.
        # (a gzip-compressed run counts as decompressed: what its reader holds)
        size = sum(content_size_bytes(f) for f in input if os.path.exists(f)) / 1e6 if slope else 0.0
        return int(math.ceil((base + slope * size + per_run) * attempt))

    return scaled


def per_run_files(pattern):
    """One path per run of the sheet, in sheet order: ``pattern`` with ``{sample}`` filled. A rule reading a study
    folder (STUDY_FOLDERS) takes the folder as input and these files as params, so the files a removed sample left
    in a folder are never read."""
    return expand(pattern, sample=SAMPLES)


def matrix_input(key):
    """A rule's input for MATRIX_INPUTS[key] (sample_embedding or features): the study folder holding the runs'
    tables (correct.use_corrected: the one output of rule pool_corrected), else the per-sample files themselves."""
    folder = MATRIX_INPUTS[f"{key}_folder"]
    return folder if folder else per_run_files(MATRIX_INPUTS[key])


def run_template(folder):
    """``{folder}/{sample}.parquet``: a study folder's per-run path template for a command's ``--sample-ids`` form."""
    return f"{folder}/{{sample}}.parquet"


def models_runtime(wildcards, input, attempt):
    """The models job's runtime (minutes): the configured base, plus the forests' cost with estimator random_forest
    (ms2study.core.paths.models_runtime_minutes) for the outcomes rules/models.smk lists (MODEL_OUTCOMES, read when
    the job is sized); retries scale it by the attempt like every other resource."""
    base = res("models", "runtime")(wildcards, input, 1)
    return models_runtime_minutes(config, len(SAMPLES), len(MODEL_OUTCOMES), base) * attempt


def library_index():
    """The library's index folder, or no input without a library."""
    return f"results/library/{LIBRARY_NAME}" if LIBRARIES else []


def library_calibration():
    """The library's confidence calibration (only with a library and confidence: null_model)."""
    wanted = LIBRARIES and (config.get("annotate") or {}).get("confidence", "null_model") == "null_model"
    return f"results/confidence/{LIBRARY_NAME}.json" if wanted else []


def library_options(wildcards, input):
    """The command options naming the rule's library index and calibration inputs (none without a library)."""
    options = []
    if input.get("library"):
        options += ["--library-index", input.library]
    if input.get("calibration"):
        options += ["--calibration", input.calibration]
    return " ".join(shlex.quote(option) for option in options)


def per_sample(table):
    """One path per sample of the sheet, in sheet order: results/samples/{sample}/{table}.parquet."""
    return expand("results/samples/{sample}/{table}.parquet", sample=SAMPLES, table=table)


def get_train_library(wildcards):
    """The train_library file(s); an error naming the key when none is set."""
    paths = config.get("train_library")
    if not paths:
        raise WorkflowError(
            "ms2study: set 'train_library' in config.yaml (MGF/MSP/JSON with InChIKeys) to train an encoder"
        )
    return [paths] if isinstance(paths, str) else list(paths)


def prototypes_inputs(wildcards):
    """The embeddings the prototypes are learned on: the library index folder, or the reference run's table and,
    should it have too few spectra, the tables of the runs the alignment falls back to (the first usable is taken)."""
    wanted = ((config.get("pool") or {}).get("prototypes") or {}).get("source", "library")
    if wanted == "library" and LIBRARIES:
        return {"library": library_index()}
    return {"embeddings": [f"results/samples/{s}/embeddings.parquet" for s in [REFERENCE, *REFERENCE_FALLBACKS]]}


def prototypes_source_options(wildcards, input):
    """`--library-index DIR` or `--embeddings FILE ... --first-usable`, whichever prototypes_inputs chose."""
    if input.get("library"):
        return f"--library-index {shlex.quote(input.library)}"
    return "--embeddings " + " ".join(shlex.quote(f) for f in input.embeddings) + " --first-usable"
