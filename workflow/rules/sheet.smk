# Study: the validated sample sheet every study stage reads.


rule sample_sheet:
    # The validated sheet (derived from the folder when there is no samples.tsv); its content is the param,
    # so editing an outcome reruns the study stages but no per-sample job.
    input:
        sample_sheet_file(),
    output:
        "results/study/samples.tsv",
    params:
        content=SHEET.write_csv(separator="\t"),
    log:
        "logs/study/sample_sheet.log",
    localrule: True
    run:
        from ms2study.core.atomic import write_text

        write_text(params.content, output[0])
