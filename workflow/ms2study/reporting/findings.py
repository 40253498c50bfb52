"""The report's "Main findings" box, at the top of the page: per outcome, the models' verdict (the best feature set's
score with its 95 % interval and permutation p, said plainly), the features and compound groups that differ at
q < 0.05 with the first few accepted identifications among them, the chemical classes enriched at q < 0.05; and
the study's accepted identifications by Schymanski level. Every number is read from the pipeline's own outputs
(the models' ``summary.json``, the differential and enrichment tables, ``identifications.parquet``); nothing is
computed here that a stage did not compute. Each statement links to the section with the details, and the
warnings that bear on it (``html.Caution.concerns``) are named beside it with a link to their box. May import
``ms2study.modelling`` and the other ``reporting`` modules.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import polars as pl

from ms2study.identification.confidence import LOW_COSINE
from ms2study.modelling.differential import SIGNIFICANCE, read_summary, significant_compounds
from ms2study.modelling.metrics import CHANCE
from ms2study.reporting import cautions, copies, marks
from ms2study.reporting.cautions import P_SMALL, best_feature_set, chance_shortfall
from ms2study.reporting.choice import (adds_nothing_shown, adjustment_text, candidate_sets, choice_adjustment,
                                       covariates_clause, permutation_resolution, score_ceiling)
from ms2study.reporting.classfindings import enrichment_finding, q_text
from ms2study.reporting.collect import LEVEL2_UNASSESSED, UNSEARCHED_LABEL, DifferentialFiles, OutcomeFiles
from ms2study.reporting.detectable import detectable_class_text, detectable_slope_text, detectable_text
from ms2study.reporting.html import (PROCESSING, covariate_names, esc, interval_text, kind_of, p_value_text,
                                     warning_anchor)
from ms2study.reporting.modeltext import (METRIC_NAMES, covariates_only, pooled_auc_clause, reached_text, repeats,
                                         tested_clause, tested_score, wide_interval_note)
from ms2study.reporting.qcrsd import left_out_clause
from ms2study.reporting.shift import SHIFT_MIN_LOG2, SHIFT_SHARE, shift_size  # noqa: F401
from ms2study.reporting.shift import shift_sentence as _shift_sentence
from ms2study.reporting.unaccepted import refusal_reasons

# How many accepted identifications among an outcome's hits are named in the box (the rest are counted).
TOP_NAMED = 3
LEVELS = {2: "probable structure", 3: "tentative: isomers plausible"}  # Schymanski et al. 2014


def _what(summary: dict) -> tuple[str, str]:
    """(what a model that beats chance does, what 'no evidence' is of) for the outcome type, in words."""
    outcome = esc(summary.get("outcome"))
    if summary.get("type") == "continuous":
        return f"predicts {outcome}", f"no evidence that the data predict {outcome}"
    classes = [str(c) for c in summary.get("classes") or summary.get("class_counts") or []]
    positive = summary.get("positive_class")
    if summary.get("type") == "binary" and positive is not None and len(classes) == 2:
        reference = next(c for c in classes if c != str(positive))
        if summary.get("paired_by"):  # a paired design's model compares each subject with itself
            n = summary.get("n_subjects")
            return (f"separates {esc(positive)} from {esc(reference)} within subjects (paired, {n} subjects)",
                    "no evidence of separation within subjects")
        return f"separates {esc(positive)} from {esc(reference)} samples", "no evidence of separation"
    return f"separates the classes ({esc(', '.join(classes))})", "no evidence of separation"


def p_text(entry: dict) -> str:
    """A feature set's permutation p as the box prints it: three significant digits (0.0495, never rounded up to
    0.050 across the 0.05 line), the score it tests where that is not the value shown (the first repeat's, beside
    a mean over repeats: "0.45 for the first repeat's AUC 0.70", ``modeltext.tested_clause``) and, where the summary
    records them, how many permutations reached that score of how many drawn."""
    p = float(entry["permutation_p"])
    drawn, reached = entry.get("permutations_drawn"), entry.get("permutations_reaching")
    # stopped early, p is reached / drawn (Besag & Clifford 1991), not (1 + reached) / (1 + drawn) (a trial asked)
    early = ("; drawing stopped once that many had, so p = reached / drawn" if entry.get("permutations_stopped_early")
             else "")
    return p_value_text(p) + tested_clause(entry) + (
        f" ({int(reached)} of {int(drawn)} permutations reached {reached_text(entry)}{early})" if drawn else "")


def model_verdict(summary: dict) -> tuple[str, str | None]:
    """(the verdict as HTML, the feature set it rests on or None). Beating chance follows the models section's
    rule (``cautions.chance_shortfall``: p < 0.05 and the 95 % interval above chance); a model that does not and
    whose interval reaches chance (e.g. an AUC interval spanning 0.5) is "no evidence", unless its p adjusted for the
    choice among the feature sets (``choice.choice_adjustment``) is below 0.05, which makes it "inconclusive"; one
    whose interval lies
    above chance but whose p is not small is "not shown to beat chance", with the reason. A "suggestive only" or
    "not shown to beat chance" verdict, or a pass, that the permutations' resolution decides says so and what to raise
    (``choice.permutation_resolution``)."""
    if summary.get("status") != "done":
        return f"not modelled: {esc(summary.get('reason'))}", None
    best = best_feature_set(summary)
    if best is None:
        return "no feature set could be scored", None
    name, entry = best
    metric = entry.get("metric")
    value, low, high, p = (entry.get(k) for k in ("value", "ci_low", "ci_high", "permutation_p"))
    numbers = f"{esc(METRIC_NAMES.get(metric, metric))} {float(value):.2f}{pooled_auc_clause(entry)}"
    if low is not None and high is not None:
        chance_value = CHANCE.get(metric)
        # a bound that two decimals would round onto chance (R² 0.0043 as "0.00") keeps a third (a trial)
        digits = 3 if chance_value is not None and round(float(low), 2) == chance_value != float(low) else 2
        # an interval that says nothing (reaches chance, spans half the AUC's range): say why rather than leave it
        numbers += f", {interval_text(float(low), float(high), digits)}{wide_interval_note(entry)}"
    if p is not None:
        numbers += f", permutation p = {p_text(entry)}"
        null_mean = entry.get("permutation_null_mean")
        if null_mean is not None:  # trial P: "AUC 0.80" on a null study read as signal
            tested = tested_score(entry)
            # with repeats the null is that of one repeat, so it is set beside the first repeat's score (trial AH
            # compared a null study's mean 0.96 with the null's 0.48, where the tested score was 0.80)
            numbers += (f"; on shuffled labels this procedure scores {float(null_mean):.2f} on average"
                        + (f" (one repeat, against the first repeat's {float(tested):.2f} here)"
                           if repeats(entry) > 1 and tested is not None else ""))
    n_sets = len(candidate_sets(summary))
    baseline = " and the covariates-alone baseline" if "covariates" in (summary.get("feature_sets") or {}) else ""
    numbers += f"; best of {n_sets} feature set{'s' if n_sets != 1 else ''}{baseline}: <b>{esc(name)}</b>"
    adjusted = choice_adjustment(summary, entry)
    if adjusted is not None:  # the set is chosen after seeing all of them: say what that costs
        numbers += f"; {adjustment_text(adjusted)}"
    does, none = _what(summary)
    why = chance_shortfall(entry)
    chance = CHANCE.get(metric)
    # a verdict that fails on p alone, near the smallest p the permutations allow, says that they decide it
    limited = permutation_resolution(summary, name) or score_ceiling(summary, entry)
    limited = f"; {limited}" if limited else ""
    alone = covariates_only(summary, name, why is None) or covariates_clause(summary, name)  # the covariates alone
    alone = f"; {alone}" if alone else ""
    limited += alone
    if why is None and adds_nothing_shown(summary, name, entry):  # trial Z: the covariates' R² credited to a set
        return (f"<b>not shown to add to the covariates</b>: with them the best set {does} ({numbers}), but its "
                f"interval reaches down to what the covariates alone score{limited}"), name
    if why is None and adjusted is not None and adjusted["p"] >= P_SMALL:  # trial BL: why came 900 characters later
        cap = " (the most this study's size allows: see the end)" if score_ceiling(summary, entry) else ""
        return (f"<b>suggestive only</b>{cap}: the best set {does} on its own test, but not once the choice among "
                f"{n_sets} sets is adjusted for ({numbers}){limited}"), name
    if why is None:  # a pass that one more reaching permutation would undo says so (permutation_resolution)
        # trial AQ: "predicts bmi" at R² 0.17 read as strong; the share of the variance says how much
        share = (f", explaining {float(value):.0%} of its variance in samples the model was not fitted on "
                 f"({1 - float(value):.0%} unexplained)" if metric == "r2" else "")
        return f"<b>{does}</b>{share} ({numbers}){limited}", name
    if chance is None or low is None or float(low) <= chance:
        if p is not None and chance is not None and low is not None and float(value) > chance and (
                adjusted["p"] if adjusted is not None else float(p)) < P_SMALL:
            # the permutations say it beats chance (after the choice among the sets), the interval does not rule
            # chance out: not "no evidence" (a fresh user's age model: p 0.0099, adjusted 0.040, interval to -0.51);
            # a score not above chance is never said to predict (trial T: R² -0.02 at p 0.0488 on shuffled ages)
            return (f"<b>inconclusive</b>: the permutation test says the best set {does}, but its interval reaches "
                    f"chance ({numbers}){limited}"), name
        if p is None or float(p) >= P_SMALL or float(value) <= chance:
            return f"<b>{none}</b> ({numbers}){limited}", name
        # its own p passes, the adjusted one and the interval do not: not the nulls' "no evidence" (trial P: a
        # planted 2.5x effect at p 0.0495 read "no evidence", a milder study's p 0.069 "not shown to beat chance");
        # the adjusted p is a reason too (trial BH: the interval alone named beside p 0.02 read as a near pass)
        if adjusted is not None and adjusted["p"] >= P_SMALL:
            why += (f"; its p adjusted for the choice among the {n_sets} sets, {p_value_text(adjusted['p'])}, is "
                    f"not below {P_SMALL:g}")
    if adjusted is not None and chance is not None and low is not None and float(low) > chance:
        # an interval above chance beside a p that fails: a trial read 0.58-1.00 on a null study
        limited += (f"; the interval above chance, like the {esc(METRIC_NAMES.get(metric, metric))}, is that of the set "
                    f"picked as the best of {n_sets} and is not adjusted for that choice: the adjusted permutation p "
                    "decides")
    return f"<b>not shown to beat chance</b>: {esc(why)} ({numbers}){limited}", name


def beside(warnings: list[str], key: str) -> str:
    """Links to the warnings (not the processing notes) that bear on the finding ``key`` ("section:outcome", or a
    section alone): a ``Caution`` with a label whose ``concerns`` name the key or its section. Empty if none."""
    section = key.split(":")[0]
    links = [f'<a href="#{warning_anchor(warnings, w)}">{esc(w.label)}</a>' for w in warnings
             if getattr(w, "label", "") and kind_of(w) != PROCESSING
             and any(c in (key, section) for c in getattr(w, "concerns", ()))]
    return f' <span class="caution-ref">⚠ caution: {"; ".join(links)}</span>' if links else ""


def _accepted(ident: pl.DataFrame | None) -> pl.DataFrame | None:
    """The accepted rows of identifications.parquet (consensus_id, name, msi_level), None without the table."""
    if ident is None or not {"consensus_id", "accepted", "name", "msi_level"} <= set(ident.columns):
        return None
    return ident.filter(pl.col("accepted").fill_null(False)).select(
        pl.col("consensus_id").cast(pl.Utf8), "name", pl.col("msi_level").cast(pl.Int64))


def _samples_left_out(summary: dict) -> str:
    """The clause saying on which samples the differential tests ran when some lacked a covariate value (a trial read
    "8 control, 8 case" over a test of 7 against 7 that lost every hit), or ""."""
    dropped = summary.get("excluded_missing_covariate") or []
    if not dropped:
        return ""
    counts = ", ".join(f"{v} {esc(k)}" for k, v in (summary.get("class_counts") or {}).items())
    shown = ", ".join(esc(s) for s in dropped[:6]) + (", ..." if len(dropped) > 6 else "")
    return (f", on {summary.get('n_samples')} samples{' (' + counts + ')' if counts else ''}: {len(dropped)} without "
            f"a covariate value left out ({shown})")


def differential_finding(files: DifferentialFiles, ident: pl.DataFrame | None,
                         with_ms2: set[str] | None = None, fdr: float | None = None) -> tuple[str, str, str | None]:
    """(outcome, the differential statement as HTML, the enrichment statement or None) of one differential table:
    how many tested features and compound groups have q < ``SIGNIFICANCE`` and in which direction, how many of them
    have MS/MS (``with_ms2``: consensus ids, ``cautions.features_with_ms2``; None: not said) and how many rest partly
    on imputed values (``cautions.relies_on_imputation``), and the first
    ``TOP_NAMED`` compounds among them (by q) that carry an accepted identification (``ident``,
    identifications.parquet; without it the table's own identification columns, which hold accepted ones only)
    with their Schymanski level, and the library matches that missed acceptance only by their q-value on hits
    without a name (``near_misses``; ``fdr``: the annotate FDR, None: not said). Raises nothing for an absent table:
    the statement says it is missing."""
    path = Path(files.table)
    if not path.exists():
        return path.stem, "the differential table is missing", None
    summary = read_summary(path)
    outcome = str(summary.get("outcome") or path.stem)
    table = pl.read_parquet(path)
    tested = table.filter(pl.col("tested").fill_null(False)) if "tested" in table.columns else table
    hits = tested.filter(pl.col("q_value") < SIGNIFICANCE).sort("q_value")
    groups = significant_compounds(tested) if "compound_group" in tested.columns else hits.height
    adjusted = covariate_names(summary)
    untested = [n for n in summary.get("notes") or [] if str(n).startswith("not tested: ")]
    if not tested.height and untested:  # a trial read "0 of 0 tested features differ" beside a collinear covariate
        return outcome, f"no feature could be tested: {esc(untested[0].removeprefix('not tested: '))}", None
    coeluting = _coeluting(summary)
    correction_path = path.parent.parent / "correction.json"  # results/study/differential/X -> results/study
    correction = json.loads(correction_path.read_text()) if correction_path.is_file() else None
    text = (f"<b>{hits.height}</b> of {tested.height} tested features differ at q &lt; {SIGNIFICANCE:g}"
            + (f" ({groups} compound group{'' if groups == 1 else 's'}{coeluting})"
               if groups != hits.height or coeluting else "")
            + (f", adjusted for {esc(adjusted)}" if adjusted else "") + _samples_left_out(summary)
            + left_out_clause(summary, correction))
    effect = {"binary": "log2_fold_change", "continuous": "log2_effect_per_unit"}.get(str(summary.get("type")))
    effect = effect if effect in hits.columns else None
    if hits.height and effect:
        up = int((hits[effect] > 0).sum())
        higher = (f"higher in {esc(summary.get('positive_class'))}" if effect == "log2_fold_change"
                  else f"rising with {esc(outcome)}")
        text += f": {up} {higher}, {hits.height - up} {'lower' if effect == 'log2_fold_change' else 'falling'}"
    elif hits.height and {"highest_class", "lowest_class"} <= set(hits.columns):  # multiclass: which way
        pairs = (hits.group_by("highest_class", "lowest_class").len()
                 .sort("len", "lowest_class", descending=[True, False]))
        tops = pairs.group_by("highest_class").agg(pl.col("len").sum()).sort("len", "highest_class",
                                                                            descending=[True, False])
        text += ": " + ", ".join(
            f"{n} highest in {esc(h)} (lowest in " + ", ".join(
                f"{esc(lo)}: {k}" for lo, k in pairs.filter(pl.col("highest_class") == h)
                .select("lowest_class", "len").iter_rows()) + ")" for h, n in tops.iter_rows())
    if hits.height and with_ms2 is not None:
        k = sum(1 for c in hits["consensus_id"].cast(pl.Utf8).to_list() if c in with_ms2)
        text += f"; MS/MS for {k} of them (only these can be identified)"
    if hits.height and "detection_rate" in hits.columns:
        imputed = int(cautions.relies_on_imputation(hits).sum())
        if imputed:  # their fold change and p rest partly on values put in for unmeasured cells
            text += (f"; {imputed} of them rest{'s' if imputed == 1 else ''} partly on imputed values (not measured in "
                     "every sample even after gap filling)")
    text += (". " + _named(hits, ident, effect, table) + near_misses(hits, ident, table, fdr)) if hits.height else "."
    if not hits.height and summary.get("detectable_log2_fold_change"):  # a trial: what could this study have found?
        text += " " + detectable_text(float(summary["detectable_log2_fold_change"]), summary)
    elif not hits.height and summary.get("detectable_log2_effect_per_unit"):  # trial Z: continuous outcomes too
        text += " " + detectable_slope_text(float(summary["detectable_log2_effect_per_unit"]), summary)
    elif not hits.height and summary.get("type") == "multiclass":  # a trial: 3x in two arms, lost in the F-test
        shift = summary.get("detectable_log2_class_shift")  # trial BH: what could the F-test have found?
        text += (f" {detectable_class_text(float(shift), summary)}" if shift else "") + (
            " An F-test over all classes spreads its power over every difference between them; when the classes are "
            "ordered (doses) or share a role (treated arms), a two-class outcome (e.g. control against the rest) or "
            "the dose as a continuous outcome tests that contrast directly: add it as a sheet column and an outcome.")
    # the class table's shift-removed column holds values where classes were tested with label permutations
    shown = bool(summary.get("n_classes_tested")) and bool(summary.get("class_permutations"))
    text += _shift_sentence(summary, correction, shown)
    return outcome, text, enrichment_finding(files.enrichment, summary.get("positive_class")
                                              if summary.get("type") == "binary" else None, tested)


def _coeluting(summary: dict) -> str:
    """"; perhaps as few as N compounds: ..." when hit groups co-elute and follow each other within the classes
    (``modelling.coelution``: an in-source fragment or an ion the grouping does not list counts as a compound), or
    ""."""
    found = summary.get("coeluting_hits")
    if not found or not found.get("pairs"):
        return ""
    pairs = found["pairs"]
    shown = ", ".join(f"{esc(p['partner_id'])} with {esc(p['consensus_id'])} (r {p['r']:.2f})" for p in pairs[:3])
    return (f"; perhaps as few as {found['n_compounds_at_least']} compounds: {len(pairs)} pair"
            f"{'s' if len(pairs) > 1 else ''} of hit groups co-elute and follow each other within the classes "
            f"({shown}{', ...' if len(pairs) > 3 else ''}), as an in-source fragment or an unlisted ion follows its "
            "compound")


# how the box names a hit's effect (a trial read "log2 effect +0.21" for a continuous outcome with no unit)
EFFECT_WORDS = {"log2_fold_change": "log2 FC", "log2_effect_per_unit": "log2 effect per unit"}


def _named(hits: pl.DataFrame, ident: pl.DataFrame | None, effect: str | None,
           table: pl.DataFrame | None = None) -> str:
    """The sentence naming the hits' accepted identifications (first ``TOP_NAMED`` compounds by q). A hit without
    one of its own whose compound group (``table``: the whole differential table, tested or not) holds a feature
    with an accepted identification is named by that one, and the sentence says on which feature (a fresh user's
    planted uracil was a hit only through its [M+Na]+ feature, the name on its [M+H]+ feature at q 0.0504)."""
    accepted = _accepted(ident)
    via = pl.lit(None, dtype=pl.Utf8).alias("via")
    if accepted is not None:
        keys = hits.select(pl.col("consensus_id").cast(pl.Utf8), "q_value", *([effect] if effect else []),
                           *[c for c in ("effect_ci_low", "effect_ci_high", "compound_group") if c in hits.columns])
        named = keys.join(accepted, on="consensus_id").with_columns(via)
        if table is not None and {"compound_group", "consensus_id"} <= set(table.columns) \
                and "compound_group" in keys.columns:
            members = table.select(pl.col("consensus_id").cast(pl.Utf8).alias("via"), "compound_group").join(
                accepted.rename({"consensus_id": "via"}), on="via").unique("compound_group", keep="first")
            by_group = keys.filter(pl.col("compound_group").is_not_null()).join(
                named.select("consensus_id"), on="consensus_id", how="anti").join(members, on="compound_group")
            named = pl.concat([named, by_group.select(named.columns)])
        named = named.drop("compound_group", strict=False)
    elif {"name", "msi_level"} <= set(hits.columns):
        named = hits.filter(pl.col("name").is_not_null() & pl.col("msi_level").is_not_null()).with_columns(via)
    else:
        return "No identifications were passed to the report."
    n_features, n_via = named.height, int(named["via"].is_not_null().sum())
    # best q first; on a tie the larger change, then the name; a name on its own feature when that one is a hit
    keys = ["q_value", *([pl.col(effect).abs()] if effect else []), "name"]
    order = [False, *([True] if effect else []), False]
    named = named.sort([pl.col("via").is_not_null(), *keys], descending=[False, *order], nulls_last=True).unique(
        "name", keep="first", maintain_order=True).sort(keys, descending=order, nulls_last=True)
    if not named.height:
        return "None of them carries an accepted identification."
    shown, on_names = [], marks.name_marks(ident)  # trial BM: a hit's marks were in the tables only
    for r in named.head(TOP_NAMED).iter_rows(named=True):
        level, marked = int(r["msi_level"]), on_names.get(str(r.get("via") or r["consensus_id"]))
        shown.append(f"<b>{esc(r['name'])}</b> (Schymanski level {level}"
                     + (f", {LEVELS[level]}" if level in LEVELS else "")
                     + (f"; marked: {esc(marked)}" if marked else "")
                     + (f"; named on {esc(r['via'])} of its compound group, the hit is {esc(r['consensus_id'])}"
                        if r.get("via") else "") + f"; differential q = {q_text(r['q_value'])}"
                     + (f", {EFFECT_WORDS.get(effect, 'log2 effect')} {r[effect]:+.2f}"
                        if effect and r.get(effect) is not None else "")
                     + (f" (95 % interval {r['effect_ci_low']:+.2f} to {r['effect_ci_high']:+.2f})"
                        if effect and r.get(effect) is not None and r.get("effect_ci_low") is not None else "") + ")")
    more = named.height - len(shown)
    return (f"{n_features} of the {hits.height} carr{'ies' if n_features == 1 else 'y'} an accepted identification"
            + (f" ({n_via} through another feature of {'its' if n_via == 1 else 'their'} compound group)" if n_via
               else "") + ": "
            + "; ".join(shown) + (f"; and {more} more compound{'s' if more > 1 else ''}" if more > 0 else "") + ".")


NEAR_MISS_FACTOR = 5  # a refused match with q up to this many times the FDR is named as a candidate for a hit


def near_misses(hits: pl.DataFrame, ident: pl.DataFrame | None, table: pl.DataFrame | None,
                fdr: float | None) -> str:
    """" N hit group(s) without a name hold a library match refused only for its q-value: NAME on C (q, cosine)..."
    for the compound groups of ``hits`` (rows of the differential ``table``) none of whose features carries an
    accepted identification, where some feature's best match (``ident``) was refused only because its q-value lies
    above ``fdr`` (``unaccepted.refusal_reasons``) and at most ``NEAR_MISS_FACTOR`` times it, with a cosine of
    ``identification.confidence.LOW_COSINE`` or more; "" otherwise. A trial:
    the study's largest planted change (4 of 11 hits) had nicotinamide at cosine 0.99 and q 0.0115 against the FDR
    0.01, and nothing said so. Said as a candidate: its q-value is what was measured, and it is above the FDR."""
    if ident is None or fdr is None or not {"accepted", "q_value", "name", "consensus_id"} <= set(ident.columns):
        return ""
    groups = (table if table is not None and "compound_group" in table.columns else hits)
    if "compound_group" not in groups.columns or "compound_group" not in hits.columns:
        return ""
    members = groups.select(pl.col("consensus_id").cast(pl.Utf8), "compound_group").filter(
        pl.col("compound_group").is_in(hits["compound_group"].drop_nulls().to_list()))
    ident = ident.with_columns(pl.col("consensus_id").cast(pl.Utf8))
    named = set(members.join(ident.filter(pl.col("accepted").fill_null(False)), on="consensus_id")["compound_group"]
                .to_list())
    refused = members.filter(~pl.col("compound_group").is_in(list(named))).join(
        ident.filter(~pl.col("accepted").fill_null(False)), on="consensus_id")
    if not refused.height:
        return ""
    # and its spectra alike (trial O: Tiamulin at cosine 0.03, q 0.03, would have been named on a hit)
    alike = pl.col("best_cosine").fill_null(0.0) >= LOW_COSINE if "best_cosine" in refused.columns else pl.lit(True)
    refused = refused.with_columns(refusal_reasons(refused, fdr)).filter(
        (pl.col("reason") == f"q above the FDR {fdr:g}") & (pl.col("q_value") <= NEAR_MISS_FACTOR * fdr) & alike).sort(
        "q_value").unique("compound_group", keep="first", maintain_order=True)
    if not refused.height:
        return ""
    said = [f"{esc(r['name'])} on {esc(r['consensus_id'])} (q {r['q_value']:.3g}"
            + (f", cosine {r['best_cosine']:.2f}" if r.get("best_cosine") is not None else "") + ")"
            for r in refused.head(TOP_NAMED).iter_rows(named=True)]
    n = refused.height
    return (f" {n} hit group{'s' if n > 1 else ''} without a name hold{'s' if n == 1 else ''} a library match "
            f"refused only for its q-value (above the FDR {fdr:g}): " + "; ".join(said)
            + (f"; and {n - len(said)} more" if n > len(said) else "")
            + " &mdash; candidates, not identifications.")


def identification_finding(ident: pl.DataFrame | None, fdr: float | None, warnings: Sequence[str] = ()) -> str:
    """The statement on the study's accepted identifications: how many consensus features, at level 2 and 3. With
    none matched and a ``warnings`` caution that MS/MS of a polarity was not searched (``collect.scan_warnings``),
    that is named as the cause."""
    if ident is not None and ident.height == 0:  # a second trial: "0 accepted (q <= 0.01)" for a study without library
        unsearched = [w.label.removesuffix(UNSEARCHED_LABEL) for w in warnings
                      if str(getattr(w, "label", "")).endswith(UNSEARCHED_LABEL)]
        if unsearched:  # a trial: a negative-only library against positive runs got the generic sentence below
            return (f"no consensus feature has a library match: the library holds no {' or '.join(unsearched)}-mode "
                    f"spectrum, so the runs' {' and '.join(unsearched)} MS/MS was not searched; add a library of that "
                    'polarity to <code>library:</code> (<a href="#identifications">Identifications</a>)')
        return ("no consensus feature has a library match: no library is configured, no MS/MS spectrum was mapped to "
                'a feature, or none had a candidate (<a href="#identifications">Identifications</a>)')
    accepted = _accepted(ident)
    if accepted is None:
        return "no identifications table"
    if ident is not None and ident.height and "q_value" in ident.columns and ident["q_value"].is_null().all():
        # annotate confidence: none (a fresh user's trial: "0 accepted (q <= 0.01)" beside a table of matches)
        return (f"<b>{ident.height}</b> consensus features have a best library match, listed without q-values "
                "(<code>annotate: confidence: none</code>): none is an accepted identification, and how many are "
                'right is not measured (<a href="#identifications">Identifications</a>)')
    # what q bounds (trial BH read "q ≤ 0.01" beside 4.8 % wrong level-3 structures of the right formula as 1 %)
    at = (f"q ≤ {fdr:g}" if fdr is not None else "the configured <code>annotate: fdr</code>") + (
        ", a bound on wrong formulas; the level says whether the structure is supported")
    by_level = {lvl: int((accepted["msi_level"] == lvl).sum()) for lvl in LEVELS}
    other = accepted.height - sum(by_level.values())
    why, none2 = "", accepted.height and not by_level.get(2) and by_level.get(3)
    if none2 and any(getattr(w, "label", "") == LEVEL2_UNASSESSED for w in warnings):  # trial AW: a false reason
        why = (" &mdash; none at level 2: level 2 was not assessed, too few of the study's features could be scored "
               '(see the warnings; <a href="#identifications">Identifications</a>)')
    elif none2 and "isomer_inchikeys" in ident.columns:
        level3 = ident.filter(pl.col("accepted").fill_null(False) & (pl.col("msi_level") == 3))
        named = cautions.library_isomers(level3)
        with_isomer, unseen = int((named > 1).sum()), int((named <= 1).sum())
        why = (" &mdash; none at level 2: " + "; ".join(part for part in (
            marks.plural(with_isomer, "has another structure of its formula among its library candidates",
                         "have another structure of their formula among their library candidates")
            if with_isomer else "",
            marks.plural(unseen, "has", "have") + " none among the candidates, but the structure evidence does not "
            "rule out an isomer (one the library lacks included)" if unseen else "") if part)
            + ' (<a href="#identifications">Identifications</a>)')
    return (f"<b>{accepted.height}</b> consensus features carry an accepted identification ({at}): "
            + ", ".join(f"{n} at Schymanski level {lvl} ({LEVELS[lvl]})" for lvl, n in by_level.items())
            + (f", {other} at another level" if other else "") + why + _marked(ident))


def _marked(ident: pl.DataFrame) -> str:
    """The accepted identifications whose name the q-value does not cover (``marks.mark_flags``: a possible
    in-source fragment, one compound named at several retention times, a feature grouped as another ion on mass and
    RT alone, a background ion), as a clause naming only the kinds present, and that an unmarked name is not
    confirmed (trial Y: on a realistic batch study, 18 of 21 wrong structures at q <= 0.01, all isomers of the right
    formula at level 3, carried no mark; on the demo-like studies before, most wrong names had one)."""
    accepted = ident.filter(pl.col("accepted").fill_null(False))
    flags = {words: flag for words, flag in marks.mark_flags(accepted).items() if flag.any()}
    withdrawn = ident.select(marks.withdrawn(ident.columns).sum()).item()
    gone = ("; " + marks.plural(withdrawn, "more matched at this FDR but was withdrawn as an in-source fragment (its "
                                "intensity follows a co-eluting heavier ion's)",
                                "more matched at this FDR but were withdrawn as in-source fragments (their intensity "
                                "follows a co-eluting heavier ion's)")) if withdrawn else ""
    if not flags:
        return gone
    counts = pl.DataFrame([flag.alias(str(i)) for i, flag in enumerate(flags.values())])
    per_name = counts.sum_horizontal()
    marked, several = int((per_name > 0).sum()), int((per_name > 1).sum())
    kinds = [marks.plural(int(flag.sum()), one, many) for (one, many), flag in flags.items()]
    if several:
        kinds.append(f"{several} with {'both' if len(flags) == 2 else 'more than one'}")
    return (gone + f"; <b>{marked}</b> of them {'carries' if marked == 1 else 'carry'} a mark the q-value does not "
            f"cover ({', '.join(kinds)}): the q-value measures "
            "confusion with the library's spectra, not with compounds it lacks, so check those first; a name without "
            "a mark is not thereby confirmed: at level 3 another structure of the same formula stays possible, and on "
            "a realistic simulated study with known truth most such wrong names carried no mark "
            '(<a href="#identifications">Identifications</a>)')


def findings_section(models: Sequence[OutcomeFiles], differential: Sequence[DifferentialFiles],
                     ident: pl.DataFrame | None, fdr: float | None, warnings: list[str],
                     with_ms2: set[str] | None = None) -> str:
    """The main findings box (HTML) for the outcomes of ``models`` and ``differential`` (models' first) and the
    identifications (``with_ms2``: the consensus features with MS/MS, for the hits' share; None: not said). A verdict
    whose p is at its floor first adds a caution (``cautions.floor_warning``): call this after every other warning."""
    verdicts: dict[str, tuple[dict, str, str | None]] = {}
    for files in models:
        path = Path(files.summary)
        if not path.exists():
            continue
        summary = json.loads(path.read_text(encoding="utf-8"))
        outcome = str(summary.get("outcome", path.parent.name))
        text, rests_on = model_verdict(summary)
        if rests_on is not None:  # a caution on the conclusions where one permutation decides the verdict
            decided = permutation_resolution(summary, rests_on) is not None
            cautions.floor_warning(summary, rests_on, outcome, warnings, decided)
        verdicts[outcome] = (summary, text, rests_on)
    differences = {o: (t, e) for o, t, e in (differential_finding(f, ident, with_ms2, fdr)
                                                         for f in differential)}
    parts = []
    # runs that are copies of one injection (reporting.copies): the counts below count it several times (trial AS:
    # "2886 of 2886 tested features differ" led the box on two injections of one QC, each copied)
    copy = ("<b>not evidence</b>: the study counts copies of one injection as separate runs (see the warnings), so "
            "this overstates what it shows: ") if copies.copied(warnings) else ""
    for outcome in list(verdicts) + [o for o in differences if o not in verdicts]:
        summary = verdicts.get(outcome, ({}, "", None))[0]
        counts = ", ".join(f"{v} {esc(k)}" for k, v in (summary.get("class_counts") or {}).items())
        if counts and summary.get("subjects"):  # runs of one subject averaged (modelling.subjects)
            counts += " subjects, each the mean of its runs"
        elif counts and summary.get("paired_by"):  # trial BJ read "10 before, 10 after" as 20 people
            counts += f"; paired: {summary.get('n_subjects')} subjects, each compared with itself"
        kind = esc(summary.get("type") or "")
        parts.append(f"<h3>Outcome: {esc(outcome)}" + (f" ({kind}{': ' + counts if counts else ''})" if kind else "")
                     + "</h3><ul>")
        if outcome in verdicts:
            parts.append(f'<li><a href="#models">Models</a>: {copy}{verdicts[outcome][1]}.'
                         f"{beside(warnings, f'models:{outcome}')}</li>")
        if outcome in differences:
            text, enriched = differences[outcome]
            parts.append(f'<li><a href="#differential">What differs</a>: {copy}{text}'
                         f"{beside(warnings, f'differential:{outcome}')}</li>")
            if enriched:
                parts.append(f'<li><a href="#differential">Chemical classes</a>: {enriched}.'
                             f"{beside(warnings, f'differential:{outcome}')}</li>")
        parts.append("</ul>")
    parts.append(f'<p><a href="#identifications">Identifications</a>: {identification_finding(ident, fdr, warnings)}.'
                 f"{beside(warnings, 'identifications')}</p>")
    return ('<div class="findings">' + "".join(parts) + '<p class="note">Numbers as the stages computed them; each '
            "link leads to the details, and ⚠ to a warning that bears on the finding.</p></div>")
