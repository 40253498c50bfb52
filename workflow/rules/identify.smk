# Study: one identification per consensus feature (Simes-combined p over its samples' hits, BH q).


rule identify:
    # One identification per consensus feature: the spectra of a feature vote, confidence per feature.
    input:
        annotations=per_sample("annotations"),
        links="results/study/feature_links.parquet",
        library=library_index(),
    output:
        report("results/study/identifications.parquet", caption="../report/identifications.rst", category="Tables"),
    params:
        p=identify_params,
        library=library_options,
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
        "python -m ms2study --threads {threads} identify --annotations {input.annotations:q} --links {input.links:q} "
        "{params.library} --out {output:q} --params {params.p} > {log:q} 2>&1"
