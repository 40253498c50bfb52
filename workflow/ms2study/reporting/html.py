"""HTML text of the report: the inline style sheet, escaping, number formatting, tables, warning boxes and the page.

Everything the report shows from the user's data passes through ``esc`` (or ``fmt``/``html_table``, which call it);
only cells marked as pre-built HTML (``("html", text)``) are written as they are. The page carries its scripts
inline (plotly.js once, the DataTables bundle of itables once; ``page``) and names no external address. Imports
the standard library, numpy, plotly and ``reporting.tables``.
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
nav a{margin-right:1em}
"""


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


def warning_box(text_html: str) -> str:
    """A warning box around ``text_html`` (already HTML: escape user text before passing it)."""
    return f'<div class="warning"><strong>Warning:</strong> {text_html}</div>'


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


def page(title: str, note_html: str, sections: list[tuple[str, str, str]], warnings: list[str]) -> str:
    """The whole document: title, ``note_html`` under it, a navigation bar, the warnings (or "No warnings."), then
    each section ``(anchor, title, body HTML)`` in order. Inline CSS; plotly.js (``plotly.offline.get_plotlyjs``)
    and the DataTables bundle of itables (``tables.offline_init_html``) are embedded once in the head, so the charts
    (``charts.figure_html``) and tables (``tables.interactive_table``) of the sections need no network."""
    from plotly.offline import get_plotlyjs

    from ms2study.reporting.tables import offline_init_html

    body = [f"<h1>{esc(title)}</h1>", note_html,
            "<nav>" + "".join(f'<a href="#{a}">{esc(t)}</a>' for a, t, _ in sections) + "</nav>",
            '<h2 id="warnings">Warnings</h2>']
    body.append("".join(warning_box(w) for w in warnings) if warnings else '<div class="ok">No warnings.</div>')
    body.extend(f'<section id="section-{a}"><h2 id="{a}">{esc(t)}</h2>{b}</section>' for a, t, b in sections)
    head = (f'<meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{esc(title)}</title><style>{CSS}</style>{READY_SCRIPT}"
            f'<script type="text/javascript">{get_plotlyjs()}</script>{offline_init_html()}')
    return f"<!DOCTYPE html>\n<html lang=\"en\"><head>{head}</head><body>{''.join(body)}</body></html>\n"
