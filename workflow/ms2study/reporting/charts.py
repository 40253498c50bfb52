"""The report's interactive charts: plotly figures (zoom, pan, hover) written as ``<div>``s without plotly.js.

plotly.js itself is embedded once in the page's head (``reporting.html.page``, from ``plotly.offline.get_plotlyjs``),
so every chart here is written with ``include_plotlyjs=False`` and the file opens with no network. Numeric arrays
are handed to plotly as float32 numpy arrays, which plotly (>= 6) writes as base64 typed arrays: a chromatogram of
600 points costs about 3 kB. Text shown on hover comes from the user's data and is escaped here (plotly renders a
subset of HTML in hover labels and titles). Documentation: https://plotly.com/python/interactive-html-export/.
May import ``ms2study.core`` and ``reporting.html``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
import polars as pl

from ms2study.core.missing import is_missing
from ms2study.reporting.html import PALETTE, esc, fmt

CONFIG = {"displaylogo": False, "responsive": True, "toImageButtonOptions": {"format": "svg"}}
MAX_TRACE_POINTS = 600  # points per chromatogram trace (see ``downsample``)
MAX_LEGEND_TRACES = 10  # chromatograms drawn one line per sample up to this many samples
OUTLIER_COLOUR = "#d62728"
# batches are coloured alike in every chart (chromatograms, batch scatter) from the palette without the outliers' red
BATCH_PALETTE = [c for c in PALETTE if c != OUTLIER_COLOUR]


def _layout(fig: go.Figure, title: str, xlabel: str, ylabel: str, width: int, height: int) -> go.Figure:
    # no plotly template: a template is copied into every figure's JSON and merged on every draw (measured: about
    # a third of the drawing time of the report's charts); the few settings it gave are set here instead
    fig.update_layout(title={"text": esc(title), "font": {"size": 13}}, width=width, height=height,
                      margin={"l": 60, "r": 20, "t": 40, "b": 50}, template="none", plot_bgcolor="white",
                      paper_bgcolor="white", font={"family": "system-ui, sans-serif", "color": "#2a3f5f"},
                      legend={"font": {"size": 10}}, xaxis_title=esc(xlabel), yaxis_title=esc(ylabel))
    axes = {"showgrid": True, "gridcolor": "#ebf0f8", "zeroline": False, "linecolor": "#888", "showline": True,
            "ticks": "outside", "tickcolor": "#888", "automargin": True}
    fig.update_xaxes(**axes)
    fig.update_yaxes(**axes)
    return fig


def figure_html(fig: go.Figure) -> str:
    """The figure as a ``<div class="chart">`` with its plotting script; plotly.js is not included (the page has it
    once)."""
    return ('<div class="chart">' + fig.to_html(full_html=False, include_plotlyjs=False, config=CONFIG)
            + "</div>")


def _f32(values: Sequence[float] | np.ndarray) -> np.ndarray:
    return np.asarray(values, dtype=np.float32)


def roc_points(y: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(false positive rates, true positive rates) of binary labels ``y`` (0/1) ranked by ``score``
    (sklearn.metrics.roc_curve)."""
    from sklearn.metrics import roc_curve

    fpr, tpr, _ = roc_curve(y, score)
    return fpr, tpr


def roc_figure(curves: dict[str, tuple[np.ndarray, np.ndarray, float | None]], title: str) -> go.Figure:
    """ROC curves with the chance diagonal: ``{feature set: (fpr, tpr, auc)}``, fpr and tpr equal-length arrays in
    [0, 1] (``roc_points``); the AUC is printed in the legend."""
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", line={"dash": "dash", "color": "#999"},
                             name="chance", hoverinfo="skip"))
    for i, (name, (fpr, tpr, auc)) in enumerate(curves.items()):
        fig.add_trace(go.Scatter(x=_f32(fpr), y=_f32(tpr), mode="lines", name=esc(f"{name} (AUC {fmt(auc, 2)})"),
                                 line={"color": PALETTE[i % len(PALETTE)], "width": 2, "shape": "hv"}))
    fig.update_xaxes(range=[0, 1])
    fig.update_yaxes(range=[0, 1.02])
    return _layout(fig, title, "false positive rate", "true positive rate", 420, 380)


def map_figure(xy: np.ndarray, sample_ids: list[str], values: list, kind: str | None, title: str,
               axes: list[str], column: str) -> go.Figure:
    """Samples in two dimensions (``xy``: n × 2) coloured by their outcome ``values``: a colour scale for a
    ``continuous`` outcome, one legend entry per class otherwise (missing values: "NA", grey). Hover: sample id and
    value."""
    text = ["NA" if is_missing(v) else str(v).strip() for v in values]
    hover = [f"{esc(s)}<br>{esc(column)}: {esc(t)}" for s, t in zip(sample_ids, text)]
    fig = go.Figure()
    if kind == "continuous":
        numbers = np.array([float(t) if t != "NA" else np.nan for t in text])
        known = ~np.isnan(numbers)
        fig.add_trace(go.Scatter(
            x=_f32(xy[known, 0]), y=_f32(xy[known, 1]), mode="markers", name=esc(column),
            text=[h for h, k in zip(hover, known) if k], hoverinfo="text",
            marker={"size": 9, "color": numbers[known], "colorscale": "RdBu_r", "showscale": True,
                    "colorbar": {"title": {"text": esc(column)}}, "line": {"width": 0.5, "color": "#333"}}))
        groups = [("NA", ~known)] if (~known).any() else []
    else:
        groups = [(c, np.array([t == c for t in text])) for c in sorted(set(text) - {"NA"})]
        groups += [("NA", np.array([t == "NA" for t in text]))] if "NA" in text else []
    for i, (name, mask) in enumerate(groups):
        fig.add_trace(go.Scatter(
            x=_f32(xy[mask, 0]), y=_f32(xy[mask, 1]), mode="markers", name=esc(name),
            text=[h for h, m in zip(hover, mask) if m], hoverinfo="text",
            marker={"size": 9, "color": "#cccccc" if name == "NA" else PALETTE[i % len(PALETTE)],
                    "line": {"width": 0.5, "color": "#333"}}))
    return _layout(fig, title, axes[0], axes[1], 480, 380)


def bar_figure(labels: list[str], values: list[float], title: str, xlabel: str, ylabel: str) -> go.Figure:
    """A bar chart of ``values`` (one bar per label, in the order given)."""
    fig = go.Figure(go.Bar(x=[esc(s) for s in labels], y=_f32(values), marker_color="#4c78a8"))
    fig.update_xaxes(type="category")
    return _layout(fig, title, xlabel, ylabel, 480, 320)


def _neg_log10(values: pl.Series) -> np.ndarray:
    v = values.cast(pl.Float64).fill_null(np.nan).to_numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        return -np.log10(np.clip(v, 1e-300, None))


def _feature_hover(table: pl.DataFrame) -> list[str]:
    """Hover text of consensus features: id, m/z, RT, identification (name, Schymanski level), q."""
    out = []
    for r in table.iter_rows(named=True):
        name = (f"<br>{esc(r.get('name'))} (Schymanski level {esc(r.get('msi_level'))})" if r.get("name") is not None
                else "<br>not identified")
        if r.get("ion") is not None and r.get("compound_group") is not None:
            name += f"<br>{esc(r['ion'])} of compound group {esc(r['compound_group'])}"
        out.append(f"{esc(r['consensus_id'])}<br>m/z {fmt(r.get('mz'), 4)}, RT {fmt(r.get('rt_s'), 1)} s{name}"
                   f"<br>q {fmt(r.get('q_value'), 4)}")
    return out


def volcano_figure(tested: pl.DataFrame, effect: str, effect_label: str, title: str,
                   threshold: float = 0.05) -> go.Figure:
    """Volcano plot of a differential table's tested features: ``effect`` (log2 fold change or log2 effect per
    unit) against -log10 q; features at q < ``threshold`` in red (up) or blue (down), the others grey; a dashed
    line at the threshold. Hover: consensus feature, m/z, RT, identification and q."""
    y = _neg_log10(tested["q_value"])
    x = tested[effect].cast(pl.Float64).fill_null(np.nan).to_numpy()
    significant = tested["q_value"].fill_null(1.0).to_numpy() < threshold
    hover = _feature_hover(tested)
    fig = go.Figure()
    for name, mask, colour in (("not significant", ~significant, "#aaaaaa"),
                               (f"q < {threshold:g}, up", significant & (x > 0), "#d62728"),
                               (f"q < {threshold:g}, down", significant & (x <= 0), "#1f77b4")):
        fig.add_trace(go.Scatter(x=_f32(x[mask]), y=_f32(y[mask]), mode="markers", name=name,
                                 text=[h for h, m in zip(hover, mask) if m], hoverinfo="text",
                                 marker={"size": 7, "color": colour, "opacity": 0.8}))
    fig.add_hline(y=-np.log10(threshold), line_dash="dash", line_color="#666")
    return _layout(fig, title, effect_label, "-log10 q", 560, 420)


def enrichment_figure(enrichment: pl.DataFrame, title: str, threshold: float = 0.05, top: int = 25) -> go.Figure:
    """Class enrichment as horizontal bars of -log10 q for the ``top`` classes by q (best at the top), coloured by
    direction (up red, down blue, mixed grey), a dashed line at ``threshold``. Hover: class, compounds, up/down, q."""
    rows = enrichment.sort("q_value").head(top).reverse()
    colours = {"up": "#d62728", "down": "#1f77b4"}
    hover = [f"{esc(r['class_path'])}<br>{r['n_compounds']} compounds, {r['n_up']} up, {r['n_down']} down"
             f"<br>p {fmt(r['p_value'], 4)}, q {fmt(r['q_value'], 4)}" for r in rows.iter_rows(named=True)]
    fig = go.Figure(go.Bar(
        x=_f32(_neg_log10(rows["q_value"])), y=[esc(c) for c in rows["class_name"]], orientation="h",
        marker_color=[colours.get(str(d), "#999999") for d in rows["direction"]], text=hover, hoverinfo="text",
        textposition="none"))
    fig.add_vline(x=-np.log10(threshold), line_dash="dash", line_color="#666")
    return _layout(fig, title, "-log10 q", "class", 560, max(260, 60 + 22 * rows.height))


def mirror_figure(query: tuple[np.ndarray, np.ndarray], library: tuple[np.ndarray, np.ndarray], title: str,
                  query_label: str, library_label: str) -> go.Figure:
    """Mirror plot: the query spectrum up, the library spectrum down, each scaled to its own largest peak (100);
    ``query`` and ``library`` are (m/z, intensity) arrays. Drawn as sticks (one line segment per peak)."""
    fig = go.Figure()
    for (mz, intensity), sign, colour, label in ((query, 1, "#1f77b4", query_label),
                                                 (library, -1, "#d62728", library_label)):
        mz, intensity = np.asarray(mz, dtype=np.float64), np.asarray(intensity, dtype=np.float64)
        rel = intensity / intensity.max() * 100 if intensity.size and intensity.max() > 0 else intensity
        xs = np.repeat(mz, 3)
        ys = np.column_stack([np.zeros_like(rel), sign * rel, np.full_like(rel, np.nan)]).ravel()
        xs[2::3] = np.nan
        fig.add_trace(go.Scatter(x=_f32(xs), y=_f32(ys), mode="lines", name=esc(label),
                                 line={"color": colour, "width": 1.5}, hovertemplate="m/z %{x:.4f}<br>%{y:.1f}"))
    fig.add_hline(y=0, line_color="#333", line_width=1)
    fig.update_yaxes(range=[-105, 105])
    return _layout(fig, title, "m/z", "relative intensity (library below)", 560, 360)


def downsample(x: np.ndarray, y: np.ndarray, n: int = MAX_TRACE_POINTS) -> tuple[np.ndarray, np.ndarray]:
    """At most ``n`` points of a trace sorted by ``x``: the points are cut into ``n`` equal consecutive runs and the
    largest ``y`` of each run kept (with its ``x``), so peaks survive the thinning."""
    if x.size <= n:
        return x, y
    edges = np.linspace(0, x.size, n + 1).astype(np.int64)
    starts = edges[:-1]
    picks = starts + np.array([np.argmax(y[a:b]) for a, b in zip(starts, edges[1:])])
    return x[picks], y[picks]


def _joined(traces: list[tuple[str, np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Thinned traces joined into one line with a gap (NaN) between samples, and the sample of each point."""
    xs, ys, names = [], [], []
    for sample, x, v in traces:
        xs += [x, [np.nan]]
        ys += [v, [np.nan]]
        names += [sample] * (x.size + 1)
    return np.concatenate(xs), np.concatenate(ys), names


def chromatogram_figure(traces: list[tuple[str, np.ndarray, np.ndarray]], title: str, ylabel: str,
                        highlight: set[str] | None = None, batches: dict[str, str] | None = None) -> go.Figure:
    """Chromatograms overlaid: ``(sample id, rt in s, intensity)`` per sample, each thinned to ``MAX_TRACE_POINTS``
    (``downsample``). Up to ``MAX_LEGEND_TRACES`` samples get a line and a legend entry each; more are drawn as one
    line per batch (``batches``: sample id -> batch; one line for all samples when they are of one batch or
    ``batches`` is None) and one for those in ``highlight`` (outliers, thicker, red), the sample named on hover
    (plotly's cost grows with the number of traces: 100 traces take seconds to draw, 2 take milliseconds). A batch
    whose runs differ from the others' (a shifted or weaker TIC) shows as a line of its own colour."""
    highlight = highlight or set()
    batches = batches or {}
    thinned = []
    for sample, rt, y in traces:
        order = np.argsort(rt, kind="stable")
        x, v = downsample(np.asarray(rt, dtype=np.float64)[order], np.asarray(y, dtype=np.float64)[order])
        thinned.append((sample, x, v))
    fig = go.Figure()
    if len(thinned) <= MAX_LEGEND_TRACES:
        for i, (sample, x, v) in enumerate(thinned):
            flagged = sample in highlight
            fig.add_trace(go.Scatter(
                x=_f32(x), y=_f32(v), mode="lines", name=esc(sample + (" (outlier)" if flagged else "")),
                line={"width": 2.5 if flagged else 1, "color": PALETTE[i % len(PALETTE)]},
                hovertemplate=esc(sample) + "<br>RT %{x:.1f} s<br>%{y:.3g}<extra></extra>"))
    else:
        plain = [t for t in thinned if t[0] not in highlight]
        names = sorted({batches.get(s, "") for s, _, _ in plain})
        if len(names) > 1:  # one line per batch, the batch's runs counted; runs without a batch under "no batch"
            members = {b: [t for t in plain if batches.get(t[0], "") == b] for b in names}
            groups = [(f"{f'batch {b}' if b else 'no batch'} ({len(members[b])})", members[b],
                       {"width": 1, "color": BATCH_PALETTE[i % len(BATCH_PALETTE)]}) for i, b in enumerate(names)]
        else:
            groups = [(f"samples ({len(plain)})", plain, {"width": 1, "color": "rgba(31,119,180,0.45)"})]
        for name, members, line in groups + [
                (f"outliers ({sum(s in highlight for s, _, _ in thinned)})",
                 [t for t in thinned if t[0] in highlight], {"width": 2, "color": OUTLIER_COLOUR})]:
            if not members:
                continue
            x, v, names = _joined(members)
            escaped = {s: esc(s) for s, _, _ in members}
            # a numpy array, not a list: plotly validates a list element by element (seconds at 200 samples)
            fig.add_trace(go.Scatter(x=_f32(x), y=_f32(v), mode="lines", name=name, line=line,
                                     text=np.array([escaped[s] for s in names]),
                                     hovertemplate="%{text}<br>RT %{x:.1f} s<br>%{y:.3g}<extra></extra>"))
    return _layout(fig, title, "retention time (s)", ylabel, 560, 380)


def distribution_figure(series: dict[str, np.ndarray], title: str, xlabel: str, threshold: float | None = None,
                        threshold_label: str = "threshold", bins: int = 40) -> go.Figure:
    """Overlaid histograms of each named series (NaN dropped; the name is shown with its median in the legend) on
    shared bins (``numpy.histogram_bin_edges`` of all values), a dashed vertical line at ``threshold``."""
    finite = {name: np.asarray(v, dtype=np.float64)[np.isfinite(np.asarray(v, dtype=np.float64))]
              for name, v in series.items()}
    everything = np.concatenate([v for v in finite.values()] or [np.zeros(0)])
    edges = np.histogram_bin_edges(everything, bins=bins) if everything.size else np.linspace(0, 1, bins + 1)
    fig = go.Figure()
    for i, (name, values) in enumerate(finite.items()):
        counts, _ = np.histogram(values, bins=edges)
        median = float(np.median(values)) if values.size else float("nan")
        fig.add_trace(go.Bar(x=_f32((edges[:-1] + edges[1:]) / 2), y=_f32(counts), width=float(edges[1] - edges[0]),
                             name=esc(f"{name} (median {fmt(median, 3)}, n = {values.size})"), opacity=0.6,
                             marker_color=PALETTE[i % len(PALETTE)],
                             hovertemplate="%{x:.3g}: %{y} features<extra></extra>"))
    fig.update_layout(barmode="overlay", bargap=0)
    if threshold is not None:
        fig.add_vline(x=threshold, line_dash="dash", line_color="#666", annotation_text=esc(threshold_label))
    return _layout(fig, title, xlabel, "features", 560, 360)


def batch_scatter_figure(x: np.ndarray, y: np.ndarray, batches: list[str], kinds: list[str], hover: list[str],
                         title: str, xlabel: str, ylabel: str, symbols: dict[str, str]) -> go.Figure:
    """Points coloured by batch (one palette colour per batch, in the order of ``sorted(set(batches))``) with one
    marker symbol per kind (``symbols``: kind -> plotly symbol, e.g. {"sample": "circle", "QC": "diamond"}; kinds
    are drawn in that order), a trace per (kind, batch) so the legend shows and hides each. ``hover``: the text of
    each point (escaped here)."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    order = sorted(set(batches))
    batch_arr, kind_arr = np.array(batches, dtype=object), np.array(kinds, dtype=object)
    fig = go.Figure()
    for kind, symbol in symbols.items():
        for b, batch in enumerate(order):
            mask = (kind_arr == kind) & (batch_arr == batch)
            if not mask.any():
                continue
            fig.add_trace(go.Scatter(
                x=_f32(x[mask]), y=_f32(y[mask]), mode="markers", name=esc(f"{kind}, batch {batch}"),
                text=[esc(h) for h, m in zip(hover, mask) if m], hoverinfo="text",
                marker={"size": 10 if "diamond" in symbol else 8, "symbol": symbol,
                        "color": BATCH_PALETTE[b % len(BATCH_PALETTE)],
                        "line": {"width": 1,
                                 "color": BATCH_PALETTE[b % len(BATCH_PALETTE)] if "open" in symbol else "#333"}}))
    return _layout(fig, title, xlabel, ylabel, 560, 380)
