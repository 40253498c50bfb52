"""The report's account of the feature-matrix model: the consensus features its score rests on
(``results/study/models/{outcome}/feature_attribution.parquet``, written by the models stage; method in
``modelling.matrix_attribution``), beside each feature's identification and differential result. A trial (AP)
found the verdict resting on this model while nothing said what it looked at.
May import ``core``, ``modelling`` and other ``reporting`` modules.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

import polars as pl

from ms2study.core.errors import InputError
from ms2study.modelling.differential import read_summary
from ms2study.modelling.matrix_attribution import FILE
from ms2study.reporting.collect import OutcomeFiles
from ms2study.reporting.html import esc
from ms2study.reporting.tables import interactive_table

TOP_FEATURES = 10
COLUMNS = {"rank": "rank", "consensus_id": "consensus feature", "name": "compound", "msi_level": "level (Schymanski)",
           "mz": "m/z", "rt_s": "RT (s)", "share": "share of the model", "contribution": "contribution",
           "direction": "direction", "_effect": "{effect}", "q_value": "q (differential)",
           "_measured": "with a value (detected or gap-filled)"}


def _direction(score: str, difference: float | None, positive: str, kind: str | None) -> str:
    """The table's direction cell: where the feature pushes the score and its own level (``value_difference``)."""
    if difference is None or math.isnan(difference) or not positive:
        return score
    if kind == "continuous":
        return f"{score}; {'rises' if difference > 0 else 'falls'} with {positive}"
    return f"{score}; {'higher' if difference > 0 else 'lower'} in {positive}"


def matrix_tables(models: Sequence[OutcomeFiles]) -> dict[str, Path]:
    """Per outcome (the summary's ``outcome``, else its folder's name) the feature-matrix split the models stage wrote
    beside its summary.json (``modelling.matrix_attribution.FILE``); outcomes whose summary is absent are left out
    (the models section says so)."""
    tables = {}
    for files in models:
        summary = Path(files.summary)
        if summary.exists():
            tables[str(json.loads(summary.read_text()).get("outcome") or summary.parent.name)] = summary.parent / FILE
    return tables


def matrix_part(path: Path | None, outcome: str, tested: pl.DataFrame, effect: str | None, effect_header: str,
                caveat: str | None = None) -> str:
    """The ``TOP_FEATURES`` consensus features the feature-matrix model of ``outcome`` leans on most, joined to
    their rows of the outcome's differential table ``tested`` (every feature, tested or not: name, m/z, RT, the
    ``effect`` column as ``effect_header``, q or "not tested"), or "" when no path is given; an absent file, or a
    model not split, says so. ``caveat``
    (why the model is not shown to beat chance, ``outcomes.attribution_caveats``) heads it. Raises InputError naming
    the file when it lacks the columns."""
    if path is None:
        return ""
    title = "<h4>What the feature-matrix model looks at</h4>"
    if caveat:
        title = ("<h4>What the feature-matrix model looks at (read with caution: not evidence)</h4>"
                 f'<p class="note caveat"><b>Read with caution</b>: {esc(caveat)}. The values below explain that '
                 "model, not a difference found in the study: do not read them as evidence about these "
                 "compounds.</p>")
    if not Path(path).exists():
        return title + (f"<p>The table <code>{esc(Path(path).name)}</code> is missing (made by the models stage of "
                        "this version: rerun it).</p>")
    summary = read_summary(path)
    table = pl.read_parquet(path)
    missing = [c for c in ("consensus_id", "contribution", "share", "rank") if c not in table.columns]
    if missing:
        raise InputError(f"the feature-matrix attribution of outcome {outcome} lacks column(s) {missing}",
                         file=str(path), fix="rerun the models stage")
    if summary.get("status") != "done":
        return title + f"<p>Not explained: {esc(summary.get('reason') or 'no reason recorded')}.</p>"
    if table.height == 0:
        return title + ("<p>The final feature-matrix model kept no feature (its regularisation shrank every weight to "
                        "zero): there is nothing to explain.</p>")
    keep = [c for c in ("consensus_id", "name", "msi_level", "mz", "rt_s", effect, "q_value") if c and c in
            tested.columns]
    rows = table.sort("rank").head(TOP_FEATURES).join(
        tested.select(keep).with_columns(pl.col("consensus_id").cast(pl.Utf8)), on="consensus_id", how="left")
    if "q_value" in rows.columns:  # a feature the model uses need not be tested (trial AT: blank cells, no reason)
        rows = rows.with_columns(pl.col("q_value").cast(pl.Float64).map_elements(
            lambda q: f"{q:.3g}", return_dtype=pl.Utf8).fill_null("not tested"))
    if "value_difference" in rows.columns:
        rows = rows.with_columns(pl.struct("direction", "value_difference").map_elements(
            lambda r: _direction(r["direction"], r["value_difference"], str(summary.get("positive_class") or ""),
                                 summary.get("type")), return_dtype=pl.Utf8).alias("direction"))
    rows = rows.with_columns(pl.format("{} of {}", "n_measured", "n_samples").alias("_measured"),
                             *([pl.col(effect).alias("_effect")] if effect and effect in rows.columns else []))
    total = float(table["contribution"].abs().sum())
    shown_share = float(rows["contribution"].abs().sum()) / total if total else float("nan")
    half = summary.get("n_carrying_half")
    leaning = ""
    if half is not None and half <= 2:
        names = [str(r["name"] or r["consensus_id"]) for r in rows.head(int(half)).iter_rows(named=True)]
        leaning = (f" Half of the model rests on {' and '.join(esc(n) for n in names)}: the verdict stands or falls "
                   "with {}; check {} (peak shape, batch, identity) before reading it.".format(
                       "it" if half == 1 else "them", "it" if half == 1 else "them"))
    text = (f'<p class="note">The {rows.height} consensus features the feature-matrix model of this outcome leans on '
            f"most ({summary.get('n_used')} of its {summary.get('n_features')} features carry weight; "
            f"{half} {'carries' if half == 1 else 'carry'} at least half of the absolute contribution; the "
            f"{rows.height} shown carry {shown_share:.0%} of it). The model is linear in the log intensities, so its "
            "score splits exactly over the features (refitted on all modelled samples with "
            f"{esc(summary.get('regularisation') or 'the chosen regularisation')}). Share: the feature's part of the "
            "difference between the classes' mean scores (continuous outcomes: of the score's slope), signed, so the "
            "shares add up to 1 and a negative one pulls against the separation. Direction: where the feature "
            "pushes the score, and whether its own level is higher or lower there (a feature lower in one class "
            "pushes the score toward it when the model weighs it negatively; the effect and q from the differential "
            "test stand beside it; a feature the model uses can be far from significant alone, or not tested). The "
            "model keeps few features (its regularisation keeps one of several that vary together), so a strong "
            "difference missing here is no sign that it does not differ: What differs above tests every feature. "
            "With a value: "
            "samples where the matrix holds one, detected or gap-filled (the others carry the model's fill)."
            f"{leaning} {esc(summary.get('units') or '')}</p>")
    columns = {c: h.format(effect=effect_header) for c, h in COLUMNS.items() if c in rows.columns}
    return title + text + interactive_table(rows.select(list(columns)).rename(columns),
                                            "explained-" + "".join(ch if ch.isalnum() else "_" for ch in outcome),
                                            order=[("rank", "asc")])
