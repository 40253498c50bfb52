"""One identification per consensus feature (the ``identify`` study stage).

Every sample's rank-1 library hits (``annotations.parquet``) are joined to their consensus feature through the
links of the ``link`` stage. Per consensus feature, the identity (first InChIKey block, else the library name) whose
rank-1 spectra give the smallest Simes p-value (below) wins, ties (and annotations without p-values) broken by the
number of spectra that chose it, then by the best ranking score. Its evidence
is kept: spectra searched for the feature, spectra supporting the identity, samples, best and median score,
best cosine. Confidence: the feature's p-value combines the spectrum p-values of the chosen identity with the
Simes test over all of the feature's searched spectra (the others count as p = 1), so several agreeing spectra
strengthen the evidence and one lucky spectrum among many does not; q-values are Benjamini-Hochberg over the
consensus features with a hit times Storey's estimate of the share of them that are wrong
(``ms2study.identification.confidence.adaptive_q_values``). The
Schymanski level is 2 when the feature's ``structure_q_value`` is at most the FDR and no spectrum of the feature
chose another structure of the same formula: the level-2 model's log likelihood ratio of its best spectrum, with the
share of right structures estimated once over all of the study's features (``structure_q_values``; per sample too
few hits for that). Annotations without those ratios (older files) keep the older rule: the best spectrum was level
2 and no supporting spectrum saw the hit as level 3. Otherwise 3, with every isomer named by the spectra in
``isomer_inchikeys``. Without q-values in the annotations (``confidence: none``) nothing is accepted.

With the study's adduct grouping (``--adduct-groups``: the corrected matrix's ``compound_group`` and ``adduct``
columns, ``ms2study.correction.adducts``) each feature carries its compound group and grouped adduct
(``feature_adduct``), and identification uses the adduct: a rank-1 spectrum whose library adduct contradicts the
grouped adduct (a library [M+H]+ spectrum at a feature grouped as [M+Na]+, any library ion at an isotope peak) is set
aside before the vote (it still counts as a searched spectrum, p = 1, in the Simes test); when every spectrum of the
feature contradicts, the best of them is reported but not accepted. The accepted members of one compound group must
name one compound: the group's best (lowest q) identification stands and members naming another are not accepted.
``adduct_note`` says why. A grouping only refuses where it was tested: when the grouping table carries the evidence
of each label (``tables.ADDUCT_EVIDENCE``: the correct stage writes it), a label whose pair was judged on mass and
retention time alone (too few runs measured both, ``correct: adduct_min_runs``; ``adduct_p_value`` null) neither
sets spectra aside nor refuses a group member. Whenever the identification's library adduct and its feature's
grouped adduct name different ions, ``adduct_note`` says so (what the grouping rests on: partner, correlation or
"mass and RT only" with the runs; the library adduct; and why the match stands: an untested grouping, or an
[M+H]+ / [M+NH4]+ pair that also reads as [M+H]+ with its in-source NH3 loss), so no disagreement goes unsaid.
Each identification carries the evidence of its feature's label (``adduct_partner`` with its m/z and
retention time, ``adduct_relation``, ``adduct_correlation``, ``adduct_n_runs``) so the report can show what a veto
rested on.

Possible in-source fragments (``in_source_of_mz``: half or more of the supporting spectra have a co-eluting heavier
precursor holding the feature's m/z in its MS/MS) are checked against the feature matrix (``--feature-matrix``):
when the feature's intensity follows the parent's across the study samples (``identification.insource.
withdraw_confirmed``), the name is an in-source fragment's and is not accepted; the parent's feature and the
correlation are kept in ``in_source_parent_id``, ``in_source_correlation`` and ``in_source_n_samples``. An accepted
name is also withdrawn when a co-eluting feature one conjugate's loss heavier (``insource.CONJUGATE_LOSSES``) follows
it: the parent of an in-source fragment is often not fragmented itself, so no MS/MS marks it.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import numpy as np
import polars as pl

from ms2study.core import tables
from ms2study.core.atomic import write_parquet
from ms2study.core.errors import InputError
from ms2study.correction.identification_checks import (
    EVIDENCE_OUT,
    GROUPING_COLUMNS,
    adduct_acceptance,
    with_adduct_checks,
)
from ms2study.correction.mzoffset import removed_offsets
from ms2study.identification import background, confidence, featuremz, insource, structure_model, unmapped
from ms2study.identification.background import BLANK_ONLY_NOTE, SPLIT_NOTE  # noqa: F401 (BLANK_ONLY_NOTE re-exported)
from ms2study.identification.samename import SAME_COMPOUND_RT_S, named_once, same_name_elsewhere  # noqa: F401

log = logging.getLogger(__name__)

IDENTIFICATIONS: dict[str, pl.DataType] = {
    "consensus_id": pl.Utf8,
    "name": pl.Utf8,
    "inchikey": pl.Utf8,
    "smiles": pl.Utf8,
    "formula": pl.Utf8,
    "adduct": pl.Utf8,
    "compound_class": pl.Utf8,
    "library_id": pl.Utf8,          # library spectrum of the best supporting match
    "msi_level": pl.Int8,
    "isomer_inchikeys": pl.List(pl.Utf8),
    "n_spectra": pl.Int32,          # searched spectra of the feature (all samples)
    "n_supporting": pl.Int32,       # of them, rank-1 for this identity
    "n_samples": pl.Int32,          # study samples (sample_type sample) with a spectrum supporting the identity
    "n_qc_runs": pl.Int32,          # pooled-QC runs with one (0 without a sheet that names run types)
    "n_blank_runs": pl.Int32,       # blank runs with one: a compound seen in blanks may be carry-over or background
    "supporting_runs": pl.List(pl.Utf8),  # the runs (any type) with a supporting spectrum, sorted: where it was seen
    "best_score": pl.Float64,       # ranking score (combined by default)
    "median_score": pl.Float64,
    "best_cosine": pl.Float64,
    "matched_peaks": pl.Int32,      # most fragment peaks a supporting spectrum shares with its library match
    "precursor_error_ppm": pl.Float64,  # median over the supporting spectra: (measured - library) / library m/z
    "p_value": pl.Float64,
    "q_value": pl.Float64,
    "structure_q_value": pl.Float64,  # that the STRUCTURE is right: the level-2 model over the study's features
    "accepted": pl.Boolean,
    "compound_group": pl.Utf8,      # the feature's compound group (null without --adduct-groups)
    "feature_adduct": pl.Utf8,      # the feature's grouped adduct ("[M+Na]+", "[M+H]+ M+1"; null when unknown)
    "adduct_note": pl.Utf8,         # why the adduct grouping set spectra aside or demoted the identification
    "adduct_partner": pl.Utf8,      # the feature paired with this one in the grouping (tables.ADDUCT_EVIDENCE)
    "adduct_partner_mz": pl.Float64,
    "adduct_partner_rt_s": pl.Float64,
    "adduct_relation": pl.Utf8,     # "[M+K]+ here, [M+H]+ at the partner"
    "adduct_correlation": pl.Float64,  # Pearson r of the pair's log intensities; null when not tested
    "adduct_n_runs": pl.Int32,      # runs in which both were measured
    "evidence_note": pl.Utf8,       # accepted with best cosine < 0.3: the scores of its best spectrum that carried it;
                                    # withdrawn as an in-source fragment: why (insource.withdraw_confirmed);
                                    # refused for resting on blank runs only (background.BLANK_ONLY_NOTE);
                                    # last, a background-ion mark with --features (identification.background)
    "mz": pl.Float64,               # the consensus feature's m/z (the feature matrix's, with --adduct-groups or
                                    #   --feature-matrix; null without either)
    "rt_s": pl.Float64,             # the consensus feature's retention time (s): the feature matrix's with
                                    #   --adduct-groups or --feature-matrix, else the median aligned RT of its features
    "same_name_elsewhere": pl.List(pl.Utf8),  # other accepted features named this compound > SAME_COMPOUND_RT_S away,
                                              # or closer but detected with it in the same runs (two peaks)
    "in_source_of_mz": pl.Float64,  # possible in-source fragment: half its supporting spectra or more have a
                                    # co-eluting heavier precursor holding it (identification.insource); the
                                    # parent m/z most of them name; on a name withdrawn through a conjugate's loss,
                                    # the following parent feature's m/z
    "in_source_parent_id": pl.Utf8,      # the parent's consensus feature (with --feature-matrix)
    "in_source_correlation": pl.Float64,  # Pearson r of the two features' log intensities over the study samples
    "in_source_n_samples": pl.Int32,     # study samples measuring both
    "feature_mz_error_ppm": pl.Float64,  # (feature m/z - named ion's library m/z) / library m/z (identification.featuremz)
    "feature_mz_note": pl.Utf8,     # the feature's m/z farther from the ion than its MS/MS precursors: merged ion?
}


def simes(p_values: list[float] | None, n_tests: int) -> float:
    """Simes (1986) combined p-value of ``n_tests`` tests of which ``p_values`` are the observed ones (the others
    count as p = 1): ``min_k n * p_(k) / k``. Valid under positive dependence (Sarkar 1998), as between spectra of one
    feature; NaN when no p-value is given."""
    pv = np.sort(np.asarray([x for x in (p_values or []) if x is not None and np.isfinite(x)], dtype=np.float64))
    if pv.size == 0:
        return float("nan")
    k = np.arange(1, pv.size + 1)
    return float(min(1.0, np.min(max(int(n_tests), pv.size) * pv / k)))


def structure_q_values(log_lr: pl.Series) -> pl.Series:
    """Structure q-values of the study's features (``ms2study.identification.structure_model``): ``log_lr`` holds
    each feature's best spectrum's log likelihood ratio of the right structure (null: not scorable). One sample's
    search holds few rank-1 hits, so its estimate of the share of right ones is held down by the pseudo-count of
    wrong hits (on a 16-sample spike-in study no spectrum reached level 2); the study's features, one hit each, are
    many, and their share is estimated once over all of them. Returns Float64 q-values (null where not scorable, or
    all null when no feature is scorable)."""
    llr = log_lr.cast(pl.Float64).fill_null(np.nan).to_numpy()
    if not np.isfinite(llr).any():
        return pl.Series("structure_q_value", np.full(llr.size, None), dtype=pl.Float64)
    q = structure_model.structure_q_values(llr)
    return pl.Series("structure_q_value", np.where(np.isfinite(llr), q, np.nan)).fill_nan(None)


def identify_features(annotations: pl.DataFrame, links: pl.DataFrame, fdr: float = 0.01,
                      classes: pl.DataFrame | None = None, groups: pl.DataFrame | None = None,
                      run_types: dict[str, str] | None = None,
                      matrix: pl.LazyFrame | pl.DataFrame | None = None,
                      mz_tolerance_ppm: float = featuremz.DEFAULT_TOLERANCE_PPM,
                      run_offsets: dict[str, float] | None = None, *, level2_reach: dict | None = None) -> pl.DataFrame:
    """One row per consensus feature with a rank-1 hit (columns IDENTIFICATIONS), sorted by q-value.
    ``level2_reach``, when given, is filled with the level-2 model's reach (``structure_model.LEVEL2_METADATA_KEY``).

    ``annotations``: concatenated annotation tables (rank, spectrum_id, sample_id, feature_id, library_*,
    combined, cosine, p_value, msi_level, isomer_inchikeys); ``links``: consensus_id, sample_id, feature_id
    (``ms2study.stages.link.LINKS``); ``classes``: optional library_id -> compound_class table; ``groups``: optional
    adduct grouping (consensus_id, compound_group, adduct: ``ms2study.correction.adducts.group_adducts`` or the
    corrected matrix; optional: mz, rt_s, n_detected and ``tables.ADDUCT_EVIDENCE``), used as the module docstring
    says; ``run_types``: optional sample_id -> sample_type (sample, qc, blank; ``io.samplesheet.sample_roles``):
    ``n_samples`` then counts study samples only, ``n_qc_runs`` and ``n_blank_runs`` the other runs (without it
    every run counts as a sample); ``matrix``: optional feature matrix (``link`` stage; read lazily) for the
    in-source check (``insource.withdraw_confirmed``); ``mz_tolerance_ppm``: the spectra stage's mapping tolerance,
    beyond which a feature's m/z error against the named ion, net of its MS/MS precursors', is marked
    (``identification.featuremz``). Raises InputError when ``groups`` lacks those columns.
    """
    if annotations.height == 0 or links.height == 0:
        return pl.DataFrame(schema=IDENTIFICATIONS)
    for col, dtype in (("p_value", pl.Float64), ("msi_level", pl.Int8), ("isomer_inchikeys", pl.List(pl.Utf8)),
                       ("entropy", pl.Float64), ("embedding", pl.Float64), ("modified_cosine", pl.Float64),
                       ("in_source_parent_mz", pl.Float64), ("structure_log_lr", pl.Float64),
                       ("matched_peaks", pl.Int32), ("library_precursor_mz", pl.Float64)):
        if col not in annotations.columns:
            annotations = annotations.with_columns(pl.lit(None, dtype=dtype).alias(col))
    top = annotations.filter((pl.col("rank") == 1) & pl.col("feature_id").is_not_null()).join(
        links.select("consensus_id", "sample_id", "feature_id"), on=["sample_id", "feature_id"], how="inner")
    if top.height == 0:
        return pl.DataFrame(schema=IDENTIFICATIONS)
    types = run_types or {}
    top = top.with_columns(
        pl.col("sample_id").cast(pl.Utf8).replace_strict(types, default="sample", return_dtype=pl.Utf8)
        .alias("_run_type"),
        pl.when(pl.col("library_inchikey").str.len_chars() >= 14).then(pl.col("library_inchikey").str.slice(0, 14))
        .otherwise(pl.lit("name:") + pl.col("library_name").fill_null("?").str.to_lowercase()).alias("_identity"),
        pl.col("combined").fill_nan(None).alias("_score"),
    )
    top = with_adduct_checks(top, groups)
    per_feature = top.group_by("consensus_id").agg(
        pl.len().alias("n_spectra"), pl.col("_contra").sum().alias("_n_contra"),
        pl.col("_contra").all().alias("_all_contra"))
    # Spectra whose library adduct contradicts the grouped adduct do not vote, unless no other spectrum is left.
    everyone = top
    top = top.filter(~pl.col("_contra") | pl.col("_contra").all().over("consensus_id"))
    votes = (top.group_by("consensus_id", "_identity")
             .agg(pl.len().alias("n_supporting"), pl.col("_score").max().alias("best_score"),
                  pl.col("p_value").drop_nulls().alias("_p_identity"))
             .join(per_feature.select("consensus_id", "n_spectra"), on="consensus_id"))
    # The identity with the strongest evidence wins: the smallest Simes p over the feature's searched spectra (the
    # p the feature is then given). Counting spectra let a background compound triggered in every run outvote a
    # compound whose fewer spectra matched far better (a trial: a spiked compound, rank-1 in 6 runs at q 0.002-0.005
    # with 11-12 matched peaks, named as its isomer from 12 weaker spectra at study q 0.041).
    votes = (votes.with_columns(pl.Series("_simes", [simes(pv, n) for pv, n in zip(
                 votes["_p_identity"].to_list(), votes["n_spectra"].to_list())], dtype=pl.Float64).fill_nan(None))
             .sort(["consensus_id", "_simes", "n_supporting", "best_score", "_identity"],
                   descending=[False, False, True, True, False], nulls_last=True)
             .unique("consensus_id", keep="first", maintain_order=True))
    chosen = top.join(votes.select("consensus_id", "_identity"), on=["consensus_id", "_identity"], how="inner")
    best = chosen.sort(["p_value", "_score"], descending=[False, True], nulls_last=True).unique(
        "consensus_id", keep="first", maintain_order=True)
    summary = chosen.group_by("consensus_id").agg(
        pl.len().cast(pl.Int32).alias("n_supporting"),
        pl.col("sample_id").filter(pl.col("_run_type") == "sample").n_unique().cast(pl.Int32).alias("n_samples"),
        pl.col("sample_id").filter(pl.col("_run_type") == "qc").n_unique().cast(pl.Int32).alias("n_qc_runs"),
        pl.col("sample_id").filter(pl.col("_run_type") == "blank").n_unique().cast(pl.Int32).alias("n_blank_runs"),
        pl.col("sample_id").cast(pl.Utf8).unique().sort().alias("supporting_runs"),
        pl.col("_score").max().alias("best_score"),
        pl.col("_score").median().alias("median_score"),
        pl.col("cosine").max().alias("best_cosine"),
        pl.col("matched_peaks").max().cast(pl.Int32).alias("matched_peaks"),
        (pl.col("precursor_error_ppm").median() if "precursor_error_ppm" in top.columns
         else pl.lit(None, dtype=pl.Float64)).alias("precursor_error_ppm"),
        # on the consensus m/z's scale: less each run's m/z offset the link stage removed (run_offsets)
        ((pl.col("precursor_error_ppm") - pl.col("sample_id").cast(pl.Utf8).replace_strict(
            run_offsets or {}, default=0.0, return_dtype=pl.Float64)).median()
         if "precursor_error_ppm" in top.columns else pl.lit(None, dtype=pl.Float64)).alias("_study_error"),
        pl.col("in_source_parent_mz").is_not_null().mean().alias("_isf_share"),
        _most_named_parent().alias("_isf_mz"),
        (pl.col("msi_level") == 3).any().alias("_any3"),
        pl.col("isomer_inchikeys").list.explode(keep_nulls=False, empty_as_null=False).drop_nulls().unique().sort()
        .alias("_iso"),
    )
    # Spectra of the feature that chose another structure of the same formula: the isomers disagree.
    formula_of = best.select("consensus_id", pl.col("library_formula").alias("_f1"))
    rivals = (top.join(formula_of, on="consensus_id").join(votes.select("consensus_id", pl.col("_identity")
                                                                         .alias("_chosen")), on="consensus_id")
              .filter((pl.col("_identity") != pl.col("_chosen")) & (pl.col("library_formula") == pl.col("_f1")))
              .group_by("consensus_id").agg(pl.col("library_inchikey").drop_nulls().unique().sort().alias("_rivals")))
    out = (best.select("consensus_id", "library_name", "library_inchikey", "library_smiles", "library_formula",
                       "library_adduct", "library_id", pl.col("msi_level").alias("_level_best"), "_identity",
                       pl.col("library_precursor_mz").alias("_lib_mz"),
                       pl.col("structure_log_lr").alias("_llr"),
                       "compound_group", "feature_adduct", "_contra_note", "_differs", "_nh3", "_veto_ok",
                       "_n_detected", *EVIDENCE_OUT, pl.col("cosine").alias("_cos1"),
                       pl.col("entropy").alias("_entropy1"), pl.col("embedding").alias("_embedding1"),
                       pl.col("modified_cosine").alias("_modified1"))
           .join(summary, on="consensus_id").join(per_feature, on="consensus_id")
           .join(votes.select("consensus_id", "_simes"), on="consensus_id")
           .join(rivals, on="consensus_id", how="left"))
    p = out["_simes"].fill_null(np.nan).to_numpy()  # the chosen identity's Simes p, computed for the choice
    q, pi0 = confidence.adaptive_q_values(p)
    out = out.with_columns(pl.Series("p_value", p), pl.Series("q_value", q)).with_columns(
        pl.col("p_value").fill_nan(None), pl.col("q_value").fill_nan(None))
    out = adduct_acceptance(out, fdr)
    out = out.with_columns(structure_q_values(out["_llr"]).alias("structure_q_value"))
    if level2_reach is not None:
        llr = out["_llr"].cast(pl.Float64).fill_null(np.nan).to_numpy()
        level2_reach.update(scorable=int(np.isfinite(llr).sum()), needed=int(structure_model.PSEUDO_WRONG))
    # a name whose spectra all come from blank runs says what a blank holds, not a study sample (a trial: a blank's
    # peak linked to its own consensus feature was named from that one spectrum and counted among the findings)
    blank_only = ((pl.col("n_samples") == 0) & (pl.col("n_qc_runs") == 0) & (pl.col("n_blank_runs") > 0)).fill_null(
        False)
    out = out.with_columns((pl.col("accepted") & blank_only).alias("_blank_only")).with_columns(
        (pl.col("accepted") & ~pl.col("_blank_only")).alias("accepted"))
    accepted = pl.col("accepted")
    if out["_llr"].is_not_null().any():  # the study-wide level-2 model (structure_q_values; null: too few to judge)
        level2 = (pl.col("structure_q_value") <= fdr).fill_null(False) & pl.col("_rivals").is_null()
        # nor with every spectrum below the cosine a structure claim needs (acceptance.confidence_table)
        level2 = level2 & (pl.col("best_cosine") >= confidence.LOW_COSINE).fill_null(True)
    else:  # annotations without the model's log likelihood ratios: each spectrum's own level
        level2 = (pl.col("_level_best") == 2) & ~pl.col("_any3") & pl.col("_rivals").is_null()
    out = out.with_columns(
        pl.when(accepted).then(pl.when(level2).then(2).otherwise(3)).cast(pl.Int8).alias("msi_level"),
        pl.when(accepted & ~level2).then(
            pl.concat_list(pl.col("library_inchikey"), pl.col("_iso"), pl.col("_rivals").fill_null([]))
            .list.drop_nulls().list.unique(maintain_order=True))
        .when(accepted).then(  # level 2: the hit and its stereoisomers among the candidates (same first block)
            pl.concat_list(pl.col("library_inchikey"), pl.col("_iso")).list.eval(
                pl.element().filter(pl.element().str.slice(0, 14) == pl.element().first().str.slice(0, 14)))
            .list.drop_nulls().list.unique(maintain_order=True)).alias("isomer_inchikeys"),
        _low_cosine_note(),
        pl.when(pl.col("accepted") & (pl.col("_isf_share") >= 0.5)).then(pl.col("_isf_mz")).alias("in_source_of_mz"),
    ).rename({"library_name": "name", "library_inchikey": "inchikey", "library_smiles": "smiles",
              "library_formula": "formula", "library_adduct": "adduct"}).with_columns(
        pl.when(pl.col("_blank_only")).then(pl.lit(background.BLANK_ONLY_NOTE)).otherwise(pl.col("evidence_note"))
        .alias("evidence_note"))
    runs = links["sample_id"].cast(pl.Utf8).unique().sort().to_list()
    out = insource.withdraw_confirmed(out, matrix, [r for r in runs if (run_types or {}).get(r, "sample") == "sample"])
    out = named_once(same_name_elsewhere(_positions(out, links, groups, matrix), links), links)
    out = featuremz.with_mass_outlier_note(featuremz.with_feature_mz_check(out, mz_tolerance_ppm))
    if classes is not None and "compound_class" in classes.columns:
        out = out.join(classes.select("library_id", "compound_class"), on="library_id", how="left")
    else:
        out = out.with_columns(pl.lit(None, dtype=pl.Utf8).alias("compound_class"))
    out = out.select(list(IDENTIFICATIONS)).cast(IDENTIFICATIONS).sort(["q_value", "consensus_id"], nulls_last=True)
    # pi0 is over all hits, the accepted ones are the best of them (trial BC read 0.50 beside 3 of 4 accepted as a
    # contradiction)
    log.info("%d consensus features with a library hit (Storey's pi0, the share of wrong hits estimated over all of "
             "them, which scales the q-values: %.2f); %d accepted at %.0f%% FDR (%d at Schymanski level 2, %d at 3)",
             out.height, pi0, int(out["accepted"].sum()), 100 * fdr, int((out["msi_level"] == 2).sum()),
             int((out["msi_level"] == 3).sum()))
    if groups is not None:
        log.info("adduct grouping: %d rank-1 spectra set aside for a contradicting library adduct; %d features "
                 "not accepted for their adduct or their compound group", int(everyone["_contra"].sum()),
                 int(out["adduct_note"].str.starts_with("not accepted").sum()))
    return out


def _positions(out: pl.DataFrame, links: pl.DataFrame, groups: pl.DataFrame | None,
               matrix: pl.LazyFrame | pl.DataFrame | None) -> pl.DataFrame:
    """``out`` with each consensus feature's ``mz`` and ``rt_s`` as the feature matrix gives them (``groups``, the
    corrected matrix, or ``matrix``, the linked one), so that the report's sections agree (a trial read 274.9 s in
    one and 272.0 s in another, and found no m/z in the table); a feature neither has keeps the median aligned RT
    of its linked features (``links``' ``rt_aligned_s``) and a null m/z."""
    out = out.with_columns(pl.lit(None, dtype=pl.Float64).alias("mz"), pl.lit(None, dtype=pl.Float64).alias("rt_s"))
    sources = [links.group_by("consensus_id").agg(pl.col("rt_aligned_s").median().alias("_rt_s"))
               if "rt_aligned_s" in links.columns else None]
    for table in (matrix, groups):  # the later source wins where both give a value
        names = table.collect_schema().names() if table is not None else []
        if "consensus_id" in names and {"mz", "rt_s"} & set(names):
            part = table.lazy().select(pl.col("consensus_id").cast(pl.Utf8),
                                       *[pl.col(c).cast(pl.Float64).alias(f"_{c}") for c in ("mz", "rt_s") if c in names])
            sources.append(part.collect())
    for part in (t for t in sources if t is not None):
        present = [c for c in ("_mz", "_rt_s") if c in part.columns]
        out = out.join(part, on="consensus_id", how="left").with_columns(
            pl.coalesce(c, c[1:]).alias(c[1:]) for c in present).drop(present)
    return out


def _most_named_parent() -> pl.Expr:
    """Per consensus feature (an aggregation): the in-source parent m/z most of its spectra name
    (``insource.most_named``)."""
    return pl.col("in_source_parent_mz").map_batches(
        lambda s: pl.Series([insource.most_named(s.drop_nulls().to_numpy())], dtype=pl.Float64),
        return_dtype=pl.Float64, returns_scalar=True)


def _low_cosine_note() -> pl.Expr:
    """``evidence_note`` of an accepted feature whose best cosine is below ``confidence.LOW_COSINE``: the scores of
    the spectrum its p-value rests on (columns ``_cos1``, ``_entropy1``, ``_embedding1``, ``_modified1``), so the
    report can say why a low-cosine match passed (issue 10's target); null elsewhere."""
    def part(label: str, column: str) -> pl.Expr:
        return pl.when(pl.col(column).is_not_null()).then(
            pl.lit(f", {label} ") + pl.col(column).round(3).cast(pl.Utf8)).otherwise(pl.lit(""))

    low = confidence.LOW_COSINE
    note = (pl.lit(f"best cosine below {low}: accepted on the combined score (its best spectrum: cosine ")
            + pl.col("_cos1").round(3).cast(pl.Utf8).fill_null("?") + part("entropy", "_entropy1")
            + part("embedding", "_embedding1") + part("modified cosine", "_modified1") + pl.lit(")")
            + (confidence.embedding_only_clause(pl.col("_entropy1"), pl.col("_modified1"), pl.col("_embedding1"))))
    return pl.when(pl.col("accepted") & (pl.col("best_cosine") < low)).then(note).alias("evidence_note")


def _cli(args: argparse.Namespace) -> int:
    from ms2study.core.params import load_params

    params = load_params(args)
    ann = pl.concat([pl.read_parquet(f) for f in args.annotations], how="diagonal_relaxed")
    links = pl.read_parquet(args.links)
    classes = None
    if args.library_index:
        meta = Path(args.library_index) / "metadata.parquet"
        classes = pl.read_parquet(meta, columns=["library_id", "compound_class"]) if meta.exists() else None
    groups = read_adduct_groups(args.adduct_groups) if args.adduct_groups else None
    run_types = None
    if args.samples:
        from ms2study.io.samplesheet import read_sample_sheet, sample_roles

        roles = sample_roles(read_sample_sheet(args.samples), str(args.samples))
        run_types = dict(zip(roles["sample_id"].to_list(), roles["sample_type"].to_list()))
    matrix = None
    if args.feature_matrix:
        matrix = insource.read_matrix(args.feature_matrix)
        if run_types is None:
            log.warning("--feature-matrix without --samples: every run counts as a study sample in the in-source "
                        "check (pooled QC and blank runs would correlate any two ions); give the sample sheet")
    # the runs' m/z offsets the link stage removed (stages.link)
    offsets = removed_offsets(pl.read_parquet(args.alignment)) if args.alignment else None
    reach: dict = {}
    out = identify_features(ann, links, float(params.get("fdr", 0.01)), classes, groups, run_types, matrix,
                            float(params.get("mz_tolerance_ppm", featuremz.DEFAULT_TOLERANCE_PPM)), offsets,
                            level2_reach=reach)
    shifted = featuremz.shifted_sentence(out)
    if shifted:
        log.warning(shifted)
    out = background.mark_from_files(out, links, args.features)  # the background-ion mark
    said = unmapped.unmapped_sentence(unmapped.unmapped_names(ann, out))  # accepted names with no feature
    if said:
        log.warning(said)
    write_parquet(out, args.out, metadata={structure_model.LEVEL2_METADATA_KEY: json.dumps(reach)})
    return 0


def read_adduct_groups(path: str | Path) -> pl.DataFrame:
    """consensus_id, compound_group, adduct of a grouping table (the corrected feature matrix or a
    ``group_adducts`` table), with mz, rt_s, n_detected and the ``tables.ADDUCT_EVIDENCE`` columns where it has them.
    Raises InputError naming the file when it is missing or lacks the three columns."""
    if not Path(path).exists():
        raise InputError("adduct grouping table does not exist", file=str(path),
                         fix="run the correct stage (correct.adducts: true) or leave --adduct-groups out")
    names = pl.read_parquet_schema(path)
    missing = [c for c in GROUPING_COLUMNS if c not in names]
    if missing:
        raise InputError(f"adduct grouping table lacks columns {missing}", file=str(path),
                         fix="rerun the correct stage with correct.adducts: true")
    extra = [c for c in ("mz", "rt_s", "n_detected", *tables.ADDUCT_EVIDENCE) if c in names]
    return pl.read_parquet(path, columns=[*GROUPING_COLUMNS, *extra])


def register(subparsers: argparse._SubParsersAction) -> None:
    from ms2study.core.params import add_params_argument

    p = subparsers.add_parser("identify", help="one identification per consensus feature from all samples' hits")
    p.add_argument("--annotations", nargs="+", required=True, help="annotations.parquet of every sample")
    p.add_argument("--links", required=True, help="feature_links.parquet from 'ms2study link'")
    p.add_argument("--alignment", default=None, help="alignment.parquet from 'ms2study link': the runs' m/z offsets, "
                   "so a name's feature m/z is compared with its MS/MS precursors on one scale (optional)")
    p.add_argument("--library-index", default=None, help="library index folder (for compound classes)")
    p.add_argument("--adduct-groups", default=None,
                   help="optional: table with consensus_id, compound_group, adduct (feature_matrix_corrected.parquet "
                        "with correct.adducts); identification then uses each feature's grouped adduct")
    p.add_argument("--samples", default=None,
                   help="optional: the study's sample sheet (in the workflow its run columns, results/study/runs.tsv); "
                        "with its sample_type column, n_samples counts study samples and n_qc_runs / n_blank_runs "
                        "the QC and blank runs")
    p.add_argument("--feature-matrix", default=None,
                   help="optional: feature_matrix.parquet from 'ms2study link'; a name on a possible in-source "
                        "fragment whose log intensity follows its parent's over the study samples (r >= 0.9 over >= 5 "
                        "samples; the samples of --samples) is then not accepted. Without it there is no such check")
    background.add_arguments(p)
    p.add_argument("--out", required=True, help="identifications.parquet to write")
    add_params_argument(p)
    p.set_defaults(func=_cli)
