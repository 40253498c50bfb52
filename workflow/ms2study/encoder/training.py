"""Training the spectrum encoder: contrastive learning on library spectra, split by structure, isomers as negatives.

Library spectra (MGF/MSP/JSON, cleaned with the same ``clean_peaks`` as everything else) are grouped by the first
InChIKey block (the 2D structure). Each structure goes wholly to train, validation or test by a seeded hash of
that block (``ms2study.encoder.splits.assign_split``), so the model is never evaluated on a structure it saw and the
benchmarks can recompute the split. A training step takes ``batch_compounds`` structures, part of them drawn as
groups of isomers (same formula, different structure) so the hardest negatives sit in the same batch, and two
spectra of each (two different measurements when there are, else one spectrum twice) through augmentations that
mimic real measurements: peak dropout, multiplicative intensity noise, random noise peaks, m/z error in ppm, and an
error of the precursor m/z (``precursor_error_ppm``: without it the encoder learns exact precursors). The
loss is a symmetric InfoNCE: each view must pick its partner among all views of the batch. Validation is a library
search: validation spectra as queries (their precursor m/z with a measurement error, as in a sample) against all
train and validation spectra within 10 ppm (``SearchSet``),
top-1 by embedding cosine on all and on isomer queries; the best epoch is saved as
``model.safetensors`` + ``config.json`` (training record included) and ``split.parquet`` beside it.
Imports core, io, kernels, library and the other encoder modules.
"""

from __future__ import annotations

import logging
import math
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch

from ms2study import __version__
from ms2study.core.atomic import write_parquet
from ms2study.core.errors import InputError
from ms2study.core.measurement import measured_precursor
from ms2study.core.params import schema_defaults
from ms2study.encoder import inference as emb
from ms2study.encoder.model import EncoderConfig, SpectrumEncoder, build_encoder, save_encoder
from ms2study.encoder.splits import assign_split
from ms2study.io.entries import ReadReport
from ms2study.io.formats import read_library_file
from ms2study.kernels.candidates import find_candidates
from ms2study.library.build import build_library

log = logging.getLogger(__name__)


# The train section (defaults, types and allowed values in workflow/schemas/config.schema.yaml).
DEFAULT_PARAMS: dict[str, Any] = schema_defaults("train")


def merge_params(params: dict | None) -> dict[str, Any]:
    """``DEFAULT_PARAMS`` overlaid with ``params`` (``augment`` merged key by key); unknown keys raise."""
    merged = {k: (dict(v) if isinstance(v, dict) else v) for k, v in DEFAULT_PARAMS.items()}
    for key, value in (params or {}).items():
        if key not in DEFAULT_PARAMS:
            raise InputError(f"unknown train parameter '{key}'", fix=f"use only {sorted(DEFAULT_PARAMS)}")
        if key == "augment":
            unknown = sorted(set(value) - set(DEFAULT_PARAMS["augment"]))
            if unknown:
                raise InputError(f"unknown train augment parameter(s) {unknown}")
            merged["augment"].update(value)
        else:
            merged[key] = value
    EncoderConfig.from_dict(merged["architecture"])  # fail early on a bad architecture
    return merged


class TrainingData:
    """Cleaned library spectra with structure keys, split by structure, and the isomer groups of the train part."""

    def __init__(self, library_paths: list[str | os.PathLike], p: dict[str, Any], cleaning: dict | None = None):
        report = ReadReport()
        entries = (raw for path in library_paths for raw in read_library_file(path, report))
        built = build_library(entries, {"cleaning": cleaning} if cleaning else None, report=report)
        meta = built.metadata.with_row_index("row")
        keep = pl.col("inchikey").is_not_null() & (pl.col("n_peaks") > 0)
        if p["licenses"] is not None:
            keep = keep & pl.col("license").is_in(list(p["licenses"]))
        meta = meta.filter(keep).with_columns(pl.col("inchikey").str.slice(0, 14).alias("block"))
        if meta.height == 0:
            raise InputError(
                "no usable training spectra (need an InChIKey, peaks and an allowed license)",
                file=", ".join(map(str, library_paths)), fix="check the library and the 'licenses' parameter",
            )
        blocks = meta["block"].unique().sort().to_list()
        split = {b: assign_split(b, int(p["seed"]), float(p["val_fraction"]), float(p["test_fraction"]))
                 for b in blocks}
        self.meta = meta.with_columns(pl.col("block").replace_strict(split, return_dtype=pl.Utf8).alias("split"))
        self.spectra = built.spectra  # core.flat.FlatSpectra of every cleaned spectrum (rows 0..n-1)
        self.mz, self.intensity, self.offsets = built.mz, built.intensity, built.offsets
        self.precursor = built.precursor_mz
        self.ion_mode = built.ion_mode
        self.n_skipped = len(report.skipped)
        # Training units are precursor species: one structure in one ion mode at one precursor m/z (one adduct).
        # Positive pairs come from the same species, as in a library search, where only spectra within a few
        # ppm of the query's precursor and in its ion mode are candidates; an [M+H]+ and an [M-H]- spectrum of
        # one compound share few fragments, and asking the encoder to map them together spends its capacity on
        # pairs that never meet.
        species_mz = (pl.col("precursor_mz") * 100).round(0).cast(pl.Int64)  # 0.01 Da bins
        train = self.meta.filter(pl.col("split") == "train")
        train = train.with_columns(pl.Series("ion", self.ion_mode[train["row"].to_numpy()]),
                                   species_mz.fill_null(-1).alias("species_mz"))
        by_unit = (train.group_by("block", "ion", "species_mz", maintain_order=True)
                   .agg(pl.col("row"), pl.col("formula").first()))
        self.train_blocks: list[str] = by_unit["block"].unique(maintain_order=True).to_list()
        block_index = {b: i for i, b in enumerate(self.train_blocks)}
        self.unit_rows: list[np.ndarray] = [np.asarray(r, dtype=np.int64) for r in by_unit["row"].to_list()]
        self.unit_block = np.asarray([block_index[b] for b in by_unit["block"].to_list()], dtype=np.int64)
        order = np.argsort(self.unit_block, kind="stable")
        bounds = np.searchsorted(self.unit_block[order], np.arange(len(self.train_blocks) + 1))
        self.block_units: list[np.ndarray] = [order[bounds[i]:bounds[i + 1]] for i in range(len(self.train_blocks))]
        # Isomer groups: species of different structures with one formula, ion mode and precursor m/z: exactly
        # the candidates a library search must tell apart.
        isomers = (
            by_unit.with_row_index("u").drop_nulls("formula")
            .group_by("formula", "ion", "species_mz", maintain_order=True)
            .agg(pl.col("u"), pl.col("block").n_unique().alias("n_blocks")).filter(pl.col("n_blocks") >= 2)
        )
        self.isomer_groups: list[np.ndarray] = [np.asarray(u, dtype=np.int64) for u in isomers["u"].to_list()]

    def fingerprints(self, n_bits: int) -> tuple[np.ndarray, np.ndarray]:
        """Morgan fingerprints (radius 2, ``n_bits``) per training structure as a (blocks, n_bits) uint8 0/1 array,
        and a mask of the structures whose SMILES RDKit could parse (the others carry no structure term)."""
        from rdkit import Chem, RDLogger
        from rdkit.Chem import rdFingerprintGenerator

        RDLogger.DisableLog("rdApp.*")
        generator = rdFingerprintGenerator.GetMorganGenerator(radius=2, fpSize=int(n_bits))
        smiles = dict(self.meta.filter(pl.col("split") == "train").drop_nulls("smiles")
                      .group_by("block").agg(pl.col("smiles").first()).iter_rows())
        bits = np.zeros((len(self.train_blocks), int(n_bits)), dtype=np.uint8)
        ok = np.zeros(len(self.train_blocks), dtype=bool)
        for i, block in enumerate(self.train_blocks):
            mol = Chem.MolFromSmiles(smiles[block]) if block in smiles else None
            if mol is not None:
                bits[i] = generator.GetFingerprintAsNumPy(mol).astype(np.uint8)
                ok[i] = True
        return bits, ok

    def split_table(self) -> pl.DataFrame:
        return self.meta.group_by("block").agg(pl.col("split").first(), pl.len().alias("n_spectra")).sort("block")

    def counts(self) -> dict[str, dict[str, int]]:
        out = {}
        for name in ("train", "val", "test"):
            part = self.meta.filter(pl.col("split") == name)
            out[name] = {"spectra": part.height, "structures": part["block"].n_unique()}
        return out


def sample_batch(data: TrainingData, n: int, isomer_fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Indices into ``data.unit_rows``: species of distinct structures, about ``isomer_fraction`` isomer groups.

    No two picked species share a structure, so no negative in the batch is in truth a positive.
    """
    n = min(n, len(data.train_blocks))
    chosen: list[int] = []
    seen: set[int] = set()
    if data.isomer_groups and isomer_fraction > 0:
        target = int(n * isomer_fraction)
        for g in rng.permutation(len(data.isomer_groups)):
            if len(chosen) >= target:
                break
            group = data.isomer_groups[g]
            for u in rng.permutation(group)[:4]:  # up to 4 isomers per formula keeps the batch varied
                block = int(data.unit_block[u])
                if block not in seen:
                    seen.add(block)
                    chosen.append(int(u))
    for block in rng.permutation(len(data.train_blocks)):
        if len(chosen) >= n:
            break
        if int(block) not in seen:
            seen.add(int(block))
            chosen.append(int(rng.choice(data.block_units[block])))
    return np.asarray(chosen[:n], dtype=np.int64)


def augment(
    mz: np.ndarray, intensity: np.ndarray, precursor: float, a: dict[str, float], rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """One randomly perturbed copy of a spectrum, as a lower-concentration or other-instrument measurement."""
    mz = mz.astype(np.float64)
    intensity = intensity.astype(np.float64)
    keep = rng.random(mz.size) >= a["peak_dropout"]
    keep[np.argmax(intensity)] = True
    mz, intensity = mz[keep], intensity[keep]
    intensity = intensity * np.exp(rng.normal(0.0, a["intensity_noise"], intensity.size))
    k = rng.poisson(a["noise_peaks"])
    if k:
        high = precursor if np.isfinite(precursor) and precursor > 60 else max(float(mz.max()) + 10.0, 60.0)
        mz = np.concatenate([mz, rng.uniform(50.0, high, k)])
        intensity = np.concatenate([intensity, rng.uniform(0.0, a["noise_max_rel"], k) * intensity.max()])
    ppm = rng.normal(0.0, a["mz_error_ppm"]) + rng.normal(0.0, a["mz_error_ppm"], mz.size)
    return mz * (1.0 + ppm * 1e-6), intensity.astype(np.float32)


def _views(data: TrainingData, picks: np.ndarray, p: dict, rng: np.random.Generator) -> tuple[torch.Tensor, ...]:
    """Two augmented views per chosen species, padded as one batch: rows [0, B) view A, [B, 2B) view B."""
    firsts, seconds = [], []
    for k in picks:
        rows = data.unit_rows[k]
        pair = rng.choice(rows, 2, replace=False) if rows.size >= 2 else np.array([rows[0], rows[0]])
        firsts.append(pair[0])
        seconds.append(pair[1])
    mzs, ints, precursors = [], [], []
    for row in firsts + seconds:
        a, b = int(data.offsets[row]), int(data.offsets[row + 1])
        m, i = augment(data.mz[a:b], data.intensity[a:b], float(data.precursor[row]), p["augment"], rng)
        mzs.append(m)
        ints.append(i)
        precursors.append(measured_precursor(data.precursor[row], p["augment"]["precursor_error_ppm"], rng))
    offsets = np.concatenate(([0], np.cumsum([m.size for m in mzs]))).astype(np.int64)
    sel_mz, sel_rel, sel_off = emb.select_peaks(np.concatenate(mzs), np.concatenate(ints), offsets, p["max_peaks"])
    arrays = emb.pad_batch(np.arange(len(mzs)), sel_mz, sel_rel, sel_off, np.asarray(precursors))
    return tuple(torch.from_numpy(x) for x in arrays)


def contrastive_loss(embeddings: torch.Tensor, temperature: float) -> torch.Tensor:
    """Symmetric InfoNCE over 2B unit vectors: row i's positive is row i +/- B, every other row is a negative."""
    n = embeddings.shape[0] // 2
    sims = embeddings @ embeddings.T / temperature
    sims = sims.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=sims.device), float("-inf"))
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(sims.device)
    return torch.nn.functional.cross_entropy(sims, target)


def tanimoto_matrix(bits: np.ndarray) -> np.ndarray:
    """Pairwise Tanimoto similarity of 0/1 fingerprint rows."""
    x = bits.astype(np.float32)
    inter = x @ x.T
    counts = x.sum(axis=1)
    union = counts[:, None] + counts[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def tanimoto_loss(embeddings: torch.Tensor, tanimoto: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
    """Structure-similarity term: the cosine between views of two different structures should equal their
    Tanimoto similarity (mean squared error over pairs of distinct structures whose fingerprints are known), so
    structurally close compounds sit close in the embedding space, as MS2DeepScore-style models aim for."""
    n = embeddings.shape[0] // 2
    cross = embeddings[:n] @ embeddings[n:].T
    mask = known[:, None] & known[None, :] & ~torch.eye(n, dtype=torch.bool, device=embeddings.device)
    if not bool(mask.any()):
        return embeddings.sum() * 0.0
    return ((cross - tanimoto) ** 2)[mask].mean()


class SearchSet:
    """Validation as a library search: validation spectra as queries against every train and validation spectrum
    of the same ion mode within 10 ppm (never the query itself), as benchmarks/identification.py does on the test
    structures; the encoder never trained on the validation structures, while most candidates are ones it has
    seen, as in real use."""

    def __init__(self, data: TrainingData, p: dict[str, Any]):
        part = data.meta.filter(pl.col("split") == "val")
        if part.height > p["val_max_spectra"]:
            part = part.sample(p["val_max_spectra"], seed=int(p["seed"]))
        q_rows = part["row"].to_numpy()
        pool_rows = data.meta.filter(pl.col("split").is_in(["train", "val"]))["row"].to_numpy()
        pool_rows = pool_rows[np.lexsort((data.precursor[pool_rows], data.ion_mode[pool_rows]))]
        offsets, cand = find_candidates(data.precursor[q_rows], data.ion_mode[q_rows], data.precursor[pool_rows],
                                        data.ion_mode[pool_rows], 10.0, None)
        cand = pool_rows[cand]
        q_of = np.repeat(np.arange(q_rows.size), np.diff(offsets))
        keep = cand != q_rows[q_of]
        cand, q_of = cand[keep], q_of[keep]
        n_rows = int(data.offsets.size - 1)
        block = np.full(n_rows, "", dtype=object)
        formula = np.full(n_rows, "", dtype=object)
        block[data.meta["row"].to_numpy()] = data.meta["block"].to_numpy()
        formula[data.meta["row"].to_numpy()] = data.meta["formula"].fill_null("").to_numpy()
        self.q_rows, self.cand, self.q_of = q_rows, cand, q_of
        self.label = block[cand] == block[q_rows[q_of]]
        self.answerable = np.bincount(q_of[self.label], minlength=q_rows.size) > 0
        same_formula = (formula[cand] == formula[q_rows[q_of]]) & (formula[q_rows[q_of]] != "")
        isomer = np.zeros(q_rows.size, dtype=bool)
        isomer[q_of[same_formula & ~self.label]] = True  # another structure of the query's formula
        self.isomer = isomer & self.answerable
        self.rows = np.unique(np.concatenate([q_rows, cand]))


def evaluate(model: SpectrumEncoder, data: TrainingData, p: dict, device: torch.device,
             search: SearchSet | None = None) -> dict:
    """Top-1 of the same structure by embedding cosine in the validation library search (``SearchSet``)."""
    search = search or SearchSet(data, p)
    if not search.answerable.any():
        return {"n_queries": 0}
    rows = search.rows
    sub = data.spectra.take(rows)
    model.eval()
    vectors = _embed_with(model, sub.mz, sub.intensity, sub.offsets, sub.precursor_mz, p, device)
    # the queries as measured: their precursor carries the instrument's error (the library's does not)
    queries = data.spectra.take(search.q_rows)
    measured = measured_precursor(np.asarray(queries.precursor_mz, dtype=np.float64),
                                  float(p["augment"]["precursor_error_ppm"]), np.random.default_rng(int(p["seed"]) + 5))
    query_vectors = _embed_with(model, queries.mz, queries.intensity, queries.offsets, measured, p, device)
    qv = query_vectors[search.q_of]
    cv = vectors[np.searchsorted(rows, search.cand)]
    sims = np.einsum("ij,ij->i", qv, cv)
    # Best candidate per query: sort by (query, -similarity) and take each query's first pair.
    order = np.lexsort((-sims, search.q_of))
    first = order[np.r_[True, search.q_of[order][1:] != search.q_of[order][:-1]]] if order.size else order
    correct = np.zeros(search.q_rows.size, dtype=bool)
    correct[search.q_of[first]] = search.label[first]
    ans, iso = search.answerable, search.isomer
    return {
        "n_queries": int(ans.sum()),
        "top1": float(correct[ans].mean()),
        "n_isomer_queries": int(iso.sum()),
        "top1_isomer": float(correct[iso].mean()) if iso.any() else None,
    }


def selection_score(metrics: dict, loss_value: float) -> float:
    """Checkpoint choice: mean of validation top-1 on all and on isomer queries (top-1 alone when none)."""
    if metrics.get("top1") is None:
        return -loss_value
    if metrics.get("top1_isomer") is None:
        return float(metrics["top1"])
    return 0.5 * (float(metrics["top1"]) + float(metrics["top1_isomer"]))


def _embed_with(model: SpectrumEncoder, mz: np.ndarray, intensity: np.ndarray, offsets: np.ndarray,
                precursor: np.ndarray, p: dict, device: torch.device) -> np.ndarray:
    sel_mz, sel_rel, sel_off = emb.select_peaks(mz, intensity, offsets, p["max_peaks"])
    out = np.zeros((precursor.size, model.config.dim), dtype=np.float32)
    with torch.inference_mode():
        for idx in emb.bucket_batches(np.diff(sel_off), 512):
            tensors = [torch.from_numpy(a).to(device) for a in emb.pad_batch(idx, sel_mz, sel_rel, sel_off, precursor)]
            out[idx] = model(*tensors).float().cpu().numpy()
    return out


def train(library_paths: list[str | os.PathLike], out_dir: str | os.PathLike, params: dict | None = None,
          cleaning: dict | None = None) -> dict:
    """Train an encoder on ``library_paths`` and write it to ``out_dir``; returns the training record.

    ``cleaning``: the ``clean_peaks`` parameters (the config's ``cleaning`` section, as for sample spectra and the
    library index; None: the library defaults). Raises InputError for unusable libraries or parameters.
    """
    p = merge_params(params)
    seed = int(p["seed"])
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    device = emb.resolve_device(str(p["device"]))
    # On CPU, "auto" trains in fp32: the first shipped encoder trained at 0.5 steps/s with bf16 autocast on a
    # 2-core AVX512-BF16 machine, its fine-tuning at about 1 step/s in fp32 (same batch); on CUDA mixed
    # precision is the fast path.
    autocast_dtype = (None if device.type == "cpu" and p["precision"] == "auto"
                      else emb.resolve_precision(str(p["precision"]), device))
    started = time.perf_counter()
    data = TrainingData(library_paths, p, cleaning)
    counts = data.counts()
    log.info("training data: %s; %d isomer groups in train; %d malformed entries skipped",
             counts, len(data.isomer_groups), data.n_skipped)
    if len(data.train_blocks) < 2:
        raise InputError("need at least two training structures", file=", ".join(map(str, library_paths)))
    if p["init"] is not None:
        from ms2study.encoder.model import load_encoder

        model, config, init_info = load_encoder(p["init"], seed)
        if p["architecture"] and EncoderConfig.from_dict({**config.to_dict(), **p["architecture"]}) != config:
            raise InputError("'architecture' differs from the architecture of the 'init' model",
                             file=str(p["init"]), fix="leave 'architecture' empty when fine-tuning")
        log.info("starting from %s (%s)", p["init"], init_info["model_id"])
        model = model.to(device).train()
    else:
        config = EncoderConfig.from_dict(p["architecture"])
        model = build_encoder(config, seed).to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=p["lr"], weight_decay=p["weight_decay"])
    batch = min(int(p["batch_compounds"]), len(data.train_blocks))
    steps_per_epoch = max(1, len(data.train_blocks) // batch)
    total = steps_per_epoch * int(p["epochs"])
    if p["max_steps"] is not None:
        total = min(total, int(p["max_steps"]))

    def lr_factor(step: int) -> float:  # linear warm-up, then cosine decay to 10%
        if step < p["warmup_steps"]:
            return (step + 1) / p["warmup_steps"]
        progress = (step - p["warmup_steps"]) / max(1, total - p["warmup_steps"])
        return 0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)
    tanimoto_weight = float(p["tanimoto_weight"])
    if tanimoto_weight > 0:
        fp_bits, fp_ok = data.fingerprints(int(p["fingerprint_bits"]))
        log.info("structure term: fingerprints for %d of %d training structures", int(fp_ok.sum()), fp_ok.size)
    search = SearchSet(data, p)
    log.info("validation search: %d queries (%d with their structure among candidates, %d isomer queries), "
             "%d spectra to embed", search.q_rows.size, int(search.answerable.sum()), int(search.isomer.sum()),
             search.rows.size)
    history: list[dict[str, Any]] = []
    best: tuple[float, dict[str, torch.Tensor], dict] | None = None
    step, running, tick = 0, 0.0, time.perf_counter()
    out_of_time = False
    while step < total and not out_of_time:
        model.train()
        picks = sample_batch(data, batch, float(p["isomer_fraction"]), rng)
        tensors = [t.to(device, non_blocking=True) for t in _views(data, picks, p, rng)]
        with torch.autocast(device.type, dtype=autocast_dtype or torch.float32, enabled=autocast_dtype is not None):
            vectors = model(*tensors)
        loss = contrastive_loss(vectors.float(), float(p["temperature"]))
        if tanimoto_weight > 0:
            blocks = data.unit_block[picks]
            tani = torch.from_numpy(tanimoto_matrix(fp_bits[blocks])).to(device)
            loss = loss + tanimoto_weight * tanimoto_loss(vectors.float(), tani,
                                                          torch.from_numpy(fp_ok[blocks]).to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        step += 1
        loss_value = loss.detach().item()
        running += loss_value
        if step % int(p["log_every"]) == 0 or step == total:
            n_steps = (step - 1) % int(p["log_every"]) + 1
            rate = 2 * batch * n_steps / (time.perf_counter() - tick)
            log.info("step %d/%d loss %.4f lr %.2e (%.0f spectra/s)", step, total, running / n_steps,
                     scheduler.get_last_lr()[0], rate)
            history.append({"step": step, "loss": running / n_steps})
            running, tick = 0.0, time.perf_counter()
        out_of_time = p["max_seconds"] is not None and time.perf_counter() - started > float(p["max_seconds"])
        if step % steps_per_epoch == 0 or step == total or out_of_time:
            metrics = evaluate(model, data, p, device, search)
            log.info("step %d validation: %s", step, metrics)
            history.append({"step": step, "val": metrics})
            score = selection_score(metrics, loss_value)
            if best is None or score > best[0]:
                best = (score, {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}, metrics)
    assert best is not None
    model.load_state_dict(best[1])
    model.eval()
    record = {
        "library": [str(x) for x in library_paths],
        "params": p,
        "cleaning": cleaning,
        "split": {"rule": "sha256(f'{seed}:{first InChIKey block}') -> u in [0,1): test if u < test_fraction, "
                          "val if u < test_fraction + val_fraction, else train", "counts": counts},
        "n_isomer_groups_train": len(data.isomer_groups),
        "n_species_train": len(data.unit_rows),
        "init": None if p["init"] is None else {"dir": str(p["init"]), "model_id": init_info["model_id"],
                                                  "training": init_info.get("training", {})},
        "steps": step,
        "best_val": best[2],
        "seconds": round(time.perf_counter() - started, 1),
        "hardware": {"device": str(device), "precision": {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[autocast_dtype], "torch": torch.__version__,
                     "cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
                     "gpu": torch.cuda.get_device_name(0) if device.type == "cuda" else None},
        "history": history,
        "ms2study_version": __version__,
    }
    out = Path(out_dir)
    save_encoder(model.cpu(), out, name=str(p["name"]), training=record)
    write_parquet(data.split_table(), out / "split.parquet")
    log.info("saved %s (best validation %s) after %.0f s", out, best[2], record["seconds"])
    return record
