"""Hand-drawn SVG charts of the report (ROC curves, scatter maps, bar charts) and the 2-D sample maps behind them.

Charts are plain SVG strings with a ``<title>`` (the browser's tooltip and the accessible name); every label is
escaped. The maps are pictures, not models: missing values are filled over all samples and the matrix standardised
before PCA (numpy SVD) or, when the optional umap-learn package is importable, UMAP. May import ``ms2study.core``,
``ms2study.modelling`` and ``reporting.html``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ms2study.core.missing import is_missing
from ms2study.modelling.preprocessing import HalfMinimumImputer
from ms2study.reporting.html import PALETTE, esc, fmt


def _svg_frame(width: int, height: int, title: str, xlabel: str, ylabel: str,
               plot_width: int | None = None) -> list[str]:
    pw = plot_width or width - 70
    return [(f'<svg width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" '
            f'aria-label="{esc(title)}"><title>{esc(title)}</title>'),
            f'<rect x="50" y="20" width="{pw}" height="{height - 70}" fill="white" stroke="#333"/>',
            f'<text x="{50 + pw / 2:.0f}" y="14" text-anchor="middle" font-size="12">{esc(title)}</text>',
            (f'<text x="{50 + pw / 2:.0f}" y="{height - 12}" text-anchor="middle" font-size="11">{esc(xlabel)}'
            "</text>"),
            (f'<text x="12" y="{(height - 50) / 2 + 20:.0f}" text-anchor="middle" font-size="11" '
            f'transform="rotate(-90 12 {(height - 50) / 2 + 20:.0f})">{esc(ylabel)}</text>')]


def roc_svg(curves: dict[str, tuple[np.ndarray, np.ndarray, float | None]], title: str) -> str:
    """ROC curves on one 360 × 340 px chart with the chance diagonal: ``{feature set: (fpr, tpr, auc)}``, fpr and
    tpr as equal-length arrays in [0, 1] (``roc_points``); the AUC is only printed in the legend."""
    w, h = 360, 340
    x0, y0, pw, ph = 50, 20, w - 70, h - 70
    out = _svg_frame(w, h, title, "false positive rate", "true positive rate")
    out.append(f'<line x1="{x0}" y1="{y0 + ph}" x2="{x0 + pw}" y2="{y0}" stroke="#999" stroke-dasharray="4 3"/>')
    for t in (0.0, 0.5, 1.0):
        out.append(f'<text x="{x0 + t * pw:.1f}" y="{y0 + ph + 14}" font-size="10" text-anchor="middle">{t:g}</text>')
        out.append(f'<text x="{x0 - 4}" y="{y0 + ph - t * ph + 3:.1f}" font-size="10" text-anchor="end">{t:g}</text>')
    for i, (name, (fpr, tpr, auc)) in enumerate(curves.items()):
        color = PALETTE[i % len(PALETTE)]
        points = " ".join(f"{x0 + a * pw:.1f},{y0 + ph - b * ph:.1f}" for a, b in zip(fpr, tpr))
        out.append(f'<polyline points="{points}" fill="none" stroke="{color}" stroke-width="2"/>')
        label = f"{name} (AUC {fmt(auc, 2)})"
        out.append(f'<text x="{x0 + pw - 6}" y="{y0 + ph - 10 - 14 * i}" font-size="11" text-anchor="end" '
                   f'fill="{color}">{esc(label)}</text>')
    out.append("</svg>")
    return "".join(out)


def scatter_svg(xy: np.ndarray, labels: list[str], colors: list[str], legend: list[tuple[str, str]], title: str,
                xlabel: str, ylabel: str) -> str:
    """A 460 × 340 px scatter of ``xy`` (n × 2, any scale: each axis is stretched to the frame), one circle per row
    with ``labels[i]`` as its tooltip and ``colors[i]`` as its fill, and the first 10 ``(name, colour)`` of
    ``legend``."""
    w, h = 460, 340
    x0, y0, pw, ph = 50, 20, w - 170, h - 70
    out = _svg_frame(w, h, title, xlabel, ylabel, plot_width=pw)
    lo, hi = xy.min(axis=0), xy.max(axis=0)
    span = np.where(hi - lo > 0, hi - lo, 1.0)
    norm = (xy - lo) / span * 0.9 + 0.05
    for (a, b), label, color in zip(norm, labels, colors):
        out.append(f'<circle cx="{x0 + a * pw:.1f}" cy="{y0 + ph - b * ph:.1f}" r="5" fill="{color}" '
                   f'fill-opacity="0.8" stroke="#333" stroke-width="0.5"><title>{esc(label)}</title></circle>')
    for i, (name, color) in enumerate(legend[:10]):
        out.append(f'<rect x="{x0 + pw + 8}" y="{y0 + 6 + 14 * i}" width="9" height="9" fill="{color}"/>'
                   f'<text x="{x0 + pw + 21}" y="{y0 + 14 + 14 * i}" font-size="11">{esc(name[:16])}</text>')
    out.append("</svg>")
    return "".join(out)


def bar_svg(values: list[tuple[str, float]], title: str, xlabel: str, ylabel: str) -> str:
    """A 420 × 300 px bar chart of ``(label, value)`` pairs (values ≥ 0, scaled to the largest); labels are printed
    under the bars when there are at most 24, and are always in each bar's tooltip."""
    w, h = 420, 300
    x0, y0, pw, ph = 50, 20, w - 70, h - 70
    out = _svg_frame(w, h, title, xlabel, ylabel)
    top = max((v for _, v in values), default=1.0) or 1.0
    bw = pw / max(len(values), 1)
    for i, (name, v) in enumerate(values):
        bh = v / top * (ph - 10)
        out.append(f'<rect x="{x0 + i * bw + 1:.1f}" y="{y0 + ph - bh:.1f}" width="{max(bw - 2, 1):.1f}" '
                   f'height="{bh:.1f}" fill="#4c78a8"><title>{esc(name)}: {v:g}</title></rect>')
        if len(values) <= 24:
            out.append(f'<text x="{x0 + (i + 0.5) * bw:.1f}" y="{y0 + ph + 12}" font-size="9" '
                       f'text-anchor="middle">{esc(name)}</text>')
    out.append(f'<text x="{x0 - 4}" y="{y0 + 13}" font-size="10" text-anchor="end">{top:g}</text>')
    out.append("</svg>")
    return "".join(out)


def roc_points(y: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(false positive rates, true positive rates) of binary labels ``y`` (0/1) ranked by ``score``
    (sklearn.metrics.roc_curve)."""
    from sklearn.metrics import roc_curve

    fpr, tpr, _ = roc_curve(y, score)
    return fpr, tpr


def _prepared(X: np.ndarray, imputation: str) -> np.ndarray:
    """Missing values filled over all samples (a picture, not a model: the models fill inside their folds) as
    the models fill them (``half_minimum``: the models' imputer; else the column mean), constant columns dropped,
    standardised."""
    X = np.array(X, dtype=np.float64)
    if imputation == "half_minimum":
        X = HalfMinimumImputer().fit_transform(X)  # columns never detected are dropped
    else:
        with np.errstate(all="ignore"):
            fill = np.nan_to_num(np.nanmean(X, axis=0))
        X = np.where(np.isnan(X), fill, X)
    X = X[:, X.std(axis=0) > 0]
    return (X - X.mean(axis=0)) / X.std(axis=0) if X.shape[1] else X


def _pca_2d(X: np.ndarray, imputation: str) -> tuple[np.ndarray, np.ndarray]:
    """Descriptive 2-D PCA of all samples (missing values filled over all samples: a picture, not a model)."""
    X = _prepared(X, imputation)
    if X.shape[1] == 0:
        return np.zeros((X.shape[0], 2)), np.zeros(2)
    u, s, _ = np.linalg.svd(X, full_matrices=False)
    coords = u[:, :2] * s[:2]
    if coords.shape[1] < 2:
        coords = np.hstack([coords, np.zeros((coords.shape[0], 2 - coords.shape[1]))])
    explained = (s**2 / (s**2).sum())[:2] if s.size else np.zeros(2)
    return coords, np.pad(explained, (0, 2 - len(explained)))


def umap_available() -> bool:
    """Whether umap-learn (optional, not a dependency) can be imported."""
    try:
        import umap  # noqa: F401  (umap-learn; optional, not a dependency)
    except ImportError:
        return False
    return True


def map_2d(X: np.ndarray, imputation: str, method: str = "auto", seed: int = 0) -> tuple[np.ndarray, str, list[str]]:
    """2-D coordinates of the samples for a picture: (coords n × 2, method used, axis labels).

    ``X`` is samples × features with NaN where missing; ``imputation`` is "half_minimum" (``X`` is log1p intensity:
    half the smallest raw value) or anything else (the column mean). ``auto`` uses UMAP when umap-learn is
    importable (it is not a dependency; install it to get UMAP maps), else PCA; ``umap`` without the package, or
    with fewer than 6 samples (too few neighbours), also falls back to PCA, and the method used is returned so the
    chart says which it is. Both start from the same filled, standardised matrix.
    """
    coords, explained = _pca_2d(X, imputation)
    pca = (coords, "PCA", [f"PC1 ({explained[0]:.0%})", f"PC2 ({explained[1]:.0%})"])
    if method == "pca" or X.shape[0] < 6 or not umap_available():
        return pca
    import umap

    prepared = _prepared(X, imputation)
    if prepared.shape[1] < 2:
        return pca
    reducer = umap.UMAP(n_components=2, n_neighbors=min(15, X.shape[0] - 1), random_state=seed, init="random")
    return np.asarray(reducer.fit_transform(prepared)), "UMAP", ["UMAP 1", "UMAP 2"]


def outcome_colours(values: list[Any], kind: str | None) -> tuple[list[str], list[str], list[tuple[str, str]]]:
    """(text, colour, legend) of each sample's outcome value: a blue-to-red ramp for a ``continuous`` outcome, a
    palette colour per class otherwise; missing values are "NA" in grey."""
    text = ["NA" if is_missing(v) else str(v).strip() for v in values]
    if kind == "continuous":
        numbers = np.array([float(t) if t != "NA" else np.nan for t in text])
        lo, hi = np.nanmin(numbers), np.nanmax(numbers)
        colors = []
        for v in numbers:
            if np.isnan(v):
                colors.append("#cccccc")
                continue
            t = 0.0 if hi == lo else (v - lo) / (hi - lo)
            colors.append(f"rgb({int(40 + 200 * t)},{int(60 + 60 * (1 - abs(2 * t - 1)))},{int(240 - 200 * t)})")
        return text, colors, [(f"low ({lo:g})", "rgb(40,60,240)"), (f"high ({hi:g})", "rgb(240,60,40)")]
    classes = sorted(set(text) - {"NA"})
    mapping = {c: PALETTE[i % len(PALETTE)] for i, c in enumerate(classes)}
    mapping["NA"] = "#cccccc"
    legend = [(c, mapping[c]) for c in classes] + ([("NA", "#cccccc")] if "NA" in text else [])
    return text, [mapping[t] for t in text], legend
