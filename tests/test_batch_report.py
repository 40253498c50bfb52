"""Issue 13 item 8: the report's "Batch, blanks and drift" section, built from a fabricated two-batch study (pooled
QCs every few injections, blanks, a drift with injection order and a batch offset) with a raw matrix, a corrected
matrix laid out as the contract says and a correction.json: the runs by batch and type (QCs and blanks apart from
the samples wherever runs are listed), the drift method and its note, the QC RSD before and after, intensity against
injection order, PCA before and after (the batches separate before and mix after), flagged and filled counts, a
study without QCs said plainly, and the section rendered by headless Chromium when one is installed."""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from ms2study.cli import main as cli_main
from ms2study.reporting.batch import pca_coordinates
from ms2study.reporting.collect import ReportInputs
from ms2study.stages.report import build_report

N_FEATURES = 60
CONTAMINANTS = 4  # features 0-3: present in blanks at the level of the samples


def _runs() -> pl.DataFrame:
    """Two batches of: blank, QC, 3 samples, QC, 3 samples, QC, 2 samples, QC (4 QCs, 8 samples, 1 blank each)."""
    rows, order = [], 0
    for batch in ("1", "2"):
        pattern = ["blank", "qc", "s", "s", "s", "qc", "s", "s", "s", "qc", "s", "s", "qc"]
        for kind in pattern:
            order += 1
            n = sum(1 for r in rows if r[1] == ("sample" if kind == "s" else kind)) + 1
            name = {"blank": f"BL{n}", "qc": f"QC{n}", "s": f"S{n:02d}"}[kind]
            rows.append((name, "sample" if kind == "s" else kind, order, batch))
    group = ["case" if (r[1] == "sample" and int(r[0][1:]) % 2) else ("control" if r[1] == "sample" else "")
             for r in rows]
    return pl.DataFrame({"sample_id": [r[0] for r in rows], "file": [f"{r[0]}.mzML" for r in rows],
                         "sample_type": [r[1] for r in rows], "injection_order": [str(r[2]) for r in rows],
                         "batch": [r[3] for r in rows], "group": group})


def _rsd(values: np.ndarray) -> np.ndarray:
    with np.errstate(all="ignore"):
        return np.nanstd(values, axis=1, ddof=1) / np.nanmean(values, axis=1)


def _write(root: Path, with_qcs: bool = True) -> tuple[ReportInputs, dict]:
    """The sheet, raw and corrected matrices and correction.json of the fabricated study under ``root``."""
    rng = np.random.default_rng(13)
    sheet = _runs()
    if not with_qcs:
        sheet = sheet.filter(pl.col("sample_type") != "qc")
    ids, kinds = sheet["sample_id"].to_list(), sheet["sample_type"].to_list()
    order = sheet["injection_order"].cast(pl.Int64).to_numpy()
    batch2 = np.array([b == "2" for b in sheet["batch"].to_list()])
    level = rng.lognormal(14, 1.0, N_FEATURES)
    true = np.empty((N_FEATURES, len(ids)))
    for j, kind in enumerate(kinds):
        if kind == "qc":
            true[:, j] = level * rng.lognormal(0, 0.03, N_FEATURES)
        elif kind == "blank":
            true[:, j] = np.nan
            true[:CONTAMINANTS, j] = level[:CONTAMINANTS] * rng.lognormal(0, 0.05, CONTAMINANTS)
        else:
            true[:, j] = level * rng.lognormal(0, 0.3, N_FEATURES)
    within = order - np.where(batch2, 13, 0)
    slope = rng.uniform(0.02, 0.06, N_FEATURES)
    drift = np.exp(-slope[:, None] * within[None, :]) * np.where(batch2, 0.5, 1.0)[None, :]
    raw = true * drift
    holes = (rng.random(raw.shape) < 0.03) & (np.array(kinds) == "sample")[None, :]
    raw[holes] = np.nan  # missed in the raw matrix, filled in the corrected one
    corrected = true * rng.lognormal(0, 0.02, true.shape)
    qc_cols = [j for j, k in enumerate(kinds) if k == "qc"]
    sample_cols = [j for j, k in enumerate(kinds) if k == "sample"]
    blank_cols = [j for j, k in enumerate(kinds) if k == "blank"]
    before = _rsd(raw[:, qc_cols]) if qc_cols else np.full(N_FEATURES, np.nan)
    after = _rsd(corrected[:, qc_cols]) if qc_cols else np.full(N_FEATURES, np.nan)
    if qc_cols:
        after[10:12] = 0.45  # two features the correction could not rescue
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # features absent from every blank: no ratio
        ratio = np.nanmean(corrected[:, sample_cols], axis=1) / np.nanmean(corrected[:, blank_cols], axis=1)
    blank_flag = np.nan_to_num(ratio, nan=np.inf) < 3.0
    rsd_flag = np.nan_to_num(after) > 0.3
    keys = {"consensus_id": [f"C{i}" for i in range(N_FEATURES)], "mz": np.linspace(100, 800, N_FEATURES),
            "rt_s": np.linspace(30, 900, N_FEATURES),
            "n_detected": pl.Series(np.isfinite(raw).sum(axis=1), dtype=pl.Int32)}
    study = root / "results" / "study"
    study.mkdir(parents=True)
    sheet.write_csv(study / "samples.tsv", separator="\t")
    pl.DataFrame({**keys, **{s: raw[:, j] for j, s in enumerate(ids)}}).with_columns(
        [pl.col(s).fill_nan(None) for s in ids]).write_parquet(study / "feature_matrix.parquet")
    flags = {"blank_ratio": pl.Series(ratio).fill_nan(None), "blank_flag": blank_flag,
             "qc_rsd_before": pl.Series(before).fill_nan(None), "qc_rsd_after": pl.Series(after).fill_nan(None),
             "qc_rsd_flag": rsd_flag, "n_filled": pl.Series(holes.sum(axis=1), dtype=pl.Int32),
             "compound_group": [f"G{i}" for i in range(N_FEATURES)], "adduct": ["[M+H]+"] * N_FEATURES,
             "group_representative": [True] * N_FEATURES, "excluded": blank_flag | rsd_flag}
    pl.DataFrame({**keys, **flags, **{s: corrected[:, j] for j, s in enumerate(ids)}}).with_columns(
        [pl.col(s).fill_nan(None) for s in ids]).write_parquet(study / "feature_matrix_corrected.parquet")
    record = {
        "drift_method": "qc_spline" if with_qcs else "median",
        "note": ("smoothing spline of log intensity against injection order per feature and batch, fitted on the "
                 "pooled QCs" if with_qcs else "no pooled QC runs: median normalisation per sample"),
        "n_features": N_FEATURES, "n_samples": len(sample_cols), "n_qc": len(qc_cols), "n_blank": len(blank_cols),
        "batches": ["1", "2"], "n_blank_flagged": int(blank_flag.sum()), "n_qc_rsd_flagged": int(rsd_flag.sum()),
        "qc_rsd_median_before": float(np.nanmedian(before)) if qc_cols else None,
        "qc_rsd_median_after": float(np.nanmedian(after)) if qc_cols else None,
        "n_filled": int(holes.sum()), "filled_share": float(holes.sum() / raw.size), "n_compound_groups": N_FEATURES,
        "n_features_in_adduct_groups": 0, "internal_standards": [],
        "warnings": ["batch 2 has <4> QCs & a short tail"] if with_qcs else []}
    (study / "correction.json").write_text(json.dumps(record))
    inputs = ReportInputs(sheet=study / "samples.tsv", feature_matrix=study / "feature_matrix.parquet",
                          corrected_matrix=study / "feature_matrix_corrected.parquet",
                          correction=study / "correction.json")
    return inputs, record


@pytest.fixture(scope="module")
def batch_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, dict]:
    root = tmp_path_factory.mktemp("batch_study")
    inputs, record = _write(root)
    out = root / "report.html"
    build_report(inputs, out, {"config_used": {"correct": {"qc_rsd_max": 0.3}}})
    return out, out.read_text(encoding="utf-8"), record


def _section(text: str) -> str:
    return text.split('<h2 id="batch">')[1].split("</section>")[0]


def test_batch_section_states_the_correction_and_its_counts(batch_report: tuple[Path, str, dict]) -> None:
    _, text, record = batch_report
    assert '<a href="#batch">Batch, blanks and drift</a>' in text
    part = _section(text)
    assert "Drift correction: <b>qc_spline</b>" in part and "fitted on the pooled QCs" in part
    assert "not corrected from pooled QCs" not in text
    # runs per batch: 8 samples, 4 QCs, 1 blank each, with their injection orders; QCs and blanks named
    assert re.search(r"<td>1</td><td class=\"num\">8</td><td class=\"num\">4</td><td class=\"num\">1</td>"
                     r"<td>1–13</td>", part)
    assert "Pooled QC runs (8): QC1, QC2" in part and "Blank runs (2): BL1, BL2" in part
    medians = f"<b>{record['qc_rsd_median_before']:.3f}</b> before and <b>{record['qc_rsd_median_after']:.3f}</b> after"
    assert medians in part and record["qc_rsd_median_after"] < record["qc_rsd_median_before"] / 2
    for label, value in (("flagged by the blank filter", record["n_blank_flagged"]),
                         ("flagged by the QC RSD threshold", 2), ("filled values (gap filling)", record["n_filled"])):
        assert re.search(rf"<td>{re.escape(label)}</td><td class=\"num\">{value}</td>", part), label
    assert f"{record['filled_share']:.1%}" in part and record["n_blank_flagged"] == CONTAMINANTS
    # the record's warnings are report warnings, escaped
    warnings = text.split('id="warnings"')[1].split('id="overview"')[0]
    assert "batch correction: batch 2 has &lt;4&gt; QCs &amp; a short tail" in warnings


def test_batch_section_draws_rsd_drift_and_pca_charts(batch_report: tuple[Path, str, dict]) -> None:
    _, text, _ = batch_report
    part = _section(text)
    for title in ("QC relative standard deviation per feature", "QCs: median over", "QCs: feature C",
                  "PCA of samples and QCs, before correction", "PCA of samples and QCs, after correction"):
        assert f'"text":"{title}' in part, title
    assert part.count("Plotly.newPlot(") == 1 + 1 + 3 + 2  # RSD, median, three examples, two PCAs
    assert "scikit-learn PCA" in part and "features with a value (detected or gap-filled) in every run" in part
    # flagged features in a sortable table: the 4 contaminants and the 2 features above the RSD threshold
    rows = re.search(r'querySelectorAll\("#batch-flagged-table:not\(\.dataTable\)"\)', text)
    assert rows and "Flagged features" in part
    from test_report import _itable_rows  # reads an itables table's rows from the page (tests/test_report.py)

    rows = _itable_rows(text, "batch-flagged-table")
    assert sorted(r[0] for r in rows) == sorted(["C0", "C1", "C2", "C3", "C10", "C11"])
    assert [r[0] for r in rows][:2] in (["C10", "C11"], ["C11", "C10"])  # worst QC RSD after first


def test_qcs_and_blanks_are_listed_apart_from_the_samples(batch_report: tuple[Path, str, dict]) -> None:
    _, text, _ = batch_report
    overview = text.split('<h2 id="overview">')[1].split("</section>")[0]
    assert "<b>26</b> runs (Samples (16); Pooled QC runs (8); Blank runs (2))" in overview
    headings = re.findall(r"<h3>([^<]*)</h3>", overview)
    assert headings == ["Samples (16)", "Pooled QC runs (8)", "Blank runs (2)"]
    samples_table = overview.split("<h3>Samples (16)</h3>")[1].split("<h3>")[0]
    assert "<td>S01</td>" in samples_table and "QC1" not in samples_table and "BL1" not in samples_table
    per_sample = text.split('<h2 id="samples">')[1].split("</section>")[0]
    assert re.findall(r"<h3>([^<]*)</h3>", per_sample) == headings


def test_pca_separates_the_batches_before_and_mixes_them_after(tmp_path: Path) -> None:
    from sklearn.metrics import silhouette_score

    _write(tmp_path)
    study = tmp_path / "results" / "study"
    sheet = pl.read_csv(study / "samples.tsv", separator="\t").filter(pl.col("sample_type") != "blank")
    runs, batches = sheet["sample_id"].to_list(), sheet["batch"].to_list()
    scores = {}
    for name in ("feature_matrix", "feature_matrix_corrected"):
        matrix = pl.read_parquet(study / f"{name}.parquet")
        values = np.log2(matrix.select(runs).to_numpy().astype(float)).T
        xy, explained, how = pca_coordinates(values)
        assert xy.shape == (len(runs), 2) and 0 < explained[0] <= 1
        scores[name] = silhouette_score(xy, batches)
    assert scores["feature_matrix"] > 0.5 and scores["feature_matrix_corrected"] < 0.2, scores
    # few complete features: the fallback fills and says so
    holes = values.copy()
    holes[::2, 5:] = np.nan
    _, _, how = pca_coordinates(holes)
    assert "half the feature's smallest value" in how and "only 5 in every run" in how


def test_a_study_without_qcs_says_drift_was_not_corrected_from_qcs(tmp_path: Path) -> None:
    inputs, _ = _write(tmp_path, with_qcs=False)
    build_report(inputs, tmp_path / "r.html")
    text = (tmp_path / "r.html").read_text(encoding="utf-8")
    part = _section(text)
    assert "Drift correction: <b>median</b>" in part
    # said once (trial finding: the correct stage's note and the section's own sentence both said why and what)
    assert "<b>Drift was not corrected from pooled QCs</b>: no pooled QC runs: median normalisation per sample" in part
    assert re.sub(r"<[^>]+>", "", part).count("no pooled QC runs") == 1
    assert part.count("Drift was not corrected") == 1 and "evens out overall intensity" not in part
    assert "median normalisation" in part and "not measured (fewer than two pooled QC runs)" in part
    warnings = text.split('id="warnings"')[1].split('id="overview"')[0]
    assert "drift was <b>not corrected from pooled QCs</b>" in warnings
    assert "Pooled QC runs (0): none" in part


def test_report_command_takes_the_correction_outputs_and_says_when_they_are_absent(tmp_path: Path) -> None:
    inputs, _ = _write(tmp_path)
    code = cli_main(["report", "--samples", str(inputs.sheet), "--feature-matrix", str(inputs.feature_matrix),
                     "--corrected-matrix", str(inputs.corrected_matrix), "--correction", str(inputs.correction),
                     "--out", str(tmp_path / "a.html")])
    assert code == 0 and "Drift correction: <b>qc_spline</b>" in (tmp_path / "a.html").read_text(encoding="utf-8")
    build_report(ReportInputs(sheet=inputs.sheet, feature_matrix=inputs.feature_matrix), tmp_path / "b.html")
    assert "No batch-correction outputs were passed" in _section((tmp_path / "b.html").read_text(encoding="utf-8"))
    inputs.correction.unlink()
    build_report(inputs, tmp_path / "c.html")
    assert "correction.json</code> is missing" in (tmp_path / "c.html").read_text(encoding="utf-8")


def test_batch_section_renders_in_headless_chromium(batch_report: tuple[Path, str, dict], tmp_path: Path) -> None:
    from test_report import CHROMIUM, _chromium  # the report's browser helper (tests/test_report.py)

    if CHROMIUM is None:
        pytest.skip("chromium is not installed (apt-get install chromium)")
    path, text, _ = batch_report
    dom, console, requests = _chromium(path.resolve().as_uri(), tmp_path, "batch", "--virtual-time-budget=10000",
                                       "--dump-dom")
    assert console == [] and requests == []
    body = re.search(r"<body[^>]*>", dom).group(0)
    assert 'data-errors="0"' in body and "data-rendered-ms" in body
    part = dom.split('<h2 id="batch">')[1].split("</section>")[0]
    drawn = part.split('class="plot-container plotly"')[1:]
    assert len(drawn) == _section(text).count("Plotly.newPlot(") and all('class="trace ' in d for d in drawn)
    assert re.search(r'<table id="batch-flagged-table" class="[^"]*dataTable', dom)
    assert 'aria-sort="descending"' in part.split('id="batch-flagged-table"')[1]


def test_qcs_too_few_for_a_fit_are_named_as_the_reason(tmp_path: Path) -> None:
    """QCs in the sheet but the correct stage fell back to median normalisation: the section says drift was not
    corrected from QCs, and the warning gives the note's first sentence (the reason), not the whole note."""
    inputs, record = _write(tmp_path)
    record.update(drift_method="median", note="drift_method auto fell back to median normalisation: batch(es) 2 "
                  "have fewer than 3 QC runs. Median normalisation divides each run by its median ratio.")
    inputs.correction.write_text(json.dumps(record))
    build_report(inputs, tmp_path / "r.html")
    text = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert ("<b>Drift was not corrected from pooled QCs</b>: drift_method auto fell back to median normalisation: "
            "batch(es) 2 have fewer than 3 QC runs. Median normalisation divides") in text
    warnings = text.split('id="warnings"')[1].split('id="overview"')[0]
    assert "batch(es) 2 have fewer than 3 QC runs)" in warnings and "median ratio" not in warnings


def test_without_injection_order_the_qcs_are_drawn_in_sheet_order(tmp_path: Path) -> None:
    inputs, _ = _write(tmp_path)
    sheet = pl.read_csv(inputs.sheet, separator="\t", infer_schema_length=0).drop("injection_order")
    sheet.write_csv(inputs.sheet, separator="\t")
    build_report(inputs, tmp_path / "r.html")
    part = _section((tmp_path / "r.html").read_text(encoding="utf-8"))
    assert "position in the sample sheet (no injection_order)" in part and "<td>not given</td>" in part
    assert "QC2 (batch 1, position in the sample sheet (no injection_order) 6)" in part  # QC2 is the 6th run


def test_model_maps_show_study_samples_only(tmp_path: Path) -> None:
    """The models' maps colour the study samples by the outcome; QCs and blanks (no outcome, not modelled) are not
    drawn there."""
    from ms2study.modelling.featuresets import feature_matrix_feature_set
    from ms2study.reporting.collect import OutcomeFiles
    from ms2study.stages import models

    inputs, _ = _write(tmp_path)
    sheet = pl.read_csv(inputs.sheet, separator="\t", infer_schema_length=0)
    matrix = pl.read_parquet(inputs.corrected_matrix)
    sets = {"features": feature_matrix_feature_set(matrix, sheet["sample_id"].to_list())}
    out = tmp_path / "models"
    summaries = models.model_outcomes(sheet, sets, [{"column": "group", "type": "binary", "positive_class": "case"}],
                                      out, {"feature_sets": ["features"], "n_permutations": 1, "outer_repeats": 1,
                                            "n_bootstrap": 20})
    assert summaries["group"]["n_samples"] == 16
    build_report(ReportInputs(sheet=inputs.sheet, feature_matrix=inputs.feature_matrix,
                              corrected_matrix=inputs.corrected_matrix, correction=inputs.correction,
                              models=[OutcomeFiles(out / "group" / "summary.json", out / "group" / "predictions.parquet")]),
                 tmp_path / "r.html")
    part = (tmp_path / "r.html").read_text(encoding="utf-8").split('<h2 id="models">')[1].split("</section>")[0]
    assert "of features, coloured by group" in part and "S01\\u003cbr\\u003egroup: case" in part.replace(
        "<br>", "\\u003cbr\\u003e")
    assert "QC1" not in part and "BL1" not in part
    assert "8 pooled QC run(s) and 2 blank run(s)" in part  # the summary's note


def test_a_plain_study_is_not_warned_and_kept_flags_are_said_to_be_kept(tmp_path: Path) -> None:
    """Without QCs, batches or injection orders the sheet describes no acquisition: the missing QC correction is
    stated in the section, not raised as a warning. With correct: exclude_flagged false the flagged features are
    said to stay in the models."""
    from ms2study.reporting.batch import batch_section

    runs = ["A", "B", "C", "D"]
    sheet = pl.DataFrame({"sample_id": runs, "file": [f"{r}.mzML" for r in runs], "group": ["x", "x", "y", "y"]})
    raw = pl.DataFrame({"consensus_id": ["C1", "C2", "C3"], "mz": [100.0, 200.0, 300.0], "rt_s": [10.0, 20.0, 30.0],
                        "n_detected": [4, 4, 4], **{r: [1e5, 2e5, 3e5] for r in runs}})
    corrected = raw.with_columns(pl.Series("excluded", [False, True, False]), pl.Series("blank_flag", [False, True, False]))
    corrected.write_parquet(tmp_path / "corrected.parquet")
    (tmp_path / "correction.json").write_text(json.dumps(
        {"drift_method": "median", "note": "drift_method auto fell back to median normalisation: no pooled QC runs.",
         "n_qc": 0, "n_blank": 0, "n_features": 3, "n_blank_flagged": 1, "n_qc_rsd_flagged": 0, "batches": ["1"]}))
    warnings: list[str] = []
    part = batch_section(tmp_path / "correction.json", tmp_path / "corrected.parquet", raw, sheet,
                         {"config_used": {"correct": {"exclude_flagged": False}}}, warnings)
    assert "<b>Drift was not corrected from pooled QCs</b>" in part
    assert not any("not corrected from pooled QCs" in w for w in warnings)
    assert "0 (<code>correct: exclude_flagged</code> is false)" in part
    assert "Kept in the outcome models, differential tests and pooling" in part
    # the same study with two batches describes its acquisition: then it is a warning
    warnings = []
    batch_section(tmp_path / "correction.json", tmp_path / "corrected.parquet", raw,
                  sheet.with_columns(pl.Series("batch", ["1", "1", "2", "2"])), {}, warnings)
    assert any("not corrected from pooled QCs" in w for w in warnings)
    assert "subjects with several runs" not in part
    # runs of one subject normalised against one another first (correction.normalise): said in the section
    record = json.loads((tmp_path / "correction.json").read_text())
    (tmp_path / "correction.json").write_text(json.dumps({**record, "n_subjects_normalised_within": 2}))
    part = batch_section(tmp_path / "correction.json", tmp_path / "corrected.parquet", raw, sheet, {}, [])
    assert "aligned the runs of each of the 2 subjects with several runs" in part


def _fit(sheet: pl.DataFrame, method: str):
    """``qc_rlsc`` on the matrix ``_fit_notes`` describes."""
    from ms2study.correction.drift import qc_rlsc

    kinds, batches = sheet["sample_type"].to_list(), sheet["batch"].to_list()
    is_qc = np.array([k == "qc" for k in kinds])
    values = np.random.default_rng(4).lognormal(12, 0.2, (N_FEATURES, len(kinds)))
    qc1 = [j for j in range(len(kinds)) if is_qc[j] and batches[j] == "1"]
    qc2 = [j for j in range(len(kinds)) if is_qc[j] and batches[j] == "2"]
    values[20:28, qc2[:2]] = np.nan
    values[30:35, qc1] = np.nan
    values[35:37, [j for j in range(len(kinds)) if batches[j] == "1"]] = np.nan
    orders = sheet["injection_order"].cast(pl.Float64).to_numpy()
    return qc_rlsc(values, is_qc, orders, batches, method)


def test_the_qc_fit_notes_say_how_much_falls_on_the_features_left_for_the_tests(tmp_path: Path) -> None:
    """Trials AU, BA and BD: "4517 of the 11124 feature-batch pairs (40.6 %) had no QC value" read as 40 % of what
    was tested, where 18 of the 1,848 tested features had none (BD: a first mend counted the features not flagged,
    10,955, where the tests took 4,092). The fit records per feature how many batches had no QC value (or too few),
    the corrected matrix keeps it, and the notes count what falls on each outcome's tested features and hits."""
    from ms2study.reporting.qcfits import fit_note, tested_features

    fit = _fit(_runs(), "qc_linear")
    few, none, _ = fit.notes
    # the per-feature counts add up to the notes' pair counts
    assert int(fit.batches_without_qc.sum()) == int(none.split()[0]) == 7
    assert int(fit.batches_few_qc.sum()) == int(few.split()[0]) == 8
    ids = [f"C{i}" for i in range(N_FEATURES)]
    corrected = pl.DataFrame({"consensus_id": ids, "qc_batches_without_value": fit.batches_without_qc.astype(np.int32),
                              "qc_batches_few_values": fit.batches_few_qc.astype(np.int32)})
    # the differential tables: group tested features 0-29 and 34-59 (C34 of those without QC values), age 0-19
    for outcome, tested, hits in (("group", ids[:30] + ids[34:], ["C1", "C34"]), ("age", ids[:20], [])):
        pl.DataFrame({"consensus_id": ids, "p_value": [0.5 if c in tested else None for c in ids],
                      "q_value": [0.01 if c in hits else (0.9 if c in tested else None) for c in ids]}
                     ).write_parquet(tmp_path / f"{outcome}.parquet")
    tested = tested_features([tmp_path / "group.parquet", tmp_path / "age.parquet", tmp_path / "gone.parquet"])
    assert list(tested) == ["group", "age"] and tested["group"][1] == ["C1", "C34"]
    record = {"n_features": N_FEATURES, "batches": ["1", "2"]}
    assert ("had no QC value; of the 56 features tested for group, 3 (3 pairs), 1 of its 2 hits; of the 20 features "
            "tested for age, 0 (0 pairs), no hits at q < 0.05: in those batches") in fit_note(none, record, corrected,
                                                                                               tested)
    assert ("had fewer QC values than qc_linear needs (3); of the 56 features tested for group, 8 (8 pairs), none of "
            "its 2 hits; of the 20 features tested for age, 0 (0 pairs)") in fit_note(few, record, corrected, tested)
    assert "tested for" not in fit_note(none, record, corrected)  # no differential tables: nothing to say
    assert "tested for" not in fit_note(none, record, corrected.with_columns(
        pl.lit(None, dtype=pl.Int32).alias("qc_batches_without_value")), tested)  # no QC-based fit


def _fit_notes(sheet: pl.DataFrame, method: str) -> list[str]:
    """The correct stage's own notes (``correction.drift.qc_rlsc``) on a matrix of the fabricated sheet in which
    features 20-27 keep 2 QC values in batch 2, 30-34 none in batch 1 (measured in its samples) and 35-36 nothing
    in batch 1: 8 feature-batch pairs with too few QC values, 7 without any, 5 features taking the run's factor."""
    return _fit(sheet, method).notes


def test_qc_fit_notes_carry_their_share_and_the_qc_rsd_after_is_said_to_be_in_sample(tmp_path: Path) -> None:
    """Simulated 3-batch study (3 QCs per batch): auto chose qc_linear, the report gave QC RSD 0.062 after correction
    as a check although it is measured on the QCs the lines were fitted to (truth: QC error 0.033, study samples
    0.084), the PCA note read "After a good correction the QCs cluster tightly", and the correction's notes were raw
    overlapping counts ("2641 feature-batch fits ...", "2763 feature-batch pairs ...", "1178 features ...") without
    a denominator or what happened to those features."""
    inputs, record = _write(tmp_path)
    notes = _fit_notes(pl.read_csv(inputs.sheet, separator="\t", infer_schema_length=0), "qc_linear")
    assert len(notes) == 3  # the stage's text, as correction.json holds it
    record.update(drift_method="qc_linear", note="QC-RLSC (Dunn et al. 2011) with straight lines.", warnings=notes)
    inputs.correction.write_text(json.dumps(record))
    build_report(inputs, tmp_path / "r.html", {"config_used": {"correct": {"qc_rsd_max": 0.3}}})
    text = (tmp_path / "r.html").read_text(encoding="utf-8")
    part = _section(text)
    # the method auto chose and why (4 QCs per batch: a line, no spline)
    assert ("Drift correction: <b>qc_linear</b>. <code>correct: drift_method</code> auto chose qc_linear (a straight "
            "line per feature and batch) because batches 1, 2 hold only 4 pooled QC runs each: the smoothing spline "
            "(qc_spline) needs at least 5 in every batch, a line 3.") in part
    # the QC RSD after correction, the QCs' drift chart and their PCA cluster are in-sample
    assert ("The QC RSD after correction is measured on the same pooled QCs the correction was fitted to "
            "(qc_linear: a line through each feature's QC values per batch), so it is not an independent check") in part
    assert "only 2 of 4 QC values are left to show the noise" in part and "optimistic" in part
    assert "After a good correction the QCs cluster tightly" not in part
    assert "their cluster is not an independent check: judge it by the study samples" in part
    assert "after it they lie flat largely by construction" in part
    # every fit counted against the 120 feature-batch pairs, with what happened
    assert ("Of the 120 feature-batch pairs (60 features × 2 batches): 105 (87.5 %) were fitted with a line through 3 "
            "or more of their own QC values; 8 (6.7 %) had too few QC values and took the batch's QC median; 7 "
            "(5.8 %) had no QC value and took the run's median factor") in part
    warnings = text.split('id="warnings"')[1].split('id="overview"')[0]
    assert ("batch correction: 8 of the 120 feature-batch pairs (6.7 %; 60 features × 2 batches) had fewer QC values "
            "than qc_linear needs (3): in those batches the feature was corrected by the batch's QC median") in warnings
    assert "7 of the 120 feature-batch pairs (5.8 %; 60 features × 2 batches) had no QC value: in those batches" \
        in warnings
    assert "5 of the 60 features (8.3 %) took the run's median factor" in warnings
    assert "the counts overlap and do not add up" in warnings and "kept in the matrix" in warnings
    assert not re.search(r"batch correction: \d+ feature-batch", warnings)  # no bare count is left


def test_the_method_s_reason_and_the_in_sample_note_follow_the_qcs_per_batch() -> None:
    from ms2study.reporting.batch import fit_note, method_reason, qcs_per_batch
    from ms2study.reporting.qcrsd import in_sample_note

    three = {"1": 3, "2": 3, "3": 3}
    assert "auto chose qc_linear (a straight line per feature and batch) because batches 1, 2, 3 hold only 3 pooled " \
           "QC runs each" in method_reason("qc_linear", three, "auto")
    assert "only 1 of 3 QC values is left to show the noise" in in_sample_note("qc_linear", three)
    assert "auto chose qc_spline: every batch holds at least 5" in method_reason("qc_spline", {"1": 6, "2": 5}, "auto")
    # a choice the counts do not support is not explained by them; median normalisation is not fitted to the QCs
    assert "auto chose" not in method_reason("qc_spline", {"1": 4, "2": 4}, "auto")
    assert "qc_linear was asked for" in method_reason("qc_linear", three, "qc_linear")
    assert method_reason("median", three, "auto") == "" and in_sample_note("median", three) == ""
    roles = pl.DataFrame({"batch": ["1", "1", "2", "2", "2"], "sample_type": ["qc", "sample", "qc", "qc", "blank"]})
    assert qcs_per_batch(roles) == {"1": 1, "2": 2}
    # the spline's notes name its simpler fits; a note of another kind is left as it is
    spline = next(n for n in _fit_notes(_runs(), "qc_spline") if "fewer QC values" in n)
    record = {"n_features": N_FEATURES, "batches": ["1", "2"]}
    assert "a straight line through 3-4 QC values or, with 1-2, the batch's QC median" in fit_note(spline, record)
    assert fit_note("gap filling found 3 values, not used", record) is None
    assert fit_note("9 feature-batch pairs had no QC value: x", {}).startswith("9 feature-batch pairs had no QC")


def test_the_held_out_qc_rsd_is_shown_beside_the_in_sample_one() -> None:
    """correction.json's qc_rsd_median_held_out (each QC corrected by a fit without it) is shown with what it means;
    a record without it (median normalisation, older runs) shows no such sentence."""
    from ms2study.reporting.batch import rsd_part

    corrected = pl.DataFrame({"qc_rsd_before": [0.3, 0.4], "qc_rsd_after": [0.05, 0.07]})
    record = {"qc_rsd_median_before": 0.35, "qc_rsd_median_after": 0.062, "qc_rsd_median_held_out": 0.131,
              "drift_method": "qc_linear"}
    text = rsd_part(corrected, record, 0.3, {"1": 3, "2": 3})
    assert "gives a median QC RSD of <b>0.131</b>" in text and "lay between the two values" in text
    assert "Out of sample" not in rsd_part(corrected, {**record, "qc_rsd_median_held_out": None}, 0.3)


def test_the_predicted_qc_rsd_and_the_flag_basis_are_shown_and_the_flagged_table_is_sorted_by_it() -> None:
    """correction.json's qc_rsd_median_predicted and qc_rsd_basis: the section gives the predicted median with its
    measured calibration and says which value the flag read; the flagged table lists the worst by that value first
    and leaves out an RSD column that holds nothing (after median normalisation); an older record without the basis
    is said to have been flagged on the in-sample value."""
    import re as _re

    from ms2study.reporting.batch import flagged_table, rsd_part

    corrected = pl.DataFrame({"qc_rsd_before": [0.3, 0.4], "qc_rsd_after": [0.05, 0.07],
                              "qc_rsd_predicted": [0.1, 0.2]})
    record = {"qc_rsd_median_before": 0.35, "qc_rsd_median_after": 0.062, "qc_rsd_median_held_out": 0.131,
              "qc_rsd_median_predicted": 0.15, "qc_rsd_basis": "predicted", "drift_method": "qc_linear",
              "qc_residual_df_median": 2.0, "n_qc_rsd_unassessed": 17}
    text = rsd_part(corrected, record, 0.3, {"1": 3, "2": 3})
    # the headline leads with the value the flag reads, not the in-sample one
    assert ("features: <b>0.350</b> before correction and <b>0.150</b> after it, predicted at the study samples' "
            "injections") in text and "on the QCs themselves <b>0.062</b>" in text
    assert "Predicted at the study samples' injections: <b>0.150</b>" in text and "median 2 residual" in text
    assert text.count("judged on the value predicted at the study samples' injections") == 1
    assert "17 features with fewer than 2 QC values in every batch are not judged" in text and "capped at 10 " in text
    old = rsd_part(corrected.drop("qc_rsd_predicted"), {k: v for k, v in record.items()
                                                         if k not in ("qc_rsd_basis", "qc_rsd_median_predicted")}, 0.3)
    assert "judged on this in-sample value" in old and "Predicted at" not in old
    flagged = pl.DataFrame({"consensus_id": ["C1", "C2", "C3"], "mz": [100.0, 200.0, 300.0], "rt_s": [1.0, 2.0, 3.0],
                            "qc_rsd_after": [0.2, 0.1, 0.25], "qc_rsd_held_out": [None, None, None],
                            "qc_rsd_predicted": [0.4, 0.6, 0.35], "qc_rsd_flag": [True, True, True],
                            "excluded": [True, True, True]}, schema_overrides={"qc_rsd_held_out": pl.Float64})
    table = flagged_table(flagged, True, "predicted")
    assert "QC RSD held out" not in table and "QC RSD predicted" in table
    script = table.split('querySelectorAll("#batch-flagged-table:not(.dataTable)")')[1]
    data = json.loads(json.loads('"' + _re.search(r'"data_json": "((?:[^"\\]|\\.)*)"', script).group(1) + '"'))
    assert [row[0] for row in data] == ["C2", "C1", "C3"]


def test_a_qc_rsd_flag_that_judged_no_feature_says_so() -> None:
    """Trial: one pooled QC per batch and median normalisation, so the flag (3 QC values needed without a QC fit)
    judged none of 4,007 features; the report said 'features above 0.3 are flagged' and '0 flagged', read as every
    feature passing. The section and the batch table now say how many were not judged and why."""
    from ms2study.reporting.batch import rsd_part

    corrected = pl.DataFrame({"qc_rsd_before": [0.3, 0.4, 0.5], "qc_rsd_after": [0.25, 0.35, 0.6]})
    record = {"qc_rsd_median_before": 0.4, "qc_rsd_median_after": 0.35, "drift_method": "median",
              "n_qc_rsd_flagged": 0, "n_qc_rsd_unassessed": 3, "n_features": 3}
    text = rsd_part(corrected, record, 0.3, {"1": 1, "2": 1})
    assert "<b>3 of 3 features were not judged</b>" in text and "at least 3 are needed" in text
    assert "unchecked by the QCs" in text
    assert "not judged" not in rsd_part(corrected, {**record, "n_qc_rsd_unassessed": 0}, 0.3, {"1": 3, "2": 3})
    from ms2study.reporting.batch import counts_table
    assert "0 (3 not judged: too few QC values)" in counts_table(record, corrected)
    partly = rsd_part(corrected, {**record, "n_qc_rsd_unassessed": 1}, 0.3, {"1": 3, "2": 3})
    assert "<b>1 of 3 features were not judged</b>" in partly and "unchecked by the QCs" not in partly


def test_the_flagged_features_table_says_how_many_blanks_detected_each() -> None:
    """The blank filter's evidence (n_blank_detected: blanks whose detection found the feature, gap fills not
    counted) is shown beside its ratio, so a flag resting on one blank can be judged."""
    import json as _json
    import re as _re

    from ms2study.reporting.batch import flagged_table

    corrected = pl.DataFrame({"consensus_id": ["C1", "C2"], "mz": [100.0, 200.0], "rt_s": [10.0, 20.0],
                              "blank_ratio": [1.1, 9.0], "blank_flag": [True, False], "n_blank_detected": [5, 0],
                              "qc_rsd_after": [0.1, 0.5], "qc_rsd_flag": [False, True], "excluded": [True, True]})
    text = flagged_table(corrected)
    assert "blanks detecting it" in text
    script = text.split('querySelectorAll("#batch-flagged-table:not(.dataTable)")')[1]
    data = _json.loads(_json.loads('"' + _re.search(r'"data_json": "((?:[^"\\]|\\.)*)"', script).group(1) + '"'))
    rows = {row[0]: row for row in data}
    header = _re.findall(r"<th>(.*?)</th>", text)
    column = header.index("blanks detecting it")
    assert rows["C1"][column] == 5 and rows["C2"][column] == 0


def test_most_features_left_out_by_the_qc_rsd_flag_is_a_caution_on_the_conclusions() -> None:
    """A fresh user's batch study (3 pooled QCs, a straight line, 1 residual degree of freedom per feature): the
    predicted QC RSD flagged 76 % of the features, all 1,590 measured in every sample among them, and the report's
    findings said only "0 of 581 tested features differ". Now a caution names the counts and what to change."""
    from ms2study.reporting.html import DOUBT, kind_of
    from ms2study.reporting.qcrsd import exclusion_caution

    samples = ["S1", "S2", "S3"]
    ids = [f"C{i}" for i in range(8)]
    # C0-C3 measured in every sample, C4-C7 in one only
    raw = pl.DataFrame({"consensus_id": ids, "S1": [1.0] * 8, "S2": [1.0] * 4 + [None] * 4,
                        "S3": [2.0] * 4 + [0.0] * 4, "QC1": [1.0] * 8})
    corrected = pl.DataFrame({"consensus_id": ids,
                              "qc_rsd_flag": [True, True, True, False, None, None, True, False]})
    record = {"n_features": 8, "n_qc_rsd_flagged": 4, "n_qc_rsd_unassessed": 2, "qc_rsd_basis": "predicted",
              "qc_residual_df_median": 1.0, "qc_rsd_median_before": 0.303, "qc_rsd_median_after": 0.187,
              "qc_rsd_median_predicted": 0.454, "n_qc_rsd_flagged_in_sample": 1}
    caution = exclusion_caution(record, corrected, raw, samples, True, 0.3)
    assert caution is not None and kind_of(caution) == DOUBT and set(caution.concerns) == {"differential", "models"}
    assert "left <b>4 of 8 consensus features</b> (50%) out of the differential tests and the models" in caution
    assert "3 of the 4 features measured in every study sample among them" in caution
    assert "while the 2 features the QCs could not judge (too few QC values) stay in" in caution
    assert "a median of 1 residual degree of freedom per feature" in caution
    assert "<code>correct: qc_rsd_basis: in_sample</code> (which would flag 1)" in caution
    # a few flags, or flags that leave nothing out (exclude_flagged false), are no caution
    assert exclusion_caution({**record, "n_qc_rsd_flagged": 1}, corrected, raw, samples, True, 0.3) is None
    assert exclusion_caution(record, corrected, raw, samples, False, 0.3) is None
    assert exclusion_caution({}, None, None, samples, True, 0.3) is None


def test_many_features_with_a_wandering_apex_is_a_data_quality_warning() -> None:
    """A trial: 919 of 2,809 judged features (33 %) carried the RT spread flag, said only inside the batch section."""
    from ms2study.reporting.html import QUALITY, kind_of
    from ms2study.reporting.qcrsd import rt_spread_warning

    record = {"n_features": 3685, "n_rt_sd_flagged": 919, "n_rt_sd_unassessed": 876, "rt_sd_threshold_s": 2.723}
    warning = rt_spread_warning(record)
    # in Warnings, not beside the findings: 'What differs' names the hits that carry the flag (a trial's caution sat
    # beside five hits, none flagged)
    assert warning is not None and kind_of(warning) == QUALITY and warning.concerns == ()
    assert "<b>919 of the 2809</b> features judged (33%)" in warning and "more than 2.72 s" in warning
    assert "taken as at least" not in warning
    assert "in short runs, many are background ions present through the run" in warning  # trial AI's TOF excerpts
    # a median spread under the floor (copies of one injection: apexes on whole scans) is said with the threshold
    floored = rt_spread_warning({**record, "rt_sd_median_s": 0.03, "rt_sd_threshold_s": 0.3})
    assert "more than 0.30 s" in floored and "median spread, 0.03 s, is taken as at least 0.1 s" in floored
    assert rt_spread_warning({**record, "n_rt_sd_flagged": 100}) is None  # 4 %: as on the simulated studies
    assert rt_spread_warning({}) is None


def test_most_features_left_out_by_the_blank_filter_is_a_caution_naming_the_blanks() -> None:
    """A second trial: a study sample typed blank; the blank filter flagged 257 of 270 features and Main findings
    said only "0 of 13 tested features differ"."""
    from ms2study.reporting.html import DOUBT, kind_of
    from ms2study.reporting.qcrsd import blank_exclusion_caution

    raw = pl.DataFrame({"consensus_id": ["C1", "C2", "C3", "C4"], "S1": [1.0, 1.0, 1.0, 1.0],
                        "S2": [1.0, 1.0, 1.0, None], "B1": [1.0, 1.0, 1.0, 0.0]})
    record = {"n_features": 4, "n_blank_flagged": 3}
    caution = blank_exclusion_caution(record, raw, ["B1"], ["S1", "S2"], True)
    assert caution is not None and kind_of(caution) == DOUBT
    assert "left <b>3 of 4 consensus features</b> (75%)" in caution
    assert "features detected: B1 3 (the study samples' median: 3.5)" in caution
    assert blank_exclusion_caution({**record, "n_blank_flagged": 0}, raw, ["B1"], ["S1"], True) is None
    assert blank_exclusion_caution(record, raw, ["B1"], ["S1"], False) is None


def test_the_batch_pca_of_identical_runs_is_drawn_not_a_crash() -> None:
    """Runs that are copies of one run (a trial's): every feature constant up to rounding, no NaN coordinates."""
    rng = np.random.default_rng(0)
    values = np.repeat(np.log2(rng.lognormal(10, 2, (1, 300)).astype(np.float32)).astype(np.float64), 9, axis=0)
    coords, explained, _ = pca_coordinates(values)
    assert coords.shape == (9, 2) and np.isfinite(coords).all() and np.isfinite(explained).all()
