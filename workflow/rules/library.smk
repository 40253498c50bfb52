# Per library: the index (cleaned peaks, metadata, embeddings) and the null model its identifications are scored with.


rule index_library:
    # The index holds the library's peaks, metadata and decoys, and its spectra embedded by the configured encoder
    # (so annotation can use embedding similarity); built once per library and encoder, reused by every sample.
    input:
        LIBRARIES,
    output:
        directory("results/library/{library}"),
    params:
        p=index_params,
        embed=section_params("embed"),
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
        "(python -m ms2study --threads {threads} index-library --library {input:q} --out {output:q} "
        "--params {params.p} && "
        "python -m ms2study --threads {threads} embed-library --index {output:q} --params {params.embed}) "
        "> {log:q} 2>&1"


rule calibrate_library:
    # Identification confidence measured once per library, encoder and scoring: leave-structure-out searches of
    # library spectra give the null of wrong hits (q-values) and the isomer margin (MSI levels).
    input:
        "results/library/{library}",
    output:
        "results/confidence/{library}.json",
    params:
        p=annotate_params,
        version=MS2STUDY_VERSION,
    log:
        "logs/library/{library}.calibration.log",
    benchmark:
        "results/benchmarks/library/{library}.calibration.tsv"
    # numba kernels over the library's spectra, once per library
    threads: 2
    resources:
        mem_mb=res("library", "mem_mb"),
        runtime=res("library", "runtime"),
    conda:
        ENV
    shell:
        "python -m ms2study --threads {threads} calibrate-library --index {input:q} --out {output:q} "
        "--params {params.p} > {log:q} 2>&1"
