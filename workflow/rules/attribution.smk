# Study: what the embedding model of each outcome looks at: every consensus feature's contribution to the linear
# model on pooled spectrum embeddings (the pooled vector is a weighted sum of spectrum embeddings).
from ms2study.stages.differential import configured_outcomes

# One table per outcome of models: outcomes, named as the differential tables and the models' folders.
ATTRIBUTION_OUTCOMES = list(configured_outcomes(config))


rule attribution:
    input:
        sheet="results/study/samples.tsv",
        # the sample embeddings the models used and the intensities they were pooled with (rules/correct.smk)
        # (folders of rule pool_corrected, or the per-sample files; the files read: params)
        sample_embeddings=matrix_input("sample_embedding"),
        embeddings=per_sample("embeddings"),
        spectra=per_sample("spectra"),
        features=matrix_input("features"),
        links="results/study/feature_links.parquet",
        # keys of the consensus features; the corrected matrix also gives their flags (rules/models.smk)
        matrix=MATRIX_INPUTS["matrix"],
        identifications="results/study/identifications.parquet",
        summary="results/study/models/{outcome}/summary.json",
    output:
        "results/study/attribution/{outcome}.parquet",
    params:
        # the outcome and the pool section (how the sample vectors were pooled); the models' settings are read
        # from the outcome's summary.json, an input
        p=lambda wildcards: stage_params(
            None, outcome=configured_outcomes(config)[wildcards.outcome], pool=config.get("pool") or {}
        ),
        sample_embeddings=per_run_files(MATRIX_INPUTS["sample_embedding"]),
        features=per_run_files(MATRIX_INPUTS["features"]),
        version=MS2STUDY_VERSION,
    log:
        "logs/study/attribution_{outcome}.log",
    benchmark:
        "results/benchmarks/study/attribution_{outcome}.tsv"
    threads: 1
    resources:
        mem_mb=res("models", "mem_mb"),
        runtime=res("models", "runtime"),
    conda:
        ENV
    shell:
        "python -m ms2study --threads {threads} attribution --samples {input.sheet:q} "
        "--sample-embeddings {params.sample_embeddings:q} --embeddings {input.embeddings:q} --spectra {input.spectra:q} "
        "--features {params.features:q} --links {input.links:q} --feature-matrix {input.matrix:q} "
        "--identifications {input.identifications:q} --model-summary {input.summary:q} --out {output:q} "
        "--params {params.p} > {log:q} 2>&1"
