"""Whether two features' intensities co-vary across runs beyond chance: the evidence adduct grouping
(``correction.adducts``) asks of two co-eluting ions at an adduct's mass difference before it calls them one
compound, and so before identification may refuse a library match for contradicting that grouping.

A fixed correlation threshold is not such evidence: the chance that two unrelated ions reach r >= 0.6 is 10 % over
6 runs but 0.7 % over 16 (the t distribution below). Here the correlation must pass a one-sided test of
H0: rho <= 0 against H1: rho > 0 over the n runs where both features were measured, as well as the effect-size
floor (``adduct_min_correlation``). Under H0 at rho = 0, for bivariate normal log intensities, t = r sqrt(n - 2) /
sqrt(1 - r^2) follows Student's t with n - 2 degrees of freedom exactly (Student 1908; Fisher 1915, Biometrika
10:507; the test of ``scipy.stats.pearsonr(x, y, alternative="greater")``); it is exact at the small n where
Fisher's z approximation is poorest. The least r passing at level alpha falls with n: 0.90 / 0.73 / 0.43 over
4 / 6 / 16 runs at alpha 0.05, 0.98 / 0.88 / 0.57 at alpha 0.01. A study tests hundreds of candidate pairs, so a
per-pair level still lets a few unrelated pairs through (the spike-in study of a real run over 16 runs: r 0.600,
p 0.007, paired a spiked [M+H]+ with an unrelated ion as [M+K]+ and vetoed its right library match); by default
(``adduct_multiple_testing: bh``) the Benjamini-Hochberg q-value over the study's tested pairs must reach alpha
instead (:func:`pair_q_values`), so at most a share alpha of the groupings made are expected to be chance.
Measured on real background and on planted adducts, both directions: ``benchmarks/adduct_veto.py``,
``benchmarks/README.md``, "Adduct check". Below ``min_runs`` shared runs no test is made (the pair is judged on mass
and retention time alone, and such a grouping vetoes no identification).

Layer 4: imports ``core`` only (and numpy, scipy).
"""

from __future__ import annotations

import numpy as np
from scipy import stats

from ms2study.core.errors import InputError

MIN_TEST_RUNS = 3  # the t statistic needs n - 2 >= 1 degrees of freedom


def correlation_p_value(r: np.ndarray | float, n: np.ndarray | int) -> np.ndarray:
    """One-sided p-value of Pearson correlations ``r`` over ``n`` paired values against H0: rho <= 0 (the chance
    of a correlation at least this high between unrelated features), elementwise; exact under bivariate
    normality via Student's t with n - 2 degrees of freedom (module docstring). Shapes broadcast; NaN where
    n < 3 or r is NaN; r = 1 gives 0."""
    r = np.asarray(r, dtype=np.float64)
    n = np.asarray(n, dtype=np.float64)
    df = n - 2
    with np.errstate(all="ignore"):
        t = r * np.sqrt(df) / np.sqrt(np.maximum(1.0 - r * r, 0.0))
        p = stats.t.sf(t, np.where(df >= 1, df, np.nan))
    return np.where((n >= MIN_TEST_RUNS) & np.isfinite(r), p, np.nan)


def critical_correlation(n: np.ndarray | int, alpha: float) -> np.ndarray:
    """The least Pearson correlation over ``n`` paired values that the one-sided test of
    :func:`correlation_p_value` finds above 0 at level ``alpha``: t_(1 - alpha, n - 2) / sqrt(t^2 + n - 2),
    elementwise; NaN where n < 3. Raises InputError unless 0 < alpha < 1."""
    if not 0.0 < float(alpha) < 1.0:
        raise InputError(f"significance level {alpha!r} is not between 0 and 1",
                         fix="set correct: adduct_alpha to a level such as 0.01")
    df = np.asarray(n, dtype=np.float64) - 2
    ok = df >= 1
    t = stats.t.isf(float(alpha), np.where(ok, df, 1.0))
    return np.where(ok, t / np.sqrt(t * t + np.where(ok, df, 1.0)), np.nan)


def pair_q_values(p: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg q-values (Benjamini & Hochberg 1995; ``scipy.stats.false_discovery_control``) of the
    one-sided p-values ``p`` of candidate feature pairs (``a``, ``b``: feature indices, one entry per mass
    hypothesis), over the distinct pairs with a p-value: a pair tested under several mass hypotheses counts once.
    Same shape as ``p``; NaN where ``p`` is NaN. Among the pairs with q <= alpha, at most a share alpha are
    expected to be unrelated ions (under independence or positive dependence of the tests)."""
    p = np.asarray(p, dtype=np.float64)
    q = np.full(p.shape, np.nan)
    ok = np.isfinite(p)
    if not ok.any():
        return q
    key = np.asarray(a, dtype=np.int64)[ok] * (int(max(np.max(a), np.max(b))) + 1) + np.asarray(b)[ok]
    unique, first, inverse = np.unique(key, return_index=True, return_inverse=True)
    q[ok] = stats.false_discovery_control(p[ok][first])[inverse]
    return q


def required_correlation(n: np.ndarray | int, alpha: float, floor: float, min_runs: int) -> np.ndarray:
    """The correlation a pair measured together in ``n`` runs must reach to count as co-varying:
    max(``floor``, :func:`critical_correlation`), elementwise; NaN where n < max(``min_runs``, 3) (no test).
    ``floor``: the effect-size floor (``adduct_min_correlation``); ``alpha``: the level of the one-sided test.
    Raises InputError for an alpha outside (0, 1)."""
    n = np.asarray(n, dtype=np.float64)
    need = np.maximum(critical_correlation(n, alpha), float(floor))
    return np.where(n >= max(int(min_runs), MIN_TEST_RUNS), need, np.nan)
