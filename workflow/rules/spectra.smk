# Per sample: MS2 scans mapped to features, then embedded (torch) and scored against the library (numba).


rule spectra:
    input:
        mzml=get_mzml,
        features="results/samples/{sample}/features.parquet",
    output:
        "results/samples/{sample}/spectra.parquet",
    params:
        p=lambda wildcards: stage_params("spectra", **config["cleaning"]),
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
        "python -m ms2study spectra --mzml {input.mzml:q} --features {input.features:q} "
        "--sample-id {wildcards.sample} --out {output:q} --params {params.p} > {log:q} 2>&1"


rule embed:
    input:
        "results/samples/{sample}/spectra.parquet",
    output:
        "results/samples/{sample}/embeddings.parquet",
    params:
        p=lambda wildcards: stage_params("embed"),
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
        "python -m ms2study embed --spectra {input:q} --out {output:q} --threads {threads} "
        "--params {params.p} > {log:q} 2>&1"


rule index_library:
    # The index holds the library's peaks, metadata and decoys, and its spectra embedded by the configured encoder
    # (so annotation can use embedding similarity); built once per library and encoder, reused by every sample.
    input:
        LIBRARIES,
    output:
        directory("results/library/{library}"),
    params:
        p=lambda wildcards: stage_params(None, cleaning=config["cleaning"]),
        embed=lambda wildcards: stage_params("embed"),
        version=MS2STUDY_VERSION,
    log:
        "logs/library/{library}.log",
    benchmark:
        "results/benchmarks/library/{library}.tsv"
    threads: 2
    resources:
        mem_mb=res("library", "mem_mb"),
        runtime=res("library", "runtime"),
    conda:
        ENV
    shell:
        "(python -m ms2study index-library --library {input:q} --out {output:q} --params {params.p} && "
        "python -m ms2study embed-library --index {output:q} --threads {threads} --params {params.embed}) "
        "> {log:q} 2>&1"


rule calibrate_library:
    # Identification confidence measured once per library, encoder and scoring: leave-structure-out searches of
    # library spectra give the null of wrong hits (q-values) and the isomer margin (MSI levels).
    input:
        "results/library/{library}",
    output:
        "results/confidence/{library}.json",
    params:
        p=lambda wildcards: stage_params("annotate", model=config["embed"]["model"]),
        version=MS2STUDY_VERSION,
    log:
        "logs/library/{library}.calibration.log",
    benchmark:
        "results/benchmarks/library/{library}.calibration.tsv"
    threads: 2
    resources:
        mem_mb=res("library", "mem_mb"),
        runtime=res("library", "runtime"),
    conda:
        ENV
    shell:
        "python -m ms2study calibrate-library --index {input:q} --out {output:q} --params {params.p} > {log:q} 2>&1"


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
