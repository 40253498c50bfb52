"""The study report: one self-contained HTML file that says what was found and how far to trust it.

It reads only the contract paths (``results/samples/{s}/*.parquet``, ``results/study/feature_matrix.parquet``,
``results/study/models/{outcome}/...``) and the sample sheet, so it can be rebuilt at any time without rerunning a
stage. Everything is inline (CSS, hand-drawn SVG charts), with no script and no external address, so the file opens
offline, can be mailed, and archives as it is. Warnings come first: an untrained placeholder encoder, samples without
MS/MS, skipped outcomes and missing tables are stated plainly rather than left for the reader to infer. Every string
that comes from the user's data is escaped.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import html
import json
import logging
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from ms2study import __version__
from ms2study.core.atomic import write_text
from ms2study.core.errors import InputError
from ms2study.core.params import overlay

log = logging.getLogger(__name__)

DEFAULT_PARAMS: dict[str, Any] = {
    "title": "ms2study report",
    "top_compounds": 50,        # rows of the study-wide identification table
    "min_cosine": 0.7,          # without q-values (annotate: confidence none): rank-1 hits below this are not counted
    "map_method": "auto",       # 2-D sample maps: auto (UMAP when umap-learn is importable, else PCA) | pca | umap
    "config_used": None,        # the workflow's configuration, shown verbatim at the end (the rule passes it)
}
PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2", "#7f7f7f",
           "#bcbd22"]
PACKAGES = ["ms2study", "polars", "numpy", "scikit-learn", "scipy", "torch", "pyopenms", "numba", "snakemake",
            "pyarrow"]
TABLES = ("features", "spectra", "embeddings", "annotations", "sample_embedding")

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0 auto;max-width:1200px;padding:1em 2em;
color:#222;line-height:1.4}
h1{border-bottom:2px solid #333;padding-bottom:.2em}h2{margin-top:2em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;margin:.5em 0 1em;font-size:.9em}th,td{border:1px solid #ccc;padding:.25em .6em;
text-align:left;vertical-align:top}th{background:#f0f0f0}td.num{text-align:right;font-variant-numeric:tabular-nums}
.warning{background:#fff3cd;border:2px solid #d39e00;border-radius:4px;padding:.6em 1em;margin:.6em 0}
.warning strong{color:#8a6100}.note{color:#555;font-size:.9em}.ok{background:#e8f5e9;border:1px solid #81c784;
border-radius:4px;padding:.6em 1em}.charts{display:flex;flex-wrap:wrap;gap:1em}.chart{border:1px solid #ddd;
padding:.3em}pre{background:#f7f7f7;padding:.8em;overflow:auto;font-size:.85em}nav a{margin-right:1em}
"""


def merge_params(params: dict | None) -> dict:
    merged = overlay(params, DEFAULT_PARAMS, "report")
    if merged["map_method"] not in ("auto", "pca", "umap"):
        raise InputError(f"report.map_method is '{merged['map_method']}'", fix="use auto, pca or umap")
    return merged


def esc(value: Any) -> str:
    """HTML-escaped text of any value (None: empty)."""
    return "" if value is None else html.escape(str(value), quote=True)


def fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "NA"
    if isinstance(value, float):
        if not np.isfinite(value):
            return "NA"
        return f"{value:.{digits}f}"
    return esc(value)


def _table(header: list[str], rows: list[list[Any]], numeric: set[int] | None = None) -> str:
    """An HTML table; cells are escaped unless they are pre-built HTML (tuples ("html", text))."""
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


def _warning(text_html: str) -> str:
    return f'<div class="warning"><strong>Warning:</strong> {text_html}</div>'


# ------------------------------------------------------------------------------------------- reading


def _columns(path: Path) -> list[str]:
    return list(pl.read_parquet_schema(path).keys())


def _sample_stats(study_dir: Path, sample_id: str, warnings: list[str]) -> dict[str, Any]:
    """Counts for the per-sample table, reading only the columns needed (embeddings can be large)."""
    base = study_dir / "results" / "samples" / sample_id
    stats: dict[str, Any] = {"sample_id": sample_id}
    paths = {t: base / f"{t}.parquet" for t in TABLES}
    missing = [t for t, p in paths.items() if not p.exists()]
    if missing:
        warnings.append(f"sample <b>{esc(sample_id)}</b>: missing result table(s) {esc(', '.join(missing))}")
    if paths["features"].exists():
        stats["features"] = pl.scan_parquet(paths["features"]).select(pl.len()).collect().item()
    if paths["spectra"].exists():
        counts = pl.scan_parquet(paths["spectra"]).select(
            pl.len().alias("n"), pl.col("feature_id").is_not_null().sum().alias("mapped")).collect()
        stats["ms2_scans"] = int(counts["n"][0])
        stats["mapped_spectra"] = int(counts["mapped"][0])
        cols = _columns(paths["spectra"])
        if "ion_mode" in cols:
            stats["ion_modes"] = sorted(pl.scan_parquet(paths["spectra"]).select(pl.col("ion_mode").drop_nulls()
                                                                                  .unique()).collect()["ion_mode"])
        if "precursor_corrected" in cols:
            stats["precursor_corrected"] = int(pl.scan_parquet(paths["spectra"]).select(
                pl.col("precursor_corrected").fill_null(False).sum()).collect().item())
    if paths["embeddings"].exists():
        cols = _columns(paths["embeddings"])
        exprs = [pl.len().alias("n"), pl.col("embedding").is_null().sum().alias("null")]
        exprs += [pl.col(c).drop_nulls().unique().implode().alias(c) for c in ("model_id", "model_trained")
                  if c in cols]
        row = pl.scan_parquet(paths["embeddings"]).select(exprs).collect().row(0, named=True)
        stats["embedded"] = int(row["n"]) - int(row["null"])
        stats["model_ids"] = [str(v) for v in row.get("model_id") or []]
        stats["model_trained"] = [bool(v) for v in row.get("model_trained") or []]
    if paths["annotations"].exists():
        stats["annotated_spectra"] = pl.scan_parquet(paths["annotations"]).filter(pl.col("rank") == 1).select(
            pl.col("spectrum_id").n_unique()).collect().item()
    if paths["sample_embedding"].exists():
        row = pl.read_parquet(paths["sample_embedding"]).row(0, named=True) if pl.scan_parquet(
            paths["sample_embedding"]).select(pl.len()).collect().item() else None
        stats["n_spectra_pooled"] = int(row["n_spectra"]) if row and row.get("n_spectra") is not None else 0
        stats["has_sample_embedding"] = bool(row and row.get("embedding") is not None)
    return stats


def _calibration_warnings(study_dir: Path, warnings: list[str]) -> None:
    """What the library calibration said about its own reliability (written by calibrate-library)."""
    for path in sorted((study_dir / "results" / "confidence").glob("*.json")):
        try:
            stats = json.loads(path.read_text()).get("stats", {})
        except (OSError, ValueError):
            warnings.append(f"the identification calibration {esc(path.name)} cannot be read: rerun the pipeline")
            continue
        if stats.get("queries_from") == "all structures" and (json.loads(path.read_text()).get("scoring") or {}).get(
                "model_id"):
            warnings.append(f"library calibration {esc(path.stem)}: fewer than 200 library structures lie outside the "
                            "encoder's training split, so the null was measured on structures the encoder has seen; "
                            "q-values of hits carried by the embedding score may be optimistic")
        if int(stats.get("n_wrong_formula_candidates", 0)) < 1000:
            warnings.append(f"library calibration {esc(path.stem)}: only "
                            f"{int(stats.get('n_wrong_formula_candidates', 0))} wrong candidates were measured: the "
                            "library is small, and q-values cannot go far below 1/that number")


def _scan_warnings(stats: list[dict], warnings: list[str]) -> None:
    """Study-level notes on MS/MS scans: mixed polarities, precursors taken from the isolation window."""
    modes = {m for s in stats for m in s.get("ion_modes", [])}
    if len(modes) > 1:
        mixed = [s["sample_id"] for s in stats if len(s.get("ion_modes", [])) > 1]
        warnings.append(f"the study mixes polarities ({', '.join(sorted(modes))}"
                        + (f"; within one run: {esc(', '.join(mixed[:10]))}" if mixed else "")
                        + "): every MS/MS scan was searched only against library spectra of its own polarity")
    corrected = sum(s.get("precursor_corrected", 0) for s in stats)
    if corrected:
        warnings.append(f"{corrected} MS/MS scans had a selected-ion m/z outside their own isolation window (a "
                        "converter fault): their isolation-window target was used as precursor m/z")


def _encoder_info(study_dir: Path, stats: list[dict]) -> dict[str, Any]:
    """What encoder produced the embeddings: model ids and trained flags from embeddings.parquet, plus any
    JSON sidecar the embed stage left beside it (``embeddings.json`` / ``embeddings.info.json``)."""
    ids = sorted({m for s in stats for m in s.get("model_ids", [])})
    trained = {t for s in stats for t in s.get("model_trained", [])}
    info: dict[str, Any] = {"model_ids": ids, "trained": None if not trained else (trained == {True})}
    for s in stats:
        base = study_dir / "results" / "samples" / s["sample_id"]
        for name in ("embeddings.json", "embeddings.info.json", "embed_info.json"):
            path = base / name
            if path.exists():
                try:
                    sidecar = json.loads(path.read_text(encoding="utf-8"))
                except (json.JSONDecodeError, OSError):
                    continue
                info["sidecar"] = sidecar
                if info["trained"] is None and "trained" in sidecar:
                    info["trained"] = bool(sidecar["trained"])
                break
        if "sidecar" in info:
            break
    if not info["trained"] and ids and any(m.startswith("untrained") for m in ids):
        info["trained"] = False
    return info


def _annotations(study_dir: Path, sample_ids: list[str]) -> pl.DataFrame:
    paths = [study_dir / "results" / "samples" / s / "annotations.parquet" for s in sample_ids]
    paths = [p for p in paths if p.exists()]
    if not paths:
        return pl.DataFrame()
    cols = ["spectrum_id", "sample_id", "rank", "library_name", "library_inchikey", "cosine",
            "precursor_error_ppm", "matched_peaks", "library_id", "q_value", "accepted"]
    frames = [pl.read_parquet(p, columns=[c for c in cols if c in _columns(p)]).filter(pl.col("rank") == 1)
              for p in paths]
    frames = [f for f in frames if f.height]
    return pl.concat(frames, how="diagonal_relaxed") if frames else pl.DataFrame()


# ------------------------------------------------------------------------------------------- SVG charts


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
    """ROC curves (fpr, tpr, auc) per feature set on one chart, with the chance diagonal."""
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
    """A scatter of samples (hover shows the label) with a colour legend."""
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


def _roc_points(y: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.metrics import roc_curve

    fpr, tpr, _ = roc_curve(y, score)
    return fpr, tpr


def _prepared(X: np.ndarray, imputation: str) -> np.ndarray:
    """Missing values filled over all samples (a picture, not a model), constant columns dropped, standardised."""
    X = np.array(X, dtype=np.float64)
    if imputation == "half_minimum":
        with np.errstate(all="ignore"):
            minimum = np.nanmin(np.where(np.isnan(X), np.inf, X), axis=0)
        fill = np.log1p(np.expm1(np.where(np.isfinite(minimum), minimum, 0.0)) / 2.0)
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


def _umap_available() -> bool:
    try:
        import umap  # noqa: F401  (umap-learn; optional, not a dependency)
    except ImportError:
        return False
    return True


def map_2d(X: np.ndarray, imputation: str, method: str = "auto", seed: int = 0) -> tuple[np.ndarray, str, list[str]]:
    """2-D coordinates of the samples for a picture: (coords, method used, axis labels).

    ``auto`` uses UMAP when umap-learn is importable (it is not a dependency; install it to get UMAP maps), else
    PCA; ``umap`` without the package, or with fewer than 6 samples (too few neighbours), also falls back to PCA, and
    the method used is returned so the chart says which it is. Both start from the same filled, standardised matrix.
    """
    coords, explained = _pca_2d(X, imputation)
    pca = (coords, "PCA", [f"PC1 ({explained[0]:.0%})", f"PC2 ({explained[1]:.0%})"])
    if method == "pca" or X.shape[0] < 6 or not _umap_available():
        return pca
    import umap

    prepared = _prepared(X, imputation)
    if prepared.shape[1] < 2:
        return pca
    reducer = umap.UMAP(n_components=2, n_neighbors=min(15, X.shape[0] - 1), random_state=seed, init="random")
    return np.asarray(reducer.fit_transform(prepared)), "UMAP", ["UMAP 1", "UMAP 2"]


# ------------------------------------------------------------------------------------------- sections


def _models_section(study_dir: Path, sheet: pl.DataFrame, feature_sets: dict[str, pl.DataFrame],
                    warnings: list[str], map_method: str = "auto") -> str:
    models_dir = study_dir / "results" / "study" / "models"
    summaries = sorted(models_dir.glob("*/summary.json")) if models_dir.is_dir() else []
    if not summaries:
        return "<p>No outcome models: no outcomes are declared under <code>models: outcomes</code> in config.yaml.</p>"
    parts = [('<p class="note">Nested cross-validation: outer repeated (stratified) k-fold, the regularisation '
              "chosen by an inner CV on each training part; imputation and scaling fitted inside the folds; all feature "
              "sets of an outcome use the same folds. Classification metrics are computed within each test fold and "
              "averaged, R² pools the out-of-fold predictions; the value is the mean over repeats. The 95% interval is "
              "a percentile interval from a stratified bootstrap of the samples' out-of-fold predictions (one repeat "
              "per draw). p is a label-permutation p-value (smallest possible value 1/(permutations + 1)); 'null mean' "
              "is the metric this procedure reaches on permuted labels, i.e. its chance level.</p>")]
    for path in summaries:
        summary = json.loads(path.read_text(encoding="utf-8"))
        outcome = summary.get("outcome", path.parent.name)
        parts.append(f"<h3>Outcome: {esc(outcome)} ({esc(summary.get('type'))})</h3>")
        if summary.get("class_counts"):
            counts = ", ".join(f"{esc(k)}: {v}" for k, v in summary["class_counts"].items())
            positive = summary.get("positive_class")
            parts.append(f"<p>Classes: {counts}" + (f"; positive class: <b>{esc(positive)}</b>" if positive else "")
                         + "</p>")
        estimator = summary.get("estimator")
        if estimator or summary.get("covariates"):
            line = f"Estimator: <b>{esc(estimator or 'linear')}</b>"
            if summary.get("covariates"):
                line += (f"; covariates in every feature set: {esc(', '.join(summary['covariates']))} (scaled inside "
                         f"the folds, weight {fmt(summary.get('covariate_weight'), 1)}); the <i>covariates</i> row "
                         "is them alone, the baseline a set must beat to add anything")
            parts.append(f"<p>{line}.</p>")
        excluded = summary.get("excluded_missing_outcome") or []
        if excluded:
            parts.append(f"<p>Left out (no value for this outcome): {esc(', '.join(excluded))}</p>")
        if summary.get("status") != "done":
            warnings.append(f"outcome <b>{esc(outcome)}</b> was not modelled: {esc(summary.get('reason'))}")
            parts.append(f"<p><b>Not modelled:</b> {esc(summary.get('reason'))}</p>")
            continue
        rows = []
        for name, entry in summary["feature_sets"].items():
            secondary = "; ".join(f"{esc(m)} {fmt(v.get('value'))} [{fmt(v.get('ci_low'))}, {fmt(v.get('ci_high'))}]"
                                  for m, v in (entry.get("secondary") or {}).items())
            rows.append([name, entry.get("metric"), ("html", f"<b>{fmt(entry.get('value'))}</b>"),
                         ("html", f"[{fmt(entry.get('ci_low'))}, {fmt(entry.get('ci_high'))}]"),
                         ("html", fmt(entry.get("permutation_p"))), ("html", fmt(entry.get("permutation_null_mean"))),
                         entry.get("n_samples"), entry.get("n_features"),
                         f"{entry.get('outer_splits')} × {entry.get('outer_repeats')}", ("html", secondary)])
            if entry.get("samples_without_values"):
                warnings.append(f"outcome <b>{esc(outcome)}</b>, feature set <b>{esc(name)}</b>: no values for "
                                f"{esc(', '.join(entry['samples_without_values']))} (filled inside the folds)")
        parts.append(_table(["feature set", "metric", "value", "95% interval", "permutation p", "null mean",
                             "samples", "features", "folds × repeats", "secondary"], rows, numeric={2, 3, 4, 5, 6, 7}))
        for note in summary.get("notes") or []:
            parts.append(f'<p class="note">{esc(note)}</p>')
        charts = []
        predictions_path = path.parent / "predictions.parquet"
        if summary.get("type") == "binary" and predictions_path.exists():
            predictions = pl.read_parquet(predictions_path)
            curves = {}
            for name, entry in summary["feature_sets"].items():
                mean = predictions.filter(pl.col("feature_set") == name).group_by("sample_id").agg(
                    pl.col("y_true").first(), pl.col("y_score").mean())
                if mean.height and mean["y_true"].n_unique() == 2:
                    fpr, tpr = _roc_points(mean["y_true"].to_numpy(), mean["y_score"].to_numpy())
                    curves[name] = (fpr, tpr, entry.get("value"))
            if curves:
                charts.append(roc_svg(curves, f"ROC: {outcome}"))
        charts.extend(_maps(sheet, feature_sets, summary, map_method))
        if charts:
            parts.append('<div class="charts">' + "".join(f'<div class="chart">{c}</div>' for c in charts) + "</div>")
            parts.append('<p class="note">ROC curves use each sample\'s out-of-fold score averaged over the repeats '
                         "(the AUC in the legend is the table's value). Maps: each feature set's samples in two "
                         "dimensions (UMAP when umap-learn is installed, else the first two principal components; the "
                         "chart title says which), coloured by the outcome: a picture, not a model.</p>")
    return "".join(parts)


def _maps(sheet: pl.DataFrame, feature_sets: dict[str, pl.DataFrame], summary: dict,
          method: str = "auto") -> list[str]:
    from ms2study.stages.models import _align

    column = summary.get("outcome")
    if column not in sheet.columns:
        return []
    ids = sheet["sample_id"].to_list()
    values = sheet[column].to_list()
    charts = []
    for name in summary.get("feature_sets", {}):
        if name not in feature_sets:
            continue
        X, columns, empty = _align(feature_sets[name], ids, name)
        keep = [i for i, s in enumerate(ids) if s not in set(empty)]
        if len(keep) < 3 or not columns:
            continue
        imputation = summary["feature_sets"][name].get("imputation", "mean")
        coords, used, axes = map_2d(X[keep], imputation, method)
        _labels, colors, legend = _colours([values[i] for i in keep], summary.get("type"))
        charts.append(scatter_svg(coords, [f"{ids[i]}: {values[i]}" for i in keep], colors, legend,
                                  f"{used} of {name}, coloured by {column}", axes[0], axes[1]))
    return charts


def _colours(values: list[Any], kind: str | None) -> tuple[list[str], list[str], list[tuple[str, str]]]:
    from ms2study.stages.models import _is_missing

    text = ["NA" if _is_missing(v) else str(v).strip() for v in values]
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


def _versions() -> list[list[str]]:
    rows = [["python", platform.python_version()], ["platform", platform.platform()]]
    for package in PACKAGES:
        try:
            version = __version__ if package == "ms2study" else metadata.version(package)
        except metadata.PackageNotFoundError:
            version = "not installed"
        rows.append([package, version])
    return rows


# ------------------------------------------------------------------------------------------- report


def build_report(study_dir: Path, out: Path, params: dict | None = None, samples: str | Path | None = None) -> None:
    """Write the study report (one self-contained HTML file) to ``out``.

    ``samples`` is the sample sheet (default: ``results/study/samples.tsv``, else ``samples.tsv`` in the study).
    """
    from ms2study.stages.models import (
        binned_spectra_feature_set,
        embedding_feature_set,
        feature_matrix_feature_set,
        read_samples,
        read_spectra_tables,
    )

    params = merge_params(params)
    study_dir = Path(study_dir)
    sheet_path = Path(samples) if samples else next(
        (p for p in (study_dir / "results" / "study" / "samples.tsv", study_dir / "samples.tsv") if p.exists()),
        study_dir / "samples.tsv")
    sheet = read_samples(sheet_path)
    sample_ids = sheet["sample_id"].to_list()
    warnings: list[str] = []
    stats = [_sample_stats(study_dir, s, warnings) for s in sample_ids]
    encoder = _encoder_info(study_dir, stats)

    sections: list[tuple[str, str, str]] = []  # (anchor, title, body)

    # Overview
    files = sheet["file"].to_list() if "file" in sheet.columns else [None] * len(sample_ids)
    outcome_columns = [c for c in sheet.columns if c not in ("sample_id", "file")]
    overview = [(f"<p><b>{len(sample_ids)}</b> samples; sheet <code>{esc(sheet_path)}</code>; further columns: "
                f"{esc(', '.join(outcome_columns)) or 'none'}.</p>")]
    overview.append(_table(["sample", "file", *outcome_columns],
                           [[s, f, *[sheet[c][i] for c in outcome_columns]]
                            for i, (s, f) in enumerate(zip(sample_ids, files))]))
    sections.append(("overview", "Study overview", "".join(overview)))

    # Per-sample table
    rows = []
    for s in stats:
        rows.append([s["sample_id"], s.get("features", "NA"), s.get("ms2_scans", "NA"), s.get("mapped_spectra", "NA"),
                     s.get("embedded", "NA"), s.get("annotated_spectra", "NA"), s.get("n_spectra_pooled", "NA")])
        if s.get("ms2_scans") == 0:
            warnings.append(f"sample <b>{esc(s['sample_id'])}</b> has no MS/MS scans")
        if "has_sample_embedding" in s and not s["has_sample_embedding"]:
            warnings.append(f"sample <b>{esc(s['sample_id'])}</b> has no pooled embedding (no usable MS/MS): it "
                            "has missing values in the embedding models, never a zero vector")
    sections.append(("samples", "Per-sample results", _table(
        ["sample", "features", "MS2 scans", "mapped spectra", "embedded spectra", "annotated spectra",
         "spectra pooled"], rows, numeric={1, 2, 3, 4, 5, 6})))

    # Identifications
    annotations = _annotations(study_dir, sample_ids)
    _calibration_warnings(study_dir, warnings)
    ident_path = study_dir / "results" / "study" / "identifications.parquet"
    ident = pl.read_parquet(ident_path) if ident_path.exists() else None
    sections.append(("identifications", "Top identifications",
                     _identifications(annotations, ident, sample_ids, params, warnings)))

    # What differs per outcome: differential features and enriched classes
    sections.append(("differential", "What differs", _differential_section(study_dir, params, warnings)))
    _scan_warnings(stats, warnings)

    # Encoder
    sections.append(("encoder", "Spectrum encoder", _encoder_section(encoder)))
    if encoder["trained"] is False:
        warnings.insert(0, "the spectrum encoder is the <b>UNTRAINED placeholder</b> (random weights): embeddings, "
                           "embedding-based models and maps below carry no learned chemistry. Train or install an "
                           "encoder (embed: model) before interpreting them.")

    # Models (feature sets rebuilt from the contract tables for the maps)
    feature_sets: dict[str, pl.DataFrame] = {}
    emb_paths = [study_dir / "results" / "samples" / s / "sample_embedding.parquet" for s in sample_ids]
    emb_paths = [p for p in emb_paths if p.exists()]
    if emb_paths:
        frames = [pl.read_parquet(p, columns=["sample_id", "embedding"]) for p in emb_paths]
        feature_sets["embedding"] = embedding_feature_set(pl.concat(
            [f.with_columns(pl.col("embedding").cast(pl.List(pl.Float32))) for f in frames]))
    matrix_path = study_dir / "results" / "study" / "feature_matrix.parquet"
    matrix = pl.read_parquet(matrix_path) if matrix_path.exists() else None
    if matrix is not None and all(s in matrix.columns for s in sample_ids):
        feature_sets["features"] = feature_matrix_feature_set(matrix, sample_ids)
    spectra_paths = [study_dir / "results" / "samples" / s / "spectra.parquet" for s in sample_ids]
    spectra_paths = [p for p in spectra_paths if p.exists()]
    if spectra_paths:
        feature_sets["binned_spectra"] = binned_spectra_feature_set(read_spectra_tables(spectra_paths), sample_ids)
    sections.append(("models", "Outcome models", _models_section(study_dir, sheet, feature_sets, warnings,
                                                                 str(params["map_method"]))))

    # Feature matrix
    sections.append(("matrix", "Feature matrix", _matrix_section(matrix, sample_ids, warnings)))

    # Versions and config
    versions = _table(["software", "version"], _versions())
    config = params.get("config_used")
    config_html = (f"<h3>Configuration used</h3><pre>{esc(json.dumps(config, indent=2, default=str))}</pre>"
                   if config is not None else "<p>The configuration was not passed to the report.</p>")
    sections.append(("software", "Software and configuration", versions + config_html))

    body = [f"<h1>{esc(params['title'])}</h1>",
            (f'<p class="note">Generated {esc(_dt.datetime.now().astimezone().isoformat(timespec="seconds"))} by '
            f"ms2study {esc(__version__)} from <code>{esc(study_dir.resolve())}</code>.</p>"),
            "<nav>" + "".join(f'<a href="#{a}">{esc(t)}</a>' for a, t, _ in sections) + "</nav>",
            '<h2 id="warnings">Warnings</h2>']
    body.append("".join(_warning(w) for w in warnings) if warnings else '<div class="ok">No warnings.</div>')
    body.extend(f'<h2 id="{a}">{esc(t)}</h2>{b}' for a, t, b in sections)
    document = ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{esc(params['title'])}"
                f"</title><style>{CSS}</style></head><body>{''.join(body)}</body></html>\n")
    write_text(document, out)
    log.info("report written to %s (%d warnings)", out, len(warnings))


def _q(value: float | None) -> tuple[str, str]:
    """A q-value cell: two significant digits (0.00012 must not print as 0.000)."""
    return ("html", "NA" if value is None or not np.isfinite(value) else f"{value:.2g}")


CONFIDENCE_TEXT = (
    "q-values come from an empirical null measured on the library itself (<code>ms2study calibrate-library</code>): "
    "library spectra were searched with every spectrum of their own structure removed, which is what a compound "
    "absent from the library looks like, and the scores of the wrong candidates were kept. A hit's p-value is the "
    "chance that the best of its n candidate structures scores as high if all of them are wrong; Benjamini-Hochberg "
    "turns p-values into q-values. MSI level 2 (probable structure) is given only when the hit also beats the null "
    "of wrong structures (isomers included) and no other structure of the same formula scores within the isomer "
    "margin learned on the library; otherwise level 3 (tentative: isomers are plausible), with the isomers named. "
    "Whether these q-values hold is measured by <code>benchmarks/fdr_calibration.py</code> on held-out MassBank "
    "structures."
)


def _identifications(annotations: pl.DataFrame, ident: pl.DataFrame | None, sample_ids: list[str], params: dict,
                     warnings: list[str]) -> str:
    """Identification section: per-sample counts from the annotations, compounds from identifications.parquet."""
    if annotations.is_empty() or "cosine" not in annotations.columns:
        return "<p>No library annotations (no library configured, or no spectrum had a candidate).</p>"
    with_q = ("q_value" in annotations.columns and "accepted" in annotations.columns
              and annotations["q_value"].fill_nan(None).drop_nulls().len() > 0)
    fdr = ((params.get("config_used") or {}).get("annotate") or {}).get("fdr")
    at = f"q ≤ {float(fdr):g}" if isinstance(fdr, (int, float)) else "q ≤ the configured <code>annotate: fdr</code>"
    if with_q:
        hits = annotations.filter(pl.col("accepted").fill_null(False))
        intro = (f"<p>Identifications are rank-1 library hits accepted at a false discovery rate: {at} "
                 f"({hits.height} of {annotations.height} rank-1 spectrum hits). {CONFIDENCE_TEXT} Cosine is shown "
                 "for reference; a high cosine alone is not an identification.</p>")
        low = hits.filter(pl.col("cosine") < 0.3) if "cosine" in hits.columns else hits.clear()
        if low.height:
            warnings.append(f"{low.height} accepted spectrum hits have cosine &lt; 0.3: they passed on the combined "
                            "score (entropy and embedding agreement with the library spectrum), not on peak-by-peak "
                            "cosine; check them in the table before relying on them")
    else:
        threshold = float(params["min_cosine"])
        hits = annotations.filter(pl.col("cosine") >= threshold)
        intro = (f"<p>No q-values in the annotations (<code>annotate: confidence: none</code>), so rank-1 library "
                 f"hits with cosine ≥ {threshold:g} are listed ({hits.height} of {annotations.height} rank-1 hits); "
                 "their error rate is unknown.</p>")
        warnings.append("identifications have <b>no q-values</b> (annotate confidence: none): their error rate is "
                        "unknown")
    key = "library_inchikey" if "library_inchikey" in hits.columns else "library_name"
    aggregations = [pl.col("spectrum_id").n_unique().alias("spectra"), pl.col(key).n_unique().alias("compounds"),
                    pl.col("cosine").max().alias("best")]
    if with_q:
        aggregations.append(pl.col("q_value").min().alias("q"))
    per_sample = {r["sample_id"]: r for r in hits.group_by("sample_id").agg(aggregations).iter_rows(named=True)}
    header = ["sample", "identified spectra", "distinct compounds", "best cosine"] + (["lowest q"] if with_q else [])
    rows = []
    for s in sample_ids:
        r = per_sample.get(s, {})
        rows.append([s, r.get("spectra", 0), r.get("compounds", 0), r.get("best")]
                    + ([_q(r.get("q"))] if with_q else []))
    parts = [intro, _table(header, rows, numeric=set(range(1, len(header))))]
    if ident is not None and ident.height and with_q:
        acc = ident.filter(pl.col("accepted")).sort(["msi_level", "q_value", "n_samples"], descending=[False, False, True])
        n2, n3 = int((acc["msi_level"] == 2).sum()), int((acc["msi_level"] == 3).sum())
        parts.append(f"<h3>Compounds per consensus feature (top {int(params['top_compounds'])})</h3>"
                     f"<p>{acc.height} of {ident.height} consensus features with a library hit are identified at "
                     f"{at}: {n2} at MSI level 2, {n3} at level 3. The spectra of a feature (all samples) vote for "
                     "one compound; its p-value combines the spectra's p-values (Simes).</p>")
        unseen = sum(1 for r in acc.iter_rows(named=True)
                     if r["msi_level"] == 3 and len([k for k in (r["isomer_inchikeys"] or []) if k]) <= 1)
        if unseen:
            parts.append(f"<p>{unseen} of the level-3 features have no other structure of their formula in the "
                         "library: they are level 3 because the library shows that compounds like them are often "
                         "confused with isomers whose spectra score as high (the structure-level null), so an isomer "
                         "absent from the library cannot be ruled out. Their isomer column says so.</p>")
        header = ["consensus feature", "compound", "MSI level", "InChIKey / isomers", "class", "samples", "spectra",
                  "supporting", "best score", "best cosine", "q"]

        def isomers(r: dict) -> str:
            keys = [k for k in (r["isomer_inchikeys"] or []) if k]
            if r["msi_level"] != 3:
                return r["inchikey"] or ""
            if len(keys) <= 1:
                return f"{r['inchikey'] or ''} (no isomer in the library; unseen isomers not ruled out)"
            return ", ".join(keys)

        parts.append(_table(header, [
            [r["consensus_id"], r["name"], r["msi_level"], isomers(r),
             r["compound_class"], r["n_samples"], r["n_spectra"], r["n_supporting"], r["best_score"],
             r["best_cosine"], _q(r["q_value"])]
            for r in acc.head(int(params["top_compounds"])).iter_rows(named=True)], numeric={5, 6, 7, 8, 9}))
    elif hits.height:
        compounds = hits.group_by(key).agg(
            pl.col("library_name").first().alias("name"), pl.col("sample_id").n_unique().alias("samples"),
            pl.col("spectrum_id").n_unique().alias("spectra"), pl.col("cosine").max().alias("best"),
            pl.col("cosine").median().alias("median")).sort(["samples", "best"], descending=True).head(
            int(params["top_compounds"]))
        parts.append(f"<h3>Study-wide compounds (top {int(params['top_compounds'])})</h3>")
        header = ["compound", "InChIKey" if key == "library_inchikey" else "name", "samples", "spectra",
                  "best cosine", "median cosine"]
        parts.append(_table(header, [[r["name"], r[key], r["samples"], r["spectra"], r["best"], r["median"]]
                                     for r in compounds.iter_rows(named=True)], numeric={2, 3, 4, 5}))
    return "".join(parts)


TOP_DIFFERENTIAL = 25  # rows of each outcome's differential feature table


def _differential_paths(study_dir: Path, params: dict) -> list[Path]:
    """The outcomes' differential tables: those of the configured outcomes when the configuration was passed (a
    table left from an outcome since removed is not shown), else every table in the folder."""
    from ms2study.stages.differential import outcome_filename

    folder = study_dir / "results" / "study" / "differential"
    config = params.get("config_used")
    if isinstance(config, dict) and isinstance(config.get("models"), dict):
        outcomes = config["models"].get("outcomes") or []
        return [folder / f"{outcome_filename(str(o.get('column')))}.parquet" for o in outcomes if isinstance(o, dict)]
    return sorted(folder.glob("*.parquet")) if folder.is_dir() else []


def _effect_text(summary: dict) -> tuple[str, str]:
    """(column of the effect, its header) for the outcome type."""
    if summary.get("type") == "continuous":
        return "log2_effect_per_unit", "log2 effect per unit"
    if summary.get("type") == "binary":
        return "log2_fold_change", f"log2 FC ({summary.get('positive_class')} / {summary.get('reference_class')})"
    return "", ""


def _test_text(summary: dict) -> str:
    kind = summary.get("type")
    if kind == "binary":
        counts = summary.get("class_counts") or {}
        pos, ref = summary.get("positive_class"), summary.get("reference_class")
        return (f"Welch t-test on log2 intensities, <b>{esc(pos)}</b> (n = {counts.get(pos, '?')}) against "
                f"<b>{esc(ref)}</b> (n = {counts.get(ref, '?')}); log2 FC &gt; 0: higher in {esc(pos)}")
    if kind == "continuous":
        covariates = summary.get("covariates") or []
        return ("linear regression of log2 intensity on the outcome"
                + (f", adjusted for {esc(', '.join(covariates))}" if covariates else "")
                + f" (n = {summary.get('n_samples')}); the effect is the log2 change per unit of the outcome")
    counts = ", ".join(f"{esc(k)}: {v}" for k, v in (summary.get("class_counts") or {}).items())
    return f"one-way ANOVA on log2 intensities across the classes ({counts}); no direction"


def _differential_section(study_dir: Path, params: dict, warnings: list[str]) -> str:
    """Per outcome: the top differential features with their identification, and the enriched chemical classes."""
    from ms2study.stages.differential import SIGNIFICANCE, read_summary

    paths = _differential_paths(study_dir, params)
    if not paths:
        return ("<p>No differential analysis: no outcomes are declared under <code>models: outcomes</code> in "
                "config.yaml.</p>")
    parts = [('<p class="note">Each consensus feature is tested for each outcome on log2 intensities: Welch '
              "t-test (binary), linear regression with the configured covariates (continuous) or one-way ANOVA "
              "(multiclass). Missing values are handled as in the outcome models: a feature detected in fewer than "
              "<code>models: min_detected_fraction</code> of the samples is not tested; otherwise a sample where it "
              "was not detected gets half its smallest intensity (<code>imputation: features</code>). q-values are "
              "Benjamini-Hochberg over the tested features. Identifications are the accepted ones (their own q in "
              "the 'id q' column). Chemical classes are tested as in ChemRICH (Barupal &amp; Fiehn 2017, Sci Rep "
              "7:14567): a one-sided Kolmogorov-Smirnov test of the class's compound p-values against uniform, at "
              "every level of the class path, with Benjamini-Hochberg q-values over the classes; 'up' and 'down' "
              "count the class's compounds with p &lt; 0.05 in each direction.</p>")]
    for path in paths:
        if not path.exists():
            warnings.append(f"the differential table <code>{esc(path.name)}</code> is missing (run the pipeline "
                            "to the end)")
            continue
        summary = read_summary(path)
        table = pl.read_parquet(path)
        outcome = summary.get("outcome") or path.stem
        parts.append(f"<h3>Outcome: {esc(outcome)} ({esc(summary.get('type'))})</h3>")
        tested = table.filter(pl.col("tested"))
        significant = int((tested["q_value"] < SIGNIFICANCE).sum())
        parts.append(f"<p>{_test_text(summary)}. {tested.height} of {table.height} consensus features tested; "
                     f"<b>{significant}</b> at q &lt; {SIGNIFICANCE:g}.</p>")
        for note in summary.get("notes") or []:
            if note.startswith("not tested"):
                warnings.append(f"outcome <b>{esc(outcome)}</b>: no differential test ({esc(note)})")
            parts.append(f'<p class="note">{esc(note)}</p>')
        effect, effect_header = _effect_text(summary)
        if tested.height:
            header = ["consensus feature", "m/z", "RT (s)", "compound", "MSI", "class", "id q"]
            header += [effect_header] if effect else []
            header += ["p", "q", "detected"]
            rows = []
            for r in tested.head(TOP_DIFFERENTIAL).iter_rows(named=True):
                if summary.get("type") == "binary":
                    detected = f"{fmt(r['detection_rate_positive'], 2)} / {fmt(r['detection_rate_reference'], 2)}"
                else:
                    detected = fmt(r["detection_rate"], 2)
                row = [r["consensus_id"], fmt(r["mz"], 4), fmt(r["rt_s"], 1), r["name"], r["msi_level"],
                       r["compound_class"], _q(r["identification_q_value"]) if r["name"] is not None else ""]
                row += [r[effect]] if effect else []
                row += [_q(r["p_value"]), _q(r["q_value"]), detected]
                rows.append(row)
            numeric = {1, 2, 4, 6, *range(7, len(header))}
            parts.append(f"<h4>Top {min(TOP_DIFFERENTIAL, tested.height)} features by q</h4>")
            parts.append(_table(header, rows, numeric=numeric))
            if summary.get("type") == "binary":
                parts.append('<p class="note">detected: share of the samples of each class (positive / other) '
                             "in which the feature was detected, before any fill.</p>")
        parts.append(_enrichment_part(path.parent.parent / "class_enrichment" / path.name, summary, effect_header))
    return "".join(parts)


def _enrichment_part(path: Path, summary: dict, effect_header: str) -> str:
    from ms2study.stages.differential import SIGNIFICANCE, read_summary

    title = "<h4>Enriched chemical classes</h4>"
    if not path.exists():
        return title + "<p>No class enrichment table.</p>"
    enrichment = pl.read_parquet(path)
    if enrichment.height == 0:
        notes = read_summary(path).get("enrichment_notes") or ["no class could be tested"]
        return title + "".join(f'<p class="note">{esc(n)}</p>' for n in notes)
    hits = enrichment.filter(pl.col("q_value") < SIGNIFICANCE)
    if hits.height == 0:
        best = enrichment.row(0, named=True)
        return title + (f"<p>No chemical class is enriched at q &lt; {SIGNIFICANCE:g} ({enrichment.height} classes "
                        f"tested; the lowest q is {_q(best['q_value'])[1]}, {esc(best['class_path'])}).</p>")
    header = ["class", "level", "compounds", f"p < {float(summary.get('alpha', 0.05)):g}", "up", "down", "direction",
              f"median {effect_header}" if effect_header else "median effect", "p", "q", "members"]
    rows = [[r["class_path"], r["class_level"], r["n_compounds"], r["n_significant"], r["n_up"], r["n_down"],
             r["direction"], r["median_effect"], _q(r["p_value"]), _q(r["q_value"]),
             ", ".join(r["compounds"][:8]) + (f" and {len(r['compounds']) - 8} more" if len(r["compounds"]) > 8
                                                else "")]
            for r in hits.iter_rows(named=True)]
    return title + (f"<p>{hits.height} of {enrichment.height} classes tested are enriched at q &lt; "
                    f"{SIGNIFICANCE:g}.</p>") + _table(header, rows, numeric={1, 2, 3, 4, 5, 7, 8, 9})


def _encoder_section(encoder: dict) -> str:
    if not encoder["model_ids"] and "sidecar" not in encoder:
        return "<p>No embedding tables found.</p>"
    trained = {True: "yes (a trained checkpoint)", False: "<b>NO: untrained placeholder</b>", None: "unknown"}
    rows = [["model id(s)", ("html", esc(", ".join(encoder["model_ids"])) or "unknown")],
            ["trained", ("html", trained[encoder["trained"]])]]
    for key, value in (encoder.get("sidecar") or {}).items():
        if key not in ("model_id", "trained"):
            rows.append([key, value if not isinstance(value, (dict, list)) else json.dumps(value, default=str)])
    return _table(["", ""], rows)


def _matrix_section(matrix: pl.DataFrame | None, sample_ids: list[str], warnings: list[str]) -> str:
    if matrix is None:
        warnings.append("the feature matrix (results/study/feature_matrix.parquet) is missing")
        return "<p>No feature matrix.</p>"
    present = [s for s in sample_ids if s in matrix.columns]
    n = matrix.height
    if n == 0 or not present:
        return f"<p>{n} consensus features.</p>"
    # null is the contract for "not detected"; NaN and non-positive intensities are treated the same way
    detected = matrix.select([(pl.col(s).cast(pl.Float64).fill_nan(None) > 0).fill_null(False) for s in present]
                             ).to_numpy()
    per_feature = detected.sum(axis=1)
    rate = float(detected.mean())
    counts = np.bincount(per_feature, minlength=len(present) + 1)
    parts = [(f"<p><b>{n}</b> consensus features across {len(present)} samples; overall detection rate "
             f"{rate:.1%}; detected in every sample: {int(counts[-1])}; in one sample only: {int(counts[1])}.</p>")]
    chart = bar_svg([(str(k), float(c)) for k, c in enumerate(counts) if k > 0],
                    "Consensus features by number of samples detected", "samples detected", "features")
    per_sample = detected.sum(axis=0)
    parts.append(f'<div class="charts"><div class="chart">{chart}</div></div>')
    parts.append(_table(["sample", "features detected", "detection rate"],
                        [[s, int(per_sample[i]), f"{per_sample[i] / n:.1%}"] for i, s in enumerate(present)],
                        numeric={1, 2}))
    return "".join(parts)


# ------------------------------------------------------------------------------------------- CLI


def _cli_report(args: argparse.Namespace) -> int:
    from ms2study.core.params import load_params

    build_report(Path(args.study_dir), Path(args.out), load_params(args), samples=args.samples)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    from ms2study.core.params import add_params_argument

    p = subparsers.add_parser("report", help="the study report: one self-contained HTML file")
    p.add_argument("--study-dir", default=".", help="study folder holding results/")
    p.add_argument("--samples", default=None, help="sample sheet (default: results/study/samples.tsv)")
    p.add_argument("--out", required=True, help="HTML file to write (results/study/report.html)")
    add_params_argument(p)
    p.set_defaults(func=_cli_report)
