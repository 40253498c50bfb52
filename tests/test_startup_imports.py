"""What the per-sample jobs import of ms2study itself (issue 15, per-job start-up): each job is a fresh process, and
in a fresh checkout every ms2study module it imports is also compiled, so a module that a job imports without using
it costs every sample. tests/test_startup.py checks the third-party packages; these tests check ms2study's own
modules, for the parser (``--help``) and for whole jobs: annotate loads a library index and its prepared peaks but
never reads or builds a library (readers, builder, decoy drawing), and pool needs neither the corrected intensities
nor the chemistry of the study commands that share its stage module."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from ms2study.core.tables import EMBEDDINGS, FEATURES, SPECTRA, conform

# Modules that build a library index from library files (ms2study index-library and the library stage only).
LIBRARY_BUILDING = ("ms2study.io.formats", "ms2study.io.entries", "ms2study.library.build", "ms2study.kernels.peaks")
# The study-level commands of the pool stage module (pool-corrected, prototypes, chemistry).
POOL_STUDY = ("ms2study.correction.weights", "ms2study.modelling.chemistry")
NOT_IMPORTED = {
    "detect": ("ms2study.encoder", "ms2study.kernels", "ms2study.identification", "ms2study.library"),
    "spectra": ("ms2study.encoder", "ms2study.kernels", "ms2study.identification", "ms2study.library",
                "ms2study.correction", "ms2study.modelling"),
    "embed": ("ms2study.kernels", "ms2study.identification", "ms2study.library", "ms2study.io", "ms2study.modelling",
              "torch._dynamo", "torch._inductor", "torch.onnx"),
    "annotate": (*LIBRARY_BUILDING, "ms2study.encoder.model", "ms2study.encoder.inference", "ms2study.modelling"),
    "pool": (*POOL_STUDY, "ms2study.kernels", "ms2study.identification", "ms2study.library", "ms2study.encoder"),
}

REPORT = "\nprint('IMPORTED:' + ','.join(m for m in {modules!r} if m in sys.modules))\n"


def _imported(repo: Path, code: str, modules: tuple[str, ...], cwd: Path | None = None) -> list[str]:
    """The ``modules`` that ``code``, run in a fresh interpreter, imported."""
    env = dict(os.environ, PYTHONPATH=str(repo / "workflow"))
    done = subprocess.run([sys.executable, "-c", "import sys\n" + code + REPORT.format(modules=modules)], env=env,
                          capture_output=True, text=True, timeout=300, cwd=cwd)
    assert done.returncode == 0, done.stderr[-3000:]
    line = next(x for x in done.stdout.splitlines() if x.startswith("IMPORTED:"))
    return [m for m in line.removeprefix("IMPORTED:").split(",") if m]


def _job(args: list[str]) -> str:
    return f"from ms2study import cli\nassert cli.main({args!r}) == 0\n"


@pytest.mark.parametrize("command", sorted(NOT_IMPORTED))
def test_a_per_sample_parser_imports_only_its_own_modules(command: str, repo: Path) -> None:
    code = ("import contextlib, io\nfrom ms2study import cli\n"
            "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
            f"    cli.main(['--threads', '1', {command!r}, '--help'])\n")
    assert _imported(repo, code, NOT_IMPORTED[command]) == []


def test_an_annotate_job_never_imports_the_library_builder(tmp_path: Path, repo: Path) -> None:
    """A whole annotate job (index, prepared entropy peaks, calibration, scores) on a small generated library."""
    sys.path.insert(0, str(Path(__file__).parent))
    from test_annotate import make_library, noisy_queries

    from ms2study.identification import calibration
    from ms2study.library import index as library

    entries = make_library(tmp_path / "library.mgf", n=150)
    library.index_library(tmp_path / "library.mgf", tmp_path / "index")
    calibration.calibrate_index(tmp_path / "index", {"model": None}).save(tmp_path / "calibration.json")
    noisy_queries(entries, n=10).write_parquet(tmp_path / "spectra.parquet")
    out = tmp_path / "annotations.parquet"
    args = ["--threads", "1", "annotate", "--spectra", str(tmp_path / "spectra.parquet"),
            "--library-index", str(tmp_path / "index"), "--calibration", str(tmp_path / "calibration.json"),
            "--out", str(out), "--params", '{"model": null, "embedding_model": null}']
    assert _imported(repo, _job(args), LIBRARY_BUILDING + ("ms2study.encoder.model",)) == []
    assert pl.read_parquet(out)["spectrum_id"].n_unique() == 10


def test_a_pool_job_never_imports_the_study_commands(tmp_path: Path, repo: Path) -> None:
    """A whole pool job (one sample's embeddings, spectra and features into its sample embedding)."""
    rng = np.random.default_rng(5)
    n = 12
    spectra = conform(pl.DataFrame({
        "spectrum_id": [f"s1:S{i}" for i in range(n)], "sample_id": ["s1"] * n, "scan_index": list(range(n)),
        "native_id": [f"scan={i}" for i in range(n)], "rt_s": [10.0 + i for i in range(n)],
        "precursor_mz": [200.0 + i for i in range(n)], "precursor_charge": [1] * n, "precursor_intensity": [1e5] * n,
        "feature_id": [f"s1:F{i}" for i in range(n)],
        "mz": [[100.0, 150.0]] * n, "intensity": [[1.0, 2.0]] * n,
    }, schema_overrides=SPECTRA), SPECTRA)
    vectors = rng.normal(size=(n, 8)).astype(np.float32)
    embeddings = conform(pl.DataFrame({
        "spectrum_id": spectra["spectrum_id"], "sample_id": spectra["sample_id"], "feature_id": spectra["feature_id"],
        "embedding": [list(map(float, v / np.linalg.norm(v))) for v in vectors],
    }, schema_overrides=EMBEDDINGS), EMBEDDINGS)
    features = conform(pl.DataFrame({
        "feature_id": [f"s1:F{i}" for i in range(n)], "sample_id": ["s1"] * n,
        "mz": [200.0 + i for i in range(n)], "rt_s": [10.0 + i for i in range(n)],
        "rt_start_s": [9.0 + i for i in range(n)], "rt_end_s": [11.0 + i for i in range(n)],
        "mz_min": [199.999 + i for i in range(n)], "mz_max": [200.001 + i for i in range(n)],
        "intensity": rng.uniform(1e4, 1e6, n).tolist(), "charge": [1] * n, "n_isotopes": [2] * n, "quality": [1.0] * n,
    }, schema_overrides=FEATURES), FEATURES)
    for name, table in (("spectra", spectra), ("embeddings", embeddings), ("features", features)):
        table.write_parquet(tmp_path / f"{name}.parquet")
    out = tmp_path / "sample_embedding.parquet"
    args = ["--threads", "1", "pool", "--embeddings", str(tmp_path / "embeddings.parquet"),
            "--spectra", str(tmp_path / "spectra.parquet"), "--features", str(tmp_path / "features.parquet"),
            "--sample-id", "s1", "--out", str(out)]
    assert _imported(repo, _job(args), POOL_STUDY) == []
    assert pl.read_parquet(out).height == 1
