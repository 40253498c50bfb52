# Study: quality control of the runs (scan counts, MS2 mapped, features, RT shift, precursor error, outlier samples).


rule qc:
    input:
        sheet="results/study/samples.tsv",
        chromatograms=per_sample("chromatogram"),
        spectra=per_sample("spectra"),
        features=per_sample("features"),
        annotations=per_sample("annotations"),
        alignment="results/study/alignment.parquet",
        links="results/study/feature_links.parquet",
        matrix="results/study/feature_matrix.parquet",
    output:
        "results/study/qc.parquet",
    params:
        version=MS2STUDY_VERSION,
    log:
        "logs/study/qc.log",
    benchmark:
        "results/benchmarks/study/qc.tsv"
    threads: 1
    resources:
        mem_mb=res("link", "mem_mb"),
        runtime=res("link", "runtime"),
    conda:
        ENV
    shell:
        "python -m ms2study --threads {threads} qc --samples {input.sheet:q} --chromatograms {input.chromatograms:q} "
        "--spectra {input.spectra:q} --features {input.features:q} --annotations {input.annotations:q} "
        "--alignment {input.alignment:q} --links {input.links:q} --feature-matrix {input.matrix:q} "
        "--out {output:q} > {log:q} 2>&1"
