"""Spectrum-encoder throughput: spectra per second on CPU (and on a GPU when torch sees one), written as JSON.

Spectra come from ``../shared/data/massbank/massbank_dev.mgf.gz`` when it exists (real peak-count distribution),
else from a seeded simulation with a similar distribution. Timing covers the whole ``embed_arrays`` path (top-N peak
selection, bucketing, padding, host-to-device copies, forward pass), after one warm-up pass that builds kernels.
GPU runs embed ``--gpu-n`` spectra (the set repeated); ``host_preparation`` times the host-side steps alone on that
set, which bounds what any GPU can reach on this host.

    PYTHONPATH=workflow python benchmarks/embedding_speed.py --out result.json [--n 5000] [--model DIR]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "workflow"))

from machine import cpu_model
from ms2study import __version__
from ms2study.encoder.inference import bucket_batches, cpu_supports_bf16, embed_arrays, get_model, pad_batch, select_peaks

MASSBANK = REPO.parent / "shared" / "data" / "massbank" / "massbank_dev.mgf.gz"


def load_spectra(n: int, seed: int) -> tuple[str, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    if MASSBANK.exists():
        from ms2study.io.formats import read_library_file
        from ms2study.library.build import build_library

        built = build_library(itertools.islice(read_library_file(MASSBANK), n))
        return f"MassBank ({MASSBANK.name}, first {n} entries)", (
            built.mz, built.intensity, built.offsets, built.precursor_mz,
        )
    rng = np.random.default_rng(seed)
    # Log-normal peak counts: median ~12, long tail, like cleaned library spectra.
    counts = np.clip(rng.lognormal(np.log(12), 1.0, n).astype(np.int64), 1, 500)
    precursor = rng.uniform(100, 1000, n)
    offsets = np.concatenate(([0], np.cumsum(counts)))
    mz = rng.uniform(0.05, 0.98, offsets[-1]) * np.repeat(precursor, counts)
    intensity = rng.pareto(1.5, offsets[-1]).astype(np.float32) + 1e-3
    return f"simulated ({n} spectra, seed {seed})", (mz, intensity, offsets, precursor)


def replicate(arrays: tuple, n: int) -> tuple:
    """The spectra repeated (whole spectra, in order) until there are ``n``: a GPU needs more than a few thousand."""
    mz, intensity, offsets, precursor = arrays
    m = precursor.shape[0]
    take = np.arange(n) % m
    new_offsets = np.concatenate(([0], np.cumsum(np.diff(offsets)[take]))).astype(np.int64)
    # Spectra are stored back to back, so n spectra in cyclic order are the peak arrays tiled and cut.
    flat = np.tile(np.arange(offsets[0], offsets[-1]), -(-n // m))[: new_offsets[-1]]
    return mz[flat], intensity[flat], new_offsets, precursor[take]


def host_preparation(arrays: tuple, max_peaks: int, batch_size: int, repeats: int) -> dict:
    """Spectra/s of the host-side steps alone (top-N peak selection, bucketing, padding): the ceiling for a GPU."""
    mz, intensity, offsets, precursor = arrays
    select_peaks(mz[:10], intensity[:10], np.array([0, min(10, mz.shape[0])]), max_peaks)  # compile
    best = None
    for _ in range(repeats):
        start = time.perf_counter()
        sel_mz, sel_rel, sel_off = select_peaks(mz, intensity, offsets, max_peaks)
        for idx in bucket_batches(np.diff(sel_off), batch_size):
            pad_batch(idx, sel_mz, sel_rel, sel_off, precursor)
        elapsed = time.perf_counter() - start
        best = elapsed if best is None else min(best, elapsed)
    n = precursor.shape[0]
    return {"n_spectra": n, "batch_size": batch_size, "threads": os.cpu_count(), "seconds": round(best, 4),
            "spectra_per_second": round(n / best, 1)}


def measure(arrays: tuple, params: dict, repeats: int) -> dict:
    embed_arrays(*arrays, params)  # warm-up: kernels for each batch shape, model load
    if params.get("device", "cpu").startswith("cuda"):
        torch.cuda.synchronize()
    best = None
    for _ in range(repeats):
        start = time.perf_counter()
        _, _, info = embed_arrays(*arrays, params)  # returns after results are on the host
        elapsed = time.perf_counter() - start
        best = elapsed if best is None else min(best, elapsed)
    n = arrays[3].shape[0]
    return {
        "device": info["device"], "precision": info["precision"], "batch_size": params["batch_size"],
        "max_peaks": info["max_peaks"], "torch_threads": info["torch_threads"], "n_spectra": n,
        "seconds": round(best, 4), "spectra_per_second": round(n / best, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="result JSON")
    parser.add_argument("--n", type=int, default=5000, help="spectra to embed")
    parser.add_argument("--model", default="default", help="checkpoint folder, 'default' or 'none' (placeholder)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--max-peaks", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--cpu-batch-sizes", default="256", help="comma-separated")
    parser.add_argument("--gpu-batch-sizes", default="1024,4096,16384", help="comma-separated")
    parser.add_argument("--gpu-n", type=int, default=200_000, help="spectra per GPU run (the CPU set repeated)")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    model = None if args.model.lower() == "none" else args.model
    source, arrays = load_spectra(args.n, seed=0)
    base = {"model": model, "max_peaks": args.max_peaks, "seed": 0}
    _model, info, _device = get_model(dict(base, device="cpu"))
    runs = []
    for precision in (["bf16", "fp32"] if cpu_supports_bf16() else ["fp32"]):
        for bs in (int(b) for b in args.cpu_batch_sizes.split(",")):
            runs.append(measure(arrays, dict(base, device="cpu", precision=precision, batch_size=bs), args.repeats))
            print(json.dumps(runs[-1]), flush=True)
    gpu = None
    big = replicate(arrays, args.gpu_n)
    host = host_preparation(big, args.max_peaks, max(int(b) for b in args.gpu_batch_sizes.split(",")), args.repeats)
    print(json.dumps({"host_preparation": host}), flush=True)
    if torch.cuda.is_available():
        gpu = torch.cuda.get_device_name(0)
        for precision in ("bf16", "fp16"):
            for bs in (int(b) for b in args.gpu_batch_sizes.split(",")):
                runs.append(measure(big, dict(base, device="cuda", precision=precision, batch_size=bs),
                                    args.repeats))
                print(json.dumps(runs[-1]), flush=True)
    result = {
        "benchmark": "embedding_speed",
        "ms2study_version": __version__,
        "model": {k: info[k] for k in ("model_id", "trained", "description", "n_parameters")},
        "spectra": source,
        "hardware": {
            "cpu": cpu_model(), "logical_cpus": os.cpu_count(), "cpu_bf16": cpu_supports_bf16(), "gpu": gpu,
            "torch": torch.__version__, "python": platform.python_version(),
        },
        "runs": runs,
        "host_preparation": host,
        "best_cpu_spectra_per_second": max(r["spectra_per_second"] for r in runs if r["device"] == "cpu"),
        "best_gpu_spectra_per_second": max(
            (r["spectra_per_second"] for r in runs if r["device"].startswith("cuda")), default=None
        ),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{out}: best CPU {result['best_cpu_spectra_per_second']} spectra/s, "
          f"GPU {result['best_gpu_spectra_per_second']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
