"""Contract paths of the study tables that several stages and the rule files name, and the rules' view of config
section ``correct`` that chooses between them.

Imports nothing heavy on purpose: the rule files import it whenever Snakemake starts, which on a cluster is in every
job step (importing the models stage there pulled in scikit-learn, SciPy and numba: 1.4 s of CPU per job).
Layer 0: imports ``core.params`` only (the config schema's defaults).
"""

from __future__ import annotations

from typing import Any

from ms2study.core.params import schema_defaults

# The study matrices (contract paths) and the defaults of the config section correct that choose between them.
RAW_MATRIX = "results/study/feature_matrix.parquet"
CORRECTED_MATRIX = "results/study/feature_matrix_corrected.parquet"
CORRECT_DEFAULTS = {"use_corrected": True, "exclude_flagged": True}


def matrix_inputs(config: dict) -> dict[str, Any]:
    """The rules' view of the config section ``correct`` (models, differential, attribution, report): ``matrix``, the
    corrected matrix (``use_corrected``, default true) or the raw one; ``flags``, ``[CORRECTED_MATRIX]`` when its
    flagged features are left out (``exclude_flagged``, default true), else ``[]``; ``flag_input``, the same file
    when the rule must list it beside ``matrix`` (``[]`` when ``matrix`` is that file already, so a rule's input
    names it once); ``option``, the matching
    ``--exclude-flagged PATH`` command option (or ""); ``sample_embedding`` and ``features``, path patterns (with
    ``{sample}``) of the sample embeddings and feature intensities the models, bags of chemistry and attribution
    use: pooled with corrected intensities under results/study (``use_corrected``) or the per-sample ones."""
    correct = {**CORRECT_DEFAULTS, **(config.get("correct") or {})}
    flags = [CORRECTED_MATRIX] if correct["exclude_flagged"] else []
    corrected = bool(correct["use_corrected"])
    return {"matrix": CORRECTED_MATRIX if corrected else RAW_MATRIX, "flags": flags,
            "flag_input": [] if corrected else flags,
            "option": f"--exclude-flagged {CORRECTED_MATRIX}" if flags else "",
            # the weights of pooling: the corrected intensities (rule pool_corrected) or the detect stage's own
            "sample_embedding": ("results/study/pooled/{sample}.parquet" if corrected
                                 else "results/samples/{sample}/sample_embedding.parquet"),
            "features": ("results/study/corrected_features/{sample}.parquet" if corrected
                         else "results/samples/{sample}/features.parquet")}


# The correct keys only later stages read (models, differential, attribution): they do not rerun the corrections.
LATER_STAGE_KEYS = ("use_corrected", "exclude_flagged")
# The correct keys the gapfill rule uses.
GAPFILL_KEYS = ("gap_fill_mz_ppm", "gap_fill_rt_s")


def rule_params(config: dict, rule: str) -> dict:
    """The part of the workflow config's ``correct`` section that rule ``rule`` ("gapfill" or "correct") passes as
    ``--params``, so a change of another key does not rerun it."""
    section = config.get("correct") or {}
    if rule == "gapfill":
        return {k: v for k, v in section.items() if k in GAPFILL_KEYS}
    return {k: v for k, v in section.items() if k not in LATER_STAGE_KEYS}


def gap_fill_on(config: dict) -> bool:
    """Whether the workflow runs gap filling (config ``correct.gap_fill``, default true)."""
    return bool((config.get("correct") or {}).get("gap_fill", schema_defaults("correct")["gap_fill"]))
