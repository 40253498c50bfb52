"""Chemical class enrichment of one outcome's differential table, after ChemRICH (Barupal & Fiehn 2017, Sci Rep
7:14567): the identified compounds of each class level are a set, tested for p-values smaller than uniform, with
ChemRICH's count of compounds going up and down. ChemRICH reads a Kolmogorov-Smirnov statistic against its
distribution, which assumes the compounds independent; a class's compounds co-vary (urine amino acids, one
pathway's intermediates), so here the class statistic (Fisher's combination of its compounds' p-values) is read
against permutations of the samples' outcome labels (with covariates: of the outcome's residual from them).

Reads the ``modelling.differential.DIFFERENTIAL`` table and the values behind it
(``modelling.differential.OutcomeValues``); imports ``core``, ``modelling.differential`` and
``modelling.univariate``.
"""

from __future__ import annotations

import re

import numpy as np
import polars as pl

from ms2study.core.errors import InputError
from ms2study.modelling.differential import OutcomeValues
from ms2study.modelling.subjects import within_blocks
from ms2study.modelling.univariate import anova_test, bh_q_values

PERMUTATIONS = 1000  # label permutations of the class test's null (Phipson & Smyth 2010's (b + 1) / (B + 1))

ENRICHMENT: dict[str, pl.DataType] = {
    "class_path": pl.Utf8,        # levels from the top down to this class, joined by "; "
    "class_name": pl.Utf8,        # the class itself (last level of the path)
    "class_level": pl.Int32,      # 1 = top level of the path
    "n_compounds": pl.Int32,      # identified, tested compounds in the class (one feature per compound)
    "n_significant": pl.Int32,    # of them with p < alpha
    "n_up": pl.Int32,             # significant and higher with the outcome (positive class / larger values)
    "n_down": pl.Int32,
    "share_up": pl.Float64,       # n_up / n_significant (null when none is significant)
    "direction": pl.Utf8,         # up | down | mixed | none (none significant) | null (multiclass: no direction)
    "median_effect": pl.Float64,  # median log2 fold change / log2 effect per unit of the class's compounds
    "statistic": pl.Float64,      # mean -ln p of the class's compounds (Fisher's combination; see class_enrichment)
    "p_value": pl.Float64,        # share of outcome-label permutations with a statistic as large (class_enrichment)
    "q_value": pl.Float64,        # Benjamini-Hochberg over the classes tested
    # the same test with each sample's median over all tested features removed first: what the class changes beyond
    # a shift of the whole sample with the outcome (dilution, amount; see global_shift); null without sample values
    "p_value_shift_removed": pl.Float64,
    "q_value_shift_removed": pl.Float64,
    "compounds": pl.List(pl.Utf8),
    "consensus_ids": pl.List(pl.Utf8),
}


CLASS_SEPARATORS = re.compile(r"\s*[;/]\s*")
# A ChemOnt identifier written into the path (MassBank: "CHEMONTID:0000185; Organic compounds; ...") names the
# deepest class; it is not a level of its own.
CHEMONT_ID = re.compile(r"^CHEMONTID:\s*\d+$", re.IGNORECASE)
# The ChemOnt kingdoms (Djoumbou Feunang et al. 2016, J Cheminform 8:61, ClassyFire): the root level of a path, which
# holds nearly every compound of a study and is no chemical class a scientist would report; never tested.
KINGDOMS = frozenset({"organic compounds", "inorganic compounds"})


def class_paths(compound_class: str | None) -> list[tuple[str, ...]]:
    """Every level of a class annotation, top down: "Lipids; Fatty Acyls" -> [("Lipids",), ("Lipids",
    "Fatty Acyls")]. Levels are separated by ';' or '/' (ChemOnt/ClassyFire paths); a ChemOnt identifier
    ("CHEMONTID:0000185") is dropped; a plain name is one level; empty or missing gives []."""
    if compound_class is None:
        return []
    parts = [p for p in CLASS_SEPARATORS.split(str(compound_class).strip()) if p and not CHEMONT_ID.match(p)]
    return [tuple(parts[:k]) for k in range(1, len(parts) + 1)]


def class_enrichment(differential: pl.DataFrame, min_class_size: int = 3, alpha: float = 0.05,
                     values: OutcomeValues | None = None, n_permutations: int = PERMUTATIONS,
                     seed: int = 0) -> tuple[pl.DataFrame, list[str]]:
    """ChemRICH-style chemical class enrichment of one outcome's differential table; returns (table, notes).

    Method: ChemRICH (Barupal & Fiehn 2017, "Chemical Similarity Enrichment Analysis (ChemRICH) as alternative to
    biochemical pathway mapping for metabolomic datasets", Sci Rep 7:14567) tests each class as a set: if the class
    is unaffected, its compounds' p-values are uniform on [0, 1]. ChemRICH reads a Kolmogorov-Smirnov statistic
    against the Kolmogorov-Smirnov distribution, which assumes the compounds independent; a class's compounds co-vary
    (one diet, one pathway, one dilution left after normalisation), and on random splits of a real urine study
    (MTBLS404, 109 metabolites with their classes) that reading called about 10 % of the classes significant
    at p < 0.05 and gave a class at q < 0.05 in 16-26 % of the splits (benchmarks/differential_calibration.py). Here:

    - the statistic is Fisher's combination (Fisher 1932, Statistical Methods for Research Workers, section 21.1),
      the mean of -ln p over the class's compounds (column ``statistic``), p from the classic test of the outcome
      per compound: Welch's t, the OLS slope's t adjusted for the covariates (a continuous outcome, or a binary one
      with covariates: the class indicator's coefficient), one-way ANOVA (multiclass; with covariates the partial F
      of the class indicators beside them) (``_member_p_values``).
      Unlike the Kolmogorov-Smirnov statistic it does not saturate when every compound is small, which under
      permutation is what separates a class-wide shift from a chance alignment of co-varying compounds (measured on
      40 splits of 6 + 6 samples: a class raised 2x found in 40 %, against 15 % with the Kolmogorov-Smirnov
      statistic).
    - with ``values`` (what the tests saw, ``modelling.differential.OutcomeValues``) and ``n_permutations`` > 0,
      its null comes from permuting the samples' outcome labels (seeded by ``seed``; an outcome with covariates,
      continuous or binary, permutes its residual from the covariates and adds the covariates' part back: the
      outcome orthogonalised to the covariates, "Smith" in Winkler et al. 2014, NeuroImage 92:381, which keeps the
      outcome's relation to the covariates; for a 0/1 outcome only approximately exchangeable, measured on confounded
      splits of a real urine study: classes at p < 0.05 2.7-3.9 %, benchmarks/differential_calibration.py
      --covariates): a self-contained
      test with sample permutation, as GSEA's phenotype permutation (Subramanian et al. 2005, PNAS 102:15545; Goeman
      & Buehlmann 2007, Bioinformatics 23:980, on why the samples, not the compounds, must be permuted). The
      class's p-value is (1 + permutations whose statistic reaches the observed one) / (1 + n_permutations)
      (Phipson & Smyth 2010, Stat Appl Genet Mol Biol 9:39); a binary outcome with no more distinct labellings than
      ``n_permutations`` (6 + 6 samples: 924) and no covariates is tested on every labelling once, an exact p-value
      (a random draw of
      1,000 from 924 left the demo's planted class at q 0.052, its p a Monte Carlo draw around the exact 2 / 924).
      Permutations keep the correlation between compounds,
      so the p-value holds whatever it is. With few samples the labellings are few (3 + 3 samples: 10 up to
      swapping the groups) and no p-value falls much below one over their number; a note says so when they are
      fewer than 20 per class tested (then few or no classes can reach q < 0.05). Multiclass labels are permuted as
      they are; with covariates the rows of the class indicators' residuals from the covariates are permuted
      instead (Smith again, for several columns).
    - ``p_value_shift_removed`` / ``q_value_shift_removed``: the same permutation test with each sample's median
      log2 value over all tested features subtracted first. A self-contained test calls every class that follows a
      shift of the whole sample with the outcome (a dilution or amount difference left by the correction, see
      ``global_shift``); a class that is enriched only without the removal may be following that shift (a fresh
      user's realistic study: two unplanted classes at q < 0.05 with 81 % of all features higher in cases).
    - without ``values`` (or with ``n_permutations`` 0) the p-value is Fisher's chi-square with 2 m degrees of
      freedom (``scipy.stats.combine_pvalues``) on the table's p-values, which assumes independent compounds; a
      note says so.

    The per-compound p-values behind the statistic are the classic test's, not the table's (the moderated test's
    permutation null is pooled over all features and cannot be redrawn per class). Benjamini-Hochberg over the
    classes tested gives the q-value. Like ChemRICH this is a self-contained test: it asks whether the class
    changes, not whether it changes more than the other classes. ChemRICH's classes come from MeSH and Tanimoto
    clustering; here they are the identifications' ``compound_class``, at every level of its path (see
    ``class_paths``), each level tested as its own set, except a path's top level when it is a ChemOnt kingdom
    (``KINGDOMS``: "Organic compounds", "Inorganic compounds"; deeper levels keep it in their path). Direction as
    in ChemRICH: among the class's compounds with (table) p < ``alpha``, how many go up and down with the outcome
    (sign of ``log2_fold_change`` or ``log2_effect_per_unit``).

    ``differential``: a ``DIFFERENTIAL`` table. Only tested features with an accepted identification and a class
    count; when several features carry the same compound (same first InChIKey block, else name), the one detected
    most often (then the most intense) stands for it, a choice blind to the outcome, preferring a feature not marked
    as a possible in-source fragment (``in_source_of_mz``); a compound named only on such features stays in its
    class, and a note names it. The mark is unconfirmed (names whose intensity follows the parent ion's are withdrawn
    by the identify stage and never reach this table): leaving such compounds out cost planted compounds on two
    realistic simulations (trials AU and AY: 6 of 7 and 2 of 2 marked names were the compound's own ion), where an
    earlier study had counted taurine and aspartic acid, fragments of larger ions, in the amino acids. Classes with
    fewer than
    ``min_class_size`` compounds are not tested (default 3: two co-varying compounds of one source, e.g. two
    homologous surfactants, reached q 0.037 under the Kolmogorov-Smirnov reading with feature p-values of 0.046 and
    0.136 on the spike-in study of a real run, benchmarks/semireal.py). A level whose compounds are exactly those of
    the level below it is tested once, as the deeper (more specific) class. The table has columns ``ENRICHMENT``,
    sorted by q-value; it has zero rows, with a note saying why, when no class can be tested (e.g. a library without
    classes). Raises InputError when ``differential`` lacks a ``DIFFERENTIAL`` column or ``values`` lacks one of
    its tested features.
    """
    from scipy import stats

    missing = [c for c in ("consensus_id", "name", "inchikey", "compound_class", "p_value", "tested",
                           "log2_fold_change", "log2_effect_per_unit", "detection_rate", "mean_log2_intensity")
               if c not in differential.columns]
    if missing:
        raise InputError(f"differential table lacks column(s) {missing}", fix="produce it with 'ms2study differential'")
    notes: list[str] = []
    empty = pl.DataFrame(schema=ENRICHMENT)
    identified = differential.filter(pl.col("name").is_not_null() | pl.col("inchikey").is_not_null())
    if identified.height == 0:
        notes.append("no consensus feature has an accepted identification: no class enrichment")
        return empty, notes
    with_class = identified.filter(pl.col("compound_class").fill_null("").str.strip_chars() != "")
    if with_class.height == 0:
        notes.append(f"the library gives no compound classes for the {identified.height} identified features "
                     "(no COMPOUND_CLASS / ChemOnt metadata): no class enrichment")
        return empty, notes
    marked = (pl.col("in_source_of_mz").is_not_null() if "in_source_of_mz" in with_class.columns
              else pl.lit(False))
    candidates = (
        with_class.filter(pl.col("tested") & pl.col("p_value").is_not_null())
        .with_columns(
            pl.when(pl.col("inchikey").fill_null("").str.len_chars() >= 14)
            .then(pl.col("inchikey").str.slice(0, 14))
            .otherwise(pl.lit("name:") + pl.col("name").fill_null("").str.to_lowercase()).alias("_compound"),
            pl.coalesce("log2_fold_change", "log2_effect_per_unit").alias("_effect"),
            marked.alias("_fragment"))
        .sort(["_fragment", "detection_rate", "mean_log2_intensity", "consensus_id"],
              descending=[False, True, True, False], nulls_last=True)
        .unique("_compound", keep="first", maintain_order=True)
    )
    fragments = candidates.filter(pl.col("_fragment"))
    if fragments.height:
        shown = ", ".join(fragments["name"].fill_null(fragments["inchikey"]).head(10).to_list())
        more = ", ..." if fragments.height > 10 else ""
        notes.append(f"{fragments.height} compound(s) in the class sets are named only on possible in-source "
                     f"fragments (in_source_of_mz, an unconfirmed mark): {shown}{more}; if one is a fragment of a "
                     "larger ion, its class counts that ion's change")
    members = _class_members(candidates["compound_class"].to_list(), int(min_class_size))
    if not members:
        notes.append(f"no class has {int(min_class_size)} or more identified, tested compounds "
                     f"({candidates.height} compounds with a class): no class enrichment")
        return empty, notes
    p_all = candidates["p_value"].to_numpy()
    effect = candidates["_effect"].to_numpy().astype(np.float64)
    names = candidates["name"].fill_null(candidates["inchikey"]).to_list()
    cids = candidates["consensus_id"].to_list()
    has_direction = bool(np.isfinite(effect).any())
    p_shift_removed = np.full(len(members), np.nan)
    if values is not None and int(n_permutations) > 0:
        rows = _rows(values, cids)
        absent = [c for c, row in zip(cids, rows) if row is None]
        if absent:
            raise InputError(f"{len(absent)} tested feature(s) of the differential table have no values, e.g. "
                             f"{absent[0]}",
                             fix="pass the values of the same differential run (differential_with_values)")
        x = values.values[rows]
        sets = list(members.values())
        labellings, _ = _labellings(values, int(n_permutations), np.random.default_rng(int(seed)))
        statistic, p_class = _permutation_p_values(x, labellings, values, sets)
        offset = _sample_medians(values, differential.filter(pl.col("tested"))["consensus_id"].to_list())
        _, p_shift_removed = _permutation_p_values(x - offset[None, :], labellings, values, sets)
        note = _few_labellings_note(values, len(sets))
        if note:
            notes.append(note)
    else:
        tests = [stats.combine_pvalues(np.clip(p_all[index], 1e-300, 1.0), method="fisher")
                 for index in members.values()]
        statistic = np.array([float(t.statistic) / (2 * len(index)) for t, index in zip(tests, members.values())])
        p_class = np.array([float(t.pvalue) for t in tests])
        notes.append("class p-values from Fisher's chi-square, which assumes the compounds of a class independent "
                     "(no sample values or no permutations): co-varying compounds make them too small")
    rows = []
    for (path, index), class_statistic, p_value, p_relative in zip(members.items(), statistic, p_class,
                                                                   p_shift_removed):
        p = p_all[index]
        significant = p < float(alpha)
        up = int((significant & (effect[index] > 0)).sum())
        down = int((significant & (effect[index] < 0)).sum())
        n_sig = int(significant.sum())
        if not has_direction:
            direction = None
        elif n_sig == 0:
            direction = "none"
        else:
            direction = "up" if up > down else "down" if down > up else "mixed"
        finite = effect[index][np.isfinite(effect[index])]
        rows.append({"class_path": "; ".join(path), "class_name": path[-1], "class_level": len(path),
                     "n_compounds": len(index), "n_significant": n_sig, "n_up": up, "n_down": down,
                     "share_up": up / n_sig if n_sig and has_direction else None, "direction": direction,
                     "median_effect": float(np.median(finite)) if finite.size else None,
                     "statistic": float(class_statistic), "p_value": float(p_value), "q_value": None,
                     "p_value_shift_removed": float(p_relative) if np.isfinite(p_relative) else None,
                     "q_value_shift_removed": None,
                     "compounds": [names[i] for i in index], "consensus_ids": [cids[i] for i in index]})
    table = pl.DataFrame(rows, schema=ENRICHMENT)
    table = table.with_columns(
        pl.Series("q_value", bh_q_values(table["p_value"].to_numpy()), dtype=pl.Float64),
        pl.Series("q_value_shift_removed", bh_q_values(table["p_value_shift_removed"].to_numpy(allow_copy=True)
                                                       .astype(np.float64)), dtype=pl.Float64).fill_nan(None))
    # permutation p-values tie at their floor 1 / (1 + n_permutations): ties are ordered by the statistic
    return table.sort(["q_value", "p_value", "statistic", "n_compounds", "class_path"],
                      descending=[False, False, True, True, False]), notes


def _class_members(compound_classes: list[str | None], min_class_size: int) -> dict[tuple[str, ...], list[int]]:
    """The sets to test: class path -> row indices of its compounds, every level of each path but a kingdom, a set
    found at several levels kept once under its deepest path, sets smaller than ``min_class_size`` dropped."""
    members: dict[tuple[str, ...], list[int]] = {}
    for i, value in enumerate(compound_classes):
        for path in class_paths(value):
            if len(path) == 1 and path[0].strip().lower() in KINGDOMS:
                continue  # the kingdom: nearly every compound, not a class to report
            members.setdefault(path, []).append(i)
    # the same set at several levels (a class with one subclass among the identified compounds): test the deepest
    deepest: dict[tuple[int, ...], tuple[str, ...]] = {}
    for path, index in members.items():
        key = tuple(index)
        if key not in deepest or len(path) > len(deepest[key]):
            deepest[key] = path
    return {path: list(key) for key, path in deepest.items() if len(key) >= min_class_size}


def _rows(values: OutcomeValues, consensus_ids: list[str]) -> list[int | None]:
    """The row of each of ``consensus_ids`` in ``values`` (None where it has none)."""
    row_of = {c: i for i, c in enumerate(values.consensus_ids)}
    return [row_of.get(c) for c in consensus_ids]


def _permutation_p_values(x: np.ndarray, labellings: np.ndarray, values: OutcomeValues,
                          sets: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    """(statistic per set, permutation p per set) for the compounds ``x`` (log2, compounds x samples; the sets index
    its rows) under ``labellings`` (``_labellings``: the observed outcome first); the method is in
    ``class_enrichment``'s docstring."""
    if _covariate_multiclass(values):
        p = _multiclass_covariate_p_values(x, labellings, np.asarray(values.y), values.covariates)
    else:
        p = _member_p_values(x, labellings, values.kind, values.covariates)  # labellings x compounds
    log_p = -np.log(np.maximum(p, 1e-300))
    statistic = np.stack([log_p[:, index].mean(axis=1) for index in sets], axis=1)  # labellings x sets
    observed = statistic[0]
    exceed = (statistic[1:] >= observed[None, :] - 1e-12).sum(axis=0)
    return observed, (1.0 + exceed) / len(labellings)  # (1 + b) / (1 + B), or exact over every labelling


def _few_labellings_note(values: OutcomeValues, n_sets: int) -> str | None:
    """The note when the samples allow fewer than 20 distinct labellings per class tested, else None."""
    distinct = distinct_labellings(values)
    if distinct is None or distinct >= 20 * max(n_sets, 1):
        return None
    return (f"{len(values.y)} samples allow {distinct} distinct outcome labellings (up to swapping groups of equal "
            f"size): no class p-value can fall much below 1 / {distinct} (= {1 / distinct:.2g}), so with "
            f"{n_sets} classes tested few or none can reach q < 0.05")


def _sample_medians(values: OutcomeValues, consensus_ids: list[str]) -> np.ndarray:
    """Each sample's median log2 value over the features ``consensus_ids`` (the tested ones): the sample's overall
    level, whose difference between samples is what median normalisation removes."""
    rows = [r for r in _rows(values, consensus_ids) if r is not None]
    if not rows:
        return np.zeros(values.values.shape[1])
    return np.median(values.values[rows], axis=0)


def _linear(kind: str, covariates: np.ndarray | None) -> bool:
    """Whether the outcome is tested as a linear model's coefficient: a continuous outcome, or a binary one beside
    covariates (its class coefficient); else Welch's t (binary) or ANOVA (multiclass)."""
    return kind == "continuous" or (kind == "binary" and covariates is not None and covariates.size > 0)


def _covariate_residualiser(n: int, covariates: np.ndarray | None) -> np.ndarray:
    """The n x n hat matrix of the intercept and ``covariates`` (samples x k or None): ``v - v @ hat`` is ``v``'s
    residual from them (the matrix is symmetric)."""
    design = np.column_stack([np.ones(n)] + ([covariates] if covariates is not None and covariates.size else []))
    return design @ np.linalg.pinv(design)


def global_shift(values: OutcomeValues, consensus_ids: list[str], n_permutations: int = PERMUTATIONS,
                 seed: int = 0) -> dict | None:
    """How the tested features move together with the outcome: a shift of the whole sample (a dilution or amount
    difference that normalisation left, or a broad biological change) makes every self-contained class test (and
    many features) significant. ``consensus_ids``: the tested features (rows of ``values``). Returns None for a
    multiclass outcome or fewer than 10 features, else {n_features, median_effect (the median over features of the
    log2 fold change, or of the log2 effect per unit of a continuous outcome, adjusted for the covariates),
    outcome_sd (the continuous outcome's sd over the samples, ddof 1, so that a reader can size the shift over its
    range; None for a binary outcome), share_up
    (share of features with a positive effect), p_value (two-sided, the median effect against ``n_permutations``
    permutations of the outcome labels, as in ``class_enrichment``; Phipson & Smyth 2010's (b + 1) / (B + 1)),
    n_permutations}."""
    rows = [r for r in _rows(values, consensus_ids) if r is not None]
    if values.kind == "multiclass" or len(rows) < 10:
        return None
    x = values.values[rows]
    rng = np.random.default_rng(seed)
    labellings, _ = _labellings(values, int(n_permutations), rng)
    linear = _linear(values.kind, values.covariates)
    if linear:
        hat = _covariate_residualiser(x.shape[1], values.covariates)
        rx = x - x @ hat
    median, observed = np.empty(labellings.shape[0]), None
    for start in range(0, labellings.shape[0], 100):  # 100 labellings x features at a time: bounded memory
        part = labellings[start:start + 100]
        if not linear:
            pos = (part == 1).astype(np.float64)
            weights = pos / pos.sum(axis=1, keepdims=True) - (1 - pos) / (1 - pos).sum(axis=1, keepdims=True)
            effect = weights @ x.T  # labellings x features: mean positive minus mean other
        else:
            rl = part.astype(np.float64) - part.astype(np.float64) @ hat
            effect = (rl @ rx.T) / (rl ** 2).sum(axis=1, keepdims=True)  # OLS slopes adjusted for the covariates
        median[start:start + part.shape[0]] = np.median(effect, axis=1)
        observed = effect[0] if observed is None else observed
    exceed = int((np.abs(median[1:]) >= abs(median[0]) - 1e-12).sum())
    y = np.asarray(values.y, dtype=np.float64)
    return {"n_features": len(rows), "median_effect": round(float(median[0]), 4),
            "outcome_sd": round(float(np.std(y, ddof=1)), 6) if values.kind == "continuous" and y.size > 1 else None,
            "share_up": round(float((observed > 0).mean()), 4),
            "p_value": (1.0 + exceed) / labellings.shape[0], "n_permutations": labellings.shape[0] - 1}


def _covariate_multiclass(values: OutcomeValues) -> bool:
    """A multiclass outcome with covariates: its labellings are sample orders (``_labellings``)."""
    return values.kind == "multiclass" and values.covariates is not None and values.covariates.size > 0


def _labellings(values: OutcomeValues, n_permutations: int, rng: np.random.Generator) -> tuple[np.ndarray, bool]:
    """(labellings x samples, exact): the observed outcome first, then ``n_permutations`` random relabellings
    (``_permuted_outcome``); a multiclass outcome with covariates gives sample orders instead, the identity first
    (``_multiclass_covariate_p_values`` permutes the rows of the class indicators' residuals from the covariates
    by them); for a binary outcome without covariates whose distinct labellings number
    ``n_permutations`` or fewer (6 + 6 samples: 924), every one of them once instead (with covariates the permuted
    residuals are not a finite set of labellings: random draws, which may repeat with few samples), so the p-value
    is exact: (1 + b) / (number of labellings) with b the others reaching the observed statistic, down to 2 / 924
    rather than a Monte Carlo draw around it."""
    import itertools
    import math

    y = np.asarray(values.y)
    if _covariate_multiclass(values):
        return np.stack([np.arange(len(y))] + [within_blocks(len(y), values.blocks, rng)
                                               for _ in range(n_permutations)]), False
    if values.kind == "binary" and not _linear(values.kind, values.covariates):
        n, n_positive = len(y), int((y == 1).sum())
        if math.comb(n, n_positive) <= n_permutations:
            observed = tuple(np.flatnonzero(y == 1))
            others = []
            for chosen in itertools.combinations(range(n), n_positive):
                if chosen != observed:
                    labels = np.zeros(n, dtype=y.dtype)
                    labels[list(chosen)] = 1
                    others.append(labels)
            return np.stack([y, *others]), True
    return np.stack([y] + [_permuted_outcome(values, rng) for _ in range(n_permutations)]), False


def _permuted_outcome(values: OutcomeValues, rng: np.random.Generator) -> np.ndarray:
    """One random relabelling of the samples: the labels shuffled, or for an outcome with covariates (continuous or
    binary) its residual from the covariates shuffled and added back to the covariates' fitted part; in a paired
    design the labels shuffled within each subject (``subjects.within_blocks``)."""
    y = np.asarray(values.y)
    C = values.covariates
    if values.blocks is not None:
        return y[within_blocks(len(y), values.blocks, rng)]
    if values.kind == "multiclass" or C is None or not C.size:
        return rng.permutation(y)
    fitted = _covariate_residualiser(len(y), C) @ y.astype(np.float64)
    return fitted + rng.permutation(y - fitted)


def _member_p_values(x: np.ndarray, labellings: np.ndarray, kind: str, covariates: np.ndarray | None) -> np.ndarray:
    """Two-sided p-values of the classic test per compound (rows of ``x``, log2, features x samples) under each
    outcome labelling (rows of ``labellings``, labellings x samples): Welch's t (binary), the OLS slope's t adjusted
    for ``covariates`` (continuous, or binary with covariates: the class indicator's coefficient; as
    ``univariate.ols_slope_test``, as the t of the partial correlation), one-way ANOVA (multiclass). Returns
    labellings x compounds; undefined tests (a constant compound) give 1."""
    from scipy import stats

    n = x.shape[1]
    with np.errstate(all="ignore"):
        if kind == "multiclass":
            p = np.stack([anova_test(x, labels)["p_value"] for labels in labellings])
        elif not _linear(kind, covariates):  # binary without covariates
            centred = x - x.mean(axis=1, keepdims=True)
            pos = (labellings == 1).astype(np.float64)
            n1, n0 = pos.sum(axis=1), n - pos.sum(axis=1)
            s1, s0 = pos @ centred.T, (1.0 - pos) @ centred.T
            q1, q0 = pos @ (centred ** 2).T, (1.0 - pos) @ (centred ** 2).T
            m1, m0 = s1 / n1[:, None], s0 / n0[:, None]
            v1 = (q1 - n1[:, None] * m1 ** 2) / (n1[:, None] - 1)
            v0 = (q0 - n0[:, None] * m0 ** 2) / (n0[:, None] - 1)
            a, b = v1 / n1[:, None], v0 / n0[:, None]
            t = (m1 - m0) / np.sqrt(a + b)
            df = (a + b) ** 2 / (a ** 2 / (n1[:, None] - 1) + b ** 2 / (n0[:, None] - 1))
            p = 2.0 * stats.t.sf(np.abs(t), df)
        else:
            hat = _covariate_residualiser(n, covariates)
            rx = x - x @ hat
            rl = labellings.astype(np.float64) - labellings.astype(np.float64) @ hat
            r = (rl @ rx.T) / np.outer(np.linalg.norm(rl, axis=1), np.linalg.norm(rx, axis=1))
            df = n - round(float(np.trace(hat))) - 1  # residual df: samples - (intercept + covariates) - slope
            t = r * np.sqrt(df / (1.0 - r ** 2))
            p = 2.0 * stats.t.sf(np.abs(t), df)
    return np.where(np.isfinite(p), p, 1.0)


def _multiclass_covariate_p_values(x: np.ndarray, orders: np.ndarray, y: np.ndarray,
                                   covariates: np.ndarray) -> np.ndarray:
    """``_member_p_values`` of a multiclass outcome beside ``covariates`` (samples x k): per sample order (rows of
    ``orders``, the identity first), the rows of the class indicators' residuals from the intercept and covariates
    are reordered (Smith, in Winkler et al. 2014), residualised again and each compound's (rows of ``x``, log2)
    residual from the covariates regressed on them: the partial F of the classes beside the covariates (ANCOVA),
    p from the F distribution (``scipy.stats.f``). Returns orders x compounds; undefined tests give 1."""
    from scipy import stats

    n = x.shape[1]
    hat = _covariate_residualiser(n, covariates)
    indicators = np.column_stack([(y == c).astype(np.float64) for c in np.unique(y)[1:]])
    residual_indicators = indicators - hat @ indicators
    rx = x - x @ hat
    total = (rx ** 2).sum(axis=1)
    n_classes = indicators.shape[1]
    df = n - round(float(np.trace(hat))) - n_classes
    p = np.ones((orders.shape[0], x.shape[0]))
    with np.errstate(all="ignore"):
        for i, order in enumerate(orders):
            permuted = residual_indicators[order]
            basis, _ = np.linalg.qr(permuted - hat @ permuted)
            explained = ((rx @ basis) ** 2).sum(axis=1)
            f = (explained / n_classes) / ((total - explained) / df)
            p[i] = stats.f.sf(f, n_classes, df)
    return np.where(np.isfinite(p), p, 1.0)


def distinct_labellings(values: OutcomeValues) -> int | None:
    """How many relabellings of the samples give distinct class statistics (binary and multiclass: the
    multinomial coefficient of the class sizes, divided by the swaps of equal-sized classes, which leave the
    two-sided t and the F unchanged: 4 + 4 samples allow 35); None for a continuous outcome or above a million."""
    import math
    from collections import Counter

    if _linear(values.kind, values.covariates) or _covariate_multiclass(values):  # residual permutations: no
        return None  # finite set of labellings
    counts = np.bincount(np.asarray(values.y).astype(np.int64))
    counts = counts[counts > 0]
    total = math.factorial(int(counts.sum()))
    for c in counts:
        total //= math.factorial(int(c))
    for same_size in Counter(counts.tolist()).values():
        total //= math.factorial(same_size)
    return int(total) if total <= 1_000_000 else None
