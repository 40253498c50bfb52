# Study: features linked across samples into consensus features (pyOpenMS FeatureGroupingAlgorithmKD).


rule link:
    input:
        per_sample("features"),
    output:
        matrix=report("results/study/feature_matrix.parquet", caption="../report/feature_matrix.rst", category="Tables"),
        alignment="results/study/alignment.parquet",
        links="results/study/feature_links.parquet",
    params:
        p=section_params("link"),
        samples=" ".join(SAMPLES),
        reference=REFERENCE,
        # when the reference has no features, the runs to align onto instead (study samples, then pooled QCs)
        fallbacks=" ".join(REFERENCE_FALLBACKS),
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
        "python -m ms2study --threads {threads} link --features {input:q} --sample-ids {params.samples} "
        "--reference {params.reference} --reference-fallbacks {params.fallbacks} --out {output.matrix:q} --alignment-out {output.alignment:q} "
        "--links-out {output.links:q} --params {params.p} > {log:q} 2>&1"
