# Study: batch-study corrections. For every run, the consensus features its detection missed, re-quantified from its
# own MS1 signal (gapfill); then the corrected feature matrix: gap-filled, blank-flagged, QC drift/batch-corrected (correct).
# The raw results/study/feature_matrix.parquet stays as link wrote it.
from ms2study.core.paths import gap_fill_on, rule_params as correct_rule_params

# One gap_filled table per run of the sheet, or none when correct.gap_fill is off.
GAP_FILLED = expand("results/study/gap_filled/{sample}.parquet", sample=SAMPLES) if gap_fill_on(config) else []


# Every run's missed consensus features, re-quantified from the MS1 scans detect saved: one job for all runs (one
# start-up, one read of the matrix), which a changed study (a sample added) reruns whole.
rule gapfill:
    input:
        ms1=per_sample("ms1_scans"),
        matrix="results/study/feature_matrix.parquet",
        alignment="results/study/alignment.parquet",
    output:
        GAP_FILLED,
    params:
        # only the gap-filling keys of the correct section
        p=lambda wildcards: stage_params(None, **correct_rule_params(config, "gapfill")),
        # detect's centroiding and quantification: filled values are quantified as detected ones
        detect=section_params("detect"),
        samples=" ".join(SAMPLES),
        version=MS2STUDY_VERSION,
    log:
        "logs/study/gapfill.log",
    benchmark:
        "results/benchmarks/study/gapfill.tsv"
    threads: 1
    resources:
        mem_mb=res("gapfill", "mem_mb"),
        runtime=res("gapfill", "runtime"),
    conda:
        ENV
    shell:
        "python -m ms2study --threads {threads} gapfill --sample-ids {params.samples} "
        "--ms1-scans 'results/samples/{{sample}}/ms1_scans.parquet' --feature-matrix {input.matrix:q} "
        "--alignment {input.alignment:q} --out 'results/study/gap_filled/{{sample}}.parquet' "
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


# Every run: its features' intensities carried over from the corrected matrix (drift/batch factor of each consensus
# feature; flagged features marked) and its spectrum embeddings pooled again with them as weights. Study-level
# outputs (they depend on every run through the correction), so ONE job does all runs: one start-up and one read of
# the study tables instead of a job per run (a job per run read the study tables once each: quadratic in the runs).
# The per-sample sample_embedding.parquet stays as the pool rule wrote it. Used by models, attribution, bags of
# chemistry and the report when correct.use_corrected.
rule pool_corrected:
    input:
        embeddings=per_sample("embeddings"),
        spectra=per_sample("spectra"),
        features=per_sample("features"),
        links="results/study/feature_links.parquet",
        raw="results/study/feature_matrix.parquet",
        corrected="results/study/feature_matrix_corrected.parquet",
    output:
        features=expand("results/study/corrected_features/{sample}.parquet", sample=SAMPLES),
        pooled=expand("results/study/pooled/{sample}.parquet", sample=SAMPLES),
    params:
        p=section_params("pool"),
        flagged=lambda wildcards: "--exclude-flagged" if MATRIX_INPUTS["flags"] else "--no-exclude-flagged",
        samples=" ".join(SAMPLES),
        version=MS2STUDY_VERSION,
    log:
        "logs/study/pool_corrected.log",
    benchmark:
        "results/benchmarks/study/pool_corrected.tsv"
    threads: 1
    resources:
        mem_mb=res("pool", "mem_mb"),
        runtime=res("pool", "runtime"),
    conda:
        ENV
    shell:
        "python -m ms2study --threads {threads} pool-corrected --sample-ids {params.samples} "
        "--embeddings 'results/samples/{{sample}}/embeddings.parquet' "
        "--spectra 'results/samples/{{sample}}/spectra.parquet' --features 'results/samples/{{sample}}/features.parquet' "
        "--links {input.links:q} --feature-matrix {input.raw:q} --corrected-matrix {input.corrected:q} {params.flagged} "
        "--out-features 'results/study/corrected_features/{{sample}}.parquet' "
        "--out 'results/study/pooled/{{sample}}.parquet' --params {params.p} > {log:q} 2>&1"
