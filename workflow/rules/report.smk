# Study: one HTML report of everything above.


rule report:
    input:
        per_sample(["features", "spectra", "embeddings", "annotations", "sample_embedding"]),
        "results/study/feature_matrix.parquet",
        "results/study/models/models_done.json",
        "results/study/identifications.parquet",
        lambda wildcards: expand(
            "results/study/{table}/{outcome}.parquet",
            table=["differential", "class_enrichment"],
            outcome=DIFFERENTIAL_OUTCOMES,
        ),
        sheet="results/study/samples.tsv",
    output:
        "results/study/report.html",
    params:
        p=lambda wildcards: stage_params("report", config_used=config),
        version=MS2STUDY_VERSION,
    log:
        "logs/study/report.log",
    benchmark:
        "results/benchmarks/study/report.tsv"
    threads: 1
    resources:
        mem_mb=res("report", "mem_mb"),
        runtime=res("report", "runtime"),
    conda:
        ENV
    shell:
        "python -m ms2study report --study-dir . --samples {input.sheet:q} --out {output:q} "
        "--params {params.p} > {log:q} 2>&1"
