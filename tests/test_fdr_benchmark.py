"""The FDR calibration benchmark: level-aware judging, FDP and recall arithmetic, and a small end-to-end run on
real held-out MassBank structures with known unknowns."""

from __future__ import annotations

import sys
from pathlib import Path

import polars as pl
import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

import fdr_calibration  # noqa: E402

IK = {k: f"{k * 14}-XXXXXXXXXX-N" for k in "ABCD"}


def _top() -> pl.DataFrame:
    return pl.DataFrame({
        "spectrum_id": ["q1", "q2", "q3", "q4", "q5"],
        "library_inchikey": [IK["A"], IK["B"], IK["B"], IK["C"], IK["D"]],
        "library_formula": ["C6H6", "C7H8", "C7H8", "C9H9", "C5H5"],
        "msi_level": [2, 2, 3, 3, None],
        "isomer_inchikeys": [[IK["A"]], [IK["B"]], [IK["B"], IK["C"]], [IK["C"]], None],
        "q_value": [0.001, 0.002, 0.003, 0.004, 0.5],
        "cosine": [0.9, 0.8, 0.7, 0.2, 0.1],
    }, schema_overrides={"msi_level": pl.Int8})


def test_judging_is_level_aware() -> None:
    truth_block = {"q1": "A" * 14, "q2": "C" * 14, "q3": "C" * 14, "q4": "D" * 14, "q5": "D" * 14}
    truth_formula = {"q1": "C6H6", "q2": "C7H8", "q3": "C7H8", "q4": "C8H8", "q5": "C5H5"}
    judged = fdr_calibration.judge(_top(), truth_block, truth_formula)
    # q1 level 2 right structure; q2 level 2 isomer = wrong; q3 level 3 isomer named = right;
    # q4 level 3 other formula, not in the isomer set = wrong.
    assert judged["correct"].to_list()[:4] == [True, False, True, False]
    judged = judged.with_columns(pl.Series("_known", [True, True, True, False, False]))
    at = fdr_calibration.fdp_at(judged, 0.01, n_known=3)
    assert at["accepted"] == 4 and at["true_fdp"] == pytest.approx(0.5)
    assert at["recall"] == pytest.approx(2 / 3) and at["level2_true_fdp"] == pytest.approx(0.5)
    assert at["level2_share_known"] == pytest.approx(2 / 3) and at["accepted_known_unknowns"] == 1
    assert at["accepted_cosine_below_0.3"] == 1


def test_fdr_benchmark_on_held_out_massbank(shared_data: Path, tmp_path: Path) -> None:
    library = shared_data / "massbank" / "massbank_dev.mgf.gz"
    if not library.is_file():
        pytest.skip(f"{library} is absent")
    from ms2study.encoder import checkpoints

    # 20,000 library spectra (the known queries' structures kept): the whole reference took 6 of the suite's minutes
    result = fdr_calibration.run(library, checkpoints.resolve_model_dir("default"), 80, 0.4, 0, 300, tmp_path,
                                 library_limit=20000)
    assert result["n_queries"] == 80 and result["n_known_unknowns"] == 32 and result["library_spectra"] == 20000
    rows = result["null_model"]
    assert [r["nominal_fdr"] for r in rows] == [0.01, 0.05, 0.1]
    assert rows[0]["accepted"] <= rows[1]["accepted"] <= rows[2]["accepted"] <= 80
    for r in rows:
        assert 0.0 <= r["true_fdp"] <= 1.0 and 0.0 <= r["recall"] <= 1.0
    assert result["calibration"]["n_wrong_formula_candidates"] > 1000
    assert set(result["classical_best_threshold"]) == {"cosine", "entropy"}


def _reach_frame(score_of_isomer_impostor: float) -> pl.DataFrame:
    # Accepted in-library hits r1, r2, r4, r5, r6, r9, r10 (r5's rank-1 is a wrong isomer); r3 and r7 are known
    # unknowns (r3 hit an isomer of the query, r7 another formula); r8 is not accepted.
    return pl.DataFrame({
        "spectrum_id": ["r1", "r2", "r3", "r4", "r5", "r6", "r7", "r8", "r9", "r10"],
        "_known": [True, True, False, True, True, True, False, True, True, True],
        "q_value": [0.001, 0.01, 0.02, 0.01, 0.03, 0.04, 0.04, 0.2, 0.002, 0.003],
        "combined": [0.99, 0.95, score_of_isomer_impostor, 0.9, 0.85, 0.8, 0.7, 0.5, 0.97, 0.96],
        "isomer_gap": [None, 0.5, None, 0.02, None, None, None, None, None, None],
        "structure_correct": [True, True, False, True, False, True, False, True, True, True],
        "formula_correct": [True, True, True, True, True, True, False, True, True, True],
    })


def test_level2_reach_reports_the_ceiling_the_isomer_ambiguity_and_the_hindsight_share() -> None:
    reach = fdr_calibration.level2_reach(_reach_frame(0.93), isomer_margin=0.1)
    assert reach["accepted_known"] == 7 and reach["known_unknowns_accepted"] == 2
    assert reach["rank1_structure_right"] == pytest.approx(6 / 7)
    assert reach["isomer_candidate"] == pytest.approx(2 / 7) and reach["isomer_within_0.05"] == pytest.approx(1 / 7)
    assert reach["known_unknowns_isomer_hits"] == pytest.approx(0.5)
    # Pool (r4 fails the margin): r1 .99, r9 .97, r10 .96, r2 .95 right, then the impostor r3 at .93.
    assert reach["hindsight_share"] == {"0.02": pytest.approx(4 / 7), "0.075": pytest.approx(4 / 7),
                                        "0.15": pytest.approx(4 / 7)}
    # An impostor tied with a right hit cannot be cut apart by a score threshold.
    tied = fdr_calibration.level2_reach(_reach_frame(0.95), isomer_margin=0.1)
    assert tied["hindsight_share"]["0.02"] == pytest.approx(3 / 7)
