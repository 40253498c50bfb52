"""The correct stage's notes on its QC fits, for the report: each with its share of the feature-batch pairs (or
features), what happened to those features, and how much of it falls on each outcome's tested features and hits
(``fit_note``, ``fits_part``, ``tested_features``). Split from ``reporting.batch``. May import ``ms2study.correction``
(the fits' QC minimums) and ``reporting.html`` / ``reporting.qcrsd``.
"""

from __future__ import annotations

import re
from pathlib import Path

import polars as pl

from ms2study.correction.drift import LINE_MIN_QC, SPLINE_MIN_QC
from ms2study.reporting.html import esc
from ms2study.reporting.qcrsd import QC_DRIFT_METHODS

# The correct stage's notes on its QC fits (``correction.drift.qc_rlsc``), read to give each its denominator.
FEWER_QCS = re.compile(r"^(\d+) feature-batch fits had fewer QC values than (\w+) needs")
NO_QC = re.compile(r"^(\d+) feature-batch pairs had no QC value")
BORROWED = re.compile(r"^(\d+) features took the run-level median factor")


def _share(k: int, total: int | None, noun: str, detail: str = "") -> str:
    """"K of the TOTAL NOUN (x %; DETAIL)", or "K NOUN" without a total."""
    if not total:
        return f"{k} {noun}"
    return f"{k} of the {total} {noun} ({100 * k / total:.1f} %{'; ' + detail if detail else ''})"


def _pairs(record: dict) -> tuple[int | None, int | None, str]:
    """(features, feature-batch pairs, "N features × B batches") of the record; None where it lacks the counts."""
    n, batches = record.get("n_features"), record.get("batches")
    if not isinstance(n, int) or not isinstance(batches, list) or not batches:
        return (n if isinstance(n, int) else None), None, ""
    return n, n * len(batches), f"{n} features × {len(batches)} batch{'es' * (len(batches) != 1)}"


def tested_features(tables: list[Path]) -> dict[str, tuple[list[str], list[str]]]:
    """Per differential table (``results/study/differential/{outcome}.parquet``, named by its stem): the consensus
    ids it tested (a p-value) and those at q < 0.05. Unreadable tables are left out."""
    out = {}
    for path in tables:
        try:
            frame = pl.read_parquet(path, columns=["consensus_id", "p_value", "q_value"])
        except (OSError, pl.exceptions.PolarsError):
            continue
        done = frame.filter(pl.col("p_value").is_not_null())
        out[Path(path).stem] = (done["consensus_id"].cast(pl.Utf8).to_list(),
                                done.filter(pl.col("q_value") < 0.05)["consensus_id"].cast(pl.Utf8).to_list())
    return out


def tested_share(corrected: pl.DataFrame | None, column: str, tested: dict | None = None) -> str:
    """How much of a QC-fit count (``column`` of the corrected matrix: ``qc_batches_without_value`` or
    ``qc_batches_few_values``, batches per feature) falls on each outcome's tested features and its hits
    (``tested``: outcome -> (tested consensus ids, ids at q < 0.05), ``tested_features``): "; of the 4092 features
    tested for group, 110 (113 pairs), none of its 5 hits". Trials AU, BA and BD read "40 % of the feature-batch
    pairs had no QC value" as 40 % of what was tested, where 110 of 4,092 tested features had none. Empty without
    the column (an older matrix, no QC-based fit) or without tested features."""
    if not tested or corrected is None or column not in corrected.columns or corrected[column].is_null().all():
        return ""
    count = dict(zip(corrected["consensus_id"].cast(pl.Utf8).to_list(), corrected[column].fill_null(0).to_list()))
    parts = []
    for outcome, (ids, hits) in tested.items():
        hit = [c for c in hits if count.get(c, 0)]
        among = [count.get(c, 0) for c in ids if count.get(c, 0)]
        parts.append(f"of the {len(ids)} features tested for {esc(outcome)}, {len(among)} ({sum(among)} pairs), "
                     + (f"{len(hit)} of its {len(hits)} hits" if hit else
                        f"none of its {len(hits)} hits" if hits else "no hits at q < 0.05"))
    return "; " + "; ".join(parts)


def fit_note(text: str, record: dict, corrected: pl.DataFrame | None = None, tested: dict | None = None
             ) -> str | None:
    """A note of the correct stage on its QC fits (``correction.drift.qc_rlsc``: "N feature-batch fits had fewer QC
    values ...", "N feature-batch pairs had no QC value ...", "N features took the run-level median factor ...")
    as HTML with its share of the feature-batch pairs (or of the features) from the record's counts, how much of it
    falls on each outcome's tested features (``tested_share``, with the ``corrected`` matrix) and what happened to
    those features; None for any other note."""
    n_features, pairs, product = _pairs(record)
    kept = "kept in the matrix (none is removed for how it was fitted)"
    if match := FEWER_QCS.match(text):
        k, method = int(match[1]), match[2]
        used = (f"a straight line through {LINE_MIN_QC}-{SPLINE_MIN_QC - 1} QC values or, with 1-{LINE_MIN_QC - 1}, "
                "the batch's QC median" if method == "qc_spline"
                else "the batch's QC median (the batch's offset, not the drift within it)")
        need = SPLINE_MIN_QC if method == "qc_spline" else LINE_MIN_QC
        return (f"{_share(k, pairs, 'feature-batch pairs', product)} had fewer QC values than "
                f"{esc(method)} needs ({need}){tested_share(corrected, 'qc_batches_few_values', tested)}: "
                f"in those batches the feature was corrected by {used}; {kept}")
    if match := NO_QC.match(text):
        return (f"{_share(int(match[1]), pairs, 'feature-batch pairs', product)} had no QC value"
                f"{tested_share(corrected, 'qc_batches_without_value', tested)}: in those batches the feature was "
                "corrected by the run's median factor over the features fitted from "
                "their own QCs (the batch offset and drift the run shares, not the feature's own); " + kept)
    if match := BORROWED.match(text):
        return (f"{_share(int(match[1]), n_features, 'features')} took the run's median factor in a batch "
                "where they were measured but had no QC value (the features behind the feature-batch pairs without a "
                "QC value, counted once: the counts overlap and do not add up); kept in the matrix with their own "
                "drift there left uncorrected (a feature with fewer than two QC values in all has no QC RSD, so the "
                "QC RSD threshold cannot flag it)")
    return None


def fits_part(record: dict) -> str:
    """One sentence splitting the feature-batch pairs by how they were fitted (their own QC values, too few QC
    values, none), from the record's counts and the correct stage's notes; empty without the counts or notes."""
    method = str(record.get("drift_method"))
    _, pairs, product = _pairs(record)
    notes = [str(t) for t in record.get("warnings") or []]
    fewer = next((int(m[1]) for t in notes if (m := FEWER_QCS.match(t))), 0)
    none = next((int(m[1]) for t in notes if (m := NO_QC.match(t))), 0)
    if method not in QC_DRIFT_METHODS or not pairs or not (fewer or none) or fewer + none > pairs:
        return ""
    own, simpler = ((f"a smoothing spline through {SPLINE_MIN_QC} or more", "a line or the batch's QC median")
                    if method == "qc_spline" else (f"a line through {LINE_MIN_QC} or more", "the batch's QC median"))
    def pct(k: int) -> str:
        return f"{k} ({100 * k / pairs:.1f} %)"

    return (f'<p class="note fits">Of the {pairs} feature-batch pairs ({product}): '
            f"{pct(pairs - fewer - none)} were fitted with {own} of their own QC values; "
            f"{pct(fewer)} had too few QC values and took {simpler}; "
            f"{pct(none)} had no QC value and took the run's median factor (see the notes among the "
            "warnings). None is removed for how it was fitted.</p>")
