# Study: cross-validated models of every configured outcome.
from ms2study.stages.differential import configured_outcomes
from ms2study.core.params import schema_defaults


# One folder per outcome of models: outcomes, named as `ms2study models` names them (the path-safe form of the
# column: the same stems as the differential tables). Its files are the rule's outputs, so the report is handed
# exactly the configured outcomes' results; without outcomes the models job leaves only its run record.
MODEL_OUTCOMES = list(configured_outcomes(config))
# Bags of chemistry (rules/pool.smk) are computed only when the models use them (feature set chemical_space, and
# an outcome to model: without one the models job writes its run record only, and an MS1-only study without a
# library, whose prototypes have no spectrum to learn on, must not fail for bags nothing reads).
# The rule's input is their folder (one output of rule chemistry), its params the sheet's runs' files in it.
CHEMISTRY_ON = bool(MODEL_OUTCOMES) and "chemical_space" in (
    (config.get("models") or {}).get("feature_sets") or schema_defaults("models")["feature_sets"]
)
CHEMISTRY_FOLDER = [STUDY_FOLDERS["chemistry"]] if CHEMISTRY_ON else []
CHEMISTRY = per_run_files(run_template(STUDY_FOLDERS["chemistry"])) if CHEMISTRY_ON else []
MODEL_SUMMARIES = expand("results/study/models/{outcome}/summary.json", outcome=MODEL_OUTCOMES)
MODEL_PREDICTIONS = expand("results/study/models/{outcome}/predictions.parquet", outcome=MODEL_OUTCOMES)
# what the feature-matrix model looks at (modelling.matrix_attribution), read by the report beside each summary
MODEL_EXPLAINED = expand("results/study/models/{outcome}/feature_attribution.parquet", outcome=MODEL_OUTCOMES)
# Every file `ms2study models` writes for the configured outcomes (the run record when there is none).
MODEL_OUTPUTS = (
    expand(
        "results/study/models/{outcome}/{file}",
        outcome=MODEL_OUTCOMES,
        file=["summary.json", "metrics.parquet", "predictions.parquet", "feature_attribution.parquet"],
    )
    if MODEL_OUTCOMES
    else ["results/study/models/models_done.json"]
)


rule models:
    input:
        sheet="results/study/samples.tsv",
        # the pooled folder (rule pool_corrected) or the per-sample sample embeddings; the files read: params
        embeddings=matrix_input("sample_embedding"),
        spectra=per_sample("spectra"),
        chemistry=CHEMISTRY_FOLDER,
        matrix=MATRIX_INPUTS["matrix"],
        flags=MATRIX_INPUTS["flag_input"],
        # the linked matrix: a run with under a fifth of the samples' median of detected features is left out as
        # failed (gap-filled values would hide it); the QC table flags the same runs
        detected="results/study/feature_matrix.parquet",
        # each run's RT range: runs that measured under half of the study's typical range are left out. Read from
        # the detect stage's chromatograms, not qc.parquet: the QC table holds the accepted identifications, so a
        # change of annotate: fdr would rerun the models through it
        chromatograms=per_sample("chromatogram"),
    output:
        # the summaries are marked for `snakemake --report`; the other files are plain outputs
        [
            report(f, caption="../report/model_summary.rst", category="Models") if f in MODEL_SUMMARIES else f
            for f in MODEL_OUTPUTS
        ],
    params:
        p=lambda wildcards: stage_params("models"),
        flags=MATRIX_INPUTS["option"],
        embeddings=per_run_files(MATRIX_INPUTS["sample_embedding"]),
        chemistry=lambda wildcards: (
            "--sample-chemistry " + " ".join(shlex.quote(f) for f in CHEMISTRY) if CHEMISTRY else ""
        ),
        version=MS2STUDY_VERSION,
    log:
        "logs/study/models.log",
    benchmark:
        "results/benchmarks/study/models.tsv"
    # single-threaded: BLAS is held to one thread (threadpool_limits), the numba kernel is serial, forests n_jobs=1
    threads: 1
    resources:
        mem_mb=res("models", "mem_mb"),
        runtime=models_runtime,
    conda:
        ENV
    shell:
        "python -m ms2study --threads {threads} models --samples {input.sheet:q} "
        "--sample-embeddings {params.embeddings:q} --feature-matrix {input.matrix:q} --spectra {input.spectra:q} "
        "--chromatograms {input.chromatograms:q} --detected-matrix {input.detected:q} "
        "{params.chemistry} {params.flags} --outdir results/study/models --params {params.p} > {log:q} 2>&1"
