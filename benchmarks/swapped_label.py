"""Benchmark: does the report's note on samples "placed confidently in the other class" name a mislabelled sample,
and how often does it name a correctly labelled one?

The note (``ms2study.reporting.outcomes.contradicting_samples``) names a sample of a binary outcome whose mean
out-of-fold score for its own class is at most 0.1, by the best feature set when that set beats chance, or by two
or more feature sets. It tells the user to check the sample sheet, so a false alarm costs a lab a needless search
and a miss leaves a swapped vial in the tests. Trial BF saw it name a correctly labelled control where the best set
passed only before the adjustment for the choice among the sets ("suggestive only"); the rule now also asks the
best set to pass after that adjustment. This script measures both rules on studies where the truth is known.

Studies come from the realistic simulation profile, features built from the simulation's truth as in
``biology.py`` (its ``feature_sets``: the pooled embedding, the bag of chemistry, the feature matrix and binned
spectra, each from the corrected intensities), modelled by ``modelling.evaluate.model_outcome`` with the models
stage's defaults (nested CV, 5 repeats, label permutations with the max-statistic adjustment for the choice of
set). Per seed: one study with an effect (``n_changed`` compounds of one class ``fold`` times higher in the 8 cases
of 16 samples) modelled twice, with its labels as simulated and with one sample's label flipped (a case entered as
a control or the reverse, chosen by the seed), and one null study (no effect) with its labels as simulated.

Reported per rule (``choice_adjusted`` True, the shipped rule, and False, the rule before): the share of studies
with correct labels in which some sample is named (false alarm; effect and null studies apart), the share of
flipped studies in which the flipped sample is named (found), and those in which another sample is named.
Usage: ``PYTHONPATH=workflow python benchmarks/swapped_label.py --out R.json [--seeds 4] [--settings 12:3 30:3]``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "workflow"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import biology
from machine import machine_record

from ms2study.modelling.evaluate import PREDICTIONS_SCHEMA, model_outcome
from ms2study.reporting import cautions, choice
from ms2study.reporting.outcomes import contradicting_samples, own_class_scores
from ms2study.stages import models

N_SAMPLES = 16
RULES = {"choice_adjusted": True, "before_trial_bf": False}


def named_samples(note: str | None) -> list[str]:
    """The sample ids a ``contradicting_samples`` note names (none for None)."""
    if not note:
        return []
    listed = note.split(": ", 1)[1].split(". A swapped label", 1)[0]
    return [part.split(" (entered as", 1)[0].strip() for part in listed.split("; ") if "(entered as" in part]


def fit(known, sets: dict[str, pl.DataFrame], sheet: pl.DataFrame, flipped: str | None = None) -> dict:
    """The models stage's result for ``sheet``'s labels, what each rule's note names, and by the best set the own-class
    score of the ``flipped`` sample and the lowest of the others (how far a threshold would have to move)."""
    params = models.merge_params({"feature_sets": list(sets)})
    out = model_outcome(sheet.with_columns(pl.col("age").cast(pl.Utf8)), sets, biology.OUTCOME, params)
    summary = out["summary"]
    predictions = pl.DataFrame(out["predictions"], schema=PREDICTIONS_SCHEMA)  # as the stage writes them
    best = cautions.best_feature_set(summary)
    adjusted = choice.choice_adjustment(summary, best[1]) if best else None
    ids, _, scores = own_class_scores(predictions, best[0]) if best else ([], [], [])
    own = dict(zip(ids, [round(float(v), 3) for v in scores]))
    others = [v for s, v in own.items() if s != flipped]
    return {
        "flipped_own_score": own.get(flipped) if flipped else None,
        "flipped_lowest": bool(flipped and others and own.get(flipped, 1.0) < min(others)),
        "lowest_other_own_score": min(others) if others else None,
        "own_scores": own,  # every sample's, by the best set (for other rules than the note's)
        "best_set": best[0] if best else None,
        "best_auc": round(float(best[1]["value"]), 3) if best and best[1].get("value") is not None else None,
        "best_p": best[1].get("permutation_p") if best else None,
        "best_p_adjusted": adjusted["p"] if adjusted else None,
        "best_beats_chance": bool(best and cautions.chance_shortfall(best[1]) is None),
        "named": {rule: named_samples(contradicting_samples(predictions, summary, choice_adjusted=flag))
                  for rule, flag in RULES.items()},
    }


def flipped_sheet(sheet: pl.DataFrame, seed: int) -> tuple[pl.DataFrame, str]:
    """``sheet`` with one study sample's group flipped (case <-> control), chosen by ``seed``; and its id."""
    ids = sheet["sample_id"].to_list()
    sample = ids[int(np.random.default_rng(seed).integers(len(ids)))]
    flip = pl.when(pl.col("group") == "case").then(pl.lit("control")).otherwise(pl.lit("case"))
    return sheet.with_columns(pl.when(pl.col("sample_id") == sample).then(flip).otherwise(pl.col("group"))
                              .alias("group")), sample


def run(seeds: int, settings: list[tuple[int, float]]) -> dict:
    prototypes = biology.library_prototypes(biology.PROTOTYPES["seed"], biology.PROTOTYPES["k"])
    rows = []
    for seed in range(seeds):
        for n_changed, fold in [*settings, (0, 1.0)]:
            started = time.perf_counter()
            study_seed = 70_001 + 1_009 * seed + 101 * n_changed + int(10 * fold)
            known = biology.simulate.simulate_features(N_SAMPLES, seed=study_seed,
                                                       params={"fold_change": fold, "n_changed": n_changed})
            sets = biology.feature_sets(known, prototypes)
            variants = [("as simulated", known.samples, None)]
            if n_changed:
                sheet, sample = flipped_sheet(known.samples, study_seed)
                variants.append(("one label flipped", sheet, sample))
            for labels, sheet, sample in variants:
                row = {"seed": study_seed, "n_changed": n_changed, "fold_change": fold, "labels": labels,
                       "flipped": sample, **fit(known, sets, sheet, sample)}
                row["seconds"] = round(time.perf_counter() - started, 1)
                rows.append(row)
                print(json.dumps(row), flush=True)
    return {"rows": rows, "summary": summarize(rows)}


def summarize(rows: list[dict]) -> dict:
    """Per rule: false alarms (a sample named where every label is right), found (the flipped sample named) and
    others named in flipped studies, as counts and shares."""
    def share(group: list[dict], hits: list[bool]) -> dict:
        k = sum(hits)
        return {"count": k, "of": len(group), "share": round(k / len(group), 3) if group else None}

    out: dict = {}
    right = [r for r in rows if r["flipped"] is None]
    flipped = [r for r in rows if r["flipped"] is not None]
    effect, null = [r for r in right if r["n_changed"]], [r for r in right if not r["n_changed"]]
    for rule in RULES:
        out[rule] = {
            "false_alarm_effect_studies": share(effect, [bool(r["named"][rule]) for r in effect]),
            "false_alarm_null_studies": share(null, [bool(r["named"][rule]) for r in null]),
            "flipped_sample_named": share(flipped, [r["flipped"] in r["named"][rule] for r in flipped]),
            "other_sample_named_in_flipped_studies": share(
                flipped, [any(s != r["flipped"] for s in r["named"][rule]) for r in flipped]),
        }
    out["scores"] = {  # by the best set: would any threshold tell the flipped sample from correctly labelled ones?
        "flipped_own_score": sorted(r["flipped_own_score"] for r in flipped),
        "flipped_scored_lowest": sum(r["flipped_lowest"] for r in flipped),
        "lowest_own_score_correct_labels": sorted(r["lowest_other_own_score"] for r in right),
    }
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--settings", nargs="+", default=["12:3", "30:3"],
                        help="effect settings as N_CHANGED:FOLD (16 samples, 8 cases)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    settings = [(int(s.split(":")[0]), float(s.split(":")[1])) for s in args.settings]
    started = time.perf_counter()
    result = run(args.seeds, settings)
    result.update({"n_samples": N_SAMPLES, "settings": args.settings, "seeds": args.seeds,
                   "machine": machine_record(), "seconds": round(time.perf_counter() - started, 1)})
    args.out.write_text(json.dumps(result, indent=1))
    print(json.dumps(result["summary"], indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
