"""How the report words a model's numbers that stand beside each other: which score its permutation p tests, and
when its AUC interval is too wide to say anything.

The value shown for a feature set is the mean over the cross-validation's repeats, but its permutation p tests the
first repeat's score (``modelling.evaluate.permutation_p_value``: each permutation reruns one repeat); the summary
records that score as ``permutation_observed``. With more than one repeat the two can differ (a trial: AUC 0.92
shown, p tested on the first repeat's 0.70, and "18 of 40 permutations reached it" read as reaching 0.92), so
wherever p stands beside the mean the text names the score it tests. Imports ``ms2study.modelling.metrics`` and
``reporting.html``.
"""

from __future__ import annotations

from ms2study.modelling.metrics import CHANCE
from ms2study.reporting.html import covariate_names, esc

METRIC_NAMES = {"roc_auc": "AUC", "macro_roc_auc": "macro AUC", "r2": "R²", "balanced_accuracy": "balanced accuracy"}
# An AUC interval that reaches chance (0.5) and spans at least this much of the AUC's range (0 to 1) cannot tell a
# model at chance from one that separates well (a trial: 0.43 to 1.00 at 6 + 6 samples): said so beside it.
WIDE_AUC_INTERVAL = 0.5
AUC_METRICS = ("roc_auc", "macro_roc_auc")
# The AUC of all out-of-fold predictions pooled is said beside the fold-wise mean when it lies this far or more below.
POOLED_AUC_GAP = 0.02


def metric_name(entry: dict) -> str:
    """The entry's primary metric as the report names it ("AUC", "R²"; the raw name if unknown), escaped."""
    metric = entry.get("metric")
    return esc(METRIC_NAMES.get(metric, metric or "score"))


def repeats(entry: dict) -> int:
    """How many repeats of the cross-validation the entry's value is the mean of (1 when not recorded)."""
    n = entry.get("outer_repeats")
    return int(n) if isinstance(n, int) and not isinstance(n, bool) and n > 0 else 1


def tested_score(entry: dict) -> float | None:
    """The score the entry's permutation p tests: the recorded first repeat's score (``permutation_observed``), or
    the value itself when the cross-validation ran once; None when neither is known (a summary written before the
    models stage recorded it)."""
    observed = entry.get("permutation_observed")
    if observed is not None:
        return float(observed)
    if repeats(entry) == 1 and entry.get("value") is not None:
        return float(entry["value"])
    return None


def tested_clause(entry: dict, digits: int = 2) -> str:
    """The words after "permutation p = 0.45" that say which score it tests, where that is not the value shown (more
    than one repeat): " for the first repeat's AUC 0.70", or " for the first repeat's AUC" when that score was not
    recorded. Empty with one repeat: the p tests the value shown."""
    if repeats(entry) == 1:
        return ""
    score = tested_score(entry)
    return f" for the first repeat's {metric_name(entry)}" + (f" {score:.{digits}f}" if score is not None else "")


def reached_text(entry: dict, digits: int = 2) -> str:
    """What "N of M permutations reached ..." reached: "it" with one repeat (the value shown), the first repeat's
    score as a number with more ("0.70"), and "it" again when that score was not recorded (``tested_clause`` has
    then just named it)."""
    score = tested_score(entry)
    return f"{score:.{digits}f}" if repeats(entry) > 1 and score is not None else "it"


def observed_text(entry: dict) -> str:
    """The observed score a permutation count refers to, named: "the observed AUC" with one repeat, "the first
    repeat's AUC (0.70)" with more (without the number when it was not recorded)."""
    if repeats(entry) == 1:
        return f"the observed {metric_name(entry)}"
    score = tested_score(entry)
    return f"the first repeat's {metric_name(entry)}" + (f" ({score:.2f})" if score is not None else "")


def too_wide(entry: dict) -> bool:
    """Whether the entry's AUC interval says nothing about the AUC: the metric is an AUC (``AUC_METRICS``) and its
    95 % interval both reaches chance (low <= 0.5 <= high) and spans at least ``WIDE_AUC_INTERVAL`` (half the AUC's
    range), so it holds both a model at chance and one that separates well. False without both bounds."""
    metric, low, high = entry.get("metric"), entry.get("ci_low"), entry.get("ci_high")
    if metric not in AUC_METRICS or low is None or high is None:
        return False
    low, high = float(low), float(high)
    return low <= CHANCE[metric] <= high and high - low >= WIDE_AUC_INTERVAL - 1e-12


def score_interval_clause(entry: dict) -> str:
    """For an AUC whose reported 95 % interval spans (almost) everything (``ci_high - ci_low >= 0.95``: the
    fold-wise bootstrap collapses when test folds hold one or two samples per class), the narrower Newcombe score
    interval the summary also holds (``ci_score``), with what it is worth: on simulated studies of 16 samples it
    covered the true AUC in only 77-93 % of studies, 85-97 % at 40 (benchmarks/measured/auc_interval.json), so it
    is not a 95 % interval; the reported one is the hull of both. Empty otherwise."""
    low, high, score = entry.get("ci_low"), entry.get("ci_high"), entry.get("ci_score")
    if entry.get("metric") != "roc_auc" or low is None or high is None or float(high) - float(low) < 0.95 \
            or not score or score[0] is None or score[1] is None:
        return ""
    return (f"; Newcombe's score interval alone is {float(score[0]):.2f} to {float(score[1]):.2f}, but on simulated "
            "studies of 16-40 samples it held the true AUC in only 77-97 % of them, so it is not reported as the "
            "95 % interval")


def wide_interval_note(entry: dict) -> str:
    """The parenthesis after an AUC interval that ``too_wide`` finds says nothing: why (these few samples per class
    cannot pin the AUC down) and the narrower score interval with what it is worth where the reported one spans
    almost everything (``score_interval_clause``). Empty otherwise. It no longer says to rely on the permutation p
    (trial BH: beside p 0.02 that read as "beats chance", where the rule needs the interval above chance too and the
    p adjusted for the choice among the sets was 0.098)."""
    if not too_wide(entry):
        return ""
    return f" (so wide that these few samples per class cannot pin the AUC down{score_interval_clause(entry)})"


def pooled_auc_clause(entry: dict) -> str:
    """The parenthesis after a binary AUC (the mean over the cross-validation's folds) when the AUC of all
    out-of-fold predictions pooled (``entry['pooled_auc']``, per repeat, ``modelling.metrics.pooled_auc``) lies
    ``POOLED_AUC_GAP`` or more below it: folds of a few samples each score 1.0 while some sample ranks among the
    other class (trial AY: "AUC 1.00" in Main findings with a mislabelled case ranked below two controls, pooled
    0.94-0.97). Empty otherwise, for other metrics and for summaries without the key."""
    pooled = [float(v) for v in (entry.get("pooled_auc") or []) if v is not None]
    if entry.get("metric") != "roc_auc" or entry.get("value") is None or not pooled:
        return ""
    if float(entry["value"]) - max(pooled) < POOLED_AUC_GAP:
        return ""
    span = f"{min(pooled):.2f}" + (f" to {max(pooled):.2f}" if max(pooled) - min(pooled) >= 0.005 else "")
    return f" (the mean over folds; {span} with all samples' out-of-fold scores pooled)"


def covariates_only(summary: dict, name: str, beats_chance: bool = True) -> str | None:
    """When the set a verdict rests on is ``covariates`` (the sheet's covariates alone, the baseline every feature set
    also holds): a clause saying that the separation is theirs and naming the best set of the measurements beside it
    (a three-arm trial: "separates the classes (macro AUC 0.97 ...; best of 5 feature sets: covariates)" read as the
    metabolome's separation, where age alone did it and every measured set scored 0.86-0.90); None otherwise.
    ``beats_chance`` False (the verdict's rule fails for the covariates too): no separation is credited to them (a
    new user's "no evidence of separation ... so the separation is the covariates'" at AUC 0.65 [0, 1], p 0.58)."""
    if name != "covariates":
        return None
    alone = f"the covariates alone ({esc(covariate_names(summary))})"
    others = [(n, e) for n, e in (summary.get("feature_sets") or {}).items()
              if n != "covariates" and e.get("value") is not None]
    if not others:
        return f"<b>that is {alone}</b>: no set of the measurements was scored"
    best, entry = max(others, key=lambda s: float(s[1]["value"]))
    base = (summary.get("feature_sets") or {}).get("covariates") or {}
    chance = CHANCE.get(str(base.get("metric")))
    below = chance is not None and base.get("value") is not None and float(base["value"]) <= chance
    if below or not beats_chance:
        # trial AB: "so the separation is the covariates'" where neither scored above chance (R² -0.22 and -0.28)
        return (f"<b>that is {alone}</b>, the baseline every feature set also holds, and no set of the measurements "
                f"does better (the best, {esc(best)}: {metric_name(entry)} {float(entry['value']):.2f}); neither "
                + ("scores above chance" if below else "is shown to beat chance"))
    return (f"<b>that is {alone}</b>, the baseline every feature set also holds: no set of the measurements does "
            f"better (the best, {esc(best)}: {metric_name(entry)} {float(entry['value']):.2f}), so the separation is "
            "the covariates', not shown to come from the measurements")
