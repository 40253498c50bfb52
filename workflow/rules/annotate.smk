# Per sample: every spectrum scored against the library (numba kernels) with calibrated confidence.


rule annotate:
    input:
        spectra="results/samples/{sample}/spectra.parquet",
        embeddings="results/samples/{sample}/embeddings.parquet",
        # the features' apexes: co-elution of possible in-source fragments and their parents
        features="results/samples/{sample}/features.parquet",
        library=library_index(),
        calibration=library_calibration(),
    output:
        "results/samples/{sample}/annotations.parquet",
    params:
        p=annotate_params,
        library=library_options,
        version=MS2STUDY_VERSION,
    log:
        "logs/annotate/{sample}.log",
    benchmark:
        "results/benchmarks/annotate/{sample}.tsv"
    # one numba thread per job: samples are annotated in parallel, one job per core
    threads: 1
    resources:
        mem_mb=res("annotate", "mem_mb"),
        runtime=res("annotate", "runtime"),
    conda:
        ENV
    shell:
        "python -m ms2study --threads {threads} annotate --spectra {input.spectra:q} "
        "--embeddings {input.embeddings:q} --features {input.features:q} {params.library} --out {output:q} "
        "--params {params.p} > {log:q} 2>&1"
