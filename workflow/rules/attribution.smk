# Study: what the embedding model of each outcome looks at: every consensus feature's contribution to the linear
# model on pooled spectrum embeddings (the pooled vector is a weighted sum of spectrum embeddings); and, when the models
# use the bags of chemistry (CHEMISTRY_ON, rules/models.smk), each prototype region's part in that model with the
# features that make the region's difference (results/study/attribution/chemical_space/{outcome}.parquet).
from ms2study.stages.differential import configured_outcomes

# One table per outcome of models: outcomes, named as the differential tables and the models' folders.
ATTRIBUTION_OUTCOMES = list(configured_outcomes(config))
REGION_ATTRIBUTION = "results/study/attribution/chemical_space/{outcome}.parquet"


rule attribution:
    input:
        sheet="results/study/samples.tsv",
        # the sample embeddings the models used and the intensities they were pooled with (rules/correct.smk)
        # (folders of rule pool_corrected, or the per-sample files; the files read: params)
        sample_embeddings=matrix_input("sample_embedding"),
        embeddings=per_sample("embeddings"),
        spectra=per_sample("spectra"),
        features=matrix_input("features"),
        links="results/study/feature_links.parquet",
        # keys of the consensus features; the corrected matrix also gives their flags (rules/models.smk)
        matrix=MATRIX_INPUTS["matrix"],
        identifications="results/study/identifications.parquet",
        summary="results/study/models/{outcome}/summary.json",
        # the bags of chemistry (folder of rule chemistry; the files read: params) and their prototypes
        chemistry=CHEMISTRY_FOLDER,
        prototypes=["results/study/prototypes.parquet"] if CHEMISTRY_ON else [],
    output:
        table="results/study/attribution/{outcome}.parquet",
        **({"regions": REGION_ATTRIBUTION} if CHEMISTRY_ON else {}),
    params:
        # the outcome and the pool section (how the sample vectors were pooled); the models' settings are read
        # from the outcome's summary.json, an input
        p=lambda wildcards: stage_params(
            None, outcome=configured_outcomes(config)[wildcards.outcome], pool=config.get("pool") or {}
        ),
        sample_embeddings=per_run_files(MATRIX_INPUTS["sample_embedding"]),
        features=per_run_files(MATRIX_INPUTS["features"]),
        regions=lambda wildcards, input: (
            "--chemistry " + " ".join(shlex.quote(f) for f in CHEMISTRY) + " --prototypes "
            + shlex.quote(input.prototypes[0]) + " --regions-out "
            + shlex.quote(REGION_ATTRIBUTION.format(outcome=wildcards.outcome)) if CHEMISTRY_ON else ""
        ),
        version=MS2STUDY_VERSION,
    log:
        "logs/study/attribution_{outcome}.log",
    benchmark:
        "results/benchmarks/study/attribution_{outcome}.tsv"
    threads: 1
    resources:
        mem_mb=res("models", "mem_mb"),
        runtime=res("models", "runtime"),
    conda:
        ENV
    shell:
        "python -m ms2study --threads {threads} attribution --samples {input.sheet:q} "
        "--sample-embeddings {params.sample_embeddings:q} --embeddings {input.embeddings:q} --spectra {input.spectra:q} "
        "--features {params.features:q} --links {input.links:q} --feature-matrix {input.matrix:q} "
        "--identifications {input.identifications:q} --model-summary {input.summary:q} --out {output.table:q} "
        "{params.regions} --params {params.p} > {log:q} 2>&1"
