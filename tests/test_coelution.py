"""Hit groups that may be one compound (modelling.coelution): trial F's batch study counted nicotinamide's NH3 loss,
0.2 s from its [M+H]+ and following it at r 0.99 within the groups, as a seventh changed compound where six were
planted."""

from __future__ import annotations

import numpy as np
import polars as pl

from ms2study.modelling.coelution import class_residuals, coeluting_hit_groups


def _study(seed: int = 0, n: int = 24, kind: str = "binary"):
    rng = np.random.default_rng(seed)
    y = (np.arange(n) >= n // 2).astype(int) if kind == "binary" else rng.uniform(0, 10, n)
    effect = 1.1 * y if kind == "binary" else 0.15 * y  # ln units: 3x between the groups, 4.5x over the score
    a = 14 + effect + rng.normal(0, 0.4, n)             # the compound, its own variation within the groups
    b = 13 + effect + rng.normal(0, 0.4, n)             # another changed compound co-eluting with it
    c = 12 + effect + rng.normal(0, 0.4, n)             # a changed compound eluting elsewhere
    logs = {"C1": a, "C2": a + np.log(0.3) + rng.normal(0, 0.03, n),  # the compound's [M+Na]+, grouped with it
            "C3": a + np.log(0.1) + rng.normal(0, 0.05, n),           # its NH3 loss: a group of its own
            "C4": b, "C5": c}
    ids = [f"S{i:02d}" for i in range(n)]
    matrix = pl.DataFrame({"consensus_id": list(logs), **{s: [float(np.exp(logs[c][k])) for c in logs]
                                                          for k, s in enumerate(ids)}})
    table = pl.DataFrame({"consensus_id": list(logs), "compound_group": ["G1", "G1", "G2", "G3", "G4"],
                          "rt_s": [300.0, 300.1, 300.2, 300.6, 420.0], "q_value": [0.001] * 5})
    return table, matrix, ids, y


def test_a_fragment_following_its_compound_is_found_and_a_co_eluting_compound_is_not():
    table, matrix, ids, y = _study()
    found = coeluting_hit_groups(table, matrix, ids, y, "binary")
    assert found is not None and [(p["group"], p["partner_group"]) for p in found["pairs"]] == [("G1", "G2")]
    assert found["pairs"][0]["r"] > 0.95 and found["pairs"][0]["n_samples"] == 24
    assert found["n_hit_groups"] == 4 and found["n_compounds_at_least"] == 3
    # raw values would tie the co-eluting changed compound too: its correlation comes from the outcome's effect
    logs = np.log(matrix.select(ids).to_numpy())
    assert np.corrcoef(logs[0], logs[3])[0, 1] > 0.7
    assert abs(np.corrcoef(*class_residuals(logs[[0, 3]], y, "binary"))[0, 1]) < 0.6
    # a continuous outcome: residuals from the line on the outcome
    table, matrix, ids, y = _study(1, kind="continuous")
    found = coeluting_hit_groups(table, matrix, ids, y, "continuous")
    assert found is not None and [(p["group"], p["partner_group"]) for p in found["pairs"]] == [("G1", "G2")]


def test_nothing_without_two_hit_groups_or_when_the_fragment_is_not_a_hit():
    table, matrix, ids, y = _study()
    assert coeluting_hit_groups(table.with_columns(q_value=pl.Series([0.001, 0.001, 0.3, 0.3, 0.3])), matrix, ids,
                                y, "binary") is None
    far = table.with_columns(rt_s=pl.Series([300.0, 300.1, 302.0, 300.6, 420.0]))  # 2 s apart: another elution
    assert coeluting_hit_groups(far, matrix, ids, y, "binary") is None
    few = matrix.with_columns(*[pl.lit(None, dtype=pl.Float64).alias(s) for s in ids[:20]])  # 4 samples measure it
    assert coeluting_hit_groups(table, few, ids, y, "binary") is None


def test_null_studies_rarely_pair_independent_co_eluting_hits():
    """Distinct compounds eluting together, each varying on its own within the groups: paired in under 1 % of 200
    simulated studies of 12 to 24 samples."""
    paired = 0
    for seed in range(200):
        table, matrix, ids, y = _study(seed, n=(12, 16, 24)[seed % 3])
        found = coeluting_hit_groups(table.filter(pl.col("consensus_id") != "C3"), matrix, ids, y, "binary")
        paired += found is not None
    assert paired / 200 < 0.01


def test_a_factor_every_feature_of_a_sample_shares_does_not_merge_distinct_compounds():
    """Trial J: with a per-sample factor left by normalisation (sd 0.7 in ln), two independent co-eluting changed
    compounds merged in 76 % of studies. The factor, estimated on the features measured everywhere, is taken out
    first: merged in under 5 % of 60 such studies, while the fragment is still found in all."""
    merged = found_fragment = 0
    for seed in range(60):
        table, matrix, ids, y = _study(seed)
        rng = np.random.default_rng(1000 + seed)
        factor = rng.normal(0, 0.7, len(ids))
        background = pl.DataFrame({"consensus_id": [f"B{j}" for j in range(200)],
                                   **{s: np.exp(rng.normal(12, 1, 200) + factor[k]) for k, s in enumerate(ids)}})
        shifted = matrix.with_columns([pl.col(s) * float(np.exp(factor[k])) for k, s in enumerate(ids)])
        found = coeluting_hit_groups(table, pl.concat([shifted, background]), ids, y, "binary")
        groups = {(p["group"], p["partner_group"]) for p in found["pairs"]} if found else set()
        merged += ("G1", "G3") in groups
        found_fragment += ("G1", "G2") in groups
    assert merged / 60 < 0.05 and found_fragment == 60
