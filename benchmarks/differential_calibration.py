"""Are the differential analysis's p- and q-values honest on real data, and how much does the moderated t-test gain?

Real studies (``../shared/data/outcomes``: sacurine, 109 metabolites x 183 urine samples, stored as log10; ST000291, 1,541 LC-MS
features x 45 urine samples) give real intensity distributions, missing values and feature-to-feature variance
differences. From each, random subsets of n samples per group are drawn (seeded) and prepared as the pipeline
prepares a feature matrix (log2, features detected in at least half the samples, half-minimum fill;
``ms2study.modelling.univariate``). Then, for the pipeline's Welch t-test and the moderated t-test (limma eBayes,
implemented here as the alternative measured):

- null: the groups are a random split, so every rejection is false: the share of features with p < 0.05 (should be
  about 0.05) and the share of draws with any q < 0.05 (under a complete null BH controls this at about 0.05);
- spike-in: ``n_spiked`` random features get a fold change in the second group (x ``fold``); recall at q < 0.05
  and the false-discovery proportion among the other features at q < 0.05 (should stay below 0.05 on average).

Usage: python benchmarks/differential_calibration.py --out result.json [--draws 200] [--data ../shared/data]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "workflow"))

from ms2study.core.errors import InputError  # noqa: E402
from ms2study.modelling.univariate import bh_q_values, fill_missing, welch_test  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def squeeze_variances(sigma2: np.ndarray, dof: float) -> tuple[np.ndarray, float, float]:
    """Empirical-Bayes moderated variances (limma eBayes, Smyth 2004, Stat. Appl. Genet. Mol. Biol. 3:3): residual
    variances shrunk towards a scaled-inverse-chi-square prior fitted by the method of moments on log variances.
    Returns (posterior variances, prior dof d0 (capped at 1e6), prior scale s0^2)."""
    from scipy import optimize, special

    sigma2 = np.asarray(sigma2, dtype=np.float64)
    ok = np.isfinite(sigma2) & (sigma2 > 0)
    if ok.sum() < 3:
        return np.where(ok, sigma2, np.nan), 0.0, float("nan")
    e = np.log(sigma2[ok]) - special.digamma(dof / 2.0) + np.log(dof / 2.0)
    excess = np.var(e, ddof=1) - float(special.polygamma(1, dof / 2.0))
    if excess > 0:
        d0 = min(2.0 * optimize.brentq(lambda x: float(special.polygamma(1, x)) - excess, 1e-8, 1e8), 1e6)
        s0_2 = float(np.exp(e.mean() + special.digamma(d0 / 2.0) - np.log(d0 / 2.0)))
    else:
        d0, s0_2 = 1e6, float(np.exp(e.mean()))
    return np.where(ok, (d0 * s0_2 + dof * sigma2) / (d0 + dof), np.nan), float(d0), s0_2


def moderated_t_test(values: np.ndarray, x: np.ndarray) -> dict[str, np.ndarray]:
    """Moderated t-test of the group coefficient (0/1 ``x``) in a linear model per feature (limma's eBayes): the
    alternative to the pipeline's Welch test that this benchmark measures."""
    from scipy import stats

    n = values.shape[1]
    design = np.column_stack([np.ones(n), np.asarray(x, dtype=np.float64)])
    dof = n - design.shape[1]
    if dof < 1:
        raise InputError(f"{n} samples leave no residual degrees of freedom")
    beta, *_ = np.linalg.lstsq(design, values.T, rcond=None)
    sigma2 = ((values.T - design @ beta) ** 2).sum(axis=0) / dof
    post, d0, _ = squeeze_variances(sigma2, float(dof))
    with np.errstate(all="ignore"):
        se = np.sqrt(post * np.linalg.inv(design.T @ design)[1, 1])
        t = np.where(se > 0, beta[1] / se, np.nan)
    return {"statistic": t, "p_value": 2.0 * stats.t.sf(np.abs(t), dof + d0)}


def load_studies(data: Path) -> dict[str, np.ndarray]:
    """Feature x sample intensity matrices (raw scale, NaN = missing) of the real studies found under ``data``."""
    out = {}
    sac = data / "outcomes" / "sacurine" / "sacurine_dataMatrix.tsv"
    if sac.exists():
        df = pl.read_csv(sac, separator="\t", null_values=["NA", ""])
        # stored as log10 intensities (osmolality-normalised; see its PROVENANCE.md): back to the raw scale
        out["sacurine"] = 10.0 ** df.drop(df.columns[0]).cast(pl.Float64).to_numpy()
    st = data / "outcomes" / "st000291" / "features.csv"
    if st.exists():
        # written by R's write.table: the header names the 45 samples, each row starts with the feature's row name
        df = pl.read_csv(st, separator=";", has_header=False, skip_rows=1, infer_schema_length=0)
        values = df.select(pl.all().str.strip_chars().cast(pl.Float64, strict=False)).to_numpy()
        out["st000291"] = values[:, 1:]
    return out


def prepared(raw: np.ndarray) -> np.ndarray:
    """log2, features detected in at least half of the samples, half-minimum fill (as the pipeline does)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        log2 = np.where(raw > 0, np.log2(np.where(raw > 0, raw, 1.0)), np.nan)
    values, keep = fill_missing(log2, "half_minimum", 0.5)
    return values[keep]


def one_draw(matrix: np.ndarray, n: int, rng: np.random.Generator, n_spiked: int, fold: float) -> dict:
    cols = rng.choice(matrix.shape[1], 2 * n, replace=False)
    raw = matrix[:, cols].copy()
    group = np.repeat([False, True], n)
    out = {}
    for scenario in ("null", "spike"):
        x = raw.copy()
        spiked = np.zeros(x.shape[0], dtype=bool)
        if scenario == "spike":
            spiked[rng.choice(x.shape[0], n_spiked, replace=False)] = True
            x[np.ix_(spiked, group)] *= fold
        with np.errstate(invalid="ignore", divide="ignore"):
            log2 = np.where(x > 0, np.log2(np.where(x > 0, x, 1.0)), np.nan)
        values, keep = fill_missing(log2, "half_minimum", 0.5)
        values, spiked = values[keep], spiked[keep]
        for test in ("welch", "moderated"):
            if test == "welch":
                p = welch_test(values, group)["p_value"]
            else:
                p = moderated_t_test(values, group.astype(float))["p_value"]
            q = bh_q_values(p)
            hit = np.nan_to_num(q, nan=1.0) < 0.05
            if scenario == "null":
                out[f"{test}_null_p05"] = float(np.nanmean(p < 0.05))
                out[f"{test}_null_any_q05"] = bool(hit.any())
            else:
                out[f"{test}_recall"] = float(hit[spiked].mean()) if spiked.any() else float("nan")
                out[f"{test}_fdp"] = float(hit[~spiked].sum() / max(hit.sum(), 1))
    return out


def run(data: Path, draws: int, sizes: list[int], n_spiked: int, fold: float, seed: int) -> dict:
    studies = load_studies(data)
    if not studies:
        raise SystemExit(f"no study tables under {data}/outcomes")
    result = {"draws": draws, "n_spiked": n_spiked, "fold": fold, "seed": seed, "studies": {}}
    for name, matrix in studies.items():
        for n in sizes:
            rng = np.random.default_rng([seed, n, len(name)])
            rows = [one_draw(matrix, n, rng, n_spiked, fold) for _ in range(draws)]
            summary = {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}
            summary["n_features"] = int(prepared(matrix).shape[0])
            result["studies"][f"{name}_n{n}"] = summary
            print(name, n, json.dumps({k: round(v, 4) for k, v in summary.items()}), flush=True)
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--draws", type=int, default=200)
    ap.add_argument("--sizes", type=int, nargs="+", default=[4, 6, 8])
    ap.add_argument("--n-spiked", type=int, default=15)
    ap.add_argument("--fold", type=float, default=3.0)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    started = time.perf_counter()
    result = run(args.data, args.draws, args.sizes, args.n_spiked, args.fold, args.seed)
    result["seconds"] = round(time.perf_counter() - started, 1)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
