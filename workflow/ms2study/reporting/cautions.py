"""What the report says beside its numbers so that a reader can weigh them (each also a warning where it matters): how
many consensus features have MS/MS (only these can be identified or enter the MS/MS-based models), how few samples a
class has, how much of the testing rests on imputed values, which adduct and isotope labels were grouped on mass and
retention time alone, a permutation p at the smallest value its permutations can give, a verdict that the
permutations' resolution decides (``choice.permutation_resolution``), a cross-validated score below chance, why a score
near its maximum can have a permutation p that is not small (``permutation_note``), and the warnings the
differential stage recorded in its summary. Warnings are HTML with user text escaped; each is a ``html.Caution``
that says what it means for the conclusions (the page ranks them) and which findings it bears on (the main findings
name it beside them). May import ``ms2study.core``, ``ms2study.modelling``, ``reporting.html`` and
``reporting.modeltext``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from pathlib import Path

import polars as pl

from ms2study.modelling.differential import SIGNIFICANCE
from ms2study.modelling.metrics import CHANCE
from ms2study.reporting.html import DOUBT, PROCESSING, QUALITY, Caution, esc, interval_text, p_value_text
from ms2study.reporting.modeltext import metric_name, observed_text, reached_text, tested_clause

# Below a fifth of the consensus features with MS/MS, four in five features (and so, as a rule, most hits of 'What
# differs') can carry no identification, and the MS/MS-based feature sets see a fifth of the data or less: warned.
LOW_MS2_COVERAGE = 0.2
# Fewer samples than this in a class of a categorical outcome: warned (intervals wide, little power).
FEW_PER_CLASS = 10
# More than this share of the tested features with an imputed value: warned.
MOSTLY_IMPUTED = 0.5
# A cross-validated AUC or balanced accuracy at least this far below chance, with an interval reaching chance, is
# explained (a small-sample cross-validation artefact, not an inverse effect).
WELL_BELOW = 0.1
# The feature sets built only from features with MS/MS (``modelling.featuresets``): pooled spectrum embeddings and
# bags of chemistry.
MS2_SETS = ("embedding", "chemical_space")
UNTESTED_ION = " (mass and RT only)"


def features_with_ms2(links: Path | None, spectra: Iterable[Path | None]) -> set[str] | None:
    """The consensus features at least one MS/MS scan of some run is mapped to: the runs' spectra tables
    (``feature_id``) joined to the link stage's ``feature_links.parquet``. None when the links are not given."""
    if links is None or not Path(links).exists():
        return None
    frames = [pl.read_parquet(p, columns=["sample_id", "feature_id"]).drop_nulls() for p in spectra
              if p is not None and Path(p).exists()]
    links_table = pl.read_parquet(links, columns=["consensus_id", "sample_id", "feature_id"])
    if not frames:
        return set()
    mapped = pl.concat(frames).unique()
    return set(links_table.join(mapped, on=["sample_id", "feature_id"])["consensus_id"].cast(pl.Utf8).to_list())


def coverage_sentence(with_ms2: set[str], n_features: int) -> str:
    """'MS/MS for N of M consensus features (x %)'."""
    share = len(with_ms2) / n_features if n_features else 0.0
    return f"MS/MS for {len(with_ms2)} of {n_features} consensus features ({100 * share:.1f} %)"


def coverage_warning(with_ms2: set[str], n_features: int, warnings: list[str]) -> None:
    """A warning when fewer than ``LOW_MS2_COVERAGE`` of the consensus features have MS/MS."""
    if n_features and len(with_ms2) / n_features < LOW_MS2_COVERAGE:
        warnings.append(Caution(
            f"{coverage_sentence(with_ms2, n_features)}, below {100 * LOW_MS2_COVERAGE:.0f} %: only these can be "
            "identified, and the MS/MS-based feature sets (" + ", ".join(MS2_SETS) + ") see only them. A significant "
            "feature without MS/MS stays unnamed.", DOUBT, "low MS/MS coverage", ("identifications", "differential")))


def significant_ms2(significant: Sequence[str], with_ms2: set[str] | None, outcome: str,
                    warnings: list[str]) -> str:
    """One sentence: how many of the outcome's significant features have MS/MS (so can be identified); a warning
    when there are significant features and none has. Empty without the MS/MS information or hits."""
    if with_ms2 is None or not significant:
        return ""
    k = sum(1 for c in significant if c in with_ms2)
    if k == 0:
        warnings.append(Caution(f"outcome <b>{esc(outcome)}</b>: none of the {len(significant)} features at q &lt; "
                                f"{SIGNIFICANCE:g} has MS/MS, so none can be identified", DOUBT,
                                "no MS/MS for the hits", (f"differential:{outcome}",)))
    return (f"MS/MS for {k} of the {len(significant)} features at q &lt; {SIGNIFICANCE:g} (only these can be "
            "identified).")



def class_size_warning(summary: dict, outcome: str, warnings: list[str]) -> None:
    """A warning when a class of a binary or multiclass outcome has fewer than ``FEW_PER_CLASS`` samples, with the
    class sizes and, as an example, the 95 % interval of the feature set with the highest value."""
    counts = summary.get("class_counts") or {}
    if summary.get("type") not in ("binary", "multiclass") or not counts or min(counts.values()) >= FEW_PER_CLASS:
        return
    sizes = " vs ".join(f"{v} {esc(k)}" for k, v in counts.items())
    best = best_feature_set(summary)
    example = ""
    if best and None not in (best[1].get("ci_low"), best[1].get("ci_high")):
        name, e = best  # trial AC: "roc_auc 0.98, 95 % interval 0.72 to 1.00" copied without its verdict
        example = (f" (best set, {esc(name)}: {metric_name(e)} {e['value']:.2f}, "
                   f"{interval_text(float(e['ci_low']), float(e['ci_high']))}"
                   # not a verdict's label (a new user read it beside the verdict "no evidence" as a second one)
                   + (", short of the models' rule for beating chance" if chance_shortfall(e) else "") + ")")
    splits = ""
    if summary.get("type") == "binary" and len(counts) == 2:
        a, b = counts.values()
        n_splits = math.comb(a + b, a) // (2 if a == b else 1)
        if n_splits <= 200:  # a second trial: 4 + 4 copies of two source runs, one split by source swamped the null
            splits = (f"; the tests' permutation null pools only {n_splits} distinct splits of these samples, so "
                      "one split that follows a structure other than the outcome (batch, source run, sex) can fill "
                      "it with large statistics and keep even large changes above q 0.05: name such a column under "
                      "models: covariates, which the permutations then hold fixed (Freedman-Lane)")
    unit = "subjects" if summary.get("subjects") else "samples"
    small = [k for k, v in counts.items() if v < FEW_PER_CLASS]
    if len(small) < len(counts):  # name the small classes, not all (a trial: "only 15 vs 28 vs 2 (fewer than 10 per
        # class)" for arms of 15, 28 and 2)
        few = (f"{' and '.join(esc(k) for k in small)} {'has' if len(small) == 1 else 'have'} fewer than "
               f"{FEW_PER_CLASS} {unit} ({sizes})")
    else:
        few = f"only {sizes} {unit} (fewer than {FEW_PER_CLASS} per class)"
    warnings.append(Caution(
        f"outcome <b>{esc(outcome)}</b>: {few}: the models' "
        f"95 % intervals are wide{example}, and the tests have little power for modest changes{splits}", DOUBT,
        "few samples per class", (f"models:{outcome}", f"differential:{outcome}")))


def relies_on_imputation(table: pl.DataFrame) -> pl.Series:
    """Per differential row, whether its test rests partly on imputed values: ``detection_rate`` below 1 (not
    measured in every sample even after gap filling; a gap-filled value counts as measured)."""
    return table["detection_rate"].fill_null(0.0) < 1


def library_isomers(identifications: pl.DataFrame) -> pl.Series:
    """Per identifications.parquet row, how many structures its ``isomer_inchikeys`` names (nulls and empty keys
    left out): 1 or fewer on a level-3 row means no other structure of its formula among its candidates that could
    be identified (the library may still hold isomers sharing too few peaks), so it is level 3 on the structure
    evidence alone."""
    return identifications["isomer_inchikeys"].list.eval(
        pl.element().filter(pl.element().is_not_null() & (pl.element() != ""))).list.len().fill_null(0)


# gap-filled shares of two groups this far apart: the fold change compares more re-quantified values on one side
UNEVEN_FILL = 0.25


def uneven_gap_filling(table: pl.DataFrame) -> pl.Series:
    """Per differential row (binary outcome), whether the share of gap-filled values differs between the two groups
    by ``UNEVEN_FILL`` or more (``gap_filled_rate_positive`` and ``_reference``; False where they are absent). A
    gap-filled value is measured differently from a detected one (apex height x the feature's area per height, where
    the area was 1.6x too low on simulated truth and 1.8-2.4x too high on a real QC pair), and where another peak of
    the same m/z is near it can take that one's (split peaks, isomers seconds apart), so such a row's fold change
    leans towards the group filled more often."""
    columns = ("gap_filled_rate_positive", "gap_filled_rate_reference")
    if not set(columns) <= set(table.columns):
        return pl.Series([False] * table.height, dtype=pl.Boolean)
    return ((table[columns[0]] - table[columns[1]]).abs() >= UNEVEN_FILL).fill_null(False)


def gap_filling_warning(tested: pl.DataFrame, outcome: str, warnings: list[str]) -> None:
    """A warning naming the features at q < SIGNIFICANCE whose gap-filled shares differ between the groups
    (``uneven_gap_filling``): their fold changes may be off (gap-filled values of weak peaks are noisier)."""
    if not tested.height or "q_value" not in tested.columns:
        return
    hits = tested.filter((pl.col("q_value") < SIGNIFICANCE).fill_null(False))
    uneven = hits.filter(uneven_gap_filling(hits))
    if not uneven.height:
        return
    named = ", ".join(f"{r['consensus_id']} ({100 * r['gap_filled_rate_positive']:.0f} % vs "
                      f"{100 * r['gap_filled_rate_reference']:.0f} %)" for r in uneven.head(8).iter_rows(named=True))
    more = f" and {uneven.height - 8} more" if uneven.height > 8 else ""
    warnings.append(Caution(
        f"outcome <b>{esc(outcome)}</b>: {uneven.height} of the {hits.height} features at q &lt; {SIGNIFICANCE:g} "
        f"were gap-filled much more often in one group than in the other ({esc(named)}{more}; share of gap-filled "
        "values, positive vs reference group): a value re-quantified where detection missed the peak is measured "
        "differently (from the peak's apex height) and, where another peak of the same m/z elutes a few seconds "
        "away, can take that one's, so their fold changes may be off; the column "
        "gap_filled_rate_positive / _reference of the differential table gives the shares", QUALITY,
        "fold changes may be off where gap filling differs", (f"differential:{outcome}",)))


def imputation_warning(tested: pl.DataFrame, outcome: str, warnings: list[str]) -> None:
    """A warning when more than ``MOSTLY_IMPUTED`` of the tested features have an imputed value (detected in fewer
    than all samples: ``detection_rate`` below 1; a gap-filled value counts as detected)."""
    if not tested.height or "detection_rate" not in tested.columns:
        return
    relies = relies_on_imputation(tested)
    imputed = int(relies.sum())
    if imputed / tested.height > MOSTLY_IMPUTED:
        hits = (tested["q_value"] < SIGNIFICANCE).fill_null(False) if "q_value" in tested.columns else relies & False
        n_hits, hits_imputed = int(hits.sum()), int((hits & relies).sum())
        of_hits = (f"; of the {n_hits} features at q &lt; {SIGNIFICANCE:g}, {hits_imputed} "
                   f"{'relies' if hits_imputed == 1 else 'rely'} on it" if n_hits else "")
        # named beside the differential finding only when its hits themselves rest on imputed values
        # and it casts doubt on the conclusions only then; otherwise it describes the data
        label, concerns = ("hits rely on imputation", (f"differential:{outcome}",)) if hits_imputed else ("", ())
        # how much of each such feature is imputed: one value in 48 is not half of them (a trial's 48-run cohort)
        share = float((1.0 - tested.filter(relies)["detection_rate"].fill_null(0.0)).median())
        warnings.append(Caution(
            f"outcome <b>{esc(outcome)}</b>: {imputed} of {tested.height} tested features "
            f"({100 * imputed / tested.height:.0f} %) rely on imputation (not detected in every sample even after gap "
            f"filling; half the feature's smallest intensity put in; a median of {100 * share:.0f} % of such a "
            "feature's values): their fold changes and p-values rest partly on "
            f"values that were not measured{of_hits}. Where a compound lies below detection in part of one group "
            "rather than being absent, its real level there can be well above the half-minimum put in, and the "
            "fold change then comes out larger than it is (a simulated study: two imputed hits at 3.10 and 2.71 "
            "log2 where 2.23 and 2.01 were planted); the differential table's detection_rate says how much of each "
            "feature is imputed", DOUBT if hits_imputed else QUALITY,
            label, concerns))


def untested_labels(corrected: pl.DataFrame | None) -> tuple[int, int] | None:
    """(labels grouped on mass and RT alone, all labels) of the corrected matrix's ``adduct`` column: a label whose
    grouping edge carries no test (``adduct_p_value`` null). None when the columns are not there."""
    if corrected is None or not {"adduct", "adduct_p_value"} <= set(corrected.columns):
        return None
    labelled = corrected.filter(pl.col("adduct").is_not_null())
    return int(labelled["adduct_p_value"].is_null().sum()), labelled.height


def label_warning(corrected: pl.DataFrame | None, min_runs: int, warnings: list[str]) -> None:
    """A warning naming how many adduct and isotope labels rest on mass and retention time alone."""
    counts = untested_labels(corrected)
    if counts and counts[0]:
        warnings.append(Caution(
            f"{counts[0]} of {counts[1]} adduct and isotope labels rest on mass and RT alone (measured together in "
            f"fewer than <code>correct: adduct_min_runs</code> = {min_runs} runs, so their co-variation was not "
            "tested); they refuse no identification. Such labels are marked "
            f"'{UNTESTED_ION.strip()}' in 'What differs'.", PROCESSING))


def mark_untested_ions(tested: pl.DataFrame, corrected: pl.DataFrame | None) -> pl.DataFrame:
    """``tested`` with ``UNTESTED_ION`` appended to each ``ion`` whose grouping carries no test: from the table's
    ``ion_tested`` column (false: mass and RT alone) when it has one, else from the corrected matrix's
    ``adduct_p_value`` (null) by consensus id. Unchanged without either."""
    if "ion" not in tested.columns:
        return tested
    if "ion_tested" in tested.columns:
        untested = pl.col("ion_tested").eq(False).fill_null(False)
        frame = tested
    elif corrected is not None and {"consensus_id", "adduct_p_value"} <= set(corrected.columns):
        frame = tested.join(corrected.select(pl.col("consensus_id").cast(pl.Utf8), pl.col("adduct_p_value")
                                             .alias("_adduct_p")), on="consensus_id", how="left")
        untested = pl.col("_adduct_p").is_null()
    else:
        return tested
    frame = frame.with_columns(pl.when(pl.col("ion").is_not_null() & untested).then(pl.col("ion") + UNTESTED_ION)
                               .otherwise(pl.col("ion")).alias("ion"))
    return frame.drop("_adduct_p") if "_adduct_p" in frame.columns else frame


def summary_warnings(summary: dict, outcome: str, warnings: list[str]) -> None:
    """Each warning the differential stage recorded in the table's summary (``warnings``), as 'outcome X: ...': a
    caution on the outcome's differential hits (the locality test's local intensity effect, ``modelling.locality``,
    is named so beside them)."""
    for text in summary.get("warnings") or []:
        # each its own label beside the findings (a trial: two warnings linked twice as "warning of the differential
        # test"): a known kind by name, else the warning's first words
        words = text.split(":")[0].split()
        label = ("local intensity effect" if "local intensity effect" in text else "hidden structure"
                 if "the outcome does not explain" in text
                 else " ".join(words[:10]) + (" ..." if len(words) > 10 else ""))  # trial AW: cut at 6
        warnings.append(Caution(f"outcome <b>{esc(outcome)}</b>: {esc(text)}", DOUBT, label,
                                (f"differential:{outcome}",)))


def at_floor(entry: dict, n_permutations: int | None) -> bool:
    """Whether the entry's permutation p equals 1/(n_permutations + 1), the smallest it can be (False when the
    number is not a count, e.g. a setting such as 'auto' that was never resolved)."""
    p = entry.get("permutation_p")
    try:
        n = int(n_permutations or 0)
    except (TypeError, ValueError):
        return False
    return n > 0 and p is not None and abs(float(p) - 1 / (n + 1)) < 1e-9


def floor_note(summary: dict, skip: Iterable[str] = ()) -> str | None:
    """One sentence naming the feature sets (not in ``skip``) whose permutation p is at its floor, 1/(n + 1): the
    smallest p these n permutations can give; and one naming those whose p adjusted for the choice among the sets
    (``permutation_p_adjusted``) is at the floor of the m shared permutations the adjustment reads
    (``p_adjustment.permutations``), which ``n_permutations`` alone does not raise while sets may stop drawing early
    (``core.paths.family_permutations``: a trial raised n_permutations to 400 and the adjusted p stayed 1/41).
    None when there is neither."""
    n = (summary.get("params") or {}).get("n_permutations")
    sets = {name: e for name, e in (summary.get("feature_sets") or {}).items() if name not in set(skip)}
    names = [name for name, e in sets.items() if at_floor(e, n)]
    m = (summary.get("p_adjustment") or {}).get("permutations")
    adjusted = [name for name, e in sets.items()
                if m and at_floor({"permutation_p": e.get("permutation_p_adjusted")}, m)]
    parts = []
    if names:
        parts.append(f"p = {p_value_text(1 / (int(n) + 1))} ({', '.join(names)}) is 1/({int(n)} + 1), the smallest p "
                     f"these {int(n)} permutations can give; more permutations (models: n_permutations) would tell how "
                     "far below it lies.")
    if adjusted:
        stop = (summary.get("params") or {}).get("permutation_stop_after")
        raise_it = ("models: n_permutations raises it" if int(m) == int(n or 0) or not stop else
                    f"models: n_permutations alone does not raise it while sets may stop drawing early "
                    f"(permutation_stop_after: {stop}); with permutation_stop_after: 0 every set draws all "
                    "n_permutations and the adjustment reads them all")
        parts.append(f"The p adjusted for the choice among the sets, {p_value_text(1 / (int(m) + 1))} "
                     f"({', '.join(adjusted)}), is 1/({int(m)} + 1), the smallest that the {int(m)} permutations "
                     f"shared by every set can give; {raise_it}.")
    return " ".join(parts) or None


PARKER = "Parker, Günter & Bedo 2007, BMC Bioinformatics 8:326"


def below_chance_note(summary: dict, coverage: tuple[int, int] | None = None) -> str | None:
    """One or two sentences when some feature set's AUC or balanced accuracy lies at least ``WELL_BELOW`` under
    chance, its 95 % interval reaching chance or not (a trial's AUC 0.000 [0.000, 0.357] at 5 + 5 samples, p 1): a
    known cross-validation artefact of small studies whose features carry no signal, not an inverse effect; for the MS/MS-based sets (``MS2_SETS``) with ``coverage`` (features
    with MS/MS, consensus features), how many features they see. None otherwise."""
    n_classes = len(summary.get("class_counts") or {}) or 2
    chance = {"roc_auc": 0.5, "macro_roc_auc": 0.5, "balanced_accuracy": 1 / n_classes}
    below: dict[str, list[str]] = {}
    wholly = False
    for name, entry in (summary.get("feature_sets") or {}).items():
        scores = [(entry.get("metric"), entry)] + list((entry.get("secondary") or {}).items())
        for metric, e in scores:
            value, high = e.get("value"), e.get("ci_high")
            if metric in chance and value is not None and high is not None and value <= chance[metric] - WELL_BELOW:
                below.setdefault(name, []).append(f"{metric} {value:.2f} [{float(e.get('ci_low') or 0):.2f}, "
                                                  f"{high:.2f}]")
                wholly = wholly or high < chance[metric]
    if not below:
        return None
    listed = "; ".join(f"{name}: {', '.join(v)}" for name, v in below.items())
    text = (f"Scores well below chance ({listed}) are not an inverse effect"
            + (", even where the interval lies wholly below chance" if wholly else "")
            + ": with few samples and features that carry no signal, cross-validated scores scatter widely and lean "
            "below chance, since each held-out sample is missing from its own class's training data (a known "
            f"artefact of low-signal studies: {PARKER}); a model fitted to the labels cannot learn their inverse, and "
            "the interval describes the scatter of this artefact, not a predictor. Read them as no signal.")
    ms2 = [name for name in below if name in MS2_SETS]
    if ms2 and coverage:
        text += (f" The {' and '.join(ms2)} set{'s' if len(ms2) > 1 else ''} see{'' if len(ms2) > 1 else 's'} only "
                 f"the {coverage[0]} of {coverage[1]} consensus features with MS/MS.")
    return text


def detection_meaning(data: dict | None) -> str:
    """What 'detected' means in the smallest-detectable-effect sentence, from ``resources/detectable_effects.json``
    (its ``criterion``): the interval criterion, the share of simulated studies (a rough guide, not a measured power:
    most settings were simulated once or a few times; trial AL), the set named, and that the studies were simulated.
    Empty without data."""
    if not data:
        return ""
    criterion = str(data.get("criterion") or "")
    if "half" in criterion and "AUC interval above 0.5" in criterion:
        return ("'Detected' means the AUC's 95 % interval lay above 0.5 in at least half of the simulated studies of "
                "that setting; most settings were simulated once or a few times (benchmarks/measured/biology.json), "
                "so this is a rough guide, not a measured power. The set named is the one that detected it; the "
                "sweep's other sets, the embedding-based ones included, did not detect those settings. The studies "
                "are simulated, not runs of this instrument.")
    return (f"'Detected' means: {criterion}" if criterion else "'Detected' is judged") + (
        " (simulated studies, not runs of this instrument).")


def floor_warning(summary: dict, feature_set: str, outcome: str, warnings: list[str], decided: bool = False) -> None:
    """A caution on an outcome's model verdict when the permutation p of ``feature_set`` (the set the verdict rests
    on) is at its floor, 1/(n_permutations + 1): none of the models fitted to permuted labels reached its value,
    and the p cannot say how far below the floor the true one lies; with a floor of 0.05 or more no model can be
    shown to beat chance. A caution on the conclusions (``DOUBT``) with a floor of 0.01 or more, or when ``decided``
    (the verdict's p adjusted for the choice among the sets passes or fails by one permutation,
    ``choice.permutation_resolution``; trial BH: adjusted p 0.0488 was a data-quality note the end-of-run summary
    left out); otherwise a note on its resolution (``QUALITY``). Nothing when p is above its floor or there were no
    permutations."""
    n = (summary.get("params") or {}).get("n_permutations")
    entry = (summary.get("feature_sets") or {}).get(feature_set) or {}
    if not at_floor(entry, n):
        return
    floor = 1 / (int(n) + 1)
    text = (f"outcome <b>{esc(outcome)}</b>: the permutation p of the {esc(feature_set)} model, {p_value_text(floor)}, "
            f"is 1/({int(n)} + 1), the smallest {int(n)} permutations can give (none of them reached "
            f"{observed_text(entry)}); ")
    if floor >= SIGNIFICANCE:
        text += (f"so few permutations cannot give p &lt; {SIGNIFICANCE:g}, and no model can be shown to beat chance: "
                 "raise <code>models: n_permutations</code>")
    else:
        text += ("the verdict rests on this floor; more permutations (<code>models: n_permutations</code>) would "
                 "tell how far below it the p lies")
    # a floor well below 0.05 (1/101) leaves the verdict standing: a note on its resolution, not a doubt (a trial)
    kind = DOUBT if floor >= SIGNIFICANCE / 5 or decided else QUALITY
    warnings.append(Caution(text, kind, "permutation p at its floor",
                            (f"models:{outcome}",)))


def near_maximum(summary: dict) -> list[str]:
    """The feature sets ``permutation_note`` speaks of (a value near its maximum with a p that is not small)."""
    return [name for name, e in (summary.get("feature_sets") or {}).items() if e.get("value") is not None
            and e.get("permutation_p") is not None and e["value"] >= NEAR_MAXIMUM and e["permutation_p"] > P_SMALL]


# A primary metric (roc_auc, macro_roc_auc, r2: all at most 1) this close to 1 is "at or near its maximum"; a
# permutation p above P_SMALL is "not small".
NEAR_MAXIMUM = 0.95
P_SMALL = 0.05


def permutation_note(summary: dict) -> str | None:
    """Why a metric at or near its maximum (>= ``NEAR_MAXIMUM`` of 1) can have a permutation p that is not small
    (> ``P_SMALL``): with few samples, models fitted to permuted labels reach that value too, and p counts them.
    One or two sentences naming each such feature set with how many permutations reached the score p tests (the
    entry's ``permutations_reaching`` and ``permutations_drawn``; for summaries without them, from p and ``params:
    n_permutations``; that score, the first repeat's, is named where the value is a mean over repeats:
    ``modeltext.tested_clause``), p's formula and its resolution; None when no set is in that case."""
    cases = [(name, summary["feature_sets"][name]) for name in near_maximum(summary)]
    if not cases:
        return None
    n_perm = (summary.get("params") or {}).get("n_permutations")
    n_perm = int(n_perm) if isinstance(n_perm, int) and not isinstance(n_perm, bool) else None
    n_samples = summary.get("n_samples") or cases[0][1].get("n_samples")
    metric = cases[0][1].get("metric") or "the metric"
    counts, at_floor, stopped = [], [], False
    for name, entry in cases:
        p = float(entry["permutation_p"])
        drawn, reached = entry.get("permutations_drawn"), entry.get("permutations_reaching")
        if drawn is None and n_perm:  # an older summary: every permutation was drawn
            drawn, reached = n_perm, max(round(p * (n_perm + 1)) - 1, 0)
        stopped = stopped or bool(entry.get("permutations_stopped_early"))
        # the value is the mean over the repeats, p tests the first repeat's score: say which (a trial)
        said = f"{name}: {float(entry['value']):.3f}, p = {p_value_text(p)}{tested_clause(entry, 3)}"
        if reached == 0:  # no permutation reached it: p is as small as these permutations can make it
            at_floor.append(f"{said}, none of {int(drawn)} permutations reached {reached_text(entry, 3)}")
            continue
        counts.append(said + (f", {int(reached)} of {int(drawn)} permutations reached {reached_text(entry, 3)}"
                              if drawn else ""))
    parts = []
    if counts:
        parts.append(f"{metric} is at or near its maximum of 1, yet p is not small ({'; '.join(counts)}): with "
                     f"{n_samples} samples, models fitted to permuted labels also reach such a value often enough.")
    if at_floor:
        parts.append(f"{metric} is at or near its maximum of 1 and p is the smallest {n_perm or 'these'} "
                     f"permutations can give ({'; '.join(at_floor)}): more permutations (models: n_permutations) "
                     "would measure a smaller p.")
    first = " ".join(parts)
    formula = ("The p-value counts them: p = (1 + permutations reaching at least the observed value) / "
               "(1 + permutations)")
    if stopped:
        formula += (", or, where drawing stopped early once models.permutation_stop_after permutations had reached "
                    "it, p = those permutations / permutations drawn (Besag & Clifford 1991)")
    if not n_perm:
        return f"{first} {formula}."
    return f"{first} {formula}, so its resolution is 1/{n_perm + 1} = {p_value_text(1 / (n_perm + 1))}."


def chance_shortfall(entry: dict) -> str | None:
    """Why a feature set's model (its summary entry) is not shown to beat chance, by the rule of ``MODELS_TEXT``:
    p < ``P_SMALL`` and the interval above chance (``metrics.CHANCE``: AUC 0.5, R² 0); a negative R² is named as
    worse than the mean. Without permutations (p null) the interval alone is judged. None when the model beats
    chance."""
    metric = entry.get("metric")
    chance = CHANCE.get(metric)
    value, low, high, p = (entry.get(k) for k in ("value", "ci_low", "ci_high", "permutation_p"))
    if chance is None:
        return None
    if value is None:
        return f"its {metric} could not be computed"
    reasons = []
    if metric == "r2" and value < 0:
        reasons.append(f"it predicts worse than the outcome's mean (cross-validated R² = {value:.3f}): no usable "
                       "signal")
    elif value <= chance:
        reasons.append(f"its {metric} {value:.3f} is not above chance ({chance:g})")
    if p is not None and p >= P_SMALL:
        reasons.append(f"its permutation p = {p_value_text(p)} is not below {P_SMALL:g}")
    if low is None or low <= chance:
        reasons.append(f"its {interval_text(low, high, 3)} does not lie above chance ({chance:g})")
    return "; ".join(reasons) or None


def best_feature_set(summary: dict) -> tuple[str, dict] | None:
    """(name, entry) of the model summary's feature set the verdict rests on: among the sets with a value, those
    shown to beat chance (``chance_shortfall`` is None) first, then the highest value, then the smallest permutation
    p; the first listed on a full tie. The main findings and the warnings name this one set. None when no set has
    a value."""
    scored = [(name, e) for name, e in (summary.get("feature_sets") or {}).items() if e.get("value") is not None]
    if not scored:
        return None
    return max(scored, key=lambda s: (chance_shortfall(s[1]) is None, float(s[1]["value"]),
                                      -float(s[1]["permutation_p"] if s[1].get("permutation_p") is not None else 1)))
