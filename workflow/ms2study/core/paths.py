"""Contract paths of the study tables that several stages and the rule files name, and the rules' view of config
section ``correct`` that chooses between them.

Imports nothing heavy on purpose: the rule files import it whenever Snakemake starts, which on a cluster is in every
job step (importing the models stage there pulled in scikit-learn, SciPy and numba: 1.4 s of CPU per job).
Layer 0: imports ``core.params`` only (the config schema's defaults).
"""

from __future__ import annotations

from typing import Any

from ms2study.core.params import schema_defaults

# The format of a library's identification calibration (results/confidence/{library}.json): the calibrate_library
# rule passes it as a parameter, so a new format recomputes a study's calibration (ms2study.identification.confidence
# writes and checks it; 3: the level-2 structure model and isomer separability; 4: the combined score no longer
# counts the precursor error inside the window, so every earlier null was measured with another score; 5: the
# calibration queries carry a measured precursor error and are embedded as measured; 6: the level-2 model reads the
# hit structure's other spectra; 7: the level-2 model learns only from rank-1 hits sharing 2 or more fragment peaks,
# structure_model.LEVEL2_MIN_MATCHED_PEAKS).
CALIBRATION_FORMAT_VERSION = 7

# The study matrices (contract paths) and the defaults of the config section correct that choose between them.
RAW_MATRIX = "results/study/feature_matrix.parquet"
CORRECTED_MATRIX = "results/study/feature_matrix_corrected.parquet"
CORRECT_DEFAULTS = {"use_corrected": True, "exclude_flagged": True}
# The study-phase tables of every run, one file per run ({folder}/{sample}.parquet), each folder the one output of a
# study job over all runs (a Snakemake directory(): one output, so Snakemake records the job's input checksums once,
# not once per run): gapfill, pool_corrected (two folders) and chemistry.
STUDY_FOLDERS = {name: f"results/study/{name}" for name in ("gap_filled", "corrected_features", "pooled", "chemistry")}


def matrix_inputs(config: dict) -> dict[str, Any]:
    """The rules' view of the config section ``correct`` (models, differential, attribution, report): ``matrix``, the
    corrected matrix (``use_corrected``, default true) or the raw one; ``flags``, ``[CORRECTED_MATRIX]`` when its
    flagged features are left out (``exclude_flagged``, default true), else ``[]``; ``flag_input``, the same file
    when the rule must list it beside ``matrix`` (``[]`` when ``matrix`` is that file already, so a rule's input
    names it once); ``option``, the matching
    ``--exclude-flagged PATH`` command option (or ""); ``sample_embedding`` and ``features``, path patterns (with
    ``{sample}``) of the sample embeddings and feature intensities the models, bags of chemistry and attribution
    use: pooled with corrected intensities under results/study (``use_corrected``) or the per-sample ones;
    ``sample_embedding_folder`` and ``features_folder``, the folder holding those per-run tables when one study job
    writes them all (``STUDY_FOLDERS``: a rule takes the folder as input and the sheet's runs' files as params),
    None for the per-sample tables (a rule takes the files themselves as input)."""
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
                         else "results/samples/{sample}/features.parquet"),
            "sample_embedding_folder": STUDY_FOLDERS["pooled"] if corrected else None,
            "features_folder": STUDY_FOLDERS["corrected_features"] if corrected else None}


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


def permutation_budget(setting: int | str, n_samples: int) -> int:
    """The most label permutations one feature set's p-value may use: ``setting`` itself when an integer (>= 0);
    for ``"auto"`` ``AUTO_PERMUTATIONS_LARGE`` (40: smallest p 1/41) above ``AUTO_SMALL_STUDY`` samples and
    ``AUTO_PERMUTATIONS_SMALL`` (100: p down to 1/101) up to it. Small studies are where the bootstrap interval is
    wide and coarse and the permutation p carries the verdict, and where a permutation (one cross-validation repeat)
    is cheap. The choice among the feature sets is adjusted for by the max-statistic over the sets on the first
    ``family_permutations`` permutations, which every set draws (``modelling.evaluate.family_adjusted_p``), so the
    budget does not grow with the number of sets (session 27 drew 20 per set for a Bonferroni adjustment: 3.1x the
    CPU at 200 samples, ``benchmarks/measured/permutation_cost_session27.json``). Raises ValueError for anything
    else."""
    if setting == "auto":
        return AUTO_PERMUTATIONS_SMALL if n_samples <= AUTO_SMALL_STUDY else AUTO_PERMUTATIONS_LARGE
    if isinstance(setting, bool) or not isinstance(setting, int) or setting < 0:
        raise ValueError(f"n_permutations must be 'auto' or an integer >= 0, not {setting!r}")
    return setting


def family_permutations(budget: int, stop_after: int) -> int:
    """How many of the first permutations every feature set draws before it may stop early, and so how many the
    adjustment for the choice among the sets reads (``modelling.evaluate.family_adjusted_p``): the whole ``budget``
    when drawing never stops early (``stop_after`` 0), else at most ``FAMILY_PERMUTATIONS`` (40: the adjusted p can
    reach 1/41 = 0.024, and 2/41 = 0.049 with one permutation reaching)."""
    return budget if stop_after <= 0 else min(budget, FAMILY_PERMUTATIONS)


# models.n_permutations: auto (permutation_budget); modelling.evaluate.sequential_permutation_p may stop earlier.
AUTO_SMALL_STUDY = 100
AUTO_PERMUTATIONS_SMALL = 100
AUTO_PERMUTATIONS_LARGE = 40
FAMILY_PERMUTATIONS = 40  # drawn by every set before stopping early; the max-statistic adjustment reads these


# Seconds of CPU per 200-tree random forest fit on the univariate filter's 200 columns: 0.25 s up to ~50 samples,
# 0.42 s at 200 and 1.9 s at 1,000 (scikit-learn 1.9, one thread, Intel Xeon; measured in session 9), i.e. about
# 0.25 + 0.0017 x samples; 0.002 leaves some headroom.
FOREST_FIT_S = (0.25, 0.002)


def models_runtime_minutes(config: dict, n_samples: int, n_outcomes: int, base_minutes: int) -> int:
    """Runtime (minutes, first attempt) the models job asks for: ``base_minutes`` (``resources.models.runtime``, else
    the default), plus, with ``models.estimator: random_forest``, the forests it fits: per outcome and feature set,
    (outer_repeats + n_permutations) x outer_splits outer fits (each permutation reruns one repeat), each choosing
    among the ``forest_min_samples_leaf`` values by an inner CV (inner_splits fits each) and refitting once, every
    fit costing forest_trees / 200 x (0.25 + 0.002 x samples) seconds (``FOREST_FIT_S``, measured). The elastic
    net and the other linear models fit within the base (69 s of CPU at 200 samples with 40 permutations:
    benchmarks/measured/scale.json; 535 s at 1,000 with 20: scale_session16.json). A site whose nodes are slower raises ``resources.models.runtime``.
    """
    defaults = schema_defaults("models")
    p = {**defaults, **(config.get("models") or {})}
    if p.get("estimator") != "random_forest" or n_outcomes == 0:
        return int(base_minutes)
    fits_per_outer = len(p["forest_min_samples_leaf"]) * int(p["inner_splits"]) + 1
    outer = (int(p["outer_repeats"]) + permutation_budget(p["n_permutations"], n_samples))
    outer *= int(p["outer_splits"])
    fits = n_outcomes * len(p["feature_sets"]) * outer * fits_per_outer
    seconds = fits * int(p["forest_trees"]) / 200.0 * (FOREST_FIT_S[0] + FOREST_FIT_S[1] * n_samples)
    return int(base_minutes + -(-seconds // 60))
