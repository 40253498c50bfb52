"""MSI level 2 from the two-group structure model: fitting, EM share of right hits, posterior q-values, the rank-1
features, and the level it gives in the confidence table."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import polars as pl
import pytest

from ms2study.core.errors import InputError
from ms2study.identification import acceptance, confidence, structure_model
from ms2study.identification.structure_model import FEATURES, StructureModel

N_F = len(FEATURES)


def _training(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Right hits score around 0.85, wrong ones around 0.45; the other features are noise or missing."""
    rng = np.random.default_rng(seed)
    right = rng.random(n) < 0.5
    x = rng.random((n, N_F))
    x[:, 0] = np.clip(np.where(right, 0.85, 0.45) + rng.normal(0, 0.1, n), 0, 1)
    x[rng.random(n) < 0.3, 4] = np.nan          # no isomer candidate
    return x, right


def test_the_model_learns_which_hits_are_right_and_survives_json() -> None:
    x, right = _training(2000, 0)
    model = StructureModel.fit(x, right)
    assert model is not None and model.stats == {"n_right": int(right.sum()), "n_wrong": int((~right).sum())}
    probe = np.full((2, N_F), 0.5)
    probe[:, 0] = [0.95, 0.35]
    llr = model.log_likelihood_ratio(probe)
    assert llr[0] > 2 and llr[1] < -2
    back = StructureModel.from_json(json.loads(json.dumps(model.to_json())))
    np.testing.assert_allclose(back.log_likelihood_ratio(x[:50]), model.log_likelihood_ratio(x[:50]), atol=1e-5)


def test_too_few_hits_of_a_class_give_no_model_and_bad_shapes_are_refused() -> None:
    x, right = _training(400, 1)
    right[:] = False
    right[: structure_model.MIN_CLASS - 1] = True
    assert StructureModel.fit(x, right) is None
    with pytest.raises(ValueError, match="shape"):
        StructureModel.fit(x[:, :3], right)


def test_em_recovers_the_share_of_right_hits_and_stays_cautious_when_small() -> None:
    rng = np.random.default_rng(2)
    n, pi_true = 6000, 0.3
    is_right = rng.random(n) < pi_true
    s = np.where(is_right, rng.normal(1.0, 1.0, n), rng.normal(-1.0, 1.0, n))
    llr = 2.0 * s                         # log N(s; 1, 1) - log N(s; -1, 1)
    pi, post = structure_model.right_share_and_posteriors(llr, pseudo_wrong=0.0)
    assert pi == pytest.approx(pi_true, abs=0.02)
    assert np.all((post >= 0) & (post <= 1)) and post[np.argmax(llr)] > 0.99
    small_pi, _ = structure_model.right_share_and_posteriors(llr[:30])
    loose_pi, _ = structure_model.right_share_and_posteriors(llr[:30], pseudo_wrong=0.0)
    assert small_pi < loose_pi
    assert structure_model.right_share_and_posteriors(np.array([np.nan]))[0] == 0.0
    # hits the model cannot score (NaN: no candidate shares enough fragments) get posterior 0 and leave the share
    # of right hits among the scorable ones unchanged (counted as wrong, they halved it on held-out queries)
    with_unscorable = np.concatenate([llr, np.full(n, np.nan)])
    pi_nan, post_nan = structure_model.right_share_and_posteriors(with_unscorable, pseudo_wrong=0.0)
    assert pi_nan == pytest.approx(pi, abs=1e-9) and np.all(post_nan[n:] == 0.0)
    assert np.allclose(post_nan[:n], post)


def test_posterior_q_values_are_running_mean_errors() -> None:
    q = structure_model.posterior_q_values(np.array([0.5, 0.99, 0.9]))
    np.testing.assert_allclose(q, [(0.01 + 0.1 + 0.5) / 3, 0.01, 0.055])
    assert structure_model.posterior_q_values(np.zeros(0)).size == 0


def test_rank1_features_take_the_best_candidate_and_its_best_isomer() -> None:
    # Query 0: structure 1 (0.9) beats its isomer 2 (0.6) and structure 3 of another formula (0.7);
    # query 1: one candidate, no isomer; query 2: no finite candidate.
    q_of = np.array([0, 0, 0, 1, 2])
    struct = np.array([2, 1, 3, 4, 5])
    formula = np.array([7, 7, 8, 9, 9])
    key = np.array([0.6, 0.9, 0.7, 0.5, -np.inf])
    scores = {"cosine": np.array([0.5, 0.8, 0.6, 0.4, 0.0]), "entropy": np.array([0.4, 0.7, 0.5, 0.3, 0.0])}
    feats, top = structure_model.rank1_features(
        q_of, struct, formula, key, scores, np.array([1, 1, 0, 0, 0.0]), np.array([0.3, 0.2, np.nan, np.nan, 0]),
        np.array([12, 5, 3]), np.array([3, 1, 1]), 3)
    col = {f: j for j, f in enumerate(FEATURES)}
    assert top.tolist() == [1, 3, -1]
    assert feats[0, col["score"]] == 0.9 and feats[0, col["cosine"]] == 0.8
    assert feats[0, col["isomer_gap"]] == pytest.approx(0.3) and np.isnan(feats[1, col["isomer_gap"]])
    assert feats[0, col["isomer_separability"]] == 0.2 and feats[0, col["query_peaks"]] == 12
    assert np.isnan(feats[0, col["embedding"]]) and np.isnan(feats[2]).all()
    # no other spectrum of the rank-1 structures here: none counted, no second score
    assert feats[0, col["structure_spectra"]] == 0 and np.isnan(feats[0, col["structure_second_score"]])


def test_rank1_features_count_the_hit_structures_other_spectra() -> None:
    # Query 0: structure 1 has three spectra (0.9, 0.8, and one dropped by annotate, -inf) and isomer 2 one (0.85);
    # query 1: its rank-1 structure is unknown (-1), so neither feature is known.
    q_of = np.array([0, 0, 0, 0, 1, 1])
    struct = np.array([1, 1, 1, 2, -1, -1])
    formula = np.array([7, 7, 7, 7, 9, 9])
    key = np.array([0.8, 0.9, -np.inf, 0.85, 0.7, 0.6])
    scores = {"cosine": key.copy(), "entropy": key.copy()}
    nan = np.full(6, np.nan)
    feats, top = structure_model.rank1_features(q_of, struct, formula, key, scores, nan, nan, np.array([10, 10]),
                                                np.array([2, 1]), 2)
    col = {f: j for j, f in enumerate(FEATURES)}
    assert top.tolist() == [1, 4]
    assert feats[0, col["structure_spectra"]] == 1 and feats[0, col["structure_second_score"]] == 0.8
    assert feats[0, col["isomer_gap"]] == pytest.approx(0.05)
    assert np.isnan(feats[1, col["structure_spectra"]]) and np.isnan(feats[1, col["structure_second_score"]])


def _score_only_model() -> StructureModel:
    """log LR +5 for a score >= 0.7, -5 below; every other feature neutral."""
    edges = [np.array([0.7])] + [np.zeros(0)] * (N_F - 1)
    weights = [np.array([-5.0, 5.0, 0.0])] + [np.zeros(2)] * (N_F - 1)
    return StructureModel(edges, weights, 0.0, {})


def _table(model: StructureModel | None, matched_peaks: np.ndarray | None = None) -> pl.DataFrame:
    """40 queries, one candidate structure each (own formula): 20 score 0.95, 20 score 0.5; the formula null lies
    below 0.3 (all accepted), the structure null spreads over [0, 1] (no hit beats it). ``matched_peaks``: the
    frame's column (absent when None)."""
    rng = np.random.default_rng(4)
    n = 40
    score = np.where(np.arange(n) < 20, 0.95, 0.5)
    cal = confidence.Calibration.from_null(rng.uniform(0, 0.3, 20000), rng.uniform(0, 1, 5000), 0.05,
                                           {"rank_by": "combined"}, structure_model=model)
    meta = pl.DataFrame({"inchikey": [f"{chr(65 + k % 26)}{k:013d}-X-N" for k in range(n)],
                         "compound_class": [None] * n, "name": [f"c{k}" for k in range(n)],
                         "formula": [f"C{k + 1}H4" for k in range(n)]}, schema_overrides={"compound_class": pl.Utf8})
    frame = pl.DataFrame({"_q": np.arange(n), "_lib": np.arange(n), "_key": score, "rank": np.ones(n, np.int32),
                          "cosine": score, "entropy": score, "embedding": np.full(n, np.nan)})
    if matched_peaks is not None:
        frame = frame.with_columns(pl.Series("matched_peaks", matched_peaks, dtype=pl.Int32))
    return acceptance.confidence_table(frame, SimpleNamespace(metadata=meta), np.ones(n, np.int64),
                                       {"fdr": 0.05, "isomer_margin": "auto"}, cal, query_peaks=np.full(n, 10))


def test_the_structure_model_gives_level_2_where_the_structure_null_cannot() -> None:
    with_model = _table(_score_only_model()).sort("_q")
    assert with_model["accepted"].all()
    assert with_model["msi_level"].to_list() == [2] * 20 + [3] * 20
    # 40 hits + 20 pseudo-wrong ones: pi = 1/3, posterior 0.987 for a likelihood ratio of e^5.
    assert with_model["structure_q_value"][:20].to_numpy() == pytest.approx(np.full(20, 0.0135), abs=5e-4)
    # The older rule (no model): the wrong-structure null spreads to 1, so no hit is singled out.
    assert (_table(None)["msi_level"] == 3).all()


def test_a_hit_sharing_one_fragment_peak_is_accepted_but_never_level_2_nor_counted_in_the_right_share() -> None:
    # annotate: min_matched_peaks 1 accepts one shared peak; it names the compound, not which isomer
    matched = np.full(40, 6)
    matched[:5] = 1
    table = _table(_score_only_model(), matched).sort("_q")
    assert table["accepted"].all()
    assert table["msi_level"].to_list() == [3] * 5 + [2] * 15 + [3] * 20
    assert table["structure_log_lr"][:5].is_nan().all() and not table["structure_log_lr"][5:].is_nan().any()
    # EM over the 35 scored hits (+ 20 pseudo-wrong): pi 0.269, posterior of e^5 0.982 (with the 5 counted as
    # right-looking hits, pi would be 1/3 and the q-value 0.0135 as above)
    assert table["structure_q_value"][5:20].to_numpy() == pytest.approx(np.full(15, 0.0180), abs=5e-4)


def test_a_calibration_measured_with_an_earlier_score_is_refused_with_the_fix(tmp_path: Path) -> None:
    # Versions 2 and 3 scored the precursor error inside the window: their nulls do not fit today's combined score;
    # version 4 searched exact precursors (right hits looked better than a measured spectrum's).
    cal = confidence.Calibration.from_null(np.random.default_rng(5).random(500), np.random.default_rng(6).random(100),
                                           0.1, {"rank_by": "combined"}, structure_model=_score_only_model(),
                                           isomer_separability={"ABCDEFGHIJKLMN": 0.4})
    back = confidence.Calibration.load(cal.save(tmp_path / "now.json"))
    assert back.structure_model is not None and back.isomer_separability == {"ABCDEFGHIJKLMN": 0.4}
    data = json.loads((tmp_path / "now.json").read_text())
    for version in (2, 3, 4):
        data["version"] = version
        (tmp_path / f"v{version}.json").write_text(json.dumps(data))
        with pytest.raises(InputError, match="not an identification calibration of this version") as err:
            confidence.Calibration.load(tmp_path / f"v{version}.json")
        assert "rerun the pipeline" in str(err.value.fix)


def test_a_cached_calibration_of_another_format_version_is_rebuilt(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from ms2study.identification import calibration

    built = []

    def fake_calibrate(index_dir: Path, params: dict) -> confidence.Calibration:
        built.append(index_dir)
        rng = np.random.default_rng(len(built))
        return confidence.Calibration.from_null(rng.random(200), rng.random(50), 0.1, {"rank_by": "combined"})

    monkeypatch.setattr(calibration, "calibrate_index", fake_calibrate)
    calibration.cached_calibration(tmp_path, {"model": None})
    calibration.cached_calibration(tmp_path, {"model": None})
    assert len(built) == 1
    monkeypatch.setattr(confidence, "FORMAT_VERSION", confidence.FORMAT_VERSION + 1)
    monkeypatch.setattr(confidence, "READABLE_VERSIONS", (*confidence.READABLE_VERSIONS, confidence.FORMAT_VERSION))
    calibration.cached_calibration(tmp_path, {"model": None})
    assert len(built) == 2 and len(list((tmp_path / "calibration").glob("*.json"))) == 2


def test_isomer_gaps_ignore_isomers_that_cannot_be_identified() -> None:
    # an isomer sharing too few fragment peaks has key -inf: counted, it made every gap infinite and the learned
    # isomer margin the largest float (a re-check of session 21 saw 1.8e308 in the calibration)
    from ms2study.identification.calibration import _isomer_gaps
    from ms2study.identification.confidence import learn_isomer_margin

    off = np.array([0, 3, 6])
    cand = np.array([0, 1, 2, 0, 1, 2])
    key = np.array([0.9, -np.inf, 0.2, 0.5, 0.45, 0.1])
    structure, formula = np.array([0, 1, 2]), np.array([7, 7, 8])
    gaps, wrong = _isomer_gaps(off, cand, key, structure, formula, np.array([0, 0, 0, 1, 1, 1]))
    assert gaps.tolist() == pytest.approx([0.05]) and wrong.tolist() == [True]
    assert np.isfinite(learn_isomer_margin(gaps, wrong))


def test_the_isomer_column_lists_every_identifiable_isomer_not_only_those_within_the_margin() -> None:
    # One query: A (0.95) beats its isomers B (0.5, far outside the 0.05 margin) and C (shares too few peaks: -inf);
    # D has another formula. Level 3 (structure null uniform: no hit singled out); the list is A, B.
    rng = np.random.default_rng(1)
    cal = confidence.Calibration.from_null(rng.uniform(0, 0.3, 20000), rng.uniform(0, 1, 5000), 0.05,
                                           {"rank_by": "combined"})
    keys = ["AAAAAAAAAAAAAA-X-N", "BBBBBBBBBBBBBB-X-N", "CCCCCCCCCCCCCC-X-N", "DDDDDDDDDDDDDD-X-N"]
    meta = pl.DataFrame({"inchikey": keys, "compound_class": [None] * 4, "name": list("ABCD"),
                         "formula": ["C6H6O", "C6H6O", "C6H6O", "C7H8"]}, schema_overrides={"compound_class": pl.Utf8})
    score = np.array([0.95, 0.5, -np.inf, 0.4])
    frame = pl.DataFrame({"_q": np.zeros(4, np.int64), "_lib": np.arange(4), "_key": score,
                          "rank": np.arange(1, 5, dtype=np.int32), "cosine": score, "entropy": score,
                          "embedding": np.full(4, np.nan)})
    out = acceptance.confidence_table(frame, SimpleNamespace(metadata=meta), np.array([4]),
                                      {"fdr": 0.05, "isomer_margin": "auto"}, cal, query_peaks=np.array([10]))
    row = out.row(0, named=True)
    assert row["accepted"] and row["msi_level"] == 3
    assert row["isomer_inchikeys"] == keys[:2]
    # Not accepted in its own run, the hit still names its isomers: the study's identify may accept the feature on
    # all its spectra together (a trial saw "no isomer among its candidates" where an isomer scored 0.0006 lower).
    weak = frame.with_columns(pl.Series("_key", [0.25, 0.2, -np.inf, 0.1]))  # inside the wrong-formula null
    strict = acceptance.confidence_table(weak, SimpleNamespace(metadata=meta), np.array([4]),
                                         {"fdr": 0.05, "isomer_margin": "auto"}, cal, query_peaks=np.array([10]))
    row = strict.row(0, named=True)
    assert not row["accepted"] and row["msi_level"] is None and row["isomer_inchikeys"] == keys[:2]


def test_level2_training_skips_one_peak_hits_and_survives_a_search_left_without_candidates() -> None:
    # A trial's 5-record library: every candidate of the query was its own structure, so the leave-structure-out
    # search had no pair left and the 1-peak filter indexed an empty array (IndexError in calibrate_library).
    from ms2study.identification.level2_training import level2_training

    separability = {"struct": np.zeros(0, np.int64), "best": np.zeros(0), "best_partner": np.zeros(0, np.int64),
                    "second": np.zeros(0)}

    def train(matched: int) -> tuple[np.ndarray, np.ndarray]:
        scores = {"cosine": np.array([0.9]), "entropy": np.array([0.9]), "embedding": np.array([np.nan]),
                  "matched_peaks": np.array([matched])}
        return level2_training(np.array([0]), np.array([1]), np.array([0.9]), scores, np.array([0, 0]),
                               np.array([0, 0]), np.array([0]), np.array([5]), separability,
                               np.array(["AAAAAAAAAAAAAA"] * 2, dtype=object))

    features, right = train(3)
    assert features.shape == (1, N_F) and right.tolist() == [True]
    features, right = train(1)  # one shared peak: never level 2, not a training hit
    assert features.shape == (0, N_F) and right.size == 0


def test_a_library_without_any_record_of_known_structure_and_ion_mode_gives_no_calibration_search() -> None:
    # a fresh user's minimal MSP (Name, PrecursorMZ, peaks): calibrate_library died of "integer modulo by zero"
    from ms2study.identification.calibration import choose_queries

    rows, degraded = choose_queries(np.array([-1, -1, 0]), np.array([1, 1, 0]), 100, 0)
    assert rows.size == 0 and degraded.size == 0
    rows, _ = choose_queries(np.array([-1, 0, 0]), np.array([1, 1, 1]), 100, 0)
    assert set(rows.tolist()) == {1, 2}


def test_stereoisomers_among_the_candidates_are_named_in_the_isomer_list() -> None:
    """Trial finding: Betamethasone 21-acetate named, its epimer Dexamethasone acetate at rank 2-3 (same first
    InChIKey block) missing from ``isomer_inchikeys``, which held the hit alone. Stereoisomers are one structure to
    the level but are named; one sharing too few peaks (key -inf) is not."""
    keys = ["AAAAAAAAAAAAAA-XXXXXXXXXX-N", "AAAAAAAAAAAAAA-YYYYYYYYYY-N", "AAAAAAAAAAAAAA-ZZZZZZZZZZ-N",
            "BBBBBBBBBBBBBB-XXXXXXXXXX-N"]
    meta = pl.DataFrame({"inchikey": keys, "compound_class": [None] * 4, "name": ["beta", "dexa", "third", "other"],
                         "formula": ["C24H31FO6"] * 3 + ["C7H8"]}, schema_overrides={"compound_class": pl.Utf8})
    score = np.array([0.95, 0.9, -np.inf, 0.4])
    frame = pl.DataFrame({"_q": np.zeros(4, np.int64), "_lib": np.arange(4), "_key": score,
                          "rank": np.arange(1, 5, dtype=np.int32), "cosine": score, "entropy": score,
                          "embedding": np.full(4, np.nan)})
    out = acceptance.confidence_table(frame, SimpleNamespace(metadata=meta), np.array([4]),
                                      {"fdr": 0.05, "isomer_margin": 0.01}, None, row_q_values=np.full(4, 0.001))
    row = out.row(0, named=True)
    assert row["accepted"] and row["msi_level"] == 2  # no other skeleton of the formula: level 2 ...
    assert row["isomer_inchikeys"] == keys[:2]  # ... naming the epimer; the unidentifiable one left out
    meta3 = meta.with_columns(pl.Series("formula", ["C24H31FO6"] * 4))  # another skeleton of the formula too
    out = acceptance.confidence_table(frame, SimpleNamespace(metadata=meta3), np.array([4]),
                                      {"fdr": 0.05, "isomer_margin": 0.9}, None, row_q_values=np.full(4, 0.001))
    row = out.row(0, named=True)
    assert row["msi_level"] == 3 and row["isomer_inchikeys"] == [keys[0], keys[1], keys[3]]


def test_too_few_scorable_hits_give_no_structure_q_value_rather_than_one(caplog: pytest.LogCaptureFixture) -> None:
    """Trial finding: a two-run study's 9 scorable features (Myclobutanil at cosine 0.97, 40 matched peaks, among
    them) all had structure_q_value 0.99999999: the pseudo-count of 20 wrong hits drove the EM share to 0, which
    reads as "the structure is wrong". Fewer than PSEUDO_WRONG scorable hits: not estimable (NaN), never level 2."""
    llr = np.array([0.5, -0.4, 0.3, 0.6, -0.9, 1.1, 0.7, 0.2, -0.5, np.nan])
    with caplog.at_level(logging.WARNING, logger="ms2study.identification.structure_model"):
        assert np.isnan(structure_model.structure_q_values(llr)).all()
    # said in the log (trial L: 20 queries scored alone were all level 3 without a word why)
    assert "only 9 rank-1 hit(s) of this search can be scored for Schymanski level 2 (at least 20" in caplog.text
    assert structure_model.right_share_and_posteriors(llr)[0] < 0.05  # what the q-values of about 1 came from
    many = np.concatenate([np.full(25, 6.0), np.full(25, -3.0)])
    q = structure_model.structure_q_values(many)
    assert np.isfinite(q).all() and q[:25].max() < 0.05 and q[25:].max() > 0.4
    rows, links = [], []
    for k in range(9):
        ik = f"{chr(65 + k)}AAAAAAAAAAAAA-X-N"
        rows.append({"spectrum_id": f"s1:{k}", "sample_id": "s1", "feature_id": f"s1:F{k}", "rank": 1,
                     "library_id": f"L{k}", "library_name": f"c{k}", "library_inchikey": ik, "library_smiles": "C",
                     "library_formula": f"C{k + 3}H8", "library_adduct": "[M+H]+", "combined": 0.95, "cosine": 0.97,
                     "p_value": 1e-6, "msi_level": 3, "isomer_inchikeys": [ik], "structure_log_lr": 8.0})
        links.append({"consensus_id": f"C{k}", "sample_id": "s1", "feature_id": f"s1:F{k}"})
    ann = pl.DataFrame(rows, schema_overrides={"msi_level": pl.Int8, "isomer_inchikeys": pl.List(pl.Utf8)})
    from ms2study.stages import identify

    out = identify.identify_features(ann, pl.DataFrame(links), fdr=0.01)
    assert out["accepted"].all() and out["structure_q_value"].is_null().all() and (out["msi_level"] == 3).all()


def test_level_2_needs_a_cosine_of_at_least_the_low_cosine_line() -> None:
    """Trial finding: a known unknown (6-aminohexanoic acid) was named L-beta-homovaline at level 2 with cosine 0.215
    and 3 matched peaks. Level 2 says the library spectrum singles out the structure; below LOW_COSINE (0.3) the
    spectra do not match well enough to say that (no level-2 hit of the held-out MassBank queries lies below it)."""
    keys = ["AAAAAAAAAAAAAA-XXXXXXXXXX-N", "BBBBBBBBBBBBBB-XXXXXXXXXX-N"]
    meta = pl.DataFrame({"inchikey": keys, "compound_class": [None] * 2, "name": ["hit", "other"],
                         "formula": ["C7H15NO2", "C9H8"]}, schema_overrides={"compound_class": pl.Utf8})

    def level(cosine: float) -> int:
        score = np.array([0.9, 0.4])
        frame = pl.DataFrame({"_q": np.zeros(2, np.int64), "_lib": np.arange(2), "_key": score,
                              "rank": np.arange(1, 3, dtype=np.int32), "cosine": np.array([cosine, 0.3]),
                              "entropy": score, "embedding": np.full(2, np.nan)})
        out = acceptance.confidence_table(frame, SimpleNamespace(metadata=meta), np.array([2]),
                                          {"fdr": 0.05, "isomer_margin": 0.01}, None, row_q_values=np.full(2, 0.001))
        row = out.row(0, named=True)
        assert row["accepted"]
        return row["msi_level"]

    assert level(0.95) == 2 and level(0.3) == 2 and level(0.215) == 3
    from ms2study.identification.confidence import LOW_COSINE

    assert LOW_COSINE == 0.3
