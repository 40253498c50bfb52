"""A name on a feature whose m/z strays from the named ion's (a merged neighbour's isotope): marked, not dropped.

A trial on a SCIEX TripleTOF study found a right name on a feature 32 ppm from the named ion, its quantity partly
another ion's, with nothing said (identification.featuremz)."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from ms2study import cli
from ms2study.reporting import marks
from ms2study.stages import identify

COLS = ["spectrum_id", "sample_id", "feature_id", "rank", "library_id", "library_name", "library_inchikey",
        "library_smiles", "library_formula", "library_adduct", "combined", "cosine", "p_value", "msi_level",
        "isomer_inchikeys", "precursor_error_ppm", "library_precursor_mz"]
ION = {"alpha": 195.0877, "beta": 181.0720, "gamma": 303.2319}


def hit(sample: str, feature: str, name: str, precursor_ppm: float) -> dict:
    key = name.upper()[:1] * 14 + "-X-N"
    return dict(zip(COLS, (f"{sample}:{feature}", sample, f"{sample}:{feature}", 1, f"L-{name}", name, key, "C",
                           f"F-{name}", "[M+H]+", 0.9, 0.9, 1e-7, 2, [key], precursor_ppm, ION[name])))


def study(feature_ppm: dict[str, float], precursor_ppm: dict[str, float]) -> tuple[pl.DataFrame, ...]:
    """Three compounds, each in two runs; the feature matrix puts each consensus feature at ``feature_ppm`` from its
    named ion, the MS/MS precursors at ``precursor_ppm``."""
    names = {"C1": "alpha", "C2": "beta", "C3": "gamma"}
    rows = [hit(s, f"F{c[1]}", n, precursor_ppm[n]) for c, n in names.items() for s in ("s1", "s2")]
    ann = pl.DataFrame(rows, schema_overrides={"msi_level": pl.Int8, "isomer_inchikeys": pl.List(pl.Utf8)})
    links = (ann.select("sample_id", "feature_id").unique()
             .with_columns(("C" + pl.col("feature_id").str.extract(r"F(\d+)$")).alias("consensus_id")))
    matrix = pl.DataFrame({"consensus_id": list(names), "rt_s": [60.0, 120.0, 180.0],
                           "mz": [ION[n] * (1 + feature_ppm[n] * 1e-6) for n in names.values()],
                           "s1": [1e5, 2e5, 3e5], "s2": [1.1e5, 2.1e5, 2.9e5]})
    return ann, links, matrix


def test_a_feature_that_moved_alone_is_marked_and_a_calibration_offset_is_not() -> None:
    # alpha: the feature 32 ppm off, its MS/MS 1 ppm (a merged ion); beta: both 6 ppm off (the calibration);
    # gamma: the feature 9 ppm from its precursors, within the 10 ppm mapping tolerance
    ann, links, matrix = study({"alpha": 32.0, "beta": 6.0, "gamma": -8.0}, {"alpha": 1.0, "beta": 6.0, "gamma": 1.0})
    out = {r["name"]: r for r in identify.identify_features(ann, links, 0.05, matrix=matrix).iter_rows(named=True)}
    assert all(r["accepted"] for r in out.values())  # the spectra matched: the name stands
    assert out["alpha"]["feature_mz_error_ppm"] == pytest.approx(32.0, abs=0.01)
    assert "32.0 ppm from the named ion's, its MS/MS precursors 1.0 ppm" in out["alpha"]["feature_mz_note"]
    assert out["beta"]["feature_mz_error_ppm"] == pytest.approx(6.0, abs=0.01) and out["beta"]["feature_mz_note"] is None
    assert out["gamma"]["feature_mz_note"] is None
    # a tighter mapping tolerance marks gamma too; no feature m/z (no matrix): nothing to judge, nothing marked
    tight = identify.identify_features(ann, links, 0.05, matrix=matrix, mz_tolerance_ppm=5.0)
    assert tight.filter(pl.col("feature_mz_note").is_not_null())["name"].sort().to_list() == ["alpha", "gamma"]
    bare = identify.identify_features(ann, links, 0.05)
    assert bare["feature_mz_error_ppm"].is_null().all() and bare["feature_mz_note"].is_null().all()
    # annotations written before library_precursor_mz: no error, no mark, no failure
    old = identify.identify_features(ann.drop("library_precursor_mz"), links, 0.05, matrix=matrix)
    assert old["feature_mz_note"].is_null().all()


def test_the_report_marks_it_beside_the_name_and_counts_it() -> None:
    ann, links, matrix = study({"alpha": 32.0, "beta": 6.0, "gamma": 0.0}, {"alpha": 1.0, "beta": 6.0, "gamma": 0.0})
    out = identify.identify_features(ann, links, 0.05, matrix=matrix).filter(pl.col("accepted"))
    shown = dict(zip(out["name"], marks.feature_mz_marks(out)))
    assert shown == {"alpha": "feature 32.0 ppm, MS/MS 1.0 ppm", "beta": None, "gamma": None}
    flags = {words[0]: flag.sum() for words, flag in marks.mark_flags(out).items()}
    assert flags["on a feature whose m/z strays from the named ion's"] == 1
    assert "spectra: mz_tolerance_ppm" in marks.feature_mz_paragraph(1)
    assert marks.feature_mz_marks(out.drop("feature_mz_note")).is_null().all()  # older tables: no mark


def test_the_identify_log_names_it(tmp_path, caplog) -> None:
    ann, links, matrix = study({"alpha": 32.0, "beta": 6.0, "gamma": 0.0}, {"alpha": 1.0, "beta": 6.0, "gamma": 0.0})
    for name, table in (("annotations", ann), ("links", links), ("feature_matrix", matrix)):
        table.write_parquet(tmp_path / f"{name}.parquet")
    with caplog.at_level("WARNING"):
        assert cli.main(["identify", "--annotations", str(tmp_path / "annotations.parquet"), "--links",
                         str(tmp_path / "links.parquet"), "--feature-matrix", str(tmp_path / "feature_matrix.parquet"),
                         "--params", '{"fdr": 0.05, "mz_tolerance_ppm": 10}', "--out", str(tmp_path / "i.parquet")]) == 0
    assert "1 accepted name(s) sit on a feature whose m/z" in caplog.text and "alpha (C1: feature +32.0 ppm" in caplog.text
    assert pl.read_parquet(tmp_path / "i.parquet")["feature_mz_note"].is_not_null().sum() == 1


def test_a_run_whose_offset_link_removed_is_compared_on_one_scale(tmp_path) -> None:
    """Trial N: Neburon, right, named from the one spectrum of a run 10.6 ppm off; the link stage had moved that
    run's features onto the study's scale (feature error -0.1 ppm) while its precursor error stayed the measured
    10.8 ppm, and the name was marked as a feature merging another ion. With the runs' offsets the precursors are
    compared on the consensus m/z's scale; the reported precursor error stays the measured one."""
    # both runs 10.6 ppm off, moved onto the study's scale by link: the features at 0 ppm, the precursors as measured
    ann, links, matrix = study({"alpha": 0.0, "beta": 0.0, "gamma": 0.0}, {"alpha": 10.8, "beta": 11.1, "gamma": 10.2})
    marked = identify.identify_features(ann, links, 0.05, matrix=matrix)
    assert marked.filter(pl.col("feature_mz_note").is_not_null())["name"].sort().to_list() == ["alpha", "beta", "gamma"]
    out = identify.identify_features(ann, links, 0.05, matrix=matrix, run_offsets={"s1": 10.6, "s2": 10.6})
    assert out["feature_mz_note"].is_null().all()
    assert out.filter(pl.col("name") == "alpha")["precursor_error_ppm"][0] == pytest.approx(10.8)
    # through the command: the alignment table's recalibrated runs
    for name, table in (("annotations", ann), ("links", links), ("feature_matrix", matrix)):
        table.write_parquet(tmp_path / f"{name}.parquet")
    pl.DataFrame({"sample_id": ["s1", "s2"], "mz_offset_ppm": [10.6, 10.6], "mz_recalibrated": [True, True]}
                 ).write_parquet(tmp_path / "alignment.parquet")
    assert cli.main(["identify", "--annotations", str(tmp_path / "annotations.parquet"), "--links",
                     str(tmp_path / "links.parquet"), "--feature-matrix", str(tmp_path / "feature_matrix.parquet"),
                     "--alignment", str(tmp_path / "alignment.parquet"), "--params", '{"fdr": 0.05}',
                     "--out", str(tmp_path / "i.parquet")]) == 0
    assert pl.read_parquet(tmp_path / "i.parquet")["feature_mz_note"].is_null().all()


def test_a_name_whose_mass_stands_apart_from_the_studys_names_is_noted(caplog) -> None:
    """Trial AM: Tiamulin accepted with feature +7.6 and precursors +5.8 ppm while the study's other names lay within
    1.8 ppm; its note spoke of isomers while the formula itself was in doubt."""
    from ms2study.identification.featuremz import with_mass_outlier_note

    rng = np.random.default_rng(4)
    feature = list(rng.normal(0.2, 0.2, 22)) + [7.6, -6.5, 9.0, 0.1, 6.0]
    precursor = list(rng.normal(0.3, 1.2, 22)) + [5.8, -6.0, 9.0, 4.0, -4.0]
    out = pl.DataFrame({"consensus_id": [f"C{i}" for i in range(27)], "accepted": [True] * 24 + [False, True, True],
                        "feature_mz_error_ppm": feature, "precursor_error_ppm": precursor,
                        "evidence_note": [None] * 23 + ["low cosine", None, None, None],
                        "_study_error": [None] * 22 + [5.8, -6.0, 9.0, None, None]})
    noted = with_mass_outlier_note(out)["evidence_note"].to_list()
    assert noted[:22] == [None] * 22  # the study's names, single precursors up to a few ppm off
    assert noted[22].startswith("its feature and MS/MS precursors lie +7.6 and +5.8 ppm from the named ion, apart")
    assert noted[23].startswith("low cosine; its feature and MS/MS precursors lie -6.5 and -6.0 ppm") and \
        "a compound of nearly the same mass may fit better" in noted[23]
    # not accepted; precursors off but the feature on the ion (a noisy precursor); the two on opposite sides
    assert noted[24:] == [None, None, None]
    # trial AR: Main findings counts it among the marks the q-value does not cover
    flags = {words[0]: int(flag.sum()) for words, flag in
             marks.mark_flags(out.with_columns(evidence_note=pl.Series(noted)).filter("accepted")).items()}
    assert flags["whose mass stands apart from the study's other names"] == 2
    # too few names to set a scale: nothing said beside the names, and the log says the check was not made (AN)
    with caplog.at_level("INFO", logger="ms2study.identification.featuremz"):
        assert with_mass_outlier_note(out.tail(9))["evidence_note"].to_list() == out.tail(9)["evidence_note"].to_list()
    assert "mass-outlier check not made: 8 accepted name(s)" in caplog.text
    # a scale wider than the floor (4 robust sds): an ordinary spread of a TOF's names is no outlier
    wide = out.with_columns(pl.Series("feature_mz_error_ppm", list(rng.normal(0, 2.5, 22)) + feature[22:]))
    assert with_mass_outlier_note(wide)["evidence_note"].to_list()[22] is None
