# Per library: the index (cleaned peaks, metadata, embeddings) and the null model its identifications are scored with.


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
