"""Metrics of out-of-fold predictions and their uncertainty: ROC AUC (binary, macro over classes), balanced
accuracy, R² and MAE; classification metrics are computed within each test fold and averaged, and a stratified
bootstrap of the samples gives the interval; an AUC's interval is widened to at least Newcombe's score interval and
a balanced accuracy's to at least a Wilson + MOVER score interval, which do not collapse at 1 as the bootstrap does;
an R²'s and an MAE's to at least a corrected resampled t interval (Nadeau & Bengio) on the log scale, which carries
the variation of the fold models that a bootstrap of fixed predictions does not.

Numpy, the standard library's normal quantile and scipy's Student-t quantile; imports nothing from ms2study.
"""

from __future__ import annotations

import math
import warnings
from statistics import NormalDist
from typing import Any

import numpy as np
from scipy.special import stdtrit

PRIMARY_METRIC = {"binary": "roc_auc", "multiclass": "macro_roc_auc", "continuous": "r2"}


SECONDARY_METRICS = {"binary": ["balanced_accuracy"], "multiclass": ["balanced_accuracy"], "continuous": ["mae"]}


# What a model without information scores (the report draws it as the reference line).
CHANCE = {"roc_auc": 0.5, "macro_roc_auc": 0.5, "r2": 0.0}


def _weighted_auc(positive: np.ndarray, score: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """ROC AUC of one set of samples under each row of multiplicity ``weights`` (draws × samples): the weighted
    share of (positive, negative) pairs ranked correctly, ties counting half. NaN where a class is absent."""
    pos, neg = positive, ~positive
    if not pos.any() or not neg.any():
        return np.full(weights.shape[0], np.nan)
    sp, sn = score[pos], score[neg]
    pairs = (sp[:, None] > sn[None, :]) + 0.5 * (sp[:, None] == sn[None, :])
    wp, wn = weights[:, pos], weights[:, neg]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.einsum("bi,ij,bj->b", wp, pairs, wn) / (wp.sum(axis=1) * wn.sum(axis=1))


def pooled_auc(y: np.ndarray, scores: np.ndarray) -> list[float]:
    """Per repeat, the ROC AUC of all out-of-fold predictions pooled (``y``: n labels 0/1; ``scores``: repeats × n
    scores of class 1). Beside the fold-wise mean it says how the samples rank as a whole: folds of two or three
    samples each score 1.0 while a sample ranks among the other class (a trial: fold mean 1.00, pooled 0.94). NaN
    for a repeat whose scores are missing; an empty list when a class is absent."""
    positive = np.asarray(y) == 1
    if positive.all() or not positive.any():
        return []
    ones = np.ones((1, positive.size))
    return [float(_weighted_auc(positive, row, ones)[0]) if np.isfinite(row).all() else math.nan
            for row in np.atleast_2d(np.asarray(scores, dtype=np.float64))]


def _nanmean(stack: list[np.ndarray] | np.ndarray) -> np.ndarray:
    stack = np.asarray(stack, dtype=np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns stay NaN
        return np.nanmean(stack, axis=0)


def _class_metric(name: str, y: np.ndarray, scores: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """A classification metric of one test fold under each weight row."""
    if name == "roc_auc":
        return _weighted_auc(y == 1, scores, weights)
    if name == "macro_roc_auc":
        return _nanmean([_weighted_auc(y == c, scores[:, c], weights) for c in range(scores.shape[1])])
    if name == "balanced_accuracy":
        return _nanmean(_recalls(y, scores, weights))
    raise ValueError(f"unknown metric {name}")


def _recalls(y: np.ndarray, scores: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Per-class recall of one test fold under each weight row (classes × draws; NaN for a class the fold lacks):
    the weighted share of a class's samples predicted as that class (binary: P(class 1) >= 0.5; more classes: the
    most probable one). Balanced accuracy is their mean."""
    predicted = scores.argmax(axis=1) if scores.ndim == 2 else (scores >= 0.5).astype(np.int64)
    n_classes = scores.shape[1] if scores.ndim == 2 else 2
    recalls = np.empty((n_classes, weights.shape[0]))
    for c in range(n_classes):
        member = y == c
        with np.errstate(invalid="ignore", divide="ignore"):
            recalls[c] = (weights * (member & (predicted == c))).sum(axis=1) / (weights * member).sum(axis=1)
    return recalls


def class_recalls(y: np.ndarray, scores: np.ndarray, folds: np.ndarray) -> np.ndarray:
    """One repeat's per-class recall (classes,): the mean over test folds of each fold's recall, so that their
    mean is the fold-wise balanced accuracy of ``metric_values`` (exactly where every fold holds every class)."""
    ones = np.ones((1, len(y)))
    return _nanmean([_recalls(y[folds == f], scores[folds == f], ones[:, folds == f])[:, 0]
                     for f in np.unique(folds)])


def metric_values(name: str, y: np.ndarray, scores: np.ndarray, folds: np.ndarray,
                  weights: np.ndarray | None = None) -> np.ndarray:
    """One repeat's out-of-fold metric under each row of sample ``weights`` (draws × n; default: all ones).

    Classification metrics are computed within each test fold and averaged over folds (as scikit-learn's
    ``cross_val_score`` does). Pooling scores across folds compares numbers from different models, whose offsets
    shift with each fold's class mix; on noise that pooled AUC sat near 0.44 instead of 0.5 on 12 samples, while
    the fold-wise mean sat at 0.50. Continuous metrics pool the out-of-fold predictions (R² = 1 - PRESS / total sum
    of squares), because an R² within test folds of two or three samples is meaningless.
    """
    weights = np.ones((1, len(y))) if weights is None else weights
    if name in ("r2", "mae"):
        total = weights.sum(axis=1)
        if name == "mae":
            return (weights * np.abs(y - scores)).sum(axis=1) / total
        mean = (weights * y).sum(axis=1, keepdims=True) / total[:, None]
        with np.errstate(invalid="ignore", divide="ignore"):
            return 1.0 - (weights * (y - scores) ** 2).sum(axis=1) / (weights * (y - mean) ** 2).sum(axis=1)
    per_fold = [_class_metric(name, y[folds == f], scores[folds == f], weights[:, folds == f])
                for f in np.unique(folds)]
    return _nanmean(per_fold)


def bootstrap_weights(y: np.ndarray, kind: str, n_draws: int, seed: int, groups: np.ndarray | None = None
                      ) -> np.ndarray:
    """Multiplicities of each sample in ``n_draws`` bootstrap resamples (draws × n); resampled within each class
    so every draw keeps the study's class sizes. With ``groups`` (each row's subject, a paired design) the subjects
    are resampled and each row weighs as often as its subject was drawn (a cluster bootstrap: Field & Welsh 2007,
    JRSS B 69:369), which with complete pairs keeps the class sizes too."""
    rng = np.random.default_rng(seed)
    if groups is not None:
        names, index = np.unique(np.asarray(groups), return_inverse=True)
        picks = rng.integers(0, names.size, size=(n_draws, names.size))
        counts = np.zeros((n_draws, names.size))
        np.add.at(counts, (np.broadcast_to(np.arange(n_draws)[:, None], picks.shape), picks), 1.0)
        return counts[:, index]
    weights = np.zeros((n_draws, len(y)))
    groups = [np.arange(len(y))] if kind == "continuous" else [np.flatnonzero(y == c) for c in np.unique(y)]
    rows = np.arange(n_draws)[:, None]
    for members in groups:
        picks = members[rng.integers(0, len(members), size=(n_draws, len(members)))]
        np.add.at(weights, (np.broadcast_to(rows, picks.shape), picks), 1.0)
    return weights


def hanley_mcneil_variance(auc: np.ndarray | float, n_positive: int, n_negative: int) -> np.ndarray:
    """Variance of an AUC estimated from ``n_positive`` x ``n_negative`` samples when the true AUC is ``auc``
    (any shape; AUC units squared), in Newcombe's form (2006, Stat Med 25:559, his methods 4 and 5).

    Hanley & McNeil (1982, Radiology 143:29) give V = [A(1-A) + (m-1)(Q1 - A²) + (n-1)(Q2 - A²)] / (mn) with
    Q1 = A/(2-A), Q2 = 2A²/(1+A) (exponential score distributions); since Q1 - A² = A(1-A)²/(2-A) and
    Q2 - A² = A²(1-A)/(1+A) this is A(1-A)[1 + (m-1)(1-A)/(2-A) + (n-1)A/(1+A)] / (mn). Newcombe replaces both m-1
    and n-1 by N* = (m+n)/2 - 1, which makes V symmetric under A -> 1-A (swapping the classes) and, in his
    evaluation, gave the better coverage. V is 0 at A = 0 and A = 1.
    """
    a = np.asarray(auc, dtype=np.float64)
    m, n = float(n_positive), float(n_negative)
    n_star = (m + n) / 2.0 - 1.0
    return a * (1.0 - a) * (1.0 + n_star * (1.0 - a) / (2.0 - a) + n_star * a / (1.0 + a)) / (m * n)


def auc_score_interval(auc: float, n_positive: int, n_negative: int, level: float) -> tuple[float, float]:
    """Newcombe's score interval for an AUC ``auc`` from ``n_positive`` x ``n_negative`` samples, at ``level``
    (e.g. 0.95): every A in [0, 1] with |A - auc| <= z sqrt(V(A)), V from ``hanley_mcneil_variance`` (Newcombe 2006,
    Stat Med 25:559, method 5; the Wilson-score idea applied to the Mann-Whitney AUC). Because the variance is
    evaluated at the candidate A, not at the estimate, the interval keeps its width where the estimate is 0 or 1:
    at auc = 1 with 8 vs 8 samples its lower end is 0.756 (20 vs 20: 0.899).

    Solved on a grid of A (10,001 points), each end refined by bisection to 1e-12. Returns (low, high); NaN, NaN
    when ``auc`` is not finite or a class is empty.
    """
    if not math.isfinite(auc) or n_positive < 1 or n_negative < 1:
        return math.nan, math.nan
    auc = min(max(float(auc), 0.0), 1.0)
    z = NormalDist().inv_cdf(0.5 + level / 2.0)

    def inside(a: np.ndarray) -> np.ndarray:
        return (a - auc) ** 2 <= z * z * hanley_mcneil_variance(a, n_positive, n_negative)

    grid = np.linspace(0.0, 1.0, 10001)
    members = np.flatnonzero(inside(grid))
    if members.size == 0:  # only where the grid steps over a very narrow interval
        return auc, auc
    ends = []
    for index, step in ((members[0], -1), (members[-1], 1)):
        if not 0 <= index + step < grid.size:
            ends.append(float(grid[index]))  # the interval reaches 0 or 1
            continue
        good, bad = grid[index], grid[index + step]
        for _ in range(60):
            middle = (good + bad) / 2.0
            good, bad = (middle, bad) if inside(np.array([middle]))[0] else (good, middle)
        ends.append(float(good))
    return min(ends[0], auc), max(ends[1], auc)


def auc_sample_sizes(name: str, y: np.ndarray) -> tuple[int, int]:
    """The (m, n) an AUC's score interval is computed for: binary, the positives (y == 1) and negatives; macro AUC,
    the smallest class against all other samples. Every one-vs-rest AUC has the same N* = N/2 - 1 and the smallest
    m(N - m), hence the largest variance at a given AUC; the sd of a mean is at most the largest sd, so the smallest
    class gives the widest of the per-class intervals at the macro value (a conservative choice, not Newcombe's,
    who treats two samples only)."""
    counts = np.bincount(np.asarray(y, dtype=np.int64))
    if name == "roc_auc":
        return int(counts[1]) if counts.size > 1 else 0, int(counts[0])
    present = counts[counts > 0]
    smallest = int(present.min()) if present.size else 0
    return smallest, int(present.sum()) - smallest


def wilson_interval(successes: np.ndarray | float, trials: np.ndarray | float,
                    level: float) -> tuple[np.ndarray, np.ndarray]:
    """Wilson's (1927, JASA 22:209) score interval for a binomial proportion at ``level``: every p with
    |x/n - p| <= z sqrt(p(1 - p)/n), i.e. (p̂ + z²/2n ± z sqrt(p̂(1 - p̂)/n + z²/4n²)) / (1 + z²/n).
    ``successes`` and ``trials`` broadcast (any shape; non-integer successes, effective counts, are allowed);
    returns (low, high) proportions of that shape, NaN where ``trials`` is not positive. At 8 of 8 the lower end is
    8 / (8 + z²) = 0.676."""
    x, n = np.asarray(successes, dtype=np.float64), np.asarray(trials, dtype=np.float64)
    z2 = NormalDist().inv_cdf(0.5 + level / 2.0) ** 2
    with np.errstate(invalid="ignore", divide="ignore"):
        p = np.clip(x / n, 0.0, 1.0)
        centre = (p + z2 / (2.0 * n)) / (1.0 + z2 / n)
        half = np.sqrt(z2 * p * (1.0 - p) / n + z2 * z2 / (4.0 * n * n)) / (1.0 + z2 / n)
    bad = ~(n > 0)
    return np.where(bad, np.nan, centre - half), np.where(bad, np.nan, centre + half)


def balanced_accuracy_score_interval(recalls: np.ndarray, class_sizes: np.ndarray,
                                     level: float) -> tuple[float, float]:
    """Score interval for a balanced accuracy, the mean of k per-class recalls (``recalls``, shape (k,)), each a
    proportion of its class's ``class_sizes`` (shape (k,), samples), at ``level``.

    Each recall gets Wilson's interval (l_c, u_c) (``wilson_interval``, successes = recall x class size) and the
    mean of the k independent proportions gets Zou & Donner's MOVER interval for a linear combination (2008, Stat
    Med 27:1693; Newcombe 1998, Stat Med 17:873 for a difference): with r̄ the mean recall,
    low = r̄ - sqrt(Σ (r_c - l_c)²) / k, high = r̄ + sqrt(Σ (u_c - r_c)²) / k. The ends lie within the means of
    the l_c and u_c, hence in [0, 1], and keep their width at recall 1: 8 vs 8 at balanced accuracy 1 gives
    [1 - (1 - 8/(8 + z²))/√2, 1] = [0.771, 1]; with k = 1 it is Wilson's interval. Classes with no samples or an
    undefined recall are left out (k counts the others). Returns (low, high); NaN, NaN when no class is left.
    """
    r, n = np.asarray(recalls, dtype=np.float64), np.asarray(class_sizes, dtype=np.float64)
    if r.shape != n.shape:
        raise ValueError(f"recalls {r.shape} and class sizes {n.shape} differ in shape")
    keep = np.isfinite(r) & (n > 0)
    if not keep.any():
        return math.nan, math.nan
    r, n = np.clip(r[keep], 0.0, 1.0), n[keep]
    low, high = wilson_interval(r * n, n, level)
    mean, k = float(r.mean()), r.size
    return (mean - math.sqrt(float(((r - low) ** 2).sum())) / k,
            mean + math.sqrt(float(((high - r) ** 2).sum())) / k)


def corrected_t_interval(name: str, y: np.ndarray, scores: np.ndarray, folds: np.ndarray,
                         level: float) -> tuple[float, float] | None:
    """Corrected resampled t interval for the cross-validated MAE or R² (``name``), on the log scale; None for
    other metrics or where it is undefined (no error at all, a constant outcome, fewer than two test folds).

    Both statistics are ratios of sample means over the out-of-fold predictions of all repeats: MAE = A with
    a = |y - ŷ|, and 1 - R² = A / B with a = (y - ŷ)², b = (y - ȳ)² (the value ``summarise_metric`` reports, the
    mean over repeats, is exactly this: every repeat shares B). The interval is built for θ = log A (MAE) or
    log(A / B) (R²) and mapped back, so an MAE's lower end stays above 0 and an R²'s upper end below 1, and a
    scale-like statistic gets the skew its spread implies (the spread grows with the level). Measured against the
    same interval on the raw scale (``benchmarks/auc_interval.py``): MAE coverage as high or higher in all six
    settings; R² closer to 95 % where both hold (96 % against 98 %, 200 studies each at 16 samples and Bayes R²
    0.5 and at 40 samples on the null), lower at 40 samples and R² 0.9 (70 % against 77 %, neither holding).
    Linearised (delta method), θ is the mean of the per-sample influence values
    ψ = a / A (MAE) or a / A - b / B (R²), one per sample and repeat. Every test fold j of every repeat (J of them)
    gives a mean ψ_j, an estimate from its own fold model; Nadeau & Bengio (2003, Machine Learning 52:239, the
    corrected resampled t test) show that the naive variance s²/J of such split means ignores the correlation
    between splits that share training samples, and correct it to (1/J + n_test/n_train) s², s² the variance of
    the ψ_j; for repeated k-fold CV n_test/n_train = 1/(k - 1) (here the mean over folds of their sizes' ratio),
    with a Student t of J - 1 degrees of freedom (Bouckaert & Frank 2004, PAKDD, LNCS 3056:3). The ψ_j vary both
    with the samples and with the fold models, so this variance carries the refitting the bootstrap leaves out
    (the models are not refitted per draw). Returns θ ± t sd mapped back: exp(·) for MAE, 1 - exp(·) for R²,
    (low, high) ordered.
    """
    if name not in ("mae", "r2"):
        return None
    y = np.asarray(y, dtype=np.float64)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1, len(y))
    loss = np.abs(y - scores) if name == "mae" else (y - scores) ** 2
    total = float(loss.mean())
    if not math.isfinite(total) or total <= 0.0:
        return None
    psi, centre = loss / total, math.log(total)
    if name == "r2":
        spread = (y - y.mean()) ** 2
        if not spread.mean() > 0.0:
            return None
        psi, centre = psi - spread / spread.mean(), centre - math.log(float(spread.mean()))
    fold_means, ratios = [], []
    for repeat in range(scores.shape[0]):
        for fold in np.unique(folds[repeat]):
            test = folds[repeat] == fold
            if fold < 0 or test.all():
                continue
            fold_means.append(float(psi[repeat, test].mean()))
            ratios.append(test.sum() / (~test).sum())
    splits = len(fold_means)
    if splits < 2:
        return None
    sd = math.sqrt((1.0 / splits + float(np.mean(ratios))) * float(np.var(fold_means, ddof=1)))
    half = float(stdtrit(splits - 1, 0.5 + level / 2.0)) * sd
    if name == "mae":
        return math.exp(centre - half), math.exp(centre + half)
    return 1.0 - math.exp(centre + half), 1.0 - math.exp(centre - half)


def score_interval(name: str, y: np.ndarray, scores: np.ndarray, folds: np.ndarray, value: float,
                   level: float) -> tuple[float, float] | None:
    """The score interval that widens ``name``'s bootstrap interval in ``summarise_metric`` (arguments as there;
    ``value`` the point estimate), stretched to hold ``value``; None for R² and MAE, which have none.

    AUC: Newcombe's (``auc_score_interval``, sizes from ``auc_sample_sizes``). Balanced accuracy: Wilson + MOVER
    (``balanced_accuracy_score_interval``) on the per-class recalls averaged over repeats, each a proportion of its
    whole class: every sample is predicted once per repeat, and the repeats reuse the samples, so a class of n_c
    contributes n_c trials however many repeats there are (the effective count, as the AUC's m and n)."""
    if not math.isfinite(value):
        return None if name in ("r2", "mae") else (math.nan, math.nan)
    if name in ("roc_auc", "macro_roc_auc"):
        low, high = auc_score_interval(value, *auc_sample_sizes(name, y), level)
    elif name == "balanced_accuracy":
        recalls = _nanmean([class_recalls(y, scores[r], folds[r]) for r in range(scores.shape[0])])
        sizes = np.bincount(np.asarray(y, dtype=np.int64), minlength=recalls.size)
        low, high = balanced_accuracy_score_interval(recalls, sizes, level)
    else:
        return None
    return min(low, value), max(high, value)


def summarise_metric(name: str, y: np.ndarray, scores: np.ndarray, folds: np.ndarray, boot: np.ndarray,
                     level: float, seed: int = 0) -> dict:
    """Point estimate (mean over repeats of the out-of-fold metric) and its interval at ``level``.

    ``scores``: repeats x n (x classes) out-of-fold predictions, ``folds``: repeats x n test-fold numbers, ``boot``:
    draws x n sample multiplicities (``bootstrap_weights``). Returns value, ci_low, ci_high (metric units; None where
    undefined), per_repeat, ``ci_bootstrap`` ([low, high]) and, for an AUC or a balanced accuracy, ``ci_score``,
    for an MAE or R² ``ci_corrected_t`` (absent where undefined): the two intervals whose hull ci_low, ci_high are.
    An unknown ``name`` raises ValueError.

    The bootstrap interval is a percentile interval: each draw resamples the samples (stratified by class) and
    recomputes the metric of one repeat, drawn at random, on its out-of-fold predictions with those
    multiplicities. It thus carries both the sample-to-sample variation and the variation between fold
    assignments; an interval over repeats alone would be falsely narrow (the repeats share the samples), and one
    over the mean of the repeats too narrow as well (on 12 pure-noise samples it covered 0.5 in 15 of 20 seeds;
    this one in 20 of 20). The models are not refitted per draw; the permutation p-value, which reruns everything,
    remains the test to rely on.

    For an AUC (binary; macro over classes) the interval is the hull of that bootstrap interval and Newcombe's
    score interval around the value (``auc_score_interval``, sizes from ``auc_sample_sizes``). A percentile
    bootstrap fails at the boundary of the parameter space: when every test fold is perfectly separated every draw
    is 1 and the interval collapses to [1, 1], claiming a certainty 16 samples cannot give. The score interval keeps
    the width the sample sizes imply at any value (8 vs 8 at AUC 1: [0.756, 1]), but treats the AUC as one
    Mann-Whitney statistic of fixed scores and so ignores the fold assignment and the refitted models; the
    bootstrap carries the fold assignment. Neither alone is right; the hull is never narrower than either.
    Measured (``benchmarks/auc_interval.py``, simulated 8 vs 8 and 20 vs 20 studies, elastic net): near perfect
    separation the bootstrap alone held the true AUC in 73 % and 62 % of studies (every [1, 1] missed), the hull in
    100 %; elsewhere both 90-100 %; on null studies the score interval alone excluded 0.5 in 20 % and 12 %, the hull
    in 3 % and 7 % (as the bootstrap alone).

    A balanced accuracy's interval is likewise the hull of the bootstrap interval and a score interval
    (``score_interval``: Wilson's interval per class recall, combined by MOVER; 8 vs 8 at 1: [0.771, 1]). Measured
    on the same studies: where the old interval was [1, 1] (5 of 60 at 40 samples and Bayes AUC 0.999) it missed the
    true balanced accuracy every time and the hull held it every time; coverage of the expected value old 88-95 %,
    hull 90-98 % (the shortfall at 16 samples, Bayes AUC 0.9: 88 -> 90 %); null studies excluding 0.5: 3 % and 5 %,
    old and hull alike.

    An MAE's and an R²'s interval (``ci_corrected_t``) is the hull of the bootstrap interval and the corrected
    resampled t interval (``corrected_t_interval``: Nadeau & Bengio 2003, Machine Learning 52:239, in Bouckaert &
    Frank's 2004 form for repeated k-fold CV, built on the log scale of MAE and of 1 - R²), an R²'s capped at 1 (both
    parts already lie at or below it). Why: the bootstrap resamples fixed out-of-fold predictions, so it misses the
    variation of the refitted fold models, and a percentile interval of a scale-like statistic from 16 samples is
    too narrow where the sample's spread happens to be small. The corrected t takes its variance from the per-fold
    means, which vary with the fold models too, inflated for the training samples the folds share. Measured on
    simulated studies (``benchmarks/auc_interval.py``, elastic net, 16 and 40 samples, Bayes R² 0, 0.5 and 0.9, 60
    each), coverage of the expected value, old -> hull: MAE 85-98 % -> 88-98 % (at 16 samples and R² 0.5, 85 ->
    88 %; on 200 studies 91 -> 93 %), R² 68-92 % -> 90-98 % except at 40 samples and R² 0.9, 68 -> 70 %: there the
    fitted models' true R² varies between studies (sd 0.17) more than the CV value errs about its own study's models
    (sd 0.10); the interval holds that conditional R² in 95 %, the expected one would need refitting on resampled
    studies. Mean widths up by 15-29 % (MAE) and 5-9 % (R²). Considered and not chosen: a bias-corrected (BC/BCa,
    Efron & Tibshirani 1993, ch. 14) bootstrap (measured on the same studies: it helped R² at small effects as the
    hull does but neither MAE's shortfall nor R² at 40/0.9), a plain Student t on the per-sample errors (hardly
    wider than the bootstrap, no better), and nested cross-validation (Bates, Hastie & Tibshirani 2023, JASA,
    "Cross-validation: what does it estimate and how well does it do it?"), whose MSE estimate refits the whole
    procedure on many inner splits per study: an order of magnitude more fits than the stage's cross-validation,
    which the permutation p-value already multiplies.
    """
    per_repeat = np.array([metric_values(name, y, scores[r], folds[r])[0] for r in range(scores.shape[0])])
    per_draw = np.stack([metric_values(name, y, scores[r], folds[r], boot) for r in range(scores.shape[0])])
    # Each draw takes one repeat (chosen at random, seeded) rather than the mean over repeats, so the interval also
    # carries the fold-assignment variability of a single cross-validation.
    pick = np.random.default_rng(seed).integers(0, scores.shape[0], size=per_draw.shape[1])
    draws = per_draw[pick, np.arange(per_draw.shape[1])]
    draws = draws[np.isfinite(draws)]
    alpha = (1.0 - level) / 2.0
    low, high = (np.quantile(draws, [alpha, 1.0 - alpha]) if draws.size else (np.nan, np.nan))
    value = np.nanmean(per_repeat) if np.isfinite(per_repeat).any() else np.nan
    out = {"value": finite_or_none(value), "ci_low": finite_or_none(low), "ci_high": finite_or_none(high),
           "per_repeat": [finite_or_none(v) for v in per_repeat],
           "ci_bootstrap": [finite_or_none(low), finite_or_none(high)]}
    score = score_interval(name, y, scores, folds, float(value), level)
    key = "ci_score"
    if score is None and name in ("r2", "mae") and math.isfinite(value):
        score, key = corrected_t_interval(name, y, scores, folds, level), "ci_corrected_t"
    if score is not None:
        score_low, score_high = score
        out[key] = [finite_or_none(score_low), finite_or_none(score_high)]
        lows, highs = [v for v in (low, score_low) if math.isfinite(v)], [v for v in (high, score_high)
                                                                          if math.isfinite(v)]
        out["ci_low"] = finite_or_none(min(lows)) if lows else None
        out["ci_high"] = finite_or_none(max(highs)) if highs else None
    if name == "r2" and out["ci_high"] is not None:
        out["ci_high"] = min(out["ci_high"], 1.0)  # 1 - (sum of squares) / (sum of squares): never above 1
    return out


def finite_or_none(value: Any) -> float | None:
    """``value`` as a float, or None where it is NaN or infinite (JSON and the tables store null)."""
    value = float(value)
    return value if math.isfinite(value) else None
