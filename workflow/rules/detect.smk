# Per sample: LC-MS features with pyOpenMS (centroiding when needed, mass traces, elution peaks, FeatureFindingMetabo).


rule detect:
    input:
        mzml=get_mzml,
    output:
        "results/samples/{sample}/features.parquet",
    params:
        p=section_params("detect"),
        version=MS2STUDY_VERSION,
    log:
        "logs/detect/{sample}.log",
    benchmark:
        "results/benchmarks/detect/{sample}.tsv"
    threads: 1
    resources:
        mem_mb=res("detect", "mem_mb"),
        runtime=res("detect", "runtime"),
    conda:
        ENV
    shell:
        "python -m ms2study --threads {threads} detect --mzml {input.mzml:q} --sample-id {wildcards.sample} "
        "--out {output:q} --params {params.p} > {log:q} 2>&1"
