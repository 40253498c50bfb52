"""``ms2study run STUDY_DIR``: run the Snakemake workflow on a study folder, and say plainly how it ended.

Any further arguments (``--cores``, ``--profile``, ``--dry-run``, targets...) are passed to Snakemake unchanged; an
option neither run nor Snakemake knows (e.g. simulate's ``--library-size``) is refused first, with its name.
Without ``--profile`` the repository's ``profiles/default`` is used (jobs of other samples keep going when one
fails); without ``--cores``/``--jobs`` all cores are. The study is validated first, so a bad sample sheet or config
stops here with the key or row named.

A run that was killed (SIGKILL, a lost node, a closed laptop) leaves Snakemake's lock in ``.snakemake/locks``; the
next run says so and prints the one command that recovers: ``ms2study run STUDY_DIR --recover`` removes the lock
(``snakemake --unlock``) and reruns the unfinished jobs (``--rerun-incomplete``); finished outputs are kept.
At the end of a failed run the failed jobs are listed with their samples and log files, and a report left by an
earlier run is moved to ``results/study/report.out-of-date.html``, with an OUT OF DATE banner and title, so it
cannot be taken for this run's; ``results/study/OUT_OF_DATE.txt`` names the failed jobs and the samples whose folders
may hold older outputs (``ms2study.outofdate``).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import yaml

from ms2study import runconfig, runprints, study
from ms2study.core.errors import InputError
from ms2study.io.runfiles import ms1_only_warnings
from ms2study.io.samplesheet import study_sheet
from ms2study.outofdate import (
    OUT_OF_DATE_NOTE,
    OUT_OF_DATE_REPORT,
    REPORT,
    REPORT_BEFORE_RUN,
    keep_report,
    mark_after_kill,
    mark_report_out_of_date,
    pending_samples,
    clear_marks,
    report_out_of_date,
    unforced,
    write_out_of_date_note,
)
from ms2study.runargs import (DRY_RUN_FLAGS, cores_note, forcerun_note, gpu_note, on_cluster, profile_settings,
                              refuse_bad_profile_values, refuse_foreign_options, refuse_unreachable_slurm)
from ms2study.runlock import check_lock, lock_files, processes_in, remove_partial_files
from ms2study.runlog import (  # noqa: F401 (tests)
    RunLog,
    error_in_logs,
    log_list,
    parse_snakemake_log,
    read_run_log,
    report_warnings,
    stopped_advice,
    unrecorded_outputs,
)
from ms2study.runsheet import remember_sheet, sheet_change_note

# Snakemake options that take no lock or run no jobs: no stale-lock check and no summary for them.
NO_LOCK_FLAGS = (*DRY_RUN_FLAGS, "--unlock", "--nolock", "--lint", "--list-rules", "--list", "-l", "--summary",
                 "--detailed-summary", "-D", "--dag", "--rulegraph", "--filegraph", "--d3dag", "--report",
                 "--list-changes", "--lc", "--list-code-changes", "--list-input-changes", "--list-params-changes",
                 "--cleanup-metadata", "--cleanup-shadow", "--delete-all-output", "--delete-temp-output",
                 "--touch", "-t", "--version", "-v", "--help", "-h")


def snakemake_command(study_dir: Path, extra: list[str]) -> list[str]:
    """The Snakemake command line for ``study_dir`` (used by ``run`` and by the tests)."""
    snakefile = study.REPO_ROOT / "Snakefile"
    if not snakefile.exists():
        raise InputError(
            f"the workflow's Snakefile is not at {snakefile}",
            fix="install ms2study from its source tree (pip install -e <repo>) so the workflow files are found",
        )
    command = [sys.executable, "-m", "snakemake", "-s", str(snakefile), "-d", str(study_dir)]
    extra = _repository_profiles(extra)
    has_profile = any(a == "--profile" or a.startswith("--profile=") for a in extra)
    has_workflow_profile = any(a == "--workflow-profile" or a.startswith("--workflow-profile=") for a in extra)
    if not has_profile and not has_workflow_profile:
        command += ["--workflow-profile", str(study.REPO_ROOT / "profiles" / "default")]
    elif has_profile and not has_workflow_profile:
        # Snakemake would also load the repository's profiles/default as the workflow profile, and its keys
        # (retries, latency-wait) would override the cluster profile's.
        command += ["--workflow-profile", "none"]
    if not any(a in ("-c", "--cores", "-j", "--jobs") or a.startswith(("--cores=", "--jobs=")) for a in extra):
        command += ["--cores", "all"]
    return command + list(extra)


def repository_profile(value: str, cwd: Path | None = None) -> str:
    """A ``--profile`` value as Snakemake should get it: unchanged when it names a folder from ``cwd`` (default the
    current folder) or is a bare name (Snakemake looks those up in its own profile folders); a relative path that
    exists only in this repository (``profiles/slurm`` given from a study folder, as the README writes it) becomes
    that folder's absolute path. An HPC admin's trial: from outside the repository Snakemake said "profile directory
    given (profiles/slurm), but no profile.yaml (or config.yaml) found"."""
    here = Path(cwd) if cwd is not None else Path.cwd()
    if (here / value).is_dir() or "/" not in value.strip("/"):
        return value
    candidate = study.REPO_ROOT / value
    return str(candidate.resolve()) if candidate.is_dir() else value


def _repository_profiles(extra: list[str]) -> list[str]:
    out = list(extra)
    for i, arg in enumerate(out):
        if arg == "--profile" and i + 1 < len(out):
            out[i + 1] = repository_profile(out[i + 1])
        elif arg.startswith("--profile="):
            out[i] = "--profile=" + repository_profile(arg.split("=", 1)[1])
    return out


# ------------------------------------------------------------------------------------ command-line config


def _option_values(extra: list[str], names: tuple[str, ...]) -> list[str]:
    """The values given to the Snakemake options ``names`` in ``extra`` (``--opt v1 v2``, ``--opt=v``), in order."""
    values: list[str] = []
    i = 0
    while i < len(extra):
        arg = extra[i]
        if arg in names:
            i += 1
            while i < len(extra) and not extra[i].startswith("-"):
                values.append(extra[i])
                i += 1
            continue
        for name in names:
            if name.startswith("--") and arg.startswith(name + "="):
                values.append(arg.split("=", 1)[1])
        i += 1
    return values


def config_overrides(extra: list[str], cwd: Path | None = None) -> dict:
    """What ``--configfile`` and ``--config`` in ``extra`` add to the study's configuration, read as Snakemake reads
    them (``snakemake.cli.parse_config``: a value inside a mapping stays text), so it can be validated before any
    job. Raises InputError naming the option and the fix for an unreadable file or entry, and for a dotted key
    (``annotate.fdr=0.05``), which Snakemake's ``--config`` does not understand."""
    cwd = Path(cwd or Path.cwd())
    merged: dict = {}
    for name in _option_values(extra, ("--configfile", "--configfiles")):
        path = cwd / name
        try:
            data = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError) as err:
            raise InputError(f"--configfile: cannot read it as YAML ({err})", file=str(path),
                             fix="give an existing YAML file of config keys") from err
        if not isinstance(data, dict):
            raise InputError("--configfile: must be a mapping of config keys", file=str(path))
        merged = study.deep_update(merged, data)
    entries = _option_values(extra, ("--config", "-C"))
    for entry in entries:
        key, _, value = entry.partition("=")
        if "." in key and "=" in entry:
            section, _, rest = key.partition(".")
            nested = rest.replace(".", ": {") + ": " + value + "}" * rest.count(".")
            raise InputError(
                f"--config {entry}: Snakemake's --config sets top-level keys only; '{key}' (a key inside the "
                f"'{section}' section) is not understood on the command line",
                fix=f"set it in the study's config.yaml as '{section}: {{{nested}}}' (every key: config/README.md)")
    if not entries:
        return merged
    from snakemake.cli import parse_config  # only here: importing Snakemake's CLI takes a while

    try:
        merged = study.deep_update(merged, parse_config(entries))
    except ValueError as err:
        raise InputError(f"--config {' '.join(entries)}: {err}",
                         fix="write top-level keys as KEY=VALUE (e.g. --config reference_sample=S01); set keys "
                             "inside a section in the study's config.yaml") from err
    return merged


# ---------------------------------------------------------------------------------------- write permission

# What a run writes in the study folder (Snakemake's state, the outputs, the jobs' logs and time records).
WRITTEN_FOLDERS = (".snakemake", "results", "logs")  # Snakemake's benchmark records: results/benchmarks


def check_writable(study_dir: Path) -> None:
    """Raise InputError naming the first folder a run would write in but the user may not: the study folder (when
    one of ``WRITTEN_FOLDERS`` is still to be made), or any existing folder under them. Checked before Snakemake
    starts, which would otherwise fail with its own traceback or with each job."""
    study_dir = Path(study_dir)
    folders = [study_dir] if not all((study_dir / name).is_dir() for name in WRITTEN_FOLDERS) else []
    for name in WRITTEN_FOLDERS:
        top = study_dir / name
        if top.is_dir():
            folders.append(top)
            folders += sorted(p for p in top.rglob("*") if p.is_dir() and not p.is_symlink())
    for folder in folders:
        if not os.access(folder, os.W_OK | os.X_OK):
            try:
                import pwd

                user = pwd.getpwuid(os.geteuid()).pw_name
            except (ImportError, KeyError):
                user = str(os.geteuid())
            raise InputError(
                f"the run cannot write in {folder} (user '{user}' has no write permission there); a run writes "
                f"{', '.join(WRITTEN_FOLDERS)} in the study folder",
                file=str(folder),
                fix="get write permission on the study folder (chmod -R u+w, or ask its owner), or copy samples.tsv "
                    "and config.yaml to a folder you can write in, with the sheet's file paths pointing to the runs, "
                    "and run there",
            )


def dotted_overrides(extra: list[str]) -> dict:
    """The ``--config`` entries of ``extra`` whose key has a dot (``annotate.fdr=0.05``) as the nested mapping they
    mean, values read as YAML (``{"annotate": {"fdr": 0.05}}``), so a bad value can be named like one in
    config.yaml before ``config_overrides`` refuses the form itself."""
    nested: dict = {}
    for entry in _option_values(extra, ("--config", "-C")):
        key, sep, value = entry.partition("=")
        if not sep or "." not in key:
            continue
        try:
            parsed = yaml.safe_load(value) if value else None
        except yaml.YAMLError:
            parsed = value
        for part in reversed(key.split(".")):
            parsed = {part: parsed}
        nested = study.deep_update(nested, parsed)
    return nested


# ------------------------------------------------------------------------------------------- the summary


def _keeps_going(extra: list[str]) -> bool:
    """Whether Snakemake was told to keep going after a failed job (option, or the profile in use)."""
    if "--keep-going" in extra or "-k" in extra:
        return True
    return bool(profile_settings(extra, study.REPO_ROOT).get("keep-going"))


def skipped_outcomes(study_dir: Path) -> list[str]:
    """A line per configured outcome the models stage skipped, and why (``results/study/models/models_done.json``,
    which lists the outcomes of the last models job: a trial's run "finished" where a class of one sample left
    nothing modelled, which only the report said), and a line naming outcome folders left from an earlier
    configuration (a second trial read "outcome 'site' was not modelled" after removing 'site' from config.yaml)."""
    models = Path(study_dir) / "results" / "study" / "models"
    try:
        done = json.loads((models / "models_done.json").read_text())
        entries = [e for e in done.get("outcomes", []) if isinstance(e, dict)]
    except (OSError, ValueError, AttributeError):
        return []
    lines = [f"  outcome '{e.get('column')}' was not modelled: {e.get('reason') or 'see the report'}"
             for e in entries if e.get("status") == "skipped"]
    current = {e.get("folder") for e in entries}
    stale = [f"results/study/models/{p.parent.name}" for p in sorted(models.glob("*/summary.json"))
             if p.parent.name not in current]
    for folder in ("differential", "class_enrichment", "attribution"):  # one table per outcome, named as its folder
        stale += [f"results/study/{folder}/{p.name}" for p in sorted(models.parent.glob(f"{folder}/*.parquet"))
                  if p.stem not in current]
    if stale:
        more = " ..." if len(stale) > 12 else ""
        lines.append(f"  results of outcome(s) no longer configured are left from an earlier run (the report leaves "
                     f"them out; delete them if unwanted): {', '.join(stale[:12])}{more}")
    return lines


def summarize(study_dir: Path, returncode: int, since: float, extra: list[str] | None = None,
              env: dict[str, str] | None = None) -> str:
    """The lines printed at the end of a run: failed jobs with samples and logs, the outcomes left unmodelled
    (``skipped_outcomes``), the state of the report (when it
    is out of date, also the samples with jobs still to run: ``outofdate.pending_samples`` with ``env``), and results
    kept without Snakemake's records (``runlog.unrecorded_outputs``)."""
    study_dir = Path(study_dir)
    run = read_run_log(study_dir, since)
    lines: list[str] = []
    kept = study_dir / REPORT_BEFORE_RUN
    if kept.exists():  # Snakemake deletes a job's outputs before running it: a failed report job left none
        if not (study_dir / REPORT).exists() and returncode != 0:
            os.replace(kept, study_dir / REPORT)
        kept.unlink(missing_ok=True)
    if returncode == 0:
        unrecorded = unrecorded_outputs(study_dir)
        report = study_dir / REPORT
        if report.exists() and report.stat().st_mtime >= since:
            clear_marks(study_dir)  # replaced by this run's report
            lines.append(f"ms2study: the run finished; report: {report}")
            lines.extend(report_warnings(study_dir, since))
            lines.extend(skipped_outcomes(study_dir))
        elif run.path and not run.planned and "Nothing to be done" in run.path.read_text(errors="replace"):
            note = study_dir / OUT_OF_DATE_NOTE  # a report made after a failed run marked the folder is current
            if report.exists() and note.exists() and report.stat().st_mtime > note.stat().st_mtime:
                clear_marks(study_dir)
            lines.append("ms2study: nothing to do: every requested output is present and "  # unrecorded: times only
                         + ("newer than its inputs (see the warning below)" if unrecorded else "up to date")
                         + (f"; report: {report}" if report.exists() else " (the report was not requested)"))
        else:  # targets the report does not depend on: jobs ran, the report is not this run's
            lines.append("ms2study: the run finished; it did not write the report"
                         + (f" (the one there is from an earlier run: {report})" if report.exists() else ""))
        return "\n".join(lines + [note for note in [run.unrecorded_note(unrecorded)] if note])
    if run.lock_error:
        lines.append("ms2study: Snakemake found the study folder locked.")
        message = check_lock(study_dir, list(extra or []), recover=False)
        if message:
            lines.append(message)
    if run.failed:
        samples = sorted({job.sample for job in run.failed if job.sample})
        # a job is logged again from inside its cluster group job, under another job id: each job once
        once = {(j.rule, tuple(j.logs or j.outputs)): j for j in sorted(run.failed, key=lambda j: bool(j.sample))}
        once = list(once.values())  # the entry with its sample kept (sorted last)
        # Ctrl-C stops the running jobs, which Snakemake logs as failed (trial AA: "the run failed ... identify")
        interrupted = run.terminated or returncode in (130, -2)
        lines.append(
            (f"ms2study: the run was interrupted (Ctrl-C or a stop signal), which stopped {len(once)} running job(s)"
             if interrupted else f"ms2study: the run failed: {len(once)} job(s) failed")
            + (f", sample(s) {', '.join(samples)}" if samples else "")
            + (" (jobs that did not depend on them were run, except those in a cluster group job with one of them):"
               if _keeps_going(extra or []) and not interrupted else ":")
        )
        width = max(len(job.rule) for job in run.failed)
        for job in sorted(once, key=lambda j: (j.sample or "", j.rule)):
            logs = log_list(study_dir, job.logs, since) or "(no log file; see Snakemake's log)"
            lines.append(f"  {job.rule:<{width}}  {job.place()}  log: {logs}")
            cause = error_in_logs(study_dir, job.logs, since) or job.stopped_from_outside()
            if cause:
                lines.append(f"  {'':<{width}}  {cause}")
        cluster = on_cluster(extra or [], study.REPO_ROOT) or any(  # the jobs ran on SLURM: its advice alone
            "SLURM" in (job.message or "") or any("slurm_logs" in log for log in job.logs) for job in once)
        advice = stopped_advice([job.rule for job in once if job.stopped_from_outside()], extra or [], cluster)
        if advice:
            lines.append(advice)
        lines.append("  " + ("Run" if interrupted else "Correct the cause shown in each log, then run") + " the same "
                     "command again: finished outputs are kept and only the missing ones are made.")
    elif not run.lock_error:
        if returncode < 0 or returncode in (130, 137, 143) or run.terminated:
            lines.append(f"ms2study: the run was interrupted (exit code {returncode}); run the same command again to "
                         "continue (if it reports a lock, it prints the command that recovers).")
        else:
            lines.append(f"ms2study: the run failed (exit code {returncode}) before a job failed: see the messages "
                         "above.")
    if run.path:
        lines.append(f"  Snakemake's log of this run: {run.path}")
    if report_out_of_date(study_dir, run, since):
        moved = study_dir / OUT_OF_DATE_REPORT
        os.replace(study_dir / REPORT, moved)
        lines.append(f"ms2study: the report from an earlier run is OUT OF DATE (this run did not finish it); it was "
                     f"moved to {moved} so it cannot be taken for this run's. A run that finishes writes a new "
                     f"{REPORT}.")
        pending = pending_samples(snakemake_command(study_dir, [*unforced(extra or []), "--dry-run"]), env)
        note = write_out_of_date_note(study_dir, run, since, pending)
        unmarked = mark_report_out_of_date(moved, since, run)
        if unmarked:
            lines.append(f"ms2study: warning: {moved} carries no out-of-date banner: {unmarked}; it was left as it "
                         "is")
        lines.append(f"ms2study: the tables under {note.parent} that this run did not rewrite are from that earlier "
                     f"run too ({note.name} there names those it did rewrite, and samples.tsv holds the current sheet)"
                     ".")  # trial AB: "the other tables ... are from that earlier run" beside three it had rewritten
        samples = run.unfinished_samples
        if samples:
            lines.append(f"ms2study: the jobs of sample(s) {', '.join(samples)} failed or did not finish: their "
                         f"folders under results/samples/ may hold outputs of an earlier run ({note.name} lists them).")
        waiting = [s for s in pending or [] if s not in samples]
        if waiting:
            lines.append(f"ms2study: sample(s) {', '.join(waiting)} have jobs that did not start in this run: their "
                         f"folders may hold outputs of an earlier run too ({note.name} lists them).")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------ the run


def _call(command: list[str], env: dict[str, str]) -> int:
    """Run ``command``; on Ctrl-C keep waiting: Snakemake got the same signal and stops its jobs and removes its
    lock (killing it here instead would leave a stale lock)."""
    process = subprocess.Popen(command, env=env)
    while True:
        try:
            return process.wait()
        except KeyboardInterrupt:
            continue


def run_study(study_dir: Path, extra: list[str], recover: bool = False) -> int:
    study_dir = Path(study_dir).resolve()
    if not study_dir.is_dir():
        raise InputError("study folder does not exist", file=str(study_dir),
                         fix="give the folder that holds samples.tsv (or the mzML files)")
    refuse_foreign_options(extra)  # e.g. simulate's --library-size (a trial): Snakemake's usage text said little
    refuse_bad_profile_values(extra, study.REPO_ROOT)  # trial BB: `retries: one` got the usage text too
    nested = dotted_overrides(extra)
    if nested:  # a bad value is named first (key, allowed values); a good one is refused for its form below
        study.load_config(study_dir, nested, "the study's config.yaml (--config takes top-level keys only)")
    config = study.load_config(study_dir, config_overrides(extra))
    sheet = study.load_sample_sheet(study_dir, config)
    for warning in study.check_study(study_dir, config, sheet) + ms1_only_warnings(study_dir, sheet):
        print(f"ms2study run: warning: {warning}", file=sys.stderr, flush=True)
    replaced, prints = runprints.replaced_runs(study_dir, sheet)  # trial AA: a run replaced by an older file
    touched = runprints.set_back_touched(study_dir, sheet, prints)  # trial BB: a run touched, its content the same
    for note in (runconfig.setup_notes(study_dir, config, sheet.height) + runprints.replaced_note(replaced)
                 + runprints.touched_note(*touched)
                 + runprints.moved_note(study_dir, prints)
                 + runprints.orphan_sample_notes(study_dir, sheet,
                                                 mark=not any(a in DRY_RUN_FLAGS for a in extra))
                 + list(filter(None, [cores_note(extra, study.REPO_ROOT), gpu_note(extra, study.REPO_ROOT),
                                      forcerun_note(extra)]))):
        print(f"ms2study run: note: {note}", file=sys.stderr, flush=True)
    edited = sheet_change_note(study_dir, study_sheet(sheet, config))  # trial AV: an outcome edit went unnamed
    for line in filter(None, [runconfig.change_message(study_dir, config), edited and f"ms2study run: note: {edited}"]):
        print(line, file=sys.stderr, flush=True)
    command = snakemake_command(study_dir, runprints.with_forced(extra, replaced))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(study.REPO_ROOT / "workflow"), env.get("PYTHONPATH")]))
    refuse_unreachable_slurm(extra, study.REPO_ROOT, env)  # trial BK: no SLURM here, and the executor waited silent
    takes_lock = not any(a in NO_LOCK_FLAGS for a in extra)
    if takes_lock or recover:
        check_writable(study_dir)
        message = check_lock(study_dir, extra, recover)
        for line in mark_after_kill(study_dir, lock_files(study_dir) if processes_in(study_dir) == [] else []):
            print(line, file=sys.stderr, flush=True)  # a run killed with its Snakemake (trial AA)
        if message:
            print(f"ms2study run: error: {message}", file=sys.stderr, flush=True)
            return 1
    if recover and not lock_files(study_dir):
        print("ms2study run: no stale lock in this study folder; running with --rerun-incomplete", file=sys.stderr,
              flush=True)
    elif recover:
        unlock = snakemake_command(study_dir, ["--unlock"])
        print("+ " + shlex.join(unlock), file=sys.stderr, flush=True)
        code = _call(unlock, env)
        if code != 0:
            print(f"ms2study run: error: snakemake --unlock failed (exit code {code}); see the messages above",
                  file=sys.stderr)
            return code
    if recover:
        partial = remove_partial_files(study_dir)
        if partial:
            print(f"ms2study run: removed {len(partial)} partial file(s) left by killed jobs "
                  f"(e.g. {partial[0].relative_to(study_dir)})", file=sys.stderr, flush=True)
        if "--rerun-incomplete" not in extra and "--ri" not in extra:
            command.append("--rerun-incomplete")
    if takes_lock:
        keep_report(study_dir)
    print("+ " + shlex.join(command), file=sys.stderr, flush=True)
    since = time.time()
    code = _call(command, env)
    if takes_lock:  # an interrupted Snakemake can exit 0 after "At least one job did not complete successfully"
        code, note = read_run_log(study_dir, since).settled_code(code)
        if note:
            print(note, file=sys.stderr, flush=True)
        runprints.remember(study_dir, prints, since)
        summary = summarize(study_dir, code, since, extra, env)
        if summary:
            print(summary, file=sys.stderr, flush=True)
        if code == 0:
            runconfig.remember(study_dir, config)
            remember_sheet(study_dir, study_sheet(sheet, config))
    elif code == 0 and any(a in DRY_RUN_FLAGS for a in extra) and not {"-F", "--forceall"} & set(extra):
        # Snakemake's own note names rules, not the cause (with --forceall everything is planned anyway)
        note = RunLog().unrecorded_note(unrecorded_outputs(study_dir), dry_run=True)
        if note:
            print(note, file=sys.stderr, flush=True)
    return code


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "run",
        help="run the pipeline on a study folder (extra options go to Snakemake)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("study_dir", type=Path, help="folder with samples.tsv (or mzML files) and optional config.yaml")
    p.add_argument("--recover", action="store_true",
                   help="after a killed run: remove its stale lock (snakemake --unlock), then rerun the unfinished "
                   "jobs (--rerun-incomplete); finished outputs are kept")
    p.set_defaults(func=lambda args: run_study(args.study_dir, args.extra, args.recover), accepts_extra=True)
