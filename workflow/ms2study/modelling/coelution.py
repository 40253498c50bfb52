"""Differential hits that may be one compound: hit compound groups whose features co-elute and whose intensities
follow each other within the outcome's classes.

The adduct and isotope grouping (``correction.adducts``) joins a compound's listed ions; an in-source fragment other
than a water loss (NH3, CO2, a conjugate's loss) or an ion it does not list stays a compound group of its own, and
when the compound changes with the outcome that ion is a hit too, counted as another changed compound (trial F: a
batch study's nicotinamide, 4 hit features, and its NH3 loss at m/z 106.03, 0.2 s apart, read as 7 changed compounds
where 6 were planted). Such ions share the compound's elution and are a fixed share of it in every sample, so their
log intensities follow each other within each class (residual Pearson r 0.986-0.989 over 24 samples in that study),
while two compounds that merely co-elute and both change with the outcome vary apart within the classes: correlating
residuals, not raw values, keeps the outcome's own effect from making two changed compounds look alike, and each
sample's shared factor (``sample_factor``: dilution left after normalisation) is taken out first. The
thresholds are those of the in-source check (``identification.insource``: r >= 0.9, apexes within 1 s, 5 or more
samples). A flag, not a merge: the table and the counts stay as tested, and the report says how many fewer
compounds the hits may be. Imports numpy and polars only.
"""

from __future__ import annotations

import numpy as np
import polars as pl

COELUTE_S = 1.0      # consensus retention times this close: one elution (identification.insource.APEX_WINDOW_S)
MIN_R = 0.9          # residual log intensities correlated at least this much (insource.CONFIRM_MIN_R)
MIN_SAMPLES = 5      # samples measuring both, at least


def class_residuals(logs: np.ndarray, y: np.ndarray, kind: str) -> np.ndarray:
    """Features x samples log intensities (NaN: not measured) minus what the outcome explains: each class's mean for
    a binary or multiclass outcome, the least-squares line on the outcome for a continuous one (per feature, over its
    measured samples). Shape as ``logs``."""
    out = np.full_like(logs, np.nan, dtype=np.float64)
    y = np.asarray(y)
    for i, row in enumerate(np.asarray(logs, dtype=np.float64)):
        ok = np.isfinite(row)
        if kind == "continuous":
            x = y.astype(np.float64)
            if ok.sum() >= 3 and np.std(x[ok]) > 0:
                slope, intercept = np.polyfit(x[ok], row[ok], 1)
                out[i, ok] = row[ok] - (intercept + slope * x[ok])
            continue
        for label in np.unique(y):
            members = ok & (y == label)
            if members.any():
                out[i, members] = row[members] - row[members].mean()
    return out


def sample_factor(matrix: pl.DataFrame, sample_ids: list[str]) -> np.ndarray:
    """Per sample, the median over the features measured in every sample of (its log intensity minus the feature's
    mean): a factor every feature of a sample shares (dilution, injection volume) that normalisation left. Taken out
    before the residuals are correlated, since it ties any two features of a sample together (a trial: two
    independent compounds merged in 27 % of studies at a shared sd of 0.5, 76 % at 0.7). Zeros with fewer than 20
    such features. Shape (len(sample_ids),)."""
    values = matrix.select([pl.col(s).cast(pl.Float64) for s in sample_ids]).to_numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        logs = np.where(values > 0, np.log(np.where(values > 0, values, 1.0)), np.nan)
    complete = logs[np.isfinite(logs).all(axis=1)]
    if complete.shape[0] < 20:
        return np.zeros(len(sample_ids))
    return np.median(complete - complete.mean(axis=1, keepdims=True), axis=0)


def coeluting_hit_groups(table: pl.DataFrame, matrix: pl.DataFrame, sample_ids: list[str], y: np.ndarray,
                         kind: str, significance: float = 0.05) -> dict | None:
    """The hit compound groups (``q_value`` < ``significance`` in the differential ``table``, which needs
    consensus_id, compound_group, rt_s) of which some feature co-elutes (``COELUTE_S``) with a feature of another
    hit group and follows it within the classes (``class_residuals``; Pearson r >= ``MIN_R`` over at least
    ``MIN_SAMPLES`` samples measuring both). ``matrix``: the tested feature matrix (consensus_id and one column per
    sample, positive intensities, null or <= 0 when not measured); ``sample_ids``, ``y``: the tested samples and
    their encoded outcome, ``kind`` binary | multiclass | continuous.

    Returns None when no pair qualifies, else {"pairs": [{consensus_id, partner_id, group, partner_group, rt_diff_s,
    r, n_samples}] (best r per pair of groups, largest first), "n_hit_groups": hit groups, "n_compounds_at_least":
    hit groups once each connected set of such groups counts as one compound}."""
    needed = {"consensus_id", "compound_group", "rt_s", "q_value"}
    if not needed <= set(table.columns) or kind not in ("binary", "multiclass", "continuous"):
        return None
    hits = table.filter((pl.col("q_value") < significance).fill_null(False) & pl.col("compound_group").is_not_null()
                        & pl.col("rt_s").is_not_null())
    if hits.select(pl.col("compound_group").n_unique()).item() < 2:
        return None
    ids = hits["consensus_id"].cast(pl.Utf8).to_list()
    rows = matrix.with_columns(pl.col("consensus_id").cast(pl.Utf8)).filter(pl.col("consensus_id").is_in(ids))
    values = {r[0]: np.asarray(r[1:], dtype=np.float64) for r in
              rows.select(["consensus_id", *sample_ids]).fill_null(np.nan).iter_rows()}
    ids = [c for c in ids if c in values]
    if len(ids) < 2:
        return None
    raw = np.vstack([values[c] for c in ids])
    logs = np.where(np.isfinite(raw) & (raw > 0), np.log(np.where(raw > 0, raw, 1.0)), np.nan)
    residuals = class_residuals(logs - sample_factor(matrix, sample_ids)[None, :], y, kind)
    info = hits.select(pl.col("consensus_id").cast(pl.Utf8), "compound_group", "rt_s")
    group = dict(zip(info["consensus_id"], info["compound_group"]))
    rt = dict(zip(info["consensus_id"], info["rt_s"]))
    best: dict[tuple[str, str], dict] = {}
    by_rt = sorted(range(len(ids)), key=lambda k: rt[ids[k]])  # only neighbours in RT are compared
    for pos, a in enumerate(by_rt):
        for b in by_rt[pos + 1:]:
            ca, cb = ids[a], ids[b]
            if rt[cb] - rt[ca] > COELUTE_S:
                break
            if group[ca] == group[cb]:
                continue
            both = np.isfinite(residuals[a]) & np.isfinite(residuals[b])
            if both.sum() < MIN_SAMPLES or np.std(residuals[a][both]) == 0 or np.std(residuals[b][both]) == 0:
                continue
            r = float(np.corrcoef(residuals[a][both], residuals[b][both])[0, 1])
            key = tuple(sorted((group[ca], group[cb])))
            if r >= MIN_R and (key not in best or r > best[key]["r"]):
                best[key] = {"consensus_id": ca, "partner_id": cb, "group": group[ca], "partner_group": group[cb],
                             "rt_diff_s": round(abs(rt[ca] - rt[cb]), 3), "r": round(r, 4),
                             "n_samples": int(both.sum())}
    if not best:
        return None
    parent = {g: g for g in set(group.values())}

    def root(g: str) -> str:
        while parent[g] != g:
            parent[g] = parent[parent[g]]
            g = parent[g]
        return g

    for a, b in best:
        parent[root(a)] = root(b)
    n_groups = len(parent)
    return {"pairs": sorted(best.values(), key=lambda p: -p["r"]), "n_hit_groups": n_groups,
            "n_compounds_at_least": len({root(g) for g in parent})}
