"""The study report: one self-contained HTML file with every section, plain warnings, escaped user text; rendered
by a real headless Chromium when one is installed."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from ms2study.cli import main as cli_main
from ms2study.core import tables
from ms2study.core.errors import InputError
from ms2study.modelling import differential as differential_tables
from ms2study.modelling.enrichment import class_enrichment
from ms2study.modelling.featuresets import study_feature_sets
from ms2study.modelling.univariate import bh_q_values
from ms2study.reporting.charts import map_2d, umap_available
from ms2study.reporting.collect import TABLES, DifferentialFiles, OutcomeFiles, ReportInputs
from ms2study.stages import differential, models
from ms2study.stages.report import build_report

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SECTIONS = ["warnings", "overview", "samples", "identifications", "differential", "encoder", "models", "matrix",
            "software"]


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


def test_report_is_self_contained(untrained_report: tuple[Path, str]) -> None:
    _, text = untrained_report
    assert text.startswith("<!DOCTYPE html>")
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", text, re.IGNORECASE)
    assert "<script" not in text.lower()  # no scripts at all (the hostile one from the sheet is escaped)
    assert "<link" not in text.lower() and "@import" not in text
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
    # models: the table row, ROC and PCA charts
    assert "roc_auc" in text and "permutation p" in text and "ROC: group" in text and "null mean" in text
    assert "Estimator: <b>elastic_net</b>" in text  # the models default (models.DEFAULT_PARAMS)
    assert "fold-wise metrics are coarse" in text  # 4 vs 4 samples: one sample per class in a test fold
    # maps: UMAP only when umap-learn is installed (it is not a dependency), PCA otherwise
    used = "UMAP" if umap_available() else "PCA"
    assert f"{used} of embedding, coloured by group" in text and f"{used} of features, coloured by group" in text
    assert text.count("<svg") >= 4
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


def test_report_command_and_skipped_outcome(tmp_path: Path) -> None:
    ids = _write_study(tmp_path, trained=True, seed=2)
    sheet = pl.read_csv(tmp_path / "results" / "study" / "samples.tsv", separator="\t")
    sheet = sheet.with_columns(pl.Series("rare", ["x"] * (len(ids) - 1) + ["y"]))
    sheet.write_csv(tmp_path / "samples.tsv", separator="\t")
    models.model_outcomes(sheet, {}, [{"column": "rare", "type": "binary"}], tmp_path / "results/study/models")
    inputs = _inputs(tmp_path, ["group", "rare"], sheet=tmp_path / "samples.tsv")
    code = cli_main(["report", "--samples", str(tmp_path / "samples.tsv"),
                     *[a for t in TABLES for a in (f"--{t.replace('_', '-')}", *map(str, inputs.sample_tables[t]))],
                     "--feature-matrix", str(inputs.feature_matrix), "--identifications", str(inputs.identifications),
                     "--model-summaries", *[str(m.summary) for m in inputs.models],
                     "--model-predictions", *[str(m.predictions) for m in inputs.models],
                     "--out", str(tmp_path / "r.html"), "--params", '{"title": "Demo <study>"}'])
    assert code == 0
    text = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert "<h1>Demo &lt;study&gt;</h1>" in text
    assert "outcome <b>rare</b> was not modelled: class &#x27;y&#x27; has 1 sample" in text


def test_an_outcome_removed_from_the_config_is_not_reported(tmp_path: Path) -> None:
    """Issue 14: an earlier configuration modelled and tested the outcome "batch"; it has since been removed from
    config.yaml (and its column from the sheet), but its folder results/study/models/batch/ and its differential
    tables are still on disk. The report reads only the files handed to it, so nothing of "batch" shows."""
    ids = _write_study(tmp_path, trained=True, seed=5)
    _write_differential(tmp_path)
    study = tmp_path / "results" / "study"
    earlier = pl.read_csv(study / "samples.tsv", separator="\t").with_columns(
        pl.Series("batch", ["b1", "b2"] * (len(ids) // 2)))
    earlier.write_csv(tmp_path / "earlier_samples.tsv", separator="\t")
    sets = study_feature_sets(earlier, [tmp_path / "results" / "samples" / s / "sample_embedding.parquet"
                                        for s in ids], study / "feature_matrix.parquet")
    batch = {"column": "batch", "type": "binary", "positive_class": "b1"}
    models.model_outcomes(earlier, sets, [batch], study / "models",
                          {"n_permutations": 3, "outer_repeats": 1, "n_bootstrap": 100})
    differential.run_differential(tmp_path / "earlier_samples.tsv", study / "feature_matrix.parquet",
                                  tmp_path / "identifications_for_differential.parquet",
                                  study / "differential" / "batch.parquet",
                                  study / "class_enrichment" / "batch.parquet", {"outcome": batch})
    assert (study / "models" / "batch" / "summary.json").exists()

    # the earlier run's report showed it (the control: these files do make it into a report when handed over)
    build_report(_inputs(tmp_path, ["group", "batch"], sheet=tmp_path / "earlier_samples.tsv"), tmp_path / "a.html")
    before = (tmp_path / "a.html").read_text(encoding="utf-8")
    assert "<h3>Outcome: batch (binary)</h3>" in before.split('id="models"')[1]
    assert "<h3>Outcome: batch (binary)</h3>" in before.split('id="differential"')[1].split('id="encoder"')[0]

    config = {"models": {"outcomes": [{"column": "group", "type": "binary", "positive_class": "case"}]}}
    build_report(_inputs(tmp_path, ["group"]), tmp_path / "b.html", {"config_used": config})
    text = (tmp_path / "b.html").read_text(encoding="utf-8")
    assert "<h3>Outcome: group (binary)</h3>" in text.split('id="models"')[1]
    assert "batch" not in text and "b1" not in text


def test_without_q_values_identifications_fall_back_to_cosine(tmp_path: Path) -> None:
    _write_study(tmp_path, trained=True, seed=3, with_q=False)
    out = tmp_path / "report.html"
    build_report(_inputs(tmp_path), out)
    text = out.read_text(encoding="utf-8")
    assert "No q-values in the annotations" in text and "cosine ≥ 0.7" in text and "lowest q" not in text
    assert "KEYTRYPTOPHAN" in text and "KEYGLUCOSE" not in text


def test_report_says_what_differs(untrained_report: tuple[Path, str]) -> None:
    _, text = untrained_report
    part = text.split('id="differential"')[1].split('id="encoder"')[0]
    assert "<h3>Outcome: group (binary)</h3>" in part and "Welch t-test on log2 intensities" in part
    assert "<b>case</b> (n = 4) against <b>control</b> (n = 4)" in part
    assert "11 of 12 consensus features tested" in part  # C3 is detected in 3 of 8 samples: below one half
    assert "Top 11 features by q" in part and "log2 FC (case / control)" in part and "ChemRICH" in part
    # rows sorted by q, with the identification joined and user text escaped
    first = re.search(r"<tbody><tr><td>(C\d+)</td>", part.split("Top 11")[1])
    table = pl.read_parquet(untrained_report[0].parent / "differential" / "group.parquet")
    assert first and first.group(1) == table["consensus_id"][0]
    assert "Caffeine &lt;i&gt;x&lt;/i&gt;" in part and "<i>x</i>" not in part
    # 4 against 4 samples: nothing reaches q < 0.05, and the report says so rather than listing nothing
    assert "No chemical class is enriched at q &lt; 0.05 (3 classes tested" in part


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
    assert "2 of 3 classes tested are enriched at q &lt; 0.05" in part
    row = re.search(r"<tr><td>Alkaloids; Xanthines</td>(.*?)</tr>", part)
    cells = re.findall(r">([^<]*)</td>", row.group(1)) if row else []
    assert cells[:6] == ["2", "6", "6", "6", "0", "up"], cells
    assert "Sugars</td>" not in part.split("Enriched chemical classes")[1]
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


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")
def test_report_renders_in_headless_chromium(untrained_report: tuple[Path, str], tmp_path: Path) -> None:
    path, _ = untrained_report
    result = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", path.resolve().as_uri()],
        check=False, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    dom = result.stdout
    # the browser parsed the document into the expected structure: sections, warnings, SVG charts
    for anchor in SECTIONS:
        assert f'id="{anchor}"' in dom
    assert dom.count("<svg") >= 4 and "<circle" in dom and "<polyline" in dom
    assert 'class="warning"' in dom and "UNTRAINED placeholder" in dom
    assert "<script" not in dom.lower()
