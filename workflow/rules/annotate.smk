# Per sample: every spectrum scored against the library (numba kernels) with calibrated confidence.


rule annotate:
    input:
        spectra="results/samples/{sample}/spectra.parquet",
        embeddings="results/samples/{sample}/embeddings.parquet",
        library=library_index(),
        calibration=library_calibration(),
    output:
        "results/samples/{sample}/annotations.parquet",
    params:
        p=lambda wildcards: stage_params("annotate", model=config["embed"]["model"]),
        library=lambda wildcards, input: (
            f"--library-index {shlex.quote(input.library)}"
            + (f" --calibration {shlex.quote(input.calibration)}" if library_calibration() else "")
            if LIBRARIES
            else ""
        ),
        version=MS2STUDY_VERSION,
    log:
        "logs/annotate/{sample}.log",
    benchmark:
        "results/benchmarks/annotate/{sample}.tsv"
    threads: 1
    resources:
        mem_mb=res("annotate", "mem_mb"),
        runtime=res("annotate", "runtime"),
    conda:
        ENV
    shell:
        "python -m ms2study annotate --spectra {input.spectra:q} --embeddings {input.embeddings:q} {params.library} "
        "--out {output:q} --params {params.p} > {log:q} 2>&1"
