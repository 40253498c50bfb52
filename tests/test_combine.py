"""Learned combined score: weights learned on a generated library rank true matches; annotate uses them.

The library is generated here: structures with several measured spectra each (noisy copies of one pattern) and
isomer pairs (same formula and precursor m/z, partly shared fragments). A tiny encoder is built and saved as a
"trained" checkpoint so the whole path (embedding, split, learning, annotate lookup by model_id) runs for real.
"""

from __future__ import annotations

import json
import math
import string
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from sklearn.metrics import roc_auc_score

from ms2study.encoder import inference as embed
from ms2study.encoder import model as encoder
from ms2study.library import index as library
from ms2study.core.errors import InputError
from ms2study.identification import reference
from ms2study.identification import learning
from ms2study.identification import engine
from ms2study.identification import combined
from ms2study.encoder import checkpoints


def _block(k: int) -> str:
    letters = string.ascii_uppercase
    digits = []
    for _ in range(14):
        digits.append(letters[k % 26])
        k //= 26
    return "".join(digits)


def make_library(path: Path, n_structures: int = 80, per_structure: int = 3, seed: int = 0) -> None:
    """Structures with ``per_structure`` spectra; structures 2i and 2i+1 are isomers (same formula, precursor)."""
    rng = np.random.default_rng(seed)
    text = []
    base_mz = None
    for s in range(n_structures):
        if s % 2 == 0:
            prec = float(rng.uniform(200, 600))
            base_mz = np.sort(rng.uniform(50, prec - 5, 12))
            mz = base_mz
        else:  # the isomer shares a third of its partner's fragments
            mz = np.sort(np.concatenate([base_mz[:4], rng.uniform(50, prec - 5, 8)]))
        pattern = rng.uniform(5, 100, mz.size)
        for k in range(per_structure):
            keep = rng.random(mz.size) < 0.85
            keep[np.argmax(pattern)] = True
            m = mz[keep] + rng.normal(0, 0.002, keep.sum())
            inten = pattern[keep] * rng.uniform(0.6, 1.4, keep.sum())
            peaks = "\n".join(f"{a:.5f} {b:.2f}" for a, b in zip(m, inten))
            text.append(
                f"BEGIN IONS\nTITLE=S{s}_{k}\nPEPMASS={prec:.5f}\nCHARGE=1+\nIONMODE=positive\nADDUCT=[M+H]+\n"
                f"NAME=structure {s}\nFORMULA=C{s // 2 + 5}H10O\nSMILES=C\nINCHIKEY={_block(s)}-BBBBBBBBBB-N\n"
                f"LICENSE=CC0\nSPECTRUM_ID=S{s}_{k}\n{peaks}\nEND IONS\n"
            )
    path.write_text("".join(text))


def tiny_model(out: Path, name: str = "tiny", trained: bool = True) -> Path:
    config = encoder.EncoderConfig(d_model=32, n_layers=1, n_heads=2, d_ff=64, dim=16, n_fourier=8)
    model = encoder.build_encoder(config, seed=3)
    training = {"params": {"seed": 0, "val_fraction": 0.4, "test_fraction": 0.1, "licenses": None}}
    return encoder.save_encoder(model, out, name=name, training=training if trained else None)


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("combine")
    make_library(root / "lib.mgf")
    model_dir = tiny_model(root / "model")
    record = learning.learn_combined([root / "lib.mgf"], model_dir, {"max_structures": 200, "embed": {"device": "cpu"}})
    return {"root": root, "model": model_dir, "record": record}


def test_learned_weights_rank_true_matches(setup: dict) -> None:
    record = setup["record"]
    stored = json.loads((setup["model"] / combined.COMBINED_FILE).read_text())
    assert stored["model_id"] == record["model_id"]
    assert set(stored["models"]) == {"with_embedding", "spectral"}
    assert stored["models"]["with_embedding"]["features"] == list(combined.FEATURES)
    # Fitted on the encoder's validation structures (never trained on); cross-validated metrics stored.
    assert stored["training_data"]["split"]["part"] == "val"
    assert stored["training_data"]["n_structures"] >= 10
    assert stored["validation_top1"]["folds"] == 5 and stored["validation_top1"]["learned"] is not None
    assert stored["training_data"]["n_positive_pairs"] > 0
    # Evidence of the same structure must raise the score.
    w = dict(zip(stored["models"]["spectral"]["features"], stored["models"]["spectral"]["weights"]))
    assert w["cosine"] + w["modified_cosine"] + w["entropy"] > 0
    # Fresh queries from the training split (other spectra, degraded): the learned score separates true pairs.
    split = checkpoints.model_split_settings(setup["model"])
    ref = reference.read_reference([setup["root"] / "lib.mgf"], split)
    rows = np.flatnonzero(ref.split == "train")[1::3]
    level = reference.LOW_CONCENTRATION_LEVELS[2]
    queries = reference.query_set(ref, rows, [level] * rows.size, seed=7)
    pairs = reference.score_query_set(ref, queries, ref.split == "train", {}, None, None, 10.0)
    learned = combined.load_combined(setup["model"])
    score = learned.score(pairs.features, use_embedding=False)
    assert 0.0 < pairs.label.mean() < 1.0
    assert roc_auc_score(pairs.label, score) > 0.8
    answerable, correct, _ = reference.top1_correct(pairs, score)
    # Chance: a random candidate is right with probability (true candidates / candidates) of its query.
    chance = float(np.mean([pairs.label[pairs.offsets[q]:pairs.offsets[q + 1]].mean()
                            for q in np.flatnonzero(answerable)]))
    assert chance < 0.7
    assert correct[answerable].mean() > max(0.8, chance + 0.2)


def _index_with_embeddings(setup: dict, model_dir: Path) -> tuple[Path, pl.DataFrame, pl.DataFrame]:
    root = setup["root"]
    index_dir = root / f"index_{model_dir.name}"
    if not (index_dir / "manifest.json").exists():
        library.index_library(root / "lib.mgf", index_dir)
    params = {"model": str(model_dir), "device": "cpu"}
    embed.embed_library(index_dir, params)
    index = library.load_library_index(index_dir)
    rows = list(range(0, len(index), 7))
    spectra = pl.DataFrame({
        "spectrum_id": [f"q{r}" for r in rows], "sample_id": "s1", "feature_id": [f"f{r}" for r in rows],
        "precursor_mz": [float(index.precursor_mz[r]) for r in rows],
        "mz": [index.peaks(r)[0].tolist() for r in rows],
        "intensity": [index.peaks(r)[1].astype(np.float32).tolist() for r in rows],
    })
    return index_dir, spectra, embed.embed_spectra(spectra, params)


def test_annotate_uses_learned_weights_of_the_embedding_model(setup: dict, tmp_path: Path) -> None:
    index_dir, spectra, emb = _index_with_embeddings(setup, setup["model"])
    assert emb["model_trained"].all()
    params = {"model": str(setup["model"]), "top_k": 3, "confidence": "decoys"}
    out = engine.annotate_spectra(spectra, index_dir, params, embeddings=emb)
    assert out["embedding"].is_not_null().all()
    learned = combined.load_combined(setup["model"])
    feats = combined.candidate_features(
        {k: out[k].to_numpy() for k in ("cosine", "modified_cosine", "entropy", "embedding", "matched_peaks")},
        np.array([len(library.load_library_index(index_dir).peaks(int(s[1:]))[0]) for s in out["spectrum_id"]]),
        out["precursor_error_ppm"].to_numpy(),
    )
    np.testing.assert_allclose(out["combined"].to_numpy(), learned.score(feats), rtol=1e-9, atol=1e-12)
    assert out.filter(pl.col("rank") == 1)["accepted"].any()

    # Weights learned for another encoder are not applied: the fixed default (with embedding) is used.
    other = tmp_path / "other"
    other.mkdir()
    stored = json.loads((setup["model"] / combined.COMBINED_FILE).read_text())
    stored["model_id"] = "someone-else-123"
    (other / combined.COMBINED_FILE).write_text(json.dumps(stored))
    fixed = engine.annotate_spectra(spectra, index_dir, {**params, "model": str(other), "confidence": "none"},
                                      embeddings=emb)
    expected = combined.combined_score({k: fixed[k].to_numpy() for k in combined.SCORE_NAMES},
                                       engine.DEFAULT_PARAMS["weights"])
    np.testing.assert_allclose(fixed["combined"].to_numpy(), expected)
    # combine: fixed also ignores the learned weights.
    forced = engine.annotate_spectra(spectra, index_dir, {**params, "combine": "fixed", "confidence": "none"},
                                       embeddings=emb)
    np.testing.assert_allclose(forced["combined"].to_numpy(), combined.combined_score(
        {k: forced[k].to_numpy() for k in combined.SCORE_NAMES}, engine.DEFAULT_PARAMS["weights"]))


def test_untrained_embeddings_never_enter_the_combined_score(setup: dict) -> None:
    untrained = tiny_model(setup["root"] / "untrained", name="tiny-untrained", trained=False)
    (untrained / combined.COMBINED_FILE).write_text((setup["model"] / combined.COMBINED_FILE).read_text())
    index_dir, spectra, emb = _index_with_embeddings(setup, untrained)
    assert not emb["model_trained"].any()
    out = engine.annotate_spectra(spectra, index_dir, {"model": str(untrained), "confidence": "none"}, embeddings=emb)
    assert out["embedding"].is_not_null().all()  # reported ...
    spectral = {k: v for k, v in engine.DEFAULT_PARAMS["weights"].items() if k != "embedding"}
    expected = combined.combined_score({k: out[k].to_numpy() for k in combined.SCORE_NAMES}, spectral)
    np.testing.assert_allclose(out["combined"].to_numpy(), expected)  # ... but not weighted
    model_id, trained = combined.embeddings_model(emb)
    assert model_id.startswith("tiny-untrained") and not trained


def test_degrade_and_bad_inputs(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    mz = np.linspace(60, 400, 30)
    inten = np.geomspace(1, 1000, 30).astype(np.float32)
    m, x = reference.degrade(mz, inten, 420.0, reference.LOW_CONCENTRATION_LEVELS[4], rng)
    assert np.all(np.diff(m) >= 0) and m.max() < 420.0
    kept_real = np.isin(m, mz).sum()
    assert kept_real < 30 and m.size == kept_real + 20
    m0, x0 = reference.degrade(mz, inten, 420.0, reference.LOW_CONCENTRATION_LEVELS[0], rng)
    np.testing.assert_array_equal(m0, mz)
    with pytest.raises(InputError, match="unknown learn-combined parameter 'maxqueries'"):
        learning.merge_params({"maxqueries": 3})
    with pytest.raises(InputError, match="combine"):
        engine.merge_params({"combine": "sometimes"})
    (tmp_path / combined.COMBINED_FILE).write_text(json.dumps({"format": "other"}))
    with pytest.raises(InputError, match="combined.json"):
        combined.load_combined(tmp_path)
    assert combined.load_combined(tmp_path / "nowhere") is None
    untrained = tiny_model(tmp_path / "u", trained=False)
    with pytest.raises(InputError, match="untrained"):
        learning.learn_combined([tmp_path / "x.mgf"], untrained)
    with pytest.raises(InputError, match="fit_split"):
        learning.learn_combined([tmp_path / "x.mgf"], tiny_model(tmp_path / "t"), {"fit_split": "test"})
    assert math.isclose(combined.candidate_features(
        {"cosine": np.array([1.2]), "modified_cosine": np.array([0.5]), "entropy": np.array([-0.1]),
         "embedding": np.array([np.nan]), "matched_peaks": np.array([3])}, np.array([6]), np.array([-4.0])
    )["matched_fraction"][0], 0.5)
