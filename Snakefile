# ms2study: run from the repository (`snakemake -d STUDY`) or with `-s <repo>/Snakefile -d STUDY`.
# The workflow lives in workflow/Snakefile; its `rule all` stays the default target when included from here.
workflow.include("workflow/Snakefile", overwrite_default_target=True)
