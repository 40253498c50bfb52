"""The report's per-outcome model sections: the cross-validated outcome models (table, ROC curves, 2-D maps). What
differs per outcome (volcano plots, every tested feature, class enrichment, the features the embedding model looks
at) is ``reporting.whatdiffers``. Only the outcomes whose files are handed over (``collect.OutcomeFiles``) are
shown. May import ``ms2study.core``, ``ms2study.modelling`` and the other ``reporting`` modules.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import polars as pl

from ms2study.modelling.attribution import SET as ATTRIBUTED_SET
from ms2study.modelling.featuresets import align_rows
from ms2study.modelling.power import detectable_effect_sentence, read_detectable_effects
from ms2study.reporting import cautions, choice
from ms2study.reporting.cautions import chance_shortfall, near_maximum, permutation_note
from ms2study.reporting.charts import (
    figure_html,
    map_figure,
    roc_figure,
    roc_points,
)
from ms2study.reporting.collect import OutcomeFiles
from ms2study.reporting.html import DOUBT, Caution, covariate_names, esc, fmt, html_table, p_value_text
from ms2study.reporting.maps import map_2d
from ms2study.reporting.modeltext import POOLED_AUC_GAP, repeats, tested_score

MODELS_TEXT = (
    '<p class="note">Nested cross-validation: outer repeated (stratified) k-fold, the regularisation '
    "chosen by an inner CV on each training part; imputation and scaling fitted inside the folds; all feature "
    "sets of an outcome use the same folds. Classification metrics are computed within each test fold and "
    "averaged, R² pools the out-of-fold predictions; the value is the mean over repeats. The 95 % interval is "
    "a percentile interval from a stratified bootstrap of the samples' out-of-fold predictions (one repeat "
    "per draw); for an AUC it is widened to at least Newcombe's score interval for the class sizes (Stat Med "
    "2006, 25:559), and for balanced accuracy to at least Wilson's intervals of the class recalls combined by "
    "MOVER (Zou & Donner 2008), because the bootstrap alone collapses to [1, 1] when every test fold is "
    "perfectly separated: 8 vs 8 samples at AUC 1 read [0.76, 1]; for R² and MAE it is widened to at least the "
    "corrected resampled t interval over the repeats' test folds (Nadeau &amp; Bengio 2003), which carries the "
    "refitting the bootstrap leaves out. p is a label-permutation p-value (smallest "
    "possible value 1/(permutations + 1)) of the first repeat's score: each permutation reruns one repeat, so the "
    "score it is tested on can differ from the mean over repeats shown as the value (the table gives it beside p "
    "as 'repeat 1', and the permutation counts elsewhere in the report are of that score); 'null mean' is the "
    "metric this procedure reaches on permuted labels, "
    "i.e. its chance level. Read them together: p is the test of whether a model beats chance (it refits the "
    "whole procedure on permuted labels); the interval says how precisely the value is known, but it does not "
    "refit the models (on simulated studies of 16 and 40 samples the AUC interval held the procedure's true AUC "
    "in 90-100% of studies, benchmarks/README.md). A model is taken to beat chance where p &lt; 0.05 and its "
    "interval lies above chance (AUC 0.5, R² 0); the attribution under 'What differs' is judged by the same rule. "
    "What a model leans on is shown there for the feature-matrix, pooled-embedding and bag-of-chemistry models "
    "(each refitted on all samples and its linear score split over its inputs); the binned-spectra model is not "
    "split. The differential table's per-feature tests are the place to see which features differ; a model can "
    "separate the classes through many small differences none of which reaches q &lt; 0.05 alone. "
    "An R² below 0 means the model predicts worse than the outcome's mean: no usable signal. The best feature set "
    "is picked after seeing all of them, so Main findings reads its p adjusted for that choice ('p adjusted'): on "
    "each of the first permutations, which every set draws, the largest score any set's model reached; the adjusted "
    "p is the share of those that reach the set's own score (Westfall &amp; Young's max-statistic, 1993).</p>")

def models_section(models: Sequence[OutcomeFiles], sheet: pl.DataFrame, feature_sets: dict[str, pl.DataFrame],
                   warnings: list[str], map_method: str = "auto", coverage: tuple[int, int] | None = None) -> str:
    """Per outcome (in the order given: the report rule passes them in the order of ``models: outcomes``, as it
    passes the differential tables to ``differential_section``): classes, estimator, the metric of each feature set with
    its interval and permutation p, notes, ROC curves (binary, from the predictions) and maps of each feature set
    coloured by the outcome. An outcome that was not modelled, a feature set without values for some samples, and
    a class with few samples are warnings; a p at its floor, a verdict the permutations' resolution decides and a
    score well below chance are explained (``cautions``; ``coverage``: features with MS/MS, consensus features)."""
    if not models:
        return "<p>No outcome models: no outcomes are declared under <code>models: outcomes</code> in config.yaml.</p>"
    parts = [MODELS_TEXT]
    for files in models:
        path = Path(files.summary)
        summary = json.loads(path.read_text(encoding="utf-8"))
        outcome = summary.get("outcome", path.parent.name)
        parts.append(f"<h3>Outcome: {esc(outcome)} ({esc(summary.get('type'))})</h3>")
        if summary.get("class_counts"):
            counts = ", ".join(f"{esc(k)}: {v}" for k, v in summary["class_counts"].items())
            positive = summary.get("positive_class")
            parts.append(f"<p>Classes: {counts}" + (f"; positive class: <b>{esc(positive)}</b>" if positive else "")
                         + "</p>")
        if summary.get("paired_by"):  # a trial: only a note at the bottom said the methods above differ here
            parts.append(f'<p class="note paired"><b>Paired design</b> ({summary.get("n_subjects")} subjects, sample '
                         "sheet's subject_id): modelled within subjects, unlike the description above: each subject's "
                         "runs of one outcome value averaged into a unit and taken relative to the subject's mean "
                         "(multilevel analysis, Westerhuis et al. 2010), the folds hold out whole subjects, the labels "
                         "are permuted within subjects and the bootstrap resamples subjects. The power sweep below "
                         "is of unpaired studies.</p>")
        estimator = summary.get("estimator")
        if estimator or summary.get("covariates"):
            line = f"Estimator: <b>{esc(estimator or 'linear')}</b>"
            if summary.get("covariates"):
                line += (f"; covariates in every feature set: "
                         f"{esc(covariate_names(summary))} (scaled inside "
                         f"the folds, weight {fmt(summary.get('covariate_weight'), 1)}); the <i>covariates</i> row "
                         "is them alone, the baseline a set must beat to add anything")
            parts.append(f"<p>{line}.</p>")
        excluded = summary.get("excluded_missing_outcome") or []
        if excluded:
            parts.append(f"<p>Left out (no value for this outcome): {esc(', '.join(excluded))}</p>")
        if summary.get("status") != "done":
            warnings.append(Caution(f"outcome <b>{esc(outcome)}</b> was not modelled: {esc(summary.get('reason'))}",
                                    DOUBT, "not modelled", (f"models:{outcome}",)))
            parts.append(f"<p><b>Not modelled:</b> {esc(summary.get('reason'))}</p>")
            continue
        parts.append(_metrics_table(summary, outcome, warnings))
        cautions.class_size_warning(summary, outcome, warnings)
        for kind, note in (("negative-r2", negative_r2_note(summary)), ("permutation", permutation_note(summary)),
                           ("floor", cautions.floor_note(summary, skip=near_maximum(summary))),
                           ("below-chance", cautions.below_chance_note(summary, coverage))):
            if note:
                parts.append(f'<p class="note {kind}">{esc(note)}</p>')
        best = cautions.best_feature_set(summary)
        limited = choice.permutation_resolution(summary, best[0]) if best else None
        if limited:  # HTML: the verdict of the main findings rests on this set
            parts.append(f'<p class="note resolution">Best set, {esc(best[0])}: {limited}.</p>')
        if summary.get("type") == "binary":
            effects = read_detectable_effects()
            sentence = detectable_effect_sentence(int(summary.get("n_samples") or 0), effects,
                                                  summary.get("class_counts"))
            if sentence:
                parts.append(f'<p class="note detectable">{esc(sentence)} {esc(cautions.detection_meaning(effects))}'
                             "</p>")
        for note in summary.get("notes") or []:
            parts.append(f'<p class="note">{esc(note)}</p>')
        charts = []
        if summary.get("type") == "binary" and files.predictions is not None and Path(files.predictions).exists():
            predictions = pl.read_parquet(files.predictions)
            pooled = pooled_auc_note(predictions, summary)
            if pooled:
                parts.append(f'<p class="note pooled-auc">{esc(pooled)}</p>')
            contradicted = contradicting_samples(predictions, summary)
            if contradicted:
                parts.append(f'<p class="note contradicted">{esc(contradicted)}</p>')
                # trial AY: a case entered as control was named here only; the tests and models both bear it
                warnings.append(Caution(f"outcome <b>{esc(outcome)}</b>: {esc(contradicted)}", DOUBT,
                                        "sample placed in the other class", (f"models:{outcome}",
                                                                             f"differential:{outcome}")))
            roc = _roc_chart(predictions, summary, outcome)
            if roc:
                charts.append(roc)
        maps = outcome_maps(sheet, feature_sets, summary, map_method)
        if charts or maps:
            parts.append('<div class="charts">' + "".join(charts + maps) + "</div>")
            said = ([ROC_TEXT] if charts else []) + ([MAPS_TEXT] if maps else [])
            parts.append(f'<p class="note">{" ".join(said)}</p>')
    return "".join(parts)


ROC_TEXT = ("ROC curves use each sample's out-of-fold score averaged over the repeats (the AUC in the legend is the "
            "table's value).")
MAPS_TEXT = ("Maps: each feature set's samples in two dimensions (UMAP when umap-learn is installed, else the first "
             "two principal components; the chart title says which), coloured by the outcome: a picture, not a model.")


def negative_r2_note(summary: dict) -> str | None:
    """For a continuous outcome, one sentence naming the feature sets whose cross-validated R² is below 0: they
    predict worse than the outcome's mean, i.e. found no usable signal. None when there is none (or the outcome is
    not continuous)."""
    if summary.get("type") != "continuous":
        return None
    below = [(name, float(entry["value"])) for name, entry in (summary.get("feature_sets") or {}).items()
             if entry.get("metric") == "r2" and entry.get("value") is not None and entry["value"] < 0]
    if not below:
        return None
    listed = "; ".join(f"{name}: {value:.3f}" for name, value in below)
    which = "this model predicts" if len(below) == 1 else "these models predict"
    return (f"Cross-validated R² below 0 ({listed}): {which} the outcome worse than its mean would (the training "
            "samples' mean given to every sample), so there is no usable signal in "
            f"{'that feature set' if len(below) == 1 else 'those feature sets'}.")


def modelled_sets(models: Sequence[OutcomeFiles], feature_set: str) -> list[tuple[str, dict, dict]]:
    """(outcome, summary, the set's entry) of every outcome whose models stage modelled ``feature_set``."""
    found = []
    for files in models:
        path = Path(files.summary)
        if not path.exists():
            continue
        summary = json.loads(path.read_text(encoding="utf-8"))
        entry = (summary.get("feature_sets") or {}).get(feature_set)
        if summary.get("status") == "done" and entry:
            found.append((summary.get("outcome", path.parent.name), summary, entry))
    return found


def attribution_caveats(models: Sequence[OutcomeFiles], feature_set: str = ATTRIBUTED_SET,
                        unpaired_refit: bool = True) -> dict[str, str]:
    """Per outcome (by name) whose model of an explained feature set (``modelling.attribution.SET``, the embedding,
    unless given) is not shown to beat chance, passes only before the adjustment for the choice among the feature
    sets (``choice.choice_adjustment``, as the verdict judges it), or was modelled within subjects (a paired design:
    the attribution's refit is not; ``unpaired_refit`` False for an explanation refitted on the paired model's own
    rows, ``modelling.matrix_attribution``), the caveat the explanation is shown with: which model and why."""
    caveats = {}
    for outcome, summary, entry in modelled_sets(models, feature_set):
        why = chance_shortfall(entry)
        adjusted = choice.choice_adjustment(summary, entry)
        if why:
            caveats[outcome] = f"the {feature_set} model of {outcome} is not shown to beat chance: {why}"
        elif adjusted is not None and adjusted["p"] >= cautions.P_SMALL:  # as Main findings judges it (trial AO)
            caveats[outcome] = (f"the {feature_set} model of {outcome} beats chance on its own test but not once the "
                                f"choice among {adjusted['sets']} feature sets is adjusted for (adjusted p "
                                f"{adjusted['p']:.2g}): suggestive only")
        if summary.get("paired_by") and unpaired_refit:  # a trial: the attribution stage's note never reached here
            caveats[outcome] = "; ".join([*([caveats[outcome]] if outcome in caveats else []), (
                f"the models of {outcome} compare each subject with itself (a paired design), while this attribution "
                f"refits the {feature_set} model on the runs as independent samples, so it does not explain that "
                "model")])
    return caveats


def _metrics_table(summary: dict, outcome: str, warnings: list[str]) -> str:
    rows = []
    n_perm = (summary.get("params") or {}).get("n_permutations")
    for name, entry in summary["feature_sets"].items():
        secondary = "; ".join(f"{esc(m)} {fmt(v.get('value'))} [{fmt(v.get('ci_low'))}, {fmt(v.get('ci_high'))}]"
                              for m, v in (entry.get("secondary") or {}).items())
        rows.append([name, entry.get("metric"), ("html", f"<b>{fmt(entry.get('value'))}</b>"),
                     ("html", f"[{fmt(entry.get('ci_low'))}, {fmt(entry.get('ci_high'))}]"),
                     ("html", p_value_text(entry.get("permutation_p"))
                      + (" (floor)" if cautions.at_floor(entry, n_perm) else "") + _tested_cell(entry)),
                     ("html", p_value_text(entry.get("permutation_p_adjusted"))
                      if entry.get("permutation_p_adjusted") is not None else "NA"),
                     ("html", fmt(entry.get("permutation_null_mean"))),
                     entry.get("n_samples"), (len(summary.get("covariates") or []) if name == "covariates"
                                              and not entry.get("n_features") else entry.get("n_features")),
                     f"{entry.get('outer_splits')} × {entry.get('outer_repeats')}", ("html", secondary)])
        if entry.get("samples_without_values"):
            warnings.append(f"outcome <b>{esc(outcome)}</b>, feature set <b>{esc(name)}</b>: no values for "
                            f"{esc(', '.join(entry['samples_without_values']))} (imputed inside the folds)")
    return html_table(["feature set", "metric", "value", "95 % interval", "permutation p", "p adjusted", "null mean",
                       "samples", "features", "folds × repeats", "secondary"], rows, numeric={2, 3, 4, 5, 6, 7, 8})


def _tested_cell(entry: dict) -> str:
    """Beside a p in the table, the first repeat's score it tests where the value is a mean over repeats and the
    summary records that score ("(repeat 1: 0.700)"); empty otherwise."""
    score = tested_score(entry)
    if entry.get("permutation_p") is None or repeats(entry) == 1 or score is None:
        return ""
    return f" (repeat 1: {fmt(score)})"


# A sample whose mean out-of-fold score for its own class is at most this is named as one to check in the sample
# sheet (trial AA: a case entered as a control scored 0.91 as a case, unsaid) when the best set, beating chance also
# once the choice among the sets is adjusted for, places it so, or when two or more feature sets do (trial AB: a
# swapped pair sank the best set below chance, and every set still placed both samples in the other class). Trial BF:
# a best set that passed only before that adjustment ("suggestive only") named a correctly labelled sample;
# benchmarks/swapped_label.py measures how often each rule names a correct label and finds a swapped one.
CONTRADICTED_SCORE = 0.1


def pooled_auc_note(predictions: pl.DataFrame, summary: dict) -> str | None:
    """A note when the best binary set's AUC over all out-of-fold predictions pooled (per repeat; scikit-learn's
    roc_auc_score) lies ``POOLED_AUC_GAP`` or more below its reported fold-wise mean: folds of a few samples score
    1.0 each while a sample is ranked among the other class (trial AY: "AUC 1.00" with a mislabelled case scored
    below two controls, pooled 0.94-0.97). None otherwise."""
    from sklearn.metrics import roc_auc_score

    best = cautions.best_feature_set(summary)
    if best is None or best[1].get("metric") != "roc_auc" or best[1].get("value") is None or summary.get("paired_by"):
        return None  # a paired model's scores compare a subject's runs, not samples across subjects
    name, entry = best
    rows = predictions.filter(pl.col("feature_set") == name)
    by_repeat = rows.partition_by("repeat") if "repeat" in rows.columns else [rows]
    pooled = [roc_auc_score(r["y_true"].to_numpy(), r["y_score"].to_numpy()) for r in by_repeat
              if r["y_true"].n_unique() == 2]
    if not pooled or float(entry["value"]) - max(pooled) < POOLED_AUC_GAP:
        return None
    span = f"{min(pooled):.2f}" + (f" to {max(pooled):.2f}" if max(pooled) - min(pooled) >= 0.005 else "")
    return (f"The AUC of {name} is the mean over the cross-validation's folds ({float(entry['value']):.2f}); over "
            f"all out-of-fold predictions pooled it is {span} (per repeat). Folds of a few samples each score "
            "perfectly while some sample ranks among the other class: the pooled value says how well the samples "
            "are ranked as a whole.")


def own_class_scores(predictions: pl.DataFrame, feature_set: str) -> tuple[list[str], list[float], np.ndarray]:
    """(sample ids, y_true, mean out-of-fold score over repeats for the class the sheet gives each sample) of one
    feature set of the models stage's ``predictions``: what ``contradicting_samples`` compares with
    ``CONTRADICTED_SCORE``."""
    mean = predictions.filter(pl.col("feature_set") == feature_set).group_by("sample_id", maintain_order=True).agg(
        pl.col("y_true").first(), pl.col("y_score").mean())
    own = np.where(mean["y_true"].to_numpy() == 1, mean["y_score"].to_numpy(), 1 - mean["y_score"].to_numpy())
    return mean["sample_id"].to_list(), mean["y_true"].to_list(), own


def contradicting_samples(predictions: pl.DataFrame, summary: dict, choice_adjusted: bool = True) -> str | None:
    """A note naming the samples of a binary outcome that the feature sets place confidently in the other class: mean
    out-of-fold score (over repeats) for the sample's own class at most ``CONTRADICTED_SCORE``, by the best set
    when it beats chance (``cautions.best_feature_set``, ``cautions.chance_shortfall``; with ``choice_adjusted``
    also once the choice among the sets is adjusted for, ``choice.choice_adjustment``, as Main findings judges it;
    False: the rule before trial BF, kept for ``benchmarks/swapped_label.py``) or by two or more of the measured
    sets (the covariates-alone baseline not counted, and a sample it places in the other class as well not named: the
    covariates put it there). ``predictions``: the models stage's predictions (feature_set,
    sample_id, y_true 1 for ``summary['classes'][1]``, y_score the score of that class). None when there is none or
    the outcome is not binary."""
    classes = summary.get("classes") or []
    sets = [n for n in (summary.get("feature_sets") or {}) if n != "covariates"]
    if len(classes) != 2 or not sets or predictions.is_empty():
        return None
    best = cautions.best_feature_set(summary)
    trusted = best[0] if best and best[0] != "covariates" and cautions.chance_shortfall(best[1]) is None else None
    adjusted = choice.choice_adjustment(summary, best[1]) if trusted and choice_adjusted else None
    trusted = None if adjusted is not None and adjusted["p"] >= cautions.P_SMALL else trusted
    placed: dict[str, list[tuple[str, float]]] = {}
    label: dict[str, str] = {}
    by_covariates: set[str] = set()  # samples the covariates-alone baseline places in the other class as well
    for name in sets + (["covariates"] if "covariates" in (summary.get("feature_sets") or {}) else []):
        for sample, y, score in zip(*own_class_scores(predictions, name)):
            if score <= CONTRADICTED_SCORE and name == "covariates":
                by_covariates.add(sample)
            elif score <= CONTRADICTED_SCORE:
                placed.setdefault(sample, []).append((name, 1 - score))
                label[sample] = classes[int(y)]
    # trial BG: with age and bmi as covariates every set placed a correctly labelled control among the cases, as the
    # covariates alone did: the covariates' doing, not a sign of a swapped label
    named = {s: v for s, v in placed.items()
             if (len(v) >= 2 or any(n == trusted for n, _ in v)) and s not in by_covariates}
    if not named:
        return None
    listed = "; ".join(f"{s} (entered as {label[s]}; " + ", ".join(f"{n} {score:.2f}" for n, score in v)
                       + " for the other class)" for s, v in named.items())
    return (f"Out of fold, the feature sets place {len(named)} sample(s) confidently in the other class: {listed}. A "
            "swapped label or vial looks like this, and lowers the models' scores: check their rows of the sample "
            "sheet before trusting either the label or the model.")


def _roc_chart(predictions: pl.DataFrame, summary: dict, outcome: str) -> str | None:
    """ROC curves (a chart's HTML) of a binary outcome's feature sets from each sample's out-of-fold score averaged
    over repeats."""
    curves = {}
    for name, entry in summary["feature_sets"].items():
        mean = predictions.filter(pl.col("feature_set") == name).group_by("sample_id").agg(
            pl.col("y_true").first(), pl.col("y_score").mean())
        if mean.height and mean["y_true"].n_unique() == 2:
            fpr, tpr = roc_points(mean["y_true"].to_numpy(), mean["y_score"].to_numpy())
            curves[name] = (fpr, tpr, entry.get("value"))
    return figure_html(roc_figure(curves, f"ROC: {outcome}")) if curves else None


def outcome_maps(sheet: pl.DataFrame, feature_sets: dict[str, pl.DataFrame], summary: dict,
                 method: str = "auto") -> list[str]:
    """A 2-D map (``maps.map_2d``; the chart's HTML) of each of the summary's feature sets present in
    ``feature_sets``, samples coloured by the outcome column of ``sheet``; samples without any value are left out,
    and a set with fewer than 3 samples or no column gets no map. A sample of a class the models left out (a class of
    one, the summary's ``excluded_small_class``) keeps its place on the map, marked "(left out)" in its colour's
    label (a trial saw it coloured like a modelled class)."""
    column = summary.get("outcome")
    if column not in sheet.columns:
        return []
    ids, values = sheet["sample_id"].to_list(), sheet[column].to_list()
    left_out = {s for members in (summary.get("excluded_small_class") or {}).values() for s in members}
    values = [f"{v} (left out)" if s in left_out and v is not None else v for s, v in zip(ids, values)]
    charts = []
    for name in [n for n in summary.get("feature_sets", {}) if n in feature_sets]:
        X, columns, empty = align_rows(feature_sets[name], ids, name)
        keep = [i for i, s in enumerate(ids) if s not in set(empty)]
        if len(keep) < 3 or not columns:
            continue
        imputation = summary["feature_sets"][name].get("imputation", "mean")
        coords, used, axes = map_2d(X[keep], imputation, method)
        charts.append(figure_html(map_figure(coords, [ids[i] for i in keep], [values[i] for i in keep],
                                             summary.get("type"), f"{used} of {name}, coloured by {column}", axes,
                                             column)))
    return charts
