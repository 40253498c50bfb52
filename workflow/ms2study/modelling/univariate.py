"""Tests per feature: log2 intensities with the missing-value fill of the outcome models, then one test per consensus
feature and Benjamini-Hochberg q-values.

All tests run on log2 intensities (intensities of LC-MS features are roughly log-normal, and a difference of log2
means is a log2 fold change):

- binary outcome: Welch's unequal-variance t-test (Welch 1947, Biometrika 34:28; ``scipy.stats.ttest_ind`` with
  ``equal_var=False``), the usual univariate test in metabolomics (e.g. MetaboAnalyst); for features with filled
  values its p-values come from a label-permutation null pooled within strata of equal fill counts
  (``permutation_welch_test``), because a filled value is a point mass the t distribution does not describe;
- continuous outcome: ordinary least squares of log2 intensity on the outcome plus covariates, the slope tested
  two-sided with a t distribution on n - p degrees of freedom (``scipy.stats.t``); for features with filled values
  from a permutation null pooled within strata of equal fill counts (``permutation_ols_test``);
- moderated tests (``moderated_linear_test``): the same linear models with each feature's residual variance
  shrunk towards a prior fitted on all features, its scale a smooth function of the mean log2 intensity (limma's
  empirical Bayes with an intensity trend: Smyth 2004, Stat Appl Genet Mol Biol 3:3; the trend as in limma-trend,
  Law et al. 2014, Genome Biol 15:R29). A study of 6 against 6 samples estimates each feature's variance from
  10 degrees of freedom; borrowing from the thousands of other features is what makes small studies testable.
  Its p-values come from a permutation null (``permutation_moderated_test``): the moderated t of every feature
  under permuted samples (Freedman & Lane 1983, J Bus Econ Stat 1:292, which is plain label permutation for two
  groups), pooled over features as in SAM (Tusher, Tibshirani & Chu 2001, PNAS 98:5116) and Perseus's
  permutation-based FDR. The t distribution's p-values were too small on a real urine study with 4-6 samples per
  group (10 % false discoveries at q < 0.05; ``benchmarks/differential_calibration.py``); the permutation null
  holds whatever the features' distributions are, as long as the samples are exchangeable under the null.
- multiclass outcome: the F-test of its class indicators in a linear model (``multiclass_design``): one-way
  ANOVA, ANCOVA's partial F beside covariates, moderated like the t-tests (``moderated_f_test``), with
  permutation p-values (``multiclass_tests``); no effect size.

q-values are Benjamini-Hochberg (Benjamini & Hochberg 1995, J R Stat Soc B 57:289;
``scipy.stats.false_discovery_control``). Pure arrays in, arrays out; imports only ``core`` (the variance moderation:
``core.ebayes``).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import polars as pl

from ms2study.core.ebayes import squeeze_variances
from ms2study.core.errors import InputError


def log2_intensities(feature_matrix: pl.DataFrame, sample_ids: Sequence[str]) -> np.ndarray:
    """The feature matrix's intensities of ``sample_ids`` as log2, features × samples (float64).

    A null, NaN or non-positive intensity (not detected) is NaN. Raises InputError when a sample has no column.
    """
    missing = [s for s in sample_ids if s not in feature_matrix.columns]
    if missing:
        raise InputError(f"feature matrix has no column for sample(s) {missing[:5]}",
                         fix="rerun 'ms2study link' with every sample of the sheet")
    if not sample_ids:
        return np.empty((feature_matrix.height, 0))
    values = feature_matrix.select([pl.col(s).cast(pl.Float64) for s in sample_ids]).to_numpy()
    values = np.asarray(values, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(values > 0, np.log2(np.where(values > 0, values, 1.0)), np.nan)


def detected_enough(detected: np.ndarray, min_detected_fraction: float,
                    groups: Sequence[np.ndarray] | None = None) -> np.ndarray:
    """The features that are tested: rows of the boolean features × samples ``detected`` found in at least
    ``min_detected_fraction`` of the samples and at least once; with ``groups`` (boolean sample masks, the classes of
    a binary or multiclass outcome), in at least that share of one group's samples: the "modified 80 % rule" of
    Bijlsma et al. 2006 (Anal. Chem. 78:567), so a compound detected in most cases and no control (an effect by
    presence, the strongest there is) stays testable. Returns a boolean array, one per row."""
    def enough(part: np.ndarray) -> np.ndarray:
        fraction = part.mean(axis=1) if part.shape[1] else np.zeros(part.shape[0])
        return (fraction >= float(min_detected_fraction)) & (fraction > 0)
    if not groups:
        return enough(detected)
    return np.logical_or.reduce([enough(detected[:, g]) for g in groups])


def fill_missing(log2_values: np.ndarray, imputation: str = "half_minimum",
                 min_detected_fraction: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Fill missing log2 intensities (features × samples, NaN = not detected) as the outcome models do.

    Returns (filled matrix of the same shape, boolean mask of the features detected in at least
    ``min_detected_fraction`` of the samples and at least once). ``half_minimum`` fills a feature with
    log2(min / 2) = log2(min) - 1 of its detected intensities, ``mean`` with the mean of its detected log2 values.
    Features never detected stay NaN.
    """
    detected = ~np.isnan(log2_values)
    keep = detected_enough(detected, min_detected_fraction)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # never-detected features: all-NaN rows
        if imputation == "half_minimum":
            fill = np.nanmin(log2_values, axis=1) - 1.0
        elif imputation == "mean":
            fill = np.nanmean(log2_values, axis=1)
        else:
            raise InputError(f"imputation is '{imputation}'", fix="use 'half_minimum' or 'mean'")
    return np.where(detected, log2_values, fill[:, None]), keep


def welch_test(values: np.ndarray, positive: np.ndarray) -> dict[str, np.ndarray]:
    """Welch's t-test per feature: positive class against the rest.

    ``values``: log2 intensities, features × samples, no NaN; ``positive``: boolean per sample (both classes need
    at least two samples). Returns ``log2_fold_change`` (mean positive - mean other), ``statistic`` (t) and
    ``p_value`` (two-sided; NaN where both classes are constant). Method: Welch 1947 via ``scipy.stats.ttest_ind``.
    """
    from scipy import stats

    a, b = values[:, positive], values[:, ~positive]
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)  # zero variance in both classes: NaN, reported untested
        result = stats.ttest_ind(a, b, axis=1, equal_var=False)
    return {"log2_fold_change": a.mean(axis=1) - b.mean(axis=1), "statistic": np.asarray(result.statistic, float),
            "p_value": np.asarray(result.pvalue, float)}


def ols_slope_test(values: np.ndarray, x: np.ndarray, covariates: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Slope of each feature on ``x`` by ordinary least squares, adjusted for ``covariates``.

    ``values``: log2 intensities, features × samples (no NaN); ``x``: the outcome per sample; ``covariates``:
    samples × k numeric columns (no NaN) or None. Model per feature: value = b0 + b1 x + covariates @ c + error.
    Returns ``log2_effect_per_unit`` (b1, log2 units per unit of x), ``statistic`` (t = b1 / se) and ``p_value``
    (two-sided, t distribution with n - 2 - k degrees of freedom via ``scipy.stats.t``; NaN where the residual
    variance is 0). Raises InputError when there are no residual degrees of freedom or the design is singular.
    """
    n = values.shape[1]
    design = np.column_stack([np.ones(n), np.asarray(x, dtype=np.float64)]
                             + ([covariates] if covariates is not None and covariates.size else []))
    result = moderated_linear_test(values, design, 1, np.zeros(values.shape[0], dtype=bool))
    return {"log2_effect_per_unit": result["estimate"], "statistic": result["statistic"],
            "p_value": result["p_value"]}


def _moderated_fit(values: np.ndarray, design: np.ndarray, moderate: np.ndarray | None) -> dict:
    """Least-squares fit of every feature on ``design`` with the residual variances of the ``moderate`` features
    shrunk (limma-trend); {beta (p x features), posterior (variance), df_total, prior_df, df_residual, prior (the
    prior's variance per moderated feature, None when nothing was moderated), unscaled ((X'X)^-1)}.
    Raises InputError as ``moderated_linear_test``."""
    n = values.shape[1]
    design = np.asarray(design, dtype=np.float64)
    dof = n - design.shape[1]
    if dof < 1:
        raise InputError(f"{n} samples leave no residual degrees of freedom for {design.shape[1]} coefficients")
    if np.linalg.matrix_rank(design) < design.shape[1]:
        raise InputError("the outcome and the covariates are collinear (the regression design is singular)")
    beta, *_ = np.linalg.lstsq(design, values.T, rcond=None)
    sigma2 = ((values.T - design @ beta) ** 2).sum(axis=0) / dof
    moderate = np.ones(values.shape[0], dtype=bool) if moderate is None else np.asarray(moderate, dtype=bool)
    posterior, df_total, d0, prior = sigma2.copy(), np.full(sigma2.size, float(dof)), 0.0, None
    if (moderate & (sigma2 > 0)).sum() >= 3:
        post, d0, prior = squeeze_variances(sigma2[moderate], float(dof), values[moderate].mean(axis=1))
        posterior[moderate], df_total[moderate] = post, dof + d0
    return {"beta": beta, "posterior": posterior, "df_total": df_total, "prior_df": np.array([d0]),
            "df_residual": dof, "prior": prior, "unscaled": np.linalg.inv(design.T @ design)}


def moderated_linear_test(values: np.ndarray, design: np.ndarray, coefficient: int = 1,
                          moderate: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """t-test of one coefficient of a linear model per feature, with moderated variances (limma eBayes with an
    intensity trend, Smyth 2004; Law et al. 2014).

    ``values``: log2 intensities, features x samples (no NaN); ``design``: samples x p (an intercept column first,
    e.g. [1, is_case] for two groups: the coefficient is then the log2 fold change with the groups' variances
    pooled); ``coefficient``: the column tested; ``moderate``: boolean per feature, the features whose variance is
    shrunk (and that fit the prior; default all). The others keep their own variance and n - p degrees of freedom
    (the ordinary t-test). Returns ``estimate`` (the coefficient), ``statistic`` (moderated t), ``p_value``
    (two-sided, t with n - p + d0 degrees of freedom), ``df_total`` per feature and ``prior_df`` (d0, a
    one-element array; 0 when nothing was moderated). Raises InputError when no residual degrees of freedom are
    left or the design is singular. With fewer than 3 moderated features of positive variance, none is moderated.
    """
    from scipy import stats

    fit = _moderated_fit(values, design, moderate)
    beta = fit["beta"]
    with np.errstate(all="ignore"):
        se = np.sqrt(fit["posterior"] * fit["unscaled"][coefficient, coefficient])
        t = np.where(se > 0, beta[coefficient] / se, np.nan)
    return {"estimate": beta[coefficient], "statistic": t, "p_value": 2.0 * stats.t.sf(np.abs(t), fit["df_total"]),
            "df_total": fit["df_total"], "prior_df": fit["prior_df"]}


def moderated_f_test(values: np.ndarray, design: np.ndarray, coefficients: Sequence[int],
                     moderate: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """F-test of several coefficients of a linear model per feature (all of them 0), with moderated variances:
    limma's moderated F (Smyth 2004, section 6: the Wald statistic of the coefficients over their number, with the
    posterior variance in place of the residual one). For a multiclass outcome coded as class indicators beside an
    intercept (and covariates), that is the one-way ANOVA's F (ANCOVA's partial F with covariates) when nothing is
    moderated.

    ``values``: log2 intensities, features x samples (no NaN); ``design``: samples x p, intercept first;
    ``coefficients``: the q tested columns; ``moderate`` as in ``moderated_linear_test``. Returns ``statistic``
    (F), ``p_value`` (F distribution with q and n - p + d0 degrees of freedom, ``scipy.stats.f``; NaN where the
    variance is 0), ``df_total`` and ``prior_df``. Raises as ``moderated_linear_test``.
    """
    from scipy import stats

    index = np.asarray(list(coefficients), dtype=np.int64)
    fit = _moderated_fit(values, design, moderate)
    b = fit["beta"][index]  # q x features
    wald = (b * (np.linalg.inv(fit["unscaled"][np.ix_(index, index)]) @ b)).sum(axis=0)
    with np.errstate(all="ignore"):
        f = np.where(fit["posterior"] > 0, wald / (index.size * fit["posterior"]), np.nan)
    return {"statistic": f, "p_value": stats.f.sf(f, index.size, fit["df_total"]), "df_total": fit["df_total"],
            "prior_df": fit["prior_df"]}


def _linear_statistic(values: np.ndarray, design: np.ndarray, tested: int | Sequence[int],
                      moderate: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """``moderated_linear_test`` for one tested column (an int), ``moderated_f_test`` for several (a sequence)."""
    if isinstance(tested, (int, np.integer)):
        return moderated_linear_test(values, design, int(tested), moderate)
    return moderated_f_test(values, design, tested, moderate)


def null_orders(labels: np.ndarray, n_permutations: int, rng: np.random.Generator,
                max_tries_per_order: int = 50) -> list[np.ndarray]:
    """``n_permutations`` random sample orders (``rng.permutation``) for a pooled permutation null, each one that
    relabels the samples: ``labels`` (samples, or samples x columns: the tested design column(s)) reordered by it
    is neither the observed labelling nor, for one two-valued column with equal counts, its mirror (the same |t|).

    Such an order reproduces the observed statistics of every feature, true effects included, and a null pooled
    over features then carries them: a trial's 4 + 4 study (70 splits, so about 6 of 200 draws were the observed
    split or its mirror) gave its planted feature, |t| 147 against a next-best 10.7, p 3.5e-5 and q 0.108, i.e. "no
    feature differs". The observed labelling is the "+1" of p = (1 + b) / (1 + B m), so the draws come from the other
    labellings, as an exact permutation test enumerates them (and as ``enrichment._labellings`` does). Where no
    other labelling is found within ``max_tries_per_order`` draws per order (2 samples), the draw is kept as it
    is."""
    labels = np.asarray(labels, dtype=np.float64)
    flat = labels.reshape(len(labels), -1)
    values = np.unique(flat)
    mirror = None
    if flat.shape[1] == 1 and values.size == 2 and int((flat == values[0]).sum()) * 2 == len(flat):
        mirror = values[0] + values[1] - flat
    orders = []
    for _ in range(n_permutations):
        for _ in range(max_tries_per_order):
            order = rng.permutation(len(flat))
            moved = flat[order]
            if not (np.array_equal(moved, flat) or (mirror is not None and np.array_equal(moved, mirror))):
                break
        orders.append(order)
    return orders


def _freedman_lane_null(values: np.ndarray, design: np.ndarray, tested: int | Sequence[int],
                        moderate: np.ndarray | None, n_permutations: int, seed: int) -> np.ndarray:
    """|statistic| of every feature (rows of ``values``) under ``n_permutations`` permutations (features x B): the
    residuals of the reduced model (``design`` without the ``tested`` columns) reordered over the samples and added
    back to its fit (Freedman & Lane 1983), the statistic refitted (``_linear_statistic``; its prior refitted too).
    Seeded by ``seed``; no order reproduces the tested column(s) (``null_orders``)."""
    design = np.asarray(design, dtype=np.float64)
    reduced = np.delete(design, tested, axis=1)
    fitted = values @ (reduced @ np.linalg.pinv(reduced)).T  # features x samples: the reduced model's fit
    residual = values - fitted
    null = np.empty((values.shape[0], n_permutations))
    for b, order in enumerate(null_orders(design[:, tested], n_permutations, np.random.default_rng(seed))):
        null[:, b] = np.abs(_linear_statistic(fitted + residual[:, order], design, tested, moderate)["statistic"])
    return null


def permutation_moderated_test(values: np.ndarray, design: np.ndarray, coefficient: int | Sequence[int] = 1,
                               n_permutations: int = 200, seed: int = 0) -> dict[str, np.ndarray]:
    """``moderated_linear_test`` (``moderated_f_test`` when ``coefficient`` is a sequence of columns) with
    p-values from a permutation null pooled over features (SAM-style).

    ``values``: log2 intensities, features x samples (no NaN); ``design``: samples x p, intercept first;
    ``coefficient``: the column tested (or the columns). Each permutation reorders the residuals of the reduced
    model (the design without the tested columns) over the samples and adds them back to its fit (Freedman & Lane
    1983; with an intercept-only reduced model, as for two groups, this is permuting the sample labels), then
    computes every feature's moderated statistic again (the prior refitted). p_j = (1 + #{|t*| >= |t_j|}) / (1 + B
    m) over all B x m permuted statistics (Tusher et al. 2001), which treats the moderated statistic as having one
    null distribution for all features. Seeded by ``seed``. Returns the test's keys (``p_value`` replaced) plus
    ``n_permutations``. ``n_permutations`` 0 keeps the t (F) distribution's p-values. Raises as
    ``moderated_linear_test``.
    """
    observed = _linear_statistic(values, design, coefficient)
    if n_permutations <= 0 or values.shape[0] == 0:
        return {**observed, "n_permutations": np.array([0])}
    null = _freedman_lane_null(values, design, coefficient, None, n_permutations, seed)
    p = _pooled_p(observed["statistic"], null, np.zeros(values.shape[0], dtype=np.int64))
    return {**observed, "p_value": p, "n_permutations": np.array([n_permutations])}


# A stratum of the filled-value Welch test's null holds at least this many features (neighbouring fill counts are
# pooled until it does), so its p-values can reach 1 / (1 + B x 50) at B permutations.
MIN_STRATUM_FEATURES = 50


def fill_strata(n_filled: np.ndarray, min_features: int = MIN_STRATUM_FEATURES) -> np.ndarray:
    """Stratum label per feature (shape of ``n_filled``): features with the same number of filled values share a
    stratum, and neighbouring counts are pooled (in increasing order) until a stratum holds ``min_features``
    features; a short last stratum joins the one before it."""
    n_filled = np.asarray(n_filled)
    counts = {int(k): int(c) for k, c in zip(*np.unique(n_filled, return_counts=True))}
    label, size, current, mapping = 0, 0, [], {}
    for k in sorted(counts):
        current.append(k)
        size += counts[k]
        if size >= min_features:
            mapping.update({c: label for c in current})
            label, size, current = label + 1, 0, []
    if current:
        mapping.update({c: max(label - 1, 0) for c in current})
    return np.array([mapping[int(k)] for k in n_filled], dtype=np.int64)


def permutation_welch_test(values: np.ndarray, positive: np.ndarray, n_filled: np.ndarray,
                           n_permutations: int = 200, seed: int = 0) -> dict[str, np.ndarray]:
    """``welch_test`` for features with filled values, its p-values from a label-permutation null pooled within
    strata of features with the same number of filled values.

    A filled value (half the smallest detection, or the mean) is a point mass, not a draw from the normal model
    the t distribution assumes: when the filled samples happen to fall mostly in one class, that class's variance
    is near zero and Welch's t is far larger than the t distribution allows. Measured on null simulations of
    16 samples with left-censored features (``tests/test_moderated.py``): p < 1e-5 about 3-4x as often as
    1e-5, where Benjamini-Hochberg over thousands of features decides (a background ion detected in the 8 controls
    and none of the 8 cases came out at q = 0.002 on a spike-in study of a real run). Under permuted labels the
    same features produce the same extremes, so their own null carries them: every permutation (the same B label
    permutations for all features, seeded, none of them the observed split: ``null_orders``) gives each feature's
    |t*|, pooled within its stratum (``fill_strata``: how many values were filled shapes that null most); p_j = (1 +
    #{|t*| >= |t_j|}) / (1 + B m_s) over the stratum's B m_s statistics, as SAM pools over features (Tusher et al.
    2001) and as ``permutation_moderated_test`` does for the complete features. Valid when the samples are
    exchangeable under the null; p's resolution is 1 / (1 + B m_s).

    ``values``: log2 intensities after the fill, features x samples (no NaN); ``positive``: boolean per sample;
    ``n_filled``: filled values per feature. Returns ``welch_test``'s keys (``p_value`` replaced; NaN where both
    classes are constant) and ``n_permutations``; ``n_permutations`` 0 keeps the t distribution's p-values.
    """
    observed = welch_test(values, positive)
    if n_permutations <= 0 or values.shape[0] == 0:
        return {**observed, "n_permutations": np.array([0])}
    positive = np.asarray(positive, dtype=bool)
    null = np.empty((values.shape[0], n_permutations))
    for b, order in enumerate(null_orders(positive, n_permutations, np.random.default_rng(seed))):
        null[:, b] = np.abs(welch_test(values, positive[order])["statistic"])
    p = _pooled_p(observed["statistic"], null, fill_strata(n_filled))
    return {**observed, "p_value": p, "n_permutations": np.array([n_permutations])}


def permutation_ols_test(values: np.ndarray, x: np.ndarray, covariates: np.ndarray | None, n_filled: np.ndarray,
                         n_permutations: int = 200, seed: int = 0) -> dict[str, np.ndarray]:
    """``ols_slope_test`` for features with filled values, its p-values from a permutation null pooled within
    strata of equal fill counts (``fill_strata``), for the reason given in ``permutation_welch_test``.

    Each permutation reorders the residuals of the reduced model (intercept and covariates, without ``x``) over the
    samples and adds them back to its fit (Freedman & Lane 1983; plain permutation of ``x`` without covariates),
    then refits every feature's slope t. Shapes and returns as ``ols_slope_test`` plus ``n_permutations``;
    ``n_permutations`` 0 keeps the t distribution's p-values. Raises as ``ols_slope_test``."""
    observed = ols_slope_test(values, x, covariates)
    if n_permutations <= 0 or values.shape[0] == 0:
        return {**observed, "n_permutations": np.array([0])}
    n = values.shape[1]
    design = np.column_stack([np.ones(n), np.asarray(x, dtype=np.float64)]
                             + ([covariates] if covariates is not None and covariates.size else []))
    null = _freedman_lane_null(values, design, 1, np.zeros(values.shape[0], dtype=bool), n_permutations, seed)
    p = _pooled_p(observed["statistic"], null, fill_strata(n_filled))
    return {**observed, "p_value": p, "n_permutations": np.array([n_permutations])}


def permutation_f_test(values: np.ndarray, design: np.ndarray, coefficients: Sequence[int], n_filled: np.ndarray,
                       n_permutations: int = 200, seed: int = 0) -> dict[str, np.ndarray]:
    """The ordinary F-test of ``coefficients`` (``moderated_f_test`` with nothing moderated: a multiclass outcome's
    ANOVA, or ANCOVA beside covariates) for features with filled values, its p-values from a Freedman-Lane
    permutation null pooled within strata of equal fill counts (``fill_strata``), for the reason given in
    ``permutation_welch_test`` (a class whose samples are all filled has no variance, and F is far larger than the F
    distribution allows). ``values``: features x samples, no NaN; ``design``: samples x p, intercept first;
    ``n_filled``: filled values per feature. Returns ``statistic`` (F), ``p_value``, ``n_permutations``;
    ``n_permutations`` 0 keeps the F distribution's p-values. Raises as ``moderated_linear_test``."""
    none = np.zeros(values.shape[0], dtype=bool)
    observed = moderated_f_test(values, design, coefficients, none)
    if n_permutations <= 0 or values.shape[0] == 0:
        return {**observed, "n_permutations": np.array([0])}
    null = _freedman_lane_null(values, design, list(coefficients), none, n_permutations, seed)
    p = _pooled_p(observed["statistic"], null, fill_strata(n_filled))
    return {**observed, "p_value": p, "n_permutations": np.array([n_permutations])}


def multiclass_design(y: np.ndarray, C: np.ndarray | None) -> tuple[np.ndarray, list[int]]:
    """(design, tested columns) of a multiclass outcome: an intercept, one indicator per class but the first
    (``y``: class codes 0..k-1 per sample) and the covariates ``C`` (samples x c, or None); the tested columns are
    the k - 1 indicators, so their F-test is the one-way ANOVA (ANCOVA's partial F beside covariates)."""
    classes = np.unique(y)
    indicators = [(y == c).astype(np.float64) for c in classes[1:]]
    design = np.column_stack([np.ones(y.size), *indicators] + ([C] if C is not None and C.size else []))
    return design, list(range(1, len(indicators) + 1))


def multiclass_tests(values: np.ndarray, y: np.ndarray, C: np.ndarray | None, complete: np.ndarray,
                      n_permutations: int, seed: int, n_filled: np.ndarray) -> dict[str, np.ndarray]:
    """The differential stage's tests of a multiclass outcome (``values``: log2, filled, features x samples; ``y``:
    class codes; ``n_filled``: filled values per row): the F-test of the class indicators (``multiclass_design``,
    beside the covariates ``C``); the moderated F with its permutation p-values on ``complete`` rows, the ordinary
    F on the others, whose p-values come from Freedman-Lane permutations pooled within fill strata where values
    were filled (``permutation_f_test``). Returns ``statistic`` (F), ``p_value``, ``prior_df`` and, when permuted,
    ``n_imputed_permuted``."""
    design, tested = multiclass_design(y, C)
    none = np.zeros(values.shape[0], dtype=bool)
    part = moderated_f_test(values, design, tested, none)
    part = {"statistic": part["statistic"], "p_value": part["p_value"].copy(), "prior_df": np.array(0.0)}
    with_fill = n_filled > 0
    if n_permutations > 0 and with_fill.any():
        permuted = permutation_f_test(values[with_fill], design, tested, n_filled[with_fill], n_permutations,
                                      seed + 1)
        part["p_value"][with_fill] = permuted["p_value"]
        part["n_imputed_permuted"] = np.array(int(with_fill.sum()))
    moderated = (permutation_moderated_test(values[complete], design, tested, n_permutations, seed)
                 if complete.any() else None)
    if moderated is not None and moderated["prior_df"][0] > 0:  # else too few features for a prior: classic test
        part["statistic"] = part["statistic"].copy()
        part["statistic"][complete] = moderated["statistic"]
        part["p_value"][complete] = moderated["p_value"]
        part["prior_df"] = moderated["prior_df"][0]
    return part


def _pooled_p(statistic: np.ndarray, null: np.ndarray, strata: np.ndarray) -> np.ndarray:
    """Permutation p-values pooled over features (SAM-style, Tusher et al. 2001): p_j = (1 + #{|t*| >= |t_j|}) /
    (1 + size) over the finite permuted |t*| (``null``: features x permutations) of the features in j's stratum
    (``strata``: a label per feature; one label pools over all). NaN where the statistic is not finite."""
    t = np.abs(np.where(np.isfinite(statistic), statistic, np.nan))
    p = np.full(t.size, np.nan)
    for stratum in np.unique(strata):
        members = strata == stratum
        pool = null[members].ravel()
        pool = np.sort(pool[np.isfinite(pool)])
        exceed = pool.size - np.searchsorted(pool, np.where(np.isfinite(t[members]), t[members], np.inf),
                                             side="left")
        p[members] = np.where(np.isfinite(t[members]), (1.0 + exceed) / (1.0 + pool.size), np.nan)
    return p


def anova_test(values: np.ndarray, groups: np.ndarray) -> dict[str, np.ndarray]:
    """One-way ANOVA per feature (``scipy.stats.f_oneway``) across the classes in ``groups`` (one label per sample).

    Returns ``statistic`` (F) and ``p_value`` (NaN where every class is constant).
    """
    from scipy import stats

    blocks = [values[:, groups == g] for g in np.unique(groups)]
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")  # constant features: NaN, reported untested
        result = stats.f_oneway(*blocks, axis=1)
    return {"statistic": np.asarray(result.statistic, float), "p_value": np.asarray(result.pvalue, float)}


def bh_q_values(p_values: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg q-values of the finite entries of ``p_values`` (``scipy.stats.false_discovery_control``);
    NaN stays NaN and does not count towards the number of tests."""
    from scipy import stats

    p_values = np.asarray(p_values, dtype=np.float64)
    q = np.full(p_values.shape, np.nan)
    finite = np.isfinite(p_values)
    if finite.any():
        q[finite] = stats.false_discovery_control(np.clip(p_values[finite], 0.0, 1.0), method="bh")
    return q


LOG_SCALED_BELOW = 50.0  # 99 % of a matrix's values below this: logs, not intensities (those run to thousands or more)


def log_scaled_warning(feature_matrix: pl.DataFrame, sample_ids: Sequence[str]) -> str | None:
    """A warning when the matrix's values of ``sample_ids`` look log-scaled (99 % of the positive ones below
    ``LOG_SCALED_BELOW``): the tests take log2 of the values, so the fold changes and intervals they report would be
    those of the logs, many times too small, while the p-values hardly change (a trial's log10 table gave
    testosterone glucuronide log2 FC 0.23 against 2.0 from its intensities). None otherwise."""
    values = feature_matrix.select([pl.col(s).cast(pl.Float64) for s in sample_ids]).to_numpy()
    measured = values[np.isfinite(values) & (values > 0)]
    if measured.size < 20 or np.quantile(measured, 0.99) >= LOG_SCALED_BELOW:
        return None
    return (f"the feature matrix's values look log-scaled (99 % of them below {LOG_SCALED_BELOW:g}; feature detection "
            "gives intensities in the thousands or more): the tests take log2 of them, so the fold changes and their "
            "intervals are those of the logs and far too small; give intensities (e.g. 10 ** x for log10 values)")
