"""Outcomes of one study that go together: a caution when two configured outcomes are associated over the study
samples, so that what differs with one may be the other (a fresh user's demo: cases older than controls, mean age
65.2 against 47.4, and the vitamins planted for the group came out among the age findings, with no word of it);
and a caution when a configured covariate follows an outcome so closely that adjusting for it leaves the groups
little overlap (``overlap_cautions``); and a caution when an outcome follows a sheet column that is neither (the batch,
the injection order, a source run: ``design_cautions``). May import ``ms2study.core``, ``ms2study.io``,
``ms2study.modelling`` and ``reporting.html``.
"""

from __future__ import annotations

from itertools import combinations

import numpy as np
import polars as pl
from scipy import stats

from ms2study.core.missing import is_missing
from ms2study.io.samplesheet import ACQUISITION_COLUMNS
from ms2study.modelling.outcomes import covariate_matrix
from ms2study.modelling.subjects import SUBJECT_COLUMN
from ms2study.reporting.html import DOUBT, Caution, esc

# Two outcomes whose association over the study samples has p below this are a caution.
ASSOCIATION_ALPHA = 0.05


def _values(sheet: pl.DataFrame, spec: dict) -> pl.Series:
    column = sheet[spec["column"]].cast(pl.Utf8).str.strip_chars()
    if spec.get("type") == "continuous":
        return column.cast(pl.Float64, strict=False)
    return column.replace("", None)


def _levels(values: list) -> pl.Series:
    return pl.Series([None if is_missing(v) else str(v).strip() for v in values], dtype=pl.Utf8)


def contingency(x: pl.Series, y: pl.Series) -> np.ndarray:
    """Counts of each (x, y) pair of values: levels of ``x`` x levels of ``y`` (numpy: a pivot named its columns by
    the values, and a class called 'x' collided with the index column, a trial's crash)."""
    x_levels, x_index = np.unique(np.asarray(x.cast(pl.Utf8).to_list(), dtype=object).astype(str), return_inverse=True)
    y_levels, y_index = np.unique(np.asarray(y.cast(pl.Utf8).to_list(), dtype=object).astype(str), return_inverse=True)
    counts = np.zeros((len(x_levels), len(y_levels)), dtype=np.int64)
    np.add.at(counts, (x_index, y_index), 1)
    return counts


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
            p = stats.ttest_ind(ga, gb, equal_var=False).pvalue
            what = (f"mean {esc(name['column'])} {np.mean(ga):.3g} in {esc(ka)} against {np.mean(gb):.3g} in "
                    f"{esc(kb)} (Welch's t, p {p:.2g})")
        else:
            f, p = stats.f_oneway(*groups.values())
            means = ", ".join(f"{esc(k)} {np.mean(g):.3g}" for k, g in sorted(groups.items()))
            what = f"mean {esc(name['column'])} by {esc(other['column'])}: {means} (ANOVA, p {p:.2g})"
        return (float(p), what) if np.isfinite(p) else None
    counts = contingency(both["x"], both["y"])
    if counts.shape[0] < 2 or counts.shape[1] < 2:
        return None
    chi2, p, _, _ = stats.chi2_contingency(counts)
    return float(p), f"chi-square test of independence over {both.height} samples, p {p:.2g}"


def association_cautions(sheet: pl.DataFrame, outcomes: list[dict], covariates: list[str]) -> list[Caution]:
    """A caution on both outcomes' findings (``DOUBT``; concerns ``models:`` and ``differential:`` of each) for
    every pair of configured ``outcomes`` associated over ``sheet`` (study samples) at p < ``ASSOCIATION_ALPHA``
    (``association``), unless one is already a covariate (``models: covariates``) of the other's tests. Says what
    to do: add the other as a covariate, beside ``covariates`` (the list shown holds both). Pairs with a column
    missing from the sheet are skipped."""
    found = []
    specs = [o for o in outcomes if isinstance(o, dict) and o.get("column") in sheet.columns]
    for a, b in combinations(specs, 2):
        if a["column"] in covariates or b["column"] in covariates:
            continue
        tested = association(sheet, a, b)
        if tested is None or tested[0] >= ASSOCIATION_ALPHA:
            continue
        ca, cb = esc(a["column"]), esc(b["column"])
        # the covariates configured stay in the list (trial BH: "[score]" alone would have dropped age), and the
        # outcome left unadjusted is the covariate's own (an outcome is not adjusted for itself)
        listed = ", ".join(esc(c) for c in [*covariates, b["column"]])
        found.append(Caution(
            f"outcomes <b>{ca}</b> and <b>{cb}</b> go together in the study samples ({tested[1]}): features, "
            f"classes and models that differ with one may reflect the other. To tell them apart, add the other "
            f"outcome as a covariate (<code>models: covariates: [{listed}]</code> adjusts every outcome's tests "
            f"and models for {cb}, {cb}'s own excepted)", DOUBT, f"{a['column']} and {b['column']} go together",
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
    x = pl.Series(values[:, 0]).fill_nan(None) if is_numeric else _levels(sheet[covariate].to_list())
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
    v = float(stats.contingency.association(contingency(both["x"], both["y"]), method="cramer"))
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
            # a continuous outcome has no groups (trial Z: "compare the groups" for a 0-10 score)
            where = (f"separate {outcome} from {name}, which barely vary apart in these samples"
                     if spec.get("type") == "continuous" else
                     f"compare the groups at values of {name} few of their samples have")
            found.append(Caution(
                f"covariate <b>{name}</b> follows outcome <b>{outcome}</b> closely ({explained[1]}): adjusted for "
                f"{name}, the tests and models {where}, so "
                f"the adjusted effects rest on a straight-line model of {name}, are imprecise, and what differs with "
                f"{outcome} cannot be told from what differs with {name}; a design whose groups overlap in {name} "
                "(or matched samples) is needed to separate them", DOUBT, f"{covariate} follows {spec['column']}",
                (f"models:{spec['column']}", f"differential:{spec['column']}")))
    return found


# An outcome this closely tied to a sheet column that is neither an outcome nor a covariate cannot be told apart
# from it: Cramér's V² (eta² for a continuous outcome) of at least DESIGN_V2 for a categorical column (0.5: 7 of 8
# cases in one of two batches, a trial's miss at 0.8, which only perfect confounding reached), |rank correlation| of
# at least DESIGN_RANK_R for a numeric one (injection order among them, also by position within batches of 6 or more
# samples). Randomised designs (tests/test_design_confounding.py; the designs a lab randomises, groups dealt
# evenly over batches and the order shuffled within them: no caution on 2 x 8, 3 x 8, 2 x 12 or 4 x 10 layouts in
# 99 % of 400 draws each; groups drawn freely over batches and plates, 16-24 samples: under 5 %, and then the
# design is truly unbalanced by chance) are said so in the caution.
DESIGN_V2 = 0.5
DESIGN_RANK_R = 0.8
MIN_BATCH_POSITIONS = 6  # study samples per batch (median) before the position within batches is judged
FACTOR_LEVELS = 6  # a numeric column with at most this many distinct values is read as a factor's levels
# identifiers, the run's file and the run type (only study samples are compared); a paired design's subject is the
# unit of pairing, and one subject per outcome value is what an unpaired design with repeated runs looks like
NOT_FACTORS = frozenset({"sample_id", "file", "sample_type", SUBJECT_COLUMN})


def _crosstab(both: pl.DataFrame, column: str, outcome: str) -> str:
    """'B1: 8 case, 0 control; B2: ...' (at most 6 levels of the column, escaped)."""
    classes = sorted(both["y"].unique().to_list())
    parts = []
    for level in sorted(both["x"].unique().to_list())[:6]:
        part = both.filter(pl.col("x") == level)
        parts.append(f"{esc(column)} {esc(level)}: " + ", ".join(
            f"{int((part['y'] == c).sum())} {esc(c)}" for c in classes))
    return "; ".join(parts) + ("; ..." if both["x"].n_unique() > 6 else "")


def _rank_r(x: np.ndarray, y: pl.Series, kind: str) -> float | None:
    """Rank correlation of numeric ``x`` with the outcome: Spearman's rho for a continuous outcome, the rank-biserial
    correlation 2 AUC - 1 for two classes (Mann-Whitney), sqrt of Kruskal-Wallis epsilon² (H - k + 1) / (n - k)
    for more (Tomczak & Tomczak 2014, Trends Sport Sci 21:19); None when undefined."""
    if kind == "continuous":
        yv = y.cast(pl.Float64).to_numpy()
        if np.std(x) == 0 or np.std(yv) == 0:
            return None
        return float(stats.spearmanr(x, yv)[0])
    labels = y.to_numpy()
    classes = sorted(set(labels.tolist()))
    groups = [x[labels == c] for c in classes]
    if len(groups) < 2 or min(len(g) for g in groups) < 1 or np.std(x) == 0:
        return None
    if len(groups) == 2:
        u = stats.mannwhitneyu(groups[1], groups[0]).statistic
        return float(2 * u / (len(groups[0]) * len(groups[1])) - 1)
    h = stats.kruskal(*groups).statistic
    return float(np.sqrt(max(0.0, (h - len(groups) + 1) / (len(x) - len(groups)))))


def _within_batches(sheet: pl.DataFrame, outcome: dict, kind: str) -> tuple[float, str] | None:
    """(rank correlation, HTML) of the outcome with each run's position within its batch (the injection order's
    ranks centred per batch), when the sheet has two or more batches: a trial put the cases first in every batch,
    which the whole study's order shows only weakly (r 0.33) and a drift correction at wrong positions turned into
    21 false hits. None with one batch or too few rows."""
    if "batch" not in sheet.columns:
        return None
    frame = pl.DataFrame({"x": sheet["injection_order"].cast(pl.Float64, strict=False), "y": _values(sheet, outcome),
                          "b": _levels(sheet["batch"].to_list())}).drop_nulls()
    if frame.height < 4 or frame["b"].n_unique() < 2 or frame["y"].n_unique() < 2:
        return None
    if float(np.median(frame["b"].value_counts()["count"].to_numpy())) < MIN_BATCH_POSITIONS:
        return None  # in batches of a few runs a split by position is common by chance, and drift within them small
    frame = frame.with_columns(((pl.col("x").rank().over("b") - (pl.len().over("b") + 1) / 2)
                                / pl.len().over("b")).alias("position"))
    r = _rank_r(frame["position"].to_numpy(), frame["y"], kind)
    if r is None:
        return None
    return r, (f"within its {frame['b'].n_unique()} batches, rank correlation {abs(r):.2f} of the outcome with each "
               f"run's position in its batch over {frame.height} samples")


def design_ties(sheet: pl.DataFrame, outcome: dict, column: str) -> tuple[float, str] | None:
    """(strength, HTML) of how closely ``outcome`` (a ``models.outcomes`` entry) follows sheet ``column`` over the rows
    of ``sheet`` (study samples), the strength relative to its rule's threshold (1 or more: confounded): Cramér's
    V² for a categorical column and a categorical outcome (eta² of the outcome
    over the column's levels for a continuous one), with the cross-table; |rank correlation| (``_rank_r``) for a
    numeric column, with the column's range per class. A column with one value per sample or one value in all is
    no design factor: None, as with fewer than 4 rows having both values."""
    # numbers with few values are the levels of a factor (plate 1 / 2 / 3: a trial's cases on plates 1 and 3 passed)
    numeric = column == "injection_order" or (column != "batch" and covariate_matrix(
        sheet, sheet["sample_id"].cast(pl.Utf8).to_list(), [column])[1] == [f"cov:{column}"]
        and sheet[column].drop_nulls().n_unique() > FACTOR_LEVELS)
    x = (sheet[column].cast(pl.Float64, strict=False) if numeric else _levels(sheet[column].to_list()))
    both = pl.DataFrame({"x": x, "y": _values(sheet, outcome)}).drop_nulls()
    if both.height < 4 or both["y"].n_unique() < 2 or both["x"].n_unique() < 2:
        return None
    kind = outcome.get("type")
    if numeric:
        r = _rank_r(both["x"].to_numpy(), both["y"], kind)
        within = _within_batches(sheet, outcome, kind) if column == "injection_order" else None
        if within is not None and (r is None or abs(within[0]) > abs(r)):
            return abs(within[0]) / DESIGN_RANK_R, within[1]
        if r is None:
            return None
        if kind == "continuous":
            return abs(r) / DESIGN_RANK_R, f"Spearman's rho {r:.2f} over {both.height} samples"
        ranges = both.group_by("y").agg(pl.col("x").min().alias("lo"), pl.col("x").max().alias("hi")).sort("y")
        spans = "; ".join(f"{esc(y)} {lo:g}-{hi:g}" for y, lo, hi in ranges.iter_rows())
        what = "rank-biserial r" if both["y"].n_unique() == 2 else "rank correlation (Kruskal-Wallis)"
        return abs(r) / DESIGN_RANK_R, f"{what} {abs(r):.2f} over {both.height} samples; {esc(column)} by class: {spans}"
    if both["x"].n_unique() > both.height / 2:  # a label per sample (names, notes): not a factor
        return None
    if kind == "continuous":
        y = both["y"].cast(pl.Float64).to_numpy()
        means = both.with_columns(pl.col("y").cast(pl.Float64)).group_by("x").agg(pl.col("y").mean(), pl.len())
        between = float(sum(n * (m - y.mean()) ** 2 for m, n in zip(means["y"], means["len"])))
        eta2 = between / float(((y - y.mean()) ** 2).sum())
        return eta2 / DESIGN_V2, f"eta² {eta2:.2f} over {both.height} samples"
    v = float(stats.contingency.association(contingency(both["x"], both["y"]), method="cramer"))
    return v * v / DESIGN_V2, f"Cramér's V² {v * v:.2f}: {_crosstab(both, column, outcome['column'])}"


# An outcome partly tied to the batch, below DESIGN_V2 (trial BA: age 41.9 vs 56.9 years between two batches, eta²
# 0.39, said nowhere while the report read 78 % of features falling with age as a dilution): a caution on the
# conclusions (trial BD: as a data-quality note the run's summary never showed it, while the age model's best set
# followed the batch) when V² (eta²) is at least PARTIAL_V2 and the tie is unlikely under random assignment
# (chi-square or one-way ANOVA p < ASSOCIATION_ALPHA), so that a randomised study is cautioned in at most 5 % of
# draws.
PARTIAL_V2 = 0.3


def partial_batch_caution(sheet: pl.DataFrame, spec: dict) -> Caution | None:
    """A caution (``DOUBT``) when outcome ``spec`` (a ``models.outcomes`` entry) differs between the sheet's
    batches (study samples' rows) with V² (eta² for a continuous outcome) in [PARTIAL_V2, DESIGN_V2) and chi-square
    (one-way ANOVA) p < ASSOCIATION_ALPHA, naming the outcome per batch. None otherwise or without a batch column."""
    if "batch" not in sheet.columns or spec.get("column") not in sheet.columns:
        return None
    both = pl.DataFrame({"x": _levels(sheet["batch"].to_list()), "y": _values(sheet, spec)}).drop_nulls()
    if both.height < 6 or both["x"].n_unique() < 2 or both["y"].n_unique() < 2:
        return None
    tie = design_ties(sheet, spec, "batch")
    if tie is None or not PARTIAL_V2 / DESIGN_V2 <= tie[0] < 1:
        return None
    outcome = esc(spec["column"])
    if spec.get("type") == "continuous":
        groups = both.with_columns(pl.col("y").cast(pl.Float64)).group_by("x").agg(pl.col("y")).sort("x")
        p = float(stats.f_oneway(*[np.asarray(v) for v in groups["y"].to_list()]).pvalue)
        per = ", ".join(f"{float(np.mean(v)):.3g} in batch {esc(b)}" for b, v in groups.iter_rows())
        what = f"mean {per}; {tie[1]}, one-way ANOVA p {p:.2g}"
    else:
        p = float(stats.chi2_contingency(contingency(both["x"], both["y"]))[1])
        what = f"{tie[1]}, chi-square p {p:.2g}"
    if not p < ASSOCIATION_ALPHA:
        return None
    return Caution(
        f"outcome <b>{outcome}</b> differs between the batches ({what}): not so much that the two cannot be told "
        f"apart, but what the correction from pooled QCs leaves of a batch's offset, and the batches' own "
        f"differences in amount, would show as differences with {outcome} (a study-wide shift with {outcome} among "
        f"them), in the tests and the models alike. To see what remains within the batches, copy the sheet's batch "
        f"column under another name (e.g. batch_factor; batch itself is refused as a covariate) and name it under "
        f"<code>models: covariates</code>", DOUBT, f"{spec['column']} partly tied to batch",
        (f"models:{spec['column']}", f"differential:{spec['column']}"))


def _same_partition(sheet: pl.DataFrame, outcome: dict, column: str) -> bool:
    """Whether sheet ``column`` and the categorical ``outcome`` split the rows where both have a value the same way
    (one column value per class and one class per column value): a relabelling of the outcome, or a design factor
    that coincides with it, which the sheet alone cannot tell apart."""
    both = pl.DataFrame({"x": _levels(sheet[column].to_list()), "y": _values(sheet, outcome)}).drop_nulls()
    pairs = both.unique()
    return both.height >= 4 and pairs.height == both["x"].n_unique() == both["y"].n_unique()


def design_cautions(sheet: pl.DataFrame, outcomes: list[dict], covariates: list[str]) -> list[Caution]:
    """One caution (``DOUBT``; concerns the outcome's ``models:`` and ``differential:``) per configured outcome that
    follows a sheet column which is neither an outcome nor a covariate (``design_ties`` at ``DESIGN_V2`` /
    ``DESIGN_RANK_R`` or more): the batch, the injection order, or any other column (a source run, a plate, an
    unconfigured age). A trial relabelled a spike-in study's groups to equal its batch and its source injection: 461
    features "differed", all run-to-run differences, with no word. Columns already compared elsewhere (outcomes:
    ``association_cautions``; covariates: ``overlap_cautions``) are left out."""
    specs = [o for o in outcomes if isinstance(o, dict) and o.get("column") in sheet.columns]
    taken = {o["column"] for o in specs} | set(covariates) | NOT_FACTORS
    found = []
    for spec in specs:
        ties = []
        for column in (c for c in sheet.columns if c not in taken):
            tie = design_ties(sheet, spec, column)
            if tie is not None and tie[0] >= 1:
                ties.append((column, tie[1]))
        partial = partial_batch_caution(sheet, spec) if "batch" not in taken else None
        if partial is not None:
            found.append(partial)
        if not ties:
            continue
        outcome = esc(spec["column"])
        named = "; ".join(f"<b>{esc(c)}</b> ({what})" for c, what in ties)
        advice = []
        if any(c == "batch" for c, _ in ties):
            advice.append("batches: the samples cannot tell a batch from a group it holds alone; only a correction "
                          "from pooled QCs, fitted without the labels, removes the batch's technical part, and what it "
                          "misses stays confounded; a design with every group in every batch is needed to be sure")
        if any(c == "injection_order" for c, _ in ties):
            advice.append("injection order: drift and sensitivity loss over the sequence look like differences "
                          "between the groups (pooled-QC correction removes a smooth drift, not features that fell "
                          "below detection); randomise the run order (a randomised order can fall like this by chance, "
                          "and then confounds them all the same)")
        others = [c for c, _ in ties if c not in ACQUISITION_COLUMNS]
        copies = [c for c in others if spec.get("type") != "continuous" and _same_partition(sheet, spec, c)]
        if copies:  # trial AQ: a 0/1 copy of the outcome, or a contrast column made from it as the README advises
            listed = ", ".join(esc(c) for c in copies)
            advice.append(f"{listed} split{'s' if len(copies) == 1 else ''} the samples exactly as {outcome} does: "
                          f"if {'it is' if len(copies) == 1 else 'they are'} {outcome} under other labels (a 0/1 "
                          "copy, a contrast made from it), this caution does not concern "
                          f"{'it' if len(copies) == 1 else 'them'}; if it says how the runs were made, the design "
                          "cannot separate it from the outcome")
            others = [c for c in others if c not in copies]
        if others:
            listed = ", ".join(esc(c) for c in others)
            advice.append(f"{listed}: if it names the person or animal each run comes from (repeated measures), "
                          "declare it as the sheet's subject_id (ms2study model: --subject-column); if it is biology, "
                          "add it as a covariate (<code>models: covariates: "
                          f"[{listed}]</code>) to see what remains; if it says how the runs were made (source run, "
                          "plate, day), the design cannot separate it from the outcome; a sample number that only "
                          "counts the samples group by group is harmless")
        found.append(Caution(
            f"outcome <b>{outcome}</b> follows sheet column(s) {named} in the study samples: what differs with "
            f"{outcome} cannot be told from what differs with them, so the differences and models below may be "
            f"theirs. {'; '.join(a[0].upper() + a[1:] for a in advice)}.", DOUBT,
            f"{spec['column']} confounded with {', '.join(c for c, _ in ties)}",
            (f"models:{spec['column']}", f"differential:{spec['column']}")))
    return found
