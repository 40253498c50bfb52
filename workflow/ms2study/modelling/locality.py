"""Do a study's differential hits crowd into one corner of the run? A local intensity effect (ion suppression by a
co-eluting matrix component, an interference, a zone of the run that varied between injections) moves every ion in
a small m/z x retention-time region together. When it happens to differ between the groups, each of those ions is a
"significant" feature, and Benjamini-Hochberg counts them as independent findings although they are one event; on a
spike-in study of a real Q Exactive run whose simulated variation moved neighbouring ions together (the simulator
until session 13), 6 of 11 hits at q < 0.05 were such neighbours (m/z 237-241, RT 267-285 s).

``local_cluster`` tests whether the significant compound groups lie closer together than as many tested ones drawn
at random: the statistic is the number of significant pairs within ``LOCAL_MZ_DA`` and ``LOCAL_RT_S`` of each other
(a fixed-window count, as Ripley's K-function counts neighbours within a distance; Ripley 1976, J Appl Probab
13:255), its null the same count for random sets of tested compound groups of the same size (Monte Carlo test,
Besag & Diggle 1977, Appl Stat 26:327), so the run's own density of features is allowed for. One compound's isotope
and adduct features count once (its lowest-q feature stands for the group). A set of compounds of one chemical
class that changes together may also be close in mass and retention, and so are one compound's ions when grouping
missed them. What tells a local effect from those is the cluster's neighbourhood: a local effect also moves the
tested features around the cluster that did not reach significance, specific compounds leave them alone. So the
features not significant within half the window of the cluster's bounding box are counted by the sign of their
test statistic; a one-sided sign test (binomial, ``scipy.stats.binomtest``) of "more of them moved the cluster's way
than half" at ``ALPHA`` makes the cluster a warning (a local intensity effect); otherwise it is a note (close hits
whose neighbours stayed put). A multiclass outcome's F has no sign: there a neighbour moved with the cluster when it shares the extreme class
the cluster's hits share (e.g. lowest in one arm), tested against the share of the study's other non-significant
features with that class there (binomial). On the spike-in study above, 49 of 67 neighbours moved down with the 6 hits; on a
TripleTOF spike-in study whose planted compounds co-elute, 3 of 14 moved with them. Imports nothing of ms2study.
"""

from __future__ import annotations

import numpy as np
import polars as pl
from scipy import stats
from scipy.sparse.csgraph import connected_components

LOCAL_MZ_DA = 10.0   # neighbours: within this m/z distance (a local effect spans a few Da: isotopes, co-eluting ions)
LOCAL_RT_S = 20.0    # and this retention-time distance (about one to a few chromatographic peak widths)
N_DRAWS = 999        # random sets of the Monte Carlo null
ALPHA = 0.01         # warn below this Monte Carlo p-value
MIN_HITS = 3         # fewer significant compound groups: nothing to test
MIN_CLUSTER = 3      # and the largest cluster must hold at least this many groups
MIN_NEIGHBOURS = 5   # fewer non-significant neighbours: the neighbourhood cannot be judged (a note, no warning)


def _close_pairs(mz: np.ndarray, rt: np.ndarray) -> np.ndarray:
    """Boolean (k x k) matrix of pairs within LOCAL_MZ_DA and LOCAL_RT_S, the diagonal false."""
    close = (np.abs(mz[:, None] - mz[None, :]) <= LOCAL_MZ_DA) & (np.abs(rt[:, None] - rt[None, :]) <= LOCAL_RT_S)
    np.fill_diagonal(close, False)
    return close


def _largest_component(close: np.ndarray) -> np.ndarray:
    """Indices of the largest connected component of the neighbour graph ``close`` (ties: the first found;
    ``scipy.sparse.csgraph.connected_components``)."""
    _, label = connected_components(close, directed=False)
    return np.flatnonzero(label == int(np.argmax(np.bincount(label))))


def _shared_extreme(rows: pl.DataFrame) -> tuple[str, str] | None:
    """The extreme the cluster's hits of a multiclass outcome share most: ("lowest_class" or "highest_class", the
    class most of them have there; the more common of the two); None without those columns or values."""
    best = None
    for column in ("lowest_class", "highest_class"):
        if column not in rows.columns or rows[column].is_null().all():
            continue
        counts = rows[column].drop_nulls().value_counts(sort=True)
        label, count = counts[0, column], int(counts[0, "count"])
        if best is None or count > best[2]:
            best = (column, label, count)
    return (best[0], best[1]) if best else None


def local_cluster(table: pl.DataFrame, significance: float = 0.05, seed: int = 0) -> dict | None:
    """The locality test (module docstring) on a differential table (``modelling.differential.DIFFERENTIAL``: needs
    ``consensus_id``, ``mz``, ``rt_s``, ``q_value``, ``tested``; ``compound_group`` and ``log2_fold_change`` or
    ``log2_effect_per_unit`` used when present). Returns None with fewer than ``MIN_HITS`` significant compound
    groups (q < ``significance``) or without m/z and RT; else a dict: ``n_groups_significant``, ``close_pairs``
    (observed), ``close_pairs_expected`` (mean of the null), ``p_value`` (Monte Carlo, (1 + #null >= observed) /
    (1 + draws), ``N_DRAWS`` draws, fewer above ~450 hits), ``cluster`` (the largest group of neighbours:
    consensus ids, m/z and RT ranges, counts up and down, and when judged its neighbourhood: ``n_neighbours``,
    ``n_neighbours_moved_with``, ``neighbours_sign_p``; a multiclass outcome, whose F has no sign, judges the
    neighbours by the extreme class its hits share, ``shared_extreme``, against the study's other features),
    ``warning`` (a sentence when the hits cluster, p < ALPHA, and at least MIN_NEIGHBOURS neighbours moved with them
    by the sign test at ALPHA) and ``note`` (a sentence when they cluster but the neighbourhood does not follow; both
    None when they do not cluster or the cluster holds fewer than MIN_CLUSTER). Needs ``statistic`` for the
    neighbourhood."""
    tested = table.filter(pl.col("tested").fill_null(False) & pl.col("mz").is_not_null()
                          & pl.col("rt_s").is_not_null() & pl.col("q_value").is_not_null())
    effect = next((c for c in ("log2_fold_change", "log2_effect_per_unit") if c in tested.columns
                   and tested[c].is_not_null().any()), None)
    group = pl.coalesce("compound_group", "consensus_id") if "compound_group" in tested.columns \
        else pl.col("consensus_id")
    groups = (tested.with_columns(group.alias("_group")).sort("q_value", "consensus_id")
              .unique("_group", keep="first", maintain_order=True))
    hit = (groups["q_value"] < significance).to_numpy()
    k, n = int(hit.sum()), groups.height
    if k < MIN_HITS or n <= k:
        return None
    mz, rt = groups["mz"].to_numpy().astype(np.float64), groups["rt_s"].to_numpy().astype(np.float64)
    close = _close_pairs(mz[hit], rt[hit])
    observed = int(close.sum() // 2)
    rng = np.random.default_rng(seed)
    draws = max(99, min(N_DRAWS, int(2e8 // (k * k))))  # fewer draws where the hits are thousands (time bound)
    null = np.empty(draws)
    for d in range(draws):
        pick = rng.choice(n, k, replace=False)
        null[d] = _close_pairs(mz[pick], rt[pick]).sum() // 2
    p = float((1 + (null >= observed).sum()) / (1 + draws))
    members = _largest_component(close)
    rows = groups.filter(pl.Series(hit))[members.tolist()]
    up = int((rows[effect] > 0).sum()) if effect else 0
    cluster = {"consensus_ids": rows["consensus_id"].to_list(), "n_groups": rows.height,
               "mz_range": [round(float(rows["mz"].min()), 4), round(float(rows["mz"].max()), 4)],
               "rt_s_range": [round(float(rows["rt_s"].min()), 1), round(float(rows["rt_s"].max()), 1)],
               "n_up": up, "n_down": rows.height - up if effect else 0}
    out = {"n_groups_significant": k, "n_groups_tested": n, "close_pairs": observed,
           "close_pairs_expected": round(float(null.mean()), 3), "p_value": p, "cluster": cluster,
           "warning": None, "note": None}
    if p >= ALPHA or rows.height < MIN_CLUSTER:
        return out
    quiet = pl.col("q_value") >= significance
    around = (pl.col("mz").is_between(cluster["mz_range"][0] - LOCAL_MZ_DA / 2,
                                      cluster["mz_range"][1] + LOCAL_MZ_DA / 2)
              & pl.col("rt_s").is_between(cluster["rt_s_range"][0] - LOCAL_RT_S / 2,
                                          cluster["rt_s_range"][1] + LOCAL_RT_S / 2))
    extreme = None if effect else _shared_extreme(rows)
    if extreme is not None:
        # a multiclass outcome: an F has no sign; the cluster's hits share an extreme class (e.g. all lowest in
        # disease_A), and a neighbour moved with them when it has that class at that extreme too, against the share
        # of the study's other non-significant features that do (the chance rate; 1 / classes when balanced)
        column, label = extreme
        others = tested.filter(quiet & pl.col(column).is_not_null())
        base = float((others[column] == label).mean()) if others.height else 0.0
        near = others.filter(around)[column]
        moved, n_near = int((near == label).sum()), near.len()
        sign_p = float(stats.binomtest(moved, n_near, base, alternative="greater").pvalue) \
            if n_near and 0.0 < base < 1.0 else 1.0
        side = "lowest" if column == "lowest_class" else "highest"
        direction = f"{int((rows[column] == label).sum())} {side} in {label}"
        neighbours = (f"{moved} of the {n_near} features around them that are not significant are also {side} in "
                      f"{label}, where {100 * base:.0f} % of the study's other such features are (binomial p = "
                      f"{sign_p:.2g})")
        cluster.update(shared_extreme={"column": column, "class": label})
    else:
        way = 1.0 if up * 2 >= rows.height else -1.0
        statistic = tested.filter(quiet & pl.col("statistic").is_not_null() & around)["statistic"].to_numpy()
        moved, n_near = int((np.sign(statistic) == way).sum()), int(statistic.size)
        sign_p = float(stats.binomtest(moved, n_near, 0.5, alternative="greater").pvalue) if n_near else 1.0
        direction = f"{cluster['n_down']} down, {up} up"
        neighbours = (f"{moved} of the {n_near} features around them that are not significant moved the same "
                      f"way (sign test p = {sign_p:.2g})")
    cluster.update(n_neighbours=n_near, n_neighbours_moved_with=moved, neighbours_sign_p=sign_p)
    where = (f"{rows.height} of the {k} significant compound groups lie together at m/z "
             f"{cluster['mz_range'][0]:.2f}-{cluster['mz_range'][1]:.2f} and RT {cluster['rt_s_range'][0]:.0f}-"
             f"{cluster['rt_s_range'][1]:.0f} s ({direction}; "
             f"{', '.join(cluster['consensus_ids'][:8])}{' ...' if rows.height > 8 else ''}): {observed} close pairs "
             f"(within {LOCAL_MZ_DA:g} Da and {LOCAL_RT_S:g} s) where random sets of as many tested groups have "
             f"{null.mean():.1f} (p = {p:.3g})")
    if n_near >= MIN_NEIGHBOURS and sign_p < ALPHA:
        out["warning"] = (f"{where}, and {neighbours}: a local intensity effect (ion suppression, an interference, a "
                          "zone of the run that differed between the groups) moves neighbours together, and the "
                          "q-values do not allow for it. Inspect these features' peaks before counting them as "
                          "separate findings.")
    else:
        out["note"] = (f"{where}; {neighbours}, as expected of specific compounds (e.g. of one class, or one "
                       "compound's ions) rather than of a local intensity effect.")
    return out
