# Study: the validated sample sheet the study stages read, results/study/samples.tsv (derived from the folder when
# there is no samples.tsv), and its run columns alone, results/study/runs.tsv.
#
# Written here, when Snakemake reads the workflow, and only when its bytes change; not by a rule. A rule's job would
# rerun whenever the study's samples.tsv is newer than its output, and Snakemake reruns every job downstream of a job
# that runs, whatever it writes: a run that failed after a bad edit of the sheet rewrote this file, and undoing the
# edit reran every study stage. A source file instead is judged by each study job on its own: newer than the job's
# outputs and with another checksum than the one recorded for them (Snakemake records the checksums of inputs up to
# --max-checksum-file-size, 1 MB: a sheet of about 10,000 runs). So an
# edit reruns the study stages (no per-sample job), an undone edit or a touched samples.tsv reruns nothing. The outcome
# and covariate cells of QC and blank rows are emptied here (no stage reads them), so editing them reruns nothing.
from ms2study.core.atomic import write_text_if_changed
from ms2study.io.samplesheet import run_sheet, study_sheet

# RUN_SHEET holds only the columns the run-level stages read (correct, identify, qc: io.samplesheet.READ_COLUMNS), so
# an edit of an outcome or covariate cell reruns the stages that read outcomes, not those.
STUDY_SHEET = "results/study/samples.tsv"
RUN_SHEET = "results/study/runs.tsv"
try:
    _validated = study_sheet(SHEET, config)
    write_text_if_changed(_validated.write_csv(separator="\t"), STUDY_SHEET)
    write_text_if_changed(run_sheet(_validated).write_csv(separator="\t"), RUN_SHEET)
except (OSError, InputError) as _err:
    raise WorkflowError(f"ms2study: cannot write the validated sample sheets {STUDY_SHEET} and {RUN_SHEET}: {_err}")
