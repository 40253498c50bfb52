# Per sample: one embedding for the whole sample, pooled from its spectrum embeddings.


rule pool:
    input:
        embeddings="results/samples/{sample}/embeddings.parquet",
        spectra="results/samples/{sample}/spectra.parquet",
        features="results/samples/{sample}/features.parquet",
    output:
        "results/samples/{sample}/sample_embedding.parquet",
    params:
        p=section_params("pool"),
        version=MS2STUDY_VERSION,
    log:
        "logs/pool/{sample}.log",
    benchmark:
        "results/benchmarks/pool/{sample}.tsv"
    threads: 1
    resources:
        mem_mb=res("pool", "mem_mb"),
        runtime=res("pool", "runtime"),
    conda:
        ENV
    shell:
        "python -m ms2study --threads {threads} pool --embeddings {input.embeddings:q} --spectra {input.spectra:q} "
        "--features {input.features:q} --sample-id {wildcards.sample} --out {output:q} --params {params.p} "
        "> {log:q} 2>&1"


# Chemical-space prototypes, learned once per study by k-means (config pool.prototypes): on the library's stored
# embeddings (source: library), or on the alignment reference run's spectra (source: reference_sample, and the
# fallback when the study has no library; the job's log and the prototypes' `source` column say which). Neither
# depends on the other samples, so adding a sample never changes the prototypes (functions in rules/common.smk).
rule prototypes:
    input:
        unpack(prototypes_inputs),
    output:
        "results/study/prototypes.parquet",
    params:
        p=section_params("pool"),
        source=prototypes_source_options,
        version=MS2STUDY_VERSION,
    log:
        "logs/study/prototypes.log",
    benchmark:
        "results/benchmarks/study/prototypes.tsv"
    threads: 1
    resources:
        mem_mb=res("pool", "mem_mb"),
        runtime=res("pool", "runtime"),
    conda:
        ENV
    shell:
        "python -m ms2study --threads {threads} prototypes {params.source} --out {output:q} --params {params.p} "
        "> {log:q} 2>&1"


# Every run: its bag of chemistry, log abundance per prototype region (models feature set chemical_space), weighted
# by the corrected feature intensities (rule pool_corrected) unless correct.use_corrected is false. Study-level
# outputs: the prototypes and the corrected intensities depend on the study. ONE job for all runs whose one output is
# the folder of the runs' tables, results/study/chemistry/{sample}.parquet (rules/correct.smk, gapfill, says why).
rule chemistry:
    input:
        embeddings=per_sample("embeddings"),
        spectra=per_sample("spectra"),
        # the corrected features' folder (rule pool_corrected) or the per-sample features tables
        features=matrix_input("features"),
        prototypes="results/study/prototypes.parquet",
    output:
        directory(STUDY_FOLDERS["chemistry"]),
    params:
        p=section_params("pool"),
        samples=SAMPLES,
        # path templates of the command's many-runs form
        embeddings=lambda wildcards: "results/samples/{sample}/embeddings.parquet",
        spectra=lambda wildcards: "results/samples/{sample}/spectra.parquet",
        features=lambda wildcards: MATRIX_INPUTS["features"],
        out=lambda wildcards: run_template(STUDY_FOLDERS["chemistry"]),
        version=MS2STUDY_VERSION,
    log:
        "logs/study/chemistry.log",
    benchmark:
        "results/benchmarks/study/chemistry.tsv"
    threads: 1
    resources:
        mem_mb=res("chemistry", "mem_mb"),
        runtime=res("chemistry", "runtime"),
    conda:
        ENV
    shell:
        "python -m ms2study --threads {threads} chemistry --sample-ids {params.samples:q} "
        "--embeddings {params.embeddings:q} --spectra {params.spectra:q} --features {params.features:q} "
        "--prototypes {input.prototypes:q} --out {params.out:q} --params {params.p} > {log:q} 2>&1"
