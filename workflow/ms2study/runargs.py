"""Options given to ``ms2study run`` that neither it nor Snakemake knows (``foreign_options``), and the settings of
the profile they name (``profile_settings``, ``cores_note``, ``gpu_note``; its values checked by
``refuse_bad_profile_values``), and a target taken for a rule name (``forcerun_note``).

``ms2study run`` passes every option it does not define to Snakemake; a user who gives it an option of another
ms2study command (``--library-size`` of ``simulate``, as a trial did) got Snakemake's usage text and "unrecognized
arguments". The options are checked with Snakemake's own parser (``snakemake.cli.get_argument_parser``, with the
installed executor plugins' options), and an option of ``ms2study simulate`` is named as such. Used by
``ms2study.runner``.
"""

from __future__ import annotations

import argparse
import difflib
from functools import lru_cache
from pathlib import Path

import yaml

from ms2study.core.errors import InputError

LOCAL_EXECUTORS = ("local", "dryrun", "touch")
DRY_RUN_FLAGS = ("-n", "--dry-run", "--dryrun")  # Snakemake's options for a dry run
FLAG_WORDS = ("true", "false", "yes", "no", "on", "off", "1", "0")  # the words Snakemake 9 reads as a profile flag


def profile_dir(extra: list[str], repo_root: Path) -> Path:
    """The folder of the Snakemake profile ``extra`` names (``--profile DIR``; a bare name is a folder of
    ``repo_root / "profiles"``), else the repository's ``profiles/default``."""
    profile = repo_root / "profiles" / "default"
    for i, arg in enumerate(extra):
        if arg == "--profile" and i + 1 < len(extra):
            profile = Path(extra[i + 1])
        elif arg.startswith("--profile="):
            profile = Path(arg.split("=", 1)[1])
    if not profile.is_dir() and (repo_root / "profiles" / profile.name).is_dir():
        profile = repo_root / "profiles" / profile.name
    return profile


def profile_settings(extra: list[str], repo_root: Path) -> dict:
    """The settings of the Snakemake profile ``extra`` names (``profile_dir``): its config.yaml as a dict ({} when
    unreadable)."""
    try:
        settings = yaml.safe_load((profile_dir(extra, repo_root) / "config.yaml").read_text()) or {}
    except (OSError, yaml.YAMLError):
        return {}
    return settings if isinstance(settings, dict) else {}


def executor(extra: list[str], repo_root: Path) -> str:
    """The executor the options or their profile name (``--executor`` / ``-e`` / ``executor:``; default local)."""
    for i, arg in enumerate(extra):
        if arg in ("--executor", "-e") and i + 1 < len(extra):
            return extra[i + 1]
        if arg.startswith("--executor="):
            return arg.split("=", 1)[1]
    return str(profile_settings(extra, repo_root).get("executor", "local"))


def on_cluster(extra: list[str], repo_root: Path) -> bool:
    """Whether the options or their profile send the jobs to a cluster executor (other than local)."""
    return executor(extra, repo_root) not in LOCAL_EXECUTORS


SLURM_PROBE_S = 30  # seconds sinfo may take to answer before the cluster counts as unreachable


def refuse_unreachable_slurm(extra: list[str], repo_root: Path, env: dict[str, str]) -> None:
    """Raise InputError when the jobs go to SLURM (``executor: slurm``) and this shell cannot reach it: ``sinfo``
    (SLURM's own client, beside the ``sbatch`` the executor calls) is not on PATH, fails or does not answer within
    ``SLURM_PROBE_S`` seconds. Trial BK: without a SLURM configuration the executor guessed no account and then
    waited, silent, submitting nothing (2.5 min until killed; SIGTERM did not stop it), where ``sinfo`` fails at
    once. Skipped for other executors and dry runs."""
    import shutil
    import subprocess

    if executor(extra, repo_root) != "slurm" or any(a in DRY_RUN_FLAGS for a in extra):
        return
    fix = ("run ms2study from a shell on a machine that submits SLURM jobs (a login node: `sinfo` and `sbatch` must "
           "work there; check SLURM_CONF), or leave out --profile to run locally")
    sinfo = shutil.which("sinfo", path=env.get("PATH"))
    if sinfo is None or shutil.which("sbatch", path=env.get("PATH")) is None:
        raise InputError("the jobs go to SLURM, but its commands (sinfo, sbatch) are not on PATH", fix=fix)
    try:
        probe = subprocess.run([sinfo, "--noheader", "--format=%P"], capture_output=True, text=True, env=env,
                               timeout=SLURM_PROBE_S, check=False)
    except subprocess.TimeoutExpired:
        raise InputError(f"the jobs go to SLURM, but `sinfo` did not answer within {SLURM_PROBE_S} s",
                         fix=fix) from None
    if probe.returncode != 0:
        said = (probe.stderr.strip().splitlines() or ["no message"])[-1][:300]
        raise InputError(f"the jobs go to SLURM, but `sinfo` fails here (exit code {probe.returncode}: {said})",
                         fix=fix)


def gpu_note(extra: list[str], repo_root: Path, torch_version: str | None = None) -> str | None:
    """A note when a cluster profile asks a GPU for the embed jobs (``set-resources: embed: gpu``, or
    ``--set-resources embed:gpu=N``) while the environment's torch (``torch_version``, default: the installed one's
    version) is a CPU build ("+cpu"): every embed job would hold a GPU it cannot use (trial BB: 40 such jobs at 200
    samples, said only in each sample's log). None otherwise."""
    if not on_cluster(extra, repo_root):
        return None
    embed = (profile_settings(extra, repo_root).get("set-resources") or {}).get("embed") or {}
    gpus = embed.get("gpu", 0) if isinstance(embed, dict) else 0
    for i, arg in enumerate(extra):
        if arg.startswith("embed:gpu=") and i and extra[i - 1] == "--set-resources":
            gpus = arg.split("=", 1)[1]
    if str(gpus).strip() in ("", "0"):
        return None
    if torch_version is None:
        from importlib.metadata import PackageNotFoundError, version

        try:
            torch_version = version("torch")
        except PackageNotFoundError:
            return None
    if not torch_version.endswith("+cpu"):
        return None
    return (f"the profile asks a GPU for every embed job (embed: gpu: {gpus}), but this environment's torch "
            f"({torch_version}) is a CPU build: the jobs would hold GPUs and embed on their CPUs; install a CUDA build "
            "of torch in the environment the jobs run, or set gpu: 0 under set-resources: embed in a copy of the "
            "profile")


RULE_LIST_OPTIONS = ("--forcerun", "-R", "--until", "-U", "--omit-from", "-O", "--allowed-rules")


def forcerun_note(extra: list[str]) -> str | None:
    """A note when a file path follows an option that takes rule names (``--forcerun embed results/...``):
    Snakemake reads every word after it as a rule name, so the path is no target and the whole study runs (trial
    BB: 48 jobs instead of 1). None otherwise."""
    for i, arg in enumerate(extra):
        if arg not in RULE_LIST_OPTIONS:
            continue
        words = []
        for word in extra[i + 1:]:
            if word.startswith("-"):
                break
            words.append(word)
        paths = [w for w in words if "/" in w or "." in w]
        if paths:
            return (f"{arg} takes rule names, and Snakemake reads every word after it as one: {paths[0]} is then "
                    f"no target, so every target of the study is planned; put the target before {arg} (e.g. "
                    f"`ms2study run STUDY {paths[0]} {arg} {words[0] if words[0] != paths[0] else 'RULE'}`)")
    return None


def cores_note(extra: list[str], repo_root: Path) -> str | None:
    """A note when ``--cores`` is given with a cluster executor: Snakemake caps every job's threads at it, so a
    cluster job asks SLURM for fewer CPUs than its rule uses (trial BB: --cores 1 took index_library's 2 threads
    down to 1, unsaid, where the README says not to pass it). None otherwise."""
    given = [a for i, a in enumerate(extra) if a.startswith("--cores=") or (i and extra[i - 1] in ("--cores", "-c"))]
    if not given or not on_cluster(extra, repo_root):
        return None
    return (f"--cores {given[0].split('=')[-1]} with a cluster executor caps every cluster job's threads (and the "
            "CPUs it asks SLURM for) at that number; leave --cores out: the profile's `jobs:` sets how many jobs run "
            "at once")


@lru_cache(maxsize=1)
def _snakemake_parser() -> argparse.ArgumentParser:
    """Snakemake's command-line parser, with the installed executor plugins' options (built once)."""
    from snakemake.cli import get_argument_parser

    return get_argument_parser()


def _simulate_options() -> set[str]:
    from ms2study.cli import build_parser

    parser = build_parser("simulate")
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {o for a in sub.choices["simulate"]._actions for o in a.option_strings} - {"-h", "--help"}


def foreign_options(extra: list[str]) -> list[str]:
    """The options in ``extra`` (the arguments ``ms2study run`` passes on) that Snakemake's parser does not know,
    without their values (``--library-size=3000`` -> ``--library-size``). Empty when all are known, and when the
    parser cannot read them for another reason (a bad value: Snakemake then says what is wrong itself)."""
    try:
        unknown = _snakemake_parser().parse_known_args(list(extra))[1]
    except (SystemExit, Exception):  # noqa: BLE001 - Snakemake names a bad value better than this check could
        return []
    return [u.split("=", 1)[0] for u in unknown if u.startswith("-") and u not in ("-", "--")]


def _value_problem(action: argparse.Action, key: str, text: str) -> str | None:
    """What is wrong with ``text`` as the value of Snakemake's option ``action`` (None: nothing)."""
    if action.nargs == 0:  # a flag: Snakemake reads a profile's yes/no words
        ok = text.lower() in FLAG_WORDS
        return None if ok else f"is not a yes or no for Snakemake's flag --{key} (true or false)"
    try:
        converted = action.type(text) if callable(action.type) else text
    except (ValueError, TypeError, argparse.ArgumentTypeError) as err:
        return f"is not what Snakemake's --{key} takes ({err or type(err).__name__})"
    if action.choices is None or converted in action.choices:
        return None
    return f"is not one of the values Snakemake's --{key} takes ({', '.join(map(str, action.choices))})"


def refuse_bad_profile_values(extra: list[str], repo_root: Path) -> None:
    """Raise ``InputError`` naming the profile file, the key and its value when a top-level setting of the profile
    (``profile_dir``) is not of the type or among the choices that Snakemake's option of that name takes (``retries:
    one``, ``latency-wait: 5s``): Snakemake's own message came after some 400 lines of its usage text and did not say
    that the value was the profile's (trial BB, an HPC admin). A key that is no option (``retires: 1``) is refused
    with the nearest option named. Nested settings (``set-resources``) are left to Snakemake, which names the rule
    and resource of a bad resource value."""
    path = profile_dir(extra, repo_root) / "config.yaml"
    settings = profile_settings(extra, repo_root)
    actions = _snakemake_parser()._option_string_actions if settings else {}
    for key, value in settings.items():
        action = actions.get("--" + str(key).replace("_", "-"))
        if action is None:  # trial BG: `retires: 1` got Snakemake's usage text and "unrecognized arguments"
            near = difflib.get_close_matches("--" + str(key), [o for o in actions if o.startswith("--")], n=1,
                                             cutoff=0.75)
            raise InputError(f"the profile's key '{key}' is not an option of Snakemake nor of its installed executor "
                             "plugins", file=str(path),
                             fix=(f"did you mean '{near[0][2:]}'? " if near else "")
                             + f"correct it in {path} (a profile's keys are Snakemake's options without the leading "
                               "--; 'snakemake --help' lists them; a cluster executor's need its plugin installed)")
        if isinstance(value, dict):
            continue
        for item in value if isinstance(value, list) else [value]:
            text = str(item).lower() if isinstance(item, bool) else str(item)
            problem = _value_problem(action, str(key), text)
            if problem is None:
                continue
            raise InputError(f"the profile's setting '{key}: {item}' {problem}", file=str(path),
                             fix=f"correct it in {path} ('snakemake --help' describes --{key})")


def refuse_foreign_options(extra: list[str]) -> None:
    """Raise ``InputError`` naming the options of ``extra`` that neither ``ms2study run`` nor Snakemake knows, and
    which of them belong to ``ms2study simulate`` (the study's config.yaml is what ``run`` reads). Nothing when all
    are known."""
    foreign = foreign_options(extra)
    if not foreign:
        return
    of_simulate = [o for o in foreign if o in _simulate_options()]
    names = ", ".join(f"'{o}'" for o in foreign)
    known = [o for o in _snakemake_parser()._option_string_actions if o.startswith("--")] + ["--recover"]
    near = {o: difflib.get_close_matches(o, known, n=1, cutoff=0.75) for o in foreign}
    meant = [f"'{o}' for '{m[0]}'" for o, m in near.items() if m]  # trial AW: --corse 1 got no hint
    fix = ((f"did you mean {', '.join(meant)}? Else l" if meant else "l")
           + f"eave {'it' if len(foreign) == 1 else 'them'} out: run takes --recover and Snakemake's options "
           "(snakemake --help lists them)")
    if of_simulate:
        fix = (f"{', '.join(of_simulate)} {'is an option' if len(of_simulate) == 1 else 'are options'} of "
               "'ms2study simulate', which writes the study; 'ms2study run' reads the study's config.yaml: give "
               "such settings there, or to simulate when making the study")
    raise InputError(f"{names}: not an option of 'ms2study run' nor of Snakemake, to which run passes the options it "
                     "does not take itself", fix=fix)
