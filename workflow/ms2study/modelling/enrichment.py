"""Chemical class enrichment of one outcome's differential table, after ChemRICH (Barupal & Fiehn 2017, Sci Rep
7:14567): the identified compounds of each class level are a set, tested for p-values smaller than uniform with a
one-sided Kolmogorov-Smirnov test, with ChemRICH's count of compounds going up and down.

Reads the ``modelling.differential.DIFFERENTIAL`` table; imports ``core`` and ``modelling.univariate``.
"""

from __future__ import annotations

import re

import numpy as np
import polars as pl

from ms2study.core.errors import InputError
from ms2study.modelling.univariate import bh_q_values

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
    "ks_statistic": pl.Float64,
    "p_value": pl.Float64,        # one-sided Kolmogorov-Smirnov: the class's p-values smaller than uniform
    "q_value": pl.Float64,        # Benjamini-Hochberg over the classes tested
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


def class_enrichment(differential: pl.DataFrame, min_class_size: int = 3,
                     alpha: float = 0.05) -> tuple[pl.DataFrame, list[str]]:
    """ChemRICH-style chemical class enrichment of one outcome's differential table; returns (table, notes).

    Method: ChemRICH (Barupal & Fiehn 2017, "Chemical Similarity Enrichment Analysis (ChemRICH) as alternative to
    biochemical pathway mapping for metabolomic datasets", Sci Rep 7:14567). The identified compounds of a class
    are a set; if the class is unaffected, their p-values are uniform on [0, 1]. The one-sided Kolmogorov-Smirnov
    test (``scipy.stats.kstest(p, "uniform", alternative="greater")``: the empirical distribution of the p-values
    lies above the uniform one, i.e. they are smaller) gives the class's p-value; Benjamini-Hochberg over the
    classes tested gives its q-value. Like ChemRICH this is a self-contained test: it asks whether the class
    changes, not whether it changes more than the other classes. ChemRICH's classes come from MeSH and Tanimoto
    clustering; here they are the identifications' ``compound_class``, at every level of its path (see
    ``class_paths``), each level tested as its own set, except a path's top level when it is a ChemOnt kingdom
    (``KINGDOMS``: "Organic compounds", "Inorganic compounds"; deeper levels keep it in their path). Direction as in ChemRICH: among the class's compounds with
    p < ``alpha``, how many go up and down with the outcome (sign of ``log2_fold_change`` or
    ``log2_effect_per_unit``).

    ``differential``: a ``DIFFERENTIAL`` table. Only tested features with an accepted identification and a class
    count; when several features carry the same compound (same first InChIKey block, else name), the one detected
    most often (then the most intense) stands for it, a choice blind to the outcome, preferring a feature not marked
    as a possible in-source fragment (``in_source_of_mz``); a compound named only on such features is left out,
    with a note naming it: its intensity follows the parent ion's, not the compound's (a fresh user's study counted
    taurine and aspartic acid, fragments of larger ions, in the amino acids). Classes with fewer than
    ``min_class_size`` compounds are not tested (default 3: the test assumes independent members, and two
    co-varying compounds of one source, e.g. two homologous surfactants, reached q 0.037 with feature p-values of
    0.046 and 0.136 on the spike-in study of a real run, benchmarks/semireal.py). A level whose compounds are
    exactly those of the level below it is tested once, as the deeper (more specific) class. The table has columns
    ``ENRICHMENT``, sorted by q-value; it has zero rows, with a note saying why, when no class can be tested (e.g. a
    library without classes). Raises InputError when ``differential`` lacks a ``DIFFERENTIAL`` column.
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
        notes.append(f"{fragments.height} compound(s) named only on possible in-source fragments (in_source_of_mz) "
                     f"left out of the class sets: {shown}{', ...' if fragments.height > 10 else ''}")
        candidates = candidates.filter(~pl.col("_fragment"))
    members: dict[tuple[str, ...], list[int]] = {}
    for i, value in enumerate(candidates["compound_class"].to_list()):
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
    members = {path: list(key) for key, path in deepest.items()}
    p_all = candidates["p_value"].to_numpy()
    effect = candidates["_effect"].to_numpy().astype(np.float64)
    names = candidates["name"].fill_null(candidates["inchikey"]).to_list()
    cids = candidates["consensus_id"].to_list()
    has_direction = bool(np.isfinite(effect).any())
    rows = []
    for path, index in members.items():
        if len(index) < int(min_class_size):
            continue
        p = p_all[index]
        ks = stats.kstest(p, "uniform", alternative="greater")
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
                     "ks_statistic": float(ks.statistic), "p_value": float(ks.pvalue), "q_value": None,
                     "compounds": [names[i] for i in index], "consensus_ids": [cids[i] for i in index]})
    if not rows:
        notes.append(f"no class has {int(min_class_size)} or more identified, tested compounds "
                     f"({candidates.height} compounds with a class): no class enrichment")
        return empty, notes
    table = pl.DataFrame(rows, schema=ENRICHMENT)
    table = table.with_columns(pl.Series("q_value", bh_q_values(table["p_value"].to_numpy()), dtype=pl.Float64))
    return table.sort(["q_value", "p_value", "n_compounds", "class_path"], descending=[False, False, True, False]), notes
