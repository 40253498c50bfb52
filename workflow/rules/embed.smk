# Per sample: every MS2 spectrum embedded by the transformer encoder (torch; GPU when one is granted).


rule embed:
    input:
        "results/samples/{sample}/spectra.parquet",
    output:
        "results/samples/{sample}/embeddings.parquet",
    params:
        p=section_params("embed"),
        version=MS2STUDY_VERSION,
    log:
        "logs/embed/{sample}.log",
    benchmark:
        "results/benchmarks/embed/{sample}.tsv"
    threads: 2
    resources:
        mem_mb=res("embed", "mem_mb"),
        runtime=res("embed", "runtime"),
        gpu=res("embed", "gpu"),
    conda:
        ENV
    shell:
        "python -m ms2study --threads {threads} embed --spectra {input:q} --out {output:q} "
        "--params {params.p} > {log:q} 2>&1"
