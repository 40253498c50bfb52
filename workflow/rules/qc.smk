# Study: quality control of the runs (scan counts, MS2 mapped, features, RT shift and range, precursor error, outlier
# samples, the instrument the runs' headers state).


rule qc:
    input:
        sheet=RUN_SHEET,
        chromatograms=per_sample("chromatogram"),
        spectra=per_sample("spectra"),
        features=per_sample("features"),
        annotations=per_sample("annotations"),
        alignment="results/study/alignment.parquet",
        links="results/study/feature_links.parquet",
        matrix="results/study/feature_matrix.parquet",
        # the runs themselves: only their headers are read (instrument model, mass analyzers)
        runs=[SAMPLE_FILES[s] for s in SAMPLES],
    output:
        "results/study/qc.parquet",
    params:
        version=MS2STUDY_VERSION,
        # the annotate stage's precursor window, for the note on time-of-flight runs searched with a narrow one
        search=lambda wildcards: stage_params(
            None,
            precursor_tolerance_ppm=(config.get("annotate") or {}).get("precursor_tolerance_ppm"),
            precursor_tolerance_da=(config.get("annotate") or {}).get("precursor_tolerance_da"),
            searched=bool(LIBRARIES),
        ),
    log:
        "logs/study/qc.log",
    benchmark:
        "results/benchmarks/study/qc.tsv"
    threads: 1
    resources:
        mem_mb=res("qc", "mem_mb"),
        runtime=res("qc", "runtime"),
    conda:
        ENV
    shell:
        "python -m ms2study --threads {threads} qc --samples {input.sheet:q} --chromatograms {input.chromatograms:q} "
        "--spectra {input.spectra:q} --features {input.features:q} --annotations {input.annotations:q} "
        "--alignment {input.alignment:q} --links {input.links:q} --feature-matrix {input.matrix:q} "
        "--runs {input.runs:q} --search {params.search} --out {output:q} > {log:q} 2>&1"
