"""The smallest effect a study of a given size could be expected to detect, from the measured effect-size sweep.

``benchmarks/biology.py`` models realistic simulated studies (16 and 40 samples, half cases) with 5, 12 or 30
compounds of one class raised 1.5x-4x and records, per setting, whether a feature set's AUC interval lay above 0.5.
``benchmarks/biology.py --resource resources/detectable_effects.json`` condenses that into the smallest detected
fold change per sample size and number of changed compounds (best feature set), which this module reads to tell the
report's reader what a negative result of their study can and cannot rule out; ``detectable_log2_fold_change`` says
the same of one feature's test from the study's own variances. Imports numpy, scipy and ``ms2study.core``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ms2study.core.errors import InputError

RESOURCE = Path(__file__).resolve().parents[3] / "resources" / "detectable_effects.json"

SET_NAMES = {"embedding": "pooled embedding", "chemical_space": "bag of chemistry", "features": "feature matrix",
             "binned_spectra": "binned spectra"}


def read_detectable_effects(path: str | Path = RESOURCE) -> dict | None:
    """The sweep's condensed result (``{"source", "estimator", "criterion", "fold_changes", "by_n_samples":
    {"16": {"12": {"fold_change": 4.0 or None, "feature_set": "features" or None}, ...}, ...}}``), or None when
    the file is absent. Raises InputError when it exists but is not such a JSON object."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise InputError(f"not valid JSON ({err})", file=str(path),
                         fix="rewrite it with benchmarks/biology.py --resource") from err
    if not isinstance(data, dict) or not isinstance(data.get("by_n_samples"), dict):
        raise InputError("no 'by_n_samples' table", file=str(path), fix="rewrite it with benchmarks/biology.py --resource")
    return data


def detectable_effect_sentence(n_samples: int, data: dict | None, class_counts: dict | None = None) -> str | None:
    """One sentence for a binary outcome modelled on ``n_samples`` samples: the smallest fold change the sweep
    detected at the largest swept size not above ``n_samples``, per number of changed compounds, with the feature
    set that detected it, e.g. "At this study's size (16 samples, half cases) the effect-size sweep on realistic
    simulated studies (...) detected one class's compounds raised in cases (the AUC's 95 % interval above 0.5, a looser
    criterion than the report's verdict ...) when 12
    compounds changed 4x or more (with the feature matrix); with 5 compounds changed it detected none up to 4x.
    ...". None without data. A study smaller than every swept size is told that even the smallest swept study missed the
    effects listed for it. ``class_counts`` ({class: samples}, the models summary's): classes of unequal size are
    said, since the sweep's studies were half cases and an unbalanced study of the same size detects less (trial
    AA: "16 samples, half cases" for 10 controls and 6 cases)."""
    if not data:
        return None
    sizes = sorted(int(n) for n in data["by_n_samples"])
    if not sizes:
        return None
    below = [n for n in sizes if n <= n_samples]
    size = below[-1] if below else sizes[0]
    table = data["by_n_samples"][str(size)]
    largest = max(data.get("fold_changes") or [4.0])
    detected, sets, missed = [], [], []
    for changed in sorted(table, key=int):
        entry = table[changed] or {}
        if entry.get("fold_change") is None:
            missed.append(changed)
        else:  # "5 compounds changed 4x or more, 12 compounds 2x or more or 30 compounds 1.5x or more"
            verb = "changed " if not detected else ""
            detected.append(f"{changed} compounds {verb}{entry['fold_change']:g}x or more")
            sets.append(SET_NAMES.get(entry.get("feature_set"), entry.get("feature_set")))
    if not detected:
        found = ""
    elif len(set(sets)) == 1 and sets[0]:
        found = _listed(detected, "or") + f" ({'all ' if len(detected) > 1 else ''}with the {sets[0]})"
    else:
        found = _listed([d + (f" with the {s}" if s else "") for d, s in zip(detected, sets)], "or")
    source = data.get("source", "benchmarks/biology.py")
    if not below:
        lead = (f"This study has {n_samples} samples, fewer than the sweep's smallest studies ({size} samples, half "
                f"cases); even at {size} samples")
    elif size == n_samples:
        lead = f"At this study's size ({size} samples, half cases)"
    else:
        lead = f"At {size} samples (half cases; the largest size swept up to this study's {n_samples})"
    text = (f"{lead} the effect-size sweep on realistic simulated studies ({source}) detected one class's compounds "
            "raised in cases (the AUC's 95 % interval above 0.5, a looser criterion than this report's verdict, which "
            "also needs the permutation p, adjusted for the choice of set, below 0.05) ")
    if detected:
        text += ("only " if not below else "") + f"when {found}"
        if missed:
            text += f"; with {_listed(missed, 'or')} compounds changed it detected none up to {largest:g}x"
    else:
        text += f"in none of its settings: not up to {largest:g}x with {_listed(missed, 'or')} compounds changed"
    counts = sorted((class_counts or {}).items(), key=lambda item: -item[1])
    if len({n for _, n in counts}) > 1:
        text += (". This study's classes are unequal (" + ", ".join(f"{n} {name}" for name, n in counts)
                 + "), which detects less than the sweep's balanced studies of its size")
    return text + ". A smaller effect can be real and still give an interval that includes 0.5."


def _listed(items: list[str], word: str) -> str:
    """"a", "a or b", "a, b or c"."""
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} {word} {items[-1]}"


def detectable_log2_fold_change(values: np.ndarray, positive: np.ndarray, n_tested: int, power: float = 0.8,
                                q: float = 0.05, covariates: np.ndarray | None = None) -> float | None:
    """The log2 fold change a single changed feature of typical variance needs to reach q < ``q`` with probability
    ``power`` in the differential analysis's moderated t-test, if it were the only change among ``n_tested`` tested
    features (Benjamini-Hochberg's first threshold ``q / n_tested``; more changes make it easier).

    ``values``: log2 intensities of the features measured in every sample (features x samples, no NaN), those the
    moderated test sees; ``positive``: boolean per sample (the binary outcome's positive class); ``covariates``:
    samples x k numbers beside the class in the test's linear model (as ``modelling.outcomes.covariate_matrix``
    codes them; in a paired design the subjects' indicator columns), or None. Method: the features' residual
    variances under the test's model (intercept, class, covariates; ordinary least squares) give limma-trend's prior
    (``core.ebayes``: 1/sigma^2 a scaled chi-square with d0 degrees of freedom around the intensity trend s0^2); s^2
    is that prior's median variance, d0 s0^2 / median of chi-square(d0) (s0^2 its median over the features), with
    n - p + d0 degrees of freedom (p the model's columns); the class coefficient's standard error is
    s sqrt(c), c the class's diagonal element of (X'X)^-1 (1/n1 + 1/n2 for two groups alone, 2 / n_pairs for pairs
    of runs within subjects); then the usual power formula for a two-sided t-test,
    (t(1 - a/2) + t(power)) s sqrt(c) with a = q / n_tested (e.g. Dobbin & Simon 2005, Biostatistics 6:27, for
    microarray sample sizes). Measured in tests/test_power.py against the real test (moderated t, permutation p,
    Benjamini-Hochberg) on simulated 6 + 6 studies of 600 features: the feature was found in 77 of 100 with the
    pipeline's 200 permutations (power 0.8 stated; 72 of 100 with 50 permutations, whose coarser null costs power),
    at half the change in 6; on simulated paired studies (8 subjects before and after, subjects' spread sd 1.4 log2)
    in 70 of 100 (at half the change in 3), and on 8 + 8 studies adjusted for an age covariate that moves every
    feature in 80 of 100 (half: 5), each with 200 permutations and 600 features. None with fewer than 3
    such features, fewer than 2 samples per class or no residual degree of freedom."""
    positive = np.asarray(positive, dtype=bool)
    if int(positive.sum()) < 2 or int((~positive).sum()) < 2:
        return None
    return _detectable_coefficient(values, positive.astype(np.float64), n_tested, power, q, covariates)


def detectable_log2_slope(values: np.ndarray, outcome: np.ndarray, n_tested: int, power: float = 0.8,
                          q: float = 0.05, covariates: np.ndarray | None = None) -> float | None:
    """The slope (log2 intensity per unit of a continuous outcome) a single changed feature of typical variance needs
    to reach q < ``q`` with probability ``power`` in the differential analysis's moderated regression test, if it
    were the only change among ``n_tested`` tested features: ``detectable_log2_fold_change``'s method with the
    outcome's values (``outcome``, one per sample, in its own units) in place of the class column, so the slope's
    standard error is s sqrt(c) with c the outcome's diagonal element of (X'X)^-1 (1 / sum((x - mean)^2) without
    covariates). Measured in tests/test_power.py against the real test (moderated regression, permutation p,
    Benjamini-Hochberg) on 100 simulated 16-sample studies of 600 features with a 0-10 score
    (``benchmarks/detectable_change.py --designs continuous``): found in 75 of 100 at the stated slope, in 8 at half
    of it. None with fewer than 4 samples, fewer than 3 distinct outcome values or 3 such features, or
    no residual degree of freedom."""
    outcome = np.asarray(outcome, dtype=np.float64)
    if outcome.size < 4 or np.unique(outcome).size < 3 or not np.isfinite(outcome).all():
        return None
    return _detectable_coefficient(values, outcome, n_tested, power, q, covariates)


def detectable_log2_class_shift(values: np.ndarray, classes: np.ndarray, n_tested: int, power: float = 0.8,
                                q: float = 0.05, covariates: np.ndarray | None = None) -> float | None:
    """For a multiclass outcome: the log2 change of one class against all the others (its mean shifted, the others
    equal) that a single feature of typical variance needs to reach q < ``q`` with probability ``power`` in the
    differential analysis's moderated F-test of the classes, if it were the only change among ``n_tested`` tested
    features; stated for the smallest class, the hardest to detect.

    ``values``: log2 intensities (features x samples, no NaN) of the features the moderated test sees; ``classes``:
    the class index per sample (0..k-1); ``covariates``: samples x m beside the classes, or None. Method: the
    moderated fit of ``detectable_log2_fold_change`` (limma-trend prior, s^2 its median variance, n - p + d0 degrees
    of freedom) with the classes as k - 1 indicator columns; a shift d of one class j gives the F-test the
    noncentrality lambda = d^2 |(I - H0) e_j|^2 / s^2 (H0 the projection onto the intercept and the covariates, e_j
    the class's indicator; for groups alone n_j (n - n_j) / n), and d solves P(F'(k - 1, df, lambda) > F(1 - a)) =
    ``power`` with a = q / n_tested (scipy.stats.ncf; Cohen 1988, ch. 8, for the power of the F-test). Measured
    against the real test in tests/test_power.py and ``benchmarks/detectable_change.py --designs multiclass``. None
    with fewer than 3 classes of 2 or more samples, fewer than 3 features or no residual degree of freedom."""
    from scipy import optimize, stats

    classes = np.asarray(classes)
    labels, counts = np.unique(classes, return_counts=True)
    if labels.size < 3 or counts.min() < 2 or n_tested < 1:
        return None
    indicators = (classes[:, None] == labels[None, 1:]).astype(np.float64)
    fitted = _moderated_variance(values, indicators, covariates)
    if fitted is None:
        return None
    typical, df, _ = fitted
    reduced = np.column_stack([np.ones(classes.size)] + ([np.asarray(covariates, dtype=np.float64).reshape(
        classes.size, -1)] if covariates is not None and np.asarray(covariates).size else []))
    target = (classes == labels[int(np.argmin(counts))]).astype(np.float64)
    residual = target - reduced @ np.linalg.lstsq(reduced, target, rcond=None)[0]
    spread = float(residual @ residual)
    if spread <= 0:
        return None
    k1 = labels.size - 1
    critical = stats.f.isf(q / n_tested, k1, df)
    reach = float(optimize.brentq(lambda lam: stats.ncf.sf(critical, k1, df, lam) - power, 1e-9, 1e6))
    return float(np.sqrt(reach * typical / spread))


def _moderated_variance(values: np.ndarray, columns: np.ndarray, covariates: np.ndarray | None
                        ) -> tuple[float, float, np.ndarray] | None:
    """(typical variance, degrees of freedom, unscaled covariance) of the moderated fit of ``values`` on an
    intercept, ``columns`` (samples x c) and ``covariates``; None when it cannot be fitted. See
    ``detectable_log2_fold_change`` for the method."""
    from scipy import stats

    from ms2study.modelling.univariate import _moderated_fit

    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 2 or values.shape[0] < 3:
        return None
    design = [np.ones(values.shape[1]), np.asarray(columns, dtype=np.float64).reshape(values.shape[1], -1)]
    if covariates is not None and np.asarray(covariates).size:
        design.append(np.asarray(covariates, dtype=np.float64).reshape(values.shape[1], -1))
    try:  # the moderated test's own fit (limma-trend prior over every feature)
        fit = _moderated_fit(values, np.column_stack(design), None)
    except InputError:  # no residual degree of freedom, or the class not identified beside the covariates
        return None
    prior = fit["prior"]
    if prior is None:
        return None
    d0 = min(float(fit["prior_df"][0]), 1e4)
    # the median true variance under the fitted prior (1/sigma^2 ~ scaled chi-square with d0 df, scale s0^2): the
    # posterior variances are shrunk towards s0^2 and their median lies below it
    typical = float(np.median(prior)) * d0 / stats.chi2.median(d0)
    return typical, fit["df_residual"] + d0, fit["unscaled"]


def _detectable_coefficient(values: np.ndarray, column: np.ndarray, n_tested: int, power: float, q: float,
                            covariates: np.ndarray | None) -> float | None:
    """The detectable size of the coefficient of ``column`` (one number per sample) beside an intercept and
    ``covariates`` (see ``detectable_log2_fold_change``); None when it cannot be computed."""
    from scipy import stats

    if n_tested < 1:
        return None
    fitted = _moderated_variance(values, column, covariates)
    if fitted is None:
        return None
    typical, df, unscaled = fitted
    alpha = q / n_tested
    se = float(np.sqrt(typical * unscaled[1, 1]))
    return float((stats.t.ppf(1.0 - alpha / 2.0, df) + stats.t.ppf(power, df)) * se)
