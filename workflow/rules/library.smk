# Per library: the index (cleaned peaks, metadata, embeddings) and the null model its identifications are scored with.


# Snakemake schedules (and submits) ready jobs of higher priority first; the default is 0.
LIBRARY_PRIORITY = 50
# The annotate parameters the library's prepared arrays (entropy peaks, decoys) depend on.
PREPARED_KEYS = ["entropy_noise_threshold", "entropy_tolerance_da", "entropy_merge_da", "confidence", "decoy_seed"]


rule index_library:
    # The index holds the library's peaks and metadata, its spectra embedded by the configured encoder (so annotation
    # can use embedding similarity) and the entropy-prepared peaks (and decoys) every annotate job would otherwise
    # recompute; built once per library, encoder and those parameters, reused by every sample.
    input:
        LIBRARIES,
    output:
        directory("results/library/{library}"),
    params:
        p=index_params,
        embed=section_params("embed"),
        # only the annotate keys the stored arrays depend on: changing the FDR must not rebuild the index
        prepare=lambda wildcards: stage_params(None, **{k: config["annotate"][k] for k in PREPARED_KEYS}),
        version=MS2STUDY_VERSION,
    # Run before any sample's job: a library that cannot be indexed or calibrated (no usable records, too few to
    # calibrate) stops the study in its first minutes, not after every run was detected and embedded.
    priority: LIBRARY_PRIORITY
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
        "python -m ms2study --threads {threads} embed-library --index {output:q} --params {params.embed} && "
        "python -m ms2study --threads {threads} prepare-library --index {output:q} --params {params.prepare}) "
        "> {log:q} 2>&1"


rule calibrate_library:
    # Identification confidence measured once per library, encoder and scoring: leave-structure-out searches of
    # library spectra give the null of wrong hits (q-values) and the isomer margin (MSI levels).
    input:
        "results/library/{library}",
    output:
        "results/confidence/{library}.json",
    params:
        p=calibration_params,
        # a new calibration format (core.paths) recomputes it; an older file would be read with the older rules
        calibration_format=CALIBRATION_FORMAT_VERSION,
        version=MS2STUDY_VERSION,
    priority: LIBRARY_PRIORITY
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
