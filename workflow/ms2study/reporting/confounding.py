"""Outcomes of one study that go together: a caution when two configured outcomes are associated over the study
samples, so that what differs with one may be the other (a fresh user's demo: cases older than controls, mean age
65.2 against 47.4, and the vitamins planted for the group came out among the age findings, with no word of it).
May import ``ms2study.core``, ``ms2study.modelling`` and ``reporting.html``.
"""

from __future__ import annotations

from itertools import combinations

import numpy as np
import polars as pl
from scipy import stats

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
