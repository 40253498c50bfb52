"""The corrected study feature matrix and its record (``correct`` stage): every batch-study correction in one order.

From the raw feature matrix (``tables.FEATURE_MATRIX_KEYS`` + one column per run) and the runs' roles (sample, qc,
blank; injection order; batch), ``correct_matrix`` builds ``tables.CORRECTED_MATRIX_KEYS`` + one Float64 column per
run of the sheet (QCs and blanks included, sheet order), in this order:

1. gap filling: null cells take the value re-quantified by the ``gapfill`` stage (``correction.gapfill``) when
   ``use_filled`` is true; ``n_filled`` counts them per feature;
2. blank ratio, flag and ``n_blank_detected`` before normalisation (``correction.blank``): the samples' filled values
   against the blanks' detected ones (a blank that did not detect the feature counts 0, a blank's gap fill not at
   all); blank runs have no place on the QC drift curves and no meaningful median for a run-level normalisation, so
   they are compared as measured;
3. QC RSD before correction (``correction.drift.qc_rsd``);
4. internal-standard normalisation when standards are configured (``correction.drift``);
5. drift and batch correction: QC-RLSC (qc_spline / qc_linear), median normalisation, or none
   (``correction.drift.choose_method`` decides for auto and writes the note); study samples injected outside their
   batch's QC bracket are named in a warning (``outside_qc_bracket``); after QC-RLSC, with ``normalise_after_drift``
   ``pqn``, every sample and QC run is also divided by its probabilistic quotient (``normalise.median_normalise``: the
   samples' dilution, which pooled QCs cannot see);
6. QC RSD after correction: in-sample (``qc_rsd_after``, the QCs as corrected), held out (``qc_rsd_held_out``: each
   QC corrected by the fit made without it) and predicted (``qc_rsd_predicted``: the RSD a run of the QC material
   would show at the study samples' injections, from the fits' residual variance moderated towards features of
   similar intensity and their leverage, ``drift.qc_rlsc``), the last two after a QC-based fit only, after which a
   feature without residual degrees of freedom has no in-sample RSD either (null, not the fit's 0); the flag
   (``qc_rsd_max``) reads the one ``qc_rsd_basis`` names (``predicted`` by default). After a QC-based fit a feature
   without that value (fewer than 2 QC values in every batch, whose in-sample RSD is near 0 by construction) is not
   judged: flag null, kept; after median normalisation or none the flag reads the in-sample RSD (null with fewer
   than 2 QC values). ``excluded`` = blank_flag or a true qc_rsd_flag. Why not in-sample: a fit through the QCs
   makes their RSD small by construction. Measured per feature against the truth: on synthetic drift (QC error =
   the samples' error; 2-5 QCs per batch; tests/test_correct.py) the in-sample RSD was 0.4-0.7x the samples'
   error, the held-out one 1.3-3x, the predicted one 0.8-1.2x; on the two realistic simulated batch studies of
   benchmarks/study_truth.py (3 QCs per batch, where the samples' error also holds what a pooled QC cannot show;
   measured/study_truth_session18.json and _seed3_session18.json) 0.37-0.40x / 1.2-1.3x / 0.86-0.87x (median
   ratios; median |log ratio| of the predicted one 0.32-0.39, 0.43-0.55 without the moderation). Of the features
   whose true error exceeded 0.3 the flag caught 31-32 % in-sample, 46-55 % predicted (92-94 % of its flags right,
   1.4-1.5 % of the others flagged) and 73-78 % held out (8 % of the others); most of those features were traces
   split by detection, which the realistic simulator caused until session 19: without them (study_truth_session19:
   predicted 0.79x) the 201 features still above 0.3 err where the QCs do not, and the flag catches 3 % of them
   (held out 11 %);
7. ``batch_only``: the batch a feature was detected in alone (before gap filling, study samples and QCs), where
   chance would rarely put its detections in one batch (``correction.presence``; kept, a mark only);
8. the RT spread (``correction.rtspread``, from ``feature_links.parquet`` when given): ``rt_sd_s``, the sd of the
   aligned apex RT over the study samples detecting the feature, and ``rt_sd_flag`` above ``rt_sd_ratio`` x its
   study median, and (where the links give peak widths) its spread per second of peak width above ``rt_sd_ratio`` x
   that ratio's median: likely co-eluting unresolved ions summed in one feature, an error of the samples that pooled
   QCs cannot show (kept; not in ``excluded``);
9. compound groups and adducts from ``correction.adducts`` (``group_adducts``), with the evidence of each label
   (``tables.ADDUCT_EVIDENCE``), when ``adducts`` is true and the module is present; otherwise every feature is a
   group of its own with adduct null (a warning says why); with ``collapse_adducts`` the matrix keeps one row per
   group (``collapse_groups``).

The record (``report``) holds exactly the keys of ``REPORT_KEYS`` (results/study/correction.json). Counts: n_samples,
n_qc, n_blank are runs by sample_type; n_filled the cells holding a gap-filled value, filled_share their share of the
non-null cells of the corrected matrix; qc_rsd_median_* the median over features with an RSD (null without QC runs;
qc_rsd_median_held_out: of the QCs corrected by fits made without them, null without a QC-based correction);
qc_rsd_median_predicted likewise; qc_rsd_basis the RSD the flag read; n_qc_rsd_unassessed the features it could
not judge (null without QC runs); qc_residual_df_median the QC fits' residual degrees of freedom per feature (summed
over the batches) and qc_rsd_prior_df the moderation's prior degrees of freedom (both null without a QC-based fit,
the prior also when too few features had residuals); n_qc_rsd_flagged the flagged features,
n_qc_rsd_flagged_in_sample those the in-sample RSD would have flagged; n_rt_sd_flagged the features with the RT
spread flag, n_rt_sd_unassessed those detected in too few samples to judge, rt_sd_median_s the median RT spread and
rt_sd_threshold_s the flag's threshold (both null without links; the threshold also with rt_sd_ratio 0),
n_rt_sd_within_width those above that threshold left unflagged because their spread is ordinary for their peak width;
batch_only the features marked as detected in one batch alone (``correction.presence``), counted per batch on the
matrix as written, batch_only_expected how many chance would mark if detection did not depend on the batch;
n_features_in_adduct_groups the features in groups of two or more; n_subjects_normalised_within the subjects
(sheet's subject_id) with several runs whose runs the run-level normalisation aligned with one another first (null
when none or without run-level normalisation).
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
from dataclasses import dataclass

import numpy as np
import polars as pl

from ms2study.core import tables
from ms2study.core.errors import InputError
from ms2study.core.params import overlay, schema_defaults
from ms2study.correction.blank import blank_detections, blank_flags, blank_ratio, isotopes_of_flagged
from ms2study.correction.drift import (
    choose_method,
    internal_standard_factors,
    match_internal_standards,
    qc_rlsc,
    qc_rsd,
)
from ms2study.correction.normalise import median_normalise, subject_runs
from ms2study.correction.presence import batch_only, expected_by_chance
from ms2study.correction.rtspread import peak_width, rt_spread, rt_spread_flags

log = logging.getLogger(__name__)

DEFAULT_PARAMS: dict = schema_defaults("correct")
ADDUCTS_MODULE = "ms2study.correction.adducts"

# Without a QC-based fit the flag reads the QCs' own RSD only where a feature has this many QC values: with 2 (a
# trial's study, one QC per batch) its sd has 1 degree of freedom, and a true RSD of 0.2 exceeds 0.3 in 13 % of
# features by chance (chi-square, 1 df): the trial lost 16 % of its features to the filter without a word.
MIN_QC_VALUES = 3

REPORT_KEYS = (
    "drift_method", "note", "n_features", "n_samples", "n_qc", "n_blank", "batches", "n_blank_flagged",
    "n_blank_flagged_isotopes",
    "n_qc_rsd_flagged", "qc_rsd_median_before", "qc_rsd_median_after", "qc_rsd_median_held_out",
    "qc_rsd_median_predicted", "qc_rsd_basis", "normalised_after_drift", "n_subjects_normalised_within",
    "pqn_factor_range", "run_factors", "n_qc_rsd_unassessed",
    "qc_residual_df_median", "qc_rsd_prior_df",
    "n_qc_rsd_flagged_in_sample", "n_rt_sd_flagged", "n_rt_sd_unassessed", "rt_sd_median_s", "rt_sd_threshold_s",
    "n_rt_sd_within_width", "batch_only", "batch_only_expected", "n_filled", "filled_share",
    "n_compound_groups", "n_features_in_adduct_groups", "adduct_polarity", "internal_standards", "warnings",
)
GROUP_COLUMNS = ("consensus_id", "compound_group", "adduct", "group_representative")


@dataclass
class Corrected:
    """The corrected matrix (``tables.CORRECTED_MATRIX_KEYS`` + one column per run) and the correction record."""

    matrix: pl.DataFrame
    report: dict


def fill_gaps(values: np.ndarray, consensus_ids: list[str], run_ids: list[str],
              gap_filled: pl.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """``values`` (features x runs, NaN = missing) with the non-null intensities of ``gap_filled``
    (``tables.GAP_FILLED`` rows of any runs) put into their cells; returns (filled copy, bool mask of filled cells).

    Raises ``InputError`` when the tables do not belong to this matrix (a consensus id or a run it lacks, or a cell
    the matrix already holds): they come from an older link run, so gapfill must run again.
    """
    out = np.array(values, dtype=np.float64, copy=True)
    mask = np.zeros(out.shape, dtype=bool)
    found = gap_filled.filter(pl.col("intensity").is_not_null())
    if found.is_empty():
        return out, mask
    row_of = {c: i for i, c in enumerate(consensus_ids)}
    col_of = {s: j for j, s in enumerate(run_ids)}
    stale = "rerun 'ms2study gapfill' for every run after 'ms2study link' (snakemake does this by itself)"
    unknown_runs = sorted(set(found["sample_id"].to_list()) - set(col_of))
    if unknown_runs:
        raise InputError(f"gap-filled values for runs not in the sample sheet: {', '.join(unknown_runs[:10])}",
                         fix="pass the gap_filled tables of the sheet's runs only")
    unknown = [c for c in found["consensus_id"].to_list() if c not in row_of]
    if unknown:
        raise InputError(f"gap-filled values for {len(unknown)} consensus id(s) the feature matrix lacks "
                         f"(e.g. {unknown[0]})", fix=stale)
    rows = np.array([row_of[c] for c in found["consensus_id"].to_list()], dtype=np.int64)
    cols = np.array([col_of[s] for s in found["sample_id"].to_list()], dtype=np.int64)
    clash = np.isfinite(out[rows, cols])
    if clash.any():
        i = int(np.flatnonzero(clash)[0])
        raise InputError(f"{int(clash.sum())} gap-filled cell(s) already hold a detected value in the feature matrix "
                         f"(e.g. {consensus_ids[rows[i]]} in {run_ids[cols[i]]})", sample=run_ids[cols[i]], fix=stale)
    out[rows, cols] = found["intensity"].to_numpy()
    mask[rows, cols] = True
    return out, mask


def singleton_groups(consensus_ids: list[str]) -> pl.DataFrame:
    """Every feature a compound group of its own (``G1`` ...), adduct null, each its group's representative."""
    n = len(consensus_ids)
    return pl.DataFrame({"consensus_id": consensus_ids, "compound_group": [f"G{i + 1}" for i in range(n)],
                         "adduct": [None] * n, "group_representative": [True] * n},
                        schema={"consensus_id": pl.Utf8, "compound_group": pl.Utf8, "adduct": pl.Utf8,
                                "group_representative": pl.Boolean})


def adduct_module():
    """``ms2study.correction.adducts`` when it is installed, else None (its errors, once found, propagate)."""
    if importlib.util.find_spec(ADDUCTS_MODULE) is None:
        return None
    return importlib.import_module(ADDUCTS_MODULE)


def _groups(frame: pl.DataFrame, runs: list[str], params: dict, polarity: str,
            warnings: list[str]) -> tuple[pl.DataFrame, object]:
    """The compound groups of ``frame``'s features and the adducts module used (None for singletons)."""
    ids = frame["consensus_id"].to_list()
    if not params["adducts"]:
        return singleton_groups(ids), None
    module = adduct_module()
    if module is None:
        warnings.append("adduct grouping is not available in this version (no ms2study.correction.adducts): every "
                        "feature is its own compound group, adduct unknown")
        return singleton_groups(ids), None
    grouping = module.adduct_grouping(frame, runs, params, polarity)
    groups = grouping.table
    for note in grouping.notes:  # what the grouping did (counts, caveats): the log, not the report's warnings
        log.info("adduct grouping: %s", note)
    counts = getattr(grouping, "counts", {})
    if module.covariation.all_refused(counts):  # ... except that no tested pair at all could be confirmed
        warnings.append("adduct grouping: " + module.covariation.rejection_note(counts, module.correlation_test(params)))
    missing_cols = [c for c in GROUP_COLUMNS if c not in groups.columns]
    if missing_cols:
        raise ValueError(f"group_adducts returned no columns {missing_cols}")
    evidence = [c for c in tables.ADDUCT_EVIDENCE if c in groups.columns]  # what each label rests on
    groups = groups.select(list(GROUP_COLUMNS) + evidence).cast(
        {"consensus_id": pl.Utf8, "compound_group": pl.Utf8, "adduct": pl.Utf8, "group_representative": pl.Boolean,
         **{c: tables.ADDUCT_EVIDENCE[c] for c in evidence}})
    if groups["consensus_id"].is_duplicated().any() or set(groups["consensus_id"].to_list()) != set(ids):
        raise ValueError("group_adducts must return each consensus feature exactly once")
    return groups, module


def outside_qc_bracket(is_sample: np.ndarray, is_qc: np.ndarray, orders: np.ndarray, batches: list[str],
                       run_ids: list[str]) -> list[str]:
    """The study samples (``is_sample``) injected before the first or after the last QC run of their batch (by
    ``orders``, the injection order; runs without one are not judged), in sheet order. QC-RLSC holds the fit constant
    there (``drift.qc_rlsc``: no extrapolation), so their correction is the nearest QC's and no QC brackets it."""
    batch = np.asarray(batches, dtype=object)
    out = []
    for b in dict.fromkeys(batches):
        mine = batch == b
        qc_orders = orders[mine & is_qc & np.isfinite(orders)]
        if qc_orders.size == 0:
            continue
        beyond = (orders < qc_orders.min()) | (orders > qc_orders.max())
        out += [run_ids[j] for j in np.flatnonzero(mine & is_sample & np.isfinite(orders) & beyond)]
    order = {r: i for i, r in enumerate(run_ids)}
    return sorted(out, key=order.get)


def _counts(per_feature: np.ndarray | None, n: int) -> list[int | None]:
    """A per-feature count of the QC-based fit as a nullable column (all null without a fit)."""
    return [None] * n if per_feature is None else [int(v) for v in per_feature]


def _median(values: np.ndarray) -> float | None:
    finite = values[np.isfinite(values)]
    return float(np.median(finite)) if finite.size else None


def _factor_range(factors: np.ndarray | None, is_sample: np.ndarray) -> list[float] | None:
    """[smallest, largest] of the study samples' normalisation factors, rounded; None without factors or samples."""
    if factors is None or not is_sample.any():
        return None
    return [round(float(f), 4) for f in (factors[is_sample].min(), factors[is_sample].max())]


def _run_factors(factors: np.ndarray | None, is_sample: np.ndarray, run_ids: list[str]) -> dict[str, float] | None:
    """{study sample id: its normalisation factor, rounded} (``reporting.shift.amount_outliers`` names the far ones);
    None without factors."""
    if factors is None or not is_sample.any():
        return None
    return {run_ids[j]: round(float(factors[j]), 4) for j in np.flatnonzero(is_sample) if np.isfinite(factors[j])}


def correct_matrix(matrix: pl.DataFrame, roles: pl.DataFrame, params: dict | None = None,
                   gap_filled: pl.DataFrame | None = None, polarity: str = "positive",
                   links: pl.DataFrame | None = None, subjects: list[str | None] | None = None) -> Corrected:
    """The corrected feature matrix and its record (see the module docstring for the steps and their order).

    ``matrix``: the raw study feature matrix; ``roles``: ``io.samplesheet.sample_roles`` of the sheet (its runs, in
    order, are the matrix columns written); ``params``: the config's ``correct`` section; ``gap_filled``: the
    ``tables.GAP_FILLED`` rows of the runs (None: no gap filling); ``polarity``: the ion mode handed to adduct
    grouping; ``links``: ``feature_links.parquet`` (None: the RT spread is not judged, ``rt_sd_s`` and
    ``rt_sd_flag`` null); ``subjects``: each run's subject (the sheet's ``subject_id``, None for none; None: no
    subjects), whose runs the run-level normalisation aligns with one another first (``normalise.median_normalise``).
    Raises ``InputError`` when the matrix lacks a run of the sheet, for stale gap-filled
    tables, an internal standard not found, or a drift method the sheet cannot support (``drift.choose_method``).
    """
    params = overlay(params, DEFAULT_PARAMS, "correct")
    run_ids = roles["sample_id"].to_list()
    absent = [s for s in run_ids if s not in matrix.columns]
    if absent:
        raise InputError(f"the feature matrix has no column for {len(absent)} run(s) of the sheet "
                         f"({', '.join(absent[:10])})", sample=absent[0],
                         fix="rerun 'ms2study link' with every run of the sample sheet")
    warnings: list[str] = []
    extra = [c for c in matrix.columns if c not in tables.FEATURE_MATRIX_KEYS and c not in run_ids]
    if extra:
        warnings.append(f"feature matrix columns not in the sample sheet left out: {', '.join(extra[:10])}")
    types = np.array(roles["sample_type"].to_list(), dtype=object)
    is_sample, is_qc, is_blank = types == "sample", types == "qc", types == "blank"
    orders = roles["injection_order"].cast(pl.Float64).fill_null(np.nan).to_numpy()
    batches = roles["batch"].to_list()
    ids = matrix["consensus_id"].to_list()
    values = matrix.select([pl.col(s).cast(pl.Float64) for s in run_ids]).to_numpy().astype(np.float64) \
        if run_ids else np.empty((matrix.height, 0))
    values = np.where(np.isfinite(values), values, np.nan)

    detected = values  # before gap filling: the blank side of the blank filter reads only these
    filled = np.zeros(values.shape, dtype=bool)
    if gap_filled is not None:
        values_filled, filled = fill_gaps(values, ids, run_ids, gap_filled)
        if params["use_filled"]:
            values = values_filled
        else:
            warnings.append(f"gap filling found {int(filled.sum())} values, not used (correct.use_filled false)")
            filled = np.zeros(values.shape, dtype=bool)

    ratio = blank_ratio(values, detected, is_sample, is_blank, params["blank_statistic"])
    blank_flag = blank_flags(ratio, float(params["blank_ratio"]))
    n_blank_detected = blank_detections(detected, is_blank)
    one_batch, _ = batch_only(detected, is_sample | is_qc, [str(b) for b in batches])  # detected in one batch alone
    one_batch_chance = expected_by_chance(detected, is_sample | is_qc, [str(b) for b in batches])
    rsd_before = qc_rsd(values, is_qc)

    standards_out = []
    standards = params["internal_standards"] or []
    if standards:
        rows = match_internal_standards(matrix["mz"].to_numpy(), matrix["rt_s"].to_numpy(), standards,
                                        float(params["gap_fill_mz_ppm"]), float(params["gap_fill_rt_s"]))
        reference = is_sample if is_sample.any() else ~is_blank
        factors = internal_standard_factors(values, rows, reference)
        without = [run_ids[j] for j in np.flatnonzero(~np.isfinite(factors))]
        if without:
            warnings.append(f"{len(without)} run(s) hold none of the internal standards and were not normalised by "
                            f"them: {', '.join(without[:10])}")
        values = values / np.where(np.isfinite(factors), factors, 1.0)[None, :]
        for standard, row in zip(standards, rows, strict=True):
            present = int(np.isfinite(values[row]).sum())
            standards_out.append({"name": str(standard["name"]), "mz": float(standard["mz"]),
                                  "rt_s": float(standard["rt_s"]), "consensus_id": ids[row],
                                  "matched_mz": float(matrix["mz"][row]), "matched_rt_s": float(matrix["rt_s"][row]),
                                  "n_runs_present": present})

    method, note = choose_method(params["drift_method"], is_qc, orders, batches, run_ids)
    fit = None
    if method in ("qc_spline", "qc_linear"):
        fit = qc_rlsc(values, is_qc, orders, batches, method)
        values = fit.corrected
        warnings += fit.notes
        outside = outside_qc_bracket(is_sample, is_qc, orders, batches, run_ids)
        if outside:
            warnings.append(f"{len(outside)} study sample(s) were injected before the first or after the last pooled "
                            f"QC of their batch ({', '.join(outside[:10])}{', ...' if len(outside) > 10 else ''}): "
                            "their drift correction holds the nearest QC's value, which no QC checks there; inject a "
                            "pooled QC before the first and after the last sample of every batch")
    median_factors = None
    if method == "median":
        values, median_factors = median_normalise(values, is_sample | is_qc, subjects)
        if int((is_sample | is_qc).sum()) > 1 and np.all(median_factors == 1.0):
            warnings.append("median normalisation left every run as it was: no feature is measured in at least half "
                            "of the runs and in 2 or more (runs sharing few features: see the QC section), or the "
                            "runs are at one level already")
    pqn_factors = None
    if fit is not None and params["normalise_after_drift"] == "pqn":  # the samples' dilution, which QCs cannot see
        values, pqn_factors = median_normalise(values, is_sample | is_qc, subjects)
    normalised = median_factors is not None or pqn_factors is not None
    n_subjects = len(subject_runs(is_sample | is_qc, subjects)) if normalised else 0
    rsd_after = qc_rsd(values, is_qc)
    if fit is not None:  # one QC value per batch: the fit goes through each, an RSD of 0 that measures nothing
        rsd_after = np.where(fit.residual_df >= 1.0, rsd_after, np.nan)
    no_value = np.full(rsd_after.shape, np.nan)
    rsd_held_out = qc_rsd(fit.held_out, is_qc) if fit is not None else no_value
    predicted = fit.predicted_rsd if fit is not None else no_value
    # After a QC-based fit the flag reads the named RSD only: a feature without it (fewer than 2 QC values in every
    # batch) has an in-sample RSD near 0 by construction, so it is not judged (null), not passed.
    basis = {"in_sample": rsd_after, "held_out": rsd_held_out, "predicted": predicted}[params["qc_rsd_basis"]] \
        if fit is not None else rsd_after
    if fit is None:  # an RSD of 2 QC values has 1 degree of freedom: chance alone puts many above the threshold
        basis = np.where(np.isfinite(values[:, is_qc]).sum(axis=1) >= MIN_QC_VALUES, basis, np.nan)
    assessed = np.isfinite(basis)
    above = assessed & (basis > float(params["qc_rsd_max"]))
    qc_flag = [bool(a) if ok else None for a, ok in zip(above, assessed, strict=True)]

    def nullable(a: np.ndarray) -> list[float | None]:
        return [float(v) if not np.isnan(v) else None for v in a]

    # the apex RT's spread over the study samples: co-eluting unresolved ions, which no QC shows (rtspread)
    study_samples = [s for s, ok in zip(run_ids, is_sample, strict=True) if ok]
    spread = (rt_spread(links, ids, study_samples, int(params["rt_sd_min_samples"])) if links is not None
              else np.full(len(ids), np.nan))
    width = peak_width(links, ids, study_samples) if links is not None else None
    rt_flag, rt_median, rt_threshold = rt_spread_flags(spread, float(params["rt_sd_ratio"]), width)
    # above the seconds threshold but ordinary for their peak width (broad single peaks): said in the report
    within_width = (int(np.sum(np.isfinite(spread) & (spread > rt_threshold)
                               & ~np.array([bool(f) for f in rt_flag]))) if rt_threshold is not None else 0)

    frame = matrix.select(list(tables.FEATURE_MATRIX_KEYS)).with_columns(
        blank_ratio=pl.Series(nullable(ratio), dtype=pl.Float64),
        blank_flag=pl.Series(blank_flag, dtype=pl.Boolean),
        n_blank_detected=pl.Series(n_blank_detected, dtype=pl.Int32),
        qc_rsd_before=pl.Series(nullable(rsd_before), dtype=pl.Float64),
        qc_rsd_after=pl.Series(nullable(rsd_after), dtype=pl.Float64),
        qc_rsd_held_out=pl.Series(nullable(rsd_held_out), dtype=pl.Float64),
        qc_rsd_predicted=pl.Series(nullable(predicted), dtype=pl.Float64),
        qc_rsd_flag=pl.Series(qc_flag, dtype=pl.Boolean),
        qc_batches_without_value=pl.Series(_counts(fit and fit.batches_without_qc, matrix.height), dtype=pl.Int32),
        qc_batches_few_values=pl.Series(_counts(fit and fit.batches_few_qc, matrix.height), dtype=pl.Int32),
        n_filled=pl.Series(filled.sum(axis=1), dtype=pl.Int32),
        rt_sd_s=pl.Series(nullable(spread), dtype=pl.Float64),
        rt_sd_flag=pl.Series(rt_flag, dtype=pl.Boolean),
        batch_only=pl.Series(one_batch, dtype=pl.Utf8),
        excluded=pl.Series(blank_flag | above, dtype=pl.Boolean),
    )
    run_columns = pl.DataFrame({s: nullable(values[:, j]) for j, s in enumerate(run_ids)},
                               schema={s: pl.Float64 for s in run_ids})
    frame = pl.concat([frame, run_columns], how="horizontal")
    non_blank = [s for s, t in zip(run_ids, types, strict=True) if t != "blank"]
    # Adducts are grouped on measured values only: a filled cell is re-quantified at the consensus position, so it
    # would correlate two features through the fill rather than through the compound (measured on the realistic
    # simulation: pair recall 0.53 with filled cells, 0.64 without).
    measured = pl.DataFrame({s: nullable(np.where(filled[:, j], np.nan, values[:, j])) for j, s in enumerate(run_ids)},
                            schema={s: pl.Float64 for s in run_ids})
    grouping_frame = pl.concat([frame.select(list(tables.FEATURE_MATRIX_KEYS)), measured], how="horizontal")
    groups, module = _groups(grouping_frame, non_blank, params, polarity, warnings)
    frame = frame.join(groups, on="consensus_id", how="left", maintain_order="left")
    inherited = pl.Series(isotopes_of_flagged(frame["compound_group"].to_list(), frame["adduct"].to_list(),
                                              frame["blank_flag"].to_list()))  # a contaminant's isotopes
    frame = frame.with_columns(blank_flag=pl.col("blank_flag") | inherited, excluded=pl.col("excluded") | inherited)
    frame = tables.conform(frame, tables.CORRECTED_MATRIX_KEYS).select([*tables.CORRECTED_MATRIX_KEYS, *run_ids])
    group_sizes = groups.group_by("compound_group").len()
    n_grouped = int(group_sizes.filter(pl.col("len") > 1)["len"].sum() or 0)
    if params["collapse_adducts"] and module is not None:
        frame = module.collapse_groups(frame, run_ids)
    elif params["collapse_adducts"]:
        warnings.append("collapse_adducts: no compound groups to collapse (adduct grouping off or unavailable)")

    n_filled = int(filled.sum())
    n_values = int(np.isfinite(values).sum())
    report = {
        "drift_method": method,
        "note": note,
        "n_features": int(matrix.height),
        "n_samples": int(is_sample.sum()),
        "n_qc": int(is_qc.sum()),
        "n_blank": int(is_blank.sum()),
        "batches": list(dict.fromkeys(batches)),
        "n_blank_flagged": int(blank_flag.sum() + inherited.sum()),
        "n_blank_flagged_isotopes": int(inherited.sum()),
        "n_qc_rsd_flagged": int(above.sum()),
        "qc_rsd_median_before": _median(rsd_before) if is_qc.any() else None,
        "qc_rsd_median_after": _median(rsd_after) if is_qc.any() else None,
        # the QCs corrected by fits made without them (drift.qc_rlsc): the out-of-sample check of the correction
        "qc_rsd_median_held_out": _median(rsd_held_out) if fit is not None else None,
        "qc_rsd_median_predicted": _median(predicted) if fit is not None else None,
        "qc_rsd_basis": params["qc_rsd_basis"],
        # after the QC-based fit, each run's overall level removed (PQN factors of the study samples: range)
        "normalised_after_drift": "pqn" if pqn_factors is not None else None,
        # subjects whose runs the run-level normalisation aligned with one another first (sheet's subject_id)
        "n_subjects_normalised_within": n_subjects or None,
        # the samples' probabilistic quotients: after a QC-based drift correction (pqn), or of the median method
        "pqn_factor_range": _factor_range(pqn_factors if pqn_factors is not None else median_factors, is_sample),
        # each study sample's factor (its amount against the typical sample): a run with far less material is named
        "run_factors": _run_factors(pqn_factors if pqn_factors is not None else median_factors, is_sample, run_ids),
        "n_qc_rsd_unassessed": int((~assessed).sum()) if is_qc.any() else None,
        "qc_residual_df_median": _median(fit.residual_df) if fit is not None else None,
        "qc_rsd_prior_df": fit.prior_df if fit is not None else None,
        "n_qc_rsd_flagged_in_sample": int((np.isfinite(rsd_after) & (rsd_after > float(params["qc_rsd_max"]))).sum()),
        # counted on the matrix as written (one row per compound group with collapse_adducts), as the report lists it
        "n_rt_sd_flagged": int(frame["rt_sd_flag"].fill_null(False).sum()),
        "n_rt_sd_unassessed": int(frame["rt_sd_flag"].null_count()),
        "rt_sd_median_s": round(rt_median, 4) if rt_median is not None else None,
        "rt_sd_threshold_s": round(rt_threshold, 4) if rt_threshold is not None else None,
        "n_rt_sd_within_width": int(within_width),
        # features detected in the runs of one batch only, beyond chance (presence.batch_only): batch -> count
        "batch_only": {b: n for b in dict.fromkeys(str(x) for x in batches)
                       if (n := int((frame["batch_only"] == b).sum()))},
        "batch_only_expected": round(one_batch_chance, 3),
        "n_filled": n_filled,
        "filled_share": n_filled / n_values if n_values else 0.0,
        "n_compound_groups": int(group_sizes.height),
        "n_features_in_adduct_groups": n_grouped,
        "adduct_polarity": polarity,
        "internal_standards": standards_out,
        "warnings": warnings,
    }
    log.info("corrected %d features x %d runs: %s; %d blank-flagged, %d QC-RSD-flagged, %d values filled",
             matrix.height, len(run_ids), method, report["n_blank_flagged"], report["n_qc_rsd_flagged"], n_filled)
    return Corrected(matrix=frame, report=report)
