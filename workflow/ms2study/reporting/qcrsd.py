"""The QC relative standard deviation in the report's "Batch, blanks and drift" section (``reporting.batch``): the
medians before and after correction, in-sample, held out and predicted at the samples' injections, which of them the
flag read, and why the in-sample one is no independent check after a QC-based correction; and the error the QCs
cannot show, co-eluting ions summed in one feature, with the RT spread flag that looks for it (``rt_spread_part``).
May import
``ms2study.core``, ``ms2study.correction`` (its QC limits), ``ms2study.modelling`` (the flagged note's words) and
the other ``reporting`` modules.
"""

from __future__ import annotations

import re

import numpy as np
import polars as pl

from ms2study.correction.drift import LINE_MIN_QC, MAX_PREDICTED_RSD, SPLINE_MIN_QC
from ms2study.correction.matrix import MIN_QC_VALUES
from ms2study.correction.rtspread import MIN_MEDIAN_S
from ms2study.modelling.outcomes import FLAGGED_WORDS
from ms2study.reporting.charts import distribution_figure, figure_html
from ms2study.reporting.html import DOUBT, QUALITY, Caution, esc, fmt

QC_DRIFT_METHODS = ("qc_spline", "qc_linear")
# the QC RSD each correct.qc_rsd_basis reads: its column and how the report names it
BASIS = {"predicted": ("qc_rsd_predicted", "the value predicted at the study samples' injections"),
         "held_out": ("qc_rsd_held_out", "the held-out value"), "in_sample": ("qc_rsd_after", "this in-sample value")}


def fewest_per_batch(counts: dict[str, int]) -> tuple[int, str]:
    """(the fewest QC runs of a batch, "batch(es) NAMES" holding that few)."""
    fewest = min(counts.values())
    at = [b for b, n in counts.items() if n == fewest]
    return fewest, f"batch{'es' if len(at) > 1 else ''} {', '.join(at)}"


def in_sample_note(method: str, counts: dict[str, int] | None = None, basis: str = "in_sample") -> str:
    """For a QC-based ``method``, why the QC RSD after correction is no independent check (HTML): it is measured
    on the QCs the correction was fitted to, so with few QCs per batch (``counts``: QC runs per batch) it is
    optimistic; ``basis``: the RSD the flag read (correction.json ``qc_rsd_basis``). Empty for another method."""
    if method not in QC_DRIFT_METHODS:
        return ""
    fit = "a line" if method == "qc_linear" else "a smoothing spline"
    text = (f'<p class="note in-sample">The QC RSD after correction is measured on the same pooled QCs the '
            f"correction was fitted to ({esc(method)}: {fit} through each feature's QC values per batch), so it is "
            "not an independent check: it shows how closely the fit follows those QCs, and with few QCs per batch "
            "it is optimistic. ")
    if counts and any(counts.values()):
        fewest, where = fewest_per_batch(counts)
        if method == "qc_linear" and fewest >= LINE_MIN_QC:
            text += (f"A line takes 2 parameters per feature and batch, so with {fewest} QCs in {esc(where)} only "
                     f"{fewest - 2} of {fewest} QC values {'is' if fewest - 2 == 1 else 'are'} left to show the "
                     "noise. ")
        elif method == "qc_spline":
            text += (f"The spline may take up to half of a batch's QC values to follow the drift ({fewest} QCs in "
                     f"{esc(where)}). ")
    return text + ("The study samples are not in the fit: their error after correction can be larger than the "
                   f"QCs', and the flag above the threshold is judged on {BASIS.get(basis, BASIS['in_sample'])[1]}. "
                   "More pooled QCs per "
                   f"batch (at least {SPLINE_MIN_QC}, which also lets <code>auto</code> choose the spline) leave "
                   "more of them free of the fit.</p>")


def rsd_part(corrected: pl.DataFrame | None, record: dict, threshold: float,
             counts: dict[str, int] | None = None) -> str:
    """QC RSD before and after: the medians and their distributions over the features (a chart), and for a QC-based
    correction why the value after is in-sample (``in_sample_note``; ``counts``: QC runs per batch)."""
    before, after = record.get("qc_rsd_median_before"), record.get("qc_rsd_median_after")
    if before is None or corrected is None or "qc_rsd_before" not in corrected.columns:
        return ("<p>QC relative standard deviation: not measured (fewer than two pooled QC runs).</p>")
    held_out, predicted = record.get("qc_rsd_median_held_out"), record.get("qc_rsd_median_predicted")
    basis = str(record.get("qc_rsd_basis") or "in_sample")  # a record from before the basis was chosen
    head = "<p>Median QC relative standard deviation over the features: " + (
        f"<b>{fmt(before, 3)}</b> before correction and <b>{fmt(predicted, 3)}</b> after it, predicted at the study "
        f"samples' injections (the value the flag reads: features above {threshold:g} are flagged); on the QCs "
        f"themselves <b>{fmt(after, 3)}</b> after correction.</p>" if predicted is not None and basis == "predicted"
        else f"<b>{fmt(before, 3)}</b> before and <b>{fmt(after, 3)}</b> after correction (features above "
        f"{threshold:g} after correction are flagged).</p>")
    unjudged = int(record.get("n_qc_rsd_unassessed") or 0)
    if unjudged and predicted is None:  # a trial read "0 flagged" as every feature passing: none had been judged
        total = corrected.height
        head += (f"<p><b>{unjudged} of {total} features were not judged</b> by the QC RSD flag: too few QC values "
                 f"(without a QC-based drift fit at least {MIN_QC_VALUES} are needed, since the RSD of 2 values has "
                 "1 degree of freedom and chance alone puts many above the threshold; after a fit, a residual degree "
                 "of freedom). Their flag is empty and they stay in the tests and models"
                 + (", unchecked by the QCs" if unjudged == total else "") + ".</p>")
    text = head + in_sample_note(str(record.get("drift_method")), counts, basis)
    if held_out is not None:
        text += (f"<p>Out of sample: each QC corrected by the fit made without it (leave-one-out) gives a median QC "
                 f"RSD of <b>{fmt(held_out, 3)}</b>. On simulated drift with known truth (tests/test_correct.py) the "
                 "study samples' error after correction lay between the two values: above the in-sample one, below "
                 "this one (which, leaving one of few QCs out, overstates it most with 3-4 QCs per batch).</p>")
    if predicted is not None:
        text += (f"<p>Predicted at the study samples' injections: <b>{fmt(predicted, 3)}</b>, from each feature's "
                 f"QC residuals (median {record.get('qc_residual_df_median') or 0:g} residual degrees of freedom, "
                 "moderated towards features of similar intensity: empirical Bayes, Smyth 2004) and the fit's "
                 f"leverage there, capped at {MAX_PREDICTED_RSD:g} (a feature whose QC values scatter over orders of "
                 "magnitude). Per feature against known truth it came to 0.8-1.2x the samples' error on "
                 "simulated drift and 0.79-1.03x on realistic simulated batch studies (in-sample: 0.4x, held out: "
                 "1.3-3x; config/README.md, <code>qc_rsd_basis</code>). As a flag it catches only the error the QCs "
                 "share with the samples: of the features whose true error after correction exceeded the threshold "
                 "in such a study, it flagged 3 % (benchmarks/README.md, benchmarks/study_truth.py), so a feature left unflagged is "
                 "not shown to lie below it; nearly all of those had another compound's ion within 20 ppm and 8 s, "
                 "co-eluting ions summed in one feature (below). "
                 + (
                     f"{unjudged} features with fewer than 2 QC values in every batch are not judged (flag empty, "
                     "kept). " if unjudged else "") + "A pooled QC shows the measurement's error, not a gap-filled "
                 "sample value's.</p>")
    series = {"before": "qc_rsd_before", "after": "qc_rsd_after", "predicted": "qc_rsd_predicted"}
    chart = distribution_figure(
        {k: corrected[c].cast(pl.Float64).fill_null(np.nan).to_numpy() for k, c in series.items()
         if c in corrected.columns and corrected[c].is_not_null().any()},
        "QC relative standard deviation per feature", "QC RSD (fraction)", threshold, f"threshold {threshold:g}")
    return text + f'<div class="charts">{figure_html(chart)}</div>'


def rt_spread_part(record: dict, ratio: float) -> str:
    """What the RT spread flag found (correction.json ``n_rt_sd_flagged``, ``rt_sd_median_s``,
    ``rt_sd_threshold_s``; ``ratio``: ``correct: rt_sd_ratio``), why the QCs cannot show it and how well it did on
    realistic simulated studies with known truth. Empty when the record has no RT spread (an older run, or no
    feature links)."""
    median = record.get("rt_sd_median_s")
    if median is None:
        return ""
    threshold = record.get("rt_sd_threshold_s")
    n = int(record.get("n_rt_sd_flagged") or 0)
    if threshold is None:
        found = "the flag is off (<code>correct: rt_sd_ratio</code> 0)"
    elif n == 0:
        found = f"no feature varies more than {ratio:g}x that ({fmt(threshold, 2)} s): none carries the RT spread flag"
    else:
        found = (f"<b>{n}</b> feature{'s vary' if n > 1 else ' varies'} more than {ratio:g}x that "
                 f"({fmt(threshold, 2)} s) and carr{'y' if n > 1 else 'ies'} the RT spread flag "
                 "(<code>rt_sd_flag</code>; it leaves no feature out of the models and tests; flagged features are "
                 "listed below and marked in 'What differs')")
    unjudged = record.get("n_rt_sd_unassessed") or 0
    broad = int(record.get("n_rt_sd_within_width") or 0)
    if broad and threshold is not None:
        found += (f"; {broad} more feature{'s' if broad > 1 else ''} above {fmt(threshold, 2)} s "
                  f"{'are' if broad > 1 else 'is'} not flagged: measured against {'their' if broad > 1 else 'its'} "
                  f"peak width (FWHM), {'their' if broad > 1 else 'its'} apex moves no more than the study's features "
                  "usually do (a broad peak's apex is located less precisely in seconds)")
    return (f"<p>Apex retention time over the study samples: median sd <b>{fmt(median, 2)} s</b> per feature "
            f"(after alignment); {found}"
            + (f"; {unjudged} features detected in too few samples are not judged" if unjudged else "") + ". "
            "A feature measures everything at its m/z and RT: where two ions the instrument does not resolve "
            "(isomers of one formula, or ions a few ppm apart) co-elute and vary independently between samples, its "
            "value follows neither "
            "compound and its apex moves towards whichever is larger. Pooled QCs repeat one mixture, so no QC RSD "
            "can show this error. On realistic simulated batch studies with known truth (two in benchmarks/README.md, "
            "benchmarks/study_truth.py; a third of 24 samples in 3 batches with adduct ions, ms2study simulate "
            "--realistic --batches 3 --adducts) "
            f"{RT_SPREAD_MEASURED}; ions closer than about a peak width move the apex "
            "too little to be flagged. For a flagged feature that matters (a hit, a named compound), look at its "
            "extracted-ion chromatogram in a few samples of each group: two apexes or a shoulder that moves say "
            "two compounds.</p>")


# measured on benchmarks/study_truth.py seeds 11 and 23 (session 20), rt_sd_ratio 3; the third study: trial Y of
# session 39 (simulate --realistic --samples 24 --batches 3 --qc-every 5 --blanks 2 --adducts --seed 7, the 659
# [M+H]+ features measured in every run: 138 of 139 with a true error above 0.3 had such a neighbour; QC RSD flag 0,
# RT spread flag 41 of 139)
RT_SPREAD_MEASURED = (
    "88-99 % of the features whose true error after correction exceeded 0.3 had another compound's ion within 20 ppm "
    "and 8 s (32 % of the others had one, on the first two); of those features the QC RSD flag caught 0-3 % and the "
    "RT spread flag 53-56 % on the first two studies but 29 % on the third, so many go unflagged; "
    "62-64 % of the features it flagged had such a true error, and it flagged 4-5 % of the features without one")


# The QC RSD flag leaving out at least this share of the consensus features is a caution on the conclusions: a fresh
# user's batch study (3 pooled QCs, a straight line: 1 residual degree of freedom per feature) lost 76 % of its
# features, every one measured in all 8 samples among them, and with them 3 of 5 planted differences, while the
# report's findings said only "0 of 581 tested features differ".
MAJOR_EXCLUSION = 0.25


def exclusion_caution(record: dict, corrected: pl.DataFrame | None, raw: pl.DataFrame | None,
                      samples: list[str], exclude: bool, threshold: float) -> Caution | None:
    """A caution (``DOUBT``, on the differential tests and the models) when the QC RSD flag (``record``: the
    correct stage's ``correction.json``) leaves out at least ``MAJOR_EXCLUSION`` of the consensus features and
    ``exclude`` (``correct: exclude_flagged``) is on: how many, how many of the features ``raw`` (the feature
    matrix) measured in every one of ``samples`` are among them, how many features the QCs could not judge stay
    in, the RSD the flag read and its residual degrees of freedom, and what to change. None otherwise."""
    n_features, flagged = record.get("n_features"), record.get("n_qc_rsd_flagged")
    if not exclude or not n_features or not flagged or flagged < MAJOR_EXCLUSION * n_features:
        return None
    text = (f"the QC RSD flag left <b>{flagged} of {n_features} consensus features</b> ({flagged / n_features:.0%}) "
            "out of the differential tests and the models")
    cols = [s for s in samples if raw is not None and s in raw.columns]
    if corrected is not None and cols and {"consensus_id", "qc_rsd_flag"} <= set(corrected.columns):
        everywhere = raw.filter(pl.all_horizontal([pl.col(c).fill_null(0) > 0 for c in cols]))["consensus_id"]
        gone = corrected.filter(pl.col("consensus_id").is_in(everywhere.implode()) & pl.col("qc_rsd_flag")
                                .fill_null(False)).height
        text += (f", {gone} of the {everywhere.len()} features measured in every study sample among them")
    unjudged = record.get("n_qc_rsd_unassessed")
    if unjudged:
        text += f", while the {unjudged} features the QCs could not judge (too few QC values) stay in"
    basis, df = record.get("qc_rsd_basis") or "in_sample", record.get("qc_residual_df_median")
    named = {"predicted": "predicted (at the study samples' injections)", "held_out": "held-out",
             "in_sample": "in-sample"}.get(basis, esc(basis))
    text += (f". The flag read the {named} QC RSD against {threshold:g}"
             + (f"; the QC fits left a median of {float(df):g} residual degree{'s' if float(df) != 1 else ''} of "
                "freedom per feature, so each feature's RSD is itself uncertain" if df is not None else "")
             + f" (median before correction {fmt(record.get('qc_rsd_median_before'))}, in-sample after "
             f"{fmt(record.get('qc_rsd_median_after'))}, predicted {fmt(record.get('qc_rsd_median_predicted'))}). "
             "What differs and the models rest on the features left. Check the QC section's RSD chart; with few "
             "QCs consider <code>correct: qc_rsd_basis: in_sample</code> (which would flag "
             f"{record.get('n_qc_rsd_flagged_in_sample', 'NA')}), a larger <code>qc_rsd_max</code>, or "
             "<code>exclude_flagged: false</code>")
    return Caution(text, DOUBT, "most features left out by the QC RSD flag", ("differential", "models"))


# The RT spread flag on at least this share of the features it judged is a warning: on the realistic simulated
# studies it flagged 4-5 % of the features without a true error (RT_SPREAD_MEASURED); a trial's study built from two
# real injections had 33 % flagged, with no word outside the batch section.
MANY_RT_SPREAD = 0.2


def rt_spread_warning(record: dict) -> Caution | None:
    """A data-quality caution when the RT spread flag (``correction.json``) marks at least ``MANY_RT_SPREAD`` of
    the features it judged: many features then measure co-eluting ions that vary apart, or the alignment left RT
    errors. None otherwise."""
    n, unjudged, features = (record.get(k) for k in ("n_rt_sd_flagged", "n_rt_sd_unassessed", "n_features"))
    if not n or not features:
        return None
    judged = int(features) - int(unjudged or 0)
    if judged <= 0 or n < MANY_RT_SPREAD * judged:
        return None
    median = record.get("rt_sd_median_s")
    floor = (f"; the features' median spread, {fmt(median, 2)} s, is taken as at least {MIN_MEDIAN_S:g} s, so a "
             "spread of a few tenths of a second, under one MS1 scan interval of most methods, can be flagged: "
             "the apex falls on whole scans" if median is not None and float(median) < MIN_MEDIAN_S else "")
    # not beside the findings: 'What differs' names its own flagged hits (whatdiffers.rt_spread_warning), and a
    # trial's caution sat beside five hits none of which carried the flag
    return Caution(f"the apex retention time of <b>{n} of the {judged}</b> features judged ({n / judged:.0%}) varies "
                   f"over the study samples more than {fmt(record.get('rt_sd_threshold_s'), 2)} s (the RT spread "
                   f"flag; 4-5 % on realistic simulated studies{floor}): many features may hold co-eluting ions that "
                   "vary apart, or the alignment left RT errors (see the QC section's alignment residuals), or, in "
                   "short runs, many are background ions present through the run, whose broad apex wanders (46 "
                   "of 47 flags in 39 s excerpts of a TripleTOF run); the flagged features stay in the tests and "
                   "models and are marked in 'What differs'", QUALITY)


def blank_exclusion_caution(record: dict, raw: pl.DataFrame | None, blanks: list[str], samples: list[str],
                            exclude: bool) -> Caution | None:
    """A caution on the conclusions when the blank filter (``record``: correction.json, ``n_blank_flagged``) leaves
    out at least ``MAJOR_EXCLUSION`` of the consensus features and ``exclude`` is on: solvent blanks hold few
    features, so most features flagged says a run typed blank is likely a sample (a trial: a study sample typed
    blank took 257 of 270 features with it, and Main findings said only "0 of 13 tested features differ"). Names
    each blank with its feature count against the study samples' median (from ``raw``, the feature matrix). None
    otherwise."""
    n_features, flagged = record.get("n_features"), record.get("n_blank_flagged")
    if not exclude or not n_features or not flagged or flagged < MAJOR_EXCLUSION * n_features:
        return None
    counts = ""
    if raw is not None and blanks:
        def detected(run: str) -> int:
            return int((raw[run].fill_null(0) > 0).sum()) if run in raw.columns else 0
        typical = float(np.median([detected(s) for s in samples])) if samples else None
        counts = "; features detected: " + ", ".join(f"{esc(b)} {detected(b)}" for b in blanks[:10]) + (
            f" (the study samples' median: {typical:g})" if typical is not None else "")
    return Caution(f"the blank filter left <b>{flagged} of {n_features} consensus features</b> "
                   f"({flagged / n_features:.0%}) out of the differential tests and the models, as about as abundant "
                   f"in the blank runs as in the study samples{counts}. Solvent blanks hold few of a study's "
                   "features: check that every run typed 'blank' in the sample sheet is one (a study sample typed "
                   "blank makes its features look like background), then rerun", DOUBT,
                   "most features left out by the blank filter", ("differential", "models"))


def left_out_clause(summary: dict, record: dict | None) -> str:
    """The clause of a differential finding saying how many consensus features the flags kept out of its tests
    (``summary``: the differential summary, whose notes hold ``modelling.outcomes.drop_flagged``'s note;
    ``record``: correction.json with ``n_blank_flagged`` and ``n_qc_rsd_flagged``, a feature can carry both), e.g.
    "; 40 flagged features left out before testing (blank filter 31, QC RSD 12)"; "" when none was left out. Trial
    Y: the blank filter's exclusions were said only in their own section, not beside the count of features tested."""
    found = next((m for n in summary.get("notes") or []
                  if (m := re.match(rf"(\d+) of \d+ {FLAGGED_WORDS}", str(n)))), None)
    if found is None or int(found.group(1)) == 0:
        return ""
    record = record or {}
    kinds = [f"{label} {record[key]}" for key, label in (("n_blank_flagged", "blank filter"),
                                                        ("n_qc_rsd_flagged", "QC RSD"))
             if record.get(key)]
    return (f"; {found.group(1)} flagged feature{'s' if found.group(1) != '1' else ''} left out before testing"
            + (f" ({', '.join(kinds)})" if kinds else ""))
