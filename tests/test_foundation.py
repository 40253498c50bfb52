"""Small shared pieces: atomic writes, the cleaning function, the CLI, packaging files in step."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import yaml

from ms2study.core.atomic import atomic_path, write_parquet, write_text_if_changed
from ms2study.core.cleaning import clean_peaks


def test_atomic_write_leaves_nothing_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "out" / "t.parquet"
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("job died")
    assert not target.exists()
    assert list(target.parent.iterdir()) == []
    write_parquet(pl.DataFrame({"a": [1]}), target)
    assert pl.read_parquet(target)["a"].to_list() == [1]


def test_writing_the_same_text_twice_leaves_the_file_and_its_mtime_alone(tmp_path: Path) -> None:
    """The validated sample sheet is written this way (rules/sheet.smk): an unchanged sheet must keep its mtime, or
    the study stages that read it rerun for nothing."""
    path = tmp_path / "study" / "samples.tsv"
    assert write_text_if_changed("sample_id\tfile\nA\ta.mzML\n", path) is True
    os.utime(path, ns=(1_000_000_000_000_000_000, 1_000_000_000_000_000_000))
    assert write_text_if_changed("sample_id\tfile\nA\ta.mzML\n", path) is False
    assert path.stat().st_mtime_ns == 1_000_000_000_000_000_000
    assert write_text_if_changed("sample_id\tfile\nB\tb.mzML\n", path) is True
    assert path.stat().st_mtime_ns > 1_000_000_000_000_000_000 and path.read_text() == "sample_id\tfile\nB\tb.mzML\n"
    assert [p.name for p in path.parent.iterdir()] == ["samples.tsv"]  # no temporary file left


def test_clean_peaks_steps() -> None:
    mz = np.array([200.0, 50.0, 80.0, 80.0, 120.0, np.nan, 90.0, 199.0])
    intensity = np.array([100.0, 1.0, 5.0, 5.0, 9.0, 3.0, 0.0, 50.0])
    out_mz, out_int = clean_peaks(mz, intensity, precursor_mz=200.0, precursor_margin_da=1.6)
    # precursor and the peak within the margin removed, duplicates merged, NaN and zero dropped, sorted
    assert out_mz.tolist() == [50.0, 80.0, 120.0]
    assert out_int.tolist() == [1.0, 10.0, 9.0]
    assert out_int.dtype == np.float32
    floor_mz, _ = clean_peaks(mz, intensity, 200.0, min_relative_intensity=0.2)
    assert floor_mz.tolist() == [80.0, 120.0]
    top_mz, _ = clean_peaks(mz, intensity, None, max_peaks=2)
    assert top_mz.tolist() == [199.0, 200.0]
    empty_mz, empty_int = clean_peaks(np.array([]), np.array([]), 100.0)
    assert empty_mz.size == 0 and empty_int.size == 0


def test_cli_lists_every_stage() -> None:
    out = subprocess.run([sys.executable, "-m", "ms2study", "--help"], capture_output=True, text=True, check=True)
    for command in ("run", "simulate", "detect", "spectra", "embed", "annotate", "pool", "link", "models", "report"):
        assert re.search(rf"\b{command}\b", out.stdout), f"subcommand {command} missing from --help"


# Imported where present, never required: the report draws UMAP maps when umap-learn is importable (config/README.md);
# ms2study.slurmstates adjusts the SLURM executor plugin where it is installed (a cluster's environment; test extra).
OPTIONAL_IMPORTS = {"umap", "snakemake_executor_plugin_slurm"}


def _imported_top_level(paths: list[Path]) -> set[str]:
    """Top-level names of every module imported (at any depth of the code) by the given files."""
    names: set[str] = set()
    for path in paths:
        text = path.read_text()
        if path.suffix == ".py":
            for node in ast.walk(ast.parse(text)):
                if isinstance(node, ast.Import):
                    names |= {alias.name.split(".")[0] for alias in node.names}
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names.add(node.module.split(".")[0])
        else:  # Snakefile and rule files: Python statements at line starts
            names |= set(re.findall(r"^\s*(?:from|import)\s+([A-Za-z_]\w*)", text, re.MULTILINE))
    return names


def _distributions(modules: set[str], local: set[str]) -> set[str]:
    """The distributions (normalised names) providing ``modules``, leaving out the standard library and ``local``."""
    from importlib.metadata import packages_distributions

    provided = packages_distributions()
    third_party = modules - set(sys.stdlib_module_names) - local - {"__future__"}
    unknown = sorted(m for m in third_party if m not in provided)
    assert not unknown, f"imported but not installed: {unknown}"
    return {_norm(provided[m][0]) for m in third_party}


def _norm(requirement: str) -> str:
    return re.split(r"[<>=!~ \[;]", requirement, maxsplit=1)[0].strip().lower().replace("_", "-")


def test_declared_dependencies_are_what_the_package_imports(repo: Path) -> None:
    """pyproject.toml's dependencies are exactly the distributions the package, the Snakefile and the rules import;
    the test extra covers what only tests and benchmarks import."""
    project = tomllib.loads((repo / "pyproject.toml").read_text())["project"]
    declared = {_norm(d) for d in project["dependencies"]}
    test_extra = {_norm(d) for d in project["optional-dependencies"]["test"]}
    runtime_files = [*(repo / "workflow" / "ms2study").rglob("*.py"), repo / "workflow" / "Snakefile",
                     *(repo / "workflow" / "rules").glob("*.smk")]
    imported = _distributions(_imported_top_level(runtime_files) - OPTIONAL_IMPORTS, {"ms2study"})
    assert imported == declared, (f"imported, not declared: {sorted(imported - declared)}; "
                                  f"declared, never imported: {sorted(declared - imported)}")
    other_files = [*(repo / "tests").rglob("*.py"), *(repo / "benchmarks").rglob("*.py")]
    local = {p.stem for p in other_files} | {"ms2study", "conftest"}
    used = _distributions(_imported_top_level(other_files) - OPTIONAL_IMPORTS, local)
    assert used <= declared | test_extra, f"tests import undeclared {sorted(used - declared - test_extra)}"


def test_conda_env_matches_pyproject(repo: Path) -> None:
    deps = tomllib.loads((repo / "pyproject.toml").read_text())["project"]["dependencies"]
    env = yaml.safe_load((repo / "envs" / "ms2study.yaml").read_text())
    pip_deps = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert sorted(pip_deps) == sorted(deps)


def test_snakemake_lint_is_clean(repo: Path, tmp_path: Path) -> None:
    (tmp_path / "run1.mzML").write_text("<mzML></mzML>")
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", "-s", str(repo / "Snakefile"), "-d", str(tmp_path), "--lint"],
        capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "good condition" in result.stdout + result.stderr


def test_cleaning_is_the_same_for_samples_and_library(repo: Path) -> None:
    from ms2study.library import build as library
    from ms2study.stages import spectra

    cleaning = yaml.safe_load((repo / "config" / "config.yaml").read_text())["cleaning"]
    assert cleaning == library.DEFAULT_PARAMS["cleaning"]
    assert cleaning == {k: spectra.DEFAULT_PARAMS[k] for k in cleaning}


def _limited_threads(code_before: str, argv: list[str], tmp_path: Path) -> list[str]:
    """In a fresh interpreter (no *_NUM_THREADS in its environment): ``code_before``, then ``cli.main(argv)``; returns
    [main's return code, numba's threads, torch's threads]."""
    script = (f"{code_before}\nfrom ms2study import cli\nrc = cli.main({argv!r})\n"
              "import numba, torch, polars\n"
              "print(rc, numba.get_num_threads(), torch.get_num_threads(), polars.thread_pool_size())\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path,
                            env={k: v for k, v in os.environ.items()
                                 if not k.endswith("_NUM_THREADS") and k != "POLARS_MAX_THREADS"})
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


@pytest.mark.parametrize("before", ["", "import numba, torch"], ids=["imported-after", "imported-before"])
def test_global_threads_option_limits_numba_and_torch(before: str, tmp_path: Path) -> None:
    """`ms2study --threads 1 COMMAND` holds numba and torch to one thread, whether or not they were imported."""
    failing_detect = ["detect", "--mzml", "absent.mzML", "--sample-id", "s", "--out", "f.parquet"]
    # polars too when it was not imported before (an HPC admin's review: 16 threads in a --threads 1 job)
    assert _limited_threads(before, ["--threads", "1", *failing_detect], tmp_path)[:3] == ["1", "1", "1"]
    if not before:
        assert _limited_threads(before, ["--threads", "1", *failing_detect], tmp_path)[3] == "1"
    rc, numba_default, _, _ = _limited_threads(before, failing_detect, tmp_path)
    assert rc == "1" and int(numba_default) >= 1  # without the option: numba's own default (every core)


def test_global_threads_option_needs_a_positive_count_and_leaves_command_options_alone() -> None:
    from ms2study.cli import _global_threads

    bad = subprocess.run([sys.executable, "-m", "ms2study", "--threads", "0", "detect"], capture_output=True, text=True)
    assert bad.returncode == 2 and "--threads needs a whole number" in bad.stderr
    assert _global_threads(["-v", "--threads", "3", "annotate", "--x"]) == ("3", ["-v", "annotate", "--x"])
    assert _global_threads(["--threads=2", "embed"]) == ("2", ["embed"])
    assert _global_threads(["embed", "--threads", "2"]) == (None, ["embed", "--threads", "2"])  # embed's own


def _rules(repo: Path) -> dict[str, str]:
    """Rule name -> the text of its block, over every rule file."""
    rules = {}
    for path in sorted((repo / "workflow" / "rules").glob("*.smk")):
        for match in re.finditer(r"^rule (\w+):\n(.*?)(?=^\S|\Z)", path.read_text(), re.MULTILINE | re.DOTALL):
            rules[match.group(1)] = match.group(2)
    return rules


def test_every_rule_passes_its_declared_threads_to_each_command(repo: Path) -> None:
    """Each `python -m ms2study` call of a rule starts with `--threads {threads}`, so the thread count Snakemake
    schedules with is the one numba, torch, OpenMP and BLAS use; each such rule declares its threads."""
    rules = _rules(repo)
    assert {"detect", "annotate", "embed", "index_library", "calibrate_library", "train_encoder", "models",
            "report"} <= set(rules)
    wrong = []
    for name, text in rules.items():
        calls = re.findall(r"python -m ms2study( [^\"]*)", text)
        if not calls:
            continue
        if not re.search(r"^\s+threads: (\d+|workflow\.cores)$", text, re.MULTILINE):
            wrong.append(f"{name}: no threads declared")
        wrong += [f"{name}:{call}" for call in calls if not call.startswith(" --threads {threads} ")]
    assert not wrong, f"commands without --threads {{threads}}: {wrong}"


def test_the_citation_file_names_this_version() -> None:
    """Trial AC: a PI found nothing to cite. CITATION.cff (Citation File Format 1.2.0) carries the package's version
    and the methods the pipeline rests on; a release that forgets to update it fails here."""
    import tomllib

    import yaml

    repo = Path(__file__).resolve().parents[1]
    citation = yaml.safe_load((repo / "CITATION.cff").read_text(encoding="utf-8"))
    project = tomllib.loads((repo / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert citation["cff-version"] == "1.2.0" and citation["version"] == project["version"]
    assert citation["license"] == project["license"]
    assert {r["year"] for r in citation["references"]} >= {2004, 2014}  # limma's moderation, Schymanski's levels
