# Per sample: LC-MS features with pyOpenMS (centroiding when needed, mass traces, elution peaks, FeatureFindingMetabo),
# and from the same reading of the run its MS1 TIC / base-peak chromatogram for the quality control (rules/qc.smk) and
# its centroided MS1 scans, which gap filling (rules/correct.smk) reads instead of parsing the mzML again.


rule detect:
    input:
        mzml=get_mzml,
    output:
        features="results/samples/{sample}/features.parquet",
        chromatogram="results/samples/{sample}/chromatogram.parquet",
        ms1="results/samples/{sample}/ms1_scans.parquet",
    params:
        p=section_params("detect"),
        version=MS2STUDY_VERSION,
    log:
        "logs/detect/{sample}.log",
    benchmark:
        "results/benchmarks/detect/{sample}.tsv"
    threads: 1
    resources:
        mem_mb=res("detect", "mem_mb"),
        runtime=res("detect", "runtime"),
    conda:
        ENV
    shell:
        "python -m ms2study --threads {threads} detect --mzml {input.mzml:q} --sample-id {wildcards.sample} "
        "--out {output.features:q} --chromatogram-out {output.chromatogram:q} --ms1-out {output.ms1:q} "
        "--params {params.p} > {log:q} 2>&1"
