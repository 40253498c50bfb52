# Study: cross-validated models of every configured outcome.


rule models:
    input:
        sheet="results/study/samples.tsv",
        embeddings=per_sample("sample_embedding"),
        spectra=per_sample("spectra"),
        matrix="results/study/feature_matrix.parquet",
    output:
        "results/study/models/models_done.json",
    params:
        p=lambda wildcards: stage_params("models"),
        version=MS2STUDY_VERSION,
    log:
        "logs/study/models.log",
    benchmark:
        "results/benchmarks/study/models.tsv"
    threads: 2
    resources:
        mem_mb=res("models", "mem_mb"),
        runtime=res("models", "runtime"),
    conda:
        ENV
    shell:
        "python -m ms2study models --samples {input.sheet:q} --sample-embeddings {input.embeddings:q} "
        "--feature-matrix {input.matrix:q} --spectra {input.spectra:q} --outdir results/study/models --params {params.p} > {log:q} 2>&1"
