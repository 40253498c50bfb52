"""Annotate stage and `ms2study score`: candidates, ranking, q-values, CLI, on a generated library."""

from __future__ import annotations

import logging

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from ms2study import cli
from ms2study.identification import decoys
from ms2study.library import index as library
from ms2study.stages import search
from ms2study.core import tables
from ms2study.core.errors import InputError
from ms2study.identification import engine
from ms2study.kernels import candidates
from ms2study.identification import calibration


def inchikey(k: int) -> str:
    """A distinct InChIKey-shaped key per structure number."""
    letters = "".join(chr(65 + (k // 26 ** i) % 26) for i in range(4))
    return f"{letters}AAAAAAAAAA-BBBBBBBBBB-N"


def make_library(path: Path, n: int = 120, seed: int = 0, exclude: frozenset[int] = frozenset()) -> list[dict]:
    """A library of random compounds in the simulator's MGF format; returns the entries.

    Compounds come in triples at one precursor m/z: two isomers (one formula, two structures) and an isobaric
    compound of another formula. In even triples all spectra differ; in odd triples the two isomers share one
    spectrum (isomers that spectra cannot tell apart). Compounds numbered in ``exclude`` are generated (the same
    entries come back) but not written: they are compounds absent from the library.
    """
    rng = np.random.default_rng(seed)
    entries, text = [], []
    for k in range(n):
        group = k // 3
        if k % 3 == 0:
            prec = float(rng.uniform(150, 600))
            group_mz = np.sort(rng.uniform(50, prec - 5, rng.integers(8, 30)))
            group_int = rng.uniform(1, 100, group_mz.size).round(2)
        mode = "negative" if group % 10 == 9 else "positive"
        if group % 2 == 1 and k % 3 < 2:
            mz, inten = group_mz, group_int
        else:
            mz = np.sort(rng.uniform(50, prec - 5, rng.integers(8, 30)))
            inten = rng.uniform(1, 100, mz.size).round(2)
        entries.append({"id": f"LIB{k:04d}", "prec": prec, "mode": mode, "mz": mz, "int": inten,
                        "inchikey": inchikey(k), "group": group})
        peaks = "\n".join(f"{m:.5f} {i}" for m, i in zip(mz, inten))
        if k in exclude:
            continue
        text.append(
            f"BEGIN IONS\nTITLE=LIB{k:04d}\nPEPMASS={prec:.5f}\nCHARGE={'1+' if mode == 'positive' else '1-'}\n"
            f"IONMODE={mode}\nADDUCT={'[M+H]+' if mode == 'positive' else '[M-H]-'}\nNAME=compound {k}\n"
            f"FORMULA=C{group + 1}H{4 if k % 3 < 2 else 6}\nSMILES=C\nINCHIKEY={inchikey(k)}\nSPECTRUM_ID=LIB{k:04d}\n"
            f"{peaks}\nEND IONS\n"
        )
    path.write_text("".join(text))
    return entries


def noisy_queries(entries: list[dict], seed: int = 1, n: int = 40) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for k, e in enumerate(entries[:n]):
        keep = rng.random(e["mz"].size) < 0.85
        mz = e["mz"][keep] + rng.normal(0, 0.002, keep.sum())
        inten = e["int"][keep] * rng.uniform(0.7, 1.3, keep.sum())
        rows.append({
            "spectrum_id": f"s1:S{k}", "sample_id": "s1", "scan_index": k, "native_id": f"scan={k}", "rt_s": 10.0 * k,
            "precursor_mz": e["prec"] * (1 + 3e-6), "precursor_charge": 1, "precursor_intensity": 1e5,
            "feature_id": f"s1:F{k}", "mz": mz.tolist(), "intensity": inten.astype(np.float32).tolist(),
            "ion_mode": e["mode"],
        })
    return pl.DataFrame(rows, schema={**tables.SPECTRA, "ion_mode": pl.Utf8})


@pytest.fixture(scope="module")
def lib_dir(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict]]:
    root = tmp_path_factory.mktemp("lib")
    # 600 spectra: enough null searches to resolve p-values near 1/600 (a smaller library cannot certify 1 %).
    entries = make_library(root / "library.mgf", n=600)
    library.index_library(root / "library.mgf", root / "index")
    calibration.calibrate_index(root / "index", {"model": None}).save(root / "calibration.json")
    return root, entries


def test_identifies_noisy_copies(lib_dir: tuple[Path, list[dict]]) -> None:
    root, entries = lib_dir
    spectra = noisy_queries(entries)
    out = engine.annotate_spectra(spectra, root / "index", calibration=root / "calibration.json")
    assert out.columns[: len(tables.ANNOTATIONS)] == list(tables.ANNOTATIONS)
    assert out.schema["q_value"] == pl.Float64 and out.schema["accepted"] == pl.Boolean
    top = out.filter(pl.col("rank") == 1)
    assert top.height == 40
    by_id = {e["id"]: e for e in entries}
    def twin_ids(e: dict) -> set[str]:
        if e["group"] % 2 == 0 or int(e["id"][3:]) % 3 == 2:
            return {e["id"]}
        return {x["id"] for x in entries if x["group"] == e["group"] and int(x["id"][3:]) % 3 < 2}

    twins = {e["id"]: twin_ids(e) for e in entries}
    expected = {f"s1:S{k}": e["id"] for k, e in enumerate(entries[:40])}
    # Every hit is the query's compound, or its isomer twin with the same spectrum.
    assert all(lib in twins[expected[s]] for s, lib in zip(top["spectrum_id"], top["library_id"]))
    assert (top["precursor_error_ppm"] - 3.0).abs().max() < 0.05  # PEPMASS written with 5 decimals
    assert (top["cosine"] > 0.5).all() and (top["entropy"] > 0.5).all() and top["cosine"].median() > 0.85
    assert (top["matched_peaks"] >= 3).all()
    # True matches stand far above the library's null of wrong hits: all accepted at 1 % FDR.
    assert top["accepted"].sum() >= 38 and (top["q_value"] <= 0.01).sum() >= 38
    assert (top["p_value"] < 0.01).all() and top["n_candidates"].min() >= 2
    # Isomers with one spectrum are level 3 naming both structures; no rank-1 of a twin pair is level 2.
    for row in top.iter_rows(named=True):
        if len(twins[row["library_id"]]) == 2:
            assert row["msi_level"] == 3
            assert set(row["isomer_inchikeys"]) >= {by_id[t]["inchikey"] for t in twins[row["library_id"]]}
        elif row["accepted"]:
            assert row["isomer_inchikeys"][0] == by_id[row["library_id"]]["inchikey"]
    # Confidence columns on rank-1 rows only.
    rest = out.filter(pl.col("rank") > 1)
    assert rest["q_value"].is_null().all() and rest["msi_level"].is_null().all() and not rest["accepted"].any()
    # Ranks are 1..k within each spectrum and ordered by the combined score (here every candidate shares 3 peaks).
    for _, grp in out.group_by("spectrum_id"):
        assert grp["rank"].to_list() == list(range(1, grp.height + 1))
        assert grp.sort("rank")["combined"].is_sorted(descending=True)
    assert out.group_by("spectrum_id").len()["len"].max() <= 5


def test_unknown_compounds_are_not_accepted(tmp_path: Path) -> None:
    """Compounds absent from the library (known unknowns, as the calibration assumes them: compounds like the
    library's) never get a name of the wrong formula; the library's compounds still do at 1 % FDR."""
    unknown = frozenset(k for k in range(600) if (k % 3 == 2 and k % 9 == 2) or (k % 3 == 0 and k % 18 == 6))
    entries = make_library(tmp_path / "library.mgf", n=600, exclude=unknown)
    library.index_library(tmp_path / "library.mgf", tmp_path / "index")
    cal = calibration.calibrate_index(tmp_path / "index", {"model": None})
    queries = noisy_queries(entries, n=600).filter(pl.int_range(pl.len()).is_in(
        sorted(unknown)[:40] + [k for k in range(600) if k not in unknown][:60]))
    out = engine.annotate_spectra(queries, tmp_path / "index", calibration=cal)
    top = out.filter(pl.col("rank") == 1)
    truth = {f"s1:S{k}": e for k, e in enumerate(entries)}
    formula_of = {e["id"]: (e["group"], int(e["id"][3:]) % 3 < 2) for e in entries}
    acc = top.filter(pl.col("accepted"))
    from_unknown = acc.filter(pl.col("spectrum_id").is_in([f"s1:S{k}" for k in unknown]))
    # An accepted hit on an unknown should at least have its formula (an isomer), and is then level 3. FDR control
    # allows a rare wrong formula: here one unknown shares 2 of its random peaks with an isobaric compound (cosine
    # 0.03, q 0.003): in this random library sharing even 2 peaks with a wrong compound is rare (p 0.0027), so it
    # is evidence; 1 false of 61 accepted.
    wrong = [r for r in from_unknown.iter_rows(named=True)
             if formula_of[r["library_id"]] != formula_of[truth[r["spectrum_id"]]["id"]]]
    assert len(wrong) <= 1
    assert (from_unknown["msi_level"] == 3).all()
    assert acc.height - from_unknown.height >= 57   # of 60 library compounds
    assert top.filter(pl.col("spectrum_id").is_in([f"s1:S{k}" for k in unknown]))["q_value"].is_not_null().all()


def test_a_missing_or_mismatched_calibration_is_refused(lib_dir: tuple[Path, list[dict]]) -> None:
    root, entries = lib_dir
    spectra = noisy_queries(entries, n=3)
    with pytest.raises(InputError, match="calibration"):
        engine.annotate_spectra(spectra, root / "index")
    with pytest.raises(InputError, match="measured for"):
        engine.annotate_spectra(spectra, root / "index", {"rank_by": "cosine"},
                                  calibration=root / "calibration.json")
    none = engine.annotate_spectra(spectra, root / "index", {"confidence": "none"})
    assert none["q_value"].is_null().all() and not none["accepted"].any()


def test_ion_mode_and_window_filter(lib_dir: tuple[Path, list[dict]]) -> None:
    root, entries = lib_dir
    spectra = noisy_queries(entries, n=20)
    wrong_mode = spectra.with_columns(
        pl.when(pl.col("ion_mode") == "positive")
        .then(pl.lit("negative"))
        .otherwise(pl.lit("positive"))
        .alias("ion_mode")
    )
    out = engine.annotate_spectra(wrong_mode, root / "index", calibration=root / "calibration.json")
    expected = {f"s1:S{k}": e["id"] for k, e in enumerate(entries[:20])}
    assert not any(expected[s] == lib for s, lib in zip(out["spectrum_id"], out["library_id"]))
    # A 1 ppm window excludes the 3 ppm-off true precursor as measured; 0.01 Da includes it. With the run's offset
    # measured on its matches and removed (recalibrate_precursors, the default; 3 ppm or more) a run 6 ppm off
    # is found within the 1 ppm window.
    assert engine.annotate_spectra(spectra, root / "index", {"precursor_tolerance_ppm": 1.0,
                                                             "recalibrate_precursors": False},
                                   calibration=root / "calibration.json").height == 0
    six = spectra.with_columns(pl.col("precursor_mz") * (1 + 3e-6))
    assert engine.annotate_spectra(six, root / "index", {"precursor_tolerance_ppm": 1.0},
                                   calibration=root / "calibration.json").height > 0
    assert engine.annotate_spectra(spectra, root / "index", {"precursor_tolerance_da": 0.01}, calibration=root / "calibration.json").height > 0


def test_find_candidates_binary_search() -> None:
    lib_prec = np.array([100.0, 200.0, 100.0, 100.0005, 100.002, 300.0])
    lib_mode = np.array([-1, -1, 1, 1, 1, 1], dtype=np.int8)
    off, cand = candidates.find_candidates(np.array([100.0, 100.0, 250.0]), np.array([1, -1, 1], dtype=np.int8),
                                         lib_prec, lib_mode, 10.0, None)
    assert [sorted(cand[off[i]:off[i + 1]]) for i in range(3)] == [[2, 3], [0], []]


def test_empty_inputs_and_bad_params(lib_dir: tuple[Path, list[dict]]) -> None:
    root, entries = lib_dir
    spectra = noisy_queries(entries, n=3).with_columns(pl.lit([], dtype=pl.List(pl.Float64)).alias("mz"),
                                                        pl.lit([], dtype=pl.List(pl.Float32)).alias("intensity"))
    out = engine.annotate_spectra(spectra, root / "index", calibration=root / "calibration.json")
    assert out.height == 0 and out.columns[:11] == list(tables.ANNOTATIONS)
    with pytest.raises(InputError, match="top_kk"):
        engine.annotate_spectra(spectra, root / "index", {"top_kk": 3}, calibration=root / "calibration.json")
    with pytest.raises(InputError, match="library index"):
        engine.annotate_spectra(spectra, root / "nowhere")


def test_analogue_mode_with_and_without_embeddings(lib_dir: tuple[Path, list[dict]], tmp_path: Path) -> None:
    root, entries = lib_dir
    spectra = noisy_queries(entries, n=10).with_columns(pl.col("precursor_mz") + 30.0)  # no precursor match
    out = engine.annotate_spectra(spectra, root / "index", {"mode": "analogue", "top_k": 3})
    top = out.filter(pl.col("rank") == 1)
    expected = {f"s1:S{k}": e["id"] for k, e in enumerate(entries[:10])}
    assert sum(expected[s] == lib for s, lib in zip(top["spectrum_id"], top["library_id"])) >= 9
    # With embeddings: copy the index, give it embeddings that point each query at its true compound.
    index = library.load_library_index(root / "index")
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(len(index), 8)).astype(np.float32)
    library.save_library_embeddings(root / "index", "default", emb)
    rows = [index.metadata["library_id"].to_list().index(expected[s]) for s in spectra["spectrum_id"]]
    q_emb = pl.DataFrame({"spectrum_id": spectra["spectrum_id"], "sample_id": "s1", "feature_id": spectra["feature_id"],
                          "embedding": [emb[r].tolist() for r in rows]}, schema=tables.EMBEDDINGS)
    out = engine.annotate_spectra(spectra, root / "index", {"mode": "analogue", "top_k": 3, "confidence": "none"},
                                   embeddings=q_emb)
    top = out.filter(pl.col("rank") == 1)
    assert (top["embedding"] > 0.999).all()
    (root / "index" / "embeddings" / "default.npy").unlink()


def test_q_values_competition() -> None:
    target = np.array([0.9, 0.8, 0.7, 0.6, 0.5, np.nan])
    decoy = np.array([0.1, 0.2, 0.75, 0.1, 0.55, 0.3])
    winners, q = decoys.competition_q_values(target, decoy)
    assert list(winners) == [0.9, 0.8, 0.75, 0.6, 0.55, 0.3]
    np.testing.assert_allclose(q, [0.0, 0.0, 1 / 3, 1 / 3, 2 / 3, 1.0])
    np.testing.assert_allclose(decoys.q_value_of(np.array([0.95, 0.8, 0.6, 0.1]), winners, q), [0, 0, 1 / 3, 1.0])


def test_cli_annotate_and_score(lib_dir: tuple[Path, list[dict]], tmp_path: Path,
                                caplog: pytest.LogCaptureFixture) -> None:
    root, entries = lib_dir
    spectra = noisy_queries(entries, n=12)
    spectra.write_parquet(tmp_path / "spectra.parquet")
    out = tmp_path / "ann.parquet"
    assert cli.main(["annotate", "--spectra", str(tmp_path / "spectra.parquet"), "--library-index", str(root / "index"),
                     "--out", str(out), "--params", '{"top_k": 2}',
                     "--calibration", str(root / "calibration.json")]) == 0
    ann = pl.read_parquet(out)
    assert ann.group_by("spectrum_id").len()["len"].max() <= 2 and ann["spectrum_id"].n_unique() == 12
    # `score` with MGF queries (the library file itself) against the library file, cached index under index-root.
    hits = tmp_path / "hits.parquet"
    caplog.clear()
    with caplog.at_level(logging.INFO):
        assert cli.main(["score", "--queries", str(root / "library.mgf"), "--library", str(root / "library.mgf"),
                         "--out", str(hits), "--top-k", "1", "--index-root", str(tmp_path / "cache")]) == 0
    # the library's entropy-prepared peaks are stored once in the cached index (calibration and annotation each
    # prepared them again, and each logged that they were missing)
    assert "not stored in the library index" not in caplog.text
    assert list((tmp_path / "cache" / "library" / "prepared").iterdir())
    h = pl.read_parquet(hits)
    assert h.columns[: len(search.SCORE_COLUMNS)] == search.SCORE_COLUMNS
    # each query's own name beside its id (a fresh user's MSP queries were known only as "q_tof.msp:7")
    assert all(n == f"compound {int(q[3:])}" for q, n in zip(h["query_id"], h["query_name"])), h.select(
        "query_id", "query_name")
    # Every spectrum finds itself, except that isomer twins with one spectrum may find each other (and then
    # are level 3, naming both).
    twin = {e["id"] for e in entries if e["group"] % 2 == 1 and int(e["id"][3:]) % 3 < 2}
    single = h.filter(~pl.col("query_id").is_in(list(twin)))
    assert (single["query_id"] == single["library_id"]).all()
    assert h.filter(pl.col("query_id").is_in(list(twin)))["library_id"].is_in(list(twin)).all()
    accepted_twins = h.filter(pl.col("query_id").is_in(list(twin)) & pl.col("accepted"))
    assert accepted_twins.height > 0 and (accepted_twins["msi_level"] == 3).all()
    # As in the pipeline: the queries are embedded by the configured encoder, the library too, and the
    # library's calibration is cached in the index folder.
    assert h["embedding"].is_not_null().all()
    index_dir = tmp_path / "cache" / "library"
    assert (index_dir / "manifest.json").exists() and list((index_dir / "calibration").glob("*.json"))
    assert list((index_dir / "embeddings").glob("*.npy"))
    # --params sets what the options leave unset (a fresh user's trial: top_k and the window in --params were
    # silently replaced by the options' defaults); an option given wins over --params
    assert cli.main(["score", "--queries", str(root / "library.mgf"), "--library", str(root / "library.mgf"),
                     "--out", str(hits), "--params", '{"top_k": 2, "precursor_tolerance_ppm": 20}',
                     "--index-root", str(tmp_path / "cache")]) == 0
    assert pl.read_parquet(hits).group_by("query_id").len()["len"].max() == 2
    assert cli.main(["score", "--queries", str(root / "library.mgf"), "--library", str(root / "library.mgf"),
                     "--out", str(hits), "--params", '{"top_k": 2}', "--top-k", "3",
                     "--index-root", str(tmp_path / "cache")]) == 0
    assert pl.read_parquet(hits).group_by("query_id").len()["len"].max() == 3


def test_without_a_library_the_table_is_empty_but_complete(tmp_path: Path) -> None:
    from ms2study.stages.annotate import ANNOTATION_SCHEMA
    from ms2study.cli import main

    spectra = tmp_path / "spectra.parquet"
    pl.DataFrame(schema=tables.SPECTRA).write_parquet(spectra)
    out = tmp_path / "annotations.parquet"
    assert main(["annotate", "--spectra", str(spectra), "--out", str(out)]) == 0
    table = pl.read_parquet(out)
    assert table.height == 0 and table.schema == pl.Schema(ANNOTATION_SCHEMA)


def test_spectra_that_cannot_be_searched_are_named(lib_dir: tuple[Path, list[dict]],
                                                   caplog: pytest.LogCaptureFixture) -> None:
    root, entries = lib_dir
    spectra = noisy_queries(entries, n=4)
    spectra = spectra.with_columns(
        pl.when(pl.col("spectrum_id") == "s1:S1").then(None).otherwise(pl.col("precursor_mz")).alias("precursor_mz"),
        pl.when(pl.col("spectrum_id") == "s1:S2").then(pl.lit([], dtype=pl.List(pl.Float64)))
        .otherwise(pl.col("mz")).alias("mz"),
        pl.when(pl.col("spectrum_id") == "s1:S2").then(pl.lit([], dtype=pl.List(pl.Float32)))
        .otherwise(pl.col("intensity")).alias("intensity"))
    with caplog.at_level("WARNING", logger="ms2study.stages.annotate"):
        out = engine.annotate_spectra(spectra, root / "index", calibration=root / "calibration.json")
    assert set(out["spectrum_id"]) == {"s1:S0", "s1:S3"}
    text = caplog.text
    assert "1 of 4 spectra cannot be searched (no valid precursor m/z): s1:S1" in text
    assert "1 of 4 spectra cannot be searched (no peaks): s1:S2" in text


def test_score_caches_indexes_in_the_user_cache_not_the_current_folder(monkeypatch: pytest.MonkeyPatch,
                                                                        tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert search.default_index_root() == tmp_path / "xdg" / "ms2study" / "library"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert search.default_index_root() == Path.home() / ".cache" / "ms2study" / "library"


def test_a_spectrum_sharing_too_few_fragment_peaks_is_never_identified(lib_dir: tuple[Path, list[dict]],
                                                                        caplog: pytest.LogCaptureFixture) -> None:
    """Trial finding (session 21): random peaks at a library compound's precursor got p < 0.05 (the encoder put
    them at embedding similarity 0.9+ to it). A candidate needs ``min_matched_peaks`` shared fragment peaks to be an
    identification: by default 1 (session 26: a single shared peak is scored against a null that counts such
    candidates too, and never reaches level 2), 2 where a lab wants two."""
    root, entries = lib_dir
    e = next(x for x in entries if x["mode"] == "positive" and x["mz"].size >= 20)
    top = int(np.argmax(e["int"]))
    rng = np.random.default_rng(3)
    base = {"sample_id": "s1", "precursor_charge": 1, "precursor_intensity": 1e5, "feature_id": None,
            "ion_mode": "positive", "precursor_mz": e["prec"]}
    rows = [{**base, "spectrum_id": "one_peak", "scan_index": 0, "native_id": "scan=0", "rt_s": 1.0,
             "mz": [float(e["mz"][top])], "intensity": [float(e["int"][top])]},
            {**base, "spectrum_id": "noise", "scan_index": 1, "native_id": "scan=1", "rt_s": 2.0,
             "mz": np.sort(rng.uniform(50, e["prec"] - 5, 20)).tolist(),
             "intensity": rng.uniform(1, 100, 20).astype(np.float32).tolist()}]
    spectra = pl.DataFrame(rows, schema={**tables.SPECTRA, "ion_mode": pl.Utf8})
    two = calibration.calibrate_index(root / "index", {"model": None, "min_matched_peaks": 2})
    with caplog.at_level("INFO"):
        out = engine.annotate_spectra(spectra, root / "index", {"min_matched_peaks": 2}, calibration=two)
    assert "1 spectra: no candidate in their precursor window shares 2 fragment peaks with them" in caplog.text
    assert "min_matched_peaks): one_peak" in caplog.text
    # the noise spectrum's spectral scores are all 0 (no embeddings here): no row, but named
    assert "1 of 2 spectra have candidates that all score at or below min_score 0 (combined) and get no row: noise" \
        in caplog.text
    top_rows = {r["spectrum_id"]: r for r in out.filter(pl.col("rank") == 1).iter_rows(named=True)}
    assert top_rows["one_peak"]["library_id"] == e["id"] and top_rows["one_peak"]["matched_peaks"] == 1
    assert top_rows["one_peak"]["cosine"] > 0.2  # the base peak alone: a third of the spectrum's norm
    for row in top_rows.values():
        assert not row["accepted"] and row["p_value"] == pytest.approx(1.0)
        assert "fragment peaks with the spectrum" in row["evidence_note"]
    # the calibration is measured for one min_matched_peaks; another setting needs its own
    with pytest.raises(InputError, match="calibration was measured"):
        engine.annotate_spectra(spectra, root / "index", calibration=two)
    out1 = engine.annotate_spectra(spectra, root / "index", calibration=root / "calibration.json")
    hit = out1.filter((pl.col("rank") == 1) & (pl.col("spectrum_id") == "one_peak")).row(0, named=True)
    assert hit["p_value"] < 1.0 and "fragment peaks with the spectrum" not in (hit["evidence_note"] or "")
    assert hit["msi_level"] in (None, 3) and hit["structure_log_lr"] is None  # never level 2
    assert out1.filter(pl.col("spectrum_id") == "noise").is_empty()  # no peak shared, no row


def test_an_identifiable_candidate_ranks_before_a_higher_scoring_one_without_shared_peaks() -> None:
    from ms2study.identification.pairs import _rank_table
    from ms2study.core.flat import FlatSpectra

    queries = FlatSpectra.from_lists([np.array([100.0])], [np.array([1.0], dtype=np.float32)], np.array([300.0]),
                                     np.array([1]), np.array([0]))
    scores = {"cosine": np.array([0.2, 0.6]), "matched_peaks": np.array([4, 0]), "entropy": np.array([0.1, 0.0])}
    frame = _rank_table(queries, None, np.array([0, 2]), np.array([7, 8]), scores,
                        {"rank_by": "combined", "min_score": 0.0, "min_matched_peaks": 2}, np.array([0.3, 0.9]))
    assert frame.sort("rank")["_lib"].to_list() == [7, 8]
    assert frame.sort("rank")["_identifiable"].to_list() == [True, False]


def test_spectra_without_a_candidate_are_named_in_the_log(lib_dir: tuple[Path, list[dict]],
                                                         caplog: pytest.LogCaptureFixture) -> None:
    root, entries = lib_dir
    spectra = noisy_queries(entries, n=3).with_columns(
        pl.when(pl.col("spectrum_id") == "s1:S1").then(pl.lit(999.123)).otherwise(pl.col("precursor_mz"))
        .alias("precursor_mz"))
    with caplog.at_level("WARNING"):
        out = engine.annotate_spectra(spectra, root / "index", calibration=root / "calibration.json")
    assert "s1:S1" not in out["spectrum_id"].to_list()
    assert "1 of 3 spectra have no library candidate" in caplog.text and "s1:S1 (positive 999.1230)" in caplog.text


def test_score_reuses_the_calibration_the_pipeline_wrote_for_a_study_index(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """A fresh user's trial: `ms2study score` against a study's library index recalibrated it (144 s) although the
    pipeline had written results/confidence/<library>.json. It now reuses that file when it was measured with the
    same search and score, and calibrates anew (cached in the index folder) when not."""
    results = tmp_path / "study" / "results"
    make_library(tmp_path / "library.mgf", n=200)
    library.index_library(tmp_path / "library.mgf", results / "library" / "lib")
    written = calibration.calibrate_index(results / "library" / "lib", {"model": None})
    (results / "confidence").mkdir(parents=True)
    written.save(results / "confidence" / "lib.json")
    built = []

    def calibrate_again(index_dir: Path, params: dict):
        built.append(params)
        return written

    monkeypatch.setattr(calibration, "calibrate_index", calibrate_again)
    reused = calibration.cached_calibration(results / "library" / "lib", {"model": None})
    assert not built and reused.scoring == written.scoring and reused.stats == written.stats
    calibration.cached_calibration(results / "library" / "lib", {"model": None, "calibration_queries": 50})
    assert len(built) == 1  # another calibration size: not the pipeline's measurement
    # an index outside a study's results/library never looks for one
    library.index_library(tmp_path / "library.mgf", tmp_path / "elsewhere" / "lib")
    assert calibration.pipeline_calibration(tmp_path / "elsewhere" / "lib", engine.merge_params({"model": None})) is None


def test_calibration_searches_library_spectra_with_a_measured_precursor(lib_dir: tuple[Path, list[dict]]) -> None:
    """A library record's precursor is exact, a sample's is not: the calibration's queries carry an error of sd
    tolerance / 4 ppm (encoder v2's embeddings of exact precursors had made every right hit look surer than a
    measured one), and the stats say how large."""
    from ms2study.identification.calibration import _query_spectra
    from ms2study.library.index import load_library_index

    root, _entries = lib_dir
    index = load_library_index(root / "index")
    rows = np.arange(200)
    exact = np.asarray(index.precursor_mz, dtype=np.float64)[rows]
    measured = _query_spectra(index, rows, np.zeros(200, dtype=bool), 3, precursor_error_ppm=2.5)
    ppm = (measured.precursor_mz / exact - 1.0) * 1e6
    assert 1.8 < ppm.std() < 3.2 and np.abs(ppm).max() < 15
    assert np.array_equal(_query_spectra(index, rows, np.zeros(200, dtype=bool), 3).precursor_mz, exact)
    assert calibration.calibrate_index(root / "index", {"model": None}).stats["precursor_error_ppm"] == 2.5


def test_an_ion_triggered_again_and_again_counts_once_among_the_discoveries(lib_dir: tuple[Path, list[dict]]) -> None:
    """A fresh user's run: one ion fragmented 18 times shrank the q-values of the run's other spectra (q 0.0034 on
    p 0.0056). Spectra mapped to one feature are one unit of the q-values (``confidence.unit_q_values``): copies
    of a spectrum on its own feature leave every other spectrum's q-value as it was; the same copies on features
    of their own (independent ions) lower them, as Benjamini-Hochberg over more discoveries does."""
    root, entries = lib_dir
    spectra = noisy_queries(entries, n=12)
    copies = pl.concat([spectra.slice(0, 1)] * 30).with_columns(
        spectrum_id=pl.format("s1:R{}", pl.int_range(pl.len())),
        scan_index=pl.int_range(1000, 1000 + pl.len()).cast(pl.Int32))
    base = engine.annotate_spectra(spectra, root / "index", calibration=root / "calibration.json")
    repeated = engine.annotate_spectra(pl.concat([spectra, copies]), root / "index",
                                       calibration=root / "calibration.json")
    separate = engine.annotate_spectra(
        pl.concat([spectra, copies.with_columns(feature_id=pl.format("s1:X{}", pl.int_range(pl.len())))]),
        root / "index", calibration=root / "calibration.json")

    def q_of_others(table: pl.DataFrame) -> dict[str, float]:
        top = table.filter((pl.col("rank") == 1) & pl.col("spectrum_id").is_in(spectra["spectrum_id"].to_list()[1:]))
        return dict(zip(top["spectrum_id"].to_list(), top["q_value"].to_list(), strict=True))

    assert q_of_others(repeated) == pytest.approx(q_of_others(base), rel=1e-9)
    shrunk, before = q_of_others(separate), q_of_others(base)
    assert sum(shrunk[k] < 0.9 * v for k, v in before.items()) >= len(before) // 2


def test_a_whole_number_precursor_gets_candidates_but_no_q_value(lib_dir: tuple[Path, list[dict]],
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    """Trial finding: queries and library records of a unit-resolution lab (precursor m/z "146.0") matched other
    formulas' whole-number records exactly and 3 of 22 were accepted with the wrong formula at q <= 0.01 (0 of 275
    with accurate precursors). The null model assumes an accurate precursor: such a query keeps its candidates,
    gets no q-value, is never accepted, and the log names it."""
    root, entries = lib_dir
    spectra = noisy_queries(entries, n=10)
    nominal = pl.Series([float(round(x)) if k < 3 else x for k, x in enumerate(spectra["precursor_mz"])])
    spectra = spectra.with_columns(nominal.alias("precursor_mz"))
    with caplog.at_level("WARNING"):
        out = engine.annotate_spectra(spectra, root / "index", {"precursor_tolerance_da": 0.6},
                                      calibration=root / "calibration.json")
    top = out.filter(pl.col("rank") == 1)
    whole = top.filter(pl.col("spectrum_id").is_in(["s1:S0", "s1:S1", "s1:S2"]))
    assert whole.height == 3 and not whole["accepted"].any() and whole["q_value"].is_null().all()
    assert whole["p_value"].is_null().all() and whole["msi_level"].is_null().all()
    assert (whole["evidence_note"] == engine.NOMINAL_NOTE).all()
    rest = top.filter(~pl.col("spectrum_id").is_in(whole["spectrum_id"].to_list()))
    assert rest.height == 7 and rest["accepted"].sum() >= 6 and rest["q_value"].is_not_null().all()
    assert "3 of 10 query spectra have a whole-number precursor m/z" in caplog.text and "s1:S0" in caplog.text
    whole = engine.nominal_precursor(np.array([146.0, 146.0924, 0.0, 300.000000001]))
    assert whole.tolist() == [True, False, False, True]
