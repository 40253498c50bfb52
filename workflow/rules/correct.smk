# Study: batch-study corrections. Per run, the consensus features its detection missed, re-quantified from its own
# MS1 signal (gapfill); then the corrected feature matrix: gap-filled, blank-flagged, QC drift/batch-corrected (correct).
# The raw results/study/feature_matrix.parquet stays as link wrote it.
from ms2study.core.paths import gap_fill_on, rule_params as correct_rule_params

# One gap_filled table per run of the sheet, or none when correct.gap_fill is off.
GAP_FILLED = expand("results/study/gap_filled/{sample}.parquet", sample=SAMPLES) if gap_fill_on(config) else []


# Per run: the consensus features it missed, re-quantified from the MS1 scans detect saved (not the mzML). A job per
# run, not one for all: Snakemake records, for every output of a job, the checksums of all its inputs, so one job with
# an output and inputs per run costs Snakemake runs^2 file reads (at 1,000 runs it stalled for many minutes).
rule gapfill:
    input:
        ms1="results/samples/{sample}/ms1_scans.parquet",
        matrix="results/study/feature_matrix.parquet",
        alignment="results/study/alignment.parquet",
    output:
        "results/study/gap_filled/{sample}.parquet",
    params:
        # only the gap-filling keys of the correct section
        p=lambda wildcards: stage_params(None, **correct_rule_params(config, "gapfill")),
        # detect's centroiding and quantification: filled values are quantified as detected ones
        detect=section_params("detect"),
        version=MS2STUDY_VERSION,
    log:
        "logs/gapfill/{sample}.log",
    benchmark:
        "results/benchmarks/gapfill/{sample}.tsv"
    threads: 1
    resources:
        mem_mb=res("gapfill", "mem_mb"),
        runtime=res("gapfill", "runtime"),
    conda:
        ENV
    shell:
        "python -m ms2study --threads {threads} gapfill --ms1-scans {input.ms1:q} --sample-id {wildcards.sample} "
        "--feature-matrix {input.matrix:q} --alignment {input.alignment:q} --out {output:q} "
        "--detect-params {params.detect} --params {params.p} > {log:q} 2>&1"


rule correct:
    input:
        matrix="results/study/feature_matrix.parquet",
        sheet="results/study/samples.tsv",
        gap_filled=GAP_FILLED,
    output:
        matrix=report(
            "results/study/feature_matrix_corrected.parquet",
            caption="../report/feature_matrix_corrected.rst",
            category="Tables",
        ),
        record="results/study/correction.json",
    params:
        # the correct section without the keys only later stages read (use_corrected, exclude_flagged)
        p=lambda wildcards: stage_params(None, **correct_rule_params(config, "correct")),
        polarity=(config.get("annotate") or {}).get("ion_mode", "positive"),
        version=MS2STUDY_VERSION,
    log:
        "logs/study/correct.log",
    benchmark:
        "results/benchmarks/study/correct.tsv"
    threads: 1
    resources:
        mem_mb=res("link", "mem_mb"),
        runtime=res("link", "runtime"),
    conda:
        ENV
    shell:
        "python -m ms2study --threads {threads} correct --feature-matrix {input.matrix:q} --samples {input.sheet:q} "
        "--gap-filled {input.gap_filled:q} --polarity {params.polarity} --out {output.matrix:q} "
        "--report-out {output.record:q} --params {params.p} > {log:q} 2>&1"


# Per run: its features' intensities carried over from the corrected matrix (drift/batch factor of each consensus
# feature; flagged features marked) and its spectrum embeddings pooled again with them as weights. Study-level
# outputs (they depend on every run through the correction); the per-sample sample_embedding.parquet stays as the
# pool rule wrote it. Used by models, attribution, bags of chemistry and the report when correct.use_corrected. A job
# per run (see gapfill for why not one for all runs); each reads only its own rows and column of the study tables.
rule pool_corrected:
    input:
        embeddings="results/samples/{sample}/embeddings.parquet",
        spectra="results/samples/{sample}/spectra.parquet",
        features="results/samples/{sample}/features.parquet",
        links="results/study/feature_links.parquet",
        raw="results/study/feature_matrix.parquet",
        corrected="results/study/feature_matrix_corrected.parquet",
    output:
        features="results/study/corrected_features/{sample}.parquet",
        pooled="results/study/pooled/{sample}.parquet",
    params:
        p=section_params("pool"),
        flagged=lambda wildcards: "--exclude-flagged" if MATRIX_INPUTS["flags"] else "--no-exclude-flagged",
        version=MS2STUDY_VERSION,
    log:
        "logs/pool_corrected/{sample}.log",
    benchmark:
        "results/benchmarks/pool_corrected/{sample}.tsv"
    threads: 1
    resources:
        mem_mb=res("pool", "mem_mb"),
        runtime=res("pool", "runtime"),
    conda:
        ENV
    shell:
        "python -m ms2study --threads {threads} pool-corrected --embeddings {input.embeddings:q} "
        "--spectra {input.spectra:q} --features {input.features:q} --links {input.links:q} "
        "--feature-matrix {input.raw:q} --corrected-matrix {input.corrected:q} {params.flagged} "
        "--sample-id {wildcards.sample} --out-features {output.features:q} --out {output.pooled:q} "
        "--params {params.p} > {log:q} 2>&1"
