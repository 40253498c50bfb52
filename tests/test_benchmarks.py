"""The identification benchmark runs end to end on real MassBank data (a few held-out structures) and its numbers
are internally consistent; the paired bootstrap interval behaves as an interval."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

import identification


def test_bootstrap_interval_is_paired_and_brackets_the_ratio() -> None:
    rng = np.random.default_rng(1)
    theirs = rng.random(200) < 0.75
    ours = theirs | (rng.random(200) < 0.3)  # fixes some of their errors, breaks none
    ratio = (1 - ours.mean()) / (1 - theirs.mean())
    lo, hi = identification.bootstrap_error_ratio(ours, theirs, seed=0)
    assert lo <= ratio <= hi <= 1.0
    assert identification.bootstrap_error_ratio(theirs, theirs, seed=0) == [1.0, 1.0]
    assert identification.bootstrap_error_ratio(np.zeros(0, bool), np.zeros(0, bool), seed=0) is None


def test_identification_benchmark_on_held_out_massbank(shared_data: Path) -> None:
    library = shared_data / "massbank" / "massbank_dev.mgf.gz"
    if not library.is_file():
        pytest.skip(f"{library} is absent")
    from ms2study import embed

    model_dir = embed.resolve_model_dir("default")
    result = identification.run(library, model_dir, 60, 10.0, 0, {"device": "cpu"})
    main = result["identification"]
    assert result["split"]["held_out"] == "test" and main["n_queries"] == 60
    assert 0 < main["n_isomer_queries"] <= main["n_answerable"] <= 60
    for name in ("cosine", "modified_cosine", "entropy", "embedding", "combined"):
        assert 0.5 <= main["top1_all"][name] <= 1.0, name
    assert result["combined_score"].startswith("learned")
    t = result["targets"]
    lo, hi = t["isomer_error_ratio_ci95"]
    ratio = t["isomer_error_ratio_combined_vs_best_classical"]
    assert lo <= ratio <= hi
    assert [lv["level"] for lv in result["low_concentration"]] == [0, 1, 2, 3, 4]
