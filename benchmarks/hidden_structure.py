"""How often the hidden-structure check (``ms2study.modelling.structure``) speaks on clean studies and how large a
hidden factor it sees, on synthetic log-normal studies.

Each study: ``--features`` features, biological log-sd 0.4 and technical 0.1, a binary outcome raising 30 features
3x, and optionally a hidden two-level factor balanced against the outcome raising ``k`` other features by a fold.
Written per sample size: quantiles and the largest gap of the clean studies (outcome removed first, as the check
does), the share reaching ``MIN_GAP`` and the share reaching ``MIN_GAP_COLUMN`` with a split that a sheet column of
the factor's layout (which has no effect in a clean study) draws exactly, and per hidden factor the median gap, the
share reaching ``MIN_GAP`` and the share the check reports (that, or ``MIN_GAP_COLUMN`` with the factor's column
drawing the split). Usage:

  PYTHONPATH=workflow python benchmarks/hidden_structure.py --out R.json [--studies 300] [--quick]
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

from ms2study.modelling.qc import run_centred
from ms2study.modelling.structure import MIN_GAP, MIN_GAP_COLUMN, best_split, outcome_residuals

FACTORS = ((30, 1.5), (60, 1.5), (60, 2.0), (150, 1.5))


def study_gap(rng: np.random.Generator, n: int, p: int, hidden: int = 0, fold: float = 1.0) -> tuple[float, bool]:
    """The check's gap on one synthetic study (the feature matrix's steps without the file reading), and whether
    its split is exactly the hidden factor's two levels (a sheet column of that layout would be named)."""
    X = rng.normal(12, 1.5, p) + rng.normal(0, 0.4, (n, p)) + rng.normal(0, 0.1, (n, p))
    y = np.arange(n) % 2
    X[y == 1, :30] += np.log(3)
    if hidden:
        X[(np.arange(n) // 2) % 2 == 1, 30:30 + hidden] += np.log(fold)
    R = outcome_residuals(run_centred(X), y, "binary")
    R = R - R.mean(axis=0)
    u, s, _ = np.linalg.svd(R, full_matrices=False)
    gap, high = best_split(u[:, 0] * s[0])
    factor = (np.arange(n) // 2) % 2 == 1
    return gap, bool((high == factor).all() or (high == ~factor).all())


def reported(gaps: np.ndarray, column: np.ndarray) -> np.ndarray:
    """Whether the check reports each study: gap at least MIN_GAP, or MIN_GAP_COLUMN with a column drawing it."""
    return (gaps >= MIN_GAP) | ((gaps >= MIN_GAP_COLUMN) & column)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--studies", type=int, default=300)
    parser.add_argument("--features", type=int, default=600)
    parser.add_argument("--quick", action="store_true", help="30 studies, 12 and 24 samples")
    args = parser.parse_args(argv)
    studies = 30 if args.quick else args.studies
    rng = np.random.default_rng(0)
    started, rows = time.perf_counter(), []
    for n in ((12, 24) if args.quick else (8, 12, 16, 24, 48)):
        clean, clean_column = map(np.array, zip(*(study_gap(rng, n, args.features) for _ in range(studies))))
        hidden = {}
        for k, fold in FACTORS:
            gaps, column = map(np.array, zip(*(study_gap(rng, n, args.features, k, fold)
                                                for _ in range(max(studies // 6, 10)))))
            hidden[f"{k}_features_{fold}x"] = {"median_gap": round(float(np.median(gaps)), 2),
                                              "share_reaching": round(float((gaps >= MIN_GAP).mean()), 3),
                                              "share_reported": round(float(reported(gaps, column).mean()), 3)}
        rows.append({"n_samples": n, "clean_gap_q50_q99_max": [round(float(v), 2) for v in
                                                              (*np.quantile(clean, [0.5, 0.99]), clean.max())],
                     "clean_share_reaching": round(float((clean >= MIN_GAP).mean()), 4),
                     "clean_share_reported": round(float(reported(clean, clean_column).mean()), 4),
                     "hidden": hidden})
        print(json.dumps(rows[-1]), flush=True)
    Path(args.out).write_text(json.dumps({"benchmark": "hidden_structure", "min_gap": MIN_GAP,
                                          "min_gap_column": MIN_GAP_COLUMN,
                                          "studies_per_size": studies, "features": args.features,
                                          "machine": machine_record(), "rows": rows,
                                          "seconds": round(time.perf_counter() - started, 1)}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
