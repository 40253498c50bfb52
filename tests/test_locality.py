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
