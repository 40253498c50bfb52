# Training the spectrum encoder (not part of `all`): `ms2study run STUDY results/models/NAME` with `train_library` set.


rule train_encoder:
    input:
        get_train_library,
    output:
        directory("results/models/{name}"),
    params:
        p=train_params,
        c=learn_combined_params,
        # the same cleaning as the sample spectra and the library index
        cleaning=section_params("cleaning"),
        version=MS2STUDY_VERSION,
    log:
        "logs/train/{name}.log",
    benchmark:
        "results/benchmarks/train/{name}.tsv"
    # 8 cores (Snakemake lowers it to --cores on a smaller machine); not workflow.cores, which `ms2study run`'s
    # default --cores all makes the submit host's core count on a cluster. More: --set-threads train_encoder=N.
    threads: 8
    resources:
        mem_mb=res("train", "mem_mb"),
        runtime=res("train", "runtime"),
        gpu=res("train", "gpu"),
    conda:
        ENV
    shell:
        "python -m ms2study --threads {threads} train --library {input:q} --out {output:q} "
        "--params {params.p} --cleaning {params.cleaning} > {log:q} 2>&1 && "
        "python -m ms2study --threads {threads} learn-combined --library {input:q} --model {output:q} --optional "
        "--params {params.c} --cleaning {params.cleaning} >> {log:q} 2>&1"
