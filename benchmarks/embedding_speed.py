"""Spectrum-encoder throughput: spectra per second on CPU (and on a GPU when torch sees one), written as JSON.

Spectra come from ``../shared/data/massbank/massbank_dev.mgf.gz`` when it exists (real peak-count distribution),
else from a seeded simulation with a similar distribution. Timing covers the whole ``embed_arrays`` path (top-N peak
selection, bucketing, padding, host-to-device copies, forward pass), after one warm-up pass that builds kernels.
GPU runs embed ``--gpu-n`` spectra (the set repeated) in fp32, bf16 and fp16; ``host_preparation`` times the
host-side steps alone on that set, which bounds what any GPU can reach on this host. ``gpu_first_call`` times, per
precision, a fresh process's first and second calls on the set at the embed stage's batch size: what one sample's
embed job pays, and the reason ``precision: auto`` is fp32 on CUDA.

CPU runs cover fp32, int8 (dynamically quantised feed-forward layers, what ``precision: auto`` picks on CPUs without
native bf16) and bf16 where the CPU has it. A second process repeats fp32 and int8 with PyTorch and oneDNN held to
AVX2 (``ATEN_CPU_CAPABILITY=avx2``, ``ONEDNN_MAX_CPU_ISA=AVX2``): a stand-in, on the same chip, for a CPU without
AVX-512 and bf16 such as an older AMD EPYC; it is labelled ``isa: avx2 (emulated)`` and is not a measurement of
such a CPU. ``int8_max_cosine_distance`` is the largest ``1 - cosine`` between int8 and fp32 embeddings.

    PYTHONPATH=workflow python benchmarks/embedding_speed.py --out result.json [--n 5000] [--model DIR]
    # on a machine without ../shared: take the spectra along as arrays
    python benchmarks/embedding_speed.py --save-arrays spectra.npz --out /dev/null   # where ../shared exists
    python benchmarks/embedding_speed.py --arrays spectra.npz --out result.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "workflow"))

from machine import cpu_model
from ms2study.core.threads import limit_threads
from ms2study import __version__
from ms2study.encoder.inference import (
    bucket_batches, cpu_supports_bf16, embed_arrays, get_model, merge_params, pad_batch, resolve_mode, select_peaks,
)

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


def save_arrays(path: Path, source: str, arrays: tuple) -> None:
    """Write the spectra's flat arrays (and where they came from) to ``path`` (.npz)."""
    mz, intensity, offsets, precursor = arrays
    np.savez_compressed(path, mz=mz, intensity=intensity, offsets=offsets, precursor_mz=precursor,
                        source=np.array(source))


def load_arrays(path: Path) -> tuple[str, tuple]:
    """The spectra written by ``save_arrays``."""
    with np.load(path) as data:
        arrays = (data["mz"], data["intensity"], data["offsets"], data["precursor_mz"])
        return f"{data['source']} (from {path.name})", arrays


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
    select_peaks(mz, intensity, offsets, max_peaks)  # warm-up: compiles the numba path when the input takes it
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


def cosine_distance_max(a: np.ndarray, b: np.ndarray) -> float:
    """Largest ``1 - cosine`` between matching rows of two embedding matrices (rows of zeros ignored)."""
    keep = (np.linalg.norm(a, axis=1) > 0) & (np.linalg.norm(b, axis=1) > 0)
    cos = (a[keep] * b[keep]).sum(1) / np.linalg.norm(a[keep], axis=1) / np.linalg.norm(b[keep], axis=1)
    return float(1 - cos.min())


def cpu_runs(arrays: tuple, base: dict, batch_sizes: list[int], repeats: int, isa: str) -> list[dict]:
    """fp32, int8 and (where native) bf16 runs on the CPU, each labelled with ``isa``."""
    runs = []
    precisions = ["fp32", "int8"] + (["bf16"] if cpu_supports_bf16() and isa == "native" else [])
    for precision in precisions:
        for bs in batch_sizes:
            run = measure(arrays, dict(base, device="cpu", precision=precision, batch_size=bs), repeats)
            runs.append(dict(run, isa=isa))
            print(json.dumps(runs[-1]), flush=True)
    return runs


def emulated_avx2_runs(args: argparse.Namespace, arrays_file: Path) -> list[dict]:
    """The CPU runs again in a child process whose PyTorch and oneDNN may use AVX2 at most."""
    env = dict(os.environ, ATEN_CPU_CAPABILITY="avx2", ONEDNN_MAX_CPU_ISA="AVX2")
    out = arrays_file.with_suffix(".avx2.json")
    cmd = [sys.executable, __file__, "--arrays", str(arrays_file), "--out", str(out), "--child-avx2",
           "--model", args.model, "--threads", str(args.threads), "--max-peaks", str(args.max_peaks),
           "--repeats", str(args.repeats), "--cpu-batch-sizes", args.cpu_batch_sizes]
    subprocess.run(cmd, env=env, check=True)
    return json.loads(out.read_text())["runs"]


def first_call(arrays_file: Path, model: str, precision: str, batch_size: int) -> dict:
    """A fresh process's first ``embed_arrays`` call on CUDA (model load excluded), as an embed job pays it.

    Each embed job is a new process: one-off costs (CUDA context, kernels for each batch shape and precision) fall
    on its first batches. Runs ``--child-first-call`` in a child process and returns its timings (seconds).
    """
    cmd = [sys.executable, __file__, "--arrays", str(arrays_file), "--out", "/dev/null", "--model", model,
           "--child-first-call", precision, "--gpu-batch-sizes", str(batch_size)]
    done = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def child_first_call(arrays: tuple, base: dict, precision: str, batch_size: int) -> None:
    """Print the CUDA start, the first and the second ``embed_arrays`` call's seconds as one JSON line."""
    params = dict(base, device="cuda", precision=precision, batch_size=batch_size)
    get_model(params)
    start = time.perf_counter()
    torch.zeros(1, device="cuda")
    torch.cuda.synchronize()
    cuda_start = time.perf_counter() - start
    first = embed_arrays(*arrays, params)[2]["seconds"]
    second = embed_arrays(*arrays, params)[2]["seconds"]
    print(json.dumps({"precision": precision, "batch_size": batch_size, "n_spectra": int(arrays[3].shape[0]),
                      "cuda_start_s": round(cuda_start, 3), "first_call_s": round(first, 3),
                      "second_call_s": round(second, 3)}))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="result JSON")
    parser.add_argument("--n", type=int, default=5000, help="spectra to embed")
    parser.add_argument("--model", default="default", help="checkpoint folder, 'default' or 'none' (placeholder)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--max-peaks", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--cpu-batch-sizes", default="256", help="comma-separated")
    parser.add_argument("--gpu-batch-sizes", default="256,1024,4096,16384", help="comma-separated")
    parser.add_argument("--gpu-n", type=int, default=200_000, help="spectra per GPU run (the CPU set repeated)")
    parser.add_argument("--arrays", help="read the spectra from this .npz (written by --save-arrays)")
    parser.add_argument("--save-arrays", help="write the spectra to this .npz and stop")
    parser.add_argument("--no-avx2-emulation", action="store_true", help="skip the AVX2-only child process")
    parser.add_argument("--child-avx2", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--child-first-call", help=argparse.SUPPRESS)
    args = parser.parse_args()

    # numba, torch and OpenMP together: a numba kernel otherwise resizes the OpenMP pool torch shares (a 16-core run
    # reported 16 torch threads after torch.set_num_threads(2)).
    limit_threads(args.threads)
    model = None if args.model.lower() == "none" else args.model
    source, arrays = load_arrays(Path(args.arrays)) if args.arrays else load_spectra(args.n, seed=0)
    if args.save_arrays:
        save_arrays(Path(args.save_arrays), source, arrays)
        print(f"{args.save_arrays}: {arrays[3].shape[0]} spectra from {source}")
        return 0
    base = {"model": model, "max_peaks": args.max_peaks, "seed": 0}
    _model, info, _device = get_model(dict(base, device="cpu"))
    batch_sizes = [int(b) for b in args.cpu_batch_sizes.split(",")]
    if args.child_first_call:
        child_first_call(arrays, base, args.child_first_call, int(args.gpu_batch_sizes.split(",")[0]))
        return 0
    if args.child_avx2:
        runs = cpu_runs(arrays, base, batch_sizes, args.repeats, "avx2 (emulated)")
        Path(args.out).write_text(json.dumps({"runs": runs}) + "\n")
        return 0
    runs = cpu_runs(arrays, base, batch_sizes, args.repeats, "native")
    fp32, _, _ = embed_arrays(*arrays, dict(base, device="cpu", precision="fp32"))
    int8, _, _ = embed_arrays(*arrays, dict(base, device="cpu", precision="int8"))
    int8_distance = cosine_distance_max(fp32, int8)
    if not args.no_avx2_emulation:
        with tempfile.TemporaryDirectory() as tmp:
            arrays_file = Path(tmp) / "spectra.npz"
            save_arrays(arrays_file, source, arrays)
            runs += emulated_avx2_runs(args, arrays_file)
    gpu = None
    big = replicate(arrays, args.gpu_n)
    host = host_preparation(big, args.max_peaks, max(int(b) for b in args.gpu_batch_sizes.split(",")), args.repeats)
    print(json.dumps({"host_preparation": host}), flush=True)
    gpu_agreement = {}
    first_calls: list[dict] = []
    if torch.cuda.is_available():
        gpu = torch.cuda.get_device_name(0)
        # The CUDA path against the CPU's fp32 on the same spectra: largest 1 - cosine per precision.
        for precision in ("fp32", "bf16", "fp16"):
            emb, _, _ = embed_arrays(*arrays, dict(base, device="cuda", precision=precision, batch_size=1024))
            gpu_agreement[precision] = round(cosine_distance_max(fp32, emb), 6)
        print(json.dumps({"gpu_vs_cpu_fp32_max_cosine_distance": gpu_agreement}), flush=True)
        with tempfile.TemporaryDirectory() as tmp:
            arrays_file = Path(tmp) / "spectra.npz"
            save_arrays(arrays_file, source, arrays)
            for precision in ("fp32", "bf16", "fp16"):
                first_calls.append(first_call(arrays_file, args.model, precision, merge_params({})["batch_size"]))
                print(json.dumps({"first_call": first_calls[-1]}), flush=True)
        for precision in ("fp32", "bf16", "fp16"):
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
        "int8_max_cosine_distance": round(int8_distance, 6),
        "gpu_vs_cpu_fp32_max_cosine_distance": gpu_agreement or None,
        "gpu_first_call": first_calls or None,
        "gpu_auto_precision": resolve_mode("auto", torch.device("cuda")),
        "best_cpu_spectra_per_second": max(r["spectra_per_second"] for r in runs if r["device"] == "cpu"),
        "best_cpu_without_bf16_spectra_per_second": max(
            (r["spectra_per_second"] for r in runs if r["device"] == "cpu" and r["precision"] != "bf16"),
            default=None),
        "avx2_emulated_spectra_per_second": {
            r["precision"]: r["spectra_per_second"] for r in runs if r.get("isa") == "avx2 (emulated)"},
        "best_gpu_spectra_per_second": max(
            (r["spectra_per_second"] for r in runs if r["device"].startswith("cuda")), default=None
        ),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{out}: best CPU {result['best_cpu_spectra_per_second']} spectra/s, int8 1-cos max {int8_distance:.1e}, "
          f"GPU {result['best_gpu_spectra_per_second']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
