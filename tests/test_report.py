"""The study report: one self-contained HTML file with every section, plain warnings, escaped user text, plotly
charts and DataTables tables that need no network; rendered by a real headless Chromium when one is installed
(no console error, no request to another host, charts drawn, tables sorted, a screenshot kept as an artifact)."""

from __future__ import annotations

import dataclasses
import html
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from ms2study.cli import main as cli_main
from ms2study.core import tables
from ms2study.core.errors import InputError
from ms2study.library.index import index_library
from ms2study.modelling import differential as differential_tables
from ms2study.modelling.enrichment import class_enrichment
from ms2study.modelling.featuresets import study_feature_sets
from ms2study.modelling.univariate import bh_q_values
from ms2study.reporting import qc, spectra
from ms2study.reporting.collect import TABLES, DifferentialFiles, OutcomeFiles, ReportInputs, read_annotations
from ms2study.reporting.html import PALETTE, page
from ms2study.reporting.maps import map_2d, umap_available
from ms2study.reporting.tables import interactive_table
from ms2study.stages import differential, models
from ms2study.stages.report import build_report

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SECTIONS = ["warnings", "overview", "samples", "qc", "identifications", "differential", "encoder", "models", "matrix",
            "software"]


def _itable_rows(text: str, table_id: str) -> list[list]:
    """The rows of the itables table ``table_id`` in the report's HTML (numbers as values, text as given)."""
    script = text.split(f'querySelectorAll("#{table_id}:not(.dataTable)")')[1]
    data = json.loads(json.loads('"' + re.search(r'"data_json": "((?:[^"\\]|\\.)*)"', script).group(1) + '"'))
    return [[cell[1] if isinstance(cell, list) and len(cell) == 2 else cell for cell in row] for row in data]


def _itable_header(text: str, table_id: str) -> list[str]:
    """The column names of the itables table ``table_id`` in the report's HTML (tags and entities removed)."""
    table = text.split(f'id="{table_id}"')[1].split("</thead>")[0]
    return [html.unescape(re.sub(r"<[^>]+>", "", h)).strip()
            for h in re.findall(r"<th[^>]*>(.*?)</th>", table, re.DOTALL)]


def _write_study(root: Path, trained: bool, n: int = 8, seed: int = 0, with_q: bool = True) -> list[str]:
    """A tiny study: every contract table of every sample, the feature matrix and real model outputs."""
    rng = np.random.default_rng(seed)
    ids = [f"S{i:02d}" for i in range(1, n + 1)]
    group = ["case" if i % 2 else "control" for i in range(n)]
    sheet = pl.DataFrame({"sample_id": ids, "file": [f"{s}.mzML" for s in ids], "group": group,
                          # hostile text in a user column must come out escaped
                          "note": ["<b>bold</b> & <script>alert(1)</script>"] + [""] * (n - 1)})
    (root / "results" / "study").mkdir(parents=True)
    sheet.write_csv(root / "results" / "study" / "samples.tsv", separator="\t")
    y = np.array([g == "case" for g in group], dtype=float)
    for k, s in enumerate(ids):
        base = root / "results" / "samples" / s
        base.mkdir(parents=True)
        n_spec = 0 if s == "S08" else 6
        features = pl.DataFrame({
            "feature_id": [f"{s}:F{i}" for i in range(5)], "sample_id": [s] * 5, "mz": np.linspace(100, 300, 5),
            "rt_s": np.linspace(60, 300, 5), "rt_start_s": np.linspace(50, 290, 5), "rt_end_s": np.linspace(70, 310, 5),
            "mz_min": np.linspace(100, 300, 5) - 0.001, "mz_max": np.linspace(100, 300, 5) + 0.001,
            "intensity": rng.uniform(1e4, 1e6, 5), "charge": [1] * 5, "n_isotopes": [2] * 5, "quality": [0.9] * 5})
        pl.DataFrame(tables.conform(features, tables.FEATURES)).write_parquet(base / "features.parquet")
        spectra = pl.DataFrame({
            "spectrum_id": [f"{s}:S{i}" for i in range(n_spec)], "sample_id": [s] * n_spec,
            "scan_index": list(range(n_spec)), "native_id": [f"scan={i}" for i in range(n_spec)],
            "rt_s": [100.0] * n_spec, "precursor_mz": [150.0] * n_spec, "precursor_charge": [1] * n_spec,
            "precursor_intensity": [1e5] * n_spec,
            "feature_id": [f"{s}:F{i % 5}" if i < 4 else None for i in range(n_spec)],
            "mz": [[50.0, 80.0]] * n_spec, "intensity": [[1.0, 0.5]] * n_spec},
            schema={c: t for c, t in tables.SPECTRA.items() if c not in tables.ADDED_LATER})
        spectra = tables.conform(spectra, tables.SPECTRA)  # columns added to the contract later: null
        spectra.write_parquet(base / "spectra.parquet")
        embeddings = pl.DataFrame({
            "spectrum_id": spectra["spectrum_id"], "sample_id": spectra["sample_id"],
            "feature_id": spectra["feature_id"],
            "embedding": [rng.normal(size=8).astype(np.float32).tolist() for _ in range(n_spec)]},
            schema=tables.EMBEDDINGS).with_columns(
            pl.lit("trained-v1" if trained else "untrained-seed0-abc123").alias("model_id"),
            pl.lit(trained).alias("model_trained"))
        embeddings.write_parquet(base / "embeddings.parquet")
        names = ["Caffeine", "Caffeine", "Tryptophan <L>", "Glucose"]
        annotations = pl.DataFrame({
            "spectrum_id": [f"{s}:S{i}" for i in range(min(n_spec, 4))], "sample_id": [s] * min(n_spec, 4),
            "feature_id": [f"{s}:F{i}" for i in range(min(n_spec, 4))], "rank": [1] * min(n_spec, 4),
            "library_id": [f"MB{i}" for i in range(min(n_spec, 4))], "library_name": names[:min(n_spec, 4)],
            "library_inchikey": [f"KEY{n.split()[0].upper()}" for n in names][:min(n_spec, 4)],
            "library_smiles": ["C"] * min(n_spec, 4), "precursor_error_ppm": [1.5] * min(n_spec, 4),
            "cosine": [0.95, 0.9, 0.8, 0.5][:min(n_spec, 4)], "matched_peaks": [6] * min(n_spec, 4)},
            schema=tables.ANNOTATIONS)
        if with_q:  # as the annotate stage writes them: target-decoy q-values, accepted at 1% FDR
            q = [0.0004, 0.002, 0.008, 0.3][:min(n_spec, 4)]
            annotations = annotations.with_columns(pl.Series("q_value", q, dtype=pl.Float64),
                                                   pl.Series("accepted", [v <= 0.01 for v in q], dtype=pl.Boolean))
        annotations.write_parquet(base / "annotations.parquet")
        pooled = None if n_spec == 0 else (rng.normal(size=8) + 2.0 * y[k]).astype(np.float32).tolist()
        pl.DataFrame({"sample_id": [s], "n_spectra": [n_spec], "embedding": [pooled]},
                     schema=tables.SAMPLE_EMBEDDING).write_parquet(base / "sample_embedding.parquet")
    intensities = rng.uniform(1e4, 1e6, size=(12, n)) * np.exp(1.5 * y)[None, :]
    intensities[rng.random(intensities.shape) < 0.2] = np.nan
    matrix = pl.DataFrame({"consensus_id": [f"C{i}" for i in range(12)], "mz": np.linspace(100, 400, 12),
                           "rt_s": np.linspace(60, 600, 12),
                           "n_detected": (~np.isnan(intensities)).sum(axis=1).astype(np.int32),
                           **{s: intensities[:, j] for j, s in enumerate(ids)}}).with_columns(
        [pl.col(s).fill_nan(None) for s in ids])  # the contract: null where not detected
    matrix.write_parquet(root / "results" / "study" / "feature_matrix.parquet")
    sets = study_feature_sets(sheet, [root / "results" / "samples" / s / "sample_embedding.parquet"
                                      for s in ids], root / "results" / "study" / "feature_matrix.parquet")
    models.model_outcomes(sheet, sets, [{"column": "group", "type": "binary", "positive_class": "case"}],
                          root / "results" / "study" / "models",
                          {"n_permutations": 3, "outer_repeats": 1, "n_bootstrap": 100})
    return ids


def _write_differential(root: Path, classes: bool = True) -> None:
    """The differential stage's tables for outcome "group" on the study's matrix: C0-C5 identified as xanthines
    (one with hostile text in its name), C6-C9 as sugars (or without classes)."""
    names = ["Caffeine <i>x</i>", *[f"Xanthine {i}" for i in range(1, 6)], *[f"Sugar {i}" for i in range(4)]]
    compound_class = (["Organic compounds; Xanthines"] * 6 + ["Organic compounds; Sugars"] * 4 if classes
                      else [None] * 10)
    identifications = pl.DataFrame({
        "consensus_id": [f"C{i}" for i in range(10)], "name": names,
        "inchikey": [f"KEY{i:02d}AAAAAAAAAA-UHFFFAOYSA-N" for i in range(10)], "formula": ["C8H10N4O2"] * 10,
        "compound_class": compound_class, "msi_level": pl.Series([2] * 10, dtype=pl.Int8),
        "isomer_inchikeys": [[]] * 10, "q_value": [0.001] * 10, "accepted": [True] * 10,
    }, schema_overrides={"isomer_inchikeys": pl.List(pl.Utf8), "compound_class": pl.Utf8})
    identifications.write_parquet(root / "identifications_for_differential.parquet")
    study = root / "results" / "study"
    differential.run_differential(study / "samples.tsv", study / "feature_matrix.parquet",
                                  root / "identifications_for_differential.parquet",
                                  study / "differential" / "group.parquet", study / "class_enrichment" / "group.parquet",
                                  {"outcome": {"column": "group", "type": "binary", "positive_class": "case"}})


def _inputs(root: Path, outcomes: list[str] | None = None, sheet: Path | None = None) -> ReportInputs:
    """The report's inputs as the report rule names them: every sample's tables, the study tables, and the model
    and differential results of ``outcomes`` (None: every outcome folder on disk, as for a configuration that
    declares them all)."""
    study = root / "results" / "study"
    sheet = sheet or study / "samples.tsv"
    ids = pl.read_csv(sheet, separator="\t")["sample_id"].to_list()
    modelled = outcomes if outcomes is not None else sorted(
        p.parent.name for p in (study / "models").glob("*/summary.json"))
    tested = outcomes if outcomes is not None else sorted(p.stem for p in (study / "differential").glob("*.parquet"))
    return ReportInputs(
        sheet=sheet,
        sample_tables={t: [root / "results" / "samples" / s / f"{t}.parquet" for s in ids] for t in TABLES},
        feature_matrix=study / "feature_matrix.parquet", identifications=study / "identifications.parquet",
        models=[OutcomeFiles(study / "models" / o / "summary.json", study / "models" / o / "predictions.parquet")
                for o in modelled],
        differential=[DifferentialFiles(study / "differential" / f"{o}.parquet",
                                        study / "class_enrichment" / f"{o}.parquet") for o in tested])


@pytest.fixture(scope="module")
def untrained_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    root = tmp_path_factory.mktemp("study_untrained")
    _write_study(root, trained=False)
    _write_differential(root)
    out = root / "results" / "study" / "report.html"
    build_report(_inputs(root, ["group"]), out,
                 {"config_used": {"models": {"outcomes": [{"column": "group", "type": "binary"}]},
                                  "annotate": {"fdr": 0.01}}})
    return out, out.read_text(encoding="utf-8")


def _write_qc_inputs(root: Path, ids: list[str]) -> tuple[Path, list[Path], list[Path]]:
    """The QC stage's tables as issue 11 specifies them (qc.parquet, a chromatogram per sample; S03 an outlier) and
    an attribution table for outcome "group" (C2 contributes most, then C5, C7 ...)."""
    rng = np.random.default_rng(7)
    study = root / "results" / "study"
    n = len(ids)
    pl.DataFrame({
        "sample_id": ids, "n_ms1_scans": [900] * n, "n_ms2_scans": [0 if s == "S08" else 6 for s in ids],
        "n_ms2_mapped": [0 if s == "S08" else 4 for s in ids], "share_ms2_mapped": [0.0 if s == "S08" else 0.667
                                                                                    for s in ids],
        "n_features": [5] * n, "tic_total": rng.uniform(1e9, 2e9, n), "rt_shift_median_s": rng.normal(0, 2, n),
        "precursor_error_median_ppm": rng.normal(0, 1, n), "n_accepted": [3] * n,
        "outlier": [s == "S03" for s in ids], "outlier_score": [9.0 if s == "S03" else 1.0 for s in ids],
        "outlier_rule": ["robust distance > 3.5 MAD on the feature matrix"] * n,
    }).write_parquet(study / "qc.parquet")
    chromatograms = []
    rt = np.linspace(0, 600, 2000)  # more points than a trace keeps: the report thins them
    for k, s in enumerate(ids):
        peak = 1e6 * np.exp(-0.5 * ((rt - 100 - 20 * k) / 5) ** 2)
        path = root / "results" / "samples" / s / "chromatogram.parquet"
        pl.DataFrame({"rt_s": rt, "tic": peak * 2 + 1e4, "bpc": peak + 1e3}).write_parquet(path)
        chromatograms.append(path)
    contribution = [0.1, -0.05, 0.9, 0.02, 0.01, -0.6, 0.003, 0.3, 0.0, 0.0, 0.0, 0.0]
    order = np.argsort(-np.abs(contribution), kind="stable")
    (study / "attribution").mkdir(exist_ok=True)
    attribution = pl.DataFrame({
        "consensus_id": [f"C{i}" for i in range(12)], "mz": np.linspace(100, 400, 12),
        "rt_s": np.linspace(60, 600, 12), "contribution": contribution,
        "direction": ["toward case" if c > 0 else "away from case" for c in contribution],
        "rank": (np.argsort(order) + 1).astype(np.int32), "name": ["Caffeine <i>x</i>"] + [None] * 11,
        "inchikey": [None] * 12, "msi_level": pl.Series([2] + [None] * 11, dtype=pl.Int8)})
    attribution.write_parquet(study / "attribution" / "group.parquet")
    return study / "qc.parquet", chromatograms, [study / "attribution" / "group.parquet"]


def _write_library_index(root: Path) -> Path:
    """A two-spectrum library index (MB0: caffeine, MB1) for the mirror plots; a third entry (MBX) has no peaks."""
    mgf = root / "mirror_library.mgf"
    mgf.write_text("".join(
        f"BEGIN IONS\nTITLE={i}\nPEPMASS=150.0\nCHARGE=1+\nIONMODE=positive\nNAME=compound {i}\n"
        f"SPECTRUM_ID={i}\n50.0 100\n80.0 40\n{120 + k}.0 10\nEND IONS\n" for k, i in enumerate(["MB0", "MB1"]))
        + "BEGIN IONS\nTITLE=MBX\nPEPMASS=151.0\nCHARGE=1+\nIONMODE=positive\nSPECTRUM_ID=MBX\nEND IONS\n")
    index_library(mgf, root / "mirror_index")
    return root / "mirror_index"


@pytest.fixture(scope="module")
def full_report(untrained_report: tuple[Path, str]) -> tuple[Path, str]:
    """The untrained study's report with everything the report can show: consensus identifications with their
    library spectra (mirror plots), QC tables and chromatograms, and the attribution of outcome "group"."""
    root = untrained_report[0].parents[2]
    ids = pl.read_csv(root / "results" / "study" / "samples.tsv", separator="\t")["sample_id"].to_list()
    ident = pl.read_parquet(root / "identifications_for_differential.parquet").with_columns(
        pl.Series("library_id", [f"MB{i % 2}" for i in range(10)]), pl.lit(None, dtype=pl.Utf8).alias("smiles"),
        pl.Series("n_samples", list(range(10, 0, -1)), dtype=pl.Int32), pl.lit(4, dtype=pl.Int32).alias("n_spectra"),
        pl.lit(3, dtype=pl.Int32).alias("n_supporting"), pl.lit(0.8).alias("best_score"),
        pl.lit(0.9).alias("best_cosine"))
    ident.write_parquet(root / "identifications_full.parquet")
    qc_path, chromatograms, attribution = _write_qc_inputs(root, ids)
    inputs = dataclasses.replace(
        _inputs(root, ["group"]), identifications=root / "identifications_full.parquet",
        library_indexes=[_write_library_index(root)], qc=qc_path, chromatograms=chromatograms,
        attribution=attribution)
    out = root / "results" / "study" / "report_full.html"
    build_report(inputs, out, {"config_used": {"annotate": {"fdr": 0.01}}})
    return out, out.read_text(encoding="utf-8")


def test_qc_section_marks_outliers_and_draws_chromatograms(full_report: tuple[Path, str]) -> None:
    _, text = full_report
    part = text.split('id="qc"')[1].split('id="identifications"')[0]
    assert "Outlier rule: robust distance &gt; 3.5 MAD on the feature matrix. <b>1</b> of 8 samples flagged: S03" in part
    warnings = text.split('id="warnings"')[1].split('id="overview"')[0]
    assert "outlier sample(s) S03 (robust distance &gt; 3.5 MAD" in warnings
    rows = _itable_rows(part, "qc-table")
    assert [r[0] for r in rows] == [f"S{i:02d}" for i in range(1, 9)]  # sheet order
    assert [r[1] for r in rows] == ["OUTLIER" if i == 3 else "" for i in range(1, 9)]
    assert '"text":"TIC, 8 samples"' in part and '"text":"Base-peak chromatogram, 8 samples"' in part
    assert "S03 (outlier)" in part  # one line per sample for 8 samples, the outlier named


def test_chromatograms_keep_their_peaks_when_thinned() -> None:
    from ms2study.reporting.charts import MAX_TRACE_POINTS, chromatogram_figure, downsample

    x = np.linspace(0, 100, 10_001)
    y = np.exp(-0.5 * ((x - 37.3) / 0.05) ** 2)  # a peak narrower than a thinned step
    tx, ty = downsample(x, y)
    assert tx.size == MAX_TRACE_POINTS and ty.max() == 1.0 and abs(tx[np.argmax(ty)] - 37.3) < 0.01
    many = [(f"S{i}", x, y) for i in range(30)]
    fig = chromatogram_figure(many, "TIC", "tic", {"S4"})  # past 10 samples: one line for all, one for outliers
    assert [t.name for t in fig.data] == ["samples (29)", "outliers (1)"]
    assert np.isnan(fig.data[0].x).sum() == 29 and len(fig.data[0].x) == 29 * (MAX_TRACE_POINTS + 1)
    # samples of several batches: one line (one colour) per batch, the outliers apart; a run without a batch named
    batches = {f"S{i}": ("B2" if i < 12 else "B10") for i in range(29)}
    fig = chromatogram_figure(many, "TIC", "tic", {"S4"}, batches)
    assert [t.name for t in fig.data] == ["no batch (1)", "batch B10 (17)", "batch B2 (11)", "outliers (1)"]
    assert len({t.line.color for t in fig.data}) == 4 and "S29" in set(fig.data[0].text)
    one_batch = {f"S{i}": "B1" for i in range(30)}
    assert [t.name for t in chromatogram_figure(many, "TIC", "tic", {"S4"}, one_batch).data] == [
        "samples (29)", "outliers (1)"]  # one batch: one line, as without batches


def test_bad_qc_inputs_are_refused_with_the_file(tmp_path: Path) -> None:
    pl.DataFrame({"sample": ["S01"]}).write_parquet(tmp_path / "qc.parquet")
    with pytest.raises(InputError, match="no sample_id column"):
        qc.qc_section(tmp_path / "qc.parquet", [], ["S01"], [])
    with pytest.raises(InputError, match="1 chromatogram table"):
        qc.qc_section(None, [tmp_path / "c.parquet"], ["S01", "S02"], [])
    pl.DataFrame({"rt_s": [1.0], "tic": [2.0]}).write_parquet(tmp_path / "c.parquet")
    with pytest.raises(InputError, match=r"lacks column\(s\) \['bpc'\]"):
        qc.qc_section(None, [tmp_path / "c.parquet"], ["S01"], [])
    pl.DataFrame({"consensus_id": ["C1"]}).write_parquet(tmp_path / "a.parquet")
    with pytest.raises(InputError, match="attribution table of outcome group lacks"):
        qc.attribution_part(tmp_path / "a.parquet", "group")
    warnings: list[str] = []
    assert "No quality-control tables" in qc.qc_section(None, [], ["S01"], warnings) and not warnings


def test_attribution_beside_the_differential_results(full_report: tuple[Path, str]) -> None:
    _, text = full_report
    part = text.split('id="differential"')[1].split('id="encoder"')[0]
    assert "What the embedding model looks at" in part
    rows = _itable_rows(part, "attribution-group")
    assert [r[0] for r in rows[:4]] == [1, 2, 3, 4] and [r[1] for r in rows[:4]] == ["C2", "C5", "C7", "C0"]
    assert rows[3][2] == "Caffeine &lt;i&gt;x&lt;/i&gt;"  # escaped by itables
    assert "They carry 100% of the absolute contribution of all 12 features" in part  # the top 15 of 12


def test_identification_levels_are_named_as_schymanski_levels_throughout(full_report: tuple[Path, str]) -> None:
    """The report says its levels are Schymanski et al.'s (2014), not the Metabolomics Standards Initiative's: no
    header, caption or hover text calls them MSI levels (the tables' column stays ``msi_level``)."""
    _, text = full_report
    assert not re.search(r">MSI<|\(MSI |MSI level|\"MSI\"", text)
    assert ">compound</th><th>level (Schymanski)</th><th>class</th>" in text  # What differs
    assert "(Schymanski level 2)" in text  # hover text of the features
    assert "lowest Schymanski level, then lowest q" in text  # mirror plots


def test_permutation_importance_is_shown_as_importance_without_direction(tmp_path: Path) -> None:
    from ms2study.modelling.attribution import ATTRIBUTION

    table = pl.DataFrame({"consensus_id": ["C3", "C1"], "contribution": [0.04, 0.001], "rank": [1, 2],
                          "direction": [None, None], "n_samples": [12, 12], "method": ["permutation"] * 2,
                          "importance_sd": [0.01, 0.002], "name": ["Choline", None]})
    table.select([pl.col(c).cast(t) if c in table.columns else pl.lit(None, dtype=t).alias(c)
                  for c, t in ATTRIBUTION.items()]).write_parquet(tmp_path / "g.parquet")
    part = qc.attribution_part(tmp_path / "g.parquet", "group")
    assert "by permutation importance on the models stage's own folds" in part and "Brier score" in part
    assert "They carry" not in part  # the linear split's share means nothing for importances
    rows = _itable_rows(part, "attribution-group")
    assert rows[0][:3] == [1, "C3", "Choline"] and 0.04 in rows[0] and 0.01 in rows[0]
    assert "direction" not in part.split("attribution-group")[1]


def test_mirror_plots_show_query_against_library(full_report: tuple[Path, str], tmp_path: Path) -> None:
    _, text = full_report
    part = text.split('id="identifications"')[1].split('id="differential"')[0]
    assert "Mirror plots of the top identifications" in part
    # the library's own record: what was read and what was skipped (named), also among the warnings
    assert ("The library index <code>mirror_index</code> (mirror_library.mgf): 3 entries read, 2 spectra indexed. "
            "1 entries skipped") in part
    assert "MBX (mirror_library.mgf, entry 3" in part
    # a malformed record of the user's library is a caution on the identifications (trial BI), named
    assert ("1 record(s) of the library index <code>mirror_index</code> (mirror_library.mgf) could not be read and "
            "were never searched") in text.split('id="overview"')[0]
    # C0 (caffeine, library spectrum MB0) and C1 (MB1): one plot per library spectrum, best identification first
    assert part.count("Plotly.newPlot(") == 2
    assert '"name":"library MB0"' in part and '"name":"library MB1"' in part and "query S0" in part
    assert "Caffeine &lt;i&gt;x&lt;/i&gt;" in part and "<i>x</i>" not in part
    rows = _itable_rows(part, "identifications-table")
    assert len(rows) == 10 and rows[0][0] == "C0"
    # the figure itself: query peaks (50, 80) up, library peaks (50, 80, 120) down, each scaled to 100
    root = full_report[0].parents[2]
    annotations = read_annotations([root / "results" / "samples" / "S01" / "annotations.parquet"])
    html = spectra.mirror_plots(pl.read_parquet(root / "identifications_full.parquet").head(1), annotations,
                                {"S01": root / "results" / "samples" / "S01" / "spectra.parquet"},
                                [root / "mirror_index"])
    assert html.count("Plotly.newPlot(") == 1
    # a name accepted only by the study's vote over its spectra (none accepted in its own run) has its plot too
    unaccepted_runs = annotations.with_columns(pl.lit(False).alias("accepted"))
    assert spectra.mirror_plots(pl.read_parquet(root / "identifications_full.parquet").head(1), unaccepted_runs,
                                {"S01": root / "results" / "samples" / "S01" / "spectra.parquet"},
                                [root / "mirror_index"]).count("Plotly.newPlot(") == 1
    none = pl.read_parquet(root / "identifications_full.parquet").with_columns(pl.lit(False).alias("accepted"))
    assert "No name was accepted" in spectra.mirror_plots(none, annotations, {}, [root / "mirror_index"])
    assert "not passed to the report" in spectra.mirror_plots(pl.read_parquet(
        root / "identifications_full.parquet"), annotations, {}, [])


# a tag that would make the browser fetch something: script/img/iframe/embed/source src, link href, CSS url()/@import
EXTERNAL = re.compile(r"""<(script|img|iframe|embed|source|video|audio)\b[^>]*\bsrc\s*=|<link\b[^>]*\bhref\s*=|"""
                      r"""url\(\s*["']?\s*(https?:)?//|@import""", re.IGNORECASE)


def test_report_is_self_contained(untrained_report: tuple[Path, str]) -> None:
    _, text = untrained_report
    assert text.startswith("<!DOCTYPE html>")
    # the markup (the scripts' bodies, plotly.js and the DataTables bundle among them, left out: the browser test
    # watches what they request) names no address: no fetching tag, not even a link out
    markup = re.sub(r"(<script[^>]*>).*?(</script>)", r"\1\2", text, flags=re.DOTALL)
    assert not EXTERNAL.search(markup), EXTERNAL.search(markup)
    assert not re.search(r"""href\s*=\s*["']?\s*(https?:)?//""", markup, re.IGNORECASE)
    # plotly.js and the DataTables bundle are embedded once each, not once per chart or table
    assert text.count("plotly.js v") == 1 and text.count("injectModule(") == 2  # defined once, called once
    assert text.count("Plotly.newPlot(") >= 4 and "include_plotlyjs" not in text
    # user text is escaped everywhere: the sheet's hostile script never becomes a tag
    assert "<script>alert(1)" not in text and "<b>bold</b>" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text and "&lt;b&gt;bold&lt;/b&gt; &amp;" in text
    assert "Tryptophan &lt;L&gt;" in text


def test_report_has_every_section_and_the_numbers(untrained_report: tuple[Path, str]) -> None:
    _, text = untrained_report
    for anchor in SECTIONS:
        assert f'id="{anchor}"' in text, anchor
    # per-sample row of S01: 5 features, 6 scans, 4 mapped, 6 embedded, 3 annotated (rank 1), 6 pooled
    row = re.search(r"<tr><td>S01</td>((?:<td[^>]*>[^<]*</td>){6})</tr>", text)
    assert row and re.findall(r">([^<]*)<", row.group(1))[::2] == ["5", "6", "4", "6", "4", "6"]
    # identifications: accepted at the FDR only (glucose has q 0.3); Caffeine found in the 7 samples with MS/MS;
    # each sample's lowest q-value (caffeine's 0.0004) in the last column of the per-sample table and the FDR from
    # the configuration in the text
    assert "KEYCAFFEINE" in text and "KEYGLUCOSE" not in text
    caffeine = re.search(r"<td>Caffeine</td><td>KEYCAFFEINE</td><td class=\"num\">(\d+)</td>", text)
    assert caffeine and caffeine.group(1) == "7"
    s01 = re.search(r"<tr><td>S01</td><td class=\"num\">3</td>.*?<td class=\"num\">([^<]*)</td></tr>", text)
    assert s01 and s01.group(1) == "0.0004"
    assert "q ≤ 0.01" in text and "empirical null" in text and "lowest q" in text
    # models: the table row, ROC and PCA charts (plotly figures: their titles are in the figures' JSON)
    assert "roc_auc" in text and "permutation p" in text and '"text":"ROC: group"' in text and "null mean" in text
    assert "<th>p adjusted</th>" in text.replace(' class="num"', "") and "max-statistic" in text
    assert "Estimator: <b>elastic_net</b>" in text  # the models default (models.DEFAULT_PARAMS)
    assert "fold-wise metrics are coarse" in text  # 4 vs 4 samples: one sample per class in a test fold
    # what a study of 8 samples could detect, from the shipped effect-size sweep (resources/detectable_effects.json)
    assert "This study has 8 samples, fewer than the sweep&#x27;s smallest studies" in text or \
        "This study has 8 samples, fewer than the sweep's smallest studies" in text
    # maps: UMAP only when umap-learn is installed (it is not a dependency), PCA otherwise
    used = "UMAP" if umap_available() else "PCA"
    assert f"{used} of embedding, coloured by group" in text and f"{used} of features, coloured by group" in text
    assert "Consensus features by number of samples detected" in text
    assert "12</b> consensus features" in text and "detection rate 100.0%" not in text
    assert "scikit-learn" in text and "Configuration used" in text


def test_report_warns_plainly(untrained_report: tuple[Path, str]) -> None:
    _, text = untrained_report
    warnings = text.split('id="warnings"')[1].split('id="overview"')[0]
    assert "UNTRAINED placeholder" in warnings
    assert "S08</b> has no MS/MS scans" in warnings
    assert "S08</b> has no pooled embedding" in warnings


def test_trained_encoder_has_no_untrained_warning(tmp_path: Path) -> None:
    _write_study(tmp_path, trained=True, seed=1)
    out = tmp_path / "report.html"
    build_report(_inputs(tmp_path), out)
    text = out.read_text(encoding="utf-8")
    assert "UNTRAINED" not in text and "trained-v1" in text
    assert "a trained checkpoint" in text


def test_report_command_and_skipped_outcome(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ids = _write_study(tmp_path, trained=True, seed=2)
    (tmp_path / "results" / "samples" / "S99").mkdir()  # a sample taken out of the sheet (trial AV)
    monkeypatch.chdir(tmp_path)  # the report runs in the study folder
    sheet = pl.read_csv(tmp_path / "results" / "study" / "samples.tsv", separator="\t")
    sheet = sheet.with_columns(pl.Series("rare", ["x"] * (len(ids) - 1) + ["y"]))
    sheet.write_csv(tmp_path / "samples.tsv", separator="\t")
    models.model_outcomes(sheet, {}, [{"column": "rare", "type": "binary"}], tmp_path / "results/study/models")
    inputs = _inputs(tmp_path, ["group", "rare"], sheet=tmp_path / "samples.tsv")
    qc_path, chromatograms, _ = _write_qc_inputs(tmp_path, ids)
    code = cli_main(["report", "--samples", str(tmp_path / "samples.tsv"),
                     *[a for t in TABLES for a in (f"--{t.replace('_', '-')}", *map(str, inputs.sample_tables[t]))],
                     "--feature-matrix", str(inputs.feature_matrix), "--identifications", str(inputs.identifications),
                     "--model-summaries", *[str(m.summary) for m in inputs.models],
                     "--model-predictions", *[str(m.predictions) for m in inputs.models],
                     # the QC inputs; no library index (the rule passes the option empty without a library)
                     "--qc", str(qc_path), "--chromatograms", *map(str, chromatograms), "--library-index",
                     "--out", str(tmp_path / "r.html"), "--params", '{"title": "Demo <study>"}'])
    assert code == 0
    text = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert "<h1>Demo &lt;study&gt;</h1>" in text
    assert "<b>1</b> of 8 samples flagged: S03" in text and '"text":"TIC, 8 samples"' in text
    assert "outcome <b>rare</b> was not modelled: class &#x27;y&#x27; has 1 sample" in text
    assert "results/samples/ holds the folders of 1 sample(s) no longer in the sheet (S99)" in text


def test_an_outcome_removed_from_the_config_is_not_reported(tmp_path: Path) -> None:
    """Issue 14: an earlier configuration modelled and tested the outcome "cohort"; it has since been removed from
    config.yaml (and its column from the sheet), but its folder results/study/models/cohort/ and its differential
    tables are still on disk. The report reads only the files handed to it, so nothing of "cohort" shows. (The
    outcome was called "batch" until issue 13 made batch an acquisition column, which is never an outcome.)"""
    ids = _write_study(tmp_path, trained=True, seed=5)
    _write_differential(tmp_path)
    study = tmp_path / "results" / "study"
    earlier = pl.read_csv(study / "samples.tsv", separator="\t").with_columns(
        pl.Series("cohort", ["b1", "b2"] * (len(ids) // 2)))
    earlier.write_csv(tmp_path / "earlier_samples.tsv", separator="\t")
    sets = study_feature_sets(earlier, [tmp_path / "results" / "samples" / s / "sample_embedding.parquet"
                                        for s in ids], study / "feature_matrix.parquet")
    cohort = {"column": "cohort", "type": "binary", "positive_class": "b1"}
    models.model_outcomes(earlier, sets, [cohort], study / "models",
                          {"n_permutations": 3, "outer_repeats": 1, "n_bootstrap": 100})
    differential.run_differential(tmp_path / "earlier_samples.tsv", study / "feature_matrix.parquet",
                                  tmp_path / "identifications_for_differential.parquet",
                                  study / "differential" / "cohort.parquet",
                                  study / "class_enrichment" / "cohort.parquet", {"outcome": cohort})
    assert (study / "models" / "cohort" / "summary.json").exists()

    # the earlier run's report showed it (the control: these files do make it into a report when handed over)
    build_report(_inputs(tmp_path, ["group", "cohort"], sheet=tmp_path / "earlier_samples.tsv"), tmp_path / "a.html")
    before = (tmp_path / "a.html").read_text(encoding="utf-8")
    assert "<h3>Outcome: cohort (binary)</h3>" in before.split('id="models"')[1]
    assert "<h3>Outcome: cohort (binary)</h3>" in before.split('id="differential"')[1].split('id="encoder"')[0]

    config = {"models": {"outcomes": [{"column": "group", "type": "binary", "positive_class": "case"}]}}
    build_report(_inputs(tmp_path, ["group"]), tmp_path / "b.html", {"config_used": config})
    text = (tmp_path / "b.html").read_text(encoding="utf-8")
    assert "<h3>Outcome: group (binary)</h3>" in text.split('id="models"')[1]
    # the head holds plotly.js and the DataTables bundle; charts have random ids and
    # base64-encoded arrays
    body = re.sub(r'"bdata":"[^"]*"|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}', "",
                  text.split("<body")[1])
    assert "cohort" not in body and not re.search(r"\bb1\b", body)


def test_outcomes_follow_the_configured_order_in_both_sections(tmp_path: Path) -> None:
    """Trial finding: "What differs" listed the outcomes in the order given and "Outcome models" in the order of
    the summaries' paths (alphabetical), so a configuration declaring group before age showed age first under the
    models. Both sections follow ``models: outcomes``, whatever order the files are handed over in."""
    ids = _write_study(tmp_path, trained=True, seed=6)
    _write_differential(tmp_path)
    study = tmp_path / "results" / "study"
    sheet = pl.read_csv(study / "samples.tsv", separator="\t").with_columns(
        pl.Series("age", [float(40 + 3 * i) for i in range(len(ids))]))
    sheet.write_csv(study / "samples.tsv", separator="\t")
    sets = study_feature_sets(sheet, [tmp_path / "results" / "samples" / s / "sample_embedding.parquet"
                                      for s in ids], study / "feature_matrix.parquet")
    age = {"column": "age", "type": "continuous"}
    models.model_outcomes(sheet, sets, [age], study / "models",
                          {"n_permutations": 2, "outer_repeats": 1, "n_bootstrap": 50})
    differential.run_differential(study / "samples.tsv", study / "feature_matrix.parquet",
                                  tmp_path / "identifications_for_differential.parquet",
                                  study / "differential" / "age.parquet", study / "class_enrichment" / "age.parquet",
                                  {"outcome": age})
    config = {"models": {"outcomes": [{"column": "group", "type": "binary", "positive_class": "case"}, age]}}

    def headings(text: str, section: str) -> list[str]:
        part = text.split(f'<h2 id="{section}">')[1].split("</section>")[0]
        return re.findall(r"<h3>Outcome: (\w+) ", part)

    for given in (["group", "age"], ["age", "group"]):  # the rule's order, and an order typed by hand
        build_report(_inputs(tmp_path, given), tmp_path / "r.html", {"config_used": config})
        text = (tmp_path / "r.html").read_text(encoding="utf-8")
        assert headings(text, "differential") == ["group", "age"], given
        assert headings(text, "models") == ["group", "age"], given
    # without a configuration (the report command run by hand) both keep the order given
    build_report(_inputs(tmp_path, ["group", "age"]), tmp_path / "r.html")
    text = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert headings(text, "differential") == headings(text, "models") == ["group", "age"]


def test_a_near_perfect_metric_with_a_large_p_is_explained(tmp_path: Path) -> None:
    """Trial finding: AUC 1.0 with permutation p = 0.143 on the 12-sample demo confused users. When a set's metric is
    at or near its maximum but p is not small, the models section says why in a note: permuted labels reach that
    value too with so few samples, p counts them, and its resolution is 1/(permutations + 1). Otherwise no note."""
    from ms2study.reporting import outcomes

    def entry(value: float, p: float) -> dict:
        return {"metric": "roc_auc", "value": value, "ci_low": value, "ci_high": 1.0, "permutation_p": p,
                "permutation_null_mean": 0.5, "n_samples": 12, "n_features": 64, "outer_splits": 5,
                "outer_repeats": 5}

    summary = {"outcome": "group", "type": "binary", "status": "done", "n_samples": 12,
               "class_counts": {"control": 6, "case": 6}, "positive_class": "case", "params": {"n_permutations": 20},
               "feature_sets": {"embedding": entry(1.0, 3 / 21), "features": entry(1.0, 1 / 21),
                                "binned_spectra": entry(0.9, 3 / 21)}}
    note = outcomes.permutation_note(summary)
    assert note.startswith("roc_auc is at or near its maximum of 1, yet p is not small (embedding: 1.000, p = 0.143 for "
                           "the first repeat's AUC, 2 of 20 permutations reached it): with 12 samples, models fitted "
                           "to permuted labels")
    assert note.endswith("p = (1 + permutations reaching at least the observed value) / (1 + permutations), so its "
                         "resolution is 1/21 = 0.0476.")
    assert "features:" not in note and "binned_spectra" not in note  # p small, or the value not near 1
    assert note.count(". ") == 1  # two sentences
    path = tmp_path / "models" / "group" / "summary.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(summary))
    sheet = pl.DataFrame({"sample_id": [f"S{i}" for i in range(12)], "group": ["case", "control"] * 6})
    part = outcomes.models_section([OutcomeFiles(path, None)], sheet, {}, [])
    assert '<p class="note permutation">roc_auc is at or near its maximum' in part
    # trial finding: with 9 permutations p = 0.1 although none reached the value: said as the floor, not "not small"
    floor = {**summary, "params": {"n_permutations": 9}, "feature_sets": {"embedding": entry(1.0, 1 / 10)}}
    note = outcomes.permutation_note(floor)
    assert "yet p is not small" not in note and "none of 9 permutations reached it" in note
    assert "p is the smallest 9 permutations can give" in note and "resolution is 1/10" in note
    # a sequential p (drawing stopped once 10 permutations reached the value): counts from the entry, not from p
    stopped = {**summary, "params": {"n_permutations": 100}, "feature_sets": {"embedding": {
        **entry(1.0, 10 / 79), "permutations_drawn": 79, "permutations_reaching": 10,
        "permutations_stopped_early": True}}}
    note = outcomes.permutation_note(stopped)
    assert "embedding: 1.000, p = 0.127 for the first repeat's AUC, 10 of 79 permutations reached it" in note
    assert "p = those permutations / permutations drawn (Besag & Clifford 1991)" in note
    assert note.endswith("resolution is 1/101 = 0.0099.")
    # not shown when every near-perfect value has a small p
    summary["feature_sets"]["embedding"]["permutation_p"] = 1 / 21
    assert outcomes.permutation_note(summary) is None
    path.write_text(json.dumps(summary))
    assert "note permutation" not in outcomes.models_section([OutcomeFiles(path, None)], sheet, {}, [])


def test_the_models_section_and_the_attribution_judge_a_model_by_one_rule(full_report: tuple[Path, str]) -> None:
    """Trial finding: the attribution said to judge the model by its interval, the models section (and its note on
    coarse folds) to rely on the permutation p. Both now state one rule: p is the test, the interval the precision
    (optimistic with few samples), and a model beats chance where p < 0.05 and its interval lies above chance."""
    _, text = full_report
    models = text.split('id="models"')[1]
    differential = text.split('id="differential"')[1].split('id="encoder"')[0]
    assert ("p is the test of whether a model beats chance (it refits the whole procedure on permuted labels); "
            "the interval says how precisely the value is known, but it does not refit the models") in models
    assert "A model is taken to beat chance where p &lt; 0.05 and its interval lies above chance (AUC 0.5" in models
    assert ("worth reading only where the model beats chance (under &#x27;Outcome models&#x27;: permutation p &lt; "
            "0.05 and its interval above chance)") in differential or (
        "worth reading only where the model beats chance (under 'Outcome models': permutation p &lt; 0.05 and its "
        "interval above chance)") in differential
    assert "interval above beats chance" not in text


def _summary(kind: str, sets: dict[str, tuple[float, float, float, float | None]]) -> dict:
    metric = {"binary": "roc_auc", "continuous": "r2"}[kind]
    return {"outcome": "age" if kind == "continuous" else "group", "type": kind, "status": "done", "n_samples": 12,
            "params": {"n_permutations": 20},
            "feature_sets": {name: {"metric": metric, "value": v, "ci_low": lo, "ci_high": hi, "permutation_p": p,
                                    "permutation_null_mean": 0.0, "n_samples": 12, "n_features": 3,
                                    "outer_splits": 5, "outer_repeats": 5}
                             for name, (v, lo, hi, p) in sets.items()}}


def test_a_failed_model_is_said_so_and_its_attribution_carries_a_caveat(tmp_path: Path) -> None:
    """Trial finding (demo outcome age): a negative cross-validated R² got no comment, the ROC sentence stood under
    a continuous outcome's maps, and the attribution of a model that failed was presented like any other."""
    from ms2study.reporting import outcomes

    ids = [f"S{i:02d}" for i in range(12)]
    rng = np.random.default_rng(3)
    sheet = pl.DataFrame({"sample_id": ids, "age": rng.uniform(20, 70, 12)})
    sets = {"embedding": pl.DataFrame({"sample_id": ids, **{f"d{j}": rng.normal(size=12) for j in range(4)}})}
    age = _summary("continuous", {"embedding": (-0.79, -5.0, -0.09, 0.905), "features": (0.31, 0.05, 0.6, 0.01)})
    path = tmp_path / "models" / "age" / "summary.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(age))
    part = outcomes.models_section([OutcomeFiles(path, None)], sheet, sets, [])
    # trial AP: the verdict rested on the feature matrix, whose model nothing explained, unsaid
    assert "for the feature-matrix, pooled-embedding and bag-of-chemistry models" in part
    assert "the binned-spectra model is not split" in part
    assert ('<p class="note negative-r2">Cross-validated R² below 0 (embedding: -0.790): this model predicts the '
            "outcome worse than its mean would") in part and "no usable signal" in part
    assert "features: 0.310" not in part.split("negative-r2")[1].split("</p>")[0]  # R² above 0: not named
    assert "coloured by age" in part  # the map is drawn ...
    assert "ROC" not in part and "AUC in the legend" not in part  # ... but a continuous outcome has no ROC curve
    assert outcomes.negative_r2_note(_summary("binary", {"embedding": (0.4, 0.2, 0.6, 0.5)})) is None
    # the rule of the models section, per feature set
    assert outcomes.chance_shortfall(age["feature_sets"]["features"]) is None
    why = outcomes.chance_shortfall(age["feature_sets"]["embedding"])
    assert why.startswith("it predicts worse than the outcome's mean (cross-validated R² = -0.790): no usable signal")
    group = _summary("binary", {"embedding": (1.0, 1.0, 1.0, 3 / 21), "features": (0.9, 0.55, 1.0, 1 / 21),
                                "binned_spectra": (0.8, 0.45, 1.0, 1 / 21)})
    assert outcomes.chance_shortfall(group["feature_sets"]["embedding"]) == (
        "its permutation p = 0.143 is not below 0.05")
    assert outcomes.chance_shortfall(group["feature_sets"]["features"]) is None
    assert "its 95 % interval 0.450 to 1.000 does not lie above chance (0.5)" in outcomes.chance_shortfall(
        group["feature_sets"]["binned_spectra"])
    # the caveat names the attributed (embedding) model of each outcome that is not shown to beat chance
    (tmp_path / "models" / "group").mkdir()
    (tmp_path / "models" / "group" / "summary.json").write_text(json.dumps(group))
    caveats = outcomes.attribution_caveats([OutcomeFiles(path), OutcomeFiles(tmp_path / "models/group/summary.json")])
    assert set(caveats) == {"age", "group"}
    assert caveats["age"].startswith("the embedding model of age is not shown to beat chance: it predicts worse")
    group["feature_sets"]["embedding"]["permutation_p"] = 1 / 21
    (tmp_path / "models" / "group" / "summary.json").write_text(json.dumps(group))
    # p 0.048 on its own, Bonferroni 0.14 over the 3 sets: "suggestive only", as Main findings says (trial AO)
    assert "suggestive only" in outcomes.attribution_caveats([OutcomeFiles(tmp_path / "models/group/summary.json")])[
        "group"]
    group["p_adjustment"] = {"permutations": 20}
    group["feature_sets"]["embedding"]["permutation_p_adjusted"] = 1 / 21
    (tmp_path / "models" / "group" / "summary.json").write_text(json.dumps(group))
    assert set(outcomes.attribution_caveats([OutcomeFiles(tmp_path / "models/group/summary.json")])) == set()
    # the attribution is still shown, under a heading and a note that say it is not evidence
    pl.DataFrame({"consensus_id": ["C1", "C2"], "contribution": [0.5, -0.2], "rank": [1, 2]}).write_parquet(
        tmp_path / "age.parquet")
    shown = qc.attribution_part(tmp_path / "age.parquet", "age", caveat=caveats["age"])
    assert "(a model without shown signal: not evidence)</h4>" in shown
    assert '<p class="note caveat"><b>Read with caution</b>: the embedding model of age is not shown' in shown
    assert "attribution-age" in shown  # the table follows
    plain = qc.attribution_part(tmp_path / "age.parquet", "age")
    assert "caution" not in plain and "not evidence" not in plain


def test_a_blank_without_a_pooled_embedding_is_a_note_and_stays_off_the_maps(tmp_path: Path) -> None:
    """Trial finding: blanks' pooled sample embeddings are null (NaN as numbers: none of their MS/MS maps to a
    feature). The report warned of each as if it had "missing values in the embedding models", which blanks never
    enter; it now lists them in a note under the runs, and the maps (study samples only) neither crash on them nor
    draw them. A study sample without one is still a warning."""
    ids = _write_study(tmp_path, trained=True, seed=7)  # S08: no MS/MS, a null pooled embedding
    study = tmp_path / "results" / "study"
    sheet = pl.read_csv(study / "samples.tsv", separator="\t").with_columns(
        pl.Series("sample_type", ["sample"] * (len(ids) - 1) + ["blank"]),
        pl.Series("group", ["case" if i % 2 else "control" for i in range(len(ids) - 1)] + [None]))
    sheet.write_csv(study / "samples.tsv", separator="\t")
    assert pl.read_parquet(tmp_path / "results" / "samples" / "S08" / "sample_embedding.parquet")["embedding"][0] is None
    sets = study_feature_sets(sheet, [tmp_path / "results" / "samples" / s / "sample_embedding.parquet"
                                      for s in ids], study / "feature_matrix.parquet")
    models.model_outcomes(sheet, sets, [{"column": "group", "type": "binary", "positive_class": "case"}],
                          study / "models", {"n_permutations": 2, "outer_repeats": 1, "n_bootstrap": 50})
    build_report(_inputs(tmp_path, ["group"]), tmp_path / "r.html")
    text = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert "<b>S08</b> has no pooled embedding" not in text
    samples = text.split('<h2 id="samples">')[1].split("</section>")[0]
    assert "1 blank run(s) without a pooled embedding, as expected" in samples and ": S08." in samples
    maps = text.split('<h2 id="models">')[1].split("</section>")[0]
    assert "of embedding, coloured by group" in maps and "S07" in maps and "S08" not in maps
    # a study sample without one is still warned of
    from ms2study.reporting.sections import samples_section

    warned: list[str] = []
    samples_section([{"sample_id": "S08", "has_sample_embedding": False}], warned, {"S08": "sample"})
    assert warned and "has missing values in the embedding models" in warned[0]


def test_without_q_values_identifications_fall_back_to_cosine(tmp_path: Path) -> None:
    _write_study(tmp_path, trained=True, seed=3, with_q=False)
    out = tmp_path / "report.html"
    build_report(_inputs(tmp_path), out)
    text = out.read_text(encoding="utf-8")
    assert "No q-values in the annotations" in text and "cosine ≥ 0.7" in text and "lowest q" not in text
    assert "KEYTRYPTOPHAN" in text and "KEYGLUCOSE" not in text


def test_the_differential_section_names_the_test_each_summary_records() -> None:
    from ms2study.reporting.whatdiffers import _test_text

    base = {"type": "binary", "positive_class": "case", "reference_class": "control",
            "class_counts": {"case": 6, "control": 6}}
    moderated = _test_text({**base, "test": "moderated_t", "n_moderated": 222, "prior_df": 53.2,
                            "n_permutations": 200})
    assert moderated.startswith("moderated t-test (Welch for features with an imputed value) on log2 intensities")
    assert "222 features with a value in every sample (detected or gap-filled)" in moderated and "prior degrees of freedom 53.2" in moderated
    assert "p-values from 200 permutations pooled over features" in moderated
    assert _test_text({**base, "test": "welch_t"}).startswith("Welch t-test on log2 intensities")
    # what one feature's test could find at this size (a trial: all q >= 0.18 and no word on it)
    power = _test_text({**base, "test": "moderated_t", "detectable_log2_fold_change": 1.7})
    assert "needs about a 3.2-fold change (log2 1.70) to reach q &lt; 0.05" in power and "77 of 100" in power
    assert "fold change (log2" not in _test_text({**base, "test": "moderated_t"})
    assert "label permutations" not in moderated
    filled = _test_text({**base, "test": "welch_t", "n_imputed_permuted": 31, "imputed_permutations": 200})
    assert ("31 features with an imputed value (not detected, not gap-filled): Welch p-values from 200 label "
            "permutations") in filled
    slope = _test_text({"type": "continuous", "test": "ols", "n_samples": 20, "n_imputed_permuted": 5,
                        "imputed_permutations": 100})
    assert "5 features with an imputed value (not detected, not gap-filled): regression p-values from 100 " \
           "permutations of the residuals" in slope
    tdist = _test_text({"type": "continuous", "test": "moderated_ols", "n_moderated": 40, "prior_df": 4.0,
                        "n_permutations": 0, "n_samples": 20})
    assert tdist.startswith("linear regression") and "p-values from the t distribution" in tdist
    # the features table shows which test each feature got when they differ, and the permutation floor
    from ms2study.reporting.whatdiffers import _feature_table

    tested = pl.DataFrame({"consensus_id": ["C1", "C2"], "test": ["moderated_t", "welch_t"], "p_value": [1e-4, 0.2],
                           "q_value": [2e-4, 0.2], "log2_fold_change": [1.5, 0.1], "effect_ci_low": [0.914, None],
                           "effect_ci_high": [2.086, None]})
    html = _feature_table(tested, {**base, "n_permutations": 200, "n_moderated": 222}, "log2_fold_change",
                          "log2 FC", "t1")
    assert "welch_t" in html
    # the fold change's interval, and why the imputed feature has none (a trial: fold changes without uncertainty)
    assert "95 % interval" in html and "0.91 to 2.09" in html and "none (imputed value)" in html
    assert "in 90 % of such features, against 95 %" in html
    assert "test: moderated_t / moderated_ols / moderated_f for features measured in every sample" in html
    assert "the smallest moderated p is 2.3e-05" in html
    single = _feature_table(tested.with_columns(pl.lit("welch_t").alias("test")), base, "log2_fold_change",
                            "log2 FC", "t2")
    assert "test: moderated_t" not in single
    # trial AJ: a piece of a background ion cut into several features, "measured only in exposed", stood unmarked
    marked = _feature_table(tested, base, "log2_fold_change", "log2 FC", "t3",
                            {"C2": "background ion: half-height width at least 50 % ...", "C9": "background ion: x"})
    header, rows = _itable_header(marked, "t3"), _itable_rows(marked, "t3")
    at = header.index("background ion?")
    assert {r[0]: r[at] for r in rows} == {"C1": None, "C2": "through the run"}
    assert "background ion?: the feature's half-height width" in marked
    assert "background ion?" not in _feature_table(tested, base, "log2_fold_change", "log2 FC", "t4", {"C9": "x"})
    # trial BE: a hit named on 1 spectrum in 1 sample, the same name accepted 33 s earlier on 14, had no mark here
    from ms2study.reporting.marks import name_marks, with_name_marks

    ident = pl.DataFrame({"consensus_id": ["C1", "C2", "C3"], "accepted": [True, True, False],
                          "same_name_elsewhere": [["C7"], [], ["C7"]]})
    named = with_name_marks(tested, name_marks(ident))
    assert named["_name_marks"].to_list() == ["named at several retention times", None]
    assert "marks on its name" in _itable_header(_feature_table(named, base, "log2_fold_change", "log2 FC", "t5"),
                                                 "t5")
    assert with_name_marks(tested, name_marks(ident.with_columns(
        pl.Series("same_name_elsewhere", [[], [], ["C7"]])))).equals(tested)  # no tested name carries a mark: no column


def test_report_says_what_differs(untrained_report: tuple[Path, str]) -> None:
    _, text = untrained_report
    part = text.split('id="differential"')[1].split('id="encoder"')[0]
    # too few features detected in every sample for a variance prior: Welch throughout, and said so
    assert "<h3>Outcome: group (binary)</h3>" in part and "Welch t-test on log2 intensities" in part
    assert "<b>case</b> (n = 4) against <b>control</b> (n = 4)" in part
    # C3 is detected in 3 of 8 samples, so in at least 2 of one class's 4: tested (modelling.differential's rule)
    assert "12 of 12 consensus features tested" in part
    assert "Tested features (12;" in part and "log2 FC (case / control)" in part and "ChemRICH" in part
    assert '"text":"Volcano: group"' in part and '"text":"Class enrichment: group"' in part
    # every tested feature, sorted by q as the stage wrote them (DataTables sorts by q too), with the
    # identification joined and user text escaped
    table = pl.read_parquet(untrained_report[0].parent / "differential" / "group.parquet").filter(pl.col("tested"))
    rows = _itable_rows(text, "differential-0")
    assert [r[0] for r in rows] == table["consensus_id"].to_list()
    assert "Caffeine &lt;i&gt;x&lt;/i&gt;" in part and "<i>x</i>" not in part
    # 4 against 4 samples: no feature reaches q < 0.05; of the two classes (the kingdom "Organic compounds" is not
    # tested, so Benjamini-Hochberg is over 2), the xanthines' p comes from label permutations, and 4 + 4 samples
    # allow 35 distinct labellings: p >= about 1/35, q above 0.05, and the report says why
    assert "No chemical class is enriched at q &lt; 0.05 (2 classes tested" in part
    assert "8 samples allow 35 distinct outcome labellings" in part
    findings_box = text.split('id="findings"')[1].split('id="warnings"')[0]
    assert "no chemical class enriched at q &lt; 0.05 (2 tested" in findings_box
    assert "8 samples allow 35 distinct labellings, so no class p-value falls much below 1/35" in findings_box


def test_report_lists_enriched_classes_and_says_when_there_are_no_classes(tmp_path: Path) -> None:
    _write_study(tmp_path, trained=True, seed=4)
    study = tmp_path / "results" / "study"
    n = 12
    table = pl.DataFrame({
        "consensus_id": [f"C{i}" for i in range(n)], "mz": np.linspace(100, 400, n), "rt_s": np.linspace(60, 600, n),
        "name": [f"Xanthine {i}" for i in range(6)] + [f"Sugar {i}" for i in range(6)],
        "inchikey": [f"KEY{i:02d}AAAAAAAAAA-UHFFFAOYSA-N" for i in range(n)],
        "compound_class": ["Alkaloids; Xanthines"] * 6 + ["Sugars"] * 6, "identification_q_value": [0.002] * n,
        "outcome": ["group"] * n, "test": ["welch_t"] * n,
        "log2_fold_change": [1.6] * 6 + [0.1, -0.1] * 3, "p_value": [1e-5, 2e-5, 1e-4, 3e-4, 1e-3, 2e-3]
        + [0.3, 0.5, 0.7, 0.9, 0.4, 0.6], "tested": [True] * n, "n_samples": [8] * n,
        "detection_rate": [1.0] * n, "detection_rate_positive": [1.0] * n, "detection_rate_reference": [0.75] * n,
        "mean_log2_intensity": [18.0] * n})
    table = table.with_columns(pl.Series("q_value", bh_q_values(table["p_value"].to_numpy())))
    table = pl.concat([table, pl.DataFrame(schema=differential_tables.DIFFERENTIAL)], how="diagonal_relaxed").select(
        [pl.col(c).cast(t) for c, t in differential_tables.DIFFERENTIAL.items()]).sort("q_value")
    summary = {"outcome": "group", "type": "binary", "test": "welch_t", "positive_class": "case",
               "reference_class": "control", "class_counts": {"control": 4, "case": 4}, "notes": [], "alpha": 0.05}
    config = {"models": {"outcomes": [{"column": "group", "type": "binary", "positive_class": "case"}]}}

    def report(enrichment: pl.DataFrame, notes: list[str]) -> str:
        differential_tables.write_table(table, study / "differential" / "group.parquet", summary)
        differential_tables.write_table(enrichment, study / "class_enrichment" / "group.parquet",
                                 {**summary, "enrichment_notes": notes})
        build_report(_inputs(tmp_path, ["group"]), tmp_path / "r.html", {"config_used": config})
        return (tmp_path / "r.html").read_text(encoding="utf-8").split('id="differential"')[1].split('id="encoder"')[0]

    part = report(*class_enrichment(table))
    # "Alkaloids" holds exactly the compounds of "Alkaloids; Xanthines": one set, tested once as the deeper class
    assert "1 of 2 classes tested are enriched at q &lt; 0.05" in part
    rows = {r[0]: r[1:] for r in _itable_rows(part, "enrichment-0")}
    assert "Alkaloids" not in rows
    assert rows["Alkaloids; Xanthines"][:6] == [2, 6, 6, 6, 0, "up"], rows
    # the direction summarises the members at p < alpha, the median all members: each header says which
    assert "direction of members at p &lt; 0.05" in part or "direction of members at p < 0.05" in part
    assert "all members" in part
    assert rows["Sugars"][-2] >= 0.05  # every class is listed, the enriched ones first
    unclassed = table.with_columns(pl.lit(None, dtype=pl.Utf8).alias("compound_class"))
    part = report(*class_enrichment(unclassed))
    assert "the library gives no compound classes for the 12 identified features" in part
    # an outcome declared but whose tables are missing is a warning, not a crash
    (study / "differential" / "group.parquet").unlink()
    build_report(_inputs(tmp_path, ["group"]), tmp_path / "r.html", {"config_used": config})
    assert "differential table <code>group.parquet</code> is missing" in (tmp_path / "r.html").read_text()
    build_report(_inputs(tmp_path, []), tmp_path / "r.html", {"config_used": {"models": {"outcomes": []}}})
    assert "No differential analysis: no outcomes are declared" in (tmp_path / "r.html").read_text()


def test_maps_use_pca_unless_umap_is_there_and_say_which() -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(10, 5))
    X[3, 1] = np.nan
    coords, used, axes = map_2d(X, "mean", "pca")
    assert used == "PCA" and coords.shape == (10, 2) and axes[0].startswith("PC1 (")
    coords, used, axes = map_2d(X, "mean", "umap")
    assert used == ("UMAP" if umap_available() else "PCA") and coords.shape == (10, 2)
    assert map_2d(X[:4], "mean", "umap")[1] == "PCA"  # too few samples for neighbours
    with pytest.raises(InputError, match="map_method"):
        build_report(ReportInputs(sheet=Path("samples.tsv")), Path("x.html"), {"map_method": "tsne"})


def test_a_map_of_identical_samples_is_drawn_not_a_crash() -> None:
    """A trial's copies of one run with identical MS/MS: every column constant up to rounding, whose spread (1e-17)
    passed the constant-column filter and was exactly 0 when computed again: 0 / 0, "SVD did not converge", no
    report. The same matrix with one sample apart maps that sample apart."""
    rng = np.random.default_rng(0)
    base = (rng.lognormal(0, 3, (1, 318)) * rng.choice([0, 1], (1, 318))).astype(np.float32)
    X = np.log1p(np.repeat(base, 17, axis=0).astype(np.float64))
    X[:, :106] = np.nan  # and columns without any value
    for imputation in ("mean", "half_minimum"):
        coords, used, _ = map_2d(X, imputation, "pca")
        assert used == "PCA" and np.isfinite(coords).all() and np.allclose(coords, 0.0)
    X[0, 200:210] += 1.0
    coords = map_2d(X, "mean", "pca")[0]
    assert np.isfinite(coords).all() and abs(coords[0, 0]) > 1.0 and np.allclose(coords[1:, 0], coords[1, 0])


CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-default-apps", "--enable-logging=stderr", "--v=0", "--window-size=1280,3200"]


def _chromium(url: str, workdir: Path, name: str, *args: str) -> tuple[str, str, list[str]]:
    """Load ``url`` in headless Chromium: (stdout, console messages, http(s)/ws requests the page made).

    Console messages are the ``CONSOLE`` lines Chromium writes with ``--enable-logging=stderr`` (log, warning,
    error and uncaught exceptions alike). Requests come from Chromium's network log (``--log-net-log``): every
    URL request the network stack started, of which those with an origin as initiator (a page: a file:// page's
    origin is "null") are the page's; the browser's own background requests have none ("not an origin"). file:,
    data: and blob: loads never reach the network stack. No server and no remote debugging are involved."""
    netlog = workdir / f"{name}.netlog.json"
    result = subprocess.run(
        [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={workdir / 'profile'}", f"--log-net-log={netlog}", *args, url],
        check=False, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-2000:]
    console = [line for line in result.stderr.splitlines() if ":CONSOLE" in line]
    log = json.loads(netlog.read_text())
    start = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    requests = [e["params"]["url"] for e in log["events"] if e["type"] == start
                and e["params"].get("initiator", "not an origin") != "not an origin"
                and re.match(r"(https?|wss?)://", e["params"].get("url", ""))]
    return result.stdout, console, requests


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")
def test_the_browser_checks_can_fail_and_tables_sort(tmp_path: Path) -> None:
    """The control for the report's browser test: a page with a request to another host and a console error is
    caught by both checks, and a DataTables table whose rows are handed over unsorted comes out sorted."""
    rows = pl.DataFrame({"feature": ["C3", "C1", "C4", "C2"], "q": [0.3, 0.01, 0.5, 0.02]})
    html = page("control", '<img src="http://example.invalid/x.png"><script>console.error("control")</script>',
                [("t", "T", interactive_table(rows, "sort-check", order=[("q", "asc")]))], [])
    (tmp_path / "control.html").write_text(html, encoding="utf-8")
    dom, console, requests = _chromium((tmp_path / "control.html").as_uri(), tmp_path, "control",
                                       "--virtual-time-budget=5000", "--dump-dom")
    assert requests == ["http://example.invalid/x.png"] and any('"control"' in line for line in console)
    table = dom.split('id="sort-check"')[1].split("</table>")[0]
    assert 'class="display compact dataTable' in dom.split('id="sort-check"')[0][-300:] + table[:300]
    assert re.findall(r"<td[^>]*>(C\d)</td>", table) == ["C1", "C2", "C3", "C4"]
    assert 'aria-sort="ascending"' in table


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")
def test_report_renders_in_headless_chromium(full_report: tuple[Path, str], tmp_path: Path) -> None:
    """Issue 11 item 8: no console message, no request to another host, every section, every chart drawn, every
    table turned into a sortable DataTable, a screenshot that is not blank (kept as an artifact)."""
    path, text = full_report
    shot = tmp_path / "report.png"
    dom, console, requests = _chromium(path.resolve().as_uri(), tmp_path, "report", "--virtual-time-budget=10000",
                                       f"--screenshot={shot}", "--dump-dom")
    assert console == [] and requests == []
    body = re.search(r"<body[^>]*>", dom).group(0)
    assert 'data-errors="0"' in body and "data-rendered-ms" in body  # the page's own error count, and it loaded
    for anchor in SECTIONS:
        assert f'id="{anchor}"' in dom
    assert 'class="warning"' in dom and "UNTRAINED placeholder" in dom
    # every chart drawn: plotly replaced each figure's empty div with its SVG, with the traces in it
    charts = text.count("Plotly.newPlot(")
    assert charts >= 10 and dom.count('class="plot-container plotly"') == charts
    drawn = dom.split('class="plot-container plotly"')[1:]  # each from its chart to the next
    assert all('class="trace ' in part for part in drawn)
    # every table became a DataTable, none left loading
    tables = re.findall(r'querySelectorAll\("#([\w-]+):not\(\.dataTable\)"\)', text)
    assert len(tables) >= 5 and "Loading ITables" not in dom
    for table_id in tables:
        assert re.search(rf'<table id="{table_id}" class="[^"]*dataTable', dom), table_id
    # sorted on load by their order column (all but the QC table, kept in sheet order); a search box on every table
    # longer than a page (itables leaves it off shorter ones)
    assert dom.count('aria-sort="ascending"') == len(tables) - 1 and dom.count('type="search"') >= 2
    # the screenshot of the same load, not blank: varied, with plotly's trace colours in it; kept for people
    from PIL import Image
    from PIL.ImageColor import getrgb

    pixels = np.asarray(Image.open(shot).convert("RGB"), dtype=np.int16)
    assert pixels.shape[:2] == (3200, 1280) and pixels.std() > 20
    # the charts' lines in the first 3200 px, below the main findings and the warnings (the chromatograms: one
    # palette colour per sample); nothing else on the page has these colours
    drawn = [int((np.abs(pixels - np.array(getrgb(c))).max(axis=2) < 16).sum()) for c in PALETTE[:8]]
    assert sum(n > 20 for n in drawn) >= 6, drawn
    artifacts = Path(os.environ.get("PYTEST_ARTIFACTS", "/tmp"))
    artifacts.mkdir(parents=True, exist_ok=True)
    shutil.copy(shot, artifacts / "ms2study_report_screenshot.png")


def test_a_match_refused_by_the_adduct_check_is_listed_with_its_reason() -> None:
    """A feature whose match passed the FDR but was refused by the adduct grouping is not dropped from the report
    in silence (benchmarks/semireal.py: a right q 0.003 match vetoed by a chance pairing; the count read 27 of 45
    while 29 passed q <= 0.01)."""
    from ms2study.reporting.sections import _consensus_compounds

    ident = pl.DataFrame({
        "consensus_id": ["C1", "C2", "C3"], "name": ["alpha", "beta", "gamma"], "msi_level": [3, None, None],
        "isomer_inchikeys": [["AAAAAAAAAAAAAA-X"], None, None], "inchikey": ["AAAAAAAAAAAAAA-X", "B", "C"],
        "compound_class": ["c", "c", "c"], "n_samples": [16, 16, 3], "n_spectra": [16, 16, 3],
        "n_supporting": [16, 16, 3], "best_score": [0.9, 0.95, 0.4], "best_cosine": [0.9, 0.98, 0.4],
        "q_value": [0.001, 0.003, 0.2], "accepted": [True, False, False], "adduct": ["[M+H]+", "[M+H]+", "[M+H]+"],
        "feature_adduct": [None, "[M+K]+", None],
        "adduct_note": [None, "not accepted: library adduct [M+H]+ contradicts the feature's grouped adduct [M+K]+",
                        None]}, schema_overrides={"msi_level": pl.Int8})
    text = _consensus_compounds(ident, {}, "q ≤ 0.01", 0.01)
    assert "1 of 3 consensus features" in text
    assert "1 more consensus feature(s) have a library match at q ≤ 0.01 that was not accepted" in text
    assert "beta" in text and "contradicts the feature&#x27;s grouped adduct [M+K]+" in text
    assert "gamma" not in text  # q above the FDR: not a refusal
    assert "more consensus feature" not in _consensus_compounds(ident, {}, "q ≤ 0.01", None)


def test_an_identification_accepted_below_cosine_0_3_shows_why() -> None:
    """Issue 10: a feature accepted with no spectrum at cosine 0.3 is shown with the scores that carried it
    (identifications.parquet ``evidence_note``), with a sentence saying how many there are; without such a feature
    the column is absent."""
    from ms2study.reporting.sections import _consensus_compounds

    note = ("best cosine below 0.3: accepted on the combined score (its best spectrum: cosine 0.22, entropy 0.71, "
            "embedding 0.93)")
    ident = pl.DataFrame({
        "consensus_id": ["C1", "C2"], "name": ["alpha", "beta"], "msi_level": [3, 2],
        "isomer_inchikeys": [["AAAAAAAAAAAAAA-X"], ["BBBBBBBBBBBBBB-X"]], "inchikey": ["AAAAAAAAAAAAAA-X",
                                                                                       "BBBBBBBBBBBBBB-X"],
        "compound_class": ["c", "c"], "n_samples": [6, 6], "n_spectra": [6, 6], "n_supporting": [6, 6],
        "best_score": [0.81, 0.95], "best_cosine": [0.22, 0.98], "q_value": [0.001, 0.003], "accepted": [True, True],
        "evidence_note": [note, None]}, schema_overrides={"msi_level": pl.Int8})
    text = _consensus_compounds(ident, {}, "q ≤ 0.01")
    assert "1 accepted feature(s) have no spectrum with cosine 0.3 or more" in text
    rows = _itable_rows(text, "identifications-table")
    by_id = {r[0]: r for r in rows}
    assert by_id["C1"][-1] == note and by_id["C2"][-1] in (None, "")
    plain = _consensus_compounds(ident.filter(pl.col("consensus_id") == "C2"), {}, "q ≤ 0.01")
    assert "why accepted" not in plain and "have no spectrum with cosine" not in plain
    # the table gives each feature's m/z and RT where identifications.parquet has them (a trial found no m/z)
    placed = _consensus_compounds(ident.with_columns(mz=pl.Series([181.07066, 250.1]), rt_s=pl.Series([60.0, 90.0])),
                                  {}, "q ≤ 0.01")
    assert "m/z" in placed and "181.0707" in placed and "m/z" not in text


def test_one_compound_named_at_several_retention_times_is_a_warning_with_its_features() -> None:
    """Accepted features named one compound more than 10 s apart (identifications ``same_name_elsewhere``) are
    listed with their retention times under a warning that at most one of them is the compound; the compound table
    shows each feature's RT."""
    from ms2study.reporting.sections import _consensus_compounds

    ident = pl.DataFrame({
        "consensus_id": ["C56", "C57", "C90"], "name": ["glycine", "glycine", "alpha"], "msi_level": [3, 3, 2],
        "isomer_inchikeys": [["DHMQDGOQFOQNFH"], ["DHMQDGOQFOQNFH"], ["AAAAAAAAAAAAAA-X"]],
        "inchikey": ["DHMQDGOQFOQNFH-UHFFFAOYSA-N", "DHMQDGOQFOQNFH-UHFFFAOYSA-N", "AAAAAAAAAAAAAA-X"],
        "compound_class": ["c", "c", "c"], "n_samples": [19, 23, 6], "n_spectra": [19, 23, 6],
        "n_supporting": [19, 23, 6], "best_score": [0.99, 0.98, 0.9], "best_cosine": [0.99, 0.98, 0.9],
        "q_value": [0.0044, 0.001, 0.002], "accepted": [True, True, True], "rt_s": [85.6, 178.8, 300.0],
        "same_name_elsewhere": [["C57"], ["C56"], []]}, schema_overrides={"msi_level": pl.Int8})
    text = _consensus_compounds(ident, {}, "q ≤ 0.01")
    assert "1 compound(s) are each named on features more than 10 s apart in retention time (2 features" in text
    assert "C56 (85.6 s), C57 (178.8 s)" in text and "at most one retention time of each set is that compound" in text
    rows = {r[0]: r for r in _itable_rows(text, "identifications-table")}
    assert rows["C56"][1] == 85.6 and rows["C90"][1] == 300.0
    alone = _consensus_compounds(ident.filter(pl.col("consensus_id") != "C56").with_columns(
        same_name_elsewhere=pl.lit([], dtype=pl.List(pl.Utf8))), {}, "q ≤ 0.01")
    assert "10 s apart" not in alone


def test_the_matrix_counts_study_samples_with_qcs_and_blanks_apart() -> None:
    """A scientist's trial: 'detected in every sample: 33' counted the blanks as samples, which made it the list of
    contaminants. With run roles, the counts are over the study samples, QCs and blanks named apart."""
    from ms2study.reporting.sections import matrix_section

    matrix = pl.DataFrame({"consensus_id": ["C1", "C2", "C3"], "S1": [1.0, 2.0, 3.0], "S2": [1.0, 2.0, None],
                           "QC1": [1.0, 2.0, 3.0], "B1": [1.0, None, None]})
    ids = ["S1", "S2", "QC1", "B1"]
    text = matrix_section(matrix, ids, [], roles={"S1": "sample", "S2": "sample", "QC1": "qc", "B1": "blank"})
    assert "across 4 runs (2 study samples, 1 pooled QCs, 1 blanks)" in text
    assert "detected in every study sample (before gap filling): 2; in one study sample only: 1" in text
    assert "detection rate over the study samples 83.3%" in text
    assert "consensus features detected" in text and "can be a little below its own feature count" in text
    plain = matrix_section(matrix, ids, [])
    assert "across 4 samples" in plain and "detected in every sample (before gap filling): 1;" in plain


def test_a_refused_match_shows_the_evidence_of_the_veto() -> None:
    """The refused match's row names what the veto rested on, so a chemist can judge it: the partner feature (id,
    m/z, retention time), the two adducts, the correlation and the number of runs it was computed on."""
    from ms2study.reporting.sections import _consensus_compounds

    ident = pl.DataFrame({
        "consensus_id": ["C1", "C2"], "name": ["alpha", "beta"], "msi_level": [3, None],
        "isomer_inchikeys": [["AAAAAAAAAAAAAA-X"], None], "inchikey": ["AAAAAAAAAAAAAA-X", "B"],
        "compound_class": ["c", "c"], "n_samples": [6, 6], "n_spectra": [6, 6], "n_supporting": [6, 6],
        "best_score": [0.9, 0.95], "best_cosine": [0.9, 0.98], "q_value": [0.001, 0.003], "accepted": [True, False],
        "adduct": ["[M+H]+", "[M+H]+"], "feature_adduct": [None, "[M+K]+"],
        "adduct_note": [None, "not accepted: library adduct [M+H]+ contradicts the feature's grouped adduct [M+K]+"],
        "adduct_partner": [None, "C917"], "adduct_partner_mz": [None, 262.123456], "adduct_partner_rt_s": [None, 271.26],
        "adduct_relation": [None, "[M+K]+ here, [M+H]+ at the partner"], "adduct_correlation": [None, 0.912],
        "adduct_n_runs": [None, 6]}, schema_overrides={"msi_level": pl.Int8, "adduct_n_runs": pl.Int32})
    text = _consensus_compounds(ident, {}, "q ≤ 0.01", 0.01)
    box = text.split("1 more consensus feature(s)")[1]
    header = re.findall(r"<th>(.*?)</th>", box)
    assert header[6:12] == ["partner feature", "partner m/z", "partner RT (s)", "adduct relation", "correlation",
                            "runs"], header
    row = re.findall(r"<td[^>]*>(.*?)</td>", box.split("<tr>")[2])
    assert row[0] == "C2" and row[6:12] == ["C917", "262.1235", "271.3", "[M+K]+ here, [M+H]+ at the partner",
                                            "0.912", "6"], row
    assert "the number of runs it was computed on" in text


def test_report_names_the_code_that_made_it(full_report: tuple[Path, str], tmp_path: Path) -> None:
    # two checkouts of one version can differ: the report names the workflow folder and its git commit
    from ms2study.reporting import sections

    _, html = full_report
    folder = Path(sections.__file__).resolve().parents[2]
    head = subprocess.run(["git", "-C", str(folder), "rev-parse", "HEAD"], capture_output=True, text=True)
    assert "ms2study code" in html and str(folder) in html
    if head.returncode == 0:
        assert f"git commit {head.stdout.strip()[:12]}" in html
    # a copy of the code outside any checkout says so instead of naming a commit
    copy = tmp_path / "workflow"
    shutil.copytree(folder / "ms2study", copy / "ms2study", ignore=shutil.ignore_patterns("__pycache__"))
    out = subprocess.run([sys.executable, "-c",
                          "from ms2study.reporting.sections import code_origin; print(code_origin())"],
                         capture_output=True, text=True, cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(copy)},
                         check=True).stdout.strip()
    assert out == f"{copy} (not a git checkout)"


def test_sample_stats_counts_each_table_in_one_pass_and_refuses_another_samples_rows(tmp_path: Path) -> None:
    """The report's per-sample counts (one read per table) and the guard against per-sample lists out of order."""
    from ms2study.core.errors import InputError
    from ms2study.reporting.collect import sample_stats

    paths = {"features": tmp_path / "f.parquet", "spectra": tmp_path / "s.parquet",
             "embeddings": tmp_path / "e.parquet", "annotations": tmp_path / "a.parquet",
             "sample_embedding": tmp_path / "p.parquet"}
    pl.DataFrame({"sample_id": ["S1"] * 3, "feature_id": ["F1", "F2", "F3"]}).write_parquet(paths["features"])
    pl.DataFrame({"sample_id": ["S1"] * 3, "spectrum_id": ["a", "b", "c"], "feature_id": ["F1", None, "F2"],
                  "ion_mode": ["positive", "negative", "positive"], "precursor_corrected": [True, None, False]}
                 ).write_parquet(paths["spectra"])
    pl.DataFrame({"sample_id": ["S1"] * 3, "spectrum_id": ["a", "b", "c"], "embedding": [[1.0], None, [0.5]],
                  "model_id": ["m1"] * 3, "model_trained": [True] * 3}).write_parquet(paths["embeddings"])
    pl.DataFrame({"sample_id": ["S1"] * 3, "spectrum_id": ["a", "a", "c"], "rank": [1, 2, 1]}
                 ).write_parquet(paths["annotations"])
    pl.DataFrame({"sample_id": ["S1"], "n_spectra": [2], "embedding": [[0.1]]}).write_parquet(paths["sample_embedding"])
    warnings: list[str] = []
    stats = sample_stats("S1", paths, warnings)
    assert stats == {"sample_id": "S1", "features": 3, "ms2_scans": 3, "mapped_spectra": 2,
                     "ion_modes": ["negative", "positive"], "precursor_corrected": 1, "embedded": 2,
                     "model_ids": ["m1"], "model_trained": [True], "annotated_spectra": 2, "n_spectra_pooled": 2,
                     "has_sample_embedding": True} and not warnings
    with pytest.raises(InputError, match="given for sample S2 but holds rows of S1"):
        sample_stats("S2", {"features": paths["features"]}, warnings)
    assert any("missing result table(s) spectra" in w for w in warnings)


def test_the_low_cosine_warning_says_whether_any_identified_feature_rests_on_such_spectra() -> None:
    """A fresh user's trial: '22 accepted spectrum hits have cosine < 0.3 ... check them in the table' pointed to no
    table, and no identification of the study rested on them. The warning now says where the spectra are and how many
    identified features rest on them alone, and names itself beside the identifications only when some do."""
    from ms2study.reporting.sections import identifications_section

    annotations = pl.DataFrame({"spectrum_id": ["a", "b", "c"], "sample_id": ["S1"] * 3, "rank": [1, 1, 1],
                                "library_name": ["x", "y", "z"], "library_inchikey": ["X", "Y", "Z"],
                                "cosine": [0.2, 0.9, 0.25], "q_value": [0.001, 0.001, 0.002],
                                "accepted": [True, True, True]})
    ident = pl.DataFrame({
        "consensus_id": ["C1"], "name": ["y"], "msi_level": [3], "isomer_inchikeys": [["Y"]], "inchikey": ["Y"],
        "compound_class": ["c"], "n_samples": [1], "n_spectra": [1], "n_supporting": [1], "best_score": [0.9],
        "best_cosine": [0.9], "q_value": [0.001], "accepted": [True], "evidence_note": [None]},
        schema_overrides={"msi_level": pl.Int8, "evidence_note": pl.Utf8})
    warnings: list = []
    identifications_section(annotations, ident, ["S1"], {"config_used": {"annotate": {"fdr": 0.01}}}, warnings)
    text = next(w for w in warnings if "cosine &lt; 0.3" in w)
    assert "2 accepted spectrum hits" in text and "none of the study's identified consensus features rests on them" \
        in text and text.label == "" and text.concerns == ()
    warnings = []
    noted = ident.with_columns(evidence_note=pl.lit("best cosine below 0.3: ..."))
    identifications_section(annotations, noted, ["S1"], {"config_used": {"annotate": {"fdr": 0.01}}}, warnings)
    text = next(w for w in warnings if "cosine &lt; 0.3" in w)
    assert "1 of the study's identified consensus features rest on such spectra alone" in text
    assert text.label == "accepted hits with low cosine"


def test_a_looser_identification_fdr_says_what_it_costs_on_a_realistic_study() -> None:
    """A fresh user's trial: at annotate fdr 0.05 most names between q 0.01 and 0.05 were the wrong structure, and
    nothing said so; the identifications section now does above 0.01 (with study_truth's measured counts), and not at
    the default."""
    from ms2study.reporting.sections import identifications_section

    annotations = pl.DataFrame({"spectrum_id": ["a"], "sample_id": ["S1"], "rank": [1], "library_name": ["y"],
                                "library_inchikey": ["Y"], "cosine": [0.9], "q_value": [0.03], "accepted": [True]})
    warned: list[str] = []
    html = identifications_section(annotations, None, ["S1"], {"config_used": {"annotate": {"fdr": 0.05}},
                                                               "top_compounds": 10, "min_cosine": 0.7}, warned)
    assert "Accepted above q 0.01 (<code>annotate: fdr: 0.05</code>)" in html
    assert "2.5 % and 4.1 % of them were wrong" in html
    # a caution in Warnings too, on the identifications (a trial found the note only deep in this section)
    loose = [w for w in warned if getattr(w, "label", "") == "names accepted above q 0.01"]
    assert len(loose) == 1 and loose[0].concerns == ("identifications",) and "fdr: 0.05" in loose[0]
    warned = []
    html = identifications_section(annotations, None, ["S1"], {"config_used": {"annotate": {"fdr": 0.01}},
                                                               "top_compounds": 10, "min_cosine": 0.7}, warned)
    assert "Accepted above q 0.01" not in html and not any("above the default 0.01" in w for w in warned)


def test_msms_of_a_polarity_the_library_lacks_is_a_warning(tmp_path: Path) -> None:
    """A fresh user's negative-mode run against a positive-only library: its spectra were never searched and only
    the annotate log said so. The report warns, naming the runs; a library spectrum of unknown mode matches queries
    of either polarity, so a library holding one says nothing."""
    import numpy as np

    from ms2study.reporting.collect import library_ion_modes, scan_warnings
    from ms2study.reporting.html import QUALITY, kind_of

    positive = tmp_path / "pos"
    positive.mkdir()
    np.save(positive / "ion_mode.npy", np.array([1, 1, 1], dtype=np.int8))
    stats = [{"sample_id": "QC04", "ion_modes": ["positive"]}, {"sample_id": "MXL", "ion_modes": ["negative"]}]
    warned: list[str] = []
    scan_warnings(stats, warned, library_ion_modes([positive]))
    lacking = [w for w in warned if "not searched" in w]
    assert len(lacking) == 1 and kind_of(lacking[0]) == QUALITY and "negative polarity (1 run(s): MXL)" in lacking[0]
    unknown = tmp_path / "unknown"
    unknown.mkdir()
    np.save(unknown / "ion_mode.npy", np.array([1, 0], dtype=np.int8))
    warned = []
    scan_warnings(stats, warned, library_ion_modes([unknown]))
    assert not [w for w in warned if "not searched" in w]
    assert library_ion_modes([]) is None


def test_a_blank_without_ms_ms_is_not_a_data_quality_warning() -> None:
    """A trial's blank run without MS/MS was warned of under data quality while its own section said "as expected"."""
    from ms2study.reporting.sections import samples_section

    stats = [{"sample_id": s, "features": 10, "ms2_scans": 0, "mapped_spectra": 0, "embedded": 0,
              "annotated_spectra": 0, "n_spectra_pooled": 0, "has_sample_embedding": False} for s in ("S1", "Q1", "B1")]
    warnings: list[str] = []
    samples_section(stats, warnings, {"S1": "sample", "Q1": "qc", "B1": "blank"})
    text = " ".join(map(str, warnings))
    assert "sample <b>S1</b> has no MS/MS scans" in text and "pooled QC <b>Q1</b> has no MS/MS scans" in text
    assert "B1" not in text


def test_an_attribution_of_a_model_that_kept_no_feature_says_so(tmp_path: Path) -> None:
    """A trial: every contribution 0.0, and the report listed a top 15 "0.0 toward lower score" that "carry nan% of
    the absolute contribution"."""
    from ms2study.reporting.qc import attribution_part

    path = tmp_path / "score.parquet"
    pl.DataFrame({"consensus_id": [f"C{i}" for i in range(20)], "contribution": [0.0] * 20,
                  "rank": list(range(1, 21)), "direction": ["toward lower score"] * 20}).write_parquet(path)
    part = attribution_part(path, "score", caveat="its permutation p = 0.4 is not below 0.05")
    assert "kept no feature (every one of the 20 features' contributions is 0" in part
    assert "nan%" not in part and "toward lower" not in part and "Read with caution" in part
    pl.DataFrame({"consensus_id": ["C1", "C2"], "contribution": [0.5, -0.25], "rank": [1, 2],
                  "direction": ["toward case", "toward control"]}).write_parquet(path)
    assert "They carry 100% of the absolute contribution" in attribution_part(path, "group")


def test_a_sample_placed_in_the_other_class_is_a_caution_beside_the_findings(tmp_path: Path) -> None:
    """Trial AY: a control entered as a case was named only in the models section; Main findings and the warnings
    said nothing, though the tests and the models both count it in the wrong class."""
    from ms2study.reporting import outcomes
    from ms2study.reporting.findings import beside
    from ms2study.reporting.html import DOUBT

    ids = [f"S{i:02d}" for i in range(12)]
    y = [0] * 6 + [1] * 6
    sheet = pl.DataFrame({"sample_id": ids, "group": ["control" if v == 0 else "case" for v in y]})
    group = {**_summary("binary", {"features": (0.9, 0.7, 1.0, 0.01), "embedding": (0.85, 0.6, 1.0, 0.02)}),
             "classes": ["control", "case"], "positive_class": "case"}
    path = tmp_path / "models" / "group" / "summary.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(group))
    scores = [0.1, 0.2, 0.05, 0.1, 0.2, 0.15, 0.9, 0.8, 0.95, 0.85, 0.9, 0.04]  # S11, a case, scored as a control
    pl.concat([pl.DataFrame({"feature_set": [name] * 12, "repeat": [0] * 12, "sample_id": ids,
                             "y_true": [float(v) for v in y], "y_score": scores}) for name in ("features", "embedding")]
              ).write_parquet(path.with_name("predictions.parquet"))
    warnings: list = []
    outcomes.models_section([OutcomeFiles(path, path.with_name("predictions.parquet"))], sheet, {}, warnings)
    placed = [w for w in warnings if getattr(w, "label", "") == "sample placed in the other class"]
    assert len(placed) == 1 and placed[0].kind == DOUBT and "S11 (entered as case" in placed[0]
    assert "sample placed in the other class" in beside(warnings, "differential:group")
    assert "sample placed in the other class" in beside(warnings, "models:group")
    # the fold-wise AUC 0.9 beside the pooled one (trial AY: "AUC 1.00" from folds of 2-3 samples, pooled 0.94)
    note = outcomes.pooled_auc_note(pl.read_parquet(path.with_name("predictions.parquet")), group)
    assert note.startswith("The AUC of features is the mean over the cross-validation's folds (0.90); over all "
                           "out-of-fold predictions pooled it is 0.83 (per repeat)")
    assert outcomes.pooled_auc_note(pl.read_parquet(path.with_name("predictions.parquet")),
                                    {**group, "feature_sets": {"features": {**group["feature_sets"]["features"],
                                                                            "value": 0.84}}}) is None
