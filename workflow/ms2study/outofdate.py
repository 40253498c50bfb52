"""What a failed ``ms2study run`` leaves marked as made by an earlier run: the moved report gets a banner and a title
prefix (it is opened later from a bookmark or an e-mail, away from the terminal that said so), and
``results/study/OUT_OF_DATE.txt`` lists the failed jobs and the samples whose own folders may hold older outputs.
Used by ``ms2study.runner``; nothing here deletes a result.
"""

from __future__ import annotations

import html
import logging
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

from ms2study.core.atomic import atomic_path, write_text
from ms2study.runlog import RunLog, parse_snakemake_log, read_run_log

log = logging.getLogger(__name__)

REPORT = Path("results") / "study" / "report.html"
# A second name (a hard link) of the earlier report, made before Snakemake starts: a report job that fails has its
# output deleted by Snakemake, before and after it runs, and a trial's failed report job left no report at all
# instead of the earlier one marked OUT OF DATE. ``runner.summarize`` puts it back for that marking, or deletes it.
REPORT_BEFORE_RUN = REPORT.parent / ".report.before-run.html"
# Outputs of jobs that the report does not depend on (encoder training, requested on its own).
NOT_FOR_REPORT = ("results/models/",)
OUT_OF_DATE_REPORT = Path("results") / "study" / "report.out-of-date.html"
# Written beside the study-level tables when a failed run leaves them from an earlier run; removed by a run that
# finishes.
OUT_OF_DATE_NOTE = Path("results") / "study" / "OUT_OF_DATE.txt"
SAMPLE_NOTE = "OUT_OF_DATE.txt"  # in results/samples/{sample}/ of a sample whose jobs failed or did not finish
BANNER_ID = "ms2study-out-of-date"
TITLE_PREFIX = "OUT OF DATE: "

# The first <body> and <title> tags of the page outside scripts, styles and comments (the embedded plotly.js is
# text that could hold either).
_SKIPPED = r"<script\b.*?</script\s*>|<style\b.*?</style\s*>|<!--.*?-->"
_BODY = re.compile(_SKIPPED + r"|(<body\b[^>]*>)", re.IGNORECASE | re.DOTALL)
_TITLE = re.compile(_SKIPPED + r"|<title\b[^>]*>()", re.IGNORECASE | re.DOTALL)


def _stamp(seconds: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(seconds))


def _first_tag(pattern: re.Pattern, text: str) -> re.Match | None:
    return next((m for m in pattern.finditer(text) if m.group(1) is not None), None)


def banner_html(made: float, since: float, run: RunLog) -> str:
    """The banner put at the top of a moved report: out of date, made when, which run did not finish and why, and
    where the note and Snakemake's log are. Inline styles (the page's own CSS may be older than this banner)."""
    failed = [f"{job.rule} ({job.place()})" for job in run.failed]
    why = (f"{len(failed)} job(s) failed: {', '.join(failed[:6])}" + (" and more" if len(failed) > 6 else "")
           if failed else "it was interrupted or stopped before its jobs were done")
    log_part = f"; Snakemake's log of that run: {run.path}" if run.path else ""
    return (f'<div id="{BANNER_ID}" role="alert" style="position:sticky;top:0;z-index:10000;margin:0 0 1em 0;'
            'padding:0.8em 1em;background:#b00020;color:#fff;font:15px/1.4 sans-serif;border-bottom:4px solid #600">'
            '<b style="font-size:1.25em">OUT OF DATE: this report is from an earlier run and may not match the '
            "study.</b><br>"
            + html.escape(f"It was made {_stamp(made)}. The run started {_stamp(since)} did not finish ({why}), so "
                          "this report was moved aside to report.out-of-date.html; its findings, tables and charts "
                          "may not match the study's current samples, sheet or configuration. OUT_OF_DATE.txt "
                          f"beside this file says which jobs and samples{log_part}. A run that finishes writes a "
                          "new report.html and removes this file.")
            + "</div>")


def mark_report_out_of_date(path: Path, since: float, run: RunLog) -> str | None:
    """Insert ``banner_html`` right after the opening ``<body ...>`` tag of the report at ``path`` and prefix its
    ``<title>`` with ``TITLE_PREFIX``; the rest of the file is kept byte for byte, and its modification time (when
    the earlier run made it). Returns None when the file carries the banner (now or already); otherwise why not
    (no ``<body>`` tag found, the file cannot be read or written), leaving the file as it is and logging it."""
    path = Path(path)
    try:
        made = path.stat().st_mtime
        text = path.read_bytes().decode("utf-8", errors="surrogateescape")
    except OSError as err:
        log.warning("could not read %s to mark it out of date: %s", path, err)
        return f"it could not be read ({err})"
    if f'id="{BANNER_ID}"' in text:
        return None
    body = _first_tag(_BODY, text)
    if body is None:
        log.warning("%s has no <body> tag: left as it is, without the out-of-date banner", path)
        return "no <body> tag was found in it"
    title = _first_tag(_TITLE, text[: body.start()])
    cut = body.end()
    marked = text[:cut] + banner_html(made, since, run) + text[cut:]
    if title is not None:
        at = title.end(1)
        marked = marked[:at] + TITLE_PREFIX + marked[at:]
    try:
        with atomic_path(path) as tmp:
            tmp.write_bytes(marked.encode("utf-8", errors="surrogateescape"))
        os.utime(path, (made, made))
    except OSError as err:
        log.warning("could not write the out-of-date banner into %s: %s", path, err)
        return f"it could not be written ({err})"
    return None


def pending_samples(dry_run: list[str], env: dict[str, str] | None = None,
                    timeout_s: float = 300.0) -> list[str] | None:
    """The samples with jobs still to run after a run that did not finish: the ``sample`` wildcards of the jobs in
    Snakemake's dry run of the same command (``dry_run``: that command line with ``--dry-run``), sorted. Their
    folders under results/samples/ hold outputs of an earlier run, or none: with ``--keep-going`` off, or after an
    interruption, jobs that never started are in no log. None when the dry run fails or takes longer than
    ``timeout_s`` seconds (e.g. it refuses incomplete files until ``--rerun-incomplete``)."""
    try:
        done = subprocess.run(dry_run, env=env, capture_output=True, text=True, timeout=timeout_s, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return parse_snakemake_log(done.stdout + "\n" + done.stderr).unfinished_samples if done.returncode == 0 else None


def unforced(extra: list[str]) -> list[str]:
    """``extra`` without Snakemake's force options and their values (``--forcerun``/``-R`` RULE..., ``--forceall``,
    ``--force``): a dry run with them would list every forced job again, not the jobs still to run."""
    out, skipping = [], False
    for arg in extra:
        if arg in ("--forcerun", "-R"):
            skipping = True
        elif skipping and not arg.startswith("-"):
            continue
        elif arg in ("--forceall", "-F", "--force", "-f") or arg.startswith("--forcerun="):
            skipping = False
        else:
            skipping = False
            out.append(arg)
    return out


def write_out_of_date_note(study_dir: Path, run: RunLog, since: float, pending: list[str] | None = None,
                           killed: bool = False) -> Path:
    """Write ``results/study/OUT_OF_DATE.txt``: the study-level tables beside it are from an earlier run, which jobs
    of the latest run failed and with which logs, the samples whose jobs failed or did not finish and those with
    jobs that never started (``pending``, from a dry run; None: not known) (their folders may hold older outputs),
    and that a run that finishes removes the note; the same mark, ``SAMPLE_NOTE``, in the folder of each sample
    whose jobs failed or did not finish. A run stopped by a signal (``run.terminated``: Ctrl-C, a cancel) is said
    to be stopped, not failed; one ``killed`` with its Snakemake (its lock left) is told to recover (trial AB)."""
    stopped = run.terminated or killed
    path = Path(study_dir) / OUT_OF_DATE_NOTE
    failed = [f"  {job.rule}  {job.place()}  log: {', '.join(job.logs) or '(none)'}" for job in run.failed]
    samples = run.unfinished_samples
    sample_part = (
        "Samples whose jobs failed or did not finish in that run: " + ", ".join(samples) + ". Their folders ("
        + ", ".join(f"results/samples/{s}/" for s in samples[:3]) + (", ..." if len(samples) > 3 else "")
        + ") may still hold outputs of an earlier run, made from older inputs; the other samples' results are "
        "kept as they are.\n" if samples else "")
    waiting = [s for s in pending or [] if s not in samples]
    if waiting:
        sample_part += ("Samples with jobs that did not start in that run (a dry run of the same command lists them): "
                        + ", ".join(waiting) + ". Their folders may hold outputs of an earlier run too.\n")
    elif pending is None:
        sample_part += ("Which samples still have jobs to run was not listed; `ms2study run STUDY --dry-run` lists "
                        "them" + (" once the killed run's lock is removed (--recover)" if killed else "") + ".\n")
    # trial AA: an interrupted run had rewritten the feature matrix and the correction before it stopped, and the note
    # called every table old: the ones it wrote are named apart (the others' inputs may have changed since)
    rewritten = sorted(p.name for p in path.parent.iterdir() if p.name not in (path.name, "samples.tsv")
                       and not p.name.startswith(".") and p.stat().st_mtime >= since) if path.parent.is_dir() else []
    text = (f"OUT OF DATE: the tables in this folder were made by an earlier run. The run started {_stamp(since)} "
            + ("was stopped before it finished" + (" (the jobs it stopped below)" if failed else "") if stopped else
               "did not finish" + (" (failed jobs below)" if failed else "")) + ", so they may not match the study's "
            "current samples, sheet or configuration. samples.tsv is the exception: it is the study's sheet as that "
            "run read it (rewritten whenever the sheet changes, before any job), not necessarily the one the tables "
            "were made from. The earlier report was moved to report.out-of-date.html (marked OUT OF DATE).\n"
            + (f"These were written by that run before it stopped, from the current inputs: {', '.join(rewritten)}; "
               "the others are from the earlier run.\n" if rewritten else "")
            + ("\n".join(failed) + "\n" if failed else "")
            + sample_part
            + (f"Snakemake's log of that run: {run.path}\n" if run.path else "")
            + ("Recover with `ms2study run STUDY --recover` (the killed run left its lock)" if killed else
               "Run the same `ms2study run` command again" if stopped else
               "Correct the cause and run the same `ms2study run` command again")
            + ": a run that finishes rewrites these files and removes this note.\n")
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text(text, path)
    for sample in samples:  # the mark inside the folders too (a trial found old outputs there, unmarked)
        folder = Path(study_dir) / "results" / "samples" / sample
        if folder.is_dir():
            jobs = [f"  {job.rule}  log: {', '.join(job.logs) or '(none)'}" for job in run.failed
                    if job.sample == sample]
            write_text(f"OUT OF DATE: the run started {_stamp(since)} did not finish this sample's jobs"
                       + (" (failed below)" if jobs else "") + ". The files in this folder, where there are any, "
                       "were made by an earlier run, from the sample's input as it was then.\n"
                       + ("\n".join(jobs) + "\n" if jobs else "")
                       + "Correct the cause and run `ms2study run` again: a run that finishes removes this note.\n",
                       folder / SAMPLE_NOTE)
    return path


def remove_sample_notes(study_dir: Path) -> None:
    """Remove every sample folder's ``SAMPLE_NOTE`` (a run that finished has remade what they marked)."""
    for note in (Path(study_dir) / "results" / "samples").glob(f"*/{SAMPLE_NOTE}"):
        note.unlink(missing_ok=True)


def clear_marks(study_dir: Path) -> None:
    """Remove every mark a failed run left (``OUT_OF_DATE_REPORT``, ``OUT_OF_DATE_NOTE``, the samples'
    ``SAMPLE_NOTE``): the report there now is current."""
    study_dir = Path(study_dir)
    (study_dir / OUT_OF_DATE_REPORT).unlink(missing_ok=True)
    (study_dir / OUT_OF_DATE_NOTE).unlink(missing_ok=True)
    remove_sample_notes(study_dir)


def keep_report(study_dir: Path) -> None:
    """Give the study's report, when there is one, the second name ``REPORT_BEFORE_RUN`` (a hard link; a copy where
    the file system has none), replacing an older one."""
    report, kept = Path(study_dir) / REPORT, Path(study_dir) / REPORT_BEFORE_RUN
    kept.unlink(missing_ok=True)
    if not report.exists():
        return
    try:
        os.link(report, kept)
    except OSError:
        shutil.copy2(report, kept)


def report_out_of_date(study_dir: Path, run: RunLog, since: float) -> bool:
    """True when this failed run leaves behind a report made by an earlier run that no longer matches the study:
    the run meant to rebuild it, or a job the report depends on failed."""
    report = Path(study_dir) / REPORT
    if not report.exists() or report.stat().st_mtime >= since:
        return False
    if run.planned.get("report") and "report" not in run.finished_rules:
        return True
    return any(not job.outputs or not all(o.startswith(NOT_FOR_REPORT) for o in job.outputs) for job in run.failed)


def mark_after_kill(study_dir: Path, locks: list[Path]) -> list[str]:
    """Mark what a run killed with its Snakemake process (SIGKILL, the machine down, the OOM killer) left, as a
    failed run's is marked: the earlier report moved to ``OUT_OF_DATE_REPORT`` with its banner (put back first from
    ``REPORT_BEFORE_RUN`` when the killed report job had deleted it) and ``OUT_OF_DATE_NOTE`` written, when that
    run meant to rebuild the report (``report_out_of_date``). ``locks``: the lock files it left; it started when
    the oldest was written. Returns the lines to print (none when nothing needed marking). Trial AA: the earlier
    report stayed as report.html, unmarked, beside tables the killed run had already rewritten."""
    study_dir = Path(study_dir)
    if not locks:
        return []
    since = min(p.stat().st_mtime for p in locks) - 1
    kept, report = study_dir / REPORT_BEFORE_RUN, study_dir / REPORT
    if kept.exists():
        if not report.exists():
            os.replace(kept, report)
        kept.unlink(missing_ok=True)
    run = read_run_log(study_dir, since)
    if not report_out_of_date(study_dir, run, since):
        return []
    moved = study_dir / OUT_OF_DATE_REPORT
    os.replace(report, moved)
    note = write_out_of_date_note(study_dir, run, since, killed=True)
    unmarked = mark_report_out_of_date(moved, since, run)
    return ([(f"ms2study run: the killed run had not rebuilt the report: the earlier one was moved to {moved} "
              f"(marked OUT OF DATE); {note} says which tables and samples may be older")]
            + ([f"ms2study run: warning: {moved} carries no out-of-date banner: {unmarked}"] if unmarked else []))
