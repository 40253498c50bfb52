"""Empirical-Bayes variance moderation shared by the per-feature tests (``modelling.univariate``) and the QC
correction's per-feature error (``correction.drift``): limma's ``squeezeVar``/``fitFDist`` (Smyth 2004, Stat Appl
Genet Mol Biol 3:3) with a prior scale that follows intensity (limma-trend: Law et al. 2014, Genome Biol 15:R29).
Pure arrays; imports only ``core``.
"""

from __future__ import annotations

import numpy as np

from ms2study.core.errors import InputError


def natural_spline_basis(x: np.ndarray, knots: np.ndarray) -> np.ndarray:
    """Natural cubic spline basis with an intercept at ``knots`` (sorted, the first and last the boundary knots;
    Hastie, Tibshirani & Friedman, Elements of Statistical Learning, eq. 5.4-5.5): linear beyond the boundary
    knots; returns len(x) x len(knots) columns (1, x, then len(knots) - 2 cubic terms)."""
    scale = max(float(knots[-1] - knots[0]), 1e-12)
    z, k = (x - knots[0]) / scale, (knots - knots[0]) / scale  # unit range keeps the cubes well conditioned

    def d(j: int) -> np.ndarray:
        return (np.maximum(z - k[j], 0.0) ** 3 - np.maximum(z - k[-1], 0.0) ** 3) / (k[-1] - k[j])

    return np.column_stack([np.ones_like(z), z] + [d(j) - d(len(k) - 2) for j in range(len(k) - 2)])


def squeeze_variances(sigma2: np.ndarray, dof: float | np.ndarray, intensity: np.ndarray | None = None
                      ) -> tuple[np.ndarray, float, np.ndarray]:
    """Empirical-Bayes posterior variances of features (limma's ``squeezeVar``/``fitFDist``, Smyth 2004).

    ``sigma2``: residual variances per feature (length m); ``dof``: their degrees of freedom, one number for all or
    one per feature (as limma's ``fitFDist`` takes a vector ``df1``); ``intensity``: mean log intensity per feature
    for a prior that follows intensity (limma-trend), or None for one prior. Model: 1/sigma2_true ~ scaled
    chi-square with d0 degrees of freedom and scale s0^2 (a function of intensity). d0 and s0^2 are fitted by the
    method of moments on log variances (the trend by least squares on a natural cubic spline with up to 4 degrees
    of freedom, as limma chooses them); with no excess spread d0 is infinite (capped at 1e6). Returns (posterior
    variances (d0 s0^2 + dof sigma2) / (d0 + dof), d0, s0^2 per feature). Features with a zero or non-finite
    variance or no degrees of freedom do not enter the fit and still get a posterior (the prior where they have no
    degrees of freedom; a non-finite variance counts as 0 on its degrees of freedom, as limma's does). Raises
    InputError when fewer than 3 features have a positive variance.
    """
    from scipy import optimize, special

    sigma2 = np.asarray(sigma2, dtype=np.float64)
    dofs = np.broadcast_to(np.asarray(dof, dtype=np.float64), sigma2.shape)
    ok = np.isfinite(sigma2) & (sigma2 > 0) & np.isfinite(dofs) & (dofs > 0)
    if ok.sum() < 3:
        raise InputError(f"{int(ok.sum())} features with a positive variance; at least 3 are needed for a prior")
    half = dofs[ok] / 2.0
    e = np.log(sigma2[ok]) - special.digamma(half) + np.log(half)
    basis_all = np.ones((sigma2.size, 1))
    if intensity is not None:
        x = np.asarray(intensity, dtype=np.float64)
        n_ok = int(ok.sum())
        # limma's choice: 1 to 4 spline degrees of freedom (intercept included) by the number of features
        n_knots = min(1 + (n_ok >= 3) + (n_ok >= 6) + (n_ok >= 30), len(np.unique(x[ok])))
        if n_knots >= 2:
            basis_all = natural_spline_basis(x, np.quantile(x[ok], np.linspace(0.0, 1.0, n_knots)))
    basis = basis_all[ok]
    coef, *_ = np.linalg.lstsq(basis, e, rcond=None)
    residual_df = max(e.size - basis.shape[1], 1)
    excess = float(((e - basis @ coef) ** 2).sum() / residual_df - np.mean(special.polygamma(1, half)))
    if excess > 0:
        d0 = min(2.0 * optimize.brentq(lambda v: float(special.polygamma(1, v)) - excess, 1e-8, 1e8), 1e6)
    else:
        d0 = 1e6
    s0_2 = np.exp(basis_all @ coef + special.digamma(d0 / 2.0) - np.log(d0 / 2.0))
    weight = np.where(np.isfinite(dofs), dofs, 0.0)
    own = np.where(np.isfinite(sigma2), weight * sigma2, 0.0)
    with np.errstate(invalid="ignore"):
        post = (d0 * s0_2 + own) / (d0 + weight)
    return post, float(d0), s0_2
