# Study: features linked across samples, outcome models, the report. Only these rules see all samples.


rule sample_sheet:
    # The validated sheet (derived from the folder when there is no samples.tsv); its content is the param,
    # so editing an outcome reruns the study stages but no per-sample job.
    input:
        [config["samples"]] if Path(config["samples"]).exists() else [],
    output:
        "results/study/samples.tsv",
    params:
        content=SHEET.write_csv(separator="\t"),
    log:
        "logs/study/sample_sheet.log",
    localrule: True
    run:
        from ms2study.core.atomic import write_text

        write_text(params.content, output[0])


rule link:
    input:
        per_sample("features"),
    output:
        matrix="results/study/feature_matrix.parquet",
        alignment="results/study/alignment.parquet",
        links="results/study/feature_links.parquet",
    params:
        p=lambda wildcards: stage_params("link"),
        samples=" ".join(SAMPLES),
        reference=REFERENCE,
        version=MS2STUDY_VERSION,
    log:
        "logs/study/link.log",
    benchmark:
        "results/benchmarks/study/link.tsv"
    threads: 1
    resources:
        mem_mb=res("link", "mem_mb"),
        runtime=res("link", "runtime"),
    conda:
        ENV
    shell:
        "python -m ms2study link --features {input:q} --sample-ids {params.samples} --reference {params.reference} "
        "--out {output.matrix:q} --alignment-out {output.alignment:q} --links-out {output.links:q} "
        "--params {params.p} > {log:q} 2>&1"


rule identify:
    # One identification per consensus feature: the spectra of a feature vote, confidence per feature.
    input:
        annotations=per_sample("annotations"),
        links="results/study/feature_links.parquet",
        library=library_index(),
    output:
        "results/study/identifications.parquet",
    params:
        p=lambda wildcards: stage_params(None, fdr=(config.get("annotate") or {}).get("fdr", 0.01)),
        library=lambda wildcards, input: f"--library-index {shlex.quote(input.library)}" if LIBRARIES else "",
        version=MS2STUDY_VERSION,
    log:
        "logs/study/identify.log",
    benchmark:
        "results/benchmarks/study/identify.tsv"
    threads: 1
    resources:
        mem_mb=res("link", "mem_mb"),
        runtime=res("link", "runtime"),
    conda:
        ENV
    shell:
        "python -m ms2study identify --annotations {input.annotations:q} --links {input.links:q} {params.library} "
        "--out {output:q} --params {params.p} > {log:q} 2>&1"


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
