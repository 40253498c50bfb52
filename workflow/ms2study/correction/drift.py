"""Drift and batch correction from pooled QCs, run-level normalisation, internal standards, and the QC RSD.

All functions work on a feature-by-run intensity array ``values`` (shape (n_features, n_runs), linear scale, NaN where
a feature has no value in a run) and leave NaN cells NaN.

QC-RLSC (QC-based robust LOESS signal correction; Dunn et al. 2011, Nat. Protoc. 6:1060-1083, the procedure of the
HUSERMET study): pooled QC samples, injected every few runs, hold the same material throughout, so every change of a
feature's QC intensity with injection order is instrumental. Per feature and per batch, the QC log intensities are
fitted against injection order; every run of the batch (samples, QCs and blanks) is divided by fit(order) / (the
median of the feature's QC intensities over all batches). Dividing by a batch's own curve removes the drift within it;
referring every batch to the same all-batch median removes the offsets between batches. The fit is a cubic smoothing
spline (``scipy.interpolate.make_smoothing_spline``) when the feature has at least ``SPLINE_MIN_QC`` QC values in the
batch, a straight line (``numpy.polyfit``) with ``LINE_MIN_QC`` or more, and the batch's QC median below that (batch
alignment only). Dunn et al. choose the LOESS smoothing by leave-one-out cross-validation; the spline's smoothing
parameter is chosen the same way here, per feature, among values whose effective degrees of freedom are at most half
the number of QC values (a curve through every QC would fit the QCs' own noise and carry it into the samples; GCV,
the scipy default, picks such curves with 5-8 points). Outside the batch's first and last QC the fit is held
constant (no extrapolation).

Without QCs, the run-level normalisation of ``correction.normalise`` (probabilistic quotient normalisation) removes
overall intensity differences between runs, not feature-specific drift. ``internal_standard_factors``: each run
divided by the geometric mean of its internal standards' intensities, relative to the median of that mean over the
sample runs.
"""

from __future__ import annotations

import warnings as _warnings
from dataclasses import dataclass

import numpy as np
from scipy.interpolate import make_smoothing_spline

from ms2study.core.ebayes import squeeze_variances
from ms2study.core.errors import InputError

SPLINE_MIN_QC = 5  # make_smoothing_spline needs 5 points
LINE_MIN_QC = 3
# Smoothing parameters tried (x scaled to [0, 1]); the largest is a straight line for any practical purpose.
LAMBDAS = np.logspace(-6, 3, 19)
# The predicted QC RSD is capped here (1,000 %): a feature whose QC values scatter over orders of magnitude on 1-2
# residual degrees of freedom is "very noisy", and a log-normal RSD of its log variance would print as 6e10.
MAX_PREDICTED_RSD = 10.0

METHODS = ("auto", "qc_spline", "qc_linear", "median", "none")


@dataclass
class SmootherFit:
    """One kind of QC fit for ``n`` features of a batch with ``k`` QC values, evaluated at ``m`` runs: ``fit`` (n, m)
    log predictions, ``loo`` (n, k) leave-one-out residuals, ``rss`` (n,) in-sample residual sum of squares, ``df``
    (n,) effective degrees of freedom, ``leverage_new`` (n, m) the squared norm of each prediction's weights."""

    fit: np.ndarray
    loo: np.ndarray
    rss: np.ndarray
    df: np.ndarray
    leverage_new: np.ndarray


@dataclass
class QcCorrection:
    """What ``qc_rlsc`` returns (see there): the corrected values, the notes, the held-out QC values, the predicted
    QC RSD at the samples' injections per feature, the QC fits' residual degrees of freedom per feature (summed over
    the batches) and the prior degrees of freedom of the variance moderation (None when it could not be fitted)."""

    corrected: np.ndarray
    notes: list[str]
    held_out: np.ndarray
    predicted_rsd: np.ndarray
    residual_df: np.ndarray
    prior_df: float | None
    batches_without_qc: np.ndarray | None = None  # per feature: batches in which it had no QC value
    batches_few_qc: np.ndarray | None = None      # per feature: batches fitted by a simpler fit for too few QC values

NOTES = {
    "qc_spline": "QC-RLSC (Dunn et al. 2011): per feature and batch, a smoothing spline of QC log intensity against "
                 "injection order (smoothing by leave-one-out cross-validation; 3-4 QC values: a straight line, 1-2: "
                 "the batch's QC median); each run divided by the fit over the feature's all-batch QC median.",
    "qc_linear": "QC-RLSC (Dunn et al. 2011) with straight lines: per feature and batch, a line of QC log intensity "
                 "against injection order (1-2 QC values: the batch's QC median); each run divided by the fit over "
                 "the feature's all-batch QC median.",
    "median": "Median normalisation (probabilistic quotient normalisation, Dieterle et al. 2006): each sample and QC "
              "run divided by its median ratio to the feature-wise median, over the features measured in at least "
              "half of the runs (the samples' factors: pqn_factor_range); blank runs are left as measured. This "
              "removes overall intensity differences between runs, NOT drift with injection order or "
              "feature-specific batch effects.",
    "none": "No drift, batch or run-level correction (drift_method none): intensities as measured (gap-filled and "
            "internal-standard normalised where configured).",
}


def _qc_counts(is_qc: np.ndarray, batches: list[str]) -> dict[str, int]:
    """QC runs per batch, batches in order of first appearance."""
    counts: dict[str, int] = {}
    for qc, batch in zip(is_qc, batches, strict=True):
        counts[batch] = counts.get(batch, 0) + int(qc)
    return counts


def choose_method(requested: str, is_qc: np.ndarray, orders: np.ndarray, batches: list[str],
                  run_ids: list[str]) -> tuple[str, str]:
    """The method applied and the note for correction.json, for ``requested`` (one of ``METHODS``).

    ``is_qc``: bool per run; ``orders``: injection order per run (NaN when the sheet gives none); ``batches``: batch
    per run. auto: qc_spline when every batch has at least ``SPLINE_MIN_QC`` QC runs, qc_linear with at least
    ``LINE_MIN_QC``, else median (no QC, too few, or injection orders missing), with a note saying why. Raises
    ``InputError`` when qc_spline or qc_linear is asked for but there are no QC runs, a batch has none, or runs lack
    an injection order (naming them and the fix).
    """
    if requested not in METHODS:
        raise InputError(f"correct parameter drift_method='{requested}' is not one of {list(METHODS)}")
    if requested in ("none", "median"):
        return requested, NOTES[requested]
    counts = _qc_counts(is_qc, batches)
    no_order = [r for r, o in zip(run_ids, orders, strict=True) if not np.isfinite(o)]
    fewest = min(counts.values()) if counts else 0
    if requested == "auto":
        if not is_qc.any():
            why = "no pooled QC runs (sample_type qc) in the sample sheet"
        elif no_order:
            why = f"injection_order is missing for {len(no_order)} run(s) ({', '.join(no_order[:5])})"
        elif fewest < LINE_MIN_QC:
            low = [b for b, n in counts.items() if n < LINE_MIN_QC]
            why = f"batch(es) {', '.join(low)} have fewer than {LINE_MIN_QC} QC runs"
        else:
            method = "qc_spline" if fewest >= SPLINE_MIN_QC else "qc_linear"
            return method, NOTES[method]
        hint = ("; to correct the batches that have enough QCs from them, set correct: drift_method: qc_linear (a "
                "batch with fewer QCs then gets its QC median)" if is_qc.any() and not no_order and fewest >= 1 else "")
        return "median", f"drift_method auto fell back to median normalisation: {why}{hint}, so drift and batch " \
                         f"effects cannot be corrected from QCs. " + NOTES["median"]
    if not is_qc.any():
        raise InputError(f"drift_method {requested} needs pooled QC runs, but the sample sheet has none",
                         fix="mark the pooled QC injections with sample_type qc, or set correct.drift_method to auto "
                             "or median")
    if no_order:
        raise InputError(f"drift_method {requested} needs every run's injection_order; missing for "
                         f"{', '.join(no_order[:20])}", fix="add the injection_order column to the sample sheet")
    empty = [b for b, n in counts.items() if n == 0]
    if empty:
        raise InputError(f"drift_method {requested}: batch(es) {', '.join(empty)} hold no QC run",
                         fix="inject pooled QCs in every batch, or set correct.drift_method to auto or median")
    needed = SPLINE_MIN_QC if requested == "qc_spline" else LINE_MIN_QC
    short = [f"{b} ({n})" for b, n in counts.items() if n < needed]
    if short:  # asked for explicitly: applied where it can be, and the record says where it cannot
        return requested, (f"{NOTES[requested]} Asked for {requested}, but batch(es) {', '.join(short)} hold fewer "
                           f"than {needed} QC runs: their features are fitted with "
                           f"{'a straight line or ' if requested == 'qc_spline' and fewest >= LINE_MIN_QC else ''}"
                           f"the batch's QC median instead.")
    return requested, NOTES[requested]


def _spline_fits(x: np.ndarray, logs: np.ndarray, x_new: np.ndarray) -> SmootherFit:
    """Smoothing-spline fits for the rows of ``logs`` (shape (n, k), all finite), each row with its own smoothing
    parameter chosen by leave-one-out CV among those of at most max(2, k/2) effective degrees of freedom: predictions
    at ``x_new`` (shape (n, m)), leave-one-out residuals (shape (n, k): a linear smoother's residual over 1 - its
    leverage), in-sample residual sum of squares and effective degrees of freedom (trace of the hat matrix) per row,
    and the leverage of each prediction (squared norm of its smoother weights, shape (n, m)). ``x``: strictly
    increasing, shape (k,)."""
    k = x.size
    lo, span = float(x[0]), float(x[-1] - x[0])
    xs, xn = (x - lo) / span, (x_new - lo) / span
    eye = np.eye(k)
    n = logs.shape[0]
    best_cv = np.full(n, np.inf)
    out = SmootherFit(np.zeros((n, x_new.size)), np.zeros_like(logs), np.zeros(n), np.zeros(n),
                      np.zeros((n, x_new.size)))
    max_df = max(2.0, k / 2.0)
    for i, lam in enumerate(LAMBDAS[::-1]):  # stiffest first: it is always allowed
        with _warnings.catch_warnings():
            _warnings.simplefilter("ignore")
            spline = make_smoothing_spline(xs, eye, lam=float(lam))
        hat = spline(xs)  # hat[i, j]: fit at x_i of the data e_j, so fitted = logs @ hat.T
        df = float(np.trace(hat))
        if i and df > max_df:
            break
        leverage = np.clip(1.0 - np.diag(hat), 1e-9, None)
        residuals = logs - logs @ hat.T
        loo = residuals / leverage
        cv = np.mean(loo ** 2, axis=1)
        better = cv < best_cv
        if better.any():
            weights = spline(xn)  # (m, k): prediction at x_new[j] = weights[j] @ data
            out.fit[better] = logs[better] @ weights.T
            out.loo[better] = loo[better]
            out.rss[better] = np.sum(residuals[better] ** 2, axis=1)
            out.df[better] = df
            out.leverage_new[better] = np.sum(weights ** 2, axis=1)[None, :]
            best_cv[better] = cv[better]
    return out


def _line_fits(xs: np.ndarray, ys: np.ndarray, x_new: np.ndarray) -> SmootherFit:
    """The straight line ``qc_rlsc`` fits to each row of ``ys`` (k >= LINE_MIN_QC values at ``xs``), as
    ``_spline_fits`` returns it (2 degrees of freedom)."""
    k = xs.size
    centre = xs.mean()
    design = np.column_stack([np.ones(k), xs - centre])
    pinv = np.linalg.pinv(design)
    weights = np.column_stack([np.ones(x_new.size), x_new - centre]) @ pinv  # (m, k)
    hat = design @ pinv
    residuals = ys - ys @ hat.T
    # leave-one-out: the residual over 1 - its leverage is the same line refitted without the point
    loo = residuals / np.clip(1.0 - np.diag(hat), 1e-9, None)
    n = ys.shape[0]
    return SmootherFit(ys @ weights.T, loo, np.sum(residuals ** 2, axis=1),
                       np.full(n, 2.0), np.repeat(np.sum(weights ** 2, axis=1)[None, :], n, axis=0))


def _median_fits(xs: np.ndarray, ys: np.ndarray, x_new: np.ndarray) -> SmootherFit:
    """The batch's QC median (1-2 QC values), as ``_spline_fits`` returns it: the mean's 1 degree of freedom and
    leverage 1/k stand for it (exact for k <= 2, where median and mean agree)."""
    k = xs.size
    n = ys.shape[0]
    centre = np.median(ys, axis=1)
    # leave-one-out: with 2 values the fit without one is the other; with 1 there is none
    loo = ys - ys[:, ::-1] if k == 2 else np.full(ys.shape, np.nan)
    return SmootherFit(np.repeat(centre[:, None], x_new.size, axis=1), loo,
                       np.sum((ys - centre[:, None]) ** 2, axis=1), np.ones(n), np.full((n, x_new.size), 1.0 / k))


def _predicted_rsd(rss: np.ndarray, residual_df: np.ndarray, inflation: np.ndarray,
                   reference: np.ndarray) -> tuple[np.ndarray, float | None]:
    """Per feature, the RSD predicted at the samples' injections from the QC fits (``qc_rlsc``): residual variance
    ``rss / residual_df`` moderated towards features of similar QC intensity (``core.ebayes.squeeze_variances``),
    times ``inflation`` (mean 1 + leverage over the non-QC runs), as a log-normal RSD sqrt(exp(v) - 1) capped at
    ``MAX_PREDICTED_RSD``; NaN with less than 1 residual degree of freedom (fewer than 2 QC values in every batch:
    nothing to judge). Returns (RSD, prior degrees of freedom, None when too few features to fit a prior)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        s2 = np.where(residual_df >= 1.0, rss / np.maximum(residual_df, 1e-12), np.nan)
        intensity = np.log(reference)
    usable = np.isfinite(s2) & np.isfinite(intensity)
    prior_df = None
    variance = s2
    try:
        post, d0, _ = squeeze_variances(s2[usable], residual_df[usable], intensity[usable])
        variance = np.full(s2.shape, np.nan)
        variance[usable] = post
        prior_df = d0
    except InputError:  # fewer than 3 features with a residual variance: no prior to borrow from
        pass
    capped = np.minimum(variance * inflation, np.log1p(MAX_PREDICTED_RSD ** 2))
    return np.sqrt(np.expm1(capped)), prior_df


def qc_rlsc(values: np.ndarray, is_qc: np.ndarray, orders: np.ndarray, batches: list[str],
            method: str) -> QcCorrection:
    """QC-RLSC drift and batch correction (see the module docstring).

    Returns ``QcCorrection``: ``corrected`` (a corrected copy of ``values``), ``notes`` (warnings), ``held_out``
    (shape of ``values``: each QC value corrected by the fit made WITHOUT it, leave-one-out; NaN in the other runs
    and where a QC had no partner in its batch) and ``predicted_rsd`` (shape (n_features,)). The QC RSD of the
    corrected values is measured on the QCs the fit went through, so it is optimistic (with a line through 3 QCs, 1
    degree of freedom is left); the RSD of the held-out values is the out-of-sample check (Dunn et al. 2011 hold
    QCs out to validate the fit), pessimistic with few QCs (a held-out end QC is extrapolated from the others).
    ``predicted_rsd`` is the RSD a run of the QC material would show after correction at the study samples'
    injection positions: the fits' residual variance over their residual degrees of freedom (pooled over the
    batches: sum of squared log residuals / sum of (QC values - effective degrees of freedom)), moderated towards
    the features of similar QC intensity (empirical Bayes, limma's squeezeVar: Smyth 2004; with 3 QCs per batch a
    feature has 1 residual degree of freedom per batch, too few to judge it alone), times the mean over the non-QC
    runs of 1 + the fit's leverage there, the prediction error of a linear smoother (Hastie & Tibshirani 1990,
    Generalized Additive Models, ch. 3), as an RSD sqrt(exp(s^2) - 1) capped at ``MAX_PREDICTED_RSD``; NaN with
    less than 1 residual degree of freedom (``_predicted_rsd``).

    ``method``: qc_spline or qc_linear (``choose_method``); every run needs a finite injection order. Per feature
    and batch the fit degrades with fewer QC values (spline >= 5, line >= 3, QC median >= 1); a feature without any
    QC value in a batch (or anywhere) takes, in each run, the median factor of the features fitted from their own
    QCs there (the run's batch offset and drift), counted in the warnings.
    """
    if method not in ("qc_spline", "qc_linear"):
        raise ValueError(f"qc_rlsc: method {method}")
    values = np.asarray(values, dtype=np.float64)
    positive = np.where(values > 0, values, np.nan)
    logs = np.log(positive)
    with _warnings.catch_warnings():
        _warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows: no QC value anywhere
        reference = np.nanmedian(np.where(is_qc[None, :], positive, np.nan), axis=1)
    factors = np.ones_like(values)
    held_out = np.full(values.shape, np.nan)
    fitted = np.zeros(values.shape, dtype=bool)  # cells whose factor comes from the feature's own QC values
    rss, residual_df = np.zeros(values.shape[0]), np.zeros(values.shape[0])
    # 1 + the fit's leverage, summed over each feature's non-QC runs, and their number
    inflation_sum, inflation_n = np.zeros(values.shape[0]), np.zeros(values.shape[0])
    n_uncorrected_batches = 0
    degraded = 0
    without_qc, few_qc = np.zeros(values.shape[0], np.int32), np.zeros(values.shape[0], np.int32)
    batch_arr = np.asarray(batches, dtype=object)
    for batch in dict.fromkeys(batches):
        runs = np.flatnonzero(batch_arr == batch)
        qcs = runs[is_qc[runs]]
        qcs = qcs[np.argsort(orders[qcs], kind="stable")]
        if qcs.size == 0:  # choose_method refuses this; kept as measured when called directly
            n_uncorrected_batches += values.shape[0]
            without_qc += 1
            continue
        x_q, x_r = orders[qcs], orders[runs]
        present = np.isfinite(logs[:, qcs])
        patterns, inverse = np.unique(present, axis=0, return_inverse=True)
        inverse = np.asarray(inverse).reshape(-1)
        for p, pattern in enumerate(patterns):
            rows = np.flatnonzero(inverse == p)
            k = int(pattern.sum())
            if k == 0:
                n_uncorrected_batches += rows.size
                without_qc[rows] += 1
                continue
            xs, ys = x_q[pattern], logs[np.ix_(rows, qcs[pattern])]
            x_eval = np.clip(x_r, xs[0], xs[-1])  # held constant outside the QCs
            if method == "qc_spline" and k >= SPLINE_MIN_QC:
                smoother = _spline_fits(xs, ys, x_eval)
            elif k >= LINE_MIN_QC:
                smoother = _line_fits(xs, ys, x_eval)
                degraded += rows.size if method == "qc_spline" else 0
                few_qc[rows] += 1 if method == "qc_spline" else 0
            else:
                smoother = _median_fits(xs, ys, x_eval)
                degraded += rows.size
                few_qc[rows] += 1
            with np.errstate(invalid="ignore", over="ignore"):
                factor = np.exp(smoother.fit) / reference[rows, None]
                held_out[np.ix_(rows, qcs[pattern])] = np.exp(smoother.loo) * reference[rows, None]
            ok = np.isfinite(factor) & (factor > 0)
            factors[np.ix_(rows, runs)] = np.where(ok, factor, 1.0)
            fitted[np.ix_(rows, runs)] = ok
            rss[rows] += smoother.rss
            residual_df[rows] += np.maximum(k - smoother.df, 0.0)
            others = ~is_qc[runs]
            inflation_sum[rows] += np.sum(1.0 + smoother.leverage_new[:, others], axis=1)
            inflation_n[rows] += others.sum()
    # A feature without QC values in a batch still shares the run's batch offset and drift: it takes the run's
    # median factor over the features fitted from their own QCs (the run-level part of the correction), instead of
    # keeping the batch's offset, which a model would learn as signal.
    with _warnings.catch_warnings():
        _warnings.simplefilter("ignore", RuntimeWarning)  # runs without any fitted feature
        run_factor = np.exp(np.nanmedian(np.where(fitted, np.log(factors), np.nan), axis=0))
    borrow = ~fitted & np.isfinite(run_factor)[None, :]
    factors = np.where(borrow, run_factor[None, :], factors)
    n_borrowed = int(np.any(borrow & np.isfinite(values), axis=1).sum())
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_inflation = inflation_sum / inflation_n  # NaN for a feature without a fitted batch
    predicted_rsd, prior_df = _predicted_rsd(rss, residual_df, mean_inflation, reference)
    notes = []
    if degraded:
        fallback = "a straight line (3-4 values) or the batch's QC median" if method == "qc_spline" else \
            "the batch's QC median"
        notes.append(f"{degraded} feature-batch fits had fewer QC values than {method} needs and used {fallback}")
    if n_uncorrected_batches:
        notes.append(f"{n_uncorrected_batches} feature-batch pairs had no QC value: corrected by the run's median "
                     f"factor over the features fitted from their own QCs")
    if n_borrowed:
        notes.append(f"{n_borrowed} features took the run-level median factor where they had no QC values of their "
                     f"own")
    return QcCorrection(values / factors, notes, held_out, predicted_rsd, residual_df, prior_df, without_qc, few_qc)


def qc_rsd(values: np.ndarray, is_qc: np.ndarray) -> np.ndarray:
    """Relative standard deviation (sample sd / mean, linear scale, a fraction) of each feature over the QC runs
    where it has a value; NaN with fewer than 2 values. Shape (n_features,)."""
    qc = np.asarray(values, dtype=np.float64)[:, np.asarray(is_qc, dtype=bool)]
    n = np.sum(np.isfinite(qc), axis=1)
    out = np.full(qc.shape[0], np.nan)
    ok = n >= 2
    if ok.any():
        with _warnings.catch_warnings():
            _warnings.simplefilter("ignore", RuntimeWarning)
            mean = np.nanmean(qc[ok], axis=1)
            sd = np.nanstd(qc[ok], axis=1, ddof=1)
        out[ok] = np.where(mean > 0, sd / mean, np.nan)
    return out


def match_internal_standards(mz: np.ndarray, rt: np.ndarray, standards: list[dict], mz_ppm: float,
                             rt_s: float) -> list[int]:
    """The consensus feature (row index) of each internal standard ``{name, mz, rt_s}``: among the features within
    ``mz_ppm`` and ``rt_s`` (RT on the reference run's axis), the one nearest in RT. Raises ``InputError`` naming
    every standard not found, with the nearest feature in m/z, and the fix."""
    matched, missing = [], []
    for standard in standards:
        name, target_mz, target_rt = str(standard["name"]), float(standard["mz"]), float(standard["rt_s"])
        ok = (np.abs(mz - target_mz) <= target_mz * mz_ppm * 1e-6) & (np.abs(rt - target_rt) <= rt_s)
        if ok.any():
            candidates = np.flatnonzero(ok)
            matched.append(int(candidates[np.argmin(np.abs(rt[candidates] - target_rt))]))
            continue
        if mz.size:
            near = int(np.argmin(np.abs(mz - target_mz)))
            hint = f"nearest consensus feature m/z {mz[near]:.4f} at {rt[near]:.1f} s"
        else:
            hint = "the feature matrix is empty"
        missing.append(f"'{name}' (m/z {target_mz:.4f}, {target_rt:.1f} s; {hint})")
    if missing:
        raise InputError(f"internal standard(s) not found among the consensus features within {mz_ppm} ppm and "
                         f"{rt_s} s: {'; '.join(missing)}",
                         fix="correct the standard's mz / rt_s (RT on the reference run's axis) in "
                             "correct.internal_standards, widen gap_fill_mz_ppm / gap_fill_rt_s, or remove it")
    return matched


def internal_standard_factors(values: np.ndarray, rows: list[int], reference_runs: np.ndarray) -> np.ndarray:
    """Per run, the geometric mean of the internal standards' intensities (rows ``rows`` of ``values``, present ones)
    over its median across ``reference_runs`` (bool per run); NaN for a run holding none of them. Divide a run by its
    factor to normalise it. Shape (n_runs,)."""
    block = np.asarray(values, dtype=np.float64)[rows]
    logs = np.log(np.where(block > 0, block, np.nan))
    with _warnings.catch_warnings():
        _warnings.simplefilter("ignore", RuntimeWarning)
        geo = np.exp(np.nanmean(logs, axis=0))
    usable = reference_runs & np.isfinite(geo)
    if not usable.any():
        return np.full(geo.shape, np.nan)
    return geo / float(np.median(geo[usable]))
