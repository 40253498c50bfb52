"""The embed stage: peak selection, batching, determinism, null embeddings, CLI, library embeddings, real spectra."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys

import numpy as np
import polars as pl
import pytest
import torch

from ms2study.encoder import inference as embed
from ms2study.core.errors import InputError
from ms2study.core.tables import EMBEDDINGS, SPECTRA, conform

PLACEHOLDER = {"model": None, "seed": 0}


def spectra_table(n: int = 40, seed: int = 1, sample: str = "s1") -> pl.DataFrame:
    """A spectra table with varied peak counts, one spectrum without peaks and some unmapped spectra."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        k = 0 if i == 5 else int(rng.integers(1, 90))
        precursor = float(rng.uniform(150, 900))
        mz = np.sort(rng.uniform(50, precursor - 2, k))
        rows.append({
            "spectrum_id": f"{sample}:S{i}", "sample_id": sample, "scan_index": i, "native_id": f"scan={i}",
            "rt_s": 10.0 + i, "precursor_mz": precursor, "precursor_charge": 1,
            "precursor_intensity": float(rng.uniform(1e4, 1e7)),
            "feature_id": None if i % 4 == 3 else f"{sample}:F{i}",
            "mz": mz.tolist(), "intensity": rng.uniform(1, 1000, k).astype(np.float32).tolist(),
        })
    return conform(pl.DataFrame(rows, schema_overrides=SPECTRA), SPECTRA)


def test_select_peaks_keeps_most_intense_relative_to_base_peak() -> None:
    mz = np.array([100.0, 200.0, 300.0, 400.0, 50.0, np.nan, 60.0])
    inten = np.array([5.0, 20.0, 10.0, 1.0, 3.0, 9.0, -1.0])
    offsets = np.array([0, 4, 4, 7])  # spectrum 1 is empty; spectrum 2 has one valid peak
    sel_mz, rel, new_offsets = embed.select_peaks(mz, inten, offsets, max_peaks=2)
    assert new_offsets.tolist() == [0, 2, 2, 3]
    assert sel_mz.tolist() == [200.0, 300.0, 50.0]
    assert rel.tolist() == [1.0, 0.5, 1.0]


def _select_peaks_by_sorting(mz, intensity, offsets, max_peaks):
    """Reference: one stable lexsort over all peaks (the first implementation), for the numba kernel to match."""
    mz, intensity = np.asarray(mz, dtype=np.float64), np.asarray(intensity, dtype=np.float64)
    n = offsets.shape[0] - 1
    spectrum = np.repeat(np.arange(n), np.diff(offsets))
    valid = np.isfinite(mz) & np.isfinite(intensity) & (mz > 0) & (intensity > 0)
    mz, intensity, spectrum = mz[valid], intensity[valid], spectrum[valid]
    order = np.lexsort((-intensity, spectrum))
    mz, intensity, spectrum = mz[order], intensity[order], spectrum[order]
    counts = np.bincount(spectrum, minlength=n)
    rank = np.arange(spectrum.size) - np.concatenate(([0], np.cumsum(counts)[:-1]))[spectrum]
    keep = rank < max_peaks
    mz, intensity, spectrum = mz[keep], intensity[keep], spectrum[keep]
    new_offsets = np.concatenate(([0], np.cumsum(np.minimum(counts, max_peaks))))
    base = np.ones(n)
    has = np.diff(new_offsets) > 0
    base[has] = intensity[new_offsets[:-1][has]]
    return mz, (intensity / base[spectrum]).astype(np.float32), new_offsets


def test_select_peaks_matches_a_stable_sort_with_ties_gaps_and_invalid_peaks() -> None:
    rng = np.random.default_rng(5)
    lengths = rng.integers(0, 90, 500)
    offsets = np.concatenate(([0], np.cumsum(lengths)))
    mz = rng.uniform(50, 900, offsets[-1])
    inten = rng.integers(0, 40, offsets[-1]).astype(np.float32)  # many ties and zeros
    mz[rng.random(mz.size) < 0.02] = np.nan
    inten[rng.random(inten.size) < 0.02] = np.inf
    for max_peaks in (1, 16, 64):
        got = embed.select_peaks(mz, inten, offsets, max_peaks)
        want = _select_peaks_by_sorting(mz, inten, offsets, max_peaks)
        for g, w in zip(got, want):
            assert np.array_equal(g, w)


@pytest.mark.parametrize("limit", [0, 10**9], ids=["numba", "numpy"])
def test_select_peaks_numba_and_numpy_paths_give_the_same_bytes(limit: int, monkeypatch) -> None:
    """Small inputs take the numpy sort (no numba start-up in an embed job), large ones the numba kernels: both
    must give the same arrays, dtypes included, or an embedding would depend on the sample's size."""
    monkeypatch.setattr(embed, "NUMPY_SELECT_MAX_PEAKS", limit)
    rng = np.random.default_rng(11)
    lengths = rng.integers(0, 70, 300)
    lengths[:3] = 0  # empty spectra first, and one at the end
    lengths[-1] = 0
    offsets = np.concatenate(([0], np.cumsum(lengths)))
    mz = rng.uniform(50, 900, offsets[-1])
    inten = rng.integers(0, 30, offsets[-1]).astype(np.float32) * np.float32(1.37)
    mz[rng.random(mz.size) < 0.03] = -1.0
    inten[rng.random(inten.size) < 0.02] = np.nan
    for max_peaks in (1, 7, 64, 500):
        got = embed.select_peaks(mz, inten, offsets, max_peaks)
        want = _select_peaks_by_sorting(mz, inten, offsets, max_peaks)
        for g, w, dtype in zip(got, want, (np.float64, np.float32, np.int64)):
            assert g.dtype == dtype
            assert g.tobytes() == np.asarray(w, dtype=dtype).tobytes()
    empty = embed.select_peaks(np.empty(0), np.empty(0), np.zeros(1, dtype=np.int64), 4)
    assert [a.shape for a in empty] == [(0,), (0,), (1,)]


def test_params_are_checked() -> None:
    with pytest.raises(InputError, match="unknown embed parameter 'batchsize'"):
        embed.merge_params({"batchsize": 3})
    with pytest.raises(InputError, match="precision"):
        embed.merge_params({"precision": "int4"})
    with pytest.raises(InputError, match="checkpoint folder does not exist"):
        embed.get_model({"model": "/nonexistent/encoder"})


def test_auto_precision_follows_the_cpu(monkeypatch) -> None:
    expected = torch.bfloat16 if embed.cpu_supports_bf16() else None
    assert embed.resolve_precision("auto", torch.device("cpu")) is expected
    assert embed.resolve_precision("fp32", torch.device("cpu")) is None
    cpu = torch.device("cpu")
    assert embed.resolve_mode("auto", cpu) == ("bf16" if embed.cpu_supports_bf16() else "int8")
    monkeypatch.setattr(embed, "cpu_supports_bf16", lambda: False)
    assert embed.resolve_mode("auto", cpu) == "int8"
    monkeypatch.setattr(embed, "cpu_supports_bf16", lambda: True)
    assert embed.resolve_mode("auto", cpu) == "bf16"
    assert embed.resolve_mode("fp32", cpu) == "fp32"
    with pytest.raises(InputError, match="int8 is a CPU path"):
        embed.resolve_mode("int8", torch.device("cuda"))


def test_auto_precision_on_cuda_is_fp32() -> None:
    """Measured on an H200 (session 35): bf16/fp16 autocast cost each fresh embed process 2.5-4 s more for one
    sample's spectra and were no faster once warm, so ``auto`` is fp32 on CUDA; bf16 and fp16 stay on request."""
    cuda = torch.device("cuda")  # resolving a mode touches no GPU
    assert embed.resolve_mode("auto", cuda) == "fp32" and embed.resolve_precision("auto", cuda) is None
    assert embed.resolve_mode("bf16", cuda) == "bf16" and embed.resolve_mode("fp16", cuda) == "fp16"


def random_spectra(n: int, seed: int, min_peaks: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``n`` spectra as flat arrays (mz, intensity, offsets, precursor_mz): log-normal peak counts (median 15, at
    least ``min_peaks``), peaks below the precursor, Pareto intensities."""
    rng = np.random.default_rng(seed)
    counts = np.clip(rng.lognormal(np.log(15), 1.0, n).astype(np.int64), min_peaks, 300)
    precursor = rng.uniform(100, 900, counts.size)
    offsets = np.concatenate(([0], np.cumsum(counts)))
    mz = rng.uniform(0.05, 0.98, offsets[-1]) * np.repeat(precursor, counts)
    intensity = (rng.pareto(1.5, offsets[-1]) + 1e-3).astype(np.float32)
    return mz, intensity, offsets, precursor


def test_int8_stays_within_1e3_cosine_of_fp32_and_restores_the_fast_path() -> None:
    """The shipped encoder, int8 feed-forward layers against fp32, on simulated spectra of varied peak counts."""
    args = random_spectra(400, seed=4, min_peaks=1)
    cpu = {"device": "cpu", "batch_size": 64}
    e32, has, _ = embed.embed_arrays(*args, dict(cpu, precision="fp32"))
    e8, _, info = embed.embed_arrays(*args, dict(cpu, precision="int8"))
    again, _, _ = embed.embed_arrays(*args, dict(cpu, precision="int8"))
    assert info["precision"] == "int8" and has.all()
    model, _, _ = embed.get_model(dict(cpu, precision="int8"))
    assert type(model.transformer.layers[0].linear1).__module__.startswith("torch.ao.nn.quantized")
    cosine = (e32 * e8).sum(axis=1)
    assert 1 - cosine.min() < 1e-3
    assert not np.array_equal(e32, e8)  # the quantised path really ran
    assert np.array_equal(e8, again)  # deterministic, like fp32
    assert torch.backends.mha.get_fastpath_enabled()


def test_embed_spectra_table_nulls_norms_and_order() -> None:
    spectra = spectra_table()
    out = embed.embed_spectra(spectra, dict(PLACEHOLDER, batch_size=8, max_peaks=32))
    assert out.columns[: len(EMBEDDINGS)] == list(EMBEDDINGS)
    assert out.schema["embedding"] == pl.List(pl.Float32)
    assert out["spectrum_id"].to_list() == spectra["spectrum_id"].to_list()
    assert out["feature_id"].to_list() == spectra["feature_id"].to_list()
    assert out["embedding"].null_count() == 1 and out["embedding"][5] is None  # the spectrum without peaks
    matrix = np.stack(out["embedding"].drop_nulls().to_list())
    assert matrix.shape == (39, 256)
    np.testing.assert_allclose(np.linalg.norm(matrix, axis=1), 1.0, atol=1e-5)
    assert out["model_trained"].unique().to_list() == [False]
    assert out["model_id"][0].startswith("untrained-seed0-")


def test_cpu_embeddings_are_deterministic_and_batch_independent() -> None:
    spectra = spectra_table(n=30, seed=2)
    a = embed.embed_spectra(spectra, dict(PLACEHOLDER, batch_size=7))
    b = embed.embed_spectra(spectra, dict(PLACEHOLDER, batch_size=7))
    bytes_a = np.stack(a["embedding"].drop_nulls().to_list()).tobytes()
    assert bytes_a == np.stack(b["embedding"].drop_nulls().to_list()).tobytes()
    # Other batch sizes pad differently; in fp32 the vectors agree to rounding, in bf16 closely.
    fp32_a = embed.embed_spectra(spectra, dict(PLACEHOLDER, batch_size=7, precision="fp32"))
    fp32_b = embed.embed_spectra(spectra, dict(PLACEHOLDER, batch_size=1, precision="fp32"))
    ma = np.stack(fp32_a["embedding"].drop_nulls().to_list())
    mb = np.stack(fp32_b["embedding"].drop_nulls().to_list())
    np.testing.assert_allclose(ma, mb, atol=2e-5)
    cos = (np.stack(a["embedding"].drop_nulls().to_list()) * ma).sum(axis=1)
    assert cos.min() > 0.999


def test_max_peaks_limits_what_the_model_sees() -> None:
    spectra = spectra_table(n=12, seed=3)
    # Adding a weak peak beyond the top-N must not change anything; with room for it, it must.
    extra = spectra.with_columns(
        pl.col("mz").list.concat(pl.lit([49.0])),
        pl.col("intensity").list.concat(pl.lit([1e-3], dtype=pl.List(pl.Float32))),
    )
    params = dict(PLACEHOLDER, max_peaks=8, precision="fp32")
    base = embed.embed_spectra(spectra, params)["embedding"].to_list()
    more = embed.embed_spectra(extra, params)["embedding"].to_list()
    full = [len(m) >= 8 for m in spectra["mz"].to_list()]
    for b, m, is_full in zip(base, more, full, strict=True):
        if is_full:
            np.testing.assert_allclose(b, m, atol=1e-5)
        elif b is not None:
            assert not np.allclose(b, m, atol=1e-5)


def test_mismatched_peak_lists_are_reported() -> None:
    spectra = spectra_table(n=3).with_columns(pl.Series("intensity", [[1.0], [1.0], [1.0]], dtype=pl.List(pl.Float32)))
    with pytest.raises(InputError, match="m/z values but"):
        embed.embed_spectra(spectra, PLACEHOLDER)


def test_cli_writes_table_and_info(tmp_path, repo) -> None:
    spectra_path = tmp_path / "spectra.parquet"
    spectra_table(n=10).write_parquet(spectra_path)
    out = tmp_path / "out" / "embeddings.parquet"
    info = tmp_path / "out" / "embeddings.json"
    env = dict(os.environ, PYTHONPATH=str(repo / "workflow"))
    cmd = [sys.executable, "-m", "ms2study", "embed", "--spectra", str(spectra_path), "--out", str(out),
           "--threads", "1", "--info", str(info), "--params", '{"model": null, "batch_size": 4}']
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    table = pl.read_parquet(out)
    assert table.height == 10 and table["embedding"].null_count() == 1  # spectrum 5 has no peaks
    assert '"trained": false' in info.read_text()
    assert sorted(p.name for p in out.parent.iterdir()) == ["embeddings.json", "embeddings.parquet"]
    bad = subprocess.run(cmd[:-1] + ['{"modle": null}'], env=env, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1 and "unknown embed parameter 'modle'" in bad.stderr


def test_embed_library_index(tmp_path) -> None:
    from ms2study.library.index import index_library, load_library_index

    mgf = tmp_path / "lib.mgf"
    mgf.write_text(
        "BEGIN IONS\nNAME=a\nPEPMASS=195.0877\nCHARGE=1+\nIONMODE=positive\n138.0662 100\n110.0713 20\nEND IONS\n"
        "BEGIN IONS\nNAME=b\nPEPMASS=181.0720\nCHARGE=1+\nIONMODE=positive\n124.0505 100\n96.0556 40\nEND IONS\n"
    )
    index_library([mgf], tmp_path / "idx")
    model_id, path = embed.embed_library(tmp_path / "idx", PLACEHOLDER)
    emb = load_library_index(tmp_path / "idx").embeddings(model_id)
    assert emb is not None and emb.shape == (2, 256)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    assert path.exists()
    # A second call reuses the stored matrix.
    assert embed.embed_library(tmp_path / "idx", PLACEHOLDER)[0] == model_id


def test_real_massbank_spectra(shared_data) -> None:
    """On 600 real spectra: bf16 agrees with fp32, and spectra of one compound are closer than of different ones."""
    from ms2study.io.formats import read_library_file
    from ms2study.library.build import build_library

    path = shared_data / "massbank" / "massbank_dev.mgf.gz"
    built = build_library(itertools.islice(read_library_file(path), 600))
    args = (built.mz, built.intensity, built.offsets, built.precursor_mz)
    e32, has, _ = embed.embed_arrays(*args, dict(PLACEHOLDER, precision="fp32"))
    # bf16 on the first 150 (a CPU without native bf16 emulates it: 600 spectra took 21 s of the suite's time)
    first = build_library(itertools.islice(read_library_file(path), 150))
    few = (first.mz, first.intensity, first.offsets, first.precursor_mz)
    f32, _, _ = embed.embed_arrays(*few, dict(PLACEHOLDER, precision="fp32"))
    e16, _, info = embed.embed_arrays(*few, dict(PLACEHOLDER, precision="bf16"))
    assert has.all() and info["n_spectra"] == len(first.precursor_mz) > 100
    assert (f32 * e16).sum(axis=1).min() > 0.999
    # The shipped encoder's int8 CPU path (what auto picks without native bf16) agrees with its fp32 to 1e-3.
    t32, _, _ = embed.embed_arrays(*args, {"device": "cpu", "precision": "fp32"})
    t8, _, _ = embed.embed_arrays(*args, {"device": "cpu", "precision": "int8"})
    assert 1 - (t32 * t8).sum(axis=1).min() < 1e-3
    key = built.metadata["inchikey"].str.slice(0, 14).to_numpy()
    sims = e32 @ e32.T
    same = key[:, None] == key[None, :]
    np.fill_diagonal(same, False)
    other = ~same
    np.fill_diagonal(other, False)
    assert same.sum() > 100
    assert sims[same].mean() > sims[other].mean() + 0.05


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU (torch.cuda.is_available() is False)")
def test_cuda_embeddings_agree_with_the_cpu() -> None:
    """The CUDA path (pinned copies, gathered results) gives the CPU's fp32 embeddings, in the same row order."""
    args = random_spectra(3000, seed=7, min_peaks=0)  # some without peaks
    cpu, has, _ = embed.embed_arrays(*args, {"device": "cpu", "precision": "fp32", "batch_size": 128})
    for precision, tolerance in (("fp32", 1e-4), ("auto", 1e-4), ("bf16", 1e-2), ("fp16", 1e-3)):
        gpu, gpu_has, info = embed.embed_arrays(*args, {"device": "cuda", "precision": precision,
                                                         "batch_size": 512})
        assert info["device"].startswith("cuda") and info["precision"] == precision.replace("auto", "fp32")
        assert np.array_equal(has, gpu_has) and (~has).sum() > 0
        assert not gpu[~has].any()
        assert 1 - (cpu[has] * gpu[has]).sum(axis=1).min() < tolerance, precision


def test_the_shipped_encoder_barely_moves_a_spectrum_for_a_measured_precursor_error() -> None:
    """A sample's precursor m/z carries the instrument's error, a library record's does not. The shipped encoder
    v2, trained on exact precursors, moved in-silico spectra to a median cosine of 0.93 (minimum 0.73) of themselves
    for a 3 ppm error; v3, trained with precursor errors (train augment precursor_error_ppm), keeps 0.98 (0.93)."""
    from rdkit import Chem
    from rdkit.Chem.Descriptors import ExactMolWt

    from ms2study.simulate.compounds import load_compounds
    from ms2study.simulate.fragment import predict_spectrum

    mzs, ints, precursor = [], [], []
    for smiles in load_compounds()["smiles"].to_list()[:120]:
        mz, intensity = predict_spectrum(smiles, "[M+H]+")
        ion = ExactMolWt(Chem.MolFromSmiles(smiles)) + 1.007276
        keep = mz < ion - 0.5
        if keep.sum() >= 3:
            mzs.append(mz[keep])
            ints.append(intensity[keep])
            precursor.append(ion)
    offsets = np.concatenate([[0], np.cumsum([m.size for m in mzs])])
    args = (np.concatenate(mzs), np.concatenate(ints), offsets)
    cpu = {"device": "cpu", "precision": "fp32"}
    exact, has, info = embed.embed_arrays(*args, np.asarray(precursor), cpu)
    measured, _, _ = embed.embed_arrays(*args, np.asarray(precursor) * (1 + 3e-6), cpu)
    cosine = (exact * measured).sum(axis=1)[has]
    assert info["trained"] and has.sum() >= 100
    assert np.median(cosine) >= 0.97 and cosine.min() >= 0.9, (np.median(cosine), cosine.min())


def test_a_job_given_a_gpu_that_torch_cannot_use_says_so(monkeypatch: pytest.MonkeyPatch,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    """Trial on SLURM: embed jobs got a GPU (gres:gpu:1) and a CPU build of torch embedded on the CPU, unsaid."""
    import torch

    from ms2study.encoder import inference

    if torch.cuda.is_available():
        pytest.skip("torch sees a GPU here: the warning is for jobs where it does not")
    for name in ("CUDA_VISIBLE_DEVICES", "SLURM_STEP_GPUS", "SLURM_JOB_GPUS"):
        monkeypatch.delenv(name, raising=False)
    with caplog.at_level("WARNING", logger="ms2study.encoder.inference"):
        assert inference.resolve_device("auto").type == "cpu"
    assert not caplog.records  # no GPU given: nothing to say
    monkeypatch.setenv("SLURM_JOB_GPUS", "0")
    with caplog.at_level("WARNING", logger="ms2study.encoder.inference"):
        assert inference.resolve_device("auto").type == "cpu"
    assert "given a GPU (SLURM_JOB_GPUS=0)" in caplog.text and "embedding on the CPU" in caplog.text
    assert ("CPU build" in caplog.text) == (torch.version.cuda is None)
