# Per sample: one embedding for the whole sample, pooled from its spectrum embeddings.


rule pool:
    input:
        embeddings="results/samples/{sample}/embeddings.parquet",
        spectra="results/samples/{sample}/spectra.parquet",
        features="results/samples/{sample}/features.parquet",
    output:
        "results/samples/{sample}/sample_embedding.parquet",
    params:
        p=section_params("pool"),
        version=MS2STUDY_VERSION,
    log:
        "logs/pool/{sample}.log",
    benchmark:
        "results/benchmarks/pool/{sample}.tsv"
    threads: 1
    resources:
        mem_mb=res("pool", "mem_mb"),
        runtime=res("pool", "runtime"),
    conda:
        ENV
    shell:
        "python -m ms2study --threads {threads} pool --embeddings {input.embeddings:q} --spectra {input.spectra:q} "
        "--features {input.features:q} --sample-id {wildcards.sample} --out {output:q} --params {params.p} "
        "> {log:q} 2>&1"
