"""Recovery in one command: a killed run's stale lock is recognised and `ms2study run STUDY --recover` finishes the
work with outputs identical to an uninterrupted run; one bad sample does not stop the others, and the end of the
run names the failed jobs, their samples and logs, and moves an earlier report aside as out of date.

One 2-sample study is simulated per module; the Snakemake runs request only the detect and spectra outputs (the
whole file takes about a minute on 2 cores, most of it the SIGKILL test).
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from ms2study import outofdate, runlog, runner
from ms2study.simulate.study import simulate_study

REPO = Path(__file__).resolve().parents[1]
SAMPLES = ["S01", "S02"]
TARGETS = [f"results/samples/{s}/{t}.parquet" for s in SAMPLES for t in ("features", "spectra")]


def ms2study(*args: str, **popen: object) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO / "workflow"))
    return subprocess.run([sys.executable, "-m", "ms2study", *args], check=False, capture_output=True, text=True,
                          env=env, **popen)


@pytest.fixture(scope="module")
def simulated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("simulated") / "study"
    simulate_study(root, n_samples=len(SAMPLES), seed=0)
    return root


@pytest.fixture
def study(simulated: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "study"
    shutil.copytree(simulated, copy)
    return copy


def _leave_lock(study: Path) -> None:
    locks = study / ".snakemake" / "locks"
    locks.mkdir(parents=True)
    for name in ("0.input.lock", "0.output.lock"):
        (locks / name).write_text(str(study / "results" / "samples" / "S01" / "features.parquet") + "\n")


# ------------------------------------------------------------------------------------------- stale locks


def test_recover_without_a_lock_says_so_and_does_not_unlock(study: Path) -> None:
    """`--recover` on a folder with no stale lock: no `snakemake --unlock` call, a plain statement instead."""
    result = ms2study("run", str(study), "--recover", "-n", "--cores", "1", TARGETS[0])
    assert result.returncode == 0, result.stderr[-3000:]
    assert "no stale lock in this study folder" in result.stderr
    assert "--unlock" not in result.stderr and "Unlocked" not in result.stdout + result.stderr
    assert "--rerun-incomplete" in result.stderr


def test_stale_lock_is_named_with_the_command_that_recovers(study: Path) -> None:
    _leave_lock(study)
    result = ms2study("run", str(study), "--cores", "1", TARGETS[0])
    assert result.returncode == 1
    assert "locked by an earlier run that did not finish" in result.stderr
    expected = shlex.join(["ms2study", "run", str(study), "--recover", "--cores", "1", TARGETS[0]])
    assert expected in result.stderr
    assert "+ " not in result.stderr  # Snakemake was not started
    assert not (study / "results").exists()
    # a dry run takes no lock and still works
    dry = ms2study("run", str(study), "--cores", "1", "--dry-run", TARGETS[0])
    assert dry.returncode == 0, dry.stderr[-3000:]


def test_a_run_killed_with_its_snakemake_leaves_the_earlier_report_marked(study: Path) -> None:
    """Trial AA: after `kill -KILL` of the whole run (its Snakemake too) the earlier report stayed as report.html,
    unmarked, beside tables the killed run had already rewritten, and the next `ms2study run` (stopped by the lock)
    left it so. It is now moved aside and marked as a failed run's is; a killed run that did not plan the report
    leaves it alone."""
    report = study / outofdate.REPORT
    report.parent.mkdir(parents=True)
    report.write_text("<html><head><title>ms2study</title></head><body><p>9 control, 6 case</p></body></html>")
    os.utime(report, (time.time() - 3600, time.time() - 3600))
    log = study / ".snakemake" / "log" / "2026-12-05T053700.000000.snakemake.log"
    log.parent.mkdir(parents=True)
    log.write_text("Job stats:\njob      count\n-----  -------\ncorrect      1\nreport       1\ntotal        2\n\n"
                   "rule correct:\n    jobid: 3\n")
    (report.parent / "differential").mkdir()
    os.utime(report.parent / "differential", (time.time() - 3600, time.time() - 3600))
    _leave_lock(study)
    (report.parent / "feature_matrix.parquet").write_bytes(b"rewritten by the killed run")
    result = ms2study("run", str(study), "--cores", "1")
    assert result.returncode == 1 and "locked by an earlier run that did not finish" in result.stderr
    assert "the killed run had not rebuilt the report" in result.stderr
    moved = study / outofdate.OUT_OF_DATE_REPORT
    assert not report.exists() and outofdate.BANNER_ID in moved.read_text()
    note = (study / outofdate.OUT_OF_DATE_NOTE).read_text()
    assert ("These were written by that run before it stopped, from the current inputs: feature_matrix.parquet; the "
            "others are from the earlier run.") in note and "differential" not in note
    # once marked, a second try says nothing more; a killed run that planned no report job leaves the report alone
    assert outofdate.mark_after_kill(study, runner.lock_files(study)) == []
    os.replace(moved, report)
    log.write_text("Job stats:\njob      count\n-----  -------\ndetect       1\ntotal        1\n\nrule detect:\n"
                   "    jobid: 1\n    output: results/models/x\n")
    assert outofdate.mark_after_kill(study, runner.lock_files(study)) == [] and report.exists()
    # the report job itself killed: Snakemake had deleted report.html; the second name made before the run is put back
    os.replace(report, study / outofdate.REPORT_BEFORE_RUN)
    log.write_text("Job stats:\njob      count\n-----  -------\nreport       1\ntotal        1\n\nrule report:\n"
                   "    jobid: 1\n")
    assert outofdate.mark_after_kill(study, runner.lock_files(study))
    assert outofdate.BANNER_ID in moved.read_text() and not (study / outofdate.REPORT_BEFORE_RUN).exists()


def test_a_live_run_is_not_taken_for_a_stale_lock(study: Path) -> None:
    _leave_lock(study)
    # A process working in the folder whose command line names snakemake stands for a run in progress.
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "snakemake"], cwd=study)
    try:
        deadline = time.time() + 10
        while not runner.processes_in(study) and time.time() < deadline:
            time.sleep(0.05)
        assert [pid for pid, _ in runner.processes_in(study)] == [live.pid]
        for recover in ([], ["--recover"]):
            result = ms2study("run", str(study), "--cores", "1", *recover, TARGETS[0])
            assert result.returncode == 1
            assert f"another run is working in this study folder (pid {live.pid}" in result.stderr
        assert runner.lock_files(study)  # --recover did not unlock under a live run
    finally:
        live.kill()
        live.wait()
    assert runner.processes_in(study) == []


def test_snakemake_log_parsing_counts_a_retried_job_once() -> None:
    text = """Job stats:
job         count
--------  -------
detect          2
report          1
total           3

[Mon Nov 30 10:28:53 2026]
localrule detect:
    input: mzml/S02.mzML
    output: results/samples/S02/features.parquet
    log: logs/detect/S02.log
    jobid: 2
    wildcards: sample=S02
[Mon Nov 30 10:28:53 2026]
rule detect:
    output: results/samples/S01/features.parquet
    jobid: 1
    wildcards: sample=S01
Error in rule detect:
    message: None
    jobid: 2
    output: results/samples/S02/features.parquet
    log: logs/detect/S02.log (check log file(s) for error details)
Trying to restart job 2.
Finished jobid: 1 (Rule: detect)
Error in rule detect:
    jobid: 2
    log: logs/detect/S02.log (check log file(s) for error details)
Exiting because a job execution failed. Look below for error messages
"""
    run = runner.parse_snakemake_log(text)
    assert run.planned == {"detect": 2, "report": 1}
    assert run.finished_rules == {"detect"}
    assert [(j.rule, j.sample, j.logs, j.outputs) for j in run.failed] == [
        ("detect", "S02", ["logs/detect/S02.log"], ["results/samples/S02/features.parquet"])]
    assert run.incomplete


def test_a_run_snakemake_ended_with_an_unfinished_job_counts_as_failed() -> None:
    """Trial finding: a Snakemake interrupted by signals printed "At least one job did not complete successfully"
    and still exited 0, and `ms2study run` said "the run finished" and exited 0. The log's words now decide."""
    interrupted = runner.parse_snakemake_log(
        "Building DAG of jobs...\nrule models:\n    jobid: 5\nWorkflowError:\n"
        "At least one job did not complete successfully.\n")
    assert interrupted.incomplete and not interrupted.failed
    finished = runner.parse_snakemake_log("rule models:\n    jobid: 5\nFinished jobid: 5 (Rule: models)\n"
                                          "1 of 1 steps (100%) done\n")
    assert not finished.incomplete
    assert interrupted.settled_code(0) == (1, None) and finished.settled_code(0) == (0, None)


def test_a_cancelled_cluster_job_retried_to_the_end_is_a_finished_run(tmp_path: Path) -> None:
    """Trial BK on a real SLURM cluster: `scancel` of an embed group job; Snakemake quoted the cancelled job's own
    log (a Snakemake log with "Will exit after finishing currently running jobs" and "At least one job did not
    complete successfully"), submitted the job again, finished all 25 steps and still exited 1. ms2study said "the
    run was interrupted" and left the earlier failure's out-of-date marks beside the new report, also after a later
    "Nothing to be done". The quoted log is not this run's scheduler; a run whose every step finished is finished."""
    text = (
        "Job stats:\njob  count\n---  ---\nembed  2\nreport  1\ntotal  3\n\n"
        "rule embed:\n    jobid: 35\n    output: results/samples/S07/embeddings.parquet\n    log: logs/embed/S07.log\n"
        "Job 35 has been submitted with SLURM jobid 25 (log: /s/.snakemake/slurm_logs/group_embed_embed/25.log).\n"
        "[Sun Dec  6 02:39:57 2026]\n    message: Error in group embed\n"
        "    log: /s/.snakemake/slurm_logs/group_embed_embed/25.log (check log file(s) for error details)\n"
        "    jobs:\n        rule embed:\n            jobid: 35\n"
        "            output: results/samples/S07/embeddings.parquet\n"
        "            log: logs/embed/S07.log (check log file(s) for error details)\n"
        "Logfile /s/.snakemake/slurm_logs/group_embed_embed/25.log:\n" + "=" * 80 + "\n\nSNAKEMAKE\n=========\n"
        "rule embed:\n    jobid: 0\n    output: results/samples/S07/embeddings.parquet\n"
        "slurmstepd-vm: error: *** JOB 25 ON vm CANCELLED AT 2026-12-06T02:39:55 ***\n"
        "Error in rule embed:\n    message: None\n    jobid: 0\n    log: logs/embed/S07.log (check log file(s) for "
        "error details)\nWill exit after finishing currently running jobs (scheduler).\nWorkflowError:\n"
        "At least one job did not complete successfully.\n" + "=" * 80 + "\n"
        "Logfile logs/embed/S07.log: empty file\n"
        "    Error in rule embed:\n        message: None\n        jobid: 35\n"
        "        log: logs/embed/S07.log (check log file(s) for error details)\n"
        "Trying to restart job bf9f20b2-8a5e-513e-adba-97341b9ee73b.\n"
        "Finished jobid: 35 (Rule: embed)\n2 of 3 steps (67%) done\nrule report:\n    jobid: 57\n"
        "Finished jobid: 57 (Rule: report)\n3 of 3 steps (100%) done\n")
    run = runner.parse_snakemake_log(text)
    assert not run.terminated and not run.incomplete and not run.failed and run.all_done and run.restarted == 1
    code, note = run.settled_code(1)
    assert code == 0 and note == ("ms2study run: note: every job finished, 1 of them after failing and being "
                                  "submitted again, but Snakemake exited with code 1; the run is taken as finished")
    # a run stopped on request, or with a job still failed, keeps Snakemake's code
    stopped = runner.parse_snakemake_log(text + "Will exit after finishing currently running jobs (scheduler).\n")
    assert stopped.terminated and stopped.settled_code(1) == (1, None)
    assert run.settled_code(130) == (130, None)
    unfinished = runner.parse_snakemake_log(text.replace("3 of 3 steps (100%) done", "2 of 3 steps (67%) done"))
    assert unfinished.settled_code(1) == (1, None)
    # the marks of the earlier failed run go when a later run finds nothing to do and the report postdates them
    from ms2study.outofdate import OUT_OF_DATE_NOTE, OUT_OF_DATE_REPORT

    for path, content in ((OUT_OF_DATE_NOTE, "earlier run failed"), (OUT_OF_DATE_REPORT, "<html>old</html>")):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(content)
        os.utime(tmp_path / path, (1_000_000, 1_000_000))
    (tmp_path / "results" / "study" / "report.html").write_text("<html>new</html>")
    os.utime(tmp_path / "results" / "study" / "report.html", (2_000_000, 2_000_000))  # after the marks, before the run
    log = tmp_path / ".snakemake" / "log" / "2026-12-06T030000.000000.snakemake.log"
    log.parent.mkdir(parents=True)
    log.write_text("Building DAG of jobs...\nNothing to be done (all requested files are present and up to date).\n")
    summary = runner.summarize(tmp_path, 0, since=log.stat().st_mtime - 5)
    assert summary.startswith("ms2study: nothing to do") and not (tmp_path / OUT_OF_DATE_NOTE).exists()
    assert not (tmp_path / OUT_OF_DATE_REPORT).exists()


def test_a_run_stopped_by_sigterm_is_called_interrupted_not_failed(tmp_path: Path) -> None:
    """A trial's SIGTERM to Snakemake (exit code 1) was reported as "the run failed (exit code 1) before a job
    failed": Snakemake's log says it terminated on request, and the summary says the run was interrupted."""
    log = tmp_path / ".snakemake" / "log" / "2026-12-03T000000.000000.snakemake.log"
    log.parent.mkdir(parents=True)
    log.write_text("Building DAG of jobs...\nrule detect:\n    jobid: 1\n    wildcards: sample=S01\n"
                   "Terminating processes on user request, this might take some time.\n"
                   "Complete log(s): x.log\n")
    assert runner.parse_snakemake_log(log.read_text()).terminated
    summary = runner.summarize(tmp_path, 1, since=log.stat().st_mtime - 5)
    assert "the run was interrupted (exit code 1)" in summary and "before a job failed" not in summary
    # Snakemake 9's words on SIGTERM in a second trial
    assert runner.parse_snakemake_log("Will exit after finishing currently running jobs (scheduler).\n").terminated
    # trial AA: Ctrl-C stops the running job, which Snakemake logs as failed: "the run failed ... Correct the cause"
    log.write_text("rule identify:\n    jobid: 7\n    log: logs/study/identify.log\n"
                   "Terminating processes on user request, this might take some time.\n"
                   "Error in rule identify:\n    jobid: 7\n    log: logs/study/identify.log (check log file(s) for "
                   "error details)\n")
    summary = runner.summarize(tmp_path, 130, since=log.stat().st_mtime - 5)
    assert "ms2study: the run was interrupted (Ctrl-C or a stop signal), which stopped 1 running job(s):" in summary
    assert "Run the same command again" in summary and "failed" not in summary and "Correct the cause" not in summary


def test_a_job_killed_from_outside_is_said_to_be_so_not_sent_to_its_empty_log(tmp_path: Path) -> None:
    """An HPC admin's review: a detect job killed with SIGKILL (how the OOM killer ends one) left an empty log, and
    the summary named that log and said "Correct the cause shown in each log". Snakemake's log holds the exit status
    (locally) or the SLURM executor's status (on a cluster): the summary says what stopped the job and what to
    raise. A job that failed on its own error keeps that error."""
    command = "python -m ms2study --threads 1 detect --mzml mzml/S03.mzML > logs/detect/S03.log 2>&1"
    log = tmp_path / ".snakemake" / "log" / "2026-12-05T000000.000000.snakemake.log"
    log.parent.mkdir(parents=True)
    (tmp_path / "logs" / "detect").mkdir(parents=True)
    (tmp_path / "logs" / "detect" / "S03.log").write_text("")
    (tmp_path / "logs" / "detect" / "S04.log").write_text("ms2study detect: error: sample 'S04': bad file\n")
    log.write_text(
        "Job stats:\njob  count\n---  ---\ndetect  3\ntotal  3\n\n"
        f"rule detect:\n    jobid: 13\n    wildcards: sample=S03\n    log: logs/detect/S03.log\n"
        f"CalledProcessError in file \"/x/detect.smk\", line 29:\nCommand 'set -euo pipefail; {command}' "
        "returned non-zero exit status 137.\n[Sat Dec  5 02:16:48 2026]\nError in rule detect:\n    message: None\n"
        "    jobid: 13\n    log: logs/detect/S03.log (check log file(s) for error details)\n"
        "rule detect:\n    jobid: 14\n    wildcards: sample=S04\n    log: logs/detect/S04.log\n"
        "Command 'x' returned non-zero exit status 1.\nError in rule detect:\n    message: None\n    jobid: 14\n"
        "    log: logs/detect/S04.log (check log file(s) for error details)\n"
        "rule detect:\n    jobid: 15\n    wildcards: sample=S05\n    log: logs/detect/S05.log\n"
        "Error in rule detect:\n    message: SLURM-job '4321' failed, SLURM status is: 'OUT_OF_MEMORY'. Reason: "
        "Step 0: OutOfMemory.\n    jobid: 15\n    log: logs/detect/S05.log, /s/.snakemake/slurm_logs/rule_detect/S05/"
        "4321.log (check log file(s) for error details)\n"
        "Exiting because a job execution failed. Look below for error messages\n")
    run = runner.parse_snakemake_log(log.read_text())
    by_sample = {job.sample: job for job in run.failed}
    assert by_sample["S03"].exit_status == 137 and by_sample["S04"].exit_status == 1
    assert by_sample["S05"].exit_status is None and "OUT_OF_MEMORY" in by_sample["S05"].message
    assert by_sample["S04"].stopped_from_outside() is None
    summary = runner.summarize(tmp_path, 1, since=log.stat().st_mtime - 5)
    lines = summary.splitlines()
    s03 = next(i for i, line in enumerate(lines) if "sample S03" in line)
    assert lines[s03 + 1].strip().startswith("killed (exit code 137, SIGKILL) before it could write an error")
    s04 = next(i for i, line in enumerate(lines) if "sample S04" in line)
    assert lines[s04 + 1].strip() == "sample 'S04': bad file"
    s05 = next(i for i, line in enumerate(lines) if "sample S05" in line)
    assert "slurm_logs/rule_detect/S05/4321.log" in lines[s05]
    assert lines[s05 + 1].strip() == "SLURM status OUT_OF_MEMORY: it used more memory than it asked for"
    # the jobs ran on SLURM: the cluster's advice alone (trial BB read the local one too)
    assert ("A job stopped from outside: raise resources: detect: mem_mb (detect) in config.yaml, or runtime for a "
            "time limit") in summary and "locally" not in summary
    # the key that sizes a rule's jobs (trial R: calibrate_library is sized by resources: library)
    from ms2study.runlog import resource_stage, stopped_advice

    # a run that already had one core: fewer jobs is no advice (trial V)
    assert "ran short of memory for it or it was killed" in stopped_advice(["detect"], ["--cores", "1"])
    assert "run fewer jobs at once (--cores 1)" in stopped_advice(["detect"], ["--cores", "2"])
    assert stopped_advice([], []) is None
    # a run known to be local or on a cluster gets that advice alone (trial BB read both on a SLURM run)
    assert stopped_advice(["detect"], [], cluster=True) == ("  A job stopped from outside: raise resources: detect: "
                                                            "mem_mb (detect) in config.yaml, or runtime for a time "
                                                            "limit (README, troubleshooting).")
    assert "on a cluster" not in stopped_advice(["detect"], ["--cores", "2"], cluster=False)

    assert [resource_stage(r) for r in ("calibrate_library", "index_library", "attribution", "prototypes", "detect",
                                        "models")] == ["library", "library", "models", "pool", "detect", "models"]


# ------------------------------------------------------------------------------------------ real runs


def _kill_during(study: Path, targets: list[str], running: Path | None = None) -> None:
    """Start `ms2study run` in its own process group and SIGKILL the whole group inside a job: the first job
    (``running`` None), or the job whose log file ``running`` has appeared (its shell has started)."""
    env = dict(os.environ, PYTHONPATH=str(REPO / "workflow"))
    process = subprocess.Popen([sys.executable, "-m", "ms2study", "run", str(study), "--cores", "2", *targets],
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    incomplete = study / ".snakemake" / "incomplete"
    deadline = time.time() + 180
    while time.time() < deadline and process.poll() is None:
        if running is None and incomplete.is_dir() and any(incomplete.iterdir()):
            break
        if running is not None and running.exists():
            break
        time.sleep(0.02)
    # inside the job (its Python is starting or working): an embed job takes about 1.6 s from its log's creation on
    # an idle 2-core machine (torch's import is most of it), so 1.5 s killed after both samples had finished in 1 of
    # 3 runs there; 0.5 s falls inside the import
    time.sleep(0.5)
    assert process.poll() is None, "the run ended before the job could be killed"
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def _kill_then_recover_matches_an_uninterrupted_run(study: Path, tmp_path: Path, targets: list[str],
                                                    running: Path | None) -> None:
    reference = tmp_path / "reference"
    shutil.copytree(study, reference)
    uninterrupted = ms2study("run", str(reference), "--cores", "2", *targets)
    assert uninterrupted.returncode == 0, uninterrupted.stderr[-4000:]

    _kill_during(study, targets, running)
    assert runner.lock_files(study), "the killed run should have left its lock"
    assert not all((study / t).exists() for t in targets)

    again = ms2study("run", str(study), "--cores", "2", *targets)
    assert again.returncode == 1 and "--recover" in again.stderr
    command = next(line.strip() for line in again.stderr.splitlines() if "--recover" in line
                   and line.strip().startswith("ms2study run"))
    recovered = ms2study(*shlex.split(command)[1:])  # the printed command, as the user would paste it
    assert recovered.returncode == 0, recovered.stderr[-4000:]
    assert not runner.lock_files(study)
    for target in targets:
        assert (study / target).read_bytes() == (reference / target).read_bytes(), target
    assert not list((study / "results").rglob("*.tmp")), "partial files of the killed jobs were left"


@pytest.mark.integration
@pytest.mark.slow  # three Snakemake runs (uninterrupted, killed, recovered): 30 to 60 s on 2 cores
def test_sigkill_during_detect_then_recover_gives_the_outputs_of_an_uninterrupted_run(study: Path,
                                                                                      tmp_path: Path) -> None:
    _kill_then_recover_matches_an_uninterrupted_run(study, tmp_path, TARGETS, None)


@pytest.mark.integration
@pytest.mark.slow  # three runs up to the embeddings of two samples: about a minute on 2 cores
def test_sigkill_during_embed_then_recover_gives_the_outputs_of_an_uninterrupted_run(study: Path,
                                                                                     tmp_path: Path) -> None:
    targets = [f"results/samples/{s}/embeddings.parquet" for s in SAMPLES]
    _kill_then_recover_matches_an_uninterrupted_run(study, tmp_path, targets, study / "logs" / "embed" / "S01.log")


@pytest.mark.integration
def test_one_corrupt_sample_does_not_stop_the_others_and_is_named_with_its_log(study: Path) -> None:
    profile = yaml.safe_load((REPO / "profiles" / "default" / "config.yaml").read_text())
    assert profile["keep-going"] is True
    (study / "mzml" / "S02.mzML").write_text(  # damaged inside (the pre-run check sees only the ends)
        '<?xml version="1.0"?>\n<mzML><run><spectrumList count="3"><spectrum damaged</mzML>')
    old_report = study / "results" / "study" / "report.html"
    old_report.parent.mkdir(parents=True)
    old_report.write_text("<html><head><title>ms2study report</title></head><body><h1>an earlier run's report</h1>"
                          "</body></html>")
    os.utime(old_report, (time.time() - 3600, time.time() - 3600))

    result = ms2study("run", str(study), "--cores", "2", *TARGETS)

    assert result.returncode != 0
    for table in ("features", "spectra"):  # the good sample went all the way (keep-going)
        assert (study / "results" / "samples" / "S01" / f"{table}.parquet").exists()
        assert not (study / "results" / "samples" / "S02" / f"{table}.parquet").exists()
    summary = result.stderr[result.stderr.index("ms2study: the run failed"):]
    assert "sample(s) S02" in summary
    assert f"detect  sample S02  log: {study / 'logs' / 'detect' / 'S02.log'}" in summary
    assert "S02.mzML" in (study / "logs" / "detect" / "S02.log").read_text()
    # the job's own message is shown under its log path: what is wrong with the file
    assert "cannot read the file as mzML" in summary and "corrupt or truncated" in summary
    # the earlier report no longer describes the study: moved aside, and the user is told
    assert not old_report.exists()
    moved = (study / "results" / "study" / "report.out-of-date.html").read_text()
    # and it says so itself when opened later: the title is prefixed, a banner opens the page
    assert moved.startswith("<html><head><title>OUT OF DATE: ms2study report</title></head><body>"
                            '<div id="ms2study-out-of-date"')
    assert moved.endswith("</div><h1>an earlier run's report</h1></body></html>")
    assert "did not finish (1 job(s) failed: detect (sample S02))" in moved
    assert "OUT OF DATE" in summary and "report.out-of-date.html" in summary
    # and the study tables beside it carry a note saying they are from that earlier run
    note = (study / "results" / "study" / "OUT_OF_DATE.txt").read_text()
    assert "detect  sample S02" in note
    assert "Samples whose jobs failed or did not finish in that run: S02." in note  # S01's are this run's


# ------------------------------------------------------------------------------------------- stale model results


@pytest.mark.integration
def test_results_of_an_outcome_no_longer_configured_are_not_handed_to_the_report(study: Path) -> None:
    """Issue 14: the models rule declares each configured outcome's files and the report rule names every file the
    report reads, so a folder left by an outcome removed from config.yaml is neither an output nor an input of any
    job (a dry run that prints the commands; the report's own reading is tested in test_report.py)."""
    stale = study / "results" / "study" / "models" / "removed_outcome"
    stale.mkdir(parents=True)
    (stale / "summary.json").write_text('{"outcome": "removed_outcome", "type": "binary", "status": "done"}\n')
    outcomes = [o["column"] for o in yaml.safe_load((study / "config.yaml").read_text())["models"]["outcomes"]]
    assert outcomes == ["group", "age"]

    result = ms2study("run", str(study), "--cores", "1", "--dry-run", "--printshellcmds", "results/study/report.html")

    assert result.returncode == 0, result.stderr[-4000:]
    text = result.stdout + result.stderr
    assert "removed_outcome" not in text
    models = text.split("rule models:")[1].split("rule ")[0]
    for outcome in outcomes:
        for name in ("summary.json", "metrics.parquet", "predictions.parquet"):
            assert f"results/study/models/{outcome}/{name}" in models, (outcome, name)
    assert "models_done.json" not in models
    command = next(line for line in text.splitlines() if "-m ms2study" in line and " report --samples " in line)
    args = shlex.split(command.split(" report ", 1)[1].split(">", 1)[0])
    assert "--study-dir" not in args
    summaries = args[args.index("--model-summaries") + 1:args.index("--model-predictions")]
    assert summaries == [f"results/study/models/{o}/summary.json" for o in outcomes]
    differential = args[args.index("--differential") + 1:args.index("--class-enrichment")]
    assert differential == [f"results/study/differential/{o}.parquet" for o in outcomes]
    assert args[args.index("--features") + 1:args.index("--spectra")] == [
        f"results/samples/{s}/features.parquet" for s in SAMPLES]


# ------------------------------------------------------------------------------------------ a full disk


@pytest.fixture
def full_disk(tmp_path: Path):
    """A 1 MiB tmpfs mounted by the test and filled to the last byte (root only; skips with the reason otherwise)."""
    mount = tmp_path / "full"
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True,
                          text=True)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({made.stderr.strip() or 'not root'}); CI runs as root")
    try:
        with open(mount / "filler", "wb") as handle:
            try:
                while True:
                    handle.write(b"\0" * 65536)
                    handle.flush()
            except OSError:
                pass
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_gives_a_clear_message_and_no_partial_output(simulated: Path, full_disk: Path) -> None:
    out = full_disk / "S01" / "features.parquet"
    out.parent.mkdir()
    result = ms2study("detect", "--mzml", str(simulated / "mzml" / "S01.mzML"), "--sample-id", "S01",
                      "--out", str(out))
    assert result.returncode == 1, result.stderr[-3000:]
    assert "no space left on the device" in result.stderr and "Traceback" not in result.stderr
    assert "free disk space" in result.stderr
    assert not out.exists() and not list(out.parent.iterdir()), "a partial or finished-looking file was left"


def test_a_failed_study_job_over_every_run_is_summarised_in_one_short_line() -> None:
    """A job with an output per run (as gapfill, pool_corrected and chemistry had before each became one job writing
    a folder: hundreds in a cohort); the run's closing summary names the first two and counts the rest instead of
    listing every path."""
    from ms2study.runlog import FailedJob

    outputs = [f"results/study/pooled/S{i:03d}.parquet" for i in range(300)]
    place = FailedJob("pool_corrected", "7", None, ["logs/study/pool_corrected.log"], outputs).place()
    assert place == "results/study/pooled/S000.parquet, results/study/pooled/S001.parquet and 298 more outputs"
    assert FailedJob("detect", "3", "S01", [], ["x"]).place() == "sample S01"
    assert FailedJob("link", "4", None, [], ["results/study/feature_matrix.parquet"]).place() == \
        "results/study/feature_matrix.parquet"
    assert FailedJob("report", "5", None, [], []).place() == "study"


def test_samples_whose_jobs_never_started_are_listed_from_a_dry_run(study: Path) -> None:
    """With --keep-going off, or after an interruption, a sample whose jobs never started is in no log, yet its
    folder may hold outputs made from older inputs: the out-of-date note lists it from a dry run of the command."""
    env = dict(os.environ, PYTHONPATH=str(REPO / "workflow"))
    dry = runner.snakemake_command(study, ["--cores", "1", *TARGETS, "--dry-run"])
    assert outofdate.pending_samples(dry, env) == SAMPLES  # nothing made yet: every sample has jobs to run
    failed = runlog.parse_snakemake_log("rule detect:\n    jobid: 3\n    wildcards: sample=S02\n\n"
                                        "Error in rule detect:\n    jobid: 3\n    log: logs/detect/S02.log\n")
    note = outofdate.write_out_of_date_note(study, failed, time.time(), ["S01", "S02"]).read_text()
    assert "Samples whose jobs failed or did not finish in that run: S02." in note
    assert "Samples with jobs that did not start in that run (a dry run of the same command lists them): S01." in note
    bad = runner.snakemake_command(study, ["--cores", "1", "--no-such-option", "--dry-run"])
    assert outofdate.pending_samples(bad, env) is None
    note = outofdate.write_out_of_date_note(study, failed, time.time(), None).read_text()
    assert "was not listed; `ms2study run STUDY --dry-run` lists them." in note
    assert "did not finish (failed jobs below)" in note and "Correct the cause and run the same" in note
    # trial AB: a run stopped by Ctrl-C is not a failure with a cause to correct; a killed one needs --recover
    stopped = runlog.parse_snakemake_log("Terminating processes on user request, this might take some time.\n"
                                         "Error in rule gapfill:\n    jobid: 3\n    log: logs/study/gapfill.log\n")
    note = outofdate.write_out_of_date_note(study, stopped, time.time(), None).read_text()
    assert "was stopped before it finished (the jobs it stopped below)" in note and "Correct the cause" not in note
    assert "Run the same `ms2study run` command again: a run that finishes" in note
    note = outofdate.write_out_of_date_note(study, runlog.RunLog(), time.time(), None, killed=True).read_text()
    assert "Recover with `ms2study run STUDY --recover` (the killed run left its lock)" in note
    assert "lists them once the killed run's lock is removed (--recover)." in note


def test_the_dry_run_that_lists_waiting_samples_drops_the_force_options() -> None:
    """A failed `ms2study run STUDY --forcerun detect` must not list every sample as waiting: the dry run that lists
    the samples still to run leaves out --forcerun/-R and their rules, --forceall/-F and --force/-f."""
    extra = ["--cores", "2", "--forcerun", "detect", "spectra", "--keep-going", "results/x", "-F", "--forcerun=qc",
             "-R", "embed", "-f", "-n"]
    assert outofdate.unforced(extra) == ["--cores", "2", "--keep-going", "results/x", "-n"]


def test_a_profile_of_this_repository_is_found_from_any_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                               ) -> None:
    """An HPC admin's trial: `ms2study run STUDY --profile profiles/slurm`, as the README writes it, failed from a
    study folder ("profile directory given (profiles/slurm), but no profile.yaml (or config.yaml) found"). A relative
    profile path that exists only in the repository is passed as the repository's folder; one that exists where the
    command runs, and a bare name (Snakemake's own profile folders), are passed unchanged."""
    from ms2study import runner, study

    monkeypatch.chdir(tmp_path)
    command = runner.snakemake_command(tmp_path, ["--profile", "profiles/slurm", "-n"])
    assert command[command.index("--profile") + 1] == str((study.REPO_ROOT / "profiles" / "slurm").resolve())
    assert "--profile=" + str((study.REPO_ROOT / "profiles" / "slurm-noacct").resolve()) in \
        runner.snakemake_command(tmp_path, ["--profile=profiles/slurm-noacct"])
    (tmp_path / "profiles" / "slurm").mkdir(parents=True)  # the site's own copy beside the study wins
    assert runner.repository_profile("profiles/slurm") == "profiles/slurm"
    assert runner.repository_profile("mysite") == "mysite"
    assert runner.repository_profile("profiles/none-such") == "profiles/none-such"


@pytest.mark.integration
def test_without_outcomes_no_bags_of_chemistry_are_made(study: Path) -> None:
    """A fresh user's trial: an MS1-only study without a library and without outcomes failed in the prototypes job
    (no spectrum to learn on), for bags of chemistry nothing would read: the models job then writes only its run
    record. With outcomes the chemical_space feature set needs them."""
    config_path = study / "config.yaml"
    original = config_path.read_text()
    try:
        config = yaml.safe_load(original)
        config["models"]["outcomes"] = []
        config_path.write_text(yaml.safe_dump(config))
        bare = ms2study("run", str(study), "--cores", "1", "--dry-run", "--forceall", "results/study/report.html")
    finally:
        config_path.write_text(original)
    with_outcomes = ms2study("run", str(study), "--cores", "1", "--dry-run", "--forceall", "results/study/report.html")
    assert bare.returncode == 0 and with_outcomes.returncode == 0, (bare.stderr[-3000:], with_outcomes.stderr[-3000:])
    for rule in ("prototypes", "chemistry"):
        assert f"rule {rule}:" not in bare.stdout + bare.stderr, rule
        assert f"rule {rule}:" in with_outcomes.stdout + with_outcomes.stderr, rule
