"""HTML text of the report: the inline style sheet, escaping, number formatting, tables, ranked warnings and the page.

Everything the report shows from the user's data passes through ``esc`` (or ``fmt``/``html_table``, which call it); only
cells marked as pre-built HTML (``("html", text)``) are written as they are. A warning is HTML text; a ``Caution`` is
one that also says what it means for the conclusions (its ``kind``), so that the page ranks them: first what casts doubt
on the results, then data-quality notes, then processing details in a collapsed block. The page carries its scripts
inline (plotly.js once, the DataTables bundle of itables once; ``page``) and names no external address. Imports the
standard library, numpy, plotly and ``reporting.tables``.
"""

from __future__ import annotations

import html
from typing import Any

import numpy as np

PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2", "#7f7f7f",
           "#bcbd22"]

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0 auto;max-width:1200px;padding:1em 2em;
color:#222;line-height:1.4}
h1{border-bottom:2px solid #333;padding-bottom:.2em}h2{margin-top:2em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;margin:.5em 0 1em;font-size:.9em}th,td{border:1px solid #ccc;padding:.25em .6em;
text-align:left;vertical-align:top}th{background:#f0f0f0}td.num{text-align:right;font-variant-numeric:tabular-nums}
.warning{background:#fff3cd;border:2px solid #d39e00;border-radius:4px;padding:.6em 1em;margin:.6em 0}
.warning strong{color:#8a6100}.note{color:#555;font-size:.9em}.ok{background:#e8f5e9;border:1px solid #81c784;
border-radius:4px;padding:.6em 1em}.charts{display:flex;flex-wrap:wrap;gap:1em}.chart{border:1px solid #ddd;
padding:.3em}.charts .chart{flex:0 0 auto}pre{background:#f7f7f7;padding:.8em;overflow:auto;font-size:.85em}
nav a{margin-right:1em}.findings{background:#eef4fb;border:2px solid #4a7ab5;border-radius:4px;padding:.4em 1.2em;
margin:1em 0}.findings h3{margin:.5em 0 .2em}.findings li{margin:.25em 0}.caution-ref{color:#8a6100;font-size:.9em}
.processing .warning{background:#f7f7f7;border:1px solid #ccc}.processing .warning strong{color:#555}
details.processing summary{cursor:pointer;font-weight:600;margin:.6em 0}
"""

# What a warning means for the conclusions, in the order the page lists them: it casts doubt on a result (a local
# intensity effect behind the hits, few samples per class, hits without MS/MS, a permutation p at its floor, tests
# resting on imputed values); it notes the data's quality; or it details how the data were processed (library
# records dropped while cleaning, calibration internals), shown collapsed.
DOUBT, QUALITY, PROCESSING = "doubt", "quality", "processing"
TIERS = {DOUBT: "Cautions on the conclusions", QUALITY: "Data quality", PROCESSING: "Processing notes"}


class Caution(str):
    """A warning (HTML text, user text already escaped) that knows its rank. It is a ``str``, so that it joins the
    plain warnings every section appends to one list (a plain string ranks as ``QUALITY``).

    ``kind``: one of ``TIERS`` (ValueError otherwise); ``label``: a few words naming it beside the finding it bears
    on (empty: not named there); ``concerns``: the findings it bears on, each a section anchor ("models",
    "differential", "identifications") alone (every outcome) or with an outcome ("differential:group").
    """

    kind: str
    label: str
    concerns: tuple[str, ...]

    def __new__(cls, text: str, kind: str = QUALITY, label: str = "", concerns: tuple[str, ...] = ()) -> "Caution":
        if kind not in TIERS:
            raise ValueError(f"unknown warning kind '{kind}' (use {', '.join(TIERS)})")
        self = super().__new__(cls, text)
        self.kind, self.label, self.concerns = kind, label, tuple(concerns)
        return self


def kind_of(warning: str) -> str:
    """The rank of a warning: its ``Caution.kind``, ``QUALITY`` for a plain string."""
    return getattr(warning, "kind", QUALITY)


def ranked(warnings: list[str]) -> list[str]:
    """The warnings in the order of ``TIERS`` (doubt, quality, processing), each tier in the order given."""
    order = list(TIERS)
    return sorted(warnings, key=lambda w: order.index(kind_of(w)))


def warning_anchor(warnings: list[str], warning: str) -> str:
    """The id of ``warning``'s box on the page: its position among ``ranked(warnings)`` (ValueError if absent)."""
    for i, w in enumerate(ranked(warnings)):
        if w is warning:
            return f"warning-{i + 1}"
    raise ValueError("the warning is not in the list")


def esc(value: Any) -> str:
    """HTML-escaped text of any value (None: empty); quotes are escaped too, so the text is safe in attributes."""
    return "" if value is None else html.escape(str(value), quote=True)


def fmt(value: Any, digits: int = 3) -> str:
    """A value as table text: floats with ``digits`` decimals, None, NaN and infinities as "NA", the rest escaped."""
    if value is None:
        return "NA"
    if isinstance(value, float):
        if not np.isfinite(value):
            return "NA"
        return f"{value:.{digits}f}"
    return esc(value)


def p_value_text(value: Any) -> str:
    """A permutation p, one form everywhere in the report: three significant digits (0.0099 and 0.0495, never 0.010 or
    0.050 rounded across a line); None or NaN: "NA"."""
    if value is None or not np.isfinite(float(value)):
        return "NA"
    return f"{float(value):.3g}"


def interval_text(low: Any, high: Any, digits: int = 2) -> str:
    """A 95 % interval in running text, one form everywhere in the report: "95 % interval 0.62 to 0.97" (tables use
    ``[low, high]`` cells); a missing bound prints "NA"."""
    return f"95 % interval {fmt(low, digits)} to {fmt(high, digits)}"


def q_cell(value: float | None) -> tuple[str, str]:
    """A q- or p-value cell: two significant digits (0.00012 must not print as 0.000); None or NaN: "NA"."""
    return ("html", "NA" if value is None or not np.isfinite(value) else f"{value:.2g}")


def html_table(header: list[str], rows: list[list[Any]], numeric: set[int] | None = None) -> str:
    """An HTML table. Cells are escaped (floats formatted by ``fmt``) unless they are pre-built HTML, given as a
    tuple ``("html", text)``; columns whose index is in ``numeric`` are right-aligned."""
    numeric = numeric or set()
    out = ["<table><thead><tr>", *(f"<th>{esc(h)}</th>" for h in header), "</tr></thead><tbody>"]
    for row in rows:
        out.append("<tr>")
        for i, cell in enumerate(row):
            text = cell[1] if isinstance(cell, tuple) and cell and cell[0] == "html" else (
                fmt(cell) if isinstance(cell, float) else esc(cell))
            out.append(f'<td class="num">{text}</td>' if i in numeric else f"<td>{text}</td>")
        out.append("</tr>")
    out.append("</tbody></table>")
    return "".join(out)


# a per-run table longer than this is paged (trial AK: three tables of 64-80 runs ran unpaged, a page 49,000 px tall)
LONG_TABLE_ROWS = 30


def run_table(header: list[str], rows: list[list], table_id: str, numeric: set[int] | None = None) -> str:
    """A table of one row per run: ``html_table`` up to ``LONG_TABLE_ROWS`` rows, beyond that an
    ``interactive_table`` (sortable, searchable, 25 rows a page) with the same header; cells of ``numeric``
    columns that are not numbers ("NA") become empty there, the other cells text. ``table_id`` as for
    ``interactive_table``."""
    if len(rows) <= LONG_TABLE_ROWS:
        return html_table(header, rows, numeric=numeric)
    import polars as pl

    from ms2study.reporting.tables import interactive_table

    numeric = numeric or set()

    def column(i: int) -> pl.Series:
        values = [r[i] for r in rows]
        if i in numeric:
            return pl.Series(header[i], [float(v) if isinstance(v, int | float) else None for v in values],
                             dtype=pl.Float64)
        return pl.Series(header[i], [None if v is None else str(v) for v in values], dtype=pl.Utf8)

    return interactive_table(pl.DataFrame([column(i) for i in range(len(header))]), table_id, page_length=25)


def warning_box(text_html: str, anchor: str | None = None, label: str = "Warning") -> str:
    """A warning box around ``text_html`` (already HTML: escape user text before passing it); ``anchor``: its id;
    ``label``: the word before it ("Note" for a processing note, which often only confirms how the data were read:
    trial BD read "Warning: MS1 came centroided" as a problem)."""
    at = f' id="{esc(anchor)}"' if anchor else ""
    return f'<div class="warning"{at}><strong>{esc(label)}:</strong> {text_html}</div>'


def tier_summary(warnings: list[str]) -> str:
    """The warnings counted by tier in words, e.g. "2 cautions on the conclusions, 1 on data quality, 4 processing
    notes" ("no warnings" when there are none): what the report stage logs and ``ms2study run`` prints at its end."""
    counts = {kind: sum(kind_of(w) == kind for w in warnings) for kind in TIERS}
    words = [(DOUBT, "caution{} on the conclusions"), (QUALITY, "on data quality"), (PROCESSING, "processing note{}")]
    parts = [f"{counts[k]} " + (w.format("" if counts[k] == 1 else "s") if "{}" in w else w)
             for k, w in words if counts[k]]
    return ", ".join(parts) if parts else "no warnings"


def plain_text(fragment: str) -> str:
    """An HTML fragment of this report (a warning) as one line of plain text: tags dropped, entities decoded."""
    import html
    import re

    return " ".join(html.unescape(re.sub(r"<[^>]+>", "", str(fragment))).split())


def warnings_html(warnings: list[str]) -> str:
    """The warnings section's body: the warnings that cast doubt on the results, then the data-quality ones (each
    tier under its title, ``TIERS``), or "No warnings." when there are none of these two kinds; then the processing
    notes in a collapsed block. Each box has the id ``warning_anchor`` gives it."""
    order = ranked(warnings)
    boxes = {kind: [(f"warning-{i + 1}", w) for i, w in enumerate(order) if kind_of(w) == kind] for kind in TIERS}
    parts = []
    for kind in (DOUBT, QUALITY):
        if boxes[kind]:
            parts.append(f'<h3 id="warnings-{kind}">{TIERS[kind]} ({len(boxes[kind])})</h3>'
                         + "".join(warning_box(w, a) for a, w in boxes[kind]))
    if not parts:
        parts.append('<div class="ok">No warnings.</div>')
    if boxes[PROCESSING]:
        parts.append(f'<details class="processing" id="warnings-processing"><summary>{TIERS[PROCESSING]} '
                     f"({len(boxes[PROCESSING])}): how the data were processed (library records dropped while "
                     "cleaning, calibration internals, ion labels), for checking when a result looks off</summary>"
                     + "".join(warning_box(w, a, "Note") for a, w in boxes[PROCESSING]) + "</details>")
    return "".join(parts)


# Marks the page once it has loaded and the charts and tables had a turn to draw: ``data-rendered-ms`` on <body>
# (milliseconds since navigation start) and ``data-errors`` (uncaught script errors), for the browser tests and the
# render-time benchmark; it reads nothing and sends nothing.
READY_SCRIPT = """<script>
window.__reportErrors = 0;
window.addEventListener("error", function () { window.__reportErrors += 1; });
window.addEventListener("unhandledrejection", function () { window.__reportErrors += 1; });
window.addEventListener("load", function () {
  setTimeout(function () {
    document.body.setAttribute("data-errors", String(window.__reportErrors));
    document.body.setAttribute("data-rendered-ms", String(Math.round(performance.now())));
  }, 0);
});
</script>"""


def page(title: str, note_html: str, sections: list[tuple[str, str, str]], warnings: list[str],
         findings_html: str = "") -> str:
    """The whole document: title, ``note_html`` under it, a navigation bar, ``findings_html`` (the main findings,
    ``reporting.findings``; none when empty), the warnings ranked (``warnings_html``), then each section
    ``(anchor, title, body HTML)`` in order. Inline CSS; plotly.js (``plotly.offline.get_plotlyjs``)
    and the DataTables bundle of itables (``tables.offline_init_html``) are embedded once in the head, so the charts
    (``charts.figure_html``) and tables (``tables.interactive_table``) of the sections need no network."""
    from plotly.offline import get_plotlyjs

    from ms2study.reporting.tables import offline_init_html

    links = ([("findings", "Main findings")] if findings_html else []) + [("warnings", "Warnings")] + [
        (a, t) for a, t, _ in sections]
    body = [f"<h1>{esc(title)}</h1>", note_html,
            "<nav>" + "".join(f'<a href="#{a}">{esc(t)}</a>' for a, t in links) + "</nav>"]
    if findings_html:
        body.append(f'<section id="section-findings"><h2 id="findings">Main findings</h2>{findings_html}</section>')
    body.append('<h2 id="warnings">Warnings</h2>' + warnings_html(warnings))
    body.extend(f'<section id="section-{a}"><h2 id="{a}">{esc(t)}</h2>{b}</section>' for a, t, b in sections)
    head = (f'<meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{esc(title)}</title><style>{CSS}</style>{READY_SCRIPT}"
            f'<script type="text/javascript">{get_plotlyjs()}</script>{offline_init_html()}')
    return f"<!DOCTYPE html>\n<html lang=\"en\"><head>{head}</head><body>{''.join(body)}</body></html>\n"


def covariate_names(summary: dict) -> str:
    """The covariates a model or test summary adjusted for (its ``covariates``), as the sample sheet names them
    (without the models' ``cov:`` prefix; a one-hot coded column once, by its name), joined by ", "; "" without
    any. The subject of a paired design
    (``paired_by``, one level per subject) is named once. Not escaped."""
    names = [str(c).removeprefix("cov:") for c in summary.get("covariates") or []]
    block = summary.get("paired_by")
    if block:
        names = [n for n in names if not n.startswith(f"{block}=")]
    # a categorical covariate is one-hot coded (cov:sex=M): name its column, once ("sex=M" read as "males only")
    names = list(dict.fromkeys(n.split("=", 1)[0] for n in names))
    if block:
        names.append(f"{block} (a paired design: each of the {summary.get('n_subjects')} subjects a factor level)")
    return ", ".join(names)
