"""The SLURM profiles against a real scheduler: a single-node SLURM on localhost (tests/cluster/slurm.sh) runs a
simulated 2-sample study through `ms2study run STUDY --profile profiles/slurm`; every job must have been a SLURM job
(sbatch, scheduled by slurmctld, launched by slurmd, listed by sacct under its rule) and the tables must equal those
of a local run of the same study. A second cluster without accounting (no slurmdbd, `sacct` fails) runs one job
through profiles/slurm-noacct, whose executor polls with squeue; with the sacct profile it would wait forever.

The runs request the compared tables only (per-sample features, spectra, annotations and sample embeddings, and the
feature matrix: 13 rule jobs, 8 rules), not the models and report, and calibrate confidence on 60 library
structures. The profiles group the per-sample rules (detect and spectra, embed alone, annotate and pool: up to 5
samples a job), so the SLURM run submits 6 jobs (library index, calibration, three group jobs for both samples,
link); the test checks that every rule job ran inside a SLURM job, that each group job asked for the largest member's
threads and memory and the sum of its members' runtimes, only the embed group with a GPU, and that every per-sample
table equals the local run's. Each SLURM job
starts Snakemake twice (batch script and job step; a group job once per member in the step), about 10 s of CPU, so
the local and both SLURM runs go at once; the file took 6.5 minutes on 2 cores loaded by other work (load
average 8-9), 3-3.5 minutes before the grouping on a less loaded machine. Needs root and apt-get
(the packages are installed when missing); without them it skips, except where MS2STUDY_REQUIRE_SLURM=1 (CI:
.ci/run), where it fails.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from importlib.util import find_spec
from pathlib import Path
from typing import Iterator

import polars as pl
import pytest
import yaml
from polars.testing import assert_frame_equal

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]
CLUSTER = REPO / "tests" / "cluster" / "slurm.sh"
SAMPLES = ("S01", "S02")
TABLES = ("features", "spectra", "annotations", "sample_embedding")
TARGETS = [f"results/samples/{s}/{t}.parquet" for s in SAMPLES for t in TABLES] + [
    "results/study/feature_matrix.parquet"
]
CALIBRATION_QUERIES = 60
NOACCT_TARGET = "results/samples/S01/features.parquet"
REQUIRED = os.environ.get("MS2STUDY_REQUIRE_SLURM") == "1"
RUN_TIMEOUT_S = 900
# The executor checks job states this long after a submission and adds 10 s per check that finds nothing finished;
# 1 s keeps its wait per DAG layer short (the profiles' 10 s suit real clusters).
TEST_FLAGS = ["--slurm-init-seconds-before-status-checks", "1"]
# Snakemake loads <repo>/profiles/default as the "workflow profile" beside any --profile, and its keys win (retries,
# latency-wait); `none` runs the SLURM profile as written.
PROFILE_ONLY = ["--workflow-profile", "none"]


def unavailable(reason: str) -> None:
    if REQUIRED:
        pytest.fail(f"{reason} (MS2STUDY_REQUIRE_SLURM=1: this test must run here)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def slurm_installed() -> None:
    """The SLURM executor plugin and the SLURM, munge, slurmdbd and MariaDB packages (apt-get when missing)."""
    if find_spec("snakemake_executor_plugin_slurm") is None:
        unavailable("snakemake-executor-plugin-slurm is not installed (pip install -e '.[test]')")
    if not sys.platform.startswith("linux") or shutil.which("dpkg-query") is None:
        unavailable("the test cluster needs Debian/Ubuntu packages (dpkg, apt-get)")
    result = subprocess.run([str(CLUSTER), "install", "--accounting"], capture_output=True, text=True, timeout=1200)
    if result.returncode != 0:
        unavailable(f"SLURM could not be installed with apt-get: {result.stderr.strip()[-800:]}")


@contextlib.contextmanager
def cluster(accounting: bool, keep_logs: Path) -> Iterator[dict[str, str]]:
    """A running cluster; yields the environment that reaches it. The daemons are stopped by PID on exit, pass or
    fail, and their logs copied to ``keep_logs``. The state folder lies under /tmp: munged (user munge) must reach
    its socket, and pytest's folders are private to root."""
    state = Path(tempfile.mkdtemp(prefix="ms2study-slurm-", dir="/tmp"))
    try:
        start = subprocess.run([str(CLUSTER), "start", str(state), *(["--accounting"] if accounting else [])],
                               capture_output=True, text=True, timeout=600)
        if start.returncode != 0:
            pytest.fail(f"the test cluster did not start:\n{start.stderr[-6000:]}")
        env = dict(os.environ, PYTHONPATH=str(REPO / "workflow"))
        for line in (state / "env").read_text().splitlines():
            key, _, value = line.partition("=")
            env[key] = value
        env["PATH"] = f"{env['SLURM_TEST_BIN']}{os.pathsep}{env['PATH']}"
        yield env
    finally:
        stop = subprocess.run([str(CLUSTER), "stop", str(state)], capture_output=True, text=True, timeout=300)
        if (state / "log").is_dir():
            shutil.copytree(state / "log", keep_logs, dirs_exist_ok=True)
        if stop.returncode == 0:
            shutil.rmtree(state, ignore_errors=True)


@dataclass
class Launched:
    process: subprocess.Popen
    log: Path
    args: list[str]


def launch(args: list[str], env: dict[str, str], log: Path) -> Launched:
    """Start `ms2study ARGS` in its own process group, output to ``log``."""
    with log.open("w") as out:
        process = subprocess.Popen([sys.executable, "-m", "ms2study", *args], stdout=out, stderr=subprocess.STDOUT,
                                   env=env, start_new_session=True)
    return Launched(process, log, args)


def finish(run: Launched, timeout: float = RUN_TIMEOUT_S) -> tuple[int, str]:
    """Wait for a launched run: its exit code and output. Past ``timeout`` its process group is killed (a Snakemake
    waiting for SLURM jobs ignores SIGTERM) and the test fails."""
    try:
        code = run.process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(run.process.pid, signal.SIGTERM)
        try:
            run.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            kill_if_running(run)
        pytest.fail(f"ms2study {' '.join(run.args[:2])} did not finish in {timeout} s:\n"
                    f"{run.log.read_text(errors='replace')[-6000:]}")
    return code, run.log.read_text(errors="replace")


def kill_if_running(run: Launched) -> None:
    """Kill a run left behind by a failed check, before its cluster stops (it would poll forever)."""
    if run.process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(run.process.pid, signal.SIGKILL)
        run.process.wait()


def simulate(folder: Path) -> Path:
    """The demo study, with fewer library structures searched to calibrate identification confidence (the one
    heavy job here: about 40 s of CPU with all 269, 10 s with 60); the q-values still come from that calibration."""
    env = dict(os.environ, PYTHONPATH=str(REPO / "workflow"))
    subprocess.run([sys.executable, "-m", "ms2study", "simulate", str(folder), "--samples", str(len(SAMPLES)),
                    "--seed", "0"], check=True, capture_output=True, env=env)
    config = yaml.safe_load((folder / "config.yaml").read_text()) or {}
    config.setdefault("annotate", {})["calibration_queries"] = CALIBRATION_QUERIES
    (folder / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return folder


# ------------------------------------------------------------------------------------ what the runs say


@dataclass
class SnakemakeJob:
    rule: str
    local: bool
    wildcards: str = ""
    group: str = ""  # the group job's Snakemake id when the job ran in one
    threads: int = 1
    resources: dict[str, str] = field(default_factory=dict)


@dataclass
class GroupJob:
    name: str  # the group's name (profiles: `sample`)
    members: list[str] = field(default_factory=list)  # Snakemake jobids of the rule jobs it runs


@dataclass
class Run:
    study: Path
    code: int
    output: str
    env: dict[str, str]
    jobs: dict[str, SnakemakeJob] = field(default_factory=dict)  # Snakemake jobid -> job
    planned: dict[str, int] = field(default_factory=dict)  # rule -> jobs (Snakemake's "Job stats")
    submitted: dict[str, str] = field(default_factory=dict)  # Snakemake jobid (a group job's: its uuid) -> SLURM jobid
    groups: dict[str, GroupJob] = field(default_factory=dict)  # group job uuid -> group
    run_id: str = ""
    cluster_jobs: dict[str, dict[str, str]] = field(default_factory=dict)  # SLURM jobid -> fields (sacct/scontrol)
    sacct: subprocess.CompletedProcess | None = None
    controller_log: str = ""
    slurmd_log: str = ""

    def describe(self) -> str:
        """The cluster's records of the run's jobs, for a failed check's message."""
        rows = "\n".join(f"  {jobid}: {fields}" for jobid, fields in sorted(self.cluster_jobs.items()))
        sacct = f"sacct exit {self.sacct.returncode}: {self.sacct.stderr.strip()}" if self.sacct else "no sacct"
        return f"submitted (Snakemake -> SLURM job): {self.submitted}\ncluster records:\n{rows}\n{sacct}"

    def check_finished(self) -> None:
        assert self.code == 0, f"the run failed (exit code {self.code}):\n{self.output[-8000:]}"


def parse_output(run: Run) -> None:
    """Snakemake's job blocks (a group job's members are indented under "Group job NAME"), its job stats, and which
    SLURM job each job or group job was submitted as. A group job is named in the submission line by a uuid only;
    the executor prints a group's block as it submits it, so the group blocks and the uuid submissions pair in order."""
    lines = run.output.splitlines()
    group_blocks: list[GroupJob] = []
    current: GroupJob | None = None
    for i, line in enumerate(lines):
        header = re.match(r"^\[.*\] Group job (\w+) ", line)
        if header:
            current = GroupJob(header.group(1))
            group_blocks.append(current)
            continue
        block = re.match(r"^(\s*)(local)?rule (\w+):$", line)
        if block:
            indented = bool(block.group(1))
            fields = {}
            for following in lines[i + 1:]:
                m = re.match(r"^\s+(\w+): (.*)$", following)
                if not m:
                    break
                fields[m.group(1)] = m.group(2)
            resources = dict(re.findall(r"(\w+)=([^,]+)", fields.get("resources", "")))
            job = SnakemakeJob(block.group(3), bool(block.group(2)), fields.get("wildcards", ""),
                               threads=int(fields.get("threads", 1)), resources=resources)
            run.jobs[fields["jobid"]] = job
            if indented and current is not None:
                current.members.append(fields["jobid"])
            else:
                current = None
        if line.startswith("Job stats:") and not run.planned:
            for row in lines[i + 3:]:
                parts = row.split()
                if len(parts) != 2 or not parts[1].isdigit():
                    break
                if parts[0] != "total":
                    run.planned[parts[0]] = int(parts[1])
    run.submitted = dict(re.findall(r"Job ([\w-]+) has been submitted with SLURM jobid (\d+)", run.output))
    uuids = [jobid for jobid in run.submitted if not jobid.isdigit()]
    assert len(uuids) == len(group_blocks), f"group jobs shown {len(group_blocks)}, submitted {len(uuids)}"
    for uuid, group in zip(uuids, group_blocks):
        run.groups[uuid] = group
        for member in group.members:
            run.jobs[member].group = uuid
    found = re.search(r"SLURM run ID: (\S+)", run.output)
    run.run_id = found.group(1) if found else ""


def declared_local_rules() -> set[str]:
    """Rules the workflow runs on the submit host (`localrule: True` or `localrules:`), and `all`."""
    names = {"all"}
    for path in [REPO / "workflow" / "Snakefile", *sorted((REPO / "workflow" / "rules").glob("*.smk"))]:
        text = path.read_text()
        for rule in re.finditer(r"^rule (\w+):\n(.*?)(?=^\S|\Z)", text, re.MULTILINE | re.DOTALL):
            if re.search(r"^\s+localrule:\s*True", rule.group(2), re.MULTILINE):
                names.add(rule.group(1))
        for directive in re.finditer(r"^localrules:\s*(.+)$", text, re.MULTILINE):
            names.update(name.strip() for name in directive.group(1).split(","))
    return names


def comment_rule(comment: str) -> str:
    """The rule in the job comment the executor sets: rule_<rule>[_wildcards_<values>]; for a group job
    rule_<group>_<its rules, sorted, joined by _>."""
    m = re.match(r"^rule_(\w+?)(?:_wildcards_.*)?$", comment)
    return m.group(1) if m else comment


def expected_comment(run: Run, snakemake_id: str) -> str:
    """What the executor puts in a job's comment (without wildcards): its rule, or a group job's name and rules."""
    if snakemake_id in run.groups:
        group = run.groups[snakemake_id]
        rules = sorted({run.jobs[member].rule for member in group.members})
        return f"{group.name}_{'_'.join(rules)}"
    return run.jobs[snakemake_id].rule


def slurm_rules(run: Run, slurm_id: str) -> set[str]:
    """The rules a SLURM job of the run ran (several for a group job)."""
    snakemake_id = next(s for s, j in run.submitted.items() if j == slurm_id)
    if snakemake_id in run.groups:
        return {run.jobs[member].rule for member in run.groups[snakemake_id].members}
    return {run.jobs[snakemake_id].rule}


def collect_cluster_side(run: Run, state: Path) -> None:
    """What the cluster recorded about the run's jobs, read while it still runs."""
    if run.env["SLURM_TEST_ACCOUNTING"] == "1":
        since = f"{datetime.now() - timedelta(days=1):%Y-%m-%dT%H:%M}"
        # slurmctld reports to slurmdbd asynchronously: ask again (20 s at most) until every job is there, finished.
        deadline = time.monotonic() + 20
        while True:
            run.sacct = subprocess.run(
                ["sacct", "-X", "-P", "--noheader", "--starttime", since, "--name", run.run_id,
                 "--format", "JobIDRaw,State,ExitCode,Comment,AllocTRES,Account,ReqCPUS,ReqMem,Timelimit"],
                capture_output=True, text=True, env=run.env, timeout=60)
            run.cluster_jobs = {}
            for row in run.sacct.stdout.splitlines():
                jobid, state_, exit_code, comment, tres, account, cpus, mem, limit = row.split("|")
                run.cluster_jobs[jobid] = {"JobState": state_, "ExitCode": exit_code, "Comment": comment,
                                           "AllocTRES": tres, "Account": account, "ReqCPUS": cpus, "ReqMem": mem,
                                           "Timelimit": limit}
            recorded = all(run.cluster_jobs.get(i, {}).get("JobState") not in (None, "PENDING", "RUNNING")
                           for i in run.submitted.values())
            if recorded or time.monotonic() > deadline:
                break
            time.sleep(1)
    else:
        run.sacct = subprocess.run(["sacct", "-X", "-P", "--noheader"], capture_output=True, text=True,
                                   env=run.env, timeout=60)
        for jobid in run.submitted.values():
            shown = subprocess.run(["scontrol", "-o", "show", "job", jobid], capture_output=True, text=True,
                                   env=run.env, timeout=60)
            run.cluster_jobs[jobid] = dict(re.findall(r"(\w+)=(\S*)", shown.stdout))
    run.controller_log = (state / "log" / "slurmctld.log").read_text(errors="replace")
    run.slurmd_log = (state / "log" / "slurmd.log").read_text(errors="replace")


def assert_slurm_jobs(run: Run) -> None:
    """Every job Snakemake planned, local rules aside, was submitted once, scheduled by slurmctld, launched by slurmd
    (the batch script and its job step), and recorded by the cluster under its rule, finished with exit code 0."""
    run.check_finished()
    assert run.run_id, "no 'SLURM run ID' in the output: the SLURM executor was not used"
    local_rules = declared_local_rules()
    local = [job.rule for job in run.jobs.values() if job.local]
    assert set(local) <= local_rules, f"jobs run outside SLURM: {sorted(set(local) - local_rules)}"
    remote = {jobid: job for jobid, job in run.jobs.items() if not job.local}
    assert remote, "no job was planned"
    assert Counter(job.rule for job in remote.values()) == Counter(
        {rule: n for rule, n in run.planned.items() if rule not in local_rules}
    ), "the jobs shown differ from Snakemake's job stats"
    # every rule job was submitted on its own or ran in a submitted group job, never both
    alone = {jobid for jobid, job in remote.items() if not job.group}
    grouped = {jobid for jobid, job in remote.items() if job.group}
    assert alone | set(run.groups) == set(run.submitted), (
        f"jobs not submitted to SLURM: {sorted(remote[j].rule for j in alone - set(run.submitted))}"
    )
    assert {j.group for j in remote.values() if j.group} == set(run.groups)
    assert grouped == {member for group in run.groups.values() for member in group.members}
    slurm_ids = list(run.submitted.values())
    assert len(set(slurm_ids)) == len(slurm_ids)
    assert set(run.cluster_jobs) == set(slurm_ids), f"the cluster's records differ:\n{run.describe()}"
    for snakemake_id, slurm_id in run.submitted.items():
        recorded = run.cluster_jobs[slurm_id]
        assert recorded["JobState"] == "COMPLETED" and recorded["ExitCode"] == "0:0", (snakemake_id, run.describe())
        assert comment_rule(recorded["Comment"]) == expected_comment(run, snakemake_id), (snakemake_id, run.describe())
        # started by the main scheduler or, when it was busy, by the backfill scheduler: both are SLURM allocations
        assert re.search(rf"(sched: Allocate JobId={slurm_id} NodeList=|sched/backfill: _start_job: Started "
                         rf"JobId={slurm_id} )", run.controller_log), slurm_id
        assert re.search(rf"_job_complete: JobId={slurm_id} WEXITSTATUS 0", run.controller_log), slurm_id
        assert re.search(rf"Launching batch job {slurm_id} ", run.slurmd_log), slurm_id
        assert re.search(rf"launch task StepId={slurm_id}\.0 ", run.slurmd_log), slurm_id


# ----------------------------------------------------------------------------------------------- the runs


@pytest.fixture(scope="module")
def runs(slurm_installed: None, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Run]:
    """One simulated study, run three times at once: locally, on a cluster with accounting (profiles/slurm), and one
    job of it on a cluster without (profiles/slurm-noacct). At once, because the SLURM runs mostly wait."""
    simulated = simulate(tmp_path_factory.mktemp("simulated") / "study")
    plans = {"local": (None, TARGETS), "slurm": (True, TARGETS), "slurm-noacct": (False, [NOACCT_TARGET])}
    launched: dict[str, tuple[Path, dict[str, str], Launched]] = {}
    result: dict[str, Run] = {}
    with contextlib.ExitStack() as stack:
        for name, (accounting, targets) in plans.items():
            study = tmp_path_factory.mktemp(name) / "study"
            shutil.copytree(simulated, study)
            if accounting is None:
                env = dict(os.environ, PYTHONPATH=str(REPO / "workflow"))
                args = ["run", str(study), "--cores", "2", *targets]
            else:
                env = stack.enter_context(cluster(accounting, study / "cluster-logs"))
                args = ["run", str(study), "--profile", str(REPO / "profiles" / name), *PROFILE_ONLY, *TEST_FLAGS,
                        *targets]
            launched[name] = (study, env, launch(args, env, study / f"{name}-run.log"))
            stack.callback(kill_if_running, launched[name][2])
        # Each run's cluster records are read as soon as it ends: without accounting, scontrol shows a finished job
        # for MinJobAge (300 s) only, and the one-job run ends minutes before the others.
        pending = dict(launched)
        deadline = time.monotonic() + RUN_TIMEOUT_S
        while pending:
            ended = [name for name, (_, _, process) in pending.items() if process.process.poll() is not None]
            if not ended and time.monotonic() < deadline:
                time.sleep(1)
                continue
            for name in ended or list(pending):  # past the deadline, finish() fails the test
                study, env, process = pending.pop(name)
                code, output = finish(process, timeout=max(1.0, deadline - time.monotonic()))
                run = result[name] = Run(study, code, output, env)
                if name != "local":
                    parse_output(run)
                    collect_cluster_side(run, Path(env["SLURM_TEST_STATE"]))
    return result


@pytest.fixture(scope="module")
def local_run(runs: dict[str, Run]) -> Path:
    runs["local"].check_finished()
    return runs["local"].study


@pytest.fixture(scope="module")
def accounting_run(runs: dict[str, Run]) -> Run:
    return runs["slurm"]


@pytest.fixture(scope="module")
def noacct_run(runs: dict[str, Run]) -> Run:
    return runs["slurm-noacct"]


# ---------------------------------------------------------------------------------------------- the checks


def test_every_job_ran_as_a_slurm_job_recorded_by_sacct(accounting_run: Run) -> None:
    run = accounting_run
    assert run.sacct is not None and run.sacct.returncode == 0, run.describe()
    assert_slurm_jobs(run)
    rules = set().union(*(slurm_rules(run, slurm_id) for slurm_id in run.cluster_jobs))
    assert {"detect", "spectra", "embed", "index_library", "calibrate_library", "annotate", "pool", "link"} <= rules
    # The account is left to the site: no -A (the executor's guess fails in plugin 2.8.0), so SLURM charged the
    # user's default account.
    accounts = {job["Account"] for job in run.cluster_jobs.values()}
    assert accounts == {run.env["SLURM_TEST_ACCOUNT"]}, run.describe()


def test_only_jobs_running_embed_get_a_gpu(accounting_run: Run) -> None:
    """`gpu: 1` is set for embed alone; a group job holding embed jobs gets one GPU (the largest member's), the
    library and study jobs none."""
    run = accounting_run
    run.check_finished()
    embed_jobs = [job for job in run.jobs.values() if job.rule == "embed"]
    assert len(embed_jobs) == len(SAMPLES), run.describe()
    for slurm_id, job in run.cluster_jobs.items():
        has_gpu = "gres/gpu=1" in job["AllocTRES"].split(",")
        assert has_gpu == ("embed" in slurm_rules(run, slurm_id)), (slurm_id, run.describe())


def minutes(limit: str) -> int:
    """SLURM's [D-]HH:MM:SS time limit in minutes."""
    days, _, clock = limit.rpartition("-")
    h, m, s = (int(x) for x in clock.split(":"))
    return (int(days or 0) * 24 + h) * 60 + m + (1 if s else 0)


def test_per_sample_rules_ran_as_group_jobs_with_their_members_resources(accounting_run: Run) -> None:
    """Fewer, fuller jobs: the per-sample rules of both samples ran in three SLURM jobs (the profile packs up to 5
    samples a group: detect and spectra; embed alone, so that only its jobs hold a GPU and a GPU partition can take
    them; annotate and pool), so the run submitted fewer SLURM jobs than it had rule jobs. The executor runs a
    group's members one at a time, so a group job must ask for the largest member's threads and memory and the sum
    of the members' runtimes (minutes), each member's as Snakemake evaluated it for the submission."""
    run = accounting_run
    run.check_finished()
    remote = [job for job in run.jobs.values() if not job.local]
    assert len(run.cluster_jobs) < len(remote), run.describe()
    groups = {"sample": {"detect", "spectra"}, "embed": {"embed"}, "search": {"annotate", "pool"}}
    per_sample = set().union(*groups.values())
    assert not [job.rule for job in remote if job.rule in per_sample and not job.group], "per-sample job alone"
    assert sorted(g.name for g in run.groups.values()) == sorted(groups), run.groups
    for uuid, group in run.groups.items():
        members = [run.jobs[m] for m in group.members]
        assert sorted((j.rule, j.wildcards) for j in members) == sorted(
            (rule, f"sample={s}") for rule in groups[group.name] for s in SAMPLES), group.name
        unknown = [(j.rule, j.wildcards, k) for j in members for k in ("mem_mb", "runtime")
                   if not j.resources.get(k, "").isdigit()]
        assert not unknown, (
            f"resources Snakemake could not evaluate when it submitted the group job (<TBD>, left out of the group's "
            f"request): {unknown}. A resource function that reads input.size_mb fails while an input made inside the "
            f"group does not exist yet; it must size only the inputs that exist (workflow/rules/common.smk res())")
        recorded = run.cluster_jobs[run.submitted[uuid]]
        assert int(recorded["ReqCPUS"]) == max(j.threads for j in members) == (2 if group.name == "embed" else 1), \
            run.describe()
        assert recorded["ReqMem"] == f"{max(int(j.resources['mem_mb']) for j in members)}M", run.describe()
        assert minutes(recorded["Timelimit"]) == sum(int(j.resources["runtime"]) for j in members), run.describe()


def test_each_rule_log_names_the_slurm_job_that_ran_it(accounting_run: Run) -> None:
    """A group job's comment names its group and rules, not its samples (an HPC admin's trial: squeue and sacct
    could not say which job ran S07): each command logs its SLURM job id, so ``logs/<rule>/<sample>.log`` leads to
    ``sacct -j JOB``. The id must be the group job's that held the rule job."""
    run = accounting_run
    run.check_finished()
    for uuid, group in run.groups.items():
        slurm_id = run.submitted[uuid]
        for member in (run.jobs[m] for m in group.members):
            sample = member.wildcards.removeprefix("sample=")
            text = (run.study / "logs" / member.rule / f"{sample}.log").read_text()
            named = re.findall(r"SLURM job (\d+)", text)
            assert named == [slurm_id], (member.rule, sample, named, slurm_id, text[:500])


def test_tables_equal_a_local_run(accounting_run: Run, local_run: Path) -> None:
    """Every per-sample table the group job made (features, spectra, annotations, sample embeddings of both
    samples) and the feature matrix, present and equal to the local run's."""
    accounting_run.check_finished()
    for target in TARGETS:
        local, slurm = pl.read_parquet(local_run / target), pl.read_parquet(accounting_run.study / target)
        assert local.height > 0, target
        try:
            assert_frame_equal(slurm, local, check_exact=True)
        except AssertionError as err:
            raise AssertionError(f"{target} differs between the SLURM and the local run: {err}") from None


def test_cluster_without_accounting_polls_with_squeue(noacct_run: Run, local_run: Path) -> None:
    run = noacct_run
    # This is the cluster the sacct profile hangs on: sacct cannot answer there.
    assert run.sacct is not None and run.sacct.returncode != 0, run.sacct
    assert_slurm_jobs(run)
    assert [job.rule for job in run.jobs.values()] == ["detect"]
    assert {job["Account"] for job in run.cluster_jobs.values()} == {"(null)"}  # no accounts without slurmdbd
    assert_frame_equal(pl.read_parquet(run.study / NOACCT_TARGET), pl.read_parquet(local_run / NOACCT_TARGET),
                       check_exact=True)
