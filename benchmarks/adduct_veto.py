"""Benchmark: how often the adduct check of identification vetoes right matches on chance pairings, and how often it
keeps true contradictions, before and after the co-variation test of ``correction.covariation``.

Rules compared (``RULES``), each applied by the pipeline's own code (``correction.matrix.correct_matrix``, then
``stages.identify.identify_features``):

- ``before``: the rule up to this change: r >= 0.6 over the runs both features were measured in, tested from 4
  shared runs, every grouped adduct may refuse a match (emulated: alpha just below 1, min runs 4, the evidence
  columns dropped before identification; ``before_matches_pipeline_run`` checks the emulation against the
  identifications the pipeline itself wrote when the study was run with the old code);
- ``after``: the configured defaults (r >= 0.6 and the one-sided t test of r > 0 over the runs measuring both, its
  Benjamini-Hochberg q over the study's tested pairs at ``adduct_alpha`` 0.01; tested from ``adduct_min_runs`` 5
  shared runs; a grouping not tested refuses nothing);
- ``per_pair_0.01``, ``per_pair_0.05``: each pair's p at that level instead of the q (how much the multiple-testing
  step and alpha matter); ``bh_0.05``: the q at 0.05.

Part A, chance pairings on real background: spike-in studies of the real Q Exactive run (``semireal.py`` builds and
runs them; here only the correct and identify stages are recomputed). Every spiked compound is an [M+H]+ ion only,
so any adduct label on its feature is a chance pairing with an unrelated ion. Counted: spiked ions given an adduct
label, of them labels that can refuse an [M+H]+ match (not [M+H]+, tested); right matches (q <= fdr, the right
structure) vetoed; wrong matches at q <= fdr stopped; matches at q <= fdr on a spiked compound's 13C isotope
feature (a true contradiction: the precursor is not a monoisotopic ion) refused.

Part B, planted adducts: demo-type simulated studies (``simulate.study.simulate_features`` with ``adducts``:
[M+H]+ with [M+Na]+ and [M+NH4]+ ions of ~2,750 compounds, 30 % with a same-mass neighbour within 3 s; no QCs or
blanks, so runs = samples). Counted: planted (main ion, adduct ion) pairs grouped; planted [M+Na]+/[M+NH4]+ ions
labelled as such with the power to refuse (true contradictions kept: a library [M+H]+ match there is refused); main
ions labelled as another adduct with that power (a right [M+H]+ match there would be vetoed).

    PYTHONPATH=workflow python benchmarks/adduct_veto.py --studies /tmp/av/s6_seed0/study ... --out R.json \
        [--planted-samples 6 16] [--planted-seeds 0 1]

A study folder is one that ``benchmarks/semireal.py --study DIR --samples N --seed S`` built and ran.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "workflow"))
sys.path.insert(0, str(REPO / "benchmarks"))

from machine import machine_record  # noqa: E402
from semireal import C13, PPM, RT_TOL, code_version, is_false, match_features, verdict  # noqa: E402

from ms2study.core import tables  # noqa: E402
from ms2study.core.params import schema_defaults  # noqa: E402
from ms2study.correction import adducts  # noqa: E402
from ms2study.correction.isotopes import HEAVY  # noqa: E402
from ms2study.correction.covariation import NULL_MIN_RUNS, correlation_p_value, fisher_z  # noqa: E402
from ms2study.correction.matrix import correct_matrix  # noqa: E402
from ms2study.io.samplesheet import read_sample_sheet, sample_roles  # noqa: E402
from ms2study.simulate import study as simulate  # noqa: E402
from ms2study.stages.identify import identify_features  # noqa: E402

RULES = {
    "before": {"adduct_alpha": 1 - 1e-12, "adduct_min_runs": 4, "adduct_multiple_testing": "none", "evidence": False},
    "after": {"evidence": True},
    "per_pair_0.01": {"adduct_multiple_testing": "none", "evidence": True},
    "per_pair_0.05": {"adduct_alpha": 0.05, "adduct_multiple_testing": "none", "evidence": True},
    "bh_0.05": {"adduct_alpha": 0.05, "evidence": True},
}
REFUSED = pl.col("adduct_note").fill_null("").str.starts_with("not accepted")
PROTONATED = ("[M+H]+", "[M]+")


def grouping(matrix: pl.DataFrame, roles: pl.DataFrame, rule: dict, gap_filled: pl.DataFrame | None = None,
             base: dict | None = None) -> pl.DataFrame:
    """The corrected matrix's grouping columns under ``rule``, with the evidence of each label."""
    params = {**(base or {}), **{k: v for k, v in rule.items() if k != "evidence"}}
    corrected = correct_matrix(matrix, roles, params, gap_filled).matrix
    keep = ["consensus_id", "mz", "rt_s", "compound_group", "adduct", "group_representative"]
    return corrected.select(keep + list(tables.ADDUCT_EVIDENCE))


def for_identification(groups: pl.DataFrame, rule: dict) -> pl.DataFrame:
    """What identification is given: without the evidence columns for ``before`` (every label refuses)."""
    return groups if rule["evidence"] else groups.drop(list(tables.ADDUCT_EVIDENCE))


def can_refuse(rule: dict) -> pl.Expr:
    """A label that refuses a contradicting match: tested, or any label where the rule has no evidence columns."""
    return pl.col("adduct_p_value").is_not_null() if rule["evidence"] else pl.lit(True)


def isotope_features(one: pl.DataFrame, fm: pl.DataFrame) -> set[str]:
    """Consensus features on a spiked compound's 13C isotope peaks (M+1 ... M+4)."""
    mz, rt, ids = fm["mz"].to_numpy(), fm["rt_s"].to_numpy(), fm["consensus_id"].to_list()
    hit = np.zeros(fm.height, dtype=bool)
    for r in one.iter_rows(named=True):
        for k in range(1, 5):
            m = r["mz"] + k * C13
            hit |= (np.abs(mz - m) <= PPM * 1e-6 * m) & (np.abs(rt - r["rt_s"]) <= RT_TOL)
    return {ids[i] for i in np.flatnonzero(hit)}


def spikein_study(study: Path) -> dict:
    """Part A on one study folder: every rule's chance labels, vetoes and kept contradictions."""
    res = study / "results"
    config = yaml.safe_load((study / "config.yaml").read_text()) or {}
    base = {**schema_defaults("correct"), **(config.get("correct") or {})}
    fdr = float((config.get("annotate") or {}).get("fdr", 0.01))
    sheet = read_sample_sheet(res / "study" / "samples.tsv")
    roles = sample_roles(sheet)
    runs = roles["sample_id"].to_list()
    fm = pl.read_parquet(res / "study" / "feature_matrix.parquet")
    gap = [res / "study" / "gap_filled" / f"{s}.parquet" for s in runs]
    gap_filled = pl.concat([pl.read_parquet(p) for p in gap]) if all(p.is_file() for p in gap) else None
    ann = pl.concat([pl.read_parquet(res / "samples" / s / "annotations.parquet") for s in runs],
                    how="diagonal_relaxed")
    links = pl.read_parquet(res / "study" / "feature_links.parquet")
    run_types = dict(zip(roles["sample_id"].to_list(), roles["sample_type"].to_list(), strict=True))
    truth = pl.read_csv(study / "ground_truth.tsv", separator="\t")
    one = truth.filter(pl.col("sample_id") == truth["sample_id"][0])
    matched = match_features(one, fm)
    spiked = set(matched.values())
    isotopes = isotope_features(one, fm) - spiked
    compound_of = {cid: r for r in one.iter_rows(named=True) if (cid := matched.get(r["compound_id"]))}
    out = {"study": str(study), "n_runs": len(runs), "n_consensus_features": fm.height, "fdr": fdr,
           "n_spiked_detected": len(spiked), "n_isotope_features": len(isotopes), "rules": {}}
    for name, rule in RULES.items():
        groups = grouping(fm, roles, rule, gap_filled, base)
        ident = identify_features(ann, links, fdr, None, for_identification(groups, rule), run_types)
        labels = groups.with_columns(can_refuse(rule).alias("_refuses"))
        on_spiked = labels.filter(pl.col("consensus_id").is_in(list(spiked)) & pl.col("adduct").is_not_null()
                                  & ~pl.col("adduct").str.contains("M\\+\\d$"))
        harmful = on_spiked.filter(pl.col("_refuses") & ~pl.col("adduct").is_in(PROTONATED))
        passed = ident.filter(pl.col("q_value") <= fdr)
        right, wrong = [], []
        for r in passed.filter(pl.col("consensus_id").is_in(list(compound_of))).iter_rows(named=True):
            truth_row = compound_of[r["consensus_id"]]
            if verdict(truth_row, r) == "correct":
                right.append(r)
            elif is_false(truth_row, {**r, "msi_level": r["msi_level"] or 3}):
                wrong.append(r)
        on_iso = passed.filter(pl.col("consensus_id").is_in(list(isotopes)))

        def refused(rows: list[dict]) -> list[dict]:
            return [{"consensus_id": r["consensus_id"], "name": r["name"], "q_value": r["q_value"],
                     "adduct_note": r["adduct_note"], "partner": r["adduct_partner"],
                     "correlation": r["adduct_correlation"], "n_runs": r["adduct_n_runs"]}
                    for r in rows if (r["adduct_note"] or "").startswith("not accepted")]

        out["rules"][name] = {
            "spiked_ions_paired": on_spiked.height,
            "spiked_ions_labelled_to_refuse_mh": harmful.height,
            "spiked_label_detail": on_spiked.select("consensus_id", "adduct", "adduct_partner", "adduct_n_runs",
                                                    "adduct_correlation", "adduct_p_value", "_refuses").to_dicts(),
            "right_matches": len(right), "right_vetoed": len(refused(right)), "right_vetoed_detail": refused(right),
            "wrong_matches": len(wrong), "wrong_stopped": len(refused(wrong)),
            "isotope_feature_matches": on_iso.height, "isotope_feature_matches_refused": int(
                on_iso.select(REFUSED.sum()).item()),
            "all_refused": int(ident.filter(pl.col("q_value") <= fdr).select(REFUSED.sum()).item()),
            "features_in_groups": int(groups.group_by("compound_group").len().filter(pl.col("len") > 1)["len"].sum()
                                      or 0),
        }
        if name == "before" and (res / "study" / "identifications.parquet").is_file():
            ran = pl.read_parquet(res / "study" / "identifications.parquet").select(
                "consensus_id", "accepted", "adduct_note").sort("consensus_id")
            out["before_matches_pipeline_run"] = ran.equals(
                ident.select("consensus_id", "accepted", "adduct_note").sort("consensus_id"))
    return out


DECOY_BANDS_DA = (0.0, 0.9, 5.0, 15.0, 60.0, math.inf)  # m/z difference bands of the decoy pairs


def grouping_input(matrix: pl.DataFrame, roles: pl.DataFrame, params: dict,
                   gap_filled: pl.DataFrame | None) -> tuple[pl.DataFrame, list[str]]:
    """The exact frame and runs ``correct_matrix`` hands to adduct grouping (corrected, measured cells only), taken
    by wrapping ``adducts.adduct_grouping`` for one call."""
    seen = {}
    original = adducts.adduct_grouping

    def capture(frame, runs, p, polarity="positive"):
        seen["frame"], seen["runs"] = frame, list(runs)
        return original(frame, runs, p, polarity)

    adducts.adduct_grouping = capture
    try:
        correct_matrix(matrix, roles, params, gap_filled)
    finally:
        adducts.adduct_grouping = original
    return seen["frame"], seen["runs"]


def decoy_null(study: Path) -> dict:
    """Part C: does the correlation test's null hold for co-eluting ions that are NOT one compound?

    Decoy pairs: every pair of consensus features within ``adduct_rt_tol_s`` whose m/z difference fits no mass
    hypothesis of the grouping (no adduct pair, no isotope step, at ``adduct_mz_ppm``), measured together in at least
    ``adduct_min_runs`` runs, on the values grouping sees. Their correlation p-values (``correlation_p_value``) should
    be uniform and Fisher's z = atanh(r) sqrt(n - 3) standard normal; shared variation of co-eluting ions (matrix
    effects, a field over m/z and RT) shows as a shifted mean and a share p <= 0.01 above 1 %. Per band of m/z
    difference (``DECOY_BANDS_DA``): adduct differences are >= 17 Da, isotope steps 1-4 Da."""
    res = study / "results"
    config = yaml.safe_load((study / "config.yaml").read_text()) or {}
    base = {**schema_defaults("correct"), **(config.get("correct") or {})}
    roles = sample_roles(read_sample_sheet(res / "study" / "samples.tsv"))
    runs = roles["sample_id"].to_list()
    fm = pl.read_parquet(res / "study" / "feature_matrix.parquet")
    gap = [res / "study" / "gap_filled" / f"{s}.parquet" for s in runs]
    gap_filled = pl.concat([pl.read_parquet(p) for p in gap]) if all(p.is_file() for p in gap) else None
    frame, grouped_runs = grouping_input(fm, roles, base, gap_filled)
    mz = frame["mz"].cast(pl.Float64).to_numpy()
    rt = frame["rt_s"].cast(pl.Float64).to_numpy()
    x = frame.select([pl.col(s).cast(pl.Float64) for s in grouped_runs]).to_numpy()
    x = np.where(np.isfinite(x) & (x > 0), x, np.nan)
    rt_tol, ppm = float(base["adduct_rt_tol_s"]), float(base["adduct_mz_ppm"])
    min_runs = max(int(base["adduct_min_runs"]), NULL_MIN_RUNS)
    decoys = [adducts.edges_and_decoys(a, b, mz, rt, rt_tol, ppm, "positive")[1]
              for a, b in adducts._coeluting_pairs(mz, rt, rt_tol)]
    a, b = np.concatenate([d[0] for d in decoys]), np.concatenate([d[1] for d in decoys])
    n, r, _, _ = adducts._pair_statistics(a, b, np.log(x), x)
    ok = (n >= min_runs) & np.isfinite(r) & (np.abs(r) < 1.0)
    z = fisher_z(r[ok], n[ok])
    p = correlation_p_value(r[ok], n[ok])
    diff = (mz[b] - mz[a])[ok]
    bands = []
    for lo, hi in zip(DECOY_BANDS_DA[:-1], DECOY_BANDS_DA[1:], strict=True):
        s = (diff >= lo) & (diff < hi)
        if s.sum() < 20:
            continue
        bands.append({"mz_difference_da": [lo, None if math.isinf(hi) else hi], "pairs": int(s.sum()),
                      "mean_z": round(float(z[s].mean()), 3), "sd_z": round(float(z[s].std()), 3),
                      "share_p_le_0.01": round(float((p[s] <= 0.01).mean()), 4),
                      "share_p_le_0.001": round(float((p[s] <= 0.001).mean()), 5)})
    out = {"study": str(study), "n_runs": len(grouped_runs), "n_consensus_features": fm.height,
           "decoy_pairs_tested": int(ok.sum()), "median_shared_runs": float(np.median(n[ok])) if ok.any() else None,
           "bands": bands, "groupings": {}}
    truth = pl.read_csv(study / "ground_truth.tsv", separator="\t")
    one = truth.filter(pl.col("sample_id") == truth["sample_id"][0])
    spiked = set(match_features(one, fm).values())
    spiked_isotopes = isotope_features(one, fm) - spiked
    for null in ("theoretical", "empirical"):  # what each null groups on this study
        g = adducts.adduct_grouping(frame, grouped_runs, {**base, "adduct_null": null})
        kinds = g.pairs["kind"].to_list()
        iso = g.table.filter(pl.col("consensus_id").is_in(list(spiked_isotopes)))
        out["groupings"][null] = {
            "adduct_pairs": kinds.count("adduct"), "13C_M+1_pairs": kinds.count("M+1"),
            "13C2_M+2_pairs": kinds.count("M+2"),
            "heavy_atom_isotope_pairs": sum(any(h in k for h in HEAVY) for k in kinds),
            "spiked_isotope_features": iso.height,
            "spiked_isotope_features_labelled": iso.filter(
                pl.col("adduct").fill_null("").str.contains(r"M\+\d$")).height,
            "spiked_ions_with_tested_label": g.table.filter(
                pl.col("consensus_id").is_in(list(spiked)) & pl.col("adduct_p_value").is_not_null()).height,
            "decoy_pairs": g.counts["n_decoy_pairs"]}
    return out


def planted_study(n_samples: int, seed: int) -> dict:
    """Part B on one demo-type simulated study: planted pairs grouped, true contradictions kept, false labels."""
    known = simulate.simulate_features(n_samples, seed=seed, params={"adducts": True})
    samples = known.samples
    roles = sample_roles(samples)
    runs = roles["sample_id"].to_list()
    values = np.where(np.isfinite(known.intensity), known.intensity, np.nan)  # runs x features
    matrix = pl.DataFrame({"consensus_id": known.features["feature_id"],
                           "mz": known.features["mz"].cast(pl.Float64), "rt_s": known.features["rt_s"].cast(pl.Float64),
                           "n_detected": pl.Series(np.isfinite(values).sum(axis=0).astype(np.int32))})
    matrix = matrix.with_columns([pl.Series(r, values[i], dtype=pl.Float64).fill_nan(None)
                                  for i, r in enumerate(runs)])
    feats = known.features.select(pl.col("feature_id").alias("consensus_id"), "compound_id", "ion")
    detected = pl.Series("n_det", np.isfinite(values).sum(axis=0))
    feats = feats.with_columns(detected).filter(pl.col("n_det") > 0)
    main = feats.filter(pl.col("ion").is_in(PROTONATED)).select("compound_id", pl.col("consensus_id").alias("_main"))
    planted = feats.filter(pl.col("ion").is_in(["[M+Na]+", "[M+NH4]+"])).join(main, on="compound_id")
    out = {"n_samples": n_samples, "seed": seed, "n_features": matrix.height, "n_planted_pairs": planted.height,
           "rules": {}}
    for name, rule in RULES.items():
        groups = grouping(matrix, roles, rule)
        g = groups.with_columns(can_refuse(rule).alias("_refuses")).select(
            "consensus_id", "compound_group", "adduct", "_refuses")
        pairs = planted.join(g, on="consensus_id").join(
            g.select(pl.col("consensus_id").alias("_main"), pl.col("compound_group").alias("_main_group")), on="_main")
        kept = pairs.filter((pl.col("adduct") == pl.col("ion")) & pl.col("_refuses"))
        mains = feats.filter(pl.col("ion").is_in(PROTONATED)).join(g, on="consensus_id")
        false_veto = mains.filter(pl.col("_refuses") & pl.col("adduct").is_not_null()
                                  & ~pl.col("adduct").is_in(PROTONATED) & ~pl.col("adduct").str.contains("M\\+\\d$"))
        out["rules"][name] = {
            "pair_recall": round(float((pairs["compound_group"] == pairs["_main_group"]).mean()), 4),
            "adduct_ions_kept_to_refuse_mh": round(kept.height / max(pairs.height, 1), 4),
            "adduct_ions_grouped_untested": int(pairs.filter((pl.col("compound_group") == pl.col("_main_group"))
                                                             & ~pl.col("_refuses")).height),
            "adduct_ions_not_grouped": int((pairs["compound_group"] != pairs["_main_group"]).sum()),
            "adduct_ions_mislabelled": int(pairs.filter(pl.col("adduct").is_not_null() & ~pl.col("adduct").str
                                                        .contains("M\\+\\d$") & (pl.col("adduct") != pl.col("ion")))
                                           .height),
            "main_ions": mains.height, "main_ions_labelled_to_refuse_mh": false_veto.height,
        }
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--studies", type=Path, nargs="*", default=[], help="spike-in study folders run by semireal.py")
    ap.add_argument("--planted-samples", type=int, nargs="*", default=[6, 16])
    ap.add_argument("--planted-seeds", type=int, nargs="*", default=[0])
    ap.add_argument("--decoy-studies", type=Path, nargs="*", default=[],
                    help="part C only: finished study folders whose decoy pairs' correlation null is measured; the "
                         "result is merged into --out under 'decoy_null' (other parts kept)")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    t = time.time()
    if args.decoy_studies:
        result = json.loads(args.out.read_text()) if args.out.is_file() else {"benchmark": "adduct_veto"}
        result["decoy_null"] = {"machine": machine_record(), "code": code_version(),
                                "studies": [decoy_null(s) for s in args.decoy_studies],
                                "seconds": round(time.time() - t, 1)}
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1, default=str) + "\n")
        for part in result["decoy_null"]["studies"]:
            print(part["study"], part["n_runs"], "runs", part["decoy_pairs_tested"], "decoy pairs")
            for band in part["bands"]:
                print("  ", band)
            print("  ", part["groupings"])
        return 0
    result = {"benchmark": "adduct_veto", "machine": machine_record(), "code": code_version(), "rules": RULES,
              "spikein": [spikein_study(s) for s in args.studies],
              "planted": [planted_study(n, s) for n in args.planted_samples for s in args.planted_seeds]}
    result["seconds"] = round(time.time() - t, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1, default=str) + "\n")
    for part in result["spikein"]:
        print(part["study"], part["n_runs"], "runs", {k: {m: v for m, v in r.items() if not m.endswith("detail")}
                                                      for k, r in part["rules"].items()},
              "before_matches_pipeline_run:", part.get("before_matches_pipeline_run"))
    for part in result["planted"]:
        print("planted", part["n_samples"], "samples seed", part["seed"], part["rules"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
