"""``ms2study run`` refuses options that neither it nor Snakemake knows before anything runs, and names an option of
``ms2study simulate`` as such (a trial gave ``--library-size 3000`` to run and got Snakemake's usage text)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ms2study.cli import main as cli_main
from ms2study.core.errors import InputError
from ms2study.runargs import foreign_options

REPO = Path(__file__).resolve().parents[1]


def test_snakemake_and_its_executor_options_are_known():
    assert foreign_options(["--cores", "1", "-n", "--forcerun", "models", "--config", "annotate={fdr: 0.05}",
                            "--set-resources", "embed:gpu=1", "--executor", "slurm", "--slurm-logdir", "x"]) == []
    assert foreign_options(["--library-size=3000", "-c1", "--frobnicate", "2"]) == ["--library-size", "--frobnicate"]
    assert foreign_options(["--cores", "many"]) == []  # a bad value: Snakemake says what is wrong itself


def test_run_names_the_foreign_option_and_where_it_belongs(tmp_path: Path, capsys: pytest.CaptureFixture):
    (tmp_path / "samples.tsv").write_text("sample_id\tfile\tgroup\nA\ta.mzML\tcase\n")
    assert cli_main(["run", str(tmp_path), "--library-size", "3000", "--cores", "1"]) != 0
    err = capsys.readouterr().err
    assert "'--library-size': not an option of 'ms2study run' nor of Snakemake" in err
    assert "--library-size is an option of 'ms2study simulate'" in err and "Traceback" not in err
    assert cli_main(["run", str(tmp_path), "--frobnicate"]) != 0
    assert "'--frobnicate': not an option" in capsys.readouterr().err
    assert cli_main(["run", str(tmp_path), "--corse", "1"]) != 0  # trial AW: a typo got no hint
    assert "did you mean '--corse' for '--cores'?" in capsys.readouterr().err
    assert not (tmp_path / "results").exists() and not (tmp_path / ".snakemake").exists()


def test_cores_with_a_cluster_profile_is_a_note(tmp_path) -> None:
    """Trial BB: `ms2study run STUDY --profile profiles/slurm --cores 1` took the library jobs' 2 threads down to 1
    unsaid, where the README says not to pass --cores with a cluster profile. It is a note now; locally it is not."""
    from ms2study import study
    from ms2study.runargs import cores_note, on_cluster, profile_settings

    root = study.REPO_ROOT
    assert profile_settings(["--profile", "slurm"], root)["executor"] == "slurm"
    assert on_cluster(["--profile", "profiles/slurm-noacct"], root) and not on_cluster([], root)
    assert on_cluster(["--executor", "slurm"], root) and not on_cluster(["--executor=local"], root)
    note = cores_note(["--profile", str(root / "profiles" / "slurm"), "--cores", "1"], root)
    assert note.startswith("--cores 1 with a cluster executor caps every cluster job's threads")
    assert cores_note(["--profile=slurm", "--cores=4"], root).startswith("--cores 4 ")
    assert cores_note(["--cores", "1"], root) is None and cores_note(["--profile", "slurm"], root) is None
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "config.yaml").write_text("executor: local\njobs: 2\n")
    assert cores_note(["--profile", str(tmp_path / "site"), "-c", "1"], root) is None


def test_a_target_after_forcerun_is_a_note() -> None:
    """Trial BB: `--forcerun embed results/samples/S01/embeddings.parquet` ran 48 jobs instead of 1: Snakemake read
    the path as another rule name."""
    from ms2study.runargs import forcerun_note

    note = forcerun_note(["--cores", "1", "--forcerun", "embed", "results/samples/S01/embeddings.parquet"])
    assert note.startswith("--forcerun takes rule names, and Snakemake reads every word after it as one: "
                           "results/samples/S01/embeddings.parquet is then no target")
    assert "`ms2study run STUDY results/samples/S01/embeddings.parquet --forcerun embed`" in note
    assert forcerun_note(["results/samples/S01/embeddings.parquet", "--forcerun", "embed", "annotate"]) is None
    assert forcerun_note(["-R", "models", "--cores", "1"]) is None


def test_a_gpu_asked_for_embed_jobs_with_a_cpu_build_of_torch_is_a_note() -> None:
    """Trial BB: the slurm profile asks --gpus=1 for every embed job; with a CPU build of torch each job held a GPU
    and said so only in its sample's log."""
    from ms2study import study
    from ms2study.runargs import gpu_note

    root = study.REPO_ROOT
    note = gpu_note(["--profile", "slurm"], root, "2.13.0+cpu")
    assert note.startswith("the profile asks a GPU for every embed job (embed: gpu: 1), but this environment's torch "
                           "(2.13.0+cpu) is a CPU build")
    assert gpu_note(["--profile", "slurm"], root, "2.11.0+cu130") is None  # a CUDA build
    assert gpu_note([], root, "2.13.0+cpu") is None  # local runs: the embed job says it itself
    assert gpu_note(["--profile", "slurm", "--set-resources", "embed:gpu=0"], root, "2.13.0+cpu") is None


@pytest.mark.parametrize(("line", "said"), [
    ("retries: one", "'retries: one' is not what Snakemake's --retries takes"),
    ("latency-wait: 5s", "'latency-wait: 5s' is not what Snakemake's --latency-wait takes"),
    ("printshellcmds: maybe", "'printshellcmds: maybe' is not a yes or no for Snakemake's flag --printshellcmds"),
    ("rerun-triggers: [mtime, checksum]", "'rerun-triggers: checksum' is not one of the values Snakemake's"),
    ("retires: 1", "the profile's key 'retires' is not an option of Snakemake nor of its installed executor plugins"),
])
def test_a_bad_profile_value_is_named_with_its_file_before_snakemake_runs(tmp_path: Path, line: str, said: str,
                                                                          capsys: pytest.CaptureFixture) -> None:
    """Trial BB (an HPC admin): a mistyped profile value got some 400 lines of Snakemake's usage text, with the
    error last and without the profile's name. The shipped profiles pass the check (and the study runs' tests use
    them)."""
    from ms2study import study
    from ms2study.runargs import refuse_bad_profile_values

    for shipped in ("default", "slurm", "slurm-noacct"):
        refuse_bad_profile_values(["--profile", shipped], study.REPO_ROOT)
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "config.yaml").write_text(f"keep-going: yes\njobs: 4\n{line}\n")
    (tmp_path / "samples.tsv").write_text("sample_id\tfile\tgroup\nA\ta.mzML\tcase\n")
    assert cli_main(["run", str(tmp_path), "--profile", str(tmp_path / "site"), "--cores", "1"]) != 0
    err = capsys.readouterr().err
    assert said in err and str(tmp_path / "site" / "config.yaml") in err, err
    assert "did you mean 'retries'?" in err or not line.startswith("retires")
    assert "usage:" not in err and "Traceback" not in err
    assert not (tmp_path / "results").exists() and not (tmp_path / ".snakemake").exists()


def test_a_slurm_run_from_a_shell_that_cannot_reach_slurm_is_refused_before_snakemake(tmp_path: Path) -> None:
    """Trial BK on a real cluster: a run started from a shell without the cluster's configuration printed "Unable to
    guess SLURM account. Trying to proceed without." and then waited, silent, submitting nothing, until killed. The
    jobs going to SLURM, ms2study asks SLURM's own client first; the real cluster's answer is tests/test_slurm.py's."""
    from ms2study.runargs import refuse_unreachable_slurm

    slurm = ["--profile", "profiles/slurm"]
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    env = {"PATH": str(bin_dir)}
    with pytest.raises(InputError, match=r"its commands \(sinfo, sbatch\) are not on PATH") as err:
        refuse_unreachable_slurm(slurm, REPO, env)
    assert "a login node" in str(err.value) and "leave out --profile to run locally" in str(err.value)
    for name, body in (("sbatch", "exit 0"), ("sinfo", "echo 'sinfo: error: Could not establish a configuration "
                                                       "source' >&2; exit 1")):
        (bin_dir / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_dir / name).chmod(0o755)
    with pytest.raises(InputError, match=r"`sinfo` fails here \(exit code 1: sinfo: error: Could not establish a "
                                         r"configuration source\)"):
        refuse_unreachable_slurm(slurm, REPO, env)
    # not asked where the jobs stay local or nothing is submitted
    refuse_unreachable_slurm([], REPO, env)
    refuse_unreachable_slurm([*slurm, "--dry-run"], REPO, env)
    (bin_dir / "sinfo").write_text("#!/bin/sh\necho 'debug*'\n")
    refuse_unreachable_slurm(slurm, REPO, env)  # a cluster that answers
