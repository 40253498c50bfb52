"""The report's word on features detected in one batch only (``batch_only`` of the corrected matrix,
``correction.presence``): a part of "Batch, blanks and drift" listing them with their batch, and a caution in What
differs when such a feature is among an outcome's hits. Imports ``ms2study.correction`` (the mark's threshold) and
the other ``reporting`` modules.
"""

from __future__ import annotations

import polars as pl

from ms2study.correction.presence import BATCH_ONLY_ALPHA
from ms2study.modelling.differential import SIGNIFICANCE
from ms2study.reporting.html import QUALITY, Caution, esc
from ms2study.reporting.tables import marked_features_table

MAX_ROWS = 500  # rows of the batch-only table (the most frequently detected first)

WHY = ("detection found each in the runs of that batch and in none of the others, a pattern that chance would give "
       f"a feature detected regardless of batch less than {BATCH_ONLY_ALPHA:.0%} of the time. Such a feature is "
       "often a contaminant of one batch's solvents or kit, a change of column or method between batches, or a weak "
       "ion that fell below detection in batches measured with less sensitivity; the mark says only that the "
       "pattern is unlikely by chance, not which cause (or another, e.g. a weak isotope or noise trace) it is; in the "
       "other batches its values are gap fills or imputations near the noise, and the batch correction centres each "
       "batch, so the tests and models treat it as any other feature")


def batch_only_counts(record: dict) -> str | None:
    """"N (batch A: n, ...; about E expected by chance)" from correction.json's ``batch_only`` (batch -> count) and
    ``batch_only_expected``; None when the record has no such key (an older run)."""
    counts = record.get("batch_only")
    if not isinstance(counts, dict):
        return None
    expected = record.get("batch_only_expected")
    chance = (f"about {expected:.1f} expected by chance if detection did not depend on the batch"
              if isinstance(expected, (int, float)) else "")
    if not counts:
        return f"0 ({chance})" if chance else "0"
    return f"{sum(int(v) for v in counts.values())} (" + ", ".join(
        f"batch {k}: {int(v)}" for k, v in counts.items()) + (f"; {chance}" if chance else "") + ")"


def batch_only_part(corrected: pl.DataFrame) -> str:
    """The features detected in one batch only, most often detected first, with their batch and whether a flag
    leaves them out; empty when none is marked (or the matrix predates the mark)."""
    if "batch_only" not in corrected.columns:
        return ""
    marked = corrected.filter(pl.col("batch_only").is_not_null()).sort("n_detected", descending=True)
    if marked.height == 0:
        return ""
    more = f" (the {MAX_ROWS} most often detected of {marked.height})" if marked.height > MAX_ROWS else ""
    columns = {"consensus_id": "consensus feature", "mz": "m/z", "rt_s": "RT (s)", "batch_only": "batch",
               "n_detected": "runs detecting it", "adduct": "adduct", "excluded": "left out by another flag"}
    per_batch = marked.group_by("batch_only").len().sort("batch_only")
    counts = ", ".join(f"batch {esc(b)}: {n}" for b, n in per_batch.iter_rows())
    return (f"<h3>Features detected in one batch only{more}</h3><p>{marked.height} consensus feature(s) ({counts}): "
            f"{WHY}. They are kept; if the outcome groups are not spread evenly over the batches, a difference in "
            "such a feature may be the batch's (a marked feature that is tested carries it in a column 'one batch "
            "only' in What differs).</p>"
            + marked_features_table(marked.head(MAX_ROWS), columns, "batch-only-table", "n_detected"))


def batch_only_of(tested: pl.DataFrame, corrected: pl.DataFrame | None) -> pl.DataFrame:
    """``tested`` with column ``batch_only`` joined from the corrected matrix by consensus_id (unchanged when it
    has it already, when ``corrected`` is None or lacks the mark, or when no tested feature is marked)."""
    if "batch_only" in tested.columns or corrected is None or "batch_only" not in corrected.columns:
        return tested
    marks = corrected.filter(pl.col("batch_only").is_not_null()).select(
        pl.col("consensus_id").cast(pl.Utf8), "batch_only")
    if not tested.height or not tested["consensus_id"].cast(pl.Utf8).is_in(marks["consensus_id"].to_list()).any():
        return tested
    return tested.with_columns(pl.col("consensus_id").cast(pl.Utf8)).join(marks, on="consensus_id", how="left",
                                                                            maintain_order="left")


def batch_only_warning(tested: pl.DataFrame, outcome: str, warnings: list) -> None:
    """A caution naming the features at q < SIGNIFICANCE that were detected in one batch only (``batch_only``
    column of ``tested``, :func:`batch_only_of`)."""
    if "batch_only" not in tested.columns or "q_value" not in tested.columns:
        return
    hits = tested.filter((pl.col("q_value") < SIGNIFICANCE).fill_null(False))
    marked = hits.filter(pl.col("batch_only").is_not_null())
    if not marked.height:
        return
    named = ", ".join(f"{c} (batch {b})" for c, b in marked.select("consensus_id", "batch_only").head(8).iter_rows())
    more = f" and {marked.height - 8} more" if marked.height > 8 else ""
    warnings.append(Caution(
        f"outcome <b>{esc(outcome)}</b>: {marked.height} of the {hits.height} features at q &lt; {SIGNIFICANCE:g} "
        f"were detected in one batch only ({esc(named)}{more}; column 'one batch only'): {WHY}. Check that the "
        "outcome's groups are spread alike over the batches (see 'Batch, blanks and drift') before reporting such a "
        "difference", QUALITY, "detected in one batch only", (f"differential:{outcome}",)))
