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
and retention time alone, and such a grouping vetoes no identification) and the pair must at least have been
measured together in half the runs of each feature it would label (:func:`sparse_partner`), or in the runs where the
stronger ion is most intense (:func:`detection_pattern_p`: a weak ion of one compound measured near its detection
limit).

The t test assumes that unrelated ions vary independently. Co-eluting ions need not: a matrix effect or an
intensity field over m/z and retention time moves neighbours together. The default null (``adduct_null:
empirical``) is therefore learned on the study itself, from decoy pairs: co-eluting features whose m/z difference
fits no mass hypothesis (:func:`empirical_null`). Their Fisher z = atanh(r) sqrt(n - 3) should be standard normal;
its centre and spread are estimated robustly (median, 1.4826 x MAD) among the decoys nearest in m/z difference, and
a pair's p-value is the larger of the exact t test's and the one under that null (:func:`null_p_values`), so the
empirical null can only make the test stricter. This is Efron's empirical null (Efron 2004, J Am Stat Assoc
99:96, "Large-scale simultaneous hypothesis testing: the choice of a null hypothesis"), with decoys in the role of
the target-decoy search's. Measured with ``benchmarks/adduct_veto.py --decoy-studies`` on spike-in studies of real
runs: where the simulated variation was shared by every ion within a few Da (the simulator until session 13), decoys
< 5 Da apart reached p <= 0.01 in 42-73 % and the empirical null halved the chance heavy-isotope groupings; where each
compound varies on its own, decoys follow N(0, 1) and both nulls group identically.

Layer 4: imports ``core`` only (and numpy, scipy).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

from ms2study.core.errors import InputError

MIN_TEST_RUNS = 3  # the t statistic needs n - 2 >= 1 degrees of freedom
NULL_MIN_RUNS = 4  # Fisher's z needs n - 3 >= 1
NULL_WINDOW = 1000  # decoy pairs, nearest in m/z difference, that estimate the null at one difference
MIN_DECOYS = 200  # fewer decoys: the exact t test alone
MAX_DECOYS = 50_000  # decoys drawn (seeded) when a study has more
# An untested pair (mass and RT alone) is grouped only when the two were measured together in at least this share of
# the runs of each feature it labels: a partner missing from most of a feature's runs is no evidence of one compound.
MIN_UNTESTED_CO_DETECTION = 0.5
NULLS = ("empirical", "theoretical")
_GRID_POINTS = 101


@dataclass(frozen=True)
class EmpiricalNull:
    """The null of Fisher's z for unrelated co-eluting ions along the m/z difference: ``difference_da`` (grid,
    ascending), ``centre`` and ``spread`` (median and 1.4826 x MAD of the decoys' z nearest each grid point), and
    ``n_decoys`` (decoy pairs it was learned on)."""

    difference_da: np.ndarray
    centre: np.ndarray
    spread: np.ndarray
    n_decoys: int


def fisher_z(r: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Fisher's z statistic atanh(r) sqrt(n - 3) of Pearson correlations ``r`` over ``n`` paired values
    (elementwise; standard normal for independent bivariate normal values, Fisher 1915); NaN where n < 4; r = +-1
    gives +-inf."""
    r = np.asarray(r, dtype=np.float64)
    n = np.asarray(n, dtype=np.float64)
    with np.errstate(all="ignore"):
        z = np.arctanh(np.clip(r, -1.0, 1.0)) * np.sqrt(n - 3.0)
    return np.where(n >= NULL_MIN_RUNS, z, np.nan)


def empirical_null(difference_da: np.ndarray, r: np.ndarray, n: np.ndarray, min_runs: int,
                   seed: int = 0) -> EmpiricalNull | None:
    """The empirical null (module docstring) from decoy pairs: their m/z differences ``difference_da`` (Da), their
    correlations ``r`` over ``n`` shared runs (same shape). Decoys measured together in fewer than
    max(``min_runs``, 4) runs are left out; above ``MAX_DECOYS`` a seeded draw is kept. The centre and spread are
    taken at 101 quantiles of the differences, each over the ``NULL_WINDOW`` decoys nearest it. Returns None with
    fewer than ``MIN_DECOYS`` usable decoys (the exact test alone then)."""
    z = fisher_z(r, n)
    ok = np.isfinite(z) & np.isfinite(difference_da) & (np.asarray(n) >= max(int(min_runs), NULL_MIN_RUNS))
    d, z = np.asarray(difference_da, dtype=np.float64)[ok], z[ok]
    if d.size < MIN_DECOYS:
        return None
    if d.size > MAX_DECOYS:
        keep = np.sort(np.random.default_rng(seed).choice(d.size, MAX_DECOYS, replace=False))
        d, z = d[keep], z[keep]
    order = np.argsort(d, kind="stable")
    d, z = d[order], z[order]
    grid = np.unique(np.quantile(d, np.linspace(0.0, 1.0, _GRID_POINTS)))
    width = min(NULL_WINDOW, d.size)
    start = np.clip(np.searchsorted(d, grid) - width // 2, 0, d.size - width)
    windows = z[start[:, None] + np.arange(width)[None, :]]
    windows = np.where(np.isinf(windows), np.sign(windows) * 1e6, windows)
    centre = np.median(windows, axis=1)
    spread = 1.4826 * np.median(np.abs(windows - centre[:, None]), axis=1)
    return EmpiricalNull(grid, centre, spread, int(d.size))


def null_p_values(r: np.ndarray, n: np.ndarray, difference_da: np.ndarray, null: EmpiricalNull | None) -> np.ndarray:
    """One-sided p-values of correlations ``r`` over ``n`` runs of pairs ``difference_da`` apart in m/z: the larger
    of the exact t test's (:func:`correlation_p_value`) and, under ``null``, P(Z > (z - max(centre, 0)) /
    max(spread, 1)) with z = :func:`fisher_z` and the null's centre and spread interpolated at the pair's
    difference. The empirical null only ever raises a p-value: its centre below 0 or spread below 1 are not used.
    ``null`` None: the t test's p-values. NaN where the t test has none."""
    p = correlation_p_value(r, n)
    if null is None:
        return p
    centre = np.maximum(np.interp(difference_da, null.difference_da, null.centre), 0.0)
    spread = np.maximum(np.interp(difference_da, null.difference_da, null.spread), 1.0)
    z = fisher_z(r, n)
    with np.errstate(invalid="ignore"):
        p_null = stats.norm.sf((z - centre) / spread)
    return np.where(np.isfinite(p), np.fmax(p, p_null), np.nan)


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


def sparse_partner(n_shared: np.ndarray, n_a: np.ndarray, n_b: np.ndarray, both_labelled: np.ndarray) -> np.ndarray:
    """Per candidate pair (arrays of one shape): whether features a and b were measured together (``n_shared`` runs)
    in fewer than ``MIN_UNTESTED_CO_DETECTION`` of the runs measuring a feature the pair would label: b (``n_b``
    runs; an isotope peak, the heavier ion of an adduct pair) and, where ``both_labelled`` (adduct pairs), a
    (``n_a`` runs) too. Such a pair, when too few runs measured both to test the correlation, rests on mass and
    retention time alone, and a partner absent from most of a feature's runs makes even that no evidence: on a
    spike-in study of a real Q Exactive run (12 runs), 5 of 58 spiked [M+H]+ ions were labelled [M+K]+, [M+NH4]+ or
    [M+Na]+ from background partners measured in 1-4 of their 11-12 runs. The share is a choice (about half), not
    fitted: a real adduct of one compound is measured wherever the compound is, down to its detection limit."""
    labelled_runs = np.where(both_labelled, np.maximum(n_a, n_b), n_b)
    return np.asarray(n_shared) < MIN_UNTESTED_CO_DETECTION * labelled_runs


def detection_pattern_p(logx: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per pair (feature index arrays ``a``, ``b`` into ``logx``: features x runs, log intensity, NaN where not
    measured): the one-sided Mann-Whitney p (``scipy.stats.mannwhitneyu``, alternative "greater"; exact for small
    groups) that the feature measured in fewer runs (w) was measured where the other (s) is most intense: s's log
    intensities in the runs measuring both against s's runs without w. NaN where either group is empty or w is
    measured in fewer than ``MIN_UNTESTED_CO_DETECTION`` of its runs together with s. A weak adduct or isotope ion of
    one compound crosses the detection limit where that compound is abundant, so its runs are the top of the
    stronger ion's ranking; a chance partner's runs fall anywhere in it. The smallest p for k of n runs is
    1 / C(n, k): e.g. 0.0055 for 3 of 11, 0.0005 for 4 of 16, 0.1 for 1 of 10 (never enough)."""
    p = np.full(np.asarray(a).size, np.nan)
    for i, (ia, ib) in enumerate(zip(np.asarray(a), np.asarray(b))):
        fa, fb = np.isfinite(logx[ia]), np.isfinite(logx[ib])
        s, w, fs, fw = (ia, ib, fa, fb) if fa.sum() >= fb.sum() else (ib, ia, fb, fa)
        both, alone = fs & fw, fs & ~fw
        if not both.any() or not alone.any() or both.sum() < MIN_UNTESTED_CO_DETECTION * fw.sum():
            continue
        p[i] = stats.mannwhitneyu(logx[s][both], logx[s][alone], alternative="greater").pvalue
    return p


def unsupported_sparse(n_shared: np.ndarray, n_det: np.ndarray, a: np.ndarray, b: np.ndarray,
                       both_labelled: np.ndarray, logx: np.ndarray, alpha: float) -> np.ndarray:
    """Per untested candidate pair: ``sparse_partner`` (``n_det``: runs measuring each feature), unless the runs
    measuring both are the top of the stronger ion's intensity ranking (``detection_pattern_p`` <= ``alpha``, per
    pair): the pattern of a weak adduct or isotope of one compound, which a run count alone cannot tell from a chance
    partner. Such a pair is grouped, still on mass and retention time without a correlation test (it refuses no
    identification)."""
    sparse = sparse_partner(n_shared, n_det[a], n_det[b], both_labelled)
    if sparse.any():
        idx = np.flatnonzero(sparse)
        sparse[idx[detection_pattern_p(logx, a[idx], b[idx]) <= alpha]] = False
    return sparse


def rejection_note(counts: dict, test: tuple[float, float, int, str]) -> str:
    """The note on candidate pairs refused by the intensity correlation test (``counts`` of ``adducts.adduct_grouping``;
    ``test`` as its ``_judge_correlation`` takes it); when every tested pair was refused it says what that usually means
    (a fresh user's study of copies of two injections refused all 625 of its pairs without a word)."""
    rejected, tested = counts["n_rejected_correlation"], counts["n_tested_correlation"]
    floor, alpha, min_runs, multiple = test
    rule = (f"r at least {floor:g} and q at most {alpha:g} over the tested pairs" if multiple == "bh"
            else f"r at least {floor:g} and p at most {alpha:g}")
    text = (f"{rejected} of {tested} candidate adduct and isotope pairs measured together in {min_runs} or more runs "
            f"were not grouped: their intensities over the runs did not co-vary enough ({rule})")
    if all_refused(counts):
        text += ("; none passed, which happens when the samples barely differ (repeated injections of one material, "
                 "copies of a few runs): ions of one compound then vary only by noise and the test cannot confirm "
                 "them, so every feature stays a compound group of its own. <code>correct: adduct_min_runs</code> "
                 "above the number of runs judges pairs on retention time and mass alone")
    return text


def all_refused(counts: dict) -> bool:
    """True when the correlation test refused every one of 20 or more tested candidate pairs (``counts`` of
    ``adducts.adduct_grouping``): a study-wide condition the report's warnings name, not only the log."""
    tested = int(counts.get("n_tested_correlation", 0))
    return tested >= ALL_REFUSED_MIN_TESTED and int(counts.get("n_rejected_correlation", 0)) == tested


# fewer tested pairs than this, all refused, can be chance (a small study with a few true pairs)
ALL_REFUSED_MIN_TESTED = 20
