# Study: batch-study corrections. Per run, the consensus features its detection missed, re-quantified from its own
# MS1 signal (gapfill); then the corrected feature matrix: gap-filled, blank-flagged, QC drift/batch-corrected (correct).
# The raw results/study/feature_matrix.parquet stays as link wrote it.
from ms2study.core.paths import gap_fill_on, rule_params as correct_rule_params

# The gap_filled folder (one table per run of the sheet) and its files, or none when correct.gap_fill is off.
GAP_FILLED_FOLDER = [STUDY_FOLDERS["gap_filled"]] if gap_fill_on(config) else []
GAP_FILLED = per_run_files(run_template(STUDY_FOLDERS["gap_filled"])) if gap_fill_on(config) else []


# Every run: the consensus features it missed, re-quantified from the MS1 scans detect saved (not the mzML). ONE job
# for all runs of the sheet (one process start, one read of the matrix), whose one output is the folder of the runs'
# tables, results/study/gap_filled/{sample}.parquet: Snakemake records every input's checksum once per output, so a
# job with an output per run cost runs^2 file reads (a 1,000-run study stalled), and a job per run paid a process
# start per run. Snakemake empties the folder before the job runs (a removed sample's table goes with it) and removes
# it when the job fails; readers take the folder as input and the sheet's runs' files as params.
rule gapfill:
    input:
        ms1=per_sample("ms1_scans"),
        matrix="results/study/feature_matrix.parquet",
        alignment="results/study/alignment.parquet",
        # filled values are apex heights scaled by each feature's area per height where it was detected
        links="results/study/feature_links.parquet",
        features=per_sample("features"),
    output:
        directory(STUDY_FOLDERS["gap_filled"]),
    params:
        # only the gap-filling keys of the correct section
        p=lambda wildcards: stage_params(None, **correct_rule_params(config, "gapfill")),
        # detect's centroiding and quantification: filled values are quantified as detected ones
        detect=section_params("detect"),
        samples=SAMPLES,
        # path templates of the command's many-runs form (functions: Snakemake would read {sample} as a wildcard)
        ms1=lambda wildcards: "results/samples/{sample}/ms1_scans.parquet",
        features=lambda wildcards: "results/samples/{sample}/features.parquet",
        out=lambda wildcards: run_template(STUDY_FOLDERS["gap_filled"]),
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
        "python -m ms2study --threads {threads} gapfill --sample-ids {params.samples:q} --ms1-scans {params.ms1:q} "
        "--feature-matrix {input.matrix:q} --alignment {input.alignment:q} --out {params.out:q} "
        "--feature-links {input.links:q} --features {params.features:q} "
        "--detect-params {params.detect} --params {params.p} > {log:q} 2>&1"


rule correct:
    input:
        matrix="results/study/feature_matrix.parquet",
        links="results/study/feature_links.parquet",
        sheet=RUN_SHEET,
        gap_filled=GAP_FILLED_FOLDER,
        # the runs' MS/MS scans: their polarity is the adduct grouping's
        spectra=per_sample("spectra"),
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
        # the sheet's runs' tables in the gap_filled folder (never a removed sample's)
        gap_filled=GAP_FILLED,
        version=MS2STUDY_VERSION,
    log:
        "logs/study/correct.log",
    benchmark:
        "results/benchmarks/study/correct.tsv"
    threads: 1
    resources:
        mem_mb=res("correct", "mem_mb"),
        runtime=res("correct", "runtime"),
    conda:
        ENV
    shell:
        "python -m ms2study --threads {threads} correct --feature-matrix {input.matrix:q} --samples {input.sheet:q} "
        "--gap-filled {params.gap_filled:q} --links {input.links:q} --polarity {params.polarity} "
        "--spectra {input.spectra:q} --out {output.matrix:q} --report-out {output.record:q} --params {params.p} > {log:q} 2>&1"


# Every run: its features' intensities carried over from the corrected matrix (drift/batch factor of each consensus
# feature; flagged features marked) and its spectrum embeddings pooled again with them as weights. Study-level
# outputs (they depend on every run through the correction); the per-sample sample_embedding.parquet stays as the
# pool rule wrote it. Used by models, attribution, bags of chemistry and the report when correct.use_corrected. ONE
# job for all runs whose outputs are two folders of per-run tables (see gapfill for why); it reads only the sheet's
# runs' rows and columns of the study tables.
rule pool_corrected:
    input:
        embeddings=per_sample("embeddings"),
        spectra=per_sample("spectra"),
        features=per_sample("features"),
        links="results/study/feature_links.parquet",
        raw="results/study/feature_matrix.parquet",
        corrected="results/study/feature_matrix_corrected.parquet",
    output:
        features=directory(STUDY_FOLDERS["corrected_features"]),
        pooled=directory(STUDY_FOLDERS["pooled"]),
    params:
        p=section_params("pool"),
        flagged=lambda wildcards: "--exclude-flagged" if MATRIX_INPUTS["flags"] else "--no-exclude-flagged",
        samples=SAMPLES,
        # path templates of the command's many-runs form
        embeddings=lambda wildcards: "results/samples/{sample}/embeddings.parquet",
        spectra=lambda wildcards: "results/samples/{sample}/spectra.parquet",
        features=lambda wildcards: "results/samples/{sample}/features.parquet",
        out_features=lambda wildcards: run_template(STUDY_FOLDERS["corrected_features"]),
        out=lambda wildcards: run_template(STUDY_FOLDERS["pooled"]),
        version=MS2STUDY_VERSION,
    log:
        "logs/study/pool_corrected.log",
    benchmark:
        "results/benchmarks/study/pool_corrected.tsv"
    threads: 1
    resources:
        mem_mb=res("pool_corrected", "mem_mb"),
        runtime=res("pool_corrected", "runtime"),
    conda:
        ENV
    shell:
        "python -m ms2study --threads {threads} pool-corrected --sample-ids {params.samples:q} "
        "--embeddings {params.embeddings:q} --spectra {params.spectra:q} --features {params.features:q} "
        "--links {input.links:q} "
        "--feature-matrix {input.raw:q} --corrected-matrix {input.corrected:q} {params.flagged} "
        "--out-features {params.out_features:q} --out {params.out:q} --params {params.p} > {log:q} 2>&1"
