"""The Snakemake rule train_encoder (outside `all`) trains an encoder and learns its combined score in one job;
annotate then uses that pair. Run for real through `ms2study run` on a tiny generated library."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ms2study.encoder.model import load_encoder
from ms2study.simulate.study import simulate_study

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from test_combine import make_library  # the generated library with isomers and several spectra per structure


def _run(study: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO / "workflow"))
    return subprocess.run([sys.executable, "-m", "ms2study", "run", str(study), "--cores", "2", *args],
                          capture_output=True, text=True, env=env, timeout=600, check=False)


def _configure(study: Path, library: str, extra: dict | None = None) -> None:
    config = yaml.safe_load((study / "config.yaml").read_text()) or {}
    config["train_library"] = library
    config["train"] = {"max_steps": 2, "batch_compounds": 8, "warmup_steps": 1, "log_every": 1, "device": "cpu",
                       "architecture": {"d_model": 32, "n_layers": 1, "n_heads": 4, "d_ff": 64, "dim": 16},
                       "val_fraction": 0.4, "test_fraction": 0.1, "licenses": None, **(extra or {})}
    (study / "config.yaml").write_text(yaml.safe_dump(config))


def test_train_encoder_rule_writes_encoder_and_combined_score(tmp_path: Path) -> None:
    study = tmp_path / "study"
    simulate_study(study, n_samples=2, seed=1)
    make_library(study / "train_lib.mgf", n_structures=120)
    _configure(study, "train_lib.mgf")
    done = _run(study, "results/models/tiny")
    assert done.returncode == 0, done.stderr[-4000:]
    model_dir = study / "results" / "models" / "tiny"
    _model, config, info = load_encoder(model_dir)
    assert info["trained"] and config.dim == 16 and info["training"]["steps"] == 2
    combined = json.loads((model_dir / "combined.json").read_text())
    assert combined["model_id"] == info["model_id"] and combined["training_data"]["split"]["part"] == "val"
    assert "learned combined score" in (study / "logs" / "train" / "tiny.log").read_text()
    # training is not part of `all`: no study stage ran (the validated sheet and its run columns are written whenever
    # Snakemake reads the workflow, rules/sheet.smk)
    folder = study / "results" / "study"
    written = sorted(p.name for p in folder.iterdir()) if folder.exists() else []
    assert written in ([], ["runs.tsv", "samples.tsv"]), written


def test_train_encoder_rule_keeps_the_encoder_when_the_library_is_too_small(tmp_path: Path) -> None:
    """One spectrum per structure (the demo library): nothing to learn weights from; the encoder is still kept."""
    study = tmp_path / "study"
    simulate_study(study, n_samples=2, seed=1)
    _configure(study, "library.mgf")
    done = _run(study, "results/models/small")
    assert done.returncode == 0, done.stderr[-4000:]
    model_dir = study / "results" / "models" / "small"
    assert load_encoder(model_dir)[2]["trained"]
    assert not (model_dir / "combined.json").exists()
    assert "annotate will use the fixed weights" in (study / "logs" / "train" / "small.log").read_text()


def test_train_encoder_declares_its_own_threads_not_the_submit_hosts_cores(tmp_path: Path) -> None:
    """Trial Q: the rule declared ``workflow.cores`` threads, which `ms2study run`'s default --cores all makes the
    core count of the machine Snakemake runs on (a cluster's submit host). It declares 8; Snakemake lowers that to
    --cores on a smaller machine, and --set-threads raises it."""
    study = tmp_path / "study"
    simulate_study(study, n_samples=2, seed=1)
    make_library(study / "train_lib.mgf", n_structures=20)
    _configure(study, "train_lib.mgf")

    def threads(*args: str) -> set[str]:
        done = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(study),
                               "results/models/tiny", "--dry-run", "--printshellcmds", *args],
                              capture_output=True, text=True, timeout=300, check=False)
        assert done.returncode == 0, done.stderr[-3000:]
        return {line.split("--threads ")[1].split()[0] for line in done.stdout.splitlines()
                if "ms2study --threads" in line and " train " in line}

    assert threads("--cores", "64") == {"8"}
    assert threads("--cores", "2") == {"2"}
    assert threads("--cores", "64", "--set-threads", "train_encoder=16") == {"16"}
