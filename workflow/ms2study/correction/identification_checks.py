"""The adduct grouping's checks on identifications (used by the ``identify`` stage, ``ms2study.stages.identify``).

A rank-1 spectrum whose library adduct contradicts its feature's grouped adduct (``ms2study.correction.adducts``)
is set aside; a feature whose every spectrum contradicts is not accepted; the accepted members of one compound group
must name one compound; a grouping judged on mass and retention time alone (no correlation test) refuses nothing
and its disagreement is only noted. ``with_adduct_checks`` adds the grouping's columns and the per-spectrum checks,
``adduct_acceptance`` decides acceptance and writes ``adduct_note``. Imports core and correction.adduct_notation.
"""

from __future__ import annotations

import polars as pl

from ms2study.core import tables
from ms2study.core.errors import InputError
from ms2study.correction.adduct_notation import adduct_contradiction, nh3_loss_reading, same_ion

GROUPING_COLUMNS = ("consensus_id", "compound_group", "adduct")


# the identification columns that carry a label's evidence (stages.identify.IDENTIFICATIONS)
EVIDENCE_OUT: dict[str, pl.DataType] = {
    "adduct_partner": pl.Utf8, "adduct_partner_mz": pl.Float64, "adduct_partner_rt_s": pl.Float64,
    "adduct_relation": pl.Utf8, "adduct_correlation": pl.Float64, "adduct_n_runs": pl.Int32}


def _evidence(groups: pl.DataFrame) -> pl.DataFrame:
    """Per consensus feature of ``groups``: ``_veto_ok`` (its label may refuse a match: tested, or the table has no
    evidence columns, so its labels are taken as given), ``_n_detected`` (runs detecting it) and the ``EVIDENCE_OUT``
    columns (partner, its m/z and RT, the relation of the two labels, correlation, runs)."""
    def col(name: str, dtype: pl.DataType) -> pl.Expr:
        return (pl.col(name) if name in groups.columns else pl.lit(None)).cast(dtype).alias(name)

    table = groups.select(pl.col("consensus_id").cast(pl.Utf8), col("adduct", pl.Utf8).alias("_label"),
                          col("mz", pl.Float64).alias("_mz"), col("rt_s", pl.Float64).alias("_rt"),
                          col("n_detected", pl.Int32).alias("_n_detected"),
                          *[col(c, t) for c, t in tables.ADDUCT_EVIDENCE.items()]).unique("consensus_id")
    partner = table.select(pl.col("consensus_id").alias("adduct_partner"), pl.col("_label").alias("_partner_label"),
                           pl.col("_mz").alias("adduct_partner_mz"), pl.col("_rt").alias("adduct_partner_rt_s"))
    tested = (pl.col("adduct_p_value").is_not_null() if "adduct_p_value" in groups.columns else pl.lit(True))
    return table.join(partner, on="adduct_partner", how="left").select(
        "consensus_id", tested.alias("_veto_ok"), "_n_detected", "adduct_partner", "adduct_partner_mz",
        "adduct_partner_rt_s",
        pl.when(pl.col("adduct_partner").is_not_null()).then(
            pl.col("_label").fill_null("unlabelled") + pl.lit(" here, ")
            + pl.col("_partner_label").fill_null("unlabelled") + pl.lit(" at the partner")).alias("adduct_relation"),
        "adduct_correlation", pl.col("adduct_n_runs").cast(pl.Int32))


def with_adduct_checks(top: pl.DataFrame, groups: pl.DataFrame | None) -> pl.DataFrame:
    """``top`` with compound_group, feature_adduct, the label's evidence (``_evidence``), ``_contra_note`` (why the
    spectrum's library adduct contradicts a tested grouped adduct, null when it does not), ``_differs`` (the library
    and grouped adducts name different ions, whether or not that refuses the spectrum), ``_nh3`` (they differ only as
    an [M+H]+ / [M+NH4]+ pair that also reads as an in-source NH3 loss) and ``_contra``."""
    if "library_adduct" not in top.columns:
        top = top.with_columns(pl.lit(None, dtype=pl.Utf8).alias("library_adduct"))
    if groups is None:
        return top.with_columns(pl.lit(None, dtype=pl.Utf8).alias("compound_group"),
                                pl.lit(None, dtype=pl.Utf8).alias("feature_adduct"),
                                pl.lit(None, dtype=pl.Utf8).alias("_contra_note"), pl.lit(False).alias("_differs"),
                                pl.lit(False).alias("_nh3"), pl.lit(False).alias("_veto_ok"),
                                pl.lit(None, dtype=pl.Int32).alias("_n_detected"),
                                *[pl.lit(None, dtype=t).alias(c) for c, t in EVIDENCE_OUT.items()],
                                pl.lit(False).alias("_contra"))
    missing = [c for c in GROUPING_COLUMNS if c not in groups.columns]
    if missing:
        raise InputError(f"adduct grouping table lacks columns {missing}",
                         fix="pass results/study/feature_matrix_corrected.parquet written with correct.adducts: true")
    table = groups.select(pl.col("consensus_id").cast(pl.Utf8), pl.col("compound_group").cast(pl.Utf8),
                          pl.col("adduct").cast(pl.Utf8).alias("feature_adduct")).unique("consensus_id")
    table = table.join(_evidence(groups), on="consensus_id", how="left")
    # the labels of each feature's compound group, as one sorted text (a join key)
    labels = table.group_by("compound_group").agg(
        pl.col("feature_adduct").drop_nulls().unique().sort().str.join("|").alias("_group_adducts"))
    table = table.join(labels, on="compound_group", how="left")
    top = top.join(table, on="consensus_id", how="left").with_columns(pl.col("library_adduct").cast(pl.Utf8))
    keys = ["feature_adduct", "library_adduct", "_group_adducts"]
    pairs = top.select(keys).unique().drop_nulls(["feature_adduct", "library_adduct"])
    rows = pairs.iter_rows()  # the distinct (label, library adduct, group labels): few
    checks = [(adduct_contradiction(f, lib, (g or "").split("|")), same_ion(f, lib) is False,
               nh3_loss_reading(f, lib, (g or "").split("|"))) for f, lib, g in rows]
    pairs = pairs.with_columns(pl.Series("_contra_note", [c[0] for c in checks], dtype=pl.Utf8),
                               pl.Series("_differs", [c[1] for c in checks], dtype=pl.Boolean),
                               pl.Series("_nh3", [c[2] for c in checks], dtype=pl.Boolean))
    top = top.join(pairs, on=keys, how="left", nulls_equal=True).drop("_group_adducts").with_columns(
        pl.col("_differs").fill_null(False), pl.col("_nh3").fill_null(False))
    # a label judged on mass and RT alone refuses nothing: its disagreement is only noted (adduct_acceptance)
    untested = pl.col("_contra_note").is_not_null() & ~pl.col("_veto_ok").fill_null(False)
    top = top.with_columns(pl.when(untested).then(None).otherwise(pl.col("_contra_note")).alias("_contra_note"))
    return top.with_columns(pl.col("_contra_note").is_not_null().alias("_contra"))


def adduct_acceptance(out: pl.DataFrame, fdr: float) -> pl.DataFrame:
    """``accepted`` (q <= fdr, the adduct agreeing, one compound per compound group) and ``adduct_note``: why spectra
    were set aside or the match refused, then (:func:`_disagreement`) any disagreement of the chosen library adduct
    with the grouped adduct that did not refuse it."""
    out = out.with_columns(
        ((pl.col("q_value") <= fdr).fill_null(False) & ~pl.col("_all_contra")).alias("accepted"),
        # "not accepted" only where the contradiction is what refuses it (q within the FDR); above, q alone does
        pl.when(pl.col("_all_contra") & (pl.col("q_value") <= fdr).fill_null(False))
        .then(pl.lit("not accepted: ") + pl.col("_contra_note"))
        .when(pl.col("_all_contra")).then(pl.col("_contra_note") + pl.lit(" (q above the FDR: not accepted anyway)"))
        .when(pl.col("_n_contra") > 0).then(
            pl.col("_n_contra").cast(pl.Utf8) + pl.lit(" of ") + pl.col("n_spectra").cast(pl.Utf8)
            + pl.lit(" spectra set aside: their library adduct contradicts the grouped adduct ")
            + pl.col("feature_adduct")).alias("adduct_note"))
    # a member whose label was not tested (mass and RT alone) neither names its group nor is refused by it
    grouped = pl.col("compound_group").is_not_null() & pl.col("_veto_ok").fill_null(False)
    winners = (out.filter(pl.col("accepted") & grouped)
               .sort(["q_value", "p_value", "best_score", "consensus_id"], descending=[False, False, True, False],
                     nulls_last=True)
               .unique("compound_group", keep="first", maintain_order=True)
               .select("compound_group", pl.col("_identity").alias("_group_identity"),
                       pl.col("library_name").alias("_group_name"), pl.col("consensus_id").alias("_group_feature")))
    out = out.join(winners, on="compound_group", how="left", maintain_order="left")
    clash = pl.col("accepted") & grouped & pl.col("_group_identity").is_not_null() & (
        pl.col("_identity") != pl.col("_group_identity"))
    out = out.with_columns(
        pl.when(clash).then(pl.lit("not accepted: its compound group ") + pl.col("compound_group")
                            + pl.lit(" is identified as ") + pl.col("_group_name").fill_null("?")
                            + pl.lit(" at ") + pl.col("_group_feature")).otherwise(pl.col("adduct_note"))
        .alias("adduct_note"),
        (pl.col("accepted") & ~clash).alias("accepted"))
    note = pl.concat_str(pl.col("adduct_note"), _disagreement(), separator="; ", ignore_nulls=True)
    return out.with_columns(pl.when(note != "").then(note).alias("adduct_note"))


def _disagreement() -> pl.Expr:
    """The note on a chosen library adduct that names another ion than the grouped adduct without refusing the match
    (null otherwise): "grouped as [M+K]+ of C12 by mass and RT only (measured together in 3 of the 4 runs that
    detected it, ...); library match is [M+H]+: a grouping on mass and RT alone refuses no match", or, for an
    [M+H]+ / [M+NH4]+ pair, "grouped as [M+NH4]+ of C12 (r 0.95 over 12 runs); library match is [M+H]+, which the
    pair also fits: [M+H]+ here, its in-source NH3 loss at the partner"."""
    partner = pl.when(pl.col("adduct_partner").is_not_null()).then(pl.lit(" of ") + pl.col("adduct_partner"))
    runs = pl.col("adduct_n_runs").cast(pl.Utf8)
    of_runs = (pl.when(pl.col("_n_detected").is_not_null())
               .then(pl.lit(" of the ") + pl.col("_n_detected").cast(pl.Utf8) + pl.lit(" runs that detected it"))
               .otherwise(pl.lit(" runs")))
    evidence = (pl.when(pl.col("adduct_correlation").is_not_null())
                .then(pl.lit(" (r ") + pl.col("adduct_correlation").round(2).cast(pl.Utf8) + pl.lit(" over ") + runs
                      + pl.lit(" runs)"))
                .when(pl.col("adduct_n_runs").is_not_null() & ~pl.col("_veto_ok").fill_null(False))
                .then(pl.lit(" by mass and RT only (measured together in ") + runs + of_runs
                      + pl.lit(", too few to test their correlation)")))
    why = (pl.when(pl.col("_nh3")).then(pl.lit(", which the pair also fits: ") + pl.col("library_adduct")
                                         + pl.lit(" here, its in-source NH3 loss at the partner"))
           .otherwise(pl.lit(": a grouping on mass and RT alone refuses no match")))
    return (pl.when(pl.col("_differs") & ~pl.col("_all_contra"))
            .then(pl.lit("grouped as ") + pl.col("feature_adduct") + partner.fill_null("") + evidence.fill_null("")
                  + pl.lit("; library match is ") + pl.col("library_adduct") + why))
