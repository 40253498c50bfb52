"""The Main findings' sentence on a differential outcome's enriched chemical classes (``enrichment_finding``, from
the class enrichment table of ``modelling.enrichment``), with the clauses that say what carries an enriched class:
one compound, a few moving both ways, or none alone. May import ``ms2study.core``, ``ms2study.modelling`` and the
other ``reporting`` modules below ``findings``.
"""

from __future__ import annotations

import math
from pathlib import Path

import polars as pl

from ms2study.modelling.differential import SIGNIFICANCE, read_summary
from ms2study.reporting.html import esc
from ms2study.reporting.shift import shift_notable


def q_text(q: float) -> str:
    """A q-value with 2 significant digits, more where rounding would carry it up to ``SIGNIFICANCE`` (0.049957
    shown as 0.05 beside "q &lt; 0.05" reads as a contradiction)."""
    for digits in (2, 3, 4, 5):
        text = f"{q:.{digits}g}"
        if not (q < SIGNIFICANCE <= float(text)):
            return text
    return text


FEW_OPPOSITE = 3  # an enriched class carried by at most this many compounds at p < alpha, moving both ways


def enrichment_finding(path: Path | None, positive: str | None = None,
                        tested: pl.DataFrame | None = None) -> str | None:
    """The classes enriched at q < ``SIGNIFICANCE`` in a class enrichment table, nested classes along one class path
    said once (the most specific, with its enriched parents named), each with its compounds' counts up and down
    (said as higher and lower in ``positive``, a binary outcome's positive class, when given); a class whose only
    compound at p < alpha is one identification is said to rest on it, named with its Schymanski level (``tested``:
    the outcome's tested differential rows; a level-3 name's class is its candidate's, and an unseen isomer's may
    differ: a spike-in study's planted N-phenylurea named as an isomer amino-acid derivative made 'Amino acids,
    peptides, and analogues' enriched). None without the table."""
    if path is None or not Path(path).exists():
        return None
    enrichment = pl.read_parquet(path)
    if not enrichment.height:
        return "no chemical class could be tested"
    hits = enrichment.filter(pl.col("q_value") < SIGNIFICANCE).sort("q_value")
    summary = read_summary(path)
    alpha = float(summary.get("alpha", SIGNIFICANCE))  # the compounds' p threshold of n_significant
    shifted = shift_notable(summary)  # the caveat on a class only where the shift is said
    if not hits.height:
        labellings = summary.get("class_distinct_labellings")
        few = (f"; {summary.get('n_samples')} samples allow {labellings} distinct labellings, so no class p-value "
               f"falls much below 1/{labellings}" if labellings and summary.get("class_permutations")
               and labellings < 20 * enrichment.height else "")
        return (f"no chemical class enriched at q &lt; {SIGNIFICANCE:g} ({enrichment.height} tested; lowest q "
                f"{float(enrichment['q_value'].min()):.2g}{few})")
    paths = hits["class_path"].to_list()
    # a multiclass outcome's F-test has no direction: its classes' up and down counts are 0 by construction (a
    # three-arm trial read "4 of 5 compounds at p < 0.05, 0 up, 0 down" for a class raised in two arms)
    undirected = tested is not None and "highest_class" in tested.columns and tested["highest_class"].is_not_null().any()
    said = []
    for r in hits.iter_rows(named=True):
        if any(other.startswith(r["class_path"] + ";") for other in paths):
            continue  # a parent of a more specific enriched class: named with it
        parents = [p for p in paths if r["class_path"].startswith(p + ";")]
        name = r.get("class_name") or r["class_path"].split(";")[-1].strip()
        up, down = (f"higher in {esc(positive)}", "lower") if positive is not None else ("up", "down")
        way = ("" if undirected else f", {r['n_up']} {up}, {r['n_down']} {down}")
        counts = (f"{r['n_significant']} of {r['n_compounds']} compounds at p &lt; {alpha:g}{way}"
                  if r.get("n_compounds") is not None else "")
        said.append(f"<b>{esc(name)}</b> (q = {q_text(r['q_value'])}{'; ' + counts if counts else ''})"
                    + (f", with its enriched parent class{'es' if len(parents) > 1 else ''} "
                       + ", ".join(esc(p.split(';')[-1].strip()) for p in parents) if parents else "")
                    + _resting_on_one(r, tested, alpha) + _members(r, tested, alpha) + _opposite(r)
                    + _none_alone(r, alpha)
                    + (f", but not enriched once each sample's median level is removed (q = "
                       f"{r['q_value_shift_removed']:.2g}): it may only follow the study-wide shift"
                       if shifted and r.get("q_value_shift_removed") is not None
                       and r["q_value_shift_removed"] >= SIGNIFICANCE else ""))
    alone = (tested is not None and "q_value" in tested.columns
             and not (tested["q_value"] < SIGNIFICANCE).fill_null(False).any())
    return (f"{hits.height} of {enrichment.height} chemical classes enriched at q &lt; {SIGNIFICANCE:g}: "
            + "; ".join(said)
            + (f" (no feature differs alone at q &lt; {SIGNIFICANCE:g}: the enrichment test takes a class's p-values "
               "together, so many small shifts, or a few compounds, can make a class enriched)" if alone else ""))


def _opposite(row: dict) -> str:
    """The clause for an enriched class whose few compounds at p < alpha (at most ``FEW_OPPOSITE``) move both ways:
    not a shift of the class (a trial's 'sugar': 2 of 12 compounds, one up and one down with age, each by chance),
    or ""."""
    up, down, n = row.get("n_up") or 0, row.get("n_down") or 0, row.get("n_significant")
    if not (up and down and n is not None and n <= FEW_OPPOSITE):
        return ""
    return (f", carried by {n} compounds that move in opposite directions &mdash; not a shift of the class as a whole; "
            "read them one by one")


def _none_alone(row: dict, alpha: float) -> str:
    """The clause for an enriched class none of whose compounds reaches p < ``alpha`` in the table: where its evidence
    lies (a trial's three-arm study: "0 of 3 compounds at p < 0.05" at q 0.047, and the table's p-values, 0.29-0.55,
    could not explain it). The class statistic is the mean -ln p of its compounds' classic tests
    (``modelling.enrichment``), so exp(-statistic) is their geometric mean p; or ""."""
    statistic = row.get("statistic")
    if row.get("n_significant") != 0 or statistic is None or not math.isfinite(statistic):
        return ""
    return (f", with none of its compounds at p &lt; {alpha:g} alone: the class test combines their classic "
            f"(unmoderated) p-values, geometric mean {math.exp(-float(statistic)):.2g}, which can lie below the table's "
            "moderated ones; weak evidence of a small shared change, to be confirmed")


def _resting_on_one(row: dict, tested: pl.DataFrame | None, alpha: float) -> str:
    """", resting on one compound: NAME (Schymanski level L ...)" for an enrichment row with exactly one compound at
    p < ``alpha`` among ``tested`` (the differential rows), else ""."""
    if row.get("n_significant") != 1 or tested is None or "p_value" not in tested.columns:
        return ""
    rows = _below_alpha(row, tested, alpha)
    if rows.height != 1:
        return ""
    one = rows.row(0, named=True)
    level = one.get("msi_level")
    why = ("; a level-3 name's class is that of its candidate, and an unseen isomer's class may differ"
           if level == 3 else "")
    return (f", resting on one compound: {esc(one.get('name') or one['consensus_id'])}"
            + (f" (Schymanski level {int(level)}{why})" if level is not None else "") + " &mdash; one compound is "
            "not yet a class effect")


SHOWN_MEMBERS = 5  # an enriched class's compounds at p < alpha named in the sentence, lowest p first


def _members(row: dict, tested: pl.DataFrame | None, alpha: float) -> str:
    """", its compounds at p < alpha: NAME (q 0.0045), NAME (q 0.073), ..." for an enrichment row with two or more
    compounds at p < ``alpha`` among ``tested`` (the differential rows), lowest p first (``SHOWN_MEMBERS``), and how
    many of them differ alone at q < ``SIGNIFICANCE``: the class test backs them together, so the members just short
    of it are the next ones to follow up (trial AU: Main findings named 1 of 12 planted sugar phosphates; five more,
    at p 1e-4 and q 0.073, were the class's members nobody pointed to). Else ""."""
    if (row.get("n_significant") or 0) < 2 or tested is None or not {"p_value", "q_value"} <= set(tested.columns):
        return ""
    rows = _below_alpha(row, tested, alpha).sort("p_value")
    if rows.height < 2:
        return ""
    alone = int((rows["q_value"] < SIGNIFICANCE).fill_null(False).sum())
    named = [f"{esc(r.get('name') or r['consensus_id'])} (q {q_text(float(r['q_value']))})"
             for r in rows.head(SHOWN_MEMBERS).iter_rows(named=True) if r.get("q_value") is not None]
    more = rows.height - len(named)
    return (f", its compounds at p &lt; {alpha:g}: " + ", ".join(named) + (f" and {more} more" if more > 0 else "")
            + (f" ({alone} of them differ{'s' if alone == 1 else ''} alone at q &lt; {SIGNIFICANCE:g}; the class test "
               "backs the others together)" if alone < rows.height else ""))


def _below_alpha(row: dict, tested: pl.DataFrame, alpha: float) -> pl.DataFrame:
    """The rows of ``tested`` (the differential rows) of an enrichment row's compounds at p < ``alpha``."""
    return tested.filter(pl.col("consensus_id").cast(pl.Utf8).is_in(list(row.get("consensus_ids") or []))
                         & (pl.col("p_value") < alpha))
