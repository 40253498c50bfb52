"""CPU cost of the models stage's label permutations at a given study size: ``models.n_permutations: auto`` against
a fixed budget, one binary outcome with a strong planted effect (so no set stops early) on four feature sets.

Why: session 27 made ``auto`` draw 20 permutations per feature set compared (80 for four) above 100 samples, so
that the best set's smallest p passes the report's Bonferroni adjustment over the sets; before, 20 were drawn and a
200-sample study could never read better than "suggestive only". Session 28 replaced Bonferroni by the max-statistic
over the sets on their shared permutations (``modelling.evaluate.family_adjusted_p``) and ``auto`` by 40 whatever
the number of sets. This measures what each costs, which ``scale.py`` extrapolates from smaller studies instead of
running (its ``--heavy-up-to``), and the adjusted p of the best set each gives.

Usage: ``PYTHONPATH=workflow python benchmarks/permutation_cost.py --out R.json [--samples 200] [--budgets 20 auto]``.
Synthetic feature sets (normal values; 5 columns shifted by 1 sd in cases), not a simulated run: the permutations'
cost is the nested cross-validation's, which depends on the samples and columns, not on where the values came from.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import polars as pl

from ms2study.modelling.evaluate import model_outcome
from ms2study.stages.models import merge_params

SET_WIDTHS = (64, 300, 500, 64)  # columns of the four sets: like pooled embeddings, features, binned spectra, bags


def measure(n_samples: int, budgets: list, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    ids = [f"S{i:04d}" for i in range(n_samples)]
    case = np.arange(n_samples) % 2 == 1
    sheet = pl.DataFrame({"sample_id": ids, "group": np.where(case, "case", "control")})
    sets = {}
    for k, width in enumerate(SET_WIDTHS):
        x = rng.normal(size=(n_samples, width))
        x[:, :5] += case[:, None] * 1.0
        sets[f"set{k}"] = pl.DataFrame({"sample_id": ids, **{f"f{j}": x[:, j] for j in range(width)}})
    spec = {"column": "group", "type": "binary", "positive_class": "case"}
    out = {}
    for budget in budgets:
        params = merge_params({"n_permutations": budget, "feature_sets": list(sets),
                               "imputation": {s: "mean" for s in sets}})
        start = time.process_time()
        summary = model_outcome(sheet, sets, spec, params)["summary"]
        p = [e.get("permutation_p") for e in summary["feature_sets"].values()]
        adjusted = [e.get("permutation_p_adjusted") for e in summary["feature_sets"].values()]
        out[str(budget)] = {"cpu_s": round(time.process_time() - start, 1), "n_permutations": summary["n_permutations"],
                            "smallest_p": min(p), "bonferroni_p_best": min(1.0, min(p) * len(p)),
                            "max_statistic_p_best": min(a for a in adjusted if a is not None),
                            "adjusted_on_permutations": (summary.get("p_adjustment") or {}).get("permutations")}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--samples", type=int, default=200)
    ap.add_argument("--budgets", nargs="+", default=["20", "80", "auto"])
    args = ap.parse_args()
    budgets = [b if b == "auto" else int(b) for b in args.budgets]
    result = {"benchmark": "permutation_cost", "machine": platform.platform(), "python": platform.python_version(),
              "n_samples": args.samples, "feature_sets": len(SET_WIDTHS), "budgets": measure(args.samples, budgets)}
    base, auto = result["budgets"].get("20"), result["budgets"].get("auto")
    if base and auto:
        result["auto_cpu_ratio"] = round(auto["cpu_s"] / base["cpu_s"], 2)
    if base and result["budgets"].get("80"):  # session 27's auto for four sets
        result["session27_auto_cpu_ratio"] = round(result["budgets"]["80"]["cpu_s"] / base["cpu_s"], 2)
    args.out.write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
