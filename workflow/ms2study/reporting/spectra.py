"""Mirror plots of the top identifications: a query spectrum of the study against the library spectrum it matched.

For each of the best accepted identifications of consensus features (``identifications.parquet``: lowest Schymanski
level, then lowest q), the query is the rank-1 annotated spectrum (annotation tables) that hit the same library spectrum
(``library_id``) with the highest cosine, its peaks read from that sample's spectra table as recorded (before the
search's cleaning); the library side is that spectrum's peaks in the library index (``results/library/{name}/``,
``ms2study.library.index.load_library_index``; cleaned as indexed). May import ``ms2study.core``,
``ms2study.library`` and the other ``reporting`` modules.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import polars as pl

from ms2study.library.index import load_library_index
from ms2study.reporting.charts import figure_html, mirror_figure
from ms2study.reporting.html import fmt

MIRROR_PLOTS = 6  # identifications shown as mirror plots


def _library_peaks(index_dirs: Sequence[Path], wanted: set[str]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Peaks (m/z, intensity) of the ``wanted`` library ids, from the first index folder that holds each."""
    found: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for folder in index_dirs:
        if not (Path(folder) / "manifest.json").exists():
            continue
        index = load_library_index(folder)
        ids = index.metadata["library_id"].to_list()
        for i, library_id in enumerate(ids):
            if library_id in wanted and library_id not in found:
                mz, intensity = index.peaks(i)
                found[library_id] = (np.array(mz), np.array(intensity))
    return found


def _query_spectra(best: pl.DataFrame, spectra_paths: dict[str, Path | None]) -> dict[str, tuple]:
    """Peaks of the chosen query spectra (``best``: spectrum_id, sample_id), read per sample from its table."""
    peaks: dict[str, tuple] = {}
    for sample, rows in best.group_by("sample_id"):
        path = spectra_paths.get(str(sample[0]))
        if path is None or not Path(path).exists():
            continue
        ids = rows["spectrum_id"].to_list()
        table = pl.scan_parquet(path).filter(pl.col("spectrum_id").is_in(ids)).select(
            "spectrum_id", "mz", "intensity").collect()
        for r in table.iter_rows(named=True):
            peaks[r["spectrum_id"]] = (np.asarray(r["mz"] or [], dtype=np.float64),
                                       np.asarray(r["intensity"] or [], dtype=np.float64))
    return peaks


def mirror_plots(ident: pl.DataFrame | None, annotations: pl.DataFrame, spectra_paths: dict[str, Path | None],
                 library_indexes: Sequence[Path], top: int = MIRROR_PLOTS) -> str:
    """HTML of the mirror plots of the ``top`` best accepted identifications (see the module docstring), or a
    sentence saying why there are none. ``spectra_paths`` maps sample id to its spectra table;
    ``library_indexes`` are the index folders (none given: no mirror plots, said so)."""
    title = "<h3>Mirror plots of the top identifications</h3>"
    if ident is None or ident.height == 0 or "library_id" not in ident.columns or annotations.is_empty():
        return title + "<p>No accepted identifications of consensus features to show.</p>"
    if not library_indexes:
        return title + "<p>The library index was not passed to the report (<code>--library-index</code>).</p>"
    acc = ident.filter(pl.col("accepted").fill_null(False) & pl.col("library_id").is_not_null()).sort(
        ["msi_level", "q_value", "n_samples"], descending=[False, False, True]).unique(
        "library_id", keep="first", maintain_order=True).head(top)
    if acc.is_empty():
        return title + "<p>No name was accepted: no mirror plot to show.</p>"
    hits = annotations.filter(pl.col("library_id").is_in(acc["library_id"].to_list()))
    # a rank-1 spectrum of the match, accepted in its own run or not: identify accepts a feature on all its spectra
    # together, and a trial's report showed 1 mirror plot for 5 names, those accepted only that way left out
    if "rank" in hits.columns:
        hits = hits.filter(pl.col("rank") == 1)
    best = hits.sort(["cosine", "spectrum_id"], descending=[True, False]).unique(
        "library_id", keep="first", maintain_order=True)
    library = _library_peaks(library_indexes, set(best["library_id"].to_list()))
    queries = _query_spectra(best, spectra_paths)
    by_library = {r["library_id"]: r for r in best.iter_rows(named=True)}
    charts = []
    for r in acc.iter_rows(named=True):
        hit = by_library.get(r["library_id"])
        if hit is None or hit["spectrum_id"] not in queries or r["library_id"] not in library:
            continue
        fig = mirror_figure(queries[hit["spectrum_id"]], library[r["library_id"]],
                            f"{r['consensus_id']}: {r['name']} (Schymanski level {r['msi_level']}, "
                            f"q {fmt(r['q_value'], 4)})",
                            f"query {hit['spectrum_id']} (cosine {fmt(hit['cosine'], 3)})",
                            f"library {r['library_id']}")
        charts.append(figure_html(fig))
    if not charts:
        return title + "<p>No query spectrum of the top identifications was found in the spectra tables.</p>"
    return title + (f'<p class="note">The {len(charts)} best accepted identifications (lowest Schymanski level, then '
                    "lowest q): above, the study's spectrum with the highest cosine to the library spectrum, as "
                    "recorded; below, the library spectrum as indexed. Each is scaled to its largest peak.</p>"
                    ) + '<div class="charts">' + "".join(charts) + "</div>"
