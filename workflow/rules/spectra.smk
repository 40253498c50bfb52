# Per sample: MS2 scans mapped to features (precursor in the isolation window, polarity per scan).


rule spectra:
    input:
        mzml=get_mzml,
        features="results/samples/{sample}/features.parquet",
    output:
        "results/samples/{sample}/spectra.parquet",
    params:
        p=spectra_params,
        version=MS2STUDY_VERSION,
    log:
        "logs/spectra/{sample}.log",
    benchmark:
        "results/benchmarks/spectra/{sample}.tsv"
    threads: 1
    resources:
        mem_mb=res("spectra", "mem_mb"),
        runtime=res("spectra", "runtime"),
    conda:
        ENV
    shell:
        "python -m ms2study --threads {threads} spectra --mzml {input.mzml:q} --features {input.features:q} "
        "--sample-id {wildcards.sample} --out {output:q} --params {params.p} > {log:q} 2>&1"
