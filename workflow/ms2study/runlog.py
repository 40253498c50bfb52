"""What Snakemake's log of one run says: the jobs planned per rule, the rules that finished, and the jobs that failed
with their rule, sample, log files and outputs (``ms2study run`` reads it to summarise a run's end).
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class FailedJob:
    rule: str
    jobid: str
    sample: str | None
    logs: list[str]
    outputs: list[str]
    exit_status: int | None = None  # of its command, where Snakemake said it ("returned non-zero exit status N")
    message: str | None = None      # Snakemake's message on the job (the SLURM executor's status and reason)

    def stopped_from_outside(self) -> str | None:
        """Why the job was stopped from outside before it could write an error, when the log says so: SIGKILL
        (exit 137 or -9: out of memory, a time limit or an admin), SIGTERM (143 / -15), or SLURM's status
        OUT_OF_MEMORY, TIMEOUT, CANCELLED, NODE_FAIL or PREEMPTED; None otherwise (an HPC admin's review: an
        OOM-killed job left an empty log, and the run's summary said to correct "the cause shown in each log")."""
        slurm = re.search(r"SLURM status is: '?([A-Z_]+)", self.message or "")
        if slurm and slurm.group(1) != "FAILED":
            state = slurm.group(1)
            what = {"OUT_OF_MEMORY": "it used more memory than it asked for",
                    "TIMEOUT": "it ran past its time limit"}.get(state, "SLURM stopped it")
            return f"SLURM status {state}: {what}"
        if self.exit_status in (137, -9):
            return ("killed (exit code 137, SIGKILL) before it could write an error: out of memory (the kernel's "
                    "OOM killer), a time limit or an admin")
        if self.exit_status in (143, -15):
            return "terminated (exit code 143, SIGTERM): a time limit, a cancel or an admin"
        return None

    def place(self, shown: int = 2) -> str:
        """Where the job worked, for a one-line summary: "sample S", else its first ``shown`` outputs and how many
        more (a study job over every run has hundreds), else "study"."""
        if self.sample:
            return f"sample {self.sample}"
        if not self.outputs:
            return "study"
        more = len(self.outputs) - shown
        return ", ".join(self.outputs[:shown]) + (f" and {more} more outputs" if more > 0 else "")


@dataclass
class RunLog:
    """What a Snakemake log says about a run: planned jobs per rule, finished rules, the jobs that failed."""

    path: Path | None = None
    planned: dict[str, int] = field(default_factory=dict)
    finished_rules: set[str] = field(default_factory=set)
    failed: list[FailedJob] = field(default_factory=list)
    lock_error: bool = False
    all_done: bool = False  # "N of N steps (100%) done": every job of the run finished
    restarted: int = 0  # jobs that failed and were submitted again (retries)
    terminated: bool = False  # Snakemake stopped on a signal (SIGTERM, e.g. kill or a cluster's time limit)
    incomplete: bool = False  # Snakemake said a job did not complete (even where its exit code was 0)
    # samples with a job that failed or started without finishing (interrupted): their folders under
    # results/samples/ may hold outputs made from older inputs
    unfinished_samples: list[str] = field(default_factory=list)
    # jobs kept as done whose outputs have no Snakemake records (.snakemake/metadata), so changes of code, settings
    # or inputs since they were made could not be seen, and the rules they belong to
    unrecorded_jobs: int = 0
    unrecorded_rules: list[str] = field(default_factory=list)

    def settled_code(self, code: int) -> tuple[int, str | None]:
        """(the run's exit code as this log reads it, a note when it differs from Snakemake's ``code``): 1 where
        Snakemake exited 0 although a job did not complete or failed (an interrupted Snakemake can); 0 where it
        exited with an error although every job finished, none stayed failed and no stop was asked for (trial BK: a
        scancelled SLURM job, submitted again and finished, and Snakemake exited 1, so the run was called
        interrupted and the earlier run's out-of-date marks stayed beside the new report)."""
        if code == 0 and (self.incomplete or self.failed):
            return 1, None
        if code > 0 and code not in (130, 137, 143) and self.all_done and not (self.failed or self.terminated):
            retried = f", {self.restarted} of them after failing and being submitted again" if self.restarted else ""
            return 0, (f"ms2study run: note: every job finished{retried}, but Snakemake exited with code {code}; the "
                       "run is taken as finished")
        return code, None

    def unrecorded_note(self, outputs_without_records: list[str] | None = None, dry_run: bool = False) -> str | None:
        """The warning on outputs kept without Snakemake's records (a study copied without its ``.snakemake``
        folder, or the folder deleted): Snakemake then compares file times only, so results made by other code or
        settings look finished. ``outputs_without_records``: ``unrecorded_outputs`` after the run (Snakemake says
        nothing of them when no job runs). ``dry_run``: worded for a dry run (nothing was run; a run would keep
        them). None when every kept output has its records."""
        missing = list(outputs_without_records or [])
        if not self.unrecorded_jobs and not missing:
            return None
        what = (f"{self.unrecorded_jobs} finished job(s) were kept without Snakemake's records of how they were made "
                f"(rules: {', '.join(self.unrecorded_rules) or '?'})" if self.unrecorded_jobs else
                f"{len(missing)} result(s) have no Snakemake record of how they were made (of the main results "
                f"checked: the report, identifications and each run's features; e.g. {missing[0]})")
        return (f"ms2study: warning: {what}: the study was probably copied or moved without its hidden .snakemake "
                "folder. Changes of ms2study, the settings or the encoder since those results were made cannot be "
                + ("detected, so a run would keep them. " if dry_run else "detected, so they were not rerun. ")
                + "To recompute everything with this version and these settings, run "
                + ("without --dry-run and with --forceall." if dry_run else "the same command with --forceall."))


def _has_record(study_dir: Path, relative: str) -> bool:
    """Whether Snakemake keeps a record for output ``relative`` (its path under the study folder): a file named by
    the path's URL-safe base64, cut into folders of 254 characters (snakemake.persistence.file)."""
    encoded = base64.urlsafe_b64encode(relative.encode()).decode()
    parts = [encoded[i:i + 254] for i in range(0, len(encoded), 254)]
    return Path(study_dir, ".snakemake", "metadata", *parts).exists()


def unrecorded_outputs(study_dir: Path) -> list[str]:
    """The study's main outputs (the report, identifications, each sample's features) that exist without a Snakemake
    record, as paths under ``study_dir``: results that Snakemake can only judge by file times."""
    study_dir = Path(study_dir)
    names = ["results/study/report.html", "results/study/identifications.parquet"]
    names += sorted(p.relative_to(study_dir).as_posix()
                    for p in study_dir.glob("results/samples/*/features.parquet"))
    return [n for n in names if (study_dir / n).is_file() and not _has_record(study_dir, n)]


_BLOCK_START = re.compile(r"^(?:local)?(?:rule|checkpoint) (\S+):$")
_ERROR_START = re.compile(r"^\s*Error in rule (\S+):$")
# a failed cluster group job (Snakemake 9): "    message: Error in group sample", its log (the cluster's), "jobs:"
# and one indented "rule NAME:" block per member job with its fields (trial BB: none of it was read, and the summary
# said the run failed "before a job failed")
_GROUP_ERROR = re.compile(r"^\s*(?:message: )?Error in group (\S+?):?$")
_MEMBER = re.compile(r"^\s+rule (\S+):$")
_SAMPLE_OUTPUT = re.compile(r"(?:^|[\s,])results/samples/([^/,\s]+)/")
_ERROR_LINE = re.compile(r"^ms2study [\w-]+: error: (.*)$")
_EXIT_STATUS = re.compile(r"returned non-zero exit status (-?\d+)\.")  # the CalledProcessError before the block
_FIELD = re.compile(r"^\s+(\w+): (.*)$")
_FINISHED = re.compile(r"^Finished job(?:id:)? (\d+)")
_FINISHED_RULE = re.compile(r"^Finished jobid: \d+ \(Rule: (\S+)\)")
# Snakemake's note on jobs it kept although their outputs have no metadata (snakemake.workflow.log_metadata_info)
_UNRECORDED = re.compile(r"^(\d+) jobs have missing provenance/metadata")
_UNRECORDED_RULES = re.compile(r"^Rules with missing metadata: (.*)$")
# a failed job's own log quoted into the run's (--show-failed-logs): "Logfile PATH:", a line of "=", the log, a line
# of "=". A cluster job's log is a Snakemake log itself, whose "Will exit after finishing currently running jobs" is
# not this run's scheduler stopping (trial BK: a scancelled job, retried and finished, read as the run interrupted)
_QUOTED_LOG = re.compile(r"^\s*Logfile \S.*:$")
_ALL_DONE = re.compile(r"^(\d+) of \1 steps \(100%\) done")
_RESTART = re.compile(r"^Trying to restart job ")


def _split_paths(value: str) -> list[str]:
    value = re.sub(r"\s*\(check log file\(s\) for error details\)\s*$", "", value)
    return [p.strip() for p in value.split(",") if p.strip()]


def _sample_of(fields: dict[str, str]) -> str | None:
    """The job's sample: its wildcards, else the folder of its outputs under results/samples/ (a group member's
    block names no wildcards)."""
    match = re.search(r"(?:^|,\s*)sample=([^,\s]+)", fields.get("wildcards", "")) or \
        _SAMPLE_OUTPUT.search(fields.get("output", ""))
    return match.group(1) if match else None


def _group_members(lines: list[str], i: int) -> tuple[list[dict[str, str]], int]:
    """The member jobs of a failed group job whose block starts at ``lines[i]`` ("message: Error in group ..."),
    each with the group's log (the cluster job's, where a job that never started wrote its error) first among its
    logs, and the index after the block."""
    group: dict[str, str] = {"message": lines[i].strip().removeprefix("message: ")}
    members: list[dict[str, str]] = []
    i += 1
    while i < len(lines):
        line = lines[i].rstrip()
        if (m := _MEMBER.match(line)) is not None:
            members.append({"rule": m.group(1)})
        elif (m := _FIELD.match(line)) is not None:
            (members[-1] if members else group).setdefault(m.group(1), m.group(2))
        elif line.strip() != "jobs:":
            break
        i += 1
    for member in members:
        member["log"] = ", ".join(p for key in ("group", "member") for p in _split_paths(
            (group if key == "group" else member).get("log", "")))
        member.setdefault("message", group["message"])
        member["group_member"] = "yes"  # its own "Error in rule" block, indented below, keeps these logs
    return members, i


def parse_snakemake_log(text: str) -> RunLog:
    """Read Snakemake's log of one run (the text it prints, also kept in ``.snakemake/log/``)."""
    result = RunLog()
    jobs: dict[str, dict[str, str]] = {}
    status: dict[str, tuple[str, dict[str, str]]] = {}  # jobid -> ("failed" | "done", error fields)
    lines = text.splitlines()
    i = 0
    exit_status: str | None = None
    while i < len(lines):
        line = lines[i].rstrip()
        if _QUOTED_LOG.match(line) and i + 1 < len(lines) and set(rule := lines[i + 1].strip()) == {"="}:
            i += 2  # a job's own log, quoted: skipped to the same line of "=" that closes it (its own "SNAKEMAKE"
            while i < len(lines) and lines[i].strip() != rule:  # header is underlined by a shorter one)
                i += 1
            i += 1
            continue
        result.all_done = result.all_done or _ALL_DONE.match(line) is not None
        result.restarted += _RESTART.match(line) is not None
        if _GROUP_ERROR.match(line):
            members, i = _group_members(lines, i)
            for member in members:
                status[member.get("jobid", f"?{i}-{member['rule']}")] = ("failed", member)
            continue
        block = _BLOCK_START.match(line)
        error = _ERROR_START.match(line)
        if (m := _EXIT_STATUS.search(line)) is not None:
            exit_status = m.group(1)
        if line.startswith("Job stats:"):
            i += 3  # header and rule lines
            while i < len(lines) and lines[i].strip():
                parts = lines[i].split()
                if len(parts) == 2 and parts[1].isdigit() and parts[0] != "total":
                    result.planned[parts[0]] = int(parts[1])
                i += 1
            continue
        if block or error:
            fields: dict[str, str] = {"rule": (block or error).group(1)}
            i += 1
            while i < len(lines) and (m := _FIELD.match(lines[i].rstrip())):
                fields.setdefault(m.group(1), m.group(2))
                i += 1
            jobid = fields.get("jobid", f"?{i}")
            if block:
                jobs[jobid] = fields
            else:
                if exit_status is not None:
                    fields["exit_status"], exit_status = exit_status, None
                earlier = status.get(jobid, ("", {}))[1]
                if earlier.get("group_member"):  # the group's block came first: keep its logs and message
                    fields.update({k: earlier[k] for k in ("log", "message", "group_member")})
                status[jobid] = ("failed", fields)
            continue
        finished = _FINISHED.match(line)
        if finished:
            status[finished.group(1)] = ("done", {})
            rule = _FINISHED_RULE.match(line)
            if rule:
                result.finished_rules.add(rule.group(1))
            elif finished.group(1) in jobs:
                result.finished_rules.add(jobs[finished.group(1)]["rule"])
        if (m := _UNRECORDED.match(line)) is not None:
            result.unrecorded_jobs = int(m.group(1))
        if (m := _UNRECORDED_RULES.match(line)) is not None:
            result.unrecorded_rules = sorted(set(m.group(1).split()))
        if "LockException" in line or "Directory cannot be locked" in line:
            result.lock_error = True
        if any(words in line for words in ("Terminating processes on user request", "Cancelling snakemake on user "
                                           "request", "Will exit after finishing currently running jobs")):
            result.terminated = True
        if "did not complete successfully" in line or "Exiting because a job execution failed" in line:
            result.incomplete = True
        i += 1
    for jobid, (state, fields) in status.items():
        if state != "failed":
            continue
        merged = {**jobs.get(jobid, {}), **fields}
        logs = _split_paths(merged.get("log", ""))
        outputs = _split_paths(merged.get("output", ""))
        message = merged.get("message")
        result.failed.append(FailedJob(merged["rule"], jobid, _sample_of(merged), logs, outputs,
                                       int(merged["exit_status"]) if "exit_status" in merged else None,
                                       None if message in (None, "None") else message))
    started = {_sample_of(fields) for jobid, fields in jobs.items() if status.get(jobid, ("",))[0] != "done"}
    result.unfinished_samples = sorted((started | {job.sample for job in result.failed}) - {None})
    return result


def _written_since(path: Path, since: float | None) -> bool:
    try:
        return since is None or path.stat().st_mtime >= since - 1
    except OSError:
        return False


def log_list(study_dir: Path, logs: list[str], since: float | None = None) -> str:
    """The failed job's log files as the summary lists them, each not written since ``since`` (the run's start)
    marked "(not written by this run)": a job that died before its command started leaves the log of an earlier
    run in place (trial BB read a finished run's log as the failed job's)."""
    return ", ".join(str(Path(study_dir) / log) + ("" if _written_since(Path(study_dir) / log, since) or not
                                                   (Path(study_dir) / log).exists() else " (not written by this run)")
                     for log in logs)


def error_in_logs(study_dir: Path, logs: list[str], since: float | None = None, limit: int = 400) -> str | None:
    """The last ``ms2study <command>: error: ...`` message in a failed job's log files (what is wrong and the fix,
    as the command printed it), else the last line of a cluster job's log (``.snakemake/slurm_logs/``: a job that
    died before its command started, e.g. "/bin/sh: 1: .../python: not found" on a node without the environment,
    trial BB), cut to ``limit`` characters; logs not written since ``since`` are skipped. None when the logs hold
    none (a crash, a kill)."""
    found, cluster = None, None
    for log in logs:
        path = Path(study_dir) / log
        if not _written_since(path, since):
            continue
        try:
            lines = path.read_text(errors="replace").splitlines()
        except OSError:
            continue
        for line in lines:
            match = _ERROR_LINE.match(line.strip())
            if match:
                found = match.group(1)
        if "slurm_logs" in Path(log).parts and any(line.strip() for line in lines):
            cluster = "the cluster job's log ends: " + next(line.strip() for line in reversed(lines) if line.strip())
    found = found or cluster
    if found and len(found) > limit:
        found = found[: limit - 3] + "..."
    return found


def read_run_log(study_dir: Path, since: float) -> RunLog:
    """The log Snakemake wrote for the run started at ``since`` (empty when it wrote none)."""
    folder = Path(study_dir) / ".snakemake" / "log"
    candidates = [p for p in folder.glob("*.snakemake.log") if p.stat().st_mtime >= since - 1] if folder.is_dir() else []
    if not candidates:
        return RunLog()
    path = max(candidates, key=lambda p: (p.stat().st_mtime, p.name))
    result = parse_snakemake_log(path.read_text(errors="replace"))
    result.path = path
    return result


PARENTHESIS_KEPT = 160  # characters a shortened line's head may grow by to close a parenthesis it opened
CLAUSE_KEPT = 120  # characters a shortened line's tail may grow by to start at its clause


def shortened(text: str, head: int = 160, tail: int = 160) -> str:
    """``text`` with its middle cut out when longer than ``head + tail`` characters: a caution's last clause says
    what to do (a trial saw every caution cut at 240 characters, before its advice), so both ends are kept."""
    if len(text) <= head + tail + 5:
        return text
    # cut between words (trial AD: "apart by 9 within ... The features"): the head up to its last space, the tail from
    # its first, unless that drops more than a fifth of it
    start, end = text[:head], text[-tail:]
    close = text.find(")", head)
    if start.count("(") > start.count(")") and -1 < close < head + PARENTHESIS_KEPT:
        # trial BG: "(best set, embedding: AUC 1.00, 95 % interval ... " lost the verdict "not shown to beat chance"
        # that closes the parenthesis: a figure is kept with what qualifies it
        start = text[:close + 1]
        if len(text) - len(start) <= tail + 5:
            return text
    else:
        start = start[:start.rfind(" ")] if start.rfind(" ") > head * 0.8 else start
    # the tail from a clause's start where one begins in it (trial AM: "... split by their source run it changed the
    # smallest q from 0.58 to 0.55)" read as this study's result; it was the end of a quoted benchmark)
    clause = min((i for i in (end.find("; "), end.find(". ")) if i > -1), default=-1)
    before = text[:len(text) - tail]
    back = max(before.rfind("; ", len(before) - CLAUSE_KEPT), before.rfind(". ", len(before) - CLAUSE_KEPT))
    if -1 < clause < tail * 0.8:
        end = end[clause + 2:]
    elif back > len(start):  # a new user read "... large statistics and keep ..." as nonsense: the clause whole
        end = text[back + 2:]
    elif -1 < end.find(" ") < tail * 0.2:
        end = end[end.find(" ") + 1:]
    return f"{start.rstrip()} ... {end.lstrip()}"


def report_warnings(study_dir: Path, since: float, shown: int = 5) -> list[str]:
    """Lines for the end of a run that wrote the report: how many warnings of each tier it holds and its cautions on
    the conclusions (the first ``shown``), read from the report job's log (``logs/study/report.log``, written
    after ``since``, a time.time()); [] when that log is older, absent or says nothing. A trial's study whose
    library held no spectrum of the runs' polarity finished with "the run finished" alone: the cause was in the
    report only."""
    path = Path(study_dir) / "logs" / "study" / "report.log"
    try:
        if path.stat().st_mtime < since:
            return []
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return []
    written = [line.split("report written to ", 1)[1] for line in text if "report written to " in line]
    cautions = [line.split("caution on the conclusions: ", 1)[1] for line in text
                if "caution on the conclusions: " in line]
    if not written or ": " not in written[-1]:
        return []
    tiers = written[-1].rsplit(": ", 1)[1]
    lines = [f"ms2study: the report's warnings: {tiers}" + (" (its Warnings section has them all)"
                                                          if tiers != "no warnings" else "")]
    lines += [f"  - {shortened(c)}" for c in cautions[:shown]]
    if len(cautions) > shown:
        lines.append(f"  - ... and {len(cautions) - shown} more")
    return lines


def resource_stage(rule: str) -> str:
    """The ``resources:`` key of config.yaml that sizes ``rule``'s jobs: the stage its rule file passes to ``res()``
    (calibrate_library and index_library: library; attribution: models; prototypes: pool), else the rule's name."""
    pattern = re.compile(r"^rule (\w+):(.*?)(?=^rule |\Z)", re.DOTALL | re.MULTILINE)
    for path in sorted((Path(__file__).resolve().parent.parent / "rules").glob("*.smk")):
        for name, body in pattern.findall(path.read_text(errors="replace")):
            found = re.search(r'res\("(\w+)"', body)
            if name == rule and found:
                return found.group(1)
    return rule


def stopped_advice(rules: list[str], extra: list[str], cluster: bool | None = None) -> str | None:
    """The end-of-run line for jobs stopped from outside (``FailedJob.stopped_from_outside``) of ``rules``: the
    ``resources:`` key that sizes each (``resource_stage``; trial R: calibrate_library is sized by ``library``) and,
    locally, fewer jobs at once, or where the run already had one core (``extra``: its options), that the machine
    ran short of memory or the job was killed (trial V); ``cluster`` True or False gives the cluster's or the local
    advice alone (trial BB read both on a SLURM run). None without such jobs."""
    if not rules:
        return None
    keys = ", ".join(f"resources: {resource_stage(rule)}: mem_mb ({rule})" for rule in sorted(set(rules)))
    one = any(a in ("--cores=1", "-c1", "--jobs=1") or (a == "1" and i and extra[i - 1] in ("--cores", "-c", "-j",
                                                                                          "--jobs"))
              for i, a in enumerate(extra))
    local = ("locally, the machine ran short of memory for it or it was killed: free memory and run again" if one
             else "locally, run fewer jobs at once (--cores 1)")
    remote = f"raise {keys} in config.yaml, or runtime for a time limit"
    if cluster is None:
        return f"  A job stopped from outside: {local}; on a cluster, {remote} (README, troubleshooting)."
    return f"  A job stopped from outside: {remote if cluster else local} (README, troubleshooting)."
