# Study: one identification per consensus feature (Simes-combined p over its samples' hits, BH q).


rule identify:
    # One identification per consensus feature: the spectra of a feature vote, confidence per feature; with the
    # adduct grouping a library adduct that contradicts the feature's grouped adduct is not accepted there.
    input:
        annotations=per_sample("annotations"),
        links="results/study/feature_links.parquet",
        # the runs' m/z offsets removed by link: a name's feature m/z and its MS/MS precursors compared on one scale
        alignment="results/study/alignment.parquet",
        # the intensities across samples: a name on an in-source fragment that follows its parent is withdrawn
        matrix="results/study/feature_matrix.parquet",
        # the run types (sample, qc, blank): n_samples counts study samples only
        sheet=RUN_SHEET,
        # each run's features: a name on a feature eluting over most of its run is marked (identification.background)
        features=per_sample("features"),
        library=library_index(),
        # the corrected matrix's compound_group and adduct columns, when correct.adducts is on
        adduct_groups=lambda wildcards: (
            "results/study/feature_matrix_corrected.parquet"
            if (config.get("correct") or {}).get("adducts", False)
            else []
        ),
    output:
        report("results/study/identifications.parquet", caption="../report/identifications.rst", category="Tables"),
    params:
        p=identify_params,
        library=library_options,
        adducts=lambda wildcards, input: (
            f"--adduct-groups {shlex.quote(str(input.adduct_groups))}"
            if input.get("adduct_groups")
            else ""
        ),
        version=MS2STUDY_VERSION,
    log:
        "logs/study/identify.log",
    benchmark:
        "results/benchmarks/study/identify.tsv"
    threads: 1
    resources:
        mem_mb=res("identify", "mem_mb"),
        runtime=res("identify", "runtime"),
    conda:
        ENV
    shell:
        "python -m ms2study --threads {threads} identify --annotations {input.annotations:q} --links {input.links:q} "
        "--alignment {input.alignment:q} "
        "--samples {input.sheet:q} --feature-matrix {input.matrix:q} --features {input.features:q} {params.library} "
        "{params.adducts} "
        "--out {output:q} --params {params.p} > {log:q} 2>&1"
