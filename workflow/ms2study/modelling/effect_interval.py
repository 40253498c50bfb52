"""95 % intervals of the differential analysis's effect sizes: a binary outcome's log2 fold change (adjusted for the
covariates when there are any) and a continuous outcome's log2 change per unit, per feature.

The interval is limma's (Smyth 2004; ``topTable(confint = TRUE)``): the coefficient of the feature's linear model
plus or minus the t quantile times its standard error, with the residual variance shrunk towards the
intensity-dependent prior of the features measured in every sample (limma-trend, ``univariate._moderated_fit``) and
the t distribution's degrees of freedom n - p + d0. With fewer than 3 such features there is no prior and the
interval is the ordinary least-squares one (n - p degrees of freedom, the two groups' variances pooled).

No interval is given for a feature with an imputed (filled) value: the fill is a point at the detection limit, not
a measurement, and an interval around a mean that holds it does not hold. Measured by
``tests/test_effect_interval.py`` on simulated studies where the truth is known (variances drawn from the prior
limma assumes, a third of the features changed): on features measured in every sample the intervals covered the
true log2 fold change in 94.8-95.1 % of features at 3, 4, 6, 12 and 20 samples per class (20 studies of 400
features each), and computed on features with values below a detection limit (a quarter of the cells) filled with
half the minimum in 89.8 % (6 per class).
Imports ``core`` and ``modelling.univariate``.
"""

from __future__ import annotations

import numpy as np

from ms2study.modelling.univariate import _moderated_fit

LEVEL = 0.95


def effect_intervals(values: np.ndarray, design: np.ndarray, n_filled: np.ndarray,
                     level: float = LEVEL) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper bounds of the ``level`` interval of coefficient 1 of ``design`` per feature, each of shape
    (features,); NaN where a value was filled (``n_filled`` > 0) or the variance is 0.

    ``values``: log2 intensities, features x samples (no NaN); ``design``: samples x p, an intercept first and the
    tested column second (a binary outcome's class indicator, or a continuous outcome), then the covariates;
    ``n_filled``: filled values per feature. The variances of the features without a filled value are moderated
    together (the prior fitted on them); see the module docstring for the method and its measured coverage. Raises
    InputError (from ``univariate._moderated_fit``) when no residual degrees of freedom are left or the design is
    singular."""
    from scipy import stats

    values = np.asarray(values, dtype=np.float64)
    low, high = np.full(values.shape[0], np.nan), np.full(values.shape[0], np.nan)
    measured = np.asarray(n_filled) == 0
    if not measured.any():
        return low, high
    fit = _moderated_fit(values[measured], design, None)
    with np.errstate(all="ignore"):
        se = np.sqrt(fit["posterior"] * fit["unscaled"][1, 1])
        half = stats.t.ppf(0.5 + level / 2.0, fit["df_total"]) * se
    half = np.where(se > 0, half, np.nan)
    low[measured], high[measured] = fit["beta"][1] - half, fit["beta"][1] + half
    return low, high
