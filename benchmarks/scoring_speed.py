"""Benchmark: our numba scoring against matchms CosineGreedy and ms_entropy FlashEntropySearch.

Library = all of ../shared/data/massbank/massbank_dev.mgf.gz, queries = 5,000 of its spectra (seeded).
(a) cosine on the same candidate pairs (same ion mode, 10 ppm precursor window): pairs/s for matchms and ours
    (matchms is timed on a random subset of the pairs, capped by --matchms-pairs, to bound the run time);
(b) entropy identity search (positive mode, 0.01 Da precursor window, 0.02 Da fragments, ms_entropy's default
    cleaning) against FlashEntropySearch: queries/s for both (query cleaning included), index building timed
    separately, and top-1 agreement;
(c) memory of an identity search against the library replicated to about --replicate-to spectra (child process
    peak RSS).
Usage: python benchmarks/scoring_speed.py --out result.json   (with PYTHONPATH=workflow)
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "workflow"))

from ms2study import annotate, scoring  # noqa: E402
from ms2study.library import ReadReport, build_library, read_library_file  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "massbank" / "massbank_dev.mgf.gz"


def flat_subset(built, rows):
    counts = np.diff(built.offsets)[rows]
    offsets = np.zeros(rows.size + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    sel = np.concatenate([np.arange(built.offsets[r], built.offsets[r + 1]) for r in rows])
    return offsets, built.mz[sel], built.intensity[sel]


def our_entropy_search(lib_prec, lib_mode, lib_ent, q_raw, q_prec, ms1_da, tol):
    """Identity search from raw query peaks to the top-1 library row per query (-1 when none)."""
    from ms2study.cleaning import clean_peaks

    mzs, ints = [], []
    for mz, inten, prec in zip(q_raw[0], q_raw[1], q_prec):
        a, b = clean_peaks(mz, inten, prec)
        mzs.append(a)
        ints.append(b)
    offsets = np.zeros(len(mzs) + 1, dtype=np.int64)
    np.cumsum([m.size for m in mzs], out=offsets[1:])
    q_ent = scoring.prepare_entropy_peaks(
        offsets, np.concatenate(mzs), np.concatenate(ints).astype(np.float32), 0.01, 0.05, True
    )
    mode = np.ones(len(mzs), dtype=np.int8)
    c_off, c_lib = annotate.find_candidates(np.asarray(q_prec), mode, lib_prec, lib_mode, None, ms1_da)
    scores, _ = scoring.entropy_candidates(*q_ent, *lib_ent, c_off, c_lib, tol)
    best = np.full(len(mzs), -1, dtype=np.int64)
    best_s = np.zeros(len(mzs))
    for q in range(len(mzs)):
        a, b = c_off[q], c_off[q + 1]
        if b > a:
            k = int(np.argmax(scores[a:b]))
            if scores[a + k] > 0:
                best[q], best_s[q] = c_lib[a + k], scores[a + k]
    return best, best_s, int(c_lib.size)


def _memory_child(conn, data_path, n_target, n_queries, seed):
    """Build a replicated library of ~n_target spectra and search it; report peak RSS."""
    report = ReadReport()
    built = build_library(read_library_file(data_path, report))
    reps = max(1, int(np.ceil(n_target / built.metadata.height)))
    n = built.metadata.height
    counts = np.diff(built.offsets)
    # Replicating each spectrum in place keeps the precursor order (and the ion-mode blocks) sorted.
    rows = np.repeat(np.arange(n), reps)
    offsets = np.zeros(rows.size + 1, dtype=np.int64)
    np.cumsum(counts[rows], out=offsets[1:])
    mz = np.concatenate([built.mz[built.offsets[r]:built.offsets[r + 1]] for r in range(n)])
    # Build the flat peaks by repeating each spectrum's block reps times.
    starts = np.repeat(built.offsets[:-1], reps)
    idx = np.concatenate([np.arange(s, s + c) for s, c in zip(starts, counts[rows])])
    mz, inten = built.mz[idx], built.intensity[idx]
    del idx
    lib_prec, lib_mode = built.precursor_mz[rows], built.ion_mode[rows]
    t0 = time.perf_counter()
    lib_ent = scoring.prepare_entropy_peaks(offsets, mz, inten, 0.01, 0.05, True)
    build_s = time.perf_counter() - t0
    rng = np.random.default_rng(seed)
    qrows = rng.choice(np.flatnonzero(built.ion_mode == 1), size=n_queries, replace=False)
    q_raw = ([built.mz[built.offsets[r]:built.offsets[r + 1]] for r in qrows],
             [built.intensity[built.offsets[r]:built.offsets[r + 1]] for r in qrows])
    t0 = time.perf_counter()
    _, _, n_pairs = our_entropy_search(lib_prec, lib_mode, lib_ent, q_raw, built.precursor_mz[qrows], 0.01, 0.02)
    search_s = time.perf_counter() - t0
    conn.send({
        "library_spectra": int(rows.size), "library_peaks": int(mz.size), "entropy_index_build_s": round(build_s, 2),
        "queries": n_queries, "candidate_pairs": n_pairs, "queries_per_s": round(n_queries / search_s, 1),
        "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2, 2),
    })


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--data", default=str(DEFAULT_DATA))
    ap.add_argument("--queries", type=int, default=5000)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--matchms-pairs", type=int, default=30000, help="pairs timed for matchms (subset)")
    ap.add_argument("--replicate-to", type=int, default=1_000_000, help="library size for the memory run (0 = skip)")
    args = ap.parse_args(argv)

    from matchms import Spectrum
    from matchms.similarity import CosineGreedy
    from ms_entropy import FlashEntropySearch

    result: dict = {"data": str(args.data), "n_queries": args.queries, "seed": args.seed}
    t0 = time.perf_counter()
    report = ReadReport()
    raw = list(read_library_file(args.data, report))
    result["parse_s"] = round(time.perf_counter() - t0, 2)
    t0 = time.perf_counter()
    built = build_library(raw, report=report)
    result["our_library_build_s"] = round(time.perf_counter() - t0, 2)
    n = built.metadata.height
    result["library_spectra"] = n
    rng = np.random.default_rng(args.seed)
    qrows = np.sort(rng.choice(n, size=args.queries, replace=False))
    q_off, q_mz, q_int = flat_subset(built, qrows)
    q_prec, q_mode = built.precursor_mz[qrows], built.ion_mode[qrows]

    # (a) cosine on the 10 ppm candidate pairs.
    c_off, c_lib = annotate.find_candidates(q_prec, q_mode, built.precursor_mz, built.ion_mode, 10.0, None)
    args_cos = (q_off, q_mz, q_int, q_prec, built.offsets, built.mz, built.intensity, built.precursor_mz)
    warm = (q_off[:2], q_mz, q_int, q_prec[:1], *args_cos[4:])
    scoring.cosine_candidates(*warm, c_off[:2], c_lib[: c_off[1]], 0.1, 0.0, 1.0, False)  # compile / load cache
    t0 = time.perf_counter()
    ours_cos, ours_m = scoring.cosine_candidates(*args_cos, c_off, c_lib, 0.1, 0.0, 1.0, False)
    ours_s = time.perf_counter() - t0
    n_pairs = int(c_lib.size)
    q_of = np.repeat(np.arange(qrows.size), np.diff(c_off))
    pick = np.sort(rng.choice(n_pairs, size=min(args.matchms_pairs, n_pairs), replace=False))

    def spec(flat_off, flat_mz, flat_int, prec, i):
        a, b = flat_off[i], flat_off[i + 1]
        return Spectrum(mz=flat_mz[a:b].astype(float), intensities=flat_int[a:b].astype(float),
                        metadata={"precursor_mz": float(prec[i])})

    refs = {r: spec(built.offsets, built.mz, built.intensity, built.precursor_mz, r) for r in set(c_lib[pick].tolist())}
    qs = {q: spec(q_off, q_mz, q_int, q_prec, q) for q in set(q_of[pick].tolist())}
    cg = CosineGreedy(tolerance=0.1)
    warm_spec = qs[q_of[pick[0]]]
    cg.pair(warm_spec, warm_spec)  # a self pair has matches, so every matchms kernel is compiled before timing
    t0 = time.perf_counter()
    mm = [cg.pair(refs[c_lib[p]], qs[q_of[p]]) for p in pick]
    mm_s = time.perf_counter() - t0
    mm_score = np.array([float(x["score"]) for x in mm])
    mm_match = np.array([int(x["matches"]) for x in mm])
    result.update({
        "candidate_pairs": n_pairs, "matchms_pairs_timed": int(pick.size),
        "matchms_pairs_per_s": round(pick.size / mm_s, 1), "ours_pairs_per_s": round(n_pairs / ours_s, 1),
        "speedup_vs_matchms": round((n_pairs / ours_s) / (pick.size / mm_s), 1),
        "cosine_max_abs_diff_vs_matchms": float(np.abs(mm_score - ours_cos[pick]).max()),
        "matched_peaks_equal_fraction": float(np.mean(mm_match == ours_m[pick])),
    })
    print(json.dumps(result, indent=1), flush=True)

    # (b) entropy identity search, positive mode, against Flash.
    pos = np.flatnonzero(built.ion_mode == 1)
    pos_raw = [raw_by for raw_by in raw if (raw_by.fields.get("IONMODE", "").lower().startswith("pos"))]
    lib_spectra = [{"id": i, "precursor_mz": float(r.fields["PEPMASS"].split()[0]),
                    "peaks": np.c_[r.mz, r.intensity].astype(np.float32)} for i, r in enumerate(pos_raw)]
    q_pick = rng.choice(len(pos_raw), size=min(args.queries, len(pos_raw)), replace=False)
    queries = [lib_spectra[i] for i in q_pick]
    flash = FlashEntropySearch()
    t0 = time.perf_counter()
    flash_lib = flash.build_index([dict(s) for s in lib_spectra])
    flash_build = time.perf_counter() - t0
    t0 = time.perf_counter()
    flash_top = []
    for q in queries:
        sims = flash.search(precursor_mz=q["precursor_mz"], peaks=q["peaks"], ms1_tolerance_in_da=0.01,
                            ms2_tolerance_in_da=0.02, method="identity")["identity_search"]
        k = int(np.argmax(sims)) if sims.size else -1
        flash_top.append((flash_lib[k]["id"], float(sims[k])) if k >= 0 and sims[k] > 0 else (-1, 0.0))
    flash_s = time.perf_counter() - t0

    # Load the compiled kernels before timing (numba cache), as Flash's C code is loaded at import.
    scoring.prepare_entropy_peaks(built.offsets[:3], built.mz, built.intensity, 0.01, 0.05, True)
    t0 = time.perf_counter()
    pos_built = build_library(pos_raw)
    lib_ent = scoring.prepare_entropy_peaks(pos_built.offsets, pos_built.mz, pos_built.intensity, 0.01, 0.05, True)
    ours_build = time.perf_counter() - t0
    # build_library reorders by precursor: map its rows back to the raw positions.
    raw_pos = {(r.source_file, r.entry): i for i, r in enumerate(pos_raw)}
    row_to_raw = np.array([raw_pos[(str(args.data), e)] for e in pos_built.metadata["source_entry"].to_list()])
    q_raw = ([pos_raw[i].mz for i in q_pick], [pos_raw[i].intensity for i in q_pick])
    q_prec_pos = np.array([lib_spectra[i]["precursor_mz"] for i in q_pick])
    lib_arrays = (pos_built.precursor_mz, pos_built.ion_mode, lib_ent)
    our_entropy_search(*lib_arrays, (q_raw[0][:2], q_raw[1][:2]), q_prec_pos[:2], 0.01, 0.02)
    t0 = time.perf_counter()
    best, best_s, _ = our_entropy_search(*lib_arrays, q_raw, q_prec_pos, 0.01, 0.02)
    ours_q_s = time.perf_counter() - t0
    ours_top = [int(row_to_raw[b]) if b >= 0 else -1 for b in best]
    both = [(f, o, fs, os_) for (f, fs), o, os_ in zip(flash_top, ours_top, best_s) if f >= 0 or o >= 0]
    strict = np.mean([f == o for f, o, _, _ in both])
    same_score = np.mean([f == o or abs(fs - os_) <= 1e-5 for f, o, fs, os_ in both])
    result.update({
        "entropy_library_spectra": len(lib_spectra), "entropy_queries": len(queries),
        "flash_index_build_s": round(flash_build, 2), "ours_index_build_s": round(ours_build, 2),
        "flash_queries_per_s": round(len(queries) / flash_s, 1),
        "ours_queries_per_s": round(len(queries) / ours_q_s, 1),
        "speedup_vs_flash": round(flash_s / ours_q_s, 1),
        "top1_agreement_with_flash": round(float(same_score), 4),
        "top1_same_library_row_with_flash": round(float(strict), 4),
        "top1_max_score_diff_vs_flash": float(max((abs(fs - os_) for _, _, fs, os_ in both), default=0.0)),
    })
    print(json.dumps(result, indent=1), flush=True)

    if args.replicate_to:
        ctx = mp.get_context("spawn")
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=_memory_child, args=(child, args.data, args.replicate_to, 1000, args.seed))
        proc.start()
        result["replicated_search"] = parent.recv()
        proc.join()

    import matchms
    import ms_entropy
    import numba

    result["machine"] = {
        "platform": platform.platform(), "processor": platform.processor(), "cpu_count": os.cpu_count(),
        "numba_threads": numba.get_num_threads(), "python": platform.python_version(),
        "numba": numba.__version__, "matchms": matchms.__version__, "ms_entropy": ms_entropy.__version__,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
