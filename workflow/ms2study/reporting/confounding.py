"""Outcomes of one study that go together: a caution when two configured outcomes are associated over the study
samples, so that what differs with one may be the other (a fresh user's demo: cases older than controls, mean age
65.2 against 47.4, and the vitamins planted for the group came out among the age findings, with no word of it);
and a caution when a configured covariate follows an outcome so closely that adjusting for it leaves the groups
little overlap (``overlap_cautions``). May import ``ms2study.core``, ``ms2study.modelling`` and ``reporting.html``.
"""

from __future__ import annotations

from itertools import combinations

import numpy as np
import polars as pl
from scipy import stats

from ms2study.core.missing import is_missing
from ms2study.modelling.outcomes import covariate_matrix
from ms2study.reporting.html import DOUBT, Caution, esc

# Two outcomes whose association over the study samples has p below this are a caution.
ASSOCIATION_ALPHA = 0.05


def _values(sheet: pl.DataFrame, spec: dict) -> pl.Series:
    column = sheet[spec["column"]].cast(pl.Utf8).str.strip_chars()
    if spec.get("type") == "continuous":
        return column.cast(pl.Float64, strict=False)
    return column.replace("", None)


def association(sheet: pl.DataFrame, a: dict, b: dict) -> tuple[float, str] | None:
    """(p, what was tested, HTML) of the association of outcomes ``a`` and ``b`` (``models.outcomes`` entries:
    column, type) over the rows of ``sheet`` (the study samples) that have both values: Pearson's correlation test
    for two continuous outcomes, a one-way ANOVA (Welch's t for two classes) of the continuous one over the classes
    of the other, and Pearson's chi-square test of independence for two categorical ones (scipy.stats). None with
    fewer than 4 such samples, a class of fewer than 2, or a constant value."""
    x, y = _values(sheet, a), _values(sheet, b)
    both = pl.DataFrame({"x": x, "y": y}).drop_nulls()
    if both.height < 4:
        return None
    cont_a, cont_b = a.get("type") == "continuous", b.get("type") == "continuous"
    if cont_a and cont_b:
        u, v = both["x"].to_numpy(), both["y"].to_numpy()
        if np.std(u) == 0 or np.std(v) == 0:
            return None
        r, p = stats.pearsonr(u, v)
        return float(p), f"Pearson r {r:.2f} over {both.height} samples, p {p:.2g}"
    if cont_a or cont_b:
        value, label = ("x", "y") if cont_a else ("y", "x")
        name, other = (a, b) if cont_a else (b, a)
        groups = {str(k[0]): g[value].to_numpy() for k, g in both.group_by(label, maintain_order=True)}
        if len(groups) < 2 or min(len(g) for g in groups.values()) < 2:
            return None
        if len(groups) == 2:
            (ka, ga), (kb, gb) = sorted(groups.items())
            t, p = stats.ttest_ind(ga, gb, equal_var=False)
            what = (f"mean {esc(name['column'])} {np.mean(ga):.3g} in {esc(ka)} against {np.mean(gb):.3g} in "
                    f"{esc(kb)} (Welch's t, p {p:.2g})")
        else:
            f, p = stats.f_oneway(*groups.values())
            means = ", ".join(f"{esc(k)} {np.mean(g):.3g}" for k, g in sorted(groups.items()))
            what = f"mean {esc(name['column'])} by {esc(other['column'])}: {means} (ANOVA, p {p:.2g})"
        return (float(p), what) if np.isfinite(p) else None
    table = both.group_by(["x", "y"]).len().pivot(
        on="y", index="x", values="len").fill_null(0)
    counts = table.drop("x").to_numpy()
    if counts.shape[0] < 2 or counts.shape[1] < 2:
        return None
    chi2, p, _, _ = stats.chi2_contingency(counts)
    return float(p), f"chi-square test of independence over {both.height} samples, p {p:.2g}"


def association_cautions(sheet: pl.DataFrame, outcomes: list[dict], covariates: list[str]) -> list[Caution]:
    """A caution on both outcomes' findings (``DOUBT``; concerns ``models:`` and ``differential:`` of each) for
    every pair of configured ``outcomes`` associated over ``sheet`` (study samples) at p < ``ASSOCIATION_ALPHA``
    (``association``), unless one is already a covariate (``models: covariates``) of the other's tests. Says what
    to do: add the other as a covariate. Pairs with a column missing from the sheet are skipped."""
    found = []
    specs = [o for o in outcomes if isinstance(o, dict) and o.get("column") in sheet.columns]
    for a, b in combinations(specs, 2):
        if a["column"] in covariates or b["column"] in covariates:
            continue
        tested = association(sheet, a, b)
        if tested is None or tested[0] >= ASSOCIATION_ALPHA:
            continue
        ca, cb = esc(a["column"]), esc(b["column"])
        found.append(Caution(
            f"outcomes <b>{ca}</b> and <b>{cb}</b> go together in the study samples ({tested[1]}): features, "
            f"classes and models that differ with one may reflect the other. To tell them apart, add the other "
            f"outcome as a covariate (<code>models: covariates: [{cb}]</code> adjusts every outcome's tests and "
            f"models for {cb}, {ca}'s own excepted)", DOUBT, f"{a['column']} and {b['column']} go together",
            tuple(f"{s}:{c}" for c in (a["column"], b["column"]) for s in ("models", "differential"))))
    return found


# A covariate this well explained by an outcome (variance inflation factor 1 / (1 - R²) of 5 or more, a common rule
# of thumb for problematic collinearity: James et al. 2013, An Introduction to Statistical Learning, 3.3.3) leaves
# the adjusted comparison little overlap to rest on.
OVERLAP_R2 = 0.8


def explained_share(sheet: pl.DataFrame, outcome: dict, covariate: str) -> tuple[float, str] | None:
    """(share, HTML) of ``covariate``'s variation over the rows of ``sheet`` that the ``outcome`` (a
    ``models.outcomes`` entry) explains: R² (eta² for a categorical outcome: between-class over total sum of
    squares; r² for a continuous one) for a numeric covariate, Cramér's V² (scipy.stats.contingency.association)
    against a categorical outcome for a categorical covariate; None with fewer than 4 rows having both, a constant,
    or a categorical covariate beside a continuous outcome."""
    # read as the tests and models read it (``modelling.outcomes.covariate_matrix``: numbers when every recorded
    # value reads as one, else levels)
    values, names = covariate_matrix(sheet, sheet["sample_id"].cast(pl.Utf8).to_list(), [covariate])
    is_numeric = names == [f"cov:{covariate}"]
    x = (pl.Series(values[:, 0]).fill_nan(None) if is_numeric else
         pl.Series([None if is_missing(v) else str(v).strip() for v in sheet[covariate].to_list()], dtype=pl.Utf8))
    y = _values(sheet, outcome)
    both = pl.DataFrame({"x": x, "y": y}).drop_nulls()
    if both.height < 4 or both["x"].n_unique() < 2 or both["y"].n_unique() < 2:
        return None
    if outcome.get("type") == "continuous":
        if not is_numeric:
            return None
        r = float(np.corrcoef(both["x"].to_numpy(), both["y"].to_numpy())[0, 1])
        return r * r, f"r² {r * r:.2f} over {both.height} samples"
    if is_numeric:
        x = both["x"].to_numpy()
        means = both.group_by("y", maintain_order=True).agg(pl.col("x").mean(), pl.len()).sort("y")
        between = float(sum(n * (m - x.mean()) ** 2 for m, n in zip(means["x"], means["len"])))
        share = between / float(((x - x.mean()) ** 2).sum())
        per_class = ", ".join(f"{esc(str(k))} {m:.3g}" for k, m in zip(means["y"], means["x"]))
        return share, f"R² {share:.2f}; mean {esc(covariate)} {per_class}"
    counts = both.group_by(["x", "y"]).len().pivot(on="y", index="x", values="len").fill_null(0).drop("x")
    v = float(stats.contingency.association(counts.to_numpy(), method="cramer"))
    return v * v, f"Cramér's V² {v * v:.2f} over {both.height} samples"


def overlap_cautions(sheet: pl.DataFrame, outcomes: list[dict], covariates: list[str]) -> list[Caution]:
    """A caution (``DOUBT``; concerns the outcome's ``models:`` and ``differential:``) for every configured covariate
    that an outcome explains to ``OVERLAP_R2`` or more over ``sheet`` (study samples; ``explained_share``): the
    adjustment then compares groups at covariate values few of their samples have (a three-arm trial: age 70, 40
    and 55 by arm, R² 0.95), its effects rest on the straight-line model of the covariate and are imprecise, and
    what differs with the outcome cannot be told from what differs with the covariate."""
    found = []
    for spec in (o for o in outcomes if isinstance(o, dict) and o.get("column") in sheet.columns):
        for covariate in covariates:
            if covariate == spec["column"] or covariate not in sheet.columns:
                continue
            explained = explained_share(sheet, spec, covariate)
            if explained is None or explained[0] < OVERLAP_R2:
                continue
            outcome, name = esc(spec["column"]), esc(covariate)
            found.append(Caution(
                f"covariate <b>{name}</b> follows outcome <b>{outcome}</b> closely ({explained[1]}): adjusted for "
                f"{name}, the tests and models compare the groups at values of {name} few of their samples have, so "
                f"the adjusted effects rest on a straight-line model of {name}, are imprecise, and what differs with "
                f"{outcome} cannot be told from what differs with {name}; a design whose groups overlap in {name} "
                "(or matched samples) is needed to separate them", DOUBT, f"{covariate} follows {spec['column']}",
                (f"models:{spec['column']}", f"differential:{spec['column']}")))
    return found
