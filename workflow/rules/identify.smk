# Study: one identification per consensus feature (Simes-combined p over its samples' hits, BH q).


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
