"""Quality control by run type (issue 13): study samples are scored among study samples, pooled QCs among QCs,
blanks are never outliers but a blank with many features is noted (carry-over); batches are centred apart; the
report's QC section shows each run type apart. Small synthetic feature matrices, real polars/numpy/plotly/itables."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
from test_report import _itable_rows

from ms2study import cli
from ms2study.core.atomic import write_parquet
from ms2study.modelling.qc import (
    QC,
    RUN_CENTRED_RULE,
    batch_centred,
    carryover_note,
    chromatogram,
    chromatogram_metadata,
    log_feature_matrix,
    neighbour_outliers,
    outlier_scores,
    qc_table,
    run_centred,
)
from ms2study.reporting.qc import qc_section

N_SAMPLES, N_QC, N_BLANK, P = 14, 6, 3, 200


def _batch_study(seed: int = 3) -> tuple[pl.DataFrame, pl.DataFrame, dict]:
    """A sheet of 14 samples, 6 pooled QCs (QC3 a failed injection) and 3 blanks (B2 with carry-over); the feature
    matrix (blanks hold 8 contaminants only, B2 also most compounds at a tenth) and per-run feature counts."""
    rng = np.random.default_rng(seed)
    base = rng.normal(12, 1.5, P)
    samples = base[None, :] + rng.normal(0, 0.25, (N_SAMPLES, P))
    samples[::2, :10] += np.log(3.0)  # a group effect is not an outlier
    qcs = np.log(np.exp(samples).mean(axis=0))[None, :] + rng.normal(0, 0.05, (N_QC, P))
    qcs[3] += rng.normal(0, 0.6, P)  # a bad QC injection
    blanks = np.full((N_BLANK, P), np.nan)
    blanks[:, :8] = base[:8] - 1.0  # contaminants
    blanks[1, 8:] = base[8:] - np.log(10.0)  # carry-over: the previous sample's compounds at a tenth
    s_ids = [f"S{i:02d}" for i in range(N_SAMPLES)]
    q_ids = [f"QC{i}" for i in range(N_QC)]
    b_ids = [f"B{i + 1}" for i in range(N_BLANK)]
    ids = ["B1", "QC0", *s_ids[:7], "QC1", "QC2", "B2", *s_ids[7:], "QC3", "QC4", "QC5", "B3"]
    values = {**dict(zip(s_ids, samples)), **dict(zip(q_ids, qcs)), **dict(zip(b_ids, blanks))}
    matrix = pl.DataFrame({"consensus_id": [f"C{j}" for j in range(P)],
                           **{s: np.exp(values[s]) for s in ids}})
    kinds = ["blank" if s.startswith("B") else "qc" if s.startswith("QC") else "sample" for s in ids]
    sheet = pl.DataFrame({"sample_id": ids, "file": [f"{s}.mzML" for s in ids],
                          "sample_type": [k if k != "sample" else "" for k in kinds],  # empty cell: a sample
                          "injection_order": [str(i + 1) for i in range(len(ids))]})
    runs = {s: {"n_features": int(np.isfinite(values[s]).sum()), "n_ms2_scans": 10, "n_ms2_mapped": 5} for s in ids}
    return sheet, matrix, runs


def test_each_run_type_is_judged_apart():
    sheet, matrix, runs = _batch_study()
    ids = sheet["sample_id"].to_list()
    # Every run together (the old rule): the blanks, which hold almost nothing, are far outliers.
    _, flags, _ = outlier_scores(log_feature_matrix(matrix, ids))
    assert {s for s, f in zip(ids, flags) if f} >= {"B1", "B3"}
    table = qc_table(sheet, runs, None, matrix)
    assert table.columns == list(QC) and table["sample_id"].to_list() == ids
    by = {r["sample_id"]: r for r in table.iter_rows(named=True)}
    assert [by[s]["sample_type"] for s in ("B1", "QC0", "S00")] == ["blank", "qc", "sample"]
    assert by["S03"]["injection_order"] == ids.index("S03") + 1 and {by[s]["batch"] for s in ids} == {"1"}
    # Blanks: never outliers, not scored; the carry-over blank (many features) is noted, the clean ones are not.
    blanks = table.filter(pl.col("sample_type") == "blank")
    assert not blanks["outlier"].any() and blanks["outlier_score"].null_count() == N_BLANK
    assert blanks["run_note"].is_null().to_list() == [True, False, True]
    assert "possible carry-over" in by["B2"]["run_note"] and "not tested: blank" in by["B2"]["outlier_rule"]
    # QCs among QCs: the bad injection, and only it, with a note and the QC rule.
    qcs = table.filter(pl.col("sample_type") == "qc")
    assert qcs.filter(pl.col("outlier"))["sample_id"].to_list() == ["QC3"]
    assert "check this injection" in by["QC3"]["run_note"] and by["QC2"]["run_note"] is None
    assert by["QC3"]["outlier_rule"].startswith("among the 6 pooled QC runs only") and by["QC3"]["outlier_score"] > 3.5
    # Samples among samples: exactly the scores of the rule on the samples alone; none flagged.
    s_ids = [s for s in ids if s.startswith("S")]
    z_samples, _, rule = neighbour_outliers(run_centred(log_feature_matrix(matrix, s_ids)),
                                        f"the {P} features detected in every one of these runs")
    samples = table.filter(pl.col("sample_type") == "sample")
    assert np.allclose(samples["outlier_score"].to_numpy(), z_samples) and not samples["outlier"].any()
    assert samples["outlier_rule"].unique().to_list() == [rule + RUN_CENTRED_RULE] and samples["run_note"].null_count() == N_SAMPLES


def test_a_sheet_without_run_types_is_scored_as_before():
    sheet, matrix, runs = _batch_study()
    ids = [s for s in sheet["sample_id"].to_list() if s.startswith("S")]
    plain = pl.DataFrame({"sample_id": ids, "file": [f"{s}.mzML" for s in ids]})
    table = qc_table(plain, runs, None, matrix.select(["consensus_id", *ids]))
    z, flags, rule = neighbour_outliers(run_centred(log_feature_matrix(matrix, ids)),
                                        f"the {P} features detected in every one of these runs")
    assert np.allclose(table["outlier_score"].to_numpy(), z) and table["outlier"].to_list() == flags.tolist()
    assert table["outlier_rule"].unique().to_list() == [rule + RUN_CENTRED_RULE] and table["run_note"].null_count() == len(ids)
    assert set(table["sample_type"]) == {"sample"} and set(table["batch"]) == {"1"}
    assert table["injection_order"].null_count() == len(ids)


def test_batches_are_centred_apart_so_a_small_batch_is_no_outlier():
    rng = np.random.default_rng(0)
    n1, n2 = 14, 4
    values = rng.normal(12, 1.5, P)[None, :] + rng.normal(0, 0.25, (n1 + n2, P))
    values[n1:] += np.log(1.6) + rng.normal(0, 0.6, P)  # batch 2: the response jumps, compound by compound
    ids = [f"S{i:02d}" for i in range(n1 + n2)]
    matrix = pl.DataFrame({"consensus_id": [f"C{j}" for j in range(P)],
                           **{s: np.exp(values[i]) for i, s in enumerate(ids)}})
    _, flags, _ = outlier_scores(log_feature_matrix(matrix, ids))
    assert flags[n1:].all()  # uncentred, the small batch is "outliers"
    sheet = pl.DataFrame({"sample_id": ids, "batch": ["A"] * n1 + ["B"] * n2})
    table = qc_table(sheet, {}, None, matrix)
    assert not table["outlier"].any() and "centred on the batch's median" in table["outlier_rule"][0]
    assert table["batch"].to_list() == ["A"] * n1 + ["B"] * n2
    X = np.arange(12.0).reshape(6, 2)
    same, done = batch_centred(X, ["a"] * 4 + ["b"] * 2)  # a batch of 2 runs: its median would absorb them
    assert not done and same is X
    centred, done = batch_centred(X, ["a"] * 3 + ["b"] * 3)
    assert done and np.allclose(np.median(centred[:3], axis=0), 0) and np.allclose(np.median(centred[3:], axis=0), 0)


def test_carryover_note_threshold():
    assert carryover_note(40, 100.0) is None and carryover_note(None, 100.0) is None
    assert carryover_note(60, None) is None and carryover_note(50, 0.0) is None
    assert carryover_note(50, 100.0).startswith("possible carry-over: 50 features, 50% of the study samples'")


def _chromatograms(root: Path, ids: list[str]) -> list[Path]:
    rt = np.linspace(0, 600, 300)
    paths = []
    for k, s in enumerate(ids):
        path = root / f"{s}_chrom.parquet"
        pl.DataFrame({"rt_s": rt, "tic": 1e6 * np.exp(-0.5 * ((rt - 100 - 10 * k) / 5) ** 2) + 1e4,
                      "bpc": np.full(rt.size, 1e3)}).write_parquet(path)
        paths.append(path)
    return paths


def test_report_section_shows_the_run_types_apart(tmp_path: Path):
    sheet, matrix, runs = _batch_study()
    ids = sheet["sample_id"].to_list()
    write_parquet(qc_table(sheet, runs, None, matrix), tmp_path / "qc.parquet")
    warnings: list[str] = []
    html = qc_section(tmp_path / "qc.parquet", _chromatograms(tmp_path, ids), ids, warnings)
    parts = {k: html.split(f'<h4 id="qc-{k}">')[1].split("<h4")[0] for k in ("sample", "qc", "blank")}
    assert html.index('id="qc-sample"') < html.index('id="qc-qc"') < html.index('id="qc-blank"')
    assert "Study samples (14)" in html and "Pooled QC runs (6)" in html and "Blank runs (3)" in html
    assert '"text":"TIC, 14 study samples"' in parts["sample"] and '"text":"TIC, 6 pooled QCs"' in parts["qc"]
    assert '"text":"Base-peak chromatogram, 3 blanks"' in parts["blank"]
    assert "QC3 (outlier)" in parts["qc"] and "(outlier)" not in parts["sample"] + parts["blank"]
    samples = _itable_rows(parts["sample"], "qc-table")
    assert [r[0] for r in samples] == [s for s in ids if s.startswith("S")]  # sheet order, samples only
    assert [r[0] for r in _itable_rows(parts["qc"], "qc-table-qc")] == [f"QC{i}" for i in range(N_QC)]
    blank_rows = _itable_rows(parts["blank"], "qc-table-blank")
    assert [r[0] for r in blank_rows] == ["B1", "B2", "B3"] and "possible carry-over" in str(blank_rows[1])
    assert "OUTLIER" not in str(blank_rows) and "injection order" in parts["blank"]
    assert "<b>1</b> of 6 pooled QC runs flagged: QC3" in parts["qc"] and "<b>0</b> of 14 samples" in parts["sample"]
    assert "<b>1</b> of 3 blank runs noted: B2" in parts["blank"]
    joined = " | ".join(warnings)
    assert "pooled QC run(s) QC3 stand apart" in joined and "blank run(s) with many features (B2:" in joined
    assert "outlier study sample" not in joined and "outlier sample" not in joined
    # besides these two, only the processing note that the runs came centroided and were used as written
    assert len(warnings) == 3 and sum("came centroided" in w for w in warnings) == 1


def test_chromatograms_of_many_runs_are_coloured_by_batch(tmp_path: Path):
    ids = [f"S{i:02d}" for i in range(14)]
    rng = np.random.default_rng(2)
    matrix = pl.DataFrame({"consensus_id": [f"C{j}" for j in range(50)],
                           **{s: np.exp(rng.normal(12, 1, 50)) for s in ids}})
    sheet = pl.DataFrame({"sample_id": ids, "batch": ["A"] * 9 + ["B"] * 5})
    write_parquet(qc_table(sheet, {}, None, matrix), tmp_path / "qc.parquet")
    html = qc_section(tmp_path / "qc.parquet", _chromatograms(tmp_path, ids), ids, [])
    assert html.count('"name":"batch A (9)"') == 2 and html.count('"name":"batch B (5)"') == 2  # TIC and BPC
    assert '"name":"samples (' not in html


def test_report_section_without_run_types_is_one_part(tmp_path: Path):
    ids = [f"S{i:02d}" for i in range(5)]
    rng = np.random.default_rng(1)
    matrix = pl.DataFrame({"consensus_id": [f"C{j}" for j in range(50)],
                           **{s: np.exp(rng.normal(12, 1, 50)) for s in ids}})
    write_parquet(qc_table(pl.DataFrame({"sample_id": ids}), {}, None, matrix), tmp_path / "qc.parquet")
    html = qc_section(tmp_path / "qc.parquet", _chromatograms(tmp_path, ids), ids, [])
    assert "<h4" not in html and '"text":"TIC, 5 samples"' in html and "of 5 samples flagged" in html
    for header in ("injection order", "batch", "note", "run"):  # the plain study's table, as it always was
        assert f">{header}</th>" not in html
    assert ">outlier score</th>" in html and ">sample</th>" in html


def test_qc_stage_reads_the_run_types_from_the_sheet(tmp_path: Path):
    ids, kinds = ["A", "Q", "B"], ["sample", "qc", "blank"]
    paths: dict[str, list[str]] = {k: [] for k in ("chrom", "spec", "feat")}
    for i, s in enumerate(ids):
        paths["chrom"].append(str(tmp_path / f"{s}_chrom.parquet"))
        write_parquet(chromatogram(np.arange(5.0), np.full(5, 10.0), np.full(5, 2.0)), paths["chrom"][-1],
                      metadata=chromatogram_metadata(5, 2, 50.0))
        for key, frame in (("spec", pl.DataFrame({"feature_id": [f"{s}:F1", None]})),
                           ("feat", pl.DataFrame({"feature_id": [f"{s}:F{j}" for j in range(3 - i)]}))):
            paths[key].append(str(tmp_path / f"{s}_{key}.parquet"))
            frame.write_parquet(paths[key][-1])
    sheet = tmp_path / "samples.tsv"
    pl.DataFrame({"sample_id": ids, "file": ids, "sample_type": kinds, "batch": ["b1", "b1", "b2"],
                  "injection_order": ["2", "1", "3"]}).write_csv(sheet, separator="\t")
    out = tmp_path / "qc.parquet"
    args = ["qc", "--samples", str(sheet), "--chromatograms", *paths["chrom"], "--spectra", *paths["spec"],
            "--features", *paths["feat"], "--out", str(out)]
    assert cli.main(args) == 0
    table = pl.read_parquet(out)
    assert table["sample_type"].to_list() == kinds and table["batch"].to_list() == ["b1", "b1", "b2"]
    assert table["injection_order"].to_list() == [2, 1, 3] and table["n_features"].to_list() == [3, 2, 1]
    assert table["run_note"].null_count() == 3  # the blank has 1 feature, a third of the sample's 3: no note
    assert table["outlier_rule"][2].startswith("not tested: blank") and not table["outlier"].any()
    pl.DataFrame({"sample_id": ids, "file": ids, "sample_type": ["sample", "pool", "blank"]}).write_csv(
        sheet, separator="\t")
    assert cli.main(args) == 1  # an unknown run type is refused (InputError naming the sheet and the sample)


def test_a_run_sharing_few_features_with_the_reference_is_noted_and_warned(tmp_path: Path):
    """Trial finding (session 21): a TripleTOF pesticide standard added to two Q Exactive QC runs shared 13 % of its
    features with the reference run and was aligned by 11 pairs with a -180 s shift, without a word."""
    from ms2study.modelling.qc import REFERENCE_NOTE, alignment_notes

    alignment = pl.DataFrame({"sample_id": ["R", "A", "B", "T"], "model": ["reference", "linear", "linear", "linear"],
                              "n_features": [2900, 3000, 2800, 108], "n_pairs": [2900, 2100, 2000, 11],
                              "n_shared_with_reference": [2900, 2400, 2300, 14]})
    notes = alignment_notes(alignment)
    assert set(notes) == {"T"} and notes["T"].startswith("shares 14 of its 108 features (13%) with the reference")
    assert "aligned by 11 pairs" in notes["T"]
    # two runs: nothing to compare with, but sharing 13 % is not below the 10 % a lone run is noted at; 0 of 4 is
    two = alignment.filter(pl.col("sample_id").is_in(["R", "T"]))
    assert alignment_notes(two) == {}
    lone = alignment_notes(two.with_columns(pl.Series("n_shared_with_reference", [2900, 0], dtype=pl.Int64)))
    assert set(lone) == {"T"} and "the other runs" not in lone["T"]
    assert alignment_notes(alignment.drop("n_pairs")) == {}  # an older table: nothing to say
    sheet = pl.DataFrame({"sample_id": ["R", "A", "B", "T"]})
    runs = {s: {"n_features": n} for s, n in zip(["R", "A", "B", "T"], [2900, 3000, 2800, 108])}
    table = qc_table(sheet, runs, alignment, None)
    assert table.filter(pl.col("sample_id") == "T")["run_note"][0] == notes["T"]
    # the reference is named (its note is no warning); the other runs have none
    assert table.filter(pl.col("sample_id") == "R")["run_note"][0] == REFERENCE_NOTE
    assert table.filter(~pl.col("sample_id").is_in(["T", "R"]))["run_note"].is_null().all()
    write_parquet(table, tmp_path / "qc.parquet")
    warnings: list[str] = []
    qc_section(tmp_path / "qc.parquet", _chromatograms(tmp_path, ["R", "A", "B", "T"]), ["R", "A", "B", "T"], warnings)
    assert any("sharing few features with the reference run" in w and "T: shares 14" in w for w in warnings)


def test_an_outlier_sample_is_named_beside_the_findings_with_how_to_leave_it_out() -> None:
    """Trial finding: a failed injection was flagged and warned about under Data quality, but it stayed in every
    test and model, the Main findings' caution links did not name it, and nothing said how to leave it out."""
    from ms2study.reporting.findings import beside
    from ms2study.reporting.qc import _outlier_part

    qc = pl.DataFrame({"sample_id": ["S01", "S02", "S13"], "outlier": [False, False, True],
                       "outlier_score": [0.2, -0.4, 10.05], "outlier_rule": ["the rule"] * 3})
    warnings: list[str] = []
    _outlier_part(qc, "sample", False, warnings)
    assert len(warnings) == 1 and "S13" in warnings[0] and "stay in the tests and models" in warnings[0]
    assert "remove its row from samples.tsv" in warnings[0]
    assert "outlier sample" in beside(warnings, "differential:group") and "outlier sample" in beside(warnings, "models")
    warnings = []
    _outlier_part(qc.with_columns(pl.lit(False).alias("outlier")), "sample", False, warnings)
    assert warnings == []
