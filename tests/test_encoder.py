"""The spectrum encoder: m/z resolution, masking, set invariance, seeded placeholder, checkpoint checks."""

from __future__ import annotations

import json
import math

import pytest
import torch

from ms2study import __version__
from ms2study.encoder.model import (
    CONFIG_FILE,
    FORMAT_VERSION,
    WEIGHTS_FILE,
    EncoderConfig,
    FourierMz,
    build_encoder,
    load_encoder,
    save_encoder,
)
from ms2study.core.errors import InputError

SMALL = EncoderConfig(d_model=32, n_layers=2, n_heads=4, d_ff=64, dim=16, n_fourier=16)


def batch(peaks: list[list[tuple[float, float]]], precursors: list[float]) -> tuple[torch.Tensor, ...]:
    width = max(len(p) for p in peaks)
    mz = torch.zeros(len(peaks), width, dtype=torch.float64)
    inten = torch.zeros(len(peaks), width)
    mask = torch.zeros(len(peaks), width, dtype=torch.bool)
    for i, spectrum in enumerate(peaks):
        for j, (m, x) in enumerate(spectrum):
            mz[i, j], inten[i, j], mask[i, j] = m, x, True
    return mz, inten, torch.tensor(precursors, dtype=torch.float64), mask


def test_fourier_features_resolve_sub_millidalton_at_high_mass() -> None:
    fourier = FourierMz(32, 1e-3, 1e4)
    a, b = fourier(torch.tensor([1000.0000, 1000.0005], dtype=torch.float64))
    # Half a millidalton is half a period of the finest wavelength: that sine/cosine pair flips sign.
    assert (a - b).abs().max() > 1.0
    # A float32 phase would be off by about a radian at this mass and wavelength; the float64 one is exact.
    expected = math.sin(2 * math.pi * ((1000.0005 / 1e-3) % 1.0))
    assert abs(float(b[0]) - expected) < 1e-4
    same = fourier(torch.tensor([1000.0000, 1000.0000], dtype=torch.float64))
    assert torch.equal(same[0], same[1])
    assert torch.allclose(a.pow(2)[:32] + a.pow(2)[32:], torch.ones(32), atol=1e-5)  # sin^2 + cos^2


def test_embeddings_are_unit_length_and_ignore_padding_and_peak_order() -> None:
    model = build_encoder(SMALL, seed=3)
    peaks = [(91.0542, 0.4), (119.0491, 1.0), (65.0386, 0.1)]
    mz, inten, prec, mask = batch([peaks, peaks[::-1], peaks[:2]], [150.0550] * 3)
    with torch.inference_mode():
        out = model(mz, inten, prec, mask)
        # Garbage in padded positions must not leak through the mask.
        mz2, inten2 = mz.clone(), inten.clone()
        mz2[2, 2], inten2[2, 2] = 777.7, 0.9
        out2 = model(mz2, inten2, prec, mask)
    assert out.shape == (3, 16)
    assert torch.allclose(out.norm(dim=1), torch.ones(3), atol=1e-5)
    assert torch.allclose(out[0], out[1], atol=1e-5)      # peaks are a set: order does not matter
    assert torch.allclose(out[2], out2[2], atol=1e-6)
    assert not torch.allclose(out[0], out[2], atol=1e-3)  # dropping a peak changes the embedding


def test_model_sees_sub_millidalton_shift_and_precursor() -> None:
    model = build_encoder(SMALL, seed=0)
    base = [(91.0542, 0.4), (119.0491, 1.0)]
    shifted = [(91.0542, 0.4), (119.0496, 1.0)]  # +0.5 mDa on one fragment
    mz, inten, prec, mask = batch([base, shifted, base], [150.0550, 150.0550, 152.0706])
    with torch.inference_mode():
        out = model(mz, inten, prec, mask)
    assert not torch.equal(out[0], out[1])
    assert (out[0] - out[1]).abs().max() > 1e-4
    assert (out[0] - out[2]).abs().max() > 1e-4


def test_unknown_precursor_is_accepted() -> None:
    model = build_encoder(SMALL, seed=0)
    mz, inten, _prec, mask = batch([[(91.0542, 1.0)]], [0.0])
    with torch.inference_mode():
        out = model(mz, inten, torch.tensor([math.nan], dtype=torch.float64), mask)
    assert torch.isfinite(out).all()


def test_placeholder_is_seeded_and_says_untrained() -> None:
    m1, cfg, info = load_encoder(None, seed=7)
    m2, _, info2 = load_encoder(None, seed=7)
    m3, _, info3 = load_encoder(None, seed=8)
    s1, s2, s3 = m1.state_dict(), m2.state_dict(), m3.state_dict()
    assert all(torch.equal(s1[k], s2[k]) for k in s1)
    assert not torch.equal(s1["head.weight"], s3["head.weight"])
    assert info["trained"] is False and "UNTRAINED" in info["description"]
    assert info["model_id"] == info2["model_id"] != info3["model_id"]
    assert cfg == EncoderConfig()
    assert not m1.training


def test_checkpoint_roundtrip(tmp_path) -> None:
    model = build_encoder(SMALL, seed=5)
    save_encoder(model, tmp_path / "m", name="tiny", training={"epochs": 1})
    meta = json.loads((tmp_path / "m" / CONFIG_FILE).read_text())
    assert meta["format_version"] == FORMAT_VERSION and meta["ms2study_version"] == __version__
    loaded, cfg, info = load_encoder(tmp_path / "m", seed=99)  # the seed must not matter for a checkpoint
    assert cfg == SMALL and info["trained"] is True and info["model_id"].startswith("tiny-")
    mz, inten, prec, mask = batch([[(91.0542, 0.4), (119.0491, 1.0)]], [150.0550])
    with torch.inference_mode():
        assert torch.equal(model(mz, inten, prec, mask), loaded(mz, inten, prec, mask))
    assert not list(tmp_path.glob("m/.*tmp"))


def test_checkpoint_mismatches_are_refused(tmp_path) -> None:
    save_encoder(build_encoder(SMALL, seed=0), tmp_path / "m")
    config_path = tmp_path / "m" / CONFIG_FILE
    meta = json.loads(config_path.read_text())

    config_path.write_text(json.dumps(dict(meta, format_version=FORMAT_VERSION + 1)))
    with pytest.raises(InputError, match="format version"):
        load_encoder(tmp_path / "m")

    config_path.write_text(json.dumps(dict(meta, architecture=dict(meta["architecture"], d_ff=128))))
    with pytest.raises(InputError, match=r"shape .* expected"):
        load_encoder(tmp_path / "m")

    config_path.write_text(json.dumps(dict(meta, architecture=dict(meta["architecture"], rotary=True))))
    with pytest.raises(InputError, match="unknown encoder architecture key"):
        load_encoder(tmp_path / "m")

    (tmp_path / "m" / WEIGHTS_FILE).unlink()
    with pytest.raises(InputError, match="model.safetensors is missing"):
        load_encoder(tmp_path / "m")


def test_bad_architecture_is_refused() -> None:
    with pytest.raises(InputError, match="divisible"):
        EncoderConfig(d_model=30, n_heads=4)


def test_structure_split_is_stable_and_proportional() -> None:
    from ms2study.encoder.splits import assign_split

    blocks = [f"{i:014d}" for i in range(4000)]
    splits = [assign_split(b, 0, 0.1, 0.1) for b in blocks]
    assert splits == [assign_split(b, 0, 0.1, 0.1) for b in blocks]
    assert 300 < splits.count("test") < 500 and 300 < splits.count("val") < 500
    assert splits != [assign_split(b, 1, 0.1, 0.1) for b in blocks]


def _training_library(path, with_negative_mode: bool = False):
    """24 structures x 2 spectra, four structures per formula (isomer groups); SMILES on every entry."""
    import numpy as np

    rng = np.random.default_rng(0)
    smiles = ["CCO", "CCCO", "CC(C)O", "OCCO", "CC(=O)O", "c1ccccc1O"]
    entries = []
    for c in range(24):
        block = "".join(chr(65 + (c * 7 + j) % 26) for j in range(14))
        formula = f"C{6 + c % 6}H10O2"  # four structures per formula: isomer groups
        precursor = 120.0 + 14.01565 * (c % 6) + 0.001 * c
        fragments = rng.uniform(50, precursor - 5, 8)
        for s in range(2):
            peaks = "\n".join(f"{m + rng.normal(0, 1e-4):.5f} {rng.uniform(5, 100):.1f}" for m in fragments)
            entries.append(
                f"BEGIN IONS\nNAME=c{c}\nPEPMASS={precursor}\nCHARGE=1+\nIONMODE=positive\nFORMULA={formula}\n"
                f"SMILES={smiles[c % 6]}\nINCHIKEY={block}-UHFFFAOYSA-N\n"
                f"LICENSE={'CC BY' if s == 0 or c % 5 else 'CC BY-NC'}\n{peaks}\nEND IONS\n"
            )
        if with_negative_mode:  # the same structure as [M-H]-: another precursor species
            peaks = "\n".join(f"{m:.5f} 50" for m in fragments[:4] - 2.0)
            entries.append(
                f"BEGIN IONS\nNAME=c{c}\nPEPMASS={precursor - 2.01456}\nCHARGE=1-\nIONMODE=negative\n"
                f"FORMULA={formula}\nINCHIKEY={block}-UHFFFAOYSA-N\nLICENSE=CC0\n{peaks}\nEND IONS\n"
            )
    path.write_text("".join(entries))
    return path


TINY_TRAIN = {"max_steps": 3, "batch_compounds": 8, "warmup_steps": 1, "log_every": 1, "device": "cpu",
              "architecture": {"d_model": 32, "n_layers": 1, "n_heads": 4, "d_ff": 64, "dim": 16},
              "val_fraction": 0.25, "test_fraction": 0.25}


def test_train_writes_a_loadable_checkpoint(tmp_path) -> None:
    """A few steps on a synthetic library with isomers: checkpoint, training record and split come out."""
    import polars as pl

    from ms2study.encoder.training import train

    library = _training_library(tmp_path / "lib.mgf")
    record = train([library], tmp_path / "model", TINY_TRAIN)
    losses = [h["loss"] for h in record["history"] if "loss" in h]
    assert len(losses) == 3 and all(math.isfinite(x) for x in losses)
    assert record["n_isomer_groups_train"] >= 1
    counts = record["split"]["counts"]
    # CC BY-NC spectra are left out by default: 24 structures x 2 spectra minus the 5 non-commercial ones.
    assert sum(v["spectra"] for v in counts.values()) == 43
    model, cfg, info = load_encoder(tmp_path / "model")
    assert info["trained"] is True and cfg.dim == 16 and info["training"]["steps"] == 3
    split = pl.read_parquet(tmp_path / "model" / "split.parquet")
    assert split["block"].is_unique().all() and set(split["split"]) <= {"train", "val", "test"}

    # Fine-tuning from that checkpoint keeps its architecture and records where it started.
    tuned = train([library], tmp_path / "tuned", {**TINY_TRAIN, "architecture": {}, "init": str(tmp_path / "model"),
                                                  "max_steps": 1})
    assert tuned["init"]["model_id"] == info["model_id"]
    assert load_encoder(tmp_path / "tuned")[1] == cfg
    with pytest.raises(InputError, match="architecture"):
        train([library], tmp_path / "bad", {**TINY_TRAIN, "init": str(tmp_path / "model"),
                                            "architecture": {"dim": 32}})


def test_positives_are_precursor_species_and_batches_hold_distinct_structures(tmp_path) -> None:
    """Pairs come from one structure in one ion mode at one precursor m/z; no batch holds a structure twice."""
    import numpy as np

    from ms2study.encoder.training import TrainingData, merge_params, sample_batch

    library = _training_library(tmp_path / "lib.mgf", with_negative_mode=True)
    data = TrainingData([library], merge_params({**TINY_TRAIN, "licenses": None}))
    assert len(data.unit_rows) == 2 * len(data.train_blocks)  # positive and negative species per structure
    for rows in data.unit_rows:
        assert np.unique(data.ion_mode[rows]).size == 1
        assert np.ptp(data.precursor[rows]) < 0.01
    for group in data.isomer_groups:  # isomers: distinct structures sharing ion mode and precursor
        assert np.unique(data.unit_block[group]).size == group.size
        assert np.unique(data.ion_mode[[data.unit_rows[u][0] for u in group]]).size == 1
    rng = np.random.default_rng(0)
    for _ in range(20):
        picks = sample_batch(data, 8, 0.5, rng)
        assert np.unique(data.unit_block[picks]).size == picks.size == 8


def test_tanimoto_term() -> None:
    import numpy as np
    import torch

    from ms2study.encoder.training import tanimoto_loss, tanimoto_matrix

    bits = np.array([[1, 1, 0, 0], [1, 0, 1, 0], [0, 0, 0, 1]], dtype=np.uint8)
    t = tanimoto_matrix(bits)
    assert np.allclose(t, [[1, 1 / 3, 0], [1 / 3, 1, 0], [0, 0, 1]])
    # Views whose cross cosines equal the Tanimoto similarities give zero loss; others do not.
    a = torch.eye(3)
    known = torch.ones(3, dtype=torch.bool)
    target = torch.zeros(3, 3)
    assert float(tanimoto_loss(torch.cat([a, a]), target, known)) == 0.0
    assert float(tanimoto_loss(torch.cat([a, a]), torch.from_numpy(t), known)) > 0.0
    # Unknown fingerprints carry no term.
    assert float(tanimoto_loss(torch.cat([a, a]), torch.from_numpy(t), torch.tensor([True, False, False]))) == 0.0


def test_train_with_structure_term(tmp_path) -> None:
    from ms2study.encoder.training import TrainingData, merge_params, train

    library = _training_library(tmp_path / "lib.mgf")
    data = TrainingData([library], merge_params(TINY_TRAIN))
    bits, ok = data.fingerprints(256)
    assert ok.all() and bits.shape == (len(data.train_blocks), 256) and bits.sum() > 0
    record = train([library], tmp_path / "model", {**TINY_TRAIN, "tanimoto_weight": 1.0, "fingerprint_bits": 256})
    assert all(math.isfinite(h["loss"]) for h in record["history"] if "loss" in h)


def test_validation_is_a_library_search(tmp_path) -> None:
    """Validation queries meet every other train/validation spectrum within 10 ppm and the same ion mode; a query
    is an isomer query when another structure of its formula is among its candidates."""
    import numpy as np

    from ms2study.encoder.model import EncoderConfig, build_encoder
    from ms2study.encoder.training import SearchSet, TrainingData, evaluate, merge_params

    rng = np.random.default_rng(2)
    entries, blocks = [], []
    # s0/s1: isomers at one precursor; s2: same formula 0.5 Da away (not a candidate); s3: negative mode.
    specs = [(200.1, "positive", "C9H10O4"), (200.1, "positive", "C9H10O4"), (200.6, "positive", "C9H10O4"),
             (200.1, "negative", "C9H8O4")]
    for s, (precursor, mode, formula) in enumerate(specs):
        blocks.append("".join(chr(65 + (s * 5 + j) % 26) for j in range(14)))
        for k in range(3):
            peaks = "\n".join(f"{m:.4f} {rng.uniform(5, 100):.1f}" for m in rng.uniform(50, 190, 6))
            entries.append(f"BEGIN IONS\nPEPMASS={precursor + k * 1e-4}\nIONMODE={mode}\nFORMULA={formula}\n"
                           f"INCHIKEY={blocks[-1]}-UHFFFAOYSA-N\nLICENSE=CC0\n{peaks}\nEND IONS\n")
    (tmp_path / "lib.mgf").write_text("".join(entries))
    p = merge_params({"val_fraction": 1.0, "test_fraction": 0.0, "device": "cpu"})
    data = TrainingData([tmp_path / "lib.mgf"], p)
    search = SearchSet(data, p)
    structure = dict(zip(data.meta["row"].to_list(), [blocks.index(b) for b in data.meta["block"].to_list()]))
    assert search.q_rows.size == 12
    assert not np.any(search.cand == search.q_rows[search.q_of])  # never the query itself
    n_cand = np.bincount(search.q_of, minlength=12)
    for q, row in enumerate(search.q_rows):
        assert n_cand[q] == (5 if structure[row] in (0, 1) else 2)
        assert search.isomer[q] == (structure[row] in (0, 1))
    assert np.array_equal(search.label, [structure[c] == structure[search.q_rows[q]]
                                         for c, q in zip(search.cand, search.q_of)])
    assert search.answerable.all()
    model = build_encoder(EncoderConfig(d_model=32, n_layers=1, n_heads=4, d_ff=64, dim=16))
    metrics = evaluate(model, data, p, __import__("torch").device("cpu"), search)
    assert metrics["n_queries"] == 12 and metrics["n_isomer_queries"] == 6
    # s2 and s3 have only their own spectra as candidates: always right, whatever the weights.
    assert metrics["top1"] >= 0.5


def test_training_views_and_validation_queries_carry_a_precursor_error(tmp_path) -> None:
    """ms2study-encoder-v2 saw exact precursors only and moved a spectrum's embedding to cosine 0.89 of itself for a
    3 ppm error: the training views now carry an error of sd ``precursor_error_ppm`` (none when 0)."""
    import numpy as np

    from ms2study.core.measurement import error_sd_for_tolerance, measured_precursor
    from ms2study.encoder.training import TrainingData, _views, merge_params, sample_batch

    rng = np.random.default_rng(0)
    values = measured_precursor(np.full(20000, 500.0), 5.0, rng)
    ppm = (values / 500.0 - 1.0) * 1e6
    assert abs(ppm.mean()) < 0.2 and 4.8 < ppm.std() < 5.2
    assert measured_precursor(300.0, 0.0, rng) == 300.0 and isinstance(measured_precursor(300.0, 2.0, rng), float)
    assert error_sd_for_tolerance(10.0) == 2.5 and error_sd_for_tolerance(None) == 0.0
    with pytest.raises(ValueError):
        measured_precursor(300.0, -1.0, rng)
    library = _training_library(tmp_path / "lib.mgf")
    for error, expect_exact in ((5.0, False), (0.0, True)):
        p = merge_params({**TINY_TRAIN, "augment": {"precursor_error_ppm": error}})
        assert p["augment"]["mz_error_ppm"] == 3.0  # merged key by key
        data = TrainingData([library], p)
        picks = sample_batch(data, 4, 0.0, np.random.default_rng(1))
        precursor = _views(data, picks, p, np.random.default_rng(2))[-2].numpy().astype(np.float64)
        exact = np.concatenate([data.precursor[[data.unit_rows[k][0] for k in picks]]] * 2)
        shift = np.abs(precursor / exact - 1.0) * 1e6
        assert (shift.max() < 1e-3) if expect_exact else (shift.max() > 0.5 and shift.max() < 40), shift


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU (torch.cuda.is_available() is False)")
def test_training_on_cuda_writes_a_checkpoint_that_embeds_alike_on_the_cpu(tmp_path) -> None:
    """The training path on a GPU (`ms2study train` with `device: cuda`; not yet run on one: session 45's device
    loans were paused before this test could run there): finite
    losses in fp32 (auto) and bf16 autocast, the hardware recorded, and the checkpoint, loaded on the CPU, embeds
    as it does on the GPU."""
    import numpy as np
    from test_embed import random_spectra

    from ms2study.encoder.inference import embed_arrays
    from ms2study.encoder.training import train

    library = _training_library(tmp_path / "lib.mgf")
    spectra = random_spectra(500, seed=3, min_peaks=1)
    for precision, expected in (("auto", "fp32"), ("bf16", "bf16")):
        out = tmp_path / precision
        record = train([library], out, {**TINY_TRAIN, "device": "cuda", "precision": precision, "max_steps": 20})
        losses = [h["loss"] for h in record["history"] if "loss" in h]
        assert len(losses) == 20 and all(math.isfinite(x) for x in losses), losses
        assert record["hardware"]["device"].startswith("cuda") and record["hardware"]["gpu"]
        assert record["hardware"]["precision"] == expected
        _model, _cfg, info = load_encoder(out)  # a GPU-trained checkpoint loads where no GPU is asked for
        assert info["trained"] and info["training"]["steps"] == 20
        cpu, has, _ = embed_arrays(*spectra, {"model": str(out), "device": "cpu", "precision": "fp32"})
        gpu, gpu_has, _ = embed_arrays(*spectra, {"model": str(out), "device": "cuda", "precision": "fp32"})
        assert np.array_equal(has, gpu_has) and has.sum() > 400
        assert 1 - (cpu[has] * gpu[has]).sum(axis=1).min() < 1e-4
