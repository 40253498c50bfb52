"""What the correction did to the study samples themselves, not only to the pooled QCs it was fitted to: how much of
each feature's variation among the study samples the batch explains, and how strongly intensities follow injection
order, before and after correction (a trial: the report showed the QCs' RSD, 0.203 before and 0.074 after, in-sample
to a QC fit, and for the samples only a PCA to judge by eye).

Both measures are taken over the features measured in every study sample in both matrices (log2 intensities):
the batch's share is the between-batch sum of squares over the total (eta²) per feature, whose median a batch
effect raises and which groups dealt evenly over the batches leave near its chance level, the median of eta² with
no batch effect (a beta distribution with (B - 1) / 2 and (n - B) / 2 degrees of freedom, B batches of n samples);
the order's is |Spearman's rho| of a feature's intensity with the injection order (within batches, each batch's
ranks centred, when there are several), median over features, whose chance level is the median |r| of a null
correlation, about 0.674 / sqrt(n - B) (a half-normal's median; a trial showed that the means stated before sat
above the null medians, 0.174 against 0.151). A correction that raises the order's dependence above chance is
a caution (``order_worsened``): it was fitted at positions the runs were not injected at. Biology the design ties to the batch or the order moves them too: the
section says so. May import ``ms2study.core``, ``ms2study.io`` and the other ``reporting`` modules.
"""

from __future__ import annotations

import numpy as np
import polars as pl
from scipy import stats

from ms2study.reporting.html import DOUBT, Caution, esc

MIN_SAMPLES = 6       # study samples needed for either measure
MIN_FEATURES = 20     # features measured in every study sample, in both matrices


def log2_matrix(matrix: pl.DataFrame, runs: list[str]) -> np.ndarray:
    """features × runs log2 intensities of ``runs`` (columns by id); null, NaN and values <= 0 are NaN."""
    if not runs:
        return np.empty((matrix.height, 0))
    values = np.asarray(matrix.select([pl.col(r).cast(pl.Float64) for r in runs]).to_numpy(), dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(values > 0, np.log2(np.where(values > 0, values, 1.0)), np.nan)


def aligned_log2(raw: pl.DataFrame, corrected: pl.DataFrame, runs: list[str]) -> tuple[list[str], np.ndarray,
                                                                                   np.ndarray]:
    """(consensus ids, raw log2, corrected log2) of the features in both matrices, in the raw matrix's order
    (features x ``runs``)."""
    ids = raw["consensus_id"].cast(pl.Utf8)
    right = corrected.with_columns(pl.col("consensus_id").cast(pl.Utf8)).select("consensus_id", *runs)
    both = pl.DataFrame({"consensus_id": ids}).join(right, on="consensus_id", how="inner", maintain_order="left")
    before = raw.with_columns(pl.col("consensus_id").cast(pl.Utf8)).join(
        both.select("consensus_id"), on="consensus_id", how="semi", maintain_order="left")
    return both["consensus_id"].to_list(), log2_matrix(before, runs), log2_matrix(both, runs)


def batch_share(logs: np.ndarray, batches: list[str]) -> np.ndarray:
    """Per feature (rows of ``logs``, features x samples, no NaN): between-batch over total sum of squares."""
    labels = np.asarray(batches)
    centred = logs - logs.mean(axis=1, keepdims=True)
    total = (centred ** 2).sum(axis=1)
    between = np.zeros(logs.shape[0])
    for b in np.unique(labels):
        members = labels == b
        between += members.sum() * centred[:, members].mean(axis=1) ** 2
    return np.divide(between, total, out=np.zeros_like(total), where=total > 0)


def order_rho(logs: np.ndarray, order: np.ndarray, batches: list[str]) -> np.ndarray:
    """Per feature: |Spearman's rho| of intensity with injection order, ranks centred within each batch."""
    labels = np.asarray(batches)
    ranks_x = np.empty_like(order, dtype=np.float64)
    ranks_y = np.empty_like(logs, dtype=np.float64)
    for b in np.unique(labels):
        members = labels == b
        ranks_x[members] = stats.rankdata(order[members]) - (members.sum() + 1) / 2
        ranks_y[:, members] = stats.rankdata(logs[:, members], axis=1) - (members.sum() + 1) / 2
    x = ranks_x / np.sqrt((ranks_x ** 2).sum())
    norms = np.sqrt((ranks_y ** 2).sum(axis=1))
    return np.abs(np.divide(ranks_y @ x, norms, out=np.zeros(logs.shape[0]), where=norms > 0))


def sample_effects(raw: pl.DataFrame, corrected: pl.DataFrame, roles: pl.DataFrame) -> dict | None:
    """{"n_samples", "n_features", "batch": (before, after, chance) or None, "order": (before, after, chance) or
    None} of the study samples (``roles``: ``io.samplesheet.sample_roles``), medians over the features measured in
    every study sample in both matrices; None with fewer than ``MIN_SAMPLES`` samples or ``MIN_FEATURES`` features,
    or when neither several batches nor injection orders are known."""
    samples = roles.filter(pl.col("sample_type") == "sample")
    ids = [s for s in samples["sample_id"].cast(pl.Utf8).to_list() if s in raw.columns and s in corrected.columns]
    samples = samples.filter(pl.col("sample_id").cast(pl.Utf8).is_in(ids))
    if len(ids) < MIN_SAMPLES:
        return None
    _, before, after = aligned_log2(raw, corrected, ids)
    keep = np.isfinite(before).all(axis=1) & np.isfinite(after).all(axis=1)
    before, after = before[keep], after[keep]
    if before.shape[0] < MIN_FEATURES:
        return None
    batches = [str(b) for b in samples["batch"].to_list()]
    n, sizes = len(ids), pl.Series(batches).value_counts()["count"].to_numpy()
    result: dict = {"n_samples": n, "n_features": int(before.shape[0]), "batch": None, "order": None}
    if len(sizes) > 1 and (sizes >= 2).all():
        result["batch"] = (float(np.median(batch_share(before, batches))),
                           float(np.median(batch_share(after, batches))),
                           float(stats.beta.median((len(sizes) - 1) / 2, (n - len(sizes)) / 2)))
    order = samples["injection_order"]
    if order.null_count() == 0:
        values = order.cast(pl.Float64).to_numpy()
        result["order"] = (float(np.median(order_rho(before, values, batches))),
                           float(np.median(order_rho(after, values, batches))),
                           float(stats.halfnorm.median() / np.sqrt(n - len(sizes))))
    return result if result["batch"] or result["order"] else None


def order_worsened(found: dict | None) -> str | None:
    """A caution (HTML) when the correction made the study samples' intensities follow the injection order more
    than before, by at least half the chance level and to above 1.3 times it (``sample_effects``'s ``order``): a
    drift fitted to the pooled QCs at their sheet positions, applied to samples at positions they were not injected
    at (a trial swapped the sheet's orders: |rho| 0.14 before, 0.24 after, and 21 false hits), or None."""
    if not found or not found.get("order"):
        return None
    before, after, chance = found["order"]
    if after - before < 0.5 * chance or after < 1.3 * chance:
        return None
    return (f"the correction made the study samples' intensities follow the injection order more, not less (median "
            f"|Spearman's rho| {before:.2f} before, {after:.2f} after, about {chance:.2f} by chance): a drift "
            "fitted to the pooled QCs at their positions was applied to samples at positions they were not injected "
            "at? Check the sample sheet's injection_order against the instrument's sequence before reading the "
            "differences")


def sample_effects_part(raw: pl.DataFrame, corrected: pl.DataFrame, roles: pl.DataFrame,
                        warnings: list | None = None) -> str:
    """The section's paragraph on ``sample_effects`` (HTML), or "" when it cannot be measured; ``order_worsened``'s
    caution is appended to ``warnings``."""
    found = sample_effects(raw, corrected, roles)
    worse = order_worsened(found)
    if worse and warnings is not None:
        warnings.append(Caution(worse, DOUBT, "correction raised the order dependence", ("differential", "models")))
    if found is None:
        return ""
    said = []
    if found["batch"]:
        b, a, chance = found["batch"]
        said.append(f"the batch explains a median {100 * b:.0f} % of a feature's variation before correction and "
                    f"{100 * a:.0f} % after (about {100 * chance:.0f} % by chance with these batch sizes)")
    if found["order"]:
        b, a, chance = found["order"]
        said.append(f"intensities follow the injection order with a median |Spearman's rho| of {b:.2f} before and "
                    f"{a:.2f} after (about {chance:.2f} by chance)")
    return (f"<p><b>On the study samples</b> ({found['n_samples']} samples, the {found['n_features']} features "
            f"measured in all of them, not the QCs the correction was fitted to): {esc('; ').join(said)}. What is "
            "left above chance after correction is a batch or order effect the correction did not remove, or "
            "biology that the design ties to the batches or the run order (check the outcome's spread over them). "
            "The samples' own differences dilute these numbers: a drift that moves every feature alike can show "
            "only a small |rho| beside large biological variation; the QC section's RSDs measure the drift "
            "itself.</p>")  # trial AU: |rho| 0.21 before correction where the measurement error alone followed at 0.97
