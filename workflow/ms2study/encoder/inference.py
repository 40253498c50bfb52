"""Running the spectrum encoder over flat peak arrays in fast, deterministic batches (the engine of the embed stage).

Each spectrum keeps its ``max_peaks`` most intense peaks, intensities scaled to the base peak; spectra are sorted
by peak count and cut into batches of ``batch_size`` so padding stays small. Inference runs under
``torch.inference_mode`` with bf16 autocast on CPUs that have native bf16 (AVX512-BF16 / AMX), dynamic int8
quantisation of the feed-forward layers on CPUs without it (``precision: int8``, what ``auto`` picks there) and fp32
on CUDA (``auto``; bf16 and fp16 on request); on CUDA the padded batches go through pinned memory with non-blocking copies and results are gathered once at
the end. On CPU the same input with the same thread count gives byte-identical embeddings. Imports core and the
encoder model, and the top-peak kernels (numba) only for inputs too large for a numpy sort.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import os
import time
import warnings
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch
from torch import nn

from ms2study.core.errors import InputError
from ms2study.core.params import overlay, schema_defaults
from ms2study.core.tables import EMBEDDINGS, conform
from ms2study.encoder import model as enc
from ms2study.encoder.checkpoints import resolve_model_dir
from ms2study.core.flat import offsets_from_counts

log = logging.getLogger(__name__)


# The embed section (defaults, types and allowed values in workflow/schemas/config.schema.yaml).
DEFAULT_PARAMS: dict[str, Any] = schema_defaults("embed")
PRECISIONS = ("auto", "fp32", "bf16", "fp16", "int8")


def merge_params(params: dict | None) -> dict[str, Any]:
    """``DEFAULT_PARAMS`` overlaid with ``params``; unknown keys and bad values raise ``InputError``."""
    merged = overlay(params, DEFAULT_PARAMS, "embed")
    if merged["precision"] not in PRECISIONS:
        raise InputError(f"embed precision {merged['precision']!r} is not one of {', '.join(PRECISIONS)}")
    device = str(merged["device"])
    if device not in ("auto", "cpu") and not device.startswith("cuda"):
        raise InputError(f"embed device {device!r} is not one of auto, cpu, cuda, cuda:N")
    for key in ("batch_size", "max_peaks"):
        if not isinstance(merged[key], int) or merged[key] < 1:
            raise InputError(f"embed {key} must be a positive integer, not {merged[key]!r}")
    return merged


def cpu_supports_bf16() -> bool:
    """True when this CPU computes bf16 natively (AVX512-BF16 or AMX); emulated bf16 is slower than fp32."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="ignore") as fh:
            for line in fh:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"avx512_bf16", "amx_bf16"})
    except OSError:
        pass
    return False


def resolve_device(device: str) -> torch.device:
    """The torch device of ``embed: device`` (auto: CUDA when torch sees a GPU, else the CPU). Raises InputError
    for a CUDA device torch cannot see. With auto, a job given a GPU by its scheduler (``CUDA_VISIBLE_DEVICES`` or
    SLURM's ``SLURM_JOB_GPUS`` / ``SLURM_STEP_GPUS`` name one) that torch cannot use logs a warning saying why: a
    trial's SLURM embed jobs asked for and got a GPU, and a CPU build of torch embedded on the CPU without a word."""
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        given = next((f"{k}={os.environ[k]}" for k in ("CUDA_VISIBLE_DEVICES", "SLURM_STEP_GPUS", "SLURM_JOB_GPUS")
                      if os.environ.get(k, "").strip() not in ("", "-1", "NoDevFiles")), None)
        if given:
            why = (f"torch {torch.__version__} is a CPU build" if torch.version.cuda is None
                   else f"torch {torch.__version__} (CUDA {torch.version.cuda}) sees no usable GPU")
            log.warning("this job was given a GPU (%s) but %s: embedding on the CPU; install a CUDA build of torch "
                        "in the environment the jobs run to use it (README, cluster section)", given, why)
        return torch.device("cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise InputError(
            f"embed device {device!r} requested but torch sees no CUDA GPU (torch {torch.__version__})",
            fix="set embed: device: auto (uses the CPU here) or install a CUDA build of torch",
        )
    return torch.device(device)


def resolve_precision(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``precision`` on ``device``, or None for plain fp32 (training and fp32/bf16/fp16 runs).

    ``auto`` gives None on CUDA and bf16 on CPUs with native bf16, else None. On CUDA, fp32 because this encoder
    is small (0.9 M parameters): measured on an NVIDIA H200 (``benchmarks/measured/embedding_speed_h200.json``),
    bf16 and fp16 autocast were barely faster once warm (200k spectra at batch 16,384: 268k and 307k spectra/s vs
    262k in fp32), but a fresh process's first call on one sample's 4,769 spectra took 3.3-3.4 s against 0.49 s
    in fp32, and each embed job is a fresh process. Raises ``InputError`` for fp16 on a CPU. ``int8`` is not an
    autocast dtype: see ``resolve_mode``.
    """
    if precision in ("fp32", "int8"):
        return None
    if precision == "fp16":
        if device.type != "cuda":
            raise InputError("embed precision fp16 needs a CUDA device", fix="use precision auto or bf16 on CPU")
        return torch.float16
    if precision == "bf16":
        return torch.bfloat16
    if device.type == "cuda":
        return None
    return torch.bfloat16 if cpu_supports_bf16() else None


def resolve_mode(precision: str, device: torch.device) -> str:
    """The inference mode (``fp32``, ``bf16``, ``fp16`` or ``int8``) that ``precision`` gives on ``device``.

    ``auto`` on a CPU without native bf16 gives ``int8``: the transformer's feed-forward layers run as dynamically
    quantised int8 matrix products (PyTorch's ``torch.ao.quantization.quantize_dynamic``: weights quantised once,
    activations per batch), the rest in fp32. Its embeddings stay within 1e-3 cosine of fp32 (tested on real and
    simulated spectra; ``benchmarks/embedding_speed.py`` measures both). Raises ``InputError`` for int8 on CUDA.
    """
    if precision == "int8" or (precision == "auto" and device.type == "cpu" and not cpu_supports_bf16()
                               and int8_available()):
        if device.type != "cpu":
            raise InputError("embed precision int8 is a CPU path", fix="use precision auto, bf16 or fp16 on CUDA")
        return "int8"
    return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[resolve_precision(precision, device)]


def int8_available() -> bool:
    """True when this torch still has dynamic quantisation (deprecated since torch 2.10 in favour of torchao)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            from torch.ao.quantization import quantize_dynamic  # noqa: F401
    except ImportError:
        return False
    return True


def quantize_feed_forward(model: enc.SpectrumEncoder) -> enc.SpectrumEncoder:
    """A copy of ``model`` whose transformer feed-forward ``Linear`` layers are dynamically quantised to int8.

    Only ``linear1``/``linear2`` of each layer are quantised: quantising every ``Linear`` (peak embedding, head)
    moved embeddings by up to 2e-3 cosine on MassBank spectra, the feed-forward layers alone by about 1e-4, and was
    not faster. Method: PyTorch dynamic quantisation (``torch.ao.quantization.quantize_dynamic``, qint8 weights).
    """
    quantized = copy.deepcopy(model).eval()
    with warnings.catch_warnings():
        # torch 2.13 warns that torch.ao quantisation is deprecated (torchao succeeds it); the pinned torch has it.
        warnings.filterwarnings("ignore", message=r"(?s).*deprecated", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message=r"(?s).*deprecated", category=UserWarning)
        from torch.ao.quantization import quantize_dynamic

        for layer in quantized.transformer.layers:
            for name in ("linear1", "linear2"):
                wrapped = quantize_dynamic(nn.Sequential(getattr(layer, name)), {nn.Linear}, dtype=torch.qint8)
                setattr(layer, name, wrapped[0])
    return quantized


@lru_cache(maxsize=4)
def _cached_model(
    model_dir: str | None, seed: int, device: str, int8: bool = False,
) -> tuple[enc.SpectrumEncoder, dict[str, Any]]:
    model, _config, info = enc.load_encoder(Path(model_dir) if model_dir else None, seed=seed, device=device)
    return (quantize_feed_forward(model) if int8 else model), info


def get_model(params: dict | None = None) -> tuple[enc.SpectrumEncoder, dict[str, Any], torch.device]:
    """Load (once per process) the encoder that ``params`` names, on the device it names (int8-quantised when
    ``params``' precision resolves to int8 there)."""
    p = merge_params(params)
    device = resolve_device(str(p["device"]))
    model_dir = resolve_model_dir(p["model"])
    int8 = resolve_mode(str(p["precision"]), device) == "int8"
    model, info = _cached_model(str(model_dir) if model_dir else None, int(p["seed"]), str(device), int8)
    return model, info, device


# Up to this many peaks the peak selection is one numpy sort (~0.4 s at 1 M peaks); above it, numba kernels parallel
# over spectra. Importing numba and loading its first kernel, cached or not, costs ~1 s of CPU in a fresh process:
# more than sorting a sample's spectra, and an embed job would otherwise pay it for every sample.
NUMPY_SELECT_MAX_PEAKS = 1_000_000


def select_peaks(
    mz: np.ndarray, intensity: np.ndarray, offsets: np.ndarray, max_peaks: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Keep each spectrum's ``max_peaks`` most intense valid peaks; intensities relative to its base peak.

    Inputs are flat arrays with ``offsets`` (length n+1). Returns ``(mz float64, rel_intensity float32,
    new_offsets int64)``; peaks stay grouped by spectrum, most intense first (ties keep input order).
    Up to ``NUMPY_SELECT_MAX_PEAKS`` peaks one stable numpy sort; above, the numba kernels of
    ``ms2study.kernels.top_peaks``, parallel over spectra: this host-side step must keep up with a GPU (the numpy
    sort managed about 33,000 spectra/s here). Both give the same arrays.
    """
    mz = np.ascontiguousarray(mz, dtype=np.float64)
    intensity = np.ascontiguousarray(intensity, dtype=np.float64)
    offsets = np.ascontiguousarray(offsets, dtype=np.int64)
    if mz.shape[0] <= NUMPY_SELECT_MAX_PEAKS:
        return _select_peaks_numpy(mz, intensity, offsets, int(max_peaks))
    from ms2study.kernels.top_peaks import count_valid_peaks, fill_top_peaks

    kept = count_valid_peaks(mz, intensity, offsets, int(max_peaks))
    new_offsets = offsets_from_counts(kept)
    out_mz = np.empty(int(new_offsets[-1]), dtype=np.float64)
    out_rel = np.empty(int(new_offsets[-1]), dtype=np.float32)
    fill_top_peaks(mz, intensity, offsets, new_offsets, out_mz, out_rel)
    return out_mz, out_rel, new_offsets


def _select_peaks_numpy(
    mz: np.ndarray, intensity: np.ndarray, offsets: np.ndarray, max_peaks: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``select_peaks`` as one stable sort over all valid peaks by (spectrum, descending intensity)."""
    n = offsets.shape[0] - 1
    spectrum = np.repeat(np.arange(n, dtype=np.int64), np.diff(offsets))
    valid = np.isfinite(mz) & np.isfinite(intensity) & (mz > 0) & (intensity > 0)
    mz, intensity, spectrum = mz[valid], intensity[valid], spectrum[valid]
    order = np.lexsort((-intensity, spectrum))  # lexsort is stable: equal intensities keep their input order
    mz, intensity, spectrum = mz[order], intensity[order], spectrum[order]
    counts = np.bincount(spectrum, minlength=n)
    first = offsets_from_counts(counts)[:-1]
    keep = np.arange(spectrum.shape[0]) - first[spectrum] < max_peaks
    base = intensity[first[spectrum]]  # each spectrum's most intense valid peak
    new_offsets = offsets_from_counts(np.minimum(counts, max_peaks))
    return mz[keep], (intensity[keep] / base[keep]).astype(np.float32), new_offsets


def bucket_batches(lengths: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """Indices of non-empty spectra, sorted by peak count (stable) and cut into batches."""
    idx = np.flatnonzero(lengths > 0)
    idx = idx[np.argsort(lengths[idx], kind="stable")]
    return [idx[i : i + batch_size] for i in range(0, idx.shape[0], batch_size)]


def pad_batch(
    idx: np.ndarray, mz: np.ndarray, rel: np.ndarray, offsets: np.ndarray, precursor: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Padded ``(mz, rel_intensity, precursor, mask)`` arrays for spectra ``idx`` of flat peaks (``offsets``)."""
    lengths = offsets[idx + 1] - offsets[idx]
    # Widths rounded up to a multiple of 8: fewer distinct shapes means fewer oneDNN kernels built on the fly.
    width = -(-int(lengths.max()) // 8) * 8
    rows = np.repeat(np.arange(idx.shape[0]), lengths)
    first = np.repeat(np.concatenate(([0], np.cumsum(lengths)[:-1])), lengths)
    cols = np.arange(rows.shape[0]) - first
    source = np.repeat(offsets[idx], lengths) + cols
    mz_pad = np.zeros((idx.shape[0], width), dtype=np.float64)
    rel_pad = np.zeros((idx.shape[0], width), dtype=np.float32)
    mask = np.zeros((idx.shape[0], width), dtype=bool)
    mz_pad[rows, cols] = mz[source]
    rel_pad[rows, cols] = rel[source]
    mask[rows, cols] = True
    return mz_pad, rel_pad, precursor[idx].astype(np.float64), mask


def embed_arrays(
    mz: np.ndarray,
    intensity: np.ndarray,
    offsets: np.ndarray,
    precursor_mz: np.ndarray,
    params: dict | None = None,
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Embed ``n`` spectra given as flat peak arrays with ``offsets`` (n+1) and ``precursor_mz`` (n; NaN unknown).

    Returns ``(embeddings (n, dim) float32, has_peaks (n,) bool, info)``. Rows of spectra without valid peaks
    are zeros and ``has_peaks`` is False for them. ``info`` is the encoder's info plus device, precision and
    throughput.
    """
    p = merge_params(params)
    model, model_info, device = get_model(p)
    mode = resolve_mode(str(p["precision"]), device)
    autocast_dtype = resolve_precision(str(p["precision"]), device) if mode != "int8" else None
    precursor = np.asarray(precursor_mz, dtype=np.float64)
    n = precursor.shape[0]
    if np.asarray(offsets).shape[0] != n + 1:
        raise ValueError(f"offsets must have length n+1 = {n + 1}, got {np.asarray(offsets).shape[0]}")
    start = time.perf_counter()
    sel_mz, sel_rel, sel_offsets = select_peaks(mz, intensity, offsets, int(p["max_peaks"]))
    lengths = np.diff(sel_offsets)
    dim = model.config.dim
    out = np.zeros((n, dim), dtype=np.float32)
    cuda = device.type == "cuda"
    pending: list[tuple[np.ndarray, torch.Tensor]] = []
    # PyTorch's fused transformer fast path reads each Linear's weight tensor, which quantised layers lack.
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(fastpath and mode != "int8")
    with _restore_fastpath(fastpath), torch.inference_mode(), torch.autocast(
        device_type=device.type, dtype=autocast_dtype or torch.float32, enabled=autocast_dtype is not None
    ):
        for idx in bucket_batches(lengths, int(p["batch_size"])):
            arrays = pad_batch(idx, sel_mz, sel_rel, sel_offsets, precursor)
            tensors = [torch.from_numpy(a) for a in arrays]
            if cuda:
                # Pinned host memory lets the copy overlap with the previous batch's kernels.
                tensors = [t.pin_memory().to(device, non_blocking=True) for t in tensors]
            emb = model(*tensors)
            if cuda:
                pending.append((idx, emb))  # gather at the end: no host sync per batch
            else:
                out[idx] = emb.numpy()
    if pending:
        order = np.concatenate([idx for idx, _ in pending])
        out[order] = torch.cat([e for _, e in pending]).float().cpu().numpy()
    elapsed = time.perf_counter() - start
    info = dict(model_info)
    info.update(
        device=str(device),
        precision=mode,
        batch_size=int(p["batch_size"]),
        max_peaks=int(p["max_peaks"]),
        torch_threads=torch.get_num_threads(),
        n_spectra=n,
        n_without_peaks=int((lengths == 0).sum()),
        seconds=elapsed,
        spectra_per_second=(n / elapsed) if elapsed > 0 else None,
    )
    return out, lengths > 0, info


@contextlib.contextmanager
def _restore_fastpath(enabled: bool):
    try:
        yield
    finally:
        torch.backends.mha.set_fastpath_enabled(enabled)


def flat_list_column(series: pl.Series, dtype: type) -> tuple[np.ndarray, np.ndarray]:
    lengths = series.list.len().fill_null(0).to_numpy().astype(np.int64)
    values = series.explode(empty_as_null=False, keep_nulls=False).fill_null(np.nan).to_numpy().astype(dtype)
    offsets = np.concatenate(([0], np.cumsum(lengths))).astype(np.int64)
    return values, offsets


def set_threads(threads: int | None) -> None:
    if threads:
        torch.set_num_threads(int(threads))


def embed_spectra(spectra: pl.DataFrame, params: dict | None = None) -> pl.DataFrame:
    """Embed every row of a spectra table (``tables.SPECTRA``) into a ``tables.EMBEDDINGS`` table.

    Row order follows ``spectra``; spectra without peaks get a null embedding. Extra columns ``model_id`` and
    ``model_trained`` say which encoder produced the vectors (so downstream stages and the report can tell an
    untrained placeholder from a trained model).
    """
    missing = [c for c in ("spectrum_id", "sample_id", "feature_id", "precursor_mz", "mz", "intensity")
               if c not in spectra.columns]
    if missing:
        raise InputError(f"spectra table lacks columns {missing}", fix="produce it with 'ms2study spectra'")
    mz, offsets = flat_list_column(spectra["mz"], np.float64)
    intensity, int_offsets = flat_list_column(spectra["intensity"], np.float32)
    if not np.array_equal(offsets, int_offsets):
        bad = int(np.flatnonzero(np.diff(offsets) != np.diff(int_offsets))[0])
        raise InputError(
            f"spectrum '{spectra['spectrum_id'][bad]}' has {offsets[bad + 1] - offsets[bad]} m/z values but "
            f"{int_offsets[bad + 1] - int_offsets[bad]} intensities", fix="regenerate the spectra table",
        )
    precursor = spectra["precursor_mz"].cast(pl.Float64).fill_null(np.nan).to_numpy()
    emb, has_peaks, info = embed_arrays(mz, intensity, offsets, precursor, params)
    log.info(
        "embedded %d spectra (%d without peaks -> null) in %.2f s on %s/%s with %s",
        info["n_spectra"], info["n_without_peaks"], info["seconds"], info["device"], info["precision"],
        info["description"],
    )
    column = pl.Series("embedding", emb).cast(pl.List(pl.Float32))
    df = spectra.select("spectrum_id", "sample_id", "feature_id").with_columns(
        pl.when(pl.Series(has_peaks)).then(column).otherwise(None).alias("embedding"),
        pl.lit(info["model_id"]).alias("model_id"),
        pl.lit(bool(info["trained"])).alias("model_trained"),
    )
    return conform(df, EMBEDDINGS)


def embed_library(index_dir: str | os.PathLike, params: dict | None = None) -> tuple[str, Path]:
    """Embed every spectrum of a library index (``ms2study.library.index``) and store the matrix in the index.

    Returns ``(model_id, path of the .npy)``; a current matrix for the same model is reused. Rows of
    spectra without peaks are zeros. Read it back with ``LibraryIndex.embeddings(model_id)``.
    """
    from ms2study.library.index import load_library_index, save_library_embeddings

    index = load_library_index(index_dir)
    _model, info, _device = get_model(params)
    existing = index.embeddings(info["model_id"])
    if existing is not None and existing.shape[0] == len(index):
        log.info("library %s: embeddings for %s already present", index_dir, info["model_id"])
        return info["model_id"], index.path / "embeddings"
    emb, _has_peaks, info = embed_arrays(index.mz, index.intensity, index.offsets, index.precursor_mz, params)
    log.info("library %s: embedded %d spectra in %.1f s", index_dir, len(index), info["seconds"])
    return info["model_id"], save_library_embeddings(index_dir, info["model_id"], emb)
