# Study: what differs per outcome: a test per consensus feature, then chemical class enrichment (ChemRICH-style).
from ms2study.stages.differential import configured_outcomes, rule_params

# One pair of tables per outcome of models: outcomes, named as the models' folders; no outcome, no job.
DIFFERENTIAL_OUTCOMES = list(configured_outcomes(config))


wildcard_constraints:
    outcome="|".join(map(re.escape, DIFFERENTIAL_OUTCOMES)) if DIFFERENTIAL_OUTCOMES else "[^/]+",


rule differential:
    input:
        sheet="results/study/samples.tsv",
        # corrected or raw, and the flags (MATRIX_INPUTS: rules/common.smk)
        matrix=MATRIX_INPUTS["matrix"],
        flags=MATRIX_INPUTS["flag_input"],
        identifications="results/study/identifications.parquet",
        # the linked matrix: which values detection found (testability is decided on them, not on gap-filled ones)
        detected="results/study/feature_matrix.parquet",
        # each run's RT range: runs that measured under half of the study's typical range are left out
        qc="results/study/qc.parquet",
    output:
        differential=report(
            "results/study/differential/{outcome}.parquet",
            caption="../report/differential.rst",
            category="What differs",
            subcategory="{outcome}",
        ),
        enrichment=report(
            "results/study/class_enrichment/{outcome}.parquet",
            caption="../report/class_enrichment.rst",
            category="What differs",
            subcategory="{outcome}",
        ),
    params:
        # the outcome and the models' missing-value and covariate settings: only these rerun the stage
        p=lambda wildcards: stage_params(None, **rule_params(config, wildcards.outcome)),
        flags=MATRIX_INPUTS["option"],
        version=MS2STUDY_VERSION,
    log:
        "logs/study/differential_{outcome}.log",
    benchmark:
        "results/benchmarks/study/differential_{outcome}.tsv"
    threads: 1
    resources:
        mem_mb=res("differential", "mem_mb"),
        runtime=res("differential", "runtime"),
    conda:
        ENV
    shell:
        "python -m ms2study --threads {threads} differential --samples {input.sheet:q} "
        "--feature-matrix {input.matrix:q} --detected-matrix {input.detected:q} "
        "--qc {input.qc:q} "
        "--identifications {input.identifications:q} --out {output.differential:q} "
        "--enrichment-out {output.enrichment:q} {params.flags} --params {params.p} > {log:q} 2>&1"
