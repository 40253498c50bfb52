"""The report's main findings box and its ranked warnings (``reporting.findings``, ``reporting.html``), from a
scientist's reading of a spike-in study's report: the planted class was deep under 'What differs' with no summary up
front, and library-cleaning losses sat beside real cautions such as few samples per class or a local intensity
effect behind the hits."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from ms2study.modelling.differential import SIGNIFICANCE, write_table
from ms2study.reporting import cautions, collect, findings
from ms2study.reporting.collect import DifferentialFiles, OutcomeFiles, ReportInputs
from ms2study.reporting.html import DOUBT, PROCESSING, QUALITY, Caution, ranked, warnings_html
from ms2study.reporting.shift import shift_notable
from ms2study.stages.report import build_report

IDS = [f"S{i:02d}" for i in range(1, 9)]
N = 12
PLANTED = "Organic compounds; Benzenoids; Phenylmethylamines"
LOCAL = ("3 of 3 significant compound groups lie together at m/z 100-120: a local intensity effect (ion "
         "suppression) moves neighbours together")


def _entry(value: float, low: float, high: float, p: float) -> dict:
    return {"metric": "roc_auc", "value": value, "ci_low": low, "ci_high": high, "permutation_p": p,
            "permutation_null_mean": 0.5, "n_samples": 8, "n_features": N, "outer_splits": 4, "outer_repeats": 5}


def _summary(**sets: dict) -> dict:
    return {"outcome": "group", "type": "binary", "status": "done", "n_samples": 8, "classes": ["control", "case"],
            "positive_class": "case", "class_counts": {"control": 4, "case": 4}, "params": {"n_permutations": 99},
            "feature_sets": sets}


SUMMARY = _summary(embedding=_entry(0.40, 0.10, 0.80, 0.70), features=_entry(0.97, 0.72, 1.0, 0.02),
                   binned_spectra=_entry(0.60, 0.20, 1.0, 0.30))
# C1-C4 differ (q < 0.05); C1 and C2 are one compound group. alpha (C1) is accepted at level 2, gamma (C4) at level
# 3; beta (C3) has a library match that was not accepted, so it must not be named.
Q = [0.5, 0.001, 0.002, 0.01, 0.03] + [0.7] * (N - 5)
NAMES = [None, "alpha", "alpha", "beta", "gamma"] + [None] * (N - 5)
ACCEPTED = [None, True, True, False, True] + [None] * (N - 5)
LEVEL = [None, 2, 2, 3, 3] + [None] * (N - 5)


def _study(root: Path, summary: dict = SUMMARY, local: bool = True) -> ReportInputs:
    study = root / "study"
    (study / "models" / "group").mkdir(parents=True)
    (study / "differential").mkdir()
    pl.DataFrame({"sample_id": IDS, "file": [f"{s}.mzML" for s in IDS], "group": ["control"] * 4 + ["case"] * 4}
                 ).write_csv(study / "samples.tsv", separator="\t")
    ids = [f"C{i}" for i in range(N)]
    values = np.random.default_rng(0).uniform(1e4, 1e6, size=(N, len(IDS)))
    matrix = pl.DataFrame({"consensus_id": ids, "mz": np.linspace(100, 400, N), "rt_s": np.linspace(60, 600, N),
                           "n_detected": [len(IDS)] * N, **{s: values[:, j] for j, s in enumerate(IDS)}})
    matrix.write_parquet(study / "feature_matrix.parquet")
    # adduct labels on mass and RT alone: a processing note
    matrix.with_columns(pl.Series("adduct", ["[M+H]+", "[M+Na]+"] + [None] * (N - 2)),
                        pl.Series("adduct_p_value", [None] * N, dtype=pl.Float64)
                        ).write_parquet(study / "feature_matrix_corrected.parquet")
    (study / "models" / "group" / "summary.json").write_text(json.dumps(summary))
    shown = [n if a else None for n, a in zip(NAMES, ACCEPTED)]  # the stage joins accepted identifications only
    table = pl.DataFrame({
        "consensus_id": ids, "mz": matrix["mz"], "rt_s": matrix["rt_s"],
        "compound_group": [None, "G1", "G1"] + [None] * (N - 3), "name": shown,
        "msi_level": [lvl if n else None for lvl, n in zip(LEVEL, shown)], "outcome": ["group"] * N,
        "log2_fold_change": [0.1, 2.0, 1.9, -1.5, 1.2] + [0.0] * (N - 5), "p_value": [q / 10 for q in Q],
        # gamma (C4) has an imputed value: no interval
        "effect_ci_low": [-0.5, 1.2, 1.1, -2.5, None] + [-0.5] * (N - 5),
        "effect_ci_high": [0.7, 2.8, 2.7, -0.5, None] + [0.5] * (N - 5),
        "q_value": Q, "tested": [True] * N, "detection_rate": [1.0] * N},
        schema_overrides={"compound_group": pl.Utf8, "name": pl.Utf8, "msi_level": pl.Int8})
    write_table(table, study / "differential" / "group.parquet", {
        "outcome": "group", "type": "binary", "positive_class": "case", "reference_class": "control",
        "class_counts": {"control": 4, "case": 4}, "test": "welch_t", "n_samples": 8,
        "warnings": [LOCAL] if local else []})
    enrichment = pl.DataFrame({
        "class_path": ["Organic compounds; Benzenoids", PLANTED, "Organic compounds; Lipids"],
        "class_name": ["Benzenoids", "Phenylmethylamines", "Lipids"], "class_level": [2, 3, 2],
        "n_compounds": [5, 3, 4], "n_significant": [3, 3, 0], "n_up": [2, 3, 0], "n_down": [1, 0, 0],
        "direction": ["mixed", "up", "none"], "p_value": [0.004, 0.001, 0.6], "q_value": [0.006, 0.003, 0.6]})
    write_table(enrichment, study / "differential" / "group_enrichment.parquet", {"alpha": 0.05})
    pl.DataFrame({"consensus_id": ids, "name": NAMES, "msi_level": LEVEL, "accepted": ACCEPTED},
                 schema_overrides={"name": pl.Utf8, "msi_level": pl.Int8, "accepted": pl.Boolean}
                 ).write_parquet(study / "identifications.parquet")
    return ReportInputs(sheet=study / "samples.tsv", feature_matrix=study / "feature_matrix.parquet",
                        identifications=study / "identifications.parquet",
                        models=[OutcomeFiles(study / "models" / "group" / "summary.json")],
                        differential=[DifferentialFiles(study / "differential" / "group.parquet",
                                                        study / "differential" / "group_enrichment.parquet")],
                        corrected_matrix=study / "feature_matrix_corrected.parquet")


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> str:
    root = tmp_path_factory.mktemp("findings")
    build_report(_study(root), root / "report.html", {"config_used": {"annotate": {"fdr": 0.01}}})
    return (root / "report.html").read_text(encoding="utf-8")


def _box(text: str) -> str:
    return text.split('id="findings"')[1].split('id="warnings"')[0]


def test_the_box_comes_first_and_its_numbers_are_the_inputs(report: str) -> None:
    assert report.index('id="findings"') < report.index('id="warnings"') < report.index('id="overview"')
    assert '<a href="#findings">Main findings</a>' in report
    box = _box(report)
    best = SUMMARY["feature_sets"]["features"]
    assert ("<b>suggestive only</b>: the best set separates case from control samples on its own test, but not "
            "once the choice among 3 sets is adjusted for (AUC "
            f"{best['value']:.2f}, 95 % interval {best['ci_low']:.2f} to {best['ci_high']:.2f}, permutation p = "
            f"{best['permutation_p']:.3g} for the first repeat's AUC; "
            + (f"on shuffled labels this procedure scores {best['permutation_null_mean']:.2f} on average; "
               if best.get("permutation_null_mean") is not None else "")
            + "best of 3 feature sets: <b>features</b>; picked as the best of 3 after seeing them, so its p is not "
              "adjusted for the choice (Bonferroni over the 3: 0.06))") in box
    q = np.array(Q)
    hits = int((q < SIGNIFICANCE).sum())
    assert (f"<b>{hits}</b> of {N} tested features differ at q &lt; 0.05 ({hits - 1} compound groups): 3 higher in "
            "case, 1 lower") in box
    # the named compounds: accepted only, best q first, with their Schymanski level and the differential q
    assert "3 of the 4 carry an accepted identification: <b>alpha</b> (Schymanski level 2, probable structure; " \
           "differential q = 0.001, log2 FC +2.00 (95 % interval +1.20 to +2.80)); <b>gamma</b> (Schymanski " \
           "level 3, tentative: isomers plausible; differential q = 0.03, log2 FC +1.20)" in box
    assert "beta" not in box
    # nested enriched classes said once, the most specific first; the class that is not enriched is not named
    assert ("2 of 3 chemical classes enriched at q &lt; 0.05: <b>Phenylmethylamines</b> (q = 0.003; 3 of 3 "
            "compounds at p &lt; 0.05, 3 higher in case, 0 lower), with its enriched parent class Benzenoids") in box
    assert "Lipids" not in box
    n2, n3 = sum(1 for a, lvl in zip(ACCEPTED, LEVEL) if a and lvl == 2), sum(
        1 for a, lvl in zip(ACCEPTED, LEVEL) if a and lvl == 3)
    assert (f"<b>{n2 + n3}</b> consensus features carry an accepted identification (q ≤ 0.01, a bound on wrong "
            f"formulas; the level says whether the structure is supported): {n2} at Schymanski level 2 (probable "
            f"structure), {n3} at Schymanski level 3") in box
    # each statement links to its section
    for anchor in ("models", "differential", "identifications"):
        assert f'<a href="#{anchor}">' in box and f'id="{anchor}"' in report


def test_a_caution_is_named_beside_the_finding_it_concerns(report: str) -> None:
    box = _box(report)
    differs = box.split("What differs")[1].split("</li>")[0]
    link = re.search(r'<a href="#(warning-\d+)">local intensity effect</a>', differs)
    assert link, differs
    assert "few samples per class" in differs and "local intensity effect" not in box.split("What differs")[0]
    # the link leads to the locality warning's box, among the cautions on the conclusions
    warnings = report.split('id="warnings"')[1].split('id="overview"')[0]
    target = re.search(rf'<div class="warning" id="{link.group(1)}">(.*?)</div>', warnings).group(1)
    assert "local intensity effect (ion suppression)" in target
    doubt = warnings.split('id="warnings-doubt"')[1].split('id="warnings-quality"')[0]
    assert f'id="{link.group(1)}"' in doubt
    # processing notes are never named beside a finding
    assert "adduct" not in box


def test_warnings_are_ranked_and_processing_notes_are_collapsed(report: str) -> None:
    warnings = report.split('id="warnings"')[1].split('id="overview"')[0]
    doubt = warnings.index("Cautions on the conclusions")
    quality = warnings.index("Data quality")
    processing = warnings.index('<details class="processing"')
    assert doubt < quality < processing
    top, notes = warnings[:processing], warnings[processing:]
    for caution in ("local intensity effect", "fewer than 10 per class"):
        assert caution in warnings[doubt:quality]
    assert "missing result table" in warnings[quality:processing]  # no per-sample tables given: data quality
    assert "adduct and isotope labels rest on mass and RT alone" in notes
    assert "adduct and isotope labels" not in top and "No warnings." not in warnings


def test_ranking_order_and_when_there_are_no_warnings() -> None:
    notes = [Caution("dropped records", PROCESSING), "plain note", Caution("local effect", DOUBT, "x", ("a",)),
             Caution("calibration detail", PROCESSING), Caution("few samples", DOUBT)]
    assert [str(w) for w in ranked(notes)] == ["local effect", "few samples", "plain note", "dropped records",
                                               "calibration detail"]
    text = warnings_html(notes)
    assert text.index("local effect") < text.index("plain note") < text.index("<details") < text.index("dropped")
    assert 'id="warning-1"><strong>Warning:</strong> local effect' in text
    # a processing note, often a confirmation of how the data were read, is a note (trial BD)
    assert '<strong>Note:</strong> dropped records' in text and '<strong>Warning:</strong> plain note' in text
    # only processing notes: "No warnings." is said, and the notes stay collapsed below it
    only = warnings_html([Caution("dropped records", PROCESSING)])
    assert only.index("No warnings.") < only.index("<details") < only.index("dropped records")
    assert "No warnings." not in warnings_html(["a data-quality note"])
    assert warnings_html([]) == '<div class="ok">No warnings.</div>'
    with pytest.raises(ValueError, match="unknown warning kind"):
        Caution("x", "severe")
    assert Caution("y").kind == QUALITY


def test_no_evidence_when_the_interval_reaches_chance() -> None:
    spans = _summary(features=_entry(0.70, 0.40, 0.95, 0.30))
    text, on = findings.model_verdict(spans)
    assert text.startswith("<b>no evidence of separation</b> (AUC 0.70, 95 % interval 0.40 to 0.95")
    assert on == "features"
    # a small p with an interval that reaches chance is not "no evidence" (a fresh user's age model: p 0.0099,
    # Bonferroni over 4 sets 0.040, interval from -0.51): inconclusive, said with both numbers
    small_p = _summary(features=_entry(0.70, 0.40, 0.95, 0.03))
    assert findings.model_verdict(small_p)[0].startswith(
        "<b>inconclusive</b>: the permutation test says the best set separates")
    four = {"outcome": "age", "type": "continuous", "status": "done", "feature_sets": {
        k: {"metric": "r2", "value": v, "ci_low": -0.51, "ci_high": 0.66, "permutation_p": p}
        for k, v, p in (("a", 0.29, 0.0099), ("b", 0.1, 0.3), ("c", 0.0, 0.5), ("d", -0.1, 0.7))}}
    assert findings.model_verdict(four)[0].startswith("<b>inconclusive</b>: the permutation test says the best set "
                                                      "predicts age, but its interval reaches chance (R² 0.29")
    # its own p passes, the adjusted one and the interval do not: not shown to beat chance, not the nulls' "no
    # evidence" (trial P: a planted 2.5x effect at p 0.0495, adjusted 0.22, read "no evidence")
    four["feature_sets"]["a"]["permutation_p"] = 0.02  # Bonferroni over the 4: 0.08
    assert findings.model_verdict(four)[0].startswith("<b>not shown to beat chance</b>: its 95 % interval -0.510 to "
                                                      "0.660 does not lie above chance (0); its p adjusted for the "
                                                      "choice among the 4 sets, 0.08, is not below 0.05 (R² 0.29")
    assert "is that of the set picked" not in findings.model_verdict(four)[0]  # its interval reaches chance
    # the chance level of the procedure stands beside the score (trial P: "AUC 0.80" on a null study read as signal)
    null = _summary(features={**_entry(0.80, 0.33, 1.0, 0.475), "permutation_null_mean": 0.545})
    assert "; on shuffled labels this procedure scores 0.55 on average; best of" in findings.model_verdict(null)[0]
    # trial AH: with repeats the shown AUC is their mean (0.96), the null that of one repeat: set beside the first's
    repeated = _summary(features={**_entry(0.96, 0.50, 1.0, 0.275), "permutation_null_mean": 0.48,
                                  "outer_repeats": 5, "permutation_observed": 0.80})
    assert ("; on shuffled labels this procedure scores 0.48 on average (one repeat, against the first repeat's 0.80 "
            "here); best of") in findings.model_verdict(repeated)[0]
    # a tested AUC of 1 that permutations reach too: the p cannot fall lower, said (trial P: folds of 1-2 per class)
    ceiling = _summary(features={**_entry(0.92, 0.50, 1.0, 0.0495), "permutation_observed": 1.0,
                                 "permutations_drawn": 100, "permutations_reaching": 4})
    assert ("the tested AUC is 1, its highest value, and 4 of 100 permutations reached it too"
            in findings.model_verdict(ceiling)[0])
    assert "data separated even better could not give a smaller p" in findings.model_verdict(ceiling)[0]
    # trial BL (the demo, 6 + 6): "suggestive only" for a planted effect, the reason 900 characters later; a verdict
    # the score's ceiling holds back says so at its head
    capped = {**_four_sets({**_counted(1.0, 0.69, 0, 40), "permutation_observed": 1.0, "permutation_p_adjusted": 8 / 41,
                            "permutations_reaching_adjusted": 7}, n=40),
              "p_adjustment": {"method": "max-statistic over the feature sets", "permutations": 40, "feature_sets": 4}}
    assert findings.model_verdict(capped)[0].startswith(
        "<b>suggestive only</b> (the most this study's size allows: see the end): the best set separates")
    assert "(the most this study's size allows" not in findings.model_verdict(
        {**capped, "feature_sets": {**capped["feature_sets"], "features": {
            **capped["feature_sets"]["features"], "permutation_observed": 0.9}}})[0]
    # a score not above chance is never "inconclusive ... predicts" (trial T: R² -0.02, p 0.0488, shuffled ages)
    flat = {"outcome": "age", "type": "continuous", "status": "done", "feature_sets": {
        "table": {"metric": "r2", "value": -0.02, "ci_low": -0.13, "ci_high": 0.04, "permutation_p": 0.0488}}}
    assert findings.model_verdict(flat)[0].startswith("<b>no evidence that the data predict age</b>")
    # the covariates alone beat chance too: said beside a measurements' pass (trial V: a genotype run 4 then 4 in
    # each batch, injection_order adjusted for, covariates AUC 0.89 p 0.0099, and a clean "separates")
    design = _summary(features=_entry(1.0, 0.8, 1.0, 0.0099), covariates=_entry(0.89, 0.7, 1.0, 0.0099))
    design["params"]["covariates"] = ["batch", "injection_order"]
    text = findings.model_verdict(design)[0]
    # trial Z: a set whose score does not exceed the covariates' own interval is not said to predict (the covariates
    # alone reached R² 0.92 [0.87, 0.95] and the verdict read "predicts score (R² 0.92 ...; best set: embedding)")
    assert text.startswith("<b>not shown to add to the covariates</b>: with them the best set separates case from "
                           "control samples (AUC 1.00")
    assert ("also beat chance</b> (AUC 0.89, 95 % interval 0.70 to 1.00, permutation p = 0.0099)" in text
            and "its interval reaches down to what the covariates alone score" in text)
    # the baseline is not a set the verdict chose among: nothing to adjust for with one measured set (trial V)
    assert "best of 1 feature set and the covariates-alone baseline: <b>features</b>" in text
    assert "picked as the best" not in text
    beyond = findings.model_verdict(_summary(features=_entry(0.97, 0.9, 1.0, 0.0099),
                                             covariates=_entry(0.70, 0.55, 0.85, 0.0099)))[0]
    assert beyond.startswith("<b>separates") and "also beat chance" in beyond
    assert "part of this result may be theirs (the best set's interval lies above their score)" in beyond
    # trial AB: covariates scoring as high as the best set, though not beating chance themselves (p 0.079)
    tied = findings.model_verdict(_summary(features=_entry(1.0, 0.69, 1.0, 0.04),
                                           covariates=_entry(1.0, 0.69, 1.0, 0.079)))[0]
    assert tied.startswith("<b>not shown to add to the covariates</b>")
    weak = findings.model_verdict(
        _summary(features=_entry(1.0, 0.8, 1.0, 0.0099), covariates=_entry(0.6, 0.3, 0.9, 0.3)))[0]
    assert "also beat chance" not in weak and weak.startswith("<b>separates")
    # trial Z: "predicts bmi (R² 0.21 ...)" with no word that age and gender alone reached 0.11: said beside it
    assert "the covariates alone (batch, injection_order) reach AUC 0.60 (95 % interval 0.30 to 0.90), not shown to " \
           "beat chance" in findings.model_verdict(
               {**_summary(features=_entry(1.0, 0.8, 1.0, 0.0099), covariates=_entry(0.6, 0.3, 0.9, 0.3)),
                "covariates": ["cov:batch", "cov:injection_order"]})[0]
    # trial BE: an unrelated age "reach AUC 0.12" read as strongly anti-predictive: said to be an artefact
    low = findings.model_verdict({**_summary(features=_entry(1.0, 0.8, 1.0, 0.0099),
                                             covariates=_entry(0.12, 0.0, 0.5, 0.9)), "covariates": ["cov:age"]})[0]
    assert ("reach AUC 0.12 (95 % interval 0.00 to 0.50), not shown to beat chance (a score this far below chance "
            "is an artefact of cross-validating few samples, not an inverse effect") in low
    assert "artefact" not in weak
    below = _summary(features={**_entry(0.92, 0.50, 1.0, 0.0495), "permutation_observed": 0.96,
                               "permutations_drawn": 100, "permutations_reaching": 4})
    assert "its highest value" not in findings.model_verdict(below)[0]
    above = _summary(features=_entry(0.80, 0.55, 0.98, 0.20))
    assert findings.model_verdict(above)[0].startswith("<b>not shown to beat chance</b>: its permutation p = 0.2 is")
    # a trial's null study printed "AUC 0.96, 95 % interval 0.58 to 1.00": the interval is the picked set's too
    two = _summary(features=_entry(0.80, 0.55, 0.98, 0.20), embedding=_entry(0.6, 0.2, 0.9, 0.5))
    assert ("the interval above chance, like the AUC, is that of the set picked as the best of 2 and is not adjusted "
            "for that choice") in findings.model_verdict(two)[0]
    assert "is that of the set picked" not in findings.model_verdict(above)[0]  # one set: nothing was picked
    # a set that beats chance is preferred over a higher one that does not
    both = _summary(a=_entry(0.90, 0.40, 1.0, 0.30), b=_entry(0.85, 0.60, 1.0, 0.01))
    assert findings.best_feature_set(both)[0] == "b"
    continuous = {"outcome": "age", "type": "continuous", "status": "done", "feature_sets": {
        "features": {"metric": "r2", "value": -0.1, "ci_low": -0.5, "ci_high": 0.2, "permutation_p": 0.6}}}
    assert findings.model_verdict(continuous)[0].startswith("<b>no evidence that the data predict age</b> (R² -0.10")
    # trial AQ: "predicts bmi" at R² 0.17 read as a strong model: the share of the variance stands beside it
    weak_r2 = {**continuous, "feature_sets": {"features": {"metric": "r2", "value": 0.17, "ci_low": 0.05,
                                                           "ci_high": 0.3, "permutation_p": 0.001}}}
    assert findings.model_verdict(weak_r2)[0].startswith(
        "<b>predicts age</b>, explaining 17% of its variance in samples the model was not fitted on (83% unexplained)")
    assert findings.model_verdict({"status": "skipped", "reason": "one class"})[0] == "not modelled: one class"


def test_compounds_are_named_only_when_accepted(tmp_path: Path) -> None:
    inputs = _study(tmp_path, local=False)
    ident = pl.read_parquet(inputs.identifications).with_columns(pl.lit(False).alias("accepted"))
    _, text, _ = findings.differential_finding(inputs.differential[0], ident)
    assert "None of them carries an accepted identification." in text
    assert not re.search(r"alpha|gamma|Schymanski", text)
    # without the identifications table, the table's own (accepted-only) columns name them
    _, text, _ = findings.differential_finding(inputs.differential[0], None, {"C1"})
    assert "MS/MS for 1 of them (only these can be identified)" in text and "<b>alpha</b>" in text
    assert "beta" not in text


def test_a_permutation_floor_is_a_caution_on_the_verdict(tmp_path: Path) -> None:
    at_floor = _summary(features=_entry(0.98, 0.72, 1.0, 1 / 21))
    at_floor["params"] = {"n_permutations": 20}
    warnings: list[str] = []
    box = findings.findings_section([_write(tmp_path / "a", at_floor)], [], None, None, warnings)
    assert len(warnings) == 1 and warnings[0].kind == DOUBT
    assert "the smallest 20 permutations can give" in warnings[0] and "the verdict rests on this floor" in warnings[0]
    assert '<a href="#warning-1">permutation p at its floor</a>' in box
    # 100 permutations: a floor of 0.0099 leaves the verdict standing; a data-quality note, not a caution on it
    fine = _summary(features=_entry(0.98, 0.72, 1.0, 1 / 101))
    fine["params"] = {"n_permutations": 100}
    warnings = []
    findings.findings_section([_write(tmp_path / "f", fine)], [], None, None, warnings)
    assert len(warnings) == 1 and warnings[0].kind == QUALITY and "permutation p at its floor" == warnings[0].label
    # trial BH: the same floor beside a p adjusted for the choice among 4 sets that one more reaching permutation
    # would undo (0.0488 = 2/41): a caution on the conclusions, which the end-of-run summary prints
    fragile = {**_four_sets({**_counted(0.90, 0.59, 0, 100), "permutation_p_adjusted": 2 / 41,
                             "permutations_reaching_adjusted": 1}, n=100),
               "p_adjustment": {"method": "max-statistic over the feature sets", "permutations": 40, "feature_sets": 4}}
    warnings = []
    box = findings.findings_section([_write(tmp_path / "g", fragile)], [], None, None, warnings)
    assert "one more reaching permutation would undo the verdict" in box, box
    assert len(warnings) == 1 and warnings[0].kind == DOUBT and "the verdict rests on this floor" in warnings[0]
    coarse = _summary(features=_entry(0.98, 0.72, 1.0, 1 / 11))
    coarse["params"] = {"n_permutations": 10}
    warnings = []
    findings.findings_section([_write(tmp_path / "b", coarse)], [], None, None, warnings)
    assert "cannot give p &lt; 0.05, and no model can be shown to beat chance" in warnings[0]
    warnings = []
    findings.findings_section([_write(tmp_path / "c", SUMMARY)], [], None, None, warnings)
    assert warnings == []  # p = 0.02 with 99 permutations: above its floor
    unresolved = {**at_floor, "params": {"n_permutations": "auto"}}
    warnings = []
    findings.findings_section([_write(tmp_path / "d", unresolved)], [], None, None, warnings)
    assert warnings == []  # not a count: no floor is claimed


def _write(folder: Path, summary: dict) -> OutcomeFiles:
    folder.mkdir(parents=True)
    (folder / "summary.json").write_text(json.dumps(summary))
    return OutcomeFiles(folder / "summary.json")


def test_library_losses_name_the_index_once_and_are_processing_notes(tmp_path: Path) -> None:
    """The report read 'library library: 1732 entries left without peaks' when the index was named 'library'."""
    folder = tmp_path / "library"
    folder.mkdir()
    (folder / "manifest.json").write_text(json.dumps({
        "sources": [{"path": "/data/library.mgf"}], "n_entries": 10, "n_spectra": 8, "n_empty_after_cleaning": 2,
        "empty_first": [{"file": "library.mgf", "entry": 3, "identifier": "MB3", "reason": "no peaks left"}]}))
    warnings: list[str] = []
    text = collect.library_summary([folder], warnings)
    assert "The library index <code>library</code> (library.mgf): 10 entries read, 8 spectra indexed." in text
    assert len(warnings) == 1 and warnings[0].kind == PROCESSING
    assert warnings[0].startswith("library records dropped while building the library index <code>library</code> "
                                  "(library.mgf): 2 entries left without peaks")
    assert not re.search(r"library:? (<[^>]+>)?library\b", re.sub(r"<[^>]+>", "", warnings[0]))
    # how a whole file was read is said in the report too, not only in the index log (not UTF-8)
    manifest = json.loads((folder / "manifest.json").read_text())
    (folder / "manifest.json").write_text(json.dumps({**manifest, "file_notes": [
        {"file": "library.mgf", "note": "not UTF-8; read as Windows-1252 (Latin-1) (first at line 4: 'M\u00fcller')"}]}))
    text = collect.library_summary([folder], [])
    assert "library.mgf: not UTF-8; read as Windows-1252 (Latin-1)" in text


def test_an_unreadable_library_record_is_a_caution_naming_its_compound(tmp_path: Path) -> None:
    """Trial BI: one 'n/a' peak line dropped the whole sarcosine record of the user's library; its isomer L-alanine
    took the feature's name at q 3e-6, and only a processing note named the record, by its id. The record is named
    with its compound in the index log and the manifest, and it is a caution on the identifications, which the
    end-of-run summary prints."""
    from ms2study.library.index import index_library

    lib = tmp_path / "library.mgf"
    lib.write_text("BEGIN IONS\nTITLE=SIMC001\nNAME=L-alanine\nINCHIKEY=QNAYBMKLOCPYGJ-REOHCLBHSA-N\nPEPMASS=90.0550\n"
                   "CHARGE=1+\n44.05 100\n72.04 20\nEND IONS\nBEGIN IONS\nTITLE=SIMC003\nNAME=sarcosine\n"
                   "INCHIKEY=FSYKKLYZXJSNPZ-UHFFFAOYSA-N\nPEPMASS=90.0550\nCHARGE=1+\n44.05 100\nn/a 5\nEND IONS\n")
    index = index_library(lib, tmp_path / "library")
    assert len(index) == 1 and index.manifest["skipped_first"][0]["name"] == "sarcosine"
    warnings: list = []
    text = collect.library_summary([tmp_path / "library"], warnings)
    assert "SIMC003 &#x27;sarcosine&#x27; (library.mgf, entry 2: unreadable peak values)" in text, text
    assert len(warnings) == 1 and warnings[0].kind == DOUBT and warnings[0].concerns == ("identifications",)
    assert warnings[0].startswith("1 record(s) of the library index <code>library</code> (library.mgf) could not be "
                                  "read and were never searched (unreadable peak values: 1), first: SIMC003 "
                                  "&#x27;sarcosine&#x27;")


def test_an_outcome_not_modelled_is_a_caution_on_the_conclusions(tmp_path: Path) -> None:
    """A skipped outcome (too few samples) means a conclusion is missing, not a detail of data quality."""
    from ms2study.reporting import outcomes
    from ms2study.reporting.html import kind_of

    path = tmp_path / "models" / "group" / "summary.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"outcome": "group", "type": "binary", "status": "skipped",
                                "reason": "fewer than 3 samples in a class", "feature_sets": {}}))
    warnings: list[str] = []
    outcomes.models_section([OutcomeFiles(path, None)], pl.DataFrame({"sample_id": ["S1"], "group": ["a"]}), {},
                            warnings)
    skipped = [w for w in warnings if "was not modelled" in w]
    assert len(skipped) == 1 and kind_of(skipped[0]) == DOUBT and skipped[0].concerns == ("models:group",)


def test_the_verdicts_p_is_never_rounded_across_the_line_and_a_tie_names_one_set() -> None:
    """Trial findings: p = 5/101 = 0.0495 was printed 0.050 beside the rule "p < 0.05"; and with three sets at AUC
    1.00 the box named one set and the few-samples warning another. Now p keeps three significant digits with its
    permutation counts, and both name the set with the smallest p among the tied best."""
    tied = _summary(embedding=_entry(1.0, 0.69, 1.0, 0.13), features={**_entry(1.0, 0.69, 1.0, 5 / 101),
                    "permutations_drawn": 100, "permutations_reaching": 4}, binned_spectra=_entry(1.0, 0.69, 1.0, 0.2))
    text, on = findings.model_verdict(tied)
    assert on == "features" and ("permutation p = 0.0495 for the first repeat's AUC (4 of 100 permutations reached "
                                 "it)") in text
    # stopped early (a trial read 10 of 70 -> 0.143 beside 8 of 100 -> 0.0891 as an error): the rule is said
    assert findings.p_text({"permutation_p": 10 / 70, "permutations_drawn": 70, "permutations_reaching": 10,
                            "permutations_stopped_early": True}) == (
        "0.143 (10 of 70 permutations reached it; drawing stopped once that many had, so p = reached / drawn)")
    assert "Bonferroni over the 3: 0.149" in text and text.startswith("<b>suggestive only</b>")
    # a p that survives the adjustment gives the plain verdict
    strong = _summary(features=_entry(0.97, 0.72, 1.0, 0.01), embedding=_entry(0.4, 0.1, 0.8, 0.7))
    assert findings.model_verdict(strong)[0].startswith("<b>separates case from control samples</b> (AUC 0.97, 95 %")
    # trial AY: "AUC 1.00" from folds of 2-3 samples while a mislabelled case ranked below two controls: the pooled
    # out-of-fold AUC is said beside the fold mean when 0.02 or more below it, not when close
    for pooled, said in (([0.92, 0.94], "AUC 0.97 (the mean over folds; 0.92 to 0.94 with all samples' out-of-fold "
                                       "scores pooled), 95 %"), ([0.96, 0.955], "AUC 0.97, 95 %")):
        strong["feature_sets"]["features"]["pooled_auc"] = pooled
        assert said in findings.model_verdict(strong)[0]
    warnings: list[str] = []
    cautions.class_size_warning(tied, "group", warnings)
    assert "(best set, features: AUC 1.00, 95 % interval 0.69 to 1.00" in warnings[0]
    # trial AC: the warning quoted the AUC and interval of a set not shown to beat chance without saying so
    weak = _summary(features=_entry(0.98, 0.72, 1.0, 0.069))
    warnings = []
    cautions.class_size_warning(weak, "group", warnings)
    assert "(best set, features: AUC 0.98, 95 % interval 0.72 to 1.00, short of the models' rule for beating chance)" \
        in warnings[0]


def test_the_imputation_caution_is_named_beside_the_hits_only_when_they_rely_on_imputation() -> None:
    rates = [1.0] * 4 + [0.5] * 2 + [0.9] * 4  # 6 of 10 tested features rely on imputation
    tested = pl.DataFrame({"detection_rate": rates, "q_value": [0.01, 0.02] + [0.5] * 8})
    warnings: list[str] = []
    cautions.imputation_warning(tested, "group", warnings)
    assert "a median of 10 % of such a feature's values" in warnings[0]  # how much of each is imputed (trial AK)
    assert "of the 2 features at q &lt; 0.05, 0 rely on it" in warnings[0] and warnings[0].concerns == ()
    warnings = []
    cautions.imputation_warning(tested.with_columns(pl.Series("q_value", [0.5] * 8 + [0.01, 0.02])), "group",
                                warnings)
    assert "of the 2 features at q &lt; 0.05, 2 rely on it" in warnings[0]
    assert warnings[0].label == "hits rely on imputation" and warnings[0].concerns == ("differential:group",)
    # which way it leans (trial BD: 3 of 5 hits imputed, their fold changes larger than planted)
    assert "the fold change then comes out larger than it is (a simulated study: two imputed hits" in warnings[0]


def test_the_differential_table_labels_the_monoisotopic_ion_and_drops_chemont_ids() -> None:
    """Trial finding: the main ion of an isotope group showed an empty ion cell beside its labelled M+1 and M+2, and
    the class column began with 'CHEMONTID:0002351;'."""
    from ms2study.reporting.whatdiffers import _readable

    table = pl.DataFrame({"consensus_id": ["C1", "C2", "C3", "C4"], "ion": [None, "M+1", None, "[M+Na]+"],
                          "compound_group": ["G1", "G1", "G3", "G4"],
                          "compound_class": ["CHEMONTID:0000185; Organic compounds; Benzenoids", None, None, None]})
    shown = _readable(table)
    assert shown["ion"].to_list() == ["M", "M+1", None, "[M+Na]+"]  # a feature alone in its group stays unlabelled
    assert shown["compound_class"][0] == "Organic compounds; Benzenoids"
    # the group sizes the section passes count untested members too: C3's 34S M+2 was not tested (trial finding)
    sized = _readable(table.with_columns(_group_size=pl.Series([2, 2, 2, 1], dtype=pl.UInt32)))
    assert sized["ion"].to_list() == ["M", "M+1", "M", "[M+Na]+"]


def test_a_class_enriched_on_one_compound_says_so_with_its_level(tmp_path: Path) -> None:
    """Scientist's trial (spike-in on two real QC runs): a planted N-phenylurea named at level 3 as an isomer
    amino-acid derivative made 'Amino acids, peptides, and analogues' enriched with 1 of 4 compounds at p < 0.05."""
    from ms2study.reporting.classfindings import enrichment_finding as _enrichment_finding

    path = tmp_path / "group_enrichment.parquet"
    write_table(pl.DataFrame({
        "class_path": ["Organic compounds; Amino acids", "Organic compounds; Ureas"],
        "class_name": ["Amino acids", "Ureas"], "class_level": [2, 2], "n_compounds": [4, 5],
        "n_significant": [1, 3], "n_up": [1, 3], "n_down": [0, 0], "p_value": [0.004, 0.001],
        "q_value": [0.01, 0.005], "consensus_ids": [["C1", "C2", "C3", "C4"], ["C5", "C6", "C7", "C8", "C9"]]}),
        path, {"alpha": 0.05})
    tested = pl.DataFrame({"consensus_id": [f"C{i}" for i in range(1, 10)],
                           "name": ["Norlidocaine", "b", "c", "d", "Diuron", "f", "g", "h", "i"],
                           "msi_level": [3, 3, None, 2, 3, 3, 3, 2, None],
                           "p_value": [1e-5, 0.2, 0.3, 0.5, 1e-4, 0.01, 0.02, 0.4, 0.9]},
                          schema_overrides={"msi_level": pl.Int8})
    text = _enrichment_finding(path, "case", tested)
    assert ("<b>Amino acids</b> (q = 0.01; 1 of 4 compounds at p &lt; 0.05, 1 higher in case, 0 lower), resting on "
            "one compound: Norlidocaine (Schymanski level 3; a level-3 name's class is that of its candidate, and an "
            "unseen isomer's class may differ) &mdash; one compound is not yet a class effect") in text
    assert "<b>Ureas</b> (q = 0.005; 3 of 5 compounds at p &lt; 0.05, 3 higher in case, 0 lower); " in text
    assert text.count("resting on one compound") == 1
    # a multiclass outcome (its rows name a highest class): an F-test has no direction, so no "0 up, 0 down" (a
    # three-arm trial)
    arms = tested.with_columns(highest_class=pl.lit("disease_A"), lowest_class=pl.lit("control"))
    write_table(pl.read_parquet(path).with_columns(n_up=pl.lit(0), n_down=pl.lit(0)),
                path.with_name("arm_enrichment.parquet"), {"alpha": 0.05})
    undirected = _enrichment_finding(path.with_name("arm_enrichment.parquet"), None, arms)
    assert "<b>Ureas</b> (q = 0.005; 3 of 5 compounds at p &lt; 0.05); " in undirected and " up," not in undirected
    # a class whose compounds none reach p < 0.05 in the table (trial: three-arm study, q 0.047, "0 of 3"): where the
    # evidence lies, from its statistic (mean -ln p of the classic tests: 2.14 is a geometric mean p of 0.12)
    write_table(pl.read_parquet(path).with_columns(n_significant=pl.lit(0), n_up=pl.lit(0), n_down=pl.lit(0),
                                                   statistic=pl.lit(2.14)),
                path.with_name("none_enrichment.parquet"), {"alpha": 0.05})
    none = _enrichment_finding(path.with_name("none_enrichment.parquet"), None, arms)
    assert none.count("with none of its compounds at p &lt; 0.05 alone") == 2 and "geometric mean 0.12" in none
    assert "with none of its compounds" not in text  # classes with compounds at p < 0.05 do not get it
    # trial AU: one of 12 planted sugar phosphates at q < 0.05, five more at q 0.073 unnamed: an enriched class's
    # compounds at p < alpha are named with their q-values, lowest p first
    with_q = tested.with_columns(q_value=pl.Series([0.001, 0.5, 0.5, 0.6, 0.004, 0.073, 0.073, 0.6, 0.9]))
    members = _enrichment_finding(path, "case", with_q)
    assert ("<b>Ureas</b> (q = 0.005; 3 of 5 compounds at p &lt; 0.05, 3 higher in case, 0 lower), its compounds at "
            "p &lt; 0.05: Diuron (q 0.004), f (q 0.073), g (q 0.073) (1 of them differs alone at q &lt; 0.05; the "
            "class test backs the others together)") in members
    assert members.count("its compounds at p") == 1  # a class resting on one compound gets its own clause only


def test_hits_resting_on_imputed_values_are_counted_in_the_finding(tmp_path: Path) -> None:
    """Scientist's trial: a noise-level trace detected in 2 of 12 controls and 6 of 12 cases was a hit whose fold
    change came from imputed values; the box counted it as 'higher in case' without saying so."""
    from ms2study.reporting.findings import differential_finding

    inputs = _study(tmp_path)
    path = inputs.differential[0].table
    table = pl.read_parquet(path)
    summary = json.loads(pl.read_parquet_metadata(str(path))["ms2study"])
    write_table(table.with_columns(detection_rate=pl.Series([1.0, 0.75, 1.0, 1.0] + [1.0] * (N - 4))), path, summary)
    _, text, _ = differential_finding(inputs.differential[0], None)
    assert "; 1 of them rests partly on imputed values (not measured in every sample even after gap filling)" in text
    write_table(table, path, summary)  # every hit measured everywhere: not said
    assert "imputed" not in differential_finding(inputs.differential[0], None)[1]


def test_a_class_enriched_while_no_feature_differs_alone_says_why_and_ties_name_the_larger_change(
        tmp_path: Path) -> None:
    """Fresh-user trial: '0 of 3299 tested features differ at q < 0.05' beside 'Phenylmethylamines q = 0.00013' read
    as a contradiction; and among hits tied at one q the box named other compounds than the table's top row."""
    from ms2study.reporting.classfindings import enrichment_finding as _enrichment_finding
    from ms2study.reporting.findings import _named

    path = tmp_path / "group_enrichment.parquet"
    write_table(pl.DataFrame({"class_path": ["Organic compounds; Ureas"], "class_name": ["Ureas"], "class_level": [2],
                              "n_compounds": [5], "n_significant": [3], "n_up": [3], "n_down": [0],
                              "p_value": [1e-5], "q_value": [1e-4],
                              "consensus_ids": [["C1", "C2", "C3", "C4", "C5"]]}), path, {"alpha": 0.05})
    tested = pl.DataFrame({"consensus_id": ["C1", "C2", "C3", "C4", "C5"], "q_value": [0.2, 0.2, 0.3, 0.5, 0.9],
                           "p_value": [0.01, 0.02, 0.03, 0.2, 0.8]})
    assert "no feature differs alone at q &lt; 0.05: the enrichment test takes a class's p-values together" in (
        _enrichment_finding(path, "case", tested))
    hit = tested.with_columns(pl.Series("q_value", [0.01, 0.2, 0.3, 0.5, 0.9]))
    assert "no feature differs alone" not in _enrichment_finding(path, "case", hit)
    hits = pl.DataFrame({"consensus_id": ["A", "B", "C"], "q_value": [0.001, 0.001, 0.001],
                         "log2_fold_change": [0.5, -3.0, 1.0]})
    ident = pl.DataFrame({"consensus_id": ["A", "B", "C"], "name": ["choline", "palmitoylglycerol", "betaine"],
                          "msi_level": [3, 3, 3], "accepted": [True, True, True]})
    text = _named(hits, ident, "log2_fold_change")
    assert text.index("palmitoylglycerol") < text.index("betaine") < text.index("choline")


def test_an_interval_from_0_to_1_says_the_samples_are_too_few() -> None:
    """Fresh-user trial (4 vs 4 samples): every AUC interval printed '0.00 to 1.00' without a word on why."""
    wide = _summary(features=_entry(0.85, 0.0, 1.0, 0.3))
    assert ("95 % interval 0.00 to 1.00 (so wide that these few samples per class cannot pin the AUC down)"
            in findings.model_verdict(wide)[0])
    assert "cannot pin" not in findings.model_verdict(_summary(features=_entry(0.97, 0.72, 1.0, 0.02)))[0]
    # a second fresh-user trial: with the score interval in the summary, it is given with what it is worth
    scored = _summary(features={**_entry(0.78, 0.0, 1.0, 0.3), "ci_score": [0.443, 0.935]})
    assert ("cannot pin the AUC down; Newcombe's score interval alone is 0.44 to 0.94, but on simulated studies of "
            "16-40 samples it held the true AUC in only 77-97 % of them") in findings.model_verdict(scored)[0]


def _counted(value: float, low: float, p_reached: int, drawn: int, **extra: object) -> dict:
    """An AUC entry whose p is (reached + 1) / (drawn + 1), with the permutation counts the models stage writes."""
    return {**_entry(value, low, 1.0, (p_reached + 1) / (drawn + 1)), "permutations_drawn": drawn,
            "permutations_reaching": p_reached, "permutations_stopped_early": False, **extra}


def _four_sets(best: dict, n: int = 100) -> dict:
    summary = _summary(embedding=_entry(0.62, 0.29, 0.90, 0.12), chemical_space=_entry(0.39, 0.0, 0.75, 0.53),
                       features=best, binned_spectra=_entry(0.5, 0.2, 0.8, 0.5))
    return {**summary, "n_permutations": n, "params": {"n_permutations": n}}


def test_a_verdict_the_permutations_decide_says_so_and_what_to_raise(tmp_path: Path) -> None:
    """Simulated 3-batch study: features AUC 0.947 [0.747, 1.000], 1 of 100 permutations reached it (p = 2/101),
    Bonferroni over 4 sets 0.079: "suggestive only", while 4/101 = 0.040 is the smallest adjusted p 100 permutations
    allow, so one permutation decided the verdict and the report did not say so."""
    trial = _four_sets(_counted(0.947, 0.747, 1, 100))
    text, on = findings.model_verdict(trial)
    assert on == "features" and text.startswith("<b>suggestive only</b>")
    assert ("; this verdict is limited by the number of permutations: 1 of the 100 permutations drawn reached the "
            "first repeat's AUC, and with 100 permutations and 4 feature sets the smallest adjusted p possible is "
            "4/101 = 0.0396; the adjusted p (0.0792) would be below 0.05 only if none had reached it, so one permutation "
            "decides the verdict. Raise <code>models: n_permutations</code> in config.yaml (e.g. to 1000) to tell "
            "whether it holds") in text
    # the box and the models section both say it
    warnings: list[str] = []
    box = findings.findings_section([_write(tmp_path / "box", trial)], [], None, None, warnings)
    assert "one permutation decides the verdict" in box
    from ms2study.reporting import outcomes

    section = outcomes.models_section([_write(tmp_path / "section", trial)], pl.DataFrame({"sample_id": IDS}), {},
                                      [])
    assert '<p class="note resolution">Best set, features: this verdict is limited by the number of permutations' \
           in section
    # 5 permutations reached it: the adjusted p (0.238) is 6x its smallest, the count is informative: not said
    assert "limited by the number" not in findings.model_verdict(_four_sets(_counted(0.947, 0.747, 5, 100)))[0]
    # drawing stopped early once 10 permutations reached it: p rests on 10, not on the resolution
    stopped = _four_sets({**_counted(0.947, 0.747, 10, 40), "permutations_stopped_early": True,
                          "permutation_p": 10 / 40})
    assert "limited by the number" not in findings.model_verdict(stopped)[0]
    # an interval reaching chance fails whatever p is: more permutations would not change the verdict
    assert "limited by the number" not in findings.model_verdict(_four_sets(_counted(0.70, 0.40, 1, 100)))[0]


def test_the_resolution_sentence_fits_one_set_a_coarse_count_and_a_fine_one() -> None:
    # one set, 30 permutations, 1 reached it: p = 2/31 misses 0.05 only because of the count
    single = {**_summary(features=_counted(0.95, 0.75, 1, 30)), "params": {"n_permutations": 30}}
    text = findings.model_verdict(single)[0]
    assert text.startswith("<b>not shown to beat chance</b>: its permutation p = 0.0645 is not below 0.05")
    assert ("the smallest p possible is 1/31 = 0.0323; the p (0.0645) would be below 0.05 only if none had reached "
            "it, so one permutation decides the verdict") in text and "(e.g. to 1000)" in text
    # 20 permutations (the 'auto' count above 100 samples) and 4 sets: no count could pass the adjustment
    coarse = _four_sets(_counted(0.947, 0.747, 0, 20), n=20)
    text = findings.model_verdict(coarse)[0]
    assert ("the smallest adjusted p possible is 4/21 = 0.19; the adjusted p (0.19) cannot fall below 0.05 with any "
            "count of reaching permutations") in text and "(e.g. to 1000)" in text
    # 1000 permutations, 20 sets, 2 reached it: 1 would have passed, so one permutation decides; suggest 10000
    many = _summary(**{f"set{i}": _entry(0.6, 0.2, 0.9, 0.4) for i in range(19)},
                    features=_counted(0.947, 0.747, 2, 1000))
    many = {**many, "params": {"n_permutations": 1000}}
    text = findings.model_verdict(many)[0]
    assert "20/1001 = 0.02; the adjusted p (0.0599) would be below 0.05 with at most 1 reaching it, so 1 " \
           "permutation decides the verdict" in text and "(e.g. to 10000)" in text
    # a p that passes the adjustment is a plain verdict, without the sentence
    passes = _four_sets(_counted(0.99, 0.8, 0, 1000), n=1000)
    assert findings.model_verdict(passes)[0].startswith("<b>separates case from control samples</b>")
    assert "limited by the number" not in findings.model_verdict(passes)[0]
    # a pass that one more reaching permutation would undo (trial E: 40 shared permutations, adjusted p 2/41 = 0.0488
    # said "separates" with no caution, after an unrelated library edit moved it from 3/41)
    shared = {**_counted(0.98, 0.85, 0, 40), "permutations_reaching_adjusted": 1, "permutation_p_adjusted": 2 / 41}
    summary = {**_summary(features=shared, embedding=_entry(0.6, 0.3, 0.9, 0.2)), "n_permutations": 40,
               "params": {"n_permutations": 40}, "p_adjustment": {"permutations": 40}}
    verdict = findings.model_verdict(summary)[0]
    assert verdict.startswith("<b>separates case from control samples</b>")
    assert ("the adjusted p (0.0488) is below 0.05 with at most 1 reaching it, so one more reaching permutation would "
            "undo the verdict") in verdict
    at_three = {**shared, "permutations_reaching_adjusted": 2, "permutation_p_adjusted": 3 / 41}
    assert "suggestive only" in findings.model_verdict({**summary, "feature_sets": {
        **summary["feature_sets"], "features": at_three}})[0]
    none_reached = {**shared, "permutations_reaching_adjusted": 0, "permutation_p_adjusted": 1 / 41}
    assert "limited by the number" not in findings.model_verdict({**summary, "feature_sets": {
        **summary["feature_sets"], "features": none_reached}})[0]  # one more reaching still passes (2/41)
    # one set, 100 permutations, none reached: p 1/101 passes and stays below 0.05 with 3 more reaching: plain
    alone = {**_summary(features=_counted(0.95, 0.75, 0, 100)), "params": {"n_permutations": 100}}
    assert "limited by the number" not in findings.model_verdict(alone)[0]
    # one set, 30 permutations, none reached: p 1/31 = 0.032 passes, one more reaching (2/31 = 0.065) would undo it
    edge = {**_summary(features=_counted(0.95, 0.75, 0, 30)), "params": {"n_permutations": 30}}
    text = findings.model_verdict(edge)[0]
    assert text.startswith("<b>separates") and "the p (0.0323) is below 0.05 with at most 0 reaching it, so one " \
        "more reaching permutation would undo the verdict" in text


def test_no_level_2_identification_says_why_beside_the_count() -> None:
    """A scientist's trial: '0 at level 2' stood in the Main findings while the reason sat in the collapsed notes.
    With no level-2 identification, the count says how many level-3 ones have an isomer in the library and how many
    rest on the structure null; with a level-2 one it says nothing more."""
    from ms2study.reporting.findings import identification_finding

    ident = pl.DataFrame({"consensus_id": ["C1", "C2", "C3"], "name": ["a", "b", "c"],
                          "accepted": [True, True, True], "msi_level": [3, 3, 3],
                          "isomer_inchikeys": [["A", "B"], ["C"], None]}, schema_overrides={"msi_level": pl.Int8})
    text = identification_finding(ident, 0.01)
    assert "0 at Schymanski level 2" in text and "none at level 2: 1 has another structure of its formula" in text
    assert "2 have none among the candidates, but the structure evidence does not rule out an isomer" in text
    with_two = identification_finding(ident.with_columns(msi_level=pl.Series([2, 3, 3], dtype=pl.Int8)), 0.01)
    assert "none at level 2" not in with_two


def test_identifications_with_a_mark_the_q_value_does_not_cover_are_counted_in_the_main_findings() -> None:
    """A fresh user read '204 accepted (q <= 0.01)' as about 2 wrong names where 16-29 were: the Main findings count
    the accepted names carrying an in-source or several-retention-times mark; none carried, nothing said."""
    from ms2study.reporting.findings import identification_finding

    ident = pl.DataFrame({"consensus_id": ["C1", "C2", "C3", "C4"], "name": ["a", "b", "c", "d"],
                          "accepted": [True, True, True, False], "msi_level": [3, 3, 3, None],
                          "in_source_of_mz": [241.05, None, 183.0, 300.0],
                          "same_name_elsewhere": [[], ["C9"], ["C8"], None]},
                         schema_overrides={"msi_level": pl.Int8, "same_name_elsewhere": pl.List(pl.Utf8)})
    text = identification_finding(ident, 0.01)
    assert "<b>3</b> of them carry a mark the q-value does not cover (2 possible in-source fragments, 2 named at " \
           "several retention times, 1 with both)" in text
    # names withdrawn as in-source fragments (identify's check) are counted too (a fresh user's trial: Main
    # findings never mentioned them)
    checked = ident.with_columns(in_source_correlation=pl.Series([0.3, None, 0.2, 0.99]),
                                 in_source_n_samples=pl.Series([12, None, 12, 12]),
                                 evidence_note=pl.Series([None, None, None,
                                                          "not accepted: an in-source fragment of m/z 300.0"]))
    assert "1 more matched at this FDR but was withdrawn as an in-source fragment" in identification_finding(
        checked, 0.01)
    # the check's one rule (insource.withdrawn), not any refused name with a correlation: a name refused before the
    # check (q above the FDR) whose feature follows its parent, or one that follows it too loosely, is not counted
    refused = checked.with_columns(evidence_note=pl.lit(None, dtype=pl.Utf8))
    loose = checked.with_columns(in_source_correlation=pl.Series([0.3, None, 0.2, 0.6]))
    for table in (refused, loose):
        assert "withdrawn as an in-source fragment" not in identification_finding(table, 0.01)
    clean = ident.with_columns(in_source_of_mz=pl.lit(None, dtype=pl.Float64),
                               same_name_elsewhere=pl.lit([], dtype=pl.List(pl.Utf8)))
    assert "carry a mark" not in identification_finding(clean, 0.01)


def test_the_study_wide_shift_sentence_reads_the_outcome_its_p_and_the_correction() -> None:
    """Said when 70 % of the tested features or more move one way, or the shift's p is small; as a shift only when
    that p is below 0.05; in the continuous outcome's own words; naming PQN only after a QC-based correction without
    it (a fresh user's age outcome read '77 % are lower')."""
    shift = {"n_features": 3253, "median_effect": -0.014, "share_up": 0.23, "p_value": 0.11, "n_permutations": 1000}
    age = {"outcome": "age", "type": "continuous", "global_shift": shift}
    text = findings._shift_sentence(age, {"drift_method": "qc_linear", "normalised_after_drift": None}, True)
    assert ("77 % are falling with age (median -0.014 log2 per unit; label-permutation p 0.11): this may be "
            "chance") in text
    assert "'q, shift removed'" in text and "normalise_after_drift: pqn" in text
    group = {"outcome": "group", "type": "binary", "positive_class": "case",
             "global_shift": {**shift, "median_effect": 0.39, "share_up": 0.81, "p_value": 0.004}}
    text = findings._shift_sentence(group, {"drift_method": "qc_linear", "normalised_after_drift": "pqn"})
    assert "81 % are higher in case (median +0.39 log2" in text and "the whole sample shifts with the outcome" in text
    assert "normalise_after_drift" not in text and "shift removed" not in text  # already normalised; no column
    assert "normalise_after_drift" not in findings._shift_sentence(group, {"drift_method": "median"})
    balanced = {**group, "global_shift": {**shift, "share_up": 0.6, "p_value": 0.2}}
    assert findings._shift_sentence(balanced) == "" and not shift_notable(balanced)
    assert shift_notable({**balanced, "global_shift": {**shift, "median_effect": 0.39, "share_up": 0.6,
                                                                "p_value": 0.01}})



def test_a_study_wide_shift_too_small_to_matter_is_not_a_finding() -> None:
    """A fresh user's study of copies of a few runs: 90 % of the features lower in cases, p 0.001, but a median of
    -0.042 log2 (3 %): not said in Main findings. A continuous outcome's shift is sized over 2 sd of the outcome, so
    -0.014 log2 per year of an age spread of sd 15 years (0.42 log2) is said and the same over sd 1 is not."""
    shift = {"n_features": 3000, "median_effect": -0.042, "share_up": 0.1, "p_value": 0.001, "n_permutations": 1000}
    group = {"outcome": "group", "type": "binary", "positive_class": "case", "global_shift": shift}
    assert findings.shift_size(group) == pytest.approx(0.042)
    assert not shift_notable(group) and findings._shift_sentence(group) == ""
    assert shift_notable({**group, "global_shift": {**shift, "median_effect": -0.12}})
    age = {"outcome": "age", "type": "continuous",
           "global_shift": {**shift, "median_effect": -0.014, "outcome_sd": 15.0}}
    assert findings.shift_size(age) == pytest.approx(0.42) and shift_notable(age)
    narrow = {**age, "global_shift": {**age["global_shift"], "outcome_sd": 1.0}}
    assert not shift_notable(narrow)
    older = {**age, "global_shift": {k: v for k, v in shift.items()} | {"median_effect": -0.014}}
    assert findings.shift_size(older) is None and shift_notable(older)  # not sized: said as before


def test_a_continuous_outcomes_hits_are_said_to_rise_or_fall_with_it(tmp_path: Path) -> None:
    """Review finding: Main findings took log2_fold_change whenever the column existed (always: null for a
    continuous outcome) and wrote '0 higher in , 49 lower'."""
    from ms2study.modelling.differential import write_table
    from ms2study.reporting.collect import DifferentialFiles

    table = pl.DataFrame({"consensus_id": ["C1", "C2", "C3"], "tested": [True] * 3, "q_value": [0.01, 0.02, 0.5],
                          "p_value": [0.001, 0.002, 0.4], "log2_fold_change": [None, None, None],
                          "log2_effect_per_unit": [0.2, -0.1, 0.0]}, schema_overrides={"log2_fold_change": pl.Float64})
    path = tmp_path / "age.parquet"
    write_table(table, path, {"outcome": "age", "type": "continuous"})
    _, text, _ = findings.differential_finding(DifferentialFiles(path, None), None)
    assert "1 rising with age, 1 falling" in text and "higher in" not in text


def test_a_qc_scoring_above_the_cutoff_without_a_flag_is_explained() -> None:
    """Trial finding: QC01 scored 8.27 and QC04 10.4, above the stated 3.5, with no mark and no reason."""
    from ms2study.reporting.qc import _near_miss

    qc = pl.DataFrame({"sample_id": ["QC01", "QC02", "QC04"], "outlier": [False, False, True],
                       "outlier_score": [8.27, 1.2, 12.0]})
    text = _near_miss(qc, "qc")
    assert "QC01 (8.3)" in text and "QC02" not in text and "QC04" not in text and "1.5 times" in text
    assert _near_miss(qc, "blank") == "" and _near_miss(qc.filter(pl.col("sample_id") == "QC02"), "qc") == ""
    samples = qc.with_columns(pl.col("sample_id").str.replace("QC", "S"))  # study samples: their own reason
    text = _near_miss(samples, "sample")
    assert "S01 (8.3)" in text and "second nearest sample" in text and "1.25 times" in text and "QCs" not in text


def test_without_q_values_the_finding_says_matches_are_not_identifications() -> None:
    """A fresh user's trial with annotate confidence: none: the Main findings said "0 consensus features carry an
    accepted identification (q <= 0.01)" beside a table of best matches."""
    from ms2study.reporting.findings import identification_finding

    ident = pl.DataFrame({"consensus_id": ["C1", "C2"], "name": ["a", "b"], "accepted": [False, False],
                          "msi_level": [None, None], "q_value": [None, None]},
                         schema_overrides={"msi_level": pl.Int8, "q_value": pl.Float64})
    text = identification_finding(ident, 0.01)
    assert "<b>2</b> consensus features have a best library match, listed without q-values" in text
    assert "q ≤ 0.01" not in text


def test_without_any_library_match_the_finding_says_so() -> None:
    """A second trial: a study without a library read "0 consensus features carry an accepted identification
    (q <= 0.01)"."""
    from ms2study.reporting.findings import identification_finding

    empty = pl.DataFrame(schema={"consensus_id": pl.Utf8, "accepted": pl.Boolean, "msi_level": pl.Int8,
                                 "q_value": pl.Float64})
    text = identification_finding(empty, 0.01)
    assert text.startswith("no consensus feature has a library match") and "q ≤" not in text


def test_a_max_statistic_adjustment_is_read_from_the_summary_and_named() -> None:
    """Since session 28 the models stage adjusts the best set's p for the choice among the sets by the max-statistic
    over their shared permutations (``p_adjustment``, ``permutation_p_adjusted``): the verdict reads that value, not
    Bonferroni's, and names it; its resolution sentence counts the shared permutations."""
    best = {**_counted(0.947, 0.747, 0, 40), "permutation_p_adjusted": 1 / 41, "permutations_reaching_adjusted": 0}
    adjusted = {**_four_sets(best, n=40), "p_adjustment": {"method": "max-statistic over the feature sets "
                                                           "(Westfall & Young 1993)", "permutations": 40,
                                                           "feature_sets": 4}}
    text, on = findings.model_verdict(adjusted)
    # Bonferroni would read 4/41 = 0.098 ("suggestive only"); the max-statistic's 1/41 passes
    assert on == "features" and not text.startswith("<b>suggestive only</b>")
    assert ("picked as the best of 4 after seeing them; adjusted for that choice its p is 0.0244 (on each of 40 "
            "shared permutations, the largest score of the 4 sets)") in text and "not adjusted" not in text
    # one shared permutation gave some set a score reaching it: 2/41 = 0.049 still passes; two do not, and then one
    # permutation decides, which the verdict says together with what to raise and that every set must draw them
    two = {**adjusted, "feature_sets": {**adjusted["feature_sets"], "features": {
        **best, "permutation_p_adjusted": 3 / 41, "permutations_reaching_adjusted": 2}}}
    text = findings.model_verdict(two)[0]
    assert text.startswith("<b>suggestive only</b>")
    assert ("on 2 of the 40 permutations that every one of the 4 feature sets drew, some set's model reached the "
            "first repeat's AUC, and with 40 shared permutations the smallest adjusted p possible is 1/41 = 0.0244; "
            "the adjusted p (0.0732) would be below 0.05 with at most 1 reaching it, so 1 permutation decides the "
            "verdict") in text
    assert "(e.g. to 1000) with <code>permutation_stop_after: 0</code>, so that every set draws them all," in text


def test_a_wide_interval_beside_a_small_p_that_the_choice_undoes_names_both_reasons() -> None:
    """Trial BH (random diet labels, 3 classes): "not shown to beat chance: its 95 % interval 0.459 to 0.967 does
    not lie above chance (... so wide ...; rely on the permutation p to judge whether it beats chance), permutation
    p = 0.0198": a reader following the advice took p 0.02 as a pass. The interval note no longer says to rely on p
    (the rule needs both), and the verdict names the p adjusted for the choice among the sets (0.098) as a reason."""
    best = {**_counted(0.741, 0.459, 1, 100), "ci_high": 0.967, "permutation_p_adjusted": 0.0976,
            "permutations_reaching_adjusted": 3}
    summary = {**_four_sets(best, n=100), "p_adjustment": {"method": "max-statistic over the feature sets "
                                                           "(Westfall & Young 1993)", "permutations": 40,
                                                           "feature_sets": 4}}
    text, on = findings.model_verdict(summary)
    assert on == "features" and text.startswith("<b>not shown to beat chance</b>: its 95 % interval 0.459 to 0.967 "
                                                "does not lie above chance (0.5); its p adjusted for the choice "
                                                "among the 4 sets, 0.0976, is not below 0.05 ("), text
    assert "so wide that these few samples per class cannot pin the AUC down" in text and "rely on" not in text
    # where the adjusted p passes, the interval alone is the reason, as before
    passing = {**summary, "feature_sets": {**summary["feature_sets"], "features": {**best,
                                                                                   "permutation_p_adjusted": 0.0198}}}
    assert "adjusted for the choice among the 4 sets, 0.0198, is not below" not in findings.model_verdict(passing)[0]


def test_no_match_for_want_of_a_library_of_the_runs_polarity_is_named_as_the_cause() -> None:
    """A trial: a negative-only pesticide library against positive runs; Main findings gave the generic "no library
    is configured, no MS/MS spectrum was mapped to a feature, or none had a candidate" though the cause was known."""
    from ms2study.reporting.html import QUALITY, Caution
    from ms2study.stages.identify import IDENTIFICATIONS

    empty = pl.DataFrame(schema=IDENTIFICATIONS)
    caution = Caution("MS/MS scans of positive polarity (2 run(s): A, B) were not searched", QUALITY,
                      "positive-mode MS/MS not searched", ("identifications",))
    text = findings.identification_finding(empty, 0.01, [caution])
    assert text.startswith("no consensus feature has a library match: the library holds no positive-mode spectrum, "
                           "so the runs' positive MS/MS was not searched")
    assert "no library is configured" in findings.identification_finding(empty, 0.01, [])


def test_an_interval_bound_that_would_round_onto_chance_keeps_a_third_decimal() -> None:
    """A trial: "R² 0.53, 95 % interval 0.00 to 0.73" beside "predicts age"; the stored lower bound was 0.0043."""
    age = {**_summary(features={**_entry(0.53, 0.0043, 0.73, 0.0099), "metric": "r2"}), "type": "continuous",
           "outcome": "age"}
    text = findings.model_verdict(age)[0]
    assert "95 % interval 0.004 to 0.730" in text
    assert "95 % interval 0.72 to 1.00" in findings.model_verdict(SUMMARY)[0]


def _trial_h(value: float = 0.92, observed: float | None = 0.70, repeats: int = 5) -> dict:
    """The effect study of a fresh-user trial (6 + 6 spike-in): the embedding's AUC, a mean over 5 repeats (per repeat
    0.7, 1.0, 0.9, 1.0, 1.0), its interval, and a permutation p on the first repeat's 0.70 that stopped early."""
    entry = {**_entry(value, 0.4333, 1.0, 0.45), "outer_repeats": repeats, "permutations_drawn": 40,
             "permutations_reaching": 18, "permutations_stopped_early": True}
    return {**entry, "permutation_observed": observed} if observed is not None else entry


def test_the_verdicts_p_names_the_first_repeats_score_it_tests(tmp_path: Path) -> None:
    """Trial: Main findings read "AUC 0.92, ..., permutation p = 0.45 (18 of 40 permutations reached it)", and "it"
    read as 0.92, while p tests the first repeat's AUC, 0.70 (the models section said so, the box did not). Beside a
    mean over repeats the p now names the score it tests, in the box, the models table and the models' notes."""
    from ms2study.reporting import outcomes

    text = findings.model_verdict(_summary(embedding=_trial_h()))[0]
    assert ("AUC 0.92, 95 % interval 0.43 to 1.00 (so wide that these few samples per class cannot pin the AUC down), "
            "permutation p = 0.45 for the first repeat's AUC 0.70 (18 of 40 permutations reached 0.70; drawing "
            "stopped once that many had, so p = reached / "
            "drawn)") in text
    assert "reached it" not in text
    # a summary written before the score was recorded still says which score p tests
    assert findings.p_text(_trial_h(observed=None)).startswith(
        "0.45 for the first repeat's AUC (18 of 40 permutations reached it;")
    # one repeat: p tests the value shown, nothing to add
    assert findings.p_text(_trial_h(observed=0.92, repeats=1)).startswith("0.45 (18 of 40 permutations reached it;")
    # the models table gives the tested score beside p; a near-perfect mean's note names it too
    section = outcomes.models_section([_write(tmp_path / "m", _summary(embedding=_trial_h()))],
                                      pl.DataFrame({"sample_id": IDS}), {}, [])
    assert ">0.45 (repeat 1: 0.700)<" in section
    near = _summary(embedding=_trial_h(value=0.96))
    assert ("embedding: 0.960, p = 0.45 for the first repeat's AUC 0.700, 18 of 40 permutations reached 0.700"
            in outcomes.permutation_note(near))
    # the resolution sentence counts permutations reaching the first repeat's score, and says so
    resolution = _four_sets({**_counted(0.947, 0.747, 1, 100), "permutation_observed": 0.9})
    assert "1 of the 100 permutations drawn reached the first repeat's AUC (0.90), and" in (
        findings.model_verdict(resolution)[0])


def test_an_auc_interval_from_chance_to_near_perfect_says_the_samples_are_too_few() -> None:
    """Trial: the note that an interval is too wide to pin the AUC down was shown for 0.00 to 1.00 (the null study)
    but not for 0.43 to 1.00 (the effect study), which says as little. It is now shown wherever the interval reaches
    chance and spans at least half the AUC's range (``modeltext.too_wide``)."""
    from ms2study.reporting import modeltext

    assert "0.43 to 1.00 (so wide that these few samples per class cannot pin the AUC down" in (
        findings.model_verdict(_summary(embedding=_trial_h()))[0])
    for low, high, wide in ((0.43, 1.0, True), (0.0, 0.6, True), (0.5, 1.0, True), (0.0, 1.0, True),
                            (0.45, 0.9, False), (0.72, 1.0, False), (0.51, 1.0, False), (0.0, 0.45, False)):
        entry = _entry(0.7, low, high, 0.3)
        assert modeltext.too_wide(entry) is wide, (low, high)
        assert ("cannot pin the AUC down" in findings.model_verdict(_summary(features=entry))[0]) is wide, (low, high)
    # the note is the same with or without a permutation p (trial BH: it no longer says to rely on p)
    assert modeltext.wide_interval_note({**_entry(0.7, 0.2, 0.9, 0.3), "permutation_p": None}) == (
        " (so wide that these few samples per class cannot pin the AUC down)")
    assert not modeltext.too_wide({**_entry(0.7, 0.0, 1.0, 0.3), "metric": "r2"})


def test_without_hits_the_finding_says_what_one_features_test_could_find(tmp_path: Path) -> None:
    """Trial finding: every q >= 0.18 in a 6 + 6 study, and nothing said which fold change one feature's test could
    have found at that size (the sweep's sentence covers the models only)."""
    from ms2study.modelling.differential import write_table
    from ms2study.reporting.collect import DifferentialFiles

    table = pl.DataFrame({"consensus_id": ["C1", "C2"], "tested": [True, True], "q_value": [0.18, 0.6],
                          "p_value": [0.001, 0.4], "log2_fold_change": [1.2, 0.1]})
    summary = {"outcome": "group", "type": "binary", "positive_class": "case", "reference_class": "control",
               "detectable_log2_fold_change": 1.72}
    path = tmp_path / "group.parquet"
    write_table(table, path, summary)
    _, text, _ = findings.differential_finding(DifferentialFiles(path, None), None)
    assert "<b>0</b> of 2 tested features differ" in text and "about a 3.3-fold change (log2 1.72)" in text
    write_table(table.with_columns(pl.Series("q_value", [0.01, 0.6])), path, summary)
    assert "fold change (log2" not in findings.differential_finding(DifferentialFiles(path, None), None)[1]
    # a paired or covariate-adjusted test says so, with the rate measured for that design
    write_table(table, path, {**summary, "paired_by": "subject_id", "covariates": ["cov:subject_id=P1"]})
    paired = findings.differential_finding(DifferentialFiles(path, None), None)[1]
    assert "within subjects, in this paired study" in paired and "70 of 100" in paired
    write_table(table, path, {**summary, "covariates": ["cov:age"]})
    adjusted = findings.differential_finding(DifferentialFiles(path, None), None)[1]
    assert "at equal covariates" in adjusted and "80 of 100" in adjusted and "77 of 100" not in adjusted
    # three arms, nothing found (trial: the planted 3x split over two arms was lost in the F-test): the contrast hint
    arms = {"outcome": "arm", "type": "multiclass", "classes": ["control", "low", "high"]}
    write_table(table, path, arms)
    hint = findings.differential_finding(DifferentialFiles(path, None), None)[1]
    assert "a two-class outcome (e.g. control against the rest)" in hint and "fold change (log2" not in hint
    write_table(table.with_columns(pl.Series("q_value", [0.01, 0.6])), path, arms)
    assert "two-class outcome" not in findings.differential_finding(DifferentialFiles(path, None), None)[1]


def test_the_findings_count_subjects_when_the_runs_of_a_subject_were_averaged(tmp_path: Path) -> None:
    """The sheet's subject_id (modelling.subjects): the class counts are subjects, and the box says so."""
    plain = findings.findings_section([_write(tmp_path / "a", SUMMARY)], [], None, None, [])
    assert "<h3>Outcome: group (binary: 4 control, 4 case)</h3>" in plain
    averaged = {**SUMMARY, "subjects": {"P1": ["S01", "S02"]}}
    box = findings.findings_section([_write(tmp_path / "b", averaged)], [], None, None, [])
    assert "<h3>Outcome: group (binary: 4 control, 4 case subjects, each the mean of its runs)</h3>" in box
    warnings: list = []
    cautions.class_size_warning(averaged, "group", warnings)
    assert "only 4 control vs 4 case subjects (fewer than" in warnings[0]
    cautions.class_size_warning(SUMMARY, "group", warnings)
    assert "only 4 control vs 4 case samples (fewer than" in warnings[1]


def test_a_class_carried_by_two_compounds_moving_apart_is_no_class_shift(tmp_path: Path) -> None:
    """Trial (a cohort grown in batches): 'sugar' enriched with age at q 0.013 on 2 of 12 compounds, one up and one
    down, each following age by chance; the box said only that many small shifts can make a class enriched."""
    from ms2study.reporting.classfindings import enrichment_finding as _enrichment_finding

    path = tmp_path / "age_enrichment.parquet"
    write_table(pl.DataFrame({"class_path": ["Organic compounds; Sugars", "Organic compounds; Ureas"],
                              "class_name": ["sugar", "Ureas"], "class_level": [2, 2], "n_compounds": [12, 5],
                              "n_significant": [2, 3], "n_up": [1, 3], "n_down": [1, 0], "p_value": [1e-3, 1e-3],
                              "q_value": [0.013, 0.013],
                              "consensus_ids": [[f"C{i}" for i in range(12)], [f"D{i}" for i in range(5)]]}),
                path, {"alpha": 0.05})
    text = _enrichment_finding(path, None)
    assert ("<b>sugar</b> (q = 0.013; 2 of 12 compounds at p &lt; 0.05, 1 up, 1 down), carried by 2 compounds that "
            "move in opposite directions &mdash; not a shift of the class as a whole") in text
    assert text.count("opposite directions") == 1  # Ureas: 3 up, 0 down


def test_an_infinite_prior_is_said_so() -> None:
    from ms2study.reporting.whatdiffers import _prior_df

    assert _prior_df(1e6) == "infinite: the features' variances differ no more than chance"
    assert _prior_df(53.24) == "53.2" and _prior_df(None) == "0.0"


def test_a_verdict_resting_on_the_covariates_alone_says_so() -> None:
    """A three-arm trial: "separates the classes (macro AUC 0.97 ...; best of 5 feature sets: covariates)" was read as
    the metabolome's separation; age alone did it, every measured set scored lower."""
    summary = {**_summary(covariates=_entry(0.97, 0.80, 1.0, 0.001), features=_entry(0.90, 0.70, 1.0, 0.004),
                          embedding=_entry(0.86, 0.6, 1.0, 0.01)), "covariates": ["cov:age", "cov:sex=M"]}
    text, on = findings.model_verdict(summary)
    assert on == "covariates"
    assert ("<b>that is the covariates alone (age, sex)</b>, the baseline every feature set also holds: no set of the "
            "measurements does better (the best, features: AUC 0.90)") in text
    plain = _summary(features=_entry(0.97, 0.72, 1.0, 0.02))
    assert "covariates alone" not in findings.model_verdict(plain)[0]
    # trial AB: neither above chance (R² -0.22 and -0.28): not "the separation is the covariates'"
    flat = {"outcome": "age", "type": "continuous", "status": "done", "covariates": ["cov:bmi"], "feature_sets": {
        "covariates": {"metric": "r2", "value": -0.22, "ci_low": -0.6, "ci_high": 0.1, "permutation_p": 0.6},
        "features": {"metric": "r2", "value": -0.28, "ci_low": -0.7, "ci_high": 0.05, "permutation_p": 0.7}}}
    text = findings.model_verdict(flat)[0]
    assert "neither scores above chance" in text and "the separation is the covariates'" not in text
    # a new user's study: the covariates above chance but not shown to beat it (AUC 0.65 [0, 1], p 0.58), the
    # verdict "no evidence": no separation is credited to them
    weak = {**_summary(covariates=_entry(0.65, 0.0, 1.0, 0.575), features=_entry(0.50, 0.2, 0.8, 0.7)),
            "covariates": ["cov:age"]}
    text, on = findings.model_verdict(weak)
    assert on == "covariates" and text.startswith("<b>no evidence")
    assert "the separation is the covariates'" not in text and "neither is shown to beat chance" in text


def test_a_continuous_outcomes_named_hit_gives_its_effect_per_unit() -> None:
    """A trial: Main findings read "log2 effect +0.21" for a score outcome, the table below "per unit"."""
    from ms2study.reporting.findings import _named

    hits = pl.DataFrame({"consensus_id": ["C1"], "q_value": [0.001], "log2_effect_per_unit": [0.21],
                         "effect_ci_low": [0.14], "effect_ci_high": [0.28]})
    ident = pl.DataFrame({"consensus_id": ["C1"], "accepted": [True], "name": ["Diuron"], "msi_level": [2]})
    text = _named(hits, ident, "log2_effect_per_unit")
    assert "log2 effect per unit +0.21 (95 % interval +0.14 to +0.28)" in text
    fold = _named(hits.rename({"log2_effect_per_unit": "log2_fold_change"}), ident, "log2_fold_change")
    assert "log2 FC +0.21" in fold


def test_a_hit_group_whose_match_missed_only_by_its_q_value_names_it_as_a_candidate(tmp_path: Path) -> None:
    """Trial F: the largest planted change (4 of 11 hits, one compound group) had nicotinamide at cosine 0.99 and
    q 0.0115 against the FDR 0.01; Main findings showed the group with no name and no word of the candidate."""
    table = pl.DataFrame({"consensus_id": ["C336", "C606", "C215", "C900", "C901", "C902"],
                          "compound_group": ["G257", "G257", "G172", "G9", "G10", "G11"], "tested": [True] * 6,
                          "q_value": [0.002, 0.002, 0.002, 0.01, 0.02, 0.02],
                          "p_value": [1e-5, 1e-5, 1e-5, 1e-3, 2e-3, 2e-3],
                          "log2_fold_change": [2.2, 2.2, 2.1, 1.0, 0.8, 0.8]})
    summary = {"outcome": "group", "type": "binary", "positive_class": "case", "reference_class": "control"}
    path = tmp_path / "group.parquet"
    write_table(table, path, summary)
    ident = pl.DataFrame({"consensus_id": ["C336", "C900", "C901", "C215", "C902"],
                          "name": ["nicotinamide", "far", "named", "blanky", "Tiamulin"], "msi_level": [3] * 5,
                          "q_value": [0.0115, 0.2, 0.001, 0.02, 0.03], "accepted": [False, False, True, False, False],
                          "best_cosine": [0.995, 0.9, 0.9, 0.9, 0.04],
                          "evidence_note": [None, None, None, "only blank runs' spectra support it (x)", None]})
    from ms2study.identification.background import BLANK_ONLY_NOTE

    ident = ident.with_columns(pl.when(pl.col("name") == "blanky").then(pl.lit(BLANK_ONLY_NOTE))
                               .otherwise(pl.col("evidence_note")).alias("evidence_note"))
    text = findings.differential_finding(DifferentialFiles(path, None), ident, None, 0.01)[1]
    assert ("1 hit group without a name holds a library match refused only for its q-value (above the FDR 0.01): "
            "nicotinamide on C336 (q 0.0115, cosine 0.99) &mdash; candidates, not identifications.") in text
    assert "far" not in text.split("refused only")[1]  # q 0.2: more than 5 times the FDR
    assert "blanky" not in text  # refused for its blank-only support, not for its q-value
    # trial O: a match at cosine 0.04 (q 0.03, its spectra barely alike) is no candidate
    assert "Tiamulin" not in text
    # without the FDR (an older config) nothing is said
    assert "refused only" not in findings.differential_finding(DifferentialFiles(path, None), ident, None)[1]


def test_hit_groups_that_co_elute_and_follow_each_other_are_said_to_be_perhaps_one_compound(tmp_path: Path) -> None:
    """Trial F: nicotinamide's NH3 loss (its own compound group) made '11 features (7 compound groups)' of 6 planted
    compounds; the differential stage now finds the pair (modelling.coelution) and Main findings says so."""
    table = pl.DataFrame({"consensus_id": ["C336", "C606", "C215", "C2190"], "compound_group": ["G257", "G257",
                                                                                              "G172", "G1244"],
                          "tested": [True] * 4, "q_value": [0.002] * 3 + [0.01], "p_value": [1e-5] * 3 + [1e-3],
                          "log2_fold_change": [2.2, 2.2, 2.1, 1.6]})
    pair = {"consensus_id": "C336", "partner_id": "C215", "group": "G257", "partner_group": "G172",
            "rt_diff_s": 0.18, "r": 0.989, "n_samples": 24}
    summary = {"outcome": "group", "type": "binary", "positive_class": "case", "reference_class": "control",
               "coeluting_hits": {"pairs": [pair], "n_hit_groups": 3, "n_compounds_at_least": 2}}
    path = tmp_path / "group.parquet"
    write_table(table, path, summary)
    text = findings.differential_finding(DifferentialFiles(path, None), None)[1]
    assert ("(3 compound groups; perhaps as few as 2 compounds: 1 pair of hit groups co-elute and follow each other "
            "within the classes (C215 with C336 (r 0.99)), as an in-source fragment or an unlisted ion follows its "
            "compound)") in text
    write_table(table, path, {**summary, "coeluting_hits": None})
    assert "perhaps as few" not in findings.differential_finding(DifferentialFiles(path, None), None)[1]


def test_an_outcome_that_could_not_be_tested_says_so(tmp_path: Path) -> None:
    """Trial D: 'What differs: 0 of 0 tested features differ at q < 0.05, adjusted for background' when the outcome and
    its covariate were collinear and nothing was tested."""
    table = pl.DataFrame({"consensus_id": ["C1"], "tested": [False], "q_value": [None], "p_value": [None]},
                         schema_overrides={"q_value": pl.Float64, "p_value": pl.Float64})
    path = tmp_path / "group.parquet"
    write_table(table, path, {"outcome": "group", "type": "binary", "covariates": ["cov:background=QC_04"],
                              "notes": ["not tested: the outcome and the covariates are collinear"]})
    text = findings.differential_finding(DifferentialFiles(path, None), None)[1]
    assert text == "no feature could be tested: the outcome and the covariates are collinear"


def test_samples_the_model_places_confidently_in_the_other_class_are_named() -> None:
    """Trial AA: a case entered as a control scored 0.91 as a case out of fold, and the group's section said nothing.
    Such samples are named when the best set, beating chance, places them so, or when two sets agree (trial AB: the
    swap itself sank the best set below chance); one set alone that does not beat chance names nothing, nor does one
    that beats it only before the adjustment for the choice among the sets (trial BF: "suggestive only" named a
    correctly labelled control)."""
    from ms2study.reporting.outcomes import contradicting_samples

    ids = [f"S{i}" for i in range(8)]
    y = [0, 0, 0, 0, 1, 1, 1, 1]
    scores = [0.05, 0.2, 0.1, 0.93, 0.8, 0.95, 0.7, 0.04]  # S3 a control scored as a case, S7 a case as a control

    def predictions(sets: dict[str, list[float]]) -> pl.DataFrame:
        return pl.concat([pl.DataFrame({"feature_set": [name] * 16, "repeat": [0] * 8 + [1] * 8,
                                        "sample_id": ids * 2, "y_true": [float(v) for v in y] * 2,
                                        "y_score": values + [min(1.0, v + 0.02) for v in values]})
                          for name, values in sets.items()])

    strong = _summary(embedding=_entry(0.40, 0.10, 0.80, 0.70), features=_entry(0.97, 0.72, 1.0, 0.01),
                      binned_spectra=_entry(0.60, 0.20, 1.0, 0.30))  # adjusted for 3 sets: p 0.03
    note = contradicting_samples(predictions({"features": scores}), strong)
    assert note == ("Out of fold, the feature sets place 2 sample(s) confidently in the other class: S3 (entered as "
                    "control; features 0.94 for the other class); S7 (entered as case; features 0.95 for the other "
                    "class). A swapped label or vial looks like this, and lowers the models' scores: check their rows "
                    "of the sample sheet before trusting either the label or the model.")
    # SUMMARY's features: p 0.02 on its own test, 0.06 adjusted for the choice among 3 sets ("suggestive only")
    assert contradicting_samples(predictions({"features": scores}), SUMMARY) is None
    assert contradicting_samples(predictions({"features": scores}), SUMMARY, choice_adjusted=False) == note
    weak = _summary(features=_entry(0.70, 0.40, 0.95, 0.20), embedding=_entry(0.6, 0.3, 0.9, 0.4))
    assert contradicting_samples(predictions({"features": scores}), weak) is None  # one set, not beating chance
    agree = contradicting_samples(predictions({"features": scores, "embedding": [min(1.0, v + 0.01) for v in scores]}),
                                  weak)
    assert agree.startswith("Out of fold, the feature sets place 2 sample(s)") and "features 0.94, embedding 0.95" in agree
    flat = predictions({"features": [0.5] * 8, "embedding": [0.5] * 8})
    assert contradicting_samples(flat, SUMMARY) is None
    # trial BG: the covariates alone place S3 in the other class too (age and bmi): their doing, S3 is not named
    with_covariates = {**strong, "feature_sets": {**strong["feature_sets"],
                                                  "covariates": _entry(0.8, 0.5, 1.0, 0.02)}}
    alone = [0.5] * 3 + [0.93] + [0.5] * 4
    note = contradicting_samples(predictions({"features": scores, "covariates": alone}), with_covariates)
    assert note.startswith("Out of fold, the feature sets place 1 sample(s)") and "S7 (entered as case" in note
    assert "S3" not in note
