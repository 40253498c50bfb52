"""A name accepted on several consensus features: at several retention times (``same_name_elsewhere``), or on
parts of one elution that the linking split (``named_once``). Used by the identify stage (``stages.identify``).
May import ``ms2study.core`` and ``ms2study.identification``.
"""

from __future__ import annotations

import logging

import numpy as np
import polars as pl

from ms2study.identification.background import SPLIT_NOTE

log = logging.getLogger(__name__)

# Features of one compound (adducts, isotopes, in-source ions) co-elute; two accepted features named one compound
# whose retention times differ by more than this (the link stage's default RT tolerance) cannot both be it.
SAME_COMPOUND_RT_S = 10.0


def same_name_elsewhere(out: pl.DataFrame, links: pl.DataFrame) -> pl.DataFrame:
    """``out`` (with ``rt_s``: ``_positions``) with ``same_name_elsewhere``: for an accepted feature, the other
    accepted features
    named the same compound (the whole InChIKey, else the name: stereoisomers are different compounds) whose RT
    differs by more than ``SAME_COMPOUND_RT_S``. A compound elutes once: at most one of such a set is that
    compound; the others are isomers the library lacks, in-source fragments or adducts of other compounds (a
    scientist's trial: 31 of 45 features sharing a name at several RTs were wrong). Null for features not accepted;
    [] when none."""
    # the whole InChIKey: stereoisomers (glucose, mannose, galactose share the first block) are distinct compounds
    # that elute apart, so they are no contradiction; a key-less name is compared as the name
    named = out.filter(pl.col("accepted")).select(
        "consensus_id", "rt_s", pl.when(pl.col("inchikey").str.len_chars() >= 27)
        .then(pl.col("inchikey")).otherwise(pl.col("_identity")).alias("_compound"))
    pairs = (named.join(named, on="_compound", suffix="_other")
             .filter((pl.col("consensus_id") != pl.col("consensus_id_other"))
                     & ((pl.col("rt_s") - pl.col("rt_s_other")).abs() > SAME_COMPOUND_RT_S))
             .group_by("consensus_id").agg(pl.col("consensus_id_other").sort().alias("_elsewhere")))
    return out.join(pairs, on="consensus_id", how="left").with_columns(
        pl.when(pl.col("accepted")).then(pl.col("_elsewhere").fill_null(pl.lit([], dtype=pl.List(pl.Utf8))))
        .alias("same_name_elsewhere"))


def named_once(out: pl.DataFrame, links: pl.DataFrame) -> pl.DataFrame:
    """``out`` with a name accepted on two or more consensus features of the same compound (InChIKey, else name)
    and adduct whose retention times (``rt_s``) lie within ``SAME_COMPOUND_RT_S`` kept on one of them: the feature
    linked in the most runs (``links``), then the most supporting spectra, then the smaller consensus_id. The others
    are one elution split over consensus features (a trial: Fenamiphos named on its feature in all 14 runs and on a
    6.5 s later feature detected only in one run, 150x weaker) and are no longer accepted: their evidence_note
    starts with ``SPLIT_NOTE`` and names the kept feature and why it was kept; their level, isomers and
    same_name_elsewhere are null, and they leave the other features' same_name_elsewhere. Two features detected
    together in the same runs (``_two_peaks``) are two peaks, not one split elution (trial AU: GABA moved onto a
    co-eluting ion of another formula 6 s later, both found in the same 19 runs): both stay accepted, each listed
    in the other's same_name_elsewhere (a compound elutes once, so one of them is not it)."""
    runs = links.group_by("consensus_id").agg(pl.col("sample_id").n_unique().alias("_runs"))
    named = (out.filter(pl.col("accepted") & pl.col("rt_s").is_not_null())
             .join(runs, on="consensus_id", how="left")
             .select("consensus_id", "rt_s", pl.col("_runs").fill_null(0), "n_supporting",
                     pl.when(pl.col("inchikey").str.len_chars() >= 27).then(pl.col("inchikey"))
                     .otherwise(pl.col("_identity")).alias("_compound"), pl.col("adduct").fill_null("?")))
    close = (named.join(named, on=["_compound", "adduct"], suffix="_o")
             .filter((pl.col("consensus_id") != pl.col("consensus_id_o"))
                     & ((pl.col("rt_s") - pl.col("rt_s_o")).abs() <= SAME_COMPOUND_RT_S)))
    close, both = _two_peaks(close, links)
    if both.height:  # two peaks named alike: each names the other, as a name at another RT does
        out = out.join(both, on="consensus_id", how="left").with_columns(
            pl.when(pl.col("_both").is_not_null()).then(pl.concat_list(
                pl.col("same_name_elsewhere").fill_null(pl.lit([], dtype=pl.List(pl.Utf8))), "_both").list.unique()
                .list.sort()).otherwise(pl.col("same_name_elsewhere")).alias("same_name_elsewhere")).drop("_both")
    pairs = (close
             # the other one is preferred: more runs, then more supporting spectra, then the smaller id
             .filter((pl.col("_runs_o") > pl.col("_runs"))
                     | ((pl.col("_runs_o") == pl.col("_runs")) & ((pl.col("n_supporting_o") > pl.col("n_supporting"))
                        | ((pl.col("n_supporting_o") == pl.col("n_supporting"))
                           & (pl.col("consensus_id_o") < pl.col("consensus_id"))))))
             .sort(["consensus_id", "_runs_o", "n_supporting_o", "consensus_id_o"], descending=[False, True, True,
                                                                                                 False])
             .unique("consensus_id", keep="first")
             .select("consensus_id", pl.col("consensus_id_o").alias("_kept_on"),
                     (pl.col("rt_s") - pl.col("rt_s_o")).abs().alias("_gap"),
                     pl.when(pl.col("_runs_o") > pl.col("_runs")).then(pl.lit("is detected in more runs"))
                     .when(pl.col("n_supporting_o") > pl.col("n_supporting"))
                     .then(pl.lit("is detected in as many runs, with more supporting spectra"))
                     .otherwise(pl.lit("ties on runs and supporting spectra")).alias("_why")))
    if not pairs.height:
        return out
    for cid, other, gap, _ in pairs.iter_rows():
        log.info("%s: the same name and adduct as %s, %.1f s apart: named once, on %s", cid, other, gap, other)
    split = pl.col("_kept_on").is_not_null()
    gone = pl.lit(pairs["consensus_id"].to_list(), dtype=pl.List(pl.Utf8))
    return out.join(pairs, on="consensus_id", how="left").with_columns(
        pl.when(split).then(False).otherwise(pl.col("accepted")).alias("accepted"),
        *[pl.when(split).then(None).otherwise(pl.col(c)).alias(c) for c in ("msi_level", "isomer_inchikeys")],
        pl.when(split).then(None).otherwise(pl.col("same_name_elsewhere").list.set_difference(gone))
        .alias("same_name_elsewhere"),
        pl.when(split).then(pl.format(SPLIT_NOTE + "{}: the same compound and adduct {} s apart, one elution split "
                                      "over two consensus features by the linking (never detected together in "
                                      "most of their runs); {} {}", "_kept_on", pl.col("_gap").round(1), "_kept_on",
                                      "_why"))
        .otherwise(pl.col("evidence_note")).alias("evidence_note")).drop("_kept_on", "_gap", "_why")


def _two_peaks(close: pl.DataFrame, links: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Split ``close`` (pairs of features named alike within ``SAME_COMPOUND_RT_S``: consensus_id, consensus_id_o,
    _runs, _runs_o) into the pairs that may be one elution split by the linking and, per feature, the partners
    detected together with it in 2 or more runs and in half or more of the runs of the less often detected of the two
    (``_both``, a list): two peaks in one run are two compounds' elutions, whatever the linking did."""
    empty = pl.DataFrame(schema={"consensus_id": pl.Utf8, "_both": pl.List(pl.Utf8)})
    if not close.height:
        return close, empty
    runs = {c: set(s) for c, s in links.filter(pl.col("consensus_id").is_in(close["consensus_id"].implode()))
            .group_by("consensus_id").agg(pl.col("sample_id").unique()).iter_rows()}
    together = np.array([len(runs.get(a, set()) & runs.get(b, set()))
                         for a, b in zip(close["consensus_id"], close["consensus_id_o"])])
    fewer = np.minimum(close["_runs"].to_numpy(), close["_runs_o"].to_numpy())
    two = pl.Series((together >= 2) & (together >= 0.5 * fewer))
    both = close.filter(two).group_by("consensus_id").agg(pl.col("consensus_id_o").alias("_both"))
    return close.filter(~two), both
