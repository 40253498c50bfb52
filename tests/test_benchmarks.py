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
    from ms2study.encoder import checkpoints

    model_dir = checkpoints.resolve_model_dir("default")
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


def test_summary_judges_targets_on_the_means() -> None:
    def draw(seed, cos, ent, comb, cos_i, ent_i, comb_i):
        return {"seed": seed,
                "identification": {"top1_all": {"cosine": cos, "modified_cosine": cos, "entropy": ent,
                                                "combined": comb},
                                   "top1_isomer": {"cosine": cos_i, "modified_cosine": cos_i, "entropy": ent_i,
                                                   "combined": comb_i}},
                "targets": {"isomer_error_ratio_combined_vs_best_classical": (1 - comb_i) / (1 - max(cos_i, ent_i)),
                            "all_combined_not_below_best_classical": comb >= max(cos, ent),
                            "precision_combined_ge_cosine_every_level": True}}

    s = identification.summarize([draw(0, 0.90, 0.91, 0.93, 0.70, 0.80, 0.90),
                                  draw(1, 0.90, 0.89, 0.88, 0.70, 0.60, 0.80)])
    assert s["top1_all_mean"]["combined"] == pytest.approx(0.905)
    assert s["top1_isomer_mean"]["entropy"] == pytest.approx(0.70)
    t = s["targets"]
    # Means: combined 0.905 vs best classical 0.90 -> not below (draw 1 alone is); isomer error 0.15 vs 0.30 -> 0.5.
    assert t["all_combined_not_below_best_classical_mean"] and t["all_combined_not_below_best_classical_draws"] == 1
    assert t["isomer_error_ratio_of_means"] == pytest.approx(0.5) and t["isomer_target_met"]


def test_moderated_variances_recover_a_known_prior() -> None:
    """The differential benchmark's eBayes alternative: residual variances drawn from a scaled-inverse-chi-square
    prior (d0 = 8, s0^2 = 0.25) with 6 residual dof give back d0 and s0^2 (method of moments, Smyth 2004)."""
    import differential_calibration as dc

    rng = np.random.default_rng(1)
    true_var = 0.25 * 8 / rng.chisquare(8, 20000)
    sample_var = true_var * rng.chisquare(6, 20000) / 6
    _post, d0, s0_2 = dc.squeeze_variances(sample_var, 6.0)
    assert 6.5 < d0 < 10.0 and 0.22 < s0_2 < 0.28


def test_differential_benchmark_on_real_studies(shared_data: Path, tmp_path: Path) -> None:
    """A few null and spike-in draws on the real study tables: every rate is a share and the spikes are found more
    often than the null rejects."""
    import differential_calibration as dc

    result = dc.run(shared_data, draws=2, sizes=[8], n_spiked=15, fold=3.0, seed=0)
    for name, row in result["studies"].items():
        assert all(0.0 <= row[k] <= 1.0 for k in row if k != "n_features"), name
        assert row["welch_recall"] >= row["welch_null_p05"] / 2, name
