"""Annotate stage and `ms2study score`: candidates, ranking, q-values, CLI, on a generated library."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from ms2study import annotate, cli, decoys, library, tables
from ms2study.errors import InputError


def make_library(path: Path, n: int = 120, seed: int = 0) -> list[dict]:
    """A library of random compounds in the simulator's MGF format; returns the entries."""
    rng = np.random.default_rng(seed)
    entries, text = [], []
    for k in range(n):
        prec = float(rng.uniform(150, 600))
        mode = "negative" if k % 10 == 9 else "positive"
        mz = np.sort(rng.uniform(50, prec - 5, rng.integers(5, 30)))
        inten = rng.uniform(1, 100, mz.size).round(2)
        entries.append({"id": f"LIB{k:04d}", "prec": prec, "mode": mode, "mz": mz, "int": inten})
        peaks = "\n".join(f"{m:.5f} {i}" for m, i in zip(mz, inten))
        text.append(
            f"BEGIN IONS\nTITLE=LIB{k:04d}\nPEPMASS={prec:.5f}\nCHARGE={'1+' if mode == 'positive' else '1-'}\n"
            f"IONMODE={mode}\nADDUCT={'[M+H]+' if mode == 'positive' else '[M-H]-'}\nNAME=compound {k}\n"
            f"FORMULA=C{k + 1}H4\nSMILES=C\nINCHIKEY=AAAAAAAAAAAAAA-BBBBBBBBBB-N\nSPECTRUM_ID=LIB{k:04d}\n"
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
    entries = make_library(root / "library.mgf")
    library.index_library(root / "library.mgf", root / "index")
    return root, entries


def test_identifies_noisy_copies(lib_dir: tuple[Path, list[dict]]) -> None:
    root, entries = lib_dir
    spectra = noisy_queries(entries)
    out = annotate.annotate_spectra(spectra, root / "index")
    assert out.columns[: len(tables.ANNOTATIONS)] == list(tables.ANNOTATIONS)
    assert out.schema["q_value"] == pl.Float64 and out.schema["accepted"] == pl.Boolean
    top = out.filter(pl.col("rank") == 1)
    assert top.height == 40
    expected = {f"s1:S{k}": e["id"] for k, e in enumerate(entries[:40])}
    assert all(expected[s] == lib for s, lib in zip(top["spectrum_id"], top["library_id"]))
    assert (top["precursor_error_ppm"] - 3.0).abs().max() < 0.05  # PEPMASS written with 5 decimals
    assert (top["cosine"] > 0.5).all() and (top["entropy"] > 0.5).all() and top["cosine"].median() > 0.85
    assert (top["matched_peaks"] >= 3).all()
    # Correct hits beat random-fragment decoys: almost all accepted at 1 % FDR.
    assert top["accepted"].sum() >= 38
    assert (top["q_value"] <= 0.01).sum() >= 38
    # Ranks are 1..k within each spectrum and ordered by the combined score.
    for _, grp in out.group_by("spectrum_id"):
        assert grp["rank"].to_list() == list(range(1, grp.height + 1))
        assert grp.sort("rank")["combined"].is_sorted(descending=True)
    assert out.group_by("spectrum_id").len()["len"].max() <= 5


def test_ion_mode_and_window_filter(lib_dir: tuple[Path, list[dict]]) -> None:
    root, entries = lib_dir
    spectra = noisy_queries(entries, n=20)
    wrong_mode = spectra.with_columns(
        pl.when(pl.col("ion_mode") == "positive")
        .then(pl.lit("negative"))
        .otherwise(pl.lit("positive"))
        .alias("ion_mode")
    )
    out = annotate.annotate_spectra(wrong_mode, root / "index")
    expected = {f"s1:S{k}": e["id"] for k, e in enumerate(entries[:20])}
    assert not any(expected[s] == lib for s, lib in zip(out["spectrum_id"], out["library_id"]))
    # A 1 ppm window excludes the 3 ppm-off true precursor; 0.01 Da includes it.
    assert annotate.annotate_spectra(spectra, root / "index", {"precursor_tolerance_ppm": 1.0}).height == 0
    assert annotate.annotate_spectra(spectra, root / "index", {"precursor_tolerance_da": 0.01}).height > 0


def test_find_candidates_binary_search() -> None:
    lib_prec = np.array([100.0, 200.0, 100.0, 100.0005, 100.002, 300.0])
    lib_mode = np.array([-1, -1, 1, 1, 1, 1], dtype=np.int8)
    off, cand = annotate.find_candidates(np.array([100.0, 100.0, 250.0]), np.array([1, -1, 1], dtype=np.int8),
                                         lib_prec, lib_mode, 10.0, None)
    assert [sorted(cand[off[i]:off[i + 1]]) for i in range(3)] == [[2, 3], [0], []]


def test_empty_inputs_and_bad_params(lib_dir: tuple[Path, list[dict]]) -> None:
    root, entries = lib_dir
    spectra = noisy_queries(entries, n=3).with_columns(pl.lit([], dtype=pl.List(pl.Float64)).alias("mz"),
                                                        pl.lit([], dtype=pl.List(pl.Float32)).alias("intensity"))
    out = annotate.annotate_spectra(spectra, root / "index")
    assert out.height == 0 and out.columns[:11] == list(tables.ANNOTATIONS)
    with pytest.raises(InputError, match="top_kk"):
        annotate.annotate_spectra(spectra, root / "index", {"top_kk": 3})
    with pytest.raises(InputError, match="library index"):
        annotate.annotate_spectra(spectra, root / "nowhere")


def test_analogue_mode_with_and_without_embeddings(lib_dir: tuple[Path, list[dict]], tmp_path: Path) -> None:
    root, entries = lib_dir
    spectra = noisy_queries(entries, n=10).with_columns(pl.col("precursor_mz") + 30.0)  # no precursor match
    out = annotate.annotate_spectra(spectra, root / "index", {"mode": "analogue", "top_k": 3})
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
    out = annotate.annotate_spectra(spectra, root / "index", {"mode": "analogue", "top_k": 3}, embeddings=q_emb)
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


def test_cli_annotate_and_score(lib_dir: tuple[Path, list[dict]], tmp_path: Path) -> None:
    root, entries = lib_dir
    spectra = noisy_queries(entries, n=12)
    spectra.write_parquet(tmp_path / "spectra.parquet")
    out = tmp_path / "ann.parquet"
    assert cli.main(["annotate", "--spectra", str(tmp_path / "spectra.parquet"), "--library-index", str(root / "index"),
                     "--out", str(out), "--params", '{"top_k": 2}']) == 0
    ann = pl.read_parquet(out)
    assert ann.group_by("spectrum_id").len()["len"].max() <= 2 and ann["spectrum_id"].n_unique() == 12
    # `score` with MGF queries (the library file itself) against the library file, cached index under index-root.
    hits = tmp_path / "hits.parquet"
    assert cli.main(["score", "--queries", str(root / "library.mgf"), "--library", str(root / "library.mgf"),
                     "--out", str(hits), "--top-k", "1", "--index-root", str(tmp_path / "cache")]) == 0
    h = pl.read_parquet(hits)
    assert h.columns[: len(annotate.SCORE_COLUMNS)] == annotate.SCORE_COLUMNS
    assert (h["query_id"] == h["library_id"]).mean() > 0.95
    assert (tmp_path / "cache" / "library" / "manifest.json").exists()


def test_without_a_library_the_table_is_empty_but_complete(tmp_path: Path) -> None:
    from ms2study.annotate import ANNOTATION_SCHEMA
    from ms2study.cli import main

    spectra = tmp_path / "spectra.parquet"
    pl.DataFrame(schema=tables.SPECTRA).write_parquet(spectra)
    out = tmp_path / "annotations.parquet"
    assert main(["annotate", "--spectra", str(spectra), "--out", str(out)]) == 0
    table = pl.read_parquet(out)
    assert table.height == 0 and table.schema == pl.Schema(ANNOTATION_SCHEMA)
