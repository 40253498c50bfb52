"""The report's "Methods (draft for a paper)": plain prose a principal investigator can paste into a paper's Methods,
written from what this study's run used: the configuration handed to the report (``report: config_used``, the merged
config of config/config.yaml and the study's; a section or key it lacks is the stage's schema default, as the stages
read it) and the records the stages wrote (``correction.json``, the differential tables' summaries, the models'
``summary.json``, the library index's ``manifest.json`` and calibration JSON, the QC table, the embeddings' model ids).

A stage is described only where its record (or, for feature detection and linking, its tables) is among the report's
inputs; where a detail cannot be told from them the text says less. Every sentence follows the code it describes
(the stage and module named beside each function below); sources are cited where those modules' docstrings name
them, with a reference list at the end. May import ``ms2study.core``, ``correction``, ``identification``,
``modelling`` and the other ``reporting`` modules.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl

import ms2study
from ms2study.core.params import schema_defaults
from ms2study.core.yamlio import read_yaml
from ms2study.correction.mzoffset import RECALIBRATE_MIN_PPM
from ms2study.identification.confidence import LOW_COSINE
from ms2study.identification.recalibration import removal_threshold_ppm
from ms2study.modelling.attribution import LINEAR_FAMILIES
from ms2study.modelling.differential import SIGNIFICANCE, read_summary
from ms2study.modelling.qc import FORCED_CENTROIDED, PROFILE_CENTROIDED, reference_run
from ms2study.reporting.collect import ReportInputs
from ms2study.reporting.html import covariate_names, esc
from ms2study.reporting.references import LIBRARIES, REFERENCES
from ms2study.reporting.sections import versions

log = logging.getLogger(__name__)
CITATION_FILE = Path(ms2study.__file__).resolve().parents[2] / "CITATION.cff"


class _Cites:
    """Citations in order of first use: ``cite("dunn")`` gives the in-text form and remembers the reference."""

    def __init__(self) -> None:
        self.used: list[str] = []

    def __call__(self, *keys: str) -> str:
        self.used += [k for k in keys if k not in self.used]
        return "; ".join(REFERENCES[k][0] for k in keys)


def _section(config: dict, name: str) -> dict[str, Any]:
    """Config section ``name`` over its schema defaults (a stage reads a key the config lacks as its default)."""
    given = config.get(name)
    return {**schema_defaults(name), **(given if isinstance(given, dict) else {})}


def _n(value: Any) -> str:
    """A number as prose writes it (1,000; 0.02; 10), anything else escaped."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return esc(value)
    return f"{value:,}" if isinstance(value, int) else f"{float(value):,g}"


def _pct(value: Any) -> str:
    return f"{float(value) * 100:g} %"


def _list(items: list[str]) -> str:  # "a", "a and b", "a, b and c"
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1] if items else ""


def _json(path: Path | None) -> dict | None:
    """The JSON object at ``path``, or None when no path is given or it cannot be read."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8")) if path is not None else None
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _centroided_runs(qc: Path | None) -> int | None:
    """How many runs had their MS1 scans centroided by the detect stage (``qc.parquet``'s ``ms1_centroiding``,
    ``modelling.qc``); None when the table or the column is not there."""
    try:
        table = pl.read_parquet(qc, columns=["ms1_centroiding"]) if qc is not None and Path(qc).exists() else None
    except (OSError, pl.exceptions.PolarsError):
        return None
    return None if table is None else int(table["ms1_centroiding"].is_in([PROFILE_CENTROIDED, FORCED_CENTROIDED]).sum())


def _detection(config: dict, qc: Path | None, pyopenms: str | None, cite: _Cites) -> str:
    """Feature detection as ``stages.detect.detect_run`` / ``find_features`` run it (``msio.centroid`` for profile
    scans); the intensity is the monoisotopic trace's area, as ``correction.gapfill`` documents FeatureFindingMetabo's
    (summed over the traces with ``report_summed_ints``)."""
    d = _section(config, "detect")
    snr = f", signal-to-noise ≥ {_n(d['peak_picker_snr'])}" if float(d["peak_picker_snr"]) > 0 else ""
    n = _centroided_runs(qc)
    if d["centroid"] == "never" or n == 0:
        centroid = ""
    else:
        which = (f"the MS1 scans of {n} run(s)" if n is not None else
                 "profile-mode MS1 scans" if d["centroid"] == "auto" else "all MS1 scans")
        centroid = f"after centroiding {which} (PeakPickerHiRes{snr}), "
    width = {"fixed": f", widths {_n(d['min_fwhm_s'])}-{_n(d['max_fwhm_s'])} s kept",
             "auto": ", width filter 'auto'"}.get(str(d["width_filtering"]), ", no width filter")
    longest = f", at most {_n(d['max_trace_length_s'])} s" if float(d["max_trace_length_s"]) >= 0 else ""
    single = ", single traces removed" if d["remove_single_traces"] else ""
    return (f"LC-MS features were detected in each run with pyOpenMS{' ' + esc(pyopenms) if pyopenms else ''} "
            f"(OpenMS; {cite('openms')}): {centroid}MassTraceDetection (m/z tolerance {_n(d['mass_error_ppm'])} ppm, "
            f"intensity threshold {_n(d['noise_threshold_int'])}, traces ≥ {_n(d['min_trace_length_s'])} s{longest}), "
            f"ElutionPeakDetection (expected FWHM {_n(d['chrom_fwhm_s'])} s{width}; signal-to-noise ≥ "
            f"{_n(d['chrom_peak_snr'])} in both) and FeatureFindingMetabo (charge {_n(d['charge_lower_bound'])}-"
            f"{_n(d['charge_upper_bound'])}, isotope model '{esc(d['isotope_filtering_model'])}'{single}); a "
            f"feature's intensity is the {'smoothed ' if d['use_smoothed_intensities'] else ''}area of "
            f"{'its mass traces, summed' if d['report_summed_ints'] else 'its monoisotopic mass trace'}.")


def _linking(config: dict, qc: Path | None = None) -> str:
    """Alignment and linking as ``stages.link.link_features_full`` runs them (``correction.mzoffset`` offsets)."""
    k = _section(config, "link")
    reference = config.get("reference_sample") or reference_run(qc)  # trial AG: named, not "by default the first"
    onto = f"reference run {esc(reference)}" if reference else "one reference run (the sheet's first study sample)"
    moved = (f"; runs ≥ {RECALIBRATE_MIN_PPM:g} ppm off the study's median m/z recalibrated first"
             if k["recalibrate_mz"] else "")
    aligned = (f"Retention times were aligned onto {onto} by a line fitted to MapAlignmentAlgorithmPoseClustering "
               f"pairs (within {_n(k['align_pair_rt_max_s'])} s and {_n(k['align_pair_mz_max_ppm'])} ppm{moved}), and "
               if k["align"] else f"Without retention-time alignment{' (' + moved[2:] + ')' if moved else ''}, ")
    return (aligned + f"features were linked with FeatureGroupingAlgorithmKD ({_n(k['mz_tol_ppm'])} ppm, "
            f"{_n(k['rt_tol_s'])} s{', own warping' if k['warp'] else ''})"
            + ("; pieces of one broad peak split by apex position were joined." if k["merge_split"] else "."))


def _correction(config: dict, record: dict, cite: _Cites) -> str:
    """Gap filling, blank flag, internal standards, drift and batch correction and the QC RSD flag as
    ``correction.matrix.correct_matrix`` applied them: the method and counts from its record (correction.json), the
    thresholds from the config."""
    c = _section(config, "correct")
    n = int(record.get("n_samples") or 0)
    runs = [f"{n} study sample{'' if n == 1 else 's'}"]
    runs += [f"{int(record[k])} {what}" for k, what in (("n_qc", "pooled QCs"), ("n_blank", "blanks")) if record.get(k)]
    batches = len(record.get("batches") or [])
    out = [f"The study had {_list(runs)}" + (f" ({batches} batches)." if batches > 1 else ".")]
    if c["gap_fill"]:
        filled = int(record.get("n_filled") or 0)
        out.append(f"Features a run missed were re-quantified from its MS1 scans (apex height within "
                   f"{_n(c['gap_fill_mz_ppm'])} ppm and {_n(c['gap_fill_rt_s'])} s of the expected apex × the "
                   "feature's median area/height"
                   + (f"; {_n(filled)} value{'' if filled == 1 else 's'})." if c["use_filled"] else
                      "; not used: use_filled false)."))
    if record.get("n_blank"):
        out.append(f"Features whose sample mean was below {_n(c['blank_ratio'])}× their blank "
                   f"{'mean' if c['blank_statistic'] == 'mean' else 'maximum'} were flagged "
                   f"({_n(int(record.get('n_blank_flagged') or 0))}).")
    if record.get("internal_standards"):
        out.append(f"Runs were normalised to the geometric mean of {len(record['internal_standards'])} internal "
                   "standard(s).")
    method = record.get("drift_method")
    if method in ("qc_spline", "qc_linear"):
        fit = ("a cubic smoothing spline (leave-one-out smoothing; a line for 3-4 QCs, their median for 1-2)"
               if method == "qc_spline" else "a straight line (their median for 1-2 QCs)")
        out.append(f"Drift and batch effects were removed by QC-RLSC ({cite('dunn')}): per feature and batch, {fit} "
                   "of log intensity on injection order through the QCs, each run divided by it "
                   "relative to the all-QC median"
                   + (f", then by its probabilistic quotient ({cite('dieterle')})."
                      if record.get("normalised_after_drift") == "pqn" else "."))
    elif method == "median":
        out.append(("As the sheet allowed no QC-based drift correction, each" if c["drift_method"] == "auto" else
                    "Each") + f" sample{' and QC' if record.get('n_qc') else ''} run was divided by its probabilistic "
                   f"quotient ({cite('dieterle')}); drift was not corrected.")
    elif method == "none":
        out.append("No drift, batch or run-level correction was applied.")
    if record.get("n_qc"):
        moderated = f"empirical-Bayes moderation ({cite('smyth')})" if record.get("qc_rsd_basis") == "predicted" else ""
        basis = ({"predicted": f"predicted at the samples' injections with {moderated}",
                  "held_out": "of QCs corrected without their own fit"}.get(str(record.get("qc_rsd_basis")),
                                                                             "after correction")
                 if method in ("qc_spline", "qc_linear") else "after normalisation" if method == "median" else
                 "as measured")
        out.append(f"Features whose QC RSD, {basis}, exceeded {_pct(c['qc_rsd_max'])} were flagged "
                   f"({_n(int(record.get('n_qc_rsd_flagged') or 0))}).")
    if batches > 1 and isinstance(record.get("batch_only"), dict):
        expected = record.get("batch_only_expected")
        out.append("Features detected (before gap filling) in the runs of one batch only were marked, not removed, "
                   "where a hypergeometric test put the chance of that pattern below 1 % "
                   f"({_n(sum(int(v) for v in record['batch_only'].values()))}"
                   + (f"; {float(expected):.1f} expected by chance" if isinstance(expected, (int, float)) else "")
                   + ").")
    flags = bool(record.get("n_blank") or record.get("n_qc"))
    out.append(("Flagged features were left out of tests and models, which" if flags and c["exclude_flagged"] else
                "Tests and models kept flagged features and" if flags else "Tests and models")
               + (" used the gap-filled intensities, otherwise as detected." if c["use_corrected"] and method == "none"
                  else f" used the {'corrected' if c['use_corrected'] else 'uncorrected'} intensities."))
    return " ".join(out)


def _spectra(config: dict, encoder: dict | None) -> str:
    """MS/MS mapping and cleaning (``stages.spectra``, ``core.cleaning``) and the encoder that embedded the spectra
    (model ids and training from the embeddings tables, ``collect.encoder_info``; the shipped model's card when
    ``embed: model`` is default)."""
    s, cl, e = _section(config, "spectra"), _section(config, "cleaning"), _section(config, "embed")
    cleaning = ([f"peaks ≥ precursor m/z − {_n(cl['precursor_margin_da'])} Da"] if cl["remove_precursor"] else []) + (
        [f"peaks below {_pct(cl['min_relative_intensity'])} of the base peak"]
        if float(cl["min_relative_intensity"]) > 0 else [])
    kept = f", the {_n(cl['max_peaks'])} most intense kept" if cl["max_peaks"] else ""
    scans = "MS/MS" if s["ms_level"] == 2 else f"MS{_n(s['ms_level'])}"
    text = (f"{scans} scans were assigned to the feature whose m/z ({_n(s['mz_tolerance_ppm'])} ppm) and "
            f"retention-time hull (± {_n(s['rt_tolerance_s'])} s) held their precursor"
            + (f", cleaned as the library ({_list(cleaning)} removed{kept})" if cleaning else
               f", cleaned as the library ({kept[2:]})" if kept else ""))
    ids = ", ".join(esc(m) for m in (encoder or {}).get("model_ids") or [])
    trained = (encoder or {}).get("trained")
    if not ids:
        return text + "."
    if trained is False:
        return text + (f" and embedded by an untrained placeholder encoder ({ids}: random weights, no learned "
                       "chemistry).")
    where = (" (resources/models/default; see its MODEL_CARD.md)" if e["model"] == "default" else
             f" ({esc(e['model'])})" if e["model"] else "")
    return text + (f" and embedded ({_n(e['max_peaks'])} most intense peaks and the precursor m/z) by the "
                   f"{'trained ' if trained else ''}ms2study spectrum encoder {ids}{where}.")


def _library(indexes: list[Path], config: dict) -> str:
    """The libraries searched: the index manifests' source files and spectra, else the configured file names."""
    parts = []
    for folder in indexes:
        manifest = _json(Path(folder) / "manifest.json") or {}
        names = [Path(str(s.get("path"))).name for s in manifest.get("sources") or [] if isinstance(s, dict)
                 and s.get("path")]
        spectra = f" ({_n(int(manifest['n_spectra']))} spectra)" if manifest.get("n_spectra") else ""
        parts.append(esc(", ".join(names) or Path(folder).name) + spectra)
    if not parts:
        library = config.get("library")
        parts = [esc(Path(str(p)).name) for p in (library if isinstance(library, list) else [library]) if p]
    return _list(parts) or "the configured library"


def _identification(config: dict, inputs: ReportInputs, cite: _Cites, trained: bool | None) -> str:
    """Library search and confidence (``identification.engine``, ``acceptance``, ``confidence``, ``calibration``,
    ``recalibration``) and the consensus features' identifications (``stages.identify``) as the annotate section
    configures them; the combined score's kind, the calibration's size and the level-2 rule from the library
    calibration JSON when one is readable (without it, what depends on it is said as the alternatives)."""
    a = _section(config, "annotate")
    unranked = {True: "", False: " (not combined: untrained encoder)"}.get(trained,
                                                                          " (combined for a trained encoder only)")
    calibration = next((c for c in (_json(p) for p in inputs.calibrations) if c), None)
    identity = a["mode"] == "identity"
    window = (f"{_n(a['precursor_tolerance_da'])} Da" if a["precursor_tolerance_da"] is not None
              else f"{_n(a['precursor_tolerance_ppm'])} ppm")
    offset = removal_threshold_ppm(a["precursor_tolerance_ppm"], a["precursor_tolerance_da"])
    plan = ((calibration or {}).get("scoring") or {}).get("plan")
    weights = ", ".join(f"{esc(k).replace('_', ' ')} {_n(v)}" for k, v in (a["weights"] or {}).items())
    rank = ({"learned": "a logistic combination of the scores learned for the encoder",
             "fixed+embedding": f"their weighted mean ({weights})",
             "fixed": f"the weighted mean of the spectral scores ({weights})"}.get(plan, "a combined score")
            if a["rank_by"] == "combined" else f"the {esc(a['rank_by']).replace('_', ' ')} score")
    text = (f"Spectra were searched against {_library(list(inputs.library_indexes), config)} "
            + (f"within {window} of the precursor m/z (same ion mode" if identity else
               "for the spectra nearest in embedding space (no precursor filter")
            + (f"; run precursor offsets ≥ {offset:g} ppm removed first"
               if a["recalibrate_precursors"] and identity else "")
            + f"), scored by cosine, modified cosine ({_n(a['fragment_tolerance_da'])} Da), entropy similarity "
            f"({cite('entropy')}) and embedding cosine{unranked}, and ranked by {rank}"
            + (f"; a hit needed ≥ {_n(a['min_matched_peaks'])} shared fragment peak(s)." if a["min_matched_peaks"]
               else "."))
    confidence = a["confidence"] if identity else "none"
    fdr = _n(a["fdr"])
    if confidence == "none":
        return text + " No q-values were computed: the error rate of the matches is unknown."
    if confidence == "decoys":
        text += (" q-values came from target-decoy competition with random-fragment decoys (not calibrated), "
                 f"accepting q ≤ {fdr}.")
    else:
        queries = ((calibration or {}).get("stats") or {}).get("n_queries")
        text += (" p-values come from a null of wrong candidates measured on the library ("
                 + (f"{_n(int(queries))} " if queries else "") + "library spectra searched with their own structure "
                 f"removed; tail per {cite('knijnenburg')}); q-values are Benjamini-Hochberg ({cite('bh')}) over each "
                 f"run's rank-1 hits (one ion counted once) times Storey's π0 ({cite('storey')}), accepting q ≤ {fdr}.")
    if inputs.identifications is not None and Path(inputs.identifications).exists():
        text += (f" Consensus features combined their spectra by Simes' test ({cite('simes')}), with q-values "
                 "computed alike; in-source fragments following their parent were withdrawn.")
    model = f"a structure model learned on the library put the structure itself at q ≤ {fdr}"
    margin = "the structure passed the FDR with no other structure of its formula within the isomer margin"
    rule = (margin if confidence == "decoys" or (calibration is not None and not calibration.get("structure_model"))
            else model if calibration is not None else f"{model} (for a library too small for it: {margin})")
    return text + (f" Accepted names are level 2 (probable structure; {cite('schymanski')}) where {rule} and "
                   f"cosine ≥ {LOW_COSINE:g}, else level 3.")


def _differential(inputs: ReportInputs, cite: _Cites) -> str:
    """The per-feature tests and class enrichment of every outcome (``stages.differential``,
    ``modelling.differential``, ``modelling.univariate``, ``modelling.enrichment``) from the summaries stored in the
    differential tables; outcomes with no feature tested are left out."""
    summaries = []
    for files in inputs.differential:
        try:
            summary = read_summary(files.table) if Path(files.table).exists() else {}
        except (OSError, ValueError, pl.exceptions.PolarsError):
            summary = {}
        if summary.get("n_tested") and summary.get("type") in ("binary", "continuous", "multiclass"):
            summaries.append(summary)
    if not summaries:
        return ""
    first = summaries[0]
    fill = "half the feature's minimum" if first.get("imputation") == "half_minimum" else "its mean log2 intensity"
    continuous = {s["type"] == "continuous" for s in summaries}
    share = _pct(first.get("min_detected_fraction", 0.5))
    where = (f"{share} of the samples" if continuous == {True} else f"{share} of one class's samples "
             f"({cite('bijlsma')}{'; of all samples for a continuous outcome' if True in continuous else ''})")
    text = (f"Features detected{' (gap fills not counting)' if first.get('testability') == 'detected values' else ''}"
            f" in ≥ {where} were tested on log2 intensities, missing values set to {fill}, with Benjamini-Hochberg "
            f"q-values per outcome ({cite('bh')}; q &lt; {SIGNIFICANCE:g} reported).")
    moderated = [s for s in summaries if str(s.get("test") or "").startswith("moderated") and s.get("n_moderated")]
    permutations = max(int(s.get("n_permutations") or s.get("imputed_permutations") or 0) for s in summaries)
    # the ordinary test of the features not moderated: Welch, least squares (a slope, a class beside covariates), F
    ordinary = " or ".join(sorted({"the F-test" if s["type"] == "multiclass" else "Welch's t-test" if s["type"]
                                   == "binary" and not covariate_names(s) else "least squares" for s in summaries}))
    freedman = (f"; with covariates their model's residuals permuted, {cite('freedman')}"
                if any(covariate_names(s) for s in summaries) else "")
    if moderated:
        text += (f" Features measured in every sample got moderated statistics (limma-trend; {cite('smyth', 'law')}), "
                 f"the others {ordinary}, "
                 + (f"p-values from {_n(permutations)} permutations pooled over features ({cite('tusher')}{freedman})."
                    if permutations else "p-values from the t or F distribution."))
    else:
        text += (f" Features were tested by {ordinary}, p-values from the t or F distribution"
                 + (f", those of features with an imputed value from {_n(permutations)} permutations." if any(
                     s.get("n_imputed_permuted") for s in summaries) else "."))
    names = {"binary": "t-test", "continuous": "regression slope", "multiclass": "F-test"}
    tested = []
    for summary in summaries:
        counts = summary.get("class_counts") or {}
        groups = (" vs ".join(f"{n} {esc(c)}" for c, n in counts.items()) if counts else
                  f"n = {summary.get('n_samples')}")
        adjusted = covariate_names(summary)
        name = ("class coefficient" if summary["type"] == "binary" and adjusted else names[summary["type"]])
        plain = ", ordinary tests only: too few features for a prior" if moderated and summary not in moderated else ""
        tested.append(f"{esc(summary.get('outcome'))} ({groups}; {name}{plain}"
                      + (f", adjusted for {esc(adjusted)})" if adjusted else ")"))
    text += f" Outcome{'s' if len(tested) > 1 else ''}: {_list(tested)}."
    classes = [s for s in summaries if s.get("n_classes_tested")]
    if classes:
        permutations = int(classes[0].get("class_permutations") or 0)
        text += (f" Chemical classes were tested as sets as in ChemRICH ({cite('chemrich')}; Fisher's combination, "
                 + (f"{_n(permutations)} label permutations)." if permutations else "chi-square p-values)."))
    return text


ESTIMATORS = {"elastic_net": ("elastic-net logistic regression", "elastic-net regression"),
              "linear": ("L2-penalised logistic regression", "ridge regression"),
              "random_forest": ("random forests",) * 2, "svm_linear": ("a linear support vector machine",) * 2}
SETS = {"embedding": "pooled spectrum embeddings", "chemical_space": "chemical-space prototype abundances",
        "features": "consensus-feature intensities", "binned_spectra": "binned MS/MS peaks",
        "covariates": "the covariates alone"}
METRICS = {"roc_auc": "ROC AUC", "macro_roc_auc": "macro ROC AUC", "r2": "R²"}


def _models(inputs: ReportInputs, cite: _Cites) -> str:
    """The outcome models as ``modelling.evaluate``, ``crossval`` and ``metrics`` ran them, from each outcome's
    summary.json (its ``params`` record the settings used; the folds each set used, the permutations drawn)."""
    done = [s for s in (_json(f.summary) for f in inputs.models) if s and s.get("status") == "done"
            and isinstance(s.get("feature_sets"), dict) and s["feature_sets"]]
    if not done:
        return ""
    p = done[0].get("params") or {}
    described = [f"{esc(s.get('outcome'))} ({esc(s.get('type'))}, "
                 + (f"{s.get('n_samples')} runs of {s.get('n_subjects')} subjects, paired" if s.get("paired_by") else
                    f"n = {s.get('n_samples')}")
                 + f", {METRICS.get(str(s.get('primary_metric')), esc(s.get('primary_metric')))})" for s in done]
    folds = sorted({int(e["outer_splits"]) for s in done for e in s["feature_sets"].values() if e.get("outer_splits")})
    repeats = int(p.get("outer_repeats") or 1)
    kinds = {s.get("type") == "continuous" for s in done}
    family = ESTIMATORS.get(str(done[0].get("estimator")), (esc(done[0].get("estimator")),) * 2)
    sets = list(dict.fromkeys(k for s in done for k in s["feature_sets"]))
    permutations = sorted({int(s.get("n_permutations") or 0) for s in done} - {0})
    stop = int(p.get("permutation_stop_after") or 0)
    both = len(kinds) == 2
    intervals = ([f"Newcombe's score interval ({'AUC; ' if both else ''}{cite('newcombe')})"] if False in kinds
                 else []) + ([f"a corrected resampled t interval ({'R²; ' if both else ''}{cite('nadeau')})"]
                             if True in kinds else [])
    text = (f"{_list(described)} {'was' if len(done) == 1 else 'were'} predicted from "
            f"{_list([SETS.get(k, esc(k)) for k in sets])} by {_list(sorted({family[k] for k in kinds}))}"
            + (f" ({cite('glmnet')})" if done[0].get("estimator") == "elastic_net" else "")
            + f" in nested cross-validation (outer {'stratified ' if kinds == {False} else ''}"
            f"{'/'.join(map(str, folds)) or 'k'}-fold{', stratified for classes' if len(kinds) == 2 else ''}, "
            f"{'once' if repeats == 1 else f'repeated {repeats} times'}; "
            f"inner {_n(p.get('inner_splits'))}-fold choosing the "
            "regularisation; imputation, filters"
            + (f" (top {_n(p['univariate_top_k'])} univariate)" if p.get("univariate_top_k") else "")
            + " and scaling fitted in training folds).")
    explained = [what for what, paths in (("the consensus features (pooled embeddings)", inputs.attribution),
                                          ("the prototype regions (chemical-space abundances)",
                                           inputs.region_attribution)) if paths]
    if explained and done[0].get("estimator") in LINEAR_FAMILIES:
        text += (" What the final linear models lean on was read off by splitting each fitted score exactly over "
                 f"{_list(explained)}, with the study mean as baseline ({cite('lundberg')}).")
    covariates = [covariate_names(s) for s in done if s.get("covariates")]
    if covariates:
        text += (f" Covariates ({esc(covariates[0])}) entered every set (weight {_n(done[0].get('covariate_weight'))}) "
                 "and were modelled alone.")
    paired = [esc(s.get("outcome")) for s in done if s.get("paired_by")]
    if paired:  # trial BJ: the draft described a before/after study's models as 20 independent samples
        text += (f" {_list(paired)} {'was' if len(paired) == 1 else 'were'} modelled within subjects (multilevel, "
                 f"{cite('westerhuis')}: each subject's runs relative to its own mean, covariates left out): folds "
                 "held out whole subjects, the bootstrap resampled subjects and label permutations stayed within "
                 "subjects.")
    text += (f" Each {_pct(p.get('ci_level', 0.95))} interval hulls a bootstrap ({_n(p.get('n_bootstrap'))} draws"
             f"{', stratified by class' if False in kinds else ''}) of the out-of-fold predictions and "
             f"{' or '.join(intervals)}")
    if permutations:
        text += (f"; p-values rerun everything on ≤ {'/'.join(_n(n) for n in permutations)} label permutations"
                 + (f" (sequential; {cite('besag')})" if stop else "")
                 + (f", max-statistic adjusted across feature sets on the {'/'.join(shared)} permutations they all "
                    f"drew ({cite('westfall')})" if (shared := sorted({_n(s["p_adjustment"].get("permutations"))
                                                                       for s in done if s.get("p_adjustment")})) else ""))
    return text + "."


def _software(rows: list[list[str]], cite: _Cites) -> str:
    """The software sentence from ``sections.versions`` rows (the code's git commit from ``code_origin``'s text) and
    how to cite ms2study (CITATION.cff at the repository root, its title when readable)."""
    version = {r[0]: r[1] for r in rows}
    named = [f"{LIBRARIES[k]} {esc(version[k])}" for k in LIBRARIES
             if version.get(k, "not installed") != "not installed"]
    origin = str(version.get("ms2study code") or "")
    commit = f" (git commit {esc(origin.split(', git commit ', 1)[1])})" if ", git commit " in origin else ""
    snakemake = version.get("snakemake", "not installed")
    text = (f"Software: ms2study {esc(version.get('ms2study'))}{commit}"
            + (f", Snakemake {esc(snakemake)} ({cite('snakemake')})" if snakemake != "not installed" else "")
            + f", Python {esc(version.get('python'))}" + (f", {_list(named)}" if named else "")
            + ", as installed where this report was written.")
    try:
        cff = read_yaml(CITATION_FILE) if CITATION_FILE.is_file() else None
    except Exception:  # noqa: BLE001 - an unreadable citation file costs its title, never the report
        cff = None
    title = f" (“{esc(cff['title'])}”)" if isinstance(cff, dict) and cff.get("title") else ""
    return text + (f" Cite ms2study{title} as its CITATION.cff at the repository root gives, with this version and "
                   "commit.")


def methods_section(inputs: ReportInputs, config: dict | None, encoder: dict | None = None,
                    rows: list[list[str]] | None = None) -> str:
    """The "Methods (draft for a paper)" subsection: an ``<h3>``, a note, one paragraph per stage that ran and a
    reference list, as HTML (every value escaped).

    ``inputs``: the report's files (the records read: ``correction``, ``differential`` summaries, ``models``
    summaries, ``library_indexes`` manifests, ``calibrations``, ``qc``; a file named but absent or unreadable is
    left out, never an error); ``config``: the configuration used (``report: config_used``; None: the parameters are
    not known, and only what the records say is written); ``encoder``: ``collect.encoder_info`` (model ids,
    trained); ``rows``: ``sections.versions`` (default: computed). Paragraph order: detection, linking and
    correction, spectra and encoder, identification, differential tests, models, software; numbers in the units the
    config states them (ppm, Da, s; shares as %). Raises nothing: a missing record leaves its paragraph out, and so
    does a malformed one (KeyError, TypeError, ValueError, AttributeError), with a logged warning. Sources: the
    papers the described modules' docstrings cite (``REFERENCES``) and CITATION.cff.
    """
    config = config if isinstance(config, dict) else None
    cite, rows = _Cites(), rows if rows is not None else versions()
    pyopenms = next((r[1] for r in rows if r[0] == "pyopenms" and r[1] != "not installed"), None)
    paragraphs: list[str] = []
    record = _json(inputs.correction)

    def present(*paths: Path | None) -> bool:
        return any(p is not None and Path(p).exists() for p in paths)

    def add(part: Callable[[], str]) -> None:
        cited = list(cite.used)
        try:
            text = part()
        except (KeyError, TypeError, ValueError, AttributeError) as err:  # a malformed record: that paragraph only
            log.warning("the Methods draft leaves a paragraph out: %s: %s", type(err).__name__, err)
            cite.used[:] = cited  # nor its references
            return
        if text:
            paragraphs.append(f"<p>{text}</p>")

    if config is not None:
        matrix = present(inputs.feature_matrix)
        if matrix or present(*inputs.sample_tables.get("features", ())):
            add(lambda: _detection(config, inputs.qc, pyopenms, cite))
        if matrix:
            add(lambda: _linking(config, inputs.qc) + (" " + _correction(config, record, cite) if record else ""))
        if present(*inputs.sample_tables.get("spectra", ())):
            add(lambda: _spectra(config, encoder))
        if config.get("library") or inputs.library_indexes or inputs.calibrations:
            add(lambda: _identification(config, inputs, cite, (encoder or {}).get("trained")))
    add(lambda: _differential(inputs, cite))
    add(lambda: _models(inputs, cite))
    add(lambda: _software(rows, cite))
    note = ("Written from this run's configuration and the records its stages wrote; only the stages that ran are "
            "described. Check it against the study before use." if config is not None else
            "The configuration was not passed to the report: only what the stages' records state is described.")
    references = "".join(f"<li>{REFERENCES[k][1]}</li>" for k in cite.used)
    return (f'<h3 id="methods">Methods (draft for a paper)</h3><p class="note">{note}</p>' + "".join(paragraphs)
            + (f'<p class="note">References</p><ol class="note">{references}</ol>' if references else ""))
