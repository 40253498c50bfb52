"""One identification per consensus feature (the ``identify`` study stage).

Every sample's rank-1 library hits (``annotations.parquet``) are joined to their consensus feature through the
links of the ``link`` stage. Per consensus feature, the spectra vote: the identity (first InChIKey block, else
the library name) that is rank-1 for the most spectra wins, ties broken by the best ranking score. Its evidence
is kept: spectra searched for the feature, spectra supporting the identity, samples, best and median score,
best cosine. Confidence: the feature's p-value combines the spectrum p-values of the chosen identity with the
Simes test over all of the feature's searched spectra (the others count as p = 1), so several agreeing spectra
strengthen the evidence and one lucky spectrum among many does not; q-values are Benjamini-Hochberg over the
consensus features with a hit (``ms2study.identification.confidence``). The
MSI level is 2 only when the best spectrum of the identity was level 2 and no supporting spectrum saw the hit as
level 3 or chose another structure of the same formula; otherwise 3, with every isomer named by the spectra in
``isomer_inchikeys``. Without q-values in the annotations (``confidence: none``) nothing is accepted.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np
import polars as pl

from ms2study.identification import confidence
from ms2study.core.atomic import write_parquet

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
    "n_samples": pl.Int32,
    "best_score": pl.Float64,       # ranking score (combined by default)
    "median_score": pl.Float64,
    "best_cosine": pl.Float64,
    "p_value": pl.Float64,
    "q_value": pl.Float64,
    "accepted": pl.Boolean,
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


def identify_features(annotations: pl.DataFrame, links: pl.DataFrame, fdr: float = 0.01,
                      classes: pl.DataFrame | None = None) -> pl.DataFrame:
    """One row per consensus feature with a rank-1 hit (columns IDENTIFICATIONS), sorted by q-value.

    ``annotations``: concatenated annotation tables (rank, spectrum_id, sample_id, feature_id, library_*,
    combined, cosine, p_value, msi_level, isomer_inchikeys); ``links``: consensus_id, sample_id, feature_id
    (``ms2study.stages.link.LINKS``); ``classes``: optional library_id -> compound_class table.
    """
    if annotations.height == 0 or links.height == 0:
        return pl.DataFrame(schema=IDENTIFICATIONS)
    for col, dtype in (("p_value", pl.Float64), ("msi_level", pl.Int8), ("isomer_inchikeys", pl.List(pl.Utf8))):
        if col not in annotations.columns:
            annotations = annotations.with_columns(pl.lit(None, dtype=dtype).alias(col))
    top = annotations.filter((pl.col("rank") == 1) & pl.col("feature_id").is_not_null()).join(
        links.select("consensus_id", "sample_id", "feature_id"), on=["sample_id", "feature_id"], how="inner")
    if top.height == 0:
        return pl.DataFrame(schema=IDENTIFICATIONS)
    top = top.with_columns(
        pl.when(pl.col("library_inchikey").str.len_chars() >= 14).then(pl.col("library_inchikey").str.slice(0, 14))
        .otherwise(pl.lit("name:") + pl.col("library_name").fill_null("?").str.to_lowercase()).alias("_identity"),
        pl.col("combined").fill_nan(None).alias("_score"),
    )
    per_feature = top.group_by("consensus_id").agg(pl.len().alias("n_spectra"))
    votes = (top.group_by("consensus_id", "_identity")
             .agg(pl.len().alias("n_supporting"), pl.col("_score").max().alias("best_score"))
             .sort(["consensus_id", "n_supporting", "best_score", "_identity"], descending=[False, True, True, False])
             .unique("consensus_id", keep="first", maintain_order=True))
    chosen = top.join(votes.select("consensus_id", "_identity"), on=["consensus_id", "_identity"], how="inner")
    best = chosen.sort(["p_value", "_score"], descending=[False, True], nulls_last=True).unique(
        "consensus_id", keep="first", maintain_order=True)
    summary = chosen.group_by("consensus_id").agg(
        pl.len().cast(pl.Int32).alias("n_supporting"),
        pl.col("sample_id").n_unique().cast(pl.Int32).alias("n_samples"),
        pl.col("_score").max().alias("best_score"),
        pl.col("_score").median().alias("median_score"),
        pl.col("cosine").max().alias("best_cosine"),
        pl.col("p_value").drop_nulls().sort().alias("_pvals"),
        (pl.col("msi_level") == 3).any().alias("_any3"),
        pl.col("isomer_inchikeys").list.explode(keep_nulls=False, empty_as_null=False).drop_nulls().unique().sort().alias("_iso"),
    )
    # Spectra of the feature that chose another structure of the same formula: the isomers disagree.
    formula_of = best.select("consensus_id", pl.col("library_formula").alias("_f1"))
    rivals = (top.join(formula_of, on="consensus_id").join(votes.select("consensus_id", pl.col("_identity")
                                                                         .alias("_chosen")), on="consensus_id")
              .filter((pl.col("_identity") != pl.col("_chosen")) & (pl.col("library_formula") == pl.col("_f1")))
              .group_by("consensus_id").agg(pl.col("library_inchikey").drop_nulls().unique().sort().alias("_rivals")))
    out = (best.select("consensus_id", "library_name", "library_inchikey", "library_smiles", "library_formula",
                       "library_adduct", "library_id", pl.col("msi_level").alias("_level_best"))
           .join(summary, on="consensus_id").join(per_feature, on="consensus_id")
           .join(rivals, on="consensus_id", how="left"))
    p = np.array([simes(pv, n) for pv, n in zip(out["_pvals"].to_list(), out["n_spectra"].to_list())])
    q = confidence.bh_q_values(p)
    out = out.with_columns(pl.Series("p_value", p), pl.Series("q_value", q)).with_columns(
        pl.col("p_value").fill_nan(None), pl.col("q_value").fill_nan(None))
    accepted = (pl.col("q_value") <= fdr).fill_null(False)
    level2 = (pl.col("_level_best") == 2) & ~pl.col("_any3") & pl.col("_rivals").is_null()
    out = out.with_columns(
        accepted.alias("accepted"),
        pl.when(accepted).then(pl.when(level2).then(2).otherwise(3)).cast(pl.Int8).alias("msi_level"),
        pl.when(accepted & ~level2).then(
            pl.concat_list(pl.col("library_inchikey"), pl.col("_iso"), pl.col("_rivals").fill_null([]))
            .list.drop_nulls().list.unique(maintain_order=True))
        .when(accepted).then(pl.concat_list(pl.col("library_inchikey"))).alias("isomer_inchikeys"),
    ).rename({"library_name": "name", "library_inchikey": "inchikey", "library_smiles": "smiles",
              "library_formula": "formula", "library_adduct": "adduct"})
    if classes is not None and "compound_class" in classes.columns:
        out = out.join(classes.select("library_id", "compound_class"), on="library_id", how="left")
    else:
        out = out.with_columns(pl.lit(None, dtype=pl.Utf8).alias("compound_class"))
    out = out.select(list(IDENTIFICATIONS)).cast(IDENTIFICATIONS).sort(["q_value", "consensus_id"], nulls_last=True)
    log.info("%d consensus features with a library hit; %d accepted at %.0f%% FDR (%d at MSI level 2, %d at 3)",
             out.height, int(out["accepted"].sum()), 100 * fdr, int((out["msi_level"] == 2).sum()),
             int((out["msi_level"] == 3).sum()))
    return out


def _cli(args: argparse.Namespace) -> int:
    from ms2study.core.params import load_params

    params = load_params(args)
    ann = pl.concat([pl.read_parquet(f) for f in args.annotations], how="diagonal_relaxed")
    links = pl.read_parquet(args.links)
    classes = None
    if args.library_index:
        meta = Path(args.library_index) / "metadata.parquet"
        classes = pl.read_parquet(meta, columns=["library_id", "compound_class"]) if meta.exists() else None
    out = identify_features(ann, links, float(params.get("fdr", 0.01)), classes)
    write_parquet(out, args.out)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    from ms2study.core.params import add_params_argument

    p = subparsers.add_parser("identify", help="one identification per consensus feature from all samples' hits")
    p.add_argument("--annotations", nargs="+", required=True, help="annotations.parquet of every sample")
    p.add_argument("--links", required=True, help="feature_links.parquet from 'ms2study link'")
    p.add_argument("--library-index", default=None, help="library index folder (for compound classes)")
    p.add_argument("--out", required=True, help="identifications.parquet to write")
    add_params_argument(p)
    p.set_defaults(func=_cli)
