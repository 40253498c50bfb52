# Study: one HTML report of everything above. Every file it reads is named here, so results left on disk by an
# outcome or library no longer configured never show in it.


rule report:
    input:
        sheet="results/study/samples.tsv",
        features=per_sample("features"),
        spectra=per_sample("spectra"),
        embeddings=per_sample("embeddings"),
        annotations=per_sample("annotations"),
        # the sample embeddings the models used (corrected pooling weights unless correct.use_corrected is false)
        # (the folder of rule pool_corrected, or the per-sample files; the files read: params)
        sample_embedding=matrix_input("sample_embedding"),
        matrix="results/study/feature_matrix.parquet",
        # which spectra belong to which consensus feature (the report's MS/MS coverage of features and of hits)
        links="results/study/feature_links.parquet",
        # the batch section: the corrected matrix with its flags and the correct stage's record (rules/correct.smk)
        corrected=CORRECTED_MATRIX,
        correction="results/study/correction.json",
        identifications="results/study/identifications.parquet",
        # per outcome of models: outcomes, in config order (MODEL_OUTCOMES: rules/models.smk)
        model_summaries=MODEL_SUMMARIES,
        model_predictions=MODEL_PREDICTIONS,
        model_explained=MODEL_EXPLAINED,  # found beside each summary.json (reporting.explained)
        differential=expand("results/study/differential/{outcome}.parquet", outcome=MODEL_OUTCOMES),
        class_enrichment=expand("results/study/class_enrichment/{outcome}.parquet", outcome=MODEL_OUTCOMES),
        calibration=library_calibration(),
        library=library_index(),  # the library spectra of the mirror plots
        # quality control of the runs, and per outcome what the embedding model looks at (rules/qc.smk, attribution.smk)
        qc="results/study/qc.parquet",
        chromatograms=per_sample("chromatogram"),
        attribution=expand("results/study/attribution/{outcome}.parquet", outcome=ATTRIBUTION_OUTCOMES),
        region_attribution=expand(REGION_ATTRIBUTION, outcome=ATTRIBUTION_OUTCOMES) if CHEMISTRY_ON else [],
    output:
        report("results/study/report.html", caption="../report/report_html.rst", category="Report"),
    params:
        # the configuration the report shows, less the SLURM job sizes: changing those reruns nothing
        p=lambda wildcards: stage_params(
            "report", config_used={k: v for k, v in config.items() if k != "resources"}
        ),
        sample_embedding=per_run_files(MATRIX_INPUTS["sample_embedding"]),
        version=MS2STUDY_VERSION,
    log:
        "logs/study/report.log",
    benchmark:
        "results/benchmarks/study/report.tsv"
    threads: 1
    resources:
        mem_mb=res("report", "mem_mb"),
        runtime=res("report", "runtime"),
    conda:
        ENV
    shell:
        "python -m ms2study --threads {threads} report --samples {input.sheet:q} --features {input.features:q} "
        "--spectra {input.spectra:q} --embeddings {input.embeddings:q} --annotations {input.annotations:q} "
        "--sample-embedding {params.sample_embedding:q} --feature-matrix {input.matrix:q} "
        "--identifications {input.identifications:q} --model-summaries {input.model_summaries:q} "
        "--model-predictions {input.model_predictions:q} --differential {input.differential:q} "
        "--class-enrichment {input.class_enrichment:q} --calibration {input.calibration:q} "
        "--library-index {input.library:q} --qc {input.qc:q} --chromatograms {input.chromatograms:q} "
        "--attribution {input.attribution:q} --region-attribution {input.region_attribution:q} "
        "--corrected-matrix {input.corrected:q} --correction {input.correction:q} "
        "--feature-links {input.links:q} --out {output:q} --params {params.p} > {log:q} 2>&1"
