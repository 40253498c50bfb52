"""Benchmark: the whole pipeline on known compounds spiked into a real Q Exactive run (``simulate --background``).

Builds a study with ``ms2study.simulate.spikein`` (default: 16 copies of ../shared/data/mzml/171103_PMA_TK_QC_04,
60 MassBank compounds spiked, 12 of one class 3x higher in cases, a third of them known unknowns, the library all
positive-mode commercially licensed MassBank records minus those), runs ``ms2study run`` on it and scores the
outputs against ground_truth.tsv:

- identification: per spiked compound, detected (a consensus feature within 10 ppm and 10 s), MS2 acquired, MS2
  mapped to its feature, its study identification (results/study/identifications.parquet): q, MSI level, verdict
  (correct: same first InChIKey block, or a level-3 hit naming it among the isomers; isomer: same formula; wrong).
  A known unknown's accepted hit is wrong unless level 3 with the right formula. True FDP among accepted spiked
  hits at q <= 0.01 and 0.05; the same per spectrum from annotations.parquet. Accepted hits on background
  features (truth unknown; features within 10 ppm / 10 s of a spiked ion or its 13C isotopes are not background):
  count, cosine quantiles, how many below cosine 0.3 and whether their spectra carry an evidence note;
- differential (results/study/differential/group.parquet): planted compounds at q < 0.05 out of those detected and
  tested, false discoveries among the other spiked compounds and among background features (every sample is a
  copy of one run, so the background differs between the groups only through the simulated per-sample intensity
  field; each false discovery says whether that field itself differs there: ``field_difference``), class
  enrichment;
- models: AUC and interval per feature set (results/study/models/group/summary.json);
- pooling: what the pooled sample embedding is made of (``score_pooling``): how concentrated the abundance
  shares are, which consensus features own the between-sample variance of the pooled vectors, and the changed
  compounds' share of the weight in controls and cases (issue 12: why that set scores at chance);
- the report: its warnings and whether it says "No warnings".

Usage: PYTHONPATH=workflow python benchmarks/semireal.py --study /tmp/s9sr/study --out result.json
       [--skip-build] [--skip-run] [--cores 2] [--samples 16] [--seed 0] [--library-size N]
       [--background RUN.mzML] [--library LIB.mgf.gz]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import polars as pl

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "workflow"))
sys.path.insert(0, str(REPO / "benchmarks"))

from machine import machine_record

from ms2study.simulate.spikein import isotope_envelope, simulate_spikein
from ms2study.simulate.spikein_variation import variation

DATA = REPO.parent / "shared" / "data"
BACKGROUND = DATA / "mzml" / "171103_PMA_TK_QC_04-4to5min.mzML"
LIBRARY = DATA / "massbank" / "massbank_dev.mgf.gz"
PPM, RT_TOL = 10.0, 10.0
# A discovery on the background is "field-driven" when the simulated per-sample intensity field itself differs
# between cases and controls near it (within FIELD_WINDOW_S of its RT): same sign as the measured fold change,
# Welch |t| >= FIELD_T and at least half the measured log2 fold change. The field is drawn per sample independently
# of the groups, so over thousands of background ions some line up with the groups by chance: such a difference is
# real in the data (the pipeline is right to find it), just not caused by the label.
FIELD_WINDOW_S, FIELD_T = 15.0, 4.0
C13 = 1.0033548378


def code_version() -> dict:
    """The commit measured and whether the checkout had uncommitted changes; SEMIREAL_COMMIT names the commit when
    the workflow ran from a clean ``git archive`` of it (uncommitted_changes false)."""
    if os.environ.get("SEMIREAL_COMMIT"):
        return {"commit": os.environ["SEMIREAL_COMMIT"], "uncommitted_changes": False, "checkout": "git archive"}
    try:
        head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, check=True).stdout.strip()
        return {"commit": head, "uncommitted_changes": bool(dirty)}
    except (OSError, subprocess.CalledProcessError):
        return {"commit": None, "uncommitted_changes": None}


def block(key: str | None) -> str:
    return (key or "").split("-")[0]


def match_features(truth: pl.DataFrame, fm: pl.DataFrame) -> dict[int, str]:
    """compound_id -> consensus_id of the nearest consensus feature (ppm-scaled m/z + RT distance) in tolerance."""
    mz, rt, ids = fm["mz"].to_numpy(), fm["rt_s"].to_numpy(), fm["consensus_id"].to_list()
    out = {}
    for r in truth.iter_rows(named=True):
        ppm = np.abs(mz - r["mz"]) / r["mz"] * 1e6
        ok = (ppm <= PPM) & (np.abs(rt - r["rt_s"]) <= RT_TOL)
        if ok.any():
            score = np.where(ok, ppm / PPM + np.abs(rt - r["rt_s"]) / RT_TOL, np.inf)
            out[r["compound_id"]] = ids[int(np.argmin(score))]
    return out


def spiked_ions(truth: pl.DataFrame, fm: pl.DataFrame, resolution_ppm: float | None = None) -> pl.Series:
    """Whether each consensus feature lies on a spiked compound's monoisotopic ion or one of its isotope peaks: the
    13C ladder (M+1 ... M+4) and, with ``resolution_ppm`` (the simulated run's, simulation.json) and a formula, the
    isotope centroids the simulator wrote (``isotope_envelope``: 37Cl, 81Br, 34S at their true masses)."""
    mz, rt = fm["mz"].to_numpy(), fm["rt_s"].to_numpy()
    hit = np.zeros(fm.height, dtype=bool)
    for r in truth.iter_rows(named=True):
        offsets = [k * C13 for k in range(5)]
        if resolution_ppm and r.get("formula"):
            offsets += isotope_envelope(r["formula"], resolution_ppm)[0].tolist()
        for offset in offsets:
            m = r["mz"] + offset
            hit |= (np.abs(mz - m) <= PPM * 1e-6 * m) & (np.abs(rt - r["rt_s"]) <= RT_TOL)
    return pl.Series(hit)


def verdict(row: dict, ident: dict | None) -> str:
    """correct / isomer / wrong / none for a compound's identification (any q)."""
    if ident is None or ident.get("inchikey") is None:
        return "none"
    if block(ident["inchikey"]) == block(row["inchikey"]) or (
            ident.get("msi_level") == 3 and block(row["inchikey"]) in {block(k) for k in ident.get("isomer_inchikeys")
                                                                      or []}):
        return "correct" if row["in_library"] else "wrong"
    if ident.get("formula") == row["formula"]:
        return "isomer"
    return "wrong"


def is_false(row: dict, ident: dict) -> bool:
    """A false acceptance: wrong structure claimed (level 2 isomer, other formula), or any claim on a known unknown
    except level 3 with its formula."""
    v = verdict(row, ident)
    if not row["in_library"]:
        return not (ident.get("msi_level") == 3 and ident.get("formula") == row["formula"])
    return v == "wrong" or (v == "isomer" and ident.get("msi_level") != 3)


def score_identification(study: Path, truth: pl.DataFrame, fm: pl.DataFrame, matched: dict) -> dict:
    res = study / "results"
    ident = pl.read_parquet(res / "study" / "identifications.parquet")
    links = pl.read_parquet(res / "study" / "feature_links.parquet")
    samples = truth["sample_id"].unique().sort().to_list()
    spectra = pl.concat([pl.read_parquet(res / "samples" / s / "spectra.parquet").drop("mz", "intensity")
                         for s in samples], how="diagonal_relaxed")
    ann = pl.concat([pl.read_parquet(res / "samples" / s / "annotations.parquet") for s in samples],
                    how="diagonal_relaxed")
    mapped = spectra.filter(pl.col("feature_id").is_not_null()).join(
        links.select("consensus_id", "sample_id", "feature_id"), on=["sample_id", "feature_id"], how="inner")
    by_cid = {r["consensus_id"]: r for r in ident.iter_rows(named=True)}
    n_ms2 = truth.group_by("compound_id").agg(pl.col("n_ms2").sum())
    n_ms2 = dict(zip(n_ms2["compound_id"].to_list(), n_ms2["n_ms2"].to_list(), strict=True))
    one = truth.filter(pl.col("sample_id") == samples[0]).sort("compound_id")
    rows = []
    for r in one.iter_rows(named=True):
        cid = matched.get(r["compound_id"])
        i = by_cid.get(cid) if cid else None
        # spectra of the spiked precursor (any sample), mapped or not
        own = spectra.filter(((pl.col("precursor_mz") - r["mz"]).abs() <= PPM * 1e-6 * r["mz"])
                             & ((pl.col("rt_s") - r["rt_s"]).abs() <= RT_TOL))
        rows.append({
            "name": r["name"], "inchikey": r["inchikey"], "formula": r["formula"], "mz": round(r["mz"], 4),
            "rt_s": round(r["rt_s"], 1), "in_library": r["in_library"], "changed": r["changed"],
            "median_abundance": float(truth.filter(pl.col("compound_id") == r["compound_id"])["abundance"].median()),
            "detected": cid is not None, "consensus_id": cid, "ms2_acquired": n_ms2[r["compound_id"]],
            "ms2_read": own.height, "ms2_mapped": int(own["feature_id"].is_not_null().sum()),
            "ms2_on_feature": int(mapped.filter(pl.col("consensus_id") == cid).height) if cid else 0,
            "id_name": i["name"] if i else None, "id_inchikey": i["inchikey"] if i else None,
            "id_formula": i["formula"] if i else None, "msi_level": i["msi_level"] if i else None,
            "q_value": i["q_value"] if i else None, "best_cosine": i["best_cosine"] if i else None,
            "verdict": verdict(r, i), "false_if_accepted": is_false(r, i) if i else None,
            "accepted_1pct": bool(i["accepted"]) if i else False, "adduct_note": i["adduct_note"] if i else None,
            "n_isomers_named": len(i["isomer_inchikeys"] or []) if i else None,
        })
    table = pl.DataFrame(rows, infer_schema_length=None)

    def at(q: float) -> dict:
        # accepted as the pipeline would at this FDR: q <= q and not refused by the adduct grouping
        refused = pl.col("adduct_note").fill_null("").str.starts_with("not accepted")
        acc = table.filter(pl.col("q_value").is_not_null() & (pl.col("q_value") <= q) & ~refused)
        n_false = int(acc["false_if_accepted"].sum()) if acc.height else 0
        lib = table.filter(pl.col("in_library") & pl.col("detected"))
        return {"accepted": acc.height, "false": n_false, "fdp": n_false / acc.height if acc.height else None,
                "correct_of_in_library_detected": f"{int(acc.filter('in_library')['verdict'].eq('correct').sum())}"
                                                  f" of {lib.height}",
                "accepted_known_unknowns": int(acc.filter(~pl.col("in_library")).height),
                "false_hits": acc.filter("false_if_accepted").select(
                    "name", "id_name", "formula", "id_formula", "msi_level", "q_value", "best_cosine",
                    "in_library").to_dicts()}

    # per spectrum: rank-1 annotations of spiked MS2 scans
    top = ann.filter(pl.col("rank") == 1).join(spectra.select("spectrum_id", "precursor_mz", "rt_s"), on="spectrum_id")
    spec_rows = []
    for r in one.iter_rows(named=True):
        s = top.filter(((pl.col("precursor_mz") - r["mz"]).abs() <= PPM * 1e-6 * r["mz"])
                       & ((pl.col("rt_s") - r["rt_s"]).abs() <= RT_TOL))
        for a in s.iter_rows(named=True):
            hit = {"inchikey": a["library_inchikey"], "msi_level": a.get("msi_level"),
                   "isomer_inchikeys": a.get("isomer_inchikeys"), "formula": a.get("library_formula")}
            spec_rows.append({"compound": r["name"], "in_library": r["in_library"], "q_value": a.get("q_value"),
                              "cosine": a["cosine"], "verdict": verdict(r, hit), "msi_level": a.get("msi_level"),
                              "accepted": a.get("accepted"), "evidence_note": a.get("evidence_note")})
    spec = pl.DataFrame(spec_rows, infer_schema_length=None) if spec_rows else pl.DataFrame()
    per_spectrum = {}
    if spec.height:
        for q in (0.01, 0.05):
            acc = spec.filter(pl.col("q_value") <= q)
            wrong = acc.filter((pl.col("verdict") == "wrong") | ((pl.col("verdict") == "isomer")
                                                                  & (pl.col("msi_level") != 3)))
            per_spectrum[str(q)] = {"accepted": acc.height, "false": wrong.height,
                                    "fdp": wrong.height / acc.height if acc.height else None}
        per_spectrum["n_spectra"] = spec.height
        acc = top.filter(pl.col("accepted").fill_null(False))
        per_spectrum["all_accepted_rank1_in_study"] = {
            "n": acc.height, "msi_levels": dict(acc["msi_level"].cast(pl.Utf8).value_counts().iter_rows()),
            "without_isomer_candidate": int(acc["isomer_gap"].is_null().sum()) if "isomer_gap" in acc.columns else None,
            "combined_q10_50_max": [round(float(acc["combined"].quantile(x)), 3) for x in (0.1, 0.5, 1.0)]
            if "combined" in acc.columns and acc.height else None,
            "structure_q_value_min": float(acc["structure_q_value"].min())
            if "structure_q_value" in acc.columns and acc.height else None}
        per_spectrum["verdict_counts_any_q"] = dict(spec["verdict"].value_counts().iter_rows())

    # background features: accepted identifications on consensus features that are no spiked ion
    resolution = json.loads((study / "simulation.json").read_text()).get("background_measured", {}).get(
        "resolution_ppm")
    on_spiked = fm.select("consensus_id").with_columns(spiked_ions(one, fm, resolution).alias("spiked"))
    bg_ids = set(on_spiked.filter(~pl.col("spiked"))["consensus_id"].to_list())
    bg = ident.filter(pl.col("accepted") & pl.col("consensus_id").is_in(list(bg_ids)))
    notes = ann.filter((pl.col("rank") == 1) & pl.col("accepted")).join(
        links.select("consensus_id", "sample_id", "feature_id"), on=["sample_id", "feature_id"], how="inner")
    bg_rows = []
    for b in bg.iter_rows(named=True):
        sub = notes.filter((pl.col("consensus_id") == b["consensus_id"])
                           & (pl.col("library_inchikey") == b["inchikey"]))
        bg_rows.append({"consensus_id": b["consensus_id"], "name": b["name"], "msi_level": b["msi_level"],
                        "q_value": b["q_value"], "best_cosine": b["best_cosine"], "n_spectra": b["n_spectra"],
                        "n_samples": b["n_samples"],
                        "evidence_note": next((n for n in sub["evidence_note"].to_list() if n), None)
                        if "evidence_note" in sub.columns else None})
    cos = np.array([r["best_cosine"] for r in bg_rows], dtype=float)
    background = {
        "n_background_features": len(bg_ids), "accepted": len(bg_rows),
        "cosine_q10_50_90": np.quantile(cos, [0.1, 0.5, 0.9]).round(3).tolist() if cos.size else None,
        "below_cosine_0.3": int((cos < 0.3).sum()),
        "below_0.3_with_evidence_note": sum(1 for r in bg_rows if r["best_cosine"] < 0.3 and r["evidence_note"]),
        "msi_levels": dict(pl.Series([r["msi_level"] for r in bg_rows], dtype=pl.Int64).value_counts().iter_rows())
        if bg_rows else {},
        "hits": sorted(bg_rows, key=lambda r: r["best_cosine"]),
    }
    counts = {
        "spiked": one.height, "in_library": int(one["in_library"].sum()),
        "detected": int(table["detected"].sum()), "ms2_acquired": int((table["ms2_acquired"] > 0).sum()),
        "ms2_on_feature": int((table["ms2_on_feature"] > 0).sum()),
        "identified_any_q": int(table["q_value"].is_not_null().sum()),
        "verdicts_any_q": dict(table["verdict"].value_counts().iter_rows()),
        "in_library_with_ms2_on_feature": int(table.filter(pl.col("in_library") & (pl.col("ms2_on_feature") > 0))
                                              .height),
        "accepted_correct": int(table.filter(pl.col("accepted_1pct") & (pl.col("verdict") == "correct")).height),
        "accepted_by_pipeline": int(table["accepted_1pct"].sum()),
        "msi_levels_accepted": dict(table.filter("accepted_1pct")["msi_level"].cast(pl.Utf8).value_counts()
                                    .iter_rows()),
        "accepted_level3_naming_no_other_structure": int(table.filter(
            pl.col("accepted_1pct") & (pl.col("msi_level") == 3) & (pl.col("n_isomers_named") <= 1)).height),
        "correct_refused_by_adduct_grouping": table.filter(
            (pl.col("verdict") == "correct") & pl.col("adduct_note").fill_null("").str.starts_with("not accepted"))
        .select("name", "q_value", "adduct_note").to_dicts(),
    }
    return {"counts": counts, "at_q_0.01": at(0.01), "at_q_0.05": at(0.05), "per_spectrum": per_spectrum,
            "background": background, "compounds": table.to_dicts()}


def field_difference(fields: list, case: np.ndarray, mz: float, rt_s: float, log2_fc: float) -> dict:
    """The simulated intensity field's own case - control difference near a feature at (``mz``, ``rt_s``):
    ``fields`` are the samples' ``log_factor`` functions in sheet order (``spikein_variation.variation`` from the
    study's seed; sample i of the sheet is simulation sample i), ``case`` marks the cases. The point within
    ``FIELD_WINDOW_S`` of ``rt_s`` (1 s grid, undrifted RT) where the field's Welch t is largest in the direction of
    ``log2_fc``. Returns field_log2_case_control, field_t and field_explained (see FIELD_T)."""
    grid = np.arange(rt_s - FIELD_WINDOW_S, rt_s + FIELD_WINDOW_S + 0.5, 1.0)
    field = np.array([f(np.full(grid.size, mz), grid) for f in fields])  # samples x grid, ln
    a, b = field[case], field[~case]
    diff = a.mean(axis=0) - b.mean(axis=0)
    t = diff / np.sqrt(a.var(axis=0, ddof=1) / len(a) + b.var(axis=0, ddof=1) / len(b))
    k = int(np.argmax(t * np.sign(log2_fc))) if log2_fc else int(np.argmax(np.abs(t)))
    field_log2 = float(diff[k] / np.log(2))
    explained = bool(np.sign(field_log2) == np.sign(log2_fc) and abs(t[k]) >= FIELD_T
                     and abs(field_log2) >= 0.5 * abs(log2_fc))
    return {"field_log2_case_control": round(field_log2, 3), "field_t": round(float(t[k]), 2),
            "field_explained": explained}


def score_differential(study: Path, truth: pl.DataFrame, fm: pl.DataFrame, matched: dict) -> dict:
    res = study / "results" / "study"
    diff = pl.read_parquet(res / "differential" / "group.parquet")
    one = truth.filter(pl.col("sample_id") == truth["sample_id"][0])
    resolution = json.loads((study / "simulation.json").read_text()).get("background_measured", {}).get(
        "resolution_ppm")
    spiked = spiked_ions(one, fm, resolution)
    planted_ions = spiked_ions(one.filter("changed"), fm, resolution)
    keys = fm.select("consensus_id").with_columns(spiked.alias("spiked"), planted_ions.alias("planted_ion"))
    d = diff.join(keys, on="consensus_id", how="left")
    sig = pl.col("tested") & (pl.col("q_value") < 0.05)
    planted = one.filter("changed")
    found, tested = [], 0
    for r in planted.iter_rows(named=True):
        cid = matched.get(r["compound_id"])
        row = d.filter(pl.col("consensus_id") == cid) if cid else d.clear()
        if row.height and row["tested"][0]:
            tested += 1
            found.append({"name": r["name"], "q_value": row["q_value"][0], "log2_fc": row["log2_fold_change"][0]})
    other_spiked = [matched[r["compound_id"]] for r in one.filter(~pl.col("changed")).iter_rows(named=True)
                    if r["compound_id"] in matched]
    false_spiked = d.filter(sig & pl.col("consensus_id").is_in(other_spiked))
    false_bg = d.filter(sig & ~pl.col("spiked"))

    sim = json.loads((study / "simulation.json").read_text())
    sheet = pl.read_csv(study / "samples.tsv", separator="\t")
    case = np.array([g == "case" for g in sheet["group"].to_list()])
    rt_range = tuple(sim["background_measured"]["rt_range_s"])
    fields = [variation(int(sim["seed"]), i, rt_range)[1].log_factor for i in range(sheet.height)]

    def explain(rows: pl.DataFrame) -> list[dict]:
        return [{**r, **field_difference(fields, case, r["mz"], r["rt_s"], r["log2_fold_change"])} for r in
                rows.select("consensus_id", "mz", "rt_s", "log2_fold_change", "q_value", "name").to_dicts()]
    out = {
        "planted": planted.height,
        "planted_detected": sum(1 for r in planted.iter_rows(named=True) if r["compound_id"] in matched),
        "planted_tested": tested,
        "planted_found_q_0.05": sum(1 for f in found if f["q_value"] is not None and f["q_value"] < 0.05),
        "planted_detail": found,
        "planted_isotope_features_significant": d.filter(sig & pl.col("planted_ion")).height,
        "tested_features": d.filter("tested").height,
        "significant_features": d.filter(sig).height,
        "false_other_spiked": false_spiked.height,
        "false_other_spiked_detail": explain(false_spiked),
        "false_background": false_bg.height,
        "false_background_detail": explain(false_bg),
    }
    out["false_unexplained_by_field"] = sum(not r["field_explained"] for r in
                                            out["false_other_spiked_detail"] + out["false_background_detail"])
    enrich_path = res / "class_enrichment" / "group.parquet"
    if enrich_path.is_file():
        enr = pl.read_parquet(enrich_path)
        out["class_enrichment"] = enr.sort("p_value").head(8).to_dicts() if "p_value" in enr.columns else enr.to_dicts()
    return out


def score_pooling(study: Path, truth: pl.DataFrame, fm: pl.DataFrame) -> dict:
    """What the pooled sample embedding (results/study/pooled, ``pool: method: abundance_share``) is made of.

    Recomputes each study sample's pooling weights as the pool-corrected stage does (``pooling.per_feature_means``
    on the corrected feature intensities: one mean embedding and one abundance per feature, weight = its share of
    the sample's summed abundance) and reports: features pooled per sample; the median over samples of the largest
    share, of the 5 largest and of the effective number of features (1 / sum of squared shares); the share of the
    between-sample variance of the pooled vectors (sum over samples of the squared distance to their mean) owed to
    each consensus feature (sum_s <t_fs - mean_s t_fs, x_s - mean x>, t_fs = share x mean embedding, so the shares
    sum to 1), for the top 3 and for the changed compounds' consensus features (every one within 10 ppm and 10 s of
    a changed compound); the changed compounds' summed share in controls and cases (medians), and how many of
    them were pooled (had MS/MS mapped) per sample. Raises FileNotFoundError when the study's tables are absent."""
    from ms2study.modelling.pooling import per_feature_means, without_excluded

    results = study / "results"
    sheet = pl.read_csv(study / "samples.tsv", separator="\t")
    ids, case = sheet["sample_id"].to_list(), (sheet["group"] == "case").to_numpy()
    mz, rt, cons = fm["mz"].to_numpy(), fm["rt_s"].to_numpy(), fm["consensus_id"].to_list()
    changed = set()
    for r in truth.filter(pl.col("changed")).iter_rows(named=True):
        near = (np.abs(mz - r["mz"]) <= PPM * 1e-6 * r["mz"]) & (np.abs(rt - r["rt_s"]) <= RT_TOL)
        changed |= {cons[int(i)] for i in np.flatnonzero(near)}
    terms, shares, planted = [], [], []
    for sample in ids:
        corrected = pl.read_parquet(results / "study" / "corrected_features" / f"{sample}.parquet")
        emb = without_excluded(pl.read_parquet(results / "samples" / sample / "embeddings.parquet"), corrected)
        spectra = pl.read_parquet(results / "samples" / sample / "spectra.parquet")
        usable = emb.join(spectra.select("spectrum_id", pl.col("precursor_intensity").cast(pl.Float64)),
                          on="spectrum_id", how="left").filter(
            pl.col("embedding").is_not_null() & pl.col("feature_id").is_not_null())
        keys = np.unique(usable["feature_id"].cast(pl.Utf8).to_numpy().astype(str))  # per_feature_means' order
        means, weights, _ = per_feature_means(usable, np.stack(usable["embedding"].to_list()).astype(np.float64),
                                              "feature_intensity", corrected, sample)
        share = weights / weights.sum()
        to_cons = dict(zip(corrected["feature_id"].to_list(), corrected["consensus_id"].to_list()))
        terms.append({to_cons.get(k) or k: share[i] * means[i] for i, k in enumerate(keys)})
        shares.append(np.sort(share)[::-1])
        planted.append([share[i] for i, k in enumerate(keys) if to_cons.get(k) in changed])
    units = sorted({u for t in terms for u in t})
    dim = len(next(iter(terms[0].values())))
    T = np.zeros((len(ids), len(units), dim))
    for s, t in enumerate(terms):
        for j, u in enumerate(units):
            if u in t:
                T[s, j] += t[u]
    X = T.sum(axis=1)
    centred = X - X.mean(axis=0)
    contribution = np.einsum("sud,sd->u", T - T.mean(axis=0), centred) / (centred ** 2).sum()
    order = np.argsort(-contribution)
    summed = np.array([sum(p) for p in planted])
    return {
        "features_pooled_per_sample": [int(t) for t in (len(t) for t in terms)],
        "largest_share_median": float(np.median([s[0] for s in shares])),
        "top5_share_median": float(np.median([s[:5].sum() for s in shares])),
        "effective_features_median": float(np.median([1.0 / (s ** 2).sum() for s in shares])),
        "between_sample_variance_top": [{"unit": units[j], "share": round(float(contribution[j]), 4),
                                         "mz": float(fm.filter(pl.col("consensus_id") == units[j])["mz"][0])
                                         if units[j] in set(cons) else None} for j in order[:3]],
        "between_sample_variance_changed": float(sum(contribution[j] for j, u in enumerate(units) if u in changed)),
        "changed_share_median_controls_cases": [float(np.median(summed[~case])), float(np.median(summed[case]))],
        "changed_pooled_mean_controls_cases": [float(np.mean([len(p) for p, c in zip(planted, case) if not c])),
                                               float(np.mean([len(p) for p, c in zip(planted, case) if c]))],
    }


def score_models(study: Path) -> dict:
    path = study / "results" / "study" / "models" / "group" / "summary.json"
    return json.loads(path.read_text()) if path.is_file() else {"missing": str(path)}


class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag, attrs):
        if tag in ("script", "style"):
            self._skip += 1

    def handle_endtag(self, tag):
        if tag in ("script", "style"):
            self._skip = max(0, self._skip - 1)

    def handle_data(self, data):
        if not self._skip and data.strip():
            self.parts.append(data.strip())


def score_report(study: Path) -> dict:
    path = study / "results" / "study" / "report.html"
    if not path.is_file():
        return {"missing": str(path)}
    parser = _Text()
    parser.feed(path.read_text(errors="replace"))
    lines = parser.parts
    warnings = [lines[i + 1][:400] for i, t in enumerate(lines[:-1]) if t.strip() == "Warning:"]
    cautions = [t[:400] for t in lines if any(w in t.lower() for w in (
        "read with caution", "not shown to beat chance", "yet p is not small", "interval can collapse",
        "no isomer in the library", "classes tested are enriched", "prior degrees of freedom"))]
    return {"size_mb": round(path.stat().st_size / 1e6, 2),
            "says_no_warnings": any("no warnings" in t.lower() for t in lines),
            "warnings": warnings, "cautions": cautions[:30], "n_text_blocks": len(lines)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--study", type=Path, default=Path("/tmp/s9sr/study"))
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--skip-build", action="store_true", help="score an existing study folder")
    ap.add_argument("--skip-run", action="store_true", help="do not run the workflow (its outputs exist)")
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--samples", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--library-size", type=int, default=None)
    ap.add_argument("--background", type=Path, nargs="+", default=[BACKGROUND],
                    help=f"default {BACKGROUND}; several injections alternate over the samples")
    ap.add_argument("--library", type=Path, default=LIBRARY, help=f"default {LIBRARY}")
    args = ap.parse_args(argv)
    seconds = {}
    if (args.skip_build or args.skip_run) and args.out.is_file():  # keep the timings of the steps run earlier
        seconds = json.loads(args.out.read_text()).get("seconds", {})
    if not args.skip_build:
        t = time.time()
        simulate_spikein(args.study, args.background, args.library, n_samples=args.samples, seed=args.seed,
                         library_size=args.library_size, overwrite=True)  # a rebuild replaces the earlier study
        seconds["build"] = round(time.time() - t, 1)
    if not args.skip_run:
        t = time.time()
        # this checkout's package, also in the rules' jobs (which run "python -m ms2study")
        env = {**os.environ, "PYTHONPATH": str(REPO / "workflow"),
               "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
        subprocess.run([sys.executable, "-m", "ms2study", "run", str(args.study), "--cores", str(args.cores)],
                       check=True, env=env)
        seconds["run"] = round(time.time() - t, 1)
    truth = pl.read_csv(args.study / "ground_truth.tsv", separator="\t")
    fm = pl.read_parquet(args.study / "results" / "study" / "feature_matrix.parquet")
    one = truth.filter(pl.col("sample_id") == truth["sample_id"][0])
    matched = match_features(one, fm)
    sim = json.loads((args.study / "simulation.json").read_text())
    result = {
        "benchmark": "semireal", "machine": machine_record(), "seconds": seconds, "code": code_version(),
        "note": "seconds: study build and `ms2study run --cores N` on this machine (2 cores shared with other jobs "
                "when measured; load average in machine); the scores read the study's outputs only",
        "study": {k: sim[k] for k in ("seed", "n_samples", "background", "library", "n_compounds", "planted_class",
                                      "fold_change", "n_changed", "n_known_unknowns", "n_usable_records",
                                      "n_spiked_ms2", "background_measured")},
        "n_library_records": sum(1 for line in (args.study / "library.mgf").open() if line.startswith("BEGIN IONS")),
        "n_consensus_features": fm.height,
        "identification": score_identification(args.study, truth, fm, matched),
        "differential": score_differential(args.study, truth, fm, matched),
        "models": score_models(args.study),
        "pooling": score_pooling(args.study, one, fm),
        "report": score_report(args.study),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1, default=str) + "\n")
    print(json.dumps({k: result["identification"][k] for k in ("counts",)}, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
