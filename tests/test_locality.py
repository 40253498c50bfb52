"""The check that differential hits do not crowd into one m/z x RT region (modelling.locality): a local intensity
effect (hits together, their non-significant neighbours moving the same way) is a warning; specific compounds that
lie close (neighbours unmoved) a note; scattered hits nothing."""

import numpy as np
import polars as pl

from ms2study.modelling.locality import local_cluster


def table(seed: int, hits: list[tuple[float, float, float]], neighbour_shift: float = 0.0) -> pl.DataFrame:
    """4,000 tested features spread over m/z 100-1000 and RT 0-120 s (as dense as a 2-minute stretch of a run),
    statistics ~ N(0, 1), q 0.5; ``hits`` (m/z, RT, log2 fold change) are added at q 0.001; features within 15 Da
    and 30 s of the first hit have their statistic and fold change shifted by ``neighbour_shift``."""
    rng = np.random.default_rng(seed)
    n = 4000
    mz, rt = rng.uniform(100, 1000, n), rng.uniform(0, 120, n)
    stat = rng.normal(0, 1, n)
    if hits:
        near = (np.abs(mz - hits[0][0]) < 15) & (np.abs(rt - hits[0][1]) < 30)
        stat = np.where(near, stat + neighbour_shift, stat)
    frame = pl.DataFrame({"consensus_id": [f"C{i}" for i in range(n)], "mz": mz, "rt_s": rt, "statistic": stat,
                          "log2_fold_change": stat * 0.3, "q_value": np.full(n, 0.5), "tested": np.ones(n, bool)})
    extra = pl.DataFrame({"consensus_id": [f"H{i}" for i in range(len(hits))], "mz": [h[0] for h in hits],
                          "rt_s": [h[1] for h in hits], "statistic": [np.sign(h[2]) * 6.0 for h in hits],
                          "log2_fold_change": [h[2] for h in hits], "q_value": [0.001] * len(hits),
                          "tested": [True] * len(hits)})
    return pl.concat([frame, extra])


def test_hits_in_one_patch_whose_neighbours_move_too_are_a_warning():
    patch = [(238.0 + d, 60.0 + 3 * d, -1.3) for d in range(6)]
    scattered = [(150.0, 5.0, 1.0), (500.0, 100.0, 1.2), (800.0, 115.0, 1.1)]
    result = local_cluster(table(0, patch + scattered, neighbour_shift=-1.0))
    assert result["p_value"] < 0.01 and result["cluster"]["n_groups"] == 6 and result["cluster"]["n_down"] == 6
    assert result["warning"] and "local intensity effect" in result["warning"] and result["note"] is None
    assert result["cluster"]["n_neighbours_moved_with"] > result["cluster"]["n_neighbours"] / 2


def test_close_hits_with_unmoved_neighbours_are_a_note_and_scattered_hits_nothing():
    patch = [(238.0 + d, 60.0 + 3 * d, 1.3) for d in range(5)]
    close = local_cluster(table(1, patch + [(800.0, 110.0, 1.0)]))
    assert close["p_value"] < 0.01 and close["warning"] is None and "specific compounds" in close["note"]
    scattered = [(150.0 + 90 * i, 5.0 + 15 * i, 1.0) for i in range(8)]
    spread = local_cluster(table(2, scattered))
    assert spread["warning"] is None and spread["note"] is None and spread["close_pairs"] == 0
    assert local_cluster(table(3, scattered[:2])) is None  # too few hits to judge


def test_one_compounds_ions_count_once():
    # six significant features of ONE compound group (isotopes, adducts) are one hit, not a cluster
    hits = [(238.0 + d, 60.0, 1.3) for d in range(6)] + [(500.0, 5.0, 1.0), (800.0, 115.0, 1.1)]
    frame = table(4, hits, neighbour_shift=1.0)
    grouped = frame.with_columns(compound_group=pl.when(pl.col("consensus_id").is_in([f"H{i}" for i in range(6)]))
                                 .then(pl.lit("G1")).otherwise(pl.col("consensus_id")))
    result = local_cluster(grouped)
    assert result["n_groups_significant"] == 3 and result["warning"] is None
    ungrouped = local_cluster(frame)  # ungrouped, the same features look like six hits in a patch
    assert ungrouped["p_value"] < 0.01 and ungrouped["cluster"]["n_groups"] == 6


def three_arm_study(seed: int, neighbour_shift: float) -> pl.DataFrame:
    """The differential table of a 24-sample three-arm study (8 a arm): 400 features over m/z 100-1000 and RT
    0-600 s; in a zone at m/z 300-330, RT 200-240 s, 6 features 1.5 log2 lower in disease_A and 14 more moved by
    ``neighbour_shift`` log2 there (a local suppression when negative; 0: specific compounds)."""
    from ms2study.modelling.differential import differential_with_values

    rng = np.random.default_rng(seed)
    arm = np.repeat(["control", "disease_A", "disease_B"], 8)
    n_other = 380
    mz = np.concatenate([np.linspace(302, 328, 20), rng.uniform(100, 1000, n_other)])
    rt = np.concatenate([np.linspace(205, 235, 20), rng.uniform(0, 600, n_other)])
    away = ~((np.abs(mz - 315) < 40) & (np.abs(rt - 220) < 60))
    away[:20] = True
    mz, rt = mz[away], rt[away]
    log2 = rng.normal(16, 0.3, (mz.size, 24))
    in_a = arm == "disease_A"
    hits = np.zeros(mz.size, dtype=bool)
    hits[[0, 3, 7, 10, 14, 17]] = True  # spread over the zone, the other 14 of its features among them
    zone = np.arange(mz.size) < 20
    log2[np.ix_(hits, in_a)] -= 1.5
    log2[np.ix_(zone & ~hits, in_a)] += neighbour_shift
    samples = [f"S{j:02d}" for j in range(24)]
    matrix = pl.DataFrame({"consensus_id": [f"C{i:03d}" for i in range(mz.size)], "mz": mz, "rt_s": rt,
                           **{s: 2.0 ** log2[:, j] for j, s in enumerate(samples)}})
    sheet = pl.DataFrame({"sample_id": samples, "arm": arm.tolist()})
    table, _, _ = differential_with_values(matrix, sheet, {"column": "arm", "type": "multiclass"},
                                           n_permutations=0)
    return table


def test_a_local_effect_in_one_arm_of_a_multiclass_outcome_is_a_warning():
    """A trial: an F has no sign, so the neighbourhood check counted the neighbours' F statistics as "not moved"
    (0 of 11, sign test p = 1) and the note called a local suppression in one arm "specific compounds". The
    neighbours now count when they share the hits' extreme class (lowest in disease_A)."""
    suppressed = local_cluster(three_arm_study(0, -0.25))
    cluster = suppressed["cluster"]
    assert cluster["shared_extreme"] == {"column": "lowest_class", "class": "disease_A"}
    assert cluster["n_neighbours"] >= 10 and cluster["n_neighbours_moved_with"] >= 0.75 * cluster["n_neighbours"]
    assert suppressed["warning"] and "local intensity effect" in suppressed["warning"]
    assert "6 lowest in disease_A" in suppressed["warning"]
    specific = local_cluster(three_arm_study(0, 0.0))
    assert specific["warning"] is None and "specific compounds" in specific["note"]
    assert specific["cluster"]["n_neighbours_moved_with"] < 0.6 * specific["cluster"]["n_neighbours"]
