"""The empirical null of the adduct grouping's correlation test (correction.covariation, correction.adducts): where
co-eluting ions co-vary without being one compound, a chance pairing at an adduct's mass difference must not pass,
while a real adduct pair still does; where they do not co-vary, the test is the t test's."""

import numpy as np
import polars as pl
import pytest

from ms2study.core.errors import InputError
from ms2study.correction import adducts, covariation

NA_MINUS_H = 22.989218 - 1.007276  # [M+Na]+ - [M+H]+ (Da)


def correlated_decoys(n_pairs: int, n_runs: int, shared_sd: float, own_sd: float, rng: np.random.Generator):
    """Correlations of ``n_pairs`` pairs of ions sharing a factor (sd ``shared_sd``) beside their own variation."""
    shared = rng.normal(0, shared_sd, (n_pairs, 1, n_runs))
    x = shared + rng.normal(0, own_sd, (n_pairs, 2, n_runs))
    r = np.array([np.corrcoef(p[0], p[1])[0, 1] for p in x])
    return r, np.full(n_pairs, n_runs)


def test_fisher_z_and_the_null_of_independent_ions_is_standard_normal():
    rng = np.random.default_rng(0)
    assert covariation.fisher_z(np.array([0.0, 0.5]), np.array([12, 3]))[0] == 0.0
    assert np.isnan(covariation.fisher_z(np.array([0.5]), np.array([3]))[0])
    r, n = correlated_decoys(3000, 16, 0.0, 1.0, rng)
    null = covariation.empirical_null(rng.uniform(15, 300, r.size), r, n, 5)
    assert null is not None and null.n_decoys == 3000
    assert np.all(np.abs(null.centre) < 0.25) and np.all(np.abs(null.spread - 1.0) < 0.2)
    # then the p-values are the t test's (the null's centre and spread are floored at 0 and 1)
    p_t = covariation.correlation_p_value(np.array([0.8]), np.array([12]))
    p = covariation.null_p_values(np.array([0.8]), np.array([12]), np.array([22.0]), null)
    assert p[0] == pytest.approx(p_t[0], rel=0.6) and p[0] >= p_t[0]


def test_shared_variation_raises_a_chance_pair_above_alpha_but_not_a_real_pair():
    rng = np.random.default_rng(1)
    r, n = correlated_decoys(2000, 16, 1.0, 0.6, rng)  # neighbours share most of their variation: r ~ 0.7
    null = covariation.empirical_null(rng.uniform(0.5, 40, r.size), r, n, 5)
    assert null.centre.min() > 2.0 and np.all(np.abs(null.spread - 1.0) < 0.2)  # r ~ 0.7: z shifted, sd 1
    chance, real = np.array([0.80, 0.999]), np.array([16, 16])
    p_t = covariation.correlation_p_value(chance, real)
    p = covariation.null_p_values(chance, real, np.array([22.0, 22.0]), null)
    assert p_t[0] < 0.001 and p[0] > 0.05  # r 0.80 over 16 runs: "significant" for the t test, chance here
    assert p[1] < 1e-4  # a real pair (same compound, small measurement noise) still stands out
    assert np.all(p >= p_t)
    assert covariation.empirical_null(np.ones(50), np.zeros(50), np.full(50, 16), 5) is None  # too few decoys


def matrix_effect_study(seed: int, n_runs: int = 16):
    """Ten retention-time clusters of 40 features whose log intensities share a cluster factor (a matrix effect, sd
    1.0) besides their own variation (sd 0.6); in cluster 0 a real [M+H]+/[M+Na]+ pair (one compound: same
    variation, 5 % noise) and a chance feature at the Na difference of another feature (own variation)."""
    rng = np.random.default_rng(seed)
    rows, values = [], []
    for c in range(10):
        shared = rng.normal(0, 1.0, n_runs)
        for k in range(40):
            rows.append((f"C{c}_{k}", rng.uniform(120, 880), 100.0 + 60.0 * c + rng.uniform(0, 1.0)))
            values.append(12 + shared + rng.normal(0, 0.6, n_runs))
    mh_mz, mh_rt = rows[0][1], rows[0][2]
    rows.append(("real_na", mh_mz + NA_MINUS_H, mh_rt + 0.2))
    values.append(values[0] + np.log(0.3) + rng.normal(0, 0.05, n_runs))
    other_mz, other_rt = rows[1][1], rows[1][2]
    shared0 = np.mean([v - 12 for v in values[2:40]], axis=0)  # the cluster's factor, as its features carry it
    rows.append(("chance_na", other_mz + NA_MINUS_H, other_rt + 0.3))
    values.append(12 + shared0 + rng.normal(0, 0.6, n_runs))
    runs = [f"S{i}" for i in range(n_runs)]
    frame = pl.DataFrame({"consensus_id": [r[0] for r in rows], "mz": [r[1] for r in rows],
                          "rt_s": [r[2] for r in rows]})
    x = np.exp(np.array(values))
    frame = frame.with_columns([pl.Series(s, x[:, j]) for j, s in enumerate(runs)])
    return frame, runs


def labels(table: pl.DataFrame) -> dict:
    return dict(zip(table["consensus_id"].to_list(), table["adduct"].to_list(), strict=True))


def test_grouping_keeps_the_real_adduct_and_drops_the_chance_one_under_a_matrix_effect():
    frame, runs = matrix_effect_study(2)
    params = {"adduct_rt_tol_s": 3.0, "adduct_mz_ppm": 10.0}
    theoretical = adducts.adduct_grouping(frame, runs, {**params, "adduct_null": "theoretical"})
    empirical = adducts.adduct_grouping(frame, runs, params)  # the default
    t, e = labels(theoretical.table), labels(empirical.table)
    assert t["real_na"] == e["real_na"] == "[M+Na]+"
    assert t["chance_na"] == "[M+Na]+"  # the t test takes the matrix effect for a compound
    assert e["chance_na"] is None
    assert empirical.counts["n_decoy_pairs"] >= covariation.MIN_DECOYS
    assert any("empirical null" in note for note in empirical.notes)
    assert theoretical.counts["n_decoy_pairs"] == 0


def test_without_shared_variation_the_empirical_null_changes_nothing_and_unknown_nulls_are_refused():
    frame, runs = matrix_effect_study(3)
    rng = np.random.default_rng(3)
    # remove the matrix effect: every feature varies on its own (the real pair keeps its shared variation)
    own = {c: np.exp(12 + rng.normal(0, 0.6, len(runs))) for c in frame["consensus_id"].to_list()}
    own["real_na"] = frame.filter(pl.col("consensus_id") == "C0_0").select(runs).to_numpy()[0] * 0.3
    frame = frame.with_columns([pl.Series(s, [own[c][j] for c in frame["consensus_id"].to_list()])
                                for j, s in enumerate(runs)])
    t = adducts.adduct_grouping(frame, runs, {"adduct_null": "theoretical"}).table
    e = adducts.adduct_grouping(frame, runs, {}).table
    assert labels(e)["real_na"] == "[M+Na]+"
    assert t.select("compound_group", "adduct").equals(e.select("compound_group", "adduct"))
    with pytest.raises(InputError, match="adduct_null"):
        adducts.adduct_grouping(frame, runs, {"adduct_null": "permuted"})
