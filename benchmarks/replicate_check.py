"""How often the replicate-injection check (``ms2study.modelling.replicates.replicate_groups``) flags clean studies
and how often it finds replicates the sheet does not mark, on synthetic log-normal studies.

Each study: ``p`` features, subjects with biological log-sd ``bio`` around a common profile, classes that differ
in a block of features (``effect`` features x ``fold``), and runs with technical log-sd ``tech``; a clean study has
one run per subject, a replicate study 2 or 3 runs per subject (adjacent ids). Written per setting: the share of
clean studies with any flag, and the share of true replicate pairs found. Usage:

  PYTHONPATH=workflow python benchmarks/replicate_check.py --out R.json [--studies 100] [--quick]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import machine_record

from ms2study.modelling.replicates import RATIO, replicate_groups

SETTINGS = [  # (name, classes, effect features, fold)
    ("two groups, 30 features 3x", 2, 30, 3.0),
    ("two clusters, 300 features 10x", 2, 300, 10.0),
    ("three classes, 150 features 5x", 3, 150, 5.0),
    ("six classes, 100 features 5x", 6, 100, 5.0),
]


def study(rng: np.random.Generator, n: int, p: int, bio: float, tech: float, reps: int, classes: int, effect: int,
          fold: float) -> np.ndarray:
    """Runs x features log intensities; the runs of subject k are rows reps*k ... reps*k + reps - 1."""
    n_sub = n // reps
    subjects = rng.normal(0, bio, (n_sub, p))
    label = np.arange(n_sub) % classes
    for c in range(1, classes):
        subjects[label == c, (c - 1) * effect: c * effect] += np.log(fold)
    runs = np.repeat(np.arange(n_sub), reps)
    return rng.normal(12, 1.5, p) + subjects[runs] + rng.normal(0, tech, (n_sub * reps, p))


def pairs(groups: list) -> set[tuple[int, int]]:
    out = set()
    for runs, _inside, _outside in groups:
        idx = sorted(int(r) for r in runs)
        out |= {(a, b) for i, a in enumerate(idx) for b in idx[i + 1:]}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--studies", type=int, default=100)
    parser.add_argument("--features", type=int, default=600)
    parser.add_argument("--quick", action="store_true", help="10 studies, 12 and 24 samples only")
    args = parser.parse_args(argv)
    studies = 10 if args.quick else args.studies
    sizes = (12, 24) if args.quick else (6, 12, 24, 48)
    rng = np.random.default_rng(0)
    started, rows = time.perf_counter(), []
    for name, classes, effect, fold in SETTINGS:
        for bio in (0.2, 0.4):
            for n in sizes:
                if 2 * classes > n:
                    continue
                ids = [str(i) for i in range(n)]
                clean = sum(bool(replicate_groups(study(rng, n, args.features, bio, 0.1, 1, classes, effect, fold),
                                                  ids)) for _ in range(studies))
                found = {}
                for tech, reps in ((0.1, 2), (0.15, 2), (0.1, 3)):
                    if n % reps:
                        continue
                    truth = {(reps * k + a, reps * k + b) for k in range(n // reps) for a in range(reps)
                             for b in range(a + 1, reps)}
                    share = [len(pairs(replicate_groups(study(rng, n, args.features, bio, tech, reps, classes, effect,
                                                              fold), ids)) & truth) / len(truth)
                             for _ in range(studies)]
                    found[f"tech_sd_{tech}_runs_{reps}"] = round(float(np.mean(share)), 3)
                rows.append({"setting": name, "biological_sd": bio, "n_runs": n, "clean_studies_flagged":
                             round(clean / studies, 3), "replicate_pairs_found": found})
                print(json.dumps(rows[-1]), flush=True)
    result = {"benchmark": "replicate_check", "ratio": RATIO, "studies_per_setting": studies,
              "features": args.features, "machine": machine_record(), "rows": rows,
              "seconds": round(time.perf_counter() - started, 1)}
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
