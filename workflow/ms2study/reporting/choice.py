"""How a model's permutation p is adjusted for choosing the best of an outcome's feature sets after seeing them all.

The models stage adjusts it by the max-statistic over the sets on their shared permutations
(``modelling.evaluate.family_adjusted_p``; summary ``p_adjustment``, entry ``permutation_p_adjusted``). A summary
written before that (no ``p_adjustment``) is adjusted here by Bonferroni over the sets, as the report did then. Also
the verdict's sentence on the permutations' resolution (``permutation_resolution``), and what the covariates alone
do beside a verdict (``covariates_clause``, ``adds_nothing_shown``). May import ``ms2study.core``,
``modelling.metrics``, ``reporting.html``, ``reporting.modeltext`` and ``reporting.cautions``.
"""

from __future__ import annotations

from fractions import Fraction

from ms2study.modelling.metrics import CHANCE
from ms2study.reporting.cautions import P_SMALL, WELL_BELOW, chance_shortfall
from ms2study.reporting.html import covariate_names, esc, interval_text, p_value_text
from ms2study.reporting.modeltext import METRIC_NAMES, metric_name, observed_text


def choice_adjustment(summary: dict, entry: dict) -> dict | None:
    """The adjustment of ``entry``'s permutation p (one feature set of the models ``summary``) for the choice among
    the summary's feature sets, as {"p": adjusted p, "sets": number of sets, "method": "max-statistic" or
    "Bonferroni", "permutations": permutations the adjusted p rests on, "smallest": the smallest adjusted p they
    allow, "factor": k reaching permutations give (k + 1) x factor / (permutations + 1)}. Bonferroni's rests on
    the permutations the stage was set to draw (``_permutation_count``). None with a single set or without a p;
    the covariates-alone baseline is not one of the sets chosen from (``candidate_sets``), and its own entry gets
    None."""
    sets = len(candidate_sets(summary))
    p = entry.get("permutation_p")
    if sets < 2 or p is None or entry is (summary.get("feature_sets") or {}).get("covariates"):
        return None
    adjustment = summary.get("p_adjustment") or {}
    if entry.get("permutation_p_adjusted") is not None and adjustment.get("permutations"):
        n = int(adjustment["permutations"])
        return {"p": float(entry["permutation_p_adjusted"]), "sets": sets, "method": "max-statistic",
                "permutations": n, "smallest": 1 / (n + 1), "factor": 1}
    n = _permutation_count(summary, entry)
    return {"p": min(1.0, float(p) * sets), "sets": sets, "method": "Bonferroni", "permutations": n,
            "smallest": min(1.0, sets / (n + 1)) if n else None, "factor": sets}


def candidate_sets(summary: dict) -> list[str]:
    """The feature sets of the models ``summary`` that a verdict chooses its best from: all but the covariates-alone
    baseline (set ``covariates``), which the models stage also leaves out of its adjustment for the choice."""
    return [n for n in (summary.get("feature_sets") or {}) if n != "covariates"]


def adjustment_text(adjusted: dict) -> str:
    """The verdict's clause on the choice of the best set, with the adjusted p: "picked as the best of 4 after
    seeing them; adjusted for that choice its p is 0.024 (...)"."""
    value = f"{adjusted['p']:.3g}"
    if adjusted["method"] == "max-statistic":
        return (f"picked as the best of {adjusted['sets']} after seeing them; adjusted for that choice its p is "
                f"{value} (on each of {adjusted['permutations']} shared permutations, the largest score of the "
                f"{adjusted['sets']} sets)")
    return (f"picked as the best of {adjusted['sets']} after seeing them, so its p is not adjusted for the choice "
            f"(Bonferroni over the {adjusted['sets']}: {value})")


def reaching_to_pass(adjusted: dict, line: float) -> int | None:
    """The most reaching permutations with which the adjusted p would still be below ``line`` (exact arithmetic:
    (k + 1) x factor / (permutations + 1) < line); None when even none reaching would not do."""
    n = adjusted["permutations"]
    limit = Fraction(str(line))
    return next((k for k in range(n, -1, -1) if Fraction((k + 1) * adjusted["factor"], n + 1) < limit), None)


# A verdict that fails only on its permutation p (the best set's, adjusted for the choice among the sets) is said to be
# limited by the number of permutations when that adjusted p is at most this many times the smallest one the
# permutations allow, i.e. when at most 2 permutations reached the observed value. The count is then too small to
# tell a p on the 0.05 line from the one observed: with 100 permutations and 4 sets, a true p exactly at the line
# (0.05 / 4) makes 2 or more permutations reach the value in 36 % of draws (3 or more: 13 %, 4 or more: 4 %).
RESOLUTION_FACTOR = 3
# The suggested number of permutations makes the smallest adjusted p at most a tenth of 0.05 (about ten permutations
# must then reach the value before the adjusted p crosses the line) and is at least ten times the number drawn.
SUGGESTED_PERMUTATIONS = (1000, 2000, 5000, 10000, 20000, 50000, 100000)


def _permutation_count(summary: dict, entry: dict) -> int | None:
    """The number of permutations the models stage was set to draw (the summary's resolved ``n_permutations``, else
    ``params: n_permutations`` when it is a count, else the entry's ``permutations_drawn``); None when unknown."""
    for n in (summary.get("n_permutations"), (summary.get("params") or {}).get("n_permutations"),
              entry.get("permutations_drawn")):
        if isinstance(n, int) and not isinstance(n, bool) and n > 0:
            return n
    return None


def permutation_resolution(summary: dict, feature_set: str) -> str | None:
    """Plain words (HTML) when the verdict on ``feature_set`` (the set it rests on) is decided by the resolution of the
    permutation test rather than by the data: everything but p passes the models' rule (``chance_shortfall`` with
    p set aside), and p adjusted for the choice among the summary's feature sets (``choice.choice_adjustment``, as
    the verdict) is at most ``RESOLUTION_FACTOR`` times the smallest adjusted p the permutations allow and either
    not below ``P_SMALL`` or below it only with the most reaching permutations that still pass (one more would undo
    the verdict), or even that smallest one is not below ``P_SMALL``. Says how many permutations were drawn
    and reached the observed value (the first repeat's where the value shown is a mean over repeats:
    ``modeltext.observed_text``), the smallest possible adjusted p, how many reaching permutations would have
    passed, and what to raise (``models: n_permutations``, with a suggested count). None otherwise, or when an
    unadjusted p stopped drawing early (it then rests on ``permutation_stop_after`` reaching permutations)."""
    entry = (summary.get("feature_sets") or {}).get(feature_set) or {}
    p = entry.get("permutation_p")
    n = _permutation_count(summary, entry)
    adjusted = choice_adjustment(summary, entry)
    shared = adjusted is not None and adjusted["method"] == "max-statistic"
    if p is None or n is None or (entry.get("permutations_stopped_early") and not shared):
        return None
    if chance_shortfall({**entry, "permutation_p": 0.0}) is not None:
        return None  # the score or its interval fails too: more permutations would not change the verdict
    if adjusted is None:
        adjusted = {"p": float(p), "sets": 1, "method": "none", "permutations": n, "smallest": 1 / (n + 1),
                    "factor": 1}
    sets, value, smallest, n = adjusted["sets"], adjusted["p"], adjusted["smallest"], adjusted["permutations"]
    near_floor = value <= RESOLUTION_FACTOR * smallest + 1e-12
    if not (near_floor or (smallest >= P_SMALL and value >= P_SMALL)):
        return None
    if shared:
        drawn, reached = n, int(entry.get("permutations_reaching_adjusted") or 0)
    else:
        drawn = int(entry.get("permutations_drawn") or n)
        reached = entry.get("permutations_reaching")
        reached = int(reached) if reached is not None else max(round(float(p) * (n + 1)) - 1, 0)
    passing = reaching_to_pass(adjusted, P_SMALL)
    # a verdict that passes is limited as well when one more reaching permutation would undo it (a trial: adjusted p
    # 2/41 = 0.0488 said "separates" with no caution after an unrelated library edit moved it from 3/41)
    if value < P_SMALL and (passing is None or reached < passing):
        return None
    observed = observed_text(entry)  # the first repeat's score where the value shown is a mean over repeats
    what = "adjusted p" if sets > 1 else "p"
    smallest_text = f"{adjusted['factor']}/{n + 1} = {p_value_text(smallest)}"
    if shared:
        text = (f"this verdict is limited by the number of permutations: on {reached} of the {n} permutations that "
                f"every one of the {sets} feature sets drew, some set's model reached {observed}, and "
                f"with {n} shared permutations the smallest {what} possible is {smallest_text}; the {what} "
                f"({p_value_text(value)}) ")
    else:
        text = (f"this verdict is limited by the number of permutations: {reached} of the {drawn} permutations drawn "
                f"reached {observed}, and with {n} permutations" + (f" and {sets} feature sets" if sets > 1
                                                                                  else "")
                + f" the smallest {what} possible is {smallest_text}; the {what} ({p_value_text(value)}) ")
    if value < P_SMALL:
        text += (f"is below {P_SMALL:g} with at most {passing} reaching it, so one more reaching permutation would "
                 "undo the verdict")
    elif passing is None:
        text += f"cannot fall below {P_SMALL:g} with any count of reaching permutations"
    elif passing == 0:
        text += (f"would be below {P_SMALL:g} only if none had reached it, so "
                 f"{'one permutation decides' if reached == 1 else f'{reached} permutations decide'} the verdict")
    else:
        deciding = max(reached - passing, 1)
        text += (f"would be below {P_SMALL:g} with at most {passing} reaching it, so {deciding} permutation"
                 f"{'s decide' if deciding > 1 else ' decides'} the verdict")
    wanted = max(10 * n, 10 * adjusted["factor"] / P_SMALL)
    suggested = next((s for s in SUGGESTED_PERMUTATIONS if s >= wanted), int(wanted))
    raise_text = (f"Raise <code>models: n_permutations</code> in config.yaml (e.g. to {suggested})"
                  + (" with <code>permutation_stop_after: 0</code>, so that every set draws them all," if shared
                     else ""))
    return text + f". {raise_text} to tell whether it holds"


# the highest value each metric can take: a tested score there cannot be beaten by any permutation, only tied
SCORE_CEILING = {"roc_auc": 1.0, "balanced_accuracy": 1.0}


def score_ceiling(summary: dict, entry: dict) -> str | None:
    """Plain words when the tested score (``permutation_observed``) is at its metric's highest value
    (``SCORE_CEILING``) and permutations reached it too: data separated even better could not give a smaller p
    (trial P: folds of 1-2 samples per class gave a fold-averaged AUC of 1 on 8 of 40 shuffled labellings, so the
    adjusted p could not go below 0.22); None otherwise."""
    ceiling = SCORE_CEILING.get(entry.get("metric"))
    observed = entry.get("permutation_observed")
    adjusted = choice_adjustment(summary, entry)
    shared = adjusted is not None and adjusted["method"] == "max-statistic"
    reached = entry.get("permutations_reaching_adjusted" if shared else "permutations_reaching")
    drawn = adjusted["permutations"] if shared else entry.get("permutations_drawn")
    if ceiling is None or observed is None or float(observed) < ceiling - 1e-9 or not reached or not drawn:
        return None
    name = esc(METRIC_NAMES.get(entry.get("metric"), entry.get("metric")))
    which = (f"{int(reached)} of the {int(drawn)} shuffled labellings behind the adjusted p (each scored by its best "
             "set)" if shared else f"{int(reached)} of {int(drawn)} permutations")
    return (f"the tested {name} is {ceiling:g}, its highest value, and {which} reached it too: with so few samples per "
            f"test fold shuffled labels often score the highest value too, so data separated even better could not "
            f"give a smaller {'adjusted ' if shared else ''}p (fewer folds, <code>models: outer_splits</code>, or more "
            "samples make the test finer)")


def covariates_beat_chance(summary: dict, name: str) -> str | None:
    """A clause (HTML) for a verdict resting on set ``name`` (not the covariates-only baseline) when the sheet's
    covariates alone beat chance too (``chance_shortfall`` is None for the summary's ``covariates`` set): the outcome
    follows them, so the separation may be theirs (trial V: a genotype run 4 then 4 in each batch, injection_order
    as a covariate: covariates AUC 0.89, p 0.0099, and the verdict a clean "separates"); None otherwise."""
    base = (summary.get("feature_sets") or {}).get("covariates")
    if name == "covariates" or not base or base.get("value") is None or base.get("permutation_p") is None \
            or chance_shortfall(base):
        return None
    entry = (summary.get("feature_sets") or {}).get(name) or {}
    # trial AB: "partly or wholly theirs" beside measurements whose interval lay far above the covariates' score
    above = entry.get("ci_low") is not None and float(entry["ci_low"]) > float(base["value"])
    return (f"<b>the covariates alone ({esc(covariate_names(summary))}) also beat chance</b> ({metric_name(base)} "
            f"{float(base['value']):.2f}, {interval_text(base.get('ci_low'), base.get('ci_high'), 2)}, permutation p "
            f"= {float(base['permutation_p']):.3g}): the outcome follows them, so "
            + ("part of this result may be theirs (the best set's interval lies above their score)" if above else
               "this result may be partly or wholly theirs")
            + "; check the design (Warnings) before reading it as the measurements'")


def adds_nothing_shown(summary: dict, name: str, entry: dict) -> bool:
    """True when the covariates alone score above chance and set ``name``'s interval (the set holds the covariates
    too) reaches down to their score: nothing shows that the measurements add to them (trial Z: "predicts score (R²
    0.92 ...; best set: embedding)" where the covariates alone reached 0.92 [0.87, 0.95]; trial AB: covariates AUC
    1.00 at p 0.079 beside the same AUC of the best set, and sacurine's BMI, R² 0.21 of the measurements beside 0.11
    of age and gender alone). Not a test of the difference: "not shown", never "no difference"."""
    base = (summary.get("feature_sets") or {}).get("covariates")
    chance = CHANCE.get(str(entry.get("metric")))
    if name == "covariates" or not base or base.get("value") is None or entry.get("ci_low") is None or chance is None:
        return False
    return float(base["value"]) > chance and float(entry["ci_low"]) <= float(base["value"])


def covariates_alone_clause(summary: dict, name: str) -> str | None:
    """A clause giving the covariates-alone score beside a verdict on set ``name`` when the baseline does not beat
    chance (trial Z: "predicts bmi (R² 0.21 ...)" with no word that age and gender alone reached 0.11); None when
    there is no baseline, it has no score, or it beats chance (``covariates_beat_chance`` says that)."""
    base = (summary.get("feature_sets") or {}).get("covariates")
    if name == "covariates" or not base or base.get("value") is None or covariates_beat_chance(summary, name):
        return None
    chance = CHANCE.get(str(base.get("metric")))
    # trial BE: "AUC 0.12" of an unrelated age read as strongly anti-predictive
    below = (" (a score this far below chance is an artefact of cross-validating few samples, not an inverse "
             "effect: see the models section)" if chance is not None and chance - float(base["value"]) >= WELL_BELOW
             and base.get("metric") != "r2" else "")
    return (f"the covariates alone ({esc(covariate_names(summary))}) reach {metric_name(base)} "
            f"{float(base['value']):.2f} ({interval_text(base.get('ci_low'), base.get('ci_high'), 2)}), "
            f"not shown to beat chance{below}")


def covariates_clause(summary: dict, name: str) -> str | None:
    """``covariates_beat_chance``, else ``covariates_alone_clause``: what the covariates alone reach, beside a
    verdict on set ``name``."""
    return covariates_beat_chance(summary, name) or covariates_alone_clause(summary, name)
