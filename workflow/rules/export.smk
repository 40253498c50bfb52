# Study: the consensus features in the files other tools read: GNPS FBMN (quantification table + MS/MS MGF +
# metadata), a SIRIUS MGF and one plain TSV with identifications and differential results (ms2study.stages.export).
from ms2study.stages.export import OUTPUTS as _EXPORT_FILES

# {output name: path}; rule all asks for every one
EXPORT_OUTPUTS = {key: f"results/study/export/{name}" for key, name in _EXPORT_FILES.items()}


rule export:
    input:
        matrix="results/study/feature_matrix.parquet",
        links="results/study/feature_links.parquet",
        spectra=per_sample("spectra"),
        sheet="results/study/samples.tsv",
        identifications="results/study/identifications.parquet",
        differential=lambda wildcards: expand(
            "results/study/differential/{outcome}.parquet", outcome=DIFFERENTIAL_OUTCOMES
        ),
    output:
        gnps_quant=EXPORT_OUTPUTS["gnps_quant"],
        gnps_mgf=EXPORT_OUTPUTS["gnps_mgf"],
        gnps_metadata=EXPORT_OUTPUTS["gnps_metadata"],
        sirius_mgf=EXPORT_OUTPUTS["sirius_mgf"],
        features=EXPORT_OUTPUTS["features"],
        readme=EXPORT_OUTPUTS["readme"],
    params:
        # the polarity of scans whose mzML does not state one: annotate's ion_mode
        p=lambda wildcards: stage_params(None, ion_mode=(config.get("annotate") or {}).get("ion_mode", "positive")),
        outdir=lambda wildcards, output: str(Path(output.features).parent),
        version=MS2STUDY_VERSION,
    log:
        "logs/study/export.log",
    benchmark:
        "results/benchmarks/study/export.tsv"
    threads: 1
    resources:
        mem_mb=res("export", "mem_mb"),
        runtime=res("export", "runtime"),
    conda:
        ENV
    shell:
        "python -m ms2study --threads {threads} export --feature-matrix {input.matrix:q} --links {input.links:q} "
        "--spectra {input.spectra:q} --samples {input.sheet:q} --identifications {input.identifications:q} "
        "--differential {input.differential:q} --outdir {params.outdir:q} --params {params.p} > {log:q} 2>&1"
